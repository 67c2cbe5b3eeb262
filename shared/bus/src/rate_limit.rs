//! A request rate shared by every replica: ActiveCampaign allows 5 requests/s per account
//! however many workers call it, so the spacing lives in NATS KV, not in one process.
//!
//! The bucket holds, per account, the next free slot (Unix microseconds). Taking a slot is
//! a compare-and-set: read the slot and its revision, write slot + interval at that
//! revision, then wait until the slot. A 429's `Retry-After` moves the slot for everyone.
//! Should NATS be unreachable, the limiter falls back to spacing this process alone, so an
//! outage of the bus never stops a CRM write that JetStream already delivered.

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest pause a vendor's `Retry-After` can impose on every replica: a hint of hours
/// (a proxy's, or a typo) would otherwise park all writes of the account that long.
pub const MAX_BACK_OFF: Duration = crate::retry_after::MAX_RETRY_AFTER;

pub struct SharedRateLimiter {
    store: kv::Store,
    key: String,
    interval: Duration,
    local_next: Mutex<tokio::time::Instant>,
    /// One reservation in flight per process. Without it, every task of a backlog races
    /// the others' compare-and-set: all but one lose and read again, so the KV round trips
    /// per slot grow with the backlog and the limiter falls behind the rate it grants — a
    /// backlog that never drains (seen at 500 requests/s with hundreds of waiting tasks).
    /// Waiters queue here in arrival order instead; replicas still race, one task each.
    reserving: tokio::sync::Mutex<()>,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl SharedRateLimiter {
    /// `rate` requests per second for `key` (a KV key, e.g. `activecampaign.ac-main`).
    pub fn new(store: kv::Store, key: &str, rate: u32) -> Self {
        // A 2% margin absorbs clock differences between replicas and window edges.
        let interval = Duration::from_secs(1).mul_f64(1.02 / f64::from(rate.max(1)));
        Self {
            store,
            key: key.to_string(),
            interval,
            local_next: Mutex::new(tokio::time::Instant::now()),
            reserving: tokio::sync::Mutex::new(()),
        }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let wait = match self.reserve().await {
            Ok(wait) => wait,
            Err(error) => {
                tracing::warn!(%error, key = %self.key, "Shared rate limit unavailable; spacing requests locally.");
                self.reserve_locally()
            }
        };
        tokio::time::sleep(wait).await;
    }

    /// Nobody, in any replica, sends before `now + delay` (at most [`MAX_BACK_OFF`]).
    pub async fn back_off(&self, delay: Duration) {
        let until = now_micros() + delay.min(MAX_BACK_OFF).as_micros() as u64;
        for _ in 0..20 {
            let Ok(entry) = self.store.entry(&self.key).await else {
                return;
            };
            let (current, revision) = match &entry {
                Some(e) => (parse(&e.value), Some(e.revision)),
                None => (0, None),
            };
            if current >= until {
                return;
            }
            if !matches!(self.write(until, revision).await, Ok(false)) {
                return;
            }
        }
    }

    async fn reserve(&self) -> Result<Duration, async_nats::Error> {
        let _turn = self.reserving.lock().await;
        let step = self.interval.as_micros() as u64;
        loop {
            let entry = self.store.entry(&self.key).await?;
            let (next, revision) = match &entry {
                Some(e) => (parse(&e.value), Some(e.revision)),
                None => (0, None),
            };
            let now = now_micros();
            let slot = next.max(now);
            if self.write(slot + step, revision).await? {
                return Ok(Duration::from_micros(slot - now));
            }
            // Another replica took the slot first: read again.
        }
    }

    /// Writes `value` if the entry is still at `revision` (or absent when `None`): false when
    /// another replica wrote first, an error when the store could not be written at all.
    async fn write(&self, value: u64, revision: Option<u64>) -> Result<bool, async_nats::Error> {
        compare_and_set(
            &self.store,
            &self.key,
            value.to_string().into_bytes(),
            revision,
        )
        .await
    }

    fn reserve_locally(&self) -> Duration {
        let mut next = self.local_next.lock().expect("rate limiter lock poisoned");
        let now = tokio::time::Instant::now();
        let slot = (*next).max(now);
        *next = slot + self.interval;
        slot - now
    }
}

/// Writes `bytes` to `key` if the entry is still at `revision` (or absent when `None`): false
/// when another replica wrote first, an error when the store could not be written at all.
pub(crate) async fn compare_and_set(
    store: &kv::Store,
    key: &str,
    bytes: Vec<u8>,
    revision: Option<u64>,
) -> Result<bool, async_nats::Error> {
    match revision {
        Some(revision) => match store.update(key, bytes.into(), revision).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(e.into()),
        },
        None => match store.create(key, bytes.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.into()),
        },
    }
}

fn parse(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
