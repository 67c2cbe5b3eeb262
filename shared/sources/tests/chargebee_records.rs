//! What a destination keeps of a Chargebee customer in NATS KV, against a real NATS server.

use async_nats::jetstream;
use billsync_bus::{StreamSettings, Topology};
use billsync_events::{BillingEventV1, DestinationKind, ObjectKind, RecordVersion, SourceKind};
use billsync_sources::chargebee::{customer_of, CustomerSubscriptions};
use billsync_worker::RecordStore;
use serde_json::{json, Value};
use std::time::Duration;

fn event(event_type: &str, object: ObjectKind, data: Value, customer: Value) -> BillingEventV1 {
    BillingEventV1 {
        id: format!("ev_{event_type}"),
        source: SourceKind::Chargebee,
        connection: "cb".into(),
        event_type: event_type.into(),
        object,
        object_id: data["id"].as_str().unwrap_or("x").into(),
        customer_id: Some("cust_1".into()),
        occurred_at: chrono::Utc::now(),
        version: RecordVersion {
            position: 1,
            event_id: format!("ev_{event_type}"),
            sequence: None,
        },
        run_id: None,
        data,
        related: json!({ "customer": customer }),
    }
}

#[tokio::test]
async fn the_newest_copies_are_kept_per_destination_connection_and_late_ones_write_nothing() {
    let url =
        std::env::var("BILLSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = billsync_bus::connect(&url, "billsync-sources-test")
        .await
        .expect("NATS must run on 127.0.0.1:4222 (make services)");
    let js = jetstream::new(client);
    let prefix = format!("src{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let topology = Topology::new(&prefix);
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(60),
        replicas: 1,
        retention: Duration::from_secs(3600),
    };
    let bucket = topology.links_bucket();
    let kv = topology
        .ensure_bucket(&js, bucket.clone(), &settings, Duration::ZERO)
        .await
        .expect("bucket");
    let records = RecordStore::new(kv.clone(), DestinationKind::Zoho, "crm");
    let other = RecordStore::new(kv, DestinationKind::Pipedrive, "crm");
    let record = "chargebee/cb/subscriptions/cust_1";

    let new = json!({"id": "cust_1", "email": "new@x.io", "resource_version": 2});
    let old = json!({"id": "cust_1", "email": "old@x.io", "resource_version": 1});
    let subscription = json!({"id": "sub_1", "status": "active", "resource_version": 1});
    let changed = event(
        "customer_changed",
        ObjectKind::Customer,
        new.clone(),
        Value::Null,
    );
    let seen = CustomerSubscriptions::observe(&records, &changed, "cust_1", &new)
        .await
        .expect("observed");
    assert_eq!(seen.customer(), Some(&new));
    let saved = records
        .load::<CustomerSubscriptions>(record)
        .await
        .expect("load");
    assert_eq!(saved.value.as_ref(), Some(&seen));

    // A subscription event replayed late carries the older customer copy: its subscription
    // is recorded, the customer stays the newest one.
    let late = event(
        "subscription_created",
        ObjectKind::Subscription,
        subscription.clone(),
        old.clone(),
    );
    let copy = customer_of(&late).expect("the customer beside the subscription");
    let seen = CustomerSubscriptions::observe(&records, &late, "cust_1", copy)
        .await
        .expect("observed");
    assert_eq!(seen.customer(), Some(&new));
    assert_eq!(seen.chosen(), Some(&subscription));
    let after_late = records
        .load::<CustomerSubscriptions>(record)
        .await
        .expect("load");
    assert_eq!(after_late.value.as_ref(), Some(&seen));
    assert!(after_late.revision > saved.revision);

    // The same event again changes nothing, so nothing is written.
    CustomerSubscriptions::observe(&records, &late, "cust_1", copy)
        .await
        .expect("observed");
    let again = records
        .load::<CustomerSubscriptions>(record)
        .await
        .expect("load");
    assert_eq!(again.revision, after_late.revision);

    // Another destination connection keeps its own record.
    let theirs = CustomerSubscriptions::observe(&other, &late, "cust_1", copy)
        .await
        .expect("observed");
    assert_eq!(theirs.customer(), Some(&old));

    let _ = js.delete_key_value(bucket).await;
}
