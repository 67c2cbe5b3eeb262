//! AC's event tracking: the v3 switch and event names (`/eventTracking`,
//! `/eventTrackingEvents`), and `POST https://trackcmp.net/event`, served here as
//! `/activecampaign/{account}/trackcmp/event`.
//!
//! trackcmp is another host than the v3 API: it authenticates with the form's `actid` and
//! `key` rather than `Api-Token`, so it sits outside the v3 gatekeeper and its requests are
//! not in `request_count` (they are counted in `tracking_request_count`) nor under the v3
//! rate limit (AC documents no limit for it). Its answer is always HTTP 200; `success` says
//! whether the event was accepted. The failure messages are not in the docs (which show only
//! `{"success":1,"message":"Event spawned"}`; AC's sample client checks `success`); these
//! say what went wrong.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::error::ApiError;
use super::{wire, Account, ActiveCampaign};
use crate::kit::Tenant as _;

/// trackcmp's limit on event names.
const MAX_EVENT_NAME: usize = 32;

fn refused(message: &str) -> Response {
    (
        StatusCode::OK,
        Json(json!({"success": 0, "message": message})),
    )
        .into_response()
}

/// `POST /activecampaign/{account}/trackcmp/event`, form-encoded `actid`, `key`, `event`,
/// `eventdata` (optional) and `visit` (`{"email": "..."}` as JSON text).
pub(crate) async fn track_event(
    State(ac): State<ActiveCampaign>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(account) = ac.account(&name) else {
        return ApiError::unknown_account(&name).into_response();
    };
    account.count_tracking_request();
    let latency = account.faults().latency_ms;
    if latency > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(latency)).await;
    }
    let form: HashMap<String, String> = form_fields(&body);
    let field = |key: &str| form.get(key).map(String::as_str).unwrap_or_default();
    if !account.tracking_credentials_match(field("actid"), field("key")) {
        tracing::info!(
            account = account.name(),
            "Refused a tracked event: wrong actid or key"
        );
        return refused("Invalid actid or key");
    }
    let event = field("event").trim().to_owned();
    if event.is_empty() {
        return refused("The event name is required");
    }
    if event.chars().count() > MAX_EVENT_NAME {
        return refused("The event name may have at most 32 characters");
    }
    let visit: Value = serde_json::from_str(field("visit")).unwrap_or(Value::Null);
    let Some(email) = visit.get("email").and_then(Value::as_str).map(str::trim) else {
        return refused("visit must be JSON with the contact's email, e.g. {\"email\":\"a@b.c\"}");
    };
    let eventdata = form.get("eventdata").cloned().filter(|d| !d.is_empty());
    let mut data = account.data();
    if !data.ecom.tracking_enabled {
        return refused("Event tracking is disabled for this account");
    }
    let contact = data.contact_id_by_email(email).map(|id| id.to_string());
    data.ecom.track(event, eventdata, email.to_owned(), contact);
    (
        StatusCode::OK,
        Json(json!({"success": 1, "message": "Event spawned"})),
    )
        .into_response()
}

/// `application/x-www-form-urlencoded` fields; a repeated field keeps its last value.
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let decode = |text: &str| -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%' && i + 2 < bytes.len())
                .then(|| std::str::from_utf8(&bytes[i + 1..i + 3]).ok())
                .flatten()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok());
            match (bytes[i], escaped) {
                (_, Some(byte)) => {
                    out.push(byte);
                    i += 2;
                }
                (b'+', None) => out.push(b' '),
                (other, None) => out.push(other),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// `GET /eventTracking` → `{"eventTracking": {"enabled": bool}}`.
pub(crate) async fn status(Extension(account): Extension<Arc<Account>>) -> Response {
    let enabled = account.data().ecom.tracking_enabled;
    Json(json!({"eventTracking": {"enabled": enabled}})).into_response()
}

/// `PUT /eventTracking` `{"eventTracking": {"enabled": bool}}`.
pub(crate) async fn set_status(
    Extension(account): Extension<Arc<Account>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let settings = wire::wrapped(&body, "eventTracking")?;
    let enabled = match wire::text(&settings, "enabled") {
        Some(flag) => flag == "1" || flag.eq_ignore_ascii_case("true"),
        None => return Err(ApiError::field_missing("eventTracking", "enabled")),
    };
    account.data().ecom.tracking_enabled = enabled;
    Ok(Json(json!({"eventTracking": {"enabled": enabled}})).into_response())
}

/// `GET /eventTrackingEvents`: names only.
pub(crate) async fn list_names(Extension(account): Extension<Arc<Account>>) -> Response {
    let data = account.data();
    let names: Vec<Value> = data
        .ecom
        .event_names
        .iter()
        .map(|n| json!({"name": n}))
        .collect();
    let total = names.len();
    Json(json!({"eventTrackingEvents": names, "meta": {"total": total}})).into_response()
}

/// `POST /eventTrackingEvents` `{"eventTrackingEvent": {"name": ...}}` → 201; an existing
/// name is accepted again rather than duplicated.
pub(crate) async fn create_name(
    Extension(account): Extension<Arc<Account>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let event = wire::wrapped(&body, "eventTrackingEvent")?;
    let name = wire::text(&event, "name")
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::field_missing("eventTrackingEvent", "name"))?;
    if name.chars().count() > MAX_EVENT_NAME {
        return Err(ApiError::field_invalid(
            "name",
            "The event name may have at most 32 characters.",
        ));
    }
    let mut data = account.data();
    if !data.ecom.event_names.contains(&name) {
        data.ecom.event_names.push(name.clone());
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({"eventTrackingEvent": {"name": name}})),
    )
        .into_response())
}

/// `DELETE /eventTrackingEvents/{eventName}`.
pub(crate) async fn delete_name(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Path<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let name = params.get("name").cloned().unwrap_or_default();
    let mut data = account.data();
    let before = data.ecom.event_names.len();
    data.ecom.event_names.retain(|n| *n != name);
    if data.ecom.event_names.len() == before {
        return Err(ApiError::no_result("EventTrackingEvent", name));
    }
    Ok(Json(json!({})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_percent_and_plus_decoded() {
        let fields = form_fields(
            b"actid=123&event=Stripe+event+received&visit=%7B%22email%22%3A%22a%40b.io%22%7D&bad=%zz",
        );
        assert_eq!(fields["actid"], "123");
        assert_eq!(fields["event"], "Stripe event received");
        assert_eq!(fields["visit"], r#"{"email":"a@b.io"}"#);
        assert_eq!(fields["bad"], "%zz");
    }
}
