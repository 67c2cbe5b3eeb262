//! ActiveCampaign's event tracking: `POST https://trackcmp.net/event`, form-encoded, keyed by
//! the account's `actid` and Event Key (not the v3 `Api-Token`).
//!
//! trackcmp is another host than the v3 API and AC documents no rate limit for it, so these
//! requests do not take slots of the account's 5 requests/s.

use super::client::{classify, describe, transport_error, urlencode};
use billsync_events::FailureClass;
use billsync_worker::DeliveryError;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::time::Duration;

/// Where AC's event tracking lives.
pub const DEFAULT_TRACKING_URL: &str = "https://trackcmp.net";

pub struct EventTracker {
    http: reqwest::Client,
    /// `{base}/event`.
    url: String,
    actid: String,
    key: SecretString,
    /// Where the actid and key are configured, for refusals an operator must fix.
    configured_in: Option<String>,
}

impl EventTracker {
    pub fn new(base_url: &str, actid: &str, key: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("billsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with only a timeout and user agent always builds");
        Self {
            http,
            url: format!("{}/event", base_url.trim_end_matches('/')),
            actid: actid.to_string(),
            key: SecretString::from(key.to_string()),
            configured_in: None,
        }
    }

    /// Names the settings the actid and key come from, so that a refusal says what to edit.
    pub fn configured_in(mut self, settings: String) -> Self {
        self.configured_in = Some(settings);
        self
    }

    /// Where the actid and Event Key come from, for messages.
    fn settings(&self) -> &str {
        self.configured_in.as_deref().unwrap_or(
            "the sync's options.track_actid and the connection's event_key \
             (destinations.activecampaign[i].event_key)",
        )
    }

    /// Records event `name` with value `eventdata` on the contact with `email`.
    pub async fn track(
        &self,
        name: &str,
        eventdata: &str,
        email: &str,
    ) -> Result<(), DeliveryError> {
        let visit = serde_json::json!({ "email": email }).to_string();
        let form = [
            ("actid", self.actid.as_str()),
            ("key", self.key.expose_secret()),
            ("event", name),
            ("eventdata", eventdata),
            ("visit", visit.as_str()),
        ]
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
        let response = self
            .http
            .post(&self.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(transport_error)?;
        metrics::counter!("billsync_activecampaign_tracked_events_total",
            "status" => status.as_u16().to_string())
        .increment(1);
        if matches!(
            status,
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN
        ) {
            // trackcmp authenticates with the actid and Event Key, not the v3 API token:
            // `classify` would send the operator to the wrong secret.
            let detail: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(DeliveryError::Permanent {
                class: FailureClass::Configuration,
                message: format!(
                    "tracking event {name:?}: ActiveCampaign's event tracking refused the Event \
                     Key or actid ({}): {}; compare them with Settings > Tracking > Event \
                     Tracking; billsync reads them from {}",
                    status.as_u16(),
                    describe(&detail, &bytes),
                    self.settings()
                ),
                http_status: Some(status.as_u16()),
                detail,
            });
        }
        classify(status, &headers, &bytes).map_err(|error| match error {
            DeliveryError::Retryable {
                message,
                retry_after,
                http_status,
            } => DeliveryError::Retryable {
                message: format!("tracking event {name:?}: {message}"),
                retry_after,
                http_status,
            },
            DeliveryError::Permanent {
                class,
                message,
                http_status,
                detail,
            } => {
                let settings = match class {
                    FailureClass::Configuration => {
                        format!("; billsync reads them from {}", self.settings())
                    }
                    _ => String::new(),
                };
                DeliveryError::Permanent {
                    class,
                    message: format!("tracking event {name:?}: {message}{settings}"),
                    http_status,
                    detail,
                }
            }
        })
    }
}
