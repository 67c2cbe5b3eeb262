//! The command line: one subcommand per service, `up` for all of them, `check-config`.

use crate::services::{self, Service};
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
    /// Record failures in Postgres and serve the admin API.
    Errors,
    /// Load and validate the configuration, then exit.
    CheckConfig,
}

pub async fn execute(args: Args) -> anyhow::Result<()> {
    let role = match args.command {
        Command::Ingest => Role::Ingest,
        Command::Activecampaign => Role::Destination(DestinationKind::Activecampaign),
        Command::Zoho => Role::Destination(DestinationKind::Zoho),
        Command::Pipedrive => Role::Destination(DestinationKind::Pipedrive),
        Command::Errors => Role::Errors,
        Command::Up | Command::CheckConfig => Role::All,
    };
    let config = Config::load_for(&args.config, role)?;
    let selected = match args.command {
        Command::CheckConfig => {
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
        Command::Errors => vec![Service::Errors],
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
