//! `billsync replay` (the real binary): a time range of the events stream goes again to one
//! destination, which applies it even though it already had; nothing outside the range is
//! sent, and no other destination sees anything.

use crate::operator_api::{delete_ac_contact, send, stored_at, stream_messages, WAIT};
use billsync_e2e::{billsync_binary, eventually, Stack, StackOptions};
use billsync_sandbox::stripe;
use tokio::process::Command;

const CUSTOMERS: [(&str, &str, &str); 4] = [
    ("cus_RPA", "replay.a@example.com", "Ann Before"),
    ("cus_RPB", "replay.b@example.com", "Ben Inside"),
    ("cus_RPC", "replay.c@example.com", "Cat Inside"),
    ("cus_RPD", "replay.d@example.com", "Dan After"),
];

/// Runs the binary without blocking this test's runtime, where the stack's worker runs.
async fn run_replay(config: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(billsync_binary())
        .arg("--config")
        .arg(config)
        .arg("replay")
        .args(args)
        .output()
        .await
        .expect("run billsync replay");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "billsync replay failed: {stdout}\n{stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_re_applies_exactly_the_events_of_a_time_range_to_one_destination() {
    let stack = Stack::start(StackOptions {
        extra_activecampaign: vec!["ac-other".into()],
        ..StackOptions::default()
    })
    .await;
    let (other_account, _) = stack.ac_account_of("ac-other");
    let mut events = Vec::new();
    for (id, email, name) in CUSTOMERS {
        let event = stripe::customer_created_event(id, email, name);
        send(&stack, &event).await;
        events.push(event);
    }
    eventually("all four records in both CRMs", WAIT, || async {
        let ours = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        let other = stack.sandbox.activecampaign.snapshot(&other_account);
        let done = CUSTOMERS.iter().all(|(_, email, _)| {
            ours.contact_by_email(email).is_some() && other.contact_by_email(email).is_some()
        });
        (done && stack.worker_idle_for("ac-test").await && stack.worker_idle_for("ac-other").await)
            .then_some(())
    })
    .await;
    assert_eq!(stack.events_in_stream().await, 4);

    // The range: from the moment the second event entered the stream, up to (not including)
    // the fourth's.
    let events_stream = stack.topology().events_stream();
    let since = stored_at(&stack, &events_stream, 2).await;
    let until = stored_at(&stack, &events_stream, 4).await;

    // Someone wipes every contact in the first CRM.
    for (_, email, _) in CUSTOMERS {
        delete_ac_contact(&stack, "ac-test", email).await;
    }
    let other_before = stack.sandbox.activecampaign.snapshot(&other_account);
    let other_requests = stack.sandbox.activecampaign.request_count(&other_account);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = stack.write_config(dir.path());
    let args = [
        "--destination",
        "ac-test",
        "--since",
        since.as_str(),
        "--until",
        until.as_str(),
    ];
    let summary = run_replay(&config, &args).await;
    assert!(
        summary.contains("Replayed 2 event(s) to ac-test from stripe-test"),
        "{summary}"
    );
    assert!(summary.contains("stream sequences 2–3"), "{summary}");

    // The two events of the range are applied again although the worker had applied them.
    eventually("the replayed records back in the CRM", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        let back = ["replay.b@example.com", "replay.c@example.com"]
            .iter()
            .all(|email| snapshot.contact_by_email(email).is_some());
        (back && stack.worker_idle_for("ac-test").await).then_some(())
    })
    .await;
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let mut emails: Vec<&str> = snapshot.contacts.iter().map(|c| c.email.as_str()).collect();
    emails.sort();
    assert_eq!(
        emails,
        vec!["replay.b@example.com", "replay.c@example.com"],
        "events outside the range came back"
    );

    // Exactly the range went out, to ac-test only.
    let topology = stack.topology();
    let replayed = stream_messages(
        &stack,
        &topology.replay_stream(),
        &topology.replay_subjects(),
    )
    .await;
    let sent: Vec<(String, String)> = replayed
        .iter()
        .map(|(subject, event)| {
            (
                subject.clone(),
                event["id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let to_ac_test = topology.replay_subject("ac-test");
    assert_eq!(
        sent,
        vec![
            (
                to_ac_test.clone(),
                events[1]["id"].as_str().expect("id").to_string()
            ),
            (
                to_ac_test.clone(),
                events[2]["id"].as_str().expect("id").to_string()
            ),
        ]
    );
    assert_eq!(
        stack.sandbox.activecampaign.snapshot(&other_account),
        other_before
    );
    assert_eq!(
        stack.sandbox.activecampaign.request_count(&other_account),
        other_requests
    );

    // The same command again (say, after an interruption) sends nothing twice.
    let again = run_replay(&config, &args).await;
    assert!(again.contains("Replayed 0 event(s)"), "{again}");
    assert!(again.contains("2 already sent"), "{again}");
    let replayed = stream_messages(
        &stack,
        &topology.replay_stream(),
        &topology.replay_subjects(),
    )
    .await;
    assert_eq!(replayed.len(), 2);

    // A replay of one source connection to a destination it does not feed is refused.
    let output = Command::new(billsync_binary())
        .arg("--config")
        .arg(&config)
        .args([
            "replay",
            "--destination",
            "ac-test",
            "--connection",
            "stripe-nope",
        ])
        .args(["--since", since.as_str()])
        .output()
        .await
        .expect("run billsync replay");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("source connection \"stripe-nope\" does not sync to \"ac-test\""),
        "{stderr}"
    );
    stack.stop().await;
}

/// `--since 1h` run twice is one replay: the second run resends nothing the first sent,
/// although "1h" resolves to a later instant each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_replay_run_again_sends_nothing_twice() {
    let stack = Stack::start(StackOptions::default()).await;
    for (id, email, name) in &CUSTOMERS[..2] {
        send(&stack, &stripe::customer_created_event(id, email, name)).await;
    }
    eventually("both contacts written", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        let done = CUSTOMERS[..2]
            .iter()
            .all(|(_, email, _)| snapshot.contact_by_email(email).is_some());
        (done && stack.worker_idle_for("ac-test").await).then_some(())
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = stack.write_config(dir.path());
    let args = ["--destination", "ac-test", "--since", "1h", "--quiet"];
    let first = run_replay(&config, &args).await;
    assert!(first.contains("Replayed 2 event(s) to ac-test"), "{first}");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let again = run_replay(&config, &args).await;
    assert!(again.contains("Replayed 0 event(s) to ac-test"), "{again}");
    assert!(
        again.contains("2 event(s) were already sent by an earlier run of this replay"),
        "{again}"
    );
    stack.stop().await;
}
