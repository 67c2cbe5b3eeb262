//! The operator's sync errors, end to end: ignoring a record holds it back until it changes
//! in Stripe (seed 004), and a retry goes to the one destination that failed.

use crate::operator_api::{
    api_csv, api_get, api_post, delete_ac_contact, ignore_failure, outcomes_of, send,
    send_refused_customer, stream_messages, stripe_event, wait_failure, WAIT,
};
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{stripe, AcFaults};
use serde_json::json;

/// The ignores-bucket key of a Stripe customer at `ac-test`
/// (`Topology::record_kv_key(destination, connection, "{source}/{connection}/{object}/{id}")`).
fn ignore_key(customer: &str) -> String {
    format!("activecampaign.ac-test.stripe/stripe-test/customer/{customer}")
}

async fn ignore_entry(stack: &Stack, customer: &str) -> Option<serde_json::Value> {
    let store = stack
        .jetstream()
        .get_key_value(stack.topology().ignores_bucket())
        .await
        .expect("ignores bucket");
    let bytes = store.get(ignore_key(customer)).await.expect("KV read")?;
    Some(serde_json::from_slice(&bytes).expect("JSON entry"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_record_does_not_sync_again_until_it_changes() {
    let stack = Stack::start(StackOptions::default()).await;
    let email = "ida.ignored@example.com";
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            reject_emails: vec![email.into()],
            ..Default::default()
        },
    );
    let created = stripe::customer_created_event("cus_IGN1", email, "Ida Ignored");
    let created_at = created["created"].as_i64().expect("created");
    send(&stack, &created).await;
    let failure = wait_failure(&stack, "open", "ac-test", "customer/cus_IGN1").await;

    // The operator ignores it: it leaves the list, and the worker is told.
    let ignored = ignore_failure(&stack, &failure).await;
    assert_eq!(ignored["status"], "ignored");
    let listed = api_get(&stack, "/api/v1/failures").await;
    assert_eq!(
        listed["items"],
        json!([]),
        "ignored failures leave the list"
    );
    let entry = ignore_entry(&stack, "cus_IGN1")
        .await
        .expect("the ignore is in the ignores bucket");
    assert_eq!(entry["version"]["event_id"], created["id"]);

    // From here on ActiveCampaign would take the record: only the ignore keeps it out.
    stack
        .sandbox
        .activecampaign
        .set_faults(&stack.ac_account, AcFaults::default());

    // A later event about the unchanged record (same data) is skipped.
    let unchanged = stripe_event(
        "customer.updated",
        &created["data"]["object"],
        created_at + 1,
    );
    send(&stack, &unchanged).await;
    let skipped = eventually(
        "the unchanged record's event to be skipped",
        WAIT,
        || async {
            outcomes_of(&stack, unchanged["id"].as_str()?)
                .await
                .into_iter()
                .next()
        },
    )
    .await;
    assert_eq!(skipped["result"]["status"], "skipped", "{skipped}");
    assert_eq!(skipped["result"]["reason"], "ignored by operator");
    eventually("the worker to settle", WAIT, || async {
        stack.worker_idle().await.then_some(())
    })
    .await;
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert!(
        snapshot.contact_by_email(email).is_none(),
        "an ignored, unchanged record reached the CRM: {:?}",
        snapshot.contacts
    );
    let row = api_get(&stack, &format!("/api/v1/failures/{}", failure["id"])).await;
    assert_eq!(row["status"], "ignored");
    assert!(ignore_entry(&stack, "cus_IGN1").await.is_some());

    // The record changes in Stripe: the event syncs it and the ignore lifts itself.
    let mut modified = created["data"]["object"].clone();
    modified["name"] = json!("Ida Modified");
    let changed = stripe_event("customer.updated", &modified, created_at + 2);
    send(&stack, &changed).await;
    let contact = eventually("the modified record in the CRM", WAIT, || async {
        stack
            .sandbox
            .activecampaign
            .snapshot(&stack.ac_account)
            .contact_by_email(email)
            .cloned()
    })
    .await;
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("Ida", "Modified")
    );
    assert_eq!(
        ignore_entry(&stack, "cus_IGN1").await,
        None,
        "the ignore was lifted"
    );
    let resolved = wait_failure(&stack, "resolved", "ac-test", "customer/cus_IGN1").await;
    assert_eq!(resolved["id"], failure["id"]);

    // Lifted for good: the next event of the record syncs as usual.
    let mut again = modified.clone();
    again["name"] = json!("Ida Again");
    send(
        &stack,
        &stripe_event("customer.updated", &again, created_at + 3),
    )
    .await;
    eventually("the next change in the CRM", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        (snapshot.contact_by_email(email)?.last_name == "Again").then_some(())
    })
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_reaches_only_the_destination_that_failed() {
    let stack = Stack::start(StackOptions {
        extra_activecampaign: vec!["ac-second".into()],
        ..StackOptions::default()
    })
    .await;
    let (second_account, _) = stack.ac_account_of("ac-second");
    let email = "rita.retry@example.com";
    // Only the first CRM refuses the record; the second takes it.
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            reject_emails: vec![email.into()],
            ..Default::default()
        },
    );
    send(
        &stack,
        &stripe::customer_created_event("cus_RTY1", email, "Rita Retry"),
    )
    .await;
    let failure = wait_failure(&stack, "open", "ac-test", "customer/cus_RTY1").await;
    eventually("the record in the second CRM", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&second_account);
        let contact = snapshot.contact_by_email(email)?;
        (snapshot.tags_of(&contact.id).len() == 2).then_some(())
    })
    .await;
    eventually("both workers to settle", WAIT, || async {
        (stack.worker_idle_for("ac-test").await && stack.worker_idle_for("ac-second").await)
            .then_some(())
    })
    .await;
    // Someone deletes the contact in the second CRM: a retry reaching it would bring it back.
    delete_ac_contact(&stack, "ac-second", email).await;
    let second_before = stack.sandbox.activecampaign.snapshot(&second_account);
    let second_requests = stack.sandbox.activecampaign.request_count(&second_account);

    // The first CRM is fixed; the operator retries the failure.
    stack
        .sandbox
        .activecampaign
        .set_faults(&stack.ac_account, AcFaults::default());
    let answer = api_post(
        &stack,
        &format!("/api/v1/failures/{}/retry", failure["id"]),
        json!({}),
    )
    .await;
    assert_eq!(answer, json!({"retried": 1}));

    let contact = eventually("the retried record in the failing CRM", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        let contact = snapshot.contact_by_email(email)?.clone();
        (snapshot.tags_of(&contact.id).len() == 2).then_some(contact)
    })
    .await;
    assert_eq!(contact.last_name, "Retry");
    let resolved = wait_failure(&stack, "resolved", "ac-test", "customer/cus_RTY1").await;
    assert_eq!(resolved["id"], failure["id"]);
    eventually("both workers to settle", WAIT, || async {
        (stack.worker_idle_for("ac-test").await && stack.worker_idle_for("ac-second").await)
            .then_some(())
    })
    .await;

    // The second CRM saw nothing of it.
    let second_after = stack.sandbox.activecampaign.snapshot(&second_account);
    assert_eq!(second_after, second_before);
    assert!(second_after.contact_by_email(email).is_none());
    assert_eq!(
        stack.sandbox.activecampaign.request_count(&second_account),
        second_requests,
        "the retry made requests to the second CRM"
    );
    let topology = stack.topology();
    let replays = stream_messages(
        &stack,
        &topology.replay_stream(),
        &topology.replay_subjects(),
    )
    .await;
    let subjects: Vec<&str> = replays.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(subjects, vec![topology.replay_subject("ac-test").as_str()]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_deployments_sharing_one_database_keep_their_own_errors() {
    let first = Stack::start(StackOptions::default()).await;
    let second = Stack::start(StackOptions {
        shared_database: Some(first.db.clone()),
        ..StackOptions::default()
    })
    .await;
    assert_ne!(first.prefix, second.prefix);
    for (stack, customer, email) in [
        (&first, "cus_DEP1", "first.deployment@example.com"),
        (&second, "cus_DEP2", "second.deployment@example.com"),
    ] {
        send_refused_customer(stack, customer, email, "Dep Loyment").await;
    }
    let mine = wait_failure(&first, "open", "ac-test", "customer/cus_DEP1").await;
    let theirs = wait_failure(&second, "open", "ac-test", "customer/cus_DEP2").await;

    // Each deployment lists, counts, exports and acts on its own failures only.
    for (stack, own) in [
        (&first, "customer/cus_DEP1"),
        (&second, "customer/cus_DEP2"),
    ] {
        let listed = api_get(stack, "/api/v1/failures").await;
        let keys: Vec<&str> = listed["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|row| row["record_key"].as_str())
            .collect();
        assert_eq!(keys, vec![own], "{} lists {listed}", stack.prefix);
        let summary = api_get(stack, "/api/v1/failures/summary").await;
        assert_eq!(summary["items"][0]["open"], 1, "{summary}");
        let csv = api_csv(stack).await;
        assert_eq!(csv.matches("customer/cus_DEP").count(), 1, "{csv}");
    }
    let other = second
        .http
        .get(format!(
            "{}/api/v1/failures/{}",
            second.errors_url, mine["id"]
        ))
        .bearer_auth(&second.admin_token)
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 404, "a deployment sees another's failure");
    let ignored = api_post(&second, "/api/v1/failures/ignore", json!({})).await;
    assert_eq!(ignored["ignored"], 1);
    let row = api_get(&first, &format!("/api/v1/failures/{}", mine["id"])).await;
    assert_eq!(
        row["status"], "open",
        "another deployment's ignore reached it"
    );
    let row = api_get(&second, &format!("/api/v1/failures/{}", theirs["id"])).await;
    assert_eq!(row["status"], "ignored");
    second.stop().await;
    first.stop().await;
}
