//! `spawn_app()`: the errors service on port 0 against a fresh database and NATS prefix.

use async_nats::jetstream::{self, consumer};
use async_nats::HeaderMap;
use billsync_bus::{Published, Publisher, Topology};
use billsync_config::Config;
use billsync_events::{
    BillingEvent, BillingEventV1, DestinationKind, Failure, FailureClass, ObjectKind, Outcome,
    OutcomeResult, OutcomeV1, RecordVersion, SourceKind,
};
use bytes::Bytes;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const POSTGRES_SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const NATS_URL: &str = "nats://127.0.0.1:4222";
pub const AC: &str = "ac-main";
pub const PD: &str = "pd-main";
pub const CB: &str = "cb-main";

/// A database of its own, dropped when the test ends (even when it panics).
pub struct TestDatabase {
    pub name: String,
    /// `postgres://user@host:port` of the server holding it.
    pub server: String,
}

impl TestDatabase {
    pub fn new_name() -> Self {
        Self::on(POSTGRES_SERVER)
    }

    /// A database on another server (a test's private one, dropped with the server).
    pub fn on(server: &str) -> Self {
        Self {
            name: format!("billsync_errors_test_{}", uuid::Uuid::new_v4().simple()),
            server: server.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    pub async fn create(&self) {
        let mut admin = PgConnection::connect(&format!("{}/postgres", self.server))
            .await
            .expect("Postgres at 127.0.0.1:5432 (trust auth) is needed for these tests");
        sqlx::query(&format!("CREATE DATABASE \"{}\"", self.name))
            .execute(&mut admin)
            .await
            .expect("create the test database");
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if self.server != POSTGRES_SERVER {
            // A private server's data directory goes with the server.
            return;
        }
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block; a thread with its own
        // runtime can.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin =
                    PgConnection::connect(&format!("{POSTGRES_SERVER}/postgres")).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

pub struct Secrets {
    pub admin_token: String,
    pub ac_token: String,
    pub pd_token: String,
    pub cb_key: String,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub secrets: Secrets,
    pub topology: Topology,
    pub js: jetstream::Context,
    pub publisher: Publisher,
    pub pool: Option<PgPool>,
    pub db: TestDatabase,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub struct Options {
    pub admin_token: bool,
    /// Start before the database exists, as when Postgres comes up after the service.
    pub database_later: bool,
    /// `postgres://user@host:port` of the server to use instead of the machine's.
    pub postgres_server: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            admin_token: true,
            database_later: false,
            postgres_server: None,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("t{}", &tag[..10]);
    let var = |what: &str| format!("BILLSYNC_ERRORS_IT_{}_{what}", &tag[..12].to_uppercase());
    let secrets = Secrets {
        admin_token: format!("admintok{}", &tag[..16]),
        ac_token: format!("acsecret{}", &tag[16..]),
        pd_token: format!("pdsecret{}", &tag[..20]),
        cb_key: format!("cbsecret{}", &tag[12..]),
    };
    for (name, value) in [
        ("ADMIN", &secrets.admin_token),
        ("AC", &secrets.ac_token),
        ("PD", &secrets.pd_token),
        ("CB", &secrets.cb_key),
    ] {
        std::env::set_var(var(name), value);
    }
    let admin = if options.admin_token {
        format!("admin_token = {{ env = \"{}\" }}", var("ADMIN"))
    } else {
        String::new()
    };
    let db = match &options.postgres_server {
        Some(server) => TestDatabase::on(server),
        None => TestDatabase::new_name(),
    };
    let toml = format!(
        r#"
[nats]
url = "{NATS_URL}"
prefix = "{prefix}"
duplicate_window_secs = 120
retention_days = 1

[postgres]
url = "{db_url}"
max_connections = 4

[errors]
listen = "127.0.0.1:0"
{admin}

[[sources.chargebee]]
name = "{CB}"
site = "acme-test"
api_key = {{ env = "{cb}" }}

[[destinations.activecampaign]]
name = "{AC}"
base_url = "http://127.0.0.1:9"
api_token = {{ env = "{ac}" }}

[[destinations.pipedrive]]
name = "{PD}"
base_url = "http://127.0.0.1:9"
api_token = {{ env = "{pd}" }}
"#,
        db_url = db.url(),
        cb = var("CB"),
        ac = var("AC"),
        pd = var("PD"),
    );
    let mut config = Config::from_toml(&toml, Path::new("test.toml")).expect("valid test config");
    // Environment overrides (DATABASE_URL, BILLSYNC_NATS_PREFIX) must not send two tests to
    // one database or prefix.
    config.postgres.url = db.url();
    config.nats.url = NATS_URL.into();
    config.nats.prefix = prefix.clone();
    let config = Arc::new(config);

    if !options.database_later {
        db.create().await;
    }
    let client = billsync_bus::connect(NATS_URL, "billsync-errors-it")
        .await
        .expect("NATS");
    let js = jetstream::new(client.clone());
    let topology = Topology::new(&prefix);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(billsync_errors::run(
        Arc::clone(&config),
        client,
        listener,
        shutdown.clone(),
    ));
    let mut app = TestApp {
        base,
        http: reqwest::Client::new(),
        secrets,
        publisher: Publisher::new(js.clone(), topology.clone(), Duration::from_secs(5)),
        topology,
        js,
        pool: None,
        db,
        shutdown,
        task: Some(task),
    };
    if options.database_later {
        // Streams are declared before the HTTP server starts.
        let url = format!("{}/healthz", app.base);
        let http = app.http.clone();
        eventually("the service to serve /healthz", || {
            let request = http.get(&url).send();
            async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        })
        .await;
    } else {
        app.wait_ready().await;
    }
    app
}

impl TestApp {
    /// Waits for `/readyz` (NATS up, Postgres reachable and migrated) and opens a pool.
    pub async fn wait_ready(&mut self) {
        let url = format!("{}/readyz", self.base);
        let http = self.http.clone();
        eventually("the service to become ready", || {
            let request = http.get(&url).send();
            async move { request.await.ok().filter(|r| r.status() == 200).map(|_| ()) }
        })
        .await;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.db.url())
            .await
            .expect("test pool");
        self.pool = Some(pool);
    }

    pub fn pool(&self) -> &PgPool {
        self.pool.as_ref().expect("the app is ready")
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.secrets.admin_token)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.secrets.admin_token)
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(status, 200, "GET {path} answered {status}: {body}");
        body
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Value {
        let response = self.post(path).json(&body).send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.expect("JSON body");
        assert_eq!(status, 200, "POST {path} answered {status}: {body}");
        body
    }

    pub async fn publish(&self, outcome: &Outcome) -> Published {
        self.publisher
            .publish_outcome(outcome)
            .await
            .expect("publish outcome")
    }

    /// Publishes `outcome` again under another message id, as JetStream redelivers a message
    /// whose ack was lost.
    pub async fn redeliver(&self, outcome: &Outcome) -> Published {
        let v1 = outcome.v1();
        let status = match v1.result {
            OutcomeResult::Synced { .. } => "synced",
            OutcomeResult::Failed(_) => "failed",
            OutcomeResult::Skipped { .. } => "skipped",
        };
        let subject = self
            .topology
            .outcome_subject(&v1.destination_connection, status);
        let payload = Bytes::from(serde_json::to_vec(outcome).expect("encode"));
        let msg_id = format!("redelivery-{}", uuid::Uuid::new_v4());
        self.publisher
            .publish(subject, &msg_id, payload, HeaderMap::new())
            .await
            .expect("publish")
    }

    /// Waits until the errors consumer has acked everything up to stream sequence `sequence`.
    pub async fn wait_consumed(&self, sequence: u64) {
        self.wait_consumed_within(sequence, Duration::from_secs(10))
            .await
    }

    pub async fn wait_consumed_within(&self, sequence: u64, limit: Duration) {
        let js = self.js.clone();
        let stream = self.topology.outcomes_stream();
        let name = self.topology.errors_consumer();
        eventually_within("the errors consumer to ack the outcome", limit, || {
            let js = js.clone();
            let (stream, name) = (stream.clone(), name.clone());
            async move {
                let mut consumer: consumer::PullConsumer =
                    js.get_consumer_from_stream(name, stream).await.ok()?;
                let info = consumer.info().await.ok()?;
                (info.ack_floor.stream_sequence >= sequence).then_some(())
            }
        })
        .await;
    }

    /// The ignores bucket the workers read.
    pub async fn ignores(&self) -> jetstream::kv::Store {
        self.js
            .get_key_value(self.topology.ignores_bucket())
            .await
            .expect("the errors service declares the ignores bucket")
    }

    /// Every row of `sync_failures`, as JSON, for assertions on what was stored.
    pub async fn stored_failures(&self) -> Vec<Value> {
        sqlx::query_scalar("SELECT to_jsonb(f) FROM sync_failures f ORDER BY id")
            .fetch_all(self.pool())
            .await
            .expect("read sync_failures")
    }

    /// Waits until the failure list (status `status`) holds a row for `record_key` at
    /// `destination_connection` for which `accept` holds.
    pub async fn wait_failure(
        &self,
        status: &str,
        destination_connection: &str,
        record_key: &str,
        accept: impl Fn(&Value) -> bool,
    ) -> Value {
        let what = format!("a {status} failure of {record_key} at {destination_connection}");
        let accept = &accept;
        eventually(&what, || async move {
            let list = self
                .get(&format!("/api/v1/failures?status={status}&limit=500"))
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()?;
            list["items"]
                .as_array()?
                .iter()
                .find(|item| {
                    item["destination_connection"] == destination_connection
                        && item["record_key"] == record_key
                        && accept(item)
                })
                .cloned()
        })
        .await
    }

    /// Stops the service (asserting it ended cleanly) and removes its streams.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let ended = tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("the service stops within 15 s of shutdown")
                .expect("the service task did not panic");
            ended.expect("the service ended without error");
        }
        if let Some(pool) = self.pool.take() {
            pool.close().await;
        }
        for stream in [
            self.topology.outcomes_stream(),
            self.topology.replay_stream(),
        ] {
            let _ = self.js.delete_stream(stream).await;
        }
        let _ = self
            .js
            .delete_key_value(self.topology.ignores_bucket())
            .await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `probe` every 50 ms until it yields a value; panics after 10 s.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(10), &mut probe).await
}

pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A moment in the test's past, `seconds` apart per step, at microsecond precision.
pub fn at(step: i64) -> DateTime<Utc> {
    let base = DateTime::from_timestamp(1_750_000_000, 0).expect("valid time");
    base + ChronoDuration::seconds(step) + ChronoDuration::microseconds(123)
}

pub fn customer_event(
    object_id: &str,
    event_id: &str,
    run_id: Option<&str>,
    data: Value,
) -> BillingEvent {
    BillingEvent::V1(BillingEventV1 {
        id: event_id.into(),
        source: SourceKind::Chargebee,
        connection: CB.into(),
        event_type: "customer_changed".into(),
        object: ObjectKind::Customer,
        object_id: object_id.into(),
        customer_id: Some(object_id.into()),
        occurred_at: at(0),
        version: RecordVersion {
            position: 1,
            event_id: event_id.into(),
            sequence: None,
        },
        run_id: run_id.map(str::to_string),
        data,
        related: Value::Null,
    })
}

pub fn destination_kind(connection: &str) -> DestinationKind {
    match connection {
        PD => DestinationKind::Pipedrive,
        _ => DestinationKind::Activecampaign,
    }
}

fn outcome(
    destination_connection: &str,
    event: &BillingEvent,
    when: DateTime<Utc>,
    result: OutcomeResult,
) -> Outcome {
    let v1 = event.v1();
    Outcome::V1(OutcomeV1 {
        destination: destination_kind(destination_connection),
        destination_connection: destination_connection.into(),
        source: v1.source,
        source_connection: v1.connection.clone(),
        record_key: v1.record_key(),
        event_id: v1.id.clone(),
        event_type: v1.event_type.clone(),
        run_id: v1.run_id.clone(),
        at: when,
        result,
    })
}

pub fn failed(
    destination_connection: &str,
    event: &BillingEvent,
    when: DateTime<Utc>,
    message: &str,
    vendor_detail: Value,
) -> Outcome {
    outcome(
        destination_connection,
        event,
        when,
        OutcomeResult::Failed(Failure {
            class: FailureClass::Rejected,
            message: message.into(),
            http_status: Some(422),
            vendor_detail,
            attempts: 1,
            event: event.clone(),
        }),
    )
}

pub fn synced(destination_connection: &str, event: &BillingEvent, when: DateTime<Utc>) -> Outcome {
    outcome(
        destination_connection,
        event,
        when,
        OutcomeResult::Synced {
            crm_id: Some("42".into()),
        },
    )
}

pub fn skipped(
    destination_connection: &str,
    event: &BillingEvent,
    when: DateTime<Utc>,
    reason: &str,
) -> Outcome {
    outcome(
        destination_connection,
        event,
        when,
        OutcomeResult::Skipped {
            reason: reason.into(),
        },
    )
}

pub fn simple_failure(destination_connection: &str, object_id: &str, step: i64) -> Outcome {
    let event = customer_event(
        object_id,
        &format!("ev_{object_id}_{step}"),
        None,
        json!({"id": object_id}),
    );
    failed(
        destination_connection,
        &event,
        at(step),
        "Email already belongs to another person",
        Value::Null,
    )
}
