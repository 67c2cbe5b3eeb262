//! ActiveCampaign v3 emulator: accounts, their state, faults and rate limit.
//!
//! Each account lives under `/activecampaign/{account}/api/3`, so one sandbox serves many
//! isolated accounts and tests can make a fresh one each. Contract:
//! `specs/activecampaign/activecampaign-v3.json`; where it and AC's docs disagree the docs
//! win, and the place that depends on it says so.

mod bulk_import;
mod bulk_import_routes;
mod ecommerce;
mod ecommerce_routes;
mod error;
mod id_index;
pub(crate) mod routes;
mod state;
mod tracking;
mod wire;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::kit::{self, lock, Emulator, Faults, Gate, Injected, Refusal, RequestCounts, Tenants};
use bulk_import::ImportWindows;
use error::ApiError;

pub use bulk_import::AcBulkImport;
pub use ecommerce::{
    AcConnection, AcEcomCustomer, AcEcomOrder, AcOrderDiscount, AcOrderProduct, AcTrackedEvent,
};
use state::AccountData;
pub use state::{
    AcContact, AcContactList, AcContactTag, AcField, AcFieldValue, AcList, AcSnapshot, AcTag,
};

/// AC's documented limit: 5 requests per second per account, shared by all its API keys.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 5;

/// How long a bulk import waits before it is applied. AC's docs give no figure: its importer
/// is a queue, and the info route answers `status: false` for about the first second.
pub const DEFAULT_BULK_IMPORT_DELAY: Duration = Duration::from_secs(1);

/// One emulated ActiveCampaign account.
#[derive(Clone, PartialEq, Eq)]
pub struct AcAccount {
    /// The `{account}` path segment, standing in for AC's `{account}.api-us1.com`.
    pub name: String,
    /// The value the `Api-Token` header must carry.
    pub api_token: String,
    pub requests_per_second: u32,
    /// How long after `POST /import/bulk_import` its contacts are written.
    pub bulk_import_delay: Duration,
    /// Event tracking's `actid` (Settings > Tracking > Event Tracking), which
    /// `trackcmp.net/event` requires beside the event key.
    pub event_actid: String,
    /// Event tracking's "Event Key", a secret like the API token.
    pub event_key: String,
}

impl AcAccount {
    /// An account whose event tracking `actid` and key are derived from its name (40 hex
    /// digits, as AC's keys are), so a test can compute them without asking the sandbox.
    pub fn new(name: impl Into<String>, api_token: impl Into<String>) -> Self {
        use sha2::{Digest, Sha256};
        let name = name.into();
        let digest = Sha256::digest(format!("event-tracking:{name}").as_bytes());
        let actid = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % 900_000_000
            + 100_000_000;
        Self {
            event_actid: actid.to_string(),
            event_key: hex::encode(&digest[4..24]),
            name,
            api_token: api_token.into(),
            requests_per_second: DEFAULT_REQUESTS_PER_SECOND,
            bulk_import_delay: DEFAULT_BULK_IMPORT_DELAY,
        }
    }
}

impl Default for AcAccount {
    fn default() -> Self {
        Self::new("", "")
    }
}

impl fmt::Debug for AcAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcAccount")
            .field("name", &self.name)
            .field("api_token", &"[redacted]")
            .field("requests_per_second", &self.requests_per_second)
            .field("bulk_import_delay", &self.bulk_import_delay)
            .field("event_actid", &self.event_actid)
            .field("event_key", &"[redacted]")
            .finish()
    }
}

/// Misbehaviour to inject into one account's API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AcFaults {
    /// Contact writes (`/contact/sync`, `POST /contacts`, `PUT /contacts/{id}`) for these
    /// emails (case-insensitive) get AC's 422 invalid-email answer.
    pub reject_emails: Vec<String>,
    /// The next N authenticated requests get a 500.
    pub fail_next: u32,
    /// Delay added to every request of the account, before anything else happens.
    pub latency_ms: u64,
    pub rate_limit_disabled: bool,
}

impl Faults for AcFaults {
    fn latency_ms(&self) -> u64 {
        self.latency_ms
    }

    fn rate_limit_disabled(&self) -> bool {
        self.rate_limit_disabled
    }

    /// AC's faults inject 500s only.
    fn take_injected(&mut self) -> Option<Injected> {
        Injected::next_of(&mut 0, 0, &mut self.fail_next)
    }
}

/// Handle on every emulated ActiveCampaign account; cheap to clone.
#[derive(Clone)]
pub struct ActiveCampaign {
    accounts: Arc<Tenants<Account>>,
}

/// An account's configuration and everything that changes under it.
pub(crate) struct Account {
    name: String,
    api_token: String,
    requests_per_second: u32,
    bulk_import_delay: Duration,
    event_actid: String,
    event_key: String,
    /// `.../activecampaign/{account}/api/3`, for the `links` in responses.
    api_url: String,
    /// Faults, the one-second rate window and the v3 request counts.
    gate: Gate<AcFaults>,
    /// trackcmp requests served, accepted or refused (not counted by the gate).
    tracking_requests: AtomicU64,
    /// The bulk importer's imports-per-minute windows.
    import_windows: Mutex<ImportWindows>,
    data: Mutex<AccountData>,
}

impl Account {
    pub(crate) fn api_url(&self) -> &str {
        &self.api_url
    }

    /// Whether `actid` and `key` are this account's event tracking credentials.
    pub(crate) fn tracking_credentials_match(&self, actid: &str, key: &str) -> bool {
        actid.trim() == self.event_actid && key.trim().as_bytes() == self.event_key.as_bytes()
    }

    pub(crate) fn faults(&self) -> AcFaults {
        self.gate.faults()
    }

    pub(crate) fn rejects_email(&self, email: Option<&str>) -> bool {
        email.is_some_and(|email| bulk_import::listed(&self.gate.faults().reject_emails, email))
    }

    pub(crate) fn count_tracking_request(&self) {
        self.tracking_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The account's data, locked, with every bulk import that has fallen due applied first,
    /// so whoever looks after the delay sees its contacts. Callers drop the guard before any
    /// `.await`.
    pub(crate) fn data(&self) -> MutexGuard<'_, AccountData> {
        let mut data = lock(&self.data);
        let now = tokio::time::Instant::now();
        if data.imports.is_due(now) {
            let rejected = self.gate.faults().reject_emails;
            data.settle_imports(now, &rejected);
        }
        data
    }
}

impl ActiveCampaign {
    /// `base_url` is where the sandbox serves `/activecampaign`, e.g.
    /// `http://127.0.0.1:9100/activecampaign`.
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            accounts: Arc::new(Tenants::new(base_url)),
        }
    }

    /// Adds an account, or replaces the one with this name by a fresh, empty one.
    pub fn add_account(&self, account: AcAccount) {
        let api_url = format!("{}/{}/api/3", self.accounts.base_url(), account.name);
        let entry = Account {
            name: account.name.clone(),
            api_token: account.api_token,
            requests_per_second: account.requests_per_second,
            bulk_import_delay: account.bulk_import_delay,
            event_actid: account.event_actid,
            event_key: account.event_key,
            api_url,
            gate: Gate::new(Duration::from_secs(1)),
            tracking_requests: AtomicU64::new(0),
            import_windows: Mutex::default(),
            data: Mutex::default(),
        };
        self.accounts.insert(account.name, entry);
    }

    /// The account's full state.
    ///
    /// # Panics
    /// If no account has this name, so a typo fails the test at the right line.
    pub fn snapshot(&self, account: &str) -> AcSnapshot {
        self.expect(account).data().snapshot()
    }

    /// Lower-cased email of each contact → when the account created it.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn contact_creation_times(
        &self,
        account: &str,
    ) -> std::collections::HashMap<String, std::time::SystemTime> {
        self.expect(account).data().contact_creation_times()
    }

    /// Applies every bulk import the account has queued now, as if its delay had passed, so a
    /// test need not wait for it.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn process_bulk_imports(&self, account: &str) {
        let account = self.expect(account);
        lock(&account.data)
            .imports
            .hurry(tokio::time::Instant::now());
        drop(account.data());
    }

    /// Replaces the account's faults.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn set_faults(&self, account: &str, faults: AcFaults) {
        self.expect(account).gate.set_faults(faults);
    }

    /// The account's faults as they are now (`fail_next` counts down as failures are served).
    ///
    /// # Panics
    /// If no account has this name.
    pub fn faults(&self, account: &str) -> AcFaults {
        self.expect(account).faults()
    }

    /// Authenticated API requests served so far, including 429s and injected 500s.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn request_count(&self, account: &str) -> u64 {
        self.expect(account).gate.requests()
    }

    /// Authenticated API requests so far: those the rate limit let through (`accepted`,
    /// which includes injected 500s) and those it refused with 429 (`refused`); also at
    /// `GET /__sandbox/activecampaign/{account}/requests`.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn request_counts(&self, account: &str) -> RequestCounts {
        self.expect(account).gate.counts()
    }

    /// Event tracking (trackcmp) requests served so far, accepted or refused; they are not
    /// in [`Self::request_count`].
    ///
    /// # Panics
    /// If no account has this name.
    pub fn tracking_request_count(&self, account: &str) -> u64 {
        self.expect(account)
            .tracking_requests
            .load(Ordering::Relaxed)
    }

    /// `http://127.0.0.1:PORT/activecampaign/{account}/trackcmp`: what `https://trackcmp.net`
    /// is to a client, which appends `/event`.
    pub fn tracking_base_url(&self, account: &str) -> String {
        format!("{}/{account}/trackcmp", self.accounts.base_url())
    }

    /// Names of all accounts, sorted.
    pub fn account_names(&self) -> Vec<String> {
        self.accounts.names()
    }

    pub(crate) fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.accounts.get(name)
    }

    pub(crate) fn accounts(&self) -> Vec<Arc<Account>> {
        self.accounts.all()
    }

    fn expect(&self, name: &str) -> Arc<Account> {
        self.accounts.expect("ActiveCampaign account", name)
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");

impl kit::Tenant for Account {
    type Faults = AcFaults;

    fn name(&self) -> &str {
        &self.name
    }

    fn gate(&self) -> &Gate<AcFaults> {
        &self.gate
    }

    fn rate_limit(&self) -> u32 {
        self.requests_per_second
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = headers.get("api-token").map(HeaderValue::as_bytes);
        if token == Some(self.api_token.as_bytes()) {
            return Ok(());
        }
        Err(Refusal {
            response: Box::new(ApiError::forbidden().into_response()),
            log: Some(if token.is_some() {
                "wrong Api-Token"
            } else {
                "missing Api-Token"
            }),
        })
    }

    fn rate_limited(retry_after_secs: u64) -> Response {
        ApiError::rate_limited(retry_after_secs).into_response()
    }

    fn injected_failure() -> Response {
        ApiError::injected_failure().into_response()
    }

    /// AC's `RateLimit-Limit` and `RateLimit-Remaining`, while the rate limit is on.
    fn finish(&self, faults: &AcFaults, response: &mut Response) {
        if faults.rate_limit_disabled {
            return;
        }
        let limit = self.requests_per_second;
        let remaining = self.gate.remaining(limit);
        let headers = response.headers_mut();
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(remaining));
    }
}

impl Emulator for ActiveCampaign {
    type Tenant = Account;
    const VENDOR: &'static str = "ActiveCampaign";
    const SEGMENT: &'static str = "activecampaign";
    const TENANT: &'static str = "account";
    const LOG_SERVED: bool = true;

    fn tenants(&self) -> &Tenants<Account> {
        &self.accounts
    }

    fn unknown_tenant(name: &str, _method: &Method, _path: &str) -> Response {
        ApiError::unknown_account(name).into_response()
    }
}

impl fmt::Debug for ActiveCampaign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveCampaign")
            .field("base_url", &self.accounts.base_url())
            .field("accounts", &self.account_names())
            .finish()
    }
}
