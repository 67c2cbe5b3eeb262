//! Chargebee customers as events reveal them: the newest copy of the customer by
//! `resource_version`, its subscriptions and the one a CRM shows when there are several,
//! and deletions that later copies cannot undo.
//!
//! Every Chargebee event carries the customer as it was when the event happened, so a
//! subscription event retried or replayed after a newer customer event carries an older
//! email and name. A destination writes from the newest copy seen, whichever event
//! triggers the write, and keeps what it has seen in its [`RecordStore`].

use billsync_events::{BillingEventV1, ObjectKind};
use billsync_mapping::Mapping;
use billsync_worker::{DeliveryError, RecordStore};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The fields of [`view`]: the paths a mapping over it starts with.
pub const VIEW_ROOTS: &[&str] = &["customer", SUBSCRIPTION_ROOT];

/// The root of the fields [`view`] reads from the subscription shown.
const SUBSCRIPTION_ROOT: &str = "subscription";

/// What billsync has seen of one Chargebee customer: the newest copy of the customer, and
/// its subscriptions, to pick the one a CRM shows ([`CustomerSubscriptions::chosen`]).
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
    /// What `records` holds of customer `customer_id`, updated with `event`'s copies (where
    /// they are newer) and saved when they changed it. `customer` is the event's copy of the
    /// customer ([`customer_of`]).
    pub async fn observe(
        records: &RecordStore,
        event: &BillingEventV1,
        customer_id: &str,
        customer: &Value,
    ) -> Result<CustomerSubscriptions, DeliveryError> {
        let record = format!("chargebee/{}/subscriptions/{customer_id}", event.connection);
        let stored: Option<CustomerSubscriptions> = records.get(&record).await?;
        let mut seen = stored.clone().unwrap_or_default();
        seen.record_event(event, customer);
        if stored.as_ref() != Some(&seen) {
            records.put(&record, &seen).await?;
        }
        Ok(seen)
    }

    /// Records the copies `event` carries: `customer`, its copy of the customer (deleted by
    /// a `customer_deleted` event), and the subscription of a subscription event.
    pub fn record_event(&mut self, event: &BillingEventV1, customer: &Value) {
        self.record_customer(customer, is_deletion(event));
        if event.object == ObjectKind::Subscription {
            self.record(&event.data, event.event_type == "subscription_deleted");
        }
    }

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

    /// The fields `mapping` gives the record of `customer` (the newest copy, or a copy the
    /// destination amended): the customer with the [`chosen`](Self::chosen) subscription.
    ///
    /// The fields read from the subscription describe exactly one subscription. Once the
    /// customer has had one, a field the chosen subscription has no value for comes out as
    /// `null`, which a destination writes as an empty value: a cancellation reason of another,
    /// cancelled subscription must not stay on the record beside the active one's id. A
    /// customer who never had a subscription gets no such fields at all.
    pub fn fields(&self, mapping: &Mapping, customer: &Value) -> BTreeMap<String, Value> {
        let mut fields = mapping.apply(&view(customer, self.chosen()));
        if !self.subscriptions.is_empty() {
            for (field, path) in mapping.source_paths() {
                let root = path.split('.').next().unwrap_or(path);
                if root == SUBSCRIPTION_ROOT {
                    fields.entry(field.to_string()).or_insert(Value::Null);
                }
            }
        }
        fields
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

/// The object a customer mapping reads: `{customer, subscription}` ([`VIEW_ROOTS`]).
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

/// Events of gift subscriptions (`gift_scheduled`, `gift_claimed`, ...): their customer is
/// the gift's purchaser, whom a destination may choose not to sync.
pub fn is_gift_event(event: &BillingEventV1) -> bool {
    event.event_type.starts_with("gift_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_events::event;
    use billsync_events::SourceKind;

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
    fn subscription_fields_describe_only_the_chosen_subscription() {
        let mapping = Mapping::parse([
            ("name", "customer.first_name"),
            ("company", "customer.company"),
            ("subscription", "subscription.id"),
            ("reason", "subscription.cancel_reason"),
            ("plan", "subscription.plan_id ?? customer.plan"),
        ])
        .expect("valid");
        let customer = json!({"id": "c", "first_name": "Ada"});
        let mut seen = CustomerSubscriptions::default();
        // No subscription yet: nothing to describe, nothing to clear.
        let fields = seen.fields(&mapping, &customer);
        assert_eq!(fields.keys().collect::<Vec<_>>(), vec!["name"]);

        seen.record(
            &json!({"id": "old", "status": "cancelled", "cancel_reason": "no_card", "plan_id": "p"}),
            false,
        );
        let fields = seen.fields(&mapping, &customer);
        assert_eq!(fields["reason"], "no_card");
        seen.record(&json!({"id": "new", "status": "active"}), false);
        let fields = seen.fields(&mapping, &customer);
        assert_eq!(fields["subscription"], "new");
        // The cancelled subscription's reason and plan are cleared, customer fields are not.
        assert_eq!(fields["reason"], Value::Null);
        assert_eq!(fields["plan"], Value::Null);
        assert!(!fields.contains_key("company"));
        assert_eq!(fields["name"], "Ada");

        // Every subscription gone: every subscription field is cleared.
        seen.record(&json!({"id": "new"}), true);
        seen.record(&json!({"id": "old"}), true);
        let fields = seen.fields(&mapping, &customer);
        assert_eq!(fields["subscription"], Value::Null);
        assert_eq!(fields["reason"], Value::Null);
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

    #[test]
    fn events_record_their_customer_and_subscription_copies() {
        let customer = json!({"id": "c", "email": "a@x.io", "resource_version": 1});
        let subscription = json!({"id": "s", "status": "active", "resource_version": 1});
        let mut seen = CustomerSubscriptions::default();
        let created = event(
            SourceKind::Chargebee,
            "subscription_created",
            ObjectKind::Subscription,
            subscription.clone(),
        );
        seen.record_event(&created, &customer);
        assert_eq!(seen.customer(), Some(&customer));
        assert_eq!(seen.chosen(), Some(&subscription));

        // A customer event records no subscription, whatever its data holds.
        let updated = event(
            SourceKind::Chargebee,
            "customer_changed",
            ObjectKind::Customer,
            json!({"id": "s2", "status": "active"}),
        );
        seen.record_event(&updated, &customer);
        assert_eq!(seen.subscriptions.len(), 1);

        let cancelled = event(
            SourceKind::Chargebee,
            "subscription_deleted",
            ObjectKind::Subscription,
            json!({"id": "s", "status": "active", "resource_version": 2}),
        );
        seen.record_event(&cancelled, &customer);
        assert!(seen.chosen().is_none());
        assert!(!seen.customer_deleted());

        let deleted = event(
            SourceKind::Chargebee,
            "customer_deleted",
            ObjectKind::Customer,
            customer.clone(),
        );
        assert!(is_deletion(&deleted));
        seen.record_event(&deleted, &customer);
        assert!(seen.customer_deleted());
    }

    #[test]
    fn the_customer_comes_from_the_event_or_beside_its_object() {
        let mut subscription = event(
            SourceKind::Chargebee,
            "subscription_changed",
            ObjectKind::Subscription,
            json!({"id": "s"}),
        );
        assert_eq!(customer_of(&subscription), None);
        subscription.related = json!({"customer": {"id": "c"}});
        assert_eq!(customer_of(&subscription), Some(&json!({"id": "c"})));
        let customer = event(
            SourceKind::Chargebee,
            "customer_changed",
            ObjectKind::Customer,
            json!({"id": "c", "email": "a@x.io"}),
        );
        assert_eq!(customer_of(&customer).unwrap()["email"], "a@x.io");
        let view = view(customer_of(&customer).unwrap(), None);
        assert_eq!(view["customer"]["email"], "a@x.io");
        assert_eq!(view["subscription"], Value::Null);
        for root in view.as_object().unwrap().keys() {
            assert!(VIEW_ROOTS.contains(&root.as_str()), "{root}");
        }
    }

    /// What a destination connection keeps of a Chargebee customer, in a real NATS KV bucket.
    #[tokio::test]
    async fn the_newest_copies_are_kept_per_destination_connection_and_late_ones_write_nothing() {
        use async_nats::jetstream;
        use billsync_bus::{StreamSettings, Topology};
        use billsync_events::DestinationKind;
        use std::time::Duration;

        let url = std::env::var("BILLSYNC_TEST_NATS_URL")
            .unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let client = billsync_bus::connect(&url, "billsync-sources-test")
            .await
            .expect("NATS must run on 127.0.0.1:4222 (make services)");
        let js = jetstream::new(client);
        let prefix = format!("src{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let settings = StreamSettings {
            duplicate_window: Duration::from_secs(60),
            replicas: 1,
            retention: Duration::from_secs(3600),
        };
        let bucket = Topology::new(&prefix).links_bucket();
        let kv = Topology::new(&prefix)
            .ensure_bucket(&js, bucket.clone(), &settings, Duration::ZERO)
            .await
            .expect("bucket");
        let records = RecordStore::new(kv.clone(), DestinationKind::Zoho, "crm");
        let other = RecordStore::new(kv, DestinationKind::Pipedrive, "crm");
        let saved = || async {
            records
                .load::<CustomerSubscriptions>("chargebee/s/subscriptions/cus_1")
                .await
                .expect("load")
        };

        let new = json!({"id": "cus_1", "email": "new@x.io", "resource_version": 2});
        let old = json!({"id": "cus_1", "email": "old@x.io", "resource_version": 1});
        let subscription = json!({"id": "sub_1", "status": "active", "resource_version": 1});
        let changed = event(
            SourceKind::Chargebee,
            "customer_changed",
            ObjectKind::Customer,
            new.clone(),
        );
        let seen = CustomerSubscriptions::observe(&records, &changed, "cus_1", &new)
            .await
            .expect("observed");
        assert_eq!(seen.customer(), Some(&new));
        let first = saved().await;
        assert_eq!(first.value.as_ref(), Some(&seen));

        // A subscription event replayed late carries the older customer copy: its
        // subscription is recorded, the customer stays the newest one.
        let mut late = event(
            SourceKind::Chargebee,
            "subscription_created",
            ObjectKind::Subscription,
            subscription.clone(),
        );
        late.related = json!({ "customer": old });
        let copy = customer_of(&late).expect("the customer beside the subscription");
        let seen = CustomerSubscriptions::observe(&records, &late, "cus_1", copy)
            .await
            .expect("observed");
        assert_eq!(seen.customer(), Some(&new));
        assert_eq!(seen.chosen(), Some(&subscription));
        let second = saved().await;
        assert_eq!(second.value.as_ref(), Some(&seen));
        assert!(second.revision > first.revision);

        // The same event again changes nothing, so nothing is written.
        CustomerSubscriptions::observe(&records, &late, "cus_1", copy)
            .await
            .expect("observed");
        assert_eq!(saved().await.revision, second.revision);

        // Another destination connection keeps its own record.
        let theirs = CustomerSubscriptions::observe(&other, &late, "cus_1", copy)
            .await
            .expect("observed");
        assert_eq!(theirs.customer(), Some(&old));

        let _ = js.delete_key_value(bucket).await;
    }
}
