//! `make chaos`: billsync on a three-node JetStream cluster, every service a process with
//! replicas, under a mixed Stripe and Chargebee load into every CRM while a schedule of
//! faults runs; prints per fault what was lost, duplicated or reordered (all must be 0), the
//! events without an outcome and the time to drain, and exits non-zero on any difference.
//! Needs root (network namespaces). See `billsync_e2e::chaos`.

use billsync_e2e::chaos::{run, Plan};
use clap::Parser;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    about = "Chaos: faults on a 3-node JetStream cluster with nothing lost, doubled or reordered."
)]
struct Args {
    /// The short plan (3 + 3 customers per fault, 4 events each, 8 s outages) instead of the
    /// full one; the other options refine it.
    #[arg(long)]
    short: bool,
    /// New customers per source (Stripe, Chargebee) during each fault [full: 32].
    #[arg(long)]
    customers: Option<usize>,
    /// Changes of each customer after its creation [full: 9].
    #[arg(long)]
    updates: Option<usize>,
    /// Seconds a PostgreSQL outage, a cut-off NATS node and CRM latency last [full: 30].
    #[arg(long)]
    outage_secs: Option<u64>,
    /// Stripe webhooks (and Chargebee changes) per second [full: 60].
    #[arg(long)]
    rate: Option<u32>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let base = if args.short {
        Plan::short()
    } else {
        Plan::full()
    };
    let plan = Plan {
        customers: args.customers.unwrap_or(base.customers),
        updates: args.updates.unwrap_or(base.updates),
        outage: args.outage_secs.map_or(base.outage, Duration::from_secs),
        rate: args.rate.unwrap_or(base.rate),
        ..base
    };
    // Ctrl-C or SIGTERM: dropping the run stops every process it started (its NATS nodes
    // and namespaces, PostgreSQL, the sandbox, billsync) instead of leaving them running.
    let stop = billsync_telemetry::shutdown_on_signals();
    let report = tokio::select! {
        report = run(plan) => report,
        _ = stop.cancelled() => {
            eprintln!("chaos: interrupted; everything it started is stopped");
            return ExitCode::from(130);
        }
    };
    println!("{}", report.render());
    if report.passed() {
        println!("chaos: passed");
        ExitCode::SUCCESS
    } else {
        println!("chaos: FAILED");
        ExitCode::FAILURE
    }
}
