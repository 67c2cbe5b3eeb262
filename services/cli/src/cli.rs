//! The command line: one subcommand per service, `up` for all of them, `check-config`,
//! `backfill`; and the operator's `errors list|ignore|retry|export`, `runs`, `replay` and
//! `status`.

use crate::backfill::{self, BackfillCommand};
use crate::operator::{self, AdminArgs, ErrorsCommand, RunsArgs};
use crate::replay::{self, ReplayArgs};
use crate::services::{self, Service};
use crate::status::{self, StatusArgs};
use crate::sync::{self, SyncCommand};
use anyhow::Context;
use billsync_config::{Config, Role};
use billsync_events::DestinationKind;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Parser)]
#[command(
    name = "billsync",
    version,
    about = "Keeps CRMs in step with billing systems."
)]
pub struct Args {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "BILLSYNC_CONFIG",
        default_value = "billsync.toml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run every service in one process (a single small machine).
    Up,
    /// Receive Stripe webhooks and publish them to JetStream.
    Ingest,
    /// Write events into ActiveCampaign.
    Activecampaign,
    /// Write events into Zoho CRM.
    Zoho,
    /// Write events into Pipedrive.
    Pipedrive,
    /// Record failures in Postgres and serve the admin API; with a subcommand, act on the
    /// sync errors through that API.
    Errors {
        #[command(subcommand)]
        action: Option<ErrorsCommand>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List sync runs (initial syncs, full syncs, backfills), or one run's records.
    Runs(RunsArgs),
    /// Send the events that entered billsync in a time range again to one destination.
    Replay(ReplayArgs),
    /// Show the streams, each consumer's backlog, the Chargebee poll cursors and the open
    /// failures per destination connection.
    Status(StatusArgs),
    /// Load and validate the configuration, then exit.
    CheckConfig,
    /// Initial sync, full sync and validation from a Chargebee connection to a destination.
    Sync {
        #[command(subcommand)]
        run: SyncCommand,
    },
    /// Poll a Chargebee connection now (refused while a poll of it is running).
    SyncNow {
        #[arg(long)]
        connection: String,
        /// Print the poll's report as JSON instead of a sentence.
        #[arg(long)]
        json: bool,
    },
    /// Publish a source's existing records as snapshot events (historical sync).
    Backfill {
        #[command(subcommand)]
        source: BackfillCommand,
    },
}

pub async fn execute(args: Args) -> anyhow::Result<()> {
    let role = match args.command {
        Command::Ingest
        | Command::Backfill { .. }
        | Command::Sync { .. }
        | Command::SyncNow { .. } => Role::Ingest,
        Command::Activecampaign => Role::Destination(DestinationKind::Activecampaign),
        Command::Zoho => Role::Destination(DestinationKind::Zoho),
        Command::Pipedrive => Role::Destination(DestinationKind::Pipedrive),
        // The operator commands need the admin token, or no secret at all.
        Command::Errors { .. } | Command::Runs(_) | Command::Replay(_) | Command::Status(_) => {
            Role::Errors
        }
        Command::Up | Command::CheckConfig => Role::All,
    };
    let config = Config::load_for(&args.config, role)?;
    let selected = match args.command {
        Command::Backfill { source } => return backfill::execute(config, source).await,
        Command::Sync { run } => return sync::execute(&config, run).await,
        Command::SyncNow { connection, json } => {
            return sync::sync_now(&config, &connection, json).await
        }
        Command::Errors {
            action: Some(action),
            admin,
        } => return operator::errors(&config, &admin, action, &mut std::io::stdout()).await,
        Command::Runs(runs) => return operator::runs(&config, runs, &mut std::io::stdout()).await,
        Command::Replay(replay) => {
            return replay::execute(&config, &replay, &mut std::io::stdout()).await
        }
        Command::Status(status) => {
            return status::execute(&config, &status, &mut std::io::stdout()).await
        }
        Command::CheckConfig => {
            // What each worker checks at start: the options and mappings of the syncs into
            // each destination connection, as its destination declares them.
            for (kind, connection) in config.destination_connections() {
                match kind {
                    DestinationKind::Activecampaign => {
                        billsync_activecampaign::check_syncs(&config, &connection)?
                    }
                    DestinationKind::Zoho => billsync_zoho::check_syncs(&config, &connection)?,
                    DestinationKind::Pipedrive => {
                        billsync_pipedrive::check_syncs(&config, &connection)?
                    }
                }
            }
            println!(
                "{}: valid ({} Stripe, {} Chargebee sources; {} ActiveCampaign, {} Zoho, {} Pipedrive destinations; {} syncs)",
                args.config.display(),
                config.sources.stripe.len(),
                config.sources.chargebee.len(),
                config.destinations.activecampaign.len(),
                config.destinations.zoho.len(),
                config.destinations.pipedrive.len(),
                config.syncs.len(),
            );
            return Ok(());
        }
        Command::Up => Service::ALL.to_vec(),
        Command::Ingest => vec![Service::Ingest],
        Command::Activecampaign => vec![Service::Activecampaign],
        Command::Zoho => vec![Service::Zoho],
        Command::Pipedrive => vec![Service::Pipedrive],
        Command::Errors { action: None, .. } => vec![Service::Errors],
    };
    let name = match selected.as_slice() {
        [one] => format!("billsync-{}", one.name()),
        _ => "billsync".to_string(),
    };
    let _telemetry = billsync_telemetry::init(&name, &config.telemetry)
        .context("setting up logging and tracing")?;
    let shutdown = billsync_telemetry::shutdown_on_signals();
    services::run(Arc::new(config), &selected, &name, shutdown).await
}
