//! The one error type of the admin API, answered as `{"error": "..."}`.
//!
//! Messages are written for the operator and never carry internals: database and NATS
//! errors are logged here, on the server, and the client learns only what it can act on.

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use billsync_bus::PublishError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid bearer token")]
    Unauthorized,
    #[error("errors.admin_token is not configured")]
    AdminTokenNotConfigured,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the database is not ready yet (starting up or migrating)")]
    DatabaseNotReady,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{done} retries were sent before NATS failed: {source}")]
    Replay {
        done: u64,
        #[source]
        source: PublishError,
    },
    #[error("NATS did not take the change to the ignores bucket: {source}")]
    Ignores {
        #[source]
        source: async_nats::Error,
    },
    #[error("stored event of failure {id} cannot be read: {source}")]
    StoredEvent {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::AdminTokenNotConfigured | ApiError::DatabaseNotReady => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Database(error) if is_unavailable(error) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Database(_) | ApiError::StoredEvent { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Replay { .. } | ApiError::Ignores { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What the client is told.
    fn public_message(&self) -> String {
        match self {
            ApiError::Database(error) if is_unavailable(error) => {
                "the database is unavailable; try again shortly".into()
            }
            ApiError::Database(_) | ApiError::StoredEvent { .. } => {
                "internal error; see the errors service log".into()
            }
            ApiError::Ignores { .. } => {
                "NATS is unavailable, so nothing was ignored or retried; try again shortly".into()
            }
            ApiError::Replay { done, .. } => format!(
                "NATS did not accept the replay after {done} failures were retried; \
                 try again for the rest"
            ),
            other => other.to_string(),
        }
    }
}

/// True for errors that mean "Postgres is not there right now" rather than a bug.
pub(crate) fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        // Connection exceptions (08), insufficient resources (53), a server shutting down or
        // starting (57P0x).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P0")
        }),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            match &self {
                ApiError::AdminTokenNotConfigured | ApiError::DatabaseNotReady => {}
                _ => {
                    tracing::warn!(error = %self, status = status.as_u16(), "Admin API request failed.")
                }
            }
        }
        let body = serde_json::json!({ "error": self.public_message() });
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("json"))
    }

    #[tokio::test]
    async fn internals_stay_on_the_server() {
        let (status, body) = body_of(ApiError::Database(sqlx::Error::Protocol(
            "secret detail".into(),
        )))
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "internal error; see the errors service log");

        let (status, body) = body_of(ApiError::Database(sqlx::Error::PoolTimedOut)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!body["error"].as_str().unwrap_or_default().contains("pool"));
    }

    #[tokio::test]
    async fn auth_errors_have_fixed_bodies() {
        let (status, body) = body_of(ApiError::Unauthorized).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            serde_json::json!({"error": "missing or invalid bearer token"})
        );
        let (status, body) = body_of(ApiError::AdminTokenNotConfigured).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body,
            serde_json::json!({"error": "errors.admin_token is not configured"})
        );
    }
}
