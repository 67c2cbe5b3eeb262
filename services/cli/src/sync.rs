//! `billsync sync initial|all|validate|reset-unique-id` and `billsync sync-now`: runs from
//! Chargebee to one destination, the validation step before them, the deliberate reset of a
//! Pipedrive sync's unique id lock, and an immediate poll.

use anyhow::{bail, Context};
use billsync_config::Config;
use billsync_ingest::chargebee::snapshot::{self, RunRequest, RunScope, UniqueIdRule};
use billsync_ingest::chargebee::{self, PollReport};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Sync the 10 latest customers and show each one's outcome (fix errors, run it again,
    /// or go on with `sync all`).
    Initial(RunArgs),
    /// Sync every customer, subscription and invoice; customers failing validation are
    /// skipped and listed.
    All(RunArgs),
    /// List the customers a full sync would skip (no email; no subscription with
    /// --require-subscription) and write them to a CSV.
    Validate(RunArgs),
    /// Forget the unique id a Pipedrive sync's first full sync locked, deliberately: stop
    /// the Pipedrive workers first, then start them and run `sync all` to lock the new one.
    ResetUniqueId(ConnectionPair),
}

#[derive(Debug, Args)]
pub struct ConnectionPair {
    /// The Chargebee source connection.
    #[arg(long)]
    pub connection: String,
    /// The Pipedrive destination connection.
    #[arg(long)]
    pub to: String,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The Chargebee source connection.
    #[arg(long)]
    pub connection: String,
    /// The destination connection.
    #[arg(long)]
    pub to: String,
    /// Also skip customers without a subscription (for syncs that need one).
    #[arg(long)]
    pub require_subscription: bool,
    /// Where the validation CSV goes.
    #[arg(long, default_value = "billsync-validation.csv")]
    pub csv: PathBuf,
    /// How long to wait for the destination's outcomes.
    #[arg(long, default_value_t = 300)]
    pub wait_secs: u64,
}

fn spinner() -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}").expect("template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

pub async fn execute(config: &Config, command: SyncCommand) -> anyhow::Result<()> {
    let (args, scope) = match command {
        SyncCommand::Initial(args) => (args, Some(RunScope::LatestCustomers(10))),
        SyncCommand::All(args) => (args, Some(RunScope::All)),
        SyncCommand::Validate(args) => (args, None),
        SyncCommand::ResetUniqueId(pair) => {
            return reset_unique_id(config, &pair, &mut std::io::stdout()).await
        }
    };
    // What the destination matches customers by, and whether it needs subscriptions.
    let destination = billsync_pipedrive::validation_rule(config, &args.connection, &args.to)?;
    let require_subscription =
        args.require_subscription || destination.as_ref().is_some_and(|d| d.require_subscription);
    let unique_id = match destination {
        Some(billsync_pipedrive::ValidationRule {
            label,
            unique_id: Some(read),
            ..
        }) => UniqueIdRule {
            label,
            read: Box::new(move |customer| read(&serde_json::Value::Object(customer.clone()))),
        },
        _ => UniqueIdRule::email(),
    };
    let bar = spinner();
    let Some(scope) = scope else {
        let issues = snapshot::validate_connection(
            config,
            &args.connection,
            require_subscription,
            &unique_id,
            |what, n| bar.set_message(format!("read {n} {what}")),
        )
        .await?;
        bar.finish_and_clear();
        std::fs::write(&args.csv, snapshot::issues_csv(&issues))
            .with_context(|| format!("writing {}", args.csv.display()))?;
        println!(
            "{} customers would be skipped (no {}{}); details in {}",
            issues.len(),
            unique_id.label,
            if require_subscription {
                ", or no subscription"
            } else {
                ""
            },
            args.csv.display()
        );
        for issue in issues.iter().take(20) {
            println!(
                "  {:<24} {:<32} {}",
                issue.customer_id, issue.email, issue.problem
            );
        }
        return Ok(());
    };
    let client = billsync_bus::connect(&config.nats.url, "billsync-sync").await?;
    let request = RunRequest {
        source: &args.connection,
        destination: &args.to,
        scope,
        require_subscription,
        wait: Duration::from_secs(args.wait_secs),
        unique_id: Some(&unique_id),
    };
    let report = snapshot::run(config, client, &request, |what, n| {
        bar.set_message(format!("{what}: {n}"))
    })
    .await?;
    bar.finish_and_clear();
    if !report.skipped_by_validation.is_empty() {
        std::fs::write(
            &args.csv,
            snapshot::issues_csv(&report.skipped_by_validation),
        )
        .with_context(|| format!("writing {}", args.csv.display()))?;
        println!(
            "validation: skipped customers are listed in {} and, until fixed or ignored, \
             in `billsync errors list --class invalid_event`",
            args.csv.display()
        );
    }
    print!("{}", report.render());
    if report.count("failed") > 0 || !report.pending.is_empty() {
        println!(
            "Fix the errors above and run this again, or see them with `billsync errors list \
             --connection {}`.",
            args.to
        );
        bail!(
            "{} records failed and {} are pending",
            report.count("failed"),
            report.pending.len()
        );
    }
    Ok(())
}

/// Polls a Chargebee connection now; refused while a poll of it is running anywhere.
pub async fn sync_now(config: &Config, connection: &str, json: bool) -> anyhow::Result<()> {
    let client = billsync_bus::connect(&config.nats.url, "billsync-sync-now").await?;
    let publisher = billsync_ingest::publisher(config, client);
    let report = chargebee::sync_now(config, publisher, connection, &CancellationToken::new())
        .await
        // A poll error's message already carries its cause (Chargebee's answer, say): the
        // chain printed under it would repeat it.
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    if json {
        println!("{}", chargebee::admin::report_json(&report));
    } else {
        println!("{}", describe_poll(&report));
    }
    Ok(())
}

/// One sentence for a person: what the poll brought in and where the cursor stands.
fn describe_poll(report: &PollReport) -> String {
    let cursor = chrono::DateTime::from_timestamp(report.cursor_after, 0)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| report.cursor_after.to_string());
    let took = report.finished.duration_since(report.started).as_secs_f64();
    format!(
        "Polled {}: {} new event(s) published, {} already had, {} not carried; {} page(s) in \
         {took:.2} s{}. The next poll starts from {cursor}.",
        report.connection,
        report.published,
        report.duplicates,
        report.skipped,
        report.pages,
        if report.completed {
            ""
        } else {
            " (stopped before the last page)"
        },
    )
}

/// `billsync sync reset-unique-id`: removes the lock and says what it was.
async fn reset_unique_id(
    config: &Config,
    pair: &ConnectionPair,
    out: &mut impl std::io::Write,
) -> anyhow::Result<()> {
    let nats = billsync_bus::connect(&config.nats.url, "billsync-sync").await?;
    let removed =
        billsync_pipedrive::reset_unique_id_lock(config, &nats, &pair.connection, &pair.to).await?;
    match removed {
        Some(lock) => writeln!(
            out,
            "Reset the unique id of {} → {}: it was {:?}, locked at {} (run {}). Start the \
             Pipedrive workers, then run `billsync sync all --connection {} --to {}` to lock \
             the configured one.",
            pair.connection,
            pair.to,
            lock.unique_id,
            lock.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            lock.run_id,
            pair.connection,
            pair.to
        )?,
        None => writeln!(
            out,
            "{} → {} has no unique id lock: no full sync has run yet.",
            pair.connection, pair.to
        )?,
    }
    Ok(())
}
