//! Query strings and bodies of the admin API, checked into filters and pages.
//!
//! Unknown fields are refused: a misspelt filter on "ignore all" or "retry all" must fail,
//! not silently widen to every failure.

use crate::error::ApiError;
use crate::scrub::storable;
use crate::store::{FailureFilter, FailureStatus};
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::fmt::Display;
use std::str::FromStr;

/// One page of a keyset-paginated list: at most `limit` items after the position `after`.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<K> {
    pub limit: u32,
    pub after: Option<(DateTime<Utc>, K)>,
}

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 500;

/// The failure filter, as a query string or a JSON body; every value is a string.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureParams {
    pub destination: Option<String>,
    pub connection: Option<String>,
    pub source: Option<String>,
    pub class: Option<String>,
    pub status: Option<String>,
    pub q: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl FailureParams {
    /// Reads a JSON body; an empty body means no filter.
    pub fn from_body(body: &[u8]) -> Result<Self, ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("the body is not a valid filter: {e}")))
    }

    pub fn filter(&self) -> Result<FailureFilter, ApiError> {
        Ok(FailureFilter {
            status: match given(&self.status) {
                Some(status) => status.parse().map_err(ApiError::BadRequest)?,
                None => FailureStatus::Open,
            },
            destination: kind(
                "destination",
                &self.destination,
                "activecampaign, zoho or pipedrive",
            )?,
            source: kind("source", &self.source, "stripe or chargebee")?,
            connection: given(&self.connection).map(|c| storable(c).into_owned()),
            class: kind(
                "class",
                &self.class,
                "rejected, retries_exhausted, configuration or invalid_event",
            )?,
            q: given(&self.q).map(|q| storable(q).into_owned()),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }

    /// The filter of a bulk action, which has no pages; `required` is the only status the
    /// action applies to.
    pub fn action_filter(
        &self,
        required: Option<FailureStatus>,
    ) -> Result<FailureFilter, ApiError> {
        if given(&self.limit).is_some() || given(&self.cursor).is_some() {
            return Err(ApiError::BadRequest(
                "limit and cursor apply to listing only; this acts on every matching failure"
                    .into(),
            ));
        }
        let filter = self.filter()?;
        match required {
            Some(status) if filter.status != status => Err(ApiError::BadRequest(format!(
                "only {status} failures can be selected here"
            ))),
            _ => Ok(filter),
        }
    }

    pub fn page(&self) -> Result<Page<i64>, ApiError> {
        let after = given(&self.cursor).map(decode_cursor).transpose()?;
        Ok(Page {
            limit: limit(&self.limit)?,
            after,
        })
    }
}

/// Paging of run lists.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunListParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl RunListParams {
    pub fn page(&self) -> Result<Page<String>, ApiError> {
        let after = given(&self.cursor)
            .map(decode_cursor::<String>)
            .transpose()?
            .map(|(at, run_id)| (at, storable(&run_id).into_owned()));
        Ok(Page {
            limit: limit(&self.limit)?,
            after,
        })
    }
}

/// The records of one run: an optional status and paging by record id.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    pub status: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl RunParams {
    pub fn status(&self) -> Result<Option<&'static str>, ApiError> {
        match given(&self.status) {
            None => Ok(None),
            Some("synced") => Ok(Some("synced")),
            Some("failed") => Ok(Some("failed")),
            Some("skipped") => Ok(Some("skipped")),
            Some(other) => Err(ApiError::BadRequest(format!(
                "unknown status {other:?}; expected synced, failed or skipped"
            ))),
        }
    }

    pub fn page(&self) -> Result<(u32, i64), ApiError> {
        let after = match given(&self.cursor) {
            None => 0,
            Some(cursor) => cursor.parse().map_err(|_| {
                ApiError::BadRequest("cursor is not a cursor this API gave out".into())
            })?,
        };
        Ok((limit(&self.limit)?, after))
    }
}

/// The value of an optional parameter, treating `field=` like an absent field.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn kind<T: DeserializeOwned>(
    field: &str,
    value: &Option<String>,
    expected: &str,
) -> Result<Option<T>, ApiError> {
    given(value)
        .map(|v| {
            serde_json::from_value(serde_json::Value::String(v.to_string())).map_err(|_| {
                ApiError::BadRequest(format!("unknown {field} {v:?}; expected {expected}"))
            })
        })
        .transpose()
}

fn time(field: &str, value: &Option<String>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = given(value) else {
        return Ok(None);
    };
    // An unencoded `+` in a query string arrives as a space.
    DateTime::parse_from_rfc3339(text)
        .or_else(|e| match text.contains(' ') {
            true => DateTime::parse_from_rfc3339(&text.replace(' ', "+")),
            false => Err(e),
        })
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| {
            ApiError::BadRequest(format!(
                "{field} {text:?} is not an RFC 3339 time such as 2024-05-01T00:00:00Z"
            ))
        })
}

fn limit(value: &Option<String>) -> Result<u32, ApiError> {
    match given(value) {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::BadRequest(format!(
                "limit must be a number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

/// `{microseconds}_{key}`: the keyset position after the last item of a page.
pub fn encode_cursor(at: DateTime<Utc>, key: impl Display) -> String {
    format!("{}_{key}", at.timestamp_micros())
}

fn decode_cursor<K: FromStr>(text: &str) -> Result<(DateTime<Utc>, K), ApiError> {
    let invalid = || ApiError::BadRequest("cursor is not a cursor this API gave out".into());
    let (micros, key) = text.split_once('_').ok_or_else(invalid)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        // Every position the API gives out is a time PostgreSQL stored.
        .filter(|at| *at >= earliest_postgres_time())
        .ok_or_else(invalid)?;
    let key = key.parse::<K>().map_err(|_| invalid())?;
    Ok((at, key))
}

/// The earliest `timestamptz` PostgreSQL holds: 4713 BC (astronomical year -4712).
fn earliest_postgres_time() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(-4712, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .expect("a valid date")
        .and_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_events::{DestinationKind, FailureClass};

    fn params(pairs: &[(&str, &str)]) -> FailureParams {
        let body = serde_json::Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
                .collect(),
        );
        FailureParams::from_body(body.to_string().as_bytes()).expect("valid params")
    }

    #[test]
    fn filters_default_to_open_failures() {
        let filter = FailureParams::from_body(b"")
            .expect("empty")
            .filter()
            .expect("filter");
        assert_eq!(filter, FailureFilter::default());
        assert_eq!(filter.status, FailureStatus::Open);
    }

    #[test]
    fn filters_check_every_field() {
        let filter = params(&[
            ("destination", "pipedrive"),
            ("connection", "pd-main"),
            ("class", "rejected"),
            ("status", "ignored"),
            ("since", "2024-05-01T00:00:00Z"),
            ("until", "2024-05-02T00:00:00 00:00"),
            ("q", ""),
        ])
        .filter()
        .expect("valid");
        assert_eq!(filter.destination, Some(DestinationKind::Pipedrive));
        assert_eq!(filter.class, Some(FailureClass::Rejected));
        assert_eq!(filter.status, FailureStatus::Ignored);
        assert_eq!(filter.q, None);
        assert!(filter.until.is_some());

        for (field, value) in [
            ("destination", "hubspot"),
            ("class", "oops"),
            ("status", "closed"),
            ("since", "yesterday"),
            ("limit", "0"),
            ("limit", "501"),
            ("cursor", "nonsense"),
        ] {
            let p = params(&[(field, value)]);
            assert!(
                p.filter().is_err() || p.page().is_err(),
                "{field}={value} was accepted"
            );
        }
    }

    #[test]
    fn misspelt_fields_are_refused() {
        assert!(FailureParams::from_body(br#"{"conection": "pd"}"#).is_err());
    }

    #[test]
    fn bulk_actions_take_no_pages_and_only_their_status() {
        assert!(params(&[("limit", "5")]).action_filter(None).is_err());
        assert!(params(&[("status", "resolved")])
            .action_filter(Some(FailureStatus::Open))
            .is_err());
        assert!(params(&[]).action_filter(Some(FailureStatus::Open)).is_ok());
    }

    #[test]
    fn cursors_round_trip() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("valid");
        let cursor = encode_cursor(at, 42);
        assert_eq!(decode_cursor::<i64>(&cursor).expect("valid"), (at, 42));
        let cursor = encode_cursor(at, "run_with_underscores");
        assert_eq!(
            decode_cursor::<String>(&cursor).expect("valid"),
            (at, "run_with_underscores".to_string())
        );
    }

    /// Found by schemathesis: PostgreSQL refuses NUL in text and times before 4713 BC, which
    /// made these filters a 500. A NUL matches what the store keeps in its place.
    #[test]
    fn filters_hold_only_what_postgres_can_compare() {
        let filter = params(&[("connection", "pd\0main"), ("q", "\0")])
            .filter()
            .expect("valid");
        assert_eq!(filter.connection.as_deref(), Some("pd\u{FFFD}main"));
        assert_eq!(filter.q.as_deref(), Some("\u{FFFD}"));
        let runs = RunListParams {
            cursor: Some("1700000000000000_run\u{0}1".into()),
            limit: None,
        };
        let (_, run_id) = runs.page().expect("valid").after.expect("a position");
        assert_eq!(run_id, "run\u{FFFD}1");
        let earliest = earliest_postgres_time();
        let before = encode_cursor(earliest - chrono::Duration::microseconds(1), 1);
        for cursor in ["-8000000000000000000_1", &before] {
            assert!(params(&[("cursor", cursor)]).page().is_err(), "{cursor}");
        }
        let at_earliest = encode_cursor(earliest, 1);
        assert!(
            params(&[("cursor", &at_earliest)]).page().is_ok(),
            "{at_earliest}"
        );
    }
}
