//! Chargebee API v2 emulator: sites, their records and events, faults and rate limit.
//!
//! Each site lives under `/chargebee/{site}/api/v2`, standing in for
//! `https://{site}.chargebee.com/api/v2`, so one sandbox serves many isolated sites and tests
//! can make a fresh one each. Contract: `specs/chargebee/SOURCE.txt` and the official SDK's
//! generated types it names. Tests and the demo change data through this handle or the
//! `/__sandbox/chargebee/{site}/...` routes; every change raises the event Chargebee would.

mod error;
mod list;
pub(crate) mod routes;
mod state;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::kit::{self, lock, Emulator, Gate, Refusal, Tenants};
use error::ApiError;
use state::SiteData;
pub use state::{
    CbChange, CbCustomer, CbCustomerInput, CbEvent, CbInvoice, CbInvoiceInput, CbSandboxError,
    CbSnapshot, CbSubscription, CbSubscriptionInput,
};

/// Chargebee's limit on test sites (and live Starter sites): 150 requests per minute.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 150;

/// One emulated Chargebee site.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct CbSite {
    /// The `{site}` path segment, standing in for `{site}.chargebee.com`.
    pub name: String,
    /// The API key clients send as the basic-auth user name.
    pub api_key: String,
    #[serde(default = "default_rpm")]
    pub requests_per_minute: u32,
}

fn default_rpm() -> u32 {
    DEFAULT_REQUESTS_PER_MINUTE
}

impl CbSite {
    pub fn new(name: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            api_key: api_key.into(),
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
        }
    }
}

impl fmt::Debug for CbSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CbSite")
            .field("name", &self.name)
            .field("api_key", &"[redacted]")
            .field("requests_per_minute", &self.requests_per_minute)
            .finish()
    }
}

/// Misbehaviour to inject into one site's API.
pub type CbFaults = crate::kit::ApiFaults;

/// Handle on every emulated Chargebee site; cheap to clone.
#[derive(Clone)]
pub struct Chargebee {
    sites: Arc<Tenants<Site>>,
}

/// A site's configuration and everything that changes under it.
pub(crate) struct Site {
    name: String,
    api_key: String,
    requests_per_minute: u32,
    /// Faults, the one-minute rate window and the request counts.
    gate: Gate<CbFaults>,
    data: Mutex<SiteData>,
}

impl Site {
    /// The site's data, locked. Callers drop the guard before any `.await`.
    pub(crate) fn data(&self) -> MutexGuard<'_, SiteData> {
        lock(&self.data)
    }
}

impl kit::Tenant for Site {
    type Faults = CbFaults;

    fn name(&self) -> &str {
        &self.name
    }

    fn gate(&self) -> &Gate<CbFaults> {
        &self.gate
    }

    fn rate_limit(&self) -> u32 {
        self.requests_per_minute
    }

    /// HTTP basic auth with the API key as the user name.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let user = routes::basic_auth_user(headers.get(header::AUTHORIZATION));
        if user.as_deref() == Some(self.api_key.as_str()) {
            return Ok(());
        }
        Err(Refusal {
            response: Box::new(ApiError::unauthorized().into_response()),
            log: Some(if user.is_some() {
                "wrong API key"
            } else {
                "missing API key"
            }),
        })
    }

    fn rate_limited(retry_after_secs: u64) -> Response {
        ApiError::rate_limited(retry_after_secs).into_response()
    }

    fn injected_failure() -> Response {
        ApiError::injected_failure().into_response()
    }
}

impl Emulator for Chargebee {
    type Tenant = Site;
    const VENDOR: &'static str = "Chargebee";
    const SEGMENT: &'static str = "chargebee";
    const TENANT: &'static str = "site";

    fn tenants(&self) -> &Tenants<Site> {
        &self.sites
    }

    fn unknown_tenant(name: &str, _method: &Method, _path: &str) -> Response {
        ApiError::site_not_found(name).into_response()
    }

    fn unreadable_control_body(reason: String) -> Response {
        ApiError::invalid_param("body", &reason).into_response()
    }
}

impl Chargebee {
    /// `base_url` is where the sandbox serves `/chargebee`, e.g. `http://127.0.0.1:9100/chargebee`.
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            sites: Arc::new(Tenants::new(base_url)),
        }
    }

    /// Adds a site, or replaces the one with this name by a fresh, empty one.
    pub fn add_site(&self, site: CbSite) {
        let entry = Site {
            name: site.name.clone(),
            api_key: site.api_key,
            requests_per_minute: site.requests_per_minute,
            gate: Gate::new(Duration::from_secs(60)),
            data: Mutex::default(),
        };
        self.sites.insert(site.name, entry);
    }

    /// `http://127.0.0.1:PORT/chargebee/{site}`: what `https://{site}.chargebee.com` is to
    /// a client, which appends `/api/v2/...`.
    pub fn base_url(&self, site: &str) -> String {
        format!("{}/{site}", self.sites.base_url())
    }

    pub fn create_customer(
        &self,
        site: &str,
        input: CbCustomerInput,
    ) -> Result<CbChange<CbCustomer>, CbSandboxError> {
        self.site(site)?.data().create_customer(input)
    }

    /// Raises an event of `event_type` with `content` as given, whatever it holds: for tests
    /// of events a poller cannot read (a resource without its id, say).
    pub fn raise_event(
        &self,
        site: &str,
        event_type: &str,
        content: serde_json::Value,
    ) -> Result<CbEvent, CbSandboxError> {
        Ok(self.site(site)?.data().raise_event(event_type, content))
    }

    /// Sets the given fields (`None` leaves one as it is); raises `customer_changed`.
    pub fn update_customer(
        &self,
        site: &str,
        id: &str,
        input: CbCustomerInput,
    ) -> Result<CbChange<CbCustomer>, CbSandboxError> {
        self.site(site)?.data().update_customer(id, input)
    }

    /// Deletes the customer and its subscriptions; raises `customer_deleted`.
    pub fn delete_customer(
        &self,
        site: &str,
        id: &str,
    ) -> Result<CbChange<CbCustomer>, CbSandboxError> {
        self.site(site)?.data().delete_customer(id)
    }

    pub fn create_subscription(
        &self,
        site: &str,
        customer_id: &str,
        input: CbSubscriptionInput,
    ) -> Result<CbChange<CbSubscription>, CbSandboxError> {
        self.site(site)?
            .data()
            .create_subscription(customer_id, input)
    }

    /// Sets the given fields; the event type follows the status change
    /// (`subscription_cancelled`, `subscription_reactivated`, ..., else `subscription_changed`).
    pub fn update_subscription(
        &self,
        site: &str,
        id: &str,
        input: CbSubscriptionInput,
    ) -> Result<CbChange<CbSubscription>, CbSandboxError> {
        self.site(site)?.data().update_subscription(id, input)
    }

    /// Cancels now with `reason` as `cancel_reason`; raises `subscription_cancelled`.
    pub fn cancel_subscription(
        &self,
        site: &str,
        id: &str,
        reason: Option<&str>,
    ) -> Result<CbChange<CbSubscription>, CbSandboxError> {
        let input = CbSubscriptionInput {
            status: Some("cancelled".into()),
            cancel_reason: reason.map(str::to_owned),
            ..CbSubscriptionInput::default()
        };
        self.update_subscription(site, id, input)
    }

    pub fn delete_subscription(
        &self,
        site: &str,
        id: &str,
    ) -> Result<CbChange<CbSubscription>, CbSandboxError> {
        self.site(site)?.data().delete_subscription(id)
    }

    /// Raises `invoice_generated`.
    pub fn create_invoice(
        &self,
        site: &str,
        customer_id: &str,
        input: CbInvoiceInput,
    ) -> Result<CbChange<CbInvoice>, CbSandboxError> {
        self.site(site)?.data().create_invoice(customer_id, input)
    }

    /// Raises `invoice_updated`.
    pub fn update_invoice(
        &self,
        site: &str,
        id: &str,
        input: CbInvoiceInput,
    ) -> Result<CbChange<CbInvoice>, CbSandboxError> {
        self.site(site)?.data().update_invoice(id, input)
    }

    /// The site's full state.
    ///
    /// # Panics
    /// If no site has this name, so a typo fails the test at the right line.
    pub fn snapshot(&self, site: &str) -> CbSnapshot {
        self.expect(site).data().snapshot()
    }

    /// The site's events, oldest first.
    ///
    /// # Panics
    /// If no site has this name.
    pub fn events(&self, site: &str) -> Vec<CbEvent> {
        self.expect(site).data().events.clone()
    }

    /// Replaces the site's faults.
    ///
    /// # Panics
    /// If no site has this name.
    pub fn set_faults(&self, site: &str, faults: CbFaults) {
        self.expect(site).gate.set_faults(faults);
    }

    /// The site's faults as they are now (`fail_next`, `throttle_next` count down).
    ///
    /// # Panics
    /// If no site has this name.
    pub fn faults(&self, site: &str) -> CbFaults {
        self.expect(site).gate.faults()
    }

    /// Authenticated API requests served so far, including 429s and injected 500s.
    ///
    /// # Panics
    /// If no site has this name.
    pub fn request_count(&self, site: &str) -> u64 {
        self.expect(site).gate.requests()
    }

    /// The most authenticated API requests the site ever had in flight at once.
    ///
    /// # Panics
    /// If no site has this name.
    pub fn peak_concurrent_requests(&self, site: &str) -> u64 {
        self.expect(site).gate.peak_in_flight()
    }

    /// Authenticated API requests so far: those the rate limit let through and those
    /// answered 429; also at `GET /__sandbox/chargebee/{site}/requests`.
    ///
    /// # Panics
    /// If no site has this name.
    pub fn request_counts(&self, site: &str) -> kit::RequestCounts {
        self.expect(site).gate.counts()
    }

    /// Names of all sites, sorted.
    pub fn site_names(&self) -> Vec<String> {
        self.sites.names()
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<Site>> {
        self.sites.get(name)
    }

    fn site(&self, name: &str) -> Result<Arc<Site>, CbSandboxError> {
        self.lookup(name)
            .ok_or_else(|| CbSandboxError::UnknownSite(name.to_string()))
    }

    fn expect(&self, name: &str) -> Arc<Site> {
        self.sites.expect("Chargebee site", name)
    }
}

impl fmt::Debug for Chargebee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chargebee")
            .field("base_url", &self.sites.base_url())
            .field("sites", &self.site_names())
            .finish()
    }
}
