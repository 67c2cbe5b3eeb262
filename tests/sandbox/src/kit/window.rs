//! A sliding window of admissions, the shape of every vendor's "N requests per period":
//! ActiveCampaign's 5 per second, Stripe's 25 or 100 per second, Chargebee's 150 per minute.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Admission times of the requests served in the last `period`.
///
/// Only admitted requests enter the window: a client that keeps retrying too early is refused
/// again but never locked out for longer than one period after its last admitted request.
#[derive(Debug)]
pub(crate) struct RateWindow {
    period: Duration,
    admitted: VecDeque<Instant>,
}

impl RateWindow {
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            period,
            admitted: VecDeque::new(),
        }
    }

    /// Admits a request at `now`, or returns how many whole seconds (at least 1) the caller
    /// must wait, as `Retry-After` carries them.
    pub(crate) fn admit(&mut self, now: Instant, limit: u32) -> Result<(), u64> {
        while let Some(&oldest) = self.admitted.front() {
            if now.duration_since(oldest) >= self.period {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if limit == 0 {
            return Err(self.period.as_secs().max(1));
        }
        if self.admitted.len() < limit {
            self.admitted.push_back(now);
            return Ok(());
        }
        let frees_at = self.admitted[self.admitted.len() - limit] + self.period;
        let wait = frees_at.saturating_duration_since(now);
        Err(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Requests still admissible at `now` (ActiveCampaign's `RateLimit-Remaining` header).
    pub(crate) fn remaining(&self, now: Instant, limit: u32) -> u32 {
        let in_window = self
            .admitted
            .iter()
            .filter(|&&at| now.duration_since(at) < self.period)
            .count();
        limit.saturating_sub(u32::try_from(in_window).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn refuses_the_request_over_the_limit_and_frees_it_a_second_later() {
        let start = Instant::now();
        let mut window = RateWindow::new(SECOND);
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
        let mut window = RateWindow::new(SECOND);
        assert_eq!(window.admit(start, 1), Ok(()));
        for ms in [100, 500, 900] {
            assert!(window.admit(start + Duration::from_millis(ms), 1).is_err());
        }
        assert_eq!(window.admit(start + Duration::from_millis(1000), 1), Ok(()));
    }

    #[test]
    fn the_26th_request_in_a_second_is_refused_for_one_second() {
        let start = Instant::now();
        let mut window = RateWindow::new(SECOND);
        for i in 0..25 {
            assert_eq!(
                window.admit(start + Duration::from_millis(i * 10), 25),
                Ok(())
            );
        }
        assert_eq!(window.admit(start + Duration::from_millis(500), 25), Err(1));
        assert_eq!(
            window.admit(start + Duration::from_millis(1000), 25),
            Ok(())
        );
    }

    #[test]
    fn the_request_over_the_limit_waits_for_the_oldest_to_leave_the_minute() {
        let start = Instant::now();
        let mut window = RateWindow::new(MINUTE);
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

    #[test]
    fn a_limit_of_zero_refuses_for_a_whole_period() {
        let start = Instant::now();
        assert_eq!(RateWindow::new(SECOND).admit(start, 0), Err(1));
        assert_eq!(RateWindow::new(MINUTE).admit(start, 0), Err(60));
    }
}
