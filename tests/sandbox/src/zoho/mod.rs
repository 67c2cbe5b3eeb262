//! Zoho CRM v8 emulator: organisations, their OAuth accounts server, records, limits.
//!
//! Each organisation lives under `/zoho/{org}`: its accounts server at
//! `/zoho/{org}/accounts` (what `https://accounts.zoho.com` is; clients append
//! `/oauth/v2/token`), and its API domain at `/zoho/{org}` (the `api_domain` the token
//! answer returns; clients append `/crm/v8/...`). Contract: `specs/zoho-crm/v8.0/*.json` and
//! the "Zoho CRM" facts of `specs/README.md`; where the spec says nothing (401, 429, the
//! accounts server, 204 searches) the place that answers says where its shape comes from.
//!
//! Limits: access tokens expire (`token_lifetime_secs`, 3600 as Zoho's), at most 10 per
//! refresh token per 10 minutes; API credits per rolling 24 h (1 per call, 1 per 10 records
//! upserted) and concurrent calls, both answering 429 `TOO_MANY_REQUESTS` without
//! `Retry-After`; `X-API-CREDITS-REMAINING` past half the day's credits.
//!
//! Every request is checked against the v8 spec first (`contract`): an invalid one is
//! recorded (`Zoho::spec_checks`, `GET /__sandbox/zoho/{org}/violations`) and refused as
//! Zoho refuses it.

mod contract;
mod error;
mod fields;
mod index;
pub(crate) mod routes;
mod state;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::kit::openapi::{ApiSpec, SpecViolation};
use crate::kit::{
    self, lock, Emulator, Faults, Gate, Injected, RateWindow, Refusal, RequestCounts, SpecChecks,
    Tenants,
};
use error::ApiError;
use state::OrgData;
pub use state::{ZohoSnapshot, ZohoTokenCounts, MAX_RECORDS_PER_CALL};

/// How long an access token lives (Zoho: `expires_in: 3600`).
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3600;
/// Access tokens one refresh token may mint per [`TOKEN_WINDOW`].
pub const TOKENS_PER_WINDOW: u32 = 10;
/// Zoho's token window: ten minutes.
pub const TOKEN_WINDOW: Duration = Duration::from_secs(600);
/// Credits per rolling day of a Standard edition with a few users (50,000 + 250 per user).
pub const DEFAULT_CREDITS_PER_DAY: u64 = 51_000;
/// Concurrent calls of a Standard edition.
pub const DEFAULT_CONCURRENCY: u64 = 10;
const CREDIT_WINDOW: Duration = Duration::from_secs(86_400);

/// A user of the organisation (`GET /crm/v8/users`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZohoUser {
    pub id: String,
    pub full_name: String,
    pub email: String,
}

/// A Deals pipeline of the one Deals layout, with its stages in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZohoPipeline {
    /// `display_value`, e.g. `Standard (Standard)`.
    pub name: String,
    pub stages: Vec<String>,
}

impl ZohoPipeline {
    /// Zoho's default pipeline and stages.
    pub fn standard() -> Self {
        Self {
            name: "Standard (Standard)".into(),
            stages: [
                "Qualification",
                "Needs Analysis",
                "Value Proposition",
                "Identify Decision Makers",
                "Proposal/Price Quote",
                "Negotiation/Review",
                "Closed Won",
                "Closed Lost",
                "Closed Lost to Competition",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// One emulated Zoho CRM organisation and its OAuth client.
#[derive(Clone, PartialEq, Eq)]
pub struct ZohoOrg {
    /// The `{org}` path segment.
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    /// The refresh token the accounts server mints access tokens for.
    pub refresh_token: String,
    pub token_lifetime_secs: u64,
    pub credits_per_day: u64,
    /// Concurrent API calls allowed.
    pub concurrency: u64,
    pub users: Vec<ZohoUser>,
    pub pipelines: Vec<ZohoPipeline>,
    /// The OAuth scopes of the refresh token (and so of its access tokens).
    pub scopes: Vec<String>,
}

/// The scopes billsync's README asks for, field creation included.
pub const DEFAULT_SCOPES: &[&str] = &[
    "ZohoCRM.modules.ALL",
    "ZohoCRM.settings.ALL",
    "ZohoCRM.users.READ",
];

impl ZohoOrg {
    /// An organisation with Zoho's defaults: one administrator, the standard pipeline.
    pub fn new(
        name: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        refresh_token: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh_token: refresh_token.into(),
            token_lifetime_secs: DEFAULT_TOKEN_LIFETIME_SECS,
            credits_per_day: DEFAULT_CREDITS_PER_DAY,
            concurrency: DEFAULT_CONCURRENCY,
            users: vec![ZohoUser {
                id: "5725767000000411001".into(),
                full_name: "Patricia Boyle".into(),
                email: "patricia.b@zylker.example".into(),
            }],
            pipelines: vec![ZohoPipeline::standard()],
            scopes: DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `NAME:CLIENT_ID:CLIENT_SECRET:REFRESH_TOKEN[:CREDITS_PER_DAY]`, the sandbox's
    /// `--zoho-org`.
    pub fn parse_spec(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let [name, id, secret, refresh, rest @ ..] = parts.as_slice() else {
            return Err("expected NAME:CLIENT_ID:CLIENT_SECRET:REFRESH_TOKEN[:CREDITS]".into());
        };
        if [name, id, secret, refresh].iter().any(|p| p.is_empty()) || rest.len() > 1 {
            return Err("expected NAME:CLIENT_ID:CLIENT_SECRET:REFRESH_TOKEN[:CREDITS]".into());
        }
        let mut org = Self::new(*name, *id, *secret, *refresh);
        if let Some(credits) = rest.first() {
            org.credits_per_day = credits
                .parse()
                .map_err(|_| format!("CREDITS must be a whole number, got {credits:?}"))?;
        }
        Ok(org)
    }
}

impl fmt::Debug for ZohoOrg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZohoOrg")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("refresh_token", &"[redacted]")
            .field("token_lifetime_secs", &self.token_lifetime_secs)
            .field("credits_per_day", &self.credits_per_day)
            .field("concurrency", &self.concurrency)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// Misbehaviour to inject into one organisation's API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ZohoFaults {
    /// The next N authenticated API calls get 429 `TOO_MANY_REQUESTS`.
    pub throttle_next: u32,
    /// The next N authenticated API calls get a 500.
    pub fail_next: u32,
    /// Delay before anything else happens.
    pub latency_ms: u64,
    /// Delay of an admitted call while it holds a concurrency slot (a slow Zoho).
    pub processing_ms: u64,
    /// Neither credits nor concurrent calls are limited.
    pub limits_disabled: bool,
}

impl Faults for ZohoFaults {
    fn latency_ms(&self) -> u64 {
        self.latency_ms
    }

    /// Zoho has no requests-per-second window: its limits are credits and concurrent calls,
    /// applied past the gate (see `routes::limits`).
    fn rate_limit_disabled(&self) -> bool {
        true
    }

    fn take_injected(&mut self) -> Option<Injected> {
        Injected::next_of(&mut self.throttle_next, 1, &mut self.fail_next)
    }
}

/// The accounts server's view of an organisation's OAuth client.
struct TokenState {
    refresh_token: String,
    revoked: bool,
    lifetime: Duration,
    /// Access token → when it expires.
    access: HashMap<String, Instant>,
    minted: RateWindow,
    counts: ZohoTokenCounts,
    serial: u64,
}

/// Credits spent in the rolling day, oldest first.
#[derive(Default)]
struct Credits {
    charges: VecDeque<(Instant, u64)>,
    spent: u64,
}

impl Credits {
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, cost)) = self.charges.front() {
            if now.duration_since(at) < CREDIT_WINDOW {
                break;
            }
            self.charges.pop_front();
            self.spent -= cost;
        }
    }
}

/// Handle on every emulated Zoho CRM organisation; cheap to clone.
#[derive(Clone)]
pub struct Zoho {
    orgs: Arc<Tenants<Org>>,
}

/// An organisation's configuration and everything that changes under it.
pub(crate) struct Org {
    name: String,
    client_id: String,
    client_secret: String,
    scopes: Vec<String>,
    credits_per_day: AtomicU64,
    concurrency: AtomicU64,
    gate: Gate<ZohoFaults>,
    tokens: Mutex<TokenState>,
    credits: Mutex<Credits>,
    data: Mutex<OrgData>,
}

impl Org {
    pub(crate) fn data(&self) -> MutexGuard<'_, OrgData> {
        lock(&self.data)
    }

    pub(crate) fn scopes(&self) -> &[String] {
        &self.scopes
    }

    pub(crate) fn faults(&self) -> ZohoFaults {
        self.gate.faults()
    }

    /// Mints an access token for `grant` (the form of `POST /oauth/v2/token`), or answers as
    /// Zoho's accounts server refuses.
    pub(crate) fn mint(
        &self,
        grant: &HashMap<String, String>,
    ) -> Result<(String, u64), Box<Response>> {
        let param = |key: &str| grant.get(key).map(String::as_str).unwrap_or_default();
        let mut tokens = lock(&self.tokens);
        let refused = |tokens: &mut TokenState, answer: Response| {
            tokens.counts.refused += 1;
            Err(Box::new(answer))
        };
        if param("grant_type") != "refresh_token" {
            return refused(&mut tokens, error::oauth_error("unsupported_grant_type"));
        }
        if param("client_id") != self.client_id {
            return refused(&mut tokens, error::oauth_error("invalid_client"));
        }
        if param("client_secret") != self.client_secret {
            return refused(&mut tokens, error::oauth_error("invalid_client_secret"));
        }
        if tokens.revoked || param("refresh_token") != tokens.refresh_token {
            return refused(&mut tokens, error::oauth_error("invalid_code"));
        }
        let now = Instant::now();
        if tokens.minted.admit(now, TOKENS_PER_WINDOW).is_err() {
            return refused(&mut tokens, error::oauth_too_many_tokens());
        }
        tokens.serial += 1;
        let token = format!(
            "1000.{:016x}{:08x}.{}",
            rand::random::<u64>(),
            tokens.serial,
            hex_of(&self.name)
        );
        let lifetime = tokens.lifetime;
        tokens.access.retain(|_, expires| *expires > now);
        tokens.access.insert(token.clone(), now + lifetime);
        tokens.counts.issued += 1;
        Ok((token, lifetime.as_secs()))
    }

    /// Charges `cost` credits now, or says the day's credits are spent.
    pub(crate) fn charge(&self, cost: u64) -> Result<(), ApiError> {
        let limit = self.credits_per_day.load(Ordering::SeqCst);
        let mut credits = lock(&self.credits);
        credits.expire(Instant::now());
        if credits.spent + cost > limit {
            return Err(ApiError::too_many_requests(
                "You have exceeded the API credits limit of your organisation for the day",
            ));
        }
        credits.charges.push_back((Instant::now(), cost));
        credits.spent += cost;
        Ok(())
    }

    /// Refuses the call if more than the organisation's concurrent calls are in flight.
    pub(crate) fn check_concurrency(&self) -> Result<(), ApiError> {
        if self.gate.in_flight() > self.concurrency.load(Ordering::SeqCst) {
            return Err(ApiError::too_many_requests(
                "You have exceeded the concurrency limit of your organisation",
            ));
        }
        Ok(())
    }

    pub(crate) fn count_refused(&self) {
        self.gate.count_refused();
    }

    /// Records a token request's check against Zoho's OAuth docs.
    pub(crate) fn record_check(&self, outcome: Result<(), SpecViolation>) {
        lock(self.gate.spec_checks()).record(outcome);
    }

    fn credits_used(&self) -> u64 {
        let mut credits = lock(&self.credits);
        credits.expire(Instant::now());
        credits.spent
    }
}

fn hex_of(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

impl Zoho {
    /// `base_url` is where the sandbox serves `/zoho`, e.g. `http://127.0.0.1:9100/zoho`.
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            orgs: Arc::new(Tenants::new(base_url)),
        }
    }

    /// Adds an organisation, or replaces the one with this name by a fresh, empty one.
    pub fn add_org(&self, org: ZohoOrg) {
        contract::SPEC.load_in_background();
        let entry = Org {
            name: org.name.clone(),
            client_id: org.client_id,
            client_secret: org.client_secret,
            scopes: org.scopes,
            credits_per_day: AtomicU64::new(org.credits_per_day),
            concurrency: AtomicU64::new(org.concurrency),
            gate: Gate::new(Duration::from_secs(1)),
            tokens: Mutex::new(TokenState {
                refresh_token: org.refresh_token,
                revoked: false,
                lifetime: Duration::from_secs(org.token_lifetime_secs),
                access: HashMap::new(),
                minted: RateWindow::new(TOKEN_WINDOW),
                counts: ZohoTokenCounts::default(),
                serial: 0,
            }),
            credits: Mutex::default(),
            data: Mutex::new(OrgData::new(org.users, org.pipelines)),
        };
        self.orgs.insert(org.name, entry);
    }

    /// `http://127.0.0.1:PORT/zoho/{org}/accounts`: the connection's `accounts_url`.
    pub fn accounts_url(&self, org: &str) -> String {
        format!("{}/{org}/accounts", self.orgs.base_url())
    }

    /// `http://127.0.0.1:PORT/zoho/{org}`: the `api_domain` token answers carry.
    pub fn api_domain(&self, org: &str) -> String {
        format!("{}/{org}", self.orgs.base_url())
    }

    /// The organisation's records, token counts and credits used.
    ///
    /// # Panics
    /// If no organisation has this name, so a typo fails the test at the right line.
    pub fn snapshot(&self, org: &str) -> ZohoSnapshot {
        let org = self.expect(org);
        let tokens = lock(&org.tokens).counts;
        let credits_used = org.credits_used();
        let data = org.data();
        ZohoSnapshot {
            contacts: data.records(state::Module::Contacts),
            accounts: data.records(state::Module::Accounts),
            deals: data.records(state::Module::Deals),
            tokens,
            credits_used,
        }
    }

    /// Creates records as `POST /crm/v8/{module}` does (no duplicate check): what a person
    /// does in Zoho's web app, e.g. two contacts sharing an email. Returns the per-record
    /// results.
    ///
    /// # Panics
    /// If there is no such organisation or module.
    pub fn insert(
        &self,
        org: &str,
        module: &str,
        records: &[serde_json::Value],
    ) -> Vec<serde_json::Value> {
        let module = state::Module::parse(module).expect("Contacts, Accounts or Deals");
        self.expect(org).data().write(module, records, Some(&[]))
    }

    /// Changes `fields` of record `id` as a person does in Zoho's web app (renames a deal,
    /// say).
    ///
    /// # Panics
    /// If there is no such organisation, module or record.
    /// The API names of the module's fields (`GET /settings/fields`), custom ones last.
    pub fn field_names(&self, org: &str, module: &str) -> Vec<String> {
        let module = state::Module::parse(module).expect("Contacts, Accounts or Deals");
        self.expect(org)
            .data()
            .fields
            .list(module)
            .iter()
            .filter_map(|f| f["api_name"].as_str().map(str::to_string))
            .collect()
    }

    pub fn edit(&self, org: &str, module: &str, id: &str, fields: serde_json::Value) {
        let module = state::Module::parse(module).expect("Contacts, Accounts or Deals");
        let fields = fields.as_object().cloned().expect("an object of fields");
        assert!(
            self.expect(org).data().edit(module, id, &fields),
            "no {} record {id}",
            module.api_name()
        );
    }

    /// Every access token issued so far stops working now, as an hour later.
    ///
    /// # Panics
    /// If no organisation has this name.
    pub fn expire_tokens(&self, org: &str) {
        let org = self.expect(org);
        let now = Instant::now();
        for expires in lock(&org.tokens).access.values_mut() {
            *expires = now;
        }
    }

    /// The refresh token is revoked: no new access token, and those issued stop working.
    ///
    /// # Panics
    /// If no organisation has this name.
    pub fn revoke_refresh_token(&self, org: &str) {
        let org = self.expect(org);
        let mut tokens = lock(&org.tokens);
        tokens.revoked = true;
        tokens.access.clear();
    }

    /// Changes the day's credits and concurrent calls of a running organisation.
    ///
    /// # Panics
    /// If no organisation has this name.
    pub fn set_limits(&self, org: &str, credits_per_day: u64, concurrency: u64) {
        let org = self.expect(org);
        org.credits_per_day.store(credits_per_day, Ordering::SeqCst);
        org.concurrency.store(concurrency, Ordering::SeqCst);
    }

    /// # Panics
    /// If no organisation has this name.
    pub fn set_faults(&self, org: &str, faults: ZohoFaults) {
        self.expect(org).gate.set_faults(faults);
    }

    /// API calls with a valid token so far: admitted (`accepted`, injected 500s included)
    /// and refused with 429 (`refused`); also at `GET /__sandbox/zoho/{org}/requests`.
    ///
    /// # Panics
    /// If no organisation has this name.
    pub fn request_counts(&self, org: &str) -> RequestCounts {
        self.expect(org).gate.counts()
    }

    /// Requests checked against the v8 spec (and the token endpoint against Zoho's OAuth
    /// docs), with the invalid ones; also at `GET /__sandbox/zoho/{org}/violations`.
    ///
    /// # Panics
    /// If no organisation has this name.
    pub fn spec_checks(&self, org: &str) -> SpecChecks {
        lock(self.expect(org).gate.spec_checks()).clone()
    }

    /// The most API calls the organisation had in flight at once.
    ///
    /// # Panics
    /// If no organisation has this name.
    pub fn peak_in_flight(&self, org: &str) -> u64 {
        self.expect(org).gate.peak_in_flight()
    }

    pub fn org_names(&self) -> Vec<String> {
        self.orgs.names()
    }

    pub(crate) fn org(&self, name: &str) -> Option<Arc<Org>> {
        self.orgs.get(name)
    }

    fn expect(&self, name: &str) -> Arc<Org> {
        self.orgs.expect("Zoho CRM organisation", name)
    }
}

const CREDITS_REMAINING: HeaderName = HeaderName::from_static("x-api-credits-remaining");

impl kit::Tenant for Org {
    type Faults = ZohoFaults;

    fn name(&self) -> &str {
        &self.name
    }

    fn gate(&self) -> &Gate<ZohoFaults> {
        &self.gate
    }

    fn rate_limit(&self) -> u32 {
        u32::MAX
    }

    /// `Authorization: Zoho-oauthtoken <token>` with a token the accounts server issued and
    /// that has not expired.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Zoho-oauthtoken "));
        let Some(token) = token else {
            return Err(Refusal {
                response: Box::new(ApiError::authentication_failure().into_response()),
                log: Some("no Zoho-oauthtoken authorization"),
            });
        };
        let tokens = lock(&self.tokens);
        match tokens.access.get(token.trim()) {
            Some(expires) if *expires > Instant::now() => Ok(()),
            known => Err(Refusal {
                response: Box::new(ApiError::invalid_token().into_response()),
                log: Some(if known.is_some() {
                    "expired access token"
                } else {
                    "unknown access token"
                }),
            }),
        }
    }

    fn rate_limited(_retry_after_secs: u64) -> Response {
        ApiError::too_many_requests("too many requests continuously").into_response()
    }

    fn injected_failure() -> Response {
        ApiError::internal_error().into_response()
    }

    /// `X-API-CREDITS-REMAINING`, only once more than half the day's credits are spent.
    fn finish(&self, faults: &ZohoFaults, response: &mut Response) {
        if faults.limits_disabled {
            return;
        }
        let limit = self.credits_per_day.load(Ordering::SeqCst);
        let remaining = limit.saturating_sub(self.credits_used());
        if remaining < limit / 2 {
            response
                .headers_mut()
                .insert(CREDITS_REMAINING, HeaderValue::from(remaining));
        }
    }
}

impl Emulator for Zoho {
    type Tenant = Org;
    const VENDOR: &'static str = "Zoho CRM";
    const SEGMENT: &'static str = "zoho";
    const TENANT: &'static str = "org";
    const LOG_SERVED: bool = true;

    fn tenants(&self) -> &Tenants<Org> {
        &self.orgs
    }

    fn unknown_tenant(name: &str, _method: &Method, _path: &str) -> Response {
        ApiError::unknown_org(name).into_response()
    }

    fn contract() -> Option<&'static ApiSpec> {
        Some(contract::SPEC.get())
    }

    fn refuse_invalid(violation: &SpecViolation) -> Response {
        ApiError::from_violation(violation).into_response()
    }
}

impl fmt::Debug for Zoho {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zoho")
            .field("base_url", &self.orgs.base_url())
            .field("orgs", &self.org_names())
            .finish()
    }
}

#[cfg(test)]
mod api_tests;
