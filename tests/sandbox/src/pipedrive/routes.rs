//! HTTP surface of the Pipedrive emulator: `/pipedrive/{company}/api/v2/...` and `/v1/...`
//! behind the gate and the token charge, and the unauthenticated
//! `/__sandbox/pipedrive/{company}` read-back.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::error::ApiError;
use super::state::{PdEntity, Search};
use super::{Charge, Company, Pipedrive};
use crate::kit;

type Reply = Result<Response, ApiError>;
type Params = Path<HashMap<String, String>>;
type QueryMap = Query<HashMap<String, String>>;

/// The API, to be nested at `/pipedrive/{company}`.
pub(crate) fn api(pd: Pipedrive) -> Router {
    let mut router = Router::new()
        .route("/api/v2/pipelines", get(pipelines))
        .route("/api/v2/stages", get(stages))
        .route("/v1/notes", post(create_note))
        .route("/v1/users", get(users));
    for (entity, plural, fields) in [
        (PdEntity::Person, "persons", "personFields"),
        (
            PdEntity::Organization,
            "organizations",
            "organizationFields",
        ),
        (PdEntity::Deal, "deals", "dealFields"),
    ] {
        router = router
            .route(
                &format!("/api/v2/{plural}"),
                post(move |c: Extension<Arc<Company>>, b: Bytes| create(entity, c, b)),
            )
            .route(
                &format!("/api/v2/{plural}/search"),
                get(move |c: Extension<Arc<Company>>, q: QueryMap| search(entity, c, q)),
            )
            .route(
                &format!("/api/v2/{plural}/{{id}}"),
                get(move |c: Extension<Arc<Company>>, p: Params| read(entity, c, p))
                    .patch(move |c: Extension<Arc<Company>>, p: Params, b: Bytes| {
                        update(entity, c, p, b)
                    })
                    .delete(move |c: Extension<Arc<Company>>, p: Params| delete(entity, c, p)),
            )
            .route(
                &format!("/api/v2/{fields}"),
                get(move |c: Extension<Arc<Company>>| list_fields(entity, c))
                    .post(move |c: Extension<Arc<Company>>, b: Bytes| create_field(entity, c, b)),
            );
    }
    router
        .route_layer(middleware::from_fn(charge_tokens))
        .fallback(route_not_found)
        .method_not_allowed_fallback(route_not_found)
        .layer(middleware::from_fn_with_state(
            pd.clone(),
            kit::conformance::<Pipedrive>,
        ))
        .layer(middleware::from_fn_with_state(
            pd,
            kit::gatekeeper::<Pipedrive>,
        ))
}

/// `/__sandbox/pipedrive/{company}` (snapshot and tokens) and the kit's faults and requests.
pub(crate) fn control(pd: Pipedrive) -> Router {
    Router::new()
        .route("/__sandbox/pipedrive/{company}", get(read_snapshot))
        .with_state(pd.clone())
        .merge(kit::control_routes(pd))
}

async fn read_snapshot(State(pd): State<Pipedrive>, Path(name): Path<String>) -> Response {
    if !pd.company_names().contains(&name) {
        return ApiError::unknown_company(&name).into_response();
    }
    Json(json!({"snapshot": pd.snapshot(&name), "tokens": pd.tokens(&name)})).into_response()
}

async fn route_not_found() -> Response {
    ApiError::route_not_found().into_response()
}

/// What a call costs, as each operation's `x-token-cost` in the specs says (v2: get 1, list
/// 5–10, write 5, delete 3, search 20; v1 notes and users about double). `route` is the
/// matched template under `/pipedrive/{company}`.
pub(crate) fn token_cost(method: &Method, route: &str) -> u64 {
    let (v1, path) = match route.split_once("/api/v2") {
        Some((_, path)) => (false, path),
        None => (true, route.split_once("/v1").map_or(route, |(_, p)| p)),
    };
    let by_id = path.ends_with("/{id}");
    match (v1, method.as_str(), path) {
        (true, "POST", _) => 10,
        (true, _, "/users") => 20,
        (true, _, _) => 2,
        (false, "GET", p) if p.ends_with("/search") => 20,
        (false, "GET", "/pipelines" | "/stages") => 5,
        (false, "GET", _) if by_id => 1,
        (false, "GET", _) => 10,
        (false, "DELETE", _) => 3,
        (false, _, _) => 5,
    }
}

/// Charges the call's tokens (and a search's slot in its window) before it runs.
async fn charge_tokens(
    Extension(company): Extension<Arc<Company>>,
    matched: MatchedPath,
    request: Request,
    next: Next,
) -> Response {
    let route = matched.as_str();
    let cost = token_cost(request.method(), route);
    match company.charge(cost, route.ends_with("/search")) {
        Charge::Paid => next.run(request).await,
        Charge::Refused(response) => response,
    }
}

fn ok(data: Value) -> Reply {
    Ok(
        Json(json!({"success": true, "data": data, "additional_data": {"next_cursor": null}}))
            .into_response(),
    )
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|_| {
        ApiError::validation("Validation failed: body: Request body must be valid JSON".into())
    })
}

fn id_param(params: &HashMap<String, String>) -> Result<u64, ApiError> {
    params
        .get("id")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| {
            ApiError::validation("Validation failed: id: Parameter 'id' must be an integer".into())
        })
}

async fn create(entity: PdEntity, Extension(c): Extension<Arc<Company>>, body: Bytes) -> Reply {
    let body = body_json(&body)?;
    ok(c.data().create(entity, &body)?)
}

async fn read(entity: PdEntity, Extension(c): Extension<Arc<Company>>, Path(p): Params) -> Reply {
    let id = id_param(&p)?;
    ok(c.data().get(entity, id)?)
}

async fn update(
    entity: PdEntity,
    Extension(c): Extension<Arc<Company>>,
    Path(p): Params,
    body: Bytes,
) -> Reply {
    let id = id_param(&p)?;
    let body = body_json(&body)?;
    ok(c.data().update(entity, id, &body)?)
}

async fn delete(entity: PdEntity, Extension(c): Extension<Arc<Company>>, Path(p): Params) -> Reply {
    let id = id_param(&p)?;
    ok(c.data().delete(entity, id)?)
}

/// `GET /{entity}/search`, its parameters as strict as v2 reads them.
async fn search(
    entity: PdEntity,
    Extension(c): Extension<Arc<Company>>,
    Query(q): QueryMap,
) -> Reply {
    let bad = |key: &str, what: &str| {
        ApiError::validation(format!(
            "Validation failed: {key}: Parameter '{key}' must be {what}"
        ))
    };
    let exact = match q.get("exact_match").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(bad("exact_match", "a boolean")),
    };
    let term = q.get("term").cloned().unwrap_or_default();
    // At least 2 characters, or 1 with an exact match (the spec's `term` description).
    if term.trim().chars().count() < if exact { 1 } else { 2 } {
        return Err(bad(
            "term",
            "at least 2 characters long (1 with exact_match)",
        ));
    }
    let allowed: &[&str] = match entity {
        PdEntity::Person => &["custom_fields", "email", "notes", "phone", "name"],
        PdEntity::Organization => &["address", "custom_fields", "notes", "name"],
        PdEntity::Deal => &["custom_fields", "notes", "title"],
    };
    let fields: Vec<String> = q
        .get("fields")
        .map(|f| f.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    if let Some(unknown) = fields.iter().find(|f| !allowed.contains(&f.as_str())) {
        return Err(bad(
            "fields",
            &format!("one of {} (got {unknown:?})", allowed.join(", ")),
        ));
    }
    let number = |key: &str| -> Result<Option<u64>, ApiError> {
        q.get(key)
            .map(|v| v.parse().map_err(|_| bad(key, "an integer")))
            .transpose()
    };
    let limit = number("limit")?.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(bad("limit", "between 1 and 500"));
    }
    let status = q.get("status").cloned();
    if status
        .as_deref()
        .is_some_and(|s| !["open", "won", "lost"].contains(&s))
    {
        return Err(bad("status", "one of open, won, lost"));
    }
    let search = Search {
        term,
        fields,
        exact,
        organization_id: number("organization_id")?,
        person_id: number("person_id")?,
        status,
        limit: usize::try_from(limit).unwrap_or(500),
    };
    ok(c.data().search(entity, &search))
}

async fn list_fields(entity: PdEntity, Extension(c): Extension<Arc<Company>>) -> Reply {
    ok(c.data().fields(entity))
}

async fn create_field(
    entity: PdEntity,
    Extension(c): Extension<Arc<Company>>,
    body: Bytes,
) -> Reply {
    let body = body_json(&body)?;
    ok(c.data().create_field(entity, &body)?)
}

async fn pipelines(Extension(c): Extension<Arc<Company>>) -> Reply {
    ok(c.data().pipelines())
}

async fn stages(Extension(c): Extension<Arc<Company>>, Query(q): QueryMap) -> Reply {
    let pipeline = match q.get("pipeline_id") {
        Some(id) => Some(id.parse().map_err(|_| {
            ApiError::validation(
                "Validation failed: pipeline_id: Parameter 'pipeline_id' must be an integer".into(),
            )
        })?),
        None => None,
    };
    ok(c.data().stages(pipeline))
}

async fn create_note(Extension(c): Extension<Arc<Company>>, body: Bytes) -> Reply {
    let body = serde_json::from_slice(&body)
        .map_err(|_| ApiError::v1_bad_request("Request body must be valid JSON"))?;
    ok(c.data().create_note(&body)?)
}

async fn users(Extension(c): Extension<Arc<Company>>) -> Reply {
    ok(c.data().users())
}
