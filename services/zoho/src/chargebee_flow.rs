//! Chargebee → Zoho CRM (seed 003): the customer's contact from the newest copy of the
//! customer, and a subscription event's deal from the newest copy of the subscription.

use crate::deals::{DealSource, Status};
use crate::destination::{delivered, ZohoDestination};
use crate::sync_rules::SyncRules;
use billsync_events::{BillingEventV1, ObjectKind};
use billsync_sources as sources;
use billsync_sources::chargebee::CustomerSubscriptions;
use billsync_worker::{Delivered, DeliveryError, Pass};
use serde_json::Value;

/// A Chargebee subscription as its deal reads it.
pub(crate) fn deal_source(subscription: &Value) -> Option<DealSource> {
    let id = subscription.get("id").and_then(Value::as_str)?;
    if subscription.get("deleted").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let status = match subscription.get("status").and_then(Value::as_str) {
        Some("active") => Status::Active,
        Some("non_renewing") => Status::NonRenewing,
        Some("in_trial") => Status::InTrial,
        Some("future") => Status::Future,
        Some("paused") => Status::Paused,
        Some("cancelled") => Status::Cancelled,
        _ => Status::Other,
    };
    Some(DealSource {
        id: id.to_string(),
        status,
        mrr_cents: subscription.get("mrr").and_then(Value::as_i64).unwrap_or(0),
        created: subscription
            .get("created_at")
            .and_then(Value::as_i64)
            .or_else(|| subscription.get("started_at").and_then(Value::as_i64)),
    })
}

impl ZohoDestination {
    pub(crate) async fn apply_chargebee(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let (Some(customer_id), Some(customer)) = (
            event.customer_id.as_deref(),
            sources::chargebee::customer_of(event),
        ) else {
            return Ok(Delivered::NotApplicable {
                reason: format!("{} events carry no customer for Zoho CRM", event.event_type),
            });
        };
        let seen =
            CustomerSubscriptions::observe(&self.records, event, customer_id, customer).await?;
        if sources::chargebee::is_deletion(event) || seen.customer_deleted() {
            // Seed 003 syncs customers one way and says nothing of deletions: the contact
            // and its deals stay as they are in Zoho.
            return Ok(Delivered::NotApplicable {
                reason: format!(
                    "Chargebee customer {customer_id} was deleted; its Zoho contact stays"
                ),
            });
        }
        let customer = seen.customer().unwrap_or(customer);
        let fields = seen.fields(&rules.mapping, customer);
        let contact = self
            .write_contact(rules, &event.connection, customer_id, fields, pass)
            .await?;
        // A subscription event writes its deal; a customer event rewrites the deals of the
        // customer's subscriptions, whose contact and account it may have changed (a deal
        // whose record did not change costs no call).
        let deals: Vec<DealSource> = match (event.object, rules.options.sync_deals) {
            (_, false) => Vec::new(),
            (ObjectKind::Subscription, true) => seen
                .subscriptions
                .get(&event.object_id)
                .and_then(deal_source)
                .into_iter()
                .collect(),
            (_, true) => seen
                .subscriptions
                .values()
                .filter_map(deal_source)
                .collect(),
        };
        let mut written = contact.contact_id.clone();
        for deal in &deals {
            let deal_id = self
                .write_deal(
                    rules,
                    &event.connection,
                    deal,
                    contact.contact_id.as_deref(),
                    contact.account_id.as_deref(),
                    pass,
                )
                .await?;
            if event.object == ObjectKind::Subscription {
                written = Some(deal_id);
            }
        }
        Ok(delivered(written, || contact.skipped.unwrap_or_default()))
    }
}
