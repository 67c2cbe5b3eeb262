//! AC's JSON on the wire: reading request bodies leniently (ids as numbers or strings, as AC
//! accepts) and writing records in the response shapes of the spec's examples.

use serde_json::{json, Map, Value};

use super::ecommerce::{AcConnection, AcEcomCustomer, AcEcomOrder, AcOrderProduct};
use super::error::ApiError;
use super::state::{
    AcContact, AcContactList, AcContactTag, AcField, AcFieldValue, AcList, AcTag, ContactInput,
};

/// Parses a request body and returns the object under `wrapper` (`{"contact": {...}}`).
/// A body that is not JSON, or lacks the wrapper object, is AC's 400 `{}`.
pub(crate) fn wrapped(body: &[u8], wrapper: &str) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(&format!("body is not JSON: {e}")))?;
    match value {
        Value::Object(mut outer) => match outer.remove(wrapper) {
            Some(Value::Object(inner)) => Ok(inner),
            _ => Err(ApiError::bad_request(&format!(
                "body has no \"{wrapper}\" object"
            ))),
        },
        _ => Err(ApiError::bad_request("body is not a JSON object")),
    }
}

/// A text attribute; numbers and booleans are taken as their text, `null` as absent.
pub(crate) fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    match object.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    }
}

/// An id attribute, sent as `2` or `"2"`.
pub(crate) fn id(object: &Map<String, Value>, key: &str) -> Option<u64> {
    match object.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An integer attribute (cents, quantities, `source`), sent as `4900` or `"4900"`.
pub(crate) fn integer(object: &Map<String, Value>, key: &str) -> Option<i64> {
    match object.get(key)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The `contact` object of `POST /contact/sync`, `POST /contacts` and `PUT /contacts/{id}`.
pub(crate) fn contact_input(contact: &Map<String, Value>) -> ContactInput {
    let field_values = match contact.get("fieldValues") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_object)
            .filter_map(|item| {
                let Some(field) = id(item, "field") else {
                    let item = Value::Object(item.clone());
                    tracing::info!(%item, "Ignored a field value without a numeric field id");
                    return None;
                };
                Some((field, text(item, "value").unwrap_or_default()))
            })
            .collect(),
        _ => Vec::new(),
    };
    ContactInput {
        email: text(contact, "email"),
        first_name: text(contact, "firstName"),
        last_name: text(contact, "lastName"),
        phone: text(contact, "phone"),
        field_values,
    }
}

/// `limit` and `offset` query parameters, with AC's default and cap (100 per page).
pub(crate) fn page<T>(
    items: Vec<T>,
    limit: Option<usize>,
    offset: Option<usize>,
    default_limit: usize,
) -> Vec<T> {
    let limit = limit.unwrap_or(default_limit).min(100);
    items
        .into_iter()
        .skip(offset.unwrap_or(0))
        .take(limit)
        .collect()
}

/// Links of a contact, as in the spec's contact examples.
const CONTACT_LINKS: &[&str] = &[
    "bounceLogs",
    "contactAutomations",
    "contactData",
    "contactGoals",
    "contactLists",
    "contactLogs",
    "contactTags",
    "contactDeals",
    "deals",
    "fieldValues",
    "geoIps",
    "notes",
    "organization",
    "plusAppend",
    "trackingLogs",
    "scoreValues",
    "accountContacts",
    "automationEntryCounts",
];

/// A contact as `POST /contact/sync`, `GET /contacts` and `GET /contacts/{id}` return it.
pub(crate) fn contact(api: &str, c: &AcContact, field_value_ids: Vec<String>) -> Value {
    let links: Map<String, Value> = CONTACT_LINKS
        .iter()
        .map(|name| {
            (
                (*name).to_owned(),
                json!(format!("{api}/contacts/{}/{name}", c.id)),
            )
        })
        .collect();
    json!({
        "cdate": c.cdate,
        "email": c.email,
        "phone": c.phone,
        "firstName": c.first_name,
        "lastName": c.last_name,
        "orgid": "0",
        "orgname": "",
        "segmentio_id": "",
        "bounced_hard": "0",
        "bounced_soft": "0",
        "bounced_date": null,
        "ip": "0",
        "ua": null,
        "hash": contact_hash(&c.email),
        "email_empty": false,
        "gravatar": "0",
        "deleted": "0",
        "anonymized": "0",
        "udate": c.udate,
        "deleted_at": null,
        "fieldValues": field_value_ids,
        "links": links,
        "id": c.id,
        "organization": null
    })
}

/// AC's `hash` is 32 hex digits derived from the contact; any stable value serves here.
fn contact_hash(email: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(email.to_lowercase().as_bytes());
    hex::encode(&digest[..16])
}

pub(crate) fn field_value(api: &str, fv: &AcFieldValue) -> Value {
    json!({
        "contact": fv.contact,
        "field": fv.field,
        "value": fv.value,
        "cdate": fv.cdate,
        "udate": fv.udate,
        "created_by": null,
        "updated_by": null,
        "links": {
            "owner": format!("{api}/fieldValues/{}/owner", fv.id),
            "field": format!("{api}/fieldValues/{}/field", fv.id)
        },
        "id": fv.id,
        "owner": fv.contact
    })
}

pub(crate) fn field(api: &str, f: &AcField, ordernum: usize) -> Value {
    json!({
        "title": f.title,
        "descript": f.descript,
        "type": f.field_type,
        "isrequired": "0",
        "perstag": f.perstag,
        "defval": f.defval,
        "show_in_list": "0",
        "rows": "0",
        "cols": "0",
        "visible": "1",
        "service": "",
        "ordernum": ordernum.to_string(),
        "cdate": f.cdate,
        "udate": f.cdate,
        "options": [],
        "relations": [],
        "links": {
            "options": format!("{api}/fields/{}/options", f.id),
            "relations": format!("{api}/fields/{}/relations", f.id)
        },
        "id": f.id
    })
}

pub(crate) fn tag(api: &str, t: &AcTag) -> Value {
    json!({
        "tagType": t.tag_type,
        "tag": t.tag,
        "description": t.description,
        "cdate": t.cdate,
        "links": {"contactGoalTags": format!("{api}/tags/{}/contactGoalTags", t.id)},
        "id": t.id
    })
}

pub(crate) fn contact_tag(api: &str, ct: &AcContactTag) -> Value {
    json!({
        "contact": ct.contact,
        "tag": ct.tag,
        "cdate": ct.cdate,
        "created_timestamp": ct.cdate,
        "updated_timestamp": ct.cdate,
        "created_by": null,
        "updated_by": null,
        "links": {
            "contact": format!("{api}/contactTags/{}/contact", ct.id),
            "tag": format!("{api}/contactTags/{}/tag", ct.id)
        },
        "id": ct.id
    })
}

pub(crate) fn list(api: &str, l: &AcList) -> Value {
    json!({
        "stringid": l.stringid,
        "userid": "1",
        "name": l.name,
        "cdate": l.cdate,
        "sender_url": l.sender_url,
        "sender_reminder": l.sender_reminder,
        "udate": l.cdate,
        "links": {
            "contactGoalLists": format!("{api}/lists/{}/contactGoalLists", l.id),
            "user": format!("{api}/lists/{}/user", l.id),
            "addressLists": format!("{api}/lists/{}/addressLists", l.id)
        },
        "id": l.id,
        "user": "1"
    })
}

/// A list membership. `status` is a string in list reads and a number in the
/// `POST /contactLists` answer, as in the spec's examples; `status_as_number` picks which.
pub(crate) fn contact_list(
    api: &str,
    cl: &AcContactList,
    owner: Option<&AcContact>,
    status_as_number: bool,
) -> Value {
    let status = if status_as_number {
        json!(cl.status)
    } else {
        json!(cl.status.to_string())
    };
    let (first, last) = owner
        .map(|c| (c.first_name.as_str(), c.last_name.as_str()))
        .unwrap_or_default();
    json!({
        "contact": cl.contact,
        "list": cl.list,
        "form": null,
        "seriesid": "0",
        "sdate": cl.sdate,
        "udate": cl.udate,
        "status": status,
        "responder": "1",
        "sync": "0",
        "unsubreason": null,
        "campaign": null,
        "message": null,
        "first_name": first,
        "last_name": last,
        "ip4Sub": "0",
        "sourceid": "0",
        "autosyncLog": null,
        "ip4_last": "0",
        "ip4Unsub": "0",
        "unsubscribeAutomation": null,
        "links": {
            "automation": format!("{api}/contactLists/{}/automation", cl.id),
            "list": format!("{api}/contactLists/{}/list", cl.id),
            "contact": format!("{api}/contactLists/{}/contact", cl.id)
        },
        "id": cl.id,
        "automation": null
    })
}

/// A connection as `POST /connections` and `GET /connections` show it.
pub(crate) fn connection(api: &str, c: &AcConnection) -> Value {
    json!({
        "service": c.service,
        "externalid": c.externalid,
        "name": c.name,
        "isInternal": "0",
        "connectionType": "ecommerce",
        "status": "1",
        "syncStatus": "0",
        "lastSync": null,
        "logoUrl": c.logo_url,
        "linkUrl": c.link_url,
        "listId": c.list_id,
        "cdate": c.cdate,
        "udate": c.udate,
        "links": {
            "options": format!("{api}/connections/{}/options", c.id),
            "customers": format!("{api}/connections/{}/customers", c.id)
        },
        "id": c.id
    })
}

/// An e-commerce customer with the totals AC keeps for it (`totalRevenue` in cents over its
/// orders, as the spec's examples show them: strings).
pub(crate) fn ecom_customer<'a>(
    api: &str,
    c: &AcEcomCustomer,
    orders: impl Iterator<Item = &'a AcEcomOrder>,
) -> Value {
    let (mut revenue, mut count, mut products) = (0i64, 0i64, 0i64);
    for order in orders {
        revenue += order.total_price;
        count += 1;
        products += order.order_products.iter().map(|p| p.quantity).sum::<i64>();
    }
    let average = if count > 0 { revenue / count } else { 0 };
    json!({
        "connectionid": c.connectionid,
        "externalid": c.externalid,
        "email": c.email,
        "totalRevenue": revenue.to_string(),
        "totalOrders": count.to_string(),
        "totalProducts": products.to_string(),
        "avgRevenuePerOrder": average.to_string(),
        "avgProductCategory": "",
        "tstamp": c.tstamp,
        "acceptsMarketing": c.accepts_marketing,
        "links": {
            "connection": format!("{api}/ecomCustomers/{}/connection", c.id),
            "orders": format!("{api}/ecomCustomers/{}/orders", c.id)
        },
        "id": c.id,
        "connection": c.connectionid
    })
}

/// An order as `GET /ecomOrders` shows it: products and discounts by id only.
pub(crate) fn ecom_order(api: &str, o: &AcEcomOrder) -> Value {
    json!({
        "externalid": o.externalid,
        "externalcheckoutid": o.externalcheckoutid,
        "source": o.source.to_string(),
        "email": o.email,
        "currency": o.currency,
        "connectionid": o.connectionid,
        "customerid": o.customerid,
        "orderUrl": o.order_url,
        "orderNumber": o.order_number,
        "shippingMethod": o.shipping_method,
        "totalPrice": o.total_price,
        "shippingAmount": o.shipping_amount,
        "taxAmount": o.tax_amount,
        "discountAmount": o.discount_amount,
        "externalCreatedDate": o.external_created_date,
        "externalUpdatedDate": o.external_updated_date,
        "abandonedDate": o.abandoned_date,
        "totalProducts": o.order_products.len(),
        "createdDate": o.created_date,
        "updatedDate": o.updated_date,
        "state": o.state,
        "connection": o.connectionid,
        "orderProducts": o.order_products.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        "customer": o.customerid,
        "orderDate": o.external_created_date,
        "tstamp": o.updated_date,
        "links": {
            "connection": format!("{api}/ecomOrders/{}/connection", o.id),
            "customer": format!("{api}/ecomOrders/{}/customer", o.id),
            "orderProducts": format!("{api}/ecomOrders/{}/orderProducts", o.id),
            "orderDiscounts": format!("{api}/ecomOrders/{}/orderDiscounts", o.id),
            "orderActivities": format!("{api}/ecomOrders/{}/orderActivities", o.id)
        },
        "id": o.id
    })
}

/// The answer of order writes: the order with its products and discounts spelled out, as in
/// the spec's `POST /ecomOrders` and `PUT /ecomOrders/{id}` examples.
pub(crate) fn ecom_order_written(api: &str, o: &AcEcomOrder) -> Value {
    let products: Vec<Value> = o
        .order_products
        .iter()
        .map(|p| order_product(api, o, p))
        .collect();
    let discounts: Vec<Value> = o
        .order_discounts
        .iter()
        .map(|d| {
            json!({
                "name": d.name,
                "type": d.discount_type,
                "orderid": o.id,
                "discountAmount": d.discount_amount.to_string(),
                "id": d.id,
                "createdDate": o.created_date,
                "updatedDate": o.updated_date
            })
        })
        .collect();
    json!({
        "ecomOrderProducts": products,
        "ecomOrderDiscounts": discounts,
        "ecomOrder": ecom_order(api, o),
    })
}

fn order_product(api: &str, o: &AcEcomOrder, p: &AcOrderProduct) -> Value {
    json!({
        "orderid": o.id,
        "connectionid": o.connectionid,
        "externalid": p.externalid,
        "sku": p.sku,
        "name": p.name,
        "description": p.description,
        "price": p.price.to_string(),
        "quantity": p.quantity.to_string(),
        "category": p.category,
        "imageUrl": p.image_url,
        "productUrl": p.product_url,
        "createdDate": o.created_date,
        "updatedDate": o.updated_date,
        "tstamp": o.updated_date,
        "links": {"ecomOrder": format!("{api}/ecomOrderProducts/{}/ecomOrder", p.id)},
        "id": p.id,
        "ecomOrder": o.id
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_and_text_leniently() {
        let body = br#"{"contact":{"email":"a@example.com","phone":7223224241,
            "firstName":null,"fieldValues":[{"field":"1","value":"x"},{"field":6,"value":null},{"field":"CB_X","value":"y"}]}}"#;
        let contact = wrapped(body, "contact").unwrap();
        let input = contact_input(&contact);
        assert_eq!(input.email.as_deref(), Some("a@example.com"));
        assert_eq!(input.phone.as_deref(), Some("7223224241"));
        assert_eq!(input.first_name, None);
        assert_eq!(
            input.field_values,
            vec![(1, "x".to_owned()), (6, String::new())]
        );
    }

    #[test]
    fn a_body_without_the_wrapper_is_a_bad_request() {
        for body in [&b"not json"[..], b"[]", b"{}", br#"{"contact":"x"}"#] {
            let err = wrapped(body, "contact").unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
        }
    }
}
