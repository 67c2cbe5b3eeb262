//! Stripe → Pipedrive through the same mappings: customers → persons, subscriptions → deals
//! (value = MRR from the items, normalised to a month), paid one-time invoices → deals.
//! Stripe has no full sync, so its deals are written from the start.

use crate::deals::{status_of_invoice, status_of_subscription, DealDraft};
use crate::destination::PipedriveDestination;
use crate::persons;
use crate::sync_rules::SyncRules;
use billsync_events::{BillingEventV1, ObjectKind};
use billsync_sources as sources;
use billsync_worker::{Delivered, DeliveryError, Pass};
use serde_json::Value;

fn text<'a>(record: &'a Value, pointer: &str) -> Option<&'a str> {
    record
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

impl PipedriveDestination {
    pub(crate) async fn apply_stripe(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let Some(customer_id) = event.customer_id.as_deref() else {
            return Ok(Delivered::NotApplicable {
                reason: format!("{} events name no customer for Pipedrive", event.event_type),
            });
        };
        if sources::stripe::deletes_customer(event) {
            return Ok(Delivered::NotApplicable {
                reason: format!(
                    "Stripe customer {customer_id} was deleted; billsync keeps its Pipedrive \
                     person as it is"
                ),
            });
        }
        let customer = format!("{}/{customer_id}", event.connection);
        let linked = persons::linked(&self.records, &customer);
        let (person_id, org_id) = match event.object {
            ObjectKind::Customer | ObjectKind::Invoice => {
                let view = sources::stripe::customer_view(event).unwrap_or(Value::Null);
                let fields = rules.mapping.apply(&view);
                let has_id = fields
                    .get(rules.options.unique_id.field())
                    .is_some_and(|v| v.as_str().is_some_and(|s| !s.is_empty()));
                if event.object == ObjectKind::Customer || has_id {
                    let (person, org) = self
                        .write_customer(rules, &event.connection, customer_id, &fields, pass)
                        .await?;
                    (Some(person), org)
                } else {
                    (linked.await?, self.organization_of(&customer, pass).await?)
                }
            }
            _ => (linked.await?, self.organization_of(&customer, pass).await?),
        };
        let deal = match event.object {
            ObjectKind::Subscription => subscription_deal(&event.data),
            ObjectKind::Invoice if rules.options.invoice_deals => invoice_deal(&event.data),
            _ => None,
        };
        let Some(deal) = deal else {
            return Ok(match person_id {
                Some(id) => Delivered::Written {
                    crm_id: Some(id.to_string()),
                },
                None => Delivered::NotApplicable {
                    reason: format!("{} events write nothing to Pipedrive", event.event_type),
                },
            });
        };
        self.write_deal(rules, event, deal, (person_id, org_id), pass)
            .await
    }
}

fn subscription_deal(subscription: &Value) -> Option<DealDraft> {
    let id = text(subscription, "/id")?;
    let product = text(subscription, "/items/data/0/price/nickname")
        .or_else(|| text(subscription, "/items/data/0/price/product/name"))
        .or_else(|| text(subscription, "/items/data/0/price/id"));
    Some(DealDraft {
        title: match product {
            Some(product) => format!("{product} subscription {id}"),
            None => format!("Subscription {id}"),
        },
        value: sources::stripe::monthly_recurring_cents(subscription) as f64 / 100.0,
        currency: text(subscription, "/currency").map(str::to_uppercase),
        status: status_of_subscription(text(subscription, "/status").unwrap_or("active")),
        lost_reason: Some(
            text(subscription, "/cancellation_details/feedback")
                .or_else(|| text(subscription, "/cancellation_details/reason"))
                .unwrap_or("canceled")
                .to_string(),
        ),
    })
}

/// A one-time invoice (no subscription, in either API version's place for it).
fn invoice_deal(invoice: &Value) -> Option<DealDraft> {
    if text(invoice, "/subscription").is_some()
        || invoice.pointer("/subscription/id").is_some()
        || invoice
            .pointer("/parent/subscription_details")
            .is_some_and(|v| !v.is_null())
    {
        return None;
    }
    let id = text(invoice, "/id")?;
    Some(DealDraft {
        title: format!("Invoice {}", text(invoice, "/number").unwrap_or(id)),
        value: invoice
            .get("total")
            .and_then(Value::as_f64)
            .unwrap_or_default()
            / 100.0,
        currency: text(invoice, "/currency").map(str::to_uppercase),
        status: status_of_invoice(text(invoice, "/status").unwrap_or("open")),
        lost_reason: Some("invoice voided".into()),
    })
}
