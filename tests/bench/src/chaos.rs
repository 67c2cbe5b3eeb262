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
    /// New customers per source (Stripe, Chargebee) during each fault.
    #[arg(long, default_value_t = Plan::full().customers)]
    customers: usize,
    /// Changes of each customer after its creation.
    #[arg(long, default_value_t = Plan::full().updates)]
    updates: usize,
    /// Seconds a PostgreSQL outage, a cut-off NATS node and CRM latency last.
    #[arg(long, default_value_t = Plan::full().outage.as_secs())]
    outage_secs: u64,
    /// Stripe webhooks (and Chargebee changes) per second.
    #[arg(long, default_value_t = Plan::full().rate)]
    rate: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let plan = Plan {
        customers: args.customers,
        updates: args.updates,
        outage: Duration::from_secs(args.outage_secs),
        rate: args.rate,
        ..Plan::full()
    };
    let report = run(plan).await;
    println!("{}", report.render());
    if report.passed() {
        println!("chaos: passed");
        ExitCode::SUCCESS
    } else {
        println!("chaos: FAILED");
        ExitCode::FAILURE
    }
}
