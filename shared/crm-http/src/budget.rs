//! Budgets that are not requests per second: units a vendor charges per call against an
//! allowance over a long window (Pipedrive's daily tokens, Zoho's credits per rolling 24 h).
//!
//! Neither vendor reports the allowance left in a way a client can wait on (Pipedrive sends
//! no header for the daily budget; Zoho's `X-API-CREDITS-REMAINING` appears only past half
//! the day), so the budget is a ledger of what this connection spent. A call the ledger
//! cannot afford is not sent: it fails retryable with the time until enough is free.

use reqwest::Method;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// What one call costs, from its method and endpoint template.
pub type CostFn = fn(&Method, &str) -> u64;

/// An allowance of `capacity` units over a rolling `window`, spent per call.
///
/// A rolling window never spends more than the allowance in any window, so it also keeps a
/// vendor's allowance that resets at a fixed hour (Pipedrive: midnight server time), at the
/// price of waiting longer just after the reset.
pub struct Budget {
    /// What the units are, for messages: `tokens`, `credits`.
    unit: &'static str,
    capacity: u64,
    window: Duration,
    cost: CostFn,
    ledger: Mutex<Ledger>,
}

#[derive(Default)]
struct Ledger {
    /// When each call of the window was charged, and what it cost; oldest first.
    charges: VecDeque<(Instant, u64)>,
    spent: u64,
}

/// The budget cannot pay for a call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overspent {
    pub cost: u64,
    pub remaining: u64,
    /// When enough of the window's charges have expired to pay for the call.
    pub wait: Duration,
}

impl Budget {
    /// `capacity` units per rolling `window`; each call costs one unit until [`Self::costing`].
    pub fn rolling(capacity: u64, window: Duration, unit: &'static str) -> Self {
        Self {
            unit,
            capacity: capacity.max(1),
            window,
            cost: |_, _| 1,
            ledger: Mutex::default(),
        }
    }

    /// Prices calls by method and endpoint template (e.g. Pipedrive: a search 20 tokens, a
    /// POST 5). A call can still name its own cost ([`crate::Call::cost`]).
    pub fn costing(mut self, cost: CostFn) -> Self {
        self.cost = cost;
        self
    }

    pub fn unit(&self) -> &'static str {
        self.unit
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The price of a call to `endpoint` (a template).
    pub fn cost(&self, method: &Method, endpoint: &str) -> u64 {
        (self.cost)(method, endpoint)
    }

    /// Charges `cost` units now, or says how long until the budget can pay them. A call dearer
    /// than the whole allowance is charged as the whole allowance, so it can ever be sent.
    pub fn charge(&self, cost: u64) -> Result<u64, Overspent> {
        let cost = cost.min(self.capacity);
        let now = Instant::now();
        let mut ledger = self.ledger.lock().expect("budget ledger poisoned");
        while let Some(&(at, spent)) = ledger.charges.front() {
            if now.duration_since(at) < self.window {
                break;
            }
            ledger.charges.pop_front();
            ledger.spent -= spent;
        }
        let remaining = self.capacity - ledger.spent;
        if cost <= remaining {
            ledger.charges.push_back((now, cost));
            ledger.spent += cost;
            return Ok(remaining - cost);
        }
        // The oldest charges free their units first; wait for the one that frees enough.
        let mut freed = remaining;
        let mut wait = self.window;
        for &(at, spent) in &ledger.charges {
            freed += spent;
            if freed >= cost {
                wait = (at + self.window).saturating_duration_since(now);
                break;
            }
        }
        Err(Overspent {
            cost,
            remaining,
            wait,
        })
    }

    /// Units left in the window now.
    pub fn remaining(&self) -> u64 {
        let now = Instant::now();
        let ledger = self.ledger.lock().expect("budget ledger poisoned");
        let expired: u64 = ledger
            .charges
            .iter()
            .take_while(|(at, _)| now.duration_since(*at) >= self.window)
            .map(|(_, spent)| spent)
            .sum();
        self.capacity - (ledger.spent - expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn charges_expire_after_the_window_oldest_first() {
        let budget = Budget::rolling(10, Duration::from_secs(60), "credits");
        assert_eq!(budget.charge(4), Ok(6));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(budget.charge(4), Ok(2));
        // 5 more need the first charge (4) to expire: 50 s from now.
        assert_eq!(
            budget.charge(5),
            Err(Overspent {
                cost: 5,
                remaining: 2,
                wait: Duration::from_secs(50)
            })
        );
        tokio::time::advance(Duration::from_secs(50)).await;
        assert_eq!(budget.remaining(), 6);
        assert_eq!(budget.charge(5), Ok(1));
        // Dearer than the allowance: waits for an empty ledger, then is charged it all.
        assert!(budget.charge(50).is_err());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(budget.charge(50), Ok(0));
    }

    #[test]
    fn calls_are_priced_by_method_and_endpoint() {
        let budget = Budget::rolling(30_000, Duration::from_secs(86_400), "tokens").costing(
            |method, endpoint| match (method.as_str(), endpoint) {
                (_, e) if e.ends_with("/search") => 20,
                ("POST" | "PATCH", _) => 5,
                _ => 1,
            },
        );
        assert_eq!(budget.cost(&Method::GET, "/api/v2/persons/search"), 20);
        assert_eq!(budget.cost(&Method::PATCH, "/api/v2/persons/{id}"), 5);
        assert_eq!(budget.cost(&Method::GET, "/api/v2/persons/{id}"), 1);
    }
}
