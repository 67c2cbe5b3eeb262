//! Chargebee as a source: its API client, event translation, and one poller per connection.
//!
//! Chargebee has no webhooks billsync relies on; each connection's Events API is polled on a
//! schedule (`poll_interval_secs`, default 60 s, when `auto_sync` is on) and on demand
//! (sync-now). Polls of a connection never overlap, in one process or across replicas: a
//! lease in NATS KV (`{prefix}_leases`, key = connection) is held for the length of a poll,
//! and the cursor (`{prefix}_cursors`, key = connection) says where the next one starts.
//!
//! ```no_run
//! # async fn demo(config: std::sync::Arc<billsync_config::Config>, publisher: billsync_bus::Publisher)
//! # -> anyhow::Result<()> {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! billsync_ingest::chargebee::run_pollers(config, publisher, shutdown).await?;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod client;
pub mod cursor;
pub mod event;
pub mod poller;
pub mod rate_limit;
pub mod settings;
pub mod snapshot;
pub mod types;

pub use client::{classify, ChargebeeClient, ChargebeeError};
pub use cursor::PollCursor;
pub use poller::{ConnectionPoller, PollError, PollReport, Trigger};
pub use settings::ConnectionSettings;

use billsync_bus::lease::{self, Lease, LeaseRecord};
use billsync_bus::{BusError, Publisher, StreamSettings};
use billsync_config::Config;
use cursor::CursorStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Why the pollers could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(
        "the events stream forgets message ids after {window_secs} s, not longer than connection \
         {connection}'s poll overlap of {overlap_secs} s, so re-polled events would be stored twice; \
         raise nats.duplicate_window_secs above {overlap_secs}"
    )]
    DuplicateWindowTooShort {
        connection: String,
        window_secs: u64,
        overlap_secs: u64,
    },
    #[error("connection {connection}: {source}")]
    Client {
        connection: String,
        #[source]
        source: ChargebeeError,
    },
}

/// Every Chargebee connection's poller in this process.
pub struct ChargebeeSources {
    pollers: BTreeMap<String, Arc<ConnectionPoller>>,
    /// Connections configured but unlinked (`enabled = false`), not polled.
    unlinked: Vec<String>,
    holder: String,
    reports: broadcast::Sender<PollReport>,
    leases: async_nats::jetstream::kv::Store,
    cursors: async_nats::jetstream::kv::Store,
}

/// This process's identity as a lease holder: unique per process, readable in `nats kv get`.
impl ChargebeeSources {
    /// The pollers of every linked Chargebee connection ([`Config::source_linked`]). An
    /// unlinked one is not polled and its cursor is dropped, so that once linked again it is
    /// polled from then on, as a new connection is (`sync all` or `billsync replay` catch up).
    pub async fn new(config: &Config, publisher: Publisher) -> Result<Self, SetupError> {
        let (linked, unlinked): (Vec<_>, Vec<_>) = config
            .sources
            .chargebee
            .iter()
            .partition(|c| config.source_linked(&c.name));
        let connections = linked
            .into_iter()
            .map(ConnectionSettings::from_config)
            .collect();
        let mut sources =
            Self::with_settings(connections, publisher, &StreamSettings::from(&config.nats))
                .await?;
        for connection in unlinked {
            sources.unlinked.push(connection.name.clone());
            let dropped = CursorStore::new(sources.cursors.clone(), &connection.name)
                .forget()
                .await;
            match dropped {
                Ok(()) => tracing::info!(connection = %connection.name,
                    "Chargebee connection is unlinked (enabled = false): not polled; once linked again it is polled from then on."),
                Err(error) => tracing::warn!(connection = %connection.name, %error,
                    "Chargebee connection is unlinked, but its poll cursor could not be dropped; once linked again, polling resumes from it."),
            }
        }
        Ok(sources)
    }

    /// The pollers of `connections`, for tests and tools that build settings themselves.
    /// Opens the cursor and lease buckets and checks that the events stream's duplicate
    /// window outlasts every overlap.
    pub async fn with_settings(
        connections: Vec<ConnectionSettings>,
        publisher: Publisher,
        streams: &StreamSettings,
    ) -> Result<Self, SetupError> {
        let topology = publisher.topology().clone();
        let js = publisher.jetstream().clone();
        let window = match js.get_stream(topology.events_stream()).await {
            Ok(mut stream) => match stream.info().await {
                Ok(info) => info.config.duplicate_window,
                Err(_) => streams.duplicate_window,
            },
            Err(_) => streams.duplicate_window,
        };
        for c in &connections {
            if window <= c.overlap {
                return Err(SetupError::DuplicateWindowTooShort {
                    connection: c.name.clone(),
                    window_secs: window.as_secs(),
                    overlap_secs: c.overlap.as_secs(),
                });
            }
        }
        let cursors = topology
            .ensure_bucket(&js, topology.cursors_bucket(), streams, Duration::ZERO)
            .await?;
        let leases = topology
            .ensure_bucket(&js, topology.leases_bucket(), streams, Duration::ZERO)
            .await?;
        let holder = lease::holder_id("ingest");
        let (reports, _) = broadcast::channel(256);
        let mut pollers = BTreeMap::new();
        for settings in connections {
            let client = ChargebeeClient::new(
                &settings.base_url,
                settings.api_key.clone(),
                settings.request_timeout,
                settings.requests_per_minute,
            )
            .map_err(|source| SetupError::Client {
                connection: settings.name.clone(),
                source,
            })?;
            let name = settings.name.clone();
            let lease_ttl = settings.lease_ttl;
            let poller = ConnectionPoller::new(
                settings,
                client,
                publisher.clone(),
                CursorStore::new(cursors.clone(), &name),
                Lease::new(leases.clone(), &name, &holder, lease_ttl),
                reports.clone(),
            );
            pollers.insert(name, Arc::new(poller));
        }
        Ok(Self {
            pollers,
            unlinked: Vec::new(),
            holder,
            reports,
            leases,
            cursors,
        })
    }

    /// Names of the connections polled here.
    pub fn connections(&self) -> Vec<String> {
        self.pollers.keys().cloned().collect()
    }

    /// This process's lease-holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn poller(&self, connection: &str) -> Option<&Arc<ConnectionPoller>> {
        self.pollers.get(connection)
    }

    /// Every poll's report, as it ends.
    pub fn subscribe(&self) -> broadcast::Receiver<PollReport> {
        self.reports.subscribe()
    }

    /// Runs every connection's schedule until `shutdown`; in-flight pages finish first.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        for poller in self.pollers.values() {
            let poller = Arc::clone(poller);
            let shutdown = shutdown.clone();
            tasks.spawn(async move { poller.run(shutdown).await });
        }
        if tasks.is_empty() {
            shutdown.cancelled().await;
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(error) = joined {
                tracing::error!(%error, "A Chargebee poller task failed; its connection is not polled until restart.");
            }
        }
    }

    /// Polls `connection` now, unless a poll of it is running here or in another replica.
    pub async fn sync_now(
        &self,
        connection: &str,
        shutdown: &CancellationToken,
    ) -> Result<PollReport, PollError> {
        if self.unlinked.iter().any(|c| c == connection) {
            return Err(PollError::Unlinked(connection.to_string()));
        }
        let poller = self
            .pollers
            .get(connection)
            .ok_or_else(|| PollError::UnknownConnection(connection.to_string()))?;
        poller.sync_now(shutdown).await
    }

    /// Where polling of `connection` stands, for status and tests.
    pub async fn cursor(&self, connection: &str) -> Result<Option<PollCursor>, PollError> {
        CursorStore::new(self.cursors.clone(), connection)
            .load()
            .await
            .map(|c| c.map(|(cursor, _)| cursor))
            .map_err(|e| PollError::Store {
                connection: connection.to_string(),
                message: e.to_string(),
            })
    }

    /// Who polls `connection` right now, if anyone.
    pub async fn lease_holder(&self, connection: &str) -> Result<Option<LeaseRecord>, PollError> {
        Lease::new(
            self.leases.clone(),
            connection,
            &self.holder,
            Duration::ZERO,
        )
        .current()
        .await
        .map_err(|e| PollError::Store {
            connection: connection.to_string(),
            message: e.to_string(),
        })
    }
}

/// Polls every configured Chargebee connection on its schedule until `shutdown`, then lets
/// each in-flight page finish. Returns at shutdown (at once only on a setup error), also when
/// no Chargebee connection is configured.
pub async fn run_pollers(
    config: Arc<Config>,
    publisher: Publisher,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let sources = ChargebeeSources::new(&config, publisher)
        .await
        .context("setting up the Chargebee pollers")?;
    tracing::info!(connections = ?sources.connections(), holder = %sources.holder(), "Chargebee pollers running.");
    sources.run(shutdown).await;
    Ok(())
}

/// Polls one configured connection once, now (`billsync sync-now --connection C`). Refused
/// with "a poll of connection C is already running; try again when it finishes" while any
/// replica polls it.
pub async fn sync_now(
    config: &Config,
    publisher: Publisher,
    connection: &str,
    shutdown: &CancellationToken,
) -> Result<PollReport, PollError> {
    let settings: Vec<ConnectionSettings> = config
        .sources
        .chargebee
        .iter()
        .filter(|c| c.name == connection)
        .map(ConnectionSettings::from_config)
        .collect();
    if settings.is_empty() {
        return Err(PollError::UnknownConnection(connection.to_string()));
    }
    if !config.source_linked(connection) {
        return Err(PollError::Unlinked(connection.to_string()));
    }
    // Run from the CLI, this may come before ingest has ever started and declared it.
    let streams = StreamSettings::from(&config.nats);
    publisher
        .topology()
        .ensure_events_stream(publisher.jetstream(), &streams)
        .await
        .map_err(|e| PollError::Store {
            connection: connection.to_string(),
            message: e.to_string(),
        })?;
    let sources = ChargebeeSources::with_settings(settings, publisher, &streams)
        .await
        .map_err(|e| PollError::Store {
            connection: connection.to_string(),
            message: e.to_string(),
        })?;
    sources.sync_now(connection, shutdown).await
}
