//! The Pipedrive emulator over HTTP: auth, the burst and search windows with their headers,
//! token costs and the daily budget, strict v2 bodies, search, fields, notes and read-back.

use serde_json::{json, Value};

use super::*;
use crate::{RunningSandbox, SandboxConfig};

const TOKEN: &str = "pd-token-123";

async fn sandbox(company: PdCompany) -> (RunningSandbox, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = crate::start(listener, SandboxConfig::default())
        .await
        .unwrap();
    let base = sandbox.pipedrive.base_url(&company.name);
    sandbox.pipedrive.add_company(company);
    (sandbox, base)
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.into(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-token", TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        let text = response.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// `GET /__sandbox/pipedrive/{route}`'s JSON.
async fn control_json(sandbox: &RunningSandbox, route: &str) -> Value {
    reqwest::get(format!("{}/__sandbox/pipedrive/{route}", sandbox.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn unlimited(name: &str) -> PdCompany {
    PdCompany {
        requests_per_2s: 10_000,
        ..PdCompany::new(name, TOKEN)
    }
}

#[tokio::test]
async fn api_token_header_or_oauth_bearer_and_nothing_else() {
    let company = PdCompany {
        oauth_token: Some("oauth-abc".into()),
        ..unlimited("auth")
    };
    let (sandbox, base) = sandbox(company).await;
    let http = reqwest::Client::new();
    let url = format!("{base}/api/v2/pipelines");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(
            http.get(&url)
                .header("x-api-token", TOKEN)
                .send()
                .await
                .unwrap()
        ),
        200
    );
    assert_eq!(
        status(
            http.get(&url)
                .bearer_auth("oauth-abc")
                .send()
                .await
                .unwrap()
        ),
        200
    );
    let wrong = http
        .get(&url)
        .header("x-api-token", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["success"], json!(false));
    assert_eq!(body["error"], json!("unauthorized access"));
    assert!(body["error_info"].is_string() && body.get("data").is_some());
    assert_eq!(status(http.get(&url).send().await.unwrap()), 401);
    // The v1 `api_token` query parameter is not one of the v2 spec's schemes.
    assert_eq!(
        status(
            http.get(format!("{url}?api_token={TOKEN}"))
                .send()
                .await
                .unwrap()
        ),
        401
    );
    assert_eq!(sandbox.pipedrive.request_counts("auth").accepted, 2);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_burst_window_answers_429_with_ratelimit_headers_and_retry_after() {
    let company = PdCompany {
        requests_per_2s: 3,
        ..PdCompany::new("burst", TOKEN)
    };
    let (sandbox, base) = sandbox(company).await;
    let api = Api::new(&base);
    let (status, headers, _) = api.call(Method::GET, "/api/v2/stages", None).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-ratelimit-limit"], "3");
    assert_eq!(headers["x-ratelimit-remaining"], "2");
    api.call(Method::GET, "/api/v2/stages", None).await;
    api.call(Method::GET, "/api/v2/stages", None).await;
    let (status, headers, body) = api.call(Method::GET, "/api/v2/stages", None).await;
    assert_eq!(status, 429);
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(headers["x-ratelimit-reset"], "2");
    assert_eq!(body["success"], json!(false));
    assert_eq!(
        sandbox.pipedrive.request_counts("burst"),
        kit::RequestCounts {
            accepted: 3,
            refused: 1
        }
    );
    // Refused calls cost nothing: three list-of-stages calls at 5 tokens.
    assert_eq!(sandbox.pipedrive.tokens("burst").spent, 15);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn searches_have_their_own_window_of_ten_per_two_seconds() {
    let (sandbox, base) = sandbox(unlimited("search")).await;
    let api = Api::new(&base);
    for _ in 0..10 {
        let (status, _, _) = api
            .call(Method::GET, "/api/v2/persons/search?term=ab", None)
            .await;
        assert_eq!(status, 200);
    }
    let (status, headers, _) = api
        .call(Method::GET, "/api/v2/persons/search?term=ab", None)
        .await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
    // Other calls still go through.
    assert_eq!(
        api.call(Method::GET, "/api/v2/persons/1", None).await.0,
        404
    );
    assert_eq!(sandbox.pipedrive.request_counts("search").refused, 1);
    assert_eq!(sandbox.pipedrive.tokens("search").spent, 10 * 20 + 1);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn calls_are_charged_their_token_cost_until_the_daily_budget_is_spent() {
    let company = PdCompany {
        daily_tokens: 31,
        ..unlimited("budget")
    };
    let (sandbox, base) = sandbox(company).await;
    let api = Api::new(&base);
    // search 20 + POST 5 + GET by id 1 + PATCH 5 = 31.
    api.call(
        Method::GET,
        "/api/v2/persons/search?term=a@x.io&fields=email&exact_match=true",
        None,
    )
    .await;
    let (_, _, created) = api
        .call(Method::POST, "/api/v2/persons", Some(json!({"name": "A"})))
        .await;
    let id = created["data"]["id"].as_u64().unwrap();
    api.call(Method::GET, &format!("/api/v2/persons/{id}"), None)
        .await;
    api.call(
        Method::PATCH,
        &format!("/api/v2/persons/{id}"),
        Some(json!({"name": "B"})),
    )
    .await;
    assert_eq!(sandbox.pipedrive.tokens("budget").spent, 31);
    let (status, headers, body) = api
        .call(Method::GET, &format!("/api/v2/persons/{id}"), None)
        .await;
    assert_eq!(status, 429);
    assert!(
        !headers.contains_key("retry-after"),
        "no header reports the daily budget"
    );
    assert_eq!(body["success"], json!(false));
    let (status, headers, body) = api
        .call(Method::GET, &format!("/api/v2/persons/{id}"), None)
        .await;
    assert_eq!(status, 403);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(body.is_string());
    assert_eq!(
        sandbox.pipedrive.tokens("budget"),
        PdTokens {
            daily: 31,
            spent: 31,
            refused: 2
        }
    );
    assert_eq!(
        sandbox.pipedrive.request_counts("budget"),
        kit::RequestCounts {
            accepted: 4,
            refused: 2
        }
    );
    sandbox.pipedrive.new_day("budget");
    assert_eq!(
        api.call(Method::GET, &format!("/api/v2/persons/{id}"), None)
            .await
            .0,
        200
    );
    sandbox.shutdown().await;
}

#[test]
fn token_costs_are_the_specs() {
    use routes::token_cost;
    let v2 = "/pipedrive/{company}/api/v2";
    assert_eq!(
        token_cost(&Method::GET, &format!("{v2}/persons/search")),
        20
    );
    assert_eq!(token_cost(&Method::GET, &format!("{v2}/deals/{{id}}")), 1);
    assert_eq!(token_cost(&Method::PATCH, &format!("{v2}/deals/{{id}}")), 5);
    assert_eq!(token_cost(&Method::POST, &format!("{v2}/organizations")), 5);
    assert_eq!(
        token_cost(&Method::DELETE, &format!("{v2}/persons/{{id}}")),
        3
    );
    assert_eq!(token_cost(&Method::GET, &format!("{v2}/personFields")), 10);
    assert_eq!(token_cost(&Method::POST, &format!("{v2}/dealFields")), 5);
    assert_eq!(token_cost(&Method::GET, &format!("{v2}/pipelines")), 5);
    assert_eq!(token_cost(&Method::GET, &format!("{v2}/stages")), 5);
    assert_eq!(
        token_cost(&Method::POST, "/pipedrive/{company}/v1/notes"),
        10
    );
    assert_eq!(
        token_cost(&Method::GET, "/pipedrive/{company}/v1/users"),
        20
    );
}

#[tokio::test]
async fn strict_v2_bodies_are_refused_with_pipedrives_error_shape() {
    let (sandbox, base) = sandbox(unlimited("strict")).await;
    let api = Api::new(&base);
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/v2/deals",
            Some(json!({"title": "Pro", "value": "49"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["success"], json!(false));
    assert_eq!(
        body["error"],
        json!("Validation failed: value: Parameter 'value' must be a number")
    );
    assert!(body["error_info"].is_string());
    assert_eq!(body["data"], Value::Null);
    let (status, _, _) = api
        .call(
            Method::POST,
            "/api/v2/organizations",
            Some(json!({"title": "Acme"})),
        )
        .await;
    assert_eq!(
        status, 400,
        "organizations need a name, whatever the spec's `required` says"
    );
    let (status, _, _) = api
        .call(
            Method::POST,
            "/api/v2/persons",
            Some(json!("not an object")),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = api
        .call(Method::PATCH, "/api/v2/persons/abc", Some(json!({})))
        .await;
    assert_eq!(status, 400);
    assert!(sandbox.pipedrive.snapshot("strict").deals.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn persons_organizations_deals_fields_and_notes_round_trip() {
    let (sandbox, base) = sandbox(unlimited("crud")).await;
    let api = Api::new(&base);
    let (_, _, field) = api
        .call(
            Method::POST,
            "/api/v2/personFields",
            Some(json!({"field_name": "Billing id", "field_type": "varchar"})),
        )
        .await;
    let code = field["data"]["field_code"].as_str().unwrap().to_string();
    let (_, _, fields) = api.call(Method::GET, "/api/v2/personFields", None).await;
    assert!(fields["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["field_code"] == json!(code) && f["field_name"] == json!("Billing id")));
    let (_, _, org) = api
        .call(
            Method::POST,
            "/api/v2/organizations",
            Some(json!({"name": "Acme"})),
        )
        .await;
    let org_id = org["data"]["id"].as_u64().unwrap();
    let (status, _, person) = api
        .call(
            Method::POST,
            "/api/v2/persons",
            Some(json!({
                "name": "Ada Lovelace", "org_id": org_id,
                "emails": [{"value": "Ada@Acme.io", "primary": true, "label": "work"}],
                "custom_fields": {&code: "cus_1"},
            })),
        )
        .await;
    assert_eq!(status, 200, "{person}");
    let person_id = person["data"]["id"].as_u64().unwrap();
    let (_, _, found) = api
        .call(
            Method::GET,
            "/api/v2/persons/search?term=ada%40acme.io&fields=email&exact_match=true",
            None,
        )
        .await;
    assert_eq!(found["data"]["items"][0]["item"]["id"], json!(person_id));
    assert_eq!(
        found["data"]["items"][0]["item"]["organization"]["name"],
        json!("Acme")
    );
    let (_, _, orgs) = api
        .call(
            Method::GET,
            "/api/v2/organizations/search?term=acme&fields=name&exact_match=true",
            None,
        )
        .await;
    assert_eq!(orgs["data"]["items"].as_array().unwrap().len(), 1);
    let (status, _, _) = api
        .call(
            Method::GET,
            "/api/v2/persons/search?term=a&fields=bogus",
            None,
        )
        .await;
    assert_eq!(status, 400);

    let (_, _, deal) = api
        .call(Method::POST, "/api/v2/deals", Some(json!({"title": "Pro plan", "value": 49.0, "currency": "EUR", "person_id": person_id, "org_id": org_id, "stage_id": 2})))
        .await;
    let deal_id = deal["data"]["id"].as_u64().unwrap();
    let (_, _, won) = api
        .call(
            Method::PATCH,
            &format!("/api/v2/deals/{deal_id}"),
            Some(json!({"status": "lost", "lost_reason": "Cancelled"})),
        )
        .await;
    assert_eq!(won["data"]["status"], json!("lost"));
    assert_eq!(won["data"]["value"], json!(49.0));
    let (status, _, note) = api
        .call(
            Method::POST,
            "/v1/notes",
            Some(json!({"content": "Subscription cancelled", "deal_id": deal_id})),
        )
        .await;
    assert_eq!(status, 200, "{note}");
    let (_, _, users) = api.call(Method::GET, "/v1/users", None).await;
    assert_eq!(users["data"][0]["id"], json!(1));

    let (_, _, deleted) = api
        .call(
            Method::DELETE,
            &format!("/api/v2/persons/{person_id}"),
            None,
        )
        .await;
    assert_eq!(deleted["data"]["id"], json!(person_id));
    let (status, _, gone) = api
        .call(Method::GET, &format!("/api/v2/persons/{person_id}"), None)
        .await;
    assert_eq!(
        (status, gone["data"]["is_deleted"].clone()),
        (200, json!(true))
    );
    let (status, _, _) = api
        .call(
            Method::PATCH,
            &format!("/api/v2/persons/{person_id}"),
            Some(json!({"name": "X"})),
        )
        .await;
    assert_eq!(status, 404);

    let snapshot = sandbox.pipedrive.snapshot("crud");
    assert_eq!(snapshot.deals[0]["lost_reason"], json!("Cancelled"));
    assert_eq!(snapshot.deals[0]["pipeline_id"], json!(1));
    assert_eq!(snapshot.notes[0].deal_id, Some(deal_id));
    assert!(snapshot.persons_with_email("ada@acme.io").is_empty());
    assert_eq!(
        snapshot.field_code(PdEntity::Person, "Billing id"),
        Some(code.as_str())
    );
    let control = control_json(&sandbox, "crud").await;
    assert_eq!(
        control["snapshot"]["organizations"][0]["name"],
        json!("Acme")
    );
    let counts = control_json(&sandbox, "crud/requests").await;
    assert_eq!(counts["refused"], json!(0));
    assert_eq!(counts["accepted"], json!(14));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn injected_faults_come_through_the_control_route() {
    let (sandbox, base) = sandbox(unlimited("faults")).await;
    let http = reqwest::Client::new();
    let put = http
        .put(format!(
            "{}/__sandbox/pipedrive/faults/faults",
            sandbox.url()
        ))
        .json(&json!({"throttle_next": 1, "retry_after_secs": 7, "fail_next": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status().as_u16(), 200);
    let api = Api::new(&base);
    let (status, headers, _) = api.call(Method::GET, "/api/v2/stages", None).await;
    assert_eq!(
        (status, headers["retry-after"].to_str().unwrap()),
        (429, "7")
    );
    assert_eq!(api.call(Method::GET, "/api/v2/stages", None).await.0, 500);
    assert_eq!(api.call(Method::GET, "/api/v2/stages", None).await.0, 200);
    let index = reqwest::get(sandbox.url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        index.contains("<h2>Pipedrive</h2>") && index.contains("faults"),
        "{index}"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn requests_the_specs_refuse_are_answered_as_pipedrive_does_and_recorded() {
    let (sandbox, base) = sandbox(unlimited("checked")).await;
    let api = Api::new(&base);
    let (status, _, _) = api
        .call(
            Method::POST,
            "/api/v2/persons",
            Some(json!({"name": "Ada"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, body) = api
        .call(
            Method::GET,
            "/api/v2/persons/search?term=ada&exact_match=yes",
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "ERR_SCHEMA_VALIDATION_FAILED");
    assert_eq!(
        body["error"],
        "Validation failed: exact_match: Parameter 'exact_match' must be a boolean"
    );
    let (status, _, _) = api
        .call(
            Method::PATCH,
            "/api/v2/persons/1",
            Some(json!({"org_id": "3"})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _, body) = api.call(Method::GET, "/v1/persons", None).await;
    assert_eq!((status, body["success"].clone()), (404, json!(false)));

    let checks = sandbox.pipedrive.spec_checks("checked");
    assert_eq!((checks.checked, checks.invalid), (4, 3));
    let first = &checks.violations[0];
    assert_eq!(
        first.operation.as_deref(),
        Some("searchPersons (GET /api/v2/persons/search)")
    );
    assert_eq!(first.problems[0].at, "exact_match");
    assert_eq!(checks.violations[2].operation, None);
    let over_http = control_json(&sandbox, "checked/violations").await;
    assert_eq!(
        (over_http["checked"].clone(), over_http["invalid"].clone()),
        (json!(4), json!(3))
    );
    // The record the invalid PATCH aimed at is unchanged.
    assert_eq!(
        sandbox.pipedrive.snapshot("checked").live(PdEntity::Person)[0]["org_id"],
        Value::Null
    );
    sandbox.shutdown().await;
}
