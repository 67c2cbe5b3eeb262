//! Records an operator chose to ignore, as the worker reads them before delivering.
//!
//! Seed 004: "Ignoring an error removes it from the list and prevents the record from
//! syncing further unless it is modified." The errors service writes an [`IgnoredRecord`]
//! into the ignores bucket under the record's key; a worker skips every event of that record
//! until one shows the record changed — a newer version *and* different data — which it
//! delivers, lifting the ignore. A newer event with the same data (a re-sent webhook, a
//! backfill snapshot, a Chargebee poll overlap) is not a modification.

use crate::topology::Topology;
use billsync_events::{BillingEventV1, DestinationKind, RecordVersion, SourceKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The value stored under a record's key in the ignores bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IgnoredRecord {
    /// The version of the event whose failure the operator ignored.
    pub version: RecordVersion,
    /// [`data_fingerprint`] of that event's `data`.
    pub fingerprint: String,
}

impl IgnoredRecord {
    /// The ignore of `event`'s record as `event` shows it.
    pub fn of(event: &BillingEventV1) -> Self {
        Self {
            version: event.version.clone(),
            fingerprint: data_fingerprint(&event.data),
        }
    }

    /// True when `event` shows the record modified since it was ignored: a version the
    /// ignored one does not supersede, carrying different data.
    pub fn is_modified_by(&self, event: &BillingEventV1) -> bool {
        !event.version.is_superseded_by(&self.version)
            && data_fingerprint(&event.data) != self.fingerprint
    }
}

/// The key of a record in the ignores bucket (the same key the versions bucket uses):
/// `{destination}.{destination connection}.{source}/{source connection}/{object}/{id}`.
/// `record_key` is the event's `record_key()`, `{object}/{object id}`.
pub fn ignore_key(
    destination: DestinationKind,
    destination_connection: &str,
    source: SourceKind,
    source_connection: &str,
    record_key: &str,
) -> String {
    Topology::record_kv_key(
        destination,
        destination_connection,
        &format!("{source}/{source_connection}/{record_key}"),
    )
}

/// `sha256:<hex>` of `data` in a canonical form (object keys sorted at every depth), so the
/// vendor's key order or serializer settings never make unchanged data look changed.
pub fn data_fingerprint(data: &Value) -> String {
    let mut hasher = Sha256::new();
    feed(&mut hasher, data);
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

fn feed(hasher: &mut Sha256, value: &Value) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            hasher.update(b"{");
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    hasher.update(b",");
                }
                feed_scalar(hasher, &Value::String(key.clone()));
                hasher.update(b":");
                feed(hasher, &map[key]);
            }
            hasher.update(b"}");
        }
        Value::Array(items) => {
            hasher.update(b"[");
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    hasher.update(b",");
                }
                feed(hasher, item);
            }
            hasher.update(b"]");
        }
        scalar => feed_scalar(hasher, scalar),
    }
}

fn feed_scalar(hasher: &mut Sha256, value: &Value) {
    // Scalars serialize the same way whatever the map type: JSON text is canonical enough.
    hasher.update(value.to_string().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(position: i64, id: &str, data: Value) -> BillingEventV1 {
        BillingEventV1 {
            id: id.into(),
            source: SourceKind::Stripe,
            connection: "stripe-main".into(),
            event_type: "customer.updated".into(),
            object: billsync_events::ObjectKind::Customer,
            object_id: "cus_1".into(),
            customer_id: Some("cus_1".into()),
            occurred_at: serde_json::from_value(json!("2024-05-01T00:00:00Z")).expect("time"),
            version: RecordVersion {
                position,
                event_id: id.into(),
                sequence: None,
            },
            run_id: None,
            data,
            related: Value::Null,
        }
    }

    #[test]
    fn fingerprints_ignore_key_order_and_see_every_value() {
        let a = data_fingerprint(
            &json!({"id": "cus_1", "email": "a@x.io", "meta": {"b": 1, "a": [1, 2]}}),
        );
        let b = data_fingerprint(
            &json!({"meta": {"a": [1, 2], "b": 1}, "email": "a@x.io", "id": "cus_1"}),
        );
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:"));
        assert_ne!(
            a,
            data_fingerprint(
                &json!({"id": "cus_1", "email": "b@x.io", "meta": {"b": 1, "a": [1, 2]}})
            )
        );
        assert_ne!(
            a,
            data_fingerprint(
                &json!({"id": "cus_1", "email": "a@x.io", "meta": {"b": 1, "a": [2, 1]}})
            )
        );
        assert_ne!(data_fingerprint(&json!("1")), data_fingerprint(&json!(1)));
    }

    #[test]
    fn only_a_newer_event_with_other_data_lifts_an_ignore() {
        let ignored = IgnoredRecord::of(&event(100, "evt_a", json!({"name": "Ada"})));
        // The ignored event itself, or an older one, never lifts it.
        assert!(!ignored.is_modified_by(&event(100, "evt_a", json!({"name": "Ada"}))));
        assert!(!ignored.is_modified_by(&event(99, "evt_z", json!({"name": "Older"}))));
        // A newer event with the same data is the unchanged record.
        assert!(!ignored.is_modified_by(&event(101, "evt_b", json!({"name": "Ada"}))));
        // A newer event with other data is a modification.
        assert!(ignored.is_modified_by(&event(101, "evt_c", json!({"name": "Ada K."}))));
        assert!(ignored.is_modified_by(&event(100, "evt_d", json!({"name": "Ada K."}))));
    }

    #[test]
    fn keys_match_the_versions_bucket() {
        assert_eq!(
            ignore_key(
                DestinationKind::Activecampaign,
                "ac-main",
                SourceKind::Stripe,
                "stripe-main",
                "customer/cus_1"
            ),
            "activecampaign.ac-main.stripe/stripe-main/customer/cus_1"
        );
    }
}
