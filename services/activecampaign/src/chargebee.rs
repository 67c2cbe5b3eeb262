//! Chargebee → ActiveCampaign, as Chargebee's ActiveCampaign integration behaves (seed 000):
//! customers become contacts keyed by email, with the 14 `Cb_*` custom fields (created when
//! missing) beside email, first and last name — the seed's table of mapped fields.

use billsync_events::{BillingEventV1, ObjectKind};
use billsync_mapping::Mapping;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The seed's field table: ActiveCampaign field ← Chargebee path. Standard contact fields use
/// ActiveCampaign's names; the `Cb_*` ones are custom fields, created with these titles.
pub const DEFAULT_MAPPING: &[(&str, &str)] = &[
    ("email", "customer.email"),
    ("firstName", "customer.first_name"),
    ("lastName", "customer.last_name"),
    (
        "Cb_chargebeeCustomerStatus",
        "customer.deleted | map(true=deleted, false=active) ?? 'active'",
    ),
    ("Cb_orgName", "customer.company"),
    ("Cb_subscriptionID", "subscription.id"),
    // Product Catalog 1.0 has plan_id; 2.0 has the plan's item price in subscription_items.
    (
        "Cb_subscriptionPlanName",
        "subscription.plan_id ?? subscription.subscription_items.0.item_price_id",
    ),
    ("Cb_subscriptionStatus", "subscription.status"),
    (
        "Cb_subscriptionTrialStartDate",
        "subscription.trial_start | date",
    ),
    (
        "Cb_subscriptionTrialEndDate",
        "subscription.trial_end | date",
    ),
    (
        "Cb_subscriptionNextBillingDate",
        "subscription.next_billing_at | date",
    ),
    ("Cb_subscriptionCreatedOn", "subscription.created_at | date"),
    // The seed names `start_at`; Chargebee's fields are `start_date` (a future start) and
    // `started_at` (when it started).
    (
        "Cb_subscriptionStartsOn",
        "subscription.start_date | date ?? subscription.started_at | date",
    ),
    (
        "Cb_subscriptionCancelledOn",
        "subscription.cancelled_at | date",
    ),
    ("Cb_currency", "subscription.currency_code"),
    (
        "Cb_subscriptionCancellationReason",
        "subscription.cancel_reason ?? subscription.cancel_reason_code",
    ),
    ("Cb_subscriptionMRR", "subscription.mrr | cents_to_amount"),
];

pub fn default_mapping() -> Mapping {
    Mapping::parse(DEFAULT_MAPPING.iter().copied()).expect("the built-in Chargebee mapping parses")
}

/// What happens to the contact when its customer is deleted in Chargebee (seed 000's setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCustomerDeleted {
    /// Keep the contact and set `Cb_chargebeeCustomerStatus` to `deleted` (the default).
    Keep,
    /// Unsubscribe the contact from the configured list (and set the status field).
    Unsubscribe,
    /// Delete the contact from ActiveCampaign.
    Delete,
}

/// What billsync has seen of one Chargebee customer: the newest copy of the customer, and
/// its subscriptions, to pick the one the `Cb_subscription*` fields show.
///
/// Every Chargebee event carries the customer as it was when the event happened, so a
/// subscription event retried or replayed after a newer customer event carries an older
/// email and name. The contact is always written from the newest copy seen (by
/// `resource_version`), whichever event triggers the write.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CustomerSubscriptions {
    pub subscriptions: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<Value>,
}

/// Chargebee's `resource_version` of an object (0 when absent, so arrival order decides).
fn resource_version(object: &Value) -> i64 {
    object
        .get("resource_version")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn is_deleted(customer: &Value) -> bool {
    customer.get("deleted").and_then(Value::as_bool) == Some(true)
}

impl CustomerSubscriptions {
    /// Records a subscription's latest state; a copy older than the one held is ignored. A
    /// deleted subscription is kept as a marker of its id and version, so a late copy from
    /// before the deletion cannot bring it back.
    pub fn record(&mut self, subscription: &Value, deleted: bool) {
        let Some(id) = subscription.get("id").and_then(Value::as_str) else {
            return;
        };
        if self
            .subscriptions
            .get(id)
            .is_some_and(|held| resource_version(held) > resource_version(subscription))
        {
            return;
        }
        let copy = if deleted || is_deleted(subscription) {
            json!({"id": id, "deleted": true, "resource_version": resource_version(subscription)})
        } else {
            subscription.clone()
        };
        self.subscriptions.insert(id.to_string(), copy);
    }

    /// Keeps `customer` when it is at least as new as the copy held. `deleted` marks the copy
    /// of a `customer_deleted` event; only a strictly newer copy replaces a deletion (a copy
    /// of the same version, or one without versions, leaves the customer deleted).
    pub fn record_customer(&mut self, customer: &Value, deleted: bool) {
        let mut copy = customer.clone();
        if deleted {
            if let Some(object) = copy.as_object_mut() {
                object.insert("deleted".into(), Value::Bool(true));
            }
        }
        let keep = match &self.customer {
            None => true,
            Some(held) if is_deleted(held) && !is_deleted(&copy) => {
                resource_version(&copy) > resource_version(held)
            }
            Some(held) => resource_version(&copy) >= resource_version(held),
        };
        if keep {
            self.customer = Some(copy);
        }
    }

    /// The newest copy of the customer seen, once one has been recorded.
    pub fn customer(&self) -> Option<&Value> {
        self.customer.as_ref()
    }

    /// True once the customer was deleted in Chargebee.
    pub fn customer_deleted(&self) -> bool {
        self.customer.as_ref().is_some_and(is_deleted)
    }

    /// The rule for customers with several subscriptions: the most alive status wins
    /// (active, in_trial, non_renewing, future, paused, cancelled, transferred), then the most
    /// recently created, then the highest id, so the choice never depends on arrival order.
    pub fn chosen(&self) -> Option<&Value> {
        self.subscriptions
            .values()
            .filter(|s| !is_deleted(s))
            .min_by(|a, b| {
                let key = |s: &Value| {
                    let rank = match s.get("status").and_then(Value::as_str) {
                        Some("active") => 0,
                        Some("in_trial") => 1,
                        Some("non_renewing") => 2,
                        Some("future") => 3,
                        Some("paused") => 4,
                        Some("cancelled") => 5,
                        _ => 6,
                    };
                    let created = s.get("created_at").and_then(Value::as_i64).unwrap_or(0);
                    let id = s
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    (rank, std::cmp::Reverse(created), std::cmp::Reverse(id))
                };
                key(a).cmp(&key(b))
            })
    }
}

/// The object the mapping reads: `{customer, subscription}`.
pub fn view(customer: &Value, subscription: Option<&Value>) -> Value {
    json!({ "customer": customer, "subscription": subscription.cloned().unwrap_or(Value::Null) })
}

/// The customer an event carries: the object itself for customer events, else the customer
/// Chargebee sends beside it in `content`.
pub fn customer_of(event: &BillingEventV1) -> Option<&Value> {
    match event.object {
        ObjectKind::Customer => Some(&event.data),
        _ => event.related.get("customer").filter(|c| c.is_object()),
    }
}

pub fn is_deletion(event: &BillingEventV1) -> bool {
    event.event_type == "customer_deleted"
}

pub fn is_gift_event(event: &BillingEventV1) -> bool {
    event.event_type.starts_with("gift_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_table_maps_seventeen_fields() {
        assert_eq!(DEFAULT_MAPPING.len(), 17);
        let customer = json!({"id": "c1", "email": "a@x.io", "first_name": "Ada", "last_name": "L",
            "company": "Acme", "deleted": false});
        let subscription = json!({"id": "s1", "plan_id": "pro", "status": "in_trial",
            "trial_start": 1_700_000_000, "trial_end": 1_701_000_000, "next_billing_at": 1_701_000_000,
            "created_at": 1_700_000_000, "started_at": 1_700_000_000, "currency_code": "EUR",
            "mrr": 4900});
        let fields = default_mapping().apply(&view(&customer, Some(&subscription)));
        assert_eq!(fields["email"], "a@x.io");
        assert_eq!(fields["Cb_chargebeeCustomerStatus"], "active");
        assert_eq!(fields["Cb_orgName"], "Acme");
        assert_eq!(fields["Cb_subscriptionPlanName"], "pro");
        assert_eq!(fields["Cb_subscriptionTrialStartDate"], "2023-11-14");
        assert_eq!(fields["Cb_subscriptionStartsOn"], "2023-11-14");
        assert_eq!(fields["Cb_subscriptionMRR"], "49.00");
        assert_eq!(fields["Cb_currency"], "EUR");
        assert!(!fields.contains_key("Cb_subscriptionCancelledOn"));
    }

    #[test]
    fn product_catalog_2_plans_come_from_subscription_items() {
        let subscription = json!({"id": "s1", "subscription_items": [{"item_price_id": "pro-EUR-monthly", "item_type": "plan"}]});
        let fields = default_mapping().apply(&view(&json!({}), Some(&subscription)));
        assert_eq!(fields["Cb_subscriptionPlanName"], "pro-EUR-monthly");
    }

    #[test]
    fn the_most_alive_then_newest_subscription_is_shown() {
        let mut subs = CustomerSubscriptions::default();
        subs.record(
            &json!({"id": "old", "status": "active", "created_at": 1}),
            false,
        );
        subs.record(
            &json!({"id": "new", "status": "active", "created_at": 2}),
            false,
        );
        subs.record(
            &json!({"id": "gone", "status": "cancelled", "created_at": 3}),
            false,
        );
        assert_eq!(subs.chosen().and_then(|s| s["id"].as_str()), Some("new"));
        subs.record(
            &json!({"id": "new", "status": "cancelled", "created_at": 2}),
            false,
        );
        assert_eq!(subs.chosen().and_then(|s| s["id"].as_str()), Some("old"));
        subs.record(&json!({"id": "old"}), true);
        assert_eq!(subs.chosen().and_then(|s| s["id"].as_str()), Some("gone"));
    }

    #[test]
    fn the_newest_copy_of_the_customer_wins_and_a_deletion_is_final() {
        let copy = |version: i64, email: &str| json!({"id": "c", "email": email, "resource_version": version});
        let mut seen = CustomerSubscriptions::default();
        seen.record_customer(&copy(2, "new@x.io"), false);
        seen.record_customer(&copy(1, "old@x.io"), false);
        assert_eq!(seen.customer().unwrap()["email"], "new@x.io");
        seen.record_customer(&copy(3, "newer@x.io"), false);
        assert_eq!(seen.customer().unwrap()["email"], "newer@x.io");
        assert!(!seen.customer_deleted());

        seen.record_customer(&copy(4, "newer@x.io"), true);
        assert!(seen.customer_deleted());
        // Copies Chargebee sent before the deletion, delivered late, change nothing.
        seen.record_customer(&copy(3, "late@x.io"), false);
        seen.record_customer(&copy(4, "late@x.io"), false);
        assert!(seen.customer_deleted());
        assert_eq!(seen.customer().unwrap()["email"], "newer@x.io");
        // A customer created again under the same id is newer than its deletion.
        seen.record_customer(&copy(5, "again@x.io"), false);
        assert!(!seen.customer_deleted());
    }

    #[test]
    fn a_deleted_subscription_does_not_come_back_with_a_late_copy() {
        let mut seen = CustomerSubscriptions::default();
        seen.record(
            &json!({"id": "s", "status": "active", "resource_version": 1}),
            false,
        );
        seen.record(&json!({"id": "s", "resource_version": 2}), true);
        seen.record(
            &json!({"id": "s", "status": "active", "resource_version": 1}),
            false,
        );
        assert!(seen.chosen().is_none());
    }

    #[test]
    fn an_older_copy_of_a_subscription_is_ignored() {
        let mut seen = CustomerSubscriptions::default();
        seen.record(
            &json!({"id": "s", "status": "cancelled", "resource_version": 5}),
            false,
        );
        seen.record(
            &json!({"id": "s", "status": "active", "resource_version": 4}),
            false,
        );
        assert_eq!(seen.chosen().unwrap()["status"], "cancelled");
    }
}
