//! OAuth for one Zoho connection: one access token shared by every task and every replica.
//!
//! Zoho mints at most 10 access tokens per refresh token per 10 minutes, so the token lives in
//! NATS KV (`{prefix}_tokens`, record `oauth/token` of the connection). A replica that needs a
//! new one (the stored one expires within [`REFRESH_MARGIN`], or Zoho answered
//! `INVALID_TOKEN` to it) takes the lease `oauth/lease` (`billsync_bus::lease`); the others
//! wait for the token it stores. A refresh token Zoho refuses (`invalid_code`: wrong, revoked, another
//! data centre) is one `Configuration` failure, kept — in this process and in KV for the
//! replicas waiting — so nothing asks Zoho again until the configuration changes (a restart).
//! Secrets are `SecretString`s and never logged; the token request carries them in its body.

use billsync_bus::lease::LeaseError;
use billsync_events::FailureClass;
use billsync_worker::{kv_error, DeliveryError, RecordStore};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A token expiring within this is refreshed first.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// A lease older than this is abandoned (its replica died mid-refresh).
const LEASE_TTL: Duration = Duration::from_secs(30);
/// How long a caller waits for another replica's refresh.
const WAIT_FOR_REFRESH: Duration = Duration::from_secs(20);
const TOKEN_RECORD: &str = "oauth/token";
const LEASE_RECORD: &str = "oauth/lease";
const FAILURE_RECORD: &str = "oauth/failure";

/// A connection's OAuth client.
pub struct OAuthSettings {
    /// `https://accounts.zoho.com` or the data centre's; the token endpoint is appended.
    pub accounts_url: String,
    pub client_id: SecretString,
    pub client_secret: SecretString,
    pub refresh_token: SecretString,
}

/// The token as kept in KV.
#[derive(Clone, Serialize, Deserialize)]
struct StoredToken {
    access_token: String,
    api_domain: String,
    expires_at_ms: u64,
}

/// The refresh failure replicas share.
#[derive(Serialize, Deserialize)]
struct StoredFailure {
    message: String,
    at_ms: u64,
}

/// An access token to call the API with.
#[derive(Clone)]
pub struct AccessToken {
    token: SecretString,
    /// Where API calls go (`https://www.zohoapis.com`), from the token answer.
    pub api_domain: String,
}

impl AccessToken {
    /// `Zoho-oauthtoken <token>`, the `Authorization` header's value.
    pub fn header(&self) -> SecretString {
        format!("Zoho-oauthtoken {}", self.token.expose_secret()).into()
    }

    fn same(&self, other: &str) -> bool {
        self.token.expose_secret() == other
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("api_domain", &self.api_domain)
            .finish()
    }
}

/// One connection's access token, shared through KV.
pub struct TokenSource {
    connection: String,
    settings: OAuthSettings,
    http: reqwest::Client,
    store: RecordStore,
    cached: Mutex<Option<StoredToken>>,
    failure: Mutex<Option<String>>,
    requested: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl TokenSource {
    pub fn new(
        connection: &str,
        settings: OAuthSettings,
        store: RecordStore,
        timeout: Duration,
    ) -> Self {
        Self {
            connection: connection.to_string(),
            settings,
            http: billsync_crm_http::http_client(timeout),
            store,
            cached: Mutex::new(None),
            failure: Mutex::new(None),
            requested: AtomicU64::new(0),
        }
    }

    /// Token requests this process sent to Zoho's accounts server.
    pub fn token_requests(&self) -> u64 {
        self.requested.load(Ordering::SeqCst)
    }

    /// Why the connection cannot get tokens, once Zoho refused its refresh token.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("failure poisoned").clone()
    }

    /// A live access token: this process's, else the shared one, else a new one.
    pub async fn token(&self) -> Result<AccessToken, DeliveryError> {
        self.check_failure()?;
        if let Some(token) = self.cached.lock().expect("cache poisoned").clone() {
            if fresh(&token) {
                return Ok(access(&token));
            }
        }
        self.obtain(None).await
    }

    /// A token other than `stale`, which Zoho answered `INVALID_TOKEN` to.
    pub async fn replace(&self, stale: &AccessToken) -> Result<AccessToken, DeliveryError> {
        self.check_failure()?;
        let stale = stale.token.expose_secret().to_string();
        self.obtain(Some(stale)).await
    }

    fn check_failure(&self) -> Result<(), DeliveryError> {
        match self.failure() {
            Some(message) => Err(refused_credentials(message)),
            None => Ok(()),
        }
    }

    async fn obtain(&self, stale: Option<String>) -> Result<AccessToken, DeliveryError> {
        let started = now_ms();
        let deadline = tokio::time::Instant::now() + WAIT_FOR_REFRESH;
        // A holder id per call: two tasks of this process wanting a token are two contenders
        // (the lease takes back a live lease of its own holder as a leftover).
        let lease = self.store.lease(
            LEASE_RECORD,
            &billsync_bus::lease::holder_id("zoho"),
            LEASE_TTL,
        );
        loop {
            if let Some(token) = self.usable(stale.as_deref()).await? {
                return Ok(token);
            }
            match lease.acquire().await {
                Ok(guard) => {
                    // Someone may have stored a token between the read and the lease.
                    let result = match self.usable(stale.as_deref()).await {
                        Ok(Some(token)) => Ok(token),
                        Ok(None) => self.refresh().await,
                        Err(error) => Err(error),
                    };
                    guard.release().await;
                    return result;
                }
                // Another replica refreshes (a lease it abandoned expires after LEASE_TTL).
                Err(LeaseError::Held { .. }) => {}
                Err(LeaseError::Store(reason)) => return Err(kv_error(reason)),
            }
            // Adopt its failure, or wait for its token.
            if let Some(failure) = self.store.get::<StoredFailure>(FAILURE_RECORD).await? {
                if failure.at_ms >= started {
                    *self.failure.lock().expect("failure poisoned") = Some(failure.message.clone());
                    return Err(refused_credentials(failure.message));
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DeliveryError::Retryable {
                    message: format!(
                        "waited {} s for another replica to refresh the Zoho access token of {}",
                        WAIT_FOR_REFRESH.as_secs(),
                        self.connection
                    ),
                    retry_after: None,
                    http_status: None,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The shared token if it is fresh and not `stale`.
    async fn usable(&self, stale: Option<&str>) -> Result<Option<AccessToken>, DeliveryError> {
        let Some(token) = self.store.get::<StoredToken>(TOKEN_RECORD).await? else {
            return Ok(None);
        };
        if !fresh(&token) || stale == Some(token.access_token.as_str()) {
            return Ok(None);
        }
        let access = access(&token);
        *self.cached.lock().expect("cache poisoned") = Some(token);
        Ok(Some(access))
    }

    /// `POST {accounts}/oauth/v2/token` with the refresh token, holding the lease.
    async fn refresh(&self) -> Result<AccessToken, DeliveryError> {
        self.requested.fetch_add(1, Ordering::SeqCst);
        let form = [
            ("grant_type", "refresh_token"),
            ("client_id", self.settings.client_id.expose_secret()),
            ("client_secret", self.settings.client_secret.expose_secret()),
            ("refresh_token", self.settings.refresh_token.expose_secret()),
        ];
        let url = format!(
            "{}/oauth/v2/token",
            self.settings.accounts_url.trim_end_matches('/')
        );
        let retryable = |message: String, retry_after: Option<Duration>| DeliveryError::Retryable {
            message,
            retry_after,
            http_status: None,
        };
        let response = self.http.post(&url).form(&form).send().await.map_err(|e| {
            let what = if e.is_timeout() {
                "timed out"
            } else {
                "failed"
            };
            retryable(
                format!("Zoho's accounts server: the token request {what}"),
                None,
            )
        })?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if let Some(token) = answer.get("access_token").and_then(|t| t.as_str()) {
            let expires_in = answer
                .get("expires_in")
                .and_then(|e| e.as_u64())
                .unwrap_or(3600);
            let api_domain = answer
                .get("api_domain")
                .and_then(|d| d.as_str())
                .unwrap_or("https://www.zohoapis.com")
                .trim_end_matches('/')
                .to_string();
            let stored = StoredToken {
                access_token: token.to_string(),
                api_domain,
                expires_at_ms: now_ms() + expires_in * 1000,
            };
            self.store.put(TOKEN_RECORD, &stored).await?;
            tracing::info!(connection = %self.connection, expires_in, "Refreshed the Zoho CRM access token");
            let access = access(&stored);
            *self.cached.lock().expect("cache poisoned") = Some(stored);
            return Ok(access);
        }
        let error = answer
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or_default();
        match error {
            "invalid_code" | "invalid_client" | "invalid_client_secret" | "unauthorized_client" => {
                let message = format!(
                    "Zoho's accounts server refused the connection's OAuth credentials \
                     ({error}): the refresh token is wrong or revoked, or the client id, client \
                     secret or data centre is not the one it was made with; make a new refresh \
                     token and update destinations.zoho[] \"{}\"",
                    self.connection
                );
                tracing::error!(connection = %self.connection, error, "Zoho refused the refresh token; no more token requests until the configuration changes");
                *self.failure.lock().expect("failure poisoned") = Some(message.clone());
                let _ = self
                    .store
                    .put(FAILURE_RECORD, &StoredFailure { message: message.clone(), at_ms: now_ms() })
                    .await;
                Err(refused_credentials(message))
            }
            _ if status == reqwest::StatusCode::BAD_REQUEST && error == "Access Denied" => Err(retryable(
                "Zoho's accounts server refused a token: more than 10 access tokens for this refresh \
                 token in 10 minutes (another client shares it?)"
                    .into(),
                Some(Duration::from_secs(60)),
            )),
            _ => Err(retryable(
                format!("Zoho's accounts server answered {} without a token ({error})", status.as_u16()),
                None,
            )),
        }
    }
}

/// Zoho refused the connection's OAuth credentials: a configuration failure that turns the
/// connection's readiness off (the kit reads a 401 `Configuration` failure as refused
/// credentials), whether this replica or another one asked.
fn refused_credentials(message: String) -> DeliveryError {
    DeliveryError::Permanent {
        class: FailureClass::Configuration,
        message,
        http_status: Some(401),
        detail: serde_json::Value::Null,
    }
}

fn fresh(token: &StoredToken) -> bool {
    token.expires_at_ms > now_ms() + REFRESH_MARGIN.as_millis() as u64
}

fn access(token: &StoredToken) -> AccessToken {
    AccessToken {
        token: token.access_token.clone().into(),
        api_domain: token.api_domain.clone(),
    }
}

impl AccessToken {
    /// Whether this is the token `other` (tests).
    pub fn is(&self, other: &AccessToken) -> bool {
        self.same(other.token.expose_secret())
    }
}
