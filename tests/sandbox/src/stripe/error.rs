//! Stripe's error responses: `{"error": {"type", "code"?, "message", "param"?}}` with the
//! HTTP status Stripe uses, a `Request-Id` header, and `Stripe-Should-Retry` where Stripe
//! sends it (429 and 5xx: true).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
    retry_after_secs: Option<u64>,
    should_retry: Option<bool>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &str,
        code: Option<&str>,
        message: &str,
        param: Option<&str>,
    ) -> Self {
        let mut error = Map::new();
        error.insert("type".into(), json!(kind));
        if let Some(code) = code {
            error.insert("code".into(), json!(code));
            error.insert(
                "doc_url".into(),
                json!(format!("https://stripe.com/docs/error-codes/{code}")),
            );
        }
        error.insert("message".into(), json!(message));
        if let Some(param) = param {
            error.insert("param".into(), json!(param));
        }
        Self {
            status,
            body: json!({ "error": error }),
            retry_after_secs: None,
            should_retry: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// 401 without an `Authorization` header.
    pub(crate) fn no_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "You did not provide an API key. You need to provide your API key in the \
             Authorization header, using Bearer auth (e.g. 'Authorization: Bearer \
             YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, \
             or we can help at https://support.stripe.com/.",
            None,
        )
    }

    /// 401 for a key the account does not have; Stripe shows only its ends.
    pub(crate) fn invalid_key(presented: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            &format!("Invalid API Key provided: {}", redact(presented)),
            None,
        )
    }

    /// 429 above the account's requests per second.
    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            Some("rate_limit"),
            "Request rate limit exceeded. Learn more about rate limits here \
             https://stripe.com/docs/rate-limits.",
            None,
        );
        error.retry_after_secs = Some(retry_after_secs.max(1));
        error.should_retry = Some(true);
        error
    }

    /// An injected 500.
    pub(crate) fn internal() -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "An unknown error occurred",
            None,
        );
        error.should_retry = Some(true);
        error
    }

    /// 404 for `GET /v1/<resource>/<id>` of an object that does not exist.
    pub(crate) fn no_such(object: &str, id: &str, param: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such {object}: '{id}'"),
            Some(param),
        )
    }

    /// 400 for a list cursor that names no object of the list.
    pub(crate) fn missing_cursor(object: &str, id: &str, param: &str) -> Self {
        let mut error = Self::no_such(object, id, param);
        error.status = StatusCode::BAD_REQUEST;
        error
    }

    /// 400 for a parameter Stripe refuses.
    pub(crate) fn invalid_param(param: &str, code: Option<&str>, message: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
            Some(param),
        )
    }

    /// 404 for any path Stripe does not serve.
    pub(crate) fn unrecognized(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            None,
            &format!(
                "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs \
                 or we can help at https://support.stripe.com/."
            ),
            None,
        )
    }
}

/// `sk_test_********************1234`, as Stripe echoes a wrong key.
fn redact(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..8].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 12))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = crate::kit::error_reply(self.status, self.body, self.retry_after_secs);
        let headers = response.headers_mut();
        if let Some(retry) = self.should_retry {
            headers.insert(
                "stripe-should-retry",
                HeaderValue::from_static(if retry { "true" } else { "false" }),
            );
        }
        if let Ok(id) = HeaderValue::from_str(&super::random_id("req_", 14)) {
            headers.insert("request-id", id);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_keys_are_echoed_redacted() {
        assert_eq!(
            redact("sk_test_abcdefghijklmnop1234"),
            "sk_test_****************1234"
        );
        assert_eq!(redact("short"), "*****");
        let error = ApiError::invalid_key("sk_test_abcdefghijklmnop1234");
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error.body["error"]["type"], "invalid_request_error");
        assert!(!error.body.to_string().contains("abcdefghijklmnop"));
    }

    #[test]
    fn rate_limit_bodies_carry_the_code() {
        let error = ApiError::rate_limited(0);
        assert_eq!(error.body["error"]["code"], "rate_limit");
        assert_eq!(error.retry_after_secs, Some(1));
    }
}
