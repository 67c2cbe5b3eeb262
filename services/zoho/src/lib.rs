//! The Zoho CRM worker: applies billing events to Zoho CRM accounts (seed 003).
//!
//! One worker loop per configured Zoho CRM connection (see `billsync-worker`), all in one
//! service that also serves `/healthz`, `/readyz` and `/metrics`. Customers become
//! contacts (`contacts`) with their company's account (`accounts`), subscriptions become
//! deals (`deals`), from Chargebee (`chargebee_flow`) and Stripe (`stripe_flow`); writes of
//! concurrent events share Zoho's 100-record upserts (`destination`).

mod accounts;
pub mod api;
mod chargebee_flow;
mod contacts;
mod deals;
mod destination;
mod link_fields;
mod options;
mod stripe_flow;
mod sync_rules;

pub use contacts::CUSTOMER_ID_FIELD;
pub use deals::SUBSCRIPTION_ID_FIELD;
pub use destination::{ZohoDestination, BATCH_WAIT, CONCURRENCY};
pub use options::ZohoSyncs;
pub use sync_rules::check_syncs;

use anyhow::Context;
use async_nats::jetstream;
use billsync_bus::{StreamSettings, Topology};
use billsync_config::Config;
use billsync_events::{DestinationKind, FailureClass};
use billsync_worker::{serve_destinations, DeliveryError, DestinationStores};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs a worker per Zoho CRM connection until `shutdown`, then drains them. Each
/// connection's link fields are made sure of (created when missing) and its deal pipeline,
/// stages and owner checked against Zoho first: a field billsync may not create, or a
/// mismatch, stops the start with a message saying what to do; Zoho out of reach only delays
/// the checks to the first event.
pub async fn run(
    config: Arc<Config>,
    client: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let destinations = if config.destinations.zoho.is_empty() {
        Vec::new()
    } else {
        let stores = DestinationStores::open(&config, &client).await?;
        let (tokens, budgets) = open_buckets(&config, &client).await?;
        let timeout = Duration::from_millis(config.workers.request_timeout_ms);
        let mut destinations = Vec::new();
        for connection in &config.destinations.zoho {
            let destination = ZohoDestination::new(
                &config,
                connection,
                stores.links.clone(),
                tokens.clone(),
                budgets.clone(),
                timeout,
            )
            .with_context(|| format!("configuring Zoho CRM connection {}", connection.name))?
            .with_shutdown(shutdown.clone());
            for (what, checked) in [
                ("link fields", destination.ensure_link_fields().await),
                ("deal pipeline", destination.check_deal_settings().await),
            ] {
                match checked {
                    Ok(()) => {}
                    // A link field billsync may not create, or a pipeline, stage or owner
                    // Zoho does not have: fix the configuration.
                    Err(DeliveryError::Permanent {
                        class: FailureClass::Configuration,
                        message,
                        http_status: None,
                        ..
                    }) => anyhow::bail!(
                        "{}: Zoho CRM connection {}: {message}",
                        config.origin.display(),
                        connection.name
                    ),
                    // Zoho out of reach, or refusing the credentials (readiness says so): the
                    // first event checks again.
                    Err(error) => {
                        tracing::warn!(connection = %connection.name, %error, check = what, "Could not check Zoho CRM yet; checking again before the first event.");
                    }
                }
            }
            destinations.push(destination);
        }
        destinations
    };
    serve_destinations(
        DestinationKind::Zoho,
        config,
        client,
        listener,
        shutdown,
        move |_, _| Ok(destinations),
    )
    .await
}

/// The buckets of the shared OAuth tokens and the shared credits ledger.
pub async fn open_buckets(
    config: &Config,
    client: &async_nats::Client,
) -> anyhow::Result<(jetstream::kv::Store, jetstream::kv::Store)> {
    let topology = Topology::new(&config.nats.prefix);
    let js = jetstream::new(client.clone());
    let settings = StreamSettings::from(&config.nats);
    let tokens = topology
        .ensure_bucket(&js, topology.tokens_bucket(), &settings, Duration::ZERO)
        .await
        .context("opening the OAuth tokens bucket")?;
    let budgets = topology
        .ensure_bucket(&js, topology.budgets_bucket(), &settings, Duration::ZERO)
        .await
        .context("opening the budgets bucket")?;
    Ok((tokens, budgets))
}
