//! `POST /admin/chargebee/{connection}/sync-now`: the "Sync Now" button (seed 003), refused
//! with 409 and a clear message while a poll of the connection runs anywhere.

use super::{ChargebeeSources, PollError, PollReport};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

struct AdminState {
    sources: Arc<ChargebeeSources>,
    token: Option<SecretString>,
    shutdown: CancellationToken,
}

/// The sync-now route. Requests must carry `Authorization: Bearer <token>`; without a
/// configured token (`errors.admin_token`) the route answers 503 rather than run for anyone
/// who can reach ingest (which faces the internet, for Stripe's webhooks).
pub fn router(
    sources: Arc<ChargebeeSources>,
    token: Option<SecretString>,
    shutdown: CancellationToken,
) -> Router {
    Router::new()
        .route("/admin/chargebee/{connection}/sync-now", post(sync_now))
        .with_state(Arc::new(AdminState {
            sources,
            token,
            shutdown,
        }))
}

fn authorized(expected: &SecretString, headers: &HeaderMap) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    billsync_bus::token_matches(presented.as_bytes(), expected.expose_secret().as_bytes())
}

pub fn report_json(report: &PollReport) -> serde_json::Value {
    json!({
        "connection": report.connection,
        "trigger": report.trigger.as_str(),
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "pages": report.pages,
        "events_seen": report.events_seen,
        "published": report.published,
        "duplicates": report.duplicates,
        "skipped": report.skipped,
        "cursor": report.cursor_after,
        "completed": report.completed,
    })
}

async fn sync_now(
    State(state): State<Arc<AdminState>>,
    Path(connection): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = &state.token else {
        let body = json!({"error": "errors.admin_token is not configured; set it (it guards \
            this route and the errors service's API) and restart ingest"});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    };
    if !authorized(token, &headers) {
        let body = json!({"error": "missing or wrong bearer token"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    // In its own task: a client that hangs up must not cut the poll short mid-page.
    let poll = {
        let state = Arc::clone(&state);
        tokio::spawn(async move { state.sources.sync_now(&connection, &state.shutdown).await })
    };
    let result = match poll.await {
        Ok(result) => result,
        Err(error) => {
            tracing::error!(%error, "The sync-now task failed.");
            let body = json!({"error": "the poll failed unexpectedly; see the ingest logs"});
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
        }
    };
    match result {
        Ok(report) => (StatusCode::OK, Json(report_json(&report))).into_response(),
        Err(error) => {
            let status = match &error {
                PollError::AlreadyRunning { .. } => StatusCode::CONFLICT,
                PollError::UnknownConnection(_) => StatusCode::NOT_FOUND,
                PollError::Unlinked(_) => StatusCode::CONFLICT,
                PollError::Chargebee { .. } => StatusCode::BAD_GATEWAY,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, Json(json!({"error": error.to_string()}))).into_response()
        }
    }
}
