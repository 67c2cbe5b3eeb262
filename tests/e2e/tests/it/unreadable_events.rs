//! A message on the events stream that the worker cannot read (a newer schema during a
//! rolling upgrade, or garbage) is not dropped: it becomes a sync error the operator sees,
//! keeps what the message said, and a retry reads the message again.

use crate::operator_api::{api_get, api_post, outcomes_of, send, wait_failure, WAIT};
use billsync_bus::topology::{HEADER_MSG_ID, HEADER_REPLAY};
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::stripe;
use serde_json::{json, Value};
use std::time::Duration;

/// Publishes `payload` on the events subject of a `stripe-test` customer event, as a newer
/// ingest would, and returns its sequence in the events stream.
async fn publish_raw(stack: &Stack, msg_id: &str, payload: Vec<u8>) -> u64 {
    let Some(billsync_config::ConnectionKind::Source(kind)) =
        stack.config.connection_kind(&stack.stripe_connection)
    else {
        panic!("{} is a source connection", stack.stripe_connection);
    };
    let subject = stack
        .topology()
        .source_events_subjects(kind, &stack.stripe_connection)
        .replace('>', "customer.customer.updated");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HEADER_MSG_ID, msg_id);
    let ack = stack
        .jetstream()
        .publish_with_headers(subject, headers, payload.into())
        .await
        .expect("publish")
        .await
        .expect("stored in the events stream");
    ack.sequence
}

/// The failure row `id` with its stored event.
async fn failure(stack: &Stack, id: &Value) -> Value {
    api_get(stack, &format!("/api/v1/failures/{id}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_is_a_sync_error_and_a_retry_reads_it_again() {
    let stack = Stack::start(StackOptions::default()).await;
    // A billing event of a schema this worker does not know.
    let future = json!({
        "schema": "billing_event.v2",
        "id": "evt_from_the_future",
        "source": "stripe",
        "connection": stack.stripe_connection,
        "event_type": "customer.updated",
        "customer": {"id": "cus_FUT1", "email": "fay.future@example.com"},
    });
    let sequence = publish_raw(
        &stack,
        "evt_from_the_future",
        serde_json::to_vec(&future).expect("JSON"),
    )
    .await;
    let record = format!("other/unreadable-events-{sequence}");
    let row = wait_failure(&stack, "open", "ac-test", &record).await;
    assert_eq!(row["error_class"], "invalid_event", "{row}");
    assert_eq!(row["source"], "stripe");
    assert_eq!(row["source_connection"], stack.stripe_connection);
    assert_eq!(row["event_id"], "evt_from_the_future");
    assert_eq!(row["event_type"], "billsync.unreadable_message");
    let message = row["message"].as_str().expect("message");
    for words in [
        &format!("message {sequence} of stream"),
        "unknown variant `billing_event.v2`",
        "retry this failure",
    ] {
        assert!(message.contains(words), "{words:?} in {message}");
    }
    // What the message said is kept for the operator.
    let detail = failure(&stack, &row["id"]).await;
    let kept = &detail["event"]["data"]["unreadable"];
    assert_eq!(kept["stream_sequence"], sequence, "{detail}");
    assert_eq!(kept["payload_truncated"], false);
    let payload: Value =
        serde_json::from_str(kept["payload"].as_str().expect("payload text")).expect("JSON");
    assert_eq!(payload, future);
    // Settled: acked once the failure was recorded, not left to be redelivered.
    eventually("the worker to settle", WAIT, || async {
        stack.worker_idle().await.then_some(())
    })
    .await;

    // Garbage too, and too long to keep whole.
    let mut garbage = vec![0xff, 0xfe];
    garbage.extend(std::iter::repeat_n(b'x', 40_000));
    let garbage_sequence = publish_raw(&stack, "not-json-1", garbage).await;
    let garbage_row = wait_failure(
        &stack,
        "open",
        "ac-test",
        &format!("other/unreadable-events-{garbage_sequence}"),
    )
    .await;
    let kept = failure(&stack, &garbage_row["id"]).await["event"]["data"]["unreadable"].clone();
    assert_eq!(kept["payload_truncated"], true, "{kept}");
    assert_eq!(kept["payload_bytes"], 40_002);
    assert!(kept["payload"].as_str().expect("text").len() <= 16 * 1024 + 8);

    // The operator retries before upgrading: the worker reads the message again, still
    // cannot, and the failure stays open, counted again. Nothing reaches the CRM.
    let answer = api_post(
        &stack,
        &format!("/api/v1/failures/{}/retry", row["id"]),
        json!({}),
    )
    .await;
    assert_eq!(answer, json!({"retried": 1}));
    eventually("the retry to fail again", WAIT, || async {
        let again = failure(&stack, &row["id"]).await;
        (again["count"] == 2 && again["status"] == "open").then_some(())
    })
    .await;
    eventually("the worker to settle", WAIT, || async {
        stack.worker_idle_for("ac-test").await.then_some(())
    })
    .await;
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert!(snapshot.contacts.is_empty(), "{:?}", snapshot.contacts);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_message_that_reads_now_is_applied_and_its_failure_resolves() {
    let stack = Stack::start(StackOptions::default()).await;
    let sequence = publish_raw(&stack, "not-json-2", b"{not json".to_vec()).await;
    let record = format!("other/unreadable-events-{sequence}");
    let row = wait_failure(&stack, "open", "ac-test", &record).await;

    // A readable event, applied live.
    let created = stripe::customer_created_event("cus_RDA1", "reda.readable@example.com", "Reda");
    send(&stack, &created).await;
    let event_id = created["id"].as_str().expect("id").to_string();
    let readable_sequence = stack.events_in_stream().await;
    eventually("the live event's outcome", WAIT, || async {
        (outcomes_of(&stack, &event_id).await.len() == 1).then_some(())
    })
    .await;

    // A worker that reads message `sequence` now is what an upgrade brings; this worker
    // cannot be upgraded mid-test, so the retried stand-in points at the readable message
    // instead. The worker must read it from the stream, apply it, and resolve the failure.
    let mut stand_in = failure(&stack, &row["id"]).await["event"].clone();
    stand_in["data"]["unreadable"]["stream_sequence"] = json!(readable_sequence);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(HEADER_REPLAY, "true");
    let publisher =
        billsync_bus::Publisher::new(stack.jetstream(), stack.topology(), Duration::from_secs(10));
    publisher
        .publish(
            stack.topology().replay_subject("ac-test"),
            "retry-of-an-unreadable-message",
            serde_json::to_vec(&stand_in).expect("JSON").into(),
            headers,
        )
        .await
        .expect("replay published");

    let outcomes = eventually("the re-read event applied", WAIT, || async {
        let outcomes = outcomes_of(&stack, &event_id).await;
        (outcomes.len() == 2).then_some(outcomes)
    })
    .await;
    assert!(
        outcomes
            .iter()
            .all(|o| o["result"]["status"] == "synced" && o["record_key"] == "customer/cus_RDA1"),
        "{outcomes:?}"
    );
    let resolved = wait_failure(&stack, "resolved", "ac-test", &record).await;
    assert_eq!(resolved["id"], row["id"]);
    stack.stop().await;
}

/// A Chargebee event the poller cannot read (here a customer without its id) does not
/// vanish while the cursor moves on: it becomes a sync error of each destination keeping
/// what Chargebee sent, and the events after it are carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chargebee_event_the_poller_cannot_read_is_a_sync_error_and_polling_goes_on() {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        ..StackOptions::default()
    })
    .await;
    // The first poll sets the cursor: events from then on are carried.
    assert!(stack.sync_now("cb-test").await.status().is_success());
    let chargebee = &stack.sandbox.chargebee;
    let bad = chargebee
        .raise_event(
            &stack.chargebee_site,
            "customer_changed",
            json!({"customer": {"email": "no.id@example.com", "first_name": "Nobody"}}),
        )
        .expect("an event");
    chargebee
        .create_customer(
            &stack.chargebee_site,
            billsync_sandbox::CbCustomerInput {
                id: Some("cb_after_bad".into()),
                first_name: Some("Alice".into()),
                last_name: Some("After".into()),
                email: Some("alice.after@example.com".into()),
                ..Default::default()
            },
        )
        .expect("a customer");
    assert!(stack.sync_now("cb-test").await.status().is_success());

    eventually("the customer after the unreadable event", WAIT, || async {
        stack
            .sandbox
            .activecampaign
            .snapshot(&stack.ac_account)
            .contact_by_email("alice.after@example.com")
            .map(|_| ())
    })
    .await;
    let event_id = format!("unreadable:{}", bad.id);
    let row = eventually("a sync error for the unreadable event", WAIT, || async {
        let list = api_get(&stack, "/api/v1/failures?status=open&limit=500").await;
        list["items"]
            .as_array()?
            .iter()
            .find(|row| row["event_id"] == event_id.as_str())
            .cloned()
    })
    .await;
    assert_eq!(row["source"], "chargebee", "{row}");
    assert_eq!(row["source_connection"], "cb-test");
    assert_eq!(row["destination_connection"], "ac-test");
    assert_eq!(row["error_class"], "invalid_event");
    let detail = failure(&stack, &row["id"]).await;
    let kept = &detail["event"]["data"]["unreadable"];
    let payload: Value =
        serde_json::from_str(kept["payload"].as_str().expect("payload text")).expect("JSON");
    assert_eq!(payload["id"], bad.id.as_str(), "{payload}");
    assert_eq!(payload["content"]["customer"]["first_name"], "Nobody");
    stack.stop().await;
}
