//! The ingest service: receives Stripe webhooks and publishes them to JetStream.
//!
//! A webhook is answered 2xx only after JetStream has stored the event, so Stripe keeps
//! retrying anything that is not durable; bad input gets a clear 4xx and publishes nothing.

pub mod chargebee;
mod error;
pub mod stripe;

pub use error::IngestError;

use anyhow::Context;
use async_nats::jetstream;
use axum::routing::post;
use axum::Router;
use billsync_bus::{Publisher, StreamSettings, Topology};
use billsync_config::Config;
use billsync_telemetry::{ops_router, Readiness};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Shared state of the HTTP handlers.
pub struct IngestState {
    pub publisher: Publisher,
    pub stripe: HashMap<String, stripe::StripeEndpoint>,
    pub max_body_bytes: usize,
}

/// The publisher every source of this service shares: webhooks and pollers alike wait
/// `ingest.publish_timeout_ms` for JetStream's ack.
pub fn publisher(config: &Config, client: async_nats::Client) -> Publisher {
    Publisher::new(
        jetstream::new(client),
        Topology::new(&config.nats.prefix),
        Duration::from_millis(config.ingest.publish_timeout_ms),
    )
    .routing(config)
}

/// Declares the events stream and builds the router; used by [`run`] and by tests.
pub async fn app(
    config: &Config,
    client: async_nats::Client,
    publisher: Publisher,
) -> anyhow::Result<Router> {
    publisher
        .topology()
        .ensure_events_stream(publisher.jetstream(), &StreamSettings::from(&config.nats))
        .await
        .context("declaring the events stream")?;
    let stripe = config
        .sources
        .stripe
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                stripe::StripeEndpoint::from_config(config, c),
            )
        })
        .collect();
    let state = Arc::new(IngestState {
        publisher,
        stripe,
        max_body_bytes: config.ingest.max_body_bytes,
    });
    let router = Router::new()
        .route(
            "/webhooks/stripe/{connection}",
            post(stripe::webhook::receive),
        )
        .with_state(state)
        .merge(ops_router(Readiness::new().nats(client)));
    Ok(router)
}

/// Serves webhooks on `listener` until `shutdown`, then lets in-flight requests finish.
/// Also runs the historical sync of Stripe connections configured `historical_and_new`
/// (once per connection across all replicas; see [`stripe::backfill`]).
pub async fn run(
    config: Arc<Config>,
    client: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    stripe::backfill::check_config(&config)?;
    let publisher = publisher(&config, client.clone());
    let router = app(&config, client.clone(), publisher.clone()).await?;
    let mut historical_syncs = stripe::backfill::spawn_historical_syncs(
        Arc::clone(&config),
        client.clone(),
        shutdown.clone(),
    );
    let chargebee = Arc::new(
        chargebee::ChargebeeSources::new(&config, publisher)
            .await
            .context("setting up the Chargebee pollers")?,
    );
    let admin_token = config
        .errors
        .admin_token
        .as_ref()
        .and_then(|t| t.value())
        .map(|t| secrecy::SecretString::from(t.to_string()));
    let router = router.merge(chargebee::admin::router(
        Arc::clone(&chargebee),
        admin_token,
        shutdown.clone(),
    ));
    let addr = listener
        .local_addr()
        .context("reading the listen address")?;
    tracing::info!(
        %addr,
        stripe_connections = config.sources.stripe.len(),
        chargebee_connections = config.sources.chargebee.len(),
        "Ingest listening."
    );
    let server =
        axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    // Pollers finish the page in hand on shutdown, then give their leases up.
    let (served, ()) = tokio::join!(server, chargebee.run(shutdown.clone()));
    served.context("serving HTTP")?;
    // The syncs stop at a page boundary on shutdown and give their leases up.
    while historical_syncs.join_next().await.is_some() {}
    tracing::info!("Ingest stopped.");
    Ok(())
}
