//! `bench-activecampaign` (`make bench-activecampaign`): customers with many events each go
//! through the whole pipeline — signed Stripe webhooks → ingest → JetStream → ActiveCampaign
//! worker → the emulated account at ActiveCampaign's 5 requests/s — and the run is compared
//! with the shortest time the rate limit allows for the calls it made.
//!
//! The worker runs as its own `billsync activecampaign` process and is SIGKILLed once half
//! the events are settled (`--kill-at`), then started again. When the run has settled, the
//! emulated account is compared with the state the events describe: every contact's name,
//! tags, e-commerce customer and orders, and nothing else.
//!
//! Prints API calls per event and per customer, the total time, the lower bound
//! (calls ÷ rate) and their ratio; exits non-zero when the state differs or the ratio
//! exceeds `--max-ratio`. Real NATS and Postgres (the e2e harness starts them if needed);
//! nothing leaves loopback.

use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{stripe, AcSnapshot};
use clap::Parser;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark Stripe → ActiveCampaign through the whole pipeline at AC's rate limit."
)]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    customers: usize,
    /// Events in all, spread evenly over the customers.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// The emulated account's limit, requests per second.
    #[arg(long, default_value_t = 5)]
    rate: u32,
    /// The run fails when total time ÷ lower bound exceeds this.
    #[arg(long, default_value_t = 1.2)]
    max_ratio: f64,
    /// SIGKILL the worker once this fraction of the events is settled, then restart it;
    /// 0 runs without the crash.
    #[arg(long, default_value_t = 0.5)]
    kill_at: f64,
}

/// The event of step `step` in one customer's life: created, then updates, subscription
/// changes and payments in turn.
fn event_for(customer: usize, step: usize) -> Value {
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
struct Expected {
    email: String,
    first_name: String,
    last_name: String,
    tags: BTreeSet<String>,
    /// Order external id → (total in cents, realtime source, first product's description).
    orders: BTreeMap<String, (i64, u8, Option<String>)>,
}

/// Replays one customer's events in order, the way the seed's rules read them.
fn expected(customer: usize, per_customer: usize) -> Expected {
    let mut state = Expected {
        email: format!("bench{customer:05}@example.com"),
        first_name: String::new(),
        last_name: String::new(),
        tags: BTreeSet::new(),
        orders: BTreeMap::new(),
    };
    for step in 0..per_customer {
        let event = event_for(customer, step);
        let kind = event["type"].as_str().expect("event type").to_string();
        let object = &event["data"]["object"];
        state.tags.insert("stripe-integration".into());
        state.tags.insert(format!("stripe-integration-{kind}"));
        let name = match object["object"].as_str() {
            Some("customer") => object["name"].as_str(),
            Some("charge") => object["billing_details"]["name"].as_str(),
            _ => None,
        };
        if let Some((first, last)) = name.and_then(|n| n.split_once(' ')) {
            state.first_name = first.to_string();
            state.last_name = last.to_string();
        }
        match object["object"].as_str() {
            Some("subscription") => {
                state
                    .tags
                    .insert("stripe-integration-Billing_Subscription_Events".into());
                let id = object["id"].as_str().expect("id").to_string();
                let status = object["status"].as_str().expect("status");
                state
                    .orders
                    .insert(id, (4900, 0, Some(format!("{status}, every month"))));
            }
            Some("charge") => {
                let id = object["id"].as_str().expect("id").to_string();
                state.orders.insert(id, (4900, 1, None));
            }
            _ => {}
        }
    }
    state
}

/// Everything in the account that is not what the events describe, one line each.
fn differences(snapshot: &AcSnapshot, customers: usize, per_customer: usize) -> Vec<String> {
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::start(StackOptions {
        ac_requests_per_second: args.rate,
        worker_process: true,
        ..Default::default()
    })
    .await;
    let per_customer = (args.events / args.customers.max(1)).max(1);
    let total_events = per_customer * args.customers;
    println!(
        "bench-activecampaign: {} customers x {per_customer} events = {total_events} events at {} req/s",
        args.customers, args.rate
    );

    let started = Instant::now();
    // Events of one customer are sent in order (Stripe does not guarantee order; the worker
    // orders by event time anyway); customers are sent concurrently.
    let mut senders = tokio::task::JoinSet::new();
    let stack = std::sync::Arc::new(stack);
    for chunk in (0..args.customers)
        .collect::<Vec<_>>()
        .chunks(args.customers.div_ceil(32))
    {
        let chunk = chunk.to_vec();
        let stack = std::sync::Arc::clone(&stack);
        senders.spawn(async move {
            for step in 0..per_customer {
                for &customer in &chunk {
                    let response = stack.send_stripe(&event_for(customer, step)).await;
                    assert!(
                        response.status().is_success(),
                        "webhook refused: {}",
                        response.status()
                    );
                }
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done?;
    }
    let sent = started.elapsed();
    println!(
        "webhooks accepted: {total_events} in {:.1} s",
        sent.as_secs_f64()
    );

    if args.kill_at > 0.0 {
        let threshold = (total_events as f64 * (1.0 - args.kill_at)) as u64;
        let backlog = eventually(
            "the worker to settle the events before the crash",
            Duration::from_secs(24 * 3600),
            || async {
                let backlog = stack.worker_backlog().await?;
                (stack.events_in_stream().await as usize >= total_events && backlog <= threshold)
                    .then_some(backlog)
            },
        )
        .await;
        stack.kill_worker().await;
        println!(
            "worker SIGKILLed after {:.1} s with {backlog} of {total_events} events unsettled; restarting it",
            started.elapsed().as_secs_f64()
        );
        stack.start_worker();
    }
    eventually(
        "the worker to settle every event",
        Duration::from_secs(24 * 3600),
        || async {
            (stack.worker_idle().await && stack.events_in_stream().await as usize >= total_events)
                .then_some(())
        },
    )
    .await;
    let elapsed = started.elapsed();
    let calls = stack
        .sandbox
        .activecampaign
        .request_count(&stack.ac_account);
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let lower_bound = calls as f64 / f64::from(args.rate);
    let ratio = elapsed.as_secs_f64() / lower_bound;
    println!(
        "contacts: {}, contactTags: {}, ecomOrders: {}",
        snapshot.contacts.len(),
        snapshot.contact_tags.len(),
        snapshot.ecom_orders.len()
    );
    println!(
        "API calls: {calls} ({:.2} per event, {:.2} per customer)",
        calls as f64 / total_events as f64,
        calls as f64 / args.customers as f64
    );
    println!("total time: {:.1} s; rate-limit lower bound for these calls: {lower_bound:.1} s; ratio {ratio:.3} (max {})", elapsed.as_secs_f64(), args.max_ratio);
    let differences = differences(&snapshot, args.customers, per_customer);
    for difference in differences.iter().take(20) {
        println!("  differs: {difference}");
    }
    anyhow::ensure!(
        differences.is_empty(),
        "the account differs from the expected state in {} place(s)",
        differences.len()
    );
    println!(
        "state: as expected ({} contacts, {} contact tags, {} e-commerce customers, {} orders)",
        snapshot.contacts.len(),
        snapshot.contact_tags.len(),
        snapshot.ecom_customers.len(),
        snapshot.ecom_orders.len()
    );
    anyhow::ensure!(
        ratio <= args.max_ratio,
        "the run took {ratio:.3}x the lower bound, over {}",
        args.max_ratio
    );
    match std::sync::Arc::try_unwrap(stack) {
        Ok(stack) => stack.stop().await,
        Err(_) => anyhow::bail!("a sender still holds the stack"),
    }
    Ok(())
}
