//! `bench-activecampaign` (`make bench-activecampaign`): customers with many events each go
//! through the whole pipeline — signed Stripe webhooks → ingest → JetStream → ActiveCampaign
//! worker → the emulated account at ActiveCampaign's 5 requests/s — and the run is compared
//! with the shortest time the rate limit allows for the calls it made.
//!
//! Prints API calls per event and per customer, the total time, the lower bound
//! (calls ÷ rate) and their ratio; exits non-zero when the ratio exceeds `--max-ratio`.
//! Real NATS and Postgres (the e2e harness starts them if needed); nothing leaves loopback.

use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::stripe;
use clap::Parser;
use serde_json::{json, Value};
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::start(StackOptions {
        ac_requests_per_second: args.rate,
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
    anyhow::ensure!(
        snapshot.contacts.len() == args.customers,
        "expected {} contacts, found {}",
        args.customers,
        snapshot.contacts.len()
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
