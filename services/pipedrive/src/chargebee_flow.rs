//! Chargebee → Pipedrive (seed 004): the customer's person (and organization) written from
//! the newest copy of the customer and the subscription shown; subscriptions and one-time
//! invoices as deals once the first full sync has run.

use crate::deals::{status_of_invoice, status_of_subscription, DealDraft};
use crate::destination::PipedriveDestination;
use crate::first_sync::deals_allowed;
use crate::options::SubscriptionsTo;
use crate::persons;
use crate::sync_rules::SyncRules;
use billsync_events::{BillingEventV1, ObjectKind};
use billsync_sources as sources;
use billsync_sources::chargebee::CustomerSubscriptions;
use billsync_worker::{Delivered, DeliveryError, Pass};
use serde_json::Value;

fn text<'a>(record: &'a Value, key: &str) -> Option<&'a str> {
    record
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn cents(record: &Value, key: &str) -> Option<f64> {
    record.get(key).and_then(Value::as_f64).map(|c| c / 100.0)
}

impl PipedriveDestination {
    pub(crate) async fn apply_chargebee(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        if event.object == ObjectKind::Invoice && sources::chargebee::customer_of(event).is_none() {
            // Chargebee's invoice events carry the invoice alone: its deal goes to the
            // customer's linked person.
            return self.apply_chargebee_invoice(rules, event, pass).await;
        }
        let (Some(customer_id), Some(customer)) = (
            event.customer_id.as_deref(),
            sources::chargebee::customer_of(event),
        ) else {
            return Ok(Delivered::NotApplicable {
                reason: format!(
                    "{} events carry no customer for Pipedrive",
                    event.event_type
                ),
            });
        };
        let subscriptions =
            CustomerSubscriptions::observe(&self.records, event, customer_id, customer).await?;
        let customer = subscriptions.customer().unwrap_or(customer);
        if sources::chargebee::is_deletion(event) || subscriptions.customer_deleted() {
            return Ok(Delivered::NotApplicable {
                reason: format!(
                    "Chargebee customer {customer_id} was deleted; billsync keeps its Pipedrive \
                     person as it is"
                ),
            });
        }
        let fields = subscriptions.fields(&rules.mapping, customer);
        let (person_id, org_id) = self
            .write_customer(rules, &event.connection, customer_id, &fields, pass)
            .await?;
        // Every event of a full sync records it (and so the unique id's lock), deal or not.
        let unique_id = rules.options.unique_id.describe();
        let allowed = deals_allowed(&self.records, event, &unique_id).await?;
        let deal = match event.object {
            _ if !allowed => None,
            ObjectKind::Subscription
                if rules.options.subscriptions_to == SubscriptionsTo::Deals =>
            {
                subscription_deal(&event.data)
            }
            ObjectKind::Invoice if rules.options.invoice_deals => invoice_deal(&event.data),
            _ => None,
        };
        let Some(deal) = deal else {
            return Ok(Delivered::Written {
                crm_id: Some(person_id.to_string()),
            });
        };
        self.write_deal(rules, event, deal, (Some(person_id), org_id), pass)
            .await
    }
}

impl PipedriveDestination {
    async fn apply_chargebee_invoice(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let deal = invoice_deal(&event.data).filter(|_| rules.options.invoice_deals);
        let unique_id = rules.options.unique_id.describe();
        let allowed = deals_allowed(&self.records, event, &unique_id).await?;
        let Some(deal) = deal.filter(|_| allowed) else {
            return Ok(Delivered::NotApplicable {
                reason: "recurring invoices, and invoices before the first full sync, make no \
                         deal"
                    .into(),
            });
        };
        let (person_id, org_id) = match event.customer_id.as_deref() {
            Some(customer) => {
                let customer = format!("{}/{customer}", event.connection);
                (
                    persons::linked(&self.records, &customer).await?,
                    self.organization_of(&customer, pass).await?,
                )
            }
            None => (None, None),
        };
        self.write_deal(rules, event, deal, (person_id, org_id), pass)
            .await
    }
}

/// The deal of a Chargebee subscription, its value the MRR (or its items' amounts).
fn subscription_deal(subscription: &Value) -> Option<DealDraft> {
    let id = text(subscription, "id")?;
    let plan = text(subscription, "plan_id").or_else(|| {
        subscription
            .pointer("/subscription_items/0/item_price_id")
            .and_then(Value::as_str)
    });
    let status = status_of_subscription(text(subscription, "status").unwrap_or("active"));
    let items: f64 = subscription
        .get("subscription_items")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|i| cents(i, "amount")).sum())
        .unwrap_or_default();
    Some(DealDraft {
        title: match plan {
            Some(plan) => format!("{plan} subscription {id}"),
            None => format!("Subscription {id}"),
        },
        value: cents(subscription, "mrr").unwrap_or(items),
        currency: text(subscription, "currency_code").map(str::to_uppercase),
        lost_reason: Some(
            text(subscription, "cancel_reason")
                .or_else(|| text(subscription, "cancel_reason_code"))
                .unwrap_or("cancelled")
                .to_string(),
        ),
        status,
    })
}

/// The deal of a one-time invoice (one without a subscription); `None` for recurring ones.
fn invoice_deal(invoice: &Value) -> Option<DealDraft> {
    let recurring = invoice.get("recurring").and_then(Value::as_bool) == Some(true)
        || text(invoice, "subscription_id").is_some();
    if recurring {
        return None;
    }
    let id = text(invoice, "id")?;
    Some(DealDraft {
        title: format!("Invoice {id}"),
        value: cents(invoice, "total").unwrap_or_default(),
        currency: text(invoice, "currency_code").map(str::to_uppercase),
        status: status_of_invoice(text(invoice, "status").unwrap_or("posted")),
        lost_reason: Some("invoice voided".into()),
    })
}
