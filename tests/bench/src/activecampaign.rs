//! `bench-activecampaign` (`make bench-activecampaign`): customers with many events each go
//! through the whole pipeline — signed Stripe webhooks → ingest → JetStream → ActiveCampaign
//! worker → the emulated account at ActiveCampaign's 5 requests/s — and the run is compared
//! with the shortest time the rate limit allows for the work itself.
//!
//! The worker runs as its own `billsync activecampaign` process and is SIGKILLed once half
//! the events are settled (`--kill-at`), then started again. When the run has settled, the
//! emulated account is compared with the state the events describe: every contact's name,
//! tags, e-commerce customer and orders, and nothing else.
//!
//! Prints the API calls the emulated account accepted and those it refused with 429 (per
//! event and per customer), the fewest writes the workload needs (counted from its events,
//! not from billsync's calls, so wasted or refused calls cannot improve the figure), the
//! time bound (that minimum ÷ the rate), the total time and its ratio to the bound; exits
//! non-zero when the state differs or the ratio exceeds `--max-ratio`. Real NATS and Postgres (the e2e harness starts them if needed);
//! nothing leaves loopback.

use billsync_e2e::workload::{differences, ensure_no_differences, event_for, MinimumWrites};
use billsync_e2e::{eventually, Stack, StackOptions};
use clap::Parser;
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
    /// The run fails when total time ÷ (minimum writes ÷ rate) exceeds this.
    #[arg(long, default_value_t = 1.2)]
    max_ratio: f64,
    /// SIGKILL the worker once this fraction of the events is settled, then restart it;
    /// 0 runs without the crash.
    #[arg(long, default_value_t = 0.5)]
    kill_at: f64,
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
    let counts = stack
        .sandbox_request_counts("activecampaign", &stack.ac_account)
        .await?;
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let minimum = MinimumWrites::of(args.customers, per_customer);
    let bound = minimum.total() as f64 / f64::from(args.rate);
    let ratio = elapsed.as_secs_f64() / bound;
    let per_event = |calls: u64| calls as f64 / total_events as f64;
    println!(
        "contacts: {}, contactTags: {}, ecomOrders: {}",
        snapshot.contacts.len(),
        snapshot.contact_tags.len(),
        snapshot.ecom_orders.len()
    );
    println!(
        "API calls: {} accepted ({:.2} per event, {:.2} per customer), {} refused with 429 ({:.2} per event)",
        counts.accepted,
        per_event(counts.accepted),
        counts.accepted as f64 / args.customers as f64,
        counts.refused,
        per_event(counts.refused),
    );
    println!(
        "minimum the work needs: {} writes ({:.2} per event) = {} contact states + {} tags + {} contact tags + {} connection + {} e-commerce customers + {} order states",
        minimum.total(),
        per_event(minimum.total() as u64),
        minimum.contact_states,
        minimum.tags,
        minimum.contact_tags,
        minimum.connections,
        minimum.ecom_customers,
        minimum.order_states,
    );
    println!(
        "accepted calls / minimum: {:.2}",
        counts.accepted as f64 / minimum.total() as f64
    );
    println!(
        "total time: {:.1} s; bound at {} req/s for the minimum: {bound:.1} s; ratio {ratio:.3} (max {})",
        elapsed.as_secs_f64(),
        args.rate,
        args.max_ratio
    );
    ensure_no_differences(&differences(&snapshot, args.customers, per_customer))?;
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
