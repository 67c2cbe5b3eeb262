//! The Zoho CRM worker. This version only serves its health and metrics endpoints: the
//! Zoho CRM destination itself arrives in a later release, and configuring one fails at start.

use anyhow::bail;
use billsync_config::Config;
use billsync_telemetry::{serve_ops, Readiness};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `/healthz`, `/readyz` and `/metrics` until `shutdown`.
pub async fn run(
    config: Arc<Config>,
    client: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(connection) = config.destinations.zoho.first() {
        bail!(
            "{}: destinations.zoho: connection {:?}: the Zoho CRM destination is not available \
             in this version of billsync; remove it or run a version that supports it",
            config.origin.display(),
            connection.name
        );
    }
    tracing::info!("Zoho CRM worker idle: no Zoho CRM destinations are configured.");
    serve_ops(listener, Readiness::new().nats(client), shutdown).await?;
    Ok(())
}
