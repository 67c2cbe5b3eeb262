//! The errors service: aggregates sync outcomes in Postgres and serves the operator's API.
//!
//! Workers publish an outcome for every event they finish; this service folds failures into
//! one row per record, resolves rows when the record later syncs, keeps per-run history, and
//! lets an operator list, ignore, retry (replay to the one failing destination) and export
//! them, through the admin API or the web page at `/`. It starts without Postgres and waits
//! for it: outcomes wait in JetStream meanwhile. [`replay`] is `billsync replay`'s engine.

pub mod api;
pub mod consumer;
pub mod error;
pub mod open_failures;
pub mod replay;
pub mod retry;
pub mod scrub;
pub mod store;

use anyhow::Context;
use async_nats::jetstream;
use billsync_bus::{Publisher, StreamSettings, Topology};
use billsync_config::Config;
use billsync_telemetry::{ops_router, Readiness};
use open_failures::OpenFailuresGauge;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long JetStream waits for the consumer's ack before redelivering an outcome.
const OUTCOME_ACK_WAIT: Duration = Duration::from_secs(30);
/// Outcomes pulled but not yet acked, at most.
const OUTCOME_MAX_ACK_PENDING: i64 = 1_000;
/// How long a request waits for a pooled connection; short, so that a Postgres outage
/// turns into quick 503s and NAKs rather than hung requests.
const POOL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between attempts to reach Postgres at start.
const DATABASE_WAIT_INTERVAL: Duration = Duration::from_secs(3);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// The pool, and whether migrations have run so that queries may be served.
#[derive(Clone)]
pub struct Database {
    pool: PgPool,
    migrated: Arc<AtomicBool>,
    /// The deployment (its NATS prefix) whose failures and runs this service keeps: every
    /// query is scoped to it, so deployments sharing a database keep their own lists.
    deployment: Arc<str>,
}

impl Database {
    pub fn deployment(&self) -> &str {
        &self.deployment
    }

    /// The pool once the schema is in place.
    pub fn pool(&self) -> Result<&PgPool, error::ApiError> {
        if self.migrated.load(Ordering::Acquire) {
            Ok(&self.pool)
        } else {
            Err(error::ApiError::DatabaseNotReady)
        }
    }

    async fn check(&self) -> Result<(), String> {
        if !self.migrated.load(Ordering::Acquire) {
            return Err("waiting for Postgres and migrations".into());
        }
        match tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&self.pool),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("no answer within 2 s".into()),
        }
    }
}

/// Runs the errors service until `shutdown`: the admin API and ops routes on `listener`,
/// the outcome consumer once Postgres is reachable and migrated, and the open-failures gauge.
pub async fn run(
    config: Arc<Config>,
    client: async_nats::Client,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let topology = Topology::new(&config.nats.prefix);
    let js = jetstream::new(client.clone());
    let settings = StreamSettings::from(&config.nats);
    topology
        .ensure_outcomes_stream(&js, &settings)
        .await
        .context("declaring the outcomes stream")?;
    topology
        .ensure_replay_stream(&js, &settings)
        .await
        .context("declaring the replay stream")?;
    let ignores = topology
        .ensure_bucket(&js, topology.ignores_bucket(), &settings, Duration::ZERO)
        .await
        .context("opening the ignores bucket")?;
    let outcomes = topology
        .ensure_pull_consumer(
            &js,
            &topology.outcomes_stream(),
            &topology.errors_consumer(),
            topology.outcomes_subjects(),
            OUTCOME_ACK_WAIT,
            OUTCOME_MAX_ACK_PENDING,
        )
        .await
        .context("declaring the errors consumer of the outcomes stream")?;

    // Lazy: the pool connects on first use, so the service comes up (and says it is not
    // ready) while Postgres is still starting.
    let pool = PgPoolOptions::new()
        .max_connections(config.postgres.max_connections.max(1))
        .acquire_timeout(POOL_ACQUIRE_TIMEOUT)
        .connect_lazy(&config.postgres.url)
        .context("postgres.url is not a valid PostgreSQL connection URL")?;
    let db = Database {
        pool,
        migrated: Arc::new(AtomicBool::new(false)),
        deployment: config.nats.prefix.as_str().into(),
    };
    let scrubber = Arc::new(scrub::Scrubber::new(config.secret_values()));
    if config.errors.admin_token.is_none() {
        tracing::warn!(
            "errors.admin_token is not configured; the admin API answers 503 to every request."
        );
    }

    let readiness = {
        let db = db.clone();
        Readiness::new()
            .nats(client.clone())
            .check("postgres", move || {
                let db = db.clone();
                async move { db.check().await }
            })
    };
    let open_failures = OpenFailuresGauge::new();
    let publisher = Publisher::new(js.clone(), topology.clone(), PUBLISH_TIMEOUT);
    let state = api::ApiState {
        config: Arc::clone(&config),
        db: db.clone(),
        publisher: publisher.clone(),
        scrubber: Arc::clone(&scrubber),
        ignores,
        open_failures: open_failures.clone(),
    };
    let app = api::router(state).merge(ops_router(readiness));
    let address = listener.local_addr().ok();
    tracing::info!(?address, "Errors service listening.");

    // Either half failing stops the other; the consumer's error is reported first.
    let stop = shutdown.child_token();
    let serve = {
        let stop = stop.clone();
        async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .await
                .context("serving the admin API");
            stop.cancel();
            served
        }
    };
    let consume = {
        let stop = stop.clone();
        let db = db.clone();
        let open_failures = open_failures.clone();
        async move {
            let consumed = consume_outcomes(
                db,
                outcomes,
                topology.errors_consumer(),
                scrubber,
                open_failures,
                publisher,
                stop.clone(),
            )
            .await;
            if consumed.is_err() {
                stop.cancel();
            }
            consumed
        }
    };
    let gauge = open_failures.run(db.clone(), destination_connections(&config), stop.clone());
    let (served, consumed, ()) = tokio::join!(serve, consume, gauge);
    db.pool.close().await;
    consumed?;
    served?;
    tracing::info!("Errors service stopped.");
    Ok(())
}

/// Waits for Postgres, migrates, then stores outcomes until `stop`.
async fn consume_outcomes(
    db: Database,
    outcomes: jetstream::consumer::PullConsumer,
    consumer_name: String,
    scrubber: Arc<scrub::Scrubber>,
    open_failures: OpenFailuresGauge,
    publisher: Publisher,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    if !wait_for_database(&db.pool, &stop).await {
        return Ok(());
    }
    sqlx::migrate!("./migrations")
        .run(&db.pool)
        .await
        .context("applying the errors service's database migrations")?;
    let (failures, runs) = store::adopt_unscoped_rows(&db.pool, db.deployment())
        .await
        .context("taking over the failures and runs stored before they were kept per deployment")?;
    if failures + runs > 0 {
        tracing::info!(
            deployment = db.deployment(),
            failures,
            runs,
            "Took over the failures and runs stored before they were kept per deployment."
        );
    }
    db.migrated.store(true, Ordering::Release);
    open_failures.changed();
    tracing::info!("Postgres reachable and migrated; consuming outcomes.");
    consumer::OutcomeConsumer::new(
        outcomes,
        consumer_name,
        db.clone(),
        scrubber,
        open_failures,
        publisher,
    )
    .run(stop)
    .await;
    Ok(())
}

/// `(destination, connection)` of every configured destination connection.
fn destination_connections(config: &Config) -> Vec<(String, String)> {
    config
        .destination_connections()
        .into_iter()
        .map(|(kind, name)| (kind.as_str().to_string(), name))
        .collect()
}

/// Waits until Postgres answers; false when `shutdown` came first.
async fn wait_for_database(pool: &PgPool, shutdown: &CancellationToken) -> bool {
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return false,
            attempt = sqlx::query("SELECT 1").execute(pool) => attempt,
        };
        match attempt {
            Ok(_) => return true,
            Err(error) => {
                tracing::warn!(%error, retry_in_secs = DATABASE_WAIT_INTERVAL.as_secs(),
                    "Postgres is not reachable yet; outcomes wait in JetStream until it is.");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(DATABASE_WAIT_INTERVAL) => {}
        }
    }
}
