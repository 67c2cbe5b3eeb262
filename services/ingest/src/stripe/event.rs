//! Stripe events as billsync carries them: which types, which object, which customer.

use billsync_events::{BillingEvent, BillingEventV1, ObjectKind, RecordVersion, SourceKind};
use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;

/// The event types of the ActiveCampaign–Stripe integration (seed 001's table), plus
/// `customer.deleted` so that deletions reach the CRMs.
pub const SUBSCRIBED_EVENT_TYPES: &[&str] = &[
    "charge.succeeded",
    "charge.refunded",
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.trial_will_end",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.created",
    "invoice.updated",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.upcoming",
    "checkout.session.async_payment_succeeded",
];

/// The parts of a Stripe `event` object billsync reads.
#[derive(Debug, Deserialize)]
pub struct StripeEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub data: StripeEventData,
}

#[derive(Debug, Deserialize)]
pub struct StripeEventData {
    pub object: Value,
    #[serde(default)]
    pub previous_attributes: Option<Value>,
}

pub fn is_subscribed(event_type: &str) -> bool {
    SUBSCRIBED_EVENT_TYPES.contains(&event_type)
}

/// What kind of object an event type is about.
pub fn object_kind(event_type: &str) -> ObjectKind {
    if event_type.starts_with("customer.subscription.") {
        ObjectKind::Subscription
    } else if event_type.starts_with("customer.") {
        ObjectKind::Customer
    } else if event_type.starts_with("invoice.") {
        ObjectKind::Invoice
    } else if event_type.starts_with("charge.") {
        ObjectKind::Charge
    } else if event_type.starts_with("checkout.session.") {
        ObjectKind::CheckoutSession
    } else {
        ObjectKind::Other
    }
}

/// Turns a verified Stripe event into billsync's envelope.
pub fn to_billing_event(connection: &str, event: StripeEvent) -> Result<BillingEvent, String> {
    if !event.id.starts_with("evt_") {
        return Err(format!(
            "event id {:?} does not look like a Stripe event id",
            event.id
        ));
    }
    let object = object_kind(&event.event_type);
    let customer_id = customer_of(object, &event.data.object);
    let object_id = match event.data.object.get("id").and_then(Value::as_str) {
        Some(id) => id.to_string(),
        // `invoice.upcoming` describes an invoice that does not exist yet and has no id.
        None => match &customer_id {
            Some(customer) => format!("upcoming_{customer}"),
            None => return Err("data.object has no id and no customer".into()),
        },
    };
    let occurred_at = DateTime::from_timestamp(event.created, 0)
        .ok_or_else(|| format!("created {} is not a valid time", event.created))?;
    let related = match event.data.previous_attributes {
        Some(previous) => serde_json::json!({ "previous_attributes": previous }),
        None => Value::Null,
    };
    Ok(BillingEvent::V1(BillingEventV1 {
        version: RecordVersion {
            position: event.created,
            event_id: event.id.clone(),
        },
        id: event.id,
        source: SourceKind::Stripe,
        connection: connection.to_string(),
        event_type: event.event_type,
        object,
        object_id,
        customer_id,
        occurred_at,
        run_id: None,
        data: event.data.object,
        related,
    }))
}

/// The customer an object belongs to: the object itself for customers, else its
/// `customer` field, which Stripe sends as an id or, when expanded, as an object.
fn customer_of(object: ObjectKind, data: &Value) -> Option<String> {
    if object == ObjectKind::Customer {
        return data.get("id").and_then(Value::as_str).map(str::to_owned);
    }
    match data.get("customer") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Object(expanded)) => expanded
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(event_type: &str, object: Value) -> StripeEvent {
        serde_json::from_value(json!({
            "id": "evt_1", "object": "event", "type": event_type, "created": 1_700_000_000,
            "data": { "object": object }
        }))
        .expect("event")
    }

    #[test]
    fn the_seed_table_and_deletes_are_subscribed() {
        assert_eq!(SUBSCRIBED_EVENT_TYPES.len(), 17);
        assert!(is_subscribed("checkout.session.async_payment_succeeded"));
        assert!(!is_subscribed("payment_intent.created"));
    }

    #[test]
    fn subscriptions_are_ordered_by_their_customer() {
        let e = to_billing_event(
            "acme",
            event(
                "customer.subscription.updated",
                json!({"id": "sub_1", "customer": "cus_9"}),
            ),
        )
        .expect("ok");
        let v1 = e.v1();
        assert_eq!(v1.object, ObjectKind::Subscription);
        assert_eq!(v1.object_id, "sub_1");
        assert_eq!(v1.ordering_key(), "stripe/acme/customer/cus_9");
        assert_eq!(
            v1.version,
            RecordVersion {
                position: 1_700_000_000,
                event_id: "evt_1".into()
            }
        );
    }

    #[test]
    fn expanded_customers_and_upcoming_invoices_are_understood() {
        let e = to_billing_event(
            "acme",
            event(
                "invoice.upcoming",
                json!({"object": "invoice", "customer": {"id": "cus_3"}}),
            ),
        )
        .expect("ok");
        assert_eq!(e.v1().object_id, "upcoming_cus_3");
        assert_eq!(e.v1().customer_id.as_deref(), Some("cus_3"));
    }

    #[test]
    fn objects_without_identity_are_refused() {
        assert!(to_billing_event("acme", event("charge.succeeded", json!({"amount": 1}))).is_err());
    }
}
