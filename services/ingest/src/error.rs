//! The one error type of the ingest HTTP API: a status and a reason the sender can act on.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no Stripe connection named {0:?} is configured")]
    UnknownConnection(String),
    #[error("missing Stripe-Signature header")]
    MissingSignature,
    #[error("invalid Stripe-Signature header: {0}")]
    MalformedSignature(&'static str),
    #[error("no v1 signature matches any signing secret of this endpoint; check the endpoint's whsec_ secret")]
    SignatureMismatch,
    #[error(
        "signature timestamp is {age_secs} s from now, beyond the {tolerance_secs} s tolerance"
    )]
    StaleTimestamp { age_secs: i64, tolerance_secs: u64 },
    #[error("body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body could not be read: {0}")]
    UnreadableBody(String),
    #[error("body is not a Stripe event: {0}")]
    MalformedEvent(String),
    #[error("the event could not be stored; retry later")]
    Unavailable,
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestError::UnknownConnection(_) => StatusCode::NOT_FOUND,
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A bounded label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            IngestError::UnknownConnection(_) => "unknown_connection",
            IngestError::MissingSignature | IngestError::MalformedSignature(_) => {
                "bad_signature_header"
            }
            IngestError::SignatureMismatch => "bad_signature",
            IngestError::StaleTimestamp { .. } => "stale_timestamp",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::UnreadableBody(_) => "unreadable_body",
            IngestError::MalformedEvent(_) => "malformed_event",
            IngestError::Unavailable => "unavailable",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            (status, [(header::RETRY_AFTER, "5")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
