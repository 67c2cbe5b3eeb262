//! A Stripe object from a list page, as the event a worker applies like a live one.
//!
//! **Event type.** Workers act on snapshots exactly as on webhooks, and the ActiveCampaign
//! worker tags contacts `stripe-integration-<event type>`. A snapshot therefore carries the
//! live type that would have brought the object in, chosen from the seed's table so that no
//! worker meets a type it does not know and the tags say something true:
//! customers `customer.created`, subscriptions `customer.subscription.created`, invoices
//! `invoice.created`, charges `charge.succeeded` (`charge.refunded` once fully refunded),
//! checkout sessions `checkout.session.async_payment_succeeded` when paid. Failed or pending
//! charges and unpaid sessions are skipped: no event of the table carries them, so the live
//! integration would never have synced them either. `run_id` tells snapshots apart.
//!
//! **Version.** `position` is the object's `created`. Stripe objects carry no `updated`, and
//! any live event about the object is at least as late as its creation, so a snapshot never
//! overwrites an applied live event (an equal position with another id still applies, which
//! is right: the snapshot is at least as new as the object's creation event).
//!
//! **Id.** `snap_<run id>_<object id>`: the run id is kept in NATS KV with the cursor, so a run
//! resumed after a crash republishes its last page under the same ids and JetStream drops
//! the copies, while a later, deliberate run gets new ids and is applied again.

use super::super::StripeResource;
use billsync_events::{BillingEvent, BillingEventV1, ObjectKind, RecordVersion, SourceKind};
use chrono::DateTime;
use serde_json::Value;

/// What became of one listed object.
#[derive(Debug)]
pub enum Snapshot {
    Event(Box<BillingEvent>),
    /// Not synced by the live integration either (see the module docs).
    Skipped {
        object_id: String,
        reason: &'static str,
    },
}

/// The live event type a snapshot of `object` stands for, or why it has none.
pub fn snapshot_event_type(
    resource: StripeResource,
    object: &Value,
) -> Result<&'static str, &'static str> {
    let text = |field: &str| object.get(field).and_then(Value::as_str);
    match resource {
        StripeResource::Customer => Ok("customer.created"),
        StripeResource::Subscription => Ok("customer.subscription.created"),
        StripeResource::Invoice => Ok("invoice.created"),
        StripeResource::Charge => match text("status") {
            Some("succeeded") if object.get("refunded") == Some(&Value::Bool(true)) => {
                Ok("charge.refunded")
            }
            Some("succeeded") => Ok("charge.succeeded"),
            _ => Err("charge did not succeed"),
        },
        StripeResource::CheckoutSession => match text("payment_status") {
            Some("paid") => Ok("checkout.session.async_payment_succeeded"),
            _ => Err("checkout session is not paid"),
        },
    }
}

/// The snapshot event of `object`, listed from `resource` during run `run_id`.
pub fn snapshot(
    connection: &str,
    run_id: &str,
    resource: StripeResource,
    object: Value,
) -> Result<Snapshot, String> {
    let object_id = object
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("a listed {resource} has no id"))?
        .to_string();
    let event_type = match snapshot_event_type(resource, &object) {
        Ok(event_type) => event_type,
        Err(reason) => return Ok(Snapshot::Skipped { object_id, reason }),
    };
    let created = object
        .get("created")
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("{resource} {object_id} has no created time"))?;
    let occurred_at = DateTime::from_timestamp(created, 0)
        .ok_or_else(|| format!("{resource} {object_id}: created {created} is not a time"))?;
    let kind = resource.object_kind();
    let customer_id = if kind == ObjectKind::Customer {
        Some(object_id.clone())
    } else {
        match object.get("customer") {
            Some(Value::String(id)) => Some(id.clone()),
            Some(Value::Object(expanded)) => expanded
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            _ => None,
        }
    };
    let id = snapshot_id(run_id, &object_id);
    Ok(Snapshot::Event(Box::new(BillingEvent::V1(
        BillingEventV1 {
            version: RecordVersion {
                position: created,
                event_id: id.clone(),
                sequence: None,
            },
            id,
            source: SourceKind::Stripe,
            connection: connection.to_string(),
            event_type: event_type.to_string(),
            object: kind,
            object_id,
            customer_id,
            occurred_at,
            run_id: Some(run_id.to_string()),
            data: object,
            related: Value::Null,
        },
    ))))
}

pub fn snapshot_id(run_id: &str, object_id: &str) -> String {
    format!("snap_{run_id}_{object_id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(snapshot: Snapshot) -> BillingEventV1 {
        match snapshot {
            Snapshot::Event(event) => event.v1().clone(),
            Snapshot::Skipped { reason, .. } => panic!("skipped: {reason}"),
        }
    }

    #[test]
    fn customers_snapshot_as_customer_created_at_their_creation_time() {
        let e = event(
            snapshot(
                "acme",
                "run1",
                StripeResource::Customer,
                json!({"id": "cus_1", "object": "customer", "created": 1_600_000_000, "email": "a@example.com"}),
            )
            .unwrap(),
        );
        assert_eq!(e.id, "snap_run1_cus_1");
        assert_eq!(e.event_type, "customer.created");
        assert_eq!(e.object, ObjectKind::Customer);
        assert_eq!(e.customer_id.as_deref(), Some("cus_1"));
        assert_eq!(e.version.position, 1_600_000_000);
        assert_eq!(e.version.event_id, e.id);
        assert_eq!(e.run_id.as_deref(), Some("run1"));
        assert_eq!(e.data["email"], "a@example.com");
        // A live event about the customer, at or after its creation, is never overwritten.
        let live = RecordVersion {
            position: 1_600_000_500,
            event_id: "evt_live".into(),
            sequence: None,
        };
        assert!(e.version.is_superseded_by(&live));
    }

    #[test]
    fn subscriptions_and_invoices_belong_to_their_customer() {
        let e = event(
            snapshot(
                "acme",
                "r",
                StripeResource::Subscription,
                json!({"id": "sub_1", "created": 5, "customer": "cus_9"}),
            )
            .unwrap(),
        );
        assert_eq!(e.event_type, "customer.subscription.created");
        assert_eq!(e.ordering_key(), "stripe/acme/customer/cus_9");
        let e = event(
            snapshot(
                "acme",
                "r",
                StripeResource::Invoice,
                json!({"id": "in_1", "created": 5, "customer": {"id": "cus_8"}}),
            )
            .unwrap(),
        );
        assert_eq!(e.event_type, "invoice.created");
        assert_eq!(e.customer_id.as_deref(), Some("cus_8"));
    }

    #[test]
    fn only_successful_payments_are_snapshotted() {
        let charge = |status: &str, refunded: bool| {
            snapshot(
                "a",
                "r",
                StripeResource::Charge,
                json!({"id": "ch_1", "created": 1, "status": status, "refunded": refunded}),
            )
            .unwrap()
        };
        assert_eq!(
            event(charge("succeeded", false)).event_type,
            "charge.succeeded"
        );
        assert_eq!(
            event(charge("succeeded", true)).event_type,
            "charge.refunded"
        );
        assert!(matches!(charge("failed", false), Snapshot::Skipped { .. }));
        let session = |payment_status: &str| {
            snapshot(
                "a",
                "r",
                StripeResource::CheckoutSession,
                json!({"id": "cs_1", "created": 1, "payment_status": payment_status}),
            )
            .unwrap()
        };
        assert_eq!(
            event(session("paid")).event_type,
            "checkout.session.async_payment_succeeded"
        );
        assert!(matches!(session("unpaid"), Snapshot::Skipped { .. }));
        for r in StripeResource::ALL {
            let t =
                snapshot_event_type(r, &json!({"status": "succeeded", "payment_status": "paid"}))
                    .unwrap();
            assert!(crate::stripe::event::is_subscribed(t), "{t}");
            assert_eq!(crate::stripe::event::object_kind(t), r.object_kind());
        }
    }

    #[test]
    fn objects_without_id_or_created_are_errors() {
        assert!(snapshot("a", "r", StripeResource::Customer, json!({"created": 1})).is_err());
        assert!(snapshot("a", "r", StripeResource::Customer, json!({"id": "cus_1"})).is_err());
    }
}
