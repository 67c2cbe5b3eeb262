//! Many new customers at once reach ActiveCampaign (at its 5 requests/s) through its bulk
//! importer: a refused contact fails alone, with ActiveCampaign's reason, and a worker
//! killed while its import runs leaves no contact doubled.

use crate::operator_api::{api_get, wait_failure};
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{stripe, AcFaults, AcSnapshot};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn email(i: usize) -> String {
    format!("bulk{i:02}@example.com")
}

/// Sends `customer.created` of `count` new customers at once, as a burst (an import of
/// existing customers, a migration) delivers them.
async fn burst(stack: &Stack, count: usize, email_of: impl Fn(usize) -> String) {
    let sends = (0..count).map(|i| {
        let event =
            stripe::customer_created_event(&format!("cus_BULK{i:02}"), &email_of(i), "Bo Bulk");
        async move {
            let response = stack.send_stripe(&event).await;
            assert_eq!(response.status(), 200, "webhook of customer {i}");
        }
    });
    futures::future::join_all(sends).await;
}

/// Each customer's contact exists once, with its name and the integration's tags.
fn assert_written(snapshot: &AcSnapshot, emails: &[String]) {
    for email in emails {
        let matching: Vec<_> = snapshot
            .contacts
            .iter()
            .filter(|c| c.email.eq_ignore_ascii_case(email))
            .collect();
        assert_eq!(matching.len(), 1, "contacts of {email}");
        let contact = matching[0];
        assert_eq!(
            (contact.first_name.as_str(), contact.last_name.as_str()),
            ("Bo", "Bulk")
        );
        let mut tags = snapshot.tags_of(&contact.id);
        tags.sort();
        assert_eq!(
            tags,
            ["stripe-integration", "stripe-integration-customer.created"],
            "tags of {email}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_contact_in_a_bulk_import_fails_alone_and_the_others_are_written() {
    let stack = Stack::start(StackOptions {
        ac_requests_per_second: 5,
        ..Default::default()
    })
    .await;
    let refused = email(7);
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            reject_emails: vec![refused.clone()],
            ..Default::default()
        },
    );
    burst(&stack, 30, email).await;

    let failure = wait_failure(&stack, "open", "ac-test", "customer/cus_BULK07").await;
    let others: Vec<String> = (0..30).filter(|i| *i != 7).map(email).collect();
    let snapshot = eventually("the 29 other contacts", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        others
            .iter()
            .all(|e| snapshot.contact_by_email(e).is_some())
            .then_some(snapshot)
    })
    .await;
    assert_written(&snapshot, &others);
    assert!(snapshot.contact_by_email(&refused).is_none());

    // The burst went through the importer, which refused the one contact...
    let imported: Vec<_> = snapshot
        .bulk_imports
        .iter()
        .filter(|b| b.completed && b.queued_contacts >= 10)
        .collect();
    assert!(
        !imported.is_empty(),
        "no bulk import: {:?}",
        snapshot.bulk_imports
    );
    assert!(
        imported.iter().any(|b| b.failure.contains(&refused)),
        "the importer never saw the refused contact: {imported:?}"
    );
    // ...and its single write then gave ActiveCampaign's reason, in one failure row.
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(message.contains("ActiveCampaign"), "{failure}");
    let open = api_get(&stack, "/api/v1/failures?status=open&limit=500").await;
    assert_eq!(
        open["items"].as_array().map(Vec::len),
        Some(1),
        "one failure row: {open}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_a_bulk_import_leaves_every_contact_once() {
    let stack = Stack::start(StackOptions {
        ac_requests_per_second: 5,
        worker_process: true,
        ac_bulk_import_delay: Some(Duration::from_secs(4)),
        ..Default::default()
    })
    .await;
    let emails: Vec<String> = (0..40).map(email).collect();
    burst(&stack, emails.len(), email).await;
    eventually("a bulk import queued", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        snapshot
            .bulk_imports
            .iter()
            .any(|b| !b.completed)
            .then_some(())
    })
    .await;
    // While the importer works, the worker dies holding every event unacked.
    stack.kill_worker().await;
    stack.start_worker();

    let snapshot = eventually("every contact, and nothing left to do", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        let all = emails
            .iter()
            .all(|e| snapshot.contact_by_email(e).is_some());
        (all && stack.worker_idle().await).then_some(snapshot)
    })
    .await;
    assert_written(&snapshot, &emails);
    assert_eq!(
        snapshot.contacts.len(),
        emails.len(),
        "a contact was doubled"
    );
    assert!(
        snapshot.bulk_imports.len() >= 2,
        "the redelivered events were imported again: {:?}",
        snapshot.bulk_imports
    );
    let open = api_get(&stack, "/api/v1/failures?status=open&limit=500").await;
    assert_eq!(open["items"].as_array().map(Vec::len), Some(0), "{open}");
    stack.stop().await;
}
