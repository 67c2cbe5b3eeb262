//! Pipedrive emulator: companies, their persons, organizations, deals, notes and fields, the
//! token costs, the daily budget and the 2 s burst window.
//!
//! Each company lives under `/pipedrive/{company}`, standing in for
//! `https://{company}.pipedrive.com`: `/api/v2/...` for persons, organizations, deals, their
//! search, fields, pipelines and stages; `/v1/...` only where v2 has no equivalent (notes,
//! users). Contract: `specs/pipedrive/pipedrive-v2-openapi.yml` and `-v1-`, and the
//! "Pipedrive" facts of `specs/README.md`, which win where the specs are silent (error
//! bodies, 429s, the budget).
//!
//! Every request is checked against the specs first (`contract`): an invalid one is
//! recorded (`Pipedrive::spec_checks`, `GET /__sandbox/pipedrive/{company}/violations`) and
//! refused as Pipedrive refuses it.

mod contract;
mod error;
pub(crate) mod routes;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::kit::openapi::{ApiSpec, SpecViolation};
use crate::kit::{self, lock, Emulator, Gate, RateWindow, Refusal, SpecChecks, Tenants};
use error::ApiError;
use state::CompanyData;
pub use state::{PdEntity, PdField, PdNote, PdOption, PdPipeline, PdSnapshot, PdStage, PdUser};

/// The burst limit of the Lite plan with an API token: 20 requests per rolling 2 s window.
pub const DEFAULT_REQUESTS_PER_2S: u32 = 20;
/// Search requests per 2 s window, on every plan.
pub const SEARCHES_PER_2S: u32 = 10;
/// 30,000 tokens × plan multiplier (Lite 1) × seats (1).
pub const DEFAULT_DAILY_TOKENS: u64 = 30_000;
/// The length of the burst and search windows.
pub const BURST_WINDOW: Duration = Duration::from_secs(2);

/// One emulated Pipedrive company.
#[derive(Clone, PartialEq, Eq)]
pub struct PdCompany {
    /// The `{company}` path segment, standing in for `{company}.pipedrive.com`.
    pub name: String,
    /// The value the `x-api-token` header must carry.
    pub api_token: String,
    /// An OAuth access token accepted as `Authorization: Bearer ...`, if any.
    pub oauth_token: Option<String>,
    pub requests_per_2s: u32,
    /// Tokens the company may spend per day (reset at midnight UTC, the server's time here).
    pub daily_tokens: u64,
}

impl PdCompany {
    pub fn new(name: impl Into<String>, api_token: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            api_token: api_token.into(),
            oauth_token: None,
            requests_per_2s: DEFAULT_REQUESTS_PER_2S,
            daily_tokens: DEFAULT_DAILY_TOKENS,
        }
    }
}

impl fmt::Debug for PdCompany {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PdCompany")
            .field("name", &self.name)
            .field("api_token", &"[redacted]")
            .field(
                "oauth_token",
                &self.oauth_token.as_ref().map(|_| "[redacted]"),
            )
            .field("requests_per_2s", &self.requests_per_2s)
            .field("daily_tokens", &self.daily_tokens)
            .finish()
    }
}

/// Misbehaviour to inject into one company's API.
pub type PdFaults = crate::kit::ApiFaults;

/// A company's token spending today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PdTokens {
    pub daily: u64,
    pub spent: u64,
    /// Calls refused because the budget could not pay for them.
    pub refused: u64,
}

#[derive(Debug)]
struct Ledger {
    day: chrono::NaiveDate,
    spent: u64,
    refused: u64,
    /// A budget 429 was answered today: later calls get the 403 page.
    blocked: bool,
}

impl Ledger {
    fn new() -> Self {
        Self {
            day: chrono::Utc::now().date_naive(),
            spent: 0,
            refused: 0,
            blocked: false,
        }
    }
}

/// Handle on every emulated Pipedrive company; cheap to clone.
#[derive(Clone)]
pub struct Pipedrive {
    companies: Arc<Tenants<Company>>,
}

/// A company's configuration and everything that changes under it.
pub(crate) struct Company {
    config: PdCompany,
    /// Faults, the burst window and the request counts.
    gate: Gate<PdFaults>,
    searches: Mutex<RateWindow>,
    ledger: Mutex<Ledger>,
    data: Mutex<CompanyData>,
}

/// How a call fared against the limits the gate does not know.
pub(crate) enum Charge {
    Paid,
    Refused(Response),
}

impl Company {
    /// The company's data, locked. Callers drop the guard before any `.await`.
    pub(crate) fn data(&self) -> MutexGuard<'_, CompanyData> {
        lock(&self.data)
    }

    /// Admits a search into its 2 s window and charges a call's tokens against today's
    /// budget; a refusal counts as a 429 in the request counts.
    pub(crate) fn charge(&self, cost: u64, search: bool) -> Charge {
        let refuse = |response: Response| {
            self.gate.count_refused();
            Charge::Refused(response)
        };
        if search && !self.gate.faults().rate_limit_disabled {
            let admitted = lock(&self.searches).admit(tokio::time::Instant::now(), SEARCHES_PER_2S);
            if let Err(retry_after) = admitted {
                return refuse(ApiError::rate_limited(retry_after).into_response());
            }
        }
        let mut ledger = lock(&self.ledger);
        let today = chrono::Utc::now().date_naive();
        if ledger.day != today {
            *ledger = Ledger::new();
        }
        if ledger.spent + cost > self.config.daily_tokens {
            ledger.refused += 1;
            let page = if ledger.blocked {
                error::budget_block_page()
            } else {
                ledger.blocked = true;
                ApiError::budget_exceeded().into_response()
            };
            return refuse(page);
        }
        ledger.spent += cost;
        Charge::Paid
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

impl kit::Tenant for Company {
    type Faults = PdFaults;

    fn name(&self) -> &str {
        &self.config.name
    }

    fn gate(&self) -> &Gate<PdFaults> {
        &self.gate
    }

    fn rate_limit(&self) -> u32 {
        self.config.requests_per_2s
    }

    /// The v2 spec's `api_key` scheme (header `x-api-token`) or an OAuth bearer token.
    fn authenticate(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let token = headers.get("x-api-token").map(HeaderValue::as_bytes);
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let token_ok = token == Some(self.config.api_token.as_bytes());
        let bearer_ok = bearer.is_some() && bearer == self.config.oauth_token.as_deref();
        if token_ok || bearer_ok {
            return Ok(());
        }
        Err(Refusal {
            response: Box::new(ApiError::unauthorized().into_response()),
            log: Some(if token.is_some() || bearer.is_some() {
                "wrong API token"
            } else {
                "missing API token"
            }),
        })
    }

    fn rate_limited(retry_after_secs: u64) -> Response {
        let mut response = ApiError::rate_limited(retry_after_secs).into_response();
        response
            .headers_mut()
            .insert(RATELIMIT_RESET, HeaderValue::from(retry_after_secs));
        response
    }

    fn injected_failure() -> Response {
        ApiError::injected_failure().into_response()
    }

    /// `x-ratelimit-*` of the burst window on every answer. `x-ratelimit-reset` is the
    /// window's length unless a 429 said exactly when it frees; nothing reports the budget.
    fn finish(&self, faults: &PdFaults, response: &mut Response) {
        if faults.rate_limit_disabled {
            return;
        }
        let limit = self.config.requests_per_2s;
        let remaining = self.gate.remaining(limit);
        let headers = response.headers_mut();
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(remaining));
        if !headers.contains_key(RATELIMIT_RESET) {
            headers.insert(RATELIMIT_RESET, HeaderValue::from(BURST_WINDOW.as_secs()));
        }
    }
}

impl Emulator for Pipedrive {
    type Tenant = Company;
    const VENDOR: &'static str = "Pipedrive";
    const SEGMENT: &'static str = "pipedrive";
    const TENANT: &'static str = "company";

    fn tenants(&self) -> &Tenants<Company> {
        &self.companies
    }

    fn unknown_tenant(name: &str, _method: &Method, _path: &str) -> Response {
        ApiError::unknown_company(name).into_response()
    }

    fn unreadable_control_body(reason: String) -> Response {
        (StatusCode::UNPROCESSABLE_ENTITY, reason).into_response()
    }

    fn contract() -> Option<&'static ApiSpec> {
        Some(contract::SPEC.get())
    }

    fn refuse_invalid(violation: &SpecViolation) -> Response {
        ApiError::from_violation(violation).into_response()
    }
}

impl Pipedrive {
    /// `base_url` is where the sandbox serves `/pipedrive`, e.g. `http://127.0.0.1:9100/pipedrive`.
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            companies: Arc::new(Tenants::new(base_url)),
        }
    }

    /// Adds a company, or replaces the one with this name by a fresh one (its admin user,
    /// the default pipeline, no records).
    pub fn add_company(&self, company: PdCompany) {
        contract::SPEC.load_in_background();
        let entry = Company {
            data: Mutex::new(CompanyData::new(&company.name)),
            gate: Gate::new(BURST_WINDOW),
            searches: Mutex::new(RateWindow::new(BURST_WINDOW)),
            ledger: Mutex::new(Ledger::new()),
            config: company.clone(),
        };
        self.companies.insert(company.name, entry);
    }

    /// `http://127.0.0.1:PORT/pipedrive/{company}`: what `https://{company}.pipedrive.com`
    /// is to a client, which appends `/api/v2/...` or `/v1/...`.
    pub fn base_url(&self, company: &str) -> String {
        format!("{}/{company}", self.companies.base_url())
    }

    /// The company's records, fields and notes.
    ///
    /// # Panics
    /// If no company has this name, so a typo fails the test at the right line.
    pub fn snapshot(&self, company: &str) -> PdSnapshot {
        self.expect(company).data().snapshot()
    }

    /// Creates a record as a person would in Pipedrive's web app (no tokens, no limits),
    /// checked as the API checks it; answers the record.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn create(&self, company: &str, entity: PdEntity, body: &Value) -> Result<Value, String> {
        self.expect(company)
            .data()
            .create(entity, body)
            .map_err(|e| format!("{e:?}"))
    }

    /// Creates a custom field as a person would in the web app (`field_name`, `field_type`),
    /// checked as `POST /{entity}Fields` checks it; answers the field with its key.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn create_field(
        &self,
        company: &str,
        entity: PdEntity,
        body: &Value,
    ) -> Result<Value, String> {
        self.expect(company)
            .data()
            .create_field(entity, body)
            .map_err(|e| format!("{e:?}"))
    }

    /// Deletes a record as a person would in the web app: softly, `is_deleted: true`.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn delete(&self, company: &str, entity: PdEntity, id: u64) -> bool {
        self.expect(company).data().delete(entity, id).is_ok()
    }

    /// Removes a record altogether, as the 30-day purge or a merge does: its id answers 404.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn purge(&self, company: &str, entity: PdEntity, id: u64) -> bool {
        self.expect(company).data().purge(entity, id)
    }

    /// Today's token spending.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn tokens(&self, company: &str) -> PdTokens {
        let company = self.expect(company);
        let ledger = lock(&company.ledger);
        PdTokens {
            daily: company.config.daily_tokens,
            spent: ledger.spent,
            refused: ledger.refused,
        }
    }

    /// Starts a new day: the budget is whole again, as after midnight server time.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn new_day(&self, company: &str) {
        *lock(&self.expect(company).ledger) = Ledger::new();
    }

    /// Replaces the company's faults.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn set_faults(&self, company: &str, faults: PdFaults) {
        self.expect(company).gate.set_faults(faults);
    }

    /// Authenticated API requests so far: those let through (`accepted`, injected 500s
    /// included) and those answered 429 by the burst window, the search window or the budget
    /// (`refused`); also at `GET /__sandbox/pipedrive/{company}/requests`.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn request_counts(&self, company: &str) -> kit::RequestCounts {
        self.expect(company).gate.counts()
    }

    /// Requests checked against the v2 and v1 specs, with the invalid ones; also at
    /// `GET /__sandbox/pipedrive/{company}/violations`.
    ///
    /// # Panics
    /// If no company has this name.
    pub fn spec_checks(&self, company: &str) -> SpecChecks {
        lock(self.expect(company).gate.spec_checks()).clone()
    }

    /// Names of all companies, sorted.
    pub fn company_names(&self) -> Vec<String> {
        self.companies.names()
    }

    /// The index page's section: each company's counts, tokens and latest persons.
    pub(crate) fn index_section(&self) -> String {
        use crate::index::escape;
        use std::fmt::Write as _;
        let mut html = String::from("<h2>Pipedrive</h2>");
        let companies = self.companies.all();
        if companies.is_empty() {
            html.push_str(
                "<p>No companies. Start with <code>serve --pipedrive-company NAME:TOKEN</code>.</p>",
            );
        }
        for company in companies {
            let name = escape(&company.config.name);
            let snapshot = company.data().snapshot();
            let tokens = self.tokens(&company.config.name);
            let counts = company.gate.counts();
            let checks = lock(company.gate.spec_checks()).clone();
            let _ = write!(
                html,
                "<h3>{name}</h3><p>{} persons, {} organizations, {} deals, {} notes; {} of {} tokens \
                 spent today; {} API requests accepted, {} refused; {} checked against the \
                 specs, <a href=\"/__sandbox/pipedrive/{name}/violations\">{} invalid</a>. \
                 API base: <code>{}</code> \
                 &middot; <a href=\"/__sandbox/pipedrive/{name}\">state as JSON</a></p>",
                snapshot.live(PdEntity::Person).len(),
                snapshot.live(PdEntity::Organization).len(),
                snapshot.live(PdEntity::Deal).len(),
                snapshot.notes.len(),
                tokens.spent,
                tokens.daily,
                counts.accepted,
                counts.refused,
                checks.checked,
                checks.invalid,
                escape(&self.base_url(&company.config.name)),
            );
            let persons = snapshot.live(PdEntity::Person);
            if persons.is_empty() {
                continue;
            }
            html.push_str(
                "<table><tr><th>id</th><th>name</th><th>emails</th><th>updated</th></tr>",
            );
            for person in persons.iter().rev().take(20) {
                let emails: Vec<&str> = person["emails"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["value"].as_str())
                    .collect();
                let _ = write!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    person["id"],
                    escape(person["name"].as_str().unwrap_or_default()),
                    escape(&emails.join(", ")),
                    escape(person["update_time"].as_str().unwrap_or_default()),
                );
            }
            html.push_str("</table>");
        }
        html
    }

    fn expect(&self, name: &str) -> Arc<Company> {
        self.companies.expect("Pipedrive company", name)
    }
}

impl fmt::Debug for Pipedrive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipedrive")
            .field("base_url", &self.companies.base_url())
            .field("companies", &self.company_names())
            .finish()
    }
}
