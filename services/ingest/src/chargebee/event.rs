//! Chargebee events as billsync carries them: which object, which customer, which version.

use super::types::ChargebeeEvent;
use billsync_events::{BillingEvent, BillingEventV1, ObjectKind, RecordVersion, SourceKind};
use chrono::DateTime;
use serde_json::{Map, Value};

/// Why an event is not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untranslatable {
    /// About something billsync does not sync (coupons, items, ...): skipped quietly.
    #[error("event type {event_type} carries no customer, subscription, invoice or transaction")]
    NotCarried { event_type: String },
    /// Claims to be about a record but cannot be read: skipped, and an operator is told.
    #[error("{0}")]
    Malformed(String),
}

/// The object an event is about, by its type first and its content second: `content` of a
/// subscription event also holds the customer, and a payment event holds four objects.
fn subject_of(
    event_type: &str,
    content: &Map<String, Value>,
) -> Option<(ObjectKind, &'static str)> {
    let by_type = if event_type.starts_with("customer_") {
        Some((ObjectKind::Customer, "customer"))
    } else if event_type.starts_with("subscription_") || event_type == "mrr_updated" {
        Some((ObjectKind::Subscription, "subscription"))
    } else if event_type.starts_with("invoice_") {
        Some((ObjectKind::Invoice, "invoice"))
    } else if event_type.starts_with("payment_") || event_type.starts_with("refund_") {
        Some((ObjectKind::Payment, "transaction"))
    } else {
        None
    };
    let present = |key: &str| content.get(key).is_some_and(Value::is_object);
    match by_type {
        Some((kind, key)) if present(key) => Some((kind, key)),
        _ => [
            (ObjectKind::Subscription, "subscription"),
            (ObjectKind::Invoice, "invoice"),
            (ObjectKind::Customer, "customer"),
        ]
        .into_iter()
        .find(|(_, key)| present(key)),
    }
}

/// Turns a Chargebee event into billsync's envelope: `data` is the resource the event is
/// about, `related` the rest of `content`, the version its `resource_version` (milliseconds;
/// `occurred_at` × 1000 for resources that have none).
pub fn to_billing_event(
    connection: &str,
    event: &ChargebeeEvent,
) -> Result<BillingEvent, Untranslatable> {
    if event.id.is_empty() {
        return Err(Untranslatable::Malformed(
            "the event has an empty id".into(),
        ));
    }
    let event_type = event.event_type.clone().unwrap_or_default();
    let Some((object, key)) = subject_of(&event_type, &event.content) else {
        return Err(Untranslatable::NotCarried { event_type });
    };
    let data = event.content.get(key).cloned().unwrap_or(Value::Null);
    let object_id = match data.get("id") {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => {
            return Err(Untranslatable::Malformed(format!(
                "event {} ({event_type}) has a {key} without an id",
                event.id
            )))
        }
    };
    let customer_id = if object == ObjectKind::Customer {
        Some(object_id.clone())
    } else {
        data.get("customer_id")
            .and_then(Value::as_str)
            .or_else(|| event.content.get("customer")?.get("id")?.as_str())
            .map(str::to_owned)
    };
    let occurred_at = DateTime::from_timestamp(event.occurred_at, 0).ok_or_else(|| {
        Untranslatable::Malformed(format!(
            "event {} has occurred_at {} out of range",
            event.id, event.occurred_at
        ))
    })?;
    let position = data
        .get("resource_version")
        .and_then(Value::as_i64)
        .unwrap_or(event.occurred_at.saturating_mul(1000));
    let mut related = event.content.clone();
    related.remove(key);
    let related = if related.is_empty() {
        Value::Null
    } else {
        Value::Object(related)
    };
    Ok(BillingEvent::V1(BillingEventV1 {
        id: event.id.clone(),
        source: SourceKind::Chargebee,
        connection: connection.to_string(),
        event_type,
        object,
        object_id,
        customer_id,
        occurred_at,
        version: RecordVersion {
            position,
            event_id: event.id.clone(),
            sequence: None,
        },
        run_id: None,
        data,
        related,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, content: Value) -> ChargebeeEvent {
        serde_json::from_value(json!({
            "id": "ev_1", "occurred_at": 1_700_000_000, "source": "api", "api_version": "v2",
            "webhook_status": "not_configured", "event_type": event_type, "content": content
        }))
        .unwrap()
    }

    #[test]
    fn subscription_events_are_about_the_subscription_and_ordered_by_its_customer() {
        let e = to_billing_event(
            "cb-test",
            &event(
                "subscription_changed",
                json!({"subscription": {"id": "sub_1", "customer_id": "cus_1", "resource_version": 1_700_000_000_123_i64},
                       "customer": {"id": "cus_1", "email": "a@b.c"}}),
            ),
        )
        .unwrap();
        let v1 = e.v1();
        assert_eq!(v1.object, ObjectKind::Subscription);
        assert_eq!(v1.object_id, "sub_1");
        assert_eq!(v1.ordering_key(), "chargebee/cb-test/customer/cus_1");
        assert_eq!(v1.version.position, 1_700_000_000_123);
        assert_eq!(v1.related["customer"]["email"], "a@b.c");
        assert_eq!(v1.data["id"], "sub_1");
    }

    #[test]
    fn customer_deletes_keep_their_subscriptions_as_related() {
        let e = to_billing_event(
            "cb",
            &event(
                "customer_deleted",
                json!({"customer": {"id": "cus_2", "deleted": true}, "subscription": [{"id": "s"}]}),
            ),
        )
        .unwrap();
        let v1 = e.v1();
        assert_eq!(v1.object, ObjectKind::Customer);
        assert_eq!(v1.customer_id.as_deref(), Some("cus_2"));
        assert_eq!(v1.data["deleted"], true);
        assert_eq!(v1.related["subscription"][0]["id"], "s");
        assert_eq!(
            v1.version.position, 1_700_000_000_000,
            "no resource_version: occurred_at in ms"
        );
    }

    #[test]
    fn payments_invoices_and_unknown_types() {
        let payment = to_billing_event(
            "cb",
            &event(
                "payment_succeeded",
                json!({"transaction": {"id": "txn_1", "customer_id": "cus_3"}, "invoice": {"id": "7"}}),
            ),
        )
        .unwrap();
        assert_eq!(payment.v1().object, ObjectKind::Payment);
        assert_eq!(payment.v1().customer_id.as_deref(), Some("cus_3"));
        let invoice = to_billing_event(
            "cb",
            &event(
                "invoice_generated",
                json!({"invoice": {"id": "7", "customer_id": "c"}}),
            ),
        )
        .unwrap();
        assert_eq!(invoice.v1().object, ObjectKind::Invoice);
        assert_eq!(
            to_billing_event(
                "cb",
                &event("coupon_created", json!({"coupon": {"id": "X"}}))
            ),
            Err(Untranslatable::NotCarried {
                event_type: "coupon_created".into()
            })
        );
        assert!(matches!(
            to_billing_event(
                "cb",
                &event("customer_changed", json!({"customer": {"email": "x"}}))
            ),
            Err(Untranslatable::Malformed(_))
        ));
    }
}
