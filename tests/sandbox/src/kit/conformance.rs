//! Every API request of an emulator with a contract is checked against the vendor's spec
//! before its route sees it: an invalid one is recorded on its tenant (read back at
//! `GET /__sandbox/{vendor}/{tenant}/violations`) and answered as the vendor refuses such
//! requests, so a client that sends one both fails visibly and leaves a trace a test can
//! assert on.
//!
//! It runs past the gate: requests the gate answers itself (wrong credentials, the burst
//! window's 429, injected faults) are not checked, as the vendor would not have read them
//! either; a client's retry of one is.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{OriginalUri, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::gate::{Emulator, Tenant};
use super::lock;
use super::openapi::{SpecRequest, SpecViolation};

/// Largest request body read for the check; larger ones are refused by the check itself.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Violations kept with their details; past this only the count grows.
const KEPT_VIOLATIONS: usize = 100;

/// A tenant's requests checked against the vendor's spec so far, and those it refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecChecks {
    pub checked: u64,
    pub invalid: u64,
    /// The first invalid requests (at most 100), in the order received.
    pub violations: Vec<SpecViolation>,
}

impl SpecChecks {
    pub(crate) fn record(&mut self, outcome: Result<(), SpecViolation>) {
        self.checked += 1;
        if let Err(violation) = outcome {
            tracing::warn!(%violation, "A request the vendor's spec refuses");
            self.invalid += 1;
            if self.violations.len() < KEPT_VIOLATIONS {
                self.violations.push(violation);
            }
        }
    }
}

/// The middleware between the gate (which found the tenant) and an emulator's routes.
pub(crate) async fn conformance<E: Emulator>(
    State(_emulator): State<E>,
    request: Request,
    next: Next,
) -> Response {
    let (Some(spec), Some(tenant)) = (
        E::contract(),
        request.extensions().get::<Arc<E::Tenant>>().cloned(),
    ) else {
        return next.run(request).await;
    };
    let full_path = request.extensions().get::<OriginalUri>().map_or_else(
        || request.uri().path().to_owned(),
        |uri| uri.path().to_owned(),
    );
    // `/zoho/{org}/crm/v8/...` → `/crm/v8/...`: the path under the vendor's host.
    let tenant_root = format!("/{}/{}", E::SEGMENT, tenant.name());
    let path = full_path
        .strip_prefix(&tenant_root)
        .unwrap_or(&full_path)
        .to_owned();
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_BODY_BYTES).await.unwrap_or_default();
    let outcome = spec.check(&SpecRequest {
        method: parts.method.as_str(),
        path: &path,
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body: &bytes,
    });
    let refusal = outcome.as_ref().err().map(E::refuse_invalid);
    lock(tenant.gate().spec_checks()).record(outcome);
    match refusal {
        Some(response) => response,
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    }
}
