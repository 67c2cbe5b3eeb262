//! Polls one Chargebee connection's Events API and publishes every event to JetStream.
//!
//! A poll holds the connection's lease, reads the cursor, asks for events after
//! `cursor - overlap` oldest first, and follows `next_offset` to the last page. Each event is
//! published with `Nats-Msg-Id` = its id and the stream's ack awaited; only then does the
//! cursor move to the page's newest `occurred_at`. Events fetched again by the overlap are
//! dropped by JetStream's duplicate window (or, when this process published them, before
//! they are sent at all). Shutdown lets the page in hand finish, then stops.

use super::client::{ChargebeeClient, ChargebeeError};
use super::cursor::{CursorError, CursorStore, PollCursor};
use super::event::{self, Untranslatable};
use super::settings::ConnectionSettings;
use super::types::EventsPage;
use billsync_bus::lease::{Lease, LeaseError};
use billsync_bus::{PublishError, Publisher};
use billsync_events::SourceKind;
use chrono::{DateTime, Utc};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// What started a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The connection's schedule (`poll_interval_secs`, when `auto_sync` is on).
    Schedule,
    /// Sync now, from the CLI or the admin endpoint.
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
        }
    }
}

/// What one poll did. `started`/`finished` are taken while the lease was held.
#[derive(Debug, Clone)]
pub struct PollReport {
    pub connection: String,
    pub holder: String,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub started: Instant,
    pub finished: Instant,
    pub pages: u32,
    /// Events on the pages, overlap included.
    pub events_seen: u64,
    /// Events the stream stored for the first time.
    pub published: u64,
    /// Events the stream (or this poller) already had: the overlap.
    pub duplicates: u64,
    /// Events not carried (types about other objects) or unreadable.
    pub skipped: u64,
    pub cursor_before: Option<i64>,
    pub cursor_after: i64,
    /// False when shutdown stopped the poll between pages.
    pub completed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("a poll of connection {connection} is already running; try again when it finishes")]
    AlreadyRunning {
        connection: String,
        holder: Option<String>,
    },
    #[error("no Chargebee connection named {0:?} is configured")]
    UnknownConnection(String),
    #[error(
        "Chargebee connection {0} is unlinked (enabled = false on it or on every sync of it), \
         so it is not polled; link it again first"
    )]
    Unlinked(String),
    #[error("polling Chargebee connection {connection}: {source}")]
    Chargebee {
        connection: String,
        #[source]
        source: ChargebeeError,
    },
    #[error("publishing Chargebee event {event_id} of connection {connection}: {source}")]
    Publish {
        connection: String,
        event_id: String,
        #[source]
        source: PublishError,
    },
    #[error("connection {connection}: {message}")]
    Store { connection: String, message: String },
    #[error("the lease on connection {connection} was lost mid-poll ({reason}); the page in hand is published again by the next poll")]
    LeaseLost { connection: String, reason: String },
}

impl PollError {
    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PollError::AlreadyRunning { .. } => "already_running",
            PollError::UnknownConnection(_) => "unknown_connection",
            PollError::Unlinked(_) => "unlinked",
            PollError::Chargebee { source, .. } if source.is_retryable() => "chargebee_unavailable",
            PollError::Chargebee { .. } => "chargebee_refused",
            PollError::Publish { .. } => "publish_failed",
            PollError::Store { .. } => "store_failed",
            PollError::LeaseLost { .. } => "lease_lost",
        }
    }
}

/// Ids this process published recently, so that the overlap does not resend them.
#[derive(Default)]
struct RecentIds {
    occurred_at: HashMap<String, i64>,
}

impl RecentIds {
    /// Forgets ids the next poll cannot fetch again (at or before `after`).
    fn prune(&mut self, after: i64) {
        self.occurred_at.retain(|_, at| *at > after);
    }
}

/// The poller of one connection; shared by its schedule and sync-now.
pub struct ConnectionPoller {
    settings: ConnectionSettings,
    client: ChargebeeClient,
    publisher: Publisher,
    cursors: CursorStore,
    lease: Lease,
    /// Held for the whole of a poll in this process.
    running: tokio::sync::Mutex<()>,
    recent: Mutex<RecentIds>,
    reports: broadcast::Sender<PollReport>,
}

impl ConnectionPoller {
    pub(crate) fn new(
        settings: ConnectionSettings,
        client: ChargebeeClient,
        publisher: Publisher,
        cursors: CursorStore,
        lease: Lease,
        reports: broadcast::Sender<PollReport>,
    ) -> Self {
        Self {
            settings,
            client,
            publisher,
            cursors,
            lease,
            running: tokio::sync::Mutex::new(()),
            recent: Mutex::new(RecentIds::default()),
            reports,
        }
    }

    pub fn settings(&self) -> &ConnectionSettings {
        &self.settings
    }

    pub fn holder(&self) -> &str {
        self.lease.holder()
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    /// Polls now. Refused while a poll of this connection runs, here or in another replica.
    pub async fn sync_now(&self, shutdown: &CancellationToken) -> Result<PollReport, PollError> {
        let report = self.poll(Trigger::Manual, shutdown, None).await;
        self.count(Trigger::Manual, &report);
        report.map(|r| r.expect("manual polls are never skipped"))
    }

    /// Polls on the schedule until `shutdown`: at once, then `poll_interval` (±10%) after each
    /// poll ends. A replica skips its turn when another polled within half an interval.
    pub async fn run(&self, shutdown: CancellationToken) {
        if !self.settings.auto_sync {
            tracing::info!(connection = %self.name(), "Auto-sync is off; this connection is polled only on sync-now.");
            shutdown.cancelled().await;
            return;
        }
        let interval = self.settings.poll_interval;
        let mut next = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            let result = self
                .poll(Trigger::Schedule, &shutdown, Some(interval / 2))
                .await;
            self.count(Trigger::Schedule, &result);
            match &result {
                Ok(Some(report)) if report.published > 0 => tracing::info!(
                    connection = %self.name(), published = report.published, duplicates = report.duplicates,
                    pages = report.pages, cursor = report.cursor_after, "Polled Chargebee."
                ),
                Ok(Some(report)) => tracing::debug!(
                    connection = %self.name(), pages = report.pages, duplicates = report.duplicates, "Polled Chargebee; nothing new."
                ),
                Ok(None) => {
                    tracing::debug!(connection = %self.name(), "Skipped a poll: another replica polled moments ago.")
                }
                Err(PollError::AlreadyRunning { holder, .. }) => tracing::debug!(
                    connection = %self.name(), holder = holder.as_deref().unwrap_or("this process"), "Skipped a poll: one is running."
                ),
                Err(error @ PollError::Chargebee { source, .. }) if !source.is_retryable() => {
                    tracing::error!(connection = %self.name(), %error, "Chargebee refused the poll; fix the connection's settings.")
                }
                Err(error) => {
                    tracing::warn!(connection = %self.name(), %error, "Poll failed; the next one retries.")
                }
            }
            let jitter = rand::rng().random_range(0.9..1.1);
            next = tokio::time::Instant::now() + interval.mul_f64(jitter);
        }
        tracing::info!(connection = %self.name(), "Chargebee poller stopped.");
    }

    fn count(&self, trigger: Trigger, result: &Result<Option<PollReport>, PollError>) {
        let label = match result {
            Ok(Some(report)) if report.completed => "completed",
            Ok(Some(_)) => "stopped",
            Ok(None) => "skipped_recent",
            Err(error) => error.label(),
        };
        metrics::counter!("billsync_ingest_chargebee_polls_total", "connection" => self.name().to_string(),
            "trigger" => trigger.as_str(), "result" => label)
        .increment(1);
    }

    /// One poll under the lease. `skip_if_polled_within`: give the turn up when the cursor
    /// says a poll ended that recently (scheduled polls only).
    #[tracing::instrument(name = "chargebee_poll", skip_all, fields(connection = %self.settings.name, trigger = trigger.as_str()))]
    async fn poll(
        &self,
        trigger: Trigger,
        shutdown: &CancellationToken,
        skip_if_polled_within: Option<Duration>,
    ) -> Result<Option<PollReport>, PollError> {
        let busy = |holder: Option<String>| PollError::AlreadyRunning {
            connection: self.name().to_string(),
            holder,
        };
        let _running = self.running.try_lock().map_err(|_| busy(None))?;
        let mut lease = self.lease.acquire().await.map_err(|error| match error {
            LeaseError::Held { holder, .. } => busy(Some(holder)),
            LeaseError::Store(message) => PollError::Store {
                connection: self.name().to_string(),
                message,
            },
        })?;
        let result = tokio::select! {
            // Stop at once when the lease is gone: another replica may be polling already.
            lost = lease.keep_alive() => Err(PollError::LeaseLost { connection: self.name().to_string(), reason: lost.to_string() }),
            result = self.poll_pages(trigger, shutdown, skip_if_polled_within) => result,
        };
        lease.release().await;
        if let Ok(Some(report)) = &result {
            // Nobody listening is fine.
            let _ = self.reports.send(report.clone());
        }
        result
    }

    async fn poll_pages(
        &self,
        trigger: Trigger,
        shutdown: &CancellationToken,
        skip_if_polled_within: Option<Duration>,
    ) -> Result<Option<PollReport>, PollError> {
        let started = Instant::now();
        let started_at = Utc::now();
        let loaded = self.cursors.load().await.map_err(|e| self.store_error(e))?;
        if let (
            Some(within),
            Some((
                PollCursor {
                    polled_at: Some(at),
                    ..
                },
                _,
            )),
        ) = (skip_if_polled_within, &loaded)
        {
            if Utc::now()
                .signed_duration_since(*at)
                .to_std()
                .is_ok_and(|ago| ago < within)
            {
                return Ok(None);
            }
        }
        let cursor_before = loaded.as_ref().map(|(c, _)| c.occurred_at);
        let (mut cursor, mut revision) = match loaded {
            Some((cursor, revision)) => (cursor, Some(revision)),
            None => {
                tracing::info!(connection = %self.name(), "First poll of this connection: carrying events from now on (earlier records come with `sync all`).");
                (PollCursor::starting_now(), None)
            }
        };
        let overlap = i64::try_from(self.settings.overlap.as_secs()).unwrap_or(i64::MAX / 2);
        let after = cursor.occurred_at.saturating_sub(overlap);
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .prune(after);
        let mut report = PollReport {
            connection: self.name().to_string(),
            holder: self.holder().to_string(),
            trigger,
            started_at,
            finished_at: started_at,
            started,
            finished: started,
            pages: 0,
            events_seen: 0,
            published: 0,
            duplicates: 0,
            skipped: 0,
            cursor_before,
            cursor_after: cursor.occurred_at,
            completed: false,
        };
        let mut offset: Option<String> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let Some(page) = self.fetch_page(after, offset.as_deref(), shutdown).await? else {
                break;
            };
            report.pages += 1;
            let newest = self.publish_page(&page, &mut report).await?;
            if let Some((occurred_at, event_id)) = newest {
                if occurred_at >= cursor.occurred_at {
                    cursor.occurred_at = occurred_at;
                    cursor.event_id = Some(event_id);
                    revision = Some(
                        self.cursors
                            .save(&cursor, revision)
                            .await
                            .map_err(|e| self.store_error(e))?,
                    );
                    metrics::gauge!("billsync_ingest_chargebee_cursor_seconds", "connection" => self.name().to_string())
                        .set(occurred_at as f64);
                }
            }
            offset = page.next_offset;
            if offset.is_none() {
                report.completed = true;
                break;
            }
        }
        cursor.polled_at = Some(Utc::now());
        cursor.polled_by = Some(self.holder().to_string());
        self.cursors
            .save(&cursor, revision)
            .await
            .map_err(|e| self.store_error(e))?;
        report.cursor_after = cursor.occurred_at;
        report.finished = Instant::now();
        report.finished_at = Utc::now();
        Ok(Some(report))
    }

    fn store_error(&self, error: CursorError) -> PollError {
        match error {
            CursorError::Conflict => PollError::LeaseLost {
                connection: self.name().to_string(),
                reason: "another poller wrote the cursor".into(),
            },
            CursorError::Store(message) => PollError::Store {
                connection: self.name().to_string(),
                message,
            },
        }
    }

    /// Publishes an event billsync cannot read as it came, on this connection's events
    /// subjects: it is not a billing event, so each worker that syncs from the connection
    /// records it as a sync error keeping its payload (as for any unreadable message), and
    /// the cursor moves on without it vanishing. Its id makes a re-fetched copy a duplicate.
    async fn publish_unreadable(
        &self,
        event_id: Option<&str>,
        raw: &serde_json::Value,
        reason: &str,
    ) -> Result<(), PollError> {
        let payload = serde_json::to_vec(raw).unwrap_or_default();
        let id = match event_id {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => billsync_bus::data_fingerprint(raw),
        };
        tracing::error!(connection = %self.name(), event_id = %id, %reason,
            "Chargebee sent an event billsync cannot read; publishing it as it came, so that each destination records it as a sync error.");
        let subject = self
            .publisher
            .topology()
            .source_events_subjects(SourceKind::Chargebee, self.name())
            .replace('>', "unreadable.event");
        self.publisher
            .publish(
                subject,
                &format!("unreadable:{id}"),
                payload.into(),
                async_nats::HeaderMap::new(),
            )
            .await
            .map_err(|source| PollError::Publish {
                connection: self.name().to_string(),
                event_id: id,
                source,
            })?;
        Ok(())
    }

    /// Publishes a page's events in order, each acked before the next; returns the newest
    /// event's `(occurred_at, id)`.
    async fn publish_page(
        &self,
        page: &EventsPage,
        report: &mut PollReport,
    ) -> Result<Option<(i64, String)>, PollError> {
        let counter = |result: &'static str| metrics::counter!("billsync_ingest_chargebee_events_total", "connection" => self.name().to_string(), "result" => result);
        for malformed in &page.malformed {
            report.skipped += 1;
            counter("malformed").increment(1);
            self.publish_unreadable(malformed.id.as_deref(), &malformed.raw, &malformed.reason)
                .await?;
        }
        let mut newest: Option<(i64, String)> = None;
        for event in &page.events {
            report.events_seen += 1;
            if newest
                .as_ref()
                .is_none_or(|(at, _)| event.occurred_at >= *at)
            {
                newest = Some((event.occurred_at, event.id.clone()));
            }
            let known = self
                .recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .occurred_at
                .contains_key(&event.id);
            if known {
                report.duplicates += 1;
                counter("duplicate").increment(1);
                continue;
            }
            match event::to_billing_event(self.name(), event) {
                Ok(billing) => {
                    let published =
                        self.publisher
                            .publish_event(&billing)
                            .await
                            .map_err(|source| PollError::Publish {
                                connection: self.name().to_string(),
                                event_id: event.id.clone(),
                                source,
                            })?;
                    if published.duplicate {
                        report.duplicates += 1;
                        counter("duplicate").increment(1);
                    } else {
                        report.published += 1;
                        counter("published").increment(1);
                    }
                }
                Err(Untranslatable::NotCarried { event_type }) => {
                    report.skipped += 1;
                    counter("not_carried").increment(1);
                    tracing::debug!(connection = %self.name(), event_id = %event.id, %event_type, "Event type not carried.");
                }
                Err(Untranslatable::Malformed(reason)) => {
                    report.skipped += 1;
                    counter("malformed").increment(1);
                    let raw = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
                    self.publish_unreadable(Some(&event.id), &raw, &reason)
                        .await?;
                }
            }
            self.recent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .occurred_at
                .insert(event.id.clone(), event.occurred_at);
        }
        Ok(newest)
    }

    /// One page, retrying 429/5xx/timeouts with backoff that honours `Retry-After`.
    /// `None` when shutdown came first (nothing of the page is in hand then).
    async fn fetch_page(
        &self,
        after: i64,
        offset: Option<&str>,
        shutdown: &CancellationToken,
    ) -> Result<Option<EventsPage>, PollError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = tokio::select! {
                _ = shutdown.cancelled() => return Ok(None),
                result = self.client.list_events(after, offset, self.settings.page_size) => result,
            };
            match result {
                Ok(page) => return Ok(Some(page)),
                Err(error) if error.is_retryable() && attempt < self.settings.max_attempts => {
                    let delay = retry_delay(attempt, error.retry_after());
                    let status = error
                        .http_status()
                        .map_or_else(|| "none".to_string(), |s| s.to_string());
                    metrics::counter!("billsync_ingest_chargebee_retries_total", "connection" => self.name().to_string(),
                        "status" => status)
                    .increment(1);
                    tracing::warn!(connection = %self.name(), attempt, delay_ms = delay.as_millis() as u64, %error,
                        "Chargebee request failed; retrying.");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(None),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Err(source) => {
                    return Err(PollError::Chargebee {
                        connection: self.name().to_string(),
                        source,
                    })
                }
            }
        }
    }
}

/// Exponential backoff with ±25% jitter; `Retry-After` is honoured but clamped, so a bogus
/// hint can neither hammer the site nor park the connection for long.
fn retry_delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(hint) = retry_after {
        return hint.clamp(Duration::from_secs(1), Duration::from_secs(120));
    }
    let exponent = attempt.saturating_sub(1).min(10);
    let backoff = Duration::from_millis(500)
        .saturating_mul(1 << exponent)
        .min(Duration::from_secs(30));
    backoff.mul_f64(rand::rng().random_range(0.75..1.25))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_clamped_and_backoff_grows() {
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(retry_delay(1, Some(Duration::ZERO)), Duration::from_secs(1));
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(3600))),
            Duration::from_secs(120)
        );
        let first = retry_delay(1, None);
        assert!(
            first >= Duration::from_millis(375) && first <= Duration::from_millis(625),
            "{first:?}"
        );
        let late = retry_delay(30, None);
        assert!(
            late <= Duration::from_millis(37_500) && late >= Duration::from_millis(22_500),
            "{late:?}"
        );
    }

    #[test]
    fn the_overlap_memory_forgets_what_cannot_come_again() {
        let mut recent = RecentIds::default();
        recent.occurred_at.insert("ev_old".into(), 100);
        recent.occurred_at.insert("ev_new".into(), 161);
        recent.prune(100);
        assert!(!recent.occurred_at.contains_key("ev_old"));
        assert!(recent.occurred_at.contains_key("ev_new"));
    }
}
