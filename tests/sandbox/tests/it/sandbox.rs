//! The sandbox's own surface: `/__sandbox` read-back and fault controls, the index page,
//! shutdown.

use billsync_sandbox::{AcFaults, AcSnapshot};
use reqwest::StatusCode;
use serde_json::json;

use crate::spawn_sandbox;

#[tokio::test]
async fn snapshot_and_faults_over_http() {
    let sandbox = spawn_sandbox().await;
    let http = reqwest::Client::new();
    http.post(format!(
        "{}/api/3/contact/sync",
        sandbox.activecampaign_base_url("acme")
    ))
    .header("Api-Token", "acme-token")
    .json(&json!({"contact": {"email": "hedy@example.com", "firstName": "Hedy"}}))
    .send()
    .await
    .unwrap();

    let snapshot: AcSnapshot = http
        .get(format!("{}/__sandbox/activecampaign/acme", sandbox.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snapshot, sandbox.activecampaign.snapshot("acme"));
    assert_eq!(snapshot.contacts[0].first_name, "Hedy");

    let response = http
        .put(format!(
            "{}/__sandbox/activecampaign/acme/faults",
            sandbox.url()
        ))
        .json(&json!({"fail_next": 1, "latency_ms": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        sandbox.activecampaign.faults("acme"),
        AcFaults {
            fail_next: 1,
            latency_ms: 5,
            ..AcFaults::default()
        }
    );

    let missing = http
        .get(format!("{}/__sandbox/activecampaign/nobody", sandbox.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn index_lists_accounts_and_contacts() {
    let sandbox = spawn_sandbox().await;
    let http = reqwest::Client::new();
    http.post(format!("{}/api/3/contact/sync", sandbox.activecampaign_base_url("acme")))
        .header("Api-Token", "acme-token")
        .json(&json!({"contact": {"email": "ada@example.com", "firstName": "Ada", "lastName": "<Lovelace>"}}))
        .send()
        .await
        .unwrap();
    let page = http
        .get(sandbox.url())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("acme"), "{page}");
    assert!(page.contains("1 contacts"), "{page}");
    assert!(page.contains("ada@example.com"), "{page}");
    assert!(page.contains("&lt;Lovelace&gt;"), "{page}");
}

#[tokio::test]
async fn index_lists_chargebee_sites_and_customers() {
    let sandbox = spawn_sandbox().await;
    let page = reqwest::get(sandbox.url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<h2>Chargebee</h2>") && page.contains("--cb-site"),
        "{page}"
    );
    sandbox
        .chargebee
        .add_site(billsync_sandbox::CbSite::new("demo-site", "cb_key"));
    sandbox
        .chargebee
        .create_customer(
            "demo-site",
            billsync_sandbox::CbCustomerInput {
                id: Some("cb_ada".into()),
                email: Some("ada@example.com".into()),
                ..Default::default()
            },
        )
        .unwrap();
    sandbox
        .chargebee
        .create_subscription(
            "demo-site",
            "cb_ada",
            billsync_sandbox::CbSubscriptionInput {
                id: Some("sub_ada".into()),
                ..Default::default()
            },
        )
        .unwrap();
    let page = reqwest::get(sandbox.url())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<h3>demo-site</h3>"), "{page}");
    assert!(page.contains("1 customers, 1 subscriptions"), "{page}");
    assert!(
        page.contains(&sandbox.chargebee_base_url("demo-site")),
        "the site's base_url: {page}"
    );
    assert!(
        page.contains("ada@example.com") && page.contains("sub_ada (active)"),
        "{page}"
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sandbox = spawn_sandbox().await;
    let url = sandbox.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_eq!(
        sandbox.activecampaign_base_url("acme"),
        format!("{url}/activecampaign/acme")
    );
    reqwest::get(&url).await.unwrap();
    sandbox.shutdown().await;
    let after = reqwest::Client::new().get(&url).send().await;
    assert!(after.is_err(), "still serving after shutdown: {after:?}");
}

/// Every emulator has the same `/__sandbox/{vendor}/{tenant}/faults` and `/requests` routes:
/// an injected 429 is counted as refused, the next answer as accepted.
#[tokio::test]
async fn every_emulator_reads_back_faults_and_request_counts_over_http() {
    use billsync_sandbox::{CbSite, RequestCounts, StripeAccount};
    let sandbox = spawn_sandbox().await;
    sandbox.chargebee.add_site(CbSite::new("cb-site", "cb_key"));
    sandbox
        .stripe
        .add_account(StripeAccount::new("st-acct", "sk_test_key"));
    let http = reqwest::Client::new();
    let api = [
        (
            "activecampaign/acme",
            format!("{}/api/3/tags", sandbox.activecampaign_base_url("acme")),
            ("Api-Token", "acme-token".to_string()),
        ),
        (
            "chargebee/cb-site",
            format!("{}/api/v2/customers", sandbox.chargebee_base_url("cb-site")),
            ("Authorization", "Basic Y2Jfa2V5Og==".to_string()),
        ),
        (
            "stripe/st-acct",
            format!("{}/v1/customers", sandbox.stripe_base_url("st-acct")),
            ("Authorization", "Bearer sk_test_key".to_string()),
        ),
    ];
    for (tenant, url, (header, credential)) in api {
        let control = format!("{}/__sandbox/{tenant}", sandbox.url());
        // AC's faults inject 500s only; the others also 429s.
        let faults = if tenant.starts_with("activecampaign") {
            json!({"fail_next": 1})
        } else {
            json!({"throttle_next": 1, "retry_after_secs": 3})
        };
        let written = http
            .put(format!("{control}/faults"))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert_eq!(written.status(), StatusCode::OK, "{tenant}");
        let read: serde_json::Value = read_json(&format!("{control}/faults")).await;
        for (key, value) in faults.as_object().unwrap() {
            assert_eq!(&read[key], value, "{tenant}: {read}");
        }

        let call = || http.get(&url).header(header, &credential).send();
        let first = call().await.unwrap();
        let second = call().await.unwrap();
        assert_eq!(second.status(), StatusCode::OK, "{tenant}");
        let counts: RequestCounts = read_json(&format!("{control}/requests")).await;
        if tenant.starts_with("activecampaign") {
            assert_eq!(first.status(), StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(
                counts,
                RequestCounts {
                    accepted: 2,
                    refused: 0
                },
                "{tenant}"
            );
        } else {
            assert_eq!(first.status(), StatusCode::TOO_MANY_REQUESTS, "{tenant}");
            assert_eq!(first.headers()["retry-after"], "3", "{tenant}");
            assert_eq!(
                counts,
                RequestCounts {
                    accepted: 1,
                    refused: 1
                },
                "{tenant}"
            );
        }
        let unknown = http
            .get(format!(
                "{}/__sandbox/{}/nobody/requests",
                sandbox.url(),
                tenant.split('/').next().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND, "{tenant}");
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(url: &str) -> T {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}
