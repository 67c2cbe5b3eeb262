//! The runtime conformance suite: what every destination inherits from the worker runtime,
//! checked with the destination under test behind a [`Probe`] that logs each call and
//! injects faults, against a real NATS (each run on its own prefix).
//!
//! A destination runs the suite by implementing [`Subject`] (how to configure and build it,
//! and how to read back what its CRM shows) and invoking [`conformance_tests!`]. The faults
//! are injected in front of the destination, so the suite checks the runtime's handling of
//! them with the real destination's writes underneath; the destination's own `classify` of
//! vendor responses is its client's unit tests' business.
//!
//! Time is real, not paused: the runtime's guarantees rest on JetStream (ack waits,
//! redeliveries, consumer state), and a paused tokio clock jumps ahead whenever the runtime
//! waits on a socket, firing the NATS client's own timeouts. The suite keeps its waits to
//! seconds instead.

use crate::destination::{Delivered, DeliveryError, Destination, Pass};
use crate::{run_worker, ConnectionHealth, DestinationStores, WorkerContext, IGNORED_REASON};
use async_nats::jetstream;
use billsync_bus::topology::HEADER_DESTINATIONS;
use billsync_bus::{ignore_key, IgnoredRecord, Publisher, StreamSettings, Topology};
use billsync_config::Config;
use billsync_events::{
    BillingEvent, BillingEventV1, DestinationKind, FailureClass, ObjectKind, Outcome,
    OutcomeResult, RecordVersion, SourceKind,
};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The source connection of every event the suite publishes.
pub const SOURCE: &str = "stripe-rt";
/// A source connection of the configuration that syncs elsewhere.
const OTHER_SOURCE: &str = "stripe-other";
/// The destination connection under test.
pub const CONNECTION: &str = "crm-under-test";

/// A destination under test: how to configure and build it, and what its CRM shows.
pub trait Subject: Send + Sync + 'static {
    type Crm: Destination;

    /// The `[[destinations.<kind>]]` section of connection `name`; `secret` is a file
    /// holding `whsec_conformance`, for sections that need a secret.
    fn destination_toml(&self, name: &str, secret: &Path) -> String;

    /// Extra lines of the `[[syncs]]` entry from [`SOURCE`] to the connection.
    fn sync_toml(&self) -> String {
        String::new()
    }

    fn build(&self, config: &Arc<Config>, stores: &DestinationStores) -> Self::Crm;

    /// The position of the event whose data the CRM shows for `customer` (see
    /// [`customer_event`]: its name ends in `V{position}`), or `None` if it has none.
    fn shown(&self, customer: &str) -> impl Future<Output = Option<i64>> + Send;

    /// The per-event effects the CRM holds for `customer`: the event types whose effects
    /// (tags, tracked events, notes) it shows, once per effect.
    fn effects(&self, customer: &str) -> impl Future<Output = Vec<String>> + Send;
}

/// A Stripe customer event whose data names its position: `name = "Ada V{position}"`.
pub fn customer_event(id: &str, customer: &str, position: i64, event_type: &str) -> BillingEventV1 {
    BillingEventV1 {
        id: id.to_string(),
        source: SourceKind::Stripe,
        connection: SOURCE.into(),
        event_type: event_type.into(),
        object: ObjectKind::Customer,
        object_id: customer.to_string(),
        customer_id: Some(customer.to_string()),
        occurred_at: chrono::Utc::now(),
        version: RecordVersion {
            position,
            event_id: id.to_string(),
            sequence: None,
        },
        run_id: None,
        data: serde_json::json!({
            "id": customer,
            "object": "customer",
            "email": format!("{customer}@example.com"),
            "name": format!("Ada V{position}"),
        }),
        related: serde_json::Value::Null,
    }
}

/// The position a name written by [`customer_event`] carries.
pub fn position_in(name: &str) -> Option<i64> {
    name.rsplit_once('V')?.1.parse().ok()
}

/// A fault the probe injects in place of one delivery attempt.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The attempt fails as a 429 would, with this `Retry-After`.
    Throttled(Option<Duration>),
    /// The attempt is refused for good.
    Refused(String),
    /// The attempt takes this long before reaching the destination.
    Slow(Duration),
}

/// One call the runtime made to the destination.
#[derive(Debug, Clone)]
pub struct Call {
    pub event_id: String,
    pub customer: String,
    pub position: i64,
    pub pass: Pass,
    /// `deliver_effects` rather than `deliver`.
    pub effects_only: bool,
    pub started: Instant,
    pub ended: Instant,
    pub ok: bool,
}

/// The destination under test, behind a log of its calls and a queue of faults.
pub struct Probe<D> {
    inner: D,
    calls: Arc<Mutex<Vec<Call>>>,
    faults: Arc<Mutex<HashMap<String, VecDeque<Fault>>>>,
    /// Calls running now per customer, and the most ever seen at once for one customer.
    running: Arc<Mutex<(HashMap<String, usize>, usize)>>,
}

impl<D: Destination> Probe<D> {
    fn new(inner: D) -> Self {
        Self {
            inner,
            calls: Arc::default(),
            faults: Arc::default(),
            running: Arc::default(),
        }
    }

    /// A second replica's probe: its own destination, the same log, faults and counts.
    fn beside(&self, inner: D) -> Self {
        Self {
            inner,
            calls: Arc::clone(&self.calls),
            faults: Arc::clone(&self.faults),
            running: Arc::clone(&self.running),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    /// Injects `fault` into the next attempt at `event_id` (faults queue up).
    pub fn inject(&self, event_id: &str, fault: Fault) {
        self.faults
            .lock()
            .expect("faults")
            .entry(event_id.to_string())
            .or_default()
            .push_back(fault);
    }

    async fn call<F>(
        &self,
        event: &BillingEventV1,
        pass: Pass,
        effects_only: bool,
        call: F,
    ) -> Result<Delivered, DeliveryError>
    where
        F: Future<Output = Result<Delivered, DeliveryError>>,
    {
        let customer = event.customer_id.clone().unwrap_or_default();
        {
            let mut running = self.running.lock().expect("running");
            let now = running.0.entry(customer.clone()).or_default();
            *now += 1;
            let now = *now;
            running.1 = running.1.max(now);
        }
        let started = Instant::now();
        let fault = self
            .faults
            .lock()
            .expect("faults")
            .get_mut(&event.id)
            .and_then(VecDeque::pop_front);
        let result = match fault {
            Some(Fault::Throttled(retry_after)) => Err(DeliveryError::Retryable {
                message: "429 Too Many Requests (injected)".into(),
                retry_after,
                http_status: Some(429),
            }),
            Some(Fault::Refused(message)) => Err(DeliveryError::Permanent {
                class: FailureClass::Rejected,
                message,
                http_status: Some(422),
                detail: serde_json::Value::Null,
            }),
            Some(Fault::Slow(pause)) => {
                tokio::time::sleep(pause).await;
                call.await
            }
            None => call.await,
        };
        *self
            .running
            .lock()
            .expect("running")
            .0
            .entry(customer.clone())
            .or_default() -= 1;
        self.calls.lock().expect("calls").push(Call {
            event_id: event.id.clone(),
            customer,
            position: event.version.position,
            pass,
            effects_only,
            started,
            ended: Instant::now(),
            ok: result.is_ok(),
        });
        result
    }
}

impl<D: Destination> Destination for Probe<D> {
    fn kind(&self) -> DestinationKind {
        self.inner.kind()
    }

    fn connection(&self) -> &str {
        self.inner.connection()
    }

    async fn deliver(
        &self,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        self.call(event, pass, false, self.inner.deliver(event, pass))
            .await
    }

    async fn deliver_effects(
        &self,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        self.call(event, pass, true, self.inner.deliver_effects(event, pass))
            .await
    }

    fn concurrency(&self) -> usize {
        self.inner.concurrency()
    }

    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        self.inner.healthcheck().await
    }
}

/// One deployment on its own prefix: a Stripe source syncing to the connection under test,
/// another source that syncs elsewhere, and the worker(s) running it.
pub struct Harness<S: Subject> {
    pub subject: Arc<S>,
    pub config: Arc<Config>,
    /// The configuration's text, for [`Harness::reconfigure`].
    text: String,
    _secrets: tempfile::TempDir,
    pub js: jetstream::Context,
    pub topology: Topology,
    client: async_nats::Client,
    stores: DestinationStores,
    /// Each worker's shutdown and task; the task is taken once it is awaited.
    workers: Vec<(CancellationToken, Option<tokio::task::JoinHandle<()>>)>,
    /// Runs (every replica's and every restart's) share this probe's log and faults.
    pub probe: Arc<Probe<S::Crm>>,
    /// Customer ids are unique per harness, so subjects may share one CRM account.
    unique: String,
}

impl<S: Subject> Harness<S> {
    /// A deployment with `workers.ack_wait_secs = ack_wait_secs`.
    pub async fn new(subject: S, ack_wait_secs: u64) -> Harness<S> {
        let url = std::env::var("BILLSYNC_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let unique = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
        let prefix = format!("cf{unique}");
        let secrets = tempfile::tempdir().expect("a temp dir");
        let secret = secrets.path().join("secret");
        std::fs::write(&secret, "whsec_conformance").expect("secret");
        let text = format!(
            r#"
[nats]
url = "{url}"
prefix = "{prefix}"
retention_days = 1
[workers]
max_attempts = 3
ack_wait_secs = {ack_wait_secs}
unknown_sync_wait_secs = 3
[[sources.stripe]]
name = "{SOURCE}"
webhook_secrets = [{{ file = "{secret}" }}]
[[sources.stripe]]
name = "{OTHER_SOURCE}"
webhook_secrets = [{{ file = "{secret}" }}]
{destination}
[[syncs]]
source = "{SOURCE}"
destination = "{CONNECTION}"
{sync}
"#,
            secret = secret.display(),
            destination = subject.destination_toml(CONNECTION, &secret),
            sync = subject.sync_toml(),
        );
        let config = Arc::new(
            Config::from_toml(&text, Path::new("conformance.toml")).expect("suite configuration"),
        );
        let client = billsync_bus::connect(&url, "billsync-conformance")
            .await
            .expect("NATS must run on 127.0.0.1:4222 (make services)");
        let js = jetstream::new(client.clone());
        let topology = Topology::new(&prefix);
        let settings = StreamSettings::from(&config.nats);
        topology
            .ensure_events_stream(&js, &settings)
            .await
            .expect("events stream");
        topology
            .ensure_outcomes_stream(&js, &settings)
            .await
            .expect("outcomes stream");
        let stores = DestinationStores::open(&config, &client)
            .await
            .expect("destination buckets");
        let probe = Arc::new(Probe::new(subject.build(&config, &stores)));
        Harness {
            subject: Arc::new(subject),
            config,
            text,
            _secrets: secrets,
            js,
            topology,
            client,
            stores,
            workers: Vec::new(),
            probe,
            unique,
        }
    }

    /// Stops every worker and changes `workers.ack_wait_secs` for the next ones, as an
    /// operator's configuration change and restart would.
    pub async fn reconfigure(&mut self, ack_wait_secs: u64) {
        for index in 0..self.workers.len() {
            self.stop_worker(index).await;
        }
        let before = format!("ack_wait_secs = {}", self.config.workers.ack_wait_secs);
        self.text = self
            .text
            .replace(&before, &format!("ack_wait_secs = {ack_wait_secs}"));
        self.config = Arc::new(
            Config::from_toml(&self.text, Path::new("conformance.toml"))
                .expect("suite configuration"),
        );
    }

    /// A customer id of this harness.
    pub fn customer(&self, name: &str) -> String {
        format!("cus_{name}_{}", self.unique)
    }

    /// Starts a worker (a replica, or a restart) on the shared probe; returns its index.
    pub fn start(&mut self) -> usize {
        let probe = if self.workers.is_empty() {
            Arc::clone(&self.probe)
        } else {
            Arc::new(
                self.probe
                    .beside(self.subject.build(&self.config, &self.stores)),
            )
        };
        let shutdown = CancellationToken::new();
        let ctx = WorkerContext {
            config: Arc::clone(&self.config),
            client: self.client.clone(),
            shutdown: shutdown.clone(),
        };
        let task = tokio::spawn(async move {
            run_worker(probe, ctx, ConnectionHealth::new())
                .await
                .expect("worker");
        });
        self.workers.push((shutdown, Some(task)));
        self.workers.len() - 1
    }

    /// Stops worker `index` and waits until it has drained; returns how long that took.
    pub async fn stop_worker(&mut self, index: usize) -> Duration {
        let (shutdown, task) = &mut self.workers[index];
        let started = Instant::now();
        shutdown.cancel();
        if let Some(task) = task.take() {
            task.await.expect("worker task");
        }
        started.elapsed()
    }

    /// Publishes `customer.updated` events at positions `1..=last` of every customer,
    /// interleaved (`evt_{customer}_{position}`), each slowed or failed by `fault`.
    pub async fn publish_series(&self, customers: &[String], last: i64, fault: Option<Fault>) {
        for position in 1..=last {
            for customer in customers {
                let id = format!("evt_{customer}_{position}");
                let event = customer_event(&id, customer, position, "customer.updated");
                if let Some(fault) = &fault {
                    self.probe.inject(&id, fault.clone());
                }
                self.publish(&event).await;
            }
        }
    }

    /// Once the outcome of `customer`'s event at position `last` (see
    /// [`Harness::publish_series`]) is out, checks the CRM shows it and returns the
    /// positions of the customer's events in the order they were delivered.
    pub async fn delivered_positions(&self, customer: &str, last: i64) -> Vec<i64> {
        let id = format!("evt_{customer}_{last}");
        eventually(
            "the newest event's outcome",
            Duration::from_secs(60),
            async || self.outcome_of(&id).await,
        )
        .await;
        assert_eq!(self.subject.shown(customer).await, Some(last));
        self.probe
            .calls()
            .iter()
            .filter(|c| c.customer == customer)
            .map(|c| c.position)
            .collect()
    }

    pub async fn publish(&self, event: &BillingEventV1) {
        self.publisher()
            .publish_event(&BillingEvent::V1(event.clone()))
            .await
            .expect("publish event");
    }

    /// Publishes `event` under another message id, as a repeated webhook would be.
    pub async fn publish_again(&self, event: &BillingEventV1, copy: &str) {
        let payload = serde_json::to_vec(&BillingEvent::V1(event.clone())).expect("encode");
        let publisher = self.publisher();
        let headers = publisher.event_headers(event);
        publisher
            .publish(
                self.topology.event_subject(event),
                &format!("{}-{copy}", event.id),
                payload.into(),
                headers,
            )
            .await
            .expect("publish a copy");
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(
            self.js.clone(),
            self.topology.clone(),
            Duration::from_secs(5),
        )
        .routing(&self.config)
    }

    /// Every outcome so far, oldest first.
    pub async fn outcomes(&self) -> Vec<Outcome> {
        read_outcomes(&self.js, &self.topology).await
    }

    pub async fn outcome_of(&self, event_id: &str) -> Option<Outcome> {
        self.outcomes()
            .await
            .into_iter()
            .find(|o| o.v1().event_id == event_id)
    }

    /// The worker consumer's state: (deliveries so far, each redelivery counted, and
    /// messages unacknowledged now); zeros until a worker has created the consumer.
    pub async fn consumer_state(&self) -> (usize, usize) {
        let stream = self
            .js
            .get_stream(self.topology.events_stream())
            .await
            .expect("events stream");
        let Ok(mut consumer) = stream
            .get_consumer::<jetstream::consumer::pull::Config>(
                &self.topology.worker_consumer(CONNECTION),
            )
            .await
        else {
            return (0, 0);
        };
        let info = consumer.info().await.expect("consumer info");
        (
            info.delivered.consumer_sequence as usize,
            info.num_ack_pending,
        )
    }

    pub async fn finish(mut self) {
        for (shutdown, task) in self.workers.drain(..) {
            shutdown.cancel();
            if let Some(task) = task {
                task.await.expect("worker task");
            }
        }
        self.topology.remove_all(&self.js).await;
    }
}

/// Every outcome on `topology`'s outcomes stream, oldest first.
pub async fn read_outcomes(js: &jetstream::Context, topology: &Topology) -> Vec<Outcome> {
    let Ok(mut stream) = js.get_stream(topology.outcomes_stream()).await else {
        return Vec::new();
    };
    let last = stream
        .info()
        .await
        .map(|i| i.state.last_sequence)
        .unwrap_or(0);
    let mut found = Vec::new();
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            if let Ok(outcome) = serde_json::from_slice(&message.payload) {
                found.push(outcome);
            }
        }
    }
    found
}

/// Polls `check` every 50 ms until it gives a value; panics naming `what` after `deadline`.
pub async fn eventually<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events of one customer apply in stream order, customers side by side; the CRM ends on
/// each customer's newest data and every event has a `Synced` outcome naming a CRM record.
pub async fn order_per_record<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 10).await;
    let customers: Vec<String> = (0..3).map(|i| h.customer(&format!("order{i}"))).collect();
    h.publish_series(&customers, 6, None).await;
    h.start();
    for customer in &customers {
        let positions = h.delivered_positions(customer, 6).await;
        assert_eq!(
            positions,
            (1..=6).collect::<Vec<_>>(),
            "{customer}'s events ran out of order"
        );
    }
    let last = format!("evt_{}_6", customers[0]);
    let outcome = eventually(
        "the newest event's outcome",
        Duration::from_secs(10),
        async || h.outcome_of(&last).await,
    )
    .await;
    assert!(
        matches!(
            &outcome.v1().result,
            OutcomeResult::Synced { crm_id: Some(_) }
        ),
        "{outcome:?}"
    );
    h.finish().await;
}

/// 4a: an event older than its record's newest (Stripe does not promise order) leaves the
/// record as the newer event wrote it, yet its own effects happen — once, however often it
/// is delivered.
pub async fn stale_events_apply_their_effects_once<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 10).await;
    let customer = h.customer("stale");
    let updated = customer_event(
        &format!("evt_{customer}_u"),
        &customer,
        5,
        "customer.updated",
    );
    let created = customer_event(
        &format!("evt_{customer}_c"),
        &customer,
        2,
        "customer.created",
    );
    h.publish(&updated).await;
    h.start();
    eventually(
        "the newer event applied",
        Duration::from_secs(30),
        async || (h.subject.shown(&customer).await == Some(5)).then_some(()),
    )
    .await;
    h.publish(&created).await;
    eventually(
        "the late customer.created's effects",
        Duration::from_secs(30),
        async || {
            let effects = h.subject.effects(&customer).await;
            effects
                .iter()
                .any(|e| e == "customer.created")
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        h.subject.shown(&customer).await,
        Some(5),
        "the record went back"
    );
    // The same late event twice more, as repeated webhooks.
    h.publish_again(&created, "again").await;
    h.publish_again(&created, "and-again").await;
    eventually("both copies settled", Duration::from_secs(30), async || {
        let copies = h
            .probe
            .calls()
            .iter()
            .filter(|c| c.event_id == created.id && c.effects_only)
            .count();
        (copies >= 3 && h.consumer_state().await.1 == 0).then_some(())
    })
    .await;
    let effects = h.subject.effects(&customer).await;
    let count = |kind: &str| effects.iter().filter(|e| *e == kind).count();
    assert_eq!(count("customer.created"), 1, "effects: {effects:?}");
    assert_eq!(count("customer.updated"), 1, "effects: {effects:?}");
    assert_eq!(h.subject.shown(&customer).await, Some(5));
    assert!(
        h.probe
            .calls()
            .iter()
            .all(|c| c.event_id != created.id || c.effects_only),
        "the late event's data was delivered as the record's state"
    );
    h.finish().await;
}

/// A record an operator ignored is skipped (a `Skipped` outcome) until an event shows it
/// modified, which is delivered.
pub async fn ignored_records_wait_for_a_modification<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 10).await;
    let customer = h.customer("ignored");
    let first = customer_event(
        &format!("evt_{customer}_1"),
        &customer,
        1,
        "customer.updated",
    );
    h.start();
    h.publish(&first).await;
    eventually("the first event", Duration::from_secs(30), async || {
        (h.subject.shown(&customer).await == Some(1)).then_some(())
    })
    .await;
    let second = customer_event(
        &format!("evt_{customer}_2"),
        &customer,
        2,
        "customer.updated",
    );
    let ignores =
        h.js.get_key_value(h.topology.ignores_bucket())
            .await
            .expect("ignores bucket");
    let key = ignore_key(
        h.probe.kind(),
        CONNECTION,
        SourceKind::Stripe,
        SOURCE,
        &second.record_key(),
    );
    let ignored = serde_json::to_vec(&IgnoredRecord::of(&second)).expect("encode");
    ignores.put(key, ignored.into()).await.expect("ignore");
    // The same data under a newer version is no modification.
    let mut same = second.clone();
    same.id = format!("evt_{customer}_2b");
    same.version.position = 3;
    same.version.event_id = same.id.clone();
    h.publish(&same).await;
    let skipped = eventually(
        "the ignored record's outcome",
        Duration::from_secs(30),
        async || h.outcome_of(&same.id).await,
    )
    .await;
    assert!(
        matches!(&skipped.v1().result, OutcomeResult::Skipped { reason } if reason == IGNORED_REASON),
        "{skipped:?}"
    );
    assert_eq!(h.subject.shown(&customer).await, Some(1));
    let modified = customer_event(
        &format!("evt_{customer}_4"),
        &customer,
        4,
        "customer.updated",
    );
    h.publish(&modified).await;
    eventually(
        "the modification delivered",
        Duration::from_secs(30),
        async || (h.subject.shown(&customer).await == Some(4)).then_some(()),
    )
    .await;
    h.finish().await;
}

/// A throttled attempt is tried again no sooner than the CRM's `Retry-After`; a refusal is
/// one `Failed` outcome that says what the CRM said, and is not tried again.
pub async fn retries_honour_retry_after_and_refusals_fail_once<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 10).await;
    let throttled = h.customer("throttled");
    let refused = h.customer("refused");
    let t = customer_event(
        &format!("evt_{throttled}"),
        &throttled,
        1,
        "customer.updated",
    );
    let r = customer_event(&format!("evt_{refused}"), &refused, 1, "customer.updated");
    h.probe
        .inject(&t.id, Fault::Throttled(Some(Duration::from_secs(2))));
    h.probe
        .inject(&r.id, Fault::Refused("email is invalid (injected)".into()));
    h.start();
    h.publish(&t).await;
    h.publish(&r).await;
    eventually(
        "the throttled event's outcome",
        Duration::from_secs(30),
        async || h.outcome_of(&t.id).await,
    )
    .await;
    assert_eq!(h.subject.shown(&throttled).await, Some(1));
    let attempts: Vec<Call> = h
        .probe
        .calls()
        .into_iter()
        .filter(|c| c.event_id == t.id)
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let waited = attempts[1].started - attempts[0].ended;
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(6),
        "the retry came {waited:?} after a Retry-After of 2 s"
    );
    let failed = eventually(
        "the refusal's outcome",
        Duration::from_secs(30),
        async || h.outcome_of(&r.id).await,
    )
    .await;
    match &failed.v1().result {
        OutcomeResult::Failed(failure) => {
            assert_eq!(failure.class, FailureClass::Rejected);
            assert_eq!(failure.message, "email is invalid (injected)");
            assert_eq!(failure.attempts, 1);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(
        h.probe
            .calls()
            .iter()
            .filter(|c| c.event_id == r.id)
            .count(),
        1
    );
    h.finish().await;
}

/// Two replicas on one consumer never write one customer's records at once, nor out of
/// order.
pub async fn two_replicas_keep_one_writer_per_record<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 10).await;
    let customers: Vec<String> = (0..4).map(|i| h.customer(&format!("pair{i}"))).collect();
    h.start();
    h.start();
    let slow = Fault::Slow(Duration::from_millis(30));
    h.publish_series(&customers, 5, Some(slow)).await;
    for customer in &customers {
        let positions = h.delivered_positions(customer, 5).await;
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "{customer}'s events ran out of order across replicas: {positions:?}"
        );
    }
    let most = h.probe.running.lock().expect("running").1;
    assert_eq!(most, 1, "two replicas wrote one customer's records at once");
    h.finish().await;
}

/// 4d: events queued behind a long write in their customer's lane are kept alive, so
/// JetStream never redelivers them while they wait.
pub async fn queued_events_are_never_redelivered<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 2).await;
    let customer = h.customer("queued");
    let events: Vec<BillingEventV1> = (1..=4)
        .map(|p| {
            customer_event(
                &format!("evt_{customer}_{p}"),
                &customer,
                p,
                "customer.updated",
            )
        })
        .collect();
    // The first write takes three ack waits; the others wait behind it.
    h.probe
        .inject(&events[0].id, Fault::Slow(Duration::from_secs(6)));
    for event in &events {
        h.publish(event).await;
    }
    h.start();
    eventually(
        "the newest event's outcome",
        Duration::from_secs(40),
        async || h.outcome_of(&events[3].id).await,
    )
    .await;
    assert_eq!(h.subject.shown(&customer).await, Some(4));
    let (deliveries, _) = h.consumer_state().await;
    assert_eq!(
        deliveries, 4,
        "messages waiting in the lane were redelivered"
    );
    let delivered = h.probe.calls().len();
    assert_eq!(delivered, 4, "{:?}", h.probe.calls());
    h.finish().await;
}

/// 4f: a backlog at the CRM's limit completes roughly in arrival order, each event seconds
/// after it starts, rather than every event advancing together and finishing together.
/// `customers` new customers arrive at once (as after an outage).
pub async fn a_backlog_completes_in_arrival_order<S: Subject>(subject: S, customers: usize) {
    let mut h = Harness::new(subject, 5).await;
    let names: Vec<String> = (0..customers)
        .map(|i| h.customer(&format!("b{i:04}")))
        .collect();
    for customer in &names {
        let event = customer_event(&format!("evt_{customer}"), customer, 1, "customer.created");
        h.publish(&event).await;
    }
    h.start();
    eventually("the whole backlog", Duration::from_secs(300), async || {
        (h.probe.calls().iter().filter(|c| c.ok).count() >= customers).then_some(())
    })
    .await;
    let calls = h.probe.calls();
    let start = calls.iter().map(|c| c.started).min().expect("calls");
    let mut done: Vec<f64> = calls
        .iter()
        .map(|c| (c.ended - start).as_secs_f64())
        .collect();
    done.sort_by(f64::total_cmp);
    let (first, median, last) = (done[0], done[done.len() / 2], done[done.len() - 1]);
    let mut took: Vec<f64> = calls
        .iter()
        .map(|c| (c.ended - c.started).as_secs_f64())
        .collect();
    took.sort_by(f64::total_cmp);
    let p90 = took[took.len() * 9 / 10];
    println!(
        "backlog of {customers}: first done {first:.2} s, median {median:.2} s, last {last:.2} s; \
         p90 of each event's own time {p90:.2} s"
    );
    assert!(
        first < last * 0.25,
        "the first event finished at {first:.2} s of {last:.2} s"
    );
    assert!(
        median > last * 0.3 && median < last * 0.7,
        "the median event finished at {median:.2} s of {last:.2} s"
    );
    assert!(
        p90 < last * 0.3,
        "events took {p90:.2} s each (p90) of {last:.2} s"
    );
    let (deliveries, _) = h.consumer_state().await;
    assert_eq!(deliveries, customers, "waiting events were redelivered");
    h.finish().await;
}

/// On shutdown the worker finishes the events it started and hands back the others at
/// once; a restart applies those, each event exactly once overall.
pub async fn shutdown_finishes_started_events_and_hands_back_the_rest<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 10).await;
    let count = h.probe.concurrency() * 3;
    let names: Vec<String> = (0..count)
        .map(|i| h.customer(&format!("d{i:02}")))
        .collect();
    let events: Vec<BillingEventV1> = names
        .iter()
        .map(|c| customer_event(&format!("evt_{c}"), c, 1, "customer.updated"))
        .collect();
    for event in &events {
        h.probe
            .inject(&event.id, Fault::Slow(Duration::from_secs(2)));
        h.publish(event).await;
    }
    let first = h.start();
    eventually("a started event", Duration::from_secs(20), async || {
        let (_, unacked) = h.consumer_state().await;
        (unacked > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drained = h.stop_worker(first).await;
    let started = h.probe.calls();
    assert!(
        drained < Duration::from_secs(8),
        "draining took {drained:?}: the worker worked off events it had not started"
    );
    assert!(
        !started.is_empty() && started.len() < events.len(),
        "{} events ran before the stop",
        started.len()
    );
    for call in &started {
        let outcome = h.outcome_of(&call.event_id).await;
        assert!(
            outcome.is_some(),
            "{} finished without its outcome",
            call.event_id
        );
    }
    h.start();
    eventually(
        "every event after the restart",
        Duration::from_secs(120),
        async || {
            (h.probe.calls().len() >= events.len() && h.consumer_state().await.1 == 0).then_some(())
        },
    )
    .await;
    let mut ids: Vec<String> = h.probe.calls().into_iter().map(|c| c.event_id).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "an event was delivered twice");
    assert_eq!(ids.len(), events.len());
    h.finish().await;
}

/// A message that is not a billing event becomes a failure of its own, listed with the
/// other sync errors, and is never delivered.
pub async fn unreadable_messages_become_failures<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 10).await;
    h.start();
    let sample = customer_event("evt_sample", &h.customer("garbage"), 1, "customer.updated");
    let subject = h.topology.event_subject(&sample);
    let publisher = h.publisher();
    publisher
        .publish(
            subject,
            "garbage-1",
            "{not json".into(),
            async_nats::HeaderMap::new(),
        )
        .await
        .expect("publish garbage");
    let failed = eventually(
        "the unreadable message's failure",
        Duration::from_secs(30),
        async || {
            h.outcomes()
                .await
                .into_iter()
                .find(|o| matches!(o.v1().result, OutcomeResult::Failed(_)))
        },
    )
    .await;
    match &failed.v1().result {
        OutcomeResult::Failed(failure) => assert_eq!(failure.class, FailureClass::InvalidEvent),
        _ => unreachable!(),
    }
    assert!(h.probe.calls().is_empty());
    h.finish().await;
}

/// 4e: an event ingest routes here while this worker's configuration has no such sync (a
/// rollout that reached ingest first) is held back, then becomes a configuration error an
/// operator sees; an event of a source that syncs elsewhere is acked without a word.
pub async fn events_without_a_sync_here_wait_then_fail_visibly<S: Subject>(subject: S) {
    let mut h = Harness::new(subject, 10).await;
    h.start();
    let customer = h.customer("rollout");
    let mut new_sync = customer_event(
        &format!("evt_{customer}_new"),
        &customer,
        1,
        "customer.updated",
    );
    new_sync.connection = "stripe-new".into();
    let mut elsewhere = customer_event(
        &format!("evt_{customer}_other"),
        &customer,
        1,
        "customer.updated",
    );
    elsewhere.connection = OTHER_SOURCE.into();
    let publish_routed = |event: &BillingEventV1, to: &str| {
        let publisher = h.publisher();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HEADER_DESTINATIONS, to);
        let payload = serde_json::to_vec(&BillingEvent::V1(event.clone())).expect("encode");
        let subject = h.topology.event_subject(event);
        let id = event.id.clone();
        async move {
            publisher
                .publish(subject, &id, payload.into(), headers)
                .await
                .expect("publish")
        }
    };
    let published = Instant::now();
    publish_routed(&new_sync, &format!("other-crm,{CONNECTION}")).await;
    publish_routed(&elsewhere, "other-crm").await;
    let failed = eventually(
        "the configuration error",
        Duration::from_secs(30),
        async || h.outcome_of(&new_sync.id).await,
    )
    .await;
    assert!(
        published.elapsed() >= Duration::from_secs(3),
        "the event was not held back for unknown_sync_wait_secs"
    );
    match &failed.v1().result {
        OutcomeResult::Failed(failure) => {
            assert_eq!(failure.class, FailureClass::Configuration);
            assert!(
                failure.message.contains("source = \"stripe-new\"")
                    && failure.message.contains(CONNECTION),
                "{}",
                failure.message
            );
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
    eventually(
        "nothing left unacked",
        Duration::from_secs(10),
        async || (h.consumer_state().await.1 == 0).then_some(()),
    )
    .await;
    assert!(h.outcome_of(&elsewhere.id).await.is_none());
    assert!(h.probe.calls().is_empty(), "{:?}", h.probe.calls());
    h.finish().await;
}

/// Generates, in a module `conformance`, one `#[tokio::test]` per conformance check for the
/// [`Subject`] that the async expression `$make` builds (evaluated once per test, inside that
/// module: it sees the caller's items through `use super::*`). `backlog` is how many
/// customers the backlog check sends (about a minute's work for the CRM at its limit).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr, backlog = $backlog:expr) => {
        $crate::conformance_tests!(@suite $make, $backlog; stale_events_apply_their_effects_once);
    };
    // A destination without per-event effects (no tags, tracked events or notes: Zoho CRM
    // shows records' state only) runs every check but the effects one.
    ($make:expr, backlog = $backlog:expr, no_event_effects) => {
        $crate::conformance_tests!(@suite $make, $backlog;);
    };
    (@suite $make:expr, $backlog:expr; $($extra:ident),*) => {
        mod conformance {
            use super::*;
            $crate::conformance_tests!(@each $make;
                order_per_record,
                ignored_records_wait_for_a_modification,
                retries_honour_retry_after_and_refusals_fail_once,
                two_replicas_keep_one_writer_per_record,
                queued_events_are_never_redelivered,
                shutdown_finishes_started_events_and_hands_back_the_rest,
                unreadable_messages_become_failures,
                events_without_a_sync_here_wait_then_fail_visibly
                $(, $extra)*
            );
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_backlog_completes_in_arrival_order() {
                $crate::conformance::a_backlog_completes_in_arrival_order($make.await, $backlog)
                    .await;
            }
        }
    };
    (@each $make:expr; $($check:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::conformance::$check($make.await).await;
            }
        )+
    };
}
