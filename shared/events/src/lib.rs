//! The versioned messages every billsync service exchanges over JetStream.
//!
//! A source (Stripe, Chargebee) turns each vendor event into a [`BillingEvent`]; a destination
//! worker reports what became of it as an [`Outcome`]. Both are tagged enums so that a later
//! schema can be added beside `V1` without breaking consumers that are still running.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// The billing systems billsync reads from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Stripe,
    Chargebee,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Stripe => "stripe",
            SourceKind::Chargebee => "chargebee",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The CRMs billsync writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    Activecampaign,
    Zoho,
    Pipedrive,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Activecampaign => "activecampaign",
            DestinationKind::Zoho => "zoho",
            DestinationKind::Pipedrive => "pipedrive",
        }
    }
}

impl fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of billing object an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Customer,
    Subscription,
    Invoice,
    Charge,
    CheckoutSession,
    Payment,
    Other,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Customer => "customer",
            ObjectKind::Subscription => "subscription",
            ObjectKind::Invoice => "invoice",
            ObjectKind::Charge => "charge",
            ObjectKind::CheckoutSession => "checkout_session",
            ObjectKind::Payment => "payment",
            ObjectKind::Other => "other",
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a record stands in its source's history.
///
/// `position` is Chargebee's `resource_version` or Stripe's `event.created` (seconds). Two
/// versions with the same position are ordered by their place in the events stream
/// (`sequence`, set by the worker from the message it read): Stripe stamps events with
/// one-second resolution, so within a second the stream order is the best evidence there is
/// — and it survives a redelivery that reaches the worker after a later message did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordVersion {
    pub position: i64,
    pub event_id: String,
    /// The event's sequence in the events stream, once a worker has read it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

impl RecordVersion {
    /// True when an event at `self` must not be applied because `applied` already is newer
    /// or is this very event.
    pub fn is_superseded_by(&self, applied: &RecordVersion) -> bool {
        self.is_older_than(applied)
            || applied.event_id == self.event_id && applied.position == self.position
    }

    /// True when `applied` is strictly newer: a later position, or the same position and a
    /// later place in the events stream. A replay re-applies a record's newest event, never
    /// an older one: that would put old data back in the CRM until the newer event came
    /// round again (and start automations on the way).
    pub fn is_older_than(&self, applied: &RecordVersion) -> bool {
        match applied.position.cmp(&self.position) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => match (applied.sequence, self.sequence) {
                (Some(applied), Some(this)) => applied > this,
                _ => false,
            },
        }
    }
}

/// A change in a billing system, as published on the events stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "schema")]
pub enum BillingEvent {
    #[serde(rename = "billing_event.v1")]
    V1(BillingEventV1),
}

impl BillingEvent {
    pub fn v1(&self) -> &BillingEventV1 {
        match self {
            BillingEvent::V1(event) => event,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BillingEventV1 {
    /// The source's event id (`evt_…`, `ev_…`), or `snap_<run>_<object>` for backfills.
    pub id: String,
    pub source: SourceKind,
    /// The name of the source connection in the configuration.
    pub connection: String,
    /// The vendor's event type, unchanged (`customer.created`, `subscription_changed`).
    pub event_type: String,
    pub object: ObjectKind,
    pub object_id: String,
    /// The billing customer the object belongs to; events of one customer are applied in order.
    pub customer_id: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub version: RecordVersion,
    /// Set when the event was produced by a backfill or initial sync rather than live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The vendor's object as it was at the event (`data.object` for Stripe, the
    /// `content` resource for Chargebee).
    pub data: Value,
    /// Other objects the vendor sent with the event (Chargebee's `content` carries the
    /// customer beside a subscription, for instance).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub related: Value,
}

impl BillingEventV1 {
    /// The key that orders this event against others: all events of one billing customer
    /// land on one CRM contact, so they share one key.
    pub fn ordering_key(&self) -> String {
        match &self.customer_id {
            Some(customer) => format!("{}/{}/customer/{customer}", self.source, self.connection),
            None => format!(
                "{}/{}/{}/{}",
                self.source, self.connection, self.object, self.object_id
            ),
        }
    }

    /// The record this event is about, for versions and failure rows: `customer/cus_123`.
    pub fn record_key(&self) -> String {
        format!("{}/{}", self.object, self.object_id)
    }
}

/// Which kind of run produced a snapshot event, read from its `run_id`: the initial sync of
/// the latest customers, or "sync all records" (seed 004). Destinations that hold some writes
/// back until the first full sync (Pipedrive's deals) tell them apart by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Initial,
    Full,
    /// A backfill or another run.
    Other,
}

impl RunKind {
    /// The start of the run ids of this kind.
    pub fn prefix(self) -> &'static str {
        match self {
            RunKind::Initial => "run_initial_",
            RunKind::Full => "run_all_",
            RunKind::Other => "run_",
        }
    }

    pub fn of(run_id: &str) -> RunKind {
        [RunKind::Initial, RunKind::Full]
            .into_iter()
            .find(|kind| run_id.starts_with(kind.prefix()))
            .unwrap_or(RunKind::Other)
    }

    /// A fresh run id of this kind.
    pub fn new_run_id(self, unique: &str) -> String {
        format!("{}{unique}", self.prefix())
    }
}

/// What a destination did with one billing event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "schema")]
pub enum Outcome {
    #[serde(rename = "outcome.v1")]
    V1(OutcomeV1),
}

impl Outcome {
    pub fn v1(&self) -> &OutcomeV1 {
        match self {
            Outcome::V1(outcome) => outcome,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeV1 {
    pub destination: DestinationKind,
    pub destination_connection: String,
    pub source: SourceKind,
    pub source_connection: String,
    pub record_key: String,
    pub event_id: String,
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub at: DateTime<Utc>,
    pub result: OutcomeResult,
}

// Outcomes are built once per event and serialized straight away; boxing the failure would
// only add an allocation to the common path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OutcomeResult {
    /// The CRM holds the change; `crm_id` is the id of the record written.
    Synced { crm_id: Option<String> },
    /// The CRM refused the change, or retries ran out.
    Failed(Failure),
    /// Nothing was written, on purpose (stale event, ignored record, filtered resource).
    Skipped { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    pub class: FailureClass,
    /// What went wrong and what to fix, in words an operator can act on.
    pub message: String,
    /// The HTTP status the CRM answered, if it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The CRM's error body, with secrets removed.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub vendor_detail: Value,
    pub attempts: u32,
    /// The event that failed, kept so it can be replayed to this destination.
    pub event: BillingEvent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The CRM refused the record (4xx other than 429); retrying unchanged will not help.
    Rejected,
    /// The CRM kept failing transiently (429, 5xx, timeouts) until the retry budget ran out.
    RetriesExhausted,
    /// billsync's configuration does not fit the CRM (a mapped field that does not exist).
    Configuration,
    /// The event could not be read or mapped.
    InvalidEvent,
}

impl FailureClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Rejected => "rejected",
            FailureClass::RetriesExhausted => "retries_exhausted",
            FailureClass::Configuration => "configuration",
            FailureClass::InvalidEvent => "invalid_event",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(position: i64, id: &str) -> RecordVersion {
        RecordVersion {
            position,
            event_id: id.into(),
            sequence: None,
        }
    }

    #[test]
    fn older_and_identical_versions_are_superseded() {
        let applied = version(100, "evt_b");
        assert!(version(99, "evt_a").is_superseded_by(&applied));
        assert!(version(100, "evt_b").is_superseded_by(&applied));
        assert!(!version(100, "evt_c").is_superseded_by(&applied));
        assert!(!version(101, "evt_a").is_superseded_by(&applied));
    }

    #[test]
    fn within_one_position_the_stream_order_decides() {
        let at = |sequence, id: &str| RecordVersion {
            position: 100,
            event_id: id.into(),
            sequence: Some(sequence),
        };
        let applied = at(7, "evt_later");
        // Redelivered after a crash, behind a message that came after it in the stream.
        assert!(at(5, "evt_earlier").is_superseded_by(&applied));
        assert!(at(5, "evt_earlier").is_older_than(&applied));
        assert!(at(7, "evt_later").is_superseded_by(&applied));
        assert!(!at(7, "evt_later").is_older_than(&applied));
        assert!(!at(9, "evt_next").is_superseded_by(&applied));
        // Without sequences (versions stored before they existed) arrival decides.
        assert!(!version(100, "evt_other").is_superseded_by(&applied));
    }

    #[test]
    fn a_replay_may_re_apply_the_newest_version_but_not_an_older_one() {
        let applied = version(100, "evt_b");
        assert!(version(99, "evt_a").is_older_than(&applied));
        assert!(!version(100, "evt_b").is_older_than(&applied));
        assert!(!version(100, "evt_c").is_older_than(&applied));
        assert!(!version(101, "evt_a").is_older_than(&applied));
    }

    #[test]
    fn events_round_trip_with_their_schema_tag() {
        let event = BillingEvent::V1(BillingEventV1 {
            id: "evt_1".into(),
            source: SourceKind::Stripe,
            connection: "acme".into(),
            event_type: "customer.created".into(),
            object: ObjectKind::Customer,
            object_id: "cus_1".into(),
            customer_id: Some("cus_1".into()),
            occurred_at: DateTime::from_timestamp(1_700_000_000, 0).expect("valid time"),
            version: version(1_700_000_000, "evt_1"),
            run_id: None,
            data: serde_json::json!({"id": "cus_1"}),
            related: Value::Null,
        });
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json["schema"], "billing_event.v1");
        let back: BillingEvent = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
        assert_eq!(back.v1().ordering_key(), "stripe/acme/customer/cus_1");
    }
}
