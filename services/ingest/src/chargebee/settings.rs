//! What one Chargebee connection's poller needs to know, with the defaults billsync uses.

use billsync_config::ChargebeeConnection;
use secrecy::SecretString;
use std::time::Duration;

/// Chargebee's limit on test sites and live Starter sites. Performance (1000) and
/// Enterprise (3500) sites may set more once the connection has a `requests_per_minute` key.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 150;
/// How far before the cursor each poll starts again. `occurred_at` has one-second resolution
/// and Chargebee may make an event visible a little after it occurred, so events at or just
/// before the cursor are fetched again; JetStream drops the repeats by `Nats-Msg-Id`.
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(60);
/// The Events API's maximum page size.
pub const MAX_PAGE_SIZE: usize = 100;
/// How long a lease lasts unless renewed; a poller whose holder died is taken over after it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts of one page request (429, 5xx, timeouts) before the poll gives up until the next.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;

/// One connection's poller settings.
#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    /// The connection's name: its KV key, subject token and metrics label.
    pub name: String,
    pub site: String,
    /// `https://{site}.chargebee.com`, or the sandbox's `http://127.0.0.1:PORT/chargebee/{site}`;
    /// requests go to `{base_url}/api/v2/...`.
    pub base_url: String,
    pub api_key: SecretString,
    pub poll_interval: Duration,
    /// When false, polls run only on sync-now (seed 004: "the automatic sync can be disabled").
    pub auto_sync: bool,
    pub requests_per_minute: u32,
    pub overlap: Duration,
    pub page_size: usize,
    pub lease_ttl: Duration,
    pub request_timeout: Duration,
    pub max_attempts: u32,
}

impl ConnectionSettings {
    /// Settings with billsync's defaults for everything but the connection's identity.
    pub fn new(name: &str, site: &str, base_url: &str, api_key: SecretString) -> Self {
        Self {
            name: name.to_string(),
            site: site.to_string(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            poll_interval: Duration::from_secs(60),
            auto_sync: true,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            overlap: DEFAULT_OVERLAP,
            page_size: MAX_PAGE_SIZE,
            lease_ttl: DEFAULT_LEASE_TTL,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// Settings of a configured connection (its secret must have been resolved by
    /// `Config::load`).
    pub fn from_config(connection: &ChargebeeConnection) -> Self {
        let base_url = connection
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}.chargebee.com", connection.site));
        let mut settings = Self::new(
            &connection.name,
            &connection.site,
            &base_url,
            SecretString::from(connection.api_key.expose().to_string()),
        );
        settings.poll_interval = Duration::from_secs(connection.poll_interval_secs.max(1));
        settings.auto_sync = connection.auto_sync;
        settings.requests_per_minute = connection.requests_per_minute;
        settings.overlap = Duration::from_secs(connection.poll_overlap_secs);
        settings
    }
}
