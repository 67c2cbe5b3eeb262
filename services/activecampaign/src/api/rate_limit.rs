//! Keeps requests under an account's rate and backs every caller off after a 429.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Spaces requests evenly at `rate` per second. A 429's `Retry-After` pushes the next slot
/// out for every caller, not only the one that was refused.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    pub fn per_second(rate: u32) -> Self {
        // A 2% margin keeps bursts at a window edge from tipping over a sliding-window limit.
        let interval = Duration::from_secs(1).mul_f64(1.02 / f64::from(rate.max(1)));
        Self {
            interval,
            next_slot: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next_slot.lock().expect("rate limiter lock poisoned");
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Nobody sends before `now + delay`.
    pub fn back_off(&self, delay: Duration) {
        let mut next = self.next_slot.lock().expect("rate limiter lock poisoned");
        let until = Instant::now() + delay;
        if *next < until {
            *next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_are_spaced_and_429_pushes_everyone_back() {
        let limiter = RateLimiter::per_second(5);
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1000) && elapsed < Duration::from_millis(1100),
            "{elapsed:?}"
        );
        limiter.back_off(Duration::from_secs(3));
        let before = Instant::now();
        limiter.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(3));
    }
}
