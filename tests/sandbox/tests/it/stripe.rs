//! The Stripe webhook signer and sender, checked by an independent verifier.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use billsync_sandbox::stripe;
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

#[test]
fn signature_matches_an_independent_hmac() {
    let body = br#"{"id":"evt_1"}"#;
    let expected = hmac_hex("whsec_test", br#"1700000000.{"id":"evt_1"}"#);
    assert_eq!(
        stripe::sign("whsec_test", 1_700_000_000, body),
        format!("t=1700000000,v1={expected}")
    );
}

#[tokio::test]
async fn send_webhook_posts_a_verifiable_event() {
    type Received = Arc<Mutex<Option<(HeaderMap, Bytes)>>>;
    let received: Received = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/webhooks/stripe/demo",
        post(move |headers: HeaderMap, body: Bytes| async move {
            *sink.lock().unwrap() = Some((headers, body));
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/webhooks/stripe/demo",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });

    let event = stripe::customer_created_event("cus_1", "ada@example.com", "Ada Lovelace");
    let status = stripe::send_webhook(&url, "whsec_demo", &event)
        .await
        .unwrap();
    assert_eq!(status, 200);

    let (headers, body) = received.lock().unwrap().take().expect("a delivery");
    let header = headers["stripe-signature"].to_str().unwrap();
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .expect("t=...,v1=...");
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(&body);
    assert_eq!(v1, hmac_hex("whsec_demo", &signed));
    let now = chrono::Utc::now().timestamp();
    assert!((now - t.parse::<i64>().unwrap()).abs() <= 5);
    let delivered: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(delivered, event);
}
