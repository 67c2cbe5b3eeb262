//! Chargebee → Pipedrive end to end (seed 004): persons matched by the unique id and linked,
//! organizations, custom fields by name, and deals only after the first full sync — field by
//! field in the emulated Pipedrive company.

use crate::operator_api::{api_post, wait_failure};
use billsync_e2e::{Stack, StackOptions};
use billsync_ingest::chargebee::snapshot::{self, RunReport, RunRequest, RunScope};
use billsync_sandbox::{
    CbCustomerInput, CbInvoiceInput, CbSubscriptionInput, PdEntity, PdSnapshot,
};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

/// A stack whose Chargebee site is polled only when asked (`sync_now`), so that runs and
/// live changes arrive when the test says.
pub(crate) async fn start(pipedrive_sync: &str) -> Stack {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        chargebee_source_extra: "auto_sync = false".into(),
        pipedrive_chargebee_sync: Some(pipedrive_sync.to_string()),
        ..Default::default()
    })
    .await;
    // The first poll starts the cursor: changes from then on are carried live.
    sync_now(&stack).await;
    stack
}

pub(crate) fn customer(
    id: &str,
    email: &str,
    first: &str,
    last: &str,
    company: &str,
) -> CbCustomerInput {
    CbCustomerInput {
        id: Some(id.into()),
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        email: Some(email.into()),
        company: (!company.is_empty()).then(|| company.into()),
        ..Default::default()
    }
}

pub(crate) fn subscription(id: &str, status: &str, mrr: i64) -> CbSubscriptionInput {
    CbSubscriptionInput {
        id: Some(id.into()),
        plan_id: Some("pro-monthly".into()),
        status: Some(status.into()),
        currency_code: Some("EUR".into()),
        mrr: Some(mrr),
        ..Default::default()
    }
}

pub(crate) async fn run(stack: &Stack, scope: RunScope) -> RunReport {
    snapshot::run(
        &stack.config,
        stack.nats.clone(),
        &RunRequest {
            source: "cb-test",
            destination: "pd-test",
            scope,
            require_subscription: false,
            wait: Duration::from_secs(60),
            unique_id: None,
        },
        |_, _| {},
    )
    .await
    .expect("the run completes")
}

pub(crate) async fn pd_when(
    stack: &Stack,
    what: &str,
    ready: impl Fn(&PdSnapshot) -> bool,
) -> PdSnapshot {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);
        if ready(&snapshot) {
            return snapshot;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "timed out after {WAIT:?} waiting for {what}; the company holds {}",
                serde_json::to_string_pretty(&snapshot).expect("snapshot")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn person<'a>(snapshot: &'a PdSnapshot, email: &str) -> &'a Value {
    let found = snapshot.persons_with_email(email);
    assert_eq!(found.len(), 1, "one person with {email}: {found:#?}");
    found[0]
}

/// A record's custom field by display name.
pub(crate) fn custom(snapshot: &PdSnapshot, entity: PdEntity, record: &Value, name: &str) -> Value {
    let code = snapshot
        .field_code(entity, name)
        .unwrap_or_else(|| panic!("no {entity:?} field {name:?}"));
    record["custom_fields"][code].clone()
}

pub(crate) fn deal_titled<'a>(snapshot: &'a PdSnapshot, title: &str) -> Option<&'a Value> {
    snapshot
        .live(PdEntity::Deal)
        .into_iter()
        .find(|d| d["title"] == title)
}

/// Every answer of the emulated company 400 ms late, so that concurrent first-time writes
/// overlap.
fn slow_answers(stack: &Stack) {
    stack.sandbox.pipedrive.set_faults(
        &stack.pd_company,
        billsync_sandbox::PdFaults {
            latency_ms: 400,
            ..Default::default()
        },
    );
}

pub(crate) async fn sync_now(stack: &Stack) {
    assert!(stack.sync_now("cb-test").await.status().is_success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persons_organizations_and_deals_follow_the_seed() {
    let stack = start("").await;
    let (cb, site, pd, company) = (
        &stack.sandbox.chargebee,
        &stack.chargebee_site,
        &stack.sandbox.pipedrive,
        &stack.pd_company,
    );
    cb.create_customer(
        site,
        customer(
            "cb_ada",
            "ada@example.com",
            "Ada",
            "Lovelace",
            "Analytical Engines",
        ),
    )
    .expect("customer");
    cb.create_subscription(site, "cb_ada", subscription("sub_ada", "active", 4_900))
        .expect("subscription");
    cb.create_customer(
        site,
        customer("cb_bob", "bob@example.com", "Bob", "Babbage", ""),
    )
    .expect("customer");
    cb.create_subscription(site, "cb_bob", subscription("sub_bob", "in_trial", 1_900))
        .expect("subscription");
    cb.create_customer(
        site,
        customer("cb_dup", "dup@example.com", "Dee", "Upton", ""),
    )
    .expect("customer");
    // Already in Pipedrive: Ada once (matched, not duplicated), dup@ twice (ambiguous).
    let existing = pd
        .create(company, PdEntity::Person, &json!({"name": "A. Lovelace", "emails": [{"value": "ADA@example.com", "primary": true}]}))
        .expect("person");
    let dup_ids: Vec<u64> = (0..2)
        .map(|i| {
            pd.create(company, PdEntity::Person, &json!({"name": format!("Dup {i}"), "emails": [{"value": "dup@example.com", "primary": true}]}))
                .expect("person")["id"]
                .as_u64()
                .expect("id")
        })
        .collect();

    // The initial sync: persons and organizations, no deals; the ambiguous match fails.
    let report = run(&stack, RunScope::LatestCustomers(10)).await;
    assert_eq!(report.count("synced"), 2 + 2, "{}", report.render());
    let failed: Vec<_> = report
        .results
        .iter()
        .filter(|r| r.status == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", report.render());
    assert_eq!(failed[0].record_key, "customer/cb_dup");
    for id in &dup_ids {
        assert!(
            failed[0].detail.contains(&id.to_string()),
            "{}",
            failed[0].detail
        );
    }
    let snapshot = pd.snapshot(company);
    let ada = person(&snapshot, "ada@example.com");
    assert_eq!(
        ada["id"], existing["id"],
        "matched by email, case-insensitively"
    );
    assert_eq!(ada["name"], "Ada Lovelace");
    assert_eq!(
        custom(&snapshot, PdEntity::Person, ada, "Billing customer id"),
        "cb_ada"
    );
    let orgs = snapshot.live(PdEntity::Organization);
    assert_eq!(orgs.len(), 1, "{orgs:#?}");
    assert_eq!(orgs[0]["name"], "Analytical Engines");
    assert_eq!(ada["org_id"], orgs[0]["id"]);
    let bob = person(&snapshot, "bob@example.com");
    assert_eq!(bob["name"], "Bob Babbage");
    assert_eq!(bob["org_id"], Value::Null);
    assert!(
        snapshot.deals.is_empty(),
        "no deals in the initial sync: {:#?}",
        snapshot.deals
    );
    assert_eq!(snapshot.persons_with_email("dup@example.com").len(), 2);

    // The first full sync: still no deals.
    let report = run(&stack, RunScope::All).await;
    assert_eq!(report.count("failed"), 1, "{}", report.render());
    assert!(
        pd.snapshot(company).deals.is_empty(),
        "no deals in the first full sync"
    );

    // From then on, deals. A duplicate of Ada made since is ignored: she is linked.
    let duplicate = pd
        .create(
            company,
            PdEntity::Person,
            &json!({"name": "Ada again", "emails": [{"value": "ada@example.com"}]}),
        )
        .expect("person");
    cb.update_subscription(
        site,
        "sub_ada",
        CbSubscriptionInput {
            mrr: Some(9_900),
            ..Default::default()
        },
    )
    .expect("update");
    cb.cancel_subscription(site, "sub_bob", Some("too expensive"))
        .expect("cancel");
    cb.create_invoice(
        site,
        "cb_bob",
        CbInvoiceInput {
            id: Some("inv_once".into()),
            status: Some("paid".into()),
            total: Some(25_000),
            currency_code: Some("EUR".into()),
            ..Default::default()
        },
    )
    .expect("invoice");
    // Chargebee's invoice events carry the invoice alone: the deal still gets the
    // organization of the customer's company, as subscription deals do.
    cb.create_invoice(
        site,
        "cb_ada",
        CbInvoiceInput {
            id: Some("inv_ada".into()),
            status: Some("posted".into()),
            total: Some(12_000),
            currency_code: Some("EUR".into()),
            ..Default::default()
        },
    )
    .expect("invoice");
    sync_now(&stack).await;
    let snapshot = pd_when(&stack, "the deals of the live changes", |s| {
        deal_titled(s, "pro-monthly subscription sub_ada").is_some()
            && deal_titled(s, "pro-monthly subscription sub_bob").is_some()
            && deal_titled(s, "Invoice inv_once").is_some()
            && deal_titled(s, "Invoice inv_ada").is_some()
    })
    .await;
    let ada_invoice = deal_titled(&snapshot, "Invoice inv_ada").expect("deal");
    assert_eq!(ada_invoice["status"], "open", "posted, not yet paid");
    assert_eq!(ada_invoice["value"].as_f64(), Some(120.0));
    assert_eq!(ada_invoice["currency"], "EUR");
    assert_eq!(ada_invoice["person_id"], existing["id"]);
    assert_eq!(ada_invoice["org_id"], orgs[0]["id"]);
    let ada_deal = deal_titled(&snapshot, "pro-monthly subscription sub_ada").expect("deal");
    assert_eq!(ada_deal["value"].as_f64(), Some(99.0));
    assert_eq!(ada_deal["currency"], "EUR");
    assert_eq!(ada_deal["status"], "won");
    assert_eq!(ada_deal["person_id"], existing["id"]);
    assert_eq!(ada_deal["org_id"], orgs[0]["id"]);
    let bob_deal = deal_titled(&snapshot, "pro-monthly subscription sub_bob").expect("deal");
    assert_eq!(bob_deal["status"], "lost");
    assert_eq!(bob_deal["lost_reason"], "too expensive");
    assert_eq!(bob_deal["person_id"], bob["id"]);
    let invoice = deal_titled(&snapshot, "Invoice inv_once").expect("deal");
    assert_eq!(invoice["status"], "won");
    assert_eq!(invoice["value"].as_f64(), Some(250.0));
    assert_eq!(invoice["person_id"], bob["id"]);
    assert_eq!(invoice["org_id"], Value::Null, "Bob has no company");
    let untouched = snapshot
        .persons
        .iter()
        .find(|p| p["id"] == duplicate["id"])
        .expect("the duplicate");
    assert_eq!(
        untouched["name"], "Ada again",
        "duplicates after linking are ignored"
    );

    // Ada's person deleted in Pipedrive: created again on her next change, link updated.
    assert!(pd.delete(
        company,
        PdEntity::Person,
        existing["id"].as_u64().expect("id")
    ));
    pd.delete(
        company,
        PdEntity::Person,
        duplicate["id"].as_u64().expect("id"),
    );
    cb.update_customer(
        site,
        "cb_ada",
        CbCustomerInput {
            first_name: Some("Augusta".into()),
            ..Default::default()
        },
    )
    .expect("update");
    sync_now(&stack).await;
    let snapshot = pd_when(&stack, "Ada's person created again", |s| {
        s.persons_with_email("ada@example.com").len() == 1
    })
    .await;
    let again = person(&snapshot, "ada@example.com");
    assert_ne!(again["id"], existing["id"]);
    assert_eq!(again["name"], "Augusta Lovelace");
    assert_eq!(
        custom(&snapshot, PdEntity::Person, again, "Billing customer id"),
        "cb_ada"
    );
    cb.update_subscription(
        site,
        "sub_ada",
        CbSubscriptionInput {
            mrr: Some(12_900),
            ..Default::default()
        },
    )
    .expect("update");
    sync_now(&stack).await;
    let snapshot = pd_when(&stack, "the deal on the new person", |s| {
        deal_titled(s, "pro-monthly subscription sub_ada")
            .is_some_and(|d| d["value"].as_f64() == Some(129.0))
    })
    .await;
    let ada_deal = deal_titled(&snapshot, "pro-monthly subscription sub_ada").expect("deal");
    assert_eq!(
        ada_deal["person_id"], again["id"],
        "the link moved to the new person"
    );
    assert_eq!(
        snapshot.live(PdEntity::Deal).len(),
        4,
        "{:#?}",
        snapshot.deals
    );

    // The multi-match is a sync error in the errors list; once the duplicate is merged away
    // in Pipedrive, a retry links the customer to the person left.
    let failure = wait_failure(&stack, "open", "pd-test", "customer/cb_dup").await;
    assert_eq!(failure["error_class"], "rejected", "{failure}");
    assert!(pd.delete(company, PdEntity::Person, dup_ids[1]));
    api_post(
        &stack,
        &format!("/api/v1/failures/{}/retry", failure["id"]),
        json!({}),
    )
    .await;
    wait_failure(&stack, "resolved", "pd-test", "customer/cb_dup").await;
    let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);
    let dee = person(&snapshot, "dup@example.com");
    assert_eq!(dee["id"].as_u64(), Some(dup_ids[0]));
    assert_eq!(dee["name"], "Dee Upton");
    assert_eq!(
        custom(&snapshot, PdEntity::Person, dee, "Billing customer id"),
        "cb_dup"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_fields_go_on_the_person_when_configured() {
    let stack = start("[syncs.options]\nsubscriptions_to = \"person\"").await;
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(
        site,
        customer("cb_eve", "eve@example.com", "Eve", "Adams", "Adams & Co"),
    )
    .expect("customer");
    cb.create_subscription(site, "cb_eve", subscription("sub_eve", "active", 4_900))
        .expect("subscription");
    run(&stack, RunScope::All).await;
    cb.update_subscription(
        site,
        "sub_eve",
        CbSubscriptionInput {
            mrr: Some(5_900),
            ..Default::default()
        },
    )
    .expect("update");
    sync_now(&stack).await;
    let snapshot = pd_when(&stack, "the subscription fields on the person", |s| {
        s.persons_with_email("eve@example.com")
            .first()
            .is_some_and(|p| {
                s.field_code(PdEntity::Person, "MRR")
                    .is_some_and(|code| p["custom_fields"][code].as_f64() == Some(59.0))
            })
    })
    .await;
    let eve = person(&snapshot, "eve@example.com");
    let field = |name: &str| custom(&snapshot, PdEntity::Person, eve, name);
    assert_eq!(field("Subscription id"), "sub_eve");
    assert_eq!(field("Subscription status"), "active");
    assert_eq!(field("Subscription plan"), "pro-monthly");
    assert_eq!(field("Billing customer id"), "cb_eve");
    assert!(
        snapshot.deals.is_empty(),
        "subscriptions go to the person, not deals"
    );
    let org = &snapshot.live(PdEntity::Organization)[0];
    assert_eq!(org["name"], "Adams & Co");
    assert_eq!(eve["org_id"], org["id"]);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unique_id_is_locked_once_the_first_full_sync_ran() {
    let stack = start("[syncs.options]\nunique_id = \"Billing customer id\"").await;
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(site, customer("cb_fay", "fay@example.com", "Fay", "Ng", ""))
        .expect("customer");
    let report = run(&stack, RunScope::All).await;
    assert_eq!(report.count("synced"), 1, "{}", report.render());
    let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);
    let fay = person(&snapshot, "fay@example.com");
    assert_eq!(
        custom(&snapshot, PdEntity::Person, fay, "Billing customer id"),
        "cb_fay"
    );

    // Changing the unique id afterwards stops the worker at start, saying when and how.
    let changed = stack.config_toml.replace(
        "unique_id = \"Billing customer id\"",
        "unique_id = \"email\"",
    );
    let config = billsync_config::Config::from_toml(&changed, std::path::Path::new("e2e.toml"))
        .expect("a valid configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let error = billsync_pipedrive::run(
        std::sync::Arc::new(config),
        stack.nats.clone(),
        listener,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .expect_err("the changed unique id is refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("e2e.toml: syncs[2].options.unique_id"),
        "{message}"
    );
    assert!(
        message.contains("\"field:Billing customer id\", locked when the first full sync ran at"),
        "{message}"
    );
    let command = "billsync sync reset-unique-id --connection cb-test --to pd-test";
    assert!(message.contains(command), "{message}");

    // The command the message names resets the lock: the changed unique id then starts.
    let dir = tempfile::tempdir().expect("a temp dir");
    let config_file = stack.write_config(dir.path());
    let reset = || {
        crate::operator_cli::billsync_local(
            &config_file,
            &[
                "sync",
                "reset-unique-id",
                "--connection",
                "cb-test",
                "--to",
                "pd-test",
            ],
        )
    };
    let said = reset().await.expect("the reset runs");
    assert!(
        said.contains(
            "Reset the unique id of cb-test → pd-test: it was \"field:Billing customer id\""
        ),
        "{said}"
    );
    let said = reset().await.expect("a second reset runs");
    assert!(said.contains("has no unique id lock"), "{said}");
    let config = billsync_config::Config::from_toml(&changed, std::path::Path::new("e2e.toml"))
        .expect("a valid configuration");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(billsync_pipedrive::run(
        std::sync::Arc::new(config),
        stack.nats.clone(),
        listener,
        shutdown.clone(),
    ));
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    shutdown.cancel();
    worker
        .await
        .expect("the worker task")
        .expect("the worker starts with the new unique id once the lock is reset");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_checks_the_unique_id_and_subscriptions_and_sync_all_skips_those_customers() {
    let stack = start(
        "[syncs.options]\nunique_id = \"Billing customer id\"\nsubscriptions_to = \"person\"\n\
         [syncs.mapping]\n\"Billing customer id\" = \"customer.meta_data.billing_id\"",
    )
    .await;
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    let with_id = |id: &str, billing: Option<&str>| CbCustomerInput {
        meta_data: billing.map(|b| json!({"billing_id": b})),
        ..customer(id, &format!("{id}@example.com"), "Val", id, "")
    };
    cb.create_customer(site, with_id("cb_ok", Some("B-1")))
        .expect("customer");
    cb.create_subscription(site, "cb_ok", subscription("sub_ok", "active", 1_000))
        .expect("subscription");
    cb.create_customer(site, with_id("cb_nosub", Some("B-2")))
        .expect("customer");
    cb.create_customer(site, with_id("cb_noid", None))
        .expect("customer");
    cb.create_subscription(site, "cb_noid", subscription("sub_noid", "active", 1_000))
        .expect("subscription");

    let dir = tempfile::tempdir().expect("temp dir");
    let config = stack.write_config(dir.path());
    let csv = dir.path().join("validation.csv");
    let csv_arg = csv.display().to_string();
    let printed = crate::operator_cli::billsync_local(
        &config,
        &[
            "sync",
            "validate",
            "--connection",
            "cb-test",
            "--to",
            "pd-test",
            "--csv",
            &csv_arg,
        ],
    )
    .await
    .expect("validate runs");
    assert!(
        printed
            .contains("2 customers would be skipped (no Billing customer id, or no subscription)"),
        "{printed}"
    );
    let written = std::fs::read_to_string(&csv).expect("the CSV");
    let mut rows: Vec<&str> = written.lines().skip(1).collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            "cb_noid,cb_noid@example.com,Val,cb_noid,,no Billing customer id (the unique id matching the CRM record)",
            "cb_nosub,cb_nosub@example.com,Val,cb_nosub,,no subscription",
        ],
        "{written}"
    );

    // Sync all skips them: only the valid customer has a person.
    let printed = crate::operator_cli::billsync_local(
        &config,
        &[
            "sync",
            "all",
            "--connection",
            "cb-test",
            "--to",
            "pd-test",
            "--csv",
            &csv_arg,
        ],
    )
    .await
    .expect("sync all runs");
    assert!(
        printed.contains("2 synced, 0 failed, 2 skipped"),
        "{printed}"
    );
    let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);
    assert_eq!(snapshot.persons.len(), 1, "{:#?}", snapshot.persons);
    let ok = person(&snapshot, "cb_ok@example.com");
    assert_eq!(
        custom(&snapshot, PdEntity::Person, ok, "Billing customer id"),
        "B-1"
    );
    assert_eq!(
        custom(&snapshot, PdEntity::Person, ok, "Subscription id"),
        "sub_ok"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_sharing_an_email_share_one_person() {
    let stack = start("").await;
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    for (id, first) in [
        ("cb_twin_a", "Ann"),
        ("cb_twin_b", "Bea"),
        ("cb_twin_c", "Cy"),
    ] {
        cb.create_customer(site, customer(id, "twins@example.com", first, "Twin", ""))
            .expect("customer");
    }
    // Slow answers, so that the three first-time searches all run before any create ends.
    slow_answers(&stack);
    let report = run(&stack, RunScope::All).await;
    assert_eq!(report.count("synced"), 3, "{}", report.render());
    let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);
    assert_eq!(snapshot.persons.len(), 1, "{:#?}", snapshot.persons);
    let shared = person(&snapshot, "twins@example.com");
    assert!(
        ["Ann Twin", "Bea Twin", "Cy Twin"].contains(&shared["name"].as_str().unwrap_or_default()),
        "{shared}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_of_one_new_company_written_at_once_share_one_organization() {
    let stack = start("").await;
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    let staff = [
        ("cb_co_a", "Ann"),
        ("cb_co_b", "Bea"),
        ("cb_co_c", "Cy"),
        ("cb_co_d", "Dee"),
    ];
    for (id, first) in staff {
        let email = format!("{}@newco.example.com", first.to_lowercase());
        cb.create_customer(site, customer(id, &email, first, "Staff", "Brand New Co"))
            .expect("customer");
    }
    // Slow answers, so that every customer's organization search runs before a create ends:
    // without the lease on the name, each would create its own "Brand New Co".
    slow_answers(&stack);
    let report = run(&stack, RunScope::All).await;
    assert_eq!(report.count("synced"), 4, "{}", report.render());
    let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);
    let organizations = snapshot.live(PdEntity::Organization);
    assert_eq!(organizations.len(), 1, "{organizations:#?}");
    assert_eq!(organizations[0]["name"], "Brand New Co");
    for (_, first) in staff {
        let email = format!("{}@newco.example.com", first.to_lowercase());
        assert_eq!(person(&snapshot, &email)["org_id"], organizations[0]["id"]);
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_fields_go_on_the_organization_when_configured() {
    let stack = start("[syncs.options]\nsubscriptions_to = \"organization\"").await;
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(
        site,
        customer("cb_org", "org@example.com", "Olga", "Orr", "Orr Ltd"),
    )
    .expect("customer");
    cb.create_subscription(site, "cb_org", subscription("sub_org", "active", 7_900))
        .expect("subscription");
    run(&stack, RunScope::All).await;
    let snapshot = stack.sandbox.pipedrive.snapshot(&stack.pd_company);
    let org = &snapshot.live(PdEntity::Organization)[0];
    assert_eq!(org["name"], "Orr Ltd");
    let field = |name: &str| custom(&snapshot, PdEntity::Organization, org, name);
    assert_eq!(field("Subscription id"), "sub_org");
    assert_eq!(field("Subscription status"), "active");
    assert_eq!(field("MRR").as_f64(), Some(79.0));
    let olga = person(&snapshot, "org@example.com");
    assert_eq!(olga["org_id"], org["id"]);
    assert_eq!(
        custom(&snapshot, PdEntity::Person, olga, "Billing customer id"),
        "cb_org"
    );
    assert!(
        snapshot
            .field_code(PdEntity::Person, "Subscription id")
            .is_none(),
        "subscription fields stay off the person"
    );
    assert!(snapshot.deals.is_empty());
    stack.stop().await;
}

/// A linked organization deleted in Pipedrive, when the customer's next change writes no
/// organization field: billsync notices (the organization answers `is_deleted`), makes the
/// organization again and links the person to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_organization_deleted_in_pipedrive_is_made_again_and_relinked() {
    let stack = start("").await;
    let (cb, site, pd, company) = (
        &stack.sandbox.chargebee,
        &stack.chargebee_site,
        &stack.sandbox.pipedrive,
        &stack.pd_company,
    );
    cb.create_customer(
        site,
        customer(
            "cb_eve",
            "eve@example.com",
            "Eve",
            "Ada",
            "Difference Engines",
        ),
    )
    .expect("customer");
    sync_now(&stack).await;
    let snapshot = pd_when(&stack, "Eve and her organization", |s| {
        s.live(PdEntity::Person)
            .iter()
            .any(|p| p["name"] == "Eve Ada" && p["org_id"].is_u64())
    })
    .await;
    let first = snapshot.live(PdEntity::Organization)[0]["id"]
        .as_u64()
        .expect("id");
    assert!(pd.delete(company, PdEntity::Organization, first));

    cb.update_customer(
        site,
        "cb_eve",
        CbCustomerInput {
            first_name: Some("Evelyn".into()),
            ..Default::default()
        },
    )
    .expect("update");
    sync_now(&stack).await;
    let snapshot = pd_when(&stack, "Evelyn on a new organization", |s| {
        s.live(PdEntity::Person)
            .iter()
            .any(|p| p["name"] == "Evelyn Ada")
    })
    .await;
    let orgs = snapshot.live(PdEntity::Organization);
    assert_eq!(orgs.len(), 1, "{orgs:#?}");
    assert_eq!(orgs[0]["name"], "Difference Engines");
    assert_ne!(orgs[0]["id"].as_u64(), Some(first));
    let eve = person(&snapshot, "eve@example.com");
    assert_eq!(
        eve["org_id"], orgs[0]["id"],
        "the person follows the new one"
    );
    let deleted = snapshot
        .organizations
        .iter()
        .find(|o| o["id"].as_u64() == Some(first))
        .expect("the deleted organization stays readable");
    assert_eq!(deleted["is_deleted"], true);
    stack.stop().await;
}

/// With a custom field as the unique id, only that field matches: Pipedrive's search of
/// custom fields also finds the value in any other custom field, and such a person is not
/// the customer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_unique_id_matches_only_its_own_field() {
    let stack = start("[syncs.options]\nunique_id = \"Billing customer id\"").await;
    let (cb, site, pd, company) = (
        &stack.sandbox.chargebee,
        &stack.chargebee_site,
        &stack.sandbox.pipedrive,
        &stack.pd_company,
    );
    let field = |name: &str| {
        pd.create_field(
            company,
            PdEntity::Person,
            &json!({"field_name": name, "field_type": "varchar"}),
        )
        .expect("field")["field_code"]
            .as_str()
            .expect("key")
            .to_string()
    };
    let (billing, legacy) = (field("Billing customer id"), field("Legacy id"));
    let other = pd
        .create(
            company,
            PdEntity::Person,
            &json!({"name": "Legacy Zed", "custom_fields": {&legacy: "cb_zed"}}),
        )
        .expect("person");
    let kim = pd
        .create(
            company,
            PdEntity::Person,
            &json!({"name": "K. Old", "custom_fields": {&billing: "cb_kim"}}),
        )
        .expect("person");
    for (id, email, first, last) in [
        ("cb_zed", "zed@example.com", "Zed", "Zee"),
        ("cb_kim", "kim@example.com", "Kim", "Lee"),
    ] {
        cb.create_customer(site, customer(id, email, first, last, ""))
            .expect("customer");
    }
    sync_now(&stack).await;
    let snapshot = pd_when(&stack, "Zed's person and Kim's", |s| {
        let names: Vec<&Value> = s
            .live(PdEntity::Person)
            .iter()
            .map(|p| &p["name"])
            .collect();
        names.contains(&&json!("Zed Zee")) && names.contains(&&json!("Kim Lee"))
    })
    .await;
    let persons = snapshot.live(PdEntity::Person);
    assert_eq!(persons.len(), 3, "{persons:#?}");
    let untouched = persons
        .iter()
        .find(|p| p["id"] == other["id"])
        .expect("the person with cb_zed in another field");
    assert_eq!(
        untouched["name"], "Legacy Zed",
        "not matched by its Legacy id"
    );
    assert_eq!(untouched["custom_fields"][&legacy], "cb_zed");
    assert_eq!(untouched["custom_fields"].get(&billing), None);
    let zed = person(&snapshot, "zed@example.com");
    assert_ne!(zed["id"], other["id"]);
    assert_eq!(zed["custom_fields"][&billing], "cb_zed");
    let kim_now = person(&snapshot, "kim@example.com");
    assert_eq!(kim_now["id"], kim["id"], "matched by its own field");
    assert_eq!(kim_now["name"], "Kim Lee");
    stack.stop().await;
}
