//! Chargebee's error responses: `{message, type, api_error_code, error_code, error_msg,
//! param?, http_status_code}` (SOURCE.txt; `error_code` and `error_msg` are the older names
//! Chargebee still sends beside `api_error_code` and `message`).
//!
//! Chargebee's docs call `type` optional and name three groups (`payment`, `invalid_request`,
//! `operation_failed`); they do not say which group authentication and rate-limit errors
//! carry. The sandbox sends `invalid_request` and `operation_failed` for them so that a client
//! switching on `type` meets a value it must already handle; billsync's client decides by the
//! HTTP status alone.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::state::CbSandboxError;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &str,
        api_error_code: &str,
        error_code: &str,
        message: &str,
        param: Option<&str>,
    ) -> Self {
        let mut body = json!({
            "message": message,
            "type": kind,
            "api_error_code": api_error_code,
            "error_code": error_code,
            "error_msg": message,
            "http_status_code": status.as_u16(),
        });
        if let Some(param) = param {
            body["param"] = json!(param);
            body["error_param"] = json!(param);
        }
        Self {
            status,
            body,
            retry_after_secs: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// 401 for a missing or wrong API key (HTTP basic auth, key as the user name).
    pub(crate) fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "api_authentication_failed",
            "api_authentication_invalid_key",
            "Sorry, authentication failed. Invalid api key",
            None,
        )
    }

    /// 404 for a site the sandbox does not have; real Chargebee answers an unknown
    /// `{site}.chargebee.com` with `site_not_found`.
    pub(crate) fn site_not_found(site: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "site_not_found",
            "site_not_found",
            &format!("Sorry, we couldn't find the site {site}"),
            None,
        )
    }

    pub(crate) fn resource_not_found(resource: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "resource_not_found",
            "referenced_resource_not_found",
            &format!("{resource} not found for id {id}"),
            Some("id"),
        )
    }

    pub(crate) fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request",
            "resource_not_found",
            "resource_not_found",
            "Sorry, the requested resource was not found",
            None,
        )
    }

    /// 400 for a parameter with a wrong value (`limit=101`, a malformed `offset`).
    pub(crate) fn invalid_param(param: &str, message: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "invalid_request",
            "param_wrong_value",
            &format!("{param} : {message}"),
            Some(param),
        )
    }

    /// 429 once the site's per-minute budget is spent.
    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "operation_failed",
            "api_request_limit_exceeded",
            "api_request_limit_exceeded",
            "Sorry, access has been blocked temporarily due to request count exceeding acceptable limits. Please try after some time.",
            None,
        );
        error.retry_after_secs = Some(retry_after_secs.max(1));
        error
    }

    /// 500 injected by `CbFaults::fail_next`.
    pub(crate) fn injected_failure() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "operation_failed",
            "internal_error",
            "internal_error",
            "Sorry, something went wrong when trying to process the request. (injected by the sandbox)",
            None,
        )
    }
}

impl From<CbSandboxError> for ApiError {
    fn from(error: CbSandboxError) -> Self {
        match &error {
            CbSandboxError::UnknownSite(site) => ApiError::site_not_found(site),
            CbSandboxError::NotFound { resource, id } => ApiError::resource_not_found(resource, id),
            CbSandboxError::Duplicate { .. } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "duplicate_entry",
                "param_not_unique",
                &error.to_string(),
                Some("id"),
            ),
            CbSandboxError::Invalid { param, message } => ApiError::invalid_param(param, message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::kit::error_reply(self.status, self.body, self.retry_after_secs)
    }
}
