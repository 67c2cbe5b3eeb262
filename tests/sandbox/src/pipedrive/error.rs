//! Pipedrive's error answers. Neither spec declares 4xx or 429 bodies; every error is
//! `{success: false, error, error_info, data: null}` (specs/README.md), v2's with a `code`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::kit;
use crate::kit::openapi::{ProblemKind, SpecViolation};

const ERROR_INFO: &str =
    "Please check developers.pipedrive.com for more information about Pipedrive API.";

/// One error answer of the emulated API.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
    retry_after_secs: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, error: &str, code: Option<&str>) -> Self {
        let mut body = json!({
            "success": false,
            "error": error,
            "error_info": ERROR_INFO,
            "data": null,
            "additional_data": null,
        });
        if let Some(code) = code {
            body["code"] = json!(code);
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

    #[cfg(test)]
    pub(crate) fn body(&self) -> &Value {
        &self.body
    }

    /// 400 of v2's schema validation: a value of the wrong type, a missing required one.
    pub(crate) fn validation(message: String) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            &message,
            Some("ERR_SCHEMA_VALIDATION_FAILED"),
        )
    }

    /// The answer to a request the specs refuse (`contract`): the 404 of a path the API does
    /// not have, else v2's schema-validation 400 (v1's plain 400 under `/v1`) naming the
    /// first problem.
    pub(crate) fn from_violation(violation: &SpecViolation) -> Self {
        let Some(problem) = violation.problems.first() else {
            return Self::route_not_found();
        };
        if problem.kind == ProblemKind::UnknownOperation {
            return Self::route_not_found();
        }
        let at = problem.at.trim_start_matches('/');
        let at = if at.is_empty() { "body" } else { at };
        // v2's wording for a wrong type: "Parameter 'value' must be a number".
        let expected = problem
            .detail
            .strip_prefix("expected ")
            .and_then(|rest| rest.split(',').next())
            .filter(|_| problem.kind == ProblemKind::WrongType);
        let message = match expected {
            None if problem.kind == ProblemKind::Missing && at != "body" => {
                format!("Validation failed: {at}: Parameter '{at}' is required")
            }
            Some(kind) => {
                let article = if kind.starts_with(['a', 'o', 'i']) {
                    "an"
                } else {
                    "a"
                };
                format!("Validation failed: {at}: Parameter '{at}' must be {article} {kind}")
            }
            None => format!("Validation failed: {at}: {}", problem.detail),
        };
        if violation.path.starts_with("/v1/") {
            Self::v1_bad_request(&message)
        } else {
            Self::validation(message)
        }
    }

    /// 400 of a v1 endpoint, which has no schema codes.
    pub(crate) fn v1_bad_request(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message, None)
    }

    /// 404 for an id the company does not have (or a record deleted, where it cannot be
    /// changed any more).
    pub(crate) fn not_found(label: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, &format!("{label} not found"), None)
    }

    pub(crate) fn route_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Unknown method .", None)
    }

    /// 401 for a missing or wrong `x-api-token` / bearer token.
    pub(crate) fn unauthorized() -> Self {
        let mut error = Self::new(StatusCode::UNAUTHORIZED, "unauthorized access", None);
        error.body["errorCode"] = json!(401);
        error
    }

    /// 429 of the burst window (per token, rolling 2 s) and of the search window.
    pub(crate) fn rate_limited(retry_after_secs: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Request over limit",
            Some("ERR_RATE_LIMIT"),
        );
        error.retry_after_secs = Some(retry_after_secs);
        error
    }

    /// 429 of the daily token budget: no header says when it frees (specs/README.md), so no
    /// `Retry-After` either.
    pub(crate) fn budget_exceeded() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Daily API token budget exceeded",
            Some("ERR_DAILY_BUDGET"),
        )
    }

    pub(crate) fn injected_failure() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error (injected by the sandbox)",
            None,
        )
    }

    /// 404 for a company the sandbox does not have; real Pipedrive has no such answer (an
    /// unknown `{company}.pipedrive.com` does not resolve), so it names the sandbox.
    pub(crate) fn unknown_company(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            &format!("No sandbox Pipedrive company named \"{name}\""),
            None,
        )
    }
}

/// What calls after a budget 429 can get: a 403 HTML page, not JSON (specs/README.md).
pub(crate) fn budget_block_page() -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html><html><head><title>403 Forbidden</title></head><body><h1>Access denied</h1>\
         <p>Your company has used its daily API budget.</p></body></html>",
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        kit::error_reply(self.status, self.body, self.retry_after_secs)
    }
}
