//! One backfill of a connection at a time, across processes and replicas: a lease in NATS
//! KV (`{prefix}_leases`, key `stripe.<connection>.backfill`).
//!
//! The entry holds the holder and an expiry. It is taken with `create`, or with `update` at
//! the revision read once the expiry has passed (so two contenders cannot both win), renewed
//! with `update` at the holder's revision every third of its time to live, and deleted when
//! the run ends. A holder killed with SIGKILL leaves the entry to expire; a holder that cannot
//! renew in time reports the lease lost and its run stops, to resume under the next holder.
//! The record has the same shape as the Chargebee pollers' leases.

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

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

#[derive(Clone)]
pub struct BackfillLease {
    kv: kv::Store,
    key: String,
    holder: String,
    ttl: Duration,
}

impl BackfillLease {
    pub fn new(kv: kv::Store, key: String, holder: String, ttl: Duration) -> Self {
        Self {
            kv,
            key,
            holder,
            ttl,
        }
    }

    fn encode(&self, acquired_at_ms: i64) -> bytes::Bytes {
        let now = Utc::now().timestamp_millis();
        let record = LeaseRecord {
            holder: self.holder.clone(),
            expires_at_ms: now + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2),
            acquired_at_ms,
        };
        serde_json::to_vec(&record)
            .expect("a lease record serializes")
            .into()
    }

    /// Local validity, counted from when the write was sent, less a margin for clock skew.
    fn valid_until(&self, sent: Instant) -> Instant {
        let margin = (self.ttl / 4).min(Duration::from_secs(5));
        sent + self.ttl.saturating_sub(margin)
    }

    /// Takes the lease, or says who holds it.
    pub async fn try_acquire(&self) -> Result<HeldLease, LeaseError> {
        let store = |e: &dyn std::fmt::Display| LeaseError::Store(e.to_string());
        for _ in 0..3 {
            let now = Utc::now().timestamp_millis();
            let sent = Instant::now();
            match self.kv.create(&self.key, self.encode(now)).await {
                Ok(revision) => return Ok(self.held(revision, sent, now)),
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(store(&e)),
            }
            let entry = match self.kv.entry(&self.key).await.map_err(|e| store(&e))? {
                Some(entry) if entry.operation == Operation::Put => entry,
                // Released between our create and our read: create again.
                _ => continue,
            };
            let current: Option<LeaseRecord> = serde_json::from_slice(&entry.value).ok();
            if let Some(current) = &current {
                if current.expires_at_ms > now {
                    return Err(LeaseError::Held {
                        holder: current.holder.clone(),
                        expires_at_ms: current.expires_at_ms,
                    });
                }
            }
            let sent = Instant::now();
            match self
                .kv
                .update(&self.key, self.encode(now), entry.revision)
                .await
            {
                Ok(revision) => {
                    if let Some(previous) = current {
                        tracing::info!(key = %self.key, previous = %previous.holder,
                            "Took over an expired backfill lease.");
                    }
                    return Ok(self.held(revision, sent, now));
                }
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(store(&e)),
            }
        }
        Err(LeaseError::Held {
            holder: "another process".into(),
            expires_at_ms: 0,
        })
    }

    fn held(&self, revision: u64, sent: Instant, acquired_at_ms: i64) -> HeldLease {
        HeldLease {
            lease: self.clone(),
            revision,
            valid_until: self.valid_until(sent),
            acquired_at_ms,
        }
    }
}

/// A lease this process holds.
pub struct HeldLease {
    lease: BackfillLease,
    revision: u64,
    valid_until: Instant,
    acquired_at_ms: i64,
}

impl HeldLease {
    async fn renew(&mut self) -> Result<(), RenewError> {
        let sent = Instant::now();
        match self
            .lease
            .kv
            .update(
                &self.lease.key,
                self.lease.encode(self.acquired_at_ms),
                self.revision,
            )
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                self.valid_until = self.lease.valid_until(sent);
                Ok(())
            }
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Err(RenewError::TakenOver),
            Err(e) => Err(RenewError::Failed(e.to_string())),
        }
    }

    /// Renews in the background until [`KeepAlive::release`]; cancels `lost` if the lease
    /// cannot be kept, so the run stops before another holder could start.
    pub fn keep_alive(mut self, lost: CancellationToken) -> KeepAlive {
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let period = self.lease.ttl / 3;
            let mut next = Instant::now() + period;
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => break,
                    _ = tokio::time::sleep_until(next.min(self.valid_until)) => {}
                }
                if Instant::now() >= self.valid_until {
                    tracing::warn!(key = %self.lease.key, "Backfill lease ran out before it could be renewed; stopping the run.");
                    lost.cancel();
                    return;
                }
                match self.renew().await {
                    Ok(()) => next = Instant::now() + period,
                    Err(RenewError::TakenOver) => {
                        tracing::warn!(key = %self.lease.key, "Another process took the backfill lease over; stopping the run.");
                        lost.cancel();
                        return;
                    }
                    Err(RenewError::Failed(reason)) => {
                        tracing::warn!(key = %self.lease.key, %reason, "Renewing the backfill lease failed; retrying while it is valid.");
                        next = Instant::now() + Duration::from_millis(500).min(period);
                    }
                }
            }
            if let Err(error) = self
                .lease
                .kv
                .delete_expect_revision(&self.lease.key, Some(self.revision))
                .await
            {
                tracing::debug!(key = %self.lease.key, %error, "Releasing the backfill lease failed; it will expire.");
            }
        });
        KeepAlive { stop, task }
    }
}

enum RenewError {
    TakenOver,
    Failed(String),
}

/// The background renewal of a held lease.
pub struct KeepAlive {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl KeepAlive {
    /// Stops renewing and gives the lease up, so the next run need not wait for it to expire.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}
