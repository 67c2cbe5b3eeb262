//! HTTP surface of the Chargebee emulator: the v2 API under `/chargebee/{site}/api/v2` and
//! the unauthenticated `/__sandbox/chargebee/{site}/...` controls (state read-back, faults,
//! and the changes a person makes in Chargebee's web app).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::list::{include_deleted, Paging, TextFilter, TimeFilter};
use super::state::{
    CbCustomerInput, CbInvoiceInput, CbSandboxError, CbSubscriptionInput, SiteData,
};
use super::{CbSite, Chargebee, Site};
use crate::kit;

type Reply = Result<Response, ApiError>;
type Params = Path<HashMap<String, String>>;
type QueryMap = Query<HashMap<String, String>>;

/// The v2 API, to be nested at `/chargebee/{site}/api/v2`.
pub(crate) fn api(cb: Chargebee) -> Router {
    Router::new()
        .route("/events", get(list_events))
        .route("/events/{id}", get(get_event))
        .route("/customers", get(list_customers))
        .route("/customers/{id}", get(get_customer))
        .route("/subscriptions", get(list_subscriptions))
        .route("/subscriptions/{id}", get(get_subscription))
        .route("/invoices", get(list_invoices))
        .route("/invoices/{id}", get(get_invoice))
        .fallback(route_not_found)
        .method_not_allowed_fallback(route_not_found)
        .layer(middleware::from_fn_with_state(
            cb,
            kit::gatekeeper::<Chargebee>,
        ))
}

/// `/__sandbox/chargebee/{site}/...`: read-back, faults and data changes, without auth.
pub(crate) fn control(cb: Chargebee) -> Router {
    Router::new()
        .route(
            "/__sandbox/chargebee/{site}",
            get(read_snapshot).put(put_site),
        )
        .route(
            "/__sandbox/chargebee/{site}/customers",
            post(control_create_customer),
        )
        .route(
            "/__sandbox/chargebee/{site}/customers/{id}",
            post(control_update_customer).delete(control_delete_customer),
        )
        .route(
            "/__sandbox/chargebee/{site}/customers/{id}/subscriptions",
            post(control_create_subscription),
        )
        .route(
            "/__sandbox/chargebee/{site}/customers/{id}/invoices",
            post(control_create_invoice),
        )
        .route(
            "/__sandbox/chargebee/{site}/subscriptions/{id}",
            post(control_update_subscription).delete(control_delete_subscription),
        )
        .route(
            "/__sandbox/chargebee/{site}/invoices/{id}",
            post(control_update_invoice),
        )
        .with_state(cb.clone())
        .merge(kit::control_routes(cb))
}

async fn route_not_found() -> ApiError {
    ApiError::route_not_found()
}

/// The user name of an `Authorization: Basic ...` header, Chargebee's API key.
pub(crate) fn basic_auth_user(value: Option<&header::HeaderValue>) -> Option<String> {
    let encoded = value?.to_str().ok()?.strip_prefix("Basic ")?.trim();
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    Some(
        decoded
            .split_once(':')
            .map_or(decoded.as_str(), |(user, _)| user)
            .to_string(),
    )
}

/// Standard base64 (padding optional); the sandbox has no base64 dependency for one header.
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in input.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn reply(body: Value) -> Response {
    (StatusCode::OK, Json(body)).into_response()
}

fn list_reply(
    key: &str,
    page: Vec<Value>,
    next: Option<String>,
    extra: impl Fn(&Value) -> Option<(String, Value)>,
) -> Response {
    let list: Vec<Value> = page
        .into_iter()
        .map(|record| {
            let mut entry = json!({});
            if let Some((k, v)) = extra(&record) {
                entry[k] = v;
            }
            entry[key] = record;
            entry
        })
        .collect();
    let mut body = json!({ "list": list });
    if let Some(next) = next {
        body["next_offset"] = json!(next);
    }
    reply(body)
}

fn no_extra(_: &Value) -> Option<(String, Value)> {
    None
}

// ----- events -------------------------------------------------------------------------

/// `GET /events`: `occurred_at[after|before|on|between]`, `event_type[is|in|...]`,
/// `source[...]`, `sort_by[asc|desc]=occurred_at` (newest first by default).
async fn list_events(Extension(site): Extension<Arc<Site>>, Query(query): QueryMap) -> Reply {
    let paging = Paging::parse(&query, &["occurred_at"])?;
    let occurred = TimeFilter::parse(&query, "occurred_at")?;
    let types = TextFilter::parse(&query, "event_type");
    let sources = TextFilter::parse(&query, "source");
    let data = site.data();
    let rows = data
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            occurred.matches(e.occurred_at)
                && types.matches(Some(&e.event_type))
                && sources.matches(Some(&e.source))
        })
        .map(|(seq, e)| (e.occurred_at, seq as u64, e))
        .collect();
    let (page, next) = paging.page(rows);
    Ok(list_reply("event", page, next, no_extra))
}

async fn get_event(Extension(site): Extension<Arc<Site>>, Path(params): Params) -> Reply {
    let id = params.get("id").cloned().unwrap_or_default();
    let data = site.data();
    let event = data
        .events
        .iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ApiError::resource_not_found("event", &id))?;
    Ok(reply(json!({ "event": event })))
}

// ----- customers, subscriptions, invoices ---------------------------------------------

/// The sort value of a record for `field`, read from its JSON (`created_at`, `updated_at`,
/// `date`).
fn sort_value(record: &Value, field: &str) -> i64 {
    record
        .get(field)
        .and_then(Value::as_i64)
        .unwrap_or_default()
}

fn text<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record.get(field).and_then(Value::as_str)
}

/// Filters and pages one resource's records, given as JSON.
fn list_records(
    query: &HashMap<String, String>,
    records: Vec<(u64, Value)>,
    sortable: &[&str],
    text_filters: &[&str],
    time_filters: &[&str],
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let paging = Paging::parse(query, sortable)?;
    let texts: Vec<(&str, TextFilter)> = text_filters
        .iter()
        .map(|f| (*f, TextFilter::parse(query, f)))
        .collect();
    let times = time_filters
        .iter()
        .map(|f| TimeFilter::parse(query, f).map(|t| (*f, t)))
        .collect::<Result<Vec<_>, _>>()?;
    let deleted_too = include_deleted(query);
    let kept: Vec<(i64, u64, Value)> = records
        .into_iter()
        .filter(|(_, r)| deleted_too || r.get("deleted") != Some(&Value::Bool(true)))
        .filter(|(_, r)| texts.iter().all(|(f, t)| t.matches(text(r, f))))
        .filter(|(_, r)| times.iter().all(|(f, t)| t.matches(sort_value(r, f))))
        .map(|(seq, r)| (sort_value(&r, &paging.sort_field), seq, r))
        .collect();
    Ok(paging.page(kept.iter().map(|(v, s, r)| (*v, *s, r)).collect()))
}

fn as_json<T: serde::Serialize>(rows: impl Iterator<Item = (u64, T)>) -> Vec<(u64, Value)> {
    rows.map(|(seq, r)| (seq, serde_json::to_value(r).expect("records serialize")))
        .collect()
}

/// `GET /customers`: sort by `created_at` (default, newest first) or `updated_at`.
async fn list_customers(Extension(site): Extension<Arc<Site>>, Query(query): QueryMap) -> Reply {
    let records = as_json(site.data().customers.rows());
    let (page, next) = list_records(
        &query,
        records,
        &["created_at", "updated_at"],
        &["id", "email", "first_name", "last_name", "company"],
        &["created_at", "updated_at"],
    )?;
    Ok(list_reply("customer", page, next, no_extra))
}

/// `GET /subscriptions`: each entry carries the subscription and its customer, as
/// Chargebee's list does.
async fn list_subscriptions(
    Extension(site): Extension<Arc<Site>>,
    Query(query): QueryMap,
) -> Reply {
    let data = site.data();
    let records = as_json(data.subscriptions.rows());
    let (page, next) = list_records(
        &query,
        records,
        &["created_at", "updated_at"],
        &["id", "customer_id", "status", "plan_id"],
        &["created_at", "updated_at"],
    )?;
    let customer_of = |sub: &Value| {
        customer_json(&data, text(sub, "customer_id")).map(|c| ("customer".to_string(), c))
    };
    Ok(list_reply("subscription", page, next, customer_of))
}

/// `GET /invoices`: sort by `date` (default, newest first) or `updated_at`.
async fn list_invoices(Extension(site): Extension<Arc<Site>>, Query(query): QueryMap) -> Reply {
    let records = as_json(site.data().invoices.rows());
    let (page, next) = list_records(
        &query,
        records,
        &["date", "updated_at"],
        &["id", "customer_id", "subscription_id", "status"],
        &["date", "updated_at"],
    )?;
    Ok(list_reply("invoice", page, next, no_extra))
}

fn customer_json(data: &SiteData, id: Option<&str>) -> Option<Value> {
    data.customers.get(id?).map(|c| json!(c))
}

fn id_of(params: &HashMap<String, String>) -> String {
    params.get("id").cloned().unwrap_or_default()
}

async fn get_customer(Extension(site): Extension<Arc<Site>>, Path(params): Params) -> Reply {
    let id = id_of(&params);
    let data = site.data();
    let customer = data
        .customers
        .get(&id)
        .filter(|c| !c.deleted)
        .ok_or_else(|| ApiError::resource_not_found("customer", &id))?;
    Ok(reply(json!({ "customer": customer })))
}

async fn get_subscription(Extension(site): Extension<Arc<Site>>, Path(params): Params) -> Reply {
    let id = id_of(&params);
    let data = site.data();
    let sub = data
        .subscriptions
        .get(&id)
        .filter(|s| !s.deleted)
        .ok_or_else(|| ApiError::resource_not_found("subscription", &id))?;
    let customer = customer_json(&data, Some(&sub.customer_id));
    Ok(reply(json!({ "subscription": sub, "customer": customer })))
}

async fn get_invoice(Extension(site): Extension<Arc<Site>>, Path(params): Params) -> Reply {
    let id = id_of(&params);
    let data = site.data();
    let invoice = data
        .invoices
        .get(&id)
        .filter(|i| !i.deleted)
        .ok_or_else(|| ApiError::resource_not_found("invoice", &id))?;
    Ok(reply(json!({ "invoice": invoice })))
}

// ----- /__sandbox ---------------------------------------------------------------------

fn site_param(params: &HashMap<String, String>) -> String {
    params.get("site").cloned().unwrap_or_default()
}

/// Parses a control body; an empty body is the input's default.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::invalid_param("body", &e.to_string()))
}

fn changed<T: serde::Serialize>(result: Result<T, CbSandboxError>) -> Reply {
    Ok(reply(json!(result?)))
}

async fn read_snapshot(State(cb): State<Chargebee>, Path(params): Params) -> Reply {
    let site = site_param(&params);
    let found = cb
        .lookup(&site)
        .ok_or_else(|| ApiError::site_not_found(&site))?;
    let snapshot = found.data().snapshot();
    Ok(reply(json!(snapshot)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteBody {
    api_key: String,
    #[serde(default)]
    requests_per_minute: Option<u32>,
}

/// `PUT /__sandbox/chargebee/{site}` `{api_key, requests_per_minute?}`: adds (or resets) a site.
async fn put_site(State(cb): State<Chargebee>, Path(params): Params, bytes: Bytes) -> Reply {
    let name = site_param(&params);
    let parsed: SiteBody = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid_param("body", &e.to_string()))?;
    if name.is_empty() || parsed.api_key.is_empty() {
        return Err(ApiError::invalid_param(
            "api_key",
            "site and api_key must not be empty",
        ));
    }
    let mut site = CbSite::new(name.clone(), parsed.api_key);
    if let Some(rpm) = parsed.requests_per_minute {
        site.requests_per_minute = rpm;
    }
    let rpm = site.requests_per_minute;
    cb.add_site(site);
    Ok(reply(
        json!({ "site": name, "base_url": cb.base_url(&name), "requests_per_minute": rpm }),
    ))
}

async fn control_create_customer(
    State(cb): State<Chargebee>,
    Path(params): Params,
    bytes: Bytes,
) -> Reply {
    let input: CbCustomerInput = body(&bytes)?;
    changed(cb.create_customer(&site_param(&params), input))
}

async fn control_update_customer(
    State(cb): State<Chargebee>,
    Path(params): Params,
    bytes: Bytes,
) -> Reply {
    let input: CbCustomerInput = body(&bytes)?;
    changed(cb.update_customer(&site_param(&params), &id_of(&params), input))
}

async fn control_delete_customer(State(cb): State<Chargebee>, Path(params): Params) -> Reply {
    changed(cb.delete_customer(&site_param(&params), &id_of(&params)))
}

async fn control_create_subscription(
    State(cb): State<Chargebee>,
    Path(params): Params,
    bytes: Bytes,
) -> Reply {
    let input: CbSubscriptionInput = body(&bytes)?;
    changed(cb.create_subscription(&site_param(&params), &id_of(&params), input))
}

async fn control_update_subscription(
    State(cb): State<Chargebee>,
    Path(params): Params,
    bytes: Bytes,
) -> Reply {
    let input: CbSubscriptionInput = body(&bytes)?;
    changed(cb.update_subscription(&site_param(&params), &id_of(&params), input))
}

async fn control_delete_subscription(State(cb): State<Chargebee>, Path(params): Params) -> Reply {
    changed(cb.delete_subscription(&site_param(&params), &id_of(&params)))
}

async fn control_create_invoice(
    State(cb): State<Chargebee>,
    Path(params): Params,
    bytes: Bytes,
) -> Reply {
    let input: CbInvoiceInput = body(&bytes)?;
    changed(cb.create_invoice(&site_param(&params), &id_of(&params), input))
}

async fn control_update_invoice(
    State(cb): State<Chargebee>,
    Path(params): Params,
    bytes: Bytes,
) -> Reply {
    let input: CbInvoiceInput = body(&bytes)?;
    changed(cb.update_invoice(&site_param(&params), &id_of(&params), input))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_yields_the_key() {
        // "cb_test_key:" in base64, as `curl -u cb_test_key:` sends it.
        let value = header::HeaderValue::from_static("Basic Y2JfdGVzdF9rZXk6");
        assert_eq!(
            basic_auth_user(Some(&value)).as_deref(),
            Some("cb_test_key")
        );
        let bad = header::HeaderValue::from_static("Basic !!!");
        assert_eq!(basic_auth_user(Some(&bad)), None);
        assert_eq!(basic_auth_user(None), None);
    }

    #[test]
    fn errors_have_chargebees_shape() {
        let response = ApiError::rate_limited(7).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        assert_eq!(ApiError::unauthorized().status(), StatusCode::UNAUTHORIZED);
    }
}
