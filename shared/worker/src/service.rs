//! A destination worker service: what `billsync activecampaign|zoho|pipedrive` runs.
//!
//! Opens the buckets destinations share, builds one destination per configured connection,
//! runs one worker loop per connection, serves `/healthz`, `/readyz` (NATS, and each
//! connection's credentials) and `/metrics`, and on shutdown drains every loop before it
//! returns. A loop that fails stops the whole service, so an orchestrator restarts it.

use crate::destination::Destination;
use crate::health::ConnectionHealth;
use crate::runtime::{run_worker, WorkerContext};
use anyhow::Context;
use async_nats::jetstream::{self, kv};
use billsync_bus::{StreamSettings, Topology};
use billsync_config::Config;
use billsync_events::DestinationKind;
use billsync_telemetry::{serve_ops, Readiness};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The KV buckets a destination keeps its state in, opened once for all its connections.
#[derive(Clone)]
pub struct DestinationStores {
    /// Source ids → CRM ids, applied markers, caches (see [`crate::RecordStore`]).
    pub links: kv::Store,
    /// Request slots shared by every replica (see `billsync_bus::SharedRateLimiter`).
    pub rate_limits: kv::Store,
}

/// Runs `kind`'s worker service until `shutdown`, serving ops on `listener`, with the
/// destinations `build` makes from the configuration (one per configured connection; an
/// error stops the start with its context, naming the file, key and reason).
pub async fn serve_destinations<D, B>(
    kind: DestinationKind,
    config: Arc<Config>,
    client: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
    build: B,
) -> anyhow::Result<()>
where
    D: Destination,
    B: FnOnce(&Arc<Config>, &DestinationStores) -> anyhow::Result<Vec<D>>,
{
    let configured = config
        .destination_connections()
        .iter()
        .any(|(of, _)| *of == kind);
    // A service with no connection of its kind touches no bucket: it only serves health.
    let destinations: Vec<(Arc<D>, Arc<ConnectionHealth>)> = if configured {
        let stores = DestinationStores::open(&config, &client).await?;
        build(&config, &stores)?
            .into_iter()
            .map(|d| (Arc::new(d), ConnectionHealth::new()))
            .collect()
    } else {
        tracing::info!(destination = %kind, "No connections of this destination are configured; serving health and metrics only.");
        Vec::new()
    };

    let checked = destinations.clone();
    let readiness = Readiness::new()
        .nats(client.clone())
        .check(kind.as_str(), move || {
            let checked = checked.clone();
            async move {
                for (destination, health) in &checked {
                    health.check(destination.as_ref()).await?;
                }
                Ok(())
            }
        });

    let worker_ctx = WorkerContext {
        config: Arc::clone(&config),
        client,
        shutdown: shutdown.clone(),
    };
    let mut workers = tokio::task::JoinSet::new();
    for (destination, health) in destinations {
        workers.spawn(run_worker(destination, worker_ctx.clone(), health));
    }
    let ops = tokio::spawn(serve_ops(listener, readiness, shutdown.clone()));

    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        let error = match joined {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => anyhow::Error::new(error),
            Err(join_error) => anyhow::anyhow!("worker task failed: {join_error}"),
        };
        tracing::error!(destination = %kind, error = %format!("{error:#}"), "A worker loop stopped; stopping the service.");
        failure.get_or_insert(error);
        shutdown.cancel();
    }
    // With no connections there was no loop to wait for: serve health until told to stop.
    shutdown.cancelled().await;
    ops.await
        .context("ops server task")?
        .context("serving ops endpoints")?;
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

impl DestinationStores {
    /// Opens (creating when missing) the buckets every destination of `config` shares.
    pub async fn open(
        config: &Config,
        client: &async_nats::Client,
    ) -> anyhow::Result<DestinationStores> {
        let topology = Topology::new(&config.nats.prefix);
        let js = jetstream::new(client.clone());
        let settings = StreamSettings::from(&config.nats);
        let links = topology
            .ensure_bucket(&js, topology.links_bucket(), &settings, Duration::ZERO)
            .await
            .context("opening the links bucket")?;
        let rate_limits = topology
            .ensure_bucket(
                &js,
                topology.rate_limits_bucket(),
                &settings,
                Duration::ZERO,
            )
            .await
            .context("opening the rate limits bucket")?;
        Ok(DestinationStores { links, rate_limits })
    }
}
