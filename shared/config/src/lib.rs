//! billsync's configuration: one TOML file, layered defaults → file → environment.
//!
//! Secrets never sit in the file: a secret is a reference (`{ env = "NAME" }` or
//! `{ file = "/run/secrets/name" }`) resolved once at load. Every problem is reported with
//! the file, the key and the reason, so a bad deployment fails at start and says what to fix.

mod secret;
mod validate;

pub use secret::SecretRef;
pub use validate::ConfigError;

use billsync_events::{DestinationKind, SourceKind};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration of one billsync deployment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub nats: NatsConfig,
    #[serde(default)]
    pub postgres: PostgresConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default)]
    pub ingest: IngestConfig,
    #[serde(default)]
    pub errors: ErrorsConfig,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub sources: Sources,
    #[serde(default)]
    pub destinations: Destinations,
    #[serde(default)]
    pub syncs: Vec<SyncConfig>,
    /// Where the file came from, for messages.
    #[serde(skip)]
    pub origin: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub url: String,
    /// Prefix of every stream, subject, consumer and bucket; lets several deployments (or
    /// tests) share one NATS account without seeing each other.
    pub prefix: String,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop duplicates.
    pub duplicate_window_secs: u64,
    /// Stream replicas (1 on a single server; 3 on a JetStream cluster).
    pub replicas: usize,
    /// How long events stay in the stream, for replays.
    pub retention_days: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "billsync".into(),
            duplicate_window_secs: 3600,
            replicas: 1,
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    pub url: String,
    pub max_connections: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: "postgres://postgres@127.0.0.1:5432/billsync".into(),
            max_connections: 5,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// An `EnvFilter` directive (`info`, `billsync=debug,info`); `RUST_LOG` wins when set.
    pub log_level: String,
    /// OTLP/gRPC endpoint (`http://otel-collector:4317`); no traces are exported when unset.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
            otlp_endpoint: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    /// Webhook bodies above this size are refused with 413.
    pub max_body_bytes: usize,
    /// How long a webhook waits for JetStream's ack before answering 503.
    pub publish_timeout_ms: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: ([0, 0, 0, 0], 8080).into(),
            max_body_bytes: 512 * 1024,
            publish_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorsConfig {
    pub listen: SocketAddr,
    /// Bearer token for the admin API and web page.
    pub admin_token: Option<SecretRef>,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        Self {
            listen: ([0, 0, 0, 0], 8090).into(),
            admin_token: None,
        }
    }
}

/// Settings every destination worker shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Where each worker serves `/metrics`, `/healthz`, `/readyz`.
    pub activecampaign_listen: SocketAddr,
    pub zoho_listen: SocketAddr,
    pub pipedrive_listen: SocketAddr,
    /// Attempts of a transient failure (429, 5xx, timeout) before it becomes a failure record.
    pub max_attempts: u32,
    /// Messages a worker holds unacknowledged at once, across all records.
    pub max_in_flight: usize,
    /// How long JetStream waits for an ack before redelivering to another replica.
    pub ack_wait_secs: u64,
    /// Timeout of one CRM request.
    pub request_timeout_ms: u64,
    /// How long a worker holds back an event that ingest routes to it while its own
    /// configuration has no sync from the event's source (a rollout half done), before
    /// recording it as a configuration error.
    pub unknown_sync_wait_secs: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            activecampaign_listen: ([0, 0, 0, 0], 8091).into(),
            zoho_listen: ([0, 0, 0, 0], 8092).into(),
            pipedrive_listen: ([0, 0, 0, 0], 8093).into(),
            max_attempts: 8,
            max_in_flight: 512,
            ack_wait_secs: 60,
            request_timeout_ms: 10_000,
            unknown_sync_wait_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    #[serde(default)]
    pub stripe: Vec<StripeConnection>,
    #[serde(default)]
    pub chargebee: Vec<ChargebeeConnection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncType {
    /// "Sync new records only".
    #[default]
    NewOnly,
    /// "Sync historical records and capture new records".
    HistoricalAndNew,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConnection {
    pub name: String,
    /// Every signing secret currently valid for this endpoint; two during a rotation.
    pub webhook_secrets: Vec<SecretRef>,
    /// Secret key, needed for historical backfills only.
    #[serde(default)]
    pub api_key: Option<SecretRef>,
    #[serde(default = "default_stripe_api_base")]
    pub api_base: String,
    #[serde(default = "default_signature_tolerance")]
    pub signature_tolerance_secs: u64,
    #[serde(default)]
    pub sync_type: SyncType,
    /// `false` unlinks the connection: webhooks are answered and dropped, nothing is
    /// published or written until it is linked again (from then on).
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_stripe_api_base() -> String {
    "https://api.stripe.com".into()
}

fn default_signature_tolerance() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChargebeeConnection {
    pub name: String,
    pub site: String,
    pub api_key: SecretRef,
    /// Defaults to `https://{site}.chargebee.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default = "default_poll_interval")]
    pub poll_interval_secs: u64,
    #[serde(default = "default_true")]
    pub auto_sync: bool,
    /// The site's API limit: 150 on test and Starter sites, 1000 Performance, 3500 Enterprise.
    #[serde(default = "default_chargebee_rate")]
    pub requests_per_minute: u32,
    /// How far before the cursor each poll starts again (events become visible late and
    /// `occurred_at` has one-second resolution); must be shorter than the stream's
    /// duplicate window, which drops the repeats.
    #[serde(default = "default_poll_overlap")]
    pub poll_overlap_secs: u64,
    /// `false` unlinks the site: it is not polled (its cursor is dropped, so polling starts
    /// from now when it is linked again) and nothing of it is written.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_chargebee_rate() -> u32 {
    150
}

fn default_poll_overlap() -> u64 {
    60
}

fn default_poll_interval() -> u64 {
    60
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destinations {
    #[serde(default)]
    pub activecampaign: Vec<ActiveCampaignConnection>,
    #[serde(default)]
    pub zoho: Vec<ZohoConnection>,
    #[serde(default)]
    pub pipedrive: Vec<PipedriveConnection>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveCampaignConnection {
    pub name: String,
    /// The account's API URL, `https://{account}.api-us1.com` (billsync appends `/api/3`).
    pub base_url: String,
    pub api_token: SecretRef,
    /// ActiveCampaign allows 5 requests/s per account, shared by every key.
    #[serde(default = "default_ac_rate")]
    pub requests_per_second: u32,
    /// Settings > Tracking > Event Tracking "Event Key", for syncs with `track_events = true`.
    #[serde(default)]
    pub event_key: Option<SecretRef>,
}

fn default_ac_rate() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZohoConnection {
    pub name: String,
    /// Zoho's data centre: `com` (the default), `eu`, `in`, `com.au`, `jp`, `com.cn`, `sa`,
    /// `uk` or `ca`; ignored when `accounts_url` is set.
    #[serde(default)]
    pub data_center: Option<String>,
    /// The accounts server, instead of the data centre's (the sandbox's, a proxy).
    #[serde(default)]
    pub accounts_url: Option<String>,
    pub client_id: SecretRef,
    pub client_secret: SecretRef,
    pub refresh_token: SecretRef,
    /// API credits per rolling 24 h of the organisation's edition (Free 5,000; Standard
    /// 50,000 + 250 per user; Professional + 500; Enterprise + 1,000).
    #[serde(default = "default_zoho_credits")]
    pub credits_per_day: u64,
    /// Concurrent calls allowed to the organisation (5 to 25 by edition).
    #[serde(default = "default_zoho_concurrency")]
    pub concurrency: u32,
}

/// Zoho's data centres and their accounts servers.
pub const ZOHO_DATA_CENTERS: [(&str, &str); 9] = [
    ("com", "https://accounts.zoho.com"),
    ("eu", "https://accounts.zoho.eu"),
    ("in", "https://accounts.zoho.in"),
    ("com.au", "https://accounts.zoho.com.au"),
    ("jp", "https://accounts.zoho.jp"),
    ("com.cn", "https://accounts.zoho.com.cn"),
    ("sa", "https://accounts.zoho.sa"),
    ("uk", "https://accounts.zoho.uk"),
    ("ca", "https://accounts.zohocloud.ca"),
];

impl ZohoConnection {
    /// The accounts server: `accounts_url`, else the data centre's (validated at load).
    pub fn accounts_url(&self) -> String {
        if let Some(url) = &self.accounts_url {
            return url.trim_end_matches('/').to_string();
        }
        let center = self.data_center.as_deref().unwrap_or("com");
        ZOHO_DATA_CENTERS
            .iter()
            .find(|(name, _)| *name == center)
            .map_or(ZOHO_DATA_CENTERS[0].1, |(_, url)| url)
            .to_string()
    }
}

fn default_zoho_credits() -> u64 {
    50_000
}

fn default_zoho_concurrency() -> u32 {
    10
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipedriveConnection {
    pub name: String,
    /// The company's domain, `https://{company}.pipedrive.com` (billsync appends `/api/v2`
    /// or `/v1`).
    pub base_url: String,
    pub api_token: SecretRef,
    /// Tokens per day: 30,000 × plan multiplier (Lite 1, Growth 2, Premium 5, Ultimate 7) ×
    /// seats, shared by every app of the company.
    #[serde(default = "default_pipedrive_tokens")]
    pub daily_token_budget: u64,
    /// The burst limit per API token and rolling 2 s window (Lite 20 … Ultimate 120).
    #[serde(default = "default_pipedrive_burst")]
    pub requests_per_2s: u32,
}

fn default_pipedrive_tokens() -> u64 {
    30_000
}

fn default_pipedrive_burst() -> u32 {
    20
}

/// One flow: a source connection feeding a destination connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    pub source: String,
    pub destination: String,
    /// Which resources feed this sync (`customer`, `subscription`, `invoice`, `charge`,
    /// `checkout_session`); all when empty.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Destination-specific options (lists, delete behaviour, ...), read by the worker.
    #[serde(default)]
    pub options: BTreeMap<String, toml::Value>,
    /// Field mapping overrides and extra fields: destination field → source expression.
    #[serde(default)]
    pub mapping: BTreeMap<String, toml::Value>,
    /// `false` unlinks the sync: nothing of the source is routed to or written by the
    /// destination, and a Chargebee site with no other sync in force is not polled.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

/// Which services a process runs, deciding which secrets it must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every service (`billsync up`) or a tool that checks the whole file.
    All,
    Ingest,
    Destination(DestinationKind),
    Errors,
}

impl Role {
    fn needs_sources(self) -> bool {
        matches!(self, Role::All | Role::Ingest)
    }

    fn needs(self, destination: DestinationKind) -> bool {
        self == Role::All || self == Role::Destination(destination)
    }

    fn needs_admin(self) -> bool {
        matches!(self, Role::All | Role::Errors)
    }
}

/// A connection as the rest of billsync sees it: its kind and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionKind {
    Source(SourceKind),
    Destination(DestinationKind),
}

impl Config {
    /// Reads, layers and validates the file at `path`, requiring every secret.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_for(path, Role::All)
    }

    /// Like [`Config::load`], requiring only the secrets `role` uses.
    pub fn load_for(path: &Path, role: Role) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(path, "", format!("cannot read the file: {e}")))?;
        Config::from_toml_for(&text, path, role)
    }

    /// Parses `text` as if read from `origin`, applies environment overrides and validates.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        Config::from_toml_for(text, origin, Role::All)
    }

    pub fn from_toml_for(text: &str, origin: &Path, role: Role) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| key_at(text, s.start)).unwrap_or_default();
            let reason = match (e.message(), e.span()) {
                // toml has no words for some syntax errors (a control character in a
                // comment): say where it is.
                ("", Some(span)) => {
                    let (line, column) = line_and_column(text, span.start);
                    format!("not valid TOML at line {line}, column {column}")
                }
                ("", None) => "not valid TOML".to_string(),
                (message, _) => message.to_string(),
            };
            ConfigError::new(origin, &key, reason)
        })?;
        config.origin = origin.to_path_buf();
        config.apply_env(|name| std::env::var(name).ok())?;
        config.validate(role)?;
        Ok(config)
    }

    /// Environment overrides, the last layer: deployments change these without a new file.
    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(url) = var("BILLSYNC_NATS_URL") {
            self.nats.url = url;
        }
        if let Some(prefix) = var("BILLSYNC_NATS_PREFIX") {
            self.nats.prefix = prefix;
        }
        if let Some(url) = var("BILLSYNC_POSTGRES_URL").or_else(|| var("DATABASE_URL")) {
            self.postgres.url = url;
        }
        if let Some(format) = var("BILLSYNC_LOG_FORMAT") {
            match format.as_str() {
                "json" => self.telemetry.log_format = LogFormat::Json,
                "pretty" => self.telemetry.log_format = LogFormat::Pretty,
                other => {
                    return Err(ConfigError::new(
                        &self.origin,
                        "telemetry.log_format",
                        format!(
                            "environment variable BILLSYNC_LOG_FORMAT is {other:?}; use \"json\" or \"pretty\""
                        ),
                    ))
                }
            }
        }
        if let Some(endpoint) =
            var("BILLSYNC_OTLP_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        {
            self.telemetry.otlp_endpoint = Some(endpoint);
        }
        Ok(())
    }

    pub fn syncs_to<'a>(&'a self, destination: &'a str) -> impl Iterator<Item = &'a SyncConfig> {
        self.syncs
            .iter()
            .filter(move |s| s.destination == destination)
    }

    /// Whether the source connection `name` is switched on (`enabled`, the default).
    pub fn source_enabled(&self, name: &str) -> bool {
        let stripe = self.sources.stripe.iter().find(|c| c.name == name);
        let chargebee = self.sources.chargebee.iter().find(|c| c.name == name);
        stripe.map(|c| c.enabled).or(chargebee.map(|c| c.enabled)) != Some(false)
    }

    /// Whether `sync` is in force: switched on, from a source switched on.
    pub fn sync_active(&self, sync: &SyncConfig) -> bool {
        sync.enabled && self.source_enabled(&sync.source)
    }

    /// The syncs in force ([`Config::sync_active`]).
    pub fn active_syncs(&self) -> impl Iterator<Item = &SyncConfig> {
        self.syncs.iter().filter(|s| self.sync_active(s))
    }

    /// Whether ingest takes events of source connection `name`: it is switched on, and a
    /// sync of it is in force or it has none yet (its events are kept for a sync added
    /// later). An unlinked source is not polled, and its webhooks are answered and dropped.
    pub fn source_linked(&self, name: &str) -> bool {
        let mut syncs = self.syncs.iter().filter(|s| s.source == name).peekable();
        self.source_enabled(name) && (syncs.peek().is_none() || syncs.any(|s| self.sync_active(s)))
    }

    /// Every destination connection, with its kind, in the configuration's order.
    pub fn destination_connections(&self) -> Vec<(DestinationKind, String)> {
        let d = &self.destinations;
        let named = |kind: DestinationKind| move |name: &String| (kind, name.clone());
        d.activecampaign
            .iter()
            .map(|c| &c.name)
            .map(named(DestinationKind::Activecampaign))
            .chain(
                d.zoho
                    .iter()
                    .map(|c| &c.name)
                    .map(named(DestinationKind::Zoho)),
            )
            .chain(
                d.pipedrive
                    .iter()
                    .map(|c| &c.name)
                    .map(named(DestinationKind::Pipedrive)),
            )
            .collect()
    }

    pub fn connection_kind(&self, name: &str) -> Option<ConnectionKind> {
        if self.sources.stripe.iter().any(|c| c.name == name) {
            return Some(ConnectionKind::Source(SourceKind::Stripe));
        }
        if self.sources.chargebee.iter().any(|c| c.name == name) {
            return Some(ConnectionKind::Source(SourceKind::Chargebee));
        }
        if self
            .destinations
            .activecampaign
            .iter()
            .any(|c| c.name == name)
        {
            return Some(ConnectionKind::Destination(DestinationKind::Activecampaign));
        }
        if self.destinations.zoho.iter().any(|c| c.name == name) {
            return Some(ConnectionKind::Destination(DestinationKind::Zoho));
        }
        if self.destinations.pipedrive.iter().any(|c| c.name == name) {
            return Some(ConnectionKind::Destination(DestinationKind::Pipedrive));
        }
        None
    }

    /// Every secret value in the configuration, so that logs and records can be scrubbed.
    pub fn secret_values(&self) -> Vec<String> {
        let mut refs: Vec<&SecretRef> = Vec::new();
        refs.extend(self.errors.admin_token.iter());
        for c in &self.sources.stripe {
            refs.extend(c.webhook_secrets.iter());
            refs.extend(c.api_key.iter());
        }
        refs.extend(self.sources.chargebee.iter().map(|c| &c.api_key));
        for c in &self.destinations.activecampaign {
            refs.push(&c.api_token);
            refs.extend(c.event_key.iter());
        }
        for c in &self.destinations.zoho {
            refs.extend([&c.client_id, &c.client_secret, &c.refresh_token]);
        }
        refs.extend(self.destinations.pipedrive.iter().map(|c| &c.api_token));
        refs.iter()
            .filter_map(|r| r.value())
            .map(str::to_owned)
            .collect()
    }
}

/// The dotted key whose value starts at byte `offset`, best effort, for parse errors.
/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The dotted key a parse error at byte `offset` is about: the key or table header on the
/// error's line (an unknown key's error points at the key itself), else the key of the value
/// the line continues, within the table it is in.
/// The name in a `[table]` or `[[array]]` header line, which may end with a comment.
fn table_header(line: &str) -> Option<&str> {
    let (open, close) = if line.starts_with("[[") {
        (2, "]]")
    } else if line.starts_with('[') {
        (1, "]")
    } else {
        return None;
    };
    let mut quote = None;
    for (i, c) in line.char_indices().skip(open) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, ']') => return line[i..].starts_with(close).then(|| line[open..i].trim()),
            _ => {}
        }
    }
    None
}

fn key_at(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let mut table = String::new();
    let mut key = String::new();
    for line in text[..line_end].lines() {
        let line = line.trim();
        if let Some(header) = table_header(line) {
            table = header.to_string();
            key.clear();
        } else if let Some((k, _)) = line.split_once('=') {
            // Not a comment, nor the inside of a value that spans lines.
            let k = k.trim();
            if !k.is_empty() && !k.starts_with(['#', '{', '}', '[', ']', ',']) {
                key = k.to_string();
            }
        }
    }
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key,
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests;
