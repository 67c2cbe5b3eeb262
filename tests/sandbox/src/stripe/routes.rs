//! HTTP surface of the Stripe emulator: the list and retrieve endpoints of the five resources
//! under `/stripe/{account}/v1`, and the unauthenticated `/__sandbox/stripe/{account}/...`
//! controls (state read-back, seeding, faults).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::objects::{Listed, StripeResource};
use super::state::{MissingCursor, StripeSeed, Table};
use super::{Account, Stripe, StripeAccount};
use crate::kit::{self, Tenant as _};

type Reply = Result<Response, ApiError>;
type QueryMap = Query<HashMap<String, String>>;

const MAX_LIMIT: usize = 100;
const DEFAULT_LIMIT: usize = 10;

/// The v1 API, to be nested at `/stripe/{account}/v1`.
pub(crate) fn api(stripe: Stripe) -> Router {
    Router::new()
        .route("/customers", get(list_customers))
        .route("/customers/{id}", get(get_customer))
        .route("/subscriptions", get(list_subscriptions))
        .route("/subscriptions/{id}", get(get_subscription))
        .route("/invoices", get(list_invoices))
        .route("/invoices/{id}", get(get_invoice))
        .route("/charges", get(list_charges))
        .route("/charges/{id}", get(get_charge))
        .route("/checkout/sessions", get(list_checkout_sessions))
        .route("/checkout/sessions/{id}", get(get_checkout_session))
        .fallback(unrecognized)
        .method_not_allowed_fallback(unrecognized)
        .layer(middleware::from_fn_with_state(
            stripe,
            kit::gatekeeper::<Stripe>,
        ))
}

/// `/__sandbox/stripe/{account}/...`: read-back, seeding and faults, without auth.
pub(crate) fn control(stripe: Stripe) -> Router {
    Router::new()
        .route(
            "/__sandbox/stripe/{account}",
            get(read_account).put(put_account),
        )
        .route("/__sandbox/stripe/{account}/seed", post(seed))
        .route(
            "/__sandbox/stripe/{account}/customers",
            post(control_create_customer),
        )
        .route("/__sandbox/stripe/{account}/ids/{resource}", get(read_ids))
        .with_state(stripe.clone())
        .merge(kit::control_routes(stripe))
}

async fn unrecognized(method: Method, uri: OriginalUri) -> ApiError {
    let path = uri.path();
    // Show the path as Stripe would see it: without the sandbox's `/stripe/{account}`.
    let shown = path
        .strip_prefix("/stripe/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(path, |(_, tail)| tail);
    ApiError::unrecognized(
        method.as_str(),
        &format!("/{}", shown.trim_start_matches('/')),
    )
}

/// The secret key of a request: `Authorization: Bearer <key>`, or HTTP basic auth with the
/// key as the user name (both are accepted by Stripe).
pub(crate) fn presented_key(value: Option<&header::HeaderValue>) -> Option<String> {
    let value = value?.to_str().ok()?;
    if let Some(key) = value.strip_prefix("Bearer ") {
        return Some(key.trim().to_string());
    }
    let encoded = value.strip_prefix("Basic ")?.trim();
    let decoded = String::from_utf8(base64_decode(encoded)?).ok()?;
    Some(
        decoded
            .split_once(':')
            .map_or(decoded.as_str(), |(user, _)| user)
            .to_string(),
    )
}

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

/// `limit`, `starting_after`, `ending_before` of a list request.
struct ListParams {
    limit: usize,
    starting_after: Option<String>,
    ending_before: Option<String>,
}

impl ListParams {
    fn parse(query: &HashMap<String, String>) -> Result<Self, ApiError> {
        let limit = match query.get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => match raw.trim().parse::<i64>() {
                Ok(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
                Ok(n) if n < 1 => {
                    return Err(ApiError::invalid_param(
                        "limit",
                        None,
                        &format!(
                            "This value must be greater than or equal to 1 (it currently is '{n}')."
                        ),
                    ))
                }
                Ok(n) => {
                    return Err(ApiError::invalid_param(
                        "limit",
                        None,
                        &format!(
                            "This value must be less than or equal to {MAX_LIMIT} (it currently is '{n}')."
                        ),
                    ))
                }
                Err(_) => {
                    return Err(ApiError::invalid_param(
                        "limit",
                        Some("parameter_invalid_integer"),
                        &format!("Invalid integer: {raw}"),
                    ))
                }
            },
        };
        let non_empty = |key: &str| query.get(key).filter(|v| !v.is_empty()).cloned();
        let (starting_after, ending_before) =
            (non_empty("starting_after"), non_empty("ending_before"));
        if starting_after.is_some() && ending_before.is_some() {
            return Err(ApiError::invalid_param(
                "ending_before",
                None,
                "You may only specify one of these parameters: ending_before, starting_after.",
            ));
        }
        Ok(Self {
            limit,
            starting_after,
            ending_before,
        })
    }
}

/// Renders one page of `table` as Stripe's list object.
fn list<T: Listed>(
    table: &Table<T>,
    resource: StripeResource,
    query: &HashMap<String, String>,
    keep: impl Fn(&T) -> bool,
    livemode: bool,
) -> Reply {
    let params = ListParams::parse(query)?;
    let page = table
        .page(
            keep,
            params.starting_after.as_deref(),
            params.ending_before.as_deref(),
            params.limit,
        )
        .map_err(|MissingCursor { param, id }| {
            ApiError::missing_cursor(resource.singular(), &id, param)
        })?;
    let data: Vec<Value> = page.data.iter().map(|o| o.render(livemode)).collect();
    Ok((
        StatusCode::OK,
        Json(json!({
            "object": "list",
            "data": data,
            "has_more": page.has_more,
            "url": resource.path(),
        })),
    )
        .into_response())
}

fn retrieve<T: Listed>(
    table: &Table<T>,
    resource: StripeResource,
    id: &str,
    livemode: bool,
) -> Reply {
    table
        .get(id)
        .map(|o| (StatusCode::OK, Json(o.render(livemode))).into_response())
        .ok_or_else(|| ApiError::no_such(resource.singular(), id, "id"))
}

/// `customer=` filter shared by every list.
fn customer_matches(query: &HashMap<String, String>, object: &impl Listed) -> bool {
    query
        .get("customer")
        .is_none_or(|c| object.customer() == Some(c.as_str()))
}

/// `status=`; `all` matches everything. Subscriptions leave out canceled ones by default,
/// as Stripe does.
fn status_matches(
    query: &HashMap<String, String>,
    object: &impl Listed,
    default_excludes: Option<&str>,
) -> bool {
    match query.get("status").map(String::as_str) {
        Some("all") => true,
        Some(status) => object.status() == Some(status),
        None => default_excludes.is_none_or(|excluded| object.status() != Some(excluded)),
    }
}

async fn list_customers(Extension(account): Extension<Arc<Account>>, Query(q): QueryMap) -> Reply {
    let data = account.data();
    let email = q.get("email").cloned();
    list(
        &data.customers,
        StripeResource::Customers,
        &q,
        |c| email.as_ref().is_none_or(|e| c.email.as_ref() == Some(e)),
        account.livemode(),
    )
}

async fn get_customer(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Path<HashMap<String, String>>,
) -> Reply {
    let id = params.get("id").cloned().unwrap_or_default();
    retrieve(
        &account.data().customers,
        StripeResource::Customers,
        &id,
        account.livemode(),
    )
}

async fn list_subscriptions(
    Extension(account): Extension<Arc<Account>>,
    Query(q): QueryMap,
) -> Reply {
    let data = account.data();
    list(
        &data.subscriptions,
        StripeResource::Subscriptions,
        &q,
        |s| customer_matches(&q, s) && status_matches(&q, s, Some("canceled")),
        account.livemode(),
    )
}

async fn get_subscription(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Path<HashMap<String, String>>,
) -> Reply {
    let id = params.get("id").cloned().unwrap_or_default();
    retrieve(
        &account.data().subscriptions,
        StripeResource::Subscriptions,
        &id,
        account.livemode(),
    )
}

async fn list_invoices(Extension(account): Extension<Arc<Account>>, Query(q): QueryMap) -> Reply {
    let data = account.data();
    let subscription = q.get("subscription").cloned();
    list(
        &data.invoices,
        StripeResource::Invoices,
        &q,
        |i| {
            customer_matches(&q, i)
                && status_matches(&q, i, None)
                && subscription
                    .as_ref()
                    .is_none_or(|s| i.subscription.as_ref() == Some(s))
        },
        account.livemode(),
    )
}

async fn get_invoice(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Path<HashMap<String, String>>,
) -> Reply {
    let id = params.get("id").cloned().unwrap_or_default();
    retrieve(
        &account.data().invoices,
        StripeResource::Invoices,
        &id,
        account.livemode(),
    )
}

async fn list_charges(Extension(account): Extension<Arc<Account>>, Query(q): QueryMap) -> Reply {
    let data = account.data();
    list(
        &data.charges,
        StripeResource::Charges,
        &q,
        |c| customer_matches(&q, c),
        account.livemode(),
    )
}

async fn get_charge(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Path<HashMap<String, String>>,
) -> Reply {
    let id = params.get("id").cloned().unwrap_or_default();
    retrieve(
        &account.data().charges,
        StripeResource::Charges,
        &id,
        account.livemode(),
    )
}

async fn list_checkout_sessions(
    Extension(account): Extension<Arc<Account>>,
    Query(q): QueryMap,
) -> Reply {
    let data = account.data();
    list(
        &data.checkout_sessions,
        StripeResource::CheckoutSessions,
        &q,
        |s| customer_matches(&q, s) && status_matches(&q, s, None),
        account.livemode(),
    )
}

async fn get_checkout_session(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Path<HashMap<String, String>>,
) -> Reply {
    let id = params.get("id").cloned().unwrap_or_default();
    retrieve(
        &account.data().checkout_sessions,
        StripeResource::CheckoutSessions,
        &id,
        account.livemode(),
    )
}

// ----- controls ------------------------------------------------------------------------

pub(crate) fn unknown_account(name: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("no sandbox Stripe account named {name:?}")})),
    )
        .into_response()
}

async fn read_account(State(stripe): State<Stripe>, Path(name): Path<String>) -> Response {
    match stripe.lookup(&name) {
        Some(account) => Json(json!({
            "name": account.name(),
            "livemode": account.livemode(),
            "requests_per_second": account.requests_per_second(),
            "requests": account.gate().requests(),
            "throttled": account.gate().refused(),
            "counts": account.data().counts(),
            "faults": account.gate().faults(),
        }))
        .into_response(),
        None => unknown_account(&name),
    }
}

#[derive(Deserialize)]
struct AccountBody {
    api_key: String,
    #[serde(default)]
    requests_per_second: Option<u32>,
}

/// `PUT /__sandbox/stripe/{account}` `{api_key, requests_per_second?}`: a fresh account.
async fn put_account(
    State(stripe): State<Stripe>,
    Path(name): Path<String>,
    Json(body): Json<AccountBody>,
) -> Response {
    let mut account = StripeAccount::new(&name, &body.api_key);
    if let Some(rps) = body.requests_per_second {
        account.requests_per_second = rps;
    }
    stripe.add_account(account);
    (StatusCode::CREATED, Json(json!({"name": name}))).into_response()
}

/// `POST /__sandbox/stripe/{account}/seed` with a [`StripeSeed`]: counts of what was made.
async fn seed(
    State(stripe): State<Stripe>,
    Path(name): Path<String>,
    Json(spec): Json<StripeSeed>,
) -> Response {
    match stripe.lookup(&name) {
        Some(account) => {
            let made = account.data().seed(&spec);
            Json(made).into_response()
        }
        None => unknown_account(&name),
    }
}

#[derive(Deserialize)]
struct CustomerBody {
    email: Option<String>,
    name: Option<String>,
}

/// `POST /__sandbox/stripe/{account}/customers` `{email, name}`: the new customer object.
async fn control_create_customer(
    State(stripe): State<Stripe>,
    Path(name): Path<String>,
    Json(body): Json<CustomerBody>,
) -> Response {
    match stripe.lookup(&name) {
        Some(account) => {
            let customer = account.data().create_customer(body.email, body.name);
            (
                StatusCode::CREATED,
                Json(customer.render(account.livemode())),
            )
                .into_response()
        }
        None => unknown_account(&name),
    }
}

/// `GET /__sandbox/stripe/{account}/ids/{resource}`: every id, oldest first.
async fn read_ids(
    State(stripe): State<Stripe>,
    Path((name, resource)): Path<(String, String)>,
) -> Response {
    let Some(account) = stripe.lookup(&name) else {
        return unknown_account(&name);
    };
    let Ok(resource) = serde_json::from_value::<StripeResource>(json!(resource)) else {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("unknown resource {resource:?}")})),
        )
            .into_response();
    };
    let ids = account.data().ids(resource);
    Json(ids).into_response()
}
