//! Keeps one connection's requests under its Chargebee site's per-minute limit.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// A sliding-window limiter matching Chargebee's "N requests per minute": at most `limit`
/// requests start in any window. The window is a second longer than Chargebee's minute,
/// because the site counts a request when it arrives, later than it was sent, and unevenly.
/// A 429's `Retry-After` holds every caller back, not only the one refused.
#[derive(Debug)]
pub struct RequestLimiter {
    limit: usize,
    window: Duration,
    state: Mutex<LimiterState>,
}

#[derive(Debug)]
struct LimiterState {
    sent: VecDeque<Instant>,
    blocked_until: Option<Instant>,
}

impl RequestLimiter {
    pub fn per_minute(limit: u32) -> Self {
        Self::new(limit, Duration::from_secs(61))
    }

    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: usize::try_from(limit.max(1)).unwrap_or(usize::MAX),
            window,
            state: Mutex::new(LimiterState {
                sent: VecDeque::new(),
                blocked_until: None,
            }),
        }
    }

    /// Waits until a request may start, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait_until = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while state
                    .sent
                    .front()
                    .is_some_and(|&t| now.duration_since(t) >= self.window)
                {
                    state.sent.pop_front();
                }
                match state.blocked_until {
                    Some(until) if until > now => Some(until),
                    _ if state.sent.len() < self.limit => {
                        state.sent.push_back(now);
                        None
                    }
                    _ => state.sent.front().map(|&oldest| oldest + self.window),
                }
            };
            match wait_until {
                None => return,
                Some(until) => tokio::time::sleep_until(until).await,
            }
        }
    }

    /// Nobody starts a request before `now + delay`.
    pub fn back_off(&self, delay: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + delay;
        if state.blocked_until.is_none_or(|current| current < until) {
            state.blocked_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bursts_up_to_the_limit_then_waits_for_the_window() {
        let limiter = RequestLimiter::new(150, Duration::from_secs(61));
        let start = Instant::now();
        for _ in 0..150 {
            limiter.acquire().await;
        }
        assert!(
            start.elapsed() < Duration::from_millis(10),
            "the first 150 go at once"
        );
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(61));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_holds_everyone_back() {
        let limiter = RequestLimiter::per_minute(150);
        limiter.back_off(Duration::from_secs(7));
        let start = Instant::now();
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(7));
    }
}
