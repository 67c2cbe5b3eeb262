//! One reading of `Retry-After` for every vendor (CRMs, Stripe, Chargebee): delay-seconds or an HTTP date (RFC 9110
//! §10.2.3), clamped to `[0, MAX_RETRY_AFTER]` so that no header — `inf`, `1e20`, a negative
//! number, a date in the past or years ahead — can panic a conversion or park every write
//! of an account for longer than an operator would accept.

use chrono::{DateTime, NaiveDateTime, Utc};
use std::time::{Duration, SystemTime};

/// The longest wait a CRM's hint can impose (on one record's retry, and on every replica's
/// requests to the account).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The delay a `Retry-After` value asks for, read at `now`; `None` when it is neither a
/// number of seconds nor an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_nan() {
            return None;
        }
        // `inf`, `1e20` and the like saturate; negatives mean "now".
        return Some(if seconds >= MAX_RETRY_AFTER.as_secs_f64() {
            MAX_RETRY_AFTER
        } else if seconds <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(seconds)
        });
    }
    let at = http_date(value)?;
    let now: DateTime<Utc> = now.into();
    let ahead = (at - now).to_std().unwrap_or(Duration::ZERO);
    Some(ahead.min(MAX_RETRY_AFTER))
}

/// The header of `headers`, if it has a readable one.
pub fn retry_after_header(headers: &http::HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, now)
}

/// The three HTTP date forms: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) and the
/// obsolete RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
/// (`Sun Nov  6 08:49:37 1994`) forms a recipient must still accept.
fn http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc2822(value) {
        return Some(at.with_timezone(&Utc));
    }
    let collapsed = value.split_whitespace().collect::<Vec<_>>().join(" ");
    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(&collapsed, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(rfc3339)
            .expect("a test date")
            .with_timezone(&Utc)
            .into()
    }

    #[test]
    fn seconds_are_read_and_clamped() {
        let now = SystemTime::now();
        let read = |v: &str| parse_retry_after(v, now);
        assert_eq!(read("7"), Some(Duration::from_secs(7)));
        assert_eq!(read(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(read("0"), Some(Duration::ZERO));
        assert_eq!(read("-3"), Some(Duration::ZERO));
        assert_eq!(read("86400"), Some(MAX_RETRY_AFTER));
        // Each of these once reached `Duration::from_secs_f64` and panicked.
        assert_eq!(read("1e20"), Some(MAX_RETRY_AFTER));
        assert_eq!(read("inf"), Some(MAX_RETRY_AFTER));
        assert_eq!(read("-inf"), Some(Duration::ZERO));
        assert_eq!(read("NaN"), None);
        assert_eq!(read("soon"), None);
        assert_eq!(read(""), None);
    }

    #[test]
    fn http_dates_are_read_relative_to_now_and_clamped() {
        let now = at("1994-11-06T08:49:00Z");
        for form in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(form, now),
                Some(Duration::from_secs(37)),
                "{form}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn the_header_is_found_by_name() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(retry_after_header(&headers, SystemTime::now()), None);
        headers.insert(http::header::RETRY_AFTER, "12".parse().expect("a value"));
        assert_eq!(
            retry_after_header(&headers, SystemTime::now()),
            Some(Duration::from_secs(12))
        );
    }
}
