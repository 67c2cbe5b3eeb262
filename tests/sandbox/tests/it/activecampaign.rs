//! The ActiveCampaign emulator against the behaviour billsync's client relies on.

use billsync_sandbox::{AcAccount, AcFaults, RunningSandbox};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::spawn_sandbox;

/// A client for one account of the sandbox, sending the account's token.
pub(crate) struct Ac {
    http: reqwest::Client,
    api: String,
    token: String,
}

impl Ac {
    pub(crate) fn new(sandbox: &RunningSandbox, account: &str, token: &str) -> Self {
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

    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

pub(crate) fn acme(sandbox: &RunningSandbox) -> Ac {
    Ac::new(sandbox, "acme", "acme-token")
}

/// The status of a `GET` of the account's `/api/3{path}` sent without an `Api-Token`.
pub(crate) async fn status_without_token(
    sandbox: &RunningSandbox,
    account: &str,
    path: &str,
) -> StatusCode {
    let url = format!("{}/api/3{path}", sandbox.activecampaign_base_url(account));
    reqwest::get(url)
        .await
        .expect("request to the sandbox")
        .status()
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

    assert_eq!(
        status_without_token(&sandbox, "acme", "/contacts").await,
        StatusCode::FORBIDDEN
    );
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
    let counts = sandbox.activecampaign.request_counts("limited");
    assert_eq!((counts.accepted, counts.refused), (5, 1), "{counts:?}");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, _) = ac.get("/tags").await;
    assert_eq!(status, StatusCode::OK, "the window frees up after a second");
    // The same split over HTTP, as the benchmark reads it.
    let read_back: billsync_sandbox::RequestCounts = reqwest::get(format!(
        "{}/__sandbox/activecampaign/limited/requests",
        sandbox.url()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        (read_back.accepted, read_back.refused),
        (6, 1),
        "{read_back:?}"
    );

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

impl Ac {
    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }
}

/// Creates the Stripe connection and one e-commerce customer; returns their ids.
async fn connection_and_customer(ac: &Ac) -> (String, String) {
    let (status, created) = ac
        .post(
            "/connections",
            json!({"connection": {"service": "stripe", "externalid": "stripe-live",
                "name": "Stripe", "logoUrl": "https://example.com/logo.png",
                "linkUrl": "https://dashboard.stripe.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let connection = created["connection"]["id"].as_str().expect("id").to_owned();
    let (status, created) = ac
        .post(
            "/ecomCustomers",
            json!({"ecomCustomer": {"connectionid": connection, "externalid": "cus_1",
                "email": "ada@example.com", "acceptsMarketing": "1"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let customer = created["ecomCustomer"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    (connection, customer)
}

#[tokio::test]
async fn connections_and_ecom_customers_are_unique_per_external_id() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    let (connection, customer) = connection_and_customer(&ac).await;

    let (status, body) = ac
        .post(
            "/connections",
            json!({"connection": {"service": "stripe", "externalid": "stripe-live",
                "name": "Again", "logoUrl": "x", "linkUrl": "y"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["code"], "duplicate");
    let (status, body) = ac
        .post(
            "/connections",
            json!({"connection": {"service": "stripe", "externalid": "other"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["code"], "field_missing");

    let (status, found) = ac
        .get("/connections?filters[service]=stripe&filters[externalid]=stripe-live")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found["connections"].as_array().expect("list").len(), 1);
    assert_eq!(found["connections"][0]["id"], connection.as_str());
    let (_, none) = ac.get("/connections?filters[externalid]=nope").await;
    assert_eq!(none["connections"], json!([]));

    let (status, body) = ac
        .post(
            "/ecomCustomers",
            json!({"ecomCustomer": {"connectionid": connection, "externalid": "cus_1",
                "email": "other@example.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["code"], "duplicate");
    let (status, body) = ac
        .post(
            "/ecomCustomers",
            json!({"ecomCustomer": {"connectionid": "999", "externalid": "cus_2",
                "email": "b@example.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let path =
        format!("/ecomCustomers?filters[connectionid]={connection}&filters[externalid]=cus_1");
    let (_, found) = ac.get(&path).await;
    assert_eq!(found["ecomCustomers"][0]["id"], customer.as_str());
    assert_eq!(found["ecomCustomers"][0]["acceptsMarketing"], "1");
    let (_, by_email) = ac
        .get("/ecomCustomers?filters[email]=ADA@example.com")
        .await;
    assert_eq!(by_email["meta"]["total"], "1");

    let (status, updated) = ac
        .put(
            &format!("/ecomCustomers/{customer}"),
            json!({"ecomCustomer": {"email": "ada.new@example.com"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(snapshot.connections.len(), 1);
    assert_eq!(
        snapshot
            .connection("stripe", "stripe-live")
            .map(|c| c.name.as_str()),
        Some("Stripe")
    );
    let stored = snapshot.ecom_customer("cus_1").expect("customer");
    assert_eq!(stored.email, "ada.new@example.com");
    assert_eq!(stored.connectionid, connection);
}

#[tokio::test]
async fn orders_are_unique_per_external_id_and_updates_replace_what_they_carry() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    let (connection, customer) = connection_and_customer(&ac).await;
    let order = json!({"ecomOrder": {
        "externalid": "ch_1", "source": 1, "email": "ada@example.com",
        "orderProducts": [{"externalid": "price_1", "name": "Pro plan", "price": 4900,
            "quantity": 1, "category": "subscription"}],
        "totalPrice": 4900, "currency": "USD", "connectionid": connection,
        "customerid": customer, "externalCreatedDate": "2024-04-10T12:00:00+00:00",
        "orderNumber": "A-1"}});

    let (status, created) = ac.post("/ecomOrders", order.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["ecomOrder"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["ecomOrderProducts"][0]["name"], "Pro plan");
    let (status, duplicate) = ac.post("/ecomOrders", order).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(duplicate["errors"][0]["code"], "duplicate");

    let (status, invalid) = ac
        .post(
            "/ecomOrders",
            json!({"ecomOrder": {"externalid": "ch_2", "source": 1,
                "email": "ada@example.com", "totalPrice": -5, "currency": "USD",
                "connectionid": connection, "customerid": customer,
                "externalCreatedDate": "2024-04-10T12:00:00+00:00"}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");

    let path = format!("/ecomOrders?filters[connectionid]={connection}&filters[externalid]=ch_1");
    let (_, found) = ac.get(&path).await;
    assert_eq!(found["meta"]["total"], "1");
    assert_eq!(found["ecomOrders"][0]["id"], id.as_str());
    assert_eq!(found["ecomOrders"][0]["totalPrice"], 4900);

    let (status, updated) = ac
        .put(
            &format!("/ecomOrders/{id}"),
            json!({"ecomOrder": {"totalPrice": 1900,
                "externalUpdatedDate": "2024-04-11T12:00:00+00:00"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let (status, missing) = ac
        .put("/ecomOrders/999", json!({"ecomOrder": {"totalPrice": 1}}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");

    let (_, with_totals) = ac.get(&format!("/ecomCustomers/{customer}")).await;
    assert_eq!(with_totals["ecomCustomer"]["totalRevenue"], "1900");
    assert_eq!(with_totals["ecomCustomer"]["totalOrders"], "1");

    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(snapshot.ecom_orders_with("ch_1").len(), 1);
    let stored = snapshot.ecom_order("ch_1").expect("order");
    assert_eq!(stored.total_price, 1900);
    assert_eq!(stored.currency, "USD");
    assert_eq!(stored.source, 1);
    assert_eq!(stored.order_number.as_deref(), Some("A-1"));
    assert_eq!(stored.order_products.len(), 1);
    assert_eq!(stored.order_products[0].price, 4900);
    assert_eq!(
        stored.external_updated_date.as_deref(),
        Some("2024-04-11T12:00:00+00:00")
    );
    assert_eq!(snapshot.ecom_orders_of(&customer).len(), 1);
}

#[tokio::test]
async fn deep_data_routes_share_the_accounts_rate_limit() {
    let sandbox = spawn_sandbox().await;
    sandbox
        .activecampaign
        .add_account(AcAccount::new("limited", "limited-token"));
    let ac = Ac::new(&sandbox, "limited", "limited-token");
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(ac.get("/ecomOrders").await.0);
    }
    assert_eq!(statuses[..5], [StatusCode::OK; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sandbox.activecampaign.request_count("limited"), 6);
}

#[tokio::test]
async fn tracked_events_need_the_accounts_actid_and_key() {
    let sandbox = spawn_sandbox().await;
    let ac = acme(&sandbox);
    let account = AcAccount::new("acme", "acme-token");
    ac.post(
        "/contact/sync",
        json!({"contact": {"email": "ada@example.com"}}),
    )
    .await;
    let url = format!("{}/event", sandbox.activecampaign.tracking_base_url("acme"));
    let send = |actid: String, key: String, event: &'static str| {
        let http = reqwest::Client::new();
        let url = url.clone();
        async move {
            let form = format!(
                "actid={actid}&key={key}&event={}&eventdata=charge.succeeded&visit={}",
                event.replace(' ', "+"),
                "%7B%22email%22%3A%22ada%40example.com%22%7D"
            );
            let response = http
                .post(url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .expect("post");
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.expect("json")
        }
    };
    let accepted = send(
        account.event_actid.clone(),
        account.event_key.clone(),
        "Stripe event received",
    )
    .await;
    assert_eq!(accepted, json!({"success": 1, "message": "Event spawned"}));
    let refused = send(account.event_actid.clone(), "wrong".into(), "x").await;
    assert_eq!(refused["success"], 0);
    let too_long = send(
        account.event_actid.clone(),
        account.event_key.clone(),
        "customer.subscription.trial_will_end",
    )
    .await;
    assert_eq!(too_long["success"], 0);

    let snapshot = sandbox.activecampaign.snapshot("acme");
    let tracked = snapshot.tracked_events_of("ada@example.com");
    assert_eq!(tracked.len(), 1);
    assert_eq!(tracked[0].event, "Stripe event received");
    assert_eq!(tracked[0].eventdata.as_deref(), Some("charge.succeeded"));
    assert_eq!(
        tracked[0].contact.as_deref(),
        Some(snapshot.contacts[0].id.as_str())
    );
    let (_, names) = ac.get("/eventTrackingEvents").await;
    assert_eq!(
        names["eventTrackingEvents"][0]["name"],
        "Stripe event received"
    );
    // Tracking requests are not v3 API requests.
    assert_eq!(sandbox.activecampaign.request_count("acme"), 2);

    let (status, _) = ac
        .put(
            "/eventTracking",
            json!({"eventTracking": {"enabled": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let disabled = send(
        account.event_actid.clone(),
        account.event_key.clone(),
        "Stripe event received",
    )
    .await;
    assert_eq!(disabled["success"], 0);
}
