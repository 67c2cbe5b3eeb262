//! The transforms a mapping expression may pipe a value through.

use crate::expr::MappingError;
use chrono::DateTime;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// "Ada King Lovelace" → "Ada" (the seed's name split: first word is the first name).
    FirstWord,
    /// "Ada King Lovelace" → "King Lovelace".
    AfterFirstWord,
    /// Unix seconds → `YYYY-MM-DD` (the date format CRM date fields take).
    Date,
    /// Unix seconds → RFC 3339 UTC.
    DateTime,
    /// Minor units → "123.45" (Stripe and Chargebee amounts are in cents).
    CentsToAmount,
    Lowercase,
    Uppercase,
    /// Any scalar as its text.
    String,
    /// Value lookup: `map(true=deleted, false=active)`; values without an entry yield nothing.
    Map(Vec<(String, String)>),
}

/// Every transform, as an expression names it (the README's mapping reference lists each).
pub const NAMES: &[&str] = &[
    "first_word",
    "after_first_word",
    "date",
    "datetime",
    "cents_to_amount",
    "lowercase",
    "uppercase",
    "string",
    "map(...)",
];

impl Transform {
    pub fn parse(text: &str) -> Result<Transform, MappingError> {
        Ok(match text {
            "first_word" => Transform::FirstWord,
            "after_first_word" => Transform::AfterFirstWord,
            "date" => Transform::Date,
            "datetime" => Transform::DateTime,
            "cents_to_amount" => Transform::CentsToAmount,
            "lowercase" => Transform::Lowercase,
            "uppercase" => Transform::Uppercase,
            "string" => Transform::String,
            _ => match text.strip_prefix("map(").and_then(|t| t.strip_suffix(')')) {
                Some(pairs) => Transform::Map(parse_pairs(pairs)?),
                None => {
                    return Err(MappingError {
                        field: None,
                        message: format!(
                            "unknown transform {text:?} (known: {})",
                            NAMES.join(", ")
                        ),
                    })
                }
            },
        })
    }

    pub fn apply(&self, value: &Value) -> Option<Value> {
        let text = || scalar_text(value);
        Some(match self {
            Transform::FirstWord => Value::String(
                text()?
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
            Transform::AfterFirstWord => {
                let full = text()?;
                let mut words = full.split_whitespace();
                words.next();
                Value::String(words.collect::<Vec<_>>().join(" "))
            }
            Transform::Date => Value::String(
                DateTime::from_timestamp(value.as_i64()?, 0)?
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            Transform::DateTime => Value::String(
                DateTime::from_timestamp(value.as_i64()?, 0)?
                    .format("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            ),
            Transform::CentsToAmount => {
                let cents = value.as_i64()?;
                let sign = if cents < 0 { "-" } else { "" };
                let cents = cents.unsigned_abs();
                Value::String(format!("{sign}{}.{:02}", cents / 100, cents % 100))
            }
            Transform::Lowercase => Value::String(text()?.to_lowercase()),
            Transform::Uppercase => Value::String(text()?.to_uppercase()),
            Transform::String => Value::String(text()?),
            Transform::Map(pairs) => {
                let key = text()?;
                let (_, to) = pairs.iter().find(|(from, _)| *from == key)?;
                Value::String(to.clone())
            }
        })
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_pairs(text: &str) -> Result<Vec<(String, String)>, MappingError> {
    text.split(',')
        .map(|pair| {
            let (from, to) = pair.split_once('=').ok_or_else(|| MappingError {
                field: None,
                message: format!("map entry {:?} must be from=to", pair.trim()),
            })?;
            Ok((from.trim().to_string(), to.trim().to_string()))
        })
        .collect()
}
