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
