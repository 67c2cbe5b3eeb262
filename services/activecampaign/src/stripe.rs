//! Stripe → ActiveCampaign, as the ActiveCampaign–Stripe integration behaves (seed 001):
//! every event creates or updates the customer's contact and tags it
//! `stripe-integration` and `stripe-integration-EVENT_NAME`; a customer name is split into
//! first and last name. The mapping reads `billsync_sources::stripe::customer_view`.

use billsync_events::{BillingEventV1, ObjectKind};
use billsync_mapping::Mapping;

pub const TAG_INTEGRATION: &str = "stripe-integration";
/// Added to contacts synced through subscription events (recurring payments).
pub const TAG_SUBSCRIPTION_EVENTS: &str = "stripe-integration-Billing_Subscription_Events";

/// The seed's default mapping, applied to the customer view of an event.
pub fn default_contact_mapping() -> Mapping {
    Mapping::parse([
        ("email", "email"),
        ("firstName", "name | first_word"),
        ("lastName", "name | after_first_word"),
        ("phone", "phone"),
    ])
    .expect("the built-in mapping parses")
}

/// The tags one event puts on its contact.
pub fn tags_for(event: &BillingEventV1) -> Vec<String> {
    let mut tags = vec![
        TAG_INTEGRATION.to_string(),
        format!("{TAG_INTEGRATION}-{}", event.event_type),
    ];
    if event.object == ObjectKind::Subscription {
        tags.push(TAG_SUBSCRIPTION_EVENTS.to_string());
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_events::SourceKind;
    use billsync_sources::stripe::customer_view;
    use billsync_sources::test_events;
    use serde_json::{json, Value};

    fn event(event_type: &str, object: ObjectKind, data: Value) -> BillingEventV1 {
        test_events::event(SourceKind::Stripe, event_type, object, data)
    }

    #[test]
    fn customer_events_map_email_and_split_name() {
        let e = event(
            "customer.created",
            ObjectKind::Customer,
            json!({"id": "cus_1", "email": "ada@example.com", "name": "Ada King Lovelace", "phone": null}),
        );
        let fields = default_contact_mapping().apply(&customer_view(&e).expect("view"));
        assert_eq!(fields["email"], "ada@example.com");
        assert_eq!(fields["firstName"], "Ada");
        assert_eq!(fields["lastName"], "King Lovelace");
        assert!(!fields.contains_key("phone"));
        assert_eq!(
            tags_for(&e),
            vec!["stripe-integration", "stripe-integration-customer.created"]
        );
    }

    #[test]
    fn subscription_events_get_the_billing_subscription_tag() {
        let e = event(
            "customer.subscription.created",
            ObjectKind::Subscription,
            json!({}),
        );
        assert!(customer_view(&e).is_none());
        assert_eq!(
            tags_for(&e).last().map(String::as_str),
            Some(TAG_SUBSCRIPTION_EVENTS)
        );
    }
}
