//! HTTP handlers of AC's deep data API: `/connections`, `/ecomCustomers`, `/ecomOrders`.
//! They sit behind the same gatekeeper (token, 5 req/s, faults) as every v3 route.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};

use super::ecommerce::{
    ConnectionInput, DiscountInput, EcomCustomerInput, EcomFilter, OrderInput, ProductInput,
};
use super::error::ApiError;
use super::{wire, Account};

type Reply = Result<Response, ApiError>;
type Params = Path<HashMap<String, String>>;
type QueryMap = Query<HashMap<String, String>>;

fn reply(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn id_param(params: &HashMap<String, String>, entity: &str) -> Result<u64, ApiError> {
    let raw = params.get("id").map(String::as_str).unwrap_or_default();
    raw.parse().map_err(|_| ApiError::no_result(entity, raw))
}

fn filter(query: &HashMap<String, String>) -> EcomFilter {
    let get = |key: &str| query.get(&format!("filters[{key}]")).cloned();
    EcomFilter {
        service: get("service"),
        externalid: get("externalid"),
        externalcheckoutid: get("externalcheckoutid"),
        connectionid: get("connectionid"),
        customerid: get("customerid"),
        email: get("email"),
    }
}

fn page<T>(items: Vec<T>, query: &HashMap<String, String>) -> Vec<T> {
    let number = |key: &str| query.get(key).and_then(|v| v.trim().parse().ok());
    wire::page(items, number("limit"), number("offset"), 20)
}

// ----- connections ------------------------------------------------------------------------

/// `POST /connections` → 200, the only status the spec documents for it (customers and
/// orders answer 201).
pub(crate) async fn create_connection(
    Extension(account): Extension<Arc<Account>>,
    body: Bytes,
) -> Reply {
    let connection = wire::wrapped(&body, "connection")?;
    let input = ConnectionInput {
        service: wire::text(&connection, "service"),
        externalid: wire::text(&connection, "externalid"),
        name: wire::text(&connection, "name"),
        logo_url: wire::text(&connection, "logoUrl"),
        link_url: wire::text(&connection, "linkUrl"),
        list_id: wire::text(&connection, "listId"),
    };
    let mut data = account.data();
    let id = data.ecom.create_connection(input)?;
    let created = data
        .ecom
        .connection(id)
        .map(|c| wire::connection(account.api_url(), c));
    Ok(reply(StatusCode::OK, json!({ "connection": created })))
}

/// `GET /connections`: `filters[service]` and `filters[externalid]` match exactly.
pub(crate) async fn list_connections(
    Extension(account): Extension<Arc<Account>>,
    Query(query): QueryMap,
) -> Reply {
    let data = account.data();
    let matching = data.ecom.connections_matching(&filter(&query));
    let total = matching.len();
    let connections: Vec<Value> = page(matching, &query)
        .into_iter()
        .map(|c| wire::connection(account.api_url(), c))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({"connections": connections, "meta": {"total": total.to_string()}}),
    ))
}

pub(crate) async fn get_connection(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
) -> Reply {
    let id = id_param(&params, "Connection")?;
    let data = account.data();
    let connection = data
        .ecom
        .connection(id)
        .ok_or_else(|| ApiError::no_result("Connection", id))?;
    Ok(reply(
        StatusCode::OK,
        json!({"connection": wire::connection(account.api_url(), connection)}),
    ))
}

pub(crate) async fn delete_connection(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
) -> Reply {
    let id = id_param(&params, "Connection")?;
    account.data().ecom.delete_connection(id)?;
    Ok(reply(StatusCode::OK, json!({})))
}

// ----- customers --------------------------------------------------------------------------

fn customer_input(customer: &Map<String, Value>) -> EcomCustomerInput {
    EcomCustomerInput {
        connectionid: wire::id(customer, "connectionid"),
        externalid: wire::text(customer, "externalid"),
        email: wire::text(customer, "email"),
        accepts_marketing: wire::text(customer, "acceptsMarketing"),
    }
}

fn customer_json(data: &super::state::AccountData, api: &str, id: u64) -> Value {
    match data.ecom.customer(id) {
        Some(c) => wire::ecom_customer(api, c, data.ecom.orders_of_customer(&c.id)),
        None => Value::Null,
    }
}

/// `POST /ecomCustomers` → 201.
pub(crate) async fn create_customer(
    Extension(account): Extension<Arc<Account>>,
    body: Bytes,
) -> Reply {
    let customer = wire::wrapped(&body, "ecomCustomer")?;
    let mut data = account.data();
    let id = data.ecom.create_customer(customer_input(&customer))?;
    Ok(reply(
        StatusCode::CREATED,
        json!({"ecomCustomer": customer_json(&data, account.api_url(), id)}),
    ))
}

/// `GET /ecomCustomers`: `filters[externalid]`, `filters[connectionid]` and
/// `filters[email]` (case-insensitive) match exactly.
pub(crate) async fn list_customers(
    Extension(account): Extension<Arc<Account>>,
    Query(query): QueryMap,
) -> Reply {
    let data = account.data();
    let matching = data.ecom.customers_matching(&filter(&query));
    let total = matching.len();
    let api = account.api_url();
    let customers: Vec<Value> = page(matching, &query)
        .into_iter()
        .map(|c| wire::ecom_customer(api, c, data.ecom.orders_of_customer(&c.id)))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({"ecomCustomers": customers, "meta": {"total": total.to_string()}}),
    ))
}

pub(crate) async fn get_customer(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
) -> Reply {
    let id = id_param(&params, "EcomCustomer")?;
    let data = account.data();
    if data.ecom.customer(id).is_none() {
        return Err(ApiError::no_result("EcomCustomer", id));
    }
    Ok(reply(
        StatusCode::OK,
        json!({"ecomCustomer": customer_json(&data, account.api_url(), id)}),
    ))
}

pub(crate) async fn update_customer(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
    body: Bytes,
) -> Reply {
    let id = id_param(&params, "EcomCustomer")?;
    let customer = wire::wrapped(&body, "ecomCustomer")?;
    let mut data = account.data();
    data.ecom.update_customer(id, customer_input(&customer))?;
    Ok(reply(
        StatusCode::OK,
        json!({"ecomCustomer": customer_json(&data, account.api_url(), id)}),
    ))
}

pub(crate) async fn delete_customer(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
) -> Reply {
    let id = id_param(&params, "EcomCustomer")?;
    account.data().ecom.delete_customer(id)?;
    Ok(reply(StatusCode::OK, json!({})))
}

// ----- orders -----------------------------------------------------------------------------

fn order_input(order: &Map<String, Value>) -> OrderInput {
    let objects = |key: &str| -> Option<Vec<Map<String, Value>>> {
        match order.get(key)? {
            Value::Array(items) => {
                Some(items.iter().filter_map(Value::as_object).cloned().collect())
            }
            _ => None,
        }
    };
    let products = objects("orderProducts").map(|items| {
        items
            .iter()
            .map(|p| ProductInput {
                externalid: wire::text(p, "externalid"),
                name: wire::text(p, "name"),
                price: wire::integer(p, "price"),
                quantity: wire::integer(p, "quantity"),
                category: wire::text(p, "category"),
                sku: wire::text(p, "sku"),
                description: wire::text(p, "description"),
                image_url: wire::text(p, "imageUrl"),
                product_url: wire::text(p, "productUrl"),
            })
            .collect()
    });
    let discounts = objects("orderDiscounts").map(|items| {
        items
            .iter()
            .map(|d| DiscountInput {
                name: wire::text(d, "name"),
                discount_type: wire::text(d, "type"),
                discount_amount: wire::integer(d, "discountAmount"),
            })
            .collect()
    });
    OrderInput {
        externalid: wire::text(order, "externalid"),
        externalcheckoutid: wire::text(order, "externalcheckoutid"),
        source: wire::integer(order, "source"),
        email: wire::text(order, "email"),
        total_price: wire::integer(order, "totalPrice"),
        shipping_amount: wire::integer(order, "shippingAmount"),
        tax_amount: wire::integer(order, "taxAmount"),
        discount_amount: wire::integer(order, "discountAmount"),
        currency: wire::text(order, "currency"),
        connectionid: wire::id(order, "connectionid"),
        customerid: wire::id(order, "customerid"),
        order_url: wire::text(order, "orderUrl"),
        order_number: wire::text(order, "orderNumber"),
        shipping_method: wire::text(order, "shippingMethod"),
        external_created_date: wire::text(order, "externalCreatedDate"),
        external_updated_date: wire::text(order, "externalUpdatedDate"),
        abandoned_date: wire::text(order, "abandonedDate"),
        products,
        discounts,
    }
}

/// `POST /ecomOrders` → 201 with the order, its products and discounts.
pub(crate) async fn create_order(
    Extension(account): Extension<Arc<Account>>,
    body: Bytes,
) -> Reply {
    let order = wire::wrapped(&body, "ecomOrder")?;
    let mut data = account.data();
    let id = data.ecom.create_order(order_input(&order))?;
    let api = account.api_url();
    let written = data
        .ecom
        .order(id)
        .map(|o| wire::ecom_order_written(api, o))
        .unwrap_or(Value::Null);
    Ok(reply(StatusCode::CREATED, written))
}

/// `GET /ecomOrders`: `filters[externalid]`, `filters[externalcheckoutid]`,
/// `filters[connectionid]`, `filters[customerid]` and `filters[email]` match exactly.
pub(crate) async fn list_orders(
    Extension(account): Extension<Arc<Account>>,
    Query(query): QueryMap,
) -> Reply {
    let data = account.data();
    let matching = data.ecom.orders_matching(&filter(&query));
    let total = matching.len();
    let orders: Vec<Value> = page(matching, &query)
        .into_iter()
        .map(|o| wire::ecom_order(account.api_url(), o))
        .collect();
    Ok(reply(
        StatusCode::OK,
        json!({"ecomOrders": orders, "meta": {"total": total.to_string()}}),
    ))
}

pub(crate) async fn get_order(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
) -> Reply {
    let id = id_param(&params, "EcomOrder")?;
    let data = account.data();
    let order = data
        .ecom
        .order(id)
        .ok_or_else(|| ApiError::no_result("EcomOrder", id))?;
    Ok(reply(
        StatusCode::OK,
        json!({"ecomOrder": wire::ecom_order(account.api_url(), order)}),
    ))
}

/// `PUT /ecomOrders/{id}` → 200 with the order as written.
pub(crate) async fn update_order(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
    body: Bytes,
) -> Reply {
    let id = id_param(&params, "EcomOrder")?;
    let order = wire::wrapped(&body, "ecomOrder")?;
    let mut data = account.data();
    data.ecom.update_order(id, order_input(&order))?;
    let written = data
        .ecom
        .order(id)
        .map(|o| wire::ecom_order_written(account.api_url(), o))
        .unwrap_or(Value::Null);
    Ok(reply(StatusCode::OK, written))
}

pub(crate) async fn delete_order(
    Extension(account): Extension<Arc<Account>>,
    Path(params): Params,
) -> Reply {
    let id = id_param(&params, "EcomOrder")?;
    account.data().ecom.delete_order(id)?;
    Ok(reply(StatusCode::OK, json!({})))
}
