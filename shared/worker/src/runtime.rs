//! The consume → order → deliver → record → ack loop of one destination connection.

use crate::destination::{Delivered, DeliveryError, Destination, Pass};
use crate::lanes::Lanes;
use crate::retry::RetrySchedule;
use async_nats::jetstream::{self, kv};
use billsync_bus::topology::HEADER_REPLAY;
use billsync_bus::{trace, BusError, Delivery, IgnoredRecord, Publisher, StreamSettings, Topology};
use billsync_config::{Config, SyncConfig};
use billsync_events::{
    BillingEvent, BillingEventV1, Failure, FailureClass, Outcome, OutcomeResult, OutcomeV1,
    RecordVersion,
};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The reason of the `Skipped` outcome of an event of an ignored, unchanged record.
pub const IGNORED_REASON: &str = "ignored by operator";

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot read from consumer {consumer}: {source}")]
    Consume {
        consumer: String,
        #[source]
        source: async_nats::Error,
    },
}

/// What a worker needs from its process.
#[derive(Clone)]
pub struct WorkerContext {
    pub config: Arc<Config>,
    pub client: async_nats::Client,
    pub shutdown: CancellationToken,
}

/// Consumes events for `destination` until shutdown, then finishes in-flight work.
pub async fn run_worker<D: Destination>(
    destination: Arc<D>,
    ctx: WorkerContext,
) -> Result<(), WorkerError> {
    let config = &ctx.config;
    let connection = destination.connection().to_string();
    let topology = Topology::new(&config.nats.prefix);
    let js = jetstream::new(ctx.client.clone());
    let settings = StreamSettings::from(&config.nats);
    topology.ensure_events_stream(&js, &settings).await?;
    topology.ensure_outcomes_stream(&js, &settings).await?;
    topology.ensure_replay_stream(&js, &settings).await?;
    let versions = topology
        .ensure_bucket(&js, topology.versions_bucket(), &settings, Duration::ZERO)
        .await?;
    let ignores = topology
        .ensure_bucket(&js, topology.ignores_bucket(), &settings, Duration::ZERO)
        .await?;

    let ack_wait = Duration::from_secs(config.workers.ack_wait_secs);
    let max_pending = config.workers.max_in_flight as i64;
    let events = topology
        .ensure_pull_consumer(
            &js,
            &topology.events_stream(),
            &topology.worker_consumer(&connection),
            topology.events_subjects(),
            ack_wait,
            max_pending,
        )
        .await?;
    let replays = topology
        .ensure_pull_consumer(
            &js,
            &topology.replay_stream(),
            &topology.replay_consumer(&connection),
            topology.replay_subject(&connection),
            ack_wait,
            max_pending,
        )
        .await?;

    let processor = Arc::new(Processor {
        destination: Arc::clone(&destination),
        publisher: Publisher::new(js.clone(), topology.clone(), Duration::from_secs(10)),
        versions,
        ignores,
        syncs: config
            .syncs_to(&connection)
            .map(|sync| (sync.source.clone(), sync.clone()))
            .collect(),
        schedule: RetrySchedule::new(config.workers.max_attempts),
        ack_wait,
        shutdown: ctx.shutdown.clone(),
    });
    let work = {
        let processor = Arc::clone(&processor);
        move |job: Job| {
            let processor = Arc::clone(&processor);
            async move { processor.process(job).await }
        }
    };
    let lanes = Lanes::new(work);

    tracing::info!(
        destination = %destination.kind(),
        connection = %connection,
        syncs = processor.syncs.len(),
        "Worker started."
    );
    let mut event_messages = open_messages(&events, &topology.worker_consumer(&connection)).await?;
    let mut replay_messages =
        open_messages(&replays, &topology.replay_consumer(&connection)).await?;
    loop {
        let (message, from_replay) = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            next = event_messages.next() => (next, false),
            next = replay_messages.next() => (next, true),
        };
        match message {
            Some(Ok(message)) => {
                if let Some(job) = Job::read(Delivery::new(message), &processor).await {
                    tracing::debug!(
                        event_id = %job.event.v1().id,
                        info = ?job.delivery.info(),
                        lanes = lanes.active(),
                        "Dispatching."
                    );
                    lanes.dispatch(job.event.v1().ordering_key(), job);
                }
            }
            Some(Err(error)) => {
                // Heartbeats missed during a NATS restart and the like: the stream resumes.
                tracing::warn!(%error, connection = %connection, "Pulling messages failed; retrying.");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            None => {
                tracing::warn!(connection = %connection, "Message stream ended; reopening it.");
                tokio::time::sleep(Duration::from_millis(500)).await;
                if from_replay {
                    replay_messages =
                        open_messages(&replays, &topology.replay_consumer(&connection)).await?;
                } else {
                    event_messages =
                        open_messages(&events, &topology.worker_consumer(&connection)).await?;
                }
            }
        }
    }
    // Stop pulling; messages fetched but not dispatched are redelivered after ack_wait.
    drop(event_messages);
    drop(replay_messages);
    tracing::info!(connection = %connection, in_flight = lanes.active(), "Worker draining in-flight events.");
    lanes.drain().await;
    tracing::info!(connection = %connection, "Worker stopped.");
    Ok(())
}

async fn open_messages(
    consumer: &jetstream::consumer::PullConsumer,
    name: &str,
) -> Result<jetstream::consumer::pull::Stream, WorkerError> {
    consumer
        .stream()
        .max_messages_per_batch(100)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await
        .map_err(|e| WorkerError::Consume {
            consumer: name.to_string(),
            source: e.into(),
        })
}

/// One message, decoded, waiting in its customer's lane.
struct Job {
    delivery: Delivery,
    event: BillingEvent,
    replay: bool,
}

impl Job {
    /// Decodes a message; a message that is not a billing event is a bug upstream and is
    /// terminated so it cannot block its consumer.
    async fn read<D: Destination>(delivery: Delivery, processor: &Processor<D>) -> Option<Job> {
        let replay = delivery
            .headers()
            .and_then(|h| h.get(HEADER_REPLAY))
            .is_some();
        match serde_json::from_slice::<BillingEvent>(delivery.payload()) {
            Ok(mut event) => {
                // Its place in the events stream orders it among events of the same second.
                // A replay carries the place it had there (set by whoever replays it).
                if !replay {
                    if let (BillingEvent::V1(v1), Some(info)) = (&mut event, delivery.info()) {
                        v1.version.sequence = Some(info.stream_sequence);
                    }
                }
                Some(Job {
                    delivery,
                    event,
                    replay,
                })
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    subject = %delivery.subject(),
                    connection = %processor.destination.connection(),
                    "Dropping a message that is not a billing event; nothing was written for it."
                );
                metrics::counter!("billsync_worker_events_total",
                    "destination" => processor.destination.kind().as_str(), "result" => "undecodable")
                .increment(1);
                if let Err(error) = delivery.term().await {
                    tracing::warn!(%error, "Terminating an undecodable message failed.");
                }
                None
            }
        }
    }
}

struct Processor<D> {
    destination: Arc<D>,
    publisher: Publisher,
    versions: kv::Store,
    /// Records an operator ignored (see `billsync_bus::ignores`).
    ignores: kv::Store,
    syncs: HashMap<String, SyncConfig>,
    schedule: RetrySchedule,
    ack_wait: Duration,
    shutdown: CancellationToken,
}

/// How an event ended, for metrics and the ack decision.
enum Settled {
    Ack(&'static str),
    /// The outcome could not be recorded: hand the message back and try later.
    Retry(Duration),
    /// Shutting down mid-retry: hand the message back at once.
    Abandon,
}

impl<D: Destination> Processor<D> {
    async fn process(&self, job: Job) {
        let v1 = job.event.v1();
        let span = tracing::info_span!(
            "deliver",
            destination = %self.destination.kind(),
            connection = %self.destination.connection(),
            event_id = %v1.id,
            event_type = %v1.event_type,
            record = %v1.record_key(),
        );
        trace::adopt_parent(&span, job.delivery.headers());
        let started = Instant::now();
        let settled = self.settle(&job).instrument(span.clone()).await;
        let _entered = span.enter();
        let kind = self.destination.kind().as_str();
        let result = match settled {
            Settled::Ack(result) => {
                if let Err(error) = job.delivery.ack().await {
                    tracing::warn!(%error, "Ack failed; the event will be redelivered and found already applied.");
                }
                result
            }
            Settled::Retry(delay) => {
                if let Err(error) = job.delivery.nak(Some(delay)).await {
                    tracing::warn!(%error, "NAK failed; the event will be redelivered after ack_wait.");
                }
                "requeued"
            }
            Settled::Abandon => {
                drop(job.delivery);
                "abandoned"
            }
        };
        metrics::counter!("billsync_worker_events_total", "destination" => kind, "result" => result)
            .increment(1);
        metrics::histogram!("billsync_worker_event_seconds", "destination" => kind)
            .record(started.elapsed().as_secs_f64());
    }

    async fn settle(&self, job: &Job) -> Settled {
        let event = job.event.v1();
        let Some(sync) = self.syncs.get(&event.connection) else {
            return Settled::Ack("unrouted");
        };
        if !sync.resources.is_empty() && !sync.resources.iter().any(|r| r == event.object.as_str())
        {
            return Settled::Ack("resource_not_synced");
        }
        let version_key = self.version_key(event);
        // A replay applies the record's newest event again (the operator is repairing the
        // CRM) but never an older one: a stale event must not overwrite newer data.
        match self.applied_version(&version_key).await {
            Ok(Some(applied)) if job.replay && event.version.is_older_than(&applied) => {
                // The destination already shows a newer version of the record, so what this
                // event would have written is there (or newer): a retry of its failure is
                // done. Reported as synced so that the failure row resolves.
                tracing::debug!(applied = ?applied, "Replayed event is older than the record's newest; not writing it.");
                let result = OutcomeResult::Synced { crm_id: None };
                return match self.publish_outcome(event, result).await {
                    Ok(()) => Settled::Ack("superseded"),
                    Err(delay) => Settled::Retry(delay),
                };
            }
            Ok(Some(applied)) if !job.replay && event.version.is_superseded_by(&applied) => {
                tracing::debug!(applied = ?applied, "Event is stale or already applied; skipping.");
                return self
                    .report_skip(event, "already applied or superseded by a newer event")
                    .await;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "Reading the applied version failed; retrying later.");
                return Settled::Retry(Duration::from_secs(2));
            }
        }
        // Replays are checked too: `billsync replay` of a time range must not bring back a
        // record an operator ignored (a retry of an ignored failure lifts the ignore first).
        match self.ignored(&version_key).await {
            Ok(None) => {}
            Ok(Some(ignored)) if ignored.is_modified_by(event) => {
                if let Err(error) = self.ignores.delete(&version_key).await {
                    tracing::warn!(%error, "Lifting an ignore failed; retrying later.");
                    return Settled::Retry(Duration::from_secs(2));
                }
                tracing::info!(
                    ignored_version = ?ignored.version,
                    "The record changed since an operator ignored it; ignore lifted, delivering."
                );
            }
            Ok(Some(_)) => {
                tracing::debug!("The record is ignored by an operator and unchanged; skipping.");
                return self.report_ignored(event).await;
            }
            Err(error) => {
                tracing::warn!(%error, "Reading the record's ignore failed; retrying later.");
                return Settled::Retry(Duration::from_secs(2));
            }
        }

        let mut attempt = 0;
        let error = loop {
            attempt += 1;
            let pass = if job.replay { Pass::Replay } else { Pass::Live };
            match self.destination.deliver(event, pass).await {
                Ok(delivered) => return self.record_success(event, &version_key, delivered).await,
                Err(DeliveryError::Retryable {
                    message,
                    retry_after,
                    http_status,
                }) if attempt < self.schedule.max_attempts => {
                    let delay = self.schedule.delay(attempt, retry_after);
                    tracing::info!(attempt, ?http_status, delay_ms = delay.as_millis() as u64, reason = %message,
                        "Transient CRM failure; retrying.");
                    metrics::counter!("billsync_worker_retries_total",
                        "destination" => self.destination.kind().as_str())
                    .increment(1);
                    if !self.wait_keeping_alive(&job.delivery, delay).await {
                        return Settled::Abandon;
                    }
                }
                Err(error) => break error,
            }
        };
        self.record_failure(job, attempt, error).await
    }

    /// Sleeps for `delay`, telling JetStream the message is still being worked on so it is
    /// not redelivered to another replica meanwhile. False when shutdown cut the wait short.
    async fn wait_keeping_alive(&self, delivery: &Delivery, delay: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + delay;
        let beat = (self.ack_wait / 3).max(Duration::from_millis(100));
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return true;
            }
            let step = (deadline - now).min(beat);
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(step) => {}
            }
            if let Err(error) = delivery.in_progress().await {
                tracing::debug!(%error, "Progress ack failed.");
            }
        }
    }

    fn version_key(&self, event: &BillingEventV1) -> String {
        let record = format!(
            "{}/{}/{}/{}",
            event.source, event.connection, event.object, event.object_id
        );
        Topology::record_kv_key(
            self.destination.kind(),
            self.destination.connection(),
            &record,
        )
    }

    async fn applied_version(&self, key: &str) -> Result<Option<RecordVersion>, async_nats::Error> {
        let Some(bytes) = self.versions.get(key).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// The operator's ignore of this record, if any. One KV read per event; an entry that
    /// cannot be read is reported and treated as no ignore, so it never blocks a record.
    async fn ignored(&self, key: &str) -> Result<Option<IgnoredRecord>, async_nats::Error> {
        let Some(bytes) = self.ignores.get(key).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(ignored) => Ok(Some(ignored)),
            Err(error) => {
                tracing::warn!(%error, key, "An entry of the ignores bucket is unreadable; delivering as if not ignored.");
                Ok(None)
            }
        }
    }

    /// Every skipped-because-ignored event is reported (not only those of runs), so the
    /// operator can see in the outcomes that the ignore held.
    async fn report_ignored(&self, event: &BillingEventV1) -> Settled {
        let result = OutcomeResult::Skipped {
            reason: IGNORED_REASON.to_string(),
        };
        match self.publish_outcome(event, result).await {
            Ok(()) => Settled::Ack("ignored"),
            Err(delay) => Settled::Retry(delay),
        }
    }

    async fn record_success(
        &self,
        event: &BillingEventV1,
        version_key: &str,
        delivered: Delivered,
    ) -> Settled {
        let version = match serde_json::to_vec(&event.version) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                tracing::error!(%error, "Cannot encode a record version.");
                return Settled::Retry(Duration::from_secs(5));
            }
        };
        if let Err(error) = self.versions.put(version_key, version).await {
            // The write is idempotent: applying it again after redelivery is harmless, while
            // acking without the version would let an older event overwrite it.
            tracing::warn!(%error, "Storing the applied version failed; the event will be re-applied.");
            return Settled::Retry(Duration::from_secs(2));
        }
        let (result, label) = match delivered {
            Delivered::Written { crm_id } => (OutcomeResult::Synced { crm_id }, "synced"),
            Delivered::NotApplicable { reason } => {
                (OutcomeResult::Skipped { reason }, "not_applicable")
            }
        };
        match self.publish_outcome(event, result).await {
            Ok(()) => Settled::Ack(label),
            Err(delay) => Settled::Retry(delay),
        }
    }

    async fn report_skip(&self, event: &BillingEventV1, reason: &str) -> Settled {
        // Only runs wait for per-record outcomes; live stale events are just counted.
        if event.run_id.is_none() {
            return Settled::Ack("stale");
        }
        let result = OutcomeResult::Skipped {
            reason: reason.to_string(),
        };
        match self.publish_outcome(event, result).await {
            Ok(()) => Settled::Ack("stale"),
            Err(delay) => Settled::Retry(delay),
        }
    }

    async fn record_failure(&self, job: &Job, attempts: u32, error: DeliveryError) -> Settled {
        let failure = match error {
            DeliveryError::Permanent {
                class,
                message,
                http_status,
                detail,
            } => Failure {
                class,
                message,
                http_status,
                vendor_detail: detail,
                attempts,
                event: job.event.clone(),
            },
            DeliveryError::Retryable {
                message,
                http_status,
                ..
            } => Failure {
                class: FailureClass::RetriesExhausted,
                message: format!("gave up after {attempts} attempts: {message}"),
                http_status,
                vendor_detail: serde_json::Value::Null,
                attempts,
                event: job.event.clone(),
            },
        };
        tracing::warn!(
            class = failure.class.as_str(),
            http_status = ?failure.http_status,
            reason = %failure.message,
            "The CRM did not take the event; recording a sync error."
        );
        match self
            .publish_outcome(job.event.v1(), OutcomeResult::Failed(failure))
            .await
        {
            Ok(()) => Settled::Ack("failed"),
            Err(delay) => Settled::Retry(delay),
        }
    }

    async fn publish_outcome(
        &self,
        event: &BillingEventV1,
        result: OutcomeResult,
    ) -> Result<(), Duration> {
        let outcome = Outcome::V1(OutcomeV1 {
            destination: self.destination.kind(),
            destination_connection: self.destination.connection().to_string(),
            source: event.source,
            source_connection: event.connection.clone(),
            record_key: event.record_key(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            run_id: event.run_id.clone(),
            at: chrono::Utc::now(),
            result,
        });
        self.publisher
            .publish_outcome(&outcome)
            .await
            .map(|_| ())
            .map_err(|error| {
                tracing::warn!(%error, "Recording the outcome failed; the event will be retried.");
                Duration::from_secs(2)
            })
    }
}
