//! One CRM connection's HTTP transport: every request a vendor client makes goes through
//! [`CrmTransport::send`], which paces it, charges its budget, times it, classifies the
//! answer with the vendor's one `classify`, backs every caller off after a 429, and says in
//! any error which call failed.

use crate::budget::Budget;
use crate::endpoint;
use crate::rate_limit::RateLimiter;
use billsync_bus::SharedRateLimiter;
use billsync_events::FailureClass;
use billsync_worker::DeliveryError;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::borrow::Cow;
use std::marker::PhantomData;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// What a transport needs to know of its vendor: names, and how to read an answer.
pub trait Vendor: Send + Sync + 'static {
    /// The `destination` label of metrics and spans, e.g. `activecampaign`.
    const DESTINATION: &'static str;
    /// The vendor in messages, e.g. `ActiveCampaign`.
    const NAME: &'static str;

    /// What an answer means: success, worth retrying (with the vendor's `Retry-After`), or
    /// permanent. The one place a vendor's statuses and error bodies are read; a 2xx can
    /// still be a refusal.
    fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), DeliveryError>;
}

/// One request to send: method, path (relative to the transport's base, query included),
/// body, and optionally its endpoint template and cost.
#[derive(Debug)]
pub struct Call<'a> {
    method: Method,
    path: Cow<'a, str>,
    endpoint: Option<&'static str>,
    body: Option<(Bytes, &'static str)>,
    cost: Option<u64>,
    auth: Option<(HeaderName, SecretString)>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: impl Into<Cow<'a, str>>) -> Self {
        Self {
            method,
            path: path.into(),
            endpoint: None,
            body: None,
            cost: None,
            auth: None,
        }
    }

    pub fn get(path: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Method::GET, path)
    }

    pub fn post(path: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Method::POST, path)
    }

    pub fn put(path: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Method::PUT, path)
    }

    pub fn patch(path: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Method::PATCH, path)
    }

    pub fn delete(path: impl Into<Cow<'a, str>>) -> Self {
        Self::new(Method::DELETE, path)
    }

    /// A JSON body.
    pub fn json(mut self, body: &impl Serialize) -> Self {
        // billsync's request types are plain structs of strings and numbers: they serialise.
        let bytes = serde_json::to_vec(body).expect("a request body serialises to JSON");
        self.body = Some((bytes.into(), "application/json"));
        self
    }

    /// A form-encoded body, already encoded.
    pub fn form(mut self, body: String) -> Self {
        self.body = Some((body.into(), "application/x-www-form-urlencoded"));
        self
    }

    /// Names the endpoint template of the metrics, spans and messages, where the path's ids
    /// are not all numbers or UUIDs (see [`endpoint::template`]).
    pub fn endpoint(mut self, template: &'static str) -> Self {
        self.endpoint = Some(template);
        self
    }

    /// What this call costs against the connection's [`Budget`], when its price depends on
    /// more than method and endpoint (Zoho: an upsert costs 1 credit per 10 records).
    pub fn cost(mut self, units: u64) -> Self {
        self.cost = Some(units);
        self
    }

    /// Sends `secret` in header `name` with this call, instead of the transport's credential:
    /// a credential that changes while the transport lives (an OAuth access token). Marked
    /// sensitive, never in spans, metrics or messages.
    pub fn auth(mut self, name: &'static str, secret: SecretString) -> Self {
        self.auth = Some((HeaderName::from_static(name), secret));
        self
    }

    fn template(&self) -> Cow<'static, str> {
        match self.endpoint {
            Some(template) => Cow::Borrowed(template),
            None => Cow::Owned(endpoint::template(&self.path)),
        }
    }
}

/// A vendor's answer that its `classify` accepted.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// The HTTP transport of one CRM connection (one account, one set of credentials).
pub struct CrmTransport<V: Vendor> {
    http: reqwest::Client,
    base: String,
    connection: String,
    auth: Option<(HeaderName, SecretString)>,
    /// Spaces this process's requests; with a shared limiter it only holds callers back
    /// during a pause this process was asked for.
    limiter: Option<RateLimiter>,
    /// Spaces the requests of every replica (the vendor's rate is per account).
    shared_limiter: Option<SharedRateLimiter>,
    budget: Option<Budget>,
    concurrency: Option<Semaphore>,
    vendor: PhantomData<fn() -> V>,
}

impl<V: Vendor> CrmTransport<V> {
    /// A transport to `base` (requests go to `{base}{path}`) with a timeout per request, no
    /// credentials and no limits until they are added.
    pub fn new(base: &str, timeout: Duration) -> Self {
        Self {
            http: http_client(timeout),
            base: base.trim_end_matches('/').to_string(),
            connection: String::new(),
            auth: None,
            limiter: None,
            shared_limiter: None,
            budget: None,
            concurrency: None,
            vendor: PhantomData,
        }
    }

    /// Sends `secret` in header `name` with every request; it is marked sensitive and never
    /// appears in spans, metrics or messages.
    pub fn auth_header(mut self, name: &'static str, secret: SecretString) -> Self {
        self.auth = Some((HeaderName::from_static(name), secret));
        self
    }

    /// Names the destination connection in metrics and spans, so that one account's 429s or
    /// errors can be told from another's.
    pub fn for_connection(mut self, name: &str) -> Self {
        self.connection = name.to_string();
        self
    }

    /// Spaces this process's requests at `per_second`.
    pub fn rate(mut self, per_second: u32) -> Self {
        self.limiter = Some(RateLimiter::per_second(per_second));
        self
    }

    /// Spaces requests by a rate shared with every replica instead of this process's alone.
    pub fn with_shared_limiter(mut self, limiter: SharedRateLimiter) -> Self {
        self.shared_limiter = Some(limiter);
        self
    }

    /// Charges every call against `budget`; a call it cannot afford is not sent.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// At most `max` requests of this connection in flight at once (Zoho limits concurrent
    /// calls per organisation).
    pub fn concurrency(mut self, max: usize) -> Self {
        self.concurrency = Some(Semaphore::new(max.max(1)));
        self
    }

    pub fn connection(&self) -> &str {
        &self.connection
    }

    /// Sends `call` and reads its answer as JSON into `T`.
    pub async fn json<T: DeserializeOwned>(&self, call: Call<'_>) -> Result<T, DeliveryError> {
        let (method, endpoint) = (call.method.clone(), call.template());
        let answer = self.send(call).await?;
        serde_json::from_slice(&answer.body).map_err(|error| {
            DeliveryError::permanent(
                FailureClass::Rejected,
                format!(
                    "{}'s answer to {method} {endpoint} was not the expected JSON: {error}",
                    V::NAME
                ),
            )
        })
    }

    /// Sends `call` within the connection's limits; the answer if `classify` accepts it.
    pub async fn send(&self, call: Call<'_>) -> Result<Answer, DeliveryError> {
        let endpoint = call.template();
        let span = tracing::info_span!(
            "crm_request",
            destination = V::DESTINATION,
            connection = %self.connection,
            method = %call.method,
            endpoint = %endpoint,
            status = tracing::field::Empty,
        );
        self.exchange(call, &endpoint, &span)
            .instrument(span.clone())
            .await
    }

    async fn exchange(
        &self,
        call: Call<'_>,
        endpoint: &str,
        span: &tracing::Span,
    ) -> Result<Answer, DeliveryError> {
        let method = call.method.clone();
        let context = |error| with_context(error, &method, endpoint, None);
        let _permit = match &self.concurrency {
            Some(slots) => Some(
                slots
                    .acquire()
                    .await
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        if let Some(budget) = &self.budget {
            let cost = call.cost.unwrap_or_else(|| budget.cost(&method, endpoint));
            let charged = budget.spend(cost).await;
            let remaining = charged.unwrap_or_else(|overspent| overspent.remaining);
            metrics::gauge!("billsync_crm_budget_remaining",
                "destination" => V::DESTINATION, "connection" => self.connection.clone())
            .set(remaining as f64);
            if let Err(overspent) = charged {
                return Err(context(DeliveryError::Retryable {
                    message: format!(
                        "not sent: the call costs {} {unit} and {} of the connection's {} {unit} \
                         are left in {}'s window; enough are free again in {} s",
                        overspent.cost,
                        overspent.remaining,
                        budget.capacity(),
                        V::NAME,
                        overspent.wait.as_secs(),
                        unit = budget.unit(),
                    ),
                    retry_after: Some(overspent.wait),
                    http_status: None,
                }));
            }
        }
        self.pace().await;

        let mut request = self
            .http
            .request(method.clone(), format!("{}{}", self.base, call.path));
        if let Some((name, secret)) = call.auth.as_ref().or(self.auth.as_ref()) {
            let mut value = HeaderValue::from_str(secret.expose_secret()).map_err(|_| {
                context(DeliveryError::permanent(
                    FailureClass::Configuration,
                    format!(
                        "the connection's {} credential holds characters a header cannot carry",
                        V::NAME
                    ),
                ))
            })?;
            value.set_sensitive(true);
            request = request.header(name, value);
        }
        if let Some((body, content_type)) = call.body {
            request = request.header(CONTENT_TYPE, content_type).body(body);
        }

        let started = std::time::Instant::now();
        let received = match request.send().await {
            Ok(response) => {
                let (status, headers) = (response.status(), response.headers().clone());
                response.bytes().await.map(|body| (status, headers, body))
            }
            Err(error) => Err(error),
        };
        let status_label = match &received {
            Ok((status, _, _)) => status.as_str().to_string(),
            Err(error) if error.is_timeout() => "timeout".into(),
            Err(_) => "error".into(),
        };
        span.record("status", status_label.as_str());
        metrics::counter!("billsync_crm_requests_total",
            "destination" => V::DESTINATION, "connection" => self.connection.clone(),
            "endpoint" => endpoint.to_string(), "method" => method.to_string(),
            "status" => status_label)
        .increment(1);
        metrics::histogram!("billsync_crm_request_seconds",
            "destination" => V::DESTINATION, "connection" => self.connection.clone(),
            "endpoint" => endpoint.to_string())
        .record(started.elapsed().as_secs_f64());
        let (status, headers, body) =
            received.map_err(|error| context(transport_error::<V>(error)))?;

        let classified = V::classify(status, &headers, &body);
        if let Err(DeliveryError::Retryable {
            retry_after: Some(delay),
            ..
        }) = &classified
        {
            // The vendor asked for a pause: nobody of this connection sends before it ends.
            if let Some(local) = &self.limiter {
                local.back_off(*delay);
            }
            if let Some(shared) = &self.shared_limiter {
                shared.back_off(*delay).await;
            }
        }
        classified.map_err(|error| with_context(error, &method, endpoint, Some(status)))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

impl<V: Vendor> CrmTransport<V> {
    /// Waits for this request's slot: the shared one when replicas share the rate, else
    /// this process's.
    async fn pace(&self) {
        let Some(shared) = &self.shared_limiter else {
            if let Some(local) = &self.limiter {
                local.acquire().await;
            }
            return;
        };
        loop {
            let reserved_at = tokio::time::Instant::now();
            shared.acquire().await;
            // A 429 this process got while the caller waited holds it back too; the shared
            // slot was taken before the pause, so it takes a new one after it.
            match self
                .limiter
                .as_ref()
                .and_then(|l| l.paused_since(reserved_at))
            {
                Some(until) => tokio::time::sleep_until(until).await,
                None => return,
            }
        }
    }
}

/// Says which call failed: `POST /contact/sync answered 422: <the vendor's reason>`.
fn with_context(
    error: DeliveryError,
    method: &Method,
    endpoint: &str,
    status: Option<StatusCode>,
) -> DeliveryError {
    let prefix = match status {
        Some(status) => format!("{method} {endpoint} answered {}", status.as_u16()),
        None => format!("{method} {endpoint}"),
    };
    reword(error, |message| format!("{prefix}: {message}"))
}

/// `error` with its message rewritten by `reword`, everything else kept: how a client puts
/// what it was doing in front of the transport's message.
/// The HTTP client of every call billsync makes to a CRM (API or OAuth): a timeout per
/// request and billsync's user agent.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("billsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with only a timeout and user agent always builds")
}

pub fn reword(error: DeliveryError, reword: impl FnOnce(&str) -> String) -> DeliveryError {
    match error {
        DeliveryError::Retryable {
            message,
            retry_after,
            http_status,
        } => DeliveryError::Retryable {
            message: reword(&message),
            retry_after,
            http_status,
        },
        DeliveryError::Permanent {
            class,
            message,
            http_status,
            detail,
        } => DeliveryError::Permanent {
            class,
            message: reword(&message),
            http_status,
            detail,
        },
    }
}

/// No answer: a timeout, a refused connection, a broken body. Retryable. The message names
/// neither the URL (its query can carry an email) nor any header.
fn transport_error<V: Vendor>(error: reqwest::Error) -> DeliveryError {
    let what = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let causes = if causes.is_empty() {
        String::new()
    } else {
        format!(" ({})", causes.join(": "))
    };
    DeliveryError::Retryable {
        message: format!("request to {} {what}{causes}", V::NAME),
        retry_after: None,
        http_status: None,
    }
}
