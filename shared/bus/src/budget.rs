//! A budget shared by every replica: Pipedrive charges tokens per call against a daily
//! allowance per company, however many workers call it, so the ledger lives in NATS KV.
//!
//! The bucket holds, per connection, what was spent in each slot (a 24th of the window) of
//! the last window. Charging is a compare-and-set: read the ledger and its revision, write it
//! with the call's cost added at that revision, or read again if another replica wrote first.
//! A slot's units come back one whole window after the slot *ends*, so no rolling window ever
//! holds more than the allowance — it also keeps an allowance that resets at a fixed hour.

use async_nats::jetstream::kv;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Slots per window: the ledger's size, and how late (a 24th of the window) units come back.
const SLOTS: u64 = 24;

pub struct SharedBudget {
    store: kv::Store,
    key: String,
    capacity: u64,
    window_secs: u64,
    slot_secs: u64,
    /// One charge in flight per process, so a backlog does not race itself on the CAS.
    charging: tokio::sync::Mutex<()>,
}

/// What a charge came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    /// Charged; `remaining` units are left in the window.
    Paid { remaining: u64 },
    /// Not charged: `remaining` cannot pay the call; enough is free again after `wait`.
    Short { remaining: u64, wait: Duration },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Ledger {
    /// `(slot start in Unix seconds, units spent in it)`, oldest first.
    slots: Vec<(u64, u64)>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SharedBudget {
    /// `capacity` units per rolling `window` for `key` (a KV key, e.g. `pipedrive.pd-main`).
    pub fn new(store: kv::Store, key: &str, capacity: u64, window: Duration) -> Self {
        let window_secs = window.as_secs().max(SLOTS);
        Self {
            store,
            key: key.to_string(),
            capacity: capacity.max(1),
            window_secs,
            slot_secs: window_secs / SLOTS,
            charging: tokio::sync::Mutex::new(()),
        }
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Charges `cost` units (at most the whole allowance) if the window can pay them.
    pub async fn charge(&self, cost: u64) -> Result<Spend, async_nats::Error> {
        let cost = cost.min(self.capacity);
        let _turn = self.charging.lock().await;
        loop {
            let (mut ledger, revision) = self.read().await?;
            let now = now_secs();
            self.expire(&mut ledger, now);
            let spent: u64 = ledger.slots.iter().map(|(_, units)| units).sum();
            let remaining = self.capacity.saturating_sub(spent);
            if cost > remaining {
                return Ok(Spend::Short {
                    remaining,
                    wait: self.wait_for(&ledger, cost - remaining, now),
                });
            }
            let slot = now - now % self.slot_secs;
            match ledger.slots.last_mut() {
                Some((start, units)) if *start == slot => *units += cost,
                _ => ledger.slots.push((slot, cost)),
            }
            if self.write(&ledger, revision).await? {
                return Ok(Spend::Paid {
                    remaining: remaining - cost,
                });
            }
        }
    }

    /// Units left in the window now.
    pub async fn remaining(&self) -> Result<u64, async_nats::Error> {
        let (mut ledger, _) = self.read().await?;
        self.expire(&mut ledger, now_secs());
        let spent: u64 = ledger.slots.iter().map(|(_, units)| units).sum();
        Ok(self.capacity.saturating_sub(spent))
    }

    fn expire(&self, ledger: &mut Ledger, now: u64) {
        ledger
            .slots
            .retain(|(start, _)| start + self.slot_secs + self.window_secs > now);
    }

    /// How long until the oldest slots free `short` more units.
    fn wait_for(&self, ledger: &Ledger, short: u64, now: u64) -> Duration {
        let mut freed = 0;
        for (start, units) in &ledger.slots {
            freed += units;
            if freed >= short {
                let back = start + self.slot_secs + self.window_secs;
                return Duration::from_secs(back.saturating_sub(now).max(1));
            }
        }
        Duration::from_secs(self.window_secs)
    }

    async fn read(&self) -> Result<(Ledger, Option<u64>), async_nats::Error> {
        Ok(match self.store.entry(&self.key).await? {
            // A ledger this version cannot read starts again empty rather than blocking writes.
            Some(entry) => (
                serde_json::from_slice(&entry.value).unwrap_or_default(),
                Some(entry.revision),
            ),
            None => (Ledger::default(), None),
        })
    }

    /// Writes the ledger if the entry is still at `revision`: false when another replica wrote
    /// first.
    async fn write(
        &self,
        ledger: &Ledger,
        revision: Option<u64>,
    ) -> Result<bool, async_nats::Error> {
        let bytes = serde_json::to_vec(ledger)?;
        crate::rate_limit::compare_and_set(&self.store, &self.key, bytes, revision).await
    }
}
