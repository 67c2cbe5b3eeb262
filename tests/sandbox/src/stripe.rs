//! Stripe as a webhook sender: events and customers shaped like Stripe's
//! (`specs/stripe/fixtures3.json`), signed the way Stripe signs them (`specs/stripe/SOURCE.txt`).

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use rand::distr::Alphanumeric;
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;

/// The Stripe API version stamped on events: the newer of the two specs in `specs/stripe/`.
pub const API_VERSION: &str = "2024-04-10";

/// Stripe's webhook request `User-Agent`.
const USER_AGENT: &str = "Stripe/1.0 (+https://stripe.com/docs/webhooks)";

/// The `Stripe-Signature` header for `payload` sent at `timestamp` (Unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256>`, keyed with the whole secret including `whsec_`, over
/// `"<timestamp>.<payload>"`.
pub fn sign(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A Stripe id: `prefix` followed by random alphanumerics, e.g. `evt_1Pgc76B7WZ01zgkWwyRHS12y`.
pub fn random_id(prefix: &str, len: usize) -> String {
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}

/// A test-mode event of `event_type` carrying `object`, created now.
pub fn event(event_type: &str, object: Value) -> Value {
    json!({
        "id": random_id("evt_", 24),
        "object": "event",
        "api_version": API_VERSION,
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": event_type
    })
}

/// A newly created test-mode customer. Unlike the fixture, `discount` and `shipping` are
/// null, as on a customer created with neither.
pub fn customer(id: &str, email: &str, name: &str) -> Value {
    let invoice_prefix: String = random_id("", 8).to_uppercase();
    json!({
        "id": id,
        "object": "customer",
        "address": {
            "city": null,
            "country": null,
            "line1": null,
            "line2": null,
            "postal_code": null,
            "state": null
        },
        "balance": 0,
        "created": chrono::Utc::now().timestamp(),
        "currency": null,
        "default_source": null,
        "delinquent": false,
        "description": null,
        "discount": null,
        "email": email,
        "invoice_prefix": invoice_prefix,
        "invoice_settings": {
            "custom_fields": null,
            "default_payment_method": null,
            "footer": null,
            "rendering_options": null
        },
        "livemode": false,
        "metadata": {},
        "name": name,
        "next_invoice_sequence": 1,
        "phone": null,
        "preferred_locales": [],
        "shipping": null,
        "tax_exempt": "none",
        "test_clock": null
    })
}

/// A `customer.created` event for a new customer.
pub fn customer_created_event(customer_id: &str, email: &str, name: &str) -> Value {
    event("customer.created", customer(customer_id, email, name))
}

/// POSTs `event` to `url` as Stripe would, signed with `secret` at the current time, and
/// returns the HTTP status the receiver answered.
pub async fn send_webhook(url: &str, secret: &str, event: &Value) -> anyhow::Result<u16> {
    let body = serde_json::to_vec(event).context("serializing the Stripe event")?;
    let signature = sign(secret, chrono::Utc::now().timestamp(), &body);
    // A client per call: a pooled client outliving the runtime of one #[tokio::test] breaks
    // the next test's requests.
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let response = client
        .post(url)
        .header("Stripe-Signature", signature)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/json; charset=utf-8",
        )
        .header(reqwest::header::USER_AGENT, USER_AGENT)
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending a Stripe webhook to {url}"))?;
    Ok(response.status().as_u16())
}

/// A made-up customer for demos.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoCustomer {
    pub name: String,
    pub email: String,
}

const DEMO_NAMES: &[&str] = &[
    "Ada Lovelace",
    "Grace Hopper",
    "Alan Turing",
    "Katherine Johnson",
    "Edsger Dijkstra",
    "Barbara Liskov",
    "Donald Knuth",
    "Margaret Hamilton",
    "Dennis Ritchie",
    "Radia Perlman",
    "Claude Shannon",
    "Frances Allen",
    "John McCarthy",
    "Hedy Lamarr",
    "Ken Thompson",
    "Annie Easley",
];

/// `count` distinct demo customers: "Ada Lovelace <ada.lovelace@example.com>", ...; past the
/// end of the name list they repeat with a number ("Ada Lovelace 2 <ada.lovelace+2@example.com>").
pub fn demo_customers(count: usize) -> Vec<DemoCustomer> {
    (0..count)
        .map(|i| {
            let base = DEMO_NAMES[i % DEMO_NAMES.len()];
            let local = base.to_lowercase().replace(' ', ".");
            match i / DEMO_NAMES.len() {
                0 => DemoCustomer {
                    name: base.to_owned(),
                    email: format!("{local}@example.com"),
                },
                round => DemoCustomer {
                    name: format!("{base} {}", round + 1),
                    email: format!("{local}+{}@example.com", round + 1),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_a_known_vector() {
        // Computed with Python's hmac module, independently of this code.
        assert_eq!(
            sign("whsec_test", 1_700_000_000, br#"{"id":"evt_1"}"#),
            "t=1700000000,v1=c89214b5b5da833daed6f0b8c5bb6bd58cea9022bd80ccc78230f3942d632925"
        );
    }

    #[test]
    fn events_look_like_stripe_events() {
        let event = customer_created_event("cus_1", "ada@example.com", "Ada Lovelace");
        let id = event["id"].as_str().unwrap();
        assert!(id.starts_with("evt_") && id.len() == 28, "{id}");
        assert_eq!(event["object"], "event");
        assert_eq!(event["type"], "customer.created");
        assert_eq!(event["livemode"], false);
        assert_eq!(event["pending_webhooks"], 1);
        assert!(event["request"]["id"].is_null());
        assert!(event["created"].as_i64().unwrap() > 1_700_000_000);
        let customer = &event["data"]["object"];
        assert_eq!(customer["object"], "customer");
        assert_eq!(customer["id"], "cus_1");
        assert_eq!(customer["email"], "ada@example.com");
        assert_eq!(customer["name"], "Ada Lovelace");
    }

    #[test]
    fn demo_customers_are_distinct_past_the_name_list() {
        let customers = demo_customers(DEMO_NAMES.len() + 2);
        assert_eq!(customers[0].name, "Ada Lovelace");
        assert_eq!(customers[0].email, "ada.lovelace@example.com");
        let again = &customers[DEMO_NAMES.len()];
        assert_eq!(again.name, "Ada Lovelace 2");
        assert_eq!(again.email, "ada.lovelace+2@example.com");
        let mut emails: Vec<_> = customers.iter().map(|c| &c.email).collect();
        emails.sort();
        emails.dedup();
        assert_eq!(emails.len(), customers.len());
    }
}
