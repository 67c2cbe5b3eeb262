//! The per-account sliding one-second window behind AC's "5 requests per second per account".

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(1);

/// Admission times of the requests served in the last second.
///
/// Only admitted requests enter the window: a client that keeps retrying too early is refused
/// again but never locked out for longer than one second after its last admitted request.
#[derive(Debug, Default)]
pub(crate) struct SlidingWindow {
    admitted: VecDeque<Instant>,
}

impl SlidingWindow {
    /// Admits a request at `now`, or returns how many whole seconds (at least 1) the caller
    /// must wait, as `Retry-After` carries them.
    pub(crate) fn admit(&mut self, now: Instant, limit: u32) -> Result<(), u64> {
        while let Some(&oldest) = self.admitted.front() {
            if now.duration_since(oldest) >= WINDOW {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if limit == 0 {
            return Err(1);
        }
        if self.admitted.len() < limit {
            self.admitted.push_back(now);
            return Ok(());
        }
        let frees_at = self.admitted[self.admitted.len() - limit] + WINDOW;
        let wait = frees_at.saturating_duration_since(now);
        Err(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Requests still admissible at `now`, for the `RateLimit-Remaining` header.
    pub(crate) fn remaining(&self, now: Instant, limit: u32) -> u32 {
        let in_window = self
            .admitted
            .iter()
            .filter(|&&at| now.duration_since(at) < WINDOW)
            .count();
        limit.saturating_sub(u32::try_from(in_window).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_the_request_over_the_limit_and_frees_it_a_second_later() {
        let start = Instant::now();
        let mut window = SlidingWindow::default();
        for i in 0..5 {
            assert_eq!(
                window.admit(start + Duration::from_millis(i * 10), 5),
                Ok(())
            );
        }
        assert_eq!(window.admit(start + Duration::from_millis(100), 5), Err(1));
        assert_eq!(window.remaining(start + Duration::from_millis(100), 5), 0);
        assert_eq!(window.admit(start + Duration::from_millis(1000), 5), Ok(()));
        assert_eq!(window.admit(start + Duration::from_millis(1005), 5), Err(1));
        assert_eq!(window.admit(start + Duration::from_millis(1010), 5), Ok(()));
    }

    #[test]
    fn refused_requests_do_not_extend_the_wait() {
        let start = Instant::now();
        let mut window = SlidingWindow::default();
        assert_eq!(window.admit(start, 1), Ok(()));
        for ms in [100, 500, 900] {
            assert!(window.admit(start + Duration::from_millis(ms), 1).is_err());
        }
        assert_eq!(window.admit(start + Duration::from_millis(1000), 1), Ok(()));
    }
}
