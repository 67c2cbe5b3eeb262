//! Runs from Chargebee (seeds 000, 004): the initial sync of the 10 latest customers with
//! each record's outcome, the validation step and its CSV, and "sync all records".

use crate::operator_api::{api_csv, api_get, wait_failure};
use billsync_e2e::{Stack, StackOptions};
use billsync_ingest::chargebee::snapshot::{self, RunRequest, RunScope};
use billsync_sandbox::{CbCustomerInput, CbSubscriptionInput};
use std::time::Duration;

async fn stack_with_customers(count: usize, without_email: &[usize]) -> (Stack, Vec<String>) {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..count {
        let id = format!("cust_{i:02}");
        let email = if without_email.contains(&i) {
            None
        } else {
            Some(format!("person{i}@example.com"))
        };
        stack
            .sandbox
            .chargebee
            .create_customer(
                &stack.chargebee_site,
                CbCustomerInput {
                    id: Some(id.clone()),
                    first_name: Some(format!("Person{i}")),
                    last_name: Some("Example".into()),
                    email,
                    ..Default::default()
                },
            )
            .expect("customer");
        ids.push(id);
    }
    (stack, ids)
}

fn request(scope: RunScope) -> RunRequest<'static> {
    RunRequest {
        source: "cb-test",
        destination: "ac-test",
        scope,
        require_subscription: false,
        wait: Duration::from_secs(60),
        unique_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initial_sync_reports_exactly_the_ten_latest_customers() {
    // Customer 12 has no email: the initial sync must show its error.
    let (stack, ids) = stack_with_customers(15, &[12]).await;
    let report = snapshot::run(
        &stack.config,
        stack.nats.clone(),
        &request(RunScope::LatestCustomers(10)),
        |_, _| {},
    )
    .await
    .expect("initial sync runs");
    assert!(report.pending.is_empty(), "{}", report.render());
    let mut reported: Vec<String> = report
        .results
        .iter()
        .filter_map(|r| r.record_key.strip_prefix("customer/").map(str::to_owned))
        .collect();
    reported.sort();
    let latest: Vec<String> = ids[5..].to_vec();
    assert_eq!(reported, latest, "{}", report.render());
    let failed: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.status == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", report.render());
    assert_eq!(failed[0].record_key, "customer/cust_12");
    assert!(
        failed[0].detail.contains("no email"),
        "{}",
        failed[0].detail
    );
    assert_eq!(report.count("synced"), 9);
    let printed = report.render();
    for id in &latest {
        assert!(printed.contains(id.as_str()), "{printed}");
    }
    assert!(printed.contains("9 synced, 1 failed"), "{printed}");

    // The errors service recorded the run per record.
    let pool = sqlx::PgPool::connect(&stack.db.url).await.expect("db");
    let recorded: i64 = billsync_e2e::eventually(
        "the run's records in Postgres",
        Duration::from_secs(20),
        || async {
            let n: i64 =
                sqlx::query_scalar("SELECT count(*) FROM sync_run_records WHERE run_id = $1")
                    .bind(&report.run_id)
                    .fetch_one(&pool)
                    .await
                    .ok()?;
            (n == 10).then_some(n)
        },
    )
    .await;
    assert_eq!(recorded, 10);
    pool.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_lists_exactly_the_customers_without_email_and_sync_all_skips_them() {
    let (stack, ids) = stack_with_customers(6, &[1, 4]).await;
    let issues = snapshot::validate_connection(
        &stack.config,
        "cb-test",
        false,
        &snapshot::UniqueIdRule::email(),
        |_, _| {},
    )
    .await
    .expect("validation");
    let mut flagged: Vec<&str> = issues.iter().map(|i| i.customer_id.as_str()).collect();
    flagged.sort();
    assert_eq!(flagged, vec![ids[1].as_str(), ids[4].as_str()]);
    let csv = snapshot::issues_csv(&issues);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.starts_with("customer_id,email,first_name,last_name,company,problem\n"));
    assert!(
        csv.contains("cust_01,,Person1,Example,,no email")
            && csv.contains("cust_04,,Person4,Example,,no email"),
        "{csv}"
    );

    let report = snapshot::run(
        &stack.config,
        stack.nats.clone(),
        &request(RunScope::All),
        |_, _| {},
    )
    .await
    .expect("sync all runs");
    assert_eq!(report.skipped_by_validation.len(), 2);
    assert_eq!(report.count("synced"), 4, "{}", report.render());
    assert_eq!(report.count("failed"), 0, "{}", report.render());
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert_eq!(snapshot.contacts.len(), 4);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_skipped_by_sync_all_are_sync_errors_until_fixed() {
    // Polled only on sync-now, so the run alone decides what the errors list holds.
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        chargebee_source_extra: "auto_sync = false".into(),
        ..Default::default()
    })
    .await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    for (id, email) in [("cust_ok", Some("ok@example.com")), ("cust_nomail", None)] {
        cb.create_customer(
            site,
            CbCustomerInput {
                id: Some(id.into()),
                first_name: Some("No".into()),
                last_name: Some("Mail".into()),
                email: email.map(str::to_owned),
                ..Default::default()
            },
        )
        .expect("customer");
        cb.create_subscription(
            site,
            id,
            CbSubscriptionInput {
                id: Some(format!("sub_{id}")),
                plan_id: Some("basic".into()),
                status: Some("active".into()),
                ..Default::default()
            },
        )
        .expect("subscription");
    }
    let report = snapshot::run(
        &stack.config,
        stack.nats.clone(),
        &request(RunScope::All),
        |_, _| {},
    )
    .await
    .expect("sync all runs");
    assert_eq!(report.skipped_by_validation.len(), 1, "{}", report.render());
    assert_eq!(report.count("synced"), 2, "{}", report.render());

    // The skipped customer and its subscription are in the errors list and its CSV.
    for record in ["customer/cust_nomail", "subscription/sub_cust_nomail"] {
        let failure = wait_failure(&stack, "open", "ac-test", record).await;
        assert_eq!(failure["error_class"], "invalid_event", "{failure}");
        assert!(
            failure["message"]
                .as_str()
                .is_some_and(|m| m.contains("skipped by validation") && m.contains("no email")),
            "{failure}"
        );
        assert_eq!(failure["run_id"], report.run_id.as_str());
    }
    let csv = api_csv(&stack).await;
    assert!(
        csv.contains("customer/cust_nomail") && csv.contains("subscription/sub_cust_nomail"),
        "{csv}"
    );
    let listed = api_get(&stack, "/api/v1/failures").await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(2),
        "{listed}"
    );

    // Fixed in Chargebee and polled: the customer syncs, its subscription follows by itself.
    cb.update_customer(
        site,
        "cust_nomail",
        CbCustomerInput {
            email: Some("found@example.com".into()),
            ..Default::default()
        },
    )
    .expect("email added");
    assert_eq!(stack.sync_now("cb-test").await.status(), 200);
    for record in ["customer/cust_nomail", "subscription/sub_cust_nomail"] {
        wait_failure(&stack, "resolved", "ac-test", record).await;
    }
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let contact = snapshot
        .contact_by_email("found@example.com")
        .expect("the fixed customer's contact");
    assert_eq!(
        snapshot
            .field_value(&contact.id, "Cb_subscriptionID")
            .as_deref(),
        Some("sub_cust_nomail")
    );
    assert_eq!(snapshot.contacts.len(), 2);
    let listed = api_get(&stack, "/api/v1/failures").await;
    assert_eq!(listed["items"], serde_json::json!([]), "{listed}");
    stack.stop().await;
}
