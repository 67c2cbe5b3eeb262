//! The five Stripe objects the sandbox lists (customer, subscription, invoice, charge,
//! checkout session), held as small records and rendered in the shape of
//! `specs/stripe/fixtures3.json`: every field the fixture has, with the values a test-mode
//! object created through the API would carry.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A Stripe list resource, as its path under `/v1` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StripeResource {
    Customers,
    Subscriptions,
    Invoices,
    Charges,
    CheckoutSessions,
}

impl StripeResource {
    pub const ALL: [StripeResource; 5] = [
        StripeResource::Customers,
        StripeResource::Subscriptions,
        StripeResource::Invoices,
        StripeResource::Charges,
        StripeResource::CheckoutSessions,
    ];

    /// The list URL's path, as Stripe echoes it in `url`.
    pub fn path(self) -> &'static str {
        match self {
            StripeResource::Customers => "/v1/customers",
            StripeResource::Subscriptions => "/v1/subscriptions",
            StripeResource::Invoices => "/v1/invoices",
            StripeResource::Charges => "/v1/charges",
            StripeResource::CheckoutSessions => "/v1/checkout/sessions",
        }
    }

    /// The object's name in Stripe's `No such …` messages.
    pub(crate) fn singular(self) -> &'static str {
        match self {
            StripeResource::Customers => "customer",
            StripeResource::Subscriptions => "subscription",
            StripeResource::Invoices => "invoice",
            StripeResource::Charges => "charge",
            StripeResource::CheckoutSessions => "checkout.session",
        }
    }
}

/// What every stored object has: an id and a creation time, the list order's key.
pub(crate) trait Listed {
    fn id(&self) -> &str;
    fn created(&self) -> i64;
    fn customer(&self) -> Option<&str>;
    fn status(&self) -> Option<&str> {
        None
    }
    fn render(&self, livemode: bool) -> Value;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeCustomer {
    pub id: String,
    pub created: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<String>,
    /// `usd` once the customer has been billed, `null` before.
    pub currency: Option<String>,
    pub invoice_prefix: String,
}

impl Listed for StripeCustomer {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn customer(&self) -> Option<&str> {
        Some(&self.id)
    }
    fn render(&self, livemode: bool) -> Value {
        json!({
            "id": self.id,
            "object": "customer",
            "address": null_address(),
            "balance": 0,
            "created": self.created,
            "currency": self.currency,
            "default_source": null,
            "delinquent": false,
            "description": null,
            "discount": null,
            "email": self.email,
            "invoice_prefix": self.invoice_prefix,
            "invoice_settings": {
                "custom_fields": null,
                "default_payment_method": null,
                "footer": null,
                "rendering_options": null
            },
            "livemode": livemode,
            "metadata": {},
            "name": self.name,
            "next_invoice_sequence": 1,
            "phone": self.phone,
            "preferred_locales": [],
            "shipping": null,
            "tax_exempt": "none",
            "test_clock": null
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeSubscription {
    pub id: String,
    pub created: i64,
    pub customer: String,
    /// `active`, `trialing`, `past_due`, `canceled`, ...
    pub status: String,
    pub item_id: String,
    pub price_id: String,
    pub product_id: String,
    pub unit_amount: i64,
    pub currency: String,
    pub interval: String,
    pub quantity: i64,
    pub current_period_start: i64,
    pub current_period_end: i64,
    pub canceled_at: Option<i64>,
}

impl Listed for StripeSubscription {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn customer(&self) -> Option<&str> {
        Some(&self.customer)
    }
    fn status(&self) -> Option<&str> {
        Some(&self.status)
    }
    fn render(&self, livemode: bool) -> Value {
        let price = json!({
            "id": self.price_id,
            "object": "price",
            "active": true,
            "billing_scheme": "per_unit",
            "created": self.created,
            "currency": self.currency,
            "custom_unit_amount": null,
            "livemode": livemode,
            "lookup_key": null,
            "metadata": {},
            "nickname": null,
            "product": self.product_id,
            "recurring": {
                "interval": self.interval,
                "interval_count": 1,
                "meter": null,
                "usage_type": "licensed",
                "trial_period_days": null
            },
            "tax_behavior": "unspecified",
            "tiers_mode": null,
            "transform_quantity": null,
            "type": "recurring",
            "unit_amount": self.unit_amount,
            "unit_amount_decimal": self.unit_amount.to_string()
        });
        merge(
            json!({
                "id": self.id,
                "object": "subscription",
                "application": null,
                "application_fee_percent": null,
                "automatic_tax": {"enabled": false, "liability": null, "disabled_reason": null},
                "billing_cycle_anchor": self.current_period_start,
                "billing_cycle_anchor_config": null,
                "billing_thresholds": null,
                "cancel_at": null,
                "cancel_at_period_end": false,
                "canceled_at": self.canceled_at,
                "cancellation_details": {"comment": null, "feedback": null, "reason": null},
                "collection_method": "charge_automatically",
                "created": self.created,
                "currency": self.currency,
                "current_period_end": self.current_period_end,
                "current_period_start": self.current_period_start,
                "customer": self.customer,
                "days_until_due": null,
                "default_payment_method": null,
                "default_source": null,
                "default_tax_rates": [],
                "description": null,
                "discount": null,
                "discounts": [],
                "ended_at": self.canceled_at,
                "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
            }),
            json!({
                "items": {
                    "object": "list",
                    "data": [{
                        "id": self.item_id,
                        "object": "subscription_item",
                        "billing_thresholds": null,
                        "created": self.created,
                        "current_period_end": self.current_period_end,
                        "current_period_start": self.current_period_start,
                        "discounts": [],
                        "metadata": {},
                        "price": price,
                        "quantity": self.quantity,
                        "subscription": self.id,
                        "tax_rates": []
                    }],
                    "has_more": false,
                    "total_count": 1,
                    "url": format!("/v1/subscription_items?subscription={}", self.id)
                },
                "latest_invoice": null,
                "livemode": livemode,
                "metadata": {},
                "next_pending_invoice_item_invoice": null,
                "on_behalf_of": null,
                "pause_collection": null,
                "payment_settings": {
                    "payment_method_options": null,
                    "payment_method_types": null,
                    "save_default_payment_method": "off"
                },
                "pending_invoice_item_interval": null,
                "pending_setup_intent": null,
                "pending_update": null,
                "schedule": null,
                "start_date": self.created,
                "status": self.status,
                "test_clock": null,
                "transfer_data": null,
                "trial_end": null,
                "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
                "trial_start": null
            }),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeInvoice {
    pub id: String,
    pub created: i64,
    pub customer: String,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub subscription: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible`, `void`.
    pub status: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub number: Option<String>,
    pub line_id: String,
    pub period_start: i64,
    pub period_end: i64,
}

impl Listed for StripeInvoice {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn customer(&self) -> Option<&str> {
        Some(&self.customer)
    }
    fn status(&self) -> Option<&str> {
        Some(&self.status)
    }
    fn render(&self, livemode: bool) -> Value {
        let paid = self.status == "paid";
        merge(
            merge(
                json!({
                    "id": self.id,
                    "object": "invoice",
                    "account_country": "US",
                    "account_name": "billsync sandbox",
                    "account_tax_ids": null,
                    "amount_due": self.amount_due,
                    "amount_paid": self.amount_paid,
                    "amount_remaining": self.amount_due - self.amount_paid,
                    "amount_shipping": 0,
                    "application": null,
                    "attempt_count": i64::from(paid),
                    "attempted": paid,
                    "auto_advance": !paid,
                    "automatic_tax": {"enabled": false, "liability": null, "status": null},
                    "billing_reason": if self.subscription.is_some() { "subscription_cycle" } else { "manual" },
                    "collection_method": "charge_automatically",
                    "created": self.created,
                    "currency": self.currency,
                    "custom_fields": null,
                    "customer": self.customer,
                    "customer_address": null,
                    "customer_email": self.customer_email,
                    "customer_name": self.customer_name,
                    "customer_phone": null,
                    "customer_shipping": null,
                    "customer_tax_exempt": "none",
                    "customer_tax_ids": [],
                    "default_payment_method": null,
                    "default_source": null,
                    "default_tax_rates": [],
                    "description": null,
                }),
                json!({
                    "discount": null,
                    "discounts": [],
                    "due_date": null,
                    "effective_at": self.created,
                    "ending_balance": 0,
                    "footer": null,
                    "from_invoice": null,
                    "hosted_invoice_url": null,
                    "invoice_pdf": null,
                    "issuer": {"type": "self"},
                    "last_finalization_error": null,
                    "latest_revision": null,
                }),
            ),
            json!({
                "lines": {
                    "object": "list",
                    "data": [{
                        "id": self.line_id,
                        "object": "line_item",
                        "amount": self.amount_due,
                        "currency": self.currency,
                        "description": "1 × Sandbox plan",
                        "discount_amounts": [],
                        "discountable": true,
                        "discounts": [],
                        "invoice": self.id,
                        "livemode": livemode,
                        "metadata": {},
                        "period": {"end": self.period_end, "start": self.period_start},
                        "quantity": 1,
                        "subscription": self.subscription
                    }],
                    "has_more": false,
                    "total_count": 1,
                    "url": format!("/v1/invoices/{}/lines", self.id)
                },
                "livemode": livemode,
                "metadata": {},
                "next_payment_attempt": null,
                "number": self.number,
                "on_behalf_of": null,
                "paid": paid,
                "paid_out_of_band": false,
                "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
                "period_end": self.period_end,
                "period_start": self.period_start,
                "post_payment_credit_notes_amount": 0,
                "pre_payment_credit_notes_amount": 0,
                "receipt_number": null,
                "rendering": null,
                "shipping_cost": null,
                "shipping_details": null,
                "starting_balance": 0,
                "statement_descriptor": null,
                "status": self.status,
                "status_transitions": {
                    "finalized_at": if self.status == "draft" { None } else { Some(self.created) },
                    "marked_uncollectible_at": null,
                    "paid_at": if paid { Some(self.created) } else { None },
                    "voided_at": null
                },
                "subscription": self.subscription,
                "subtotal": self.amount_due,
                "subtotal_excluding_tax": self.amount_due,
                "test_clock": null,
                "total": self.amount_due,
                "total_discount_amounts": [],
                "total_excluding_tax": self.amount_due,
                "webhooks_delivered_at": self.created
            }),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeCharge {
    pub id: String,
    pub created: i64,
    pub customer: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    /// `succeeded`, `pending`, `failed`.
    pub status: String,
    pub invoice: Option<String>,
    pub payment_intent: String,
}

impl Listed for StripeCharge {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn customer(&self) -> Option<&str> {
        self.customer.as_deref()
    }
    fn status(&self) -> Option<&str> {
        Some(&self.status)
    }
    fn render(&self, livemode: bool) -> Value {
        let succeeded = self.status == "succeeded";
        merge(
            json!({
                "id": self.id,
                "object": "charge",
                "amount": self.amount,
                "amount_captured": if succeeded { self.amount } else { 0 },
                "amount_refunded": self.amount_refunded,
                "application": null,
                "application_fee": null,
                "application_fee_amount": null,
                "balance_transaction": succeeded.then(|| format!("txn_{}", &self.id[3..])),
                "billing_details": {
                    "address": null_address(),
                    "email": self.email,
                    "name": self.name,
                    "phone": null
                },
                "calculated_statement_descriptor": "BILLSYNC SANDBOX",
                "captured": succeeded,
                "created": self.created,
                "currency": self.currency,
                "customer": self.customer,
                "description": null,
                "disputed": false,
                "failure_balance_transaction": null,
                "failure_code": if self.status == "failed" { Some("card_declined") } else { None },
                "failure_message": if self.status == "failed" { Some("Your card was declined.") } else { None },
                "fraud_details": {},
                "invoice": self.invoice,
                "livemode": livemode,
                "metadata": {},
                "on_behalf_of": null,
            }),
            json!({
                "outcome": {
                    "network_status": if succeeded { "approved_by_network" } else { "declined_by_network" },
                    "reason": null,
                    "risk_level": "normal",
                    "seller_message": if succeeded { "Payment complete." } else { "The bank did not return any further details with this decline." },
                    "type": if succeeded { "authorized" } else { "issuer_declined" }
                },
                "paid": succeeded,
                "payment_intent": self.payment_intent,
                "payment_method": format!("pm_{}", &self.id[3..]),
                "payment_method_details": {
                    "card": {
                        "brand": "visa",
                        "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
                        "country": "US",
                        "exp_month": 8,
                        "exp_year": 2030,
                        "fingerprint": "AOB934RVNwzk6xtn",
                        "funding": "credit",
                        "last4": "4242",
                        "network": "visa",
                        "three_d_secure": null,
                        "wallet": null
                    },
                    "type": "card"
                },
                "receipt_email": self.email,
                "receipt_number": null,
                "receipt_url": null,
                "refunded": self.amount_refunded > 0 && self.amount_refunded >= self.amount,
                "refunds": {
                    "object": "list",
                    "data": [],
                    "has_more": false,
                    "total_count": 0,
                    "url": format!("/v1/charges/{}/refunds", self.id)
                },
                "review": null,
                "shipping": null,
                "source_transfer": null,
                "statement_descriptor": null,
                "statement_descriptor_suffix": null,
                "status": self.status,
                "transfer_data": null,
                "transfer_group": null
            }),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StripeCheckoutSession {
    pub id: String,
    pub created: i64,
    pub customer: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    /// `payment` or `subscription`.
    pub mode: String,
    /// `open`, `complete`, `expired`.
    pub status: String,
    /// `paid`, `unpaid`, `no_payment_required`.
    pub payment_status: String,
    pub amount_total: i64,
    pub currency: String,
    pub subscription: Option<String>,
    pub payment_intent: Option<String>,
}

impl Listed for StripeCheckoutSession {
    fn id(&self) -> &str {
        &self.id
    }
    fn created(&self) -> i64 {
        self.created
    }
    fn customer(&self) -> Option<&str> {
        self.customer.as_deref()
    }
    fn status(&self) -> Option<&str> {
        Some(&self.status)
    }
    fn render(&self, livemode: bool) -> Value {
        merge(
            json!({
                "id": self.id,
                "object": "checkout.session",
                "after_expiration": null,
                "allow_promotion_codes": null,
                "amount_subtotal": self.amount_total,
                "amount_total": self.amount_total,
                "automatic_tax": {"enabled": false, "liability": null, "status": null},
                "billing_address_collection": null,
                "cancel_url": "https://example.com/cancel",
                "client_reference_id": null,
                "client_secret": null,
                "consent": null,
                "consent_collection": null,
                "created": self.created,
                "currency": self.currency,
                "custom_fields": [],
                "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
                "customer": self.customer,
                "customer_creation": if self.customer.is_some() { Some("always") } else { None },
                "customer_details": {
                    "address": null_address(),
                    "email": self.email,
                    "name": self.name,
                    "phone": null,
                    "tax_exempt": "none",
                    "tax_ids": []
                },
                "customer_email": self.email,
                "expires_at": self.created + 86_400,
            }),
            json!({
                "invoice": null,
                "invoice_creation": null,
                "livemode": livemode,
                "locale": null,
                "metadata": {},
                "mode": self.mode,
                "payment_intent": self.payment_intent,
                "payment_link": null,
                "payment_method_collection": "always",
                "payment_method_configuration_details": null,
                "payment_method_options": {},
                "payment_method_types": ["card"],
                "payment_status": self.payment_status,
                "phone_number_collection": {"enabled": false},
                "recovered_from": null,
                "setup_intent": null,
                "shipping_address_collection": null,
                "shipping_cost": null,
                "shipping_details": null,
                "shipping_options": [],
                "status": self.status,
                "submit_type": null,
                "subscription": self.subscription,
                "success_url": "https://example.com/success",
                "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
                "ui_mode": "hosted",
                "url": null
            }),
        )
    }
}

fn null_address() -> Value {
    json!({
        "city": null,
        "country": null,
        "line1": null,
        "line2": null,
        "postal_code": null,
        "state": null
    })
}

/// `a` with `b`'s fields added; objects too large for one `json!` are built in two halves.
fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}
