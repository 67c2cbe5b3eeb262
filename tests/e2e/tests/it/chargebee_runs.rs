//! Runs from Chargebee (seeds 000, 004): the initial sync of the 10 latest customers with
//! each record's outcome, the validation step and its CSV, and "sync all records".

use billsync_e2e::{Stack, StackOptions};
use billsync_ingest::chargebee::snapshot::{self, RunRequest, RunScope};
use billsync_sandbox::CbCustomerInput;
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
    let issues = snapshot::validate_connection(&stack.config, "cb-test", false, |_, _| {})
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
