//! ActiveCampaign v3 emulator: accounts, their state, faults and rate limit.
//!
//! Each account lives under `/activecampaign/{account}/api/3`, so one sandbox serves many
//! isolated accounts and tests can make a fresh one each. Contract:
//! `specs/activecampaign/activecampaign-v3.json`; where it and AC's docs disagree the docs
//! win, and the place that depends on it says so.

mod ecommerce;
mod ecommerce_routes;
mod error;
mod rate_limit;
pub(crate) mod routes;
mod state;
mod tracking;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

pub use ecommerce::{
    AcConnection, AcEcomCustomer, AcEcomOrder, AcOrderDiscount, AcOrderProduct, AcTrackedEvent,
};
use rate_limit::SlidingWindow;
use state::AccountData;
pub use state::{
    AcContact, AcContactList, AcContactTag, AcField, AcFieldValue, AcList, AcSnapshot, AcTag,
};

/// AC's documented limit: 5 requests per second per account, shared by all its API keys.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 5;

/// One emulated ActiveCampaign account.
#[derive(Clone, PartialEq, Eq)]
pub struct AcAccount {
    /// The `{account}` path segment, standing in for AC's `{account}.api-us1.com`.
    pub name: String,
    /// The value the `Api-Token` header must carry.
    pub api_token: String,
    pub requests_per_second: u32,
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

/// An account's authenticated v3 requests, by what the rate limit made of them (event
/// tracking requests are not among them: the rate limit does not cover trackcmp).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcRequestCounts {
    /// Let through by the rate limit (answered by a handler, or by an injected 500).
    pub accepted: u64,
    /// Answered 429 by the rate limit.
    pub refused: u64,
}

/// Handle on every emulated ActiveCampaign account; cheap to clone.
#[derive(Clone)]
pub struct ActiveCampaign {
    registry: Arc<Registry>,
}

struct Registry {
    /// `http://127.0.0.1:PORT/activecampaign`, the root of every account's URLs.
    base_url: String,
    accounts: RwLock<BTreeMap<String, Arc<Account>>>,
}

/// An account's configuration and everything that changes under it.
pub(crate) struct Account {
    name: String,
    api_token: String,
    requests_per_second: u32,
    event_actid: String,
    event_key: String,
    /// `.../activecampaign/{account}/api/3`, for the `links` in responses.
    api_url: String,
    faults: Mutex<AcFaults>,
    window: Mutex<SlidingWindow>,
    requests: AtomicU64,
    /// Of `requests`, those refused with 429 by the rate limit.
    refused: AtomicU64,
    /// trackcmp requests served, accepted or refused (not in `requests`).
    tracking_requests: AtomicU64,
    data: Mutex<AccountData>,
}

/// Locks a sandbox mutex; a handler that panicked mid-update leaves data a test can still read.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Account {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn api_url(&self) -> &str {
        &self.api_url
    }

    pub(crate) fn token_matches(&self, presented: Option<&[u8]>) -> bool {
        presented == Some(self.api_token.as_bytes())
    }

    pub(crate) fn requests_per_second(&self) -> u32 {
        self.requests_per_second
    }

    /// Whether `actid` and `key` are this account's event tracking credentials.
    pub(crate) fn tracking_credentials_match(&self, actid: &str, key: &str) -> bool {
        actid.trim() == self.event_actid && key.trim().as_bytes() == self.event_key.as_bytes()
    }

    pub(crate) fn faults(&self) -> AcFaults {
        lock(&self.faults).clone()
    }

    /// Consumes one injected failure, if any are left.
    pub(crate) fn take_injected_failure(&self) -> bool {
        let mut faults = lock(&self.faults);
        if faults.fail_next == 0 {
            return false;
        }
        faults.fail_next -= 1;
        true
    }

    pub(crate) fn rejects_email(&self, email: Option<&str>) -> bool {
        let Some(email) = email.map(|e| e.trim().to_lowercase()) else {
            return false;
        };
        lock(&self.faults)
            .reject_emails
            .iter()
            .any(|r| r.trim().to_lowercase() == email)
    }

    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_tracking_request(&self) {
        self.tracking_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn window(&self) -> MutexGuard<'_, SlidingWindow> {
        lock(&self.window)
    }

    /// The account's authenticated API requests so far, split by the rate limit's verdict.
    pub(crate) fn request_counts(&self) -> AcRequestCounts {
        let requests = self.requests.load(Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        AcRequestCounts {
            accepted: requests.saturating_sub(refused),
            refused,
        }
    }

    /// The account's data, locked. Callers drop the guard before any `.await`.
    pub(crate) fn data(&self) -> MutexGuard<'_, AccountData> {
        lock(&self.data)
    }
}

impl ActiveCampaign {
    /// `base_url` is where the sandbox serves `/activecampaign`, e.g.
    /// `http://127.0.0.1:9100/activecampaign`.
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            registry: Arc::new(Registry {
                base_url,
                accounts: RwLock::new(BTreeMap::new()),
            }),
        }
    }

    /// Adds an account, or replaces the one with this name by a fresh, empty one.
    pub fn add_account(&self, account: AcAccount) {
        let api_url = format!("{}/{}/api/3", self.registry.base_url, account.name);
        let entry = Arc::new(Account {
            name: account.name.clone(),
            api_token: account.api_token,
            requests_per_second: account.requests_per_second,
            event_actid: account.event_actid,
            event_key: account.event_key,
            api_url,
            faults: Mutex::default(),
            window: Mutex::default(),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            tracking_requests: AtomicU64::new(0),
            data: Mutex::default(),
        });
        self.registry
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(account.name, entry);
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

    /// Replaces the account's faults.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn set_faults(&self, account: &str, faults: AcFaults) {
        *lock(&self.expect(account).faults) = faults;
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
        self.expect(account).requests.load(Ordering::Relaxed)
    }

    /// Authenticated API requests so far: those the rate limit let through (`accepted`,
    /// which includes injected 500s) and those it refused with 429 (`refused`); also at
    /// `GET /__sandbox/activecampaign/{account}/requests`.
    ///
    /// # Panics
    /// If no account has this name.
    pub fn request_counts(&self, account: &str) -> AcRequestCounts {
        self.expect(account).request_counts()
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
        format!("{}/{account}/trackcmp", self.registry.base_url)
    }

    /// Names of all accounts, sorted.
    pub fn account_names(&self) -> Vec<String> {
        self.accounts()
            .into_iter()
            .map(|a| a.name.clone())
            .collect()
    }

    pub(crate) fn account(&self, name: &str) -> Option<Arc<Account>> {
        self.registry
            .accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    pub(crate) fn accounts(&self) -> Vec<Arc<Account>> {
        self.registry
            .accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn expect(&self, name: &str) -> Arc<Account> {
        self.account(name).unwrap_or_else(|| {
            panic!(
                "no sandbox ActiveCampaign account named {name:?} (have {:?})",
                self.account_names()
            )
        })
    }
}

impl fmt::Debug for ActiveCampaign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveCampaign")
            .field("base_url", &self.registry.base_url)
            .field("accounts", &self.account_names())
            .finish()
    }
}
