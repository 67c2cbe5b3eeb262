//! Keeps one process's requests under an account's rate and backs every caller off after a
//! 429 — also the callers already waiting for a slot taken before the 429 came.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Spaces requests evenly at `rate` per second. A 429's `Retry-After` pushes the next slot
/// out for every caller, not only the one that was refused.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    next_slot: Instant,
    /// The latest back-off: when it was ordered, and until when it holds.
    paused: Option<(Instant, Instant)>,
}

impl RateLimiter {
    pub fn per_second(rate: u32) -> Self {
        // A 2% margin keeps bursts at a window edge from tipping over a sliding-window limit.
        let interval = Duration::from_secs(1).mul_f64(1.02 / f64::from(rate.max(1)));
        Self {
            interval,
            state: Mutex::new(State {
                next_slot: Instant::now(),
                paused: None,
            }),
        }
    }

    /// Waits for this caller's slot. A back-off ordered while it waited sends it to the
    /// queue again behind the pause: slots are taken ahead of time, and a slot taken before
    /// a 429 would otherwise still be used during the pause the vendor asked for.
    pub async fn acquire(&self) {
        loop {
            let reserved_at = Instant::now();
            let slot = {
                let mut state = self.state.lock().expect("rate limiter lock poisoned");
                let slot = state.next_slot.max(reserved_at);
                state.next_slot = slot + self.interval;
                slot
            };
            tokio::time::sleep_until(slot).await;
            match self.paused_since(reserved_at) {
                Some(until) => tokio::time::sleep_until(until).await,
                None => return,
            }
        }
    }

    /// Nobody sends before `now + delay`.
    pub fn back_off(&self, delay: Duration) {
        let now = Instant::now();
        let until = now + delay;
        let mut state = self.state.lock().expect("rate limiter lock poisoned");
        if state.next_slot < until {
            state.next_slot = until;
        }
        if state.paused.is_none_or(|(_, held)| held < until) {
            state.paused = Some((now, until));
        }
    }

    /// The end of a back-off ordered after `since` that still holds now.
    pub fn paused_since(&self, since: Instant) -> Option<Instant> {
        let state = self.state.lock().expect("rate limiter lock poisoned");
        state
            .paused
            .filter(|&(ordered, until)| ordered >= since && until > Instant::now())
            .map(|(_, until)| until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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

    #[tokio::test(start_paused = true)]
    async fn callers_already_waiting_for_a_slot_wait_out_the_pause_too() {
        let limiter = Arc::new(RateLimiter::per_second(10));
        let start = Instant::now();
        // Five callers take slots at 0, 102, 204, 306 and 408 ms.
        let waiting: Vec<_> = (0..5)
            .map(|_| {
                let limiter = Arc::clone(&limiter);
                tokio::spawn(async move {
                    limiter.acquire().await;
                    start.elapsed()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        limiter.back_off(Duration::from_secs(2));
        let mut sent = Vec::new();
        for caller in waiting {
            sent.push(caller.await.expect("caller"));
        }
        sent.sort();
        // The first went before the 429; the other four after the pause, still spaced.
        assert!(sent[0] < Duration::from_millis(50), "{sent:?}");
        assert!(sent[1] >= Duration::from_millis(2_050), "{sent:?}");
        for pair in sent[1..].windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(100), "{sent:?}");
        }
    }
}
