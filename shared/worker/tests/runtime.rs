//! The worker runtime against a real NATS with a fake destination: what every destination
//! inherits. Each test has its own prefix, so tests run in parallel on the shared server.

use async_nats::jetstream;
use billsync_bus::StreamSettings;
use billsync_config::Config;
use billsync_events::{BillingEventV1, DestinationKind, OutcomeResult};
use billsync_worker::conformance::{customer_event, eventually, Harness, CONNECTION};
use billsync_worker::{Delivered, DeliveryError, Destination, Pass};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// 4b: the applied version was saved before the `Synced` outcome was published; when that
/// publish failed, the redelivery was skipped as already applied and acked without any
/// outcome, so the record's open failure never resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_that_could_not_be_published_is_published_on_redelivery() {
    let account = Arc::new(FakeAccount::default());
    let mut h = Harness::new(FakeSubject(Arc::clone(&account)), 5).await;
    // The first delivery loses the outcomes stream just before its outcome is published.
    let (js, stream) = (h.js.clone(), h.topology.outcomes_stream());
    *account.before_first_delivery.lock().expect("hook") = Some(Box::new(move || {
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                js.delete_stream(stream)
                    .await
                    .expect("delete the outcomes stream");
            })
        });
    }));
    h.start();
    let customer = h.customer("4b");
    let event = customer_event("evt_1", &customer, 100, "customer.updated");
    h.publish(&event).await;
    eventually("the first delivery", Duration::from_secs(10), async || {
        (!h.probe.calls().is_empty()).then_some(())
    })
    .await;
    // The stream comes back (as after a NATS restart); the event is redelivered.
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.topology
        .ensure_outcomes_stream(&h.js, &StreamSettings::from(&h.config.nats))
        .await
        .expect("outcomes stream again");
    let synced = eventually(
        "a Synced outcome of evt_1",
        Duration::from_secs(20),
        async || {
            h.outcomes().await.into_iter().find(|o| {
                o.v1().event_id == "evt_1" && matches!(o.v1().result, OutcomeResult::Synced { .. })
            })
        },
    )
    .await;
    assert_eq!(synced.v1().record_key, format!("customer/{customer}"));
    h.finish().await;
}

/// A redelivered (or repeated) event is applied once.
#[tokio::test]
async fn repeats_of_an_event_are_applied_once() {
    let mut h = Harness::new(FakeSubject(Arc::default()), 5).await;
    let customer = h.customer("repeats");
    h.publish_series(std::slice::from_ref(&customer), 20, None)
        .await;
    // The same event again under another message id: JetStream keeps it, the runtime skips it.
    let newest = customer_event(
        &format!("evt_{customer}_20"),
        &customer,
        20,
        "customer.updated",
    );
    h.publish_again(&newest, "again").await;
    h.start();
    let delivered = h.delivered_positions(&customer, 20).await;
    eventually("the repeat settled", Duration::from_secs(10), async || {
        (h.consumer_state().await == (21, 0)).then_some(())
    })
    .await;
    assert_eq!(h.probe.calls().len(), 20);
    assert_eq!(delivered, (1..=20).collect::<Vec<_>>());
    h.finish().await;
}

/// 4c: the consumer existed, so a changed `ack_wait_secs` never reached JetStream while the
/// worker timed its progress acks and claims by the new value.
#[tokio::test]
async fn a_changed_ack_wait_reaches_the_consumer() {
    let mut h = Harness::new(FakeSubject(Arc::default()), 5).await;
    let consumer_ack_wait = async |h: &Harness<FakeSubject>| {
        let stream = h.js.get_stream(h.topology.events_stream()).await.ok()?;
        let mut consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>(
                &h.topology.worker_consumer(CONNECTION),
            )
            .await
            .ok()?;
        Some(consumer.info().await.ok()?.config.ack_wait)
    };
    h.start();
    eventually("the consumer", Duration::from_secs(10), async || {
        consumer_ack_wait(&h)
            .await
            .filter(|w| *w == Duration::from_secs(5))
    })
    .await;
    h.reconfigure(9).await;
    h.start();
    eventually(
        "ack_wait 9 s on the consumer",
        Duration::from_secs(10),
        async || {
            consumer_ack_wait(&h)
                .await
                .filter(|w| *w == Duration::from_secs(9))
        },
    )
    .await;
    h.finish().await;
}

/// A CRM account for the conformance suite: 40 calls/s, four calls per event (as a
/// contact, two tags and a tracked event would cost), and effects kept once per event.
#[derive(Default)]
struct FakeAccount {
    /// Runs once, at the first delivery, before its write.
    before_first_delivery: Mutex<Option<Box<dyn FnOnce() + Send>>>,
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
        CONNECTION
    }

    async fn deliver(&self, event: &BillingEventV1, _: Pass) -> Result<Delivered, DeliveryError> {
        let hook = self.0.before_first_delivery.lock().expect("hook").take();
        if let Some(hook) = hook {
            hook();
        }
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
