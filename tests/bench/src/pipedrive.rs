//! `bench-pipedrive` (`make bench-pipedrive`): customers with many events each go through the
//! whole pipeline — signed Stripe webhooks → ingest → JetStream → Pipedrive worker → the
//! emulated company, with its token costs, daily budget and 2 s burst window — and the run is
//! compared with the fewest tokens and the shortest time the writes themselves need.
//!
//! Prints the tokens the emulated company charged (it counts only what it accepted) per event
//! and per customer, against the minimum the writes need (5 tokens per write, counted from
//! the events alone: one per state a person or deal takes, and the custom field billsync
//! creates), the API requests accepted and refused, and the total time against the burst
//! bound (minimum writes ÷ the rate) and the budget bound (minimum tokens ÷ the daily
//! budget), and how many requests the emulator checked against the Pipedrive v2 (and v1)
//! spec. Exits non-zero when the company differs from what the events describe or any
//! request was invalid against the spec.

use billsync_e2e::workload::{self, event_for};
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{PdCompany, PdEntity};
use clap::Parser;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What Pipedrive charges for a create or an update (`x-token-cost` in the v2 spec).
const WRITE_TOKENS: u64 = 5;

#[derive(Debug, Parser)]
#[command(
    about = "Benchmark Stripe → Pipedrive through the whole pipeline within its token budget."
)]
struct Args {
    #[arg(long, default_value_t = 1_000)]
    customers: usize,
    /// Events in all, spread evenly over the customers.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// The company's burst limit, requests per rolling 2 s window (Lite: 20).
    #[arg(long, default_value_t = 20)]
    requests_per_2s: u32,
    /// The company's daily token budget (30,000 × plan multiplier × seats).
    #[arg(long, default_value_t = 300_000)]
    daily_tokens: u64,
}

/// One customer as its events describe it in Pipedrive.
#[derive(Debug, Default, Clone, PartialEq)]
struct Expected {
    name: String,
    /// Subscription id → (deal status, value).
    deals: BTreeMap<String, (&'static str, f64)>,
}

/// The person and deal states one customer's events give, and the writes they need at least.
fn expected(customer: usize, per_customer: usize) -> (Expected, u64) {
    let mut state = Expected::default();
    let mut writes = 0;
    for step in 0..per_customer {
        let event = event_for(customer, step);
        let object = &event["data"]["object"];
        match object["object"].as_str() {
            Some("customer") => {
                let name = object["name"].as_str().unwrap_or_default().to_string();
                if name != state.name {
                    state.name = name;
                    writes += 1;
                }
            }
            Some("subscription") => {
                let status = match object["status"].as_str() {
                    Some("trialing" | "incomplete") => "open",
                    Some("canceled" | "incomplete_expired") => "lost",
                    _ => "won",
                };
                let value = 49.0;
                let id = object["id"].as_str().unwrap_or_default().to_string();
                if state.deals.insert(id, (status, value)) != Some((status, value)) {
                    writes += 1;
                }
            }
            _ => {}
        }
    }
    (state, writes)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::start(StackOptions {
        // The ActiveCampaign sync every stack has runs unthrottled, out of the way.
        ac_requests_per_second: 1_000,
        pipedrive_stripe_sync: Some(String::new()),
        pipedrive_extra: format!(
            "requests_per_2s = {}\ndaily_token_budget = {}",
            args.requests_per_2s, args.daily_tokens
        ),
        ..Default::default()
    })
    .await;
    // The company as the plan says, before any event reaches it.
    let token = stack.config.destinations.pipedrive[0]
        .api_token
        .expose()
        .to_string();
    let mut company = PdCompany::new(stack.pd_company.clone(), token);
    company.requests_per_2s = args.requests_per_2s;
    company.daily_tokens = args.daily_tokens;
    stack.sandbox.pipedrive.add_company(company);

    let per_customer = (args.events / args.customers.max(1)).max(1);
    let total_events = per_customer * args.customers;
    println!(
        "bench-pipedrive: {} customers x {per_customer} events = {total_events} events; {} requests per 2 s, {} tokens a day",
        args.customers, args.requests_per_2s, args.daily_tokens
    );
    let started = Instant::now();
    workload::send(&stack, args.customers, per_customer).await;
    println!(
        "webhooks accepted: {total_events} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    eventually(
        "the Pipedrive worker to settle every event",
        Duration::from_secs(24 * 3600),
        || async {
            (stack.events_in_stream().await as usize >= total_events
                && stack.worker_idle_for("pd-test").await)
                .then_some(())
        },
    )
    .await;
    let elapsed = started.elapsed();

    let counts = stack
        .sandbox_request_counts("pipedrive", &stack.pd_company)
        .await?;
    let tokens = stack.sandbox.pipedrive.tokens(&stack.pd_company);
    let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);

    // What the events describe, and the fewest writes (and tokens) that reach it.
    let mut differences = Vec::new();
    let mut minimum_writes = 1; // the "Billing customer id" person field
    let persons = snapshot.live(PdEntity::Person);
    let deals = snapshot.live(PdEntity::Deal);
    for customer in 0..args.customers {
        let (state, writes) = expected(customer, per_customer);
        minimum_writes += writes;
        let email = format!("bench{customer:05}@example.com");
        let found = snapshot.persons_with_email(&email);
        let [person] = found.as_slice() else {
            differences.push(format!("{} persons with {email}", found.len()));
            continue;
        };
        if person["name"] != state.name.as_str() {
            differences.push(format!(
                "{email}: name {} ≠ {:?}",
                person["name"], state.name
            ));
        }
        for (subscription, (status, value)) in &state.deals {
            let title = format!("subscription {subscription}");
            let matching: Vec<&&Value> = deals
                .iter()
                .filter(|d| d["title"].as_str().is_some_and(|t| t.ends_with(&title)))
                .collect();
            match matching.as_slice() {
                [deal]
                    if deal["status"] == *status
                        && deal["value"].as_f64() == Some(*value)
                        && deal["person_id"] == person["id"] => {}
                other => differences.push(format!("{title}: {other:?}")),
            }
        }
    }
    let expected_deals: usize = (0..args.customers)
        .map(|c| expected(c, per_customer).0.deals.len())
        .sum();
    if persons.len() != args.customers || deals.len() != expected_deals {
        differences.push(format!(
            "{} persons and {} deals, expected {} and {expected_deals}",
            persons.len(),
            deals.len(),
            args.customers
        ));
    }
    let minimum_tokens = minimum_writes * WRITE_TOKENS;
    let per_event = |n: u64| n as f64 / total_events as f64;
    let rate = f64::from(args.requests_per_2s) / 2.0;
    let burst_bound = minimum_writes as f64 / rate;
    let budget_bound_days = minimum_tokens as f64 / args.daily_tokens as f64;
    println!(
        "persons: {}, organizations: {}, deals: {}",
        persons.len(),
        snapshot.live(PdEntity::Organization).len(),
        deals.len()
    );
    println!(
        "tokens charged by the company: {} ({:.2} per event, {:.2} per customer); {} calls refused for lack of tokens",
        tokens.spent,
        per_event(tokens.spent),
        tokens.spent as f64 / args.customers as f64,
        tokens.refused
    );
    println!(
        "minimum the writes need: {minimum_writes} writes x {WRITE_TOKENS} = {minimum_tokens} tokens ({:.2} per event); tokens / minimum: {:.2}",
        per_event(minimum_tokens),
        tokens.spent as f64 / minimum_tokens as f64
    );
    // Matching a new customer to an existing person is one search (20 tokens) the seed's
    // rules need whatever the implementation: the minimum with it.
    let with_matching = minimum_tokens + 20 * args.customers as u64;
    println!(
        "minimum with one person search per new customer (the seed's matching): {with_matching} tokens; tokens / that: {:.2}",
        tokens.spent as f64 / with_matching as f64
    );
    println!(
        "API requests: {} accepted ({:.2} per event), {} refused with 429",
        counts.accepted,
        per_event(counts.accepted),
        counts.refused
    );
    let with_searches = (minimum_writes + args.customers as u64) as f64 / rate;
    println!(
        "burst bound with one search per new customer: {with_searches:.1} s, ratio {:.2}",
        elapsed.as_secs_f64() / with_searches
    );
    println!(
        "total time: {:.1} s; burst bound ({minimum_writes} writes at {rate} req/s): {burst_bound:.1} s, ratio {:.2}; budget bound: {budget_bound_days:.3} days of {} tokens",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() / burst_bound,
        args.daily_tokens
    );
    billsync_e2e::report_spec_checks(&stack.sandbox.url(), "pipedrive", &stack.pd_company).await?;
    for difference in differences.iter().take(20) {
        println!("  differs: {difference}");
    }
    anyhow::ensure!(
        differences.is_empty(),
        "the company differs from the expected state in {} place(s)",
        differences.len()
    );
    println!(
        "state: as expected ({} persons, {} deals)",
        persons.len(),
        deals.len()
    );
    stack.stop().await;
    Ok(())
}
