//! Stripe events as billsync carries them: which types, which object, which customer.

use billsync_events::{BillingEvent, BillingEventV1, ObjectKind, RecordVersion, SourceKind};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::fmt;

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

/// The parts of a Stripe `event` object billsync reads. `data.object` is kept as the raw
/// bytes Stripe sent: ingest forwards it unchanged, so parsing it into a tree and printing it
/// again would only cost time on the webhook's hot path.
#[derive(Debug, Deserialize)]
pub struct StripeEvent<'a> {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    #[serde(borrow)]
    pub data: StripeEventData<'a>,
}

#[derive(Debug, Deserialize)]
pub struct StripeEventData<'a> {
    #[serde(borrow)]
    pub object: &'a RawValue,
    #[serde(default, borrow)]
    pub previous_attributes: Option<&'a RawValue>,
}

/// The identity fields of `data.object`, read without building the rest of it.
#[derive(Debug, Deserialize)]
struct ObjectIdentity {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    customer: Option<CustomerRef>,
}

/// Stripe sends `customer` as an id or, when expanded, as the customer object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CustomerRef {
    Id(String),
    Expanded { id: String },
    Other(serde::de::IgnoredAny),
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

/// A verified Stripe event in billsync's envelope, ready to publish: the envelope's fields
/// (for the subject and logs) and the message bytes, in which Stripe's object is embedded
/// as received.
pub struct EncodedEvent {
    /// The envelope with `data` and `related` left null; the payload carries them.
    pub envelope: BillingEventV1,
    pub payload: Bytes,
}

/// Turns a verified Stripe event into billsync's envelope, encoded as a
/// [`BillingEvent`] (`schema: billing_event.v1`) message.
pub fn encode(connection: &str, event: &StripeEvent<'_>) -> Result<EncodedEvent, String> {
    let envelope = envelope(connection, event)?;
    let related = event.data.previous_attributes.map(|previous| RelatedWire {
        previous_attributes: previous,
    });
    let wire = BillingEventWire {
        schema: BILLING_EVENT_V1,
        id: &envelope.id,
        source: envelope.source,
        connection: &envelope.connection,
        event_type: &envelope.event_type,
        object: envelope.object,
        object_id: &envelope.object_id,
        customer_id: envelope.customer_id.as_deref(),
        occurred_at: envelope.occurred_at,
        version: &envelope.version,
        data: event.data.object,
        related,
    };
    let payload = serde_json::to_vec(&wire).map_err(|e| e.to_string())?;
    Ok(EncodedEvent {
        envelope,
        payload: Bytes::from(payload),
    })
}

/// Turns a verified Stripe event into billsync's envelope as a value (for callers that want
/// the object as a tree; the webhook uses [`encode`]).
pub fn to_billing_event(connection: &str, event: &StripeEvent<'_>) -> Result<BillingEvent, String> {
    let mut v1 = envelope(connection, event)?;
    v1.data = serde_json::from_str(event.data.object.get()).map_err(|e| e.to_string())?;
    if let Some(previous) = event.data.previous_attributes {
        let previous: Value = serde_json::from_str(previous.get()).map_err(|e| e.to_string())?;
        v1.related = serde_json::json!({ "previous_attributes": previous });
    }
    Ok(BillingEvent::V1(v1))
}

fn envelope(connection: &str, event: &StripeEvent<'_>) -> Result<BillingEventV1, String> {
    if !event.id.starts_with("evt_") {
        return Err(format!(
            "event id {:?} does not look like a Stripe event id",
            event.id
        ));
    }
    let object = object_kind(&event.event_type);
    let identity: ObjectIdentity = serde_json::from_str(event.data.object.get())
        .map_err(|e| format!("data.object is not an object: {e}"))?;
    readable(event.data.object).map_err(|e| format!("data.object cannot be carried: {e}"))?;
    if let Some(previous) = event.data.previous_attributes {
        readable(previous)
            .map_err(|e| format!("data.previous_attributes cannot be carried: {e}"))?;
    }
    let customer_id = if object == ObjectKind::Customer {
        identity.id.clone()
    } else {
        match identity.customer {
            Some(CustomerRef::Id(id)) | Some(CustomerRef::Expanded { id }) => Some(id),
            _ => None,
        }
    };
    let object_id = match identity.id {
        Some(id) => id,
        // `invoice.upcoming` describes an invoice that does not exist yet and has no id.
        None => match &customer_id {
            Some(customer) => format!("upcoming_{customer}"),
            None => return Err("data.object has no id and no customer".into()),
        },
    };
    let occurred_at = DateTime::from_timestamp(event.created, 0)
        .ok_or_else(|| format!("created {} is not a valid time", event.created))?;
    Ok(BillingEventV1 {
        version: RecordVersion {
            position: event.created,
            event_id: event.id.clone(),
            sequence: None,
        },
        id: event.id.clone(),
        source: SourceKind::Stripe,
        connection: connection.to_string(),
        event_type: event.event_type.clone(),
        object,
        object_id,
        customer_id,
        occurred_at,
        run_id: None,
        data: Value::Null,
        related: Value::Null,
    })
}

/// Checks that `raw` reads as a [`Value`], as every reader of the published event parses it:
/// raw JSON may hold what a `Value` cannot (a number beyond `f64`, such as `1e400`), and an
/// event published with one would be unreadable downstream. Walks the text without building
/// the tree, to keep the webhook's path free of a parse-and-print.
fn readable(raw: &RawValue) -> Result<(), serde_json::Error> {
    serde_json::from_str::<Readable>(raw.get()).map(|_| ())
}

/// Any JSON value a [`Value`] can hold, read and dropped.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Readable)
    }
}

impl<'de> Visitor<'de> for Readable {
    type Value = Readable;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_unit<E>(self) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Readable, A::Error> {
        while items.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Readable, A::Error> {
        while entries.next_entry::<Readable, Readable>()?.is_some() {}
        Ok(Readable)
    }
}

/// The `schema` tag of [`BillingEvent::V1`].
const BILLING_EVENT_V1: &str = "billing_event.v1";

/// [`BillingEvent::V1`] as it serializes, field for field, with the vendor object borrowed
/// as raw JSON. `encoded_events_read_back_as_billing_events` keeps the two in step.
#[derive(Serialize)]
struct BillingEventWire<'a> {
    schema: &'static str,
    id: &'a str,
    source: SourceKind,
    connection: &'a str,
    event_type: &'a str,
    object: ObjectKind,
    object_id: &'a str,
    customer_id: Option<&'a str>,
    occurred_at: DateTime<Utc>,
    version: &'a RecordVersion,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    related: Option<RelatedWire<'a>>,
}

#[derive(Serialize)]
struct RelatedWire<'a> {
    previous_attributes: &'a RawValue,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(event_type: &str, object: Value) -> String {
        json!({
            "id": "evt_1", "object": "event", "type": event_type, "created": 1_700_000_000,
            "data": { "object": object }
        })
        .to_string()
    }

    fn translate(event_type: &str, object: Value) -> Result<BillingEvent, String> {
        let text = body(event_type, object);
        let event: StripeEvent = serde_json::from_str(&text).expect("event");
        to_billing_event("acme", &event)
    }

    #[test]
    fn the_seed_table_and_deletes_are_subscribed() {
        assert_eq!(SUBSCRIBED_EVENT_TYPES.len(), 17);
        assert!(is_subscribed("checkout.session.async_payment_succeeded"));
        assert!(!is_subscribed("payment_intent.created"));
    }

    #[test]
    fn subscriptions_are_ordered_by_their_customer() {
        let e = translate(
            "customer.subscription.updated",
            json!({"id": "sub_1", "customer": "cus_9"}),
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
                event_id: "evt_1".into(),
                sequence: None,
            }
        );
    }

    #[test]
    fn expanded_customers_and_upcoming_invoices_are_understood() {
        let e = translate(
            "invoice.upcoming",
            json!({"object": "invoice", "customer": {"id": "cus_3", "object": "customer"}}),
        )
        .expect("ok");
        assert_eq!(e.v1().object_id, "upcoming_cus_3");
        assert_eq!(e.v1().customer_id.as_deref(), Some("cus_3"));
        let e = translate(
            "charge.succeeded",
            json!({"id": "ch_1", "customer": null, "amount": 5}),
        )
        .expect("ok");
        assert_eq!(e.v1().customer_id, None);
    }

    #[test]
    fn objects_without_identity_are_refused() {
        assert!(translate("charge.succeeded", json!({"amount": 1})).is_err());
        assert!(translate("charge.succeeded", json!([1, 2])).is_err());
    }

    /// Found by the `stripe_event` fuzz target: a number beyond `f64` in the object was
    /// published as received, and no reader could parse the event.
    #[test]
    fn objects_a_billing_event_cannot_hold_are_refused() {
        for (object, previous) in [
            (r#"{"id":"ch_1","amount":1e400}"#, None),
            (r#"{"id":"ch_1","lines":[{"x":-4.0e99999}]}"#, None),
            (r#"{"id":"ch_1"}"#, Some(r#"{"amount":1e400}"#)),
        ] {
            let previous = previous
                .map(|p| format!(r#","previous_attributes":{p}"#))
                .unwrap_or_default();
            let text = format!(
                r#"{{"id":"evt_1","type":"charge.refunded","created":1700000000,"data":{{"object":{object}{previous}}}}}"#
            );
            let event: StripeEvent = serde_json::from_str(&text).expect("raw JSON takes it");
            let refused = encode("acme", &event).err().expect("refused");
            assert!(refused.contains("cannot be carried"), "{refused}");
            assert!(to_billing_event("acme", &event).is_err());
        }
        let text = r#"{"id":"evt_1","type":"charge.refunded","created":1700000000,"data":{"object":{"id":"ch_1","amount":1e300,"n":18446744073709551616}}}"#;
        let event: StripeEvent = serde_json::from_str(text).expect("event");
        let encoded = encode("acme", &event).expect("a Value holds these");
        let read_back: BillingEvent = serde_json::from_slice(&encoded.payload).expect("readable");
        assert_eq!(read_back, to_billing_event("acme", &event).expect("typed"));
    }

    #[test]
    fn encoded_events_read_back_as_billing_events() {
        for (event_type, object, previous) in [
            (
                "customer.updated",
                json!({"id": "cus_1", "email": "a@example.com", "metadata": {"k": "v"}, "n": 1.5}),
                Some(json!({"email": "old@example.com"})),
            ),
            (
                "invoice.payment_failed",
                json!({"id": "in_1", "customer": "cus_1", "lines": {"data": []}}),
                None,
            ),
        ] {
            let mut event = json!({
                "id": "evt_9", "object": "event", "type": event_type, "created": 1_700_000_123,
                "data": { "object": object }
            });
            if let Some(previous) = previous {
                event["data"]["previous_attributes"] = previous;
            }
            let text = event.to_string();
            let parsed: StripeEvent = serde_json::from_str(&text).expect("event");
            let encoded = encode("acme", &parsed).expect("encode");
            let read_back: BillingEvent =
                serde_json::from_slice(&encoded.payload).expect("a BillingEvent");
            let typed = to_billing_event("acme", &parsed).expect("typed");
            assert_eq!(read_back, typed);
            // Field for field what the typed envelope serializes to.
            assert_eq!(
                serde_json::from_slice::<Value>(&encoded.payload).unwrap(),
                serde_json::to_value(&typed).unwrap()
            );
            assert_eq!(encoded.envelope.id, "evt_9");
            assert!(encoded.envelope.data.is_null());
        }
    }
}
