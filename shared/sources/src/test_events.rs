//! Billing events for the tests of destinations built on these views (feature
//! `test-support`): one customer's event, as the source would publish it.

use billsync_events::{BillingEventV1, ObjectKind, RecordVersion, SourceKind};
use serde_json::Value;

/// An event of customer `cus_1` on source connection `s` carrying `data` (its object id is
/// `data.id`, or `x_1`); tests change the fields they are about.
pub fn event(
    source: SourceKind,
    event_type: &str,
    object: ObjectKind,
    data: Value,
) -> BillingEventV1 {
    BillingEventV1 {
        id: "evt_1".into(),
        source,
        connection: "s".into(),
        event_type: event_type.into(),
        object,
        object_id: data["id"].as_str().unwrap_or("x_1").into(),
        customer_id: Some("cus_1".into()),
        occurred_at: chrono::Utc::now(),
        version: RecordVersion {
            position: 1,
            event_id: "evt_1".into(),
            sequence: None,
        },
        run_id: None,
        data,
        related: Value::Null,
    }
}
