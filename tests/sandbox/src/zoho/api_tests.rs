//! The Zoho CRM emulator over HTTP: tokens, auth, upserts and their per-record codes,
//! search, get, delete, settings, credits, concurrency and faults.

use super::*;
use crate::{RunningSandbox, SandboxConfig};
use reqwest::StatusCode;
use serde_json::{json, Value};

const ORG: &str = "zylker";

async fn sandbox_with(org: ZohoOrg) -> RunningSandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = crate::start(listener, SandboxConfig::default())
        .await
        .expect("start");
    sandbox.zoho.add_org(org);
    sandbox
}

fn org() -> ZohoOrg {
    ZohoOrg::new(ORG, "1000.CLIENT", "client-secret", "1000.refresh")
}

async fn sandbox() -> RunningSandbox {
    sandbox_with(org()).await
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
    raw: Vec<u8>,
}

async fn read(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let raw = response.bytes().await.expect("body").to_vec();
    let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        raw,
    }
}

async fn token_request(sandbox: &RunningSandbox, refresh: &str, secret: &str) -> Answer {
    let url = format!(
        "{}/oauth/v2/token?grant_type=refresh_token&client_id=1000.CLIENT&client_secret={secret}&refresh_token={refresh}",
        sandbox.zoho.accounts_url(ORG)
    );
    read(
        reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect("token"),
    )
    .await
}

async fn access_token(sandbox: &RunningSandbox) -> String {
    let answer = token_request(sandbox, "1000.refresh", "client-secret").await;
    answer.body["access_token"]
        .as_str()
        .expect("an access token")
        .to_string()
}

async fn call(
    sandbox: &RunningSandbox,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let url = format!("{}/crm/v8{path}", sandbox.zoho.api_domain(ORG));
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("Authorization", format!("Zoho-oauthtoken {token}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.expect("call")).await
}

async fn upsert(sandbox: &RunningSandbox, token: &str, module: &str, body: Value) -> Answer {
    call(
        sandbox,
        token,
        reqwest::Method::POST,
        &format!("/{module}/upsert"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn the_token_endpoint_mints_tokens_for_the_api_domain_and_refuses_as_zoho_does() {
    let sandbox = sandbox().await;
    let answer = token_request(&sandbox, "1000.refresh", "client-secret").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["expires_in"], 3600);
    assert_eq!(answer.body["token_type"], "Bearer");
    assert_eq!(answer.body["api_domain"], sandbox.zoho.api_domain(ORG));

    // A form body works as well as the query.
    let form = reqwest::Client::new()
        .post(format!("{}/oauth/v2/token", sandbox.zoho.accounts_url(ORG)))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&client_id=1000.CLIENT&client_secret=client-secret&refresh_token=1000.refresh")
        .send()
        .await
        .expect("token");
    assert!(read(form).await.body["access_token"].is_string());

    let wrong_secret = token_request(&sandbox, "1000.refresh", "nope").await;
    assert_eq!(wrong_secret.status, StatusCode::OK);
    assert_eq!(wrong_secret.body, json!({"error": "invalid_client_secret"}));
    let wrong_refresh = token_request(&sandbox, "1000.other", "client-secret").await;
    assert_eq!(wrong_refresh.body, json!({"error": "invalid_code"}));

    // 2 issued; 8 more reach the ten per ten minutes; the 11th is refused.
    for _ in 0..8 {
        let ok = token_request(&sandbox, "1000.refresh", "client-secret").await;
        assert!(ok.body["access_token"].is_string());
    }
    let over = token_request(&sandbox, "1000.refresh", "client-secret").await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    assert_eq!(over.body["error"], "Access Denied");
    let counts = sandbox.zoho.snapshot(ORG).tokens;
    assert_eq!((counts.issued, counts.refused), (10, 3));

    sandbox.zoho.revoke_refresh_token(ORG);
    let revoked = token_request(&sandbox, "1000.refresh", "client-secret").await;
    assert_eq!(revoked.body, json!({"error": "invalid_code"}));
}

#[tokio::test]
async fn every_call_needs_a_live_zoho_oauthtoken() {
    let mut short = org();
    short.token_lifetime_secs = 1;
    let sandbox = sandbox_with(short).await;
    let url = format!("{}/crm/v8/users", sandbox.zoho.api_domain(ORG));
    let none = read(reqwest::get(&url).await.expect("call")).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.body["code"], "AUTHENTICATION_FAILURE");

    let unknown = call(
        &sandbox,
        "1000.made-up",
        reqwest::Method::GET,
        "/users",
        None,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.body,
        json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"})
    );

    let token = access_token(&sandbox).await;
    let answer = token_request(&sandbox, "1000.refresh", "client-secret").await;
    assert_eq!(answer.body["expires_in"], 1);
    assert_eq!(
        call(&sandbox, &token, reqwest::Method::GET, "/users", None)
            .await
            .status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = call(&sandbox, &token, reqwest::Method::GET, "/users", None).await;
    assert_eq!(expired.body["code"], "INVALID_TOKEN");

    let fresh = access_token(&sandbox).await;
    sandbox.zoho.expire_tokens(ORG);
    let expired = call(&sandbox, &fresh, reqwest::Method::GET, "/users", None).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    // Refused credentials are not API calls: nothing counted but the two served.
    assert_eq!(sandbox.zoho.request_counts(ORG).accepted, 1);
}

#[tokio::test]
async fn upserts_match_by_the_system_check_and_answer_each_record_in_order() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let answer = upsert(
        &sandbox,
        &token,
        "Contacts",
        json!({"data": [
            {"Last_Name": "Burns", "First_Name": "Ann", "Email": "ann@acme.example"},
            {"First_Name": "NoLast", "Email": "nolast@acme.example"},
            {"Last_Name": "Bad", "Email": "not-an-email"},
            {"Last_Name": "Burns-Smith", "Email": "ANN@acme.example"},
        ], "trigger": []}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let results = answer.body["data"].as_array().expect("data").clone();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["status"], "success");
    assert_eq!(results[0]["action"], "insert");
    assert_eq!(results[0]["message"], "record added");
    let id = results[0]["details"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(results[1]["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(results[1]["details"]["api_name"], "Last_Name");
    assert_eq!(results[1]["details"]["json_path"], "$.data[1].Last_Name");
    assert_eq!(results[2]["code"], "INVALID_DATA");
    assert_eq!(results[2]["details"]["api_name"], "Email");
    assert_eq!(results[3]["action"], "update");
    assert_eq!(results[3]["duplicate_field"], "Email");
    assert_eq!(results[3]["details"]["id"], id);

    let snapshot = sandbox.zoho.snapshot(ORG);
    assert_eq!(snapshot.contacts.len(), 1);
    assert_eq!(snapshot.contacts[0]["Last_Name"], "Burns-Smith");
    assert_eq!(snapshot.contacts[0]["Full_Name"], "Ann Burns-Smith");
    assert_eq!(snapshot.contacts[0]["Email"], "ANN@acme.example");

    // Accounts by Account_Name, and lookups as {id} objects.
    let account = upsert(
        &sandbox,
        &token,
        "Accounts",
        json!({"data": [{"Account_Name": "Acme"}]}),
    )
    .await;
    let account_id = account.body["data"][0]["details"]["id"].clone();
    let again = upsert(
        &sandbox,
        &token,
        "Accounts",
        json!({"data": [{"Account_Name": "acme", "Phone": "1"}]}),
    )
    .await;
    assert_eq!(again.body["data"][0]["action"], "update");
    let linked = upsert(
        &sandbox,
        &token,
        "Contacts",
        json!({"data": [
            {"Last_Name": "Burns", "Email": "ann@acme.example", "Account_Name": {"id": account_id}},
            {"Last_Name": "Lost", "Email": "lost@acme.example", "Account_Name": {"id": "1234"}},
            {"Last_Name": "Text", "Email": "text@acme.example", "Account_Name": "Acme"},
        ]}),
    )
    .await;
    let results = &linked.body["data"];
    assert_eq!(results[0]["status"], "success");
    assert_eq!(results[1]["code"], "INVALID_DATA");
    assert_eq!(results[1]["details"]["api_name"], "Account_Name");
    assert_eq!(results[2]["code"], "INVALID_DATA");
    let contact = sandbox.zoho.snapshot(ORG);
    let contact = contact
        .find("Contacts", "Email", "ann@acme.example")
        .expect("contact");
    assert_eq!(
        contact["Account_Name"],
        // The update wrote the name as sent.
        json!({"name": "acme", "id": account_id})
    );
}

#[tokio::test]
async fn duplicate_check_fields_replace_the_system_check_and_shared_emails_are_duplicate_data() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    // Two contacts share an email, as Zoho's web app allows.
    let seeded = sandbox.zoho.insert(
        ORG,
        "Contacts",
        &[
            json!({"Last_Name": "One", "Email": "twin@acme.example"}),
            json!({"Last_Name": "Two", "Email": "twin@acme.example"}),
        ],
    );
    assert!(seeded.iter().all(|r| r["status"] == "success"));
    let answer = upsert(
        &sandbox,
        &token,
        "Contacts",
        json!({"data": [{"Last_Name": "Three", "Email": "twin@acme.example"}]}),
    )
    .await;
    let result = &answer.body["data"][0];
    assert_eq!(result["code"], "DUPLICATE_DATA");
    assert_eq!(result["details"]["api_name"], "Email");
    assert_eq!(result["details"]["more_records"], true);
    assert_eq!(sandbox.zoho.snapshot(ORG).contacts.len(), 2);

    // A check field the module does not have refuses the call; a new organisation has no
    // custom fields.
    let answer = upsert(
        &sandbox,
        &token,
        "Contacts",
        json!({"data": [{"Last_Name": "Three", "Billing_Id": "cus_1"}],
               "duplicate_check_fields": ["Billing_Id"]}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["code"], "INVALID_DATA");
    assert_eq!(answer.body["details"]["api_name"], "Billing_Id");
    assert_eq!(sandbox.zoho.snapshot(ORG).contacts.len(), 2);
    let answer = call(
        &sandbox,
        &token,
        reqwest::Method::POST,
        "/settings/fields?module=Contacts",
        Some(
            json!({"fields": [{"field_label": "Billing Id", "data_type": "text", "length": 255,
                                "unique": {"casesensitive": "false"}}]}),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{:?}", answer.body);

    // A user-defined check field turns the Email check off: a new contact.
    let answer = upsert(
        &sandbox,
        &token,
        "Contacts",
        json!({"data": [{"Last_Name": "Three", "Email": "twin@acme.example", "Billing_Id": "cus_1"}],
               "duplicate_check_fields": ["Billing_Id"]}),
    )
    .await;
    assert_eq!(answer.body["data"][0]["action"], "insert");
    let answer = upsert(
        &sandbox,
        &token,
        "Contacts",
        json!({"data": [{"Last_Name": "Four", "Billing_Id": "cus_1"}],
               "duplicate_check_fields": ["Billing_Id"]}),
    )
    .await;
    assert_eq!(answer.body["data"][0]["action"], "update");
    assert_eq!(answer.body["data"][0]["duplicate_field"], "Billing_Id");
    assert_eq!(sandbox.zoho.snapshot(ORG).contacts.len(), 3);

    // More than 100 records is the whole call's error.
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"Last_Name": format!("L{i}")}))
        .collect();
    let answer = upsert(&sandbox, &token, "Contacts", json!({"data": many})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["code"], "LIMIT_EXCEEDED");
    let answer = upsert(&sandbox, &token, "Widgets", json!({"data": [{}]})).await;
    assert_eq!(answer.body["code"], "INVALID_MODULE");
}

#[tokio::test]
async fn deals_match_by_deal_name_and_take_only_their_pipelines_stages() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let answer = upsert(
        &sandbox,
        &token,
        "Deals",
        json!({"data": [
            {"Deal_Name": "sub_1", "Stage": "Qualification", "Amount": 29.5, "Closing_Date": "2025-07-01"},
            {"Deal_Name": "sub_2", "Stage": "Won Somehow"},
            {"Deal_Name": "sub_3"},
            {"Deal_Name": "sub_4", "Stage": "Qualification", "Amount": "lots"},
            {"Deal_Name": "sub_5", "Stage": "Qualification", "Closing_Date": "01/07/2025"},
            {"Deal_Name": "SUB_1", "Stage": "Closed Won"},
        ]}),
    )
    .await;
    let results = &answer.body["data"];
    assert_eq!(results[0]["action"], "insert");
    assert_eq!(results[1]["code"], "INVALID_DATA");
    assert_eq!(results[1]["details"]["api_name"], "Stage");
    assert_eq!(results[2]["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(results[2]["details"]["api_name"], "Stage");
    assert_eq!(results[3]["details"]["expected_data_type"], "double");
    assert_eq!(results[4]["details"]["expected_data_type"], "date");
    assert_eq!(results[5]["action"], "update");
    let deals = sandbox.zoho.snapshot(ORG).deals;
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0]["Stage"], "Closed Won");
    assert_eq!(deals[0]["Pipeline"], "Standard (Standard)");
    assert_eq!(deals[0]["Owner"]["id"], "5725767000000411001");
}

#[tokio::test]
async fn search_get_and_delete() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let id = upsert(
        &sandbox,
        &token,
        "Contacts",
        json!({"data": [{"Last_Name": "Burns", "Email": "ann@acme.example"}]}),
    )
    .await
    .body["data"][0]["details"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let get = reqwest::Method::GET;
    let found = call(
        &sandbox,
        &token,
        get.clone(),
        "/Contacts/search?email=ANN%40acme.example",
        None,
    )
    .await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(found.body["data"][0]["id"], id);
    assert_eq!(found.body["info"]["count"], 1);
    let criteria = call(
        &sandbox,
        &token,
        get.clone(),
        "/Contacts/search?criteria=((Last_Name:equals:burns)and(Email:starts_with:ann))",
        None,
    )
    .await;
    assert_eq!(criteria.body["data"][0]["id"], id);
    let none = call(
        &sandbox,
        &token,
        get.clone(),
        "/Contacts/search?email=x%40y.example",
        None,
    )
    .await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
    assert!(none.raw.is_empty());
    let missing = call(&sandbox, &token, get.clone(), "/Contacts/search", None).await;
    assert_eq!(missing.body["code"], "REQUIRED_PARAM_MISSING");
    let bad = call(
        &sandbox,
        &token,
        get.clone(),
        "/Contacts/search?criteria=Email",
        None,
    )
    .await;
    assert_eq!(bad.body["code"], "INVALID_QUERY");

    let record = call(
        &sandbox,
        &token,
        get.clone(),
        &format!("/Contacts/{id}"),
        None,
    )
    .await;
    assert_eq!(record.body["data"][0]["Email"], "ann@acme.example");
    let deleted = call(
        &sandbox,
        &token,
        reqwest::Method::DELETE,
        &format!("/Contacts/{id}"),
        None,
    )
    .await;
    assert_eq!(deleted.body["data"][0]["code"], "SUCCESS");
    assert_eq!(deleted.body["data"][0]["message"], "record deleted");
    let again = call(
        &sandbox,
        &token,
        reqwest::Method::DELETE,
        &format!("/Contacts/{id}"),
        None,
    )
    .await;
    assert_eq!(again.body["data"][0]["code"], "INVALID_DATA");
    let gone = call(&sandbox, &token, get, &format!("/Contacts/{id}"), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn users_layouts_and_pipelines_of_a_layout() {
    let mut custom = org();
    custom.pipelines.push(ZohoPipeline {
        name: "Renewals".into(),
        stages: vec!["Due".into(), "Renewed".into(), "Closed Lost".into()],
    });
    let sandbox = sandbox_with(custom).await;
    let token = access_token(&sandbox).await;
    let get = reqwest::Method::GET;
    let users = call(
        &sandbox,
        &token,
        get.clone(),
        "/users?type=ActiveUsers",
        None,
    )
    .await;
    assert_eq!(users.body["users"][0]["id"], "5725767000000411001");
    assert_eq!(users.body["users"][0]["status"], "active");
    let layouts = call(
        &sandbox,
        &token,
        get.clone(),
        "/settings/layouts?module=Deals",
        None,
    )
    .await;
    let layout = layouts.body["layouts"][0]["id"]
        .as_str()
        .expect("layout")
        .to_string();
    let no_module = call(&sandbox, &token, get.clone(), "/settings/layouts", None).await;
    assert_eq!(no_module.body["details"]["param"], "module");
    let no_layout = call(&sandbox, &token, get.clone(), "/settings/pipeline", None).await;
    assert_eq!(no_layout.status, StatusCode::BAD_REQUEST);
    assert_eq!(no_layout.body["code"], "REQUIRED_PARAM_MISSING");
    let wrong = call(
        &sandbox,
        &token,
        get.clone(),
        "/settings/pipeline?layout_id=1",
        None,
    )
    .await;
    assert_eq!(wrong.body["code"], "INVALID_DATA");
    let pipelines = call(
        &sandbox,
        &token,
        get,
        &format!("/settings/pipeline?layout_id={layout}"),
        None,
    )
    .await;
    let pipelines = pipelines.body["pipeline"]
        .as_array()
        .expect("pipeline")
        .clone();
    assert_eq!(pipelines.len(), 2);
    assert_eq!(pipelines[0]["default"], true);
    assert_eq!(pipelines[1]["display_value"], "Renewals");
    assert_eq!(pipelines[1]["maps"][1]["display_value"], "Renewed");
    // A stage of another pipeline is refused.
    let answer = upsert(
        &sandbox,
        &token,
        "Deals",
        json!({"data": [
            {"Deal_Name": "a", "Pipeline": "Renewals", "Stage": "Qualification"},
            {"Deal_Name": "b", "Pipeline": "Renewals", "Stage": "Renewed"},
        ]}),
    )
    .await;
    assert_eq!(answer.body["data"][0]["code"], "INVALID_DATA");
    assert_eq!(answer.body["data"][1]["status"], "success");
}

#[tokio::test]
async fn credits_are_spent_per_call_and_per_ten_records_then_refused_without_retry_after() {
    let mut small = org();
    small.credits_per_day = 6;
    let sandbox = sandbox_with(small).await;
    let token = access_token(&sandbox).await;
    // 1 credit: 5 left, no header yet (not past half).
    let first = call(&sandbox, &token, reqwest::Method::GET, "/users", None).await;
    assert!(first.headers.get("x-api-credits-remaining").is_none());
    // 25 records: 3 credits, 2 left, past half.
    let records: Vec<Value> = (0..25)
        .map(|i| json!({"Last_Name": format!("L{i}"), "Email": format!("c{i}@acme.example")}))
        .collect();
    let batch = upsert(&sandbox, &token, "Contacts", json!({"data": records})).await;
    assert_eq!(batch.status, StatusCode::OK, "{:?}", batch.body);
    assert_eq!(batch.headers["x-api-credits-remaining"], "2");
    assert_eq!(sandbox.zoho.snapshot(ORG).credits_used, 4);
    for _ in 0..2 {
        call(&sandbox, &token, reqwest::Method::GET, "/users", None).await;
    }
    let refused = call(&sandbox, &token, reqwest::Method::GET, "/users", None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.body["code"], "TOO_MANY_REQUESTS");
    assert!(refused.headers.get("retry-after").is_none());
    assert_eq!(
        sandbox.zoho.request_counts(ORG),
        RequestCounts {
            accepted: 4,
            refused: 1
        }
    );
}

#[tokio::test]
async fn calls_over_the_concurrency_limit_are_refused() {
    let mut narrow = org();
    narrow.concurrency = 2;
    let sandbox = sandbox_with(narrow).await;
    sandbox.zoho.set_faults(
        ORG,
        ZohoFaults {
            processing_ms: 400,
            ..ZohoFaults::default()
        },
    );
    let token = access_token(&sandbox).await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let request = reqwest::Client::new()
            .get(format!("{}/crm/v8/users", sandbox.zoho.api_domain(ORG)))
            .header("Authorization", format!("Zoho-oauthtoken {token}"));
        calls.spawn(async move { read(request.send().await.expect("call")).await });
    }
    let answers: Vec<Answer> = calls.join_all().await;
    let ok = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let refused: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!((ok, refused.len()), (2, 2));
    assert!(refused
        .iter()
        .all(|a| a.headers.get("retry-after").is_none()));
    assert_eq!(sandbox.zoho.request_counts(ORG).refused, 2);
    // Refused calls cost no credit.
    assert_eq!(sandbox.zoho.snapshot(ORG).credits_used, 2);
}

#[tokio::test]
async fn injected_throttles_and_failures() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    sandbox.zoho.set_faults(
        ORG,
        ZohoFaults {
            throttle_next: 1,
            fail_next: 1,
            ..ZohoFaults::default()
        },
    );
    let throttled = call(&sandbox, &token, reqwest::Method::GET, "/users", None).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers.get("retry-after").is_none());
    let failed = call(&sandbox, &token, reqwest::Method::GET, "/users", None).await;
    assert_eq!(failed.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(failed.body["code"], "INTERNAL_ERROR");
    let ok = call(&sandbox, &token, reqwest::Method::GET, "/users", None).await;
    assert_eq!(ok.status, StatusCode::OK);
    // The control routes read the same counts.
    let counts: RequestCounts =
        reqwest::get(format!("{}/__sandbox/zoho/{ORG}/requests", sandbox.url()))
            .await
            .expect("requests")
            .json()
            .await
            .expect("json");
    assert_eq!(
        counts,
        RequestCounts {
            accepted: 2,
            refused: 1
        }
    );
}

#[tokio::test]
async fn requests_the_v8_spec_refuses_are_answered_as_zoho_does_and_recorded() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let ok = call(
        &sandbox,
        &token,
        reqwest::Method::GET,
        "/users?type=ActiveUsers",
        None,
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);

    let records: Vec<Value> = (0..101)
        .map(|i| json!({"Last_Name": format!("n{i}")}))
        .collect();
    let too_many = upsert(&sandbox, &token, "Contacts", json!({"data": records})).await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_many.body["code"], "LIMIT_EXCEEDED");
    let wrong_type = upsert(
        &sandbox,
        &token,
        "Contacts",
        json!({"data": [{"Last_Name": "x"}], "trigger": "workflow"}),
    )
    .await;
    assert_eq!(
        (
            wrong_type.status,
            wrong_type.body["code"].clone(),
            wrong_type.body["details"]["api_name"].clone()
        ),
        (
            StatusCode::BAD_REQUEST,
            json!("INVALID_DATA"),
            json!("/trigger")
        )
    );
    let unknown = call(
        &sandbox,
        &token,
        reqwest::Method::GET,
        "/users?type=ActiveUsers&sort=name",
        None,
    )
    .await;
    assert_eq!(unknown.body["details"]["param_name"], "sort");
    let missing = call(
        &sandbox,
        &token,
        reqwest::Method::GET,
        "/settings/layouts",
        None,
    )
    .await;
    assert_eq!(missing.body["code"], "REQUIRED_PARAM_MISSING");
    // A token request with a parameter the endpoint does not take.
    let url = format!("{}/oauth/v2/token", sandbox.zoho.accounts_url(ORG));
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "1000.CLIENT"),
        ("client_secret", "client-secret"),
        ("refresh_token", "1000.refresh"),
        ("scope", "ZohoCRM.modules.ALL"),
    ];
    let answer = read(
        reqwest::Client::new()
            .post(url)
            .form(&form)
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(
        (answer.status, answer.body["error"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_request"))
    );

    let checks = sandbox.zoho.spec_checks(ORG);
    // The first token request, the users call, the four invalid calls, the token request.
    assert_eq!((checks.checked, checks.invalid), (7, 5));
    let operations: Vec<Option<&str>> = checks
        .violations
        .iter()
        .map(|v| v.operation.as_deref())
        .collect();
    assert_eq!(
        operations,
        [
            Some("Upsert Records (POST /crm/v8/{module_api_name}/upsert)"),
            Some("Upsert Records (POST /crm/v8/{module_api_name}/upsert)"),
            Some("Get Users (GET /crm/v8/users)"),
            Some("Get Layouts (GET /crm/v8/settings/layouts)"),
            Some("refreshAccessToken (POST /oauth/v2/token, Zoho's OAuth docs)"),
        ]
    );
    let over_http: Value =
        reqwest::get(format!("{}/__sandbox/zoho/{ORG}/violations", sandbox.url()))
            .await
            .expect("violations")
            .json()
            .await
            .expect("JSON");
    assert_eq!(over_http["invalid"], 5);
    assert_eq!(over_http["violations"][0]["problems"][0]["at"], "/data");
    assert_eq!(
        over_http["violations"][0]["problems"][0]["kind"],
        "too_large"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn fields_are_listed_and_created_as_the_spec_says_and_creating_needs_the_scope() {
    let sandbox = sandbox().await;
    let token = access_token(&sandbox).await;
    let get = |module: &'static str| {
        let (sandbox, token) = (&sandbox, &token);
        async move {
            call(
                sandbox,
                token,
                reqwest::Method::GET,
                &format!("/settings/fields?module={module}"),
                None,
            )
            .await
        }
    };
    let names = |answer: &Answer| -> Vec<String> {
        answer.body["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| f["api_name"].as_str().expect("api_name").to_string())
            .collect()
    };
    let answer = get("Deals").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(names(&answer).contains(&"Deal_Name".to_string()));
    assert!(answer.body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .all(|f| f["custom_field"] == false));

    let answer = call(
        &sandbox,
        &token,
        reqwest::Method::POST,
        "/settings/fields?module=Deals",
        Some(
            json!({"fields": [{"field_label": "Billsync Subscription Id", "data_type": "text",
                                "length": 255, "unique": {"casesensitive": "false"}}]}),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body["fields"][0]["code"], "SUCCESS");
    assert_eq!(answer.body["fields"][0]["status"], "success");
    let id = answer.body["fields"][0]["details"]["id"].clone();
    let answer = get("Deals").await;
    let created = answer.body["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .find(|f| f["api_name"] == "Billsync_Subscription_Id")
        .expect("the new field, its API name from its label")
        .clone();
    assert_eq!(created["id"], id);
    assert_eq!(created["custom_field"], true);
    assert_eq!(created["data_type"], "text");
    assert_eq!(created["unique"]["casesensitive"], "false");
    assert!(!names(&get("Contacts").await).contains(&"Billsync_Subscription_Id".to_string()));

    // The same label again is DUPLICATE_DATA; a field without data_type is refused.
    let answer = call(
        &sandbox,
        &token,
        reqwest::Method::POST,
        "/settings/fields?module=Deals",
        Some(json!({"fields": [{"field_label": "Billsync Subscription Id", "data_type": "text"}]})),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.body["fields"][0]["code"], "DUPLICATE_DATA");
    let answer = call(
        &sandbox,
        &token,
        reqwest::Method::POST,
        "/settings/fields?module=Deals",
        Some(json!({"fields": [{"field_label": "Other"}]})),
    )
    .await;
    // Refused at the door by the spec check (data_type is required), before the handler.
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    assert!(
        answer.body.to_string().contains("data_type"),
        "{}",
        answer.body
    );
    let answer = call(
        &sandbox,
        &token,
        reqwest::Method::GET,
        "/settings/fields",
        None,
    )
    .await;
    assert_eq!(answer.body["code"], "REQUIRED_PARAM_MISSING");

    // A refresh token without a settings scope that covers creating fields.
    let mut limited = org();
    limited.name = "limited".into();
    limited.scopes = vec!["ZohoCRM.modules.ALL".into(), "ZohoCRM.settings.READ".into()];
    sandbox.zoho.add_org(limited);
    let url = format!(
        "{}/oauth/v2/token?grant_type=refresh_token&client_id=1000.CLIENT&client_secret=client-secret&refresh_token=1000.refresh",
        sandbox.zoho.accounts_url("limited")
    );
    let minted = read(
        reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(
        minted.body["scope"],
        "ZohoCRM.modules.ALL ZohoCRM.settings.READ"
    );
    let token = minted.body["access_token"].as_str().expect("token");
    let answer = read(
        reqwest::Client::new()
            .post(format!(
                "{}/crm/v8/settings/fields?module=Contacts",
                sandbox.zoho.api_domain("limited")
            ))
            .header("Authorization", format!("Zoho-oauthtoken {token}"))
            .json(
                &json!({"fields": [{"field_label": "Billsync Customer Id", "data_type": "text"}]}),
            )
            .send()
            .await
            .expect("call"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.body["code"], "OAUTH_SCOPE_MISMATCH");
    let answer = read(
        reqwest::Client::new()
            .get(format!(
                "{}/crm/v8/settings/fields?module=Contacts",
                sandbox.zoho.api_domain("limited")
            ))
            .header("Authorization", format!("Zoho-oauthtoken {token}"))
            .send()
            .await
            .expect("call"),
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::OK,
        "reading needs settings.READ only"
    );
}
