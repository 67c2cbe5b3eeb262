//! `billsync backfill stripe --connection C [--resource R]`: walk a source's list APIs and
//! publish every object as a snapshot event, resumably, with a progress bar.

use anyhow::Context;
use billsync_config::Config;
use billsync_ingest::stripe::backfill::{
    BackfillOptions, Completed, StripeBackfill, TerminalProgress, Trigger,
};
use billsync_ingest::stripe::StripeResource;
use clap::Subcommand;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum BackfillCommand {
    /// Publish every Stripe object of a connection as a snapshot event (resumes an
    /// unfinished run of the connection; waits while another process runs one).
    Stripe {
        /// The Stripe connection (`sources.stripe[].name`).
        #[arg(long)]
        connection: String,
        /// Only this resource: customer, subscription, invoice, charge or checkout_session.
        /// Repeatable; by default every resource a sync of the connection takes.
        #[arg(long = "resource", value_name = "RESOURCE", value_parser = parse_resource)]
        resources: Vec<StripeResource>,
        /// Abandon an unfinished run of the connection and start a new one.
        #[arg(long)]
        fresh: bool,
        /// Seconds a crashed run keeps its lease before another may resume it.
        #[arg(long, default_value_t = 15, hide = true)]
        lease_ttl_secs: u64,
    },
}

fn parse_resource(name: &str) -> Result<StripeResource, String> {
    StripeResource::parse(name).ok_or_else(|| {
        let names: Vec<&str> = StripeResource::ALL.iter().map(|r| r.name()).collect();
        format!(
            "unknown resource {name:?}; expected one of {}",
            names.join(", ")
        )
    })
}

pub async fn execute(config: Config, command: BackfillCommand) -> anyhow::Result<()> {
    let BackfillCommand::Stripe {
        connection,
        resources,
        fresh,
        lease_ttl_secs,
    } = command;
    // Logs would tear the progress bar: warnings and errors only, unless RUST_LOG says more.
    let mut telemetry = config.telemetry.clone();
    telemetry.log_level = "warn".into();
    let _telemetry = billsync_telemetry::init("billsync-backfill", &telemetry)
        .context("setting up logging and tracing")?;
    let shutdown = billsync_telemetry::shutdown_on_signals();

    let nats = billsync_bus::connect(&config.nats.url, "billsync-backfill").await?;
    let backfill = StripeBackfill::prepare(&config, nats.clone(), &connection)
        .await
        .with_context(|| format!("preparing the backfill of {connection}"))?;
    let options = BackfillOptions {
        resources: (!resources.is_empty()).then_some(resources),
        fresh,
        trigger: Trigger::Command,
        lease_ttl: Duration::from_secs(lease_ttl_secs.max(1)),
        ..BackfillOptions::default()
    };
    let progress = TerminalProgress::default();
    let completed = backfill
        .run(&options, &progress, &shutdown)
        .await
        .with_context(|| format!("backfill of {connection}"))?;
    nats.flush().await.ok();
    match completed {
        Completed::Ran(report) => {
            let parts: Vec<String> = report
                .resources
                .iter()
                .map(|(resource, cursor)| {
                    format!(
                        "{resource} {} published, {} skipped",
                        cursor.published, cursor.skipped
                    )
                })
                .collect();
            println!(
                "Backfill {} of {connection} finished{}: {}; {} snapshot events in total.",
                report.run_id,
                if report.resumed { " (resumed)" } else { "" },
                parts.join("; "),
                report.published(),
            );
        }
        Completed::AlreadyDone(marker) => {
            println!(
                "The historical sync of {connection} already ran ({}).",
                marker.run_id
            );
        }
    }
    Ok(())
}
