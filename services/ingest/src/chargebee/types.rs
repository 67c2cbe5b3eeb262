//! Chargebee's JSON as the poller reads it: events, list pages and error bodies.
//!
//! Pages are read entry by entry: one malformed event is reported and skipped rather than
//! failing the page, which would stall the connection's cursor forever.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An event of `GET /api/v2/events` (fields from the SDK's `Event` type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargebeeEvent {
    pub id: String,
    /// Unix seconds.
    pub occurred_at: i64,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    /// Optional in the SDK's types; an event without one is not carried.
    #[serde(default)]
    pub event_type: Option<String>,
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub webhook_status: Option<String>,
    #[serde(default)]
    pub content: Map<String, Value>,
}

/// An entry of a page that could not be read as an event.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedEntry {
    pub id: Option<String>,
    pub reason: String,
    /// The entry as Chargebee sent it, for the sync error that carries it.
    pub raw: Value,
}

/// One page of events.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EventsPage {
    pub events: Vec<ChargebeeEvent>,
    pub malformed: Vec<MalformedEntry>,
    /// Absent on the last page.
    pub next_offset: Option<String>,
}

/// `{"list": [...], "next_offset": "..."}` split into entries and the next offset.
fn split_list(body: Value) -> Result<(Vec<Value>, Option<String>), String> {
    let Value::Object(mut body) = body else {
        return Err("the body is not a JSON object".into());
    };
    let list = match body.remove("list") {
        Some(Value::Array(list)) => list,
        _ => return Err("the body has no `list` array".into()),
    };
    let next_offset = match body.remove("next_offset") {
        None | Some(Value::Null) => None,
        Some(Value::String(offset)) if offset.is_empty() => None,
        Some(Value::String(offset)) => Some(offset),
        Some(other) => return Err(format!("next_offset is not a string: {other}")),
    };
    Ok((list, next_offset))
}

impl EventsPage {
    pub fn from_json(body: Value) -> Result<Self, String> {
        let (list, next_offset) = split_list(body)?;
        let mut page = EventsPage {
            next_offset,
            ..Default::default()
        };
        for entry in list {
            let id = entry
                .pointer("/event/id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match entry
                .get("event")
                .cloned()
                .map(serde_json::from_value::<ChargebeeEvent>)
            {
                Some(Ok(event)) => page.events.push(event),
                Some(Err(e)) => page.malformed.push(MalformedEntry {
                    id,
                    reason: e.to_string(),
                    raw: entry,
                }),
                None => page.malformed.push(MalformedEntry {
                    id,
                    reason: "the entry has no `event` object".into(),
                    raw: entry,
                }),
            }
        }
        Ok(page)
    }
}

/// The list APIs billsync walks for full and initial syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Customers,
    Subscriptions,
    Invoices,
}

impl Resource {
    pub fn path(self) -> &'static str {
        match self {
            Resource::Customers => "customers",
            Resource::Subscriptions => "subscriptions",
            Resource::Invoices => "invoices",
        }
    }

    /// The key each list entry holds the record under.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Customers => "customer",
            Resource::Subscriptions => "subscription",
            Resource::Invoices => "invoice",
        }
    }
}

/// One page of a list API: each entry is an object such as `{"subscription": {...},
/// "customer": {...}}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourcePage {
    pub entries: Vec<Map<String, Value>>,
    pub next_offset: Option<String>,
}

impl ResourcePage {
    pub fn from_json(body: Value) -> Result<Self, String> {
        let (list, next_offset) = split_list(body)?;
        let entries = list
            .into_iter()
            .map(|entry| match entry {
                Value::Object(map) => Ok(map),
                other => Err(format!("a list entry is not an object: {other}")),
            })
            .collect::<Result<_, _>>()?;
        Ok(ResourcePage {
            entries,
            next_offset,
        })
    }
}

/// Chargebee's error body: `{message, type, api_error_code, error_code, http_status_code}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ApiErrorBody {
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub api_error_code: Option<String>,
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default)]
    pub http_status_code: Option<u16>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_malformed_entry_does_not_sink_the_page() {
        let page = EventsPage::from_json(json!({
            "list": [
                {"event": {"id": "ev_1", "occurred_at": 10, "event_type": "customer_created",
                           "content": {"customer": {"id": "c1"}}}},
                {"event": {"id": "ev_2", "occurred_at": "yesterday"}},
                {"nothing": true}
            ],
            "next_offset": "[\"10\",\"1\"]"
        }))
        .unwrap();
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.malformed.len(), 2);
        assert_eq!(page.malformed[0].id.as_deref(), Some("ev_2"));
        assert_eq!(page.next_offset.as_deref(), Some("[\"10\",\"1\"]"));
    }

    #[test]
    fn the_last_page_has_no_offset_and_non_lists_are_refused() {
        let page = EventsPage::from_json(json!({"list": []})).unwrap();
        assert_eq!(page.next_offset, None);
        assert!(EventsPage::from_json(json!({"message": "nope"})).is_err());
        let list = ResourcePage::from_json(json!({"list": [{"customer": {"id": "c"}}]})).unwrap();
        assert_eq!(list.entries[0]["customer"]["id"], "c");
    }
}
