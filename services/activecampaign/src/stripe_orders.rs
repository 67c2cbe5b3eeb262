//! Stripe objects as ActiveCampaign deep data (seed 001's "Create Order" and "Create
//! Recurring Payment" columns): which object of an event records a purchase, and the order
//! it becomes. Pure functions of the event; `ecommerce` writes the result.
//!
//! **One purchase, one order.** A Stripe payment shows up as several objects: an invoice
//! payment is an invoice and a charge (`charge.invoice`), a checkout is a session and a
//! charge (payment mode) or a session and an invoice (subscription mode). AC's own
//! integration never meets two of them, because it syncs one resource per connection;
//! billsync syncs them all, and recording each would count the revenue twice and start
//! "Makes a purchase" twice. So the order is recorded from one object only, decided from the
//! object alone (never from arrival order):
//!
//! | object (succeeded / paid) | order `externalid` |
//! |---|---|
//! | invoice with `amount_paid` > 0 | the invoice id |
//! | charge of an invoice | none: its invoice's order; a refund lowers that order |
//! | other charge | the charge id |
//! | checkout session with an `invoice` | none: the invoice's order |
//! | checkout session with a `payment_intent` (payment mode) | none: its charge's order |
//! | any other paid, complete checkout session | the session id |
//! | subscription (any event) | the subscription id: the recurring payment record |
//!
//! The "none" rows apply only while the sync takes the covering resource: with
//! `resources = ["customer", "checkout_session"]` sessions record their own orders.
//!
//! **Refunds.** `totalPrice` is what was kept: paid minus refunded (`amount_refunded`, never
//! below 0). The products keep their prices. Refunds only grow, so billsync remembers the
//! largest refunded amount per order and a replayed older event cannot undo a refund.
//!
//! **Recurring payments.** AC's API has no recurring payment resource (the "Recurring
//! Payment" automation triggers belong to AC's own integration), so a subscription is an
//! order with `externalid` = the subscription id, `source` 0 ("historical": on the contact's
//! e-commerce data, but no "Makes a purchase" and no revenue, which its invoices bring),
//! its items as products (category `subscription`, the status and interval in the
//! description) and `totalPrice` = what one period costs, 0 once it has ended. Every
//! subscription event updates it.
//!
//! **Source.** Live events write real-time orders (`source` 1); backfill snapshots write
//! historical ones (0), so old purchases do not start automations.

use crate::api::types::OrderProductInput;
use billsync_events::{BillingEventV1, ObjectKind};
use serde_json::Value;

/// Which Stripe resources feed the sync (its `resources`; all when empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderSources {
    pub charges: bool,
    pub invoices: bool,
    pub checkout_sessions: bool,
}

impl OrderSources {
    pub fn from_resources(resources: &[String]) -> Self {
        let takes = |name: &str| resources.is_empty() || resources.iter().any(|r| r == name);
        Self {
            charges: takes("charge"),
            invoices: takes("invoice"),
            checkout_sessions: takes("checkout_session"),
        }
    }
}

/// What an event means for the customer's deep data.
#[derive(Debug, Clone, PartialEq)]
pub enum DeepData {
    /// Create or update this order.
    Order(PlannedOrder),
    /// `refunded` of a payment whose purchase the order `order` (an invoice's) records.
    Refund { order: String, refunded: i64 },
    /// No order; the reason, for logs.
    Nothing(String),
}

/// An order as the event describes it, before AC's ids and the remembered refunds.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedOrder {
    pub externalid: String,
    /// `source` 1 (real-time) or 0 (historical).
    pub realtime: bool,
    /// What was paid (or what one period costs), before refunds.
    pub paid: i64,
    pub refunded: i64,
    /// Upper-case ISO code.
    pub currency: String,
    pub products: Vec<OrderProductInput>,
    /// The object's `created`, Unix seconds.
    pub created: i64,
    pub order_number: Option<String>,
    pub order_url: Option<String>,
    pub discount_amount: Option<i64>,
    pub tax_amount: Option<i64>,
    pub shipping_amount: Option<i64>,
    /// Checkout's promotions consent, the only marketing opt-in Stripe records.
    pub accepts_marketing: Option<bool>,
}

/// Decides what `event` records (see the module docs for the rules).
pub fn plan(event: &BillingEventV1, sources: OrderSources) -> DeepData {
    let data = &event.data;
    let realtime = event.run_id.is_none();
    match event.object {
        ObjectKind::Charge => charge(data, sources, realtime),
        ObjectKind::Invoice => invoice(data, realtime),
        ObjectKind::CheckoutSession => checkout_session(data, sources, realtime),
        ObjectKind::Subscription => subscription(data),
        _ => DeepData::Nothing(format!("{} events record no order", event.object)),
    }
}

fn text<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn int(object: &Value, key: &str) -> Option<i64> {
    object.get(key).and_then(Value::as_i64)
}

/// An id field Stripe may send expanded (`{"id": ...}`) or as the id itself.
fn reference<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    match object.get(key)? {
        Value::String(id) if !id.is_empty() => Some(id),
        Value::Object(expanded) => expanded.get("id").and_then(Value::as_str),
        _ => None,
    }
}

fn dashboard(livemode: bool, path: &str) -> String {
    let mode = if livemode { "" } else { "test/" };
    format!("https://dashboard.stripe.com/{mode}{path}")
}

fn livemode(object: &Value) -> bool {
    object.get("livemode").and_then(Value::as_bool) == Some(true)
}

fn currency(object: &Value) -> String {
    text(object, "currency").unwrap_or("usd").to_uppercase()
}

fn charge(data: &Value, sources: OrderSources, realtime: bool) -> DeepData {
    let Some(id) = text(data, "id") else {
        return DeepData::Nothing("the charge has no id".into());
    };
    if text(data, "status") != Some("succeeded") {
        return DeepData::Nothing(format!("charge {id} did not succeed"));
    }
    let refunded = int(data, "amount_refunded").unwrap_or(0);
    if let (Some(invoice), true) = (reference(data, "invoice"), sources.invoices) {
        return if refunded > 0 {
            DeepData::Refund {
                order: invoice.to_string(),
                refunded,
            }
        } else {
            DeepData::Nothing(format!(
                "charge {id} pays invoice {invoice}, whose order records the purchase"
            ))
        };
    }
    // A captured amount below the authorised one is what was taken.
    let paid = match int(data, "amount_captured") {
        Some(captured) if captured > 0 => captured,
        _ => int(data, "amount").unwrap_or(0),
    };
    let name = text(data, "description")
        .or_else(|| text(data, "calculated_statement_descriptor"))
        .unwrap_or("Stripe payment");
    DeepData::Order(PlannedOrder {
        externalid: id.to_string(),
        realtime,
        paid,
        refunded,
        currency: currency(data),
        products: vec![OrderProductInput {
            externalid: id.to_string(),
            name: name.to_string(),
            price: paid.max(0),
            quantity: 1,
            category: Some("payment".into()),
            sku: None,
            description: None,
        }],
        created: int(data, "created").unwrap_or(0),
        order_number: text(data, "receipt_number").map(str::to_owned),
        order_url: Some(dashboard(livemode(data), &format!("payments/{id}"))),
        discount_amount: None,
        tax_amount: None,
        shipping_amount: None,
        accepts_marketing: None,
    })
}

fn invoice(data: &Value, realtime: bool) -> DeepData {
    let Some(id) = text(data, "id") else {
        return DeepData::Nothing("the invoice has no id yet (an upcoming invoice)".into());
    };
    if text(data, "status") != Some("paid") {
        return DeepData::Nothing(format!("invoice {id} is not paid"));
    }
    let paid = int(data, "amount_paid").unwrap_or(0);
    if paid <= 0 {
        return DeepData::Nothing(format!(
            "invoice {id} took no money (a free, trial or credited invoice)"
        ));
    }
    let mut products: Vec<OrderProductInput> = data
        .pointer("/lines/data")
        .and_then(Value::as_array)
        .map(|lines| lines.iter().filter_map(invoice_line).collect())
        .unwrap_or_default();
    if products.is_empty() {
        products.push(OrderProductInput {
            externalid: id.to_string(),
            name: format!("Invoice {}", text(data, "number").unwrap_or(id)),
            price: paid,
            quantity: 1,
            category: Some("invoice".into()),
            sku: None,
            description: None,
        });
    }
    let discount: i64 = data
        .get("total_discount_amounts")
        .and_then(Value::as_array)
        .map(|amounts| amounts.iter().filter_map(|a| int(a, "amount")).sum())
        .unwrap_or(0);
    let tax = int(data, "tax").or_else(|| {
        data.get("total_taxes")
            .and_then(Value::as_array)
            .map(|taxes| taxes.iter().filter_map(|t| int(t, "amount")).sum())
    });
    DeepData::Order(PlannedOrder {
        externalid: id.to_string(),
        realtime,
        paid,
        refunded: 0,
        currency: currency(data),
        products,
        created: int(data, "created").unwrap_or(0),
        order_number: text(data, "number").map(str::to_owned),
        order_url: text(data, "hosted_invoice_url")
            .map(str::to_owned)
            .or_else(|| Some(dashboard(livemode(data), &format!("invoices/{id}")))),
        discount_amount: (discount > 0).then_some(discount),
        tax_amount: tax.filter(|t| *t > 0),
        shipping_amount: int(data, "amount_shipping").filter(|s| *s > 0),
        accepts_marketing: None,
    })
}

/// An invoice line as a product. Credits and prorations below zero are left out (AC refuses
/// negative prices); the order's total is the invoice's `amount_paid` either way.
fn invoice_line(line: &Value) -> Option<OrderProductInput> {
    let amount = int(line, "amount")?;
    if amount < 0 {
        return None;
    }
    let quantity = int(line, "quantity").filter(|q| *q > 0).unwrap_or(1);
    // API 2024-04-10 carries `price`; later versions `pricing.price_details`.
    let price = line.get("price").filter(|p| p.is_object());
    let price_id = price
        .and_then(|p| text(p, "id"))
        .or_else(|| {
            line.pointer("/pricing/price_details/price")
                .and_then(Value::as_str)
        })
        .or_else(|| text(line, "id"))?;
    let unit = price
        .and_then(|p| int(p, "unit_amount"))
        .unwrap_or(amount / quantity);
    let subscription = reference(line, "subscription").is_some()
        || text(line, "type") == Some("subscription")
        || line
            .pointer("/parent/type")
            .and_then(Value::as_str)
            .is_some_and(|t| t == "subscription_item_details");
    Some(OrderProductInput {
        externalid: price_id.to_string(),
        name: text(line, "description")
            .or_else(|| price.and_then(|p| text(p, "nickname")))
            .unwrap_or(price_id)
            .to_string(),
        price: unit.max(0),
        quantity,
        category: Some(
            if subscription {
                "subscription"
            } else {
                "invoice item"
            }
            .into(),
        ),
        sku: None,
        description: None,
    })
}

fn checkout_session(data: &Value, sources: OrderSources, realtime: bool) -> DeepData {
    let Some(id) = text(data, "id") else {
        return DeepData::Nothing("the checkout session has no id".into());
    };
    if text(data, "payment_status") != Some("paid") || text(data, "status") != Some("complete") {
        return DeepData::Nothing(format!("checkout session {id} is not paid and complete"));
    }
    if let (Some(invoice), true) = (reference(data, "invoice"), sources.invoices) {
        return DeepData::Nothing(format!(
            "checkout session {id} was paid by invoice {invoice}, whose order records the purchase"
        ));
    }
    if let (Some(intent), true) = (reference(data, "payment_intent"), sources.charges) {
        return DeepData::Nothing(format!(
            "checkout session {id} was paid by payment {intent}, whose charge's order records \
             the purchase"
        ));
    }
    let total = int(data, "amount_total").unwrap_or(0);
    let mut products: Vec<OrderProductInput> = data
        .pointer("/line_items/data")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(checkout_item).collect())
        .unwrap_or_default();
    if products.is_empty() {
        products.push(OrderProductInput {
            externalid: id.to_string(),
            name: "Checkout".into(),
            price: int(data, "amount_subtotal").unwrap_or(total).max(0),
            quantity: 1,
            category: Some("checkout".into()),
            sku: None,
            description: None,
        });
    }
    let details = |key: &str| {
        data.get("total_details")
            .and_then(|d| int(d, key))
            .filter(|v| *v > 0)
    };
    let consent = data
        .pointer("/consent/promotions")
        .and_then(Value::as_str)
        .map(|c| c == "opt_in");
    DeepData::Order(PlannedOrder {
        externalid: id.to_string(),
        realtime,
        paid: total,
        refunded: 0,
        currency: currency(data),
        products,
        created: int(data, "created").unwrap_or(0),
        order_number: None,
        order_url: Some(dashboard(
            livemode(data),
            &format!("checkout/sessions/{id}"),
        )),
        discount_amount: details("amount_discount"),
        tax_amount: details("amount_tax"),
        shipping_amount: details("amount_shipping"),
        accepts_marketing: consent,
    })
}

/// A checkout line item (present when the session was sent with `line_items` expanded).
fn checkout_item(item: &Value) -> Option<OrderProductInput> {
    let price = item.get("price").filter(|p| p.is_object());
    let id = price
        .and_then(|p| text(p, "id"))
        .or_else(|| text(item, "id"))?;
    let quantity = int(item, "quantity").filter(|q| *q > 0).unwrap_or(1);
    let unit = price
        .and_then(|p| int(p, "unit_amount"))
        .or_else(|| int(item, "amount_subtotal").map(|a| a / quantity))?;
    Some(OrderProductInput {
        externalid: id.to_string(),
        name: text(item, "description").unwrap_or(id).to_string(),
        price: unit.max(0),
        quantity,
        category: Some("checkout".into()),
        sku: None,
        description: None,
    })
}

/// Statuses after which nothing recurs any more.
const ENDED: &[&str] = &["canceled", "incomplete_expired"];

fn subscription(data: &Value) -> DeepData {
    let Some(id) = text(data, "id") else {
        return DeepData::Nothing("the subscription has no id".into());
    };
    let status = text(data, "status").unwrap_or("unknown");
    let items: Vec<&Value> = data
        .pointer("/items/data")
        .and_then(Value::as_array)
        .map(|items| items.iter().collect())
        .unwrap_or_default();
    let mut products = Vec::new();
    let mut per_period = 0i64;
    for item in items {
        let price = item.get("price").or_else(|| item.get("plan"));
        let Some(price) = price.filter(|p| p.is_object()) else {
            continue;
        };
        let Some(price_id) = text(price, "id") else {
            continue;
        };
        let unit = int(price, "unit_amount")
            .or_else(|| int(price, "amount"))
            .unwrap_or(0);
        let quantity = int(item, "quantity").filter(|q| *q > 0).unwrap_or(1);
        per_period += unit.max(0) * quantity;
        let interval = price
            .pointer("/recurring/interval")
            .or_else(|| price.get("interval"))
            .and_then(Value::as_str)
            .unwrap_or("period");
        let every = price
            .pointer("/recurring/interval_count")
            .or_else(|| price.get("interval_count"))
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let cadence = if every == 1 {
            format!("every {interval}")
        } else {
            format!("every {every} {interval}s")
        };
        let product = match price.get("product") {
            Some(Value::Object(product)) => product.get("name").and_then(Value::as_str),
            _ => None,
        };
        products.push(OrderProductInput {
            externalid: price_id.to_string(),
            name: text(price, "nickname")
                .or(product)
                .or_else(|| reference(price, "product"))
                .unwrap_or(price_id)
                .to_string(),
            price: unit.max(0),
            quantity,
            category: Some("subscription".into()),
            sku: Some(price_id.to_string()),
            description: Some(format!("{status}, {cadence}")),
        });
    }
    if products.is_empty() {
        products.push(OrderProductInput {
            externalid: id.to_string(),
            name: "Subscription".into(),
            price: 0,
            quantity: 1,
            category: Some("subscription".into()),
            sku: None,
            description: Some(status.to_string()),
        });
    }
    let ended = ENDED.contains(&status);
    DeepData::Order(PlannedOrder {
        externalid: id.to_string(),
        realtime: false,
        paid: if ended { 0 } else { per_period },
        refunded: 0,
        currency: currency(data),
        products,
        created: int(data, "created").unwrap_or(0),
        order_number: Some(id.to_string()),
        order_url: Some(dashboard(livemode(data), &format!("subscriptions/{id}"))),
        discount_amount: None,
        tax_amount: None,
        shipping_amount: None,
        accepts_marketing: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_events::SourceKind;
    use billsync_sources::test_events;
    use serde_json::json;

    const ALL: OrderSources = OrderSources {
        charges: true,
        invoices: true,
        checkout_sessions: true,
    };

    fn event(event_type: &str, object: ObjectKind, data: Value) -> BillingEventV1 {
        test_events::event(SourceKind::Stripe, event_type, object, data)
    }

    fn order(plan: DeepData) -> PlannedOrder {
        match plan {
            DeepData::Order(order) => order,
            other => panic!("expected an order, got {other:?}"),
        }
    }

    fn charge_data(invoice: Value, refunded: i64) -> Value {
        json!({"id": "ch_1", "object": "charge", "status": "succeeded", "amount": 4900,
            "amount_captured": 4900, "amount_refunded": refunded, "currency": "usd",
            "created": 1_712_750_400, "description": "Pro plan", "invoice": invoice,
            "livemode": false, "receipt_number": "1234-5678"})
    }

    #[test]
    fn a_charge_is_an_order_of_its_amount_with_one_product() {
        let plan = order(plan(
            &event(
                "charge.succeeded",
                ObjectKind::Charge,
                charge_data(Value::Null, 0),
            ),
            ALL,
        ));
        assert_eq!(plan.externalid, "ch_1");
        assert!(plan.realtime);
        assert_eq!((plan.paid, plan.refunded), (4900, 0));
        assert_eq!(plan.currency, "USD");
        assert_eq!(plan.products.len(), 1);
        assert_eq!(plan.products[0].name, "Pro plan");
        assert_eq!(plan.products[0].price, 4900);
        assert_eq!(plan.order_number.as_deref(), Some("1234-5678"));
        assert_eq!(
            plan.order_url.as_deref(),
            Some("https://dashboard.stripe.com/test/payments/ch_1")
        );
        let refunded = order(plan_of("charge.refunded", charge_data(Value::Null, 1500)));
        assert_eq!((refunded.paid, refunded.refunded), (4900, 1500));
    }

    fn plan_of(event_type: &str, data: Value) -> DeepData {
        plan(&event(event_type, ObjectKind::Charge, data), ALL)
    }

    #[test]
    fn a_charge_of_an_invoice_is_the_invoices_purchase() {
        assert!(matches!(
            plan_of("charge.succeeded", charge_data(json!("in_1"), 0)),
            DeepData::Nothing(_)
        ));
        assert_eq!(
            plan_of("charge.refunded", charge_data(json!("in_1"), 4900)),
            DeepData::Refund {
                order: "in_1".into(),
                refunded: 4900
            }
        );
        // Without invoices in the sync, the charge records the purchase itself.
        let charges_only = OrderSources {
            invoices: false,
            ..ALL
        };
        let e = event(
            "charge.succeeded",
            ObjectKind::Charge,
            charge_data(json!("in_1"), 0),
        );
        assert_eq!(order(plan(&e, charges_only)).externalid, "ch_1");
        let mut failed = charge_data(Value::Null, 0);
        failed["status"] = json!("failed");
        assert!(matches!(
            plan_of("charge.failed", failed),
            DeepData::Nothing(_)
        ));
    }

    fn invoice_data(status: &str, amount_paid: i64) -> Value {
        json!({"id": "in_1", "object": "invoice", "status": status, "amount_paid": amount_paid,
        "currency": "eur", "created": 1_712_750_400, "number": "ABC-0001",
        "hosted_invoice_url": "https://invoice.stripe.com/i/1",
        "total_discount_amounts": [{"amount": 100}], "tax": 0,
        "lines": {"data": [
            {"id": "il_1", "amount": 2000, "quantity": 2, "description": "2 × Seat",
             "price": {"id": "price_seat", "unit_amount": 1000, "nickname": null},
             "subscription": "sub_1"},
            {"id": "il_2", "amount": -500, "quantity": 1, "description": "Unused time"},
            {"id": "il_3", "amount": 900, "quantity": 1, "description": null,
             "price": {"id": "price_setup", "unit_amount": 900, "nickname": "Setup"}}
        ]}})
    }

    #[test]
    fn a_paid_invoice_is_an_order_of_its_lines() {
        let paid = order(plan(
            &event(
                "invoice.payment_succeeded",
                ObjectKind::Invoice,
                invoice_data("paid", 2400),
            ),
            ALL,
        ));
        assert_eq!(paid.externalid, "in_1");
        assert_eq!(paid.paid, 2400);
        assert_eq!(paid.currency, "EUR");
        assert_eq!(paid.order_number.as_deref(), Some("ABC-0001"));
        assert_eq!(paid.discount_amount, Some(100));
        assert_eq!(paid.tax_amount, None);
        let names: Vec<(&str, &str, i64, i64)> = paid
            .products
            .iter()
            .map(|p| (p.externalid.as_str(), p.name.as_str(), p.price, p.quantity))
            .collect();
        assert_eq!(
            names,
            vec![
                ("price_seat", "2 × Seat", 1000, 2),
                ("price_setup", "Setup", 900, 1)
            ]
        );
        assert_eq!(paid.products[0].category.as_deref(), Some("subscription"));
        for unpaid in [invoice_data("open", 0), invoice_data("paid", 0)] {
            assert!(matches!(
                plan(&event("invoice.updated", ObjectKind::Invoice, unpaid), ALL),
                DeepData::Nothing(_)
            ));
        }
    }

    fn session(mode: &str, invoice: Value, intent: Value) -> Value {
        json!({"id": "cs_1", "object": "checkout.session", "status": "complete",
            "payment_status": "paid", "mode": mode, "amount_total": 3000,
            "amount_subtotal": 3000, "currency": "usd", "created": 1_712_750_400,
            "invoice": invoice, "payment_intent": intent,
            "consent": {"promotions": "opt_in"},
            "total_details": {"amount_discount": 0, "amount_tax": 0, "amount_shipping": 0}})
    }

    #[test]
    fn a_checkout_session_records_an_order_only_when_nothing_else_does() {
        let plan_session = |data: Value, sources: OrderSources| {
            plan(
                &event(
                    "checkout.session.async_payment_succeeded",
                    ObjectKind::CheckoutSession,
                    data,
                ),
                sources,
            )
        };
        assert!(matches!(
            plan_session(session("payment", Value::Null, json!("pi_1")), ALL),
            DeepData::Nothing(_)
        ));
        assert!(matches!(
            plan_session(session("subscription", json!("in_1"), Value::Null), ALL),
            DeepData::Nothing(_)
        ));
        let sessions_only = OrderSources {
            charges: false,
            invoices: false,
            checkout_sessions: true,
        };
        let plan = order(plan_session(
            session("payment", Value::Null, json!("pi_1")),
            sessions_only,
        ));
        assert_eq!(plan.externalid, "cs_1");
        assert_eq!(plan.paid, 3000);
        assert_eq!(plan.accepts_marketing, Some(true));
        assert_eq!(plan.products[0].name, "Checkout");
    }

    #[test]
    fn a_subscription_is_a_historical_order_of_one_periods_price() {
        let data = json!({"id": "sub_1", "object": "subscription", "status": "active",
            "currency": "usd", "created": 1_712_750_400, "livemode": true,
            "items": {"data": [{"id": "si_1", "quantity": 3, "price": {"id": "price_pro",
                "unit_amount": 1500, "nickname": "Pro", "product": "prod_1",
                "recurring": {"interval": "month", "interval_count": 1}}}]}});
        let active = order(plan(
            &event(
                "customer.subscription.created",
                ObjectKind::Subscription,
                data.clone(),
            ),
            ALL,
        ));
        assert_eq!(active.externalid, "sub_1");
        assert!(!active.realtime);
        assert_eq!(active.paid, 4500);
        assert_eq!(active.products[0].name, "Pro");
        assert_eq!(
            active.products[0].description.as_deref(),
            Some("active, every month")
        );
        assert_eq!(
            active.order_url.as_deref(),
            Some("https://dashboard.stripe.com/subscriptions/sub_1")
        );
        let mut canceled = data;
        canceled["status"] = json!("canceled");
        let ended = order(plan(
            &event(
                "customer.subscription.deleted",
                ObjectKind::Subscription,
                canceled,
            ),
            ALL,
        ));
        assert_eq!(ended.paid, 0);
        assert_eq!(
            ended.products[0].description.as_deref(),
            Some("canceled, every month")
        );
    }

    #[test]
    fn backfilled_payments_are_historical() {
        let mut e = event(
            "charge.succeeded",
            ObjectKind::Charge,
            charge_data(Value::Null, 0),
        );
        e.run_id = Some("run_1".into());
        assert!(!order(plan(&e, ALL)).realtime);
    }
}
