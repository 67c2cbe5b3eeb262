//! Stripe → Zoho CRM, through the same mappings as Chargebee: customers → contacts,
//! subscriptions → deals with Amount = MRR from the subscription's items (every interval
//! normalised to a month), a cancelled subscription → the configured closed stage.

use crate::contacts::{link_record, ContactLink};
use crate::deals::{DealSource, Status};
use crate::destination::{delivered, ZohoDestination};
use crate::sync_rules::SyncRules;
use billsync_events::{BillingEventV1, ObjectKind};
use billsync_sources as sources;
use billsync_worker::{Delivered, DeliveryError, Pass};
use serde_json::Value;

/// A Stripe subscription's MRR in minor units: each item's price × quantity, over its
/// interval normalised to a month (a year is 12 months, a week 52/12 of one, a day 365/12).
pub(crate) fn monthly_cents(subscription: &Value) -> i64 {
    let items = subscription
        .pointer("/items/data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total: f64 = items
        .iter()
        .map(|item| {
            let price = item.get("price").or_else(|| item.get("plan"));
            let unit = price
                .and_then(|p| p.get("unit_amount").or_else(|| p.get("amount")))
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            let quantity = item.get("quantity").and_then(Value::as_f64).unwrap_or(1.0);
            let recurring = price.and_then(|p| p.get("recurring")).or(price);
            let interval = recurring
                .and_then(|r| r.get("interval"))
                .and_then(Value::as_str)
                .unwrap_or("month");
            let count = recurring
                .and_then(|r| r.get("interval_count"))
                .and_then(Value::as_f64)
                .filter(|c| *c >= 1.0)
                .unwrap_or(1.0);
            let months = match interval {
                "day" => 12.0 / 365.0,
                "week" => 12.0 / 52.0,
                "year" => 12.0,
                _ => 1.0,
            } * count;
            unit * quantity / months
        })
        .sum();
    total.round() as i64
}

/// A Stripe subscription as its deal reads it.
pub(crate) fn deal_source(event: &BillingEventV1) -> Option<DealSource> {
    let subscription = &event.data;
    let id = subscription.get("id").and_then(Value::as_str)?;
    let status = if event.event_type == "customer.subscription.deleted" {
        Status::Cancelled
    } else {
        match subscription.get("status").and_then(Value::as_str) {
            Some("active" | "past_due") => Status::Active,
            Some("trialing") => Status::InTrial,
            Some("paused") => Status::Paused,
            Some("canceled" | "incomplete_expired") => Status::Cancelled,
            _ => Status::Other,
        }
    };
    let non_renewing = subscription
        .get("cancel_at_period_end")
        .and_then(Value::as_bool)
        == Some(true);
    Some(DealSource {
        id: id.to_string(),
        status: if status == Status::Active && non_renewing {
            Status::NonRenewing
        } else {
            status
        },
        mrr_cents: monthly_cents(subscription),
        created: subscription
            .get("created")
            .or_else(|| subscription.get("start_date"))
            .and_then(Value::as_i64),
    })
}

impl ZohoDestination {
    pub(crate) async fn apply_stripe(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let Some(customer_id) = event.customer_id.as_deref() else {
            return Ok(Delivered::NotApplicable {
                reason: "the event has no Stripe customer".into(),
            });
        };
        match event.object {
            ObjectKind::Customer => {
                if sources::stripe::deletes_customer(event) {
                    return Ok(Delivered::NotApplicable {
                        reason: format!(
                            "Stripe customer {customer_id} was deleted; its Zoho contact stays"
                        ),
                    });
                }
                let Some(view) = sources::stripe::customer_view(event) else {
                    return Ok(Delivered::NotApplicable {
                        reason: "the event carries no customer".into(),
                    });
                };
                let fields = rules.mapping.apply(&view);
                let contact = self
                    .write_contact(rules, &event.connection, customer_id, fields, pass)
                    .await?;
                if let (Some(contact_id), true) = (&contact.contact_id, rules.options.sync_deals) {
                    self.fill_awaiting_deals(
                        rules,
                        &event.connection,
                        customer_id,
                        contact_id,
                        contact.account_id.as_deref(),
                    )
                    .await?;
                }
                Ok(delivered(contact.contact_id, || {
                    contact.skipped.unwrap_or_default()
                }))
            }
            ObjectKind::Subscription if rules.options.sync_deals => {
                let Some(deal) = deal_source(event) else {
                    return Ok(Delivered::NotApplicable {
                        reason: "the subscription has no id".into(),
                    });
                };
                // The customer's contact, once its customer event wrote it.
                let contact: Option<ContactLink> = self
                    .records
                    .get(&link_record(&event.connection, customer_id))
                    .await?;
                let deal_id = self
                    .write_deal(
                        rules,
                        &event.connection,
                        &deal,
                        contact.as_ref().map(|c| c.contact_id.as_str()),
                        contact.as_ref().and_then(|c| c.account_id.as_deref()),
                        pass,
                    )
                    .await?;
                if contact.is_none() {
                    // Stripe does not promise the customer's event comes first: the contact's
                    // write fills this deal in. Looking again after saying so closes the race
                    // with a contact written meanwhile (by another replica).
                    self.await_contact(&event.connection, customer_id, &deal.id)
                        .await?;
                    let written: Option<ContactLink> = self
                        .records
                        .get(&link_record(&event.connection, customer_id))
                        .await?;
                    if let Some(contact) = written {
                        self.fill_awaiting_deals(
                            rules,
                            &event.connection,
                            customer_id,
                            &contact.contact_id,
                            contact.account_id.as_deref(),
                        )
                        .await?;
                    }
                }
                Ok(Delivered::Written {
                    crm_id: Some(deal_id),
                })
            }
            _ => Ok(Delivered::NotApplicable {
                reason: format!(
                    "Zoho CRM syncs Stripe customers and subscriptions, not {} events",
                    event.event_type
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mrr_normalises_every_interval_to_a_month() {
        let subscription = json!({"items": {"data": [
            {"quantity": 2, "price": {"unit_amount": 1000, "recurring": {"interval": "month", "interval_count": 1}}},
            {"quantity": 1, "price": {"unit_amount": 12000, "recurring": {"interval": "year", "interval_count": 1}}},
            {"quantity": 1, "price": {"unit_amount": 3000, "recurring": {"interval": "month", "interval_count": 3}}},
            {"quantity": 1, "price": {"unit_amount": 100, "recurring": {"interval": "week", "interval_count": 1}}},
        ]}});
        // 2000 + 1000 + 1000 + 100 × 52 / 12 (433.33)
        assert_eq!(monthly_cents(&subscription), 4433);
    }
}
