//! Chargebee → ActiveCampaign, as Chargebee's ActiveCampaign integration behaves (seed 000):
//! customers become contacts keyed by email, with the 14 `Cb_*` custom fields (created when
//! missing) beside email, first and last name — the seed's table of mapped fields. The
//! customer and subscription they are read from are `billsync_sources::chargebee`'s: the
//! newest copy of the customer, the subscription shown when there are several.

use billsync_mapping::Mapping;
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnCustomerDeleted {
    /// Keep the contact and set `Cb_chargebeeCustomerStatus` to `deleted` (the default).
    Keep,
    /// Unsubscribe the contact from the configured list (and set the status field).
    Unsubscribe,
    /// Delete the contact from ActiveCampaign.
    Delete,
}

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_sources::chargebee::view;
    use serde_json::json;

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
}
