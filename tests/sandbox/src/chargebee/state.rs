//! One Chargebee site's records and events, and the rules Chargebee follows when they change.
//!
//! Every change bumps the record's `resource_version` (milliseconds, strictly increasing per
//! site) and `updated_at` (seconds), and appends the event Chargebee would raise, whose
//! `content` holds the resource as it now is (and, for subscription events, its customer).
//! Records are never removed: a deletion sets `deleted`, as Chargebee's API shows it.
//! Field names follow `specs/chargebee/SOURCE.txt` and the SDK types it points to.

use std::collections::HashMap;
use std::fmt;

use rand::distr::Alphanumeric;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Subscription statuses Chargebee knows (SOURCE.txt).
pub(crate) const SUBSCRIPTION_STATUSES: &[&str] = &[
    "future",
    "in_trial",
    "active",
    "non_renewing",
    "paused",
    "cancelled",
    "transferred",
];

/// Invoice statuses of the SDK's `Invoice.status`.
pub(crate) const INVOICE_STATUSES: &[&str] = &[
    "paid",
    "posted",
    "payment_due",
    "not_paid",
    "voided",
    "pending",
];

/// A Chargebee customer as the API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CbCustomer {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    pub auto_collection: String,
    pub net_term_days: i64,
    pub allow_direct_debit: bool,
    pub created_at: i64,
    pub taxability: String,
    pub updated_at: i64,
    pub pii_cleared: String,
    pub channel: String,
    pub resource_version: i64,
    pub deleted: bool,
    pub object: String,
    pub card_status: String,
    pub promotional_credits: i64,
    pub refundable_credits: i64,
    pub excess_payments: i64,
    pub unbilled_charges: i64,
    pub preferred_currency_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_data: Option<Value>,
}

/// A Chargebee subscription (Product Catalog 1.0 fields: `plan_id`, `plan_unit_price`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CbSubscription {
    pub id: String,
    pub customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    pub plan_quantity: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_unit_price: Option<i64>,
    pub billing_period: i64,
    pub billing_period_unit: String,
    pub currency_code: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_end: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_term_start: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_term_end: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_billing_at: Option<i64>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<i64>,
    /// Set for subscriptions created to start later (status `future`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    pub updated_at: i64,
    pub has_scheduled_changes: bool,
    pub resource_version: i64,
    pub deleted: bool,
    pub object: String,
    pub due_invoices_count: i64,
    /// Monthly recurring revenue in the currency's minor unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrr: Option<i64>,
}

/// A Chargebee invoice. Ids are sequence numbers, Chargebee's default numbering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CbInvoice {
    pub id: String,
    pub customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    pub recurring: bool,
    pub status: String,
    pub price_type: String,
    pub date: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_date: Option<i64>,
    pub net_term_days: i64,
    pub exchange_rate: f64,
    pub currency_code: String,
    pub total: i64,
    pub amount_paid: i64,
    pub amount_adjusted: i64,
    pub write_off_amount: i64,
    pub credits_applied: i64,
    pub amount_due: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<i64>,
    pub updated_at: i64,
    pub resource_version: i64,
    pub deleted: bool,
    pub object: String,
    pub first_invoice: bool,
    pub tax: i64,
    pub sub_total: i64,
    pub base_currency_code: String,
}

/// An event of the Events API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CbEvent {
    pub id: String,
    /// Unix seconds: many events share one value, which is why pollers overlap.
    pub occurred_at: i64,
    pub source: String,
    pub object: String,
    pub api_version: String,
    pub webhook_status: String,
    pub event_type: String,
    pub content: Value,
}

/// A record as changed, and the event the change raised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CbChange<T> {
    pub record: T,
    pub event: CbEvent,
}

/// Fields of a customer to create or change; `None` leaves a field as it is. `id` is used on
/// create only (generated when absent).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CbCustomerInput {
    pub id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company: Option<String>,
    pub meta_data: Option<Value>,
}

/// Fields of a subscription to create or change; `None` leaves a field as it is (or takes
/// Chargebee's default on create). `id` is used on create only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CbSubscriptionInput {
    pub id: Option<String>,
    pub plan_id: Option<String>,
    pub plan_unit_price: Option<i64>,
    pub status: Option<String>,
    pub currency_code: Option<String>,
    pub trial_start: Option<i64>,
    pub trial_end: Option<i64>,
    pub next_billing_at: Option<i64>,
    pub start_date: Option<i64>,
    pub mrr: Option<i64>,
    pub cancel_reason: Option<String>,
}

/// Fields of an invoice to create or change. `id` is used on create only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CbInvoiceInput {
    pub id: Option<String>,
    pub subscription_id: Option<String>,
    pub status: Option<String>,
    /// In the currency's minor unit.
    pub total: Option<i64>,
    pub currency_code: Option<String>,
    pub date: Option<i64>,
}

/// Everything one site holds, for assertions and `GET /__sandbox/chargebee/{site}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CbSnapshot {
    pub customers: Vec<CbCustomer>,
    pub subscriptions: Vec<CbSubscription>,
    pub invoices: Vec<CbInvoice>,
    /// Oldest first.
    pub events: Vec<CbEvent>,
}

/// Why a change to the sandbox's data was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CbSandboxError {
    UnknownSite(String),
    NotFound {
        resource: &'static str,
        id: String,
    },
    Duplicate {
        resource: &'static str,
        id: String,
    },
    Invalid {
        param: &'static str,
        message: String,
    },
}

impl fmt::Display for CbSandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CbSandboxError::UnknownSite(site) => {
                write!(f, "no sandbox Chargebee site named {site:?}")
            }
            CbSandboxError::NotFound { resource, id } => write!(f, "{resource} {id} not found"),
            CbSandboxError::Duplicate { resource, id } => {
                write!(f, "The value {id} is already present for {resource} id")
            }
            CbSandboxError::Invalid { param, message } => write!(f, "{param} : {message}"),
        }
    }
}

impl std::error::Error for CbSandboxError {}

/// Records in creation order with an index by id; the position is the record's sequence
/// number, the tie-break of every sort.
#[derive(Debug)]
pub(crate) struct Table<T> {
    rows: Vec<T>,
    by_id: HashMap<String, usize>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: Vec::new(),
            by_id: HashMap::new(),
        }
    }
}

impl<T: Clone> Table<T> {
    fn insert(&mut self, id: String, row: T) -> usize {
        let seq = self.rows.len();
        self.rows.push(row);
        self.by_id.insert(id, seq);
        seq
    }

    pub(crate) fn get(&self, id: &str) -> Option<&T> {
        self.by_id.get(id).map(|&i| &self.rows[i])
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        self.by_id.get(id).map(|&i| &mut self.rows[i])
    }

    fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// `(sequence, row)` in creation order.
    pub(crate) fn rows(&self) -> impl Iterator<Item = (u64, &T)> {
        self.rows.iter().enumerate().map(|(i, r)| (i as u64, r))
    }
}

/// A site's data.
#[derive(Debug, Default)]
pub(crate) struct SiteData {
    pub(crate) customers: Table<CbCustomer>,
    pub(crate) subscriptions: Table<CbSubscription>,
    pub(crate) invoices: Table<CbInvoice>,
    /// Append-only; the index is the event's sequence number.
    pub(crate) events: Vec<CbEvent>,
    /// The last `resource_version` handed out, in milliseconds.
    clock_ms: i64,
    next_invoice_number: u64,
}

fn random_id(prefix: &str, len: usize) -> String {
    let suffix: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(len)
        .map(char::from)
        .collect();
    format!("{prefix}{suffix}")
}

fn check_id(id: &str, param: &'static str) -> Result<(), CbSandboxError> {
    let ok = !id.is_empty()
        && id.len() <= 50
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(CbSandboxError::Invalid {
            param,
            message: "must be 1-50 letters, digits, '-', '_', '.' or '@'".into(),
        })
    }
}

fn check_status(status: &str, allowed: &[&str], param: &'static str) -> Result<(), CbSandboxError> {
    if allowed.contains(&status) {
        Ok(())
    } else {
        Err(CbSandboxError::Invalid {
            param,
            message: format!("invalid value {status:?}; allowed: {}", allowed.join(", ")),
        })
    }
}

const THIRTY_DAYS: i64 = 30 * 86_400;

impl SiteData {
    /// The next `resource_version`: now in milliseconds, or one more than the last when
    /// changes come faster than the clock ticks, so versions are strictly increasing.
    fn tick(&mut self) -> i64 {
        let now = chrono::Utc::now().timestamp_millis();
        self.clock_ms = now.max(self.clock_ms + 1);
        self.clock_ms
    }

    fn push_event(&mut self, version: i64, event_type: &str, content: Value) -> CbEvent {
        let event = CbEvent {
            id: random_id("ev_", 16),
            // Derived from the version so that events never go back in time, even when the
            // version runs ahead of the wall clock.
            occurred_at: version.div_euclid(1000),
            source: "api".into(),
            object: "event".into(),
            api_version: "v2".into(),
            webhook_status: "not_configured".into(),
            event_type: event_type.into(),
            content,
        };
        self.events.push(event.clone());
        event
    }

    /// An event of `event_type` with `content` as given (see `Chargebee::raise_event`).
    pub(crate) fn raise_event(&mut self, event_type: &str, content: Value) -> CbEvent {
        let version = self.tick();
        self.push_event(version, event_type, content)
    }

    fn customer_json(&self, id: &str) -> Value {
        self.customers.get(id).map_or(Value::Null, |c| json!(c))
    }

    pub(crate) fn snapshot(&self) -> CbSnapshot {
        CbSnapshot {
            customers: self.customers.rows.clone(),
            subscriptions: self.subscriptions.rows.clone(),
            invoices: self.invoices.rows.clone(),
            events: self.events.clone(),
        }
    }

    // ----- customers ------------------------------------------------------------------

    pub(crate) fn create_customer(
        &mut self,
        input: CbCustomerInput,
    ) -> Result<CbChange<CbCustomer>, CbSandboxError> {
        let id = match input.id {
            Some(id) => {
                check_id(&id, "id")?;
                if self.customers.contains(&id) {
                    return Err(CbSandboxError::Duplicate {
                        resource: "customer",
                        id,
                    });
                }
                id
            }
            None => random_id("", 17),
        };
        let version = self.tick();
        let now = version.div_euclid(1000);
        let customer = CbCustomer {
            id: id.clone(),
            first_name: input.first_name,
            last_name: input.last_name,
            email: input.email,
            phone: input.phone,
            company: input.company,
            auto_collection: "on".into(),
            net_term_days: 0,
            allow_direct_debit: false,
            created_at: now,
            taxability: "taxable".into(),
            updated_at: now,
            pii_cleared: "active".into(),
            channel: "web".into(),
            resource_version: version,
            deleted: false,
            object: "customer".into(),
            card_status: "no_card".into(),
            promotional_credits: 0,
            refundable_credits: 0,
            excess_payments: 0,
            unbilled_charges: 0,
            preferred_currency_code: "USD".into(),
            meta_data: input.meta_data,
        };
        self.customers.insert(id, customer.clone());
        let event = self.push_event(version, "customer_created", json!({ "customer": customer }));
        Ok(CbChange {
            record: customer,
            event,
        })
    }

    pub(crate) fn update_customer(
        &mut self,
        id: &str,
        input: CbCustomerInput,
    ) -> Result<CbChange<CbCustomer>, CbSandboxError> {
        let live = self.customers.get(id).is_some_and(|c| !c.deleted);
        if !live {
            return Err(CbSandboxError::NotFound {
                resource: "customer",
                id: id.into(),
            });
        }
        let version = self.tick();
        let customer = self.customers.get_mut(id).expect("checked above");
        let set = |field: &mut Option<String>, value: Option<String>| {
            if value.is_some() {
                *field = value;
            }
        };
        set(&mut customer.first_name, input.first_name);
        set(&mut customer.last_name, input.last_name);
        set(&mut customer.email, input.email);
        set(&mut customer.phone, input.phone);
        set(&mut customer.company, input.company);
        if input.meta_data.is_some() {
            customer.meta_data = input.meta_data;
        }
        customer.resource_version = version;
        customer.updated_at = version.div_euclid(1000);
        let customer = customer.clone();
        let event = self.push_event(version, "customer_changed", json!({ "customer": customer }));
        Ok(CbChange {
            record: customer,
            event,
        })
    }

    /// Deletes a customer and, as Chargebee does, its subscriptions; the `customer_deleted`
    /// event carries them under `subscription` (an array, per the SDK's
    /// `CustomerDeletedContent`).
    pub(crate) fn delete_customer(
        &mut self,
        id: &str,
    ) -> Result<CbChange<CbCustomer>, CbSandboxError> {
        let live = self.customers.get(id).is_some_and(|c| !c.deleted);
        if !live {
            return Err(CbSandboxError::NotFound {
                resource: "customer",
                id: id.into(),
            });
        }
        let version = self.tick();
        let mut deleted_subscriptions = Vec::new();
        for sub in self.subscriptions.rows.iter_mut() {
            if sub.customer_id == id && !sub.deleted {
                sub.deleted = true;
                sub.resource_version = version;
                sub.updated_at = version.div_euclid(1000);
                deleted_subscriptions.push(sub.clone());
            }
        }
        let customer = self.customers.get_mut(id).expect("checked above");
        customer.deleted = true;
        customer.resource_version = version;
        customer.updated_at = version.div_euclid(1000);
        let customer = customer.clone();
        let mut content = json!({ "customer": customer });
        if !deleted_subscriptions.is_empty() {
            content["subscription"] = json!(deleted_subscriptions);
        }
        let event = self.push_event(version, "customer_deleted", content);
        Ok(CbChange {
            record: customer,
            event,
        })
    }

    // ----- subscriptions --------------------------------------------------------------

    pub(crate) fn create_subscription(
        &mut self,
        customer_id: &str,
        input: CbSubscriptionInput,
    ) -> Result<CbChange<CbSubscription>, CbSandboxError> {
        let live = self.customers.get(customer_id).is_some_and(|c| !c.deleted);
        if !live {
            return Err(CbSandboxError::NotFound {
                resource: "customer",
                id: customer_id.into(),
            });
        }
        let id = match input.id {
            Some(id) => {
                check_id(&id, "id")?;
                if self.subscriptions.contains(&id) {
                    return Err(CbSandboxError::Duplicate {
                        resource: "subscription",
                        id,
                    });
                }
                id
            }
            None => random_id("", 17),
        };
        let version = self.tick();
        let now = version.div_euclid(1000);
        let status = match input.status {
            Some(status) => status,
            None if input.start_date.is_some_and(|d| d > now) => "future".into(),
            None if input.trial_end.is_some_and(|d| d > now) => "in_trial".into(),
            None => "active".into(),
        };
        check_status(&status, SUBSCRIPTION_STATUSES, "status")?;
        let unit_price = input.plan_unit_price.unwrap_or(1_000);
        let trial_start = match (&*status, input.trial_start) {
            (_, Some(start)) => Some(start),
            ("in_trial", None) => Some(now),
            _ => None,
        };
        let trial_end = match (&*status, input.trial_end) {
            (_, Some(end)) => Some(end),
            ("in_trial", None) => Some(now + 14 * 86_400),
            _ => None,
        };
        let started = status != "future";
        let active = matches!(&*status, "active" | "non_renewing");
        let term_end = now + THIRTY_DAYS;
        let next_billing_at = input.next_billing_at.or(match &*status {
            "active" => Some(term_end),
            "in_trial" => trial_end,
            "future" => input.start_date,
            _ => None,
        });
        let subscription = CbSubscription {
            id: id.clone(),
            customer_id: customer_id.into(),
            plan_id: Some(input.plan_id.unwrap_or_else(|| "basic-usd".into())),
            plan_quantity: 1,
            plan_unit_price: Some(unit_price),
            billing_period: 1,
            billing_period_unit: "month".into(),
            currency_code: input.currency_code.unwrap_or_else(|| "USD".into()),
            status: status.clone(),
            trial_start,
            trial_end,
            current_term_start: active.then_some(now),
            current_term_end: active.then_some(term_end),
            next_billing_at,
            created_at: now,
            started_at: started.then_some(now),
            activated_at: active.then_some(now),
            start_date: input.start_date,
            cancelled_at: (status == "cancelled").then_some(now),
            cancel_reason: input.cancel_reason,
            updated_at: now,
            has_scheduled_changes: false,
            resource_version: version,
            deleted: false,
            object: "subscription".into(),
            due_invoices_count: 0,
            mrr: Some(input.mrr.unwrap_or(if active { unit_price } else { 0 })),
        };
        self.subscriptions.insert(id, subscription.clone());
        let content = json!({
            "subscription": subscription,
            "customer": self.customer_json(customer_id),
        });
        let event = self.push_event(version, "subscription_created", content);
        Ok(CbChange {
            record: subscription,
            event,
        })
    }

    /// Changes a subscription. The event type follows the status change as Chargebee names
    /// it: `subscription_cancelled`, `subscription_reactivated`, `subscription_activated`,
    /// `subscription_paused`, `subscription_resumed`, else `subscription_changed`.
    pub(crate) fn update_subscription(
        &mut self,
        id: &str,
        input: CbSubscriptionInput,
    ) -> Result<CbChange<CbSubscription>, CbSandboxError> {
        let live = self.subscriptions.get(id).is_some_and(|s| !s.deleted);
        if !live {
            return Err(CbSandboxError::NotFound {
                resource: "subscription",
                id: id.into(),
            });
        }
        if let Some(status) = &input.status {
            check_status(status, SUBSCRIPTION_STATUSES, "status")?;
        }
        let version = self.tick();
        let now = version.div_euclid(1000);
        let sub = self.subscriptions.get_mut(id).expect("checked above");
        let before = sub.status.clone();
        if let Some(plan_id) = input.plan_id {
            sub.plan_id = Some(plan_id);
        }
        if let Some(price) = input.plan_unit_price {
            sub.plan_unit_price = Some(price);
            if matches!(&*sub.status, "active" | "non_renewing") {
                sub.mrr = Some(price);
            }
        }
        if let Some(currency) = input.currency_code {
            sub.currency_code = currency;
        }
        if input.trial_start.is_some() {
            sub.trial_start = input.trial_start;
        }
        if input.trial_end.is_some() {
            sub.trial_end = input.trial_end;
        }
        if input.next_billing_at.is_some() {
            sub.next_billing_at = input.next_billing_at;
        }
        if input.start_date.is_some() {
            sub.start_date = input.start_date;
        }
        if input.cancel_reason.is_some() {
            sub.cancel_reason = input.cancel_reason;
        }
        if let Some(status) = input.status {
            sub.status = status;
        }
        let event_type = match (&*before, &*sub.status) {
            (from, "cancelled") if from != "cancelled" => {
                sub.cancelled_at = Some(now);
                sub.next_billing_at = None;
                sub.mrr = Some(0);
                "subscription_cancelled"
            }
            ("cancelled", "active") => {
                sub.cancelled_at = None;
                sub.cancel_reason = None;
                sub.activated_at = Some(now);
                sub.mrr = sub.plan_unit_price;
                "subscription_reactivated"
            }
            ("in_trial" | "future", "active") => {
                sub.activated_at = Some(now);
                sub.started_at.get_or_insert(now);
                sub.mrr = sub.plan_unit_price;
                "subscription_activated"
            }
            (from, "paused") if from != "paused" => "subscription_paused",
            ("paused", "active") => "subscription_resumed",
            _ => "subscription_changed",
        };
        if input.mrr.is_some() {
            sub.mrr = input.mrr;
        }
        sub.resource_version = version;
        sub.updated_at = now;
        let sub = sub.clone();
        let content = json!({
            "subscription": sub,
            "customer": self.customer_json(&sub.customer_id),
        });
        let event = self.push_event(version, event_type, content);
        Ok(CbChange { record: sub, event })
    }

    pub(crate) fn delete_subscription(
        &mut self,
        id: &str,
    ) -> Result<CbChange<CbSubscription>, CbSandboxError> {
        let live = self.subscriptions.get(id).is_some_and(|s| !s.deleted);
        if !live {
            return Err(CbSandboxError::NotFound {
                resource: "subscription",
                id: id.into(),
            });
        }
        let version = self.tick();
        let sub = self.subscriptions.get_mut(id).expect("checked above");
        sub.deleted = true;
        sub.resource_version = version;
        sub.updated_at = version.div_euclid(1000);
        let sub = sub.clone();
        let content = json!({
            "subscription": sub,
            "customer": self.customer_json(&sub.customer_id),
        });
        let event = self.push_event(version, "subscription_deleted", content);
        Ok(CbChange { record: sub, event })
    }

    // ----- invoices -------------------------------------------------------------------

    pub(crate) fn create_invoice(
        &mut self,
        customer_id: &str,
        input: CbInvoiceInput,
    ) -> Result<CbChange<CbInvoice>, CbSandboxError> {
        let live = self.customers.get(customer_id).is_some_and(|c| !c.deleted);
        if !live {
            return Err(CbSandboxError::NotFound {
                resource: "customer",
                id: customer_id.into(),
            });
        }
        if let Some(sub) = &input.subscription_id {
            if self
                .subscriptions
                .get(sub)
                .is_none_or(|s| s.customer_id != customer_id)
            {
                return Err(CbSandboxError::NotFound {
                    resource: "subscription",
                    id: sub.clone(),
                });
            }
        }
        let status = input.status.unwrap_or_else(|| "paid".into());
        check_status(&status, INVOICE_STATUSES, "status")?;
        let id = match input.id {
            Some(id) => {
                check_id(&id, "id")?;
                if self.invoices.contains(&id) {
                    return Err(CbSandboxError::Duplicate {
                        resource: "invoice",
                        id,
                    });
                }
                id
            }
            None => {
                self.next_invoice_number += 1;
                while self
                    .invoices
                    .contains(&self.next_invoice_number.to_string())
                {
                    self.next_invoice_number += 1;
                }
                self.next_invoice_number.to_string()
            }
        };
        let version = self.tick();
        let now = version.div_euclid(1000);
        let total = input.total.unwrap_or(0);
        let paid = status == "paid";
        let first_invoice = !self
            .invoices
            .rows
            .iter()
            .any(|i| i.customer_id == customer_id);
        let currency = input.currency_code.unwrap_or_else(|| "USD".into());
        let invoice = CbInvoice {
            id: id.clone(),
            customer_id: customer_id.into(),
            recurring: input.subscription_id.is_some(),
            subscription_id: input.subscription_id,
            status,
            price_type: "tax_exclusive".into(),
            date: input.date.unwrap_or(now),
            due_date: Some(input.date.unwrap_or(now)),
            net_term_days: 0,
            exchange_rate: 1.0,
            base_currency_code: currency.clone(),
            currency_code: currency,
            total,
            amount_paid: if paid { total } else { 0 },
            amount_adjusted: 0,
            write_off_amount: 0,
            credits_applied: 0,
            amount_due: if paid { 0 } else { total },
            paid_at: paid.then_some(now),
            updated_at: now,
            resource_version: version,
            deleted: false,
            object: "invoice".into(),
            first_invoice,
            tax: 0,
            sub_total: total,
        };
        self.invoices.insert(id, invoice.clone());
        let event = self.push_event(version, "invoice_generated", json!({ "invoice": invoice }));
        Ok(CbChange {
            record: invoice,
            event,
        })
    }

    pub(crate) fn update_invoice(
        &mut self,
        id: &str,
        input: CbInvoiceInput,
    ) -> Result<CbChange<CbInvoice>, CbSandboxError> {
        let live = self.invoices.get(id).is_some_and(|i| !i.deleted);
        if !live {
            return Err(CbSandboxError::NotFound {
                resource: "invoice",
                id: id.into(),
            });
        }
        if let Some(status) = &input.status {
            check_status(status, INVOICE_STATUSES, "status")?;
        }
        let version = self.tick();
        let now = version.div_euclid(1000);
        let invoice = self.invoices.get_mut(id).expect("checked above");
        if let Some(total) = input.total {
            invoice.total = total;
            invoice.sub_total = total;
        }
        if let Some(status) = input.status {
            invoice.status = status;
        }
        if let Some(date) = input.date {
            invoice.date = date;
        }
        let paid = invoice.status == "paid";
        invoice.amount_paid = if paid { invoice.total } else { 0 };
        invoice.amount_due = invoice.total - invoice.amount_paid;
        if paid {
            invoice.paid_at.get_or_insert(now);
        }
        invoice.resource_version = version;
        invoice.updated_at = now;
        let invoice = invoice.clone();
        let event = self.push_event(version, "invoice_updated", json!({ "invoice": invoice }));
        Ok(CbChange {
            record: invoice,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_bumps_the_version_and_raises_an_event() {
        let mut site = SiteData::default();
        let created = site
            .create_customer(CbCustomerInput {
                id: Some("cus_1".into()),
                email: Some("ada@example.com".into()),
                ..Default::default()
            })
            .unwrap();
        let changed = site
            .update_customer(
                "cus_1",
                CbCustomerInput {
                    company: Some("ACME".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(changed.record.resource_version > created.record.resource_version);
        assert_eq!(changed.record.email.as_deref(), Some("ada@example.com"));
        assert_eq!(changed.event.event_type, "customer_changed");
        assert_eq!(changed.event.content["customer"]["company"], "ACME");
        assert!(changed.event.occurred_at >= created.event.occurred_at);

        let sub = site
            .create_subscription("cus_1", CbSubscriptionInput::default())
            .unwrap();
        assert_eq!(sub.record.status, "active");
        assert_eq!(sub.event.content["customer"]["id"], "cus_1");
        let cancelled = site
            .update_subscription(
                &sub.record.id,
                CbSubscriptionInput {
                    status: Some("cancelled".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(cancelled.event.event_type, "subscription_cancelled");
        assert!(cancelled.record.cancelled_at.is_some());
        assert_eq!(cancelled.record.mrr, Some(0));

        let invoice = site
            .create_invoice(
                "cus_1",
                CbInvoiceInput {
                    total: Some(500),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(invoice.record.id, "1");
        assert_eq!(invoice.event.event_type, "invoice_generated");

        let deleted = site.delete_customer("cus_1").unwrap();
        assert!(deleted.record.deleted);
        assert_eq!(deleted.event.content["subscription"][0]["deleted"], true);
        assert!(site
            .update_customer("cus_1", CbCustomerInput::default())
            .is_err());
        assert_eq!(site.events.len(), 6);
        let versions: Vec<i64> = site
            .events
            .windows(2)
            .map(|w| w[1].occurred_at - w[0].occurred_at)
            .collect();
        assert!(versions.iter().all(|d| *d >= 0));
    }

    #[test]
    fn bad_input_changes_nothing() {
        let mut site = SiteData::default();
        site.create_customer(CbCustomerInput {
            id: Some("a".into()),
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(
            site.create_customer(CbCustomerInput {
                id: Some("a".into()),
                ..Default::default()
            }),
            Err(CbSandboxError::Duplicate { .. })
        ));
        assert!(matches!(
            site.create_subscription(
                "a",
                CbSubscriptionInput {
                    status: Some("sleeping".into()),
                    ..Default::default()
                }
            ),
            Err(CbSandboxError::Invalid {
                param: "status",
                ..
            })
        ));
        assert!(matches!(
            site.create_subscription("nobody", CbSubscriptionInput::default()),
            Err(CbSandboxError::NotFound {
                resource: "customer",
                ..
            })
        ));
        assert_eq!(site.events.len(), 1);
    }
}
