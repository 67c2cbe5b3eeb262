//! Stripe's per-account request rate: 25 read requests per second in test mode, 100 in live
//! mode (`specs/stripe/SOURCE.txt`), held as a sliding one-second window of admissions.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(1);

/// Test-mode keys (`sk_test_…`, `rk_test_…`) get 25 requests per second.
pub const TEST_MODE_REQUESTS_PER_SECOND: u32 = 25;
/// Live keys get 100.
pub const LIVE_MODE_REQUESTS_PER_SECOND: u32 = 100;

/// The limit Stripe applies to requests made with `api_key`.
pub fn limit_for_key(api_key: &str) -> u32 {
    if api_key.contains("_test_") {
        TEST_MODE_REQUESTS_PER_SECOND
    } else {
        LIVE_MODE_REQUESTS_PER_SECOND
    }
}

#[derive(Debug, Default)]
pub(crate) struct SecondWindow {
    admitted: VecDeque<Instant>,
}

impl SecondWindow {
    /// Admits a request at `now`, or refuses it with the whole seconds (at least 1) to wait.
    /// Refused requests do not count, as at Stripe.
    pub(crate) fn admit(&mut self, now: Instant, limit: u32) -> Result<(), u64> {
        while let Some(&oldest) = self.admitted.front() {
            if now.duration_since(oldest) >= WINDOW {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        if self.admitted.len() < limit {
            self.admitted.push_back(now);
            Ok(())
        } else {
            Err(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_26th_request_in_a_second_is_refused_in_test_mode() {
        let start = Instant::now();
        let mut window = SecondWindow::default();
        let limit = limit_for_key("sk_test_abc");
        assert_eq!(limit, 25);
        for i in 0..25 {
            assert_eq!(
                window.admit(start + Duration::from_millis(i * 10), limit),
                Ok(())
            );
        }
        assert_eq!(
            window.admit(start + Duration::from_millis(500), limit),
            Err(1)
        );
        assert_eq!(
            window.admit(start + Duration::from_millis(1000), limit),
            Ok(())
        );
        assert_eq!(limit_for_key("sk_live_abc"), 100);
    }
}
