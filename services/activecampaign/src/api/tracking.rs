//! ActiveCampaign's event tracking: `POST https://trackcmp.net/event`, form-encoded, keyed by
//! the account's `actid` and Event Key (not the v3 `Api-Token`).
//!
//! trackcmp is another host than the v3 API and AC documents no rate limit for it, so these
//! requests do not take slots of the account's 5 requests/s.

use super::client::{classify, describe, urlencode};
use billsync_crm_http::{reword, Call, CrmTransport, Vendor};
use billsync_events::FailureClass;
use billsync_worker::DeliveryError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::time::Duration;

/// Where AC's event tracking lives.
pub const DEFAULT_TRACKING_URL: &str = "https://trackcmp.net";

/// trackcmp, as the transport knows it: AC's answers, except that a refused credential is
/// the actid and Event Key, not the v3 API token `classify` would send the operator to.
pub struct EventTrackingApi;

impl Vendor for EventTrackingApi {
    const DESTINATION: &'static str = "activecampaign";
    const NAME: &'static str = "ActiveCampaign's event tracking";

    fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), DeliveryError> {
        if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return classify(status, headers, body);
        }
        let detail: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        Err(DeliveryError::Permanent {
            class: FailureClass::Configuration,
            message: format!(
                "ActiveCampaign's event tracking refused the Event Key or actid: {}; compare \
                 them with Settings > Tracking > Event Tracking",
                describe(&detail, body)
            ),
            http_status: Some(status.as_u16()),
            detail,
        })
    }
}

pub struct EventTracker {
    /// To `{base}`, unpaced.
    transport: CrmTransport<EventTrackingApi>,
    actid: String,
    key: SecretString,
    /// Where the actid and key are configured, for refusals an operator must fix.
    configured_in: Option<String>,
}

impl EventTracker {
    pub fn new(base_url: &str, actid: &str, key: &str, timeout: Duration) -> Self {
        Self {
            transport: CrmTransport::new(base_url, timeout),
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

    /// Names the destination connection in the request metrics and spans.
    pub fn for_connection(mut self, name: &str) -> Self {
        self.transport = self.transport.for_connection(name);
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
        let sent = self.transport.send(Call::post("/event").form(form)).await;
        let status = match &sent {
            Ok(answer) => Some(answer.status.as_u16()),
            Err(
                DeliveryError::Retryable { http_status, .. }
                | DeliveryError::Permanent { http_status, .. },
            ) => *http_status,
        };
        if let Some(status) = status {
            metrics::counter!("billsync_activecampaign_tracked_events_total",
                "status" => status.to_string())
            .increment(1);
        }
        sent.map(|_| ()).map_err(|error| {
            let settings = match &error {
                DeliveryError::Permanent {
                    class: FailureClass::Configuration,
                    ..
                } => format!("; billsync reads them from {}", self.settings()),
                _ => String::new(),
            };
            reword(error, |message| {
                format!("tracking event {name:?}: {message}{settings}")
            })
        })
    }
}
