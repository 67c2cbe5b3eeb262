//! Zoho CRM's error answers, each with the status and body the real API sends.
//!
//! The bodies are the spec's `API_Exception` (`{code, details, message, status: "error"}`,
//! `v8.0/record.json`), with codes and messages from its enums; the few answers the spec does
//! not describe (the 401 and 429 bodies, the accounts server's answers) are marked "not in
//! the spec" with where their shape comes from.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::state::MAX_RECORDS_PER_CALL;
use crate::kit::error_reply;
use crate::kit::openapi::{Place, ProblemKind, SpecViolation};

/// One error answer of the emulated API.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: &str, details: Value) -> Self {
        Self {
            status,
            body: exception(code, message, details),
        }
    }

    /// 401 `INVALID_TOKEN` "invalid oauth token": an unknown, expired or revoked access token.
    /// Not in the spec (it declares no 401); the body is what Zoho sends, in the spec's
    /// `API_Exception` shape with its enum's code and message.
    pub(crate) fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "invalid oauth token",
            json!({}),
        )
    }

    /// 401 `OAUTH_SCOPE_MISMATCH`: the refresh token's scopes do not cover the call. Not in
    /// the spec (it declares no 401); the code and message are Zoho's documented ones.
    pub(crate) fn oauth_scope_mismatch() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "OAUTH_SCOPE_MISMATCH",
            "invalid oauth scope to access this URL",
            json!({}),
        )
    }

    /// 400 `INVALID_DATA` for a `duplicate_check_fields` entry the module has no field for.
    pub(crate) fn unknown_check_field(field: &str, index: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "invalid data",
            json!({"api_name": field, "json_path": format!("$.duplicate_check_fields[{index}]")}),
        )
    }

    /// 401 `AUTHENTICATION_FAILURE` for a request without a `Zoho-oauthtoken` authorization.
    pub(crate) fn authentication_failure() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_FAILURE",
            "Authentication failed",
            json!({}),
        )
    }

    /// 429 `TOO_MANY_REQUESTS`, for both the day's credits and concurrent calls, without
    /// `Retry-After` (Zoho sends none). Not in the spec: the code is Zoho's documented one.
    pub(crate) fn too_many_requests(message: &str) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            message,
            json!({}),
        )
    }

    /// 500 `INTERNAL_ERROR`, for an injected failure.
    pub(crate) fn internal_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal Server Error",
            json!({}),
        )
    }

    /// 400 `INVALID_MODULE` "the module name given seems to be invalid".
    pub(crate) fn invalid_module() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_MODULE",
            "the module name given seems to be invalid",
            json!({"resource_path_index": 0}),
        )
    }

    /// 400 `REQUIRED_PARAM_MISSING` "One of the expected parameter is missing".
    pub(crate) fn required_param_missing(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
            json!({"param": param}),
        )
    }

    /// 400 `INVALID_DATA` for a request parameter (not a record's field).
    pub(crate) fn invalid_param(param: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "invalid data",
            json!({"param_name": param}),
        )
    }

    /// 400 `INVALID_QUERY` "invalid query formed": a search's criteria Zoho cannot read.
    pub(crate) fn invalid_query(reason: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            "invalid query formed",
            json!({"reason": reason}),
        )
    }

    /// 400 `INVALID_DATA` "body": a body that is not JSON or has no `data` array.
    pub(crate) fn invalid_body() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_DATA", "body", json!({}))
    }

    /// 400 `LIMIT_EXCEEDED` "Record count exceeded": more than 100 records in one call.
    pub(crate) fn too_many_records(limit: usize) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "LIMIT_EXCEEDED",
            "Record count exceeded",
            json!({"limit": limit}),
        )
    }

    /// The answer to a request the v8 spec refuses (`contract`), by its first problem: the
    /// 404 of a path the API does not have, `REQUIRED_PARAM_MISSING` for a missing
    /// parameter, `LIMIT_EXCEEDED` for more than 100 records, `INVALID_DATA` otherwise
    /// (naming the parameter, or the body's field, and what is wrong with it).
    pub(crate) fn from_violation(violation: &SpecViolation) -> Self {
        let Some(problem) = violation.problems.first() else {
            return Self::invalid_body();
        };
        match (problem.place, problem.kind) {
            (_, ProblemKind::UnknownOperation) => Self::invalid_url(),
            (Place::Query | Place::Path | Place::Header, ProblemKind::Missing) => {
                Self::required_param_missing(&problem.at)
            }
            (Place::Body, ProblemKind::Missing) if !problem.at.is_empty() => {
                Self::required_param_missing(problem.at.trim_start_matches('/'))
            }
            (Place::Body, ProblemKind::TooLarge) if problem.at == "/data" => {
                Self::too_many_records(MAX_RECORDS_PER_CALL)
            }
            (Place::Body, _) => Self::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "invalid data",
                json!({"api_name": problem.at, "reason": problem.detail}),
            ),
            _ => Self::new(
                StatusCode::BAD_REQUEST,
                "INVALID_DATA",
                "invalid data",
                json!({"param_name": problem.at, "reason": problem.detail}),
            ),
        }
    }

    /// 404 for a path the API does not have.
    pub(crate) fn invalid_url() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
            json!({}),
        )
    }

    /// 404 for an organisation the sandbox does not have. Real Zoho has no equivalent (the
    /// token names the organisation), so the message names the sandbox's view.
    pub(crate) fn unknown_org(name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "INVALID_URL_PATTERN",
            &format!("No sandbox Zoho CRM organisation named \"{name}\""),
            json!({}),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_reply(self.status, self.body, None)
    }
}

/// The spec's `API_Exception`: a whole answer's error, or one record's in a `data` array.
pub(crate) fn exception(code: &str, message: &str, details: Value) -> Value {
    json!({"code": code, "details": details, "message": message, "status": "error"})
}

/// The accounts server's refusals (`POST /oauth/v2/token`). Not in the CRM spec: Zoho's
/// OAuth docs. A wrong or revoked refresh token is answered 200 with `{"error":
/// "invalid_code"}`; a wrong client `invalid_client`; the 11th token of a refresh token in
/// ten minutes 400 "Access Denied".
pub(crate) fn oauth_error(error: &str) -> Response {
    error_reply(StatusCode::OK, json!({"error": error}), None)
}

/// 400 `{"error": "invalid_request"}`: a token request missing a parameter, repeating one or
/// carrying one the endpoint does not take (RFC 6749 §5.2's code, in the accounts server's
/// `{error}` shape).
pub(crate) fn oauth_invalid_request() -> Response {
    error_reply(
        StatusCode::BAD_REQUEST,
        json!({"error": "invalid_request"}),
        None,
    )
}

pub(crate) fn oauth_too_many_tokens() -> Response {
    error_reply(
        StatusCode::BAD_REQUEST,
        json!({
            "error_description":
                "You have made too many requests continuously. Please try again after some time.",
            "error": "Access Denied",
            "status": "failure",
        }),
        None,
    )
}
