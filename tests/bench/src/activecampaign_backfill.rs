//! `bench-activecampaign-backfill` (`make bench-activecampaign-backfill`): Chargebee's "sync
//! all records" of a site whose customers each have a subscription, into an emulated
//! ActiveCampaign account at its 5 requests/s, through the real `billsync activecampaign`
//! process (its contacts go through ActiveCampaign's bulk importer).
//!
//! Prints the API calls the emulated account accepted for the run (per customer, against the
//! `--max-calls-per-customer` goal) and those it refused, the bulk imports and their size,
//! the total time, and the single-record path's bound for the same work (a `contact/sync`
//! and a `contactLists` call per customer at the rate limit). Then compares the account with
//! what the customers say, field by field: one contact per customer, its names, its `Cb_*`
//! fields, its list membership, and no other contact. Exits non-zero on any difference or
//! when the calls per customer exceed the goal. Real NATS and Postgres (the e2e harness
//! starts them if needed); nothing leaves loopback.

use billsync_e2e::workload::ensure_no_differences;
use billsync_e2e::{Stack, StackOptions};
use billsync_ingest::chargebee::snapshot::{self, RunRequest, RunScope};
use billsync_sandbox::{AcContact, AcSnapshot, CbCustomerInput, CbSubscriptionInput};
use clap::Parser;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Benchmark a Chargebee \"sync all\" into ActiveCampaign at AC's rate limit.")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// The emulated account's limit, requests per second.
    #[arg(long, default_value_t = 5)]
    rate: u32,
    /// The run fails when the accepted calls per customer exceed this.
    #[arg(long, default_value_t = 0.1)]
    max_calls_per_customer: f64,
}

/// The list the sync subscribes contacts to: the account's first.
const LIST_ID: &str = "1";
/// Calls per customer on the single-record path: `contact/sync`, then `contactLists`.
const SINGLE_PATH_CALLS: usize = 2;

fn email(i: usize) -> String {
    format!("cbfill{i:05}@example.com")
}

fn plan(i: usize) -> &'static str {
    ["basic-monthly", "pro-monthly", "pro-yearly"][i % 3]
}

fn mrr_cents(i: usize) -> i64 {
    1_000 + i as i64
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = Stack::start(StackOptions {
        ac_requests_per_second: args.rate,
        worker_process: true,
        chargebee_sync: Some(format!("[syncs.options]\nlist_id = {LIST_ID}")),
        chargebee_source_extra: "auto_sync = false".into(),
        ..Default::default()
    })
    .await;
    let list = stack.create_ac_list("customers").await;
    anyhow::ensure!(list == LIST_ID, "the account's first list has id {list}");
    println!(
        "bench-activecampaign-backfill: {} Chargebee customers with a subscription each, \"sync all\" into ActiveCampaign at {} req/s",
        args.customers, args.rate
    );
    let cb = &stack.sandbox.chargebee;
    for i in 0..args.customers {
        cb.create_customer(
            &stack.chargebee_site,
            CbCustomerInput {
                id: Some(format!("cbfill{i:05}")),
                first_name: Some(format!("Cust{i}")),
                last_name: Some("Backfill".into()),
                email: Some(email(i)),
                company: Some(format!("Company {}", i % 97)),
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("customer {i}: {e:?}"))?;
        cb.create_subscription(
            &stack.chargebee_site,
            &format!("cbfill{i:05}"),
            CbSubscriptionInput {
                id: Some(format!("sub_fill{i:05}")),
                plan_id: Some(plan(i).into()),
                status: Some("active".into()),
                currency_code: Some("EUR".into()),
                mrr: Some(mrr_cents(i)),
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("subscription {i}: {e:?}"))?;
    }
    let before = stack
        .sandbox
        .activecampaign
        .request_counts(&stack.ac_account);

    let started = Instant::now();
    let mut last_print = Instant::now();
    let report = snapshot::run(
        &stack.config,
        stack.nats.clone(),
        &RunRequest {
            source: "cb-test",
            destination: "ac-test",
            scope: RunScope::All,
            require_subscription: false,
            wait: Duration::from_secs(6 * 3600),
            unique_id: None,
        },
        |what, n| {
            if last_print.elapsed() > Duration::from_secs(30) {
                println!("  {:.0} s: {what} {n}", started.elapsed().as_secs_f64());
                last_print = Instant::now();
            }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("sync all: {e}"))?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        report.pending.is_empty(),
        "{} records have no outcome",
        report.pending.len()
    );
    let failed = report
        .results
        .iter()
        .filter(|r| r.status == "failed")
        .count();

    let after = stack
        .sandbox
        .activecampaign
        .request_counts(&stack.ac_account);
    let (accepted, refused) = (
        after.accepted - before.accepted,
        after.refused - before.refused,
    );
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let per_customer = accepted as f64 / args.customers as f64;
    let imports = &snapshot.bulk_imports;
    let imported: usize = imports.iter().map(|b| b.queued_contacts).sum();
    let single_bound = (args.customers * SINGLE_PATH_CALLS) as f64 / f64::from(args.rate);
    println!(
        "records: {} with an outcome, {failed} failed",
        report.results.len()
    );
    println!(
        "API calls: {accepted} accepted ({per_customer:.4} per customer, goal <= {}), {refused} refused with 429",
        args.max_calls_per_customer
    );
    println!(
        "bulk imports: {} of {:.1} contacts on average ({imported} contact writes)",
        imports.len(),
        imported as f64 / imports.len().max(1) as f64
    );
    println!(
        "total time: {:.1} s; the single-record path needs at least {} calls per customer = {} calls, {single_bound:.0} s at {} req/s ({:.1}x this run)",
        elapsed.as_secs_f64(),
        SINGLE_PATH_CALLS,
        args.customers * SINGLE_PATH_CALLS,
        args.rate,
        single_bound / elapsed.as_secs_f64()
    );
    ensure_no_differences(&differences(&snapshot, args.customers))?;
    println!(
        "state: as expected ({} contacts, each with its names, Cb_* fields and list)",
        snapshot.contacts.len()
    );
    anyhow::ensure!(failed == 0, "{failed} records failed: {}", report.render());
    anyhow::ensure!(
        per_customer <= args.max_calls_per_customer,
        "{per_customer:.4} calls per customer, over {}",
        args.max_calls_per_customer
    );
    stack.stop().await;
    Ok(())
}

/// Where the account differs from one contact per customer with its names, fields and list
/// (read through indexes: the snapshot's own lookups scan every record).
fn differences(snapshot: &AcSnapshot, customers: usize) -> Vec<String> {
    let mut found = Vec::new();
    if snapshot.contacts.len() != customers {
        found.push(format!(
            "{} contacts for {customers} customers",
            snapshot.contacts.len()
        ));
    }
    let by_email: HashMap<String, &AcContact> = snapshot
        .contacts
        .iter()
        .map(|c| (c.email.to_lowercase(), c))
        .collect();
    let field_ids: HashMap<&str, &str> = snapshot
        .fields
        .iter()
        .map(|f| (f.title.as_str(), f.id.as_str()))
        .collect();
    let values: HashMap<(&str, &str), &str> = snapshot
        .field_values
        .iter()
        .map(|v| ((v.contact.as_str(), v.field.as_str()), v.value.as_str()))
        .collect();
    let subscribed: HashSet<(&str, &str)> = snapshot
        .contact_lists
        .iter()
        .filter(|cl| cl.status == 1)
        .map(|cl| (cl.contact.as_str(), cl.list.as_str()))
        .collect();
    for i in 0..customers {
        let email = email(i);
        let Some(contact) = by_email.get(&email) else {
            found.push(format!("no contact for {email}"));
            continue;
        };
        let mrr = mrr_cents(i);
        let expected = [
            ("firstName", format!("Cust{i}")),
            ("lastName", "Backfill".to_string()),
            ("Cb_chargebeeCustomerStatus", "active".into()),
            ("Cb_orgName", format!("Company {}", i % 97)),
            ("Cb_subscriptionID", format!("sub_fill{i:05}")),
            ("Cb_subscriptionPlanName", plan(i).into()),
            ("Cb_subscriptionStatus", "active".into()),
            ("Cb_currency", "EUR".into()),
            (
                "Cb_subscriptionMRR",
                format!("{}.{:02}", mrr / 100, mrr % 100),
            ),
        ];
        for (field, want) in expected {
            let got = match field {
                "firstName" => Some(contact.first_name.as_str()),
                "lastName" => Some(contact.last_name.as_str()),
                custom => field_ids
                    .get(custom)
                    .and_then(|id| values.get(&(contact.id.as_str(), *id)))
                    .copied(),
            };
            if got != Some(want.as_str()) {
                found.push(format!("{email} {field}: {got:?}, expected {want:?}"));
            }
        }
        if !subscribed.contains(&(contact.id.as_str(), LIST_ID)) {
            found.push(format!("{email} is not subscribed to list {LIST_ID}"));
        }
    }
    found
}
