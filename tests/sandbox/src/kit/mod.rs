//! What every vendor emulator is built on, so that one adds only its routes and state: its
//! tenants (accounts, sites) by name, the gate in front of their API (injected latency,
//! credentials, the rate limit, injected 429s and 500s, request counts), error replies, and
//! the `/__sandbox/{vendor}/{tenant}/faults`, `/requests` and `/violations` routes, and the
//! check of every request against the vendor's OpenAPI spec.

mod conformance;
mod control;
mod gate;
pub(crate) mod openapi;
mod tenants;
mod window;

pub(crate) use conformance::conformance;
pub use conformance::SpecChecks;
pub(crate) use control::control_routes;
pub(crate) use gate::{gatekeeper, Emulator, Faults, Gate, Injected, Refusal, Tenant};
pub use gate::{ApiFaults, RequestCounts};
pub(crate) use tenants::Tenants;
pub(crate) use window::RateWindow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a sandbox mutex; a handler that panicked mid-update leaves data a test can still read.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error answer as vendors send them: a status, a JSON body, and `Retry-After` in whole
/// seconds where the vendor asks the client to wait.
pub(crate) fn error_reply(
    status: StatusCode,
    body: Value,
    retry_after_secs: Option<u64>,
) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}
