//! The ActiveCampaign client against the sandbox: success, refusals, rate limits, outages.

use billsync_activecampaign::api::types::ContactInput;
use billsync_activecampaign::api::ActiveCampaignClient;
use billsync_events::FailureClass;
use billsync_sandbox::{AcAccount, AcFaults, RunningSandbox, SandboxConfig};
use billsync_worker::DeliveryError;
use std::time::Duration;

async fn sandbox(rps: u32) -> (RunningSandbox, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let mut account = AcAccount::new("acme", "good-token");
    account.requests_per_second = rps;
    sandbox.activecampaign.add_account(account);
    let base = sandbox.activecampaign_base_url("acme");
    (sandbox, base)
}

fn contact(email: &str) -> ContactInput<'_> {
    ContactInput {
        email,
        first_name: Some("Ada"),
        last_name: Some("Lovelace"),
        phone: None,
        field_values: Vec::new(),
    }
}

#[tokio::test]
async fn contact_sync_is_an_upsert_by_email() {
    let (sandbox, base) = sandbox(100).await;
    let client = ActiveCampaignClient::new(&base, "good-token", 100, Duration::from_secs(5));
    let first = client
        .sync_contact(contact("ada@example.com"))
        .await
        .expect("created");
    let second = client
        .sync_contact(contact("ada@example.com"))
        .await
        .expect("updated");
    assert_eq!(first.id, second.id);
    let tag = client.ensure_tag("stripe-integration").await.expect("tag");
    assert_eq!(
        client
            .ensure_tag("stripe-integration")
            .await
            .expect("cached"),
        tag
    );
    client.tag_contact(&first.id, &tag).await.expect("tagged");
    client
        .tag_contact(&first.id, &tag)
        .await
        .expect("tagged again");
    let snapshot = sandbox.activecampaign.snapshot("acme");
    assert_eq!(snapshot.contacts.len(), 1);
    assert_eq!(snapshot.tags.len(), 1);
    assert_eq!(snapshot.contact_tags.len(), 1);
}

#[tokio::test]
async fn a_422_is_permanent_and_carries_the_crm_detail() {
    let (sandbox, base) = sandbox(100).await;
    sandbox.activecampaign.set_faults(
        "acme",
        AcFaults {
            reject_emails: vec!["bad@example.com".into()],
            ..Default::default()
        },
    );
    let client = ActiveCampaignClient::new(&base, "good-token", 100, Duration::from_secs(5));
    match client.sync_contact(contact("bad@example.com")).await {
        Err(DeliveryError::Permanent {
            class,
            message,
            http_status,
            detail,
        }) => {
            assert_eq!(class, FailureClass::Rejected);
            assert_eq!(http_status, Some(422));
            assert!(
                message.contains("POST /contact/sync") && message.contains("422"),
                "{message}"
            );
            assert!(detail.get("errors").is_some(), "{detail}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_token_is_a_configuration_error_that_never_shows_the_token() {
    let (_sandbox, base) = sandbox(100).await;
    let client = ActiveCampaignClient::new(&base, "wrong-token", 100, Duration::from_secs(5));
    match client.sync_contact(contact("ada@example.com")).await {
        Err(DeliveryError::Permanent { class, message, .. }) => {
            assert_eq!(class, FailureClass::Configuration);
            assert!(message.contains("api_token"), "{message}");
            assert!(!message.contains("wrong-token"), "{message}");
        }
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

#[tokio::test]
async fn tagging_a_contact_deleted_in_activecampaign_reports_the_contact_missing() {
    let (sandbox, base) = sandbox(100).await;
    let client = ActiveCampaignClient::new(&base, "good-token", 100, Duration::from_secs(5));
    let tag = client.ensure_tag("stripe-integration").await.expect("tag");
    // AC answers 404 `Contact not found` (the spec's example for POST /contactTags).
    match client.tag_contact("424242", &tag).await {
        Err(DeliveryError::Retryable {
            message,
            http_status,
            ..
        }) => {
            // Retryable 404: the caller writes the contact again before the retry.
            assert_eq!(http_status, Some(404));
            assert!(
                message.contains("contact 424242 no longer exists"),
                "{message}"
            );
            assert!(!message.contains("recreating"), "{message}");
        }
        other => panic!("expected a retryable 404, got {other:?}"),
    }
    // The tag exists, so it stays cached: no lookup, no create.
    let before = sandbox.activecampaign.request_count("acme");
    assert_eq!(
        client.ensure_tag("stripe-integration").await.expect("tag"),
        tag
    );
    assert_eq!(sandbox.activecampaign.request_count("acme"), before);
    assert_eq!(sandbox.activecampaign.snapshot("acme").tags.len(), 1);
}

#[tokio::test]
async fn tagging_with_a_tag_deleted_in_activecampaign_reports_the_tag_missing() {
    let (_sandbox, base) = sandbox(100).await;
    let client = ActiveCampaignClient::new(&base, "good-token", 100, Duration::from_secs(5));
    let contact = client
        .sync_contact(contact("ada@example.com"))
        .await
        .expect("contact");
    match client.tag_contact(&contact.id, "999").await {
        Err(DeliveryError::Retryable {
            message,
            http_status,
            ..
        }) => {
            assert_eq!(http_status, Some(404));
            assert!(
                message.contains("tag 999 no longer exists") && message.contains("recreating"),
                "{message}"
            );
        }
        other => panic!("expected a retryable 404, got {other:?}"),
    }
}

/// A server that answers every request with `status` and `body`; its base URL.
async fn answering(status: u16, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let status = axum::http::StatusCode::from_u16(status).expect("status");
    let app = axum::Router::new().fallback(move || async move {
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_forbidden_request_with_a_working_token_is_not_a_token_problem() {
    let base = answering(
        403,
        r#"{"errors":[{"status":403,"title":"Forbidden","detail":"You do not have permission to create lists."}]}"#,
    )
    .await;
    let client = ActiveCampaignClient::new(&base, "good-token", 100, Duration::from_secs(5));
    match client.sync_contact(contact("ada@example.com")).await {
        Err(DeliveryError::Permanent {
            class,
            message,
            http_status,
            ..
        }) => {
            assert_eq!(http_status, Some(403));
            // Not `Configuration` with 403: that is what marks the connection's token refused.
            assert_eq!(class, FailureClass::Rejected);
            assert!(
                message.contains("You do not have permission to create lists."),
                "{message}"
            );
            assert!(!message.contains("api_token"), "{message}");
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn event_tracking_refusals_name_the_event_key_not_the_api_token() {
    use billsync_activecampaign::api::EventTracker;
    for status in [401, 403] {
        let url = answering(status, r#"{"message":"Forbidden"}"#).await;
        let tracker = EventTracker::new(&url, "1234", "the-event-key", Duration::from_secs(5))
            .configured_in(
                "syncs[0].options.track_actid and destinations.activecampaign[0].event_key \
                 of billsync.toml"
                    .into(),
            );
        match tracker
            .track(
                "Stripe event received",
                "charge.succeeded",
                "ada@example.com",
            )
            .await
        {
            Err(DeliveryError::Permanent {
                class,
                message,
                http_status,
                ..
            }) => {
                assert_eq!(class, FailureClass::Configuration);
                assert_eq!(http_status, Some(status));
                assert!(message.contains("Event Key"), "{message}");
                assert!(
                    message.contains("destinations.activecampaign[0].event_key"),
                    "{message}"
                );
                assert!(!message.contains("API token"), "{message}");
                assert!(!message.contains("api_token"), "{message}");
                assert!(!message.contains("the-event-key"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_429_is_retryable_with_the_servers_retry_after() {
    let (_sandbox, base) = sandbox(1).await;
    // The client believes it may send 100/s; the account allows 1/s.
    let client = ActiveCampaignClient::new(&base, "good-token", 100, Duration::from_secs(5));
    client
        .sync_contact(contact("a@example.com"))
        .await
        .expect("first fits");
    match client.sync_contact(contact("b@example.com")).await {
        Err(DeliveryError::Retryable {
            retry_after,
            http_status,
            ..
        }) => {
            assert_eq!(http_status, Some(429));
            assert!(
                retry_after.is_some_and(|d| d >= Duration::from_secs(1)),
                "{retry_after:?}"
            );
        }
        other => panic!("expected a retryable 429, got {other:?}"),
    }
}

#[tokio::test]
async fn a_5xx_is_retryable() {
    let (sandbox, base) = sandbox(100).await;
    sandbox.activecampaign.set_faults(
        "acme",
        AcFaults {
            fail_next: 1,
            ..Default::default()
        },
    );
    let client = ActiveCampaignClient::new(&base, "good-token", 100, Duration::from_secs(5));
    match client.sync_contact(contact("a@example.com")).await {
        Err(DeliveryError::Retryable { http_status, .. }) => assert_eq!(http_status, Some(500)),
        other => panic!("expected a retryable 500, got {other:?}"),
    }
    client
        .sync_contact(contact("a@example.com"))
        .await
        .expect("the next attempt succeeds");
}

#[tokio::test]
async fn a_timeout_is_retryable() {
    let (sandbox, base) = sandbox(100).await;
    sandbox.activecampaign.set_faults(
        "acme",
        AcFaults {
            latency_ms: 1_000,
            ..Default::default()
        },
    );
    let client = ActiveCampaignClient::new(&base, "good-token", 100, Duration::from_millis(100));
    match client.sync_contact(contact("a@example.com")).await {
        Err(DeliveryError::Retryable {
            message,
            http_status,
            ..
        }) => {
            assert_eq!(http_status, None);
            assert!(message.contains("timed out"), "{message}");
        }
        other => panic!("expected a retryable timeout, got {other:?}"),
    }
}

mod deep_data {
    use super::sandbox;
    use billsync_activecampaign::api::types::{
        ConnectionInput, EcomCustomerInput, EcomOrderInput, OrderProductInput,
    };
    use billsync_activecampaign::api::{ActiveCampaignClient, EventTracker, Prior};
    use billsync_events::FailureClass;
    use billsync_sandbox::{AcAccount, AcFaults};
    use billsync_worker::DeliveryError;
    use std::time::Duration;

    fn client(base: &str) -> ActiveCampaignClient {
        ActiveCampaignClient::new(base, "good-token", 100, Duration::from_secs(5))
    }

    fn stripe_connection() -> ConnectionInput<'static> {
        ConnectionInput {
            service: "stripe",
            externalid: "stripe-live",
            name: "Stripe (stripe-live) via billsync",
            logo_url: "https://example.com/logo.png",
            link_url: "https://dashboard.stripe.com",
        }
    }

    fn customer<'a>(connection: &'a str, email: &'a str) -> EcomCustomerInput<'a> {
        EcomCustomerInput {
            connectionid: connection,
            externalid: "cus_1",
            email,
            accepts_marketing: None,
        }
    }

    fn order(connection: &str, customer: &str, total: i64) -> EcomOrderInput {
        EcomOrderInput {
            externalid: "ch_1".into(),
            source: 1,
            email: "ada@example.com".into(),
            order_products: vec![OrderProductInput {
                externalid: "ch_1".into(),
                name: "Pro plan".into(),
                price: 4900,
                quantity: 1,
                category: Some("payment".into()),
                sku: None,
                description: None,
            }],
            total_price: total,
            shipping_amount: None,
            tax_amount: None,
            discount_amount: None,
            currency: "USD".into(),
            connectionid: connection.into(),
            customerid: customer.into(),
            external_created_date: "2024-04-10T12:00:00+00:00".into(),
            external_updated_date: "2024-04-10T12:00:00+00:00".into(),
            order_number: None,
            order_url: None,
        }
    }

    #[tokio::test]
    async fn connections_customers_and_orders_are_found_before_they_are_created() {
        let (sandbox, base) = sandbox(100).await;
        let client = client(&base);
        let connection = client
            .ensure_connection(stripe_connection())
            .await
            .expect("created");
        assert_eq!(
            client
                .ensure_connection(stripe_connection())
                .await
                .expect("found"),
            connection
        );
        let (created, was_new) = client
            .ensure_ecom_customer(customer(&connection, "ada@example.com"), Prior::Unknown)
            .await
            .expect("created");
        assert!(was_new);
        let (found, was_new) = client
            .ensure_ecom_customer(customer(&connection, "ada@example.com"), Prior::Unknown)
            .await
            .expect("found");
        assert_eq!((found.id.as_str(), was_new), (created.id.as_str(), false));
        client
            .update_ecom_customer(&created.id, customer(&connection, "ada.new@example.com"))
            .await
            .expect("updated");

        let id = client
            .upsert_ecom_order(&order(&connection, &created.id, 4900), Prior::Unknown)
            .await
            .expect("created");
        // Without a remembered id (lost KV, another replica) the order is found, not doubled.
        let again = client
            .upsert_ecom_order(&order(&connection, &created.id, 3400), Prior::Unknown)
            .await
            .expect("found and updated");
        assert_eq!(again, id);
        let known = client
            .upsert_ecom_order(&order(&connection, &created.id, 0), Prior::Id(&id))
            .await
            .expect("updated by id");
        assert_eq!(known, id);

        let snapshot = sandbox.activecampaign.snapshot("acme");
        assert_eq!(snapshot.connections.len(), 1);
        assert_eq!(snapshot.ecom_customers.len(), 1);
        assert_eq!(snapshot.ecom_customers[0].email, "ada.new@example.com");
        assert_eq!(snapshot.ecom_orders_with("ch_1").len(), 1);
        let stored = snapshot.ecom_order("ch_1").expect("order");
        assert_eq!(stored.total_price, 0);
        assert_eq!(stored.source, 1);
        assert_eq!(stored.customerid, created.id);
        assert_eq!(stored.order_products[0].name, "Pro plan");
    }

    #[tokio::test]
    async fn a_create_never_started_costs_one_call_and_still_never_doubles() {
        let (sandbox, base) = sandbox(100).await;
        let client = client(&base);
        let connection = client
            .ensure_connection(stripe_connection())
            .await
            .expect("connection");
        let calls = || sandbox.activecampaign.request_count("acme");
        let before = calls();
        let (created, was_new) = client
            .ensure_ecom_customer(customer(&connection, "ada@example.com"), Prior::None)
            .await
            .expect("created");
        assert!(was_new);
        let id = client
            .upsert_ecom_order(&order(&connection, &created.id, 4900), Prior::None)
            .await
            .expect("created");
        assert_eq!(calls() - before, 2, "one POST each, no lookups");

        // Had billsync been wrong (another replica created them meanwhile), the 422 duplicate
        // is read again and the existing records are used: create, lookup, update.
        let before = calls();
        let (found, was_new) = client
            .ensure_ecom_customer(customer(&connection, "ada@example.com"), Prior::None)
            .await
            .expect("found after the 422");
        assert_eq!((found.id.as_str(), was_new), (created.id.as_str(), false));
        let again = client
            .upsert_ecom_order(&order(&connection, &created.id, 3400), Prior::None)
            .await
            .expect("found after the 422 and updated");
        assert_eq!(again, id);
        assert_eq!(calls() - before, 5);
        let snapshot = sandbox.activecampaign.snapshot("acme");
        assert_eq!(snapshot.ecom_customers.len(), 1);
        assert_eq!(snapshot.ecom_orders_with("ch_1").len(), 1);
        assert_eq!(
            snapshot.ecom_order("ch_1").expect("order").total_price,
            3400
        );
    }

    #[tokio::test]
    async fn a_422_duplicate_from_a_concurrent_create_is_read_again() {
        let (sandbox, base) = sandbox(100).await;
        // Both lookups answer "none" before either create lands; one create gets the 422.
        sandbox.activecampaign.set_faults(
            "acme",
            AcFaults {
                latency_ms: 200,
                ..AcFaults::default()
            },
        );
        let (a, b) = (client(&base), client(&base));
        let (first, second) = tokio::join!(
            a.ensure_connection(stripe_connection()),
            b.ensure_connection(stripe_connection())
        );
        let connection = first.expect("one creates");
        assert_eq!(second.expect("the other reads it"), connection);
        // Two lookups, two creates (one refused with 422), one lookup again.
        assert_eq!(sandbox.activecampaign.request_count("acme"), 5);

        let (first, second) = tokio::join!(
            a.ensure_ecom_customer(customer(&connection, "ada@example.com"), Prior::Unknown),
            b.ensure_ecom_customer(customer(&connection, "ada@example.com"), Prior::Unknown)
        );
        let (first, second) = (first.expect("created"), second.expect("found"));
        assert_eq!(first.0.id, second.0.id);
        assert!(first.1 ^ second.1, "exactly one of them created it");
        assert_eq!(sandbox.activecampaign.request_count("acme"), 10);

        let wanted = order(&connection, &first.0.id, 4900);
        let (one, other) = tokio::join!(
            a.upsert_ecom_order(&wanted, Prior::Unknown),
            b.upsert_ecom_order(&wanted, Prior::Unknown)
        );
        assert_eq!(one.expect("created"), other.expect("found after the 422"));
        // ... and the order's loser updates the order it found.
        assert_eq!(sandbox.activecampaign.request_count("acme"), 16);

        let snapshot = sandbox.activecampaign.snapshot("acme");
        assert_eq!(snapshot.connections.len(), 1);
        assert_eq!(snapshot.ecom_customers.len(), 1);
        assert_eq!(snapshot.ecom_orders.len(), 1);
    }

    #[tokio::test]
    async fn an_order_deleted_in_activecampaign_is_created_again() {
        let (sandbox, base) = sandbox(100).await;
        let client = client(&base);
        let connection = client
            .ensure_connection(stripe_connection())
            .await
            .expect("connection");
        let (customer, _) = client
            .ensure_ecom_customer(customer(&connection, "ada@example.com"), Prior::Unknown)
            .await
            .expect("customer");
        let id = client
            .upsert_ecom_order(&order(&connection, &customer.id, 4900), Prior::Unknown)
            .await
            .expect("created");
        let deleted = reqwest::Client::new()
            .delete(format!("{base}/api/3/ecomOrders/{id}"))
            .header("Api-Token", "good-token")
            .send()
            .await
            .expect("delete");
        assert!(deleted.status().is_success());
        let recreated = client
            .upsert_ecom_order(&order(&connection, &customer.id, 4900), Prior::Id(&id))
            .await
            .expect("recreated after the 404");
        assert_ne!(recreated, id);
        assert_eq!(
            sandbox
                .activecampaign
                .snapshot("acme")
                .ecom_orders_with("ch_1")
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_refused_order_is_permanent_with_acs_detail() {
        let (_sandbox, base) = sandbox(100).await;
        let client = client(&base);
        let connection = client
            .ensure_connection(stripe_connection())
            .await
            .expect("connection");
        // Customer 999 does not exist: a 422 that is not a duplicate.
        match client
            .upsert_ecom_order(&order(&connection, "999", 4900), Prior::Unknown)
            .await
        {
            Err(DeliveryError::Permanent {
                class,
                http_status,
                message,
                detail,
            }) => {
                assert_eq!(class, FailureClass::Rejected);
                assert_eq!(http_status, Some(422));
                assert!(message.contains("POST /ecomOrders"), "{message}");
                assert!(detail.get("errors").is_some(), "{detail}");
            }
            other => panic!("expected a permanent 422, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn tracked_events_carry_the_accounts_actid_and_key() {
        let (sandbox, _base) = sandbox(100).await;
        let account = AcAccount::new("acme", "good-token");
        let url = sandbox.activecampaign.tracking_base_url("acme");
        let tracker = EventTracker::new(
            &url,
            &account.event_actid,
            &account.event_key,
            Duration::from_secs(5),
        );
        tracker
            .track(
                "Stripe event received",
                "charge.succeeded",
                "ada@example.com",
            )
            .await
            .expect("tracked");
        let tracked = sandbox.activecampaign.snapshot("acme").tracked_events;
        assert_eq!(tracked.len(), 1);
        assert_eq!(tracked[0].event, "Stripe event received");
        assert_eq!(tracked[0].eventdata.as_deref(), Some("charge.succeeded"));
        assert_eq!(tracked[0].email, "ada@example.com");

        let wrong = EventTracker::new(
            &url,
            &account.event_actid,
            "not-the-key",
            Duration::from_secs(5),
        );
        match wrong
            .track(
                "Stripe event received",
                "charge.succeeded",
                "ada@example.com",
            )
            .await
        {
            Err(DeliveryError::Permanent { class, message, .. }) => {
                assert_eq!(class, FailureClass::Configuration);
                assert!(message.contains("actid and key"), "{message}");
                assert!(!message.contains("not-the-key"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }
}
