//! The Zoho client against the sandbox's Zoho emulator over HTTP, with its token in a real
//! NATS KV bucket.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use billsync_bus::{StreamSettings, Topology};
use billsync_events::{DestinationKind, FailureClass};
use billsync_sandbox::{RunningSandbox, SandboxConfig, ZohoFaults, ZohoOrg};
use billsync_worker::{DeliveryError, RecordStore};
use billsync_zoho::api::{Module, OAuthSettings, ZohoClient};
use serde_json::json;

const ORG: &str = "zylker";
const SECRET: &str = "client-secret-do-not-log";
const REFRESH: &str = "1000.refresh-do-not-log";

async fn sandbox() -> RunningSandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("start");
    sandbox
        .zoho
        .add_org(ZohoOrg::new(ORG, "1000.CLIENT", SECRET, REFRESH));
    sandbox
}

async fn store() -> RecordStore {
    let client = async_nats::connect("127.0.0.1:4222").await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let topology = Topology::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(60),
        replicas: 1,
        retention: Duration::from_secs(3600),
    };
    let kv = topology
        .ensure_bucket(&js, topology.tokens_bucket(), &settings, Duration::ZERO)
        .await
        .expect("bucket");
    RecordStore::new(kv, DestinationKind::Zoho, "zoho-main")
}

fn client(sandbox: &RunningSandbox, store: RecordStore, refresh: &str) -> ZohoClient {
    ZohoClient::new(
        "zoho-main",
        OAuthSettings {
            accounts_url: sandbox.zoho.accounts_url(ORG),
            client_id: "1000.CLIENT".into(),
            client_secret: SECRET.into(),
            refresh_token: refresh.into(),
        },
        store,
        1000,
        4,
        Duration::from_secs(5),
    )
}

#[tokio::test]
async fn upserts_map_each_records_result_back_in_order_and_reads_work() {
    let sandbox = sandbox().await;
    let zoho = client(&sandbox, store().await, REFRESH);
    let results = zoho
        .upsert(
            Module::Contacts,
            &[
                json!({"Last_Name": "Burns", "Email": "ann@acme.example"}),
                json!({"First_Name": "NoLast", "Email": "x@acme.example"}),
                json!({"Last_Name": "Burns-Smith", "Email": "ann@acme.example"}),
            ],
            &[],
            &[],
        )
        .await
        .expect("upsert");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0].action.as_deref(), Some("insert"));
    assert_eq!(results[1].code, "MANDATORY_NOT_FOUND");
    assert_eq!(results[1].field(), Some("Last_Name"));
    assert_eq!(results[2].action.as_deref(), Some("update"));
    let id = results[0].id().expect("id").to_string();
    assert_eq!(results[2].id(), Some(id.as_str()));

    let found = zoho
        .search_by_email(Module::Contacts, "ANN@acme.example")
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
    assert!(zoho
        .search_by_email(Module::Contacts, "none@acme.example")
        .await
        .expect("204")
        .is_empty());
    let record = zoho
        .get(Module::Contacts, &id)
        .await
        .expect("get")
        .expect("a record");
    assert_eq!(record["Last_Name"], "Burns-Smith");
    assert!(zoho
        .delete(Module::Contacts, &id)
        .await
        .expect("delete")
        .is_success());
    assert!(zoho
        .get(Module::Contacts, &id)
        .await
        .expect("get")
        .is_none());

    let users = zoho.users().await.expect("users");
    assert_eq!(users.len(), 1);
    let layouts = zoho.layouts(Module::Deals).await.expect("layouts");
    let pipelines = zoho.pipelines(&layouts[0].id).await.expect("pipelines");
    assert_eq!(pipelines[0].display_value, "Standard (Standard)");
    assert!(pipelines[0]
        .maps
        .iter()
        .any(|s| s.display_value == "Closed Lost"));
    // One token for all of it; credits: 1 upsert of 3 records + 7 calls.
    let snapshot = sandbox.zoho.snapshot(ORG);
    assert_eq!(snapshot.tokens.issued, 1);
    assert_eq!(snapshot.credits_used, 9);
}

#[tokio::test]
async fn classify_429_and_5xx_retryable_without_retry_after_4xx_permanent_with_zohos_code() {
    let sandbox = sandbox().await;
    let zoho = client(&sandbox, store().await, REFRESH);
    zoho.users().await.expect("warm the token");
    sandbox.zoho.set_faults(
        ORG,
        ZohoFaults {
            throttle_next: 1,
            fail_next: 1,
            ..ZohoFaults::default()
        },
    );
    match zoho.users().await {
        Err(DeliveryError::Retryable {
            retry_after: None,
            http_status: Some(429),
            message,
        }) => {
            assert!(message.contains("TOO_MANY_REQUESTS"), "{message}")
        }
        other => panic!("expected a retryable 429, got {other:?}"),
    }
    match zoho.users().await {
        Err(DeliveryError::Retryable {
            http_status: Some(500),
            ..
        }) => {}
        other => panic!("expected a retryable 500, got {other:?}"),
    }
    match zoho.pipelines("1").await {
        Err(DeliveryError::Permanent {
            class: FailureClass::Rejected,
            http_status: Some(400),
            message,
            ..
        }) => {
            assert!(message.contains("INVALID_DATA"), "{message}")
        }
        other => panic!("expected a permanent 400, got {other:?}"),
    }
    // The credits limit is a 429 too.
    sandbox.zoho.set_limits(ORG, 1, 10);
    assert!(matches!(
        zoho.users().await,
        Err(DeliveryError::Retryable {
            http_status: Some(429),
            ..
        })
    ));
}

#[tokio::test]
async fn a_token_expiring_mid_run_is_refreshed_once() {
    let sandbox = sandbox().await;
    let zoho = client(&sandbox, store().await, REFRESH);
    zoho.users().await.expect("first");
    sandbox.zoho.expire_tokens(ORG);
    let (a, b, c) = tokio::join!(zoho.users(), zoho.users(), zoho.users());
    for answer in [a, b, c] {
        answer.expect("served after one refresh");
    }
    assert_eq!(sandbox.zoho.snapshot(ORG).tokens.issued, 2);
}

#[tokio::test]
async fn two_replicas_share_one_token_through_nats_kv() {
    let sandbox = sandbox().await;
    let store = store().await;
    let one = client(&sandbox, store.clone(), REFRESH);
    let two = client(&sandbox, store, REFRESH);
    let (a, b) = tokio::join!(one.users(), two.users());
    a.expect("one");
    b.expect("two");
    assert_eq!(sandbox.zoho.snapshot(ORG).tokens.issued, 1);
    sandbox.zoho.expire_tokens(ORG);
    let (a, b) = tokio::join!(one.users(), two.users());
    a.expect("one");
    b.expect("two");
    assert_eq!(sandbox.zoho.snapshot(ORG).tokens.issued, 2);
    assert_eq!(
        one.tokens().token_requests() + two.tokens().token_requests(),
        2
    );
}

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_revoked_refresh_token_fails_once_clearly_and_logs_no_secret() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sandbox = sandbox().await;
    sandbox.zoho.revoke_refresh_token(ORG);
    let store = store().await;
    let one = client(&sandbox, store.clone(), REFRESH);
    let two = client(&sandbox, store, REFRESH);
    let first = one.users().await.expect_err("revoked");
    let DeliveryError::Permanent {
        class: FailureClass::Configuration,
        message,
        ..
    } = &first
    else {
        panic!("expected a configuration failure, got {first:?}");
    };
    assert!(message.contains("invalid_code"), "{message}");
    assert!(
        first.refuses_credentials(),
        "the worker's readiness turns false on it"
    );
    for _ in 0..3 {
        assert!(matches!(
            one.users().await,
            Err(DeliveryError::Permanent {
                class: FailureClass::Configuration,
                ..
            })
        ));
    }
    assert!(one.healthcheck().is_err());
    // The other replica adopts the failure only if it started waiting before it; it asks
    // once itself, then never again.
    assert!(two.users().await.is_err());
    assert!(two.users().await.is_err());
    let tokens = sandbox.zoho.snapshot(ORG).tokens;
    assert_eq!((tokens.issued, tokens.refused), (0, 2));
    assert_eq!(sandbox.zoho.request_counts(ORG).accepted, 0);
    let logged = String::from_utf8(logs.0.lock().expect("logs").clone()).expect("utf8");
    assert!(
        logged.contains("Zoho refused the refresh token"),
        "{logged}"
    );
    for secret in [SECRET, REFRESH] {
        assert!(!logged.contains(secret), "a secret was logged");
        assert!(!message.contains(secret));
    }
}
