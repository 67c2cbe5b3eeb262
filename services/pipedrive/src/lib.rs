//! The Pipedrive worker: applies billing events to Pipedrive companies (seed 004) — customers
//! as persons matched by a unique id, companies as organizations, subscriptions and one-time
//! invoices as deals — on Pipedrive's v2 API within its daily token budget.
//!
//! One worker loop per configured Pipedrive connection (see `billsync-worker`), all in one
//! service that also serves `/healthz`, `/readyz` and `/metrics`.

pub mod api;
mod chargebee_flow;
mod deals;
mod destination;
mod fields;
mod first_sync;
mod links;
mod options;
mod organizations;
mod persons;
mod stripe_flow;
mod sync_rules;

pub use destination::PipedriveDestination;
pub use first_sync::FirstFullSync;
pub use options::{PipedriveSyncs, CUSTOMER_ID_FIELD};
pub use sync_rules::{check_syncs, validation_rule, ValidationRule};

use anyhow::Context;
use billsync_bus::{StreamSettings, Topology};
use billsync_config::Config;
use billsync_events::{DestinationKind, SourceKind};
use billsync_worker::{serve_destinations, DestinationStores, RecordStore};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const PIPEDRIVE: &str = "Pipedrive";

/// Runs a worker per Pipedrive connection until `shutdown`, then drains them. Refuses to
/// start when a sync's unique id differs from the one its first full sync locked.
pub async fn run(
    config: Arc<Config>,
    client: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let budgets = if config.destinations.pipedrive.is_empty() {
        None
    } else {
        let stores = DestinationStores::open(&config, &client).await?;
        check_unique_id_locks(&config, &stores).await?;
        let topology = Topology::new(&config.nats.prefix);
        let js = async_nats::jetstream::new(client.clone());
        Some(
            topology
                .ensure_bucket(
                    &js,
                    topology.budgets_bucket(),
                    &StreamSettings::from(&config.nats),
                    Duration::ZERO,
                )
                .await
                .context("opening the budgets bucket")?,
        )
    };
    let stopping = shutdown.clone();
    serve_destinations(
        DestinationKind::Pipedrive,
        config,
        client,
        listener,
        shutdown,
        move |config, stores| {
            let timeout = Duration::from_millis(config.workers.request_timeout_ms);
            let budgets = budgets.expect("opened above when connections are configured");
            config
                .destinations
                .pipedrive
                .iter()
                .map(|connection| {
                    PipedriveDestination::new(
                        config,
                        connection,
                        stores.links.clone(),
                        stores.rate_limits.clone(),
                        budgets.clone(),
                        timeout,
                    )
                    .map(|destination| destination.with_shutdown(stopping.clone()))
                    .with_context(|| {
                        format!("configuring Pipedrive connection {}", connection.name)
                    })
                })
                .collect()
        },
    )
    .await
}

/// The seed's rule: the unique id can only be changed before the first full sync.
async fn check_unique_id_locks(config: &Config, stores: &DestinationStores) -> anyhow::Result<()> {
    for connection in &config.destinations.pipedrive {
        let records = RecordStore::new(
            stores.links.clone(),
            DestinationKind::Pipedrive,
            &connection.name,
        );
        let syncs = sync_rules::sync_rules(config, &connection.name)?;
        for (source, rules) in syncs {
            if rules.source != SourceKind::Chargebee {
                continue;
            }
            let lock = || first_sync::first_full_sync(&records, &source);
            let Some(locked) = billsync_bus::setup::until_jetstream_answers("unique-id lock", lock)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            else {
                continue;
            };
            let configured = rules.options.unique_id.describe();
            if locked.unique_id != configured {
                anyhow::bail!(
                    "{file}: {sync}.options.unique_id: persons of {source} → {destination} are \
                     matched by {locked_id:?}, locked when the first full sync ran at {at} (run \
                     {run}); the configuration now says {configured:?}. Put it back, or reset \
                     the lock deliberately: stop every billsync pipedrive replica, run \
                     `billsync sync reset-unique-id --connection {source} --to {destination}`, \
                     start again and run `billsync sync all` (customers already linked keep \
                     their persons; new ones are matched by the new id)",
                    file = config.origin.display(),
                    sync = rules.key,
                    destination = connection.name,
                    locked_id = locked.unique_id,
                    at = locked.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    run = locked.run_id,
                );
            }
        }
    }
    Ok(())
}

/// `billsync sync reset-unique-id`: forgets the unique id the first full sync of `source`
/// into the Pipedrive connection `destination` locked, so the next full sync locks the one
/// configured then. Answers the lock removed (`None`: there was none). Linked customers keep
/// their persons.
pub async fn reset_unique_id_lock(
    config: &Config,
    client: &async_nats::Client,
    source: &str,
    destination: &str,
) -> anyhow::Result<Option<FirstFullSync>> {
    if !config
        .destinations
        .pipedrive
        .iter()
        .any(|c| c.name == destination)
    {
        anyhow::bail!(
            "{}: no Pipedrive destination named {destination:?}",
            config.origin.display()
        );
    }
    let rules = sync_rules::sync_rules(config, destination)?;
    if !rules.contains_key(source) {
        anyhow::bail!(
            "{}: no sync from {source:?} to {destination:?}",
            config.origin.display()
        );
    }
    let stores = DestinationStores::open(config, client).await?;
    let records = RecordStore::new(stores.links, DestinationKind::Pipedrive, destination);
    let key = first_sync::record_key(source);
    let locked = first_sync::first_full_sync(&records, source)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if locked.is_some() {
        records
            .delete(&key)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(locked)
}
