//! The ActiveCampaign emulator against the behaviour billsync's client relies on.

use billsync_sandbox::{AcAccount, AcFaults, RunningSandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::spawn_sandbox;

/// A client for one account of the sandbox, sending the account's token.
struct Ac {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Ac {
    fn new(sandbox: &RunningSandbox, account: &str, token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            api: format!("{}/api/3", sandbox.activecampaign_base_url(account)),
            token: token.to_owned(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header("Api-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request to the sandbox");
        let status = response.status();
        let body = response.json().await.expect("a JSON body");
        (status, body)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

fn acme(sandbox: &RunningSandbox) -> Ac {
    Ac::new(sandbox, "acme", "acme-token")
}

#[tokio::test]
async fn contact_sync_creates_then_updates_one_contact() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);

    let (status, created) = ac
        .post(
            "/contact/sync",
            json!({"contact": {"email": "ada@example.com", "firstName": "Ada", "phone": "123"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["contact"]["id"]
        .as_str()
        .expect("a string id")
        .to_owned();
    assert_eq!(created["contact"]["email"], "ada@example.com");
    assert_eq!(created["contact"]["firstName"], "Ada");
    assert!(created["fieldValues"].is_array());

    let (status, updated) = ac
        .post(
            "/contact/sync",
            json!({"contact": {"email": "ADA@example.com", "lastName": "Lovelace"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["contact"]["id"], id.as_str());

    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(snapshot.contacts.len(), 1);
    let contact = snapshot.contact_by_email("ada@example.com").unwrap();
    assert_eq!(contact.id, id);
    assert_eq!(
        (
            contact.first_name.as_str(),
            contact.last_name.as_str(),
            contact.phone.as_str()
        ),
        ("Ada", "Lovelace", "123")
    );

    let (status, found) = ac.get("/contacts?email=Ada%40Example.com").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["contacts"].as_array().unwrap().len(), 1);
    assert_eq!(found["meta"]["total"], "1");
}

#[tokio::test]
async fn invalid_or_rejected_emails_get_acs_422() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    sandbox.activecampaign.set_faults(
        "acme",
        AcFaults {
            reject_emails: vec!["Bounce@Example.com".into()],
            ..AcFaults::default()
        },
    );

    for contact in [
        json!({"firstName": "No Email"}),
        json!({"email": ""}),
        json!({"email": "not-an-email"}),
        json!({"email": "bounce@example.com"}),
    ] {
        let (status, body) = ac.post("/contact/sync", json!({"contact": contact})).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{contact}: {body}"
        );
        let error = &body["errors"][0];
        assert_eq!(body["errors"].as_array().unwrap().len(), 1, "{body}");
        assert!(
            error["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{body}"
        );
        assert!(error["detail"].is_string(), "{body}");
        assert_eq!(error["code"], "email_invalid", "{body}");
        assert_eq!(
            error["source"]["pointer"], "/data/attributes/email",
            "{body}"
        );
    }
    assert!(sandbox.activecampaign.snapshot("acme").contacts.is_empty());

    let (status, body) = ac
        .post("/contact/sync", json!({"email": "a@example.com"}))
        .await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, json!({})));
}

#[tokio::test]
async fn wrong_or_missing_token_is_403_and_unknown_account_404() {
    let sandbox = spawn_sandbox().await;
    let (status, body) = Ac::new(&sandbox, "acme", "wrong").get("/contacts").await;
    assert_eq!(
        (status, body),
        (StatusCode::FORBIDDEN, json!({"message": "Forbidden"}))
    );

    let response = reqwest::get(format!(
        "{}/api/3/contacts",
        sandbox.activecampaign_base_url("acme")
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(sandbox.activecampaign.request_count("acme"), 0);

    let (status, _) = Ac::new(&sandbox, "nobody", "acme-token")
        .get("/contacts")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sixth_request_within_a_second_is_429_with_retry_after() {
    let sandbox = spawn_sandbox().await;
    sandbox
        .activecampaign
        .add_account(AcAccount::new("limited", "limited-token"));
    let ac = std::sync::Arc::new(Ac::new(&sandbox, "limited", "limited-token"));

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let ac = ac.clone();
        requests.spawn(async move {
            let response = ac
                .http
                .get(format!("{}/tags", ac.api))
                .header("Api-Token", &ac.token)
                .send()
                .await
                .unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (response.status(), retry_after)
        });
    }
    let mut limited = Vec::new();
    while let Some(result) = requests.join_next().await {
        let (status, retry_after) = result.unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited.push(retry_after);
        } else {
            assert_eq!(status, StatusCode::OK);
        }
    }
    assert_eq!(limited.len(), 1, "exactly one of six requests is refused");
    let retry_after: u64 = limited[0]
        .as_deref()
        .expect("a Retry-After header")
        .parse()
        .expect("whole seconds");
    assert!(retry_after >= 1);
    assert_eq!(sandbox.activecampaign.request_count("limited"), 6);

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _) = ac.get("/tags").await;
    assert_eq!(status, StatusCode::OK, "the window frees up after a second");

    sandbox.activecampaign.set_faults(
        "limited",
        AcFaults {
            rate_limit_disabled: true,
            ..AcFaults::default()
        },
    );
    for _ in 0..10 {
        assert_eq!(ac.get("/tags").await.0, StatusCode::OK);
    }
}

#[tokio::test]
async fn applying_a_tag_twice_keeps_one_contact_tag() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    let (_, contact) = ac
        .post(
            "/contact/sync",
            json!({"contact": {"email": "grace@example.com"}}),
        )
        .await;
    let contact_id = contact["contact"]["id"].as_str().unwrap().to_owned();
    let (status, tag) = ac
        .post(
            "/tags",
            json!({"tag": {"tag": "Customer", "tagType": "contact", "description": "Paying"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{tag}");
    let tag_id = tag["tag"]["id"].as_str().unwrap().to_owned();

    let (status, duplicate) = ac.post("/tags", json!({"tag": {"tag": "customer"}})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{duplicate}");
    assert_eq!(duplicate["errors"][0]["code"], "duplicate");

    let link =
        json!({"contactTag": {"contact": contact_id, "tag": tag_id.parse::<u64>().unwrap()}});
    let (first_status, first) = ac.post("/contactTags", link.clone()).await;
    let (second_status, second) = ac.post("/contactTags", link).await;
    assert_eq!(first_status, StatusCode::CREATED, "{first}");
    assert_eq!(second_status, StatusCode::CREATED, "{second}");
    assert_eq!(first["contactTag"]["id"], second["contactTag"]["id"]);

    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(snapshot.contact_tags.len(), 1);
    assert_eq!(snapshot.tags_of(&contact_id), vec!["Customer".to_owned()]);

    let (_, listed) = ac.get(&format!("/contacts/{contact_id}/contactTags")).await;
    assert_eq!(listed["contactTags"].as_array().unwrap().len(), 1);
    let (_, found) = ac.get("/tags?search=cust").await;
    assert_eq!(found["tags"][0]["tag"], "Customer");

    let (status, missing) = ac
        .post(
            "/contactTags",
            json!({"contactTag": {"contact": "999", "tag": tag_id}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    let (status, missing) = ac
        .post("/contactTags", json!({"contactTag": {"tag": tag_id}}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{missing}");
    assert_eq!(
        missing["errors"][0]["source"]["pointer"],
        "/data/attributes/contact"
    );

    let link_id = first["contactTag"]["id"].as_str().unwrap();
    let (status, _) = ac
        .send(
            reqwest::Method::DELETE,
            &format!("/contactTags/{link_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(sandbox
        .activecampaign
        .snapshot("acme")
        .tags_of(&contact_id)
        .is_empty());
}

#[tokio::test]
async fn custom_fields_and_values() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    let (status, field) = ac
        .post(
            "/fields",
            json!({"field": {"title": "Cb Plan Id", "type": "text", "perstag": "CB_PLAN_ID", "descript": "Chargebee plan"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{field}");
    let field_id = field["field"]["id"].as_str().unwrap().to_owned();
    assert_eq!(field["field"]["perstag"], "CB_PLAN_ID");

    let (status, duplicate) = ac
        .post(
            "/fields",
            json!({"field": {"title": "Other", "type": "text", "perstag": "CB_PLAN_ID"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{duplicate}");
    let (status, duplicate) = ac
        .post(
            "/fields",
            json!({"field": {"title": "Cb Plan Id", "type": "text", "perstag": "OTHER"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{duplicate}");

    let (status, fields) = ac.get("/fields?limit=10&offset=0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fields["meta"]["total"], "1");
    assert_eq!(fields["fields"][0]["id"], field_id.as_str());

    let (_, synced) = ac
        .post(
            "/contact/sync",
            json!({"contact": {"email": "alan@example.com", "fieldValues": [{"field": field_id, "value": "basic"}]}}),
        )
        .await;
    let contact_id = synced["contact"]["id"].as_str().unwrap().to_owned();
    assert_eq!(synced["fieldValues"][0]["value"], "basic");

    let (status, set) = ac
        .post(
            "/fieldValues",
            json!({"fieldValue": {"contact": contact_id.parse::<u64>().unwrap(), "field": field_id, "value": "pro"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["fieldValue"]["value"], "pro");

    let (_, values) = ac.get(&format!("/contacts/{contact_id}/fieldValues")).await;
    assert_eq!(values["fieldValues"].as_array().unwrap().len(), 1);
    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(
        snapshot.field_value(&contact_id, "CB_PLAN_ID").as_deref(),
        Some("pro")
    );
    assert_eq!(
        snapshot.field_value(&contact_id, "Cb Plan Id").as_deref(),
        Some("pro")
    );
}

#[tokio::test]
async fn lists_memberships_and_contact_deletion() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    let (_, contact) = ac
        .post(
            "/contacts",
            json!({"contact": {"email": "edsger@example.com", "firstName": "Edsger"}}),
        )
        .await;
    let contact_id = contact["contact"]["id"].as_str().unwrap().to_owned();
    let (status, duplicate) = ac
        .post(
            "/contacts",
            json!({"contact": {"email": "Edsger@example.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(duplicate["errors"][0]["code"], "duplicate");

    let (status, list) = ac
        .post(
            "/lists",
            json!({"list": {"name": "Customers", "stringid": "customers", "sender_url": "https://example.com", "sender_reminder": "You are a customer"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let list_id = list["list"]["id"].as_str().unwrap().to_owned();

    for status in [1, 2] {
        let (code, body) = ac
            .post(
                "/contactLists",
                json!({"contactList": {"list": list_id, "contact": contact_id, "status": status}}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{body}");
        assert_eq!(body["contactList"]["status"], status);
    }
    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(snapshot.lists_of(&contact_id), vec![(list_id.clone(), 2)]);

    let (_, found) = ac.get("/lists?filters[name]=customers").await;
    assert_eq!(found["lists"].as_array().unwrap().len(), 1);

    let (status, _) = ac
        .send(
            reqwest::Method::DELETE,
            &format!("/contacts/{contact_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert!(snapshot.contacts.is_empty());
    assert!(snapshot.contact_lists.is_empty());

    let (status, body) = ac.get(&format!("/contacts/{contact_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["message"],
        format!("No Result found for Subscriber with id {contact_id}")
    );
}

#[tokio::test]
async fn injected_failures_and_unknown_routes() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    sandbox.activecampaign.set_faults(
        "acme",
        AcFaults {
            fail_next: 2,
            ..AcFaults::default()
        },
    );
    assert_eq!(ac.get("/tags").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(ac.get("/tags").await.0, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(ac.get("/tags").await.0, StatusCode::OK);
    assert_eq!(sandbox.activecampaign.request_count("acme"), 3);
    assert_eq!(sandbox.activecampaign.faults("acme").fail_next, 0);

    let (status, body) = ac.get("/nothing/here").await;
    assert_eq!(
        (status, body),
        (StatusCode::NOT_FOUND, json!({"message": "Not Found"}))
    );
}
