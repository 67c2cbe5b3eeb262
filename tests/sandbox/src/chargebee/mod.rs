//! Chargebee API v2 emulator: sites, their records and events, faults and rate limit.
//!
//! Each site lives under `/chargebee/{site}/api/v2`, standing in for
//! `https://{site}.chargebee.com/api/v2`, so one sandbox serves many isolated sites and tests
//! can make a fresh one each. Contract: `specs/chargebee/SOURCE.txt` and the official SDK's
//! generated types it names. Tests and the demo change data through this handle or the
//! `/__sandbox/chargebee/{site}/...` routes; every change raises the event Chargebee would.

mod error;
mod list;
mod rate_limit;
pub(crate) mod routes;
mod state;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use rate_limit::MinuteWindow;
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CbFaults {
    /// The next N authenticated requests get a 500.
    pub fail_next: u32,
    /// The next N authenticated requests get a 429 with `Retry-After: retry_after_secs`.
    pub throttle_next: u32,
    /// `Retry-After` of throttled answers (at least 1).
    pub retry_after_secs: u64,
    /// Delay added to every API request of the site, before anything else happens.
    pub latency_ms: u64,
    pub rate_limit_disabled: bool,
}

/// Handle on every emulated Chargebee site; cheap to clone.
#[derive(Clone)]
pub struct Chargebee {
    registry: Arc<Registry>,
}

struct Registry {
    /// `http://127.0.0.1:PORT/chargebee`, the root of every site's URLs.
    base_url: String,
    sites: RwLock<BTreeMap<String, Arc<Site>>>,
}

/// A site's configuration and everything that changes under it.
pub(crate) struct Site {
    name: String,
    api_key: String,
    requests_per_minute: u32,
    faults: Mutex<CbFaults>,
    window: Mutex<MinuteWindow>,
    requests: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    data: Mutex<SiteData>,
}

/// Locks a sandbox mutex; a handler that panicked mid-update leaves data a test can still read.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a request as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a Site);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Site {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn key_matches(&self, presented: Option<&str>) -> bool {
        presented == Some(self.api_key.as_str())
    }

    pub(crate) fn requests_per_minute(&self) -> u32 {
        self.requests_per_minute
    }

    pub(crate) fn faults(&self) -> CbFaults {
        lock(&self.faults).clone()
    }

    /// Consumes one injected 500 or 429, if any are left: `Some(None)` is a 500,
    /// `Some(Some(secs))` a 429 with that `Retry-After`.
    pub(crate) fn take_injected_fault(&self) -> Option<Option<u64>> {
        let mut faults = lock(&self.faults);
        if faults.throttle_next > 0 {
            faults.throttle_next -= 1;
            return Some(Some(faults.retry_after_secs.max(1)));
        }
        if faults.fail_next > 0 {
            faults.fail_next -= 1;
            return Some(None);
        }
        None
    }

    pub(crate) fn start_request(&self) -> InFlight<'_> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(self)
    }

    pub(crate) fn window(&self) -> MutexGuard<'_, MinuteWindow> {
        lock(&self.window)
    }

    /// The site's data, locked. Callers drop the guard before any `.await`.
    pub(crate) fn data(&self) -> MutexGuard<'_, SiteData> {
        lock(&self.data)
    }
}

impl Chargebee {
    /// `base_url` is where the sandbox serves `/chargebee`, e.g. `http://127.0.0.1:9100/chargebee`.
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            registry: Arc::new(Registry {
                base_url,
                sites: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// Adds a site, or replaces the one with this name by a fresh, empty one.
    pub fn add_site(&self, site: CbSite) {
        let entry = Arc::new(Site {
            name: site.name.clone(),
            api_key: site.api_key,
            requests_per_minute: site.requests_per_minute,
            faults: Mutex::default(),
            window: Mutex::default(),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            data: Mutex::default(),
        });
        self.registry
            .sites
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(site.name, entry);
    }

    /// `http://127.0.0.1:PORT/chargebee/{site}`: what `https://{site}.chargebee.com` is to
    /// a client, which appends `/api/v2/...`.
    pub fn base_url(&self, site: &str) -> String {
        format!("{}/{site}", self.registry.base_url)
    }

    pub fn create_customer(
        &self,
        site: &str,
        input: CbCustomerInput,
    ) -> Result<CbChange<CbCustomer>, CbSandboxError> {
        self.site(site)?.data().create_customer(input)
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
        *lock(&self.expect(site).faults) = faults;
    }

    /// The site's faults as they are now (`fail_next`, `throttle_next` count down).
    ///
    /// # Panics
    /// If no site has this name.
    pub fn faults(&self, site: &str) -> CbFaults {
        self.expect(site).faults()
    }

    /// Authenticated API requests served so far, including 429s and injected 500s.
    ///
    /// # Panics
    /// If no site has this name.
    pub fn request_count(&self, site: &str) -> u64 {
        self.expect(site).requests.load(Ordering::SeqCst)
    }

    /// The most authenticated API requests the site ever had in flight at once.
    ///
    /// # Panics
    /// If no site has this name.
    pub fn peak_concurrent_requests(&self, site: &str) -> u64 {
        self.expect(site).peak_in_flight.load(Ordering::SeqCst)
    }

    /// Names of all sites, sorted.
    pub fn site_names(&self) -> Vec<String> {
        self.registry
            .sites
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<Site>> {
        self.registry
            .sites
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    fn site(&self, name: &str) -> Result<Arc<Site>, CbSandboxError> {
        self.lookup(name)
            .ok_or_else(|| CbSandboxError::UnknownSite(name.to_string()))
    }

    fn expect(&self, name: &str) -> Arc<Site> {
        self.lookup(name).unwrap_or_else(|| {
            panic!(
                "no sandbox Chargebee site named {name:?} (have {:?})",
                self.site_names()
            )
        })
    }
}

impl fmt::Debug for Chargebee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chargebee")
            .field("base_url", &self.registry.base_url)
            .field("sites", &self.site_names())
            .finish()
    }
}
