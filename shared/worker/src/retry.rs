//! When to try a transient failure again.

use rand::Rng;
use std::time::Duration;

/// Exponential backoff with jitter; a CRM's `Retry-After` is honoured but clamped, so a
/// bogus hint can neither hammer the CRM nor park a record for a day.
#[derive(Debug, Clone)]
pub struct RetrySchedule {
    pub base: Duration,
    pub max: Duration,
    pub max_retry_after: Duration,
    pub max_attempts: u32,
}

impl RetrySchedule {
    pub fn new(max_attempts: u32) -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
            max_retry_after: billsync_bus::MAX_RETRY_AFTER,
            max_attempts,
        }
    }

    /// The wait before attempt `attempt + 1`, after `attempt` failures (1-based).
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(hint) = retry_after {
            return hint.clamp(Duration::from_millis(100), self.max_retry_after);
        }
        let exponent = attempt.saturating_sub(1).min(16);
        let backoff = self.base.saturating_mul(1u32 << exponent).min(self.max);
        // ±25% jitter so that replicas retrying one CRM do not stampede together.
        let jitter = rand::rng().random_range(0.75..1.25);
        backoff.mul_f64(jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let s = RetrySchedule::new(8);
        let first = s.delay(1, None);
        assert!(first >= Duration::from_millis(375) && first <= Duration::from_millis(625));
        let later = s.delay(20, None);
        assert!(later <= Duration::from_secs(75) && later >= Duration::from_secs(45));
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let s = RetrySchedule::new(8);
        assert_eq!(
            s.delay(1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(
            s.delay(1, Some(Duration::from_secs(86_400))),
            Duration::from_secs(300)
        );
        assert_eq!(s.delay(1, Some(Duration::ZERO)), Duration::from_millis(100));
    }
}
