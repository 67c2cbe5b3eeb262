//! A request rate shared by every replica: ActiveCampaign allows 5 requests/s per account
//! however many workers call it, so the spacing lives in NATS KV, not in one process.
//!
//! The bucket holds, per account, the next free slot (Unix microseconds). Taking a slot is
//! a compare-and-set: read the slot and its revision, write slot + interval at that
//! revision, then wait until the slot. A 429's `Retry-After` moves the slot for everyone.
//! Should NATS be unreachable, the limiter falls back to spacing this process alone, so an
//! outage of the bus never stops a CRM write that JetStream already delivered.
//!
//! When several callers of one process wait at once, one compare-and-set takes a block of
//! consecutive slots for them (at most a fifth of a second's worth, and [`MAX_BLOCK`]):
//! the slots stay disjoint stretches of the one shared timeline, so the rate holds across
//! replicas, while a busy worker makes one KV round trip per block instead of per request.

use async_nats::jetstream::kv::{self, CreateErrorKind, UpdateErrorKind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The most slots one reservation takes for the callers waiting in one process.
pub const MAX_BLOCK: u64 = 64;

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
    reserving: tokio::sync::Mutex<Block>,
    /// Callers waiting for a slot in this process: the size of the next block.
    waiting: AtomicUsize,
    /// The most slots a block holds: a fifth of a second's worth, 1 to [`MAX_BLOCK`].
    max_block: u64,
}

/// Counts a caller among the waiting until it has its slot or gives up (is dropped).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Slots this process reserved on the shared timeline and has not handed out yet (Unix µs).
#[derive(Default)]
struct Block {
    next: u64,
    end: u64,
}

impl Block {
    /// The next unused slot that has not passed, if any.
    fn take(&mut self, now: u64, step: u64) -> Option<u64> {
        while self.next < self.end {
            let slot = self.next;
            self.next += step;
            // A slot already past is dropped: sending late in it would crowd the next.
            if slot + step > now {
                return Some(slot.max(now));
            }
        }
        None
    }
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
            reserving: tokio::sync::Mutex::new(Block::default()),
            waiting: AtomicUsize::new(0),
            max_block: (u64::from(rate) / 5).clamp(1, MAX_BLOCK),
        }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let reserved = {
            let _waiting = Waiting::enter(&self.waiting);
            self.reserve().await
        };
        let wait = match reserved {
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
        // Slots this process holds would fall inside the pause: give them up.
        *self.reserving.lock().await = Block::default();
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
        let mut block = self.reserving.lock().await;
        let step = self.interval.as_micros() as u64;
        let now = now_micros();
        if let Some(slot) = block.take(now, step) {
            return Ok(Duration::from_micros(slot - now));
        }
        // This caller and every one queued behind it.
        let wanted = (self.waiting.load(Ordering::Relaxed) as u64).clamp(1, self.max_block);
        loop {
            let entry = self.store.entry(&self.key).await?;
            let (next, revision) = match &entry {
                Some(e) => (parse(&e.value), Some(e.revision)),
                None => (0, None),
            };
            let now = now_micros();
            let first = next.max(now);
            let end = first + wanted * step;
            if self.write(end, revision).await? {
                *block = Block {
                    next: first + step,
                    end,
                };
                return Ok(Duration::from_micros(first - now));
            }
            // Another replica took the slots first: read again.
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
