//! The worker runtime against a real NATS with a fake destination: what every destination
//! inherits. Each test has its own prefix, so tests run in parallel on the shared server.

use async_nats::jetstream;
use billsync_bus::{Publisher, StreamSettings, Topology};
use billsync_config::Config;
use billsync_events::{
    BillingEvent, BillingEventV1, DestinationKind, ObjectKind, Outcome, OutcomeResult,
    RecordVersion, SourceKind,
};
use billsync_worker::{
    run_worker, ConnectionHealth, Delivered, DeliveryError, Destination, Pass, WorkerContext,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A CRM that records what it was given; `on_deliver` runs before each delivery returns.
struct FakeCrm {
    delivered: Mutex<Vec<String>>,
    on_deliver: Box<dyn Fn(&BillingEventV1) + Send + Sync>,
}

impl Destination for FakeCrm {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Activecampaign
    }

    fn connection(&self) -> &str {
        "fake-crm"
    }

    async fn deliver(
        &self,
        event: &BillingEventV1,
        _pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        (self.on_deliver)(event);
        self.delivered.lock().expect("log").push(event.id.clone());
        Ok(Delivered::Written {
            crm_id: Some(format!("crm-{}", event.object_id)),
        })
    }

    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        Ok(())
    }
}

/// One deployment: configuration with one Stripe source syncing to `fake-crm`.
struct Harness {
    config: Arc<Config>,
    /// Holds the secret the configuration references.
    _secrets: tempfile::TempDir,
    client: async_nats::Client,
    js: jetstream::Context,
    topology: Topology,
    shutdown: CancellationToken,
}

impl Harness {
    async fn new() -> Harness {
        Self::with_ack_wait(None, 5).await
    }

    /// A harness on `prefix` (a fresh one when `None`) with `workers.ack_wait_secs`.
    async fn with_ack_wait(prefix: Option<String>, ack_wait_secs: u64) -> Harness {
        let url = std::env::var("BILLSYNC_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let prefix = prefix
            .unwrap_or_else(|| format!("w{}", &uuid::Uuid::new_v4().simple().to_string()[..10]));
        let secrets = tempfile::tempdir().expect("a temp dir");
        let secret = secrets.path().join("secret");
        std::fs::write(&secret, "whsec_runtime").expect("secret");
        let text = format!(
            r#"
[nats]
url = "{url}"
prefix = "{prefix}"
retention_days = 1
[workers]
max_attempts = 3
ack_wait_secs = {ack_wait_secs}
[[sources.stripe]]
name = "stripe-rt"
webhook_secrets = [{{ file = "{secret}" }}]
[[destinations.activecampaign]]
name = "fake-crm"
base_url = "http://127.0.0.1:1"
api_token = {{ file = "{secret}" }}
[[syncs]]
source = "stripe-rt"
destination = "fake-crm"
"#,
            secret = secret.display()
        );
        let config = Arc::new(Config::from_toml(&text, Path::new("runtime.toml")).expect("config"));
        let client = billsync_bus::connect(&url, "billsync-runtime-test")
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
        Harness {
            config,
            _secrets: secrets,
            client,
            js,
            topology,
            shutdown: CancellationToken::new(),
        }
    }

    fn start(&self, crm: Arc<FakeCrm>) -> tokio::task::JoinHandle<()> {
        let ctx = WorkerContext {
            config: Arc::clone(&self.config),
            client: self.client.clone(),
            shutdown: self.shutdown.clone(),
        };
        tokio::spawn(async move {
            run_worker(crm, ctx, ConnectionHealth::new())
                .await
                .expect("worker");
        })
    }

    async fn publish(&self, event: BillingEventV1) {
        let publisher = Publisher::new(
            self.js.clone(),
            self.topology.clone(),
            Duration::from_secs(5),
        );
        publisher
            .publish_event(&BillingEvent::V1(event))
            .await
            .expect("publish event");
    }

    /// Every outcome on the outcomes stream, oldest first.
    async fn outcomes(&self) -> Vec<Outcome> {
        let Ok(mut stream) = self.js.get_stream(self.topology.outcomes_stream()).await else {
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

    async fn stop(self, worker: tokio::task::JoinHandle<()>) {
        self.shutdown.cancel();
        worker.await.expect("worker task");
        self.topology.remove_all(&self.js).await;
    }
}

fn customer_event(id: &str, customer: &str, position: i64) -> BillingEventV1 {
    BillingEventV1 {
        id: id.to_string(),
        source: SourceKind::Stripe,
        connection: "stripe-rt".into(),
        event_type: "customer.updated".into(),
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
        data: serde_json::json!({"id": customer, "email": format!("{customer}@example.com")}),
        related: serde_json::Value::Null,
    }
}

async fn eventually<T>(
    what: &str,
    deadline: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(started.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 4b: the applied version was saved before the `Synced` outcome was published; when that
/// publish failed, the redelivery was skipped as already applied and acked without any
/// outcome, so the record's open failure never resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_could_not_be_published_is_published_on_redelivery() {
    let harness = Harness::new().await;
    let js = harness.js.clone();
    let outcomes_stream = harness.topology.outcomes_stream();
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    // The first delivery loses the outcomes stream just before its outcome is published.
    let crm = Arc::new(FakeCrm {
        delivered: Mutex::new(Vec::new()),
        on_deliver: Box::new(move |_| {
            if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let (js, stream) = (js.clone(), outcomes_stream.clone());
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(async {
                        js.delete_stream(stream)
                            .await
                            .expect("delete the outcomes stream");
                    })
                });
            }
        }),
    });
    let worker = harness.start(Arc::clone(&crm));
    harness.publish(customer_event("evt_1", "cus_1", 100)).await;
    eventually("the first delivery", Duration::from_secs(10), async || {
        (!crm.delivered.lock().expect("log").is_empty()).then_some(())
    })
    .await;
    // The stream comes back (as after a NATS restart); the event is redelivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    harness
        .topology
        .ensure_outcomes_stream(&harness.js, &StreamSettings::from(&harness.config.nats))
        .await
        .expect("outcomes stream again");
    let synced = eventually(
        "a Synced outcome of evt_1",
        Duration::from_secs(20),
        async || {
            harness.outcomes().await.into_iter().find(|o| {
                o.v1().event_id == "evt_1" && matches!(o.v1().result, OutcomeResult::Synced { .. })
            })
        },
    )
    .await;
    assert_eq!(synced.v1().record_key, "customer/cus_1");
    harness.stop(worker).await;
}

/// Events of one customer apply in stream order, and a redelivered (or repeated) event is
/// applied once.
#[tokio::test]
async fn one_customers_events_apply_in_order_and_repeats_are_skipped() {
    let harness = Harness::new().await;
    let crm = Arc::new(FakeCrm {
        delivered: Mutex::new(Vec::new()),
        on_deliver: Box::new(|_| {}),
    });
    let worker = harness.start(Arc::clone(&crm));
    for i in 1..=20 {
        harness
            .publish(customer_event(&format!("evt_{i}"), "cus_order", i))
            .await;
    }
    // The same event again under another message id: JetStream keeps it, the runtime skips it.
    let mut repeat = customer_event("evt_20", "cus_order", 20);
    repeat.id = "evt_20_again".into();
    repeat.version.event_id = "evt_20".into();
    harness.publish(repeat).await;
    eventually("20 deliveries", Duration::from_secs(20), async || {
        (crm.delivered.lock().expect("log").len() >= 20).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = crm.delivered.lock().expect("log").clone();
    let expected: Vec<String> = (1..=20).map(|i| format!("evt_{i}")).collect();
    assert_eq!(delivered, expected);
    harness.stop(worker).await;
}

/// 4c: the consumer existed, so a changed `ack_wait_secs` never reached JetStream while the
/// worker timed its progress acks and claims by the new value.
#[tokio::test]
async fn a_changed_ack_wait_reaches_the_consumer() {
    let first = Harness::new().await;
    let crm = || {
        Arc::new(FakeCrm {
            delivered: Mutex::new(Vec::new()),
            on_deliver: Box::new(|_| {}),
        })
    };
    let worker = first.start(crm());
    let consumer_ack_wait = |harness: &Harness| {
        let (js, topology) = (harness.js.clone(), harness.topology.clone());
        async move {
            let stream = js.get_stream(topology.events_stream()).await.ok()?;
            let mut consumer = stream
                .get_consumer::<jetstream::consumer::pull::Config>(
                    &topology.worker_consumer("fake-crm"),
                )
                .await
                .ok()?;
            Some(consumer.info().await.ok()?.config.ack_wait)
        }
    };
    eventually("the consumer", Duration::from_secs(10), async || {
        consumer_ack_wait(&first)
            .await
            .filter(|w| *w == Duration::from_secs(5))
    })
    .await;
    first.shutdown.cancel();
    worker.await.expect("worker");

    let prefix = first.topology.prefix().to_string();
    let second = Harness::with_ack_wait(Some(prefix), 9).await;
    let worker = second.start(crm());
    eventually(
        "ack_wait 9 s on the consumer",
        Duration::from_secs(10),
        async || {
            consumer_ack_wait(&second)
                .await
                .filter(|w| *w == Duration::from_secs(9))
        },
    )
    .await;
    second.stop(worker).await;
}

/// A CRM account for the conformance suite: 40 calls/s, four calls per event (as a
/// contact, two tags and a tracked event would cost), and effects kept once per event.
#[derive(Default)]
struct FakeAccount {
    shown: Mutex<std::collections::HashMap<String, i64>>,
    effects: Mutex<std::collections::HashMap<String, Vec<(String, String)>>>,
    next_call: Mutex<Option<tokio::time::Instant>>,
}

impl FakeAccount {
    const CALL_EVERY: Duration = Duration::from_millis(25);
    const CALLS_PER_EVENT: u32 = 4;

    async fn calls(&self, calls: u32) {
        for _ in 0..calls {
            let slot = {
                let mut next = self.next_call.lock().expect("limiter");
                let now = tokio::time::Instant::now();
                let slot = next.map_or(now, |n| n.max(now));
                *next = Some(slot + Self::CALL_EVERY);
                slot
            };
            tokio::time::sleep_until(slot).await;
        }
    }

    fn effect(&self, event: &BillingEventV1) {
        let mut effects = self.effects.lock().expect("effects");
        let of = effects.entry(event.object_id.clone()).or_default();
        if !of.iter().any(|(id, _)| *id == event.id) {
            of.push((event.id.clone(), event.event_type.clone()));
        }
    }
}

struct FakeAccountCrm(Arc<FakeAccount>);

impl Destination for FakeAccountCrm {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Activecampaign
    }

    fn connection(&self) -> &str {
        billsync_worker::conformance::CONNECTION
    }

    async fn deliver(&self, event: &BillingEventV1, _: Pass) -> Result<Delivered, DeliveryError> {
        self.0.calls(FakeAccount::CALLS_PER_EVENT).await;
        let name = event.data["name"].as_str().unwrap_or_default();
        let position = billsync_worker::conformance::position_in(name).expect("a suite event");
        self.0
            .shown
            .lock()
            .expect("shown")
            .insert(event.object_id.clone(), position);
        self.0.effect(event);
        Ok(Delivered::Written {
            crm_id: Some(format!("crm-{}", event.object_id)),
        })
    }

    async fn deliver_effects(
        &self,
        event: &BillingEventV1,
        _: Pass,
    ) -> Result<Delivered, DeliveryError> {
        self.0.calls(1).await;
        self.0.effect(event);
        Ok(Delivered::Written {
            crm_id: Some(format!("crm-{}", event.object_id)),
        })
    }

    fn concurrency(&self) -> usize {
        4
    }

    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        Ok(())
    }
}

struct FakeSubject(Arc<FakeAccount>);

impl billsync_worker::conformance::Subject for FakeSubject {
    type Crm = FakeAccountCrm;

    fn destination_toml(&self, name: &str, secret: &Path) -> String {
        format!(
            "[[destinations.activecampaign]]\nname = \"{name}\"\nbase_url = \"http://127.0.0.1:1\"\napi_token = {{ file = \"{}\" }}\n",
            secret.display()
        )
    }

    fn build(&self, _: &Arc<Config>, _: &billsync_worker::DestinationStores) -> FakeAccountCrm {
        FakeAccountCrm(Arc::clone(&self.0))
    }

    async fn shown(&self, customer: &str) -> Option<i64> {
        self.0.shown.lock().expect("shown").get(customer).copied()
    }

    async fn effects(&self, customer: &str) -> Vec<String> {
        let effects = self.0.effects.lock().expect("effects");
        effects
            .get(customer)
            .map(|e| e.iter().map(|(_, kind)| kind.clone()).collect())
            .unwrap_or_default()
    }
}

async fn fake_subject() -> FakeSubject {
    FakeSubject(Arc::default())
}

// 120 events at 10 events/s: about 12 s of work.
billsync_worker::conformance_tests!(fake_subject(), backlog = 120);
