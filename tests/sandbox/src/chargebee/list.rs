//! Chargebee's list parameters and paging: `limit` (1–100, default 10), an opaque
//! `offset` answered as `next_offset` (absent on the last page), `sort_by[asc|desc]`, and
//! filters such as `occurred_at[after]` (strictly after, in Unix seconds).
//!
//! `next_offset` is keyset-based, shaped like Chargebee's own (`["1517505643000","23"]`): the
//! sort value and sequence number of the last record returned. Records appended or changed
//! while a client pages therefore never shift a page boundary.

use std::collections::HashMap;

use serde::Serialize;

use super::error::ApiError;

pub(crate) const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 10;

/// A list request's paging and order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Paging {
    pub limit: usize,
    pub after: Option<(i64, u64)>,
    pub descending: bool,
    pub sort_field: String,
}

impl Paging {
    /// Reads `limit`, `offset` and `sort_by[asc|desc]`; `sortable` lists the attributes the
    /// resource sorts by, the first being the default (descending, as Chargebee lists).
    pub(crate) fn parse(
        query: &HashMap<String, String>,
        sortable: &[&str],
    ) -> Result<Self, ApiError> {
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.trim().parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                Ok(_) => {
                    return Err(ApiError::invalid_param(
                        "limit",
                        &format!(
                            "The value {raw} is out of range; it must be between 1 and {MAX_LIMIT}"
                        ),
                    ))
                }
                Err(_) => return Err(ApiError::invalid_param("limit", "must be a number")),
            },
        };
        let after = match query.get("offset") {
            None => None,
            Some(raw) if raw.is_empty() => None,
            Some(raw) => Some(parse_offset(raw).ok_or_else(|| {
                ApiError::invalid_param(
                    "offset",
                    "invalid value; pass the next_offset of the previous page",
                )
            })?),
        };
        let (descending, sort_field) = match (query.get("sort_by[asc]"), query.get("sort_by[desc]"))
        {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid_param(
                    "sort_by",
                    "give either sort_by[asc] or sort_by[desc]",
                ))
            }
            (Some(field), None) => (false, field.clone()),
            (None, Some(field)) => (true, field.clone()),
            (None, None) => (true, sortable[0].to_string()),
        };
        if !sortable.contains(&sort_field.as_str()) {
            return Err(ApiError::invalid_param(
                "sort_by",
                &format!(
                    "cannot sort by {sort_field:?}; allowed: {}",
                    sortable.join(", ")
                ),
            ));
        }
        Ok(Self {
            limit,
            after,
            descending,
            sort_field,
        })
    }

    /// The page of `rows` (`(sort value, sequence, record)`) after the offset, and the offset
    /// of the next page when there is one.
    pub(crate) fn page<T: Serialize>(
        &self,
        mut rows: Vec<(i64, u64, &T)>,
    ) -> (Vec<serde_json::Value>, Option<String>) {
        rows.sort_by_key(|(value, seq, _)| (*value, *seq));
        if self.descending {
            rows.reverse();
        }
        let start = match self.after {
            None => 0,
            Some(key) => rows
                .iter()
                .position(|(v, s, _)| {
                    if self.descending {
                        (*v, *s) < key
                    } else {
                        (*v, *s) > key
                    }
                })
                .unwrap_or(rows.len()),
        };
        let rest = &rows[start..];
        let taken = &rest[..rest.len().min(self.limit)];
        let next = (rest.len() > self.limit)
            .then(|| taken.last().map(|(v, s, _)| format!("[\"{v}\",\"{s}\"]")))
            .flatten();
        let records = taken
            .iter()
            .map(|(_, _, record)| serde_json::to_value(record).expect("records serialize"))
            .collect();
        (records, next)
    }
}

fn parse_offset(raw: &str) -> Option<(i64, u64)> {
    let parts: Vec<String> = serde_json::from_str(raw).ok()?;
    match parts.as_slice() {
        [value, seq] => Some((value.parse().ok()?, seq.parse().ok()?)),
        _ => None,
    }
}

/// A Unix-seconds filter on one attribute: `attr[after]`, `attr[before]`, `attr[on]`,
/// `attr[between]` (`[from,to]`, inclusive).
#[derive(Debug, Clone, Default)]
pub(crate) struct TimeFilter {
    after: Option<i64>,
    before: Option<i64>,
    on: Option<i64>,
    between: Option<(i64, i64)>,
}

impl TimeFilter {
    pub(crate) fn parse(query: &HashMap<String, String>, attr: &str) -> Result<Self, ApiError> {
        let number = |op: &str| -> Result<Option<i64>, ApiError> {
            let param = format!("{attr}[{op}]");
            query
                .get(&param)
                .map(|raw| {
                    raw.trim().parse::<i64>().map_err(|_| {
                        ApiError::invalid_param(&param, "must be a timestamp in seconds")
                    })
                })
                .transpose()
        };
        let between = match query.get(&format!("{attr}[between]")) {
            None => None,
            Some(raw) => {
                let values = list_values(raw);
                match values.as_slice() {
                    [from, to] => match (from.parse(), to.parse()) {
                        (Ok(from), Ok(to)) => Some((from, to)),
                        _ => None,
                    },
                    _ => None,
                }
                .map(Some)
                .ok_or_else(|| {
                    ApiError::invalid_param(
                        &format!("{attr}[between]"),
                        "must be [from,to] in seconds",
                    )
                })?
            }
        };
        Ok(Self {
            after: number("after")?,
            before: number("before")?,
            on: number("on")?,
            between,
        })
    }

    pub(crate) fn matches(&self, value: i64) -> bool {
        self.after.is_none_or(|a| value > a)
            && self.before.is_none_or(|b| value < b)
            && self.on.is_none_or(|o| value == o)
            && self
                .between
                .is_none_or(|(from, to)| value >= from && value <= to)
    }
}

/// A string filter: `attr[is]`, `attr[is_not]`, `attr[in]` (`[a,b]`), `attr[not_in]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct TextFilter {
    is: Option<String>,
    is_not: Option<String>,
    any_of: Option<Vec<String>>,
    none_of: Option<Vec<String>>,
}

impl TextFilter {
    pub(crate) fn parse(query: &HashMap<String, String>, attr: &str) -> Self {
        let get = |op: &str| query.get(&format!("{attr}[{op}]"));
        Self {
            is: get("is").cloned(),
            is_not: get("is_not").cloned(),
            any_of: get("in").map(|raw| list_values(raw)),
            none_of: get("not_in").map(|raw| list_values(raw)),
        }
    }

    pub(crate) fn matches(&self, value: Option<&str>) -> bool {
        let value = value.unwrap_or_default();
        self.is.as_deref().is_none_or(|is| value == is)
            && self.is_not.as_deref().is_none_or(|not| value != not)
            && self
                .any_of
                .as_ref()
                .is_none_or(|any| any.iter().any(|v| v == value))
            && self
                .none_of
                .as_ref()
                .is_none_or(|none| none.iter().all(|v| v != value))
    }
}

/// `[a,b]` or `["a","b"]` → `a`, `b`: Chargebee's list parameter values.
fn list_values(raw: &str) -> Vec<String> {
    raw.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|v| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// `include_deleted=true`: deleted records are left out of lists unless asked for.
pub(crate) fn include_deleted(query: &HashMap<String, String>) -> bool {
    query.get("include_deleted").is_some_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pages_follow_the_offset_and_end_without_one() {
        let records: Vec<i64> = (0..25).collect();
        let rows = || {
            records
                .iter()
                .enumerate()
                .map(|(i, r)| (r / 10, i as u64, r))
                .collect::<Vec<_>>()
        };
        let mut paging = Paging::parse(
            &query(&[("limit", "10"), ("sort_by[asc]", "occurred_at")]),
            &["occurred_at"],
        )
        .unwrap();
        let mut seen = Vec::new();
        loop {
            let (page, next) = paging.page(rows());
            seen.extend(page.into_iter().map(|v| v.as_i64().unwrap()));
            match next {
                Some(offset) => paging.after = parse_offset(&offset),
                None => break,
            }
        }
        assert_eq!(seen, records);
    }

    #[test]
    fn descending_is_the_default_and_limits_are_checked() {
        let paging = Paging::parse(&query(&[]), &["created_at", "updated_at"]).unwrap();
        assert!(paging.descending);
        assert_eq!(paging.limit, 10);
        assert!(Paging::parse(&query(&[("limit", "101")]), &["created_at"]).is_err());
        assert!(Paging::parse(&query(&[("offset", "garbage")]), &["created_at"]).is_err());
        assert!(Paging::parse(&query(&[("sort_by[asc]", "email")]), &["created_at"]).is_err());
    }

    #[test]
    fn filters_compare_as_chargebee_does() {
        let t = TimeFilter::parse(&query(&[("occurred_at[after]", "10")]), "occurred_at").unwrap();
        assert!(!t.matches(10));
        assert!(t.matches(11));
        let f = TextFilter::parse(&query(&[("event_type[in]", "[\"a\",b]")]), "event_type");
        assert!(f.matches(Some("a")) && f.matches(Some("b")) && !f.matches(Some("c")));
    }
}
