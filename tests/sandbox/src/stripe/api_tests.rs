//! The Stripe emulator over HTTP: pagination, auth, rate limit, error bodies, faults.

use super::*;
use crate::{RunningSandbox, SandboxConfig};
use reqwest::StatusCode;

const KEY: &str = "sk_test_sandboxkey0123456789";

async fn sandbox() -> RunningSandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = crate::start(listener, SandboxConfig::default())
        .await
        .expect("start");
    sandbox.stripe.add_account(StripeAccount::new("acme", KEY));
    sandbox
}

async fn get(url: &str, key: Option<&str>) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.json().await.expect("json body"))
}

#[tokio::test]
async fn lists_page_with_starting_after_until_has_more_is_false() {
    let sandbox = sandbox().await;
    sandbox.stripe.set_faults(
        "acme",
        StripeFaults {
            rate_limit_disabled: true,
            ..StripeFaults::default()
        },
    );
    let made = sandbox.stripe.seed(
        "acme",
        &StripeSeed {
            customers: 250,
            subscriptions_per_customer: 1,
            invoices_per_customer: 1,
            charges_per_customer: 1,
            checkout_sessions_per_customer: 1,
        },
    );
    assert_eq!(made.invoices, 250);
    let base = sandbox.stripe_base_url("acme");
    for resource in StripeResource::ALL {
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut url = format!("{base}{}?limit=100", resource.path());
            if let Some(after) = &after {
                url.push_str(&format!("&starting_after={after}"));
            }
            let (status, _, body) = get(&url, Some(KEY)).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["object"], "list");
            assert_eq!(body["url"], resource.path());
            let data = body["data"].as_array().expect("data");
            assert!(data.len() <= 100);
            seen.extend(data.iter().map(|o| o["id"].as_str().unwrap().to_string()));
            after = seen.last().cloned();
            if !body["has_more"].as_bool().unwrap() {
                break;
            }
        }
        seen.reverse();
        assert_eq!(seen, sandbox.stripe.ids("acme", resource), "{resource:?}");
    }
    // Objects carry the fixture's shape and link to their customer.
    let (_, _, body) = get(&format!("{base}/v1/subscriptions?limit=1"), Some(KEY)).await;
    let subscription = &body["data"][0];
    assert_eq!(subscription["object"], "subscription");
    assert_eq!(subscription["items"]["object"], "list");
    assert_eq!(
        subscription["items"]["data"][0]["object"],
        "subscription_item"
    );
    assert_eq!(subscription["livemode"], false);
    let customer_id = subscription["customer"].as_str().unwrap();
    let (status, _, customer) = get(&format!("{base}/v1/customers/{customer_id}"), Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(customer["object"], "customer");
    assert!(customer["email"].as_str().unwrap().contains('@'));
    let (_, _, sessions) = get(&format!("{base}/v1/checkout/sessions?limit=1"), Some(KEY)).await;
    assert_eq!(sessions["data"][0]["object"], "checkout.session");
    assert_eq!(sessions["data"][0]["payment_status"], "paid");
}

#[tokio::test]
async fn wrong_or_missing_keys_get_401_with_stripe_error_bodies() {
    let sandbox = sandbox().await;
    let url = format!("{}/v1/customers", sandbox.stripe_base_url("acme"));
    let (status, _, body) = get(&url, Some("sk_test_wrongwrongwrong1234")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Invalid API Key provided: sk_test_"),
        "{message}"
    );
    assert!(!message.contains("wrongwrong"), "{message}");
    let (status, _, body) = get(&url, None).await;
    assert_eq!(status, 401);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("did not provide an API key"));

    let (status, _, body) = get(&format!("{url}?limit=1000"), Some(KEY)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "limit");
    let (status, _, body) = get(&format!("{url}?starting_after=cus_missing"), Some(KEY)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(body["error"]["param"], "starting_after");
    let (status, _, body) = get(&format!("{url}/cus_missing"), Some(KEY)).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "No such customer: 'cus_missing'");
    let (status, _, body) = get(
        &format!("{}/v1/nothing", sandbox.stripe_base_url("acme")),
        Some(KEY),
    )
    .await;
    assert_eq!(status, 404);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("Unrecognized request URL (GET: /v1/nothing)"));
}

#[tokio::test]
async fn more_than_25_requests_a_second_in_test_mode_get_429() {
    let sandbox = sandbox().await;
    let url = format!("{}/v1/customers?limit=1", sandbox.stripe_base_url("acme"));
    let client = reqwest::Client::new();
    let requests = (0..40).map(|_| client.get(&url).bearer_auth(KEY).send());
    let responses = futures_join_all(requests).await;
    let limited: Vec<_> = responses
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    let ok = responses.iter().filter(|r| r.status() == 200).count();
    assert!(ok <= 25, "{ok} admitted");
    assert!(limited.len() >= 15, "{} refused", limited.len());
    let refused = limited[0];
    assert_eq!(refused.headers()["stripe-should-retry"], "true");
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(sandbox.stripe.throttled_count("acme"), limited.len() as u64);

    // Injected faults come after the limit: one 429, then one 500.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    sandbox.stripe.set_faults(
        "acme",
        StripeFaults {
            throttle_next: 1,
            fail_next: 1,
            retry_after_secs: 2,
            ..StripeFaults::default()
        },
    );
    let (status, headers, body) = get(&url, Some(KEY)).await;
    assert_eq!(status, 429);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(body["error"]["code"], "rate_limit");
    let (status, _, body) = get(&url, Some(KEY)).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"]["type"], "api_error");
    let (status, _, _) = get(&url, Some(KEY)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn controls_seed_and_read_back_over_http() {
    let sandbox = sandbox().await;
    let client = reqwest::Client::new();
    let made: StripeSeeded = client
        .post(format!("{}/__sandbox/stripe/acme/seed", sandbox.url()))
        .json(&json!({"customers": 3, "invoices_per_customer": 2}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(made.customers, 3);
    assert_eq!(made.subscriptions, 3);
    assert_eq!(made.invoices, 6);
    let state: Value = client
        .get(format!("{}/__sandbox/stripe/acme", sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["counts"]["invoices"], 6);
    assert_eq!(state["requests_per_second"], 25);
    let ids: Vec<String> = client
        .get(format!(
            "{}/__sandbox/stripe/acme/ids/customers",
            sandbox.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ids, sandbox.stripe.ids("acme", StripeResource::Customers));
}

/// Runs `futures` concurrently on this task (the sandbox has no `futures` dependency).
async fn futures_join_all<F, T>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = reqwest::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("task").expect("request"));
    }
    out
}
