//! One account's deep data (e-commerce connections, customers and orders) and its tracked
//! events, with the rules AC enforces when they change.
//!
//! Uniqueness as AC keeps it: a connection per `(service, externalid)`, an e-commerce
//! customer per `(connectionid, externalid)`, an order per `(connectionid, externalid)` and a
//! cart per `(connectionid, externalcheckoutid)`. A second create is a 422 `duplicate`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::id_index::IdIndex;
use super::state::{is_valid_email, now, AcSnapshot};

/// An integration's connection (`POST /connections`); unique per `(service, externalid)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcConnection {
    pub id: String,
    pub service: String,
    pub externalid: String,
    pub name: String,
    pub logo_url: String,
    pub link_url: String,
    pub list_id: String,
    pub cdate: String,
    pub udate: String,
}

/// An e-commerce customer; unique per `(connectionid, externalid)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcEcomCustomer {
    pub id: String,
    pub connectionid: String,
    pub externalid: String,
    pub email: String,
    /// `"0"` not opted in (AC's default), `"1"` opted in.
    pub accepts_marketing: String,
    pub tstamp: String,
    /// Creates and updates it has had (sandbox bookkeeping, not an AC field), so a test can
    /// tell "written again with the same values" from "not written".
    #[serde(default)]
    pub writes: u64,
}

/// A product line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcOrderProduct {
    pub id: String,
    pub externalid: String,
    pub name: String,
    /// Cents.
    pub price: i64,
    pub quantity: i64,
    pub category: Option<String>,
    pub sku: Option<String>,
    pub description: Option<String>,
    pub image_url: Option<String>,
    pub product_url: Option<String>,
}

/// A discount of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcOrderDiscount {
    pub id: String,
    pub name: String,
    /// `order` or `shipping`.
    pub discount_type: String,
    pub discount_amount: i64,
}

/// An order (with `externalid`) or a cart (with `externalcheckoutid` only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcEcomOrder {
    pub id: String,
    pub externalid: Option<String>,
    pub externalcheckoutid: Option<String>,
    /// 0 historical, 1 real-time (only real-time orders trigger "Makes a purchase").
    pub source: u8,
    pub email: String,
    /// Cents, including tax and shipping.
    pub total_price: i64,
    pub shipping_amount: i64,
    pub tax_amount: i64,
    pub discount_amount: i64,
    pub currency: String,
    pub connectionid: String,
    pub customerid: String,
    pub order_url: Option<String>,
    pub order_number: Option<String>,
    pub shipping_method: Option<String>,
    pub external_created_date: Option<String>,
    pub external_updated_date: Option<String>,
    pub abandoned_date: Option<String>,
    /// 0 pending, 1 completed, 2 abandoned, 3 recovered, 4 waiting.
    pub state: u8,
    pub order_products: Vec<AcOrderProduct>,
    pub order_discounts: Vec<AcOrderDiscount>,
    pub created_date: String,
    pub updated_date: String,
    /// Creates and updates it has had (sandbox bookkeeping, not an AC field).
    #[serde(default)]
    pub writes: u64,
}

/// One `POST trackcmp.net/event` that AC accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcTrackedEvent {
    pub id: String,
    pub event: String,
    pub eventdata: Option<String>,
    /// The `visit` email.
    pub email: String,
    /// The contact of that email when the event arrived, if there was one.
    pub contact: Option<String>,
    pub tstamp: String,
}

/// What `POST /connections` and `PUT /connections/{id}` carry.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectionInput {
    pub service: Option<String>,
    pub externalid: Option<String>,
    pub name: Option<String>,
    pub logo_url: Option<String>,
    pub link_url: Option<String>,
    pub list_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct EcomCustomerInput {
    pub connectionid: Option<u64>,
    pub externalid: Option<String>,
    pub email: Option<String>,
    pub accepts_marketing: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ProductInput {
    pub externalid: Option<String>,
    pub name: Option<String>,
    pub price: Option<i64>,
    pub quantity: Option<i64>,
    pub category: Option<String>,
    pub sku: Option<String>,
    pub description: Option<String>,
    pub image_url: Option<String>,
    pub product_url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DiscountInput {
    pub name: Option<String>,
    pub discount_type: Option<String>,
    pub discount_amount: Option<i64>,
}

/// What `POST /ecomOrders` and `PUT /ecomOrders/{id}` carry; `None` leaves a value alone.
#[derive(Debug, Clone, Default)]
pub(crate) struct OrderInput {
    pub externalid: Option<String>,
    pub externalcheckoutid: Option<String>,
    pub source: Option<i64>,
    pub email: Option<String>,
    pub total_price: Option<i64>,
    pub shipping_amount: Option<i64>,
    pub tax_amount: Option<i64>,
    pub discount_amount: Option<i64>,
    pub currency: Option<String>,
    pub connectionid: Option<u64>,
    pub customerid: Option<u64>,
    pub order_url: Option<String>,
    pub order_number: Option<String>,
    pub shipping_method: Option<String>,
    pub external_created_date: Option<String>,
    pub external_updated_date: Option<String>,
    pub abandoned_date: Option<String>,
    pub products: Option<Vec<ProductInput>>,
    pub discounts: Option<Vec<DiscountInput>>,
}

/// Filters of the e-commerce list endpoints; every one given must match.
#[derive(Debug, Clone, Default)]
pub(crate) struct EcomFilter {
    pub service: Option<String>,
    pub externalid: Option<String>,
    pub externalcheckoutid: Option<String>,
    pub connectionid: Option<String>,
    pub customerid: Option<String>,
    pub email: Option<String>,
}

impl EcomFilter {
    fn matches(wanted: Option<&String>, actual: &str) -> bool {
        wanted.is_none_or(|w| w == actual)
    }

    fn matches_email(&self, actual: &str) -> bool {
        self.email
            .as_ref()
            .is_none_or(|w| w.trim().eq_ignore_ascii_case(actual))
    }
}

#[derive(Debug, Default)]
struct NextIds {
    connection: u64,
    customer: u64,
    order: u64,
    product: u64,
    discount: u64,
    tracked: u64,
}

fn take(counter: &mut u64) -> u64 {
    *counter += 1;
    *counter
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// The lookups a long soak makes of orders, indexed: by `externalid`, by
/// `externalcheckoutid` and by `customerid` (which an update never changes).
#[derive(Debug, Default, PartialEq)]
struct OrderIndex {
    by_externalid: IdIndex,
    by_checkout: IdIndex,
    by_customer: IdIndex,
}

impl OrderIndex {
    fn insert(&mut self, id: u64, order: &AcEcomOrder) {
        self.each(order, |index, key| index.insert(key, id));
    }

    fn remove(&mut self, id: u64, order: &AcEcomOrder) {
        self.each(order, |index, key| index.remove(key, id));
    }

    /// Calls `apply` with each index and the order's value for it, if it has one.
    fn each(&mut self, order: &AcEcomOrder, mut apply: impl FnMut(&mut IdIndex, &str)) {
        let keys = [
            (&mut self.by_externalid, order.externalid.as_deref()),
            (&mut self.by_checkout, order.externalcheckoutid.as_deref()),
            (&mut self.by_customer, Some(order.customerid.as_str())),
        ];
        for (index, key) in keys {
            if let Some(key) = key {
                apply(index, key);
            }
        }
    }

    /// Ids of the orders the filter's most selective indexed attribute names, or `None`
    /// when it names none of them and every order is a candidate.
    fn candidates<'a>(&'a self, filter: &'a EcomFilter) -> Option<impl Iterator<Item = u64> + 'a> {
        if let Some(externalid) = &filter.externalid {
            Some(self.by_externalid.ids(externalid))
        } else if let Some(checkout) = &filter.externalcheckoutid {
            Some(self.by_checkout.ids(checkout))
        } else {
            filter
                .customerid
                .as_ref()
                .map(|customer| self.by_customer.ids(customer))
        }
    }
}

/// The deep data and event tracking of one account.
#[derive(Debug)]
pub(crate) struct EcomData {
    next: NextIds,
    connections: BTreeMap<u64, AcConnection>,
    customers: BTreeMap<u64, AcEcomCustomer>,
    /// Customer `externalid` → ids, across connections.
    customers_by_externalid: IdIndex,
    orders: BTreeMap<u64, AcEcomOrder>,
    order_index: OrderIndex,
    tracked: Vec<AcTrackedEvent>,
    /// Event tracking's on/off switch (`PUT /eventTracking`); on, so tests need no set-up.
    pub(crate) tracking_enabled: bool,
    /// Names registered with `POST /eventTrackingEvents` or by a tracked event.
    pub(crate) event_names: Vec<String>,
}

impl Default for EcomData {
    fn default() -> Self {
        Self {
            next: NextIds::default(),
            connections: BTreeMap::new(),
            customers: BTreeMap::new(),
            customers_by_externalid: IdIndex::default(),
            orders: BTreeMap::new(),
            order_index: OrderIndex::default(),
            tracked: Vec::new(),
            tracking_enabled: true,
            event_names: Vec::new(),
        }
    }
}

impl EcomData {
    // ----- connections ----------------------------------------------------------------

    pub(crate) fn connection(&self, id: u64) -> Option<&AcConnection> {
        self.connections.get(&id)
    }

    pub(crate) fn connections_matching(&self, filter: &EcomFilter) -> Vec<&AcConnection> {
        self.connections
            .values()
            .filter(|c| {
                EcomFilter::matches(filter.service.as_ref(), &c.service)
                    && EcomFilter::matches(filter.externalid.as_ref(), &c.externalid)
            })
            .collect()
    }

    /// `DELETE /connections/{id}`: the connection goes with its e-commerce customers and
    /// orders, as in ActiveCampaign (disconnecting a store removes its data).
    pub(crate) fn delete_connection(&mut self, id: u64) -> Result<(), ApiError> {
        self.connections
            .remove(&id)
            .ok_or_else(|| ApiError::no_result("Connection", id))?;
        let connection = id.to_string();
        for customer in ids_on(&self.customers, &connection, |c| &c.connectionid) {
            self.remove_customer(customer);
        }
        for order in ids_on(&self.orders, &connection, |o| &o.connectionid) {
            self.remove_order(order);
        }
        Ok(())
    }

    /// `POST /connections`: `service`, `externalid`, `name`, `logoUrl` and `linkUrl` are
    /// required (the spec's `required`); `(service, externalid)` must be unused.
    pub(crate) fn create_connection(&mut self, input: ConnectionInput) -> Result<u64, ApiError> {
        let missing = |attr: &str| ApiError::field_missing("connection", attr);
        let service = non_empty(input.service).ok_or_else(|| missing("service"))?;
        let externalid = non_empty(input.externalid).ok_or_else(|| missing("externalid"))?;
        let name = non_empty(input.name).ok_or_else(|| missing("name"))?;
        let logo_url = non_empty(input.logo_url).ok_or_else(|| missing("logoUrl"))?;
        let link_url = non_empty(input.link_url).ok_or_else(|| missing("linkUrl"))?;
        if self
            .connections
            .values()
            .any(|c| c.service == service && c.externalid == externalid)
        {
            return Err(ApiError::duplicate_connection());
        }
        let id = take(&mut self.next.connection);
        let stamp = now();
        self.connections.insert(
            id,
            AcConnection {
                id: id.to_string(),
                service,
                externalid,
                name,
                logo_url,
                link_url,
                list_id: input.list_id.unwrap_or_else(|| "0".to_owned()),
                cdate: stamp.clone(),
                udate: stamp,
            },
        );
        Ok(id)
    }

    // ----- customers ------------------------------------------------------------------

    pub(crate) fn customer(&self, id: u64) -> Option<&AcEcomCustomer> {
        self.customers.get(&id)
    }

    pub(crate) fn customers_matching(&self, filter: &EcomFilter) -> Vec<&AcEcomCustomer> {
        let candidates: Box<dyn Iterator<Item = &AcEcomCustomer>> = match &filter.externalid {
            Some(externalid) => Box::new(
                self.customers_by_externalid
                    .ids(externalid)
                    .filter_map(|id| self.customers.get(&id)),
            ),
            None => Box::new(self.customers.values()),
        };
        candidates
            .filter(|c| {
                EcomFilter::matches(filter.externalid.as_ref(), &c.externalid)
                    && EcomFilter::matches(filter.connectionid.as_ref(), &c.connectionid)
                    && filter.matches_email(&c.email)
            })
            .collect()
    }

    /// `POST /ecomCustomers`: `connectionid`, `externalid` and `email` are required, the
    /// connection must exist and `(connectionid, externalid)` must be unused.
    pub(crate) fn create_customer(&mut self, input: EcomCustomerInput) -> Result<u64, ApiError> {
        let missing = |attr: &str| ApiError::field_missing("ecomCustomer", attr);
        let connection = input.connectionid.ok_or_else(|| missing("connectionid"))?;
        let externalid = non_empty(input.externalid).ok_or_else(|| missing("externalid"))?;
        let email = non_empty(input.email).ok_or_else(|| missing("email"))?;
        if !is_valid_email(&email) {
            return Err(ApiError::email_invalid());
        }
        if !self.connections.contains_key(&connection) {
            return Err(ApiError::related_missing("connection"));
        }
        let accepts_marketing = marketing(input.accepts_marketing)?.unwrap_or_else(|| "0".into());
        if self.customer_taken(connection, &externalid, None) {
            return Err(ApiError::duplicate_ecom_customer());
        }
        let id = take(&mut self.next.customer);
        self.customers_by_externalid.insert(&externalid, id);
        self.customers.insert(
            id,
            AcEcomCustomer {
                id: id.to_string(),
                connectionid: connection.to_string(),
                externalid,
                email,
                accepts_marketing,
                tstamp: now(),
                writes: 1,
            },
        );
        Ok(id)
    }

    /// `PUT /ecomCustomers/{id}`: changes what is given, keeping the pair unique.
    pub(crate) fn update_customer(
        &mut self,
        id: u64,
        input: EcomCustomerInput,
    ) -> Result<(), ApiError> {
        let existing = self
            .customers
            .get(&id)
            .ok_or_else(|| ApiError::no_result("EcomCustomer", id))?;
        let connection = match input.connectionid {
            Some(c) if !self.connections.contains_key(&c) => {
                return Err(ApiError::related_missing("connection"))
            }
            Some(c) => c,
            None => existing.connectionid.parse().unwrap_or_default(),
        };
        let externalid = non_empty(input.externalid).unwrap_or_else(|| existing.externalid.clone());
        let email = match non_empty(input.email) {
            Some(email) if !is_valid_email(&email) => return Err(ApiError::email_invalid()),
            Some(email) => email,
            None => existing.email.clone(),
        };
        let accepts_marketing = marketing(input.accepts_marketing)?;
        if self.customer_taken(connection, &externalid, Some(id)) {
            return Err(ApiError::duplicate_ecom_customer());
        }
        let customer = self.customers.get_mut(&id).expect("checked above");
        customer.connectionid = connection.to_string();
        self.customers_by_externalid
            .change(id, Some(&customer.externalid), Some(&externalid));
        customer.externalid = externalid;
        customer.email = email;
        if let Some(accepts) = accepts_marketing {
            customer.accepts_marketing = accepts;
        }
        customer.tstamp = now();
        customer.writes += 1;
        Ok(())
    }

    pub(crate) fn delete_customer(&mut self, id: u64) -> Result<(), ApiError> {
        self.remove_customer(id)
            .map(|_| ())
            .ok_or_else(|| ApiError::no_result("EcomCustomer", id))
    }

    fn remove_customer(&mut self, id: u64) -> Option<AcEcomCustomer> {
        let customer = self.customers.remove(&id)?;
        self.customers_by_externalid
            .remove(&customer.externalid, id);
        Some(customer)
    }

    fn customer_taken(&self, connection: u64, externalid: &str, except: Option<u64>) -> bool {
        let connection = connection.to_string();
        self.customers_by_externalid
            .ids(externalid)
            .filter(|&id| Some(id) != except)
            .any(|id| {
                self.customers
                    .get(&id)
                    .is_some_and(|c| c.connectionid == connection)
            })
    }

    // ----- orders ---------------------------------------------------------------------

    pub(crate) fn order(&self, id: u64) -> Option<&AcEcomOrder> {
        self.orders.get(&id)
    }

    pub(crate) fn orders_matching(&self, filter: &EcomFilter) -> Vec<&AcEcomOrder> {
        let candidates: Box<dyn Iterator<Item = &AcEcomOrder>> =
            match self.order_index.candidates(filter) {
                Some(ids) => Box::new(ids.filter_map(|id| self.orders.get(&id))),
                None => Box::new(self.orders.values()),
            };
        candidates
            .filter(|o| {
                filter
                    .externalid
                    .as_ref()
                    .is_none_or(|w| o.externalid.as_ref() == Some(w))
                    && filter
                        .externalcheckoutid
                        .as_ref()
                        .is_none_or(|w| o.externalcheckoutid.as_ref() == Some(w))
                    && EcomFilter::matches(filter.connectionid.as_ref(), &o.connectionid)
                    && EcomFilter::matches(filter.customerid.as_ref(), &o.customerid)
                    && filter.matches_email(&o.email)
            })
            .collect()
    }

    /// Orders of one e-commerce customer, for the customer's totals.
    pub(crate) fn orders_of_customer<'a>(
        &'a self,
        customer: &str,
    ) -> impl Iterator<Item = &'a AcEcomOrder> + 'a {
        self.order_index
            .by_customer
            .ids(customer)
            .filter_map(|id| self.orders.get(&id))
            .filter(|o| o.externalid.is_some())
    }

    /// `POST /ecomOrders`. Required (the spec's list, read with its "only if" notes):
    /// `externalid` or `externalcheckoutid` (a cart also needs `abandonedDate`), `source`,
    /// `email`, `totalPrice`, `currency`, `connectionid`, `customerid`,
    /// `externalCreatedDate`. Every product needs `externalid`, `name`, `price` and
    /// `quantity`; prices and totals must not be negative.
    pub(crate) fn create_order(&mut self, input: OrderInput) -> Result<u64, ApiError> {
        let missing = |attr: &str| ApiError::field_missing("ecomOrder", attr);
        let externalid = non_empty(input.externalid.clone());
        let checkout = non_empty(input.externalcheckoutid.clone());
        if externalid.is_none() && checkout.is_none() {
            return Err(missing("externalid"));
        }
        if externalid.is_none() && non_empty(input.abandoned_date.clone()).is_none() {
            return Err(missing("abandonedDate"));
        }
        let source = match input.source {
            Some(s @ (0 | 1)) => s as u8,
            Some(_) => {
                return Err(ApiError::field_invalid(
                    "source",
                    "The source must be 0 (historical) or 1 (real-time).",
                ))
            }
            None => return Err(missing("source")),
        };
        let email = non_empty(input.email.clone()).ok_or_else(|| missing("email"))?;
        if !is_valid_email(&email) {
            return Err(ApiError::email_invalid());
        }
        let total_price = input.total_price.ok_or_else(|| missing("totalPrice"))?;
        let currency = non_empty(input.currency.clone()).ok_or_else(|| missing("currency"))?;
        let connection = input.connectionid.ok_or_else(|| missing("connectionid"))?;
        let customer = input.customerid.ok_or_else(|| missing("customerid"))?;
        let created = non_empty(input.external_created_date.clone())
            .ok_or_else(|| missing("externalCreatedDate"))?;
        check_amounts(&input)?;
        check_currency(&currency)?;
        if !self.connections.contains_key(&connection) {
            return Err(ApiError::related_missing("connection"));
        }
        if !self.customers.contains_key(&customer) {
            return Err(ApiError::related_missing("customer"));
        }
        if self.order_taken(connection, externalid.as_deref(), checkout.as_deref(), None) {
            return Err(ApiError::duplicate_ecom_order());
        }
        let products = self.products(input.products.clone().unwrap_or_default())?;
        let discounts = self.discounts(input.discounts.clone().unwrap_or_default());
        let id = take(&mut self.next.order);
        let stamp = now();
        let order = AcEcomOrder {
            id: id.to_string(),
            state: if externalid.is_some() { 1 } else { 0 },
            externalid,
            externalcheckoutid: checkout,
            source,
            email,
            total_price,
            shipping_amount: input.shipping_amount.unwrap_or(0),
            tax_amount: input.tax_amount.unwrap_or(0),
            discount_amount: input.discount_amount.unwrap_or(0),
            currency,
            connectionid: connection.to_string(),
            customerid: customer.to_string(),
            order_url: non_empty(input.order_url),
            order_number: non_empty(input.order_number),
            shipping_method: non_empty(input.shipping_method),
            external_created_date: Some(created),
            external_updated_date: non_empty(input.external_updated_date),
            abandoned_date: non_empty(input.abandoned_date),
            order_products: products,
            order_discounts: discounts,
            created_date: stamp.clone(),
            updated_date: stamp,
            writes: 1,
        };
        self.order_index.insert(id, &order);
        self.orders.insert(id, order);
        Ok(id)
    }

    /// `PUT /ecomOrders/{id}`: what is given replaces what was there (`orderProducts` and
    /// `orderDiscounts` as whole lists); `source`, `connectionid` and `customerid` are not
    /// among the spec's update fields and are ignored.
    pub(crate) fn update_order(&mut self, id: u64, input: OrderInput) -> Result<(), ApiError> {
        let existing = self
            .orders
            .get(&id)
            .ok_or_else(|| ApiError::no_result("EcomOrder", id))?;
        check_amounts(&input)?;
        if let Some(currency) = non_empty(input.currency.clone()) {
            check_currency(&currency)?;
        }
        if let Some(email) = non_empty(input.email.clone()) {
            if !is_valid_email(&email) {
                return Err(ApiError::email_invalid());
            }
        }
        let externalid = non_empty(input.externalid.clone()).or(existing.externalid.clone());
        let checkout =
            non_empty(input.externalcheckoutid.clone()).or(existing.externalcheckoutid.clone());
        let connection: u64 = existing.connectionid.parse().unwrap_or_default();
        if self.order_taken(
            connection,
            externalid.as_deref(),
            checkout.as_deref(),
            Some(id),
        ) {
            return Err(ApiError::duplicate_ecom_order());
        }
        let products = match input.products {
            Some(products) => Some(self.products(products)?),
            None => None,
        };
        let discounts = input.discounts.map(|d| self.discounts(d));
        let order = self.orders.get_mut(&id).expect("checked above");
        if externalid.is_some() && order.externalid.is_none() {
            // A cart that became an order: "Recovered" once it had been abandoned.
            order.state = if order.abandoned_date.is_some() { 3 } else { 1 };
        }
        let index = &mut self.order_index;
        index
            .by_externalid
            .change(id, order.externalid.as_deref(), externalid.as_deref());
        index
            .by_checkout
            .change(id, order.externalcheckoutid.as_deref(), checkout.as_deref());
        order.externalid = externalid;
        order.externalcheckoutid = checkout;
        let set = |slot: &mut String, value: Option<String>| {
            if let Some(v) = non_empty(value) {
                *slot = v;
            }
        };
        set(&mut order.email, input.email);
        set(&mut order.currency, input.currency);
        let set_opt = |slot: &mut Option<String>, value: Option<String>| {
            if let Some(v) = non_empty(value) {
                *slot = Some(v);
            }
        };
        set_opt(&mut order.order_url, input.order_url);
        set_opt(&mut order.order_number, input.order_number);
        set_opt(&mut order.shipping_method, input.shipping_method);
        set_opt(
            &mut order.external_updated_date,
            input.external_updated_date,
        );
        set_opt(&mut order.abandoned_date, input.abandoned_date);
        if let Some(v) = input.total_price {
            order.total_price = v;
        }
        if let Some(v) = input.shipping_amount {
            order.shipping_amount = v;
        }
        if let Some(v) = input.tax_amount {
            order.tax_amount = v;
        }
        if let Some(v) = input.discount_amount {
            order.discount_amount = v;
        }
        if let Some(products) = products {
            order.order_products = products;
        }
        if let Some(discounts) = discounts {
            order.order_discounts = discounts;
        }
        order.updated_date = now();
        order.writes += 1;
        Ok(())
    }

    pub(crate) fn delete_order(&mut self, id: u64) -> Result<(), ApiError> {
        self.remove_order(id)
            .map(|_| ())
            .ok_or_else(|| ApiError::no_result("EcomOrder", id))
    }

    fn remove_order(&mut self, id: u64) -> Option<AcEcomOrder> {
        let order = self.orders.remove(&id)?;
        self.order_index.remove(id, &order);
        Some(order)
    }

    fn order_taken(
        &self,
        connection: u64,
        externalid: Option<&str>,
        checkout: Option<&str>,
        except: Option<u64>,
    ) -> bool {
        let connection = connection.to_string();
        let same_externalid = externalid.map(|e| self.order_index.by_externalid.ids(e));
        let same_checkout = checkout.map(|c| self.order_index.by_checkout.ids(c));
        same_externalid
            .into_iter()
            .flatten()
            .chain(same_checkout.into_iter().flatten())
            .filter(|&id| Some(id) != except)
            .any(|id| {
                self.orders
                    .get(&id)
                    .is_some_and(|o| o.connectionid == connection)
            })
    }

    fn products(&mut self, inputs: Vec<ProductInput>) -> Result<Vec<AcOrderProduct>, ApiError> {
        let mut products = Vec::with_capacity(inputs.len());
        for input in inputs {
            let missing = |attr: &str| ApiError::field_missing("orderProduct", attr);
            let externalid = non_empty(input.externalid).ok_or_else(|| missing("externalid"))?;
            let name = non_empty(input.name).ok_or_else(|| missing("name"))?;
            let price = input.price.ok_or_else(|| missing("price"))?;
            let quantity = input.quantity.ok_or_else(|| missing("quantity"))?;
            if price < 0 {
                return Err(ApiError::field_invalid(
                    "orderProducts.price",
                    "The product price must be greater than or equal to zero.",
                ));
            }
            products.push(AcOrderProduct {
                id: take(&mut self.next.product).to_string(),
                externalid,
                name,
                price,
                quantity,
                category: non_empty(input.category),
                sku: non_empty(input.sku),
                description: non_empty(input.description),
                image_url: non_empty(input.image_url),
                product_url: non_empty(input.product_url),
            });
        }
        Ok(products)
    }

    fn discounts(&mut self, inputs: Vec<DiscountInput>) -> Vec<AcOrderDiscount> {
        inputs
            .into_iter()
            .map(|d| AcOrderDiscount {
                id: take(&mut self.next.discount).to_string(),
                name: d.name.unwrap_or_default(),
                discount_type: d.discount_type.unwrap_or_else(|| "order".into()),
                discount_amount: d.discount_amount.unwrap_or(0),
            })
            .collect()
    }

    // ----- event tracking -------------------------------------------------------------

    /// Records an accepted tracked event; a new name joins the account's event names, as
    /// AC lists names it has seen.
    pub(crate) fn track(
        &mut self,
        event: String,
        eventdata: Option<String>,
        email: String,
        contact: Option<String>,
    ) -> &AcTrackedEvent {
        if !self.event_names.contains(&event) {
            self.event_names.push(event.clone());
        }
        let id = take(&mut self.next.tracked);
        self.tracked.push(AcTrackedEvent {
            id: id.to_string(),
            event,
            eventdata,
            email,
            contact,
            tstamp: now(),
        });
        self.tracked.last().expect("just pushed")
    }

    /// Copies the deep data and tracked events into a snapshot.
    pub(crate) fn fill(&self, snapshot: &mut AcSnapshot) {
        snapshot.connections = self.connections.values().cloned().collect();
        snapshot.ecom_customers = self.customers.values().cloned().collect();
        snapshot.ecom_orders = self.orders.values().cloned().collect();
        snapshot.tracked_events = self.tracked.clone();
    }
}

/// Ids of the records on this connection.
fn ids_on<T>(
    records: &BTreeMap<u64, T>,
    connection: &str,
    connection_of: impl Fn(&T) -> &String,
) -> Vec<u64> {
    records
        .iter()
        .filter(|(_, record)| connection_of(record) == connection)
        .map(|(&id, _)| id)
        .collect()
}

/// `acceptsMarketing` is `"0"` or `"1"` (the spec); booleans arrive as `"1"`/`"0"` too.
fn marketing(value: Option<String>) -> Result<Option<String>, ApiError> {
    match value.as_deref().map(str::trim) {
        None => Ok(None),
        Some("0") => Ok(Some("0".into())),
        Some("1") => Ok(Some("1".into())),
        Some(_) => Err(ApiError::field_invalid(
            "acceptsMarketing",
            "acceptsMarketing must be 0 (not opted in) or 1 (opted in).",
        )),
    }
}

/// The spec: totals and amounts "must be greater than or equal to zero".
fn check_amounts(input: &OrderInput) -> Result<(), ApiError> {
    for (attr, value) in [
        ("totalPrice", input.total_price),
        ("shippingAmount", input.shipping_amount),
        ("taxAmount", input.tax_amount),
        ("discountAmount", input.discount_amount),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(ApiError::field_invalid(
                attr,
                &format!("{attr} must be greater than or equal to zero."),
            ));
        }
    }
    Ok(())
}

/// "3-digit ISO code, e.g., 'USD'"; AC accepts either case (its own example answers `usd`).
fn check_currency(currency: &str) -> Result<(), ApiError> {
    if currency.len() == 3 && currency.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(ApiError::field_invalid(
            "currency",
            &format!("The currency \"{currency}\" is not a 3-letter ISO code."),
        ))
    }
}

impl AcSnapshot {
    /// The connection of `service` with this `externalid`.
    pub fn connection(&self, service: &str, externalid: &str) -> Option<&AcConnection> {
        self.connections
            .iter()
            .find(|c| c.service == service && c.externalid == externalid)
    }

    /// The e-commerce customer with this `externalid` on any connection.
    pub fn ecom_customer(&self, externalid: &str) -> Option<&AcEcomCustomer> {
        self.ecom_customers
            .iter()
            .find(|c| c.externalid == externalid)
    }

    /// Every e-commerce customer with this `externalid` (more than one is a duplicate).
    pub fn ecom_customers_with(&self, externalid: &str) -> Vec<&AcEcomCustomer> {
        self.ecom_customers
            .iter()
            .filter(|c| c.externalid == externalid)
            .collect()
    }

    /// The order with this `externalid` on any connection.
    pub fn ecom_order(&self, externalid: &str) -> Option<&AcEcomOrder> {
        self.ecom_orders
            .iter()
            .find(|o| o.externalid.as_deref() == Some(externalid))
    }

    /// Every order with this `externalid` (more than one is a duplicate).
    pub fn ecom_orders_with(&self, externalid: &str) -> Vec<&AcEcomOrder> {
        self.ecom_orders
            .iter()
            .filter(|o| o.externalid.as_deref() == Some(externalid))
            .collect()
    }

    /// The orders of one e-commerce customer (by its AC id), oldest first.
    pub fn ecom_orders_of(&self, customer_id: &str) -> Vec<&AcEcomOrder> {
        self.ecom_orders
            .iter()
            .filter(|o| o.customerid == customer_id)
            .collect()
    }

    /// Tracked events of one email (case-insensitive), oldest first.
    pub fn tracked_events_of(&self, email: &str) -> Vec<&AcTrackedEvent> {
        self.tracked_events
            .iter()
            .filter(|t| t.email.eq_ignore_ascii_case(email.trim()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn connection(data: &mut EcomData, externalid: &str) -> u64 {
        data.create_connection(ConnectionInput {
            service: Some("stripe".into()),
            externalid: Some(externalid.into()),
            name: Some("Stripe".into()),
            logo_url: Some("https://example.com/logo.png".into()),
            link_url: Some("https://example.com".into()),
            list_id: None,
        })
        .unwrap()
    }

    fn customer(data: &mut EcomData, connection: u64, externalid: &str) -> u64 {
        data.create_customer(EcomCustomerInput {
            connectionid: Some(connection),
            externalid: Some(externalid.into()),
            email: Some("ada@example.com".into()),
            accepts_marketing: None,
        })
        .unwrap()
    }

    fn order(connection: u64, customer: u64, externalid: &str) -> OrderInput {
        OrderInput {
            externalid: Some(externalid.into()),
            source: Some(1),
            email: Some("ada@example.com".into()),
            total_price: Some(4900),
            currency: Some("USD".into()),
            connectionid: Some(connection),
            customerid: Some(customer),
            external_created_date: Some("2024-04-10T12:00:00+00:00".into()),
            products: Some(vec![ProductInput {
                externalid: Some("price_1".into()),
                name: Some("Pro".into()),
                price: Some(4900),
                quantity: Some(1),
                ..ProductInput::default()
            }]),
            ..OrderInput::default()
        }
    }

    /// Fails when a write left an index out of step with the records: each must equal the
    /// index built afresh from them.
    fn assert_indexes_in_step(data: &EcomData) {
        let mut customers = IdIndex::default();
        for (&id, c) in &data.customers {
            customers.insert(&c.externalid, id);
        }
        assert_eq!(data.customers_by_externalid, customers);
        let mut orders = OrderIndex::default();
        for (&id, o) in &data.orders {
            orders.insert(id, o);
        }
        assert_eq!(data.order_index, orders);
    }

    fn customer_ids(data: &EcomData, connection: Option<u64>, externalid: &str) -> Vec<String> {
        let filter = EcomFilter {
            externalid: Some(externalid.into()),
            connectionid: connection.map(|c| c.to_string()),
            ..EcomFilter::default()
        };
        let found = data.customers_matching(&filter);
        found.into_iter().map(|c| c.id.clone()).collect()
    }

    fn order_ids(data: &EcomData, filter: EcomFilter) -> Vec<String> {
        let found = data.orders_matching(&filter);
        found.into_iter().map(|o| o.id.clone()).collect()
    }

    fn by_externalid(externalid: &str) -> EcomFilter {
        EcomFilter {
            externalid: Some(externalid.into()),
            ..EcomFilter::default()
        }
    }

    fn by_checkout(checkout: &str) -> EcomFilter {
        EcomFilter {
            externalcheckoutid: Some(checkout.into()),
            ..EcomFilter::default()
        }
    }

    #[test]
    fn customer_lookups_by_external_id_follow_create_update_and_delete() {
        let mut data = EcomData::default();
        let conn = connection(&mut data, "acct_1");
        let other = connection(&mut data, "acct_2");
        let first = customer(&mut data, conn, "cus_1");
        let second = customer(&mut data, other, "cus_1");
        assert_indexes_in_step(&data);
        let (first_id, second_id) = (first.to_string(), second.to_string());
        assert_eq!(
            customer_ids(&data, None, "cus_1"),
            [first_id.as_str(), second_id.as_str()]
        );
        assert_eq!(
            customer_ids(&data, Some(other), "cus_1"),
            [second_id.as_str()]
        );

        let renamed = EcomCustomerInput {
            externalid: Some("cus_9".into()),
            ..EcomCustomerInput::default()
        };
        data.update_customer(first, renamed).unwrap();
        assert_indexes_in_step(&data);
        assert_eq!(
            customer_ids(&data, Some(conn), "cus_9"),
            [first_id.as_str()]
        );
        assert!(customer_ids(&data, Some(conn), "cus_1").is_empty());
        // The uniqueness check reads the index too: the old id is free, the new one taken.
        let again = customer(&mut data, conn, "cus_1");
        let take_renamed = EcomCustomerInput {
            externalid: Some("cus_9".into()),
            ..EcomCustomerInput::default()
        };
        assert_eq!(
            data.update_customer(again, take_renamed),
            Err(ApiError::duplicate_ecom_customer())
        );

        data.delete_customer(first).unwrap();
        assert_indexes_in_step(&data);
        assert!(customer_ids(&data, None, "cus_9").is_empty());
        data.delete_connection(other).unwrap();
        assert_indexes_in_step(&data);
        assert_eq!(customer_ids(&data, None, "cus_1"), [again.to_string()]);
    }

    #[test]
    fn order_lookups_by_external_and_checkout_id_follow_create_update_and_delete() {
        let mut data = EcomData::default();
        let conn = connection(&mut data, "acct_1");
        let cus = customer(&mut data, conn, "cus_1");
        let mut cart = order(conn, cus, "unused");
        cart.externalid = None;
        cart.externalcheckoutid = Some("co_1".into());
        cart.abandoned_date = Some("2024-04-10T13:00:00+00:00".into());
        let cart = data.create_order(cart).unwrap();
        let placed = data.create_order(order(conn, cus, "ch_1")).unwrap();
        assert_indexes_in_step(&data);
        let (cart_id, placed_id) = (cart.to_string(), placed.to_string());
        assert_eq!(order_ids(&data, by_checkout("co_1")), [cart_id.as_str()]);
        assert_eq!(
            order_ids(&data, by_externalid("ch_1")),
            [placed_id.as_str()]
        );

        // The cart becomes an order, and the order changes its external and checkout ids.
        let set_externalid = |externalid: &str| OrderInput {
            externalid: Some(externalid.into()),
            ..OrderInput::default()
        };
        data.update_order(cart, set_externalid("ch_2")).unwrap();
        let recheckout = OrderInput {
            externalcheckoutid: Some("co_2".into()),
            ..set_externalid("ch_3")
        };
        data.update_order(placed, recheckout).unwrap();
        assert_indexes_in_step(&data);
        assert_eq!(order_ids(&data, by_externalid("ch_2")), [cart_id.as_str()]);
        assert_eq!(order_ids(&data, by_checkout("co_1")), [cart_id.as_str()]);
        assert_eq!(
            order_ids(&data, by_externalid("ch_3")),
            [placed_id.as_str()]
        );
        assert_eq!(order_ids(&data, by_checkout("co_2")), [placed_id.as_str()]);
        assert!(order_ids(&data, by_externalid("ch_1")).is_empty());
        assert_eq!(
            data.create_order(order(conn, cus, "ch_3")),
            Err(ApiError::duplicate_ecom_order())
        );

        data.delete_order(placed).unwrap();
        assert_indexes_in_step(&data);
        assert!(order_ids(&data, by_externalid("ch_3")).is_empty());
        let again = data.create_order(order(conn, cus, "ch_3")).unwrap();
        assert_eq!(order_ids(&data, by_externalid("ch_3")), [again.to_string()]);
        data.delete_connection(conn).unwrap();
        assert_indexes_in_step(&data);
        assert!(order_ids(&data, by_checkout("co_1")).is_empty());
    }

    #[test]
    fn orders_of_a_customer_follow_create_update_and_delete_in_id_order() {
        let mut data = EcomData::default();
        let conn = connection(&mut data, "acct_1");
        let ada = customer(&mut data, conn, "cus_1");
        let bob = customer(&mut data, conn, "cus_2");
        let first = data.create_order(order(conn, ada, "ch_1")).unwrap();
        data.create_order(order(conn, bob, "ch_2")).unwrap();
        let third = data.create_order(order(conn, ada, "ch_3")).unwrap();
        assert_indexes_in_step(&data);
        let of_ada = |data: &EcomData| -> Vec<String> {
            let orders = data.orders_of_customer(&ada.to_string());
            orders.map(|o| o.id.clone()).collect()
        };
        let expected = [first.to_string(), third.to_string()];
        assert_eq!(of_ada(&data), expected);
        let filter = EcomFilter {
            customerid: Some(ada.to_string()),
            ..EcomFilter::default()
        };
        assert_eq!(order_ids(&data, filter.clone()), expected);

        // An update cannot move an order to another customer (`customerid` is ignored).
        let moved = OrderInput {
            customerid: Some(bob),
            externalid: Some("ch_9".into()),
            ..OrderInput::default()
        };
        data.update_order(first, moved).unwrap();
        assert_indexes_in_step(&data);
        assert_eq!(of_ada(&data), expected);

        data.delete_order(first).unwrap();
        assert_indexes_in_step(&data);
        assert_eq!(of_ada(&data), [third.to_string()]);
        assert_eq!(order_ids(&data, filter), [third.to_string()]);
    }

    #[test]
    fn connections_customers_and_orders_are_unique_per_external_id() {
        let mut data = EcomData::default();
        let conn = connection(&mut data, "acct_1");
        assert_eq!(
            data.create_connection(ConnectionInput {
                service: Some("stripe".into()),
                externalid: Some("acct_1".into()),
                name: Some("Again".into()),
                logo_url: Some("x".into()),
                link_url: Some("y".into()),
                list_id: None,
            }),
            Err(ApiError::duplicate_connection())
        );
        let other = connection(&mut data, "acct_2");
        let cus = customer(&mut data, conn, "cus_1");
        assert_eq!(
            data.create_customer(EcomCustomerInput {
                connectionid: Some(conn),
                externalid: Some("cus_1".into()),
                email: Some("b@example.com".into()),
                accepts_marketing: None,
            }),
            Err(ApiError::duplicate_ecom_customer())
        );
        // The same external id on another connection is another customer.
        customer(&mut data, other, "cus_1");

        let first = data.create_order(order(conn, cus, "ch_1")).unwrap();
        assert_eq!(
            data.create_order(order(conn, cus, "ch_1")),
            Err(ApiError::duplicate_ecom_order())
        );
        let second = data.create_order(order(conn, cus, "ch_2")).unwrap();
        assert_ne!(first, second);
        assert_eq!(data.order(first).unwrap().state, 1);
        assert_eq!(data.order(first).unwrap().order_products.len(), 1);
    }

    #[test]
    fn orders_need_their_required_attributes_and_existing_relations() {
        let mut data = EcomData::default();
        let conn = connection(&mut data, "acct_1");
        let cus = customer(&mut data, conn, "cus_1");
        let status = |r: Result<u64, ApiError>| r.unwrap_err().status();
        let mut no_email = order(conn, cus, "ch_1");
        no_email.email = None;
        assert_eq!(
            status(data.create_order(no_email)),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            data.create_order(order(conn, 99, "ch_1")),
            Err(ApiError::related_missing("customer"))
        );
        let mut negative = order(conn, cus, "ch_1");
        negative.total_price = Some(-1);
        assert!(data.create_order(negative).is_err());
        let mut no_ids = order(conn, cus, "ch_1");
        no_ids.externalid = None;
        assert_eq!(
            data.create_order(no_ids),
            Err(ApiError::field_missing("ecomOrder", "externalid"))
        );
        assert!(data.orders_matching(&EcomFilter::default()).is_empty());
    }

    #[test]
    fn an_update_replaces_what_it_carries_and_keeps_the_rest() {
        let mut data = EcomData::default();
        let conn = connection(&mut data, "acct_1");
        let cus = customer(&mut data, conn, "cus_1");
        let id = data.create_order(order(conn, cus, "ch_1")).unwrap();
        data.update_order(
            id,
            OrderInput {
                total_price: Some(1900),
                ..OrderInput::default()
            },
        )
        .unwrap();
        let stored = data.order(id).unwrap();
        assert_eq!(stored.writes, 2);
        assert_eq!(stored.total_price, 1900);
        assert_eq!(stored.currency, "USD");
        assert_eq!(stored.order_products[0].name, "Pro");
        let other = data.create_order(order(conn, cus, "ch_2")).unwrap();
        assert_eq!(
            data.update_order(
                other,
                OrderInput {
                    externalid: Some("ch_1".into()),
                    ..OrderInput::default()
                }
            ),
            Err(ApiError::duplicate_ecom_order())
        );
        assert_eq!(
            data.update_order(99, OrderInput::default()),
            Err(ApiError::no_result("EcomOrder", 99))
        );
    }
}
