//! The gate in front of every emulated API, in the order vendors apply their concerns:
//! injected latency, the tenant, its credentials, its rate limit, injected 429s and 500s.
//! An emulator says how its tenants authenticate and what its refusals look like.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::conformance::SpecChecks;
use super::lock;
use super::openapi::{ApiSpec, SpecViolation};
use super::tenants::Tenants;
use super::window::RateWindow;

/// A fault the next request gets instead of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Injected {
    /// 429 with this `Retry-After`, in seconds.
    Throttle(u64),
    /// 500.
    Fail,
}

impl Injected {
    /// The next of `throttle_next` 429s (with `retry_after_secs`, at least 1), else of
    /// `fail_next` 500s, counted down; the counters of the vendors' fault settings.
    pub(crate) fn next_of(
        throttle_next: &mut u32,
        retry_after_secs: u64,
        fail_next: &mut u32,
    ) -> Option<Self> {
        if *throttle_next > 0 {
            *throttle_next -= 1;
            return Some(Self::Throttle(retry_after_secs.max(1)));
        }
        if *fail_next > 0 {
            *fail_next -= 1;
            return Some(Self::Fail);
        }
        None
    }
}

/// The misbehaviour an emulated API can be told to show, for vendors whose faults are just
/// these (Stripe's `StripeFaults`, Chargebee's `CbFaults`, Pipedrive's `PdFaults`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiFaults {
    /// The next N authenticated requests get a 500.
    pub fail_next: u32,
    /// The next N authenticated requests get a 429 with `Retry-After: retry_after_secs`.
    pub throttle_next: u32,
    /// `Retry-After` of throttled answers (at least 1).
    pub retry_after_secs: u64,
    /// Delay added to every API request of the tenant, before anything else happens.
    pub latency_ms: u64,
    /// Turns the vendor's request windows off (Pipedrive's daily budget stays on).
    pub rate_limit_disabled: bool,
}

impl Faults for ApiFaults {
    fn latency_ms(&self) -> u64 {
        self.latency_ms
    }

    fn rate_limit_disabled(&self) -> bool {
        self.rate_limit_disabled
    }

    fn take_injected(&mut self) -> Option<Injected> {
        Injected::next_of(
            &mut self.throttle_next,
            self.retry_after_secs,
            &mut self.fail_next,
        )
    }
}

/// An emulator's fault settings (`AcFaults`, `CbFaults`, `StripeFaults`), as the gate uses them.
pub(crate) trait Faults:
    Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Delay added to every request, before anything else happens.
    fn latency_ms(&self) -> u64;
    fn rate_limit_disabled(&self) -> bool;
    /// Takes the next injected fault, if any are left, counting it down.
    fn take_injected(&mut self) -> Option<Injected>;
}

/// An account's authenticated requests so far, split by the rate limit's verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Let through by the rate limit (answered by a handler, or by an injected 500).
    pub accepted: u64,
    /// Answered 429: by the rate limit, or by an injected throttle; or refused by a limit of
    /// the vendor's own, whatever its status (ActiveCampaign's bulk importer answers 400).
    pub refused: u64,
}

/// What a tenant carries for the gate: its faults, rate window and request counts.
pub(crate) struct Gate<F> {
    faults: Mutex<F>,
    window: Mutex<RateWindow>,
    requests: AtomicU64,
    refused: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    spec_checks: Mutex<SpecChecks>,
}

impl<F: Faults> Gate<F> {
    /// A gate whose rate limit counts requests per `period`.
    pub(crate) fn new(period: Duration) -> Self {
        Self {
            faults: Mutex::default(),
            window: Mutex::new(RateWindow::new(period)),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            spec_checks: Mutex::default(),
        }
    }

    pub(crate) fn faults(&self) -> F {
        lock(&self.faults).clone()
    }

    pub(crate) fn set_faults(&self, faults: F) {
        *lock(&self.faults) = faults;
    }

    /// Changes the faults in place (e.g. counts one down).
    pub(crate) fn with_faults<R>(&self, change: impl FnOnce(&mut F) -> R) -> R {
        change(&mut lock(&self.faults))
    }

    /// Authenticated requests so far, refused ones included.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests answered 429.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }

    pub(crate) fn counts(&self) -> RequestCounts {
        let refused = self.refused();
        RequestCounts {
            accepted: self.requests().saturating_sub(refused),
            refused,
        }
    }

    /// Counts a request the gate let through as refused after all: one an emulator refused
    /// itself, for a limit the gate does not know (Zoho's credits and concurrent calls,
    /// Pipedrive's search window and budget, ActiveCampaign's imports per minute).
    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::SeqCst);
    }

    /// Authenticated requests in flight now, this one included when asked from a handler.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// The most authenticated requests the tenant had in flight at once.
    pub(crate) fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::SeqCst)
    }

    /// The tenant's requests checked against the vendor's spec, and the invalid ones.
    pub(crate) fn spec_checks(&self) -> &Mutex<SpecChecks> {
        &self.spec_checks
    }

    /// Requests the rate limit still admits now, of `limit`.
    pub(crate) fn remaining(&self, limit: u32) -> u32 {
        lock(&self.window).remaining(tokio::time::Instant::now(), limit)
    }

    fn start_request(&self) -> InFlight<'_, F> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }
}

/// One request in flight; counted down when its answer is made.
struct InFlight<'a, F>(&'a Gate<F>);

impl<F> Drop for InFlight<'_, F> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Credentials a tenant refused: the vendor's answer, and what to log (nothing, where the
/// vendor's answer already says it, e.g. Stripe's "no API key").
pub(crate) struct Refusal {
    pub(crate) response: Box<Response>,
    pub(crate) log: Option<&'static str>,
}

/// One tenant of an emulator, as the gate sees it.
pub(crate) trait Tenant: Send + Sync + 'static {
    type Faults: Faults;

    fn name(&self) -> &str;
    fn gate(&self) -> &Gate<Self::Faults>;
    /// Requests allowed per period of the gate's window.
    fn rate_limit(&self) -> u32;
    /// Checks the request's credentials.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal>;
    /// The vendor's 429.
    fn rate_limited(retry_after_secs: u64) -> Response;
    /// The vendor's 500, for an injected failure.
    fn injected_failure() -> Response;
    /// Adds what the vendor puts on every answer that passed its credentials check.
    fn finish(&self, _faults: &Self::Faults, _response: &mut Response) {}
}

/// An emulator: its tenants, and its answers about tenants it does not have.
pub(crate) trait Emulator: Clone + Send + Sync + 'static {
    type Tenant: Tenant;
    /// The vendor, for logs: `ActiveCampaign`.
    const VENDOR: &'static str;
    /// The path segment before a tenant's name in API paths: `activecampaign` in
    /// `/activecampaign/{account}/api/3/...`, and in `/__sandbox/activecampaign/{account}`.
    const SEGMENT: &'static str;
    /// The name of the tenant's path parameter: `account`, `site`.
    const TENANT: &'static str;
    /// Whether a served request is logged at INFO (shown in the demo) rather than DEBUG.
    const LOG_SERVED: bool = false;

    fn tenants(&self) -> &Tenants<Self::Tenant>;
    /// The answer of the API to a tenant the sandbox does not have.
    fn unknown_tenant(name: &str, method: &Method, path: &str) -> Response;
    /// The answer of the `/__sandbox` routes to a tenant the sandbox does not have.
    fn unknown_in_control(name: &str) -> Response {
        Self::unknown_tenant(name, &Method::GET, "")
    }
    /// The vendor's contract, against which every API request is checked before its route
    /// sees it (`kit::conformance`); none: not checked.
    fn contract() -> Option<&'static ApiSpec> {
        None
    }
    /// The vendor's answer to a request its contract refuses: its 404 for an unknown
    /// operation, its 400 for an invalid one.
    fn refuse_invalid(violation: &SpecViolation) -> Response {
        use axum::response::IntoResponse;
        let status = if violation.operation.is_none() {
            axum::http::StatusCode::NOT_FOUND
        } else {
            axum::http::StatusCode::BAD_REQUEST
        };
        (status, violation.to_string()).into_response()
    }
    /// The answer of the `/__sandbox` routes to a body they cannot read.
    fn unreadable_control_body(reason: String) -> Response {
        use axum::response::IntoResponse;
        (axum::http::StatusCode::UNPROCESSABLE_ENTITY, reason).into_response()
    }
}

/// The middleware in front of an emulator's API routes.
pub(crate) async fn gatekeeper<E: Emulator>(
    State(emulator): State<E>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.extensions().get::<OriginalUri>().map_or_else(
        || request.uri().path().to_owned(),
        |uri| uri.path().to_owned(),
    );
    let name = path
        .strip_prefix('/')
        .and_then(|rest| rest.strip_prefix(E::SEGMENT))
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let method = request.method().clone();
    let Some(tenant) = emulator.tenants().get(name) else {
        return E::unknown_tenant(name, &method, &path);
    };
    let gate = tenant.gate();
    let faults = gate.faults();
    if faults.latency_ms() > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms())).await;
    }
    if let Err(refusal) = tenant.authenticate(request.headers()) {
        if let Some(reason) = refusal.log {
            tracing::info!(
                vendor = E::VENDOR,
                tenant = tenant.name(),
                path,
                reason,
                "Refused a sandbox request"
            );
        }
        return *refusal.response;
    }
    let _in_flight = gate.start_request();
    let admitted = if faults.rate_limit_disabled() {
        Ok(())
    } else {
        lock(&gate.window).admit(tokio::time::Instant::now(), tenant.rate_limit())
    };
    let injected = match admitted {
        Ok(()) => gate.with_faults(Faults::take_injected),
        Err(retry_after) => Some(Injected::Throttle(retry_after)),
    };
    let mut response = match injected {
        Some(Injected::Throttle(retry_after)) => {
            gate.refused.fetch_add(1, Ordering::SeqCst);
            <E::Tenant as Tenant>::rate_limited(retry_after)
        }
        Some(Injected::Fail) => <E::Tenant as Tenant>::injected_failure(),
        None => {
            request.extensions_mut().insert(Arc::clone(&tenant));
            next.run(request).await
        }
    };
    tenant.finish(&faults, &mut response);
    let status = response.status().as_u16();
    if E::LOG_SERVED {
        tracing::info!(vendor = E::VENDOR, tenant = tenant.name(), %method, path, status, "Served a sandbox request");
    } else {
        tracing::debug!(vendor = E::VENDOR, tenant = tenant.name(), %method, path, status, "Served a sandbox request");
    }
    response
}
