//! The ActiveCampaign worker: applies billing events to ActiveCampaign accounts.
//!
//! One worker loop per configured ActiveCampaign connection (see `billsync-worker`), all in
//! one service that also serves `/healthz`, `/readyz` and `/metrics`.

pub mod api;
mod bulk;
mod chargebee;
mod chargebee_flow;
mod contacts;
mod deep_data;
mod deletion;
mod destination;
mod ecommerce;
mod error;
mod options;
mod stripe;
mod stripe_flow;
mod stripe_orders;
mod sync_rules;

pub use destination::ActiveCampaignDestination;
pub use error::StartError;
pub use options::ActiveCampaignSyncs;
pub use sync_rules::check_syncs;

use anyhow::Context;
use billsync_config::Config;
use billsync_events::DestinationKind;
use billsync_worker::serve_destinations;
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
    serve_destinations(
        DestinationKind::Activecampaign,
        config,
        client,
        listener,
        shutdown,
        |config, stores| {
            let timeout = Duration::from_millis(config.workers.request_timeout_ms);
            config
                .destinations
                .activecampaign
                .iter()
                .map(|connection| {
                    ActiveCampaignDestination::new(
                        config,
                        connection,
                        stores.links.clone(),
                        stores.rate_limits.clone(),
                        timeout,
                    )
                    .with_context(|| {
                        format!("configuring ActiveCampaign connection {}", connection.name)
                    })
                })
                .collect()
        },
    )
    .await
}
