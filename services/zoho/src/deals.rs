//! Subscriptions → Deals (seed 003's table): Deal_Name = subscription id, Account_Name =
//! the company's account, Amount = MRR, Contact_Name = the customer's contact, Owner = the
//! configured user, Closing_Date = the subscription's created date; pipeline and stage by
//! status. Every change of the subscription updates its deal.
//!
//! Deals are matched by the unique custom field `Billsync_Subscription_Id`, never by
//! `Deal_Name`: people rename deals, so the name is written only when billsync has no deal
//! for the subscription yet.
//!
//! A deal written before its customer's contact exists (a Stripe subscription event that came
//! before its customer's, or whose customer failed first) waits for it: the contact's write
//! back-fills `Contact_Name` and `Account_Name` of the deals waiting for it.

use crate::api::Module;
use crate::destination::{refused, unchanged, DealSettings, ZohoDestination};
use crate::options::DealStages;
use crate::sync_rules::SyncRules;
use billsync_worker::{DeliveryError, Pass};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The custom field (unique) holding the subscription a deal was written for.
pub const SUBSCRIPTION_ID_FIELD: &str = "Billsync_Subscription_Id";
const DEAL_CHECK: &[&str] = &[SUBSCRIPTION_ID_FIELD];

/// A subscription as a deal reads it, whatever the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DealSource {
    pub(crate) id: String,
    pub(crate) status: Status,
    /// Monthly recurring revenue in the currency's minor units.
    pub(crate) mrr_cents: i64,
    /// When the subscription was created (Unix seconds).
    pub(crate) created: Option<i64>,
}

/// Subscription statuses, as the stage options name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Active,
    NonRenewing,
    InTrial,
    Future,
    Paused,
    Cancelled,
    Other,
}

impl Status {
    fn stage(self, stages: &DealStages) -> &str {
        match self {
            Status::Active => &stages.active,
            Status::NonRenewing => &stages.non_renewing,
            Status::InTrial => &stages.in_trial,
            Status::Future => &stages.future,
            Status::Paused => &stages.paused,
            Status::Cancelled => &stages.cancelled,
            Status::Other => &stages.other,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DealLink {
    deal_id: String,
    written: Value,
}

fn deal_record(source_connection: &str, subscription: &str) -> String {
    format!("deal/{source_connection}/{subscription}")
}

/// The subscriptions of a customer whose deals were written without its contact.
fn awaiting_record(source_connection: &str, customer: &str) -> String {
    format!("deals-awaiting-contact/{source_connection}/{customer}")
}

/// Minor units → the decimal amount Zoho's currency fields take.
fn amount(cents: i64) -> Value {
    json!((cents as f64) / 100.0)
}

fn date(unix: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(unix, 0).map(|d| d.format("%Y-%m-%d").to_string())
}

impl ZohoDestination {
    /// Writes `subscription`'s deal, pointing to the customer's contact and account.
    pub(crate) async fn write_deal(
        &self,
        rules: &SyncRules,
        source_connection: &str,
        subscription: &DealSource,
        contact_id: Option<&str>,
        account_id: Option<&str>,
        pass: Pass,
    ) -> Result<String, DeliveryError> {
        let settings = self.deal_settings().await?;
        let Some(DealSettings { pipeline, owner_id }) = settings.get(source_connection) else {
            return Err(DeliveryError::permanent(
                billsync_events::FailureClass::Configuration,
                format!("{}: the sync writes no deals", rules.key),
            ));
        };
        let mut record = Map::new();
        record.insert(SUBSCRIPTION_ID_FIELD.into(), json!(subscription.id));
        record.insert("Pipeline".into(), json!(pipeline));
        record.insert(
            "Stage".into(),
            json!(subscription.status.stage(&rules.options.stages)),
        );
        record.insert("Amount".into(), amount(subscription.mrr_cents));
        if let Some(created) = subscription.created.and_then(date) {
            record.insert("Closing_Date".into(), json!(created));
        }
        if let Some(id) = contact_id {
            record.insert("Contact_Name".into(), json!({ "id": id }));
        }
        if let Some(id) = account_id {
            record.insert("Account_Name".into(), json!({ "id": id }));
        }
        if let Some(id) = owner_id {
            record.insert("Owner".into(), json!({ "id": id }));
        }
        let key = deal_record(source_connection, &subscription.id);
        let wanted = Value::Object(record.clone());
        let stored: Option<DealLink> = self.records.get(&key).await?;
        if let Some(link) = &stored {
            if unchanged(pass, Some(&link.written), &wanted) {
                return Ok(link.deal_id.clone());
            }
        }
        let named = {
            let mut named = record.clone();
            named.insert("Deal_Name".into(), json!(subscription.id));
            Value::Object(named)
        };
        // A deal billsync wrote keeps the name people may have given it since.
        let first = if stored.is_some() {
            Value::Object(record)
        } else {
            named.clone()
        };
        let mut result = self.upsert(rules, Module::Deals, DEAL_CHECK, first).await?;
        if stored.is_some() && result.code == "MANDATORY_NOT_FOUND" {
            // The deal was deleted in Zoho: a new one needs its name.
            result = self.upsert(rules, Module::Deals, DEAL_CHECK, named).await?;
        }
        let deal_id = match result.id() {
            Some(id) if result.is_success() => id.to_string(),
            _ => return Err(refused(Module::Deals, &result)),
        };
        self.records
            .put(
                &key,
                &DealLink {
                    deal_id: deal_id.clone(),
                    written: wanted,
                },
            )
            .await?;
        Ok(deal_id)
    }
}

impl ZohoDestination {
    /// Remembers that `subscription`'s deal was written without the contact of `customer`,
    /// so the contact's write fills it in.
    pub(crate) async fn await_contact(
        &self,
        source_connection: &str,
        customer: &str,
        subscription: &str,
    ) -> Result<(), DeliveryError> {
        let key = awaiting_record(source_connection, customer);
        let stored = self.records.load::<BTreeSet<String>>(&key).await?;
        let mut waiting = stored.value.unwrap_or_default();
        if waiting.insert(subscription.to_string()) {
            self.records
                .save_if_unchanged(&key, &waiting, stored.revision, || {
                    format!("the deals awaiting customer {customer}'s contact changed meanwhile")
                })
                .await?;
        }
        Ok(())
    }

    /// Points the deals waiting for `customer`'s contact to it (and to its account). Each
    /// upsert carries only the subscription id and the links, so it changes nothing else of
    /// the deal whichever order it meets the subscription's own writes in, and repeating it
    /// changes nothing. A deal deleted in Zoho since is left to the subscription's next
    /// change, which writes it whole.
    pub(crate) async fn fill_awaiting_deals(
        &self,
        rules: &SyncRules,
        source_connection: &str,
        customer: &str,
        contact_id: &str,
        account_id: Option<&str>,
    ) -> Result<(), DeliveryError> {
        let key = awaiting_record(source_connection, customer);
        let stored = self.records.load::<BTreeSet<String>>(&key).await?;
        let Some(waiting) = stored.value.filter(|w| !w.is_empty()) else {
            return Ok(());
        };
        for subscription in &waiting {
            let link_key = deal_record(source_connection, subscription);
            let Some(mut link) = self.records.get::<DealLink>(&link_key).await? else {
                continue;
            };
            let mut links = Map::new();
            links.insert("Contact_Name".into(), json!({ "id": contact_id }));
            if let Some(id) = account_id {
                links.insert("Account_Name".into(), json!({ "id": id }));
            }
            let mut record = links.clone();
            record.insert(SUBSCRIPTION_ID_FIELD.into(), json!(subscription));
            let result = self
                .upsert(rules, Module::Deals, DEAL_CHECK, Value::Object(record))
                .await?;
            if result.code == "MANDATORY_NOT_FOUND" {
                continue;
            }
            if !result.is_success() {
                return Err(refused(Module::Deals, &result));
            }
            // What billsync wrote now includes the links: the subscription's next event
            // that changes nothing else writes nothing.
            if let Value::Object(written) = &mut link.written {
                written.extend(links);
            }
            self.records.put(&link_key, &link).await?;
        }
        self.records
            .save_if_unchanged(&key, &BTreeSet::<String>::new(), stored.revision, || {
                format!("the deals awaiting customer {customer}'s contact changed meanwhile")
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_and_dates_take_zohos_formats() {
        assert_eq!(amount(12_345), json!(123.45));
        assert_eq!(date(1_700_000_000).as_deref(), Some("2023-11-14"));
    }
}
