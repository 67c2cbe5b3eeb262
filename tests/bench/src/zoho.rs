//! `bench-zoho` (`make bench-zoho`): customers with many changes each go through the whole
//! pipeline — signed Stripe webhooks → ingest → JetStream → the Zoho CRM worker → the
//! emulated Zoho organisation — and the run is measured against what batching allows.
//!
//! Each customer is created, gets a subscription, then alternates name changes
//! (`customer.updated`) and subscription changes (`customer.subscription.updated`, a new
//! quantity): every change is one record state Zoho must take (a contact or a deal).
//!
//! Prints, from the emulated organisation's own counts (only what it accepted): API calls
//! per change (the goal with 100-record upserts is ≤ 0.05), API credits used against the
//! minimum for the record states written (1 credit per 10 records), and the total time.
//! The organisation is then compared with the state the changes describe — one contact and
//! one deal per customer, each with its last values — and the run fails when it differs or
//! calls per change exceed `--max-calls-per-change`, or when any request the worker sent
//! is invalid against the Zoho v8 spec (the emulator checks each one). Real NATS and
//! Postgres; nothing leaves loopback.

use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{stripe, ZohoSnapshot};
use clap::Parser;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Benchmark Stripe → Zoho CRM through the whole pipeline with batched upserts.")]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    customers: usize,
    /// Changes in all, spread evenly over the customers (at least 2 each: the customer and
    /// its subscription).
    #[arg(long, default_value_t = 10_000)]
    changes: usize,
    /// The run fails when API calls per change exceed this.
    #[arg(long, default_value_t = 0.05)]
    max_calls_per_change: f64,
}

/// The quantity a subscription has after `step`.
fn quantity(step: usize) -> usize {
    step + 1
}

/// Change `step` of customer `n`: 0 creates the customer, 1 its subscription; then odd steps
/// change the subscription, even ones the customer's name.
fn change(n: usize, step: usize, base: i64) -> Value {
    let customer = format!("cus_B{n:05}");
    let (event_type, object) = match step {
        0 => (
            "customer.created",
            stripe::customer(
                &customer,
                &format!("b{n}@example.com"),
                &format!("Cust{n} V0"),
            ),
        ),
        s if s % 2 == 0 => (
            "customer.updated",
            stripe::customer(
                &customer,
                &format!("b{n}@example.com"),
                &format!("Cust{n} V{s}"),
            ),
        ),
        s => (
            if s == 1 {
                "customer.subscription.created"
            } else {
                "customer.subscription.updated"
            },
            json!({
                "id": format!("sub_B{n:05}"), "object": "subscription", "customer": customer,
                "status": "active", "created": 1_700_000_000, "currency": "usd",
                "items": {"object": "list", "data": [{"id": format!("si_B{n:05}"),
                    "object": "subscription_item", "quantity": quantity(s),
                    "price": {"id": "price_bench", "object": "price", "unit_amount": 1000,
                              "currency": "usd", "recurring": {"interval": "month", "interval_count": 1}}}]},
            }),
        ),
    };
    let mut event = stripe::event(event_type, object);
    event["created"] = json!(base + step as i64);
    event
}

/// Where the organisation differs from what the changes describe.
fn differences(snapshot: &ZohoSnapshot, customers: usize, per_customer: usize) -> Vec<String> {
    let mut differences = Vec::new();
    if snapshot.contacts.len() != customers {
        differences.push(format!(
            "{} contacts, not {customers}",
            snapshot.contacts.len()
        ));
    }
    if snapshot.deals.len() != customers {
        differences.push(format!("{} deals, not {customers}", snapshot.deals.len()));
    }
    let last_name = (0..per_customer).rev().find(|s| s % 2 == 0).unwrap_or(0);
    let last_quantity = (0..per_customer).rev().find(|s| s % 2 == 1).map(quantity);
    for n in 0..customers {
        let email = format!("b{n}@example.com");
        match snapshot.find("Contacts", "Email", &email) {
            Some(c) if c["Last_Name"] == json!(format!("V{last_name}")) => {}
            other => differences.push(format!("contact {email}: {other:?}")),
        }
        if let Some(q) = last_quantity {
            let sub = format!("sub_B{n:05}");
            match snapshot.find("Deals", "Billsync_Subscription_Id", &sub) {
                Some(d) if d["Amount"] == json!(q as f64 * 10.0) => {}
                other => differences.push(format!("deal {sub}: {other:?}")),
            }
        }
    }
    differences
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Arc::new(
        Stack::start(StackOptions {
            // Only Zoho: the stack's Stripe → ActiveCampaign sync is switched off.
            extra_config: "enabled = false\n".into(),
            zoho_sync: Some(String::new()),
            ..Default::default()
        })
        .await,
    );
    let per_customer = (args.changes / args.customers.max(1)).max(2);
    let total = per_customer * args.customers;
    println!(
        "bench-zoho: {} customers x {per_customer} changes = {total} changes",
        args.customers
    );
    let base = chrono_now() - 3600;
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for chunk in (0..args.customers)
        .collect::<Vec<_>>()
        .chunks(args.customers.div_ceil(32))
    {
        let chunk = chunk.to_vec();
        let stack = Arc::clone(&stack);
        senders.spawn(async move {
            for step in 0..per_customer {
                for &n in &chunk {
                    let response = stack.send_stripe(&change(n, step, base)).await;
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
    println!(
        "webhooks accepted: {total} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    eventually(
        "the Zoho worker to settle every change",
        Duration::from_secs(24 * 3600),
        || async {
            (stack.events_in_stream().await as usize >= total
                && stack.worker_idle_for("zoho-test").await)
                .then_some(())
        },
    )
    .await;
    let elapsed = started.elapsed();
    let counts = stack
        .sandbox_request_counts("zoho", &stack.zoho_org)
        .await?;
    let snapshot = stack.sandbox.zoho.snapshot(&stack.zoho_org);
    let calls_per_change = counts.accepted as f64 / total as f64;
    // Every change is one record state to write; 100-record upserts at 1 credit per 10
    // records are the least any client can spend on them.
    let minimum_credits = total.div_ceil(10);
    println!(
        "records: {} contacts, {} deals, {} accounts; access tokens minted: {}",
        snapshot.contacts.len(),
        snapshot.deals.len(),
        snapshot.accounts.len(),
        snapshot.tokens.issued
    );
    println!(
        "API calls: {} accepted ({calls_per_change:.4} per change; goal <= {}), {} refused with 429",
        counts.accepted, args.max_calls_per_change, counts.refused
    );
    println!(
        "API credits: {} used; minimum for the {total} record states written: {minimum_credits} ({:.2}x)",
        snapshot.credits_used,
        snapshot.credits_used as f64 / minimum_credits as f64
    );
    println!(
        "total time: {:.1} s ({:.0} changes/s)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    billsync_e2e::report_spec_checks(&stack.sandbox.url(), "zoho", &stack.zoho_org).await?;
    let differences = differences(&snapshot, args.customers, per_customer);
    for difference in differences.iter().take(20) {
        println!("  differs: {difference}");
    }
    anyhow::ensure!(
        differences.is_empty(),
        "the organisation differs from the expected state in {} place(s)",
        differences.len()
    );
    println!(
        "state: as expected ({} contacts, {} deals)",
        snapshot.contacts.len(),
        snapshot.deals.len()
    );
    anyhow::ensure!(
        calls_per_change <= args.max_calls_per_change,
        "{calls_per_change:.4} API calls per change, over {}",
        args.max_calls_per_change
    );
    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.stop().await,
        Err(_) => anyhow::bail!("a sender still holds the stack"),
    }
    Ok(())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
