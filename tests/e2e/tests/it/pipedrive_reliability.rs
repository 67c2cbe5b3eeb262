//! Pipedrive under redelivery, replay and a crash: every event delivered twice, the whole
//! stream replayed, and the worker SIGKILLed mid-run then started again each leave the
//! emulated company exactly as the events describe — no person, organization or deal
//! missing, doubled or stale.

use crate::chargebee_to_pipedrive::{customer, deal_titled, run, subscription, sync_now};
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_ingest::chargebee::snapshot::RunScope;
use billsync_sandbox::{CbSubscriptionInput, PdEntity, PdSnapshot};
use serde_json::Value;
use std::time::Duration;

const CUSTOMERS: usize = 12;

/// Persons, organizations and deals without their timestamps, for comparing states.
fn records(snapshot: &PdSnapshot) -> Vec<Value> {
    let strip = |records: &[Value]| -> Vec<Value> {
        records
            .iter()
            .map(|r| {
                let mut r = r.clone();
                if let Some(map) = r.as_object_mut() {
                    map.remove("update_time");
                    map.remove("add_time");
                }
                r
            })
            .collect()
    };
    [
        strip(&snapshot.persons),
        strip(&snapshot.organizations),
        strip(&snapshot.deals),
    ]
    .concat()
}

/// `CUSTOMERS` customers with a subscription each (every third with the shared company),
/// synced in full.
async fn synced_in_full(stack: &Stack) {
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    for i in 0..CUSTOMERS {
        let company = if i % 3 == 0 { "Shared Org" } else { "" };
        cb.create_customer(
            site,
            customer(
                &format!("cb_{i}"),
                &format!("p{i}@example.com"),
                "P",
                &i.to_string(),
                company,
            ),
        )
        .expect("customer");
        cb.create_subscription(
            site,
            &format!("cb_{i}"),
            subscription(&format!("sub_{i}"), "active", 1_000),
        )
        .expect("subscription");
    }
    let report = run(stack, RunScope::All).await;
    assert_eq!(report.count("synced"), 2 * CUSTOMERS, "{}", report.render());
}

/// Every subscription's MRR changed live, so that every one gets its deal.
fn change_every_subscription(stack: &Stack) {
    for i in 0..CUSTOMERS {
        stack
            .sandbox
            .chargebee
            .update_subscription(
                &stack.chargebee_site,
                &format!("sub_{i}"),
                CbSubscriptionInput {
                    mrr: Some(1_000 + 100 * i as i64),
                    ..Default::default()
                },
            )
            .expect("update");
    }
}

async fn populated(stack: &Stack) {
    synced_in_full(stack).await;
    change_every_subscription(stack);
    sync_now(stack).await;
}

/// Waits until every customer's deal shows its new MRR and the worker is idle.
async fn settled(stack: &Stack) -> PdSnapshot {
    eventually(
        "every deal at its MRR and the worker idle",
        Duration::from_secs(120),
        || async {
            let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);
            let all = (0..CUSTOMERS).all(|i| {
                deal_titled(&snapshot, &format!("pro-monthly subscription sub_{i}"))
                    .is_some_and(|d| d["value"].as_f64() == Some(10.0 + i as f64))
            });
            (all && stack.worker_idle_for("pd-test").await).then_some(snapshot)
        },
    )
    .await
}

/// Exactly one person per customer, one organization, one deal per subscription.
fn assert_expected(snapshot: &PdSnapshot) {
    assert_eq!(snapshot.persons.len(), CUSTOMERS, "{:#?}", snapshot.persons);
    assert_eq!(
        snapshot.organizations.len(),
        1,
        "{:#?}",
        snapshot.organizations
    );
    assert_eq!(snapshot.deals.len(), CUSTOMERS, "{:#?}", snapshot.deals);
    let org = snapshot.organizations[0]["id"].clone();
    for i in 0..CUSTOMERS {
        let person = snapshot.persons_with_email(&format!("p{i}@example.com"));
        assert_eq!(person.len(), 1);
        assert_eq!(person[0]["name"], format!("P {i}"));
        let expected_org = if i % 3 == 0 { org.clone() } else { Value::Null };
        assert_eq!(person[0]["org_id"], expected_org);
        let deal =
            deal_titled(snapshot, &format!("pro-monthly subscription sub_{i}")).expect("deal");
        assert_eq!(deal["person_id"], person[0]["id"]);
        assert_eq!(deal["status"], "won");
    }
    assert!(snapshot.live(PdEntity::Person).len() == CUSTOMERS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_twice_and_a_replay_of_the_stream_change_nothing() {
    let stack = crate::chargebee_to_pipedrive::start("").await;
    populated(&stack).await;
    let before = settled(&stack).await;
    assert_expected(&before);

    let copied = stack.redeliver_every_event().await;
    assert!(
        copied >= 2 * CUSTOMERS as u64,
        "{copied} events redelivered"
    );
    let after_redelivery = settled(&stack).await;
    assert_eq!(
        records(&after_redelivery),
        records(&before),
        "every event delivered twice"
    );

    let replayed = stack.replay_whole_stream("pd-test").await;
    assert!(replayed >= 2 * CUSTOMERS as u64);
    let after_replay = settled(&stack).await;
    assert_eq!(
        records(&after_replay),
        records(&before),
        "the stream replayed"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_leaves_the_expected_company_after_a_restart() {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        chargebee_source_extra: "auto_sync = false".into(),
        pipedrive_chargebee_sync: Some(String::new()),
        worker_process: true,
        worker_service: "pipedrive",
        pipedrive_extra: "requests_per_2s = 20".into(),
        ..Default::default()
    })
    .await;
    sync_now(&stack).await;
    synced_in_full(&stack).await;
    change_every_subscription(&stack);
    // One request a second from now on, so that the kill lands mid-run.
    stack
        .restart_worker_with(
            &stack
                .config_toml
                .replace("requests_per_2s = 20", "requests_per_2s = 2"),
        )
        .await;
    sync_now(&stack).await;
    eventually("a few deals written", Duration::from_secs(60), || async {
        let deals = stack
            .sandbox
            .pipedrive
            .snapshot(&stack.pd_company)
            .deals
            .len();
        (deals >= 2).then_some(())
    })
    .await;
    stack.kill_worker().await;
    let deals = stack
        .sandbox
        .pipedrive
        .snapshot(&stack.pd_company)
        .deals
        .len();
    assert!(
        deals < CUSTOMERS,
        "the worker finished before it was killed; the test proves nothing"
    );
    eprintln!("worker SIGKILLed with {deals} of {CUSTOMERS} deals written");
    stack.start_worker();
    let snapshot = settled(&stack).await;
    assert_expected(&snapshot);
    stack.stop().await;
}
