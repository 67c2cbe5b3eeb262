//! HTTP surface of the ActiveCampaign emulator: the v3 API under
//! `/activecampaign/{account}/api/3`, event tracking's `trackcmp` under
//! `/activecampaign/{account}/trackcmp`, and the unauthenticated `/__sandbox/activecampaign`
//! read-back and fault controls.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};

use super::bulk_import_routes as bulk;
use super::ecommerce_routes as ecom;
use super::error::ApiError;
use super::state::{AccountData, ContactFilter, FieldInput, ListInput};
use super::{tracking, wire, Account, ActiveCampaign};
use crate::kit;

pub(crate) type Reply = Result<Response, ApiError>;
type Params = Path<HashMap<String, String>>;
type QueryMap = Query<HashMap<String, String>>;

/// The v3 API, to be nested at `/activecampaign/{account}/api/3`.
pub(crate) fn api(ac: ActiveCampaign) -> Router {
    Router::new()
        .route("/contact/sync", post(sync_contact))
        .route("/contacts", get(list_contacts).post(create_contact))
        .route(
            "/contacts/{id}",
            get(get_contact).put(update_contact).delete(delete_contact),
        )
        .route("/contacts/{id}/fieldValues", get(contact_field_values))
        .route("/contacts/{id}/contactTags", get(contact_tags))
        .route("/contacts/{id}/contactLists", get(contact_lists))
        .route("/fields", get(list_fields).post(create_field))
        .route("/fields/{id}", get(get_field))
        .route("/fieldValues", get(list_field_values).post(set_field_value))
        .route("/tags", get(list_tags).post(create_tag))
        .route("/tags/{id}", get(get_tag))
        .route("/contactTags", post(tag_contact))
        .route("/contactTags/{id}", delete(untag_contact))
        .route("/lists", get(list_lists).post(create_list))
        .route("/lists/{id}", get(get_list))
        .route("/contactLists", post(set_list_status))
        .route(
            "/import/bulk_import",
            get(bulk::import_status_list).post(bulk::queue_import),
        )
        .route("/import/info", get(bulk::import_info))
        .route(
            "/connections",
            get(ecom::list_connections).post(ecom::create_connection),
        )
        .route(
            "/connections/{id}",
            get(ecom::get_connection).delete(ecom::delete_connection),
        )
        .route(
            "/ecomCustomers",
            get(ecom::list_customers).post(ecom::create_customer),
        )
        .route(
            "/ecomCustomers/{id}",
            get(ecom::get_customer)
                .put(ecom::update_customer)
                .delete(ecom::delete_customer),
        )
        .route(
            "/ecomOrders",
            get(ecom::list_orders).post(ecom::create_order),
        )
        .route(
            "/ecomOrders/{id}",
            get(ecom::get_order)
                .put(ecom::update_order)
                .delete(ecom::delete_order),
        )
        .route(
            "/eventTracking",
            get(tracking::status).put(tracking::set_status),
        )
        .route(
            "/eventTrackingEvents",
            get(tracking::list_names).post(tracking::create_name),
        )
        .route("/eventTrackingEvents/{name}", delete(tracking::delete_name))
        .fallback(route_not_found)
        .method_not_allowed_fallback(route_not_found)
        .layer(middleware::from_fn_with_state(
            ac,
            kit::gatekeeper::<ActiveCampaign>,
        ))
}

/// `/__sandbox/activecampaign/...`: state read-back and fault injection, without auth.
pub(crate) fn control(ac: ActiveCampaign) -> Router {
    Router::new()
        .route("/__sandbox/activecampaign/{account}", get(read_snapshot))
        // trackcmp.net stands beside the v3 API, with its own credentials (see `tracking`).
        .route(
            "/activecampaign/{account}/trackcmp/event",
            post(tracking::track_event),
        )
        .with_state(ac.clone())
        .merge(kit::control_routes(ac))
}

pub(crate) fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

async fn route_not_found() -> ApiError {
    ApiError::route_not_found()
}

/// The numeric `{id}` of the path; anything else is AC's "No Result found" for `entity`.
fn id_param(params: &HashMap<String, String>, entity: &str) -> Result<u64, ApiError> {
    let raw = params.get("id").map(String::as_str).unwrap_or_default();
    raw.parse().map_err(|_| ApiError::no_result(entity, raw))
}

fn query_number(query: &HashMap<String, String>, key: &str) -> Option<usize> {
    query.get(key).and_then(|v| v.trim().parse().ok())
}

fn page_of<T>(items: Vec<T>, query: &HashMap<String, String>, default_limit: usize) -> Vec<T> {
    wire::page(
        items,
        query_number(query, "limit"),
        query_number(query, "offset"),
        default_limit,
    )
}

// ----- contacts ---------------------------------------------------------------------------

/// `{"fieldValues": [...], "contact": {...}}`, the answer of contact writes.
fn contact_with_values(data: &AccountData, api: &str, id: u64) -> Value {
    let values: Vec<Value> = data
        .field_values_of(id)
        .map(|fv| wire::field_value(api, fv))
        .collect();
    json!({
        "fieldValues": values,
        "contact": contact_json(data, api, id),
    })
}

fn contact_json(data: &AccountData, api: &str, id: u64) -> Value {
    match data.contact(id) {
        Some(c) => wire::contact(
            api,
            c,
            data.field_values_of(id).map(|fv| fv.id.clone()).collect(),
        ),
        None => Value::Null,
    }
}

/// `POST /contact/sync`: 201 when the email is new, 200 when it updated a contact.
async fn sync_contact(Extension(account): Extension<Arc<Account>>, body: Bytes) -> Reply {
    let contact = wire::wrapped(&body, "contact")?;
    let input = wire::contact_input(&contact);
    if account.rejects_email(input.email.as_deref()) {
        return Err(ApiError::email_invalid());
    }
    let mut data = account.data();
    let (id, created) = data.sync_contact(input)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(reply(
        status,
        contact_with_values(&data, account.api_url(), id),
    ))
}

async fn create_contact(Extension(account): Extension<Arc<Account>>, body: Bytes) -> Reply {
    let contact = wire::wrapped(&body, "contact")?;
    let input = wire::contact_input(&contact);
    if account.rejects_email(input.email.as_deref()) {
        return Err(ApiError::email_invalid());
    }
    let mut data = account.data();
    let id = data.create_contact(input)?;
    Ok(reply(
        StatusCode::CREATED,
        contact_with_values(&data, account.api_url(), id),
    ))
}

async fn list_contacts(
    Extension(account): Extension<Arc<Account>>,
    Query(query): QueryMap,
) -> Reply {
    let number = |key: &str| query.get(key).and_then(|v| v.trim().parse::<u64>().ok());
    let filter = ContactFilter {
        email: query.get("email").cloned(),
        email_like: query.get("email_like").cloned(),
        search: query
            .get("search")
            .cloned()
            .filter(|s| !s.is_empty() && s != "null"),
        id_greater: number("id_greater"),
        tag: number("tagid"),
        list: number("listid"),
    };
    let data = account.data();
    let mut matching = data.contacts_matching(&filter);
    if query
        .get("orders[id]")
        .is_some_and(|o| o.eq_ignore_ascii_case("desc"))
    {
        matching.reverse();
    }
    let total = matching.len();
    let api = account.api_url();
    let contacts: Vec<Value> = page_of(matching, &query, 20)
        .into_iter()
        .map(|c| {
            let id = c.id.parse().unwrap_or_default();
            wire::contact(
                api,
                c,
                data.field_values_of(id).map(|fv| fv.id.clone()).collect(),
            )
        })
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({
            "scoreValues": [],
            "contacts": contacts,
            "meta": {
                "total": total.to_string(),
                "page_input": {
                    "limit": query_number(&query, "limit").unwrap_or(20).min(100),
                    "offset": query_number(&query, "offset").unwrap_or(0),
                    "search": filter.search,
                    "tagid": filter.tag.unwrap_or(0),
                    "listid": filter.list.unwrap_or(0),
                    "status": -1
                }
            }
        }),
    ))
}

async fn get_contact(Extension(account): Extension<Arc<Account>>, Path(params): Params) -> Reply {
    let id = id_param(&params, "Subscriber")?;
    let data = account.data();
    if data.contact(id).is_none() {
        return Err(ApiError::no_result("Subscriber", id));
    }
    let api = account.api_url();
    let lists: Vec<Value> = data
        .contact_lists_of(id)
        .map(|cl| wire::contact_list(api, cl, data.contact(id), false))
        .collect();
    let values: Vec<Value> = data
        .field_values_of(id)
        .map(|fv| wire::field_value(api, fv))
        .collect();
    let mut contact = contact_json(&data, api, id);
    contact["contactLists"] = json!(data
        .contact_lists_of(id)
        .map(|cl| cl.id.clone())
        .collect::<Vec<_>>());
    contact["contactAutomations"] = json!([]);
    contact["deals"] = json!([]);
    contact["geoIps"] = json!([]);
    contact["accountContacts"] = json!([]);
    Ok(reply(
        StatusCode::OK,
        json!({
            "contactAutomations": [],
            "contactLists": lists,
            "deals": [],
            "fieldValues": values,
            "geoAddresses": [],
            "geoIps": [],
            "contact": contact,
        }),
    ))
}

async fn update_contact(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
    body: Bytes,
) -> Reply {
    let id = id_param(&params, "Subscriber")?;
    let contact = wire::wrapped(&body, "contact")?;
    let input = wire::contact_input(&contact);
    if account.rejects_email(input.email.as_deref()) {
        return Err(ApiError::email_invalid());
    }
    let mut data = account.data();
    data.update_contact(id, input)?;
    Ok(reply(
        StatusCode::OK,
        contact_with_values(&data, account.api_url(), id),
    ))
}

async fn delete_contact(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
) -> Reply {
    let raw = params.get("id").cloned().unwrap_or_default();
    let id = raw
        .parse()
        .map_err(|_| ApiError::contact_not_deleted(&raw))?;
    account.data().delete_contact(id)?;
    Ok(reply(StatusCode::OK, json!({})))
}

async fn contact_field_values(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
) -> Reply {
    let id = id_param(&params, "Subscriber")?;
    let data = account.data();
    if data.contact(id).is_none() {
        return Err(ApiError::no_result("Subscriber", id));
    }
    let values: Vec<Value> = data
        .field_values_of(id)
        .map(|fv| wire::field_value(account.api_url(), fv))
        .collect();
    Ok(reply(StatusCode::OK, json!({"fieldValues": values})))
}

async fn contact_tags(Extension(account): Extension<Arc<Account>>, Path(params): Params) -> Reply {
    let id = id_param(&params, "Subscriber")?;
    let data = account.data();
    if data.contact(id).is_none() {
        return Err(ApiError::no_result("Subscriber", id));
    }
    let tags: Vec<Value> = data
        .contact_tags_of(id)
        .map(|ct| wire::contact_tag(account.api_url(), ct))
        .collect();
    Ok(reply(StatusCode::OK, json!({"contactTags": tags})))
}

async fn contact_lists(Extension(account): Extension<Arc<Account>>, Path(params): Params) -> Reply {
    let id = id_param(&params, "Subscriber")?;
    let data = account.data();
    if data.contact(id).is_none() {
        return Err(ApiError::no_result("Subscriber", id));
    }
    let lists: Vec<Value> = data
        .contact_lists_of(id)
        .map(|cl| wire::contact_list(account.api_url(), cl, data.contact(id), false))
        .collect();
    Ok(reply(StatusCode::OK, json!({"contactLists": lists})))
}

// ----- custom fields and values -----------------------------------------------------------

/// `GET /fields`: default page size 100 (the spec's `limit` default for this endpoint).
async fn list_fields(Extension(account): Extension<Arc<Account>>, Query(query): QueryMap) -> Reply {
    let data = account.data();
    let perstag = query.get("filters[perstag]");
    let numbered: Vec<(usize, &super::AcField)> = data
        .fields()
        .enumerate()
        .filter(|(_, f)| {
            perstag.is_none_or(|p| f.perstag.eq_ignore_ascii_case(p.trim_matches('%')))
        })
        .map(|(i, f)| (i + 1, f))
        .collect();
    let total = numbered.len();
    let fields: Vec<Value> = page_of(numbered, &query, 100)
        .into_iter()
        .map(|(ordernum, f)| wire::field(account.api_url(), f, ordernum))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({
            "fieldOptions": [],
            "fieldRels": [],
            "fields": fields,
            "meta": {"total": total.to_string()}
        }),
    ))
}

/// `POST /fields` → 201 `{"field": {...}}`. The spec's 201 example is a copy of the list
/// answer (`fields[]` + `meta`); AC's docs and API answer with the created field alone, and
/// the docs win.
async fn create_field(Extension(account): Extension<Arc<Account>>, body: Bytes) -> Reply {
    let field = wire::wrapped(&body, "field")?;
    let input = FieldInput {
        title: wire::text(&field, "title"),
        field_type: wire::text(&field, "type"),
        perstag: wire::text(&field, "perstag"),
        descript: wire::text(&field, "descript"),
        defval: wire::text(&field, "defval"),
    };
    let mut data = account.data();
    let id = data.create_field(input)?;
    let ordernum = data.fields().count();
    let created = data
        .field(id)
        .map(|f| wire::field(account.api_url(), f, ordernum));
    Ok(reply(StatusCode::CREATED, json!({ "field": created })))
}

async fn get_field(Extension(account): Extension<Arc<Account>>, Path(params): Params) -> Reply {
    let id = id_param(&params, "Field")?;
    let data = account.data();
    let (position, field) = data
        .fields()
        .enumerate()
        .find(|(_, f)| f.id == id.to_string())
        .ok_or_else(|| ApiError::no_result("Field", id))?;
    Ok(reply(
        StatusCode::OK,
        json!({"field": wire::field(account.api_url(), field, position + 1)}),
    ))
}

/// `POST /fieldValues`: upsert per `(contact, field)`; the spec documents 200 only.
async fn set_field_value(Extension(account): Extension<Arc<Account>>, body: Bytes) -> Reply {
    let value = wire::wrapped(&body, "fieldValue")?;
    let contact = wire::id(&value, "contact")
        .ok_or_else(|| ApiError::field_missing("fieldValue", "contact"))?;
    let field =
        wire::id(&value, "field").ok_or_else(|| ApiError::field_missing("fieldValue", "field"))?;
    let text = wire::text(&value, "value")
        .ok_or_else(|| ApiError::field_missing("fieldValue", "value"))?;
    let mut data = account.data();
    let api = account.api_url();
    let stored = wire::field_value(api, data.set_field_value(contact, field, text)?);
    Ok(reply(
        StatusCode::OK,
        json!({
            "contacts": [contact_json(&data, api, contact)],
            "fieldValue": stored,
        }),
    ))
}

async fn list_field_values(
    Extension(account): Extension<Arc<Account>>,
    Query(query): QueryMap,
) -> Reply {
    let data = account.data();
    let field = query.get("filters[fieldid]");
    let val = query.get("filters[val]");
    let matching: Vec<_> = data
        .all_field_values()
        .filter(|fv| field.is_none_or(|f| fv.field == *f) && val.is_none_or(|v| fv.value == *v))
        .collect();
    let total = matching.len();
    let values: Vec<Value> = page_of(matching, &query, 20)
        .into_iter()
        .map(|fv| wire::field_value(account.api_url(), fv))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({"fieldValues": values, "meta": {"total": total.to_string()}}),
    ))
}

// ----- tags -------------------------------------------------------------------------------

/// `GET /tags`: `search` matches names containing the text (the spec: "contains operator is
/// assumed"), so callers looking for one tag must pick the exact name out of the page.
/// `filters[search][eq|neq|contains|starts_with]` and `orders[search]=weight` also work.
async fn list_tags(Extension(account): Extension<Arc<Account>>, Query(query): QueryMap) -> Reply {
    let data = account.data();
    let lower = |key: &str| query.get(key).map(|v| v.to_lowercase());
    let contains = lower("search").or_else(|| lower("filters[search][contains]"));
    let (eq, neq, starts) = (
        lower("filters[search][eq]"),
        lower("filters[search][neq]"),
        lower("filters[search][starts_with]"),
    );
    let mut matching: Vec<_> = data
        .tags()
        .filter(|t| {
            let name = t.tag.to_lowercase();
            contains.as_ref().is_none_or(|s| name.contains(s.as_str()))
                && eq.as_ref().is_none_or(|s| name == *s)
                && neq.as_ref().is_none_or(|s| name != *s)
                && starts.as_ref().is_none_or(|s| name.starts_with(s.as_str()))
        })
        .collect();
    if let (Some("weight"), Some(s)) = (query.get("orders[search]").map(String::as_str), &contains)
    {
        matching.sort_by_key(|t| {
            let name = t.tag.to_lowercase();
            (name != *s, !name.starts_with(s.as_str()))
        });
    }
    let total = matching.len();
    let tags: Vec<Value> = page_of(matching, &query, 20)
        .into_iter()
        .map(|t| wire::tag(account.api_url(), t))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({"tags": tags, "meta": {"total": total.to_string()}}),
    ))
}

async fn create_tag(Extension(account): Extension<Arc<Account>>, body: Bytes) -> Reply {
    let tag = wire::wrapped(&body, "tag")?;
    let mut data = account.data();
    let id = data.create_tag(
        wire::text(&tag, "tag"),
        wire::text(&tag, "tagType"),
        wire::text(&tag, "description"),
    )?;
    let created = data.tag(id).map(|t| wire::tag(account.api_url(), t));
    Ok(reply(StatusCode::CREATED, json!({ "tag": created })))
}

async fn get_tag(Extension(account): Extension<Arc<Account>>, Path(params): Params) -> Reply {
    let id = id_param(&params, "Tag")?;
    let data = account.data();
    let tag = data.tag(id).ok_or_else(|| ApiError::no_result("Tag", id))?;
    let mut body = wire::tag(account.api_url(), tag);
    body["subscriber_count"] = json!(data.tag_subscribers(id).to_string());
    Ok(reply(StatusCode::OK, json!({ "tag": body })))
}

/// `POST /contactTags` → 201. Applying a tag the contact already has answers 201 with the
/// existing link (same id) rather than creating a second one; the spec shows only the
/// first application.
async fn tag_contact(Extension(account): Extension<Arc<Account>>, body: Bytes) -> Reply {
    let link = wire::wrapped(&body, "contactTag")?;
    let contact =
        wire::id(&link, "contact").ok_or_else(|| ApiError::missing_attribute("contact"))?;
    let tag = wire::id(&link, "tag").ok_or_else(|| ApiError::missing_attribute("tag"))?;
    let mut data = account.data();
    let (link, _created) = data.tag_contact(contact, tag)?;
    let body = wire::contact_tag(account.api_url(), link);
    Ok(reply(StatusCode::CREATED, json!({ "contactTag": body })))
}

async fn untag_contact(Extension(account): Extension<Arc<Account>>, Path(params): Params) -> Reply {
    let id = id_param(&params, "SubscriberTag")?;
    account.data().untag_contact(id)?;
    Ok(reply(StatusCode::OK, json!({})))
}

// ----- lists ------------------------------------------------------------------------------

async fn list_lists(Extension(account): Extension<Arc<Account>>, Query(query): QueryMap) -> Reply {
    let data = account.data();
    let lower = |key: &str| query.get(key).map(|v| v.to_lowercase());
    let eq = lower("filters[name]").or_else(|| lower("filters[name][eq]"));
    let contains = lower("filters[name][contains]");
    let starts = lower("filters[name][starts_with]");
    let matching: Vec<_> = data
        .lists()
        .filter(|l| {
            let name = l.name.to_lowercase();
            eq.as_ref().is_none_or(|s| name == *s)
                && contains.as_ref().is_none_or(|s| name.contains(s.as_str()))
                && starts.as_ref().is_none_or(|s| name.starts_with(s.as_str()))
        })
        .collect();
    let total = matching.len();
    let lists: Vec<Value> = page_of(matching, &query, 20)
        .into_iter()
        .map(|l| wire::list(account.api_url(), l))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({"lists": lists, "meta": {"total": total.to_string()}}),
    ))
}

/// `POST /lists` → 200: the spec documents only 200 for a created list.
async fn create_list(Extension(account): Extension<Arc<Account>>, body: Bytes) -> Reply {
    let list = wire::wrapped(&body, "list")?;
    let input = ListInput {
        name: wire::text(&list, "name"),
        stringid: wire::text(&list, "stringid"),
        sender_url: wire::text(&list, "sender_url"),
        sender_reminder: wire::text(&list, "sender_reminder"),
    };
    let mut data = account.data();
    let id = data.create_list(input)?;
    let created = data.list(id).map(|l| wire::list(account.api_url(), l));
    Ok(reply(StatusCode::OK, json!({ "list": created })))
}

async fn get_list(Extension(account): Extension<Arc<Account>>, Path(params): Params) -> Reply {
    let id = id_param(&params, "_List")?;
    let data = account.data();
    let list = data
        .list(id)
        .ok_or_else(|| ApiError::no_result("_List", id))?;
    Ok(reply(
        StatusCode::OK,
        json!({"list": wire::list(account.api_url(), list)}),
    ))
}

/// `POST /contactLists` → 200: status 1 subscribes, 2 unsubscribes; one record per pair.
async fn set_list_status(Extension(account): Extension<Arc<Account>>, body: Bytes) -> Reply {
    let membership = wire::wrapped(&body, "contactList")?;
    let list = wire::id(&membership, "list")
        .ok_or_else(|| ApiError::field_missing("contactList", "list"))?;
    let contact = wire::id(&membership, "contact")
        .ok_or_else(|| ApiError::field_missing("contactList", "contact"))?;
    let status = match wire::id(&membership, "status") {
        Some(1) => 1,
        Some(2) => 2,
        Some(_) => {
            return Err(ApiError::field_invalid(
                "status",
                "The status must be 1 (subscribe) or 2 (unsubscribe).",
            ))
        }
        None => return Err(ApiError::field_missing("contactList", "status")),
    };
    let mut data = account.data();
    let api = account.api_url();
    let stored = data.set_list_status(contact, list, status)?.clone();
    Ok(reply(
        StatusCode::OK,
        json!({
            "contacts": [contact_json(&data, api, contact)],
            "contactList": wire::contact_list(api, &stored, data.contact(contact), true),
        }),
    ))
}

// ----- /__sandbox ---------------------------------------------------------------------

async fn read_snapshot(State(ac): State<ActiveCampaign>, Path(name): Path<String>) -> Response {
    match ac.account(&name) {
        Some(account) => Json(account.data().snapshot()).into_response(),
        None => ApiError::unknown_account(&name).into_response(),
    }
}
