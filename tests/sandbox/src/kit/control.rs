//! The `/__sandbox/{vendor}/{tenant}/...` routes every emulator has, without auth: its fault
//! settings (read and replace), its request counts and its requests checked against the
//! vendor's spec.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::gate::{Emulator, Tenant};
use super::lock;

/// `GET/PUT /__sandbox/{vendor}/{tenant}/faults`, `GET /__sandbox/{vendor}/{tenant}/requests`
/// and `GET /__sandbox/{vendor}/{tenant}/violations` (`SpecChecks`).
pub(crate) fn control_routes<E: Emulator>(emulator: E) -> Router {
    // The tenant's parameter keeps the emulator's name, so these routes merge with its own.
    let root = format!("/__sandbox/{}/{{{}}}", E::SEGMENT, E::TENANT);
    Router::new()
        .route(
            &format!("{root}/faults"),
            get(read_faults::<E>).put(write_faults::<E>),
        )
        .route(&format!("{root}/requests"), get(read_requests::<E>))
        .route(&format!("{root}/violations"), get(read_violations::<E>))
        .with_state(emulator)
}

async fn read_faults<E: Emulator>(State(emulator): State<E>, Path(name): Path<String>) -> Response {
    match emulator.tenants().get(&name) {
        Some(tenant) => Json(tenant.gate().faults()).into_response(),
        None => E::unknown_in_control(&name),
    }
}

async fn write_faults<E: Emulator>(
    State(emulator): State<E>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(tenant) = emulator.tenants().get(&name) else {
        return E::unknown_in_control(&name);
    };
    // An empty body clears the faults.
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Default::default())
    } else {
        serde_json::from_slice::<<E::Tenant as Tenant>::Faults>(&body)
    };
    match parsed {
        Ok(faults) => {
            tenant.gate().set_faults(faults.clone());
            Json(faults).into_response()
        }
        Err(error) => E::unreadable_control_body(error.to_string()),
    }
}

async fn read_requests<E: Emulator>(
    State(emulator): State<E>,
    Path(name): Path<String>,
) -> Response {
    match emulator.tenants().get(&name) {
        Some(tenant) => Json(tenant.gate().counts()).into_response(),
        None => E::unknown_in_control(&name),
    }
}

async fn read_violations<E: Emulator>(
    State(emulator): State<E>,
    Path(name): Path<String>,
) -> Response {
    match emulator.tenants().get(&name) {
        Some(tenant) => Json(lock(tenant.gate().spec_checks()).clone()).into_response(),
        None => E::unknown_in_control(&name),
    }
}
