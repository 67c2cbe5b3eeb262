//! The operator's admin API under `/api/v1`: failures (list, ignore, retry, CSV, open
//! counts) and runs; and the web page at `/` that drives it.
//!
//! Every API route needs `Authorization: Bearer <errors.admin_token>`. Without a configured
//! token the API refuses everything: it can replay events into CRMs, so it is never open.
//! The page's files and the OpenAPI document (`/api/v1/openapi.json`) are public.

mod csv;
mod failures;
mod page;
mod params;
mod runs;

use crate::error::ApiError;
use crate::open_failures::OpenFailuresGauge;
use crate::scrub::Scrubber;
use crate::Database;
use async_nats::jetstream::kv;
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::Uri;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use billsync_bus::Publisher;
use billsync_config::Config;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    pub config: Arc<Config>,
    pub db: Database,
    pub publisher: Publisher,
    pub scrubber: Arc<Scrubber>,
    /// Ignored records, read by the workers before each delivery.
    pub ignores: kv::Store,
    /// Told when an ignore or a retry changes which failures are open.
    pub open_failures: OpenFailuresGauge,
}

pub use page::OPENAPI_JSON;
#[doc(hidden)]
pub use params::{encode_cursor, FailureParams, Page, RunListParams, RunParams};

/// The `/api/v1` routes, authenticated, and the public page and document, with JSON errors
/// for unknown paths.
pub fn router(state: ApiState) -> Router {
    let public = Router::new()
        .route("/", get(page::index))
        .route("/ui", get(page::index))
        .route("/ui/app.js", get(page::script))
        .route("/ui/app.css", get(page::style))
        .route("/api/v1/openapi.json", get(page::openapi));
    Router::new()
        .route("/api/v1/failures", get(failures::list))
        .route("/api/v1/failures.csv", get(failures::csv))
        .route("/api/v1/failures/summary", get(failures::summary))
        .route("/api/v1/failures/ignore", post(failures::ignore_matching))
        .route("/api/v1/failures/retry", post(failures::retry_matching))
        .route("/api/v1/failures/{id}", get(failures::get_one))
        .route("/api/v1/failures/{id}/ignore", post(failures::ignore_one))
        .route("/api/v1/failures/{id}/retry", post(failures::retry_one))
        .route("/api/v1/runs", get(runs::list))
        .route("/api/v1/runs/{run_id}", get(runs::get_one))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_admin))
        .merge(public)
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .with_state(state)
}

async fn require_admin(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let expected = state
        .config
        .errors
        .admin_token
        .as_ref()
        .and_then(|token| token.value())
        .ok_or(ApiError::AdminTokenNotConfigured)?;
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if billsync_bus::token_matches(token.as_bytes(), expected.as_bytes()) => {
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::Unauthorized),
    }
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// `Query` whose rejection is an [`ApiError`], so bad parameters get a JSON answer.
pub(crate) struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        read_query(&parts.uri).map(ApiQuery)
    }
}

/// The query string of `uri` as the handlers read it; public for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn read_query<T: DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(value)| value)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// `Path` whose rejection is an [`ApiError`].
pub(crate) struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
