//! Stripe in the sandbox: the list and retrieve API of the five resources the ActiveCampaign
//! integration syncs (customers, subscriptions, invoices, charges, checkout sessions), and a
//! webhook sender that signs events the way Stripe signs them (`specs/stripe/SOURCE.txt`).
//!
//! Each account lives under `/stripe/{account}`, standing in for `https://api.stripe.com`, so
//! a client configured with that base appends `/v1/customers` as it would in production.
//! Objects are shaped like `specs/stripe/fixtures3.json`; lists page the way Stripe's do
//! (`limit` ≤ 100, `starting_after`, newest first, `{object: "list", data, has_more, url}`);
//! errors carry Stripe's body; a wrong key gets 401 and more than 25 requests per second
//! (100 with a live key) get 429.

mod error;
pub mod objects;
pub mod rate_limit;
pub(crate) mod routes;
mod state;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use rand::distr::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::kit::{self, lock, Emulator, Gate, Refusal, Tenants};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use error::ApiError;
pub use objects::{
    StripeCharge, StripeCheckoutSession, StripeCustomer, StripeInvoice, StripeResource,
    StripeSubscription,
};
use state::AccountData;
pub use state::{StripeCounts, StripeSeed, StripeSeeded};

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

/// A signed webhook delivery, ready to send: the body bytes and its `Stripe-Signature`.
#[derive(Debug, Clone)]
pub struct SignedWebhook {
    pub body: Vec<u8>,
    pub signature: String,
}

/// Serializes `event` and signs it with `secret` at `timestamp`, as Stripe does before it
/// POSTs; for senders that reuse one HTTP client (benchmarks, load tests).
pub fn signed_webhook(secret: &str, timestamp: i64, event: &Value) -> SignedWebhook {
    let body = serde_json::to_vec(event).expect("a JSON value always serializes");
    let signature = sign(secret, timestamp, &body);
    SignedWebhook { body, signature }
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

/// One emulated Stripe account.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct StripeAccount {
    /// The `{account}` path segment.
    pub name: String,
    /// The secret key clients must present (`sk_test_…` for test mode).
    pub api_key: String,
    /// Stripe's read limit for the key's mode: 25 in test mode, 100 live.
    pub requests_per_second: u32,
}

impl StripeAccount {
    /// An account whose rate limit follows its key's mode, as Stripe's does.
    pub fn new(name: impl Into<String>, api_key: impl Into<String>) -> Self {
        let api_key = api_key.into();
        Self {
            name: name.into(),
            requests_per_second: rate_limit::limit_for_key(&api_key),
            api_key,
        }
    }
}

impl fmt::Debug for StripeAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeAccount")
            .field("name", &self.name)
            .field("api_key", &"[redacted]")
            .field("requests_per_second", &self.requests_per_second)
            .finish()
    }
}

/// Misbehaviour to inject into one account's API.
pub type StripeFaults = crate::kit::ApiFaults;

/// Handle on every emulated Stripe account; cheap to clone.
#[derive(Clone)]
pub struct Stripe {
    accounts: Arc<Tenants<Account>>,
}

/// An account's settings and everything that changes under it.
pub(crate) struct Account {
    config: StripeAccount,
    /// Faults, the one-second rate window and the request counts.
    gate: Gate<StripeFaults>,
    data: Mutex<AccountData>,
}

impl Account {
    pub(crate) fn livemode(&self) -> bool {
        self.config.api_key.contains("_live_")
    }

    pub(crate) fn requests_per_second(&self) -> u32 {
        self.config.requests_per_second
    }

    /// The account's objects, locked. Callers drop the guard before any `.await`.
    pub(crate) fn data(&self) -> MutexGuard<'_, AccountData> {
        lock(&self.data)
    }
}

impl kit::Tenant for Account {
    type Faults = StripeFaults;

    fn name(&self) -> &str {
        &self.config.name
    }

    fn gate(&self) -> &Gate<StripeFaults> {
        &self.gate
    }

    fn rate_limit(&self) -> u32 {
        self.config.requests_per_second
    }

    /// A secret key as a bearer token or a basic-auth user name; a wrong one is echoed
    /// redacted, as Stripe does.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match routes::presented_key(headers.get(header::AUTHORIZATION)) {
            Some(key) if key == self.config.api_key => Ok(()),
            Some(key) => Err(Refusal {
                response: Box::new(ApiError::invalid_key(&key).into_response()),
                log: Some("wrong API key"),
            }),
            None => Err(Refusal {
                response: Box::new(ApiError::no_key().into_response()),
                log: None,
            }),
        }
    }

    fn rate_limited(retry_after_secs: u64) -> Response {
        ApiError::rate_limited(retry_after_secs).into_response()
    }

    fn injected_failure() -> Response {
        ApiError::internal().into_response()
    }
}

impl Emulator for Stripe {
    type Tenant = Account;
    const VENDOR: &'static str = "Stripe";
    const SEGMENT: &'static str = "stripe";
    const TENANT: &'static str = "account";

    fn tenants(&self) -> &Tenants<Account> {
        &self.accounts
    }

    fn unknown_tenant(_name: &str, method: &Method, path: &str) -> Response {
        ApiError::unrecognized(method.as_str(), path).into_response()
    }

    fn unknown_in_control(name: &str) -> Response {
        routes::unknown_account(name)
    }
}

impl Stripe {
    /// `base_url` is where the sandbox serves `/stripe`, e.g. `http://127.0.0.1:9100/stripe`.
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            accounts: Arc::new(Tenants::new(base_url)),
        }
    }

    /// Adds an account, or replaces the one with this name by a fresh, empty one.
    pub fn add_account(&self, account: StripeAccount) {
        let entry = Account {
            config: account.clone(),
            gate: Gate::new(Duration::from_secs(1)),
            data: Mutex::default(),
        };
        self.accounts.insert(account.name, entry);
    }

    /// `http://127.0.0.1:PORT/stripe/{account}`: what `https://api.stripe.com` is to a client,
    /// which appends `/v1/...`.
    pub fn base_url(&self, account: &str) -> String {
        format!("{}/{account}", self.accounts.base_url())
    }

    /// Fills the account with customers and their subscriptions, invoices, charges and
    /// checkout sessions (5,000 customers take well under a second).
    ///
    /// # Panics
    /// If no account has this name, so a typo fails the test at the right line.
    pub fn seed(&self, account: &str, seed: &StripeSeed) -> StripeSeeded {
        self.expect(account).data().seed(seed)
    }

    /// Creates a customer now and returns it as the API would.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn create_customer(&self, account: &str, email: &str, name: &str) -> Value {
        let account = self.expect(account);
        let customer = account
            .data()
            .create_customer(Some(email.into()), Some(name.into()));
        objects::Listed::render(&customer, account.livemode())
    }

    /// Every id of `resource`, oldest first.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn ids(&self, account: &str, resource: StripeResource) -> Vec<String> {
        self.expect(account).data().ids(resource)
    }

    /// Object counts by resource.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn counts(&self, account: &str) -> StripeCounts {
        self.expect(account).data().counts()
    }

    /// Replaces the account's faults.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn set_faults(&self, account: &str, faults: StripeFaults) {
        self.expect(account).gate.set_faults(faults);
    }

    /// Authenticated API requests so far, including refused (429) and failed (500) ones.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn request_count(&self, account: &str) -> u64 {
        self.expect(account).gate.requests()
    }

    /// Requests answered 429 so far (over the limit or injected).
    ///
    /// # Panics
    /// If no account has this name.
    pub fn throttled_count(&self, account: &str) -> u64 {
        self.expect(account).gate.refused()
    }

    /// Names of all accounts, sorted.
    pub fn account_names(&self) -> Vec<String> {
        self.accounts.names()
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.get(name)
    }

    fn expect(&self, name: &str) -> Arc<Account> {
        self.accounts.expect("Stripe account", name)
    }
}

impl fmt::Debug for Stripe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stripe")
            .field("base_url", &self.accounts.base_url())
            .field("accounts", &self.account_names())
            .finish()
    }
}

#[cfg(test)]
mod api_tests;

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
