//! A small client of Chargebee's API v2: HTTP basic auth (the API key as user name), an
//! injectable base URL, a timeout, the site's rate limit, and one [`classify`] that decides
//! whether a failed request is worth retrying.

use super::rate_limit::RequestLimiter;
use super::types::{ApiErrorBody, EventsPage, Resource, ResourcePage};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Why a request to Chargebee failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChargebeeError {
    /// Worth trying again later: 429, 5xx, timeouts, connection failures.
    #[error("{message}")]
    Retryable {
        message: String,
        retry_after: Option<Duration>,
        http_status: Option<u16>,
    },
    /// Trying again unchanged fails the same way: a wrong API key, an unknown site, a bad
    /// parameter. An operator must act.
    #[error("{message}")]
    Permanent {
        message: String,
        http_status: Option<u16>,
        api_error_code: Option<String>,
    },
}

impl ChargebeeError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, ChargebeeError::Retryable { .. })
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ChargebeeError::Retryable { retry_after, .. } => *retry_after,
            ChargebeeError::Permanent { .. } => None,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            ChargebeeError::Retryable { http_status, .. }
            | ChargebeeError::Permanent { http_status, .. } => *http_status,
        }
    }
}

/// Decides what an answer means: the JSON body of a success, or a retryable or permanent
/// error. A 2xx whose body is not JSON, or is Chargebee's error shape, is an error too.
pub fn classify(
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> Result<Value, ChargebeeError> {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let error_body: Option<ApiErrorBody> = json
        .as_ref()
        .filter(|v| v.get("api_error_code").is_some())
        .and_then(|v| serde_json::from_value(v.clone()).ok());
    if status.is_success() {
        match (json, error_body) {
            (Some(value), None) if value.is_object() => return Ok(value),
            (_, Some(error)) => {
                let status = error
                    .http_status_code
                    .and_then(|code| StatusCode::from_u16(code).ok())
                    .filter(|s| !s.is_success())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return classify_error(status, retry_after, Some(error));
            }
            _ => {
                return Err(ChargebeeError::Retryable {
                    message: format!(
                        "Chargebee answered {status} with a body that is not a JSON object"
                    ),
                    retry_after,
                    http_status: Some(status.as_u16()),
                })
            }
        }
    }
    classify_error(status, retry_after, error_body)
}

fn classify_error(
    status: StatusCode,
    retry_after: Option<Duration>,
    error: Option<ApiErrorBody>,
) -> Result<Value, ChargebeeError> {
    let error = error.unwrap_or_default();
    let code = error.api_error_code.clone();
    let detail = match (&error.api_error_code, &error.message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.clone(),
        (None, Some(message)) => message.clone(),
        (None, None) => "no error body".to_string(),
    };
    let http_status = Some(status.as_u16());
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        return Err(ChargebeeError::Retryable {
            message: format!("Chargebee answered {status} ({detail})"),
            retry_after,
            http_status,
        });
    }
    let advice = match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            "; check the connection's api_key (a full-access or read-only key of this site)"
        }
        StatusCode::NOT_FOUND if code.as_deref() == Some("site_not_found") => {
            "; check the connection's site and base_url"
        }
        _ => "",
    };
    Err(ChargebeeError::Permanent {
        message: format!("Chargebee refused the request with {status} ({detail}){advice}"),
        http_status,
        api_error_code: code,
    })
}

/// `Retry-After` (Chargebee sends seconds), clamped.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    billsync_bus::retry_after_header(headers, std::time::SystemTime::now())
}

/// The client of one Chargebee site; cheap to clone (clones share the rate limiter).
#[derive(Clone)]
pub struct ChargebeeClient {
    http: reqwest::Client,
    api_base: String,
    api_key: SecretString,
    limiter: Arc<RequestLimiter>,
}

impl std::fmt::Debug for ChargebeeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChargebeeClient")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl ChargebeeClient {
    /// `base_url` is `https://{site}.chargebee.com` (or the sandbox's stand-in); requests go
    /// to `{base_url}/api/v2/...`.
    pub fn new(
        base_url: &str,
        api_key: SecretString,
        timeout: Duration,
        requests_per_minute: u32,
    ) -> Result<Self, ChargebeeError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("billsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ChargebeeError::Permanent {
                message: format!("cannot build the HTTP client: {e}"),
                http_status: None,
                api_error_code: None,
            })?;
        Ok(Self {
            http,
            api_base: format!("{}/api/v2", base_url.trim_end_matches('/')),
            api_key,
            limiter: Arc::new(RequestLimiter::per_minute(requests_per_minute)),
        })
    }

    /// One page of `GET /events` after `occurred_after` (Unix seconds, exclusive), oldest
    /// first.
    pub async fn list_events(
        &self,
        occurred_after: i64,
        offset: Option<&str>,
        limit: usize,
    ) -> Result<EventsPage, ChargebeeError> {
        let mut params = vec![
            ("occurred_at[after]", occurred_after.to_string()),
            ("sort_by[asc]", "occurred_at".to_string()),
            ("limit", limit.to_string()),
        ];
        if let Some(offset) = offset {
            params.push(("offset", offset.to_string()));
        }
        let body = self.get("events", &params).await?;
        EventsPage::from_json(body).map_err(|reason| ChargebeeError::Retryable {
            message: format!("Chargebee's events page could not be read: {reason}"),
            retry_after: None,
            http_status: None,
        })
    }

    /// One page of a list API (`customers`, `subscriptions`, `invoices`); `params` adds
    /// filters and order such as `("sort_by[desc]", "created_at")`.
    pub async fn list(
        &self,
        resource: Resource,
        limit: usize,
        offset: Option<&str>,
        params: &[(&str, String)],
    ) -> Result<ResourcePage, ChargebeeError> {
        let mut all: Vec<(&str, String)> = vec![("limit", limit.to_string())];
        if let Some(offset) = offset {
            all.push(("offset", offset.to_string()));
        }
        all.extend(params.iter().cloned());
        let body = self.get(resource.path(), &all).await?;
        ResourcePage::from_json(body).map_err(|reason| ChargebeeError::Retryable {
            message: format!(
                "Chargebee's {} page could not be read: {reason}",
                resource.path()
            ),
            retry_after: None,
            http_status: None,
        })
    }

    async fn get(&self, path: &str, params: &[(&str, String)]) -> Result<Value, ChargebeeError> {
        self.limiter.acquire().await;
        let url = format!("{}/{path}", self.api_base);
        let sent = self
            .http
            .get(&url)
            .basic_auth(self.api_key.expose_secret(), Some(""))
            .query(params)
            .send()
            .await;
        let result = match sent {
            Err(error) => Err(transport_error(&error)),
            Ok(response) => {
                let status = response.status();
                let hint = retry_after(response.headers());
                match response.bytes().await {
                    Ok(body) => classify(status, hint, &body),
                    Err(error) => Err(transport_error(&error)),
                }
            }
        };
        if let Err(ChargebeeError::Retryable {
            retry_after: Some(delay),
            ..
        }) = &result
        {
            self.limiter.back_off(*delay);
        }
        result
    }
}

/// A request that got no answer. The URL in reqwest's message holds no secret: the key
/// travels in the `Authorization` header.
fn transport_error(error: &reqwest::Error) -> ChargebeeError {
    if error.is_builder() {
        return ChargebeeError::Permanent {
            message: format!("cannot build the request to Chargebee: {error}"),
            http_status: None,
            api_error_code: None,
        };
    }
    let what = if error.is_timeout() {
        "timed out"
    } else {
        "failed"
    };
    ChargebeeError::Retryable {
        message: format!("request to Chargebee {what}: {error}"),
        retry_after: None,
        http_status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Vec<u8> {
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn success_yields_the_body() {
        let ok = classify(StatusCode::OK, None, &body(json!({"list": []}))).unwrap();
        assert_eq!(ok, json!({"list": []}));
    }

    #[test]
    fn client_errors_are_permanent_with_advice() {
        let unauthorized = json!({"message": "Sorry, authentication failed. Invalid api key",
            "api_error_code": "api_authentication_failed", "http_status_code": 401});
        let error = classify(StatusCode::UNAUTHORIZED, None, &body(unauthorized)).unwrap_err();
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("api_key"), "{error}");
        let bad = json!({"message": "limit : too big", "api_error_code": "invalid_request"});
        assert!(!classify(StatusCode::BAD_REQUEST, None, &body(bad))
            .unwrap_err()
            .is_retryable());
    }

    #[test]
    fn rate_limits_keep_their_retry_after() {
        let limited =
            json!({"api_error_code": "api_request_limit_exceeded", "http_status_code": 429});
        let error = classify(
            StatusCode::TOO_MANY_REQUESTS,
            Some(Duration::from_secs(9)),
            &body(limited),
        )
        .unwrap_err();
        assert!(error.is_retryable());
        assert_eq!(error.retry_after(), Some(Duration::from_secs(9)));
    }

    #[test]
    fn server_errors_and_odd_successes_are_retryable() {
        assert!(classify(StatusCode::BAD_GATEWAY, None, b"<html>")
            .unwrap_err()
            .is_retryable());
        assert!(classify(StatusCode::OK, None, b"<html>")
            .unwrap_err()
            .is_retryable());
        let disguised = json!({"api_error_code": "internal_error", "http_status_code": 503});
        let error = classify(StatusCode::OK, None, &body(disguised)).unwrap_err();
        assert!(error.is_retryable());
        assert_eq!(error.http_status(), Some(503));
    }

    #[tokio::test]
    async fn a_silent_server_times_out_as_retryable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts connections and never answers.
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let client = ChargebeeClient::new(
            &format!("http://{addr}"),
            SecretString::from("key".to_string()),
            Duration::from_millis(200),
            150,
        )
        .unwrap();
        let error = client.list_events(0, None, 100).await.unwrap_err();
        assert!(error.is_retryable(), "{error}");
        assert!(error.to_string().contains("timed out"), "{error}");
        silent.abort();
    }
}
