//! Historical backfill of a Stripe connection: walk the list APIs of its resources and
//! publish every object as a snapshot event that workers apply like a live one.
//!
//! Run by `billsync backfill stripe --connection C [--resource R]`, and by the ingest service
//! once per connection configured `sync_type = "historical_and_new"` (seed 001: "sync
//! historical records and capture new records"). Guarantees:
//!
//! - **One run at a time** per connection, across processes and replicas: a lease in NATS KV
//!   ([`lease`]); a second `billsync backfill` waits for it.
//! - **Resumable**: per resource, the cursor (`starting_after` of the next page) is written to
//!   NATS KV ([`store`]) only after JetStream has acked every event of the page. A run killed
//!   at any moment resumes from the last acknowledged page under the same run id; the page it
//!   republishes has the same message ids, so JetStream drops the copies ([`snapshot`]).
//! - **Within Stripe's rate limit**: the client paces requests under 25/s (test keys) or
//!   100/s (live keys) and backs off on 429 ([`super::client`]).
//! - **Runs once** when triggered by the configuration: `stripe.<connection>.historical` in
//!   the cursors bucket records the finished historical sync.
//!
//! Lists are newest first, so objects created while a backfill runs may be missed by it;
//! the connection's webhooks deliver those live.

pub mod progress;
pub mod snapshot;
pub mod store;

pub use progress::{Progress, TerminalProgress, TracingProgress};
pub use store::{BackfillRun, HistoricalMarker, ResourceCursor, Trigger};

use super::client::{StripeClient, StripeError, MAX_PAGE};
use super::resource::{synced_resources, StripeResource};
use async_nats::jetstream::{self, kv};
use billsync_bus::lease::{self, Lease, LeaseError};
use billsync_bus::{BusError, PublishError, Publisher, StreamSettings, Topology};
use billsync_config::{Config, ConfigError, StripeConnection, SyncType};
use billsync_events::BillingEvent;
use chrono::Utc;
use snapshot::Snapshot;
use std::sync::Arc;
use std::time::Duration;
use store::{BackfillStore, StoreError};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a backfill lease lives without renewal: a holder killed with SIGKILL blocks the
/// next run for at most this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// Attempts to publish one snapshot before the run stops (to resume later).
const PUBLISH_ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no Stripe connection named {name:?} is configured (have: {have})")]
    UnknownConnection { name: String, have: String },
    #[error(
        "connection {0} feeds no sync, so nothing would receive its records; add a [[syncs]] \
         entry with source = {0:?}, or name the resources with --resource"
    )]
    NoSync(String),
    #[error(
        "connection {0} is unlinked (enabled = false on it or on every sync of it); link it \
         again to backfill it"
    )]
    Unlinked(String),
    #[error(
        "backfill run {run_id} of {resources} has not finished; run the same command without \
         --resource (or with exactly those) to finish it, or pass --fresh to abandon it"
    )]
    UnfinishedRun { run_id: String, resources: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("backfill lease: {0}")]
    Lease(#[from] LeaseError),
    #[error("listing {resource}: {source}")]
    Stripe {
        resource: StripeResource,
        #[source]
        source: StripeError,
    },
    #[error("Stripe listed an object billsync cannot read: {0}")]
    BadObject(String),
    #[error("publishing snapshots to JetStream failed; the run resumes from its last acknowledged page: {0}")]
    Publish(#[from] PublishError),
    #[error("the backfill lease was lost; the run stopped and resumes from its cursor under the next holder")]
    LeaseLost,
    #[error("stopped before the end; run it again to resume")]
    Cancelled,
}

impl BackfillError {
    /// True when running again later, unchanged, may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            BackfillError::Stripe { source, .. } => source.is_transient(),
            BackfillError::Bus(_)
            | BackfillError::Store(_)
            | BackfillError::Lease(_)
            | BackfillError::Publish(_)
            | BackfillError::LeaseLost => true,
            _ => false,
        }
    }
}

/// What a run should do.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// The resources to walk; the connection's synced resources when `None`.
    pub resources: Option<Vec<StripeResource>>,
    /// Abandon an unfinished run and start a new one.
    pub fresh: bool,
    pub trigger: Trigger,
    pub lease_ttl: Duration,
    /// Snapshots of one page published at once.
    pub publish_concurrency: usize,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            resources: None,
            fresh: false,
            trigger: Trigger::Command,
            lease_ttl: DEFAULT_LEASE_TTL,
            publish_concurrency: 100,
        }
    }
}

/// How a call ended.
#[derive(Debug)]
pub enum Completed {
    Ran(BackfillReport),
    /// The connection's historical sync had already run (historical trigger only).
    AlreadyDone(HistoricalMarker),
}

#[derive(Debug, Clone)]
pub struct BackfillReport {
    pub run_id: String,
    pub resumed: bool,
    pub resources: Vec<(StripeResource, ResourceCursor)>,
    /// The run covered every resource the connection's syncs take, so it counts as the
    /// connection's historical sync.
    pub marked_historical: bool,
}

impl BackfillReport {
    pub fn published(&self) -> u64 {
        self.resources.iter().map(|(_, c)| c.published).sum()
    }
}

/// A backfill of one Stripe connection, ready to run.
pub struct StripeBackfill {
    connection: String,
    client: Arc<StripeClient>,
    publisher: Publisher,
    store: BackfillStore,
    leases: kv::Store,
    synced: Option<Vec<StripeResource>>,
    holder: String,
}

impl StripeBackfill {
    /// Checks the connection's configuration, declares the events stream and the KV
    /// buckets, and builds the Stripe client.
    pub async fn prepare(
        config: &Config,
        nats: async_nats::Client,
        connection: &str,
    ) -> Result<Self, BackfillError> {
        let (index, source) = config
            .sources
            .stripe
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == connection)
            .ok_or_else(|| BackfillError::UnknownConnection {
                name: connection.to_string(),
                have: config
                    .sources
                    .stripe
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        if !config.source_linked(connection) {
            return Err(BackfillError::Unlinked(connection.to_string()));
        }
        let api_key = api_key_of(config, index, source)?;
        let client = StripeClient::new(&source.api_base, api_key).map_err(|source| {
            BackfillError::Stripe {
                resource: StripeResource::Customer,
                source,
            }
        })?;
        let topology = Topology::new(&config.nats.prefix);
        let js = jetstream::new(nats);
        let settings = StreamSettings::from(&config.nats);
        topology.ensure_events_stream(&js, &settings).await?;
        let cursors = topology
            .ensure_bucket(&js, topology.cursors_bucket(), &settings, Duration::ZERO)
            .await?;
        let leases = topology
            .ensure_bucket(&js, topology.leases_bucket(), &settings, Duration::ZERO)
            .await?;
        let publisher = Publisher::new(
            js,
            topology,
            Duration::from_millis(config.ingest.publish_timeout_ms),
        )
        .routing(config);
        Ok(Self {
            connection: connection.to_string(),
            client: Arc::new(client),
            publisher,
            store: BackfillStore::new(cursors, connection),
            leases,
            synced: synced_resources(config, connection),
            holder: lease::holder_id("billsync"),
        })
    }

    /// Replaces the Stripe client (tests use other pacing and retry settings).
    pub fn with_client(mut self, client: StripeClient) -> Self {
        self.client = Arc::new(client);
        self
    }

    pub fn store(&self) -> &BackfillStore {
        &self.store
    }

    /// Takes the connection's backfill lease (waiting while another process holds it) and
    /// runs or resumes the backfill.
    pub async fn run(
        &self,
        options: &BackfillOptions,
        progress: &dyn Progress,
        shutdown: &CancellationToken,
    ) -> Result<Completed, BackfillError> {
        let lease = Lease::new(
            self.leases.clone(),
            &format!("stripe.{}.backfill", self.connection),
            &self.holder,
            options.lease_ttl,
        );
        let mut told = None;
        let held = loop {
            match lease.acquire().await {
                Ok(held) => break held,
                Err(LeaseError::Held {
                    holder,
                    expires_at_ms,
                }) => {
                    if options.trigger == Trigger::HistoricalSync {
                        if let Some(marker) = self.store.historical().await? {
                            return Ok(Completed::AlreadyDone(marker));
                        }
                    }
                    if told.as_ref() != Some(&holder) {
                        progress.lease_wait(&holder, expires_at_ms);
                        told = Some(holder);
                    }
                    let wait = Duration::from_millis(
                        (expires_at_ms - Utc::now().timestamp_millis()).clamp(100, 1_000) as u64,
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(BackfillError::Cancelled),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Err(error) => return Err(error.into()),
            }
        };
        // Renew in the background; losing the lease cancels `lost`, which stops the run
        // before another holder could start. The run's end gives the lease up.
        let lost = CancellationToken::new();
        let done = CancellationToken::new();
        let keeper = {
            let (lost, done) = (lost.clone(), done.clone());
            let mut held = held;
            tokio::spawn(async move {
                tokio::select! {
                    _ = done.cancelled() => held.release().await,
                    reason = held.keep_alive() => {
                        tracing::warn!(%reason, "The backfill lease was lost; stopping the run.");
                        lost.cancel();
                    }
                }
            })
        };
        let result = self.run_holding(options, progress, shutdown, &lost).await;
        done.cancel();
        let _ = keeper.await;
        result
    }

    async fn run_holding(
        &self,
        options: &BackfillOptions,
        progress: &dyn Progress,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) -> Result<Completed, BackfillError> {
        if options.trigger == Trigger::HistoricalSync {
            if let Some(marker) = self.store.historical().await? {
                return Ok(Completed::AlreadyDone(marker));
            }
        }
        let (mut run, resumed) = self.open_run(options).await?;
        progress.run_started(&run, resumed);
        let mut report = BackfillReport {
            run_id: run.run_id.clone(),
            resumed,
            resources: Vec::new(),
            marked_historical: false,
        };
        for resource in run.resources() {
            let cursor = self
                .walk(&run.run_id, resource, options, progress, shutdown, lost)
                .await?;
            report.resources.push((resource, cursor));
        }
        run.finished_at = Some(Utc::now());
        self.store.save_run(&run).await?;
        let covers_sync = self
            .synced
            .as_ref()
            .is_some_and(|synced| synced.iter().all(|r| run.resources().contains(r)));
        if covers_sync {
            self.store
                .mark_historical(&HistoricalMarker {
                    run_id: run.run_id.clone(),
                    finished_at: Utc::now(),
                })
                .await?;
            report.marked_historical = true;
        }
        Ok(Completed::Ran(report))
    }

    /// The unfinished run to resume, or a new one.
    async fn open_run(
        &self,
        options: &BackfillOptions,
    ) -> Result<(BackfillRun, bool), BackfillError> {
        if let Some(run) = self.store.run().await? {
            if run.finished_at.is_none() && !options.fresh {
                if let Some(requested) = &options.resources {
                    if *requested != run.resources() {
                        return Err(BackfillError::UnfinishedRun {
                            run_id: run.run_id,
                            resources: run.resources.join(", "),
                        });
                    }
                }
                return Ok((run, true));
            }
        }
        let resources = match (&options.resources, &self.synced) {
            (Some(requested), _) => requested.clone(),
            (None, Some(synced)) => synced.clone(),
            (None, None) => return Err(BackfillError::NoSync(self.connection.clone())),
        };
        let mut resources: Vec<StripeResource> = resources;
        resources.sort();
        resources.dedup();
        let run = BackfillRun {
            run_id: new_run_id(&self.connection),
            resources: resources.iter().map(|r| r.name().to_string()).collect(),
            trigger: options.trigger,
            started_at: Utc::now(),
            finished_at: None,
        };
        self.store.save_run(&run).await?;
        Ok((run, false))
    }

    /// Walks one resource's list from its cursor to the end.
    async fn walk(
        &self,
        run_id: &str,
        resource: StripeResource,
        options: &BackfillOptions,
        progress: &dyn Progress,
        shutdown: &CancellationToken,
        lost: &CancellationToken,
    ) -> Result<ResourceCursor, BackfillError> {
        let mut cursor = self.store.cursor(resource, run_id).await?;
        if cursor.done {
            return Ok(cursor);
        }
        progress.resource_started(resource, &cursor);
        loop {
            let page = tokio::select! {
                _ = shutdown.cancelled() => return Err(BackfillError::Cancelled),
                _ = lost.cancelled() => return Err(BackfillError::LeaseLost),
                page = self.client.list(resource, cursor.starting_after.as_deref(), MAX_PAGE) => {
                    page.map_err(|source| BackfillError::Stripe { resource, source })?
                }
            };
            let last_id = page
                .data
                .last()
                .and_then(|o| o.get("id"))
                .and_then(|id| id.as_str())
                .map(str::to_owned);
            let mut events = Vec::with_capacity(page.data.len());
            let mut skipped = 0;
            for object in page.data {
                match snapshot::snapshot(&self.connection, run_id, resource, object)
                    .map_err(BackfillError::BadObject)?
                {
                    Snapshot::Event(event) => events.push(*event),
                    Snapshot::Skipped { .. } => skipped += 1,
                }
            }
            let published = events.len() as u64;
            tokio::select! {
                // A shutdown waits for the page: its events are in flight and the cursor
                // should follow them. Losing the lease does not: the next holder redoes it.
                _ = lost.cancelled() => return Err(BackfillError::LeaseLost),
                done = self.publish_all(events, options.publish_concurrency) => done?,
            }
            if lost.is_cancelled() {
                return Err(BackfillError::LeaseLost);
            }
            cursor.published += published;
            cursor.skipped += skipped;
            cursor.pages += 1;
            if let Some(last) = last_id {
                cursor.starting_after = Some(last);
            }
            cursor.done = !page.has_more;
            cursor.updated_at = Some(Utc::now());
            self.store.save_cursor(resource, &cursor).await?;
            metrics::counter!("billsync_backfill_objects_total", "source" => "stripe", "result" => "published")
                .increment(published);
            progress.page_done(resource, &cursor);
            if cursor.done {
                progress.resource_finished(resource, &cursor);
                return Ok(cursor);
            }
            if shutdown.is_cancelled() {
                return Err(BackfillError::Cancelled);
            }
        }
    }

    /// Publishes `events`, up to `concurrency` awaiting their ack at once; returns when every
    /// one is stored (or already was: a resumed page's duplicates).
    async fn publish_all(
        &self,
        events: Vec<BillingEvent>,
        concurrency: usize,
    ) -> Result<(), PublishError> {
        let mut tasks = JoinSet::new();
        let mut pending = events.into_iter();
        let concurrency = concurrency.max(1);
        for event in pending.by_ref().take(concurrency) {
            tasks.spawn(publish_with_retry(self.publisher.clone(), event));
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(panic) => std::panic::resume_unwind(panic.into_panic()),
            }
            if let Some(event) = pending.next() {
                tasks.spawn(publish_with_retry(self.publisher.clone(), event));
            }
        }
        Ok(())
    }
}

async fn publish_with_retry(publisher: Publisher, event: BillingEvent) -> Result<(), PublishError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match publisher.publish_event(&event).await {
            Ok(_) => return Ok(()),
            Err(error) if attempt >= PUBLISH_ATTEMPTS => return Err(error),
            Err(error) => {
                tracing::info!(%error, attempt, "Publishing a snapshot failed; retrying.");
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(6))).await;
            }
        }
    }
}

/// The connection's API key, or a configuration error naming the key to set.
fn api_key_of<'a>(
    config: &'a Config,
    index: usize,
    connection: &'a StripeConnection,
) -> Result<&'a str, ConfigError> {
    connection
        .api_key
        .as_ref()
        .and_then(|k| k.value())
        .ok_or_else(|| {
            ConfigError::new(
                &config.origin,
                &format!("sources.stripe[{index}].api_key"),
                "backfills read Stripe's list APIs and need the connection's secret key \
                 (sk_live_… or sk_test_…, or a restricted key with read access)",
            )
        })
}

/// Fails at start when a connection asks for a historical sync without an API key.
pub fn check_config(config: &Config) -> Result<(), ConfigError> {
    for (index, connection) in config.sources.stripe.iter().enumerate() {
        if connection.sync_type == SyncType::HistoricalAndNew {
            api_key_of(config, index, connection).map_err(|mut error| {
                error.reason = format!(
                    "sync_type = \"historical_and_new\" runs a backfill: {}",
                    error.reason
                );
                error
            })?;
        }
    }
    Ok(())
}

/// Starts the historical sync of every connection configured `historical_and_new` whose
/// sync has not run yet. Each task retries transient failures until it has run or `shutdown`.
pub fn spawn_historical_syncs(
    config: Arc<Config>,
    nats: async_nats::Client,
    shutdown: CancellationToken,
) -> JoinSet<()> {
    let mut tasks = JoinSet::new();
    for connection in &config.sources.stripe {
        if connection.sync_type != SyncType::HistoricalAndNew
            || !config.source_linked(&connection.name)
        {
            continue;
        }
        let (config, nats, shutdown) = (Arc::clone(&config), nats.clone(), shutdown.clone());
        let name = connection.name.clone();
        tasks.spawn(async move {
            historical_sync(&config, nats, &name, &shutdown).await;
        });
    }
    tasks
}

async fn historical_sync(
    config: &Config,
    nats: async_nats::Client,
    connection: &str,
    shutdown: &CancellationToken,
) {
    let options = BackfillOptions {
        trigger: Trigger::HistoricalSync,
        ..BackfillOptions::default()
    };
    let mut delay = Duration::from_secs(5);
    loop {
        let outcome = match StripeBackfill::prepare(config, nats.clone(), connection).await {
            Ok(backfill) => backfill.run(&options, &TracingProgress, shutdown).await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(Completed::Ran(report)) if report.marked_historical => {
                tracing::info!(%connection, run_id = %report.run_id, published = report.published(),
                    "Historical sync of the Stripe connection finished.");
                return;
            }
            Ok(Completed::Ran(report)) => {
                // The run resumed was a `billsync backfill --resource` of fewer resources than
                // the syncs take; a full run follows at once.
                tracing::info!(%connection, run_id = %report.run_id,
                    "Finished an unfinished partial backfill; starting the historical sync.");
            }
            Ok(Completed::AlreadyDone(marker)) => {
                tracing::debug!(%connection, run_id = %marker.run_id, "Historical sync already ran.");
                return;
            }
            Err(BackfillError::Cancelled) => return,
            Err(error) => {
                if error.is_transient() {
                    tracing::warn!(%connection, %error, retry_in_s = delay.as_secs(),
                        "Historical sync of the Stripe connection failed; it will resume.");
                } else {
                    // Only an operator can fix this (a revoked key, a bad configuration).
                    tracing::error!(%connection, %error, retry_in_s = delay.as_secs(),
                        "Historical sync of the Stripe connection cannot proceed.");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(600));
            }
        }
    }
}

/// `<connection>-<UTC time>-<4 hex>`: readable in `billsync` output and the runs page.
fn new_run_id(connection: &str) -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{connection}-{}-{}",
        Utc::now().format("%Y%m%dT%H%M%SZ"),
        &nonce[..4]
    )
}

/// This process as a lease holder: unique, and readable in `nats kv get`.
#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        let text = format!(
            "[[sources.stripe]]\nname = \"s\"\nwebhook_secrets = [{{ env = \"PATH\" }}]\n{extra}\n"
        );
        Config::from_toml(&text, Path::new("/etc/billsync.toml")).expect("config")
    }

    #[test]
    fn a_historical_sync_without_an_api_key_fails_at_start_naming_the_key() {
        let error =
            check_config(&config("sync_type = \"historical_and_new\"")).expect_err("needs a key");
        let message = error.to_string();
        assert!(
            message.starts_with("/etc/billsync.toml: sources.stripe[0].api_key: sync_type"),
            "{message}"
        );
        check_config(&config("sync_type = \"new_only\"")).expect("no key needed");
        check_config(&config(
            "sync_type = \"historical_and_new\"\napi_key = { env = \"PATH\" }",
        ))
        .expect("key given");
    }

    #[test]
    fn run_ids_name_their_connection_and_differ() {
        let a = new_run_id("stripe-live");
        assert!(a.starts_with("stripe-live-2"), "{a}");
        assert_ne!(a, new_run_id("stripe-live"));
    }
}
