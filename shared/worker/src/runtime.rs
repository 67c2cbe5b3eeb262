//! The consume → order → deliver → record → ack loop of one destination connection.

use crate::destination::{Delivered, DeliveryError, Destination, Pass, MAX_CONCURRENCY};
use crate::health::ConnectionHealth;
use crate::lanes::Lanes;
use crate::retry::RetrySchedule;
use crate::unreadable::{UnreadableMessage, UNREADABLE_EVENT_TYPE};
use crate::waiting::{Seat, WaitingRoom};
use async_nats::jetstream::{self, kv, stream::RawMessageErrorKind};
use billsync_bus::lease::{self, Lease, LeaseError};
use billsync_bus::topology::{HEADER_DESTINATIONS, HEADER_MSG_ID, HEADER_REPLAY};
use billsync_bus::{trace, BusError, Delivery, IgnoredRecord, Publisher, StreamSettings, Topology};
use billsync_config::{Config, ConnectionKind, SyncConfig};
use billsync_events::{
    BillingEvent, BillingEventV1, Failure, FailureClass, Outcome, OutcomeResult, OutcomeV1,
    RecordVersion, SourceKind,
};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// The reason of the `Skipped` outcome of an event of an ignored, unchanged record.
pub const IGNORED_REASON: &str = "ignored by operator";

/// How long writer claims and their release markers stay in KV: far longer than any write.
const WRITERS_MAX_AGE: Duration = Duration::from_secs(3600);

/// How often the consumers' backlog is read for `billsync_worker_backlog`.
const BACKLOG_EVERY: Duration = Duration::from_secs(15);

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
/// `health` learns from every delivery whether the CRM accepts the credentials.
pub async fn run_worker<D: Destination>(
    destination: Arc<D>,
    ctx: WorkerContext,
    health: Arc<ConnectionHealth>,
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
    let writers = topology
        .ensure_bucket(&js, topology.writers_bucket(), &settings, WRITERS_MAX_AGE)
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

    let waiting = Arc::new(WaitingRoom::default());
    let concurrency = destination.concurrency().clamp(1, MAX_CONCURRENCY);
    let processor = Arc::new(Processor {
        destination: Arc::clone(&destination),
        publisher: Publisher::new(js.clone(), topology.clone(), Duration::from_secs(10)),
        versions,
        ignores,
        writers,
        holder: lease::holder_id(destination.kind().as_str()),
        syncs: config
            .syncs_to(&connection)
            .filter(|sync| config.sync_active(sync))
            .map(|sync| (sync.source.clone(), sync.clone()))
            .collect(),
        unlinked: config
            .syncs_to(&connection)
            .filter(|sync| !config.sync_active(sync))
            .map(|sync| sync.source.clone())
            .collect(),
        sources: config
            .syncs_to(&connection)
            .filter_map(|sync| match config.connection_kind(&sync.source) {
                Some(ConnectionKind::Source(kind)) => Some((sync.source.clone(), kind)),
                _ => None,
            })
            .collect(),
        known_sources: config
            .sources
            .stripe
            .iter()
            .map(|c| c.name.clone())
            .chain(config.sources.chargebee.iter().map(|c| c.name.clone()))
            .collect(),
        unknown_sync_wait: Duration::from_secs(config.workers.unknown_sync_wait_secs),
        schedule: RetrySchedule::new(config.workers.max_attempts),
        ack_wait,
        request_timeout: Duration::from_millis(config.workers.request_timeout_ms),
        budget: Arc::new(Semaphore::new(concurrency)),
        shutdown: ctx.shutdown.clone(),
        health,
    });
    let work = {
        let processor = Arc::clone(&processor);
        move |job: Job| {
            let processor = Arc::clone(&processor);
            async move { processor.process(job).await }
        }
    };
    let lanes = Lanes::new(work);
    let backlog = tokio::spawn(report_backlog(
        [events.clone(), replays.clone()],
        Arc::clone(&waiting),
        destination.kind().as_str(),
        connection.clone(),
        ctx.shutdown.clone(),
    ));
    let keep_waiting_alive = tokio::spawn(
        Arc::clone(&waiting).keep_alive(progress_beat(ack_wait), ctx.shutdown.clone()),
    );

    tracing::info!(
        destination = %destination.kind(),
        connection = %connection,
        syncs = processor.syncs.len(),
        concurrency,
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
                if let Some(mut job) =
                    Job::read(Delivery::new(message), from_replay, &processor).await
                {
                    job.seat = Some(waiting.enter(job.delivery.progress()));
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
    backlog.abort();
    keep_waiting_alive.abort();
    tracing::info!(connection = %connection, "Worker stopped.");
    Ok(())
}

/// Keeps `billsync_worker_backlog` current: events not yet delivered to any replica
/// (`pending`) and delivered but not yet acknowledged (`in_flight`), live and replayed
/// together. Every replica reports the same figures, so dashboards take the max.
async fn report_backlog(
    mut consumers: [jetstream::consumer::PullConsumer; 2],
    waiting: Arc<WaitingRoom>,
    destination: &'static str,
    connection: String,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(BACKLOG_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let (mut pending, mut in_flight) = (0u64, 0u64);
        for consumer in &mut consumers {
            match consumer.info().await {
                Ok(info) => {
                    pending += info.num_pending;
                    in_flight += info.num_ack_pending as u64;
                }
                Err(error) => {
                    tracing::debug!(%error, connection = %connection, "Reading the consumer's backlog failed.");
                    continue;
                }
            }
        }
        // Of the in-flight ones, those not yet started: behind their customer's earlier
        // events or the connection's budget.
        let queued = waiting.len() as u64;
        for (state, value) in [
            ("pending", pending),
            ("in_flight", in_flight),
            ("queued", queued),
        ] {
            metrics::gauge!("billsync_worker_backlog", "destination" => destination,
                "connection" => connection.clone(), "state" => state)
            .set(value as f64);
        }
    }
}

/// The value of header `name` of `delivery`, as text. The name is parsed rather than looked
/// up as a `&str`: async-nats files the headers it knows (`Nats-Msg-Id` among them) under
/// their standard names, which a lookup by text never matches.
fn header_text(delivery: &Delivery, name: &str) -> Option<String> {
    let name: async_nats::header::HeaderName = name.parse().ok()?;
    Some(delivery.headers()?.get(name)?.as_str().to_string())
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

/// Runs `work`, telling JetStream every third of `ack_wait` that the message is still being
/// worked on: waiting for a rate-limit slot, for another replica's claim or between retries
/// can outlast `ack_wait`, and a redelivery meanwhile would hand the event to a second
/// worker while the first still writes it.
async fn keeping_alive<F: Future>(delivery: &Delivery, ack_wait: Duration, work: F) -> F::Output {
    let beat = progress_beat(ack_wait);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + beat, beat);
    tokio::pin!(work);
    loop {
        tokio::select! {
            output = &mut work => return output,
            _ = ticks.tick() => {
                if let Err(error) = delivery.in_progress().await {
                    tracing::debug!(%error, "Progress ack failed.");
                }
            }
        }
    }
}

/// How often a message being worked on, or waiting its turn, is marked in progress.
fn progress_beat(ack_wait: Duration) -> Duration {
    (ack_wait / 3).max(Duration::from_millis(100))
}

/// One message, decoded, waiting in its customer's lane.
struct Job {
    delivery: Delivery,
    event: BillingEvent,
    replay: bool,
    /// Its place among the waiting messages kept alive, until its work starts.
    seat: Option<Seat>,
    /// The stand-in of this message's failure when it was unreadable before (see
    /// [`UnreadableMessage`]): settling the event ends that failure.
    resolves: Option<BillingEventV1>,
}

impl Job {
    /// Decodes a message from the events stream, or the replay stream when `from_replay`.
    ///
    /// A message that is not a billing event this worker reads (a newer schema published
    /// during a rolling upgrade, or a malformed one) is recorded as a failure of its own,
    /// so that it is listed with the other sync errors and can be retried once a worker
    /// reads it; it is acked only once that failure is on the outcomes stream.
    async fn read<D: Destination>(
        delivery: Delivery,
        from_replay: bool,
        processor: &Processor<D>,
    ) -> Option<Job> {
        let replay = delivery
            .headers()
            .and_then(|h| h.get(HEADER_REPLAY))
            .is_some();
        match serde_json::from_slice::<BillingEvent>(delivery.payload()) {
            Ok(BillingEvent::V1(stand_in)) if stand_in.event_type == UNREADABLE_EVENT_TYPE => {
                // An operator retries the failure of an unreadable message.
                processor.read_again(delivery, stand_in).await
            }
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
                    seat: None,
                    resolves: None,
                })
            }
            Err(error) => {
                processor
                    .record_unreadable(delivery, from_replay, error.to_string())
                    .await;
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
    /// Claims that keep one replica at a time writing a customer's records.
    writers: kv::Store,
    /// This process's name in those claims.
    holder: String,
    syncs: HashMap<String, SyncConfig>,
    /// Source connections whose sync to this destination is unlinked (`enabled = false`):
    /// their events, replays included, are acknowledged and not written.
    unlinked: HashSet<String>,
    /// The kind of each source connection that syncs to this destination.
    sources: HashMap<String, SourceKind>,
    /// Every source connection of the configuration, syncing here or not.
    known_sources: HashSet<String>,
    /// How long an event routed here without a sync in this configuration is held back.
    unknown_sync_wait: Duration,
    schedule: RetrySchedule,
    ack_wait: Duration,
    /// How long a CRM request may take: a replica that lost a customer's writer claim may
    /// have one in flight that long, so others wait it out before taking the claim over.
    request_timeout: Duration,
    /// Turns of work: how many events of this connection run at once (FIFO).
    budget: Arc<Semaphore>,
    shutdown: CancellationToken,
    health: Arc<ConnectionHealth>,
}

/// How delivering an event with retries ended.
enum Attempted {
    Done(Delivered),
    Failed {
        attempts: u32,
        error: DeliveryError,
    },
    /// Shutting down mid-retry.
    Abandoned,
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
    async fn process(&self, mut job: Job) {
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
        // The steps are boxed so that an event waiting for its turn holds a few words, not
        // the state of every step: hundreds wait at once (`workers.max_in_flight`).
        if let Err(settled) = Box::pin(self.route(&job).instrument(span.clone())).await {
            job.seat = None;
            Box::pin(self.finish(job, settled, started).instrument(span)).await;
            return;
        }
        // Shutting down, a message that has not started is handed back, not worked off.
        let turn = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => None,
            permit = Arc::clone(&self.budget).acquire_owned() => permit.ok(),
        };
        let settled = match turn {
            Some(permit) => {
                job.seat = None;
                let settled = Box::pin(keeping_alive(
                    &job.delivery,
                    self.ack_wait,
                    self.settle_as_writer(&job).instrument(span.clone()),
                ))
                .await;
                drop(permit);
                settled
            }
            None => Settled::Abandon,
        };
        // The span is never entered by hand: a guard held across an await leaves it current
        // on a thread the task has left, and the subscriber panics on the next span there.
        Box::pin(self.finish(job, settled, started).instrument(span)).await;
    }

    /// Records what settling the event left owing (an unreadable stand-in's outcome), then
    /// acks, NAKs or abandons the message and counts it.
    async fn finish(&self, job: Job, settled: Settled, started: Instant) {
        let settled = match (settled, &job.resolves) {
            // The message reads now, and its event is settled (its own outcome is recorded
            // under its own record): the failure of it being unreadable is over.
            (Settled::Ack(result), Some(stand_in)) => {
                let synced = OutcomeResult::Synced { crm_id: None };
                match self.publish_outcome(stand_in, synced).await {
                    Ok(()) => Settled::Ack(result),
                    Err(delay) => Settled::Retry(delay),
                }
            }
            (settled, _) => settled,
        };
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

    /// Settles the event while this replica alone writes its customer's records.
    ///
    /// Lanes keep one customer's events in order inside a process, but every replica pulls
    /// from the same consumer: without a claim, two replicas could check the applied version
    /// at once and the older event's write could land last. The claim (a lease in KV, keyed
    /// like the lanes) makes check, write and version one step across replicas; a replica
    /// that finds it taken waits its turn, holding its place in its own lane.
    async fn settle_as_writer(&self, job: &Job) -> Settled {
        let key = Topology::record_kv_key(
            self.destination.kind(),
            self.destination.connection(),
            &job.event.v1().ordering_key(),
        );
        // A claim outlives its last renewal (every third of this) by ack_wait: a replica that
        // died holding it gives way when JetStream hands its events to the others anyway.
        let ttl = self.ack_wait.max(Duration::from_secs(3));
        let lease = Lease::new(self.writers.clone(), &key, &self.holder, ttl)
            .with_takeover_grace(self.request_timeout);
        let mut pause = Duration::from_millis(20);
        let mut guard = loop {
            match lease.acquire().await {
                Ok(guard) => break guard,
                Err(LeaseError::Held { holder, .. }) => {
                    tracing::debug!(%holder, "Another replica is writing this customer's records; waiting.");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Settled::Abandon,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(LeaseError::Store(error)) => {
                    tracing::warn!(%error, "Claiming the customer's records failed; retrying later.");
                    return Settled::Retry(Duration::from_secs(2));
                }
            }
        };
        let settled = tokio::select! {
            settled = self.settle(job) => settled,
            lost = guard.keep_alive() => {
                // Another replica may be writing now: stop, and let the event come back.
                tracing::warn!(reason = %lost, "Lost the claim on the customer's records mid-write; handing the event back.");
                return Settled::Retry(Duration::from_secs(1));
            }
        };
        guard.release().await;
        settled
    }

    /// Settles at once an event this connection writes nothing for: its source has no sync
    /// here (unlinked, routed elsewhere, or not known yet), or the sync does not take its
    /// resource. Such an event needs neither a turn of the CRM's budget nor the customer's
    /// writer claim: every worker's consumer sees every source's events, and those of other
    /// destinations must not queue behind this CRM's rate limit.
    async fn route(&self, job: &Job) -> Result<(), Settled> {
        let event = job.event.v1();
        let Some(sync) = self.syncs.get(&event.connection) else {
            if self.unlinked.contains(&event.connection) {
                tracing::debug!(source_connection = %event.connection, "The sync is unlinked; not writing.");
                return Err(Settled::Ack("unlinked"));
            }
            return Err(self.settle_without_sync(job).await);
        };
        if !sync.resources.is_empty() && !sync.resources.iter().any(|r| r == event.object.as_str())
        {
            return Err(Settled::Ack("resource_not_synced"));
        }
        Ok(())
    }

    /// Settles an event [`Processor::route`] found a sync for.
    async fn settle(&self, job: &Job) -> Settled {
        let event = job.event.v1();
        let version_key = self.version_key(event);
        // A replay applies the record's newest event again (the operator is repairing the
        // CRM) but never an older one: a stale event must not overwrite newer data.
        match self.applied_version(&version_key).await {
            Ok(Some(applied)) if event.version.is_older_than(&applied) => {
                // The destination already shows a newer version of the record: the record
                // must not go back, but the event's own effects (a tag, a tracked event)
                // still happen, once.
                tracing::debug!(applied = ?applied, "Event is older than the record's newest; applying only its own effects.");
                return self.settle_effects(job).await;
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

        let pass = if job.replay { Pass::Replay } else { Pass::Live };
        match self
            .with_retries(|| self.destination.deliver(event, pass))
            .await
        {
            Attempted::Done(delivered) => self.record_success(event, &version_key, delivered).await,
            Attempted::Failed { attempts, error } => {
                self.record_failure(job, attempts, error).await
            }
            Attempted::Abandoned => Settled::Abandon,
        }
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of attempts; transient
    /// failures wait as the retry schedule (and the CRM's `Retry-After`) says.
    async fn with_retries<F, Fut>(&self, call: F) -> Attempted
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Delivered, DeliveryError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Each try's CRM requests are children of a span saying which try it is.
            let delivered = call()
                .instrument(tracing::info_span!("attempt", attempt))
                .await;
            self.health.observe(&delivered);
            match delivered {
                Ok(delivered) => return Attempted::Done(delivered),
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
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Attempted::Abandoned,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(error) => {
                    return Attempted::Failed {
                        attempts: attempt,
                        error,
                    }
                }
            }
        }
    }

    /// An event older than what the CRM shows of its record: only its own effects are
    /// delivered, and the applied version stays the newer one.
    async fn settle_effects(&self, job: &Job) -> Settled {
        let event = job.event.v1();
        let pass = if job.replay { Pass::Replay } else { Pass::Live };
        let delivered = match self
            .with_retries(|| self.destination.deliver_effects(event, pass))
            .await
        {
            Attempted::Done(delivered) => delivered,
            Attempted::Failed { attempts, error } => {
                return self.record_failure(job, attempts, error).await
            }
            Attempted::Abandoned => return Settled::Abandon,
        };
        let (result, label) = match delivered {
            Delivered::Written { crm_id } => (OutcomeResult::Synced { crm_id }, "effects"),
            // A retried failure of the event is done: the CRM shows its record as newer
            // data left it. Reported as synced so that the failure row resolves.
            Delivered::NotApplicable { .. } if job.replay => {
                (OutcomeResult::Synced { crm_id: None }, "superseded")
            }
            Delivered::NotApplicable { .. } => {
                return self
                    .report_skip(event, "already applied or superseded by a newer event")
                    .await
            }
        };
        match self.publish_outcome(event, result).await {
            Ok(()) => Settled::Ack(label),
            Err(delay) => Settled::Retry(delay),
        }
    }

    /// An event of a source connection that has no sync to this destination here.
    ///
    /// Ingest names on each event the destinations its configuration syncs the source to.
    /// Named here (or sent here by a replay, or from a source this configuration does not
    /// know at all) while this worker has no such sync, the configuration is mid-rollout
    /// or differs between services: the event is held back and comes again, and if that
    /// lasts `workers.unknown_sync_wait_secs` it becomes a configuration error an operator
    /// sees and can retry once the configurations agree. Not named here, the event is not
    /// for this destination (the sync was removed, or never existed) and is acked.
    async fn settle_without_sync(&self, job: &Job) -> Settled {
        let event = job.event.v1();
        let connection = self.destination.connection();
        let routed_here = match header_text(&job.delivery, HEADER_DESTINATIONS) {
            _ if job.replay => true,
            Some(destinations) => destinations.split(',').any(|d| d == connection),
            None => !self.known_sources.contains(&event.connection),
        };
        if !routed_here {
            return Settled::Ack("unrouted");
        }
        let waited = job.delivery.age().unwrap_or_default();
        if waited < self.unknown_sync_wait {
            tracing::warn!(
                source_connection = %event.connection,
                waited_secs = waited.as_secs(),
                "An event is routed to this destination, but this worker's configuration has no sync from its source; holding it back until the configurations agree."
            );
            let again = (self.unknown_sync_wait / 10)
                .clamp(Duration::from_secs(1), Duration::from_secs(30));
            return Settled::Retry(again);
        }
        let failure = Failure {
            class: FailureClass::Configuration,
            message: format!(
                "this {kind} worker's configuration has no [[syncs]] entry with source = \"{source}\" and destination = \"{connection}\", \
                 but the event was routed here (for {waited} s): give every billsync service the same configuration, then retry this error",
                kind = self.destination.kind(),
                source = event.connection,
                waited = waited.as_secs(),
            ),
            http_status: None,
            vendor_detail: serde_json::Value::Null,
            attempts: job
                .delivery
                .info()
                .and_then(|i| u32::try_from(i.delivered).ok())
                .unwrap_or(1),
            event: job.event.clone(),
        };
        tracing::error!(source_connection = %event.connection, reason = %failure.message,
            "An event has no sync in this worker's configuration; recording a sync error.");
        match self
            .publish_outcome(event, OutcomeResult::Failed(failure))
            .await
        {
            Ok(()) => Settled::Ack("failed"),
            Err(delay) => Settled::Retry(delay),
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
        let (result, label) = match delivered {
            Delivered::Written { crm_id } => (OutcomeResult::Synced { crm_id }, "synced"),
            Delivered::NotApplicable { reason } => {
                (OutcomeResult::Skipped { reason }, "not_applicable")
            }
        };
        // The outcome before the version: once the version is saved, a redelivery is
        // skipped as already applied, so an outcome lost after it (a failed publish, a crash
        // in between) would leave the record's failure open for good. The other way round,
        // a version lost after its outcome only makes the redelivery write again
        // (idempotently) and publish an outcome the errors service already has.
        if let Err(delay) = self.publish_outcome(event, result).await {
            return Settled::Retry(delay);
        }
        if let Err(error) = self.versions.put(version_key, version).await {
            tracing::warn!(%error, "Storing the applied version failed; the event will be re-applied.");
            return Settled::Retry(Duration::from_secs(2));
        }
        Settled::Ack(label)
    }

    async fn report_skip(&self, event: &BillingEventV1, reason: &str) -> Settled {
        // Every event gets an outcome, a stale one too: the operator (and the chaos suite)
        // can then account for each event of the stream, and runs wait for theirs.
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

    /// Records a message that is not a billing event this worker reads as a failure (see
    /// [`UnreadableMessage`]), then acks it; NAKs it when the failure could not be recorded.
    async fn record_unreadable(&self, delivery: Delivery, from_replay: bool, error: String) {
        let topology = self.publisher.topology();
        let (stream, label) = if from_replay {
            (topology.replay_stream(), "replay")
        } else {
            (topology.events_stream(), "events")
        };
        let sequence = delivery
            .info()
            .map(|i| i.stream_sequence)
            .unwrap_or_default();
        let Some((source, connection)) = self.source_of_unreadable(&delivery, from_replay) else {
            // No source that syncs here sent it: this destination would write nothing for it.
            tracing::error!(
                %error,
                subject = %delivery.subject(),
                stream_sequence = sequence,
                connection = %self.destination.connection(),
                "Dropping a message that is not a billing event, of no source connection that syncs to this destination."
            );
            metrics::counter!("billsync_worker_events_total",
                "destination" => self.destination.kind().as_str(), "result" => "undecodable")
            .increment(1);
            if let Err(error) = delivery.term().await {
                tracing::warn!(%error, "Terminating an undecodable message failed.");
            }
            return;
        };
        let message = UnreadableMessage::new(
            delivery.subject(),
            stream,
            sequence,
            error,
            delivery.payload(),
        );
        let id = header_text(&delivery, HEADER_MSG_ID)
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("{label}-message-{sequence}"));
        let stand_in = message.stand_in(id, source, &connection, label);
        tracing::error!(
            error = %message.error,
            subject = %message.subject,
            stream_sequence = sequence,
            connection = %self.destination.connection(),
            record = %stand_in.record_key(),
            "A message is not a billing event this worker reads; recording a sync error."
        );
        let explanation = message.explain();
        self.settle_unreadable(delivery, &stand_in, explanation)
            .await;
    }

    /// The source connection an unreadable message came from, if one that syncs to this
    /// destination: its subject names it on the events stream; on the replay stream (whose
    /// subjects name the destination) the payload's `connection`, if it has one, does.
    fn source_of_unreadable(
        &self,
        delivery: &Delivery,
        from_replay: bool,
    ) -> Option<(SourceKind, String)> {
        let topology = self.publisher.topology();
        if !from_replay {
            return self.sources.iter().find_map(|(connection, &kind)| {
                let subjects = topology.source_events_subjects(kind, connection);
                delivery
                    .subject()
                    .starts_with(subjects.trim_end_matches('>'))
                    .then(|| (kind, connection.clone()))
            });
        }
        let payload: serde_json::Value = serde_json::from_slice(delivery.payload()).ok()?;
        let connection = payload.get("connection")?.as_str()?;
        let kind = *self.sources.get(connection)?;
        Some((kind, connection.to_string()))
    }

    /// Reads the message behind a retried stand-in again. A message that reads now becomes
    /// the job (applied as a replay); one that still does not, or is gone from its stream,
    /// is recorded as failing again.
    async fn read_again(&self, delivery: Delivery, stand_in: BillingEventV1) -> Option<Job> {
        let topology = self.publisher.topology();
        let unreadable = UnreadableMessage::of(&stand_in).filter(|u| {
            u.stream == topology.events_stream() || u.stream == topology.replay_stream()
        });
        let Some(mut unreadable) = unreadable else {
            tracing::error!(
                event_id = %stand_in.id,
                "Dropping a stand-in of an unreadable message that does not say which message it stands for."
            );
            if let Err(error) = delivery.term().await {
                tracing::warn!(%error, "Terminating a malformed stand-in failed.");
            }
            return None;
        };
        let fetched = match self
            .publisher
            .jetstream()
            .get_stream(&unreadable.stream)
            .await
        {
            Ok(stream) => stream
                .get_raw_message(unreadable.stream_sequence)
                .await
                .map_err(|error| {
                    (
                        error.kind() == RawMessageErrorKind::NoMessageFound,
                        error.to_string(),
                    )
                }),
            Err(error) => Err((false, error.to_string())),
        };
        let message = match fetched {
            Ok(message) => message,
            Err((true, _)) => {
                tracing::warn!(stream = %unreadable.stream, stream_sequence = unreadable.stream_sequence,
                    "A retried unreadable message is gone from its stream; recording that.");
                let explanation = unreadable.explain_gone();
                self.settle_unreadable(delivery, &stand_in, explanation)
                    .await;
                return None;
            }
            Err((false, error)) => {
                tracing::warn!(%error, "Reading a retried unreadable message failed; retrying later.");
                if let Err(error) = delivery.nak(Some(Duration::from_secs(5))).await {
                    tracing::warn!(%error, "NAK failed; the retry will be redelivered after ack_wait.");
                }
                metrics::counter!("billsync_worker_events_total",
                    "destination" => self.destination.kind().as_str(), "result" => "requeued")
                .increment(1);
                return None;
            }
        };
        match serde_json::from_slice::<BillingEvent>(&message.payload) {
            Ok(mut event) if UnreadableMessage::of(event.v1()).is_none() => {
                if unreadable.stream == topology.events_stream() {
                    // As a replay does: the event keeps its place in the events stream.
                    let BillingEvent::V1(v1) = &mut event;
                    v1.version.sequence = Some(unreadable.stream_sequence);
                }
                tracing::info!(
                    stream_sequence = unreadable.stream_sequence,
                    event_id = %event.v1().id,
                    "A message that was unreadable reads now; applying it."
                );
                Some(Job {
                    delivery,
                    event,
                    replay: true,
                    seat: None,
                    resolves: Some(stand_in),
                })
            }
            Ok(_) => {
                unreadable.error = "it is itself a stand-in of an unreadable message".into();
                let explanation = unreadable.explain();
                self.settle_unreadable(delivery, &stand_in, explanation)
                    .await;
                None
            }
            Err(error) => {
                unreadable.error = error.to_string();
                tracing::warn!(%error, stream_sequence = unreadable.stream_sequence,
                    "A retried message is still not a billing event this worker reads.");
                let explanation = unreadable.explain();
                self.settle_unreadable(delivery, &stand_in, explanation)
                    .await;
                None
            }
        }
    }

    /// Publishes the failure of an unreadable message and acks the message that brought it;
    /// NAKs that message when the failure could not be recorded.
    async fn settle_unreadable(
        &self,
        delivery: Delivery,
        stand_in: &BillingEventV1,
        message: String,
    ) {
        let attempts = delivery
            .info()
            .and_then(|i| u32::try_from(i.delivered).ok())
            .unwrap_or(1);
        let failure = Failure {
            class: FailureClass::InvalidEvent,
            message,
            http_status: None,
            vendor_detail: serde_json::Value::Null,
            attempts,
            event: BillingEvent::V1(stand_in.clone()),
        };
        let (result, settled) = match self
            .publish_outcome(stand_in, OutcomeResult::Failed(failure))
            .await
        {
            // Counted as any event that became a sync error; `undecodable` stays the count
            // of messages dropped unrecorded.
            Ok(()) => ("failed", delivery.ack().await),
            Err(delay) => ("requeued", delivery.nak(Some(delay)).await),
        };
        if let Err(error) = settled {
            tracing::warn!(%error, "Settling an unreadable message failed; it will be redelivered.");
        }
        metrics::counter!("billsync_worker_events_total",
            "destination" => self.destination.kind().as_str(), "result" => result)
        .increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_events::DestinationKind;

    /// A destination whose delivery keeps 64 KiB of state across an await, as a client
    /// holding a request body and its parsed answer does.
    struct Bulky;

    impl Destination for Bulky {
        fn kind(&self) -> DestinationKind {
            DestinationKind::Activecampaign
        }
        fn connection(&self) -> &str {
            "bulky"
        }
        async fn deliver(&self, _: &BillingEventV1, _: Pass) -> Result<Delivered, DeliveryError> {
            let state = [7u8; 64 * 1024];
            tokio::task::yield_now().await;
            Ok(Delivered::NotApplicable {
                reason: format!("{}", state.iter().map(|b| *b as usize).sum::<usize>()),
            })
        }
        async fn healthcheck(&self) -> Result<(), DeliveryError> {
            Ok(())
        }
    }

    /// The size of the future `work` returns, without making one.
    fn future_size<A, F: Future, W: Fn(A) -> F>(_: &W) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_event_waiting_for_its_turn_holds_a_few_words_not_the_delivery_state() {
        // What a lane runs per event (see `run_worker`): hundreds of these wait at once.
        let work = |(processor, job): (Arc<Processor<Bulky>>, Job)| async move {
            processor.process(job).await
        };
        let waiting = future_size(&work);
        assert!(
            waiting < 4 * 1024,
            "a waiting event's future is {waiting} bytes; the delivery's state must be boxed"
        );
    }
}
