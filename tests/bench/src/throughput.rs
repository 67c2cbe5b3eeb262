//! `bench-throughput` (`make bench-throughput`): how fast one ActiveCampaign worker settles
//! events when the CRM is not the limit (issue 18), and what each event costs in CRM calls,
//! NATS messages and CPU.
//!
//! billsync runs as processes (`billsync ingest`, `errors`, `activecampaign`) on a
//! nats-server of the benchmark's own (so that its `/varz` counts nothing else), a fresh
//! database and the `billsync-sandbox` binary serving an ActiveCampaign account with its rate
//! limit lifted. The workload's signed Stripe webhooks (customers created, subscribed,
//! changed, charged) are posted to ingest first; then the worker is started and timed until
//! it has settled all of them. Only events the worker synced count as throughput; skipped
//! and failed ones, and CRM calls refused with 429, are reported beside it. The account is
//! then compared with the state the events describe.
//!
//! Prints events, wall time, events/s, CRM requests per event, NATS messages per event (the
//! server's counts and per connection), CPU seconds per event of nats-server and of the
//! worker, and the goal of 500 events/s with the ratio reached; missing the goal is printed,
//! not failed. Exits non-zero when events are not synced or the account differs.

use billsync_e2e::pipeline::{Pipeline, PipelineOptions, ProcessUsage, SubjectCensus};
use billsync_e2e::workload::{differences, events};
use clap::Parser;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(
    about = "Worker throughput with an unthrottled CRM: events/s, CRM calls, NATS \
                   messages and CPU per event."
)]
struct Args {
    /// New Stripe customers.
    #[arg(long, default_value_t = 3_000)]
    customers: usize,
    /// Events of each customer: created, subscription created, subscription updated,
    /// charged, updated, then updates, subscription changes and charges in turn.
    #[arg(long, default_value_t = 3)]
    per_customer: usize,
    /// `[workers] max_in_flight` (billsync's default when unset).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Webhooks posted to ingest at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Events per second the worker should reach (issue 18).
    #[arg(long, default_value_t = 500.0)]
    goal: f64,
    /// Also count every message by subject while the worker runs (it doubles what the
    /// server sends, so the CPU figures of that run are not comparable).
    #[arg(long)]
    subjects: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let total = (args.customers * args.per_customer) as u64;
    let mut pipeline = Pipeline::start(PipelineOptions {
        max_in_flight: args.max_in_flight,
    })
    .await?;
    pipeline.start_service("ingest").await;
    pipeline.start_service("errors").await;
    println!(
        "bench-throughput: {} customers x {} events = {total} events; billsync processes, \
         nats-server on :{}, ActiveCampaign account without rate limit; logs in {}",
        args.customers,
        args.per_customer,
        pipeline.nats.port,
        pipeline.log_dir().display()
    );

    let before_ingest = pipeline.nats_counts().await?;
    let started = Instant::now();
    pipeline
        .post_all(
            events(args.customers, args.per_customer),
            args.concurrency,
            None,
        )
        .await?;
    let ingest_time = started.elapsed();
    let after_ingest = pipeline.nats_counts().await?;
    let per_event = |n: f64| n / total as f64;
    println!(
        "ingest: {total} webhooks in {:.1} s ({:.0}/s), {:.2} NATS messages per event",
        ingest_time.as_secs_f64(),
        total as f64 / ingest_time.as_secs_f64(),
        per_event(
            after_ingest
                .billsync()
                .since(&before_ingest.billsync())
                .total() as f64
        ),
    );

    let census = match args.subjects {
        true => Some(SubjectCensus::start(&pipeline.nats.url()).await?),
        false => None,
    };
    let nats_pid = pipeline.nats.pid().expect("nats-server runs");
    let nats_before = ProcessUsage::of(nats_pid).unwrap_or_default();
    let worker_started = Instant::now();
    pipeline.start_service("activecampaign").await;
    billsync_e2e::eventually(
        "the worker to settle every event",
        Duration::from_secs(24 * 3600),
        || async { (pipeline.worker_backlog().await? == 0).then_some(()) },
    )
    .await;
    let wall = worker_started.elapsed().as_secs_f64();
    let worker = ProcessUsage::of(pipeline.pid("activecampaign").expect("the worker runs"))
        .unwrap_or_default();
    let nats_cpu = ProcessUsage::of(nats_pid).unwrap_or_default().cpu_secs - nats_before.cpu_secs;
    let after_worker = pipeline.nats_counts().await?;
    let shapes = census.map(SubjectCensus::finish);
    pipeline.settled(total, Duration::from_secs(600)).await;

    let results = pipeline.worker_events().await?;
    let result = |name: &str| results.get(name).copied().unwrap_or(0);
    let synced = result("synced");
    let counts = pipeline.request_counts().await?;
    let messages = after_worker.billsync().since(&after_ingest.billsync());
    let rate = synced as f64 / wall;
    println!(
        "worker: {total} events settled in {wall:.1} s: {synced} synced, {} skipped, {} failed \
         ({} requeued on the way)",
        result("skipped"),
        result("failed"),
        result("requeued"),
    );
    println!("events/s synced by the worker: {rate:.1}");
    println!(
        "CRM requests per event: {:.2} accepted ({} in all), {:.2} refused with 429 ({})",
        per_event(counts.accepted as f64),
        counts.accepted,
        per_event(counts.refused as f64),
        counts.refused,
    );
    println!(
        "NATS messages per event while the worker ran: {:.2} ({:.2} received by the server, \
         {:.2} sent; the harness's own left out)",
        per_event(messages.total() as f64),
        per_event(messages.received as f64),
        per_event(messages.sent as f64),
    );
    for (name, connection) in after_worker.connections_since(&after_ingest) {
        if connection.total() > 0 {
            println!(
                "  {name}: {:.2} published + {:.2} delivered per event",
                per_event(connection.received as f64),
                per_event(connection.sent as f64)
            );
        }
    }
    println!(
        "CPU per event: nats-server {:.2} ms ({nats_cpu:.1} s, {:.0}% of a core), worker \
         {:.2} ms ({:.1} s, {:.0}% of a core)",
        per_event(nats_cpu * 1000.0),
        100.0 * nats_cpu / wall,
        per_event(worker.cpu_secs * 1000.0),
        worker.cpu_secs,
        100.0 * worker.cpu_secs / wall,
    );
    for (shape, count) in shapes.iter().flatten().take(15) {
        println!(
            "  subject {shape}: {:.2} per event",
            per_event(*count as f64)
        );
    }
    println!("machine: {}", billsync_e2e::pipeline::machine_load());
    println!(
        "goal: {:.0} events/s per connection; measured {rate:.1} = {:.2}x the goal{}",
        args.goal,
        rate / args.goal,
        if rate >= args.goal {
            ""
        } else {
            " (goal NOT met)"
        }
    );

    let snapshot = pipeline.snapshot().await?;
    let differences = differences(&snapshot, args.customers, args.per_customer);
    for difference in differences.iter().take(20) {
        println!("  differs: {difference}");
    }
    pipeline.stop().await;
    anyhow::ensure!(
        synced + result("skipped") == total && result("failed") == 0,
        "{} of {total} events were not synced",
        total.saturating_sub(synced + result("skipped"))
    );
    anyhow::ensure!(
        differences.is_empty(),
        "the account differs from the expected state in {} place(s)",
        differences.len()
    );
    println!(
        "state: as expected ({} contacts, {} orders)",
        snapshot.contacts.len(),
        snapshot.ecom_orders.len()
    );
    Ok(())
}
