//! Request and response bodies of the ActiveCampaign endpoints billsync calls.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize)]
pub struct ContactSyncRequest<'a> {
    pub contact: ContactInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactInput<'a> {
    pub email: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<&'a str>,
    /// Custom field values, by field id.
    #[serde(rename = "fieldValues", skip_serializing_if = "Vec::is_empty")]
    pub field_values: Vec<FieldValueInput>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldValueInput {
    pub field: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactList {
    pub contacts: Vec<Contact>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldRequest<'a> {
    pub field: FieldInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldInput<'a> {
    pub title: &'a str,
    #[serde(rename = "type")]
    pub field_type: &'a str,
    pub perstag: &'a str,
    pub descript: &'a str,
    pub visible: u8,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldEnvelope {
    pub field: Field,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldPage {
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Field {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub perstag: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactListRequest<'a> {
    #[serde(rename = "contactList")]
    pub contact_list: ContactListInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactListInput<'a> {
    pub list: &'a str,
    pub contact: &'a str,
    /// 1 subscribes, 2 unsubscribes. Sent as the string `"1"` / `"2"`: the spec's schema
    /// types `contactList.status` as a string (its request example shows a number, which the
    /// schema does not allow).
    #[serde(serialize_with = "decimal_string")]
    pub status: u8,
}

fn decimal_string<S: serde::Serializer>(value: &u8, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

#[derive(Debug, Clone, Deserialize)]
pub struct ContactEnvelope {
    pub contact: Contact,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    pub id: String,
    pub email: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagRequest<'a> {
    pub tag: TagInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TagInput<'a> {
    pub tag: &'a str,
    pub tag_type: &'a str,
    pub description: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TagEnvelope {
    pub tag: Tag,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TagList {
    pub tags: Vec<Tag>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tag {
    pub id: String,
    pub tag: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactTagRequest<'a> {
    #[serde(rename = "contactTag")]
    pub contact_tag: ContactTagInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactTagInput<'a> {
    pub contact: &'a str,
    pub tag: &'a str,
}

/// `POST /connections`: the e-commerce connection deep data hangs off.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRequest<'a> {
    pub connection: ConnectionInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInput<'a> {
    pub service: &'a str,
    pub externalid: &'a str,
    pub name: &'a str,
    pub logo_url: &'a str,
    pub link_url: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionEnvelope {
    pub connection: Connection,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionList {
    pub connections: Vec<Connection>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Connection {
    pub id: String,
    pub service: String,
    pub externalid: String,
}

/// `POST /ecomCustomers` and `PUT /ecomCustomers/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct EcomCustomerRequest<'a> {
    #[serde(rename = "ecomCustomer")]
    pub ecom_customer: EcomCustomerInput<'a>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcomCustomerInput<'a> {
    pub connectionid: &'a str,
    pub externalid: &'a str,
    pub email: &'a str,
    /// `"1"` opted in, `"0"` not; left out when the billing system does not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepts_marketing: Option<&'a str>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EcomCustomerEnvelope {
    #[serde(rename = "ecomCustomer")]
    pub ecom_customer: EcomCustomer,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EcomCustomerList {
    #[serde(rename = "ecomCustomers")]
    pub ecom_customers: Vec<EcomCustomer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EcomCustomer {
    pub id: String,
    #[serde(default)]
    pub externalid: String,
    #[serde(default)]
    pub email: String,
}

/// `POST /ecomOrders` and `PUT /ecomOrders/{id}`.
#[derive(Debug, Clone, Serialize)]
pub struct EcomOrderRequest<'a> {
    #[serde(rename = "ecomOrder")]
    pub ecom_order: &'a EcomOrderInput,
}

/// An order as billsync writes it. Amounts are in the currency's smallest unit (AC's
/// "cents"), as Stripe sends them. Kept as owned data: the worker remembers the last order it
/// wrote (NATS KV) to skip writes that would change nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EcomOrderInput {
    pub externalid: String,
    /// 1 real-time (shows on the dashboard, starts "Makes a purchase"), 0 historical.
    /// Not among the update fields: AC keeps the source an order was created with.
    pub source: u8,
    pub email: String,
    pub order_products: Vec<OrderProductInput>,
    pub total_price: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_amount: Option<i64>,
    pub currency: String,
    pub connectionid: String,
    pub customerid: String,
    pub external_created_date: String,
    pub external_updated_date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_url: Option<String>,
}

/// `PUT /ecomOrders/{id}`: the spec's update fields only (no `source`, `connectionid`,
/// `customerid` or `externalCreatedDate`, which AC keeps from the create).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EcomOrderUpdate<'a> {
    pub externalid: &'a str,
    pub email: &'a str,
    pub order_products: &'a [OrderProductInput],
    pub total_price: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipping_amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tax_amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discount_amount: Option<i64>,
    pub currency: &'a str,
    pub external_updated_date: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_url: Option<&'a str>,
}

impl<'a> From<&'a EcomOrderInput> for EcomOrderUpdate<'a> {
    fn from(order: &'a EcomOrderInput) -> Self {
        Self {
            externalid: &order.externalid,
            email: &order.email,
            order_products: &order.order_products,
            total_price: order.total_price,
            shipping_amount: order.shipping_amount,
            tax_amount: order.tax_amount,
            discount_amount: order.discount_amount,
            currency: &order.currency,
            external_updated_date: &order.external_updated_date,
            order_number: order.order_number.as_deref(),
            order_url: order.order_url.as_deref(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EcomOrderUpdateRequest<'a> {
    #[serde(rename = "ecomOrder")]
    pub ecom_order: EcomOrderUpdate<'a>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderProductInput {
    pub externalid: String,
    pub name: String,
    /// Per unit, in cents; AC refuses negative prices.
    pub price: i64,
    pub quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EcomOrderEnvelope {
    #[serde(rename = "ecomOrder")]
    pub ecom_order: EcomOrder,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EcomOrderList {
    #[serde(rename = "ecomOrders")]
    pub ecom_orders: Vec<EcomOrder>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct EcomOrder {
    pub id: String,
    #[serde(default)]
    pub externalid: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_status_is_sent_as_the_string_the_spec_declares() {
        let request = ContactListRequest {
            contact_list: ContactListInput {
                list: "3",
                contact: "7",
                status: 2,
            },
        };
        assert_eq!(
            serde_json::to_value(&request).expect("serialize"),
            serde_json::json!({"contactList": {"list": "3", "contact": "7", "status": "2"}})
        );
    }
}

/// `POST /import/bulk_import`'s body: up to 250 contacts, written asynchronously.
#[derive(Debug, Clone, Serialize)]
pub struct BulkImportRequest<'a> {
    pub contacts: &'a [BulkContact],
}

/// One contact of a bulk import, in the importer's own names (`first_name`, custom fields
/// by numeric id, lists by `listid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkContact {
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<BulkField>,
    /// Tags put on the contact, created when the account lacks them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<BulkList>,
    /// The contact's id as billsync last knew it (not sent): the importer lists only the
    /// contacts it created, so an updated one keeps this id without a lookup.
    #[serde(skip)]
    pub known_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkField {
    /// The spec's `integer`: the custom field's id.
    pub id: u64,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkList {
    pub listid: String,
}

/// `POST /import/bulk_import`'s 200: the batch to ask `GET /import/info` about.
#[derive(Debug, Clone, Deserialize)]
pub struct BulkImportQueued {
    #[serde(rename = "batchId")]
    pub batch_id: String,
}

/// `GET /import/info`: `status` is `false` until the importer sets one, then `active`, then
/// `completed`; `success` lists the ids of the contacts the batch created, `failure` the
/// emails of those it could not import.
#[derive(Debug, Clone, Deserialize)]
pub struct ImportInfo {
    #[serde(default)]
    pub status: serde_json::Value,
    #[serde(default)]
    pub success: Vec<serde_json::Value>,
    #[serde(default)]
    pub failure: Vec<String>,
}

impl ImportInfo {
    pub fn completed(&self) -> bool {
        self.status.as_str() == Some("completed")
    }

    /// The created contacts' ids, as numbers (AC lists them as strings).
    pub fn created_ids(&self) -> Vec<u64> {
        self.success
            .iter()
            .filter_map(|id| match id {
                serde_json::Value::String(s) => s.trim().parse().ok(),
                other => other.as_u64(),
            })
            .collect()
    }
}
