//! One holder at a time across every replica — one poll of a Chargebee connection, one
//! backfill of a Stripe connection, one writer of a customer's CRM records: a lease in
//! NATS KV.
//!
//! The lease is a KV entry keyed by the connection, holding the holder's id and an expiry.
//! It is taken with a compare-and-set at the revision read (none, a deletion, or an expired
//! lease), renewed with one at the holder's last revision every third of its time to live,
//! and deleted at that revision when the poll ends. The compare-and-set is [`crate::cas`]'s,
//! which a cluster cannot let two contenders win. A holder that cannot renew stops before
//! its lease runs out: it counts its own validity from when it sent the write, minus a
//! margin for clock skew between replicas, while others judge expiry by the wall-clock time
//! in the entry.

use crate::cas;
use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;

/// What the KV entry holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub holder: String,
    /// Unix milliseconds; after this anyone may take the lease over.
    pub expires_at_ms: i64,
    pub acquired_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("held by {holder} until {expires_at_ms} (Unix ms)")]
    Held { holder: String, expires_at_ms: i64 },
    #[error("lease store: {0}")]
    Store(String),
}

/// Why a holder stopped holding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseLost {
    #[error("another holder took the lease over")]
    TakenOver,
    #[error("the lease could not be renewed before it ran out: {0}")]
    Expired(String),
}

/// A holder id unique to this process and call: host, pid and a nonce, as operators see it
/// in `billsync status` and in the logs of the replica that waits.
pub fn holder_id(default_host: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| default_host.into());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &nonce[..8])
}

/// The lease of one key, as seen by one holder.
#[derive(Clone)]
pub struct Lease {
    kv: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
    grace: Duration,
}

impl Lease {
    pub fn new(kv: kv::Store, key: &str, holder: &str, ttl: Duration) -> Self {
        Self {
            kv,
            key: key.to_string(),
            holder: holder.to_string(),
            ttl,
            grace: Duration::ZERO,
        }
    }

    /// Others take the lease over only `grace` after its expiry: what a holder sent before it
    /// stopped may still be acted on that long (a CRM request in flight, up to its timeout),
    /// and must not land after the next holder's work.
    pub fn with_takeover_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Whether a lease record still keeps others out at `now_ms` (Unix ms).
    fn keeps_out(&self, record: &LeaseRecord, now_ms: i64) -> bool {
        let grace = i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX / 2);
        record.expires_at_ms.saturating_add(grace) > now_ms
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// The record to write now, and the instant its holder's validity counts from: taken
    /// before the wall-clock expiry is, and just before the write is sent, so that the
    /// holder never counts itself valid past what the entry tells the others.
    fn record(&self, acquired_at_ms: i64) -> (Instant, Bytes) {
        let sent = Instant::now();
        let now = Utc::now().timestamp_millis();
        let record = LeaseRecord {
            holder: self.holder.clone(),
            expires_at_ms: now + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2),
            acquired_at_ms,
        };
        let bytes = serde_json::to_vec(&record).expect("a lease record serializes");
        (sent, bytes.into())
    }

    /// Local validity: from when the write was sent, the time to live less a margin that
    /// absorbs clock skew between replicas.
    fn valid_until(&self, sent: Instant) -> Instant {
        let margin = (self.ttl / 4).min(Duration::from_secs(5));
        sent + self.ttl.saturating_sub(margin)
    }

    /// Takes the lease, or says who holds it. Callers must not run two acquisitions with one
    /// holder id at once (the poller holds its poll lock): a live lease with our own id is
    /// taken back as a leftover.
    pub async fn acquire(&self) -> Result<LeaseGuard, LeaseError> {
        let store = |e: &dyn std::fmt::Display| LeaseError::Store(e.to_string());
        // A contender may win between our read and our write; a few rounds settle it.
        for _ in 0..3 {
            let (expected, current) = match self.kv.entry(&self.key).await.map_err(|e| store(&e))? {
                None => (0, None),
                Some(entry) if entry.operation != Operation::Put => (entry.revision, None),
                Some(entry) => (
                    entry.revision,
                    serde_json::from_slice::<LeaseRecord>(&entry.value).ok(),
                ),
            };
            let now = Utc::now().timestamp_millis();
            if let Some(current) = &current {
                // Our own id on a live lease is a poll of this process whose future was
                // dropped before it released; callers hold their process-wide poll lock, so
                // no poll of ours runs now and taking it back is safe.
                if self.keeps_out(current, now) && current.holder != self.holder {
                    return Err(LeaseError::Held {
                        holder: current.holder.clone(),
                        expires_at_ms: current.expires_at_ms,
                    });
                }
            }
            // Free, expired, ours, or unreadable (which no holder can be renewing): take it,
            // with an expiry counted from now, not from before the read above (which a slow
            // cluster can make last longer than the margin).
            let (sent, value) = self.record(now);
            let won = cas::update(&self.kv, &self.key, value.clone(), expected)
                .await
                .map_err(|e| store(&e))?;
            if let Some(revision) = won {
                if let Some(previous) = current {
                    tracing::info!(key = %self.key, previous = %previous.holder, "Took over an expired lease.");
                }
                return Ok(self.guard(revision, sent, now, value));
            }
        }
        Err(LeaseError::Held {
            holder: "another replica".into(),
            expires_at_ms: 0,
        })
    }

    fn guard(
        &self,
        revision: u64,
        sent: Instant,
        acquired_at_ms: i64,
        written: Bytes,
    ) -> LeaseGuard {
        LeaseGuard {
            lease: self.clone(),
            revision,
            written,
            valid_until: self.valid_until(sent),
            acquired_at_ms,
        }
    }

    /// The current holder, if the lease is held and not expired.
    pub async fn current(&self) -> Result<Option<LeaseRecord>, LeaseError> {
        let entry = self
            .kv
            .entry(&self.key)
            .await
            .map_err(|e| LeaseError::Store(e.to_string()))?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .and_then(|e| serde_json::from_slice::<LeaseRecord>(&e.value).ok())
            .filter(|r| self.keeps_out(r, Utc::now().timestamp_millis())))
    }
}

/// A held lease. Dropping it without [`LeaseGuard::release`] leaves it to expire.
pub struct LeaseGuard {
    lease: Lease,
    revision: u64,
    /// What this holder last wrote: a contender that lost a race puts it back over its own
    /// write (see [`crate::cas`]), at a revision this holder then takes as its own.
    written: Bytes,
    valid_until: Instant,
    acquired_at_ms: i64,
}

impl LeaseGuard {
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// How much longer this holder counts itself the holder, unless it renews.
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }

    /// Extends the lease by its time to live.
    pub async fn renew(&mut self) -> Result<(), LeaseLost> {
        let (sent, value) = self.lease.record(self.acquired_at_ms);
        for _ in 0..2 {
            match cas::update(
                &self.lease.kv,
                &self.lease.key,
                value.clone(),
                self.revision,
            )
            .await
            {
                Ok(Some(revision)) => {
                    self.revision = revision;
                    self.written = value;
                    self.valid_until = self.lease.valid_until(sent);
                    return Ok(());
                }
                Ok(None) if self.put_back().await => {}
                Ok(None) => return Err(LeaseLost::TakenOver),
                Err(e) => return Err(LeaseLost::Expired(e.to_string())),
            }
        }
        Err(LeaseLost::TakenOver)
    }

    /// Whether the entry holds, at a newer revision, exactly what this holder last wrote —
    /// put back by a contender that lost a race to it — and if so takes that revision.
    async fn put_back(&mut self) -> bool {
        match self.lease.kv.entry(&self.lease.key).await {
            Ok(Some(entry))
                if entry.operation == Operation::Put
                    && entry.revision > self.revision
                    && entry.value == self.written =>
            {
                self.revision = entry.revision;
                true
            }
            _ => false,
        }
    }

    /// Renews every third of the time to live; returns only when the lease is lost, so
    /// callers race it against their work and stop the work at once when it returns.
    pub async fn keep_alive(&mut self) -> LeaseLost {
        let period = self.lease.ttl / 3;
        let mut next = Instant::now() + period;
        loop {
            tokio::time::sleep_until(next.min(self.valid_until)).await;
            if !self.is_valid() {
                return LeaseLost::Expired("no renewal succeeded in time".into());
            }
            let remaining = self.valid_until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, self.renew()).await {
                Ok(Ok(())) => next = Instant::now() + period,
                Ok(Err(LeaseLost::TakenOver)) => return LeaseLost::TakenOver,
                Ok(Err(LeaseLost::Expired(reason))) => {
                    tracing::warn!(key = %self.lease.key, %reason, "Lease renewal failed; retrying while it is still valid.");
                    next = Instant::now() + Duration::from_millis(500).min(period);
                }
                Err(_) => return LeaseLost::Expired("the renewal did not finish in time".into()),
            }
        }
    }

    /// Gives the lease up at once so the next poll, here or elsewhere, need not wait.
    pub async fn release(mut self) {
        for _ in 0..2 {
            let deleted = self
                .lease
                .kv
                .delete_expect_revision(&self.lease.key, Some(self.revision))
                .await;
            match deleted {
                Ok(()) => return,
                Err(_) if self.put_back().await => {}
                Err(error) => {
                    tracing::debug!(key = %self.lease.key, %error, "Lease release failed; it will expire.");
                    return;
                }
            }
        }
    }
}
