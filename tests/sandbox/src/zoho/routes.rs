//! HTTP surface of the Zoho CRM emulator: the accounts server's token endpoint under
//! `/zoho/{org}/accounts`, the v8 API under `/zoho/{org}/crm/v8`, and the unauthenticated
//! `/__sandbox/zoho/{org}` read-back and fault controls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::contract;
use super::error::{self, ApiError};
use super::fields;
use super::state::{Criteria, Module, DEALS_LAYOUT_ID, MAX_RECORDS_PER_CALL};
use super::{Org, Zoho};
use crate::kit;

type Reply = Result<Response, ApiError>;
type QueryMap = Query<HashMap<String, String>>;
/// The path's parameters: `org` (from the nest), `module`, `id`.
type Params = Path<HashMap<String, String>>;

/// Largest request body the emulator reads (100 records of a few kB each).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The v8 API, to be nested at `/zoho/{org}/crm/v8`.
pub(crate) fn api(zoho: Zoho) -> Router {
    Router::new()
        .route("/users", get(users))
        .route("/settings/layouts", get(layouts))
        .route("/settings/pipeline", get(pipelines))
        .route("/settings/fields", get(list_fields).post(create_fields))
        .route("/{module}/upsert", post(upsert))
        .route("/{module}/search", get(search))
        .route("/{module}/{id}", get(get_record).delete(delete_record))
        .fallback(route_not_found)
        .method_not_allowed_fallback(route_not_found)
        .layer(middleware::from_fn(limits))
        .layer(middleware::from_fn_with_state(
            zoho.clone(),
            kit::conformance::<Zoho>,
        ))
        .layer(middleware::from_fn_with_state(
            zoho,
            kit::gatekeeper::<Zoho>,
        ))
}

/// The accounts server (`POST /zoho/{org}/accounts/oauth/v2/token`), and
/// `/__sandbox/zoho/...`: state read-back and fault injection, without auth.
pub(crate) fn control(zoho: Zoho) -> Router {
    Router::new()
        .route("/zoho/{org}/accounts/oauth/v2/token", post(token))
        .route("/__sandbox/zoho/{org}", get(read_snapshot))
        .with_state(zoho.clone())
        .merge(kit::control_routes(zoho))
}

async fn route_not_found() -> ApiError {
    ApiError::invalid_url()
}

/// Zoho's limits past the gate: concurrent calls, then the call's credits (1, or 1 per 10
/// records of an upsert); either answers 429 `TOO_MANY_REQUESTS` without `Retry-After`.
async fn limits(Extension(org): Extension<Arc<Org>>, request: Request, next: Next) -> Response {
    let faults = org.faults();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::invalid_body().into_response();
    };
    if !faults.limits_disabled {
        let cost = if parts.method == Method::POST && parts.uri.path().ends_with("/upsert") {
            let records = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|body| body.get("data").and_then(Value::as_array).map(Vec::len))
                .unwrap_or(0);
            records.div_ceil(10).max(1) as u64
        } else {
            1
        };
        if let Err(refusal) = org.check_concurrency().and_then(|()| org.charge(cost)) {
            org.count_refused();
            return refusal.into_response();
        }
    }
    if faults.processing_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.processing_ms)).await;
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// `POST {accounts}/oauth/v2/token`: parameters in the query (as Zoho's docs send them) or
/// a form body, checked against Zoho's OAuth docs (`contract::check_token_request`).
async fn token(
    State(zoho): State<Zoho>,
    Path(org): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(tenant) = zoho.org(&org) else {
        return error::oauth_error("invalid_client");
    };
    let checked =
        contract::check_token_request("POST", uri.query().unwrap_or_default(), &headers, &body);
    let grant = match checked {
        Ok(grant) => {
            tenant.record_check(Ok(()));
            grant
        }
        Err(violation) => {
            tenant.record_check(Err(violation));
            return error::oauth_invalid_request();
        }
    };
    match tenant.mint(&grant) {
        Ok((access_token, expires_in)) => Json(json!({
            "access_token": access_token,
            "scope": tenant.scopes().join(" "),
            "api_domain": zoho.api_domain(&org),
            "token_type": "Bearer",
            "expires_in": expires_in,
        }))
        .into_response(),
        Err(refusal) => {
            tracing::info!(vendor = "Zoho CRM", tenant = %org, "Refused a token request");
            *refusal
        }
    }
}

fn module_param(params: &HashMap<String, String>) -> Result<Module, ApiError> {
    module_named(params.get("module").map(String::as_str).unwrap_or_default())
}

fn module_named(name: &str) -> Result<Module, ApiError> {
    Module::parse(name).ok_or_else(ApiError::invalid_module)
}

/// The required `module` query parameter (settings endpoints).
fn module_query(query: &HashMap<String, String>) -> Result<Module, ApiError> {
    let module = query
        .get("module")
        .ok_or_else(|| ApiError::required_param_missing("module"))?;
    module_named(module)
}

fn id_param(params: &HashMap<String, String>) -> String {
    params.get("id").cloned().unwrap_or_default()
}

/// `POST /{module}/upsert` `{data: [...<=100], duplicate_check_fields, trigger}`: each
/// record succeeds or fails on its own; the answer lists their results in order.
async fn upsert(Extension(org): Extension<Arc<Org>>, Path(params): Params, body: Bytes) -> Reply {
    let module = module_param(&params)?;
    let body: Value = serde_json::from_slice(&body).map_err(|_| ApiError::invalid_body())?;
    let records = body
        .get("data")
        .and_then(Value::as_array)
        .filter(|records| !records.is_empty())
        .ok_or_else(ApiError::invalid_body)?;
    if records.len() > MAX_RECORDS_PER_CALL {
        return Err(ApiError::too_many_records(MAX_RECORDS_PER_CALL));
    }
    let fields: Option<Vec<String>> = match body.get("duplicate_check_fields") {
        None | Some(Value::Null) => None,
        Some(Value::Array(fields)) => Some(
            fields
                .iter()
                .map(|f| f.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| ApiError::invalid_param("duplicate_check_fields"))?,
        ),
        Some(_) => return Err(ApiError::invalid_param("duplicate_check_fields")),
    };
    let fields = fields.filter(|f| !f.is_empty());
    if let Some(fields) = &fields {
        let data = org.data();
        if let Some((index, unknown)) = fields
            .iter()
            .enumerate()
            .find(|(_, f)| !data.fields.has(module, f))
        {
            return Err(ApiError::unknown_check_field(unknown, index));
        }
    }
    let results = org.data().write(module, records, fields.as_deref());
    Ok(Json(json!({"data": results})).into_response())
}

/// `GET /{module}/search?email=` or `?criteria=`: 200 with the matches, or 204 with no body
/// when nothing matches (not in the spec, which declares only 200).
async fn search(
    Extension(org): Extension<Arc<Org>>,
    Path(params): Params,
    Query(query): QueryMap,
) -> Reply {
    let module = module_param(&params)?;
    let criteria = if let Some(email) = query.get("email") {
        Criteria::Email(email.trim().to_string())
    } else if let Some(criteria) = query.get("criteria") {
        Criteria::parse(criteria).map_err(|reason| {
            tracing::info!(reason, "Refused a Zoho search's criteria");
            ApiError::invalid_query(&reason)
        })?
    } else {
        return Err(ApiError::required_param_missing("criteria"));
    };
    let found = org.data().search(module, &criteria);
    if found.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let count = found.len();
    Ok(Json(json!({
        "data": found,
        "info": {"per_page": 200, "count": count, "page": 1, "more_records": false},
    }))
    .into_response())
}

/// `GET /{module}/{id}`: `{data: [record]}`, or 204 when there is no such record.
async fn get_record(Extension(org): Extension<Arc<Org>>, Path(params): Params) -> Reply {
    let module = module_param(&params)?;
    let id = id_param(&params);
    match org.data().get(module, &id) {
        Some(record) => Ok(Json(json!({"data": [record]})).into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `DELETE /{module}/{id}`: the record's result in `data`, as the spec's 200.
async fn delete_record(Extension(org): Extension<Arc<Org>>, Path(params): Params) -> Reply {
    let module = module_param(&params)?;
    let id = id_param(&params);
    let result = if org.data().delete(module, &id) {
        json!({"code": "SUCCESS", "details": {"id": id}, "message": "record deleted", "status": "success"})
    } else {
        error::exception(
            "INVALID_DATA",
            "the id given seems to be invalid.",
            json!({"id": id}),
        )
    };
    Ok(Json(json!({"data": [result]})).into_response())
}

/// `GET /users?type=`: every user (the emulated organisation's users are all active).
async fn users(Extension(org): Extension<Arc<Org>>) -> Reply {
    let users: Vec<Value> = org
        .data()
        .users
        .iter()
        .map(|user| {
            let (first, last) = user
                .full_name
                .split_once(' ')
                .unwrap_or(("", user.full_name.as_str()));
            json!({
                "id": user.id,
                "full_name": user.full_name,
                "first_name": first,
                "last_name": last,
                "email": user.email,
                "status": "active",
                "confirm": true,
                "role": {"name": "CEO", "id": "5725767000000026005"},
                "profile": {"name": "Administrator", "id": "5725767000000026011"},
            })
        })
        .collect();
    let count = users.len();
    Ok(Json(json!({
        "users": users,
        "info": {"per_page": 200, "count": count, "page": 1, "more_records": false},
    }))
    .into_response())
}

/// `GET /settings/layouts?module=` (required).
async fn layouts(Extension(org): Extension<Arc<Org>>, Query(query): QueryMap) -> Reply {
    let module = module_query(&query)?;
    Ok(Json(json!({"layouts": org.data().layouts(module)})).into_response())
}

/// `GET /settings/pipeline?layout_id=` (required: pipelines belong to a layout).
async fn pipelines(Extension(org): Extension<Arc<Org>>, Query(query): QueryMap) -> Reply {
    let layout = query
        .get("layout_id")
        .ok_or_else(|| ApiError::required_param_missing("layout_id"))?;
    if layout != DEALS_LAYOUT_ID {
        return Err(ApiError::invalid_param("layout_id"));
    }
    Ok(Json(json!({"pipeline": org.data().pipelines_json()})).into_response())
}

/// `GET /settings/fields?module=` (required): `{fields: [...]}` of the spec's `fields`.
async fn list_fields(Extension(org): Extension<Arc<Org>>, Query(query): QueryMap) -> Reply {
    if !fields::allows(org.scopes(), fields::READ_SCOPES) {
        return Err(ApiError::oauth_scope_mismatch());
    }
    let module = module_query(&query)?;
    Ok(Json(json!({"fields": org.data().fields.list(module)})).into_response())
}

/// `POST /settings/fields?module=` `{fields: [...]}`: 201 with each field's `SUCCESS`, or
/// 400 with each field's result when one cannot be created (then none is).
async fn create_fields(
    Extension(org): Extension<Arc<Org>>,
    Query(query): QueryMap,
    body: Bytes,
) -> Reply {
    if !fields::allows(org.scopes(), fields::CREATE_SCOPES) {
        return Err(ApiError::oauth_scope_mismatch());
    }
    let module = module_query(&query)?;
    let body: Value = serde_json::from_slice(&body).map_err(|_| ApiError::invalid_body())?;
    let inputs = body
        .get("fields")
        .and_then(Value::as_array)
        .filter(|fields| !fields.is_empty())
        .ok_or_else(ApiError::invalid_body)?;
    let (results, created) = org.data().fields.create(module, inputs);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok((status, Json(json!({"fields": results}))).into_response())
}

async fn read_snapshot(State(zoho): State<Zoho>, Path(org): Path<String>) -> Response {
    if zoho.org(&org).is_none() {
        return ApiError::unknown_org(&org).into_response();
    }
    Json(zoho.snapshot(&org)).into_response()
}
