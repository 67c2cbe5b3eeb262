//! The Chargebee poller against the sandbox's Chargebee and a real JetStream.

mod polling;

use async_nats::jetstream::{self, consumer::pull};
use billsync_bus::{Publisher, StreamSettings, Topology};
use billsync_events::{BillingEvent, BillingEventV1};
use billsync_ingest::chargebee::{ChargebeeSources, ConnectionSettings, PollReport};
use billsync_sandbox::{CbChange, CbSite, RunningSandbox, SandboxConfig};
use futures::StreamExt;
use secrecy::SecretString;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const NATS_URL: &str = "nats://127.0.0.1:4222";
pub const CONNECTION: &str = "cb-test";
pub const SITE: &str = "acme-test";
pub const API_KEY: &str = "cb_test_sandbox_key";

/// A sandbox with one Chargebee site and a fresh JetStream prefix with its events stream.
pub struct Harness {
    pub sandbox: RunningSandbox,
    pub prefix: String,
    pub js: jetstream::Context,
    pub topology: Topology,
    pub streams: StreamSettings,
    pub publisher: Publisher,
}

impl Harness {
    /// `requests_per_minute` is the sandbox site's limit; the poller is given the same.
    pub async fn start(requests_per_minute: u32) -> Self {
        Self::start_with_window(requests_per_minute, Duration::from_secs(3600)).await
    }

    pub async fn start_with_window(requests_per_minute: u32, duplicate_window: Duration) -> Self {
        let prefix = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let client = async_nats::connect(NATS_URL)
            .await
            .expect("NATS with JetStream at 127.0.0.1:4222 (make services)");
        let js = jetstream::new(client);
        let topology = Topology::new(&prefix);
        let streams = StreamSettings {
            duplicate_window,
            replicas: 1,
            retention: Duration::from_secs(3600),
        };
        topology
            .ensure_events_stream(&js, &streams)
            .await
            .expect("declaring the events stream");
        let publisher = Publisher::new(js.clone(), topology.clone(), Duration::from_secs(5));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
            .await
            .expect("starting the sandbox");
        sandbox.chargebee.add_site(CbSite {
            requests_per_minute,
            ..CbSite::new(SITE, API_KEY)
        });
        Self {
            sandbox,
            prefix,
            js,
            topology,
            streams,
            publisher,
        }
    }

    /// The connection's settings: the sandbox's site, a one-second schedule, a short lease.
    pub fn settings(&self) -> ConnectionSettings {
        let mut settings = ConnectionSettings::new(
            CONNECTION,
            SITE,
            &self.sandbox.chargebee_base_url(SITE),
            SecretString::from(API_KEY.to_string()),
        );
        settings.poll_interval = Duration::from_secs(1);
        settings.lease_ttl = Duration::from_secs(3);
        settings.request_timeout = Duration::from_secs(10);
        settings
    }

    /// A fresh set of pollers: another process, as far as leases go.
    pub async fn sources(&self, settings: ConnectionSettings) -> Arc<ChargebeeSources> {
        Arc::new(
            ChargebeeSources::with_settings(vec![settings], self.publisher.clone(), &self.streams)
                .await
                .expect("setting up the pollers"),
        )
    }

    /// Messages in the events stream now.
    pub async fn stream_count(&self) -> u64 {
        let mut stream = self
            .js
            .get_stream(self.topology.events_stream())
            .await
            .expect("events stream");
        stream.info().await.expect("stream info").state.messages
    }

    /// Removes what the test made in NATS.
    pub async fn cleanup(self) {
        let _ = self.js.delete_stream(self.topology.events_stream()).await;
        let _ = self
            .js
            .delete_key_value(self.topology.cursors_bucket())
            .await;
        let _ = self
            .js
            .delete_key_value(self.topology.leases_bucket())
            .await;
        self.sandbox.shutdown().await;
    }
}

/// Runs `sources`' schedule in a task until the returned token is cancelled.
pub fn run(sources: &Arc<ChargebeeSources>) -> (CancellationToken, JoinHandle<()>) {
    let token = CancellationToken::new();
    let running = Arc::clone(sources);
    let stop = token.clone();
    let task = tokio::spawn(async move { running.run(stop).await });
    (token, task)
}

/// One message read back from the events stream.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub msg_id: String,
    pub event: BillingEventV1,
}

/// Reads the events stream from its start with an ordered consumer, as it grows.
pub struct StreamReader {
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl StreamReader {
    pub async fn start(harness: &Harness) -> Self {
        let stream = harness
            .js
            .get_stream(harness.topology.events_stream())
            .await
            .expect("events stream");
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: harness.topology.events_subjects(),
                ..Default::default()
            })
            .await
            .expect("an ordered consumer");
        let mut messages = consumer.messages().await.expect("consuming");
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let task = tokio::spawn(async move {
            while let Some(Ok(message)) = messages.next().await {
                let at = Instant::now();
                let msg_id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                let event: BillingEvent =
                    serde_json::from_slice(&message.payload).expect("a billing event");
                sink.lock().unwrap().push(Received {
                    at,
                    msg_id,
                    event: event.v1().clone(),
                });
            }
        });
        Self { received, task }
    }

    pub fn all(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Waits until at least `n` messages were read.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        eventually(
            within,
            &format!("{n} messages in the events stream"),
            || async { (self.len() >= n).then(|| self.all()) },
        )
        .await
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls `check` every 20 ms until it yields a value; panics with `what` after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `n` completed poll reports that started after `since`.
pub async fn completed_polls(
    reports: &mut broadcast::Receiver<PollReport>,
    n: usize,
    since: Instant,
    within: Duration,
) -> Vec<PollReport> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while seen.len() < n {
        match tokio::time::timeout_at(deadline, reports.recv()).await {
            Ok(Ok(report)) if report.completed && report.started >= since => seen.push(report),
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("the pollers are gone"),
            Err(_) => panic!(
                "timed out after {within:?} waiting for {n} completed polls (saw {})",
                seen.len()
            ),
        }
    }
    seen
}

/// The event id of a sandbox change, for bookkeeping.
pub fn event_id<T>(change: &CbChange<T>) -> String {
    change.event.id.clone()
}
