//! One Stripe account's objects, in Stripe's list order, and the seeding that fills it fast.
//!
//! Each resource is a table kept in creation order (`created` never decreases along it), so a
//! list is a walk from the newest end and `starting_after` is an index lookup: 5,000 customers
//! page in microseconds.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::objects::{
    Listed, StripeCharge, StripeCheckoutSession, StripeCustomer, StripeInvoice, StripeResource,
    StripeSubscription,
};
use super::random_id;

/// Objects of one resource in creation order, with an index by id.
#[derive(Debug)]
pub(crate) struct Table<T> {
    rows: Vec<T>,
    index: HashMap<String, usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            index: HashMap::new(),
        }
    }
}

/// A page of a list, newest first, and whether older objects remain.
pub(crate) struct Page<'a, T> {
    pub data: Vec<&'a T>,
    pub has_more: bool,
}

/// `starting_after` / `ending_before` named an object the list does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MissingCursor {
    pub param: &'static str,
    pub id: String,
}

impl<T: Listed> Table<T> {
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        self.index.get(id).map(|&i| &self.rows[i])
    }

    /// The newest `created` so far; new objects are stamped no earlier, keeping the order.
    fn newest_created(&self) -> i64 {
        self.rows.last().map_or(i64::MIN, Listed::created)
    }

    fn push(&mut self, row: T) {
        self.index.insert(row.id().to_string(), self.rows.len());
        self.rows.push(row);
    }

    pub(crate) fn ids(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.id().to_string()).collect()
    }

    /// Stripe's list: newest first, `limit` objects that pass `keep`, after (older than)
    /// `starting_after` or before (newer than) `ending_before`.
    pub(crate) fn page(
        &self,
        keep: impl Fn(&T) -> bool,
        starting_after: Option<&str>,
        ending_before: Option<&str>,
        limit: usize,
    ) -> Result<Page<'_, T>, MissingCursor> {
        let position = |param: &'static str, id: &str| {
            self.index.get(id).copied().ok_or(MissingCursor {
                param,
                id: id.to_string(),
            })
        };
        if let Some(id) = ending_before {
            let start = position("ending_before", id)?;
            // The `limit` matching objects just newer than the cursor, shown newest first.
            let mut newer: Vec<&T> = self.rows[start + 1..]
                .iter()
                .filter(|r| keep(r))
                .take(limit + 1)
                .collect();
            let has_more = newer.len() > limit;
            newer.truncate(limit);
            newer.reverse();
            return Ok(Page {
                data: newer,
                has_more,
            });
        }
        let end = match starting_after {
            Some(id) => position("starting_after", id)?,
            None => self.rows.len(),
        };
        let mut data: Vec<&T> = self.rows[..end]
            .iter()
            .rev()
            .filter(|r| keep(r))
            .take(limit + 1)
            .collect();
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(Page { data, has_more })
    }
}

/// How many objects [`AccountData::seed`] makes per customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StripeSeed {
    pub customers: usize,
    pub subscriptions_per_customer: usize,
    pub invoices_per_customer: usize,
    pub charges_per_customer: usize,
    pub checkout_sessions_per_customer: usize,
}

impl Default for StripeSeed {
    fn default() -> Self {
        Self {
            customers: 10,
            subscriptions_per_customer: 1,
            invoices_per_customer: 1,
            charges_per_customer: 0,
            checkout_sessions_per_customer: 0,
        }
    }
}

/// What a seed created, by resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeSeeded {
    pub customers: usize,
    pub subscriptions: usize,
    pub invoices: usize,
    pub charges: usize,
    pub checkout_sessions: usize,
}

/// Object counts of an account, by resource.
pub type StripeCounts = StripeSeeded;

#[derive(Debug, Default)]
pub(crate) struct AccountData {
    pub customers: Table<StripeCustomer>,
    pub subscriptions: Table<StripeSubscription>,
    pub invoices: Table<StripeInvoice>,
    pub charges: Table<StripeCharge>,
    pub checkout_sessions: Table<StripeCheckoutSession>,
    /// Customers made by seeds so far, so later seeds get new names and emails.
    seeded_customers: usize,
    next_invoice_number: u64,
}

const PLANS: &[(&str, i64)] = &[("Starter", 900), ("Team", 2900), ("Business", 9900)];

impl AccountData {
    pub(crate) fn counts(&self) -> StripeCounts {
        StripeCounts {
            customers: self.customers.len(),
            subscriptions: self.subscriptions.len(),
            invoices: self.invoices.len(),
            charges: self.charges.len(),
            checkout_sessions: self.checkout_sessions.len(),
        }
    }

    pub(crate) fn ids(&self, resource: StripeResource) -> Vec<String> {
        match resource {
            StripeResource::Customers => self.customers.ids(),
            StripeResource::Subscriptions => self.subscriptions.ids(),
            StripeResource::Invoices => self.invoices.ids(),
            StripeResource::Charges => self.charges.ids(),
            StripeResource::CheckoutSessions => self.checkout_sessions.ids(),
        }
    }

    /// A new customer, created now (or just after the newest one).
    pub(crate) fn create_customer(
        &mut self,
        email: Option<String>,
        name: Option<String>,
    ) -> StripeCustomer {
        let created = chrono::Utc::now()
            .timestamp()
            .max(self.customers.newest_created());
        let customer = StripeCustomer {
            id: random_id("cus_", 14),
            created,
            email,
            name,
            phone: None,
            currency: None,
            invoice_prefix: random_id("", 8).to_uppercase(),
        };
        self.customers.push(customer.clone());
        customer
    }

    /// Makes `seed.customers` customers, each with the given numbers of subscriptions,
    /// invoices (paid, one per subscription period), charges (succeeded, refunding every
    /// tenth) and checkout sessions (complete and paid), dated in the past one second apart
    /// so that list order is creation order.
    pub(crate) fn seed(&mut self, seed: &StripeSeed) -> StripeSeeded {
        let now = chrono::Utc::now().timestamp();
        let per_customer = 1
            + seed.subscriptions_per_customer
            + seed.invoices_per_customer
            + seed.charges_per_customer
            + seed.checkout_sessions_per_customer;
        let span = i64::try_from(seed.customers * per_customer).unwrap_or(i64::MAX / 4);
        // In the past, yet newer than anything the account holds, so lists stay in order.
        let mut clock = (now - span - 86_400).max(self.newest_any() + 1);
        let mut tick = || {
            clock += 1;
            clock
        };
        let people = super::demo_customers(self.seeded_customers + seed.customers);
        let mut made = StripeSeeded::default();
        for person in &people[self.seeded_customers..] {
            let customer = StripeCustomer {
                id: random_id("cus_", 14),
                created: tick(),
                email: Some(person.email.clone()),
                name: Some(person.name.clone()),
                phone: None,
                currency: Some("usd".into()),
                invoice_prefix: random_id("", 8).to_uppercase(),
            };
            let customer_id = customer.id.clone();
            self.customers.push(customer);
            made.customers += 1;

            let mut subscriptions = Vec::new();
            for s in 0..seed.subscriptions_per_customer {
                let (plan, amount) = PLANS[(made.customers + s) % PLANS.len()];
                let created = tick();
                let subscription = StripeSubscription {
                    id: random_id("sub_1", 23),
                    created,
                    customer: customer_id.clone(),
                    status: "active".into(),
                    item_id: random_id("si_", 14),
                    price_id: format!("price_sandbox_{}", plan.to_lowercase()),
                    product_id: format!("prod_sandbox_{}", plan.to_lowercase()),
                    unit_amount: amount,
                    currency: "usd".into(),
                    interval: "month".into(),
                    quantity: 1,
                    current_period_start: created,
                    current_period_end: created + 30 * 86_400,
                    canceled_at: None,
                };
                subscriptions.push((subscription.id.clone(), amount));
                self.subscriptions.push(subscription);
                made.subscriptions += 1;
            }
            let mut invoices = Vec::new();
            for i in 0..seed.invoices_per_customer {
                let (subscription, amount) = subscriptions
                    .get(i % subscriptions.len().max(1))
                    .cloned()
                    .map_or((None, 1500), |(id, amount)| (Some(id), amount));
                let created = tick();
                self.next_invoice_number += 1;
                let invoice = StripeInvoice {
                    id: random_id("in_1", 23),
                    created,
                    customer: customer_id.clone(),
                    customer_email: Some(person.email.clone()),
                    customer_name: Some(person.name.clone()),
                    subscription,
                    status: "paid".into(),
                    amount_due: amount,
                    amount_paid: amount,
                    currency: "usd".into(),
                    number: Some(format!("SBX-{:06}", self.next_invoice_number)),
                    line_id: random_id("il_1", 23),
                    period_start: created,
                    period_end: created + 30 * 86_400,
                };
                invoices.push((invoice.id.clone(), amount));
                self.invoices.push(invoice);
                made.invoices += 1;
            }
            for c in 0..seed.charges_per_customer {
                let (invoice, amount) = invoices
                    .get(c)
                    .cloned()
                    .map_or((None, 2500), |(id, amount)| (Some(id), amount));
                let refunded = (made.charges + 1) % 10 == 0;
                let charge = StripeCharge {
                    id: random_id("ch_3", 23),
                    created: tick(),
                    customer: Some(customer_id.clone()),
                    email: Some(person.email.clone()),
                    name: Some(person.name.clone()),
                    amount,
                    amount_refunded: if refunded { amount } else { 0 },
                    currency: "usd".into(),
                    status: "succeeded".into(),
                    invoice,
                    payment_intent: random_id("pi_3", 23),
                };
                self.charges.push(charge);
                made.charges += 1;
            }
            for _ in 0..seed.checkout_sessions_per_customer {
                let session = StripeCheckoutSession {
                    id: random_id("cs_test_a1", 56),
                    created: tick(),
                    customer: Some(customer_id.clone()),
                    email: Some(person.email.clone()),
                    name: Some(person.name.clone()),
                    mode: "payment".into(),
                    status: "complete".into(),
                    payment_status: "paid".into(),
                    amount_total: 4900,
                    currency: "usd".into(),
                    subscription: None,
                    payment_intent: Some(random_id("pi_3", 23)),
                };
                self.checkout_sessions.push(session);
                made.checkout_sessions += 1;
            }
        }
        self.seeded_customers += seed.customers;
        made
    }

    fn newest_any(&self) -> i64 {
        [
            self.customers.newest_created(),
            self.subscriptions.newest_created(),
            self.invoices.newest_created(),
            self.charges.newest_created(),
            self.checkout_sessions.newest_created(),
        ]
        .into_iter()
        .max()
        .unwrap_or(i64::MIN)
        .max(i64::MIN / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_walk_newest_first_and_resume_after_a_cursor() {
        let mut data = AccountData::default();
        data.seed(&StripeSeed {
            customers: 25,
            ..StripeSeed::default()
        });
        let all = data.customers.ids();
        let first = data.customers.page(|_| true, None, None, 10).unwrap();
        assert!(first.has_more);
        let ids: Vec<&str> = first.data.iter().map(|c| c.id.as_str()).collect();
        let newest: Vec<&str> = all.iter().rev().take(10).map(String::as_str).collect();
        assert_eq!(ids, newest);

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = data
                .customers
                .page(|_| true, after.as_deref(), None, 10)
                .unwrap();
            seen.extend(page.data.iter().map(|c| c.id.clone()));
            after = page.data.last().map(|c| c.id.clone());
            if !page.has_more {
                break;
            }
        }
        seen.reverse();
        assert_eq!(seen, all);

        let back = data
            .customers
            .page(|_| true, None, Some(&all[5]), 3)
            .unwrap();
        let ids: Vec<&str> = back.data.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec![all[8].as_str(), all[7].as_str(), all[6].as_str()]);
        assert!(back.has_more);
        assert_eq!(
            data.customers
                .page(|_| true, Some("cus_nope"), None, 3)
                .err(),
            Some(MissingCursor {
                param: "starting_after",
                id: "cus_nope".into()
            })
        );
    }

    #[test]
    fn seeds_link_subscriptions_and_invoices_to_their_customer() {
        let mut data = AccountData::default();
        let made = data.seed(&StripeSeed {
            customers: 3,
            subscriptions_per_customer: 1,
            invoices_per_customer: 2,
            charges_per_customer: 1,
            checkout_sessions_per_customer: 1,
        });
        assert_eq!(made.customers, 3);
        assert_eq!(made.invoices, 6);
        let counts = data.counts();
        assert_eq!(counts, made);
        for invoice in data.invoices.rows.iter() {
            assert!(data.customers.get(&invoice.customer).is_some());
            let sub = invoice.subscription.as_deref().expect("subscription");
            assert_eq!(
                data.subscriptions.get(sub).unwrap().customer,
                invoice.customer
            );
        }
        // A second seed continues the names and sits after the first in time.
        let before = data.customers.newest_created();
        data.seed(&StripeSeed {
            customers: 1,
            ..StripeSeed::default()
        });
        let newest = data.customers.rows.last().unwrap();
        assert!(newest.created > before);
        assert_ne!(newest.email, data.customers.rows[0].email);
    }
}
