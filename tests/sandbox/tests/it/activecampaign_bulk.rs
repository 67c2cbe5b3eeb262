//! The ActiveCampaign emulator's bulk contact importer: `POST /import/bulk_import` and
//! `GET /import/info`, their refusals, and the contacts a batch writes once processed.

use std::time::Duration;

use billsync_sandbox::{AcAccount, AcFaults, RunningSandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::activecampaign::{acme, status_without_token, Ac};
use crate::spawn_sandbox;

/// An account `slow` (token `slow-token`) whose imports wait an hour unless a test asks the
/// sandbox to process them, so what a test sees before processing is certain.
fn slow(sandbox: &RunningSandbox) -> Ac {
    sandbox.activecampaign.add_account(AcAccount {
        requests_per_second: 10_000,
        bulk_import_delay: Duration::from_secs(3600),
        ..AcAccount::new("slow", "slow-token")
    });
    Ac::new(sandbox, "slow", "slow-token")
}

fn contacts(n: usize) -> Value {
    json!((0..n)
        .map(|i| json!({"email": format!("c{i}@example.com"), "first_name": format!("C{i}")}))
        .collect::<Vec<_>>())
}

/// Queues an import and returns its batch id.
async fn queued(ac: &Ac, body: Value) -> String {
    let (status, answer) = ac.post("/import/bulk_import", body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["batchId"].as_str().expect("a batchId").to_owned()
}

async fn info(ac: &Ac, batch_id: &str) -> Value {
    let (status, body) = ac.get(&format!("/import/info?batchId={batch_id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Polls `GET /import/info` until the batch is completed, for at most five seconds.
async fn completed(ac: &Ac, batch_id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let body = info(ac, batch_id).await;
        if body["status"] == "completed" {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "batch {batch_id} not completed: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn more_than_250_contacts_or_none_are_refused_and_nothing_is_queued() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);

    for body in [
        json!({"contacts": contacts(251)}),
        json!({"contacts": []}),
        json!({"callback": {"url": "https://example.com/done", "requestType": "POST"}}),
    ] {
        let (status, answer) = ac.post("/import/bulk_import", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["success"], 0, "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains("was not queued")),
            "{answer}"
        );
        assert!(answer["failureReasons"][0].is_string(), "{answer}");
    }

    let (status, answer) = ac
        .post("/import/bulk_import", json!({"contacts": contacts(250)}))
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["Success"], 1);
    assert_eq!(answer["queued_contacts"], 250);
    assert_eq!(answer["message"], "Contact import queued");
    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(
        snapshot.bulk_imports.len(),
        1,
        "only the valid import is queued"
    );
}

#[tokio::test]
async fn a_malformed_address_refuses_the_request_with_each_failing_contact() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);

    let (status, answer) = ac
        .post(
            "/import/bulk_import",
            json!({"contacts": [
                {"email": "fine@example.com"},
                {"email": "no-at-sign"},
                {"first_name": "No email"},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let reasons = answer["failureReasons"].as_array().unwrap();
    let failing: Vec<&Value> = reasons.iter().map(|r| &r["contact"]).collect();
    assert_eq!(failing, [&json!(1), &json!(2)], "{answer}");
    assert_eq!(
        reasons[0]["failureReason"],
        "Field\u{2018} email\u{2019} incorrect format"
    );

    let oversized =
        json!({"contacts": [{"email": "big@example.com", "first_name": "x".repeat(400_000)}]});
    let (status, answer) = ac.post("/import/bulk_import", oversized).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(sandbox
        .activecampaign
        .snapshot("acme")
        .bulk_imports
        .is_empty());
}

#[tokio::test]
async fn an_invalid_email_fails_alone_and_info_reports_successes_and_failures() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    let (_, field) = ac
        .post(
            "/fields",
            json!({"field": {"title": "Plan", "type": "text", "perstag": "PLAN"}}),
        )
        .await;
    let field_id: u64 = field["field"]["id"].as_str().unwrap().parse().unwrap();

    let batch = queued(
        &ac,
        json!({"contacts": [
            {"email": "ada@example.com", "first_name": "Ada", "tags": ["Customer"],
             "fields": [{"id": field_id, "value": "pro"}]},
            {"email": "invalid.email@invalidDomain"},
            {"email": "grace@example.com", "last_name": "Hopper", "tags": ["customer", "VIP"]},
        ]}),
    )
    .await;
    let done = completed(&ac, &batch).await;

    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(snapshot.contacts.len(), 2);
    let ada = snapshot.contact_by_email("ada@example.com").unwrap();
    let grace = snapshot.contact_by_email("grace@example.com").unwrap();
    assert_eq!(done["success"], json!([ada.id, grace.id]), "{done}");
    assert_eq!(
        done["failure"],
        json!(["invalid.email@invalidDomain"]),
        "{done}"
    );
    assert_eq!(ada.first_name, "Ada");
    assert_eq!(grace.last_name, "Hopper");
    assert_eq!(snapshot.tags_of(&ada.id), ["Customer"]);
    assert_eq!(snapshot.tags_of(&grace.id), ["Customer", "VIP"]);
    assert_eq!(
        snapshot.tags.len(),
        2,
        "tags are created once, matched ignoring case"
    );
    assert_eq!(
        snapshot.field_value(&ada.id, "PLAN").as_deref(),
        Some("pro")
    );
    // The same records the single-contact routes serve.
    let (_, tags) = ac.get(&format!("/contacts/{}/contactTags", grace.id)).await;
    assert_eq!(tags["contactTags"].as_array().unwrap().len(), 2, "{tags}");
}

#[tokio::test]
async fn a_bulk_imported_contact_is_the_one_contact_sync_updates() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    let (_, existing) = ac
        .post(
            "/contact/sync",
            json!({"contact": {"email": "old@example.com"}}),
        )
        .await;
    let old_id = existing["contact"]["id"].as_str().unwrap().to_owned();

    let batch = queued(
        &ac,
        json!({"contacts": [
            {"email": "new@example.com", "first_name": "Ada"},
            {"email": "OLD@example.com", "first_name": "Known"},
        ]}),
    )
    .await;
    let done = completed(&ac, &batch).await;
    let new_id = sandbox
        .activecampaign
        .snapshot("acme")
        .contact_by_email("new@example.com")
        .unwrap()
        .id
        .clone();
    assert_eq!(
        done["success"],
        json!([new_id]),
        "only created contacts are listed"
    );

    let (status, synced) = ac
        .post(
            "/contact/sync",
            json!({"contact": {"email": "New@Example.com", "lastName": "Lovelace"}}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an update, not a creation: {synced}"
    );
    assert_eq!(synced["contact"]["id"], new_id.as_str());
    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(snapshot.contacts.len(), 2);
    let contact = snapshot.contact_by_email("new@example.com").unwrap();
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("Ada", "Lovelace")
    );
    assert_eq!(
        snapshot
            .contact_by_email("old@example.com")
            .unwrap()
            .first_name,
        "Known"
    );
    assert_eq!(snapshot.bulk_imports[0].updated, [old_id]);
}

#[tokio::test]
async fn info_says_completed_only_once_the_batch_is_processed() {
    let sandbox = spawn_sandbox().await;
    let ac = slow(&sandbox);
    let batch = queued(
        &ac,
        json!({"contacts": contacts(2), "callback": {"url": "https://example.com/done", "requestType": "POST"}}),
    )
    .await;

    let before = info(&ac, &batch).await;
    assert_ne!(before["status"], "completed", "{before}");
    assert_eq!(
        before["status"], false,
        "AC's status before the importer sets one"
    );
    assert_eq!(
        (before["success"].clone(), before["failure"].clone()),
        (json!([]), json!([]))
    );
    assert!(sandbox.activecampaign.snapshot("slow").contacts.is_empty());
    let (_, list) = ac.get("/import/bulk_import").await;
    assert_eq!(list["outstanding"][0]["batches"], "1", "{list}");
    assert_eq!(list["outstanding"][0]["contacts"], "2", "{list}");

    sandbox.activecampaign.process_bulk_imports("slow");
    let after = info(&ac, &batch).await;
    assert_eq!(after["status"], "completed", "{after}");
    assert_eq!(after["success"].as_array().unwrap().len(), 2, "{after}");
    let snapshot = sandbox.activecampaign.snapshot("slow");
    assert_eq!(snapshot.contacts.len(), 2);
    assert!(snapshot.bulk_imports[0].completed);
    assert_eq!(
        snapshot.bulk_imports[0].callback.as_ref().unwrap()["url"],
        "https://example.com/done"
    );
    let (_, list) = ac.get("/import/bulk_import").await;
    assert_eq!(list["outstanding"], json!([]), "{list}");
    assert_eq!(list["recentlyCompleted"][0]["contacts"], "2", "{list}");

    let (status, body) = ac.get("/import/info").await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"success": 0, "message": "'batchId' is a required field."})
        )
    );
    let (status, body) = ac.get("/import/info?batchId=no-such-batch").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn a_batch_is_processed_after_the_accounts_delay_without_being_asked() {
    let sandbox = spawn_sandbox().await;
    sandbox.activecampaign.add_account(AcAccount {
        requests_per_second: 10_000,
        bulk_import_delay: Duration::from_millis(100),
        ..AcAccount::new("quick", "quick-token")
    });
    let ac = Ac::new(&sandbox, "quick", "quick-token");
    let queued_at = std::time::SystemTime::now();
    queued(&ac, json!({"contacts": contacts(3)})).await;

    // Nobody looks at the account meanwhile: the batch must be written by its own timer, not
    // by the next request that happens to look (which would write it late).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let created = sandbox.activecampaign.contact_creation_times("quick");
    assert_eq!(created.len(), 3);
    for at in created.values() {
        let after = at.duration_since(queued_at).unwrap_or_default();
        assert!(
            after >= Duration::from_millis(100) && after < Duration::from_millis(500),
            "written {after:?} after the import"
        );
    }
}

#[tokio::test]
async fn bulk_routes_need_the_api_token_and_count_as_requests() {
    let sandbox = spawn_sandbox().await;
    let ac = slow(&sandbox);
    let batch = queued(&ac, json!({"contacts": contacts(2)})).await;

    let intruder = Ac::new(&sandbox, "slow", "wrong-token");
    for (status, body) in [
        intruder
            .post("/import/bulk_import", json!({"contacts": contacts(2)}))
            .await,
        intruder.get(&format!("/import/info?batchId={batch}")).await,
        intruder.get("/import/bulk_import").await,
    ] {
        assert_eq!(
            (status, body),
            (StatusCode::FORBIDDEN, json!({"message": "Forbidden"}))
        );
    }
    for path in [
        format!("/import/info?batchId={batch}"),
        "/import/bulk_import".into(),
    ] {
        assert_eq!(
            status_without_token(&sandbox, "slow", &path).await,
            StatusCode::FORBIDDEN
        );
    }
    info(&ac, &batch).await;
    assert_eq!(
        sandbox.activecampaign.request_count("slow"),
        2,
        "refused calls are not counted"
    );
    assert_eq!(
        sandbox.activecampaign.snapshot("slow").bulk_imports.len(),
        1
    );
}

#[tokio::test]
async fn bulk_imports_share_the_accounts_rate_limit_and_have_their_own() {
    let sandbox = spawn_sandbox().await;
    sandbox.activecampaign.add_account(AcAccount {
        requests_per_second: 1,
        ..AcAccount::new("limited", "limited-token")
    });
    let ac = Ac::new(&sandbox, "limited", "limited-token");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(
            ac.post("/import/bulk_import", json!({"contacts": contacts(2)}))
                .await
                .0,
        );
    }
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );

    // The importer's own limit: 20 single-contact imports a minute, answered with its 400.
    sandbox.activecampaign.add_account(AcAccount {
        requests_per_second: 10_000,
        ..AcAccount::new("limited", "limited-token")
    });
    let one = json!({"contacts": contacts(1)});
    for _ in 0..20 {
        queued(&ac, one.clone()).await;
    }
    let (status, answer) = ac.post("/import/bulk_import", one).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["message"], "Rate limit exceeded.", "{answer}");
    let counts = sandbox.activecampaign.request_counts("limited");
    assert_eq!((counts.accepted, counts.refused), (20, 1), "{counts:?}");
    // A multi-contact import is counted apart.
    queued(&ac, json!({"contacts": contacts(2)})).await;

    sandbox.activecampaign.set_faults(
        "limited",
        AcFaults {
            rate_limit_disabled: true,
            ..AcFaults::default()
        },
    );
    queued(&ac, json!({"contacts": contacts(1)})).await;
}
