//! The ActiveCampaign worker: applies billing events to ActiveCampaign accounts.
//!
//! One worker loop per configured ActiveCampaign connection (see `billsync-worker`), all in
//! one service that also serves `/healthz`, `/readyz` and `/metrics`.

pub mod api;
mod chargebee;
mod contacts;
mod destination;
mod ecommerce;
mod error;
mod options;
mod records;
mod stripe;
mod stripe_orders;

pub use destination::{check_syncs, ActiveCampaignDestination};
pub use error::StartError;

use anyhow::Context;
use async_nats::jetstream;
use billsync_bus::{StreamSettings, Topology};
use billsync_config::Config;
use billsync_telemetry::{serve_ops, Readiness};
use billsync_worker::{run_worker, WorkerContext};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Runs a worker per ActiveCampaign connection until `shutdown`, then drains them.
pub async fn run(
    config: Arc<Config>,
    client: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let topology = Topology::new(&config.nats.prefix);
    let js = jetstream::new(client.clone());
    let links = topology
        .ensure_bucket(
            &js,
            topology.links_bucket(),
            &StreamSettings::from(&config.nats),
            Duration::ZERO,
        )
        .await
        .context("opening the links bucket")?;
    let rate_limits = topology
        .ensure_bucket(
            &js,
            topology.rate_limits_bucket(),
            &StreamSettings::from(&config.nats),
            Duration::ZERO,
        )
        .await
        .context("opening the rate limits bucket")?;
    let timeout = Duration::from_millis(config.workers.request_timeout_ms);

    let mut destinations = Vec::new();
    for connection in &config.destinations.activecampaign {
        let destination = ActiveCampaignDestination::new(
            &config,
            connection,
            links.clone(),
            rate_limits.clone(),
            timeout,
        )
        .with_context(|| format!("configuring ActiveCampaign connection {}", connection.name))?;
        destinations.push(Arc::new(destination));
    }

    let mut readiness = Readiness::new().nats(client.clone());
    for destination in &destinations {
        let destination = Arc::clone(destination);
        readiness = readiness.check("activecampaign", move || {
            let destination = Arc::clone(&destination);
            async move { destination.ready() }
        });
    }

    let ctx = WorkerContext {
        config: Arc::clone(&config),
        client,
        shutdown: shutdown.clone(),
    };
    let mut workers = tokio::task::JoinSet::new();
    for destination in destinations {
        workers.spawn(run_worker(destination, ctx.clone()));
    }
    let ops = tokio::spawn(serve_ops(listener, readiness, shutdown.clone()));

    let mut failure = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::error!(%error, "An ActiveCampaign worker stopped; stopping the service.");
                failure.get_or_insert(anyhow::Error::new(error));
                shutdown.cancel();
            }
            Err(join_error) => {
                failure.get_or_insert(anyhow::anyhow!("worker task failed: {join_error}"));
                shutdown.cancel();
            }
        }
    }
    shutdown.cancel();
    ops.await
        .context("ops server task")?
        .context("serving ops endpoints")?;
    match failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}
