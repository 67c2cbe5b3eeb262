//! Reads outcomes from JetStream and stores them in Postgres, acking only what is stored.
//!
//! Messages are handled one at a time in stream order. When Postgres is down each message
//! is handed back with a delay, so failures wait in JetStream rather than being lost.

use crate::open_failures::OpenFailuresGauge;
use crate::retry::{self, RetryError};
use crate::scrub::Scrubber;
use crate::store::{self, FailureRecord, OutcomeRecord, RecordResult, Recorded};
use crate::Database;
use async_nats::jetstream::consumer::{pull, PullConsumer};
use billsync_bus::{trace, Delivery, Publisher};
use billsync_events::{Outcome, OutcomeResult};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long a message waits before redelivery when Postgres could not take it.
const DATABASE_RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long an outcome this version cannot read waits before it is offered again: a newer
/// worker may have written it during a rolling upgrade, and the errors service that reads
/// it is on its way.
const UNREADABLE_RETRY_DELAY: Duration = Duration::from_secs(60);
/// Pause before pulling again after the pull itself failed (NATS restarting).
const PULL_RETRY_DELAY: Duration = Duration::from_secs(2);

pub struct OutcomeConsumer {
    consumer: PullConsumer,
    name: String,
    db: Database,
    scrubber: Arc<Scrubber>,
    open_failures: OpenFailuresGauge,
    /// Sends a customer's other failing records again once the customer's own syncs.
    publisher: Publisher,
}

/// How one message was settled, for the metric and the log.
enum Settlement {
    Ack(&'static str),
    Nak,
    /// Offered again after this delay, counted as the label.
    Later(Duration, &'static str),
}

impl OutcomeConsumer {
    pub fn new(
        consumer: PullConsumer,
        name: String,
        db: Database,
        scrubber: Arc<Scrubber>,
        open_failures: OpenFailuresGauge,
        publisher: Publisher,
    ) -> Self {
        Self {
            consumer,
            name,
            db,
            scrubber,
            open_failures,
            publisher,
        }
    }

    /// Pulls until `shutdown`; the message in hand is always finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(consumer = %self.name, "Outcome consumer started.");
        'reopen: while !shutdown.is_cancelled() {
            let mut messages = match self.open().await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(%error, consumer = %self.name, "Cannot pull outcomes; retrying.");
                    pause(&shutdown, PULL_RETRY_DELAY).await;
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break 'reopen,
                    next = messages.next() => next,
                };
                match next {
                    Some(Ok(message)) => self.handle(Delivery::new(message)).await,
                    Some(Err(error)) => {
                        tracing::warn!(%error, consumer = %self.name, "Pulling outcomes failed; retrying.");
                        pause(&shutdown, PULL_RETRY_DELAY).await;
                    }
                    None => {
                        tracing::warn!(consumer = %self.name, "Outcome stream ended; reopening it.");
                        continue 'reopen;
                    }
                }
            }
        }
        // Messages pulled but not yet handled are redelivered after ack_wait.
        tracing::info!(consumer = %self.name, "Outcome consumer stopped.");
    }

    async fn open(&self) -> Result<pull::Stream, async_nats::Error> {
        Ok(self
            .consumer
            .stream()
            // Small batches: when Postgres is down each message waits for the pool's
            // acquire timeout, and pulled messages must be settled within ack_wait.
            .max_messages_per_batch(20)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await?)
    }

    async fn handle(&self, delivery: Delivery) {
        let span = tracing::info_span!(
            "outcome",
            subject = %delivery.subject(),
            stream_sequence = delivery.info().map(|i| i.stream_sequence),
        );
        trace::adopt_parent(&span, delivery.headers());
        let result = async {
            let (result, settled) = match self.settle(&delivery).await {
                Settlement::Ack(result) => (result, delivery.ack().await),
                Settlement::Nak => ("requeued", delivery.nak(Some(DATABASE_RETRY_DELAY)).await),
                Settlement::Later(delay, result) => (result, delivery.nak(Some(delay)).await),
            };
            if let Err(error) = settled {
                // Everything stored is idempotent, so a redelivery after a lost ack is harmless.
                tracing::warn!(%error, "Settling an outcome message failed; it will be redelivered.");
            }
            result
        }
        .instrument(span)
        .await;
        metrics::counter!("billsync_errors_outcomes_total", "result" => result).increment(1);
    }

    async fn settle(&self, delivery: &Delivery) -> Settlement {
        let outcome = match serde_json::from_slice::<Outcome>(delivery.payload()) {
            Ok(outcome) => outcome,
            Err(error) => {
                // It may carry a sync error: dropping it would lose the failure unseen. Kept
                // on the stream and offered again, until an errors service that reads it
                // (after an upgrade) stores it; billsync_errors_outcomes_total{result=
                // "undecodable"} counts the offers meanwhile.
                tracing::error!(
                    %error,
                    subject = %delivery.subject(),
                    retry_in_secs = UNREADABLE_RETRY_DELAY.as_secs(),
                    "A message on the outcomes stream is not an outcome this errors service reads (a newer billsync wrote it, or it is malformed); keeping it. Upgrade the errors service to the workers' version."
                );
                return Settlement::Later(UNREADABLE_RETRY_DELAY, "undecodable");
            }
        };
        let record = to_record(outcome, &self.scrubber);
        match self.store(&record).await {
            Ok(recorded) => {
                tracing::debug!(?recorded, record = %record.record_key, "Outcome stored.");
                if changes_open_failures(recorded) {
                    self.open_failures.changed();
                }
                Settlement::Ack(match recorded {
                    Recorded::Duplicate => "duplicate",
                    Recorded::Stale => "stale",
                    _ => record.result.status(),
                })
            }
            Err(RetryError::Publish(error)) => {
                tracing::warn!(%error, record = %record.record_key,
                    "Retrying the customer's other failing records failed; the outcome will be redelivered.");
                Settlement::Nak
            }
            Err(RetryError::Database(error)) if is_unstorable(&error) => {
                self.store_refused(&record, &error).await
            }
            Err(error) => {
                tracing::warn!(%error, "Storing an outcome failed; it will be redelivered.");
                Settlement::Nak
            }
        }
    }

    /// Postgres refused `record`'s data (class 22 or 23), as it would on every redelivery:
    /// stores a version it takes instead of losing the failure — every text with its NUL
    /// characters replaced, else the ids and message without the event and vendor detail —
    /// and, if even that is refused, keeps the message on the stream, offered again later.
    async fn store_refused(&self, record: &OutcomeRecord, refused: &sqlx::Error) -> Settlement {
        let fallbacks = [
            ("every field, NUL characters replaced", cleaned(record)),
            (
                "its ids and message; not its event or vendor detail",
                bare(record, refused),
            ),
        ];
        for (kept, fallback) in fallbacks {
            match self.store(&fallback).await {
                Ok(recorded) => {
                    if changes_open_failures(recorded) {
                        self.open_failures.changed();
                    }
                    tracing::warn!(
                        error = %refused,
                        destination_connection = %record.destination_connection,
                        record = %fallback.record_key,
                        kept,
                        "Postgres refused this outcome's data as sent; stored what it takes."
                    );
                    return Settlement::Ack("stored_altered");
                }
                Err(RetryError::Database(error)) if is_unstorable(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, "Storing an outcome failed; it will be redelivered.");
                    return Settlement::Nak;
                }
            }
        }
        tracing::error!(
            error = %refused,
            destination_connection = %record.destination_connection,
            retry_in_secs = UNREADABLE_RETRY_DELAY.as_secs(),
            "Postgres refuses even a bare version of this outcome; keeping it on the outcomes stream."
        );
        Settlement::Later(UNREADABLE_RETRY_DELAY, "unstorable")
    }

    /// Stores `record` in one transaction. When it resolves a customer's failure, the
    /// customer's other open failures at the connection (subscriptions, invoices that failed
    /// because the customer could not be written) are sent again in the same transaction, so
    /// an outcome whose retries NATS did not take is redelivered and retries them then.
    async fn store(&self, record: &OutcomeRecord) -> Result<Recorded, RetryError> {
        let deployment = self.db.deployment();
        let mut tx = self.db.pool.begin().await?;
        let recorded = store::record_outcome(&mut tx, deployment, record).await?;
        if let (Recorded::Resolved(1..), Some(customer)) =
            (recorded, store::customer_of_record(record))
        {
            for target in store::lock_dependants(&mut tx, deployment, record, customer).await? {
                match retry::send_again(&self.publisher, &mut tx, &target).await {
                    Ok(()) => {
                        tracing::info!(failure_id = target.record.id, record = %target.record.record_key,
                        customer, "The customer's record synced; retrying a record that failed with it.")
                    }
                    // One unreadable row must not hold back the others, nor the outcome.
                    Err(error @ RetryError::StoredEvent { .. }) => {
                        tracing::warn!(%error, "Skipping a failure whose event cannot be replayed.")
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        tx.commit().await?;
        Ok(recorded)
    }
}

/// Whether storing an outcome may have changed how many failures are open.
fn changes_open_failures(recorded: Recorded) -> bool {
    match recorded {
        Recorded::Opened(_) | Recorded::Reopened(_) => true,
        Recorded::Resolved(rows) => rows > 0,
        Recorded::Counted(_) | Recorded::Duplicate | Recorded::Stale | Recorded::Nothing => false,
    }
}

/// Data exceptions (class 22) and integrity violations (class 23) fail the same way on every
/// redelivery; anything else (connection loss, timeouts) is worth waiting out.
fn is_unstorable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
        _ => false,
    }
}

/// `record` with a NUL character (which Postgres text and jsonb refuse) in none of its texts.
fn cleaned(record: &OutcomeRecord) -> OutcomeRecord {
    let clean = Scrubber::new(Vec::new());
    let mut cleaned = record.clone();
    for text in [
        &mut cleaned.destination_connection,
        &mut cleaned.source_connection,
        &mut cleaned.record_key,
        &mut cleaned.event_id,
        &mut cleaned.event_type,
    ] {
        *text = clean.text(text);
    }
    cleaned.run_id = cleaned.run_id.as_deref().map(|run| clean.text(run));
    match &mut cleaned.result {
        RecordResult::Failed(failure) => {
            failure.message = clean.text(&failure.message);
            clean.json(&mut failure.vendor_detail);
            clean.json(&mut failure.event);
            failure.customer_id = failure.customer_id.as_deref().map(|id| clean.text(id));
        }
        RecordResult::Skipped { reason } => *reason = clean.text(reason),
        RecordResult::Synced => {}
    }
    cleaned
}

/// The cleaned `record` without what Postgres may still refuse: a failure keeps its class,
/// status and message (saying what was left out), not its event or vendor detail, so it
/// is listed but cannot be retried from here (replay it from the stream instead).
fn bare(record: &OutcomeRecord, refused: &sqlx::Error) -> OutcomeRecord {
    let mut bare = cleaned(record);
    if let RecordResult::Failed(failure) = &mut bare.result {
        let message: String = failure.message.chars().take(2_000).collect();
        failure.message = format!(
            "{message} [billsync stored this failure without its event and vendor detail: \
             PostgreSQL refused them ({refused}); replay the event from the stream to retry it]"
        );
        failure.vendor_detail = serde_json::Value::Null;
        failure.event = serde_json::json!({ "stored": false, "event_id": bare.event_id });
    }
    bare
}

/// Postgres keeps microseconds; truncating here makes a stored `at` equal to a redelivered one.
fn to_micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// The storable form of `outcome`, with every configured secret removed.
pub(crate) fn to_record(outcome: Outcome, scrubber: &Scrubber) -> OutcomeRecord {
    let Outcome::V1(v1) = outcome;
    let result = match v1.result {
        OutcomeResult::Synced { .. } => RecordResult::Synced,
        OutcomeResult::Skipped { reason } => RecordResult::Skipped {
            reason: scrubber.text(&reason),
        },
        OutcomeResult::Failed(failure) => {
            // Taken before scrubbing, so it matches what the worker computes from the event.
            let data_fingerprint = billsync_bus::data_fingerprint(&failure.event.v1().data);
            let customer_id = failure.event.v1().customer_id.clone();
            let mut vendor_detail = failure.vendor_detail;
            scrubber.json(&mut vendor_detail);
            let mut event = serde_json::to_value(&failure.event).unwrap_or(serde_json::Value::Null);
            scrubber.json(&mut event);
            RecordResult::Failed(FailureRecord {
                class: failure.class,
                message: scrubber.text(&failure.message),
                http_status: failure.http_status,
                vendor_detail,
                attempts: failure.attempts,
                event,
                data_fingerprint,
                customer_id,
            })
        }
    };
    OutcomeRecord {
        destination: v1.destination,
        destination_connection: v1.destination_connection,
        source: v1.source,
        source_connection: v1.source_connection,
        record_key: scrubber.text(&v1.record_key),
        event_id: v1.event_id,
        event_type: v1.event_type,
        run_id: v1.run_id,
        at: to_micros(v1.at),
        result,
    }
}

async fn pause(shutdown: &CancellationToken, delay: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_events::{
        BillingEvent, BillingEventV1, DestinationKind, Failure, FailureClass, ObjectKind,
        OutcomeV1, RecordVersion, SourceKind,
    };
    use serde_json::json;

    fn failed_outcome(secret: &str) -> Outcome {
        let at = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("valid time");
        Outcome::V1(OutcomeV1 {
            destination: DestinationKind::Pipedrive,
            destination_connection: "pd".into(),
            source: SourceKind::Chargebee,
            source_connection: "cb".into(),
            record_key: "customer/c1".into(),
            event_id: "ev_1".into(),
            event_type: "customer_changed".into(),
            run_id: None,
            at,
            result: OutcomeResult::Failed(Failure {
                class: FailureClass::Rejected,
                message: format!("token {secret} is invalid"),
                http_status: Some(401),
                vendor_detail: json!({"error": format!("bad api_token={secret}")}),
                attempts: 1,
                event: BillingEvent::V1(BillingEventV1 {
                    id: "ev_1".into(),
                    source: SourceKind::Chargebee,
                    connection: "cb".into(),
                    event_type: "customer_changed".into(),
                    object: ObjectKind::Customer,
                    object_id: "c1".into(),
                    customer_id: Some("c1".into()),
                    occurred_at: at,
                    version: RecordVersion {
                        position: 1,
                        event_id: "ev_1".into(),
                        sequence: None,
                    },
                    run_id: None,
                    data: json!({"id": "c1", "notes": secret}),
                    related: serde_json::Value::Null,
                }),
            }),
        })
    }

    /// Every secret a configuration can hold, planted in a vendor's error body, the message
    /// and the event, leaves none behind in what the errors service stores.
    #[test]
    fn every_secret_of_every_connection_is_scrubbed_from_a_failure() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let secrets = [
            ("admin", "admin-secret-0001"),
            ("whsec", "whsec_secret_0002"),
            ("whsec_next", "whsec_secret_0003"),
            ("stripe_key", "sk_live_secret_0004"),
            ("cb_key", "cb_secret_0005"),
            ("ac_token", "ac-secret-0006"),
            ("ac_event_key", "ac-event-secret-0007"),
            ("zoho_id", "1000.ZOHOSECRET0008"),
            ("zoho_secret", "zoho-secret-0009"),
            ("zoho_refresh", "1000.refresh-secret-0010"),
            ("pd_token", "pd-secret-0011"),
        ];
        let file = |name: &str| {
            let (_, value) = secrets.iter().find(|(n, _)| *n == name).expect("a secret");
            let path = dir.path().join(name);
            std::fs::write(&path, value).expect("write a secret");
            format!("{{ file = {:?} }}", path.display().to_string())
        };
        let text = format!(
            r#"
[errors]
admin_token = {admin}
[[sources.stripe]]
name = "stripe"
webhook_secrets = [{whsec}, {whsec_next}]
api_key = {stripe_key}
[[sources.chargebee]]
name = "cb"
site = "acme"
api_key = {cb_key}
[[destinations.activecampaign]]
name = "ac"
base_url = "https://acme.api-us1.com"
api_token = {ac_token}
event_key = {ac_event_key}
[[destinations.zoho]]
name = "zoho"
client_id = {zoho_id}
client_secret = {zoho_secret}
refresh_token = {zoho_refresh}
[[destinations.pipedrive]]
name = "pd"
base_url = "https://acme.pipedrive.com"
api_token = {pd_token}
"#,
            admin = file("admin"),
            whsec = file("whsec"),
            whsec_next = file("whsec_next"),
            stripe_key = file("stripe_key"),
            cb_key = file("cb_key"),
            ac_token = file("ac_token"),
            ac_event_key = file("ac_event_key"),
            zoho_id = file("zoho_id"),
            zoho_secret = file("zoho_secret"),
            zoho_refresh = file("zoho_refresh"),
            pd_token = file("pd_token"),
        );
        let config = billsync_config::Config::from_toml(&text, std::path::Path::new("t.toml"))
            .expect("a configuration with every kind of secret");
        let scrubber = Scrubber::new(config.secret_values());
        for (name, value) in secrets {
            let record = to_record(failed_outcome(value), &scrubber);
            let stored = format!("{record:?}");
            assert!(
                !stored.contains(value),
                "the {name} secret survives in the stored failure: {stored}"
            );
        }
    }

    #[test]
    fn records_carry_no_secret_and_microsecond_times() {
        let scrubber = Scrubber::new(["pd_secret_token".to_string()]);
        let record = to_record(failed_outcome("pd_secret_token"), &scrubber);
        assert_eq!(record.at.timestamp_subsec_nanos(), 123_456_000);
        let RecordResult::Failed(failure) = &record.result else {
            panic!("expected a failure, got {:?}", record.result);
        };
        assert_eq!(failure.message, "token [redacted] is invalid");
        assert_eq!(failure.vendor_detail["error"], "bad api_token=[redacted]");
        assert_eq!(failure.event["data"]["notes"], "[redacted]");
        assert_eq!(failure.event["schema"], "billing_event.v1");
        // The fingerprint is of the data as the worker saw it, secret included.
        assert_eq!(
            failure.data_fingerprint,
            billsync_bus::data_fingerprint(&json!({"id": "c1", "notes": "pd_secret_token"}))
        );
    }
}
