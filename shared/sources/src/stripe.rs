//! Stripe customers as events reveal them: the customer data every event type carries,
//! shaped like a Stripe customer so one mapping serves every event type.

use billsync_events::{BillingEventV1, ObjectKind};
use serde_json::{json, Value};

/// The fields of a Stripe customer a mapping over [`customer_view`] may start with.
pub const CUSTOMER_FIELDS: &[&str] = &[
    "id",
    "email",
    "name",
    "phone",
    "description",
    "address",
    "metadata",
    "currency",
    "created",
    "shipping",
    "preferred_locales",
    "tax_exempt",
    "balance",
    "delinquent",
    "invoice_prefix",
];

/// The customer data an event carries, shaped like a Stripe customer so one mapping serves
/// every event type ("only Stripe customer data is available for mapping", seed 001).
/// Subscriptions carry only the customer id; `None` then.
pub fn customer_view(event: &BillingEventV1) -> Option<Value> {
    let data = &event.data;
    let get = |pointer: &str| data.pointer(pointer).cloned().unwrap_or(Value::Null);
    let first = |pointers: &[&str]| {
        pointers
            .iter()
            .map(|p| get(p))
            .find(|v| v.as_str().is_some_and(|s| !s.is_empty()))
            .unwrap_or(Value::Null)
    };
    let customer = event
        .customer_id
        .clone()
        .map(Value::String)
        .unwrap_or(Value::Null);
    match event.object {
        ObjectKind::Customer => Some(data.clone()),
        ObjectKind::Invoice => Some(json!({
            "id": customer,
            "email": get("/customer_email"),
            "name": get("/customer_name"),
            "phone": get("/customer_phone"),
        })),
        ObjectKind::Charge => Some(json!({
            "id": customer,
            "email": first(&["/billing_details/email", "/receipt_email"]),
            "name": get("/billing_details/name"),
            "phone": get("/billing_details/phone"),
        })),
        ObjectKind::CheckoutSession => Some(json!({
            "id": customer,
            "email": first(&["/customer_details/email", "/customer_email"]),
            "name": get("/customer_details/name"),
            "phone": get("/customer_details/phone"),
        })),
        _ => None,
    }
}

/// Whether the event deletes its customer (`customer.deleted`, or a customer object marked
/// `deleted`): such a customer has no email left and must not be created again.
pub fn deletes_customer(event: &BillingEventV1) -> bool {
    event.object == ObjectKind::Customer
        && (event.event_type == "customer.deleted"
            || event.data.get("deleted").and_then(Value::as_bool) == Some(true))
}

/// A subscription's monthly recurring revenue in the currency's minor unit: each item's
/// price × quantity, normalised from its interval (`day`, `week`, `month`, `year`, every
/// `interval_count`) to a month. Metered prices without a unit amount count as zero.
pub fn monthly_recurring_cents(subscription: &Value) -> i64 {
    let items = subscription
        .pointer("/items/data")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let monthly: f64 = items
        .iter()
        .filter_map(|item| {
            let price = item.get("price").or_else(|| item.get("plan"))?;
            let unit = price
                .get("unit_amount")
                .or_else(|| price.get("amount"))
                .and_then(Value::as_i64)?;
            let quantity = item.get("quantity").and_then(Value::as_i64).unwrap_or(1);
            let interval = price
                .pointer("/recurring/interval")
                .or_else(|| price.get("interval"))
                .and_then(Value::as_str)
                .unwrap_or("month");
            let every = price
                .pointer("/recurring/interval_count")
                .or_else(|| price.get("interval_count"))
                .and_then(Value::as_i64)
                .filter(|n| *n > 0)
                .unwrap_or(1) as f64;
            // Months per interval: a year is 12, a week 12/52, a day 12/365.
            let months = match interval {
                "year" => 12.0,
                "week" => 12.0 / 52.0,
                "day" => 12.0 / 365.0,
                _ => 1.0,
            } * every;
            Some((unit.max(0) * quantity.max(0)) as f64 / months)
        })
        .sum();
    monthly.round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_events::event;
    use billsync_events::SourceKind;

    #[test]
    fn charges_and_invoices_yield_their_customer_data() {
        let charge = event(
            SourceKind::Stripe,
            "charge.succeeded",
            ObjectKind::Charge,
            json!({"billing_details": {"email": null, "name": "Bo Li"}, "receipt_email": "bo@example.com"}),
        );
        let view = customer_view(&charge).expect("view");
        assert_eq!(view["email"], "bo@example.com");
        assert_eq!(view["id"], "cus_1");
        let invoice = event(
            SourceKind::Stripe,
            "invoice.paid",
            ObjectKind::Invoice,
            json!({"customer_email": "c@example.com"}),
        );
        assert_eq!(
            customer_view(&invoice).expect("view")["email"],
            "c@example.com"
        );
    }

    #[test]
    fn checkouts_prefer_the_details_the_customer_typed() {
        let session = event(
            SourceKind::Stripe,
            "checkout.session.completed",
            ObjectKind::CheckoutSession,
            json!({"customer_details": {"email": "typed@example.com", "name": "Ada L"},
                   "customer_email": "prefilled@example.com"}),
        );
        let view = customer_view(&session).expect("view");
        assert_eq!(view["email"], "typed@example.com");
        assert_eq!(view["name"], "Ada L");
        for field in view.as_object().expect("an object").keys() {
            assert!(CUSTOMER_FIELDS.contains(&field.as_str()), "{field}");
        }
    }

    #[test]
    fn a_deleted_customer_is_recognised_by_its_event_or_its_flag() {
        let deleted = event(
            SourceKind::Stripe,
            "customer.deleted",
            ObjectKind::Customer,
            json!({"id": "cus_1"}),
        );
        assert!(deletes_customer(&deleted));
        let flagged = event(
            SourceKind::Stripe,
            "customer.updated",
            ObjectKind::Customer,
            json!({"id": "cus_1", "deleted": true}),
        );
        assert!(deletes_customer(&flagged));
        let live = event(
            SourceKind::Stripe,
            "customer.updated",
            ObjectKind::Customer,
            json!({"id": "cus_1", "email": "a@x.io"}),
        );
        assert!(!deletes_customer(&live));
        let charge = event(
            SourceKind::Stripe,
            "charge.succeeded",
            ObjectKind::Charge,
            json!({"deleted": true}),
        );
        assert!(!deletes_customer(&charge));
    }

    #[test]
    fn recurring_revenue_is_normalised_to_a_month() {
        let subscription = json!({"items": {"data": [
            {"quantity": 2, "price": {"unit_amount": 1500, "recurring": {"interval": "month", "interval_count": 1}}},
            {"quantity": 1, "price": {"unit_amount": 12000, "recurring": {"interval": "year", "interval_count": 1}}},
            {"quantity": 1, "price": {"unit_amount": 600, "recurring": {"interval": "month", "interval_count": 3}}},
            {"quantity": 1, "price": {"unit_amount": null, "recurring": {"interval": "month"}}}
        ]}});
        assert_eq!(monthly_recurring_cents(&subscription), 3000 + 1000 + 200);
        assert_eq!(monthly_recurring_cents(&json!({})), 0);
    }
}
