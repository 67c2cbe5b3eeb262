//! Starting services, alone or together, on one NATS connection and one shutdown token.

use anyhow::Context;
use billsync_config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Ingest,
    Activecampaign,
    Zoho,
    Pipedrive,
    Errors,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Errors,
        Service::Ingest,
        Service::Activecampaign,
        Service::Zoho,
        Service::Pipedrive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Ingest => "ingest",
            Service::Activecampaign => "activecampaign",
            Service::Zoho => "zoho",
            Service::Pipedrive => "pipedrive",
            Service::Errors => "errors",
        }
    }

    fn listen(self, config: &Config) -> SocketAddr {
        match self {
            Service::Ingest => config.ingest.listen,
            Service::Activecampaign => config.workers.activecampaign_listen,
            Service::Zoho => config.workers.zoho_listen,
            Service::Pipedrive => config.workers.pipedrive_listen,
            Service::Errors => config.errors.listen,
        }
    }
}

/// Runs `services` until `shutdown` fires or one of them fails (which stops the others).
pub async fn run(
    config: Arc<Config>,
    services: &[Service],
    client_name: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let client = billsync_bus::connect(&config.nats.url, client_name).await?;
    // Bind every port first, so a port conflict fails at start before anything runs.
    let mut listeners = Vec::new();
    for service in services {
        let addr = service.listen(&config);
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!(
                "{} cannot listen on {addr}; is another process using it?",
                service.name()
            )
        })?;
        listeners.push((*service, listener));
    }

    let mut tasks = tokio::task::JoinSet::new();
    for (service, listener) in listeners {
        let (config, client, shutdown) = (Arc::clone(&config), client.clone(), shutdown.clone());
        tasks.spawn(async move {
            let result = match service {
                Service::Ingest => billsync_ingest::run(config, client, listener, shutdown).await,
                Service::Activecampaign => {
                    billsync_activecampaign::run(config, client, listener, shutdown).await
                }
                Service::Zoho => billsync_zoho::run(config, client, listener, shutdown).await,
                Service::Pipedrive => {
                    billsync_pipedrive::run(config, client, listener, shutdown).await
                }
                Service::Errors => billsync_errors::run(config, client, listener, shutdown).await,
            };
            (service, result)
        });
    }

    let mut failure: Option<anyhow::Error> = None;
    while let Some(joined) = tasks.join_next().await {
        let (service, result) = joined.context("a service task panicked")?;
        if let Err(error) = result {
            tracing::error!(
                service = service.name(),
                error = format!("{error:#}"),
                "Service failed; stopping the others."
            );
            shutdown.cancel();
            failure.get_or_insert(error.context(format!("{} failed", service.name())));
        } else if !shutdown.is_cancelled() {
            tracing::warn!(
                service = service.name(),
                "Service returned before shutdown; stopping the others."
            );
            shutdown.cancel();
        }
    }
    client.flush().await.ok();
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!("All services stopped cleanly.");
            Ok(())
        }
    }
}
