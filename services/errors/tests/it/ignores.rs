//! Ignoring a failure tells the workers: the record's ignore is written to the ignores bucket
//! (what a worker checks before each delivery), and a retry lifts it again.

use crate::app::{at, customer_event, failed, spawn_app, synced, AC, CB, PD};
use billsync_bus::{data_fingerprint, ignore_key, IgnoredRecord};
use billsync_events::{DestinationKind, RecordVersion, SourceKind};
use serde_json::{json, Value};

fn key(destination: DestinationKind, connection: &str, customer: &str) -> String {
    ignore_key(
        destination,
        connection,
        SourceKind::Chargebee,
        CB,
        &format!("customer/{customer}"),
    )
}

async fn stored_ignore(
    store: &async_nats::jetstream::kv::Store,
    key: &str,
) -> Option<IgnoredRecord> {
    let bytes = store.get(key).await.expect("read the ignores bucket")?;
    Some(serde_json::from_slice(&bytes).expect("an ignore is JSON"))
}

#[tokio::test]
async fn ignoring_writes_the_ignored_event_into_the_ignores_bucket() {
    let app = spawn_app().await;
    // The data holds a secret: the row keeps it scrubbed, but the fingerprint must be of the
    // data the worker saw, or the worker would take the unchanged record for a changed one.
    let data = json!({"id": "cus_i1", "email": "i1@example.com", "note": app.secrets.pd_token});
    let event = customer_event("cus_i1", "ev_i1_7", None, data.clone());
    app.publish(&failed(PD, &event, at(1), "rejected", Value::Null))
        .await;
    for customer in ["cus_i2", "cus_i3"] {
        let other = customer_event(
            customer,
            &format!("ev_{customer}"),
            None,
            json!({"id": customer}),
        );
        app.publish(&failed(AC, &other, at(2), "rejected", Value::Null))
            .await;
    }
    let row = app
        .wait_failure("open", PD, "customer/cus_i1", |_| true)
        .await;
    app.wait_failure("open", AC, "customer/cus_i2", |_| true)
        .await;
    app.wait_failure("open", AC, "customer/cus_i3", |_| true)
        .await;
    let store = app.ignores().await;
    let pd_key = key(DestinationKind::Pipedrive, PD, "cus_i1");
    assert_eq!(stored_ignore(&store, &pd_key).await, None);

    let ignored = app
        .post_json(&format!("/api/v1/failures/{}/ignore", row["id"]), json!({}))
        .await;
    assert_eq!(ignored["status"], "ignored");
    assert_eq!(
        stored_ignore(&store, &pd_key).await,
        Some(IgnoredRecord {
            version: RecordVersion {
                position: 1,
                event_id: "ev_i1_7".into(),
                sequence: None,
            },
            fingerprint: data_fingerprint(&data),
        })
    );
    // The same record at another destination is not ignored there.
    assert_eq!(
        stored_ignore(&store, &key(DestinationKind::Activecampaign, AC, "cus_i1")).await,
        None
    );

    // Ignoring all matching writes one entry per failure ignored, and no other.
    let bulk = app
        .post_json("/api/v1/failures/ignore", json!({"connection": AC}))
        .await;
    assert_eq!(bulk, json!({"ignored": 2}));
    for customer in ["cus_i2", "cus_i3"] {
        let entry = stored_ignore(&store, &key(DestinationKind::Activecampaign, AC, customer))
            .await
            .unwrap_or_else(|| panic!("no ignore stored for {customer}"));
        assert_eq!(entry.version.event_id, format!("ev_{customer}"));
        assert_eq!(
            entry.fingerprint,
            data_fingerprint(&json!({"id": customer}))
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_resolved_failure_cannot_be_ignored() {
    let app = spawn_app().await;
    let event = customer_event("cus_rs", "ev_rs_1", None, json!({"id": "cus_rs"}));
    app.publish(&failed(AC, &event, at(1), "rejected", Value::Null))
        .await;
    app.publish(&synced(AC, &event, at(2))).await;
    let row = app
        .wait_failure("resolved", AC, "customer/cus_rs", |_| true)
        .await;
    let refused = app
        .post(&format!("/api/v1/failures/{}/ignore", row["id"]))
        .send()
        .await
        .expect("ignore");
    assert_eq!(refused.status(), 409);
    let store = app.ignores().await;
    assert_eq!(
        stored_ignore(&store, &key(DestinationKind::Activecampaign, AC, "cus_rs")).await,
        None
    );
    app.stop().await;
}

#[tokio::test]
async fn retrying_an_ignored_failure_lifts_the_ignore_first() {
    let app = spawn_app().await;
    let event = customer_event("cus_ri", "ev_ri_1", None, json!({"id": "cus_ri"}));
    app.publish(&failed(AC, &event, at(1), "rejected", Value::Null))
        .await;
    let row = app
        .wait_failure("open", AC, "customer/cus_ri", |_| true)
        .await;
    app.post_json(&format!("/api/v1/failures/{}/ignore", row["id"]), json!({}))
        .await;
    let store = app.ignores().await;
    let ac_key = key(DestinationKind::Activecampaign, AC, "cus_ri");
    assert!(stored_ignore(&store, &ac_key).await.is_some());

    let answer = app
        .post_json(&format!("/api/v1/failures/{}/retry", row["id"]), json!({}))
        .await;
    assert_eq!(answer, json!({"retried": 1}));
    // Otherwise the worker would skip the retried event as ignored.
    assert_eq!(stored_ignore(&store, &ac_key).await, None);
    let after = app
        .get_json(&format!("/api/v1/failures/{}", row["id"]))
        .await;
    assert_eq!(after["status"], "open");
    assert!(after["ignored_at"].is_null());
    let messages = crate::replayed(&app).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].0, app.topology.replay_subject(AC));
    app.stop().await;
}
