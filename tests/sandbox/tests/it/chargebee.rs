//! The Chargebee emulator against the behaviour billsync's poller and syncs rely on.

use billsync_sandbox::{
    CbCustomerInput, CbFaults, CbInvoiceInput, CbSite, CbSnapshot, CbSubscriptionInput,
    RunningSandbox,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::spawn_sandbox;

const SITE: &str = "acme-test";
const KEY: &str = "test_cb_key";

/// A sandbox with the site `acme-test` (key `test_cb_key`) at `requests_per_minute`.
async fn sandbox_with_site(requests_per_minute: u32) -> RunningSandbox {
    let sandbox = spawn_sandbox().await;
    sandbox.chargebee.add_site(CbSite {
        requests_per_minute,
        ..CbSite::new(SITE, KEY)
    });
    sandbox
}

async fn get(
    sandbox: &RunningSandbox,
    path: &str,
    query: &[(&str, &str)],
) -> (StatusCode, Value, Option<String>) {
    let response = reqwest::Client::new()
        .get(format!(
            "{}/api/v2/{path}",
            sandbox.chargebee_base_url(SITE)
        ))
        .basic_auth(KEY, Some(""))
        .query(query)
        .send()
        .await
        .expect("request to the sandbox");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        response.json().await.expect("a JSON body"),
        retry_after,
    )
}

fn customer(id: &str) -> CbCustomerInput {
    CbCustomerInput {
        id: Some(id.into()),
        email: Some(format!("{id}@example.com")),
        ..Default::default()
    }
}

#[tokio::test]
async fn events_page_oldest_first_after_a_second_and_end_without_an_offset() {
    let sandbox = sandbox_with_site(10_000).await;
    let cb = &sandbox.chargebee;
    for i in 0..25 {
        cb.create_customer(SITE, customer(&format!("c{i:02}")))
            .unwrap();
    }
    let mut ids = Vec::new();
    let mut offset: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![
            ("occurred_at[after]", "0"),
            ("sort_by[asc]", "occurred_at"),
            ("limit", "10"),
        ];
        if let Some(offset) = &offset {
            query.push(("offset", offset));
        }
        let (status, body, _) = get(&sandbox, "events", &query).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        for entry in body["list"].as_array().unwrap() {
            let event = &entry["event"];
            assert_eq!(event["api_version"], "v2");
            assert_eq!(event["event_type"], "customer_created");
            assert!(event["occurred_at"].is_i64());
            assert!(event["webhook_status"].is_string());
            assert_eq!(
                event["content"]["customer"]["id"],
                event["content"]["customer"]["id"]
            );
            ids.push(event["id"].as_str().unwrap().to_string());
        }
        match body.get("next_offset") {
            Some(next) => offset = Some(next.as_str().unwrap().to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = cb.events(SITE).into_iter().map(|e| e.id).collect();
    assert_eq!(ids, expected, "every event once, oldest first");

    // `occurred_at[after]` is strict: nothing after the newest second.
    let newest = cb.events(SITE).last().unwrap().occurred_at.to_string();
    let (_, body, _) = get(&sandbox, "events", &[("occurred_at[after]", &newest)]).await;
    assert_eq!(body["list"], json!([]));
    assert!(body.get("next_offset").is_none());
    // Many events share one second; all of them are after the second before.
    let before = (cb.events(SITE)[0].occurred_at - 1).to_string();
    let (_, body, _) = get(
        &sandbox,
        "events",
        &[("occurred_at[after]", &before), ("limit", "100")],
    )
    .await;
    assert_eq!(body["list"].as_array().unwrap().len(), 25);
}

#[tokio::test]
async fn changes_raise_chargebees_events_with_bumped_versions() {
    let sandbox = sandbox_with_site(10_000).await;
    let cb = &sandbox.chargebee;
    let created = cb.create_customer(SITE, customer("cus_1")).unwrap();
    let changed = cb
        .update_customer(
            SITE,
            "cus_1",
            CbCustomerInput {
                first_name: Some("Ada".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(changed.record.resource_version > created.record.resource_version);
    assert!(changed.record.updated_at >= created.record.updated_at);
    let sub = cb
        .create_subscription(
            SITE,
            "cus_1",
            CbSubscriptionInput {
                trial_end: Some(4_102_444_800),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(sub.record.status, "in_trial");
    let activated = cb
        .update_subscription(
            SITE,
            &sub.record.id,
            CbSubscriptionInput {
                status: Some("active".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let cancelled = cb
        .cancel_subscription(SITE, &sub.record.id, Some("not_paid"))
        .unwrap();
    let invoice = cb
        .create_invoice(
            SITE,
            "cus_1",
            CbInvoiceInput {
                total: Some(1200),
                ..Default::default()
            },
        )
        .unwrap();
    let deleted = cb.delete_customer(SITE, "cus_1").unwrap();

    let types: Vec<String> = cb.events(SITE).into_iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            "customer_created",
            "customer_changed",
            "subscription_created",
            "subscription_activated",
            "subscription_cancelled",
            "invoice_generated",
            "customer_deleted"
        ]
    );
    assert_eq!(
        activated.event.content["customer"]["first_name"], "Ada",
        "subscription events carry the customer"
    );
    assert_eq!(cancelled.record.cancel_reason.as_deref(), Some("not_paid"));
    assert_eq!(invoice.event.content["invoice"]["total"], 1200);
    assert_eq!(deleted.event.content["customer"]["deleted"], true);
    let versions: Vec<i64> = cb
        .events(SITE)
        .iter()
        .map(|e| {
            // The resource the event is about: `customer_created` → `customer`, ...
            let key = e.event_type.split('_').next().unwrap();
            e.content[key]["resource_version"].as_i64().unwrap()
        })
        .collect();
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "versions strictly increase: {versions:?}"
    );

    // Deleted records leave the lists unless asked for.
    let (_, body, _) = get(&sandbox, "customers", &[]).await;
    assert_eq!(body["list"], json!([]));
    let (_, body, _) = get(&sandbox, "customers", &[("include_deleted", "true")]).await;
    assert_eq!(body["list"][0]["customer"]["deleted"], true);
}

#[tokio::test]
async fn lists_sort_filter_and_carry_the_customer_with_subscriptions() {
    let sandbox = sandbox_with_site(10_000).await;
    let cb = &sandbox.chargebee;
    for id in ["a", "b", "c"] {
        cb.create_customer(SITE, customer(id)).unwrap();
    }
    cb.create_subscription(
        SITE,
        "b",
        CbSubscriptionInput {
            id: Some("sub_b".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let (_, newest_first, _) = get(
        &sandbox,
        "customers",
        &[("sort_by[desc]", "created_at"), ("limit", "2")],
    )
    .await;
    let ids: Vec<&str> = newest_first["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["customer"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c", "b"]);
    assert!(newest_first["next_offset"].is_string());
    let (_, rest, _) = get(
        &sandbox,
        "customers",
        &[
            ("sort_by[desc]", "created_at"),
            ("limit", "2"),
            ("offset", newest_first["next_offset"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(rest["list"][0]["customer"]["id"], "a");
    assert!(rest.get("next_offset").is_none());

    let (_, subs, _) = get(&sandbox, "subscriptions", &[("customer_id[is]", "b")]).await;
    assert_eq!(subs["list"][0]["subscription"]["id"], "sub_b");
    assert_eq!(subs["list"][0]["customer"]["email"], "b@example.com");
    let (status, one, _) = get(&sandbox, "subscriptions/sub_b", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["customer"]["id"], "b");
    let (status, missing, _) = get(&sandbox, "customers/nobody", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["api_error_code"], "resource_not_found");
}

#[tokio::test]
async fn bad_credentials_and_parameters_get_chargebees_error_bodies() {
    let sandbox = sandbox_with_site(10_000).await;
    let url = format!("{}/api/v2/events", sandbox.chargebee_base_url(SITE));
    for request in [
        reqwest::Client::new().get(&url),
        reqwest::Client::new()
            .get(&url)
            .basic_auth("wrong", Some("")),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["api_error_code"], "api_authentication_failed");
        assert_eq!(body["http_status_code"], 401);
        for field in ["message", "type", "error_code"] {
            assert!(body[field].is_string(), "{field} in {body}");
        }
    }
    let (status, body, _) = get(&sandbox, "events", &[("limit", "101")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["param"], "limit");
    let (status, body, _) = get(&sandbox, "events", &[("offset", "not-an-offset")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let response = reqwest::Client::new()
        .get(format!(
            "{}/api/v2/events",
            sandbox.chargebee_base_url("nowhere")
        ))
        .basic_auth(KEY, Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.json::<Value>().await.unwrap()["api_error_code"],
        "site_not_found"
    );
    assert_eq!(
        sandbox.chargebee.request_count(SITE),
        2,
        "only authenticated requests count"
    );
}

#[tokio::test]
async fn the_per_minute_limit_answers_429_with_retry_after() {
    let sandbox = sandbox_with_site(3).await;
    for _ in 0..3 {
        let (status, _, _) = get(&sandbox, "events", &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body, retry_after) = get(&sandbox, "events", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["api_error_code"], "api_request_limit_exceeded");
    assert_eq!(body["http_status_code"], 429);
    let secs: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
}

#[tokio::test]
async fn injected_faults_are_served_then_cleared() {
    let sandbox = sandbox_with_site(10_000).await;
    sandbox.chargebee.set_faults(
        SITE,
        CbFaults {
            throttle_next: 1,
            retry_after_secs: 4,
            fail_next: 1,
            ..Default::default()
        },
    );
    let (status, _, retry_after) = get(&sandbox, "events", &[]).await;
    assert_eq!(
        (status, retry_after.as_deref()),
        (StatusCode::TOO_MANY_REQUESTS, Some("4"))
    );
    let (status, body, _) = get(&sandbox, "events", &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["api_error_code"], "internal_error");
    let (status, _, _) = get(&sandbox, "events", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sandbox.chargebee.faults(SITE).throttle_next, 0);
    assert_eq!(sandbox.chargebee.request_count(SITE), 3);
}

#[tokio::test]
async fn sites_and_changes_over_the_control_routes() {
    let sandbox = spawn_sandbox().await;
    let http = reqwest::Client::new();
    let control = format!("{}/__sandbox/chargebee/demo-test", sandbox.url());
    let added = http
        .put(&control)
        .json(&json!({"api_key": "k", "requests_per_minute": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let created: Value = http
        .post(format!("{control}/customers"))
        .json(&json!({"id": "cus_9", "email": "grace@example.com", "first_name": "Grace"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["event"]["event_type"], "customer_created");
    let sub: Value = http
        .post(format!("{control}/customers/cus_9/subscriptions"))
        .json(&json!({"plan_id": "pro", "mrr": 4900}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sub["record"]["plan_id"], "pro");
    let bad = http
        .post(format!("{control}/customers/nobody"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::NOT_FOUND);
    let faults = http
        .put(format!("{control}/faults"))
        .json(&json!({"latency_ms": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(faults.status(), StatusCode::OK);
    assert_eq!(sandbox.chargebee.faults("demo-test").latency_ms, 1);

    let snapshot: CbSnapshot = http
        .get(&control)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snapshot, sandbox.chargebee.snapshot("demo-test"));
    assert_eq!(snapshot.customers[0].first_name.as_deref(), Some("Grace"));
    assert_eq!(snapshot.events.len(), 2);
}
