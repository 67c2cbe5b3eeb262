//! Stripe's list API, as backfills walk it: `GET /v1/<resource>?limit=100&starting_after=`,
//! Bearer auth with the secret key, paced under Stripe's rate limit and retried the way
//! Stripe asks (429 and 5xx, `Retry-After` honoured but clamped, `Stripe-Should-Retry`).

use super::StripeResource;
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Stripe's read limits (`specs/stripe/SOURCE.txt`): 25 requests/s with a test-mode key,
/// 100 with a live one.
pub const TEST_MODE_REQUESTS_PER_SECOND: f64 = 25.0;
pub const LIVE_MODE_REQUESTS_PER_SECOND: f64 = 100.0;
/// The share of the limit a backfill uses: the account's other API users (the dashboard,
/// the company's own code) draw on the same budget.
const HEADROOM: f64 = 0.9;
/// The most objects one list page holds.
pub const MAX_PAGE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    #[error(
        "Stripe refused the API key (HTTP {status}): {message}. Check the connection's api_key \
         (a secret key, sk_live_… or sk_test_…, or a restricted key with read access)"
    )]
    Unauthorized { status: u16, message: String },
    #[error("Stripe refused the request (HTTP {status}{}): {message}", code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Refused {
        status: u16,
        code: Option<String>,
        message: String,
    },
    #[error("Stripe did not answer successfully after {attempts} attempts; last: {last}")]
    Exhausted { attempts: u32, last: String },
    #[error("Stripe's answer could not be read: {0}")]
    Malformed(String),
}

impl StripeError {
    /// True when trying again later (a later run) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StripeError::Exhausted { .. })
    }
}

/// One page of a list: `{object: "list", data, has_more, url}`.
#[derive(Debug, Deserialize)]
pub struct ListPage {
    pub data: Vec<Value>,
    pub has_more: bool,
}

/// What one HTTP attempt came to, decided in one place.
#[derive(Debug)]
enum Attempt {
    Done(ListPage),
    /// Worth another try after `retry_after` (or the backoff schedule when `None`).
    Retry {
        retry_after: Option<Duration>,
        reason: String,
    },
    Fail(StripeError),
}

/// How a client retries: exponential backoff with full jitter, `Retry-After` honoured up to
/// `max_delay`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_delay);
        }
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        // Full jitter: replicas retrying together do not retry in lockstep.
        let millis = u64::try_from(exp.as_millis()).unwrap_or(u64::MAX).max(1);
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

/// Spaces requests evenly at a rate, across every task using the client.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    fn new(per_second: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.01)),
            next: Mutex::new(Instant::now()),
        }
    }

    async fn wait_turn(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// After a 429 nobody should send until `until`.
    async fn hold_until(&self, until: Instant) {
        let mut next = self.next.lock().await;
        *next = (*next).max(until);
    }
}

/// A Stripe API client for one connection.
pub struct StripeClient {
    http: reqwest::Client,
    api_base: String,
    api_key: SecretString,
    pacer: Pacer,
    retry: RetryPolicy,
}

impl StripeClient {
    /// `api_base` is `https://api.stripe.com` in production (the sandbox's in tests).
    pub fn new(api_base: &str, api_key: &str) -> Result<Self, StripeError> {
        Self::with_settings(
            api_base,
            api_key,
            Self::requests_per_second_for(api_key),
            RetryPolicy::default(),
        )
    }

    pub fn with_settings(
        api_base: &str,
        api_key: &str,
        requests_per_second: f64,
        retry: RetryPolicy,
    ) -> Result<Self, StripeError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("billsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| StripeError::Malformed(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            api_key: SecretString::from(api_key.to_string()),
            pacer: Pacer::new(requests_per_second),
            retry,
        })
    }

    /// The pace a backfill keeps with `api_key`: Stripe's limit for the key's mode, less
    /// headroom for the account's other API users.
    pub fn requests_per_second_for(api_key: &str) -> f64 {
        let limit = if api_key.contains("_test_") {
            TEST_MODE_REQUESTS_PER_SECOND
        } else {
            LIVE_MODE_REQUESTS_PER_SECOND
        };
        limit * HEADROOM
    }

    /// One page of `resource`, newest first, after the object `starting_after`.
    pub async fn list(
        &self,
        resource: StripeResource,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<ListPage, StripeError> {
        let url = format!("{}{}", self.api_base, resource.list_path());
        let limit = limit.clamp(1, MAX_PAGE).to_string();
        let mut query: Vec<(&str, &str)> = vec![("limit", limit.as_str())];
        query.extend_from_slice(resource.list_filter());
        if let Some(after) = starting_after {
            query.push(("starting_after", after));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.pacer.wait_turn().await;
            let sent = self
                .http
                .get(&url)
                .bearer_auth(self.api_key.expose_secret())
                .query(&query)
                .send()
                .await;
            let outcome = match sent {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    match response.bytes().await {
                        Ok(body) => classify(status, &headers, &body),
                        Err(e) => Attempt::Retry {
                            retry_after: None,
                            reason: format!("reading the body failed: {e}"),
                        },
                    }
                }
                Err(e) => Attempt::Retry {
                    retry_after: None,
                    reason: format!("request failed: {e}"),
                },
            };
            match outcome {
                Attempt::Done(page) => return Ok(page),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry {
                    retry_after,
                    reason,
                } => {
                    if attempt >= self.retry.max_attempts {
                        return Err(StripeError::Exhausted {
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    let delay = self.retry.delay(attempt, retry_after);
                    tracing::info!(%resource, attempt, delay_ms = delay.as_millis() as u64, %reason,
                        "Stripe list request failed transiently; retrying.");
                    metrics::counter!("billsync_stripe_api_retries_total").increment(1);
                    self.pacer.hold_until(Instant::now() + delay).await;
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

/// The error object of Stripe's error bodies: `{"error": {type, code?, message, param?}}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Decides what a response means: the page, a retry, or a failure no retry will fix.
fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Attempt {
    if status.is_success() {
        return match serde_json::from_slice::<ListPage>(body) {
            Ok(page) => Attempt::Done(page),
            // A 200 that is not a list is Stripe (or a proxy) misbehaving; asking again
            // may help, and the attempt budget bounds it.
            Err(e) => Attempt::Retry {
                retry_after: None,
                reason: format!("HTTP {status} without a list body: {e}"),
            },
        };
    }
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .unwrap_or_default()
        .error;
    let message = detail
        .message
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    let should_retry = headers
        .get("stripe-should-retry")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("true"));
    // Clamped: `1e20` once passed the finiteness check and panicked the conversion.
    let retry_after = billsync_bus::retry_after_header(headers, std::time::SystemTime::now());
    let transient = status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status == StatusCode::CONFLICT
        || status == StatusCode::REQUEST_TIMEOUT;
    // Stripe's header, when present, overrides the status-based guess.
    if should_retry.unwrap_or(transient) {
        return Attempt::Retry {
            retry_after,
            reason: format!("HTTP {status}: {message}"),
        };
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Attempt::Fail(StripeError::Unauthorized {
            status: status.as_u16(),
            message,
        });
    }
    Attempt::Fail(StripeError::Refused {
        status: status.as_u16(),
        code: detail.code,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_sandbox::{StripeAccount, StripeFaults, StripeSeed};

    const KEY: &str = "sk_test_clienttests000000001";

    async fn sandbox() -> billsync_sandbox::RunningSandbox {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let sandbox = billsync_sandbox::start(listener, Default::default())
            .await
            .expect("sandbox");
        sandbox.stripe.add_account(StripeAccount::new("acct", KEY));
        sandbox
    }

    fn fast_retries() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn pages_walk_every_object_without_tripping_the_rate_limit() {
        let sandbox = sandbox().await;
        sandbox.stripe.seed(
            "acct",
            &StripeSeed {
                customers: 1_050,
                ..StripeSeed::default()
            },
        );
        let client = StripeClient::new(&sandbox.stripe_base_url("acct"), KEY).expect("client");
        // 31 pages: more than a second's worth at 25 requests/s, none refused.
        let mut ids = Vec::new();
        for resource in [StripeResource::Customer, StripeResource::Subscription] {
            let mut after: Option<String> = None;
            loop {
                let page = client
                    .list(resource, after.as_deref(), 100)
                    .await
                    .expect("page");
                after = page
                    .data
                    .last()
                    .and_then(|o| o["id"].as_str())
                    .map(str::to_owned);
                ids.extend(
                    page.data
                        .iter()
                        .map(|o| o["id"].as_str().unwrap().to_owned()),
                );
                if !page.has_more {
                    break;
                }
            }
        }
        assert_eq!(ids.len(), 2_100);
        assert_eq!(sandbox.stripe.throttled_count("acct"), 0);
        assert_eq!(sandbox.stripe.request_count("acct"), 22);
    }

    #[tokio::test]
    async fn a_wrong_key_is_permanent_and_says_so() {
        let sandbox = sandbox().await;
        let client = StripeClient::with_settings(
            &sandbox.stripe_base_url("acct"),
            "sk_test_wrong0000000000000000",
            25.0,
            fast_retries(),
        )
        .expect("client");
        let error = client
            .list(StripeResource::Customer, None, 100)
            .await
            .expect_err("401");
        assert!(
            matches!(error, StripeError::Unauthorized { status: 401, .. }),
            "{error}"
        );
        assert!(!error.is_transient());
        assert!(!error.to_string().contains("wrong0000"), "{error}");
        let error = client
            .list(StripeResource::Customer, Some("cus_missing"), 100)
            .await
            .expect_err("401 first");
        assert!(matches!(error, StripeError::Unauthorized { .. }));
    }

    #[tokio::test]
    async fn unknown_cursors_are_refused_with_stripe_s_code() {
        let sandbox = sandbox().await;
        let client = StripeClient::with_settings(
            &sandbox.stripe_base_url("acct"),
            KEY,
            25.0,
            fast_retries(),
        )
        .expect("client");
        let error = client
            .list(StripeResource::Invoice, Some("in_missing"), 100)
            .await
            .expect_err("400");
        match error {
            StripeError::Refused { status, code, .. } => {
                assert_eq!(status, 400);
                assert_eq!(code.as_deref(), Some("resource_missing"));
            }
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn throttling_and_server_errors_are_retried_honouring_retry_after() {
        let sandbox = sandbox().await;
        sandbox.stripe.seed("acct", &StripeSeed::default());
        sandbox.stripe.set_faults(
            "acct",
            StripeFaults {
                throttle_next: 1,
                fail_next: 1,
                retry_after_secs: 1,
                ..StripeFaults::default()
            },
        );
        let client = StripeClient::with_settings(
            &sandbox.stripe_base_url("acct"),
            KEY,
            25.0,
            fast_retries(),
        )
        .expect("client");
        let started = Instant::now();
        let page = client
            .list(StripeResource::Customer, None, 100)
            .await
            .expect("third attempt succeeds");
        assert_eq!(page.data.len(), 10);
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "Retry-After: 1 was honoured"
        );
        assert_eq!(sandbox.stripe.request_count("acct"), 3);

        sandbox.stripe.set_faults(
            "acct",
            StripeFaults {
                fail_next: 10,
                ..StripeFaults::default()
            },
        );
        let error = client
            .list(StripeResource::Customer, None, 100)
            .await
            .expect_err("exhausted");
        assert!(
            matches!(error, StripeError::Exhausted { attempts: 4, .. }),
            "{error}"
        );
        assert!(error.is_transient());
    }

    #[test]
    fn test_keys_pace_under_25_and_live_keys_under_100() {
        assert!(StripeClient::requests_per_second_for("sk_test_x") < 25.0);
        assert!(StripeClient::requests_per_second_for("sk_live_x") < 100.0);
        assert!(StripeClient::requests_per_second_for("sk_live_x") > 80.0);
    }

    #[test]
    fn stripe_should_retry_overrides_the_status() {
        let mut headers = HeaderMap::new();
        headers.insert("stripe-should-retry", "false".parse().unwrap());
        let body = br#"{"error":{"type":"api_error","message":"no"}}"#;
        assert!(matches!(
            classify(StatusCode::INTERNAL_SERVER_ERROR, &headers, body),
            Attempt::Fail(StripeError::Refused { status: 500, .. })
        ));
        headers.insert("stripe-should-retry", "true".parse().unwrap());
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &headers, body),
            Attempt::Retry { .. }
        ));
    }

    #[test]
    fn a_huge_retry_after_is_clamped_not_a_panic() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "1e20".parse().unwrap());
        let body = br#"{"error":{"type":"rate_limit_error","message":"slow down"}}"#;
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, body),
            Attempt::Retry { retry_after: Some(wait), .. } if wait == billsync_bus::MAX_RETRY_AFTER
        ));
    }
}
