//! The Pipedrive worker, on the destination kit. This version runs no Pipedrive connection yet:
//! the destination arrives in a later release, and configuring one fails at start with a
//! message saying so. Without one it serves `/healthz`, `/readyz` and `/metrics`.

pub mod api;

use billsync_config::Config;
use billsync_events::DestinationKind;
use billsync_worker::{serve_destinations, Unavailable};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves health and metrics until `shutdown`; refuses configured Pipedrive connections.
pub async fn run(
    config: Arc<Config>,
    client: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    serve_destinations(
        DestinationKind::Pipedrive,
        config,
        client,
        listener,
        shutdown,
        |config, _stores| Unavailable::refuse(config, DestinationKind::Pipedrive, "Pipedrive"),
    )
    .await
}
