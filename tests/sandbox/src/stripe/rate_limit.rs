//! Stripe's per-account request rate: 25 read requests per second in test mode, 100 in live
//! mode (`specs/stripe/SOURCE.txt`); the gate holds it as a one-second window of admissions.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_keys_get_25_requests_per_second_and_live_keys_100() {
        assert_eq!(limit_for_key("sk_test_abc"), 25);
        assert_eq!(limit_for_key("rk_test_abc"), 25);
        assert_eq!(limit_for_key("sk_live_abc"), 100);
    }
}
