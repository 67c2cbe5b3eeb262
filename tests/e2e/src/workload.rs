//! A Stripe workload with a known outcome: customers whose lives are a fixed sequence of
//! events (created, subscriptions, payments, updates), and the ActiveCampaign state those
//! events describe. `bench-activecampaign` and the worker-crash test send it through the
//! whole pipeline and compare the emulated account with [`differences`].

use crate::{eventually, Stack};
use billsync_sandbox::{stripe, AcSnapshot};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Sends the whole workload to `stack`'s Stripe webhook, step by step across customers (as
/// a busy account would), and checks every event reached the stream.
pub async fn send(stack: &Stack, customers: usize, per_customer: usize) {
    for event in events(customers, per_customer) {
        let response = stack.send_stripe(&event).await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    assert_eq!(
        stack.events_in_stream().await,
        (customers * per_customer) as u64
    );
}

/// Waits up to `within` for the worker to settle everything, then lists how the account
/// differs from what the workload describes.
pub async fn settle_and_compare(
    stack: &Stack,
    customers: usize,
    per_customer: usize,
    within: std::time::Duration,
) -> Vec<String> {
    eventually("the worker to settle every event", within, || async {
        stack.worker_idle().await.then_some(())
    })
    .await;
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    differences(&snapshot, customers, per_customer)
}

/// The whole workload in the order it is sent: step by step across customers, as a busy
/// account's events arrive.
pub fn events(customers: usize, per_customer: usize) -> impl Iterator<Item = Value> {
    (0..per_customer)
        .flat_map(move |step| (0..customers).map(move |customer| event_for(customer, step)))
}

/// The event of step `step` in one customer's life: created, then updates, subscription
/// changes and payments in turn. All events of one customer carry one `created` second, as
/// a burst does: only their order in the stream tells them apart.
pub fn event_for(customer: usize, step: usize) -> Value {
    let mut event = life_event(customer, step);
    event["created"] = json!(1_700_000_000 + customer as i64);
    event
}

/// Stripe `created` times for a test's events, one second apart and in the past, so that
/// each event has its own position (Stripe's clock has one-second resolution).
pub struct Clock(i64);

impl Clock {
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        Self(now - 600)
    }

    /// A webhook event of `event_type` carrying `object`, created at the next second.
    pub fn event(&mut self, event_type: &str, object: Value) -> Value {
        self.0 += 1;
        let mut event = stripe::event(event_type, object);
        event["created"] = json!(self.0);
        event
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

fn life_event(customer: usize, step: usize) -> Value {
    let id = format!("cus_bench{customer:05}");
    let email = format!("bench{customer:05}@example.com");
    let name = format!("Bench Customer{customer} v{step}");
    let subscription = || {
        json!({"id": format!("sub_bench{customer:05}"), "object": "subscription", "customer": id,
               "status": if step % 4 == 3 { "past_due" } else { "active" }, "currency": "usd",
               "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_pro", "unit_amount": 4900, "currency": "usd", "recurring": {"interval": "month"}}, "quantity": 1}]},
               "created": 1_700_000_000})
    };
    match step % 5 {
        0 if step == 0 => stripe::event("customer.created", stripe::customer(&id, &email, &name)),
        1 => stripe::event("customer.subscription.created", subscription()),
        2 => stripe::event("customer.subscription.updated", subscription()),
        3 => stripe::event(
            "charge.succeeded",
            json!({"id": format!("ch_bench{customer:05}_{step}"), "object": "charge", "customer": id,
                   "amount": 4900, "amount_refunded": 0, "currency": "usd", "status": "succeeded", "paid": true,
                   "billing_details": {"email": email, "name": name}, "receipt_email": email, "created": 1_700_000_000 + step as i64}),
        ),
        _ => stripe::event("customer.updated", stripe::customer(&id, &email, &name)),
    }
}

/// One customer as its events describe it.
pub struct Expected {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub tags: BTreeSet<String>,
    /// Order external id → (total in cents, realtime source, first product's description).
    pub orders: BTreeMap<String, (i64, u8, Option<String>)>,
}

/// What one event changed of its customer's expected state: the writes ActiveCampaign needs
/// for it, at the least.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// The contact is new, or its name differs: one contact write.
    pub contact: bool,
    /// Tags the contact did not have: one contactTag each.
    pub new_tags: usize,
    /// Orders that are new or whose total, source or description differs: one write each.
    pub orders: usize,
}

impl Expected {
    fn new(customer: usize) -> Self {
        Self {
            email: format!("bench{customer:05}@example.com"),
            first_name: String::new(),
            last_name: String::new(),
            tags: BTreeSet::new(),
            orders: BTreeMap::new(),
        }
    }

    /// Applies one event the way the seed's rules read it, and says what it changed.
    fn apply(&mut self, event: &Value, first: bool) -> Changed {
        let mut changed = Changed {
            contact: first,
            ..Changed::default()
        };
        let kind = event["type"].as_str().expect("event type").to_string();
        let object = &event["data"]["object"];
        let mut tag = |tag: String| changed.new_tags += usize::from(self.tags.insert(tag));
        tag("stripe-integration".into());
        tag(format!("stripe-integration-{kind}"));
        if object["object"].as_str() == Some("subscription") {
            tag("stripe-integration-Billing_Subscription_Events".into());
        }
        let name = match object["object"].as_str() {
            Some("customer") => object["name"].as_str(),
            Some("charge") => object["billing_details"]["name"].as_str(),
            _ => None,
        };
        if let Some((first, last)) = name.and_then(|n| n.split_once(' ')) {
            if (first, last) != (self.first_name.as_str(), self.last_name.as_str()) {
                self.first_name = first.to_string();
                self.last_name = last.to_string();
                changed.contact = true;
            }
        }
        let order = match object["object"].as_str() {
            Some("subscription") => {
                let status = object["status"].as_str().expect("status");
                Some((4900, 0, Some(format!("{status}, every month"))))
            }
            Some("charge") => Some((4900, 1, None)),
            _ => None,
        };
        if let Some(order) = order {
            let id = object["id"].as_str().expect("id").to_string();
            if self.orders.insert(id, order.clone()).as_ref() != Some(&order) {
                changed.orders += 1;
            }
        }
        changed
    }
}

/// Replays one customer's events in order, the way the seed's rules read them.
pub fn expected(customer: usize, per_customer: usize) -> Expected {
    let mut state = Expected::new(customer);
    for step in 0..per_customer {
        state.apply(&event_for(customer, step), step == 0);
    }
    state
}

/// The fewest ActiveCampaign writes the workload needs, counted from its events alone (not
/// from what billsync did): one contact write per state a customer's events give its contact,
/// one tag per tag name the account lacks, one contactTag per tag a contact gains, one deep
/// data connection, one e-commerce customer per customer with a purchase, one order write per
/// state of each purchase. Reads, custom fields and retries are left out, so no way of
/// doing the work needs fewer calls.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MinimumWrites {
    pub contact_states: usize,
    pub tags: usize,
    pub contact_tags: usize,
    pub connections: usize,
    pub ecom_customers: usize,
    pub order_states: usize,
}

impl MinimumWrites {
    pub fn of(customers: usize, per_customer: usize) -> Self {
        let mut minimum = Self::default();
        let mut tag_names = BTreeSet::new();
        for customer in 0..customers {
            let mut state = Expected::new(customer);
            for step in 0..per_customer {
                let changed = state.apply(&event_for(customer, step), step == 0);
                minimum.contact_states += usize::from(changed.contact);
                minimum.contact_tags += changed.new_tags;
                minimum.order_states += changed.orders;
            }
            tag_names.extend(state.tags);
            minimum.ecom_customers += usize::from(!state.orders.is_empty());
        }
        minimum.tags = tag_names.len();
        minimum.connections = usize::from(minimum.ecom_customers > 0);
        minimum
    }

    pub fn total(&self) -> usize {
        self.contact_states
            + self.tags
            + self.contact_tags
            + self.connections
            + self.ecom_customers
            + self.order_states
    }
}

/// Prints the first 20 of `differences` and fails when there is any.
pub fn ensure_no_differences(differences: &[String]) -> anyhow::Result<()> {
    for difference in differences.iter().take(20) {
        println!("  differs: {difference}");
    }
    anyhow::ensure!(
        differences.is_empty(),
        "the account differs from the expected state in {} place(s)",
        differences.len()
    );
    Ok(())
}

/// Everything in the account that is not what the events describe, one line each.
pub fn differences(snapshot: &AcSnapshot, customers: usize, per_customer: usize) -> Vec<String> {
    let mut found = Vec::new();
    if snapshot.contacts.len() != customers {
        found.push(format!(
            "{} contacts, expected {customers}",
            snapshot.contacts.len()
        ));
    }
    let wanted_orders: usize = (0..customers)
        .map(|c| expected(c, per_customer).orders.len())
        .sum();
    if snapshot.ecom_orders.len() != wanted_orders {
        found.push(format!(
            "{} orders, expected {wanted_orders}",
            snapshot.ecom_orders.len()
        ));
    }
    if snapshot.ecom_customers.len() != customers {
        found.push(format!(
            "{} e-commerce customers, expected {customers}",
            snapshot.ecom_customers.len()
        ));
    }
    for customer in 0..customers {
        let want = expected(customer, per_customer);
        let Some(contact) = snapshot.contact_by_email(&want.email) else {
            found.push(format!("no contact {}", want.email));
            continue;
        };
        if (contact.first_name.as_str(), contact.last_name.as_str())
            != (want.first_name.as_str(), want.last_name.as_str())
        {
            found.push(format!(
                "{}: name {:?} {:?}, expected {:?} {:?}",
                want.email, contact.first_name, contact.last_name, want.first_name, want.last_name
            ));
        }
        let tags = snapshot.tags_of(&contact.id);
        let unique: BTreeSet<String> = tags.iter().cloned().collect();
        if unique != want.tags || tags.len() != unique.len() {
            found.push(format!(
                "{}: tags {tags:?}, expected {:?}",
                want.email, want.tags
            ));
        }
        let externalid = format!("cus_bench{customer:05}");
        let ecom: Vec<_> = snapshot
            .ecom_customers
            .iter()
            .filter(|c| c.externalid == externalid)
            .collect();
        match ecom.as_slice() {
            [one] if one.email == want.email => {
                for (order_id, (total, source, description)) in &want.orders {
                    let orders = snapshot.ecom_orders_with(order_id);
                    match orders.as_slice() {
                        [order]
                            if order.total_price == *total
                                && order.source == *source
                                && order.customerid == one.id
                                && (description.is_none()
                                    || order.order_products.first().and_then(|p| p.description.as_ref())
                                        == description.as_ref()) => {}
                        other => found.push(format!(
                            "{}: order {order_id}: {} record(s) {:?}, expected one of {total} cents, source {source}, {description:?}",
                            want.email,
                            other.len(),
                            other
                                .iter()
                                .map(|o| (o.total_price, o.source, o.order_products.first().and_then(|p| p.description.clone())))
                                .collect::<Vec<_>>()
                        )),
                    }
                }
            }
            other => found.push(format!(
                "{}: {} e-commerce customer(s) {externalid}, expected one with its email",
                want.email,
                other.len()
            )),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_counts_what_the_events_change() {
        // created (contact, 2 tags), subscription created (2 tags, an order), subscription
        // updated (1 tag; the order unchanged), charge (1 tag, a new name, an order),
        // customer updated (1 tag, a new name).
        let one = MinimumWrites::of(1, 5);
        assert_eq!(
            one,
            MinimumWrites {
                contact_states: 3,
                tags: 7,
                contact_tags: 7,
                connections: 1,
                ecom_customers: 1,
                order_states: 2,
            }
        );
        assert_eq!(one.total(), 21);
        // Tag names are the account's, once; the rest is per customer.
        let three = MinimumWrites::of(3, 5);
        assert_eq!(three.tags, 7);
        assert_eq!(three.total(), 7 + 1 + 3 * (3 + 7 + 1 + 2));
    }
}
