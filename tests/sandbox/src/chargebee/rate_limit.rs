//! The per-site sliding one-minute window behind Chargebee's "150 requests per minute" on
//! test sites (1000 / 3500 on larger live plans).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(60);

/// Admission times of the requests served in the last minute. Refused requests do not
/// count, so a client that retries too early is refused again but never locked out longer.
#[derive(Debug, Default)]
pub(crate) struct MinuteWindow {
    admitted: VecDeque<Instant>,
}

impl MinuteWindow {
    /// Admits a request at `now`, or returns the whole seconds (at least 1) until a slot
    /// frees, as `Retry-After` carries them.
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
            return Err(WINDOW.as_secs());
        }
        if self.admitted.len() < limit {
            self.admitted.push_back(now);
            return Ok(());
        }
        let frees_at = self.admitted[self.admitted.len() - limit] + WINDOW;
        let wait = frees_at.saturating_duration_since(now);
        Err(wait.as_secs_f64().ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_over_the_limit_waits_for_the_oldest_to_leave_the_minute() {
        let start = Instant::now();
        let mut window = MinuteWindow::default();
        for i in 0..3 {
            assert_eq!(window.admit(start + Duration::from_secs(i * 10), 3), Ok(()));
        }
        assert_eq!(window.admit(start + Duration::from_secs(30), 3), Err(30));
        assert_eq!(
            window.admit(start + Duration::from_millis(59_500), 3),
            Err(1)
        );
        assert_eq!(window.admit(start + Duration::from_secs(60), 3), Ok(()));
        assert_eq!(window.admit(start + Duration::from_secs(61), 3), Err(9));
    }
}
