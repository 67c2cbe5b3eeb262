//! Writing deep data into one ActiveCampaign account: the e-commerce connection of each
//! billing source, e-commerce customers and orders, and what billsync remembers about them
//! in NATS KV so that a repeated event costs no API call and never creates a second record.
//!
//! What is remembered, per destination connection (keys under the links bucket):
//! - `…/ecom_customer/<customer>`: the e-commerce customer's id and the email it has;
//! - `…/ecom_customer_created/<customer>`: that a create of it was started, ever;
//! - `…/ecom_order/<externalid>`: the order's id, the body last written, the largest refund
//!   seen and the newest event position applied;
//! - `…/tracked/<object>/<id>`: which events of an object were sent to event tracking.
//!
//! Connection ids are kept in memory: one lookup per source per process.
//! A create billsync never started is made at once (one call, not a lookup and a create);
//! before it, KV notes that a create is under way (created only if absent, so of two
//! workers one creates and the other looks up), and an attempt that dies before remembering
//! the result, or a lost record, is looked up by external id instead of created again.
//! A 422 duplicate from AC is read again too: no path creates a second record.

use crate::api::types::{ConnectionInput, EcomCustomerInput, EcomOrderInput};
use crate::api::{ActiveCampaignClient, Prior};
use crate::stripe_orders::PlannedOrder;
use billsync_events::BillingEventV1;
use billsync_worker::{DeliveryError, Pass, RecordStore, Versioned};
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use tokio::sync::Mutex;

/// The connection AC shows for a Stripe account ("Connected Apps").
const STRIPE_LOGO: &str = "https://stripe.com/img/v3/home/twitter.png";
const STRIPE_DASHBOARD: &str = "https://dashboard.stripe.com";

pub struct EcomBook {
    /// Deep data records, under the destination connection.
    records: RecordStore,
    /// Source connection → AC connection id.
    connections: Mutex<HashMap<String, String>>,
}

/// A record billsync remembers that ActiveCampaign no longer has (someone deleted it there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Vanished {
    /// The deep data connection; deleting it in ActiveCampaign takes its customers and
    /// orders with it.
    Connection,
    /// The e-commerce customer.
    Customer,
}

impl Vanished {
    /// What `error` says is gone: ActiveCampaign's 422 `related_missing` for the
    /// connection or customer an order or customer names.
    fn of(error: &DeliveryError) -> Option<Self> {
        let DeliveryError::Permanent {
            http_status: Some(422),
            detail,
            ..
        } = error
        else {
            return None;
        };
        detail.get("errors")?.as_array()?.iter().find_map(|e| {
            if e.get("code")?.as_str()? != "related_missing" {
                return None;
            }
            match e.pointer("/source/pointer")?.as_str()?.rsplit('/').next()? {
                "connection" | "connectionid" => Some(Self::Connection),
                "customer" | "customerid" => Some(Self::Customer),
                _ => None,
            }
        })
    }
}

/// The e-commerce customer an order belongs to.
#[derive(Clone, Copy)]
pub struct EcomCustomerRef<'a> {
    /// The Stripe connection's name.
    pub source_connection: &'a str,
    /// The Stripe customer id, or the email of a guest.
    pub externalid: &'a str,
    pub email: &'a str,
    pub accepts_marketing: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CustomerRecord {
    id: String,
    connection_id: String,
    email: String,
    #[serde(default)]
    accepts_marketing: Option<bool>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OrderRecord {
    /// AC's id, once the order exists.
    #[serde(default)]
    id: Option<String>,
    /// The body last written, to skip writes that would change nothing.
    #[serde(default)]
    sent: Option<EcomOrderInput>,
    /// What was paid before refunds, for refunds that arrive through another object.
    #[serde(default)]
    paid: Option<i64>,
    /// The largest refunded amount seen: refunds only grow.
    #[serde(default)]
    refunded: i64,
    /// The newest event position (Stripe `event.created`) that shaped the order.
    #[serde(default)]
    position: i64,
    /// A create was started and its result not yet remembered.
    #[serde(default)]
    creating: bool,
}

/// Which events of one object were sent to event tracking.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TrackRecord {
    /// The newest position tracked.
    position: i64,
    /// Events at `position` tracked (several can share a second). Records written before
    /// `tracked` existed hold only this: every older event counts as tracked then.
    events: Vec<String>,
    /// Every event tracked, with its position, the newest [`TRACKED_KEPT`]: a late event
    /// older than the newest (Stripe does not promise order) is tracked if it is not here.
    #[serde(default)]
    tracked: Vec<(i64, String)>,
    /// Events before this position are no longer remembered one by one and count as
    /// tracked: an automation started twice cannot be taken back, a missed one can.
    #[serde(default)]
    floor: Option<i64>,
}

/// How many tracked events of one object are remembered by id.
const TRACKED_KEPT: usize = 100;

impl TrackRecord {
    fn has(&self, event: &BillingEventV1) -> bool {
        let position = event.version.position;
        if self.tracked.is_empty() && !self.events.is_empty() {
            // Written before `tracked`: only its newest position is known.
            return position < self.position
                || (position == self.position && self.events.contains(&event.id));
        }
        position < self.floor.unwrap_or(i64::MIN)
            || self.tracked.iter().any(|(_, id)| *id == event.id)
    }

    fn add(&mut self, event: &BillingEventV1) {
        if self.tracked.is_empty() && !self.events.is_empty() {
            self.floor = Some(self.position);
            self.tracked = self
                .events
                .iter()
                .map(|id| (self.position, id.clone()))
                .collect();
        }
        let position = event.version.position;
        self.tracked.push((position, event.id.clone()));
        self.tracked.sort();
        while self.tracked.len() > TRACKED_KEPT {
            let (forgotten, _) = self.tracked.remove(0);
            self.floor = Some(self.floor.unwrap_or(i64::MIN).max(forgotten + 1));
        }
        if position > self.position {
            self.position = position;
            self.events.clear();
        }
        if position == self.position {
            self.events.push(event.id.clone());
        }
    }
}

/// What became of an order write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderWrite {
    /// AC has the order as the event describes it; its id.
    Written(String),
    /// AC already had exactly this; no call was made.
    Unchanged(String),
    /// A newer event already shaped the order; nothing was written.
    Stale,
    /// Remembered for an order that does not exist yet (a refund before its invoice).
    Deferred,
}

impl EcomBook {
    pub fn new(records: RecordStore) -> Self {
        Self {
            records,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// The name of a record of Stripe connection `source_connection`.
    fn key(&self, source_connection: &str, record: &str) -> String {
        format!("stripe/{source_connection}/{record}")
    }

    /// A record with the KV revision it was read at (default and `None`: there was none).
    async fn load_versioned<T: DeserializeOwned + Default>(
        &self,
        record: &str,
    ) -> Result<(T, Option<u64>), DeliveryError> {
        let Versioned { value, revision } = self.records.load(record).await?;
        Ok((value.unwrap_or_default(), revision))
    }

    /// Saves a record only if nobody saved it since it was read at `revision`. Replicas may
    /// apply two events of one order at once (JetStream hands them to whichever pulls
    /// first); the loser is retried and re-reads, so the newest position and the largest
    /// refund always win. Returns the record's new revision.
    async fn save_if_unchanged<T: Serialize>(
        &self,
        record: &str,
        value: &T,
        revision: Option<u64>,
    ) -> Result<u64, DeliveryError> {
        let conflict = || {
            format!(
                "another worker changed billsync's record {} at the same time; applying the \
                 event again",
                self.records.key(record)
            )
        };
        self.records
            .save_if_unchanged(record, value, revision, conflict)
            .await
    }

    /// The AC connection of Stripe connection `source_connection`: service `stripe`,
    /// externalid = the connection's name (one per Stripe account billsync is given).
    pub async fn connection_id(
        &self,
        client: &ActiveCampaignClient,
        source_connection: &str,
    ) -> Result<String, DeliveryError> {
        // Held across the calls so that concurrent lanes make one lookup, not several.
        let mut known = self.connections.lock().await;
        if let Some(id) = known.get(source_connection) {
            return Ok(id.clone());
        }
        let name = format!("Stripe ({source_connection}) via billsync");
        let id = client
            .ensure_connection(ConnectionInput {
                service: "stripe",
                externalid: source_connection,
                name: &name,
                logo_url: STRIPE_LOGO,
                link_url: STRIPE_DASHBOARD,
            })
            .await?;
        known.insert(source_connection.to_string(), id.clone());
        Ok(id)
    }

    /// What to report for `error`, a refusal of a deep data write for `customer`. When it
    /// says ActiveCampaign no longer has the connection or e-commerce customer billsync
    /// remembers (someone deleted it there), that memory is dropped and the write retried,
    /// which looks the record up and creates it anew.
    pub async fn after_refusal(
        &self,
        error: DeliveryError,
        customer: &EcomCustomerRef<'_>,
    ) -> DeliveryError {
        let gone = match Vanished::of(&error) {
            Some(Vanished::Connection) => {
                self.forget_connection(customer.source_connection).await;
                "the deep data connection"
            }
            Some(Vanished::Customer) => {
                if let Err(error) = self.forget_customer(customer).await {
                    return error;
                }
                "the e-commerce customer"
            }
            None => return error,
        };
        DeliveryError::Retryable {
            message: format!("{gone} no longer exists in ActiveCampaign; creating it again"),
            retry_after: None,
            http_status: Some(422),
        }
    }

    /// Forgets the AC connection of `source_connection`, so the next write looks it up again
    /// (and creates it if it is gone).
    async fn forget_connection(&self, source_connection: &str) {
        self.connections.lock().await.remove(source_connection);
    }

    /// Forgets the customer's e-commerce customer, so the next write looks it up again (and
    /// creates it if it is gone).
    async fn forget_customer(&self, customer: &EcomCustomerRef<'_>) -> Result<(), DeliveryError> {
        for key in [
            self.customer_key(customer),
            self.customer_key_of(customer, "ecom_customer_created"),
        ] {
            self.records.delete(&key).await?;
        }
        Ok(())
    }

    fn customer_key(&self, customer: &EcomCustomerRef<'_>) -> String {
        self.customer_key_of(customer, "ecom_customer")
    }

    fn customer_key_of(&self, customer: &EcomCustomerRef<'_>, record: &str) -> String {
        // Guests are keyed by email, which a KV key cannot hold: hash it.
        let part = if customer.externalid.contains('@') {
            let digest = Sha256::digest(customer.externalid.to_lowercase().as_bytes());
            format!("guest-{}", &hex::encode(digest)[..32])
        } else {
            customer.externalid.to_string()
        };
        self.key(customer.source_connection, &format!("{record}/{part}"))
    }

    /// The id of the customer's e-commerce customer, created when AC has none, and its email
    /// (or marketing consent) updated when it changed. One KV read when nothing changed.
    pub async fn customer_id(
        &self,
        client: &ActiveCampaignClient,
        connection_id: &str,
        customer: &EcomCustomerRef<'_>,
    ) -> Result<String, DeliveryError> {
        let key = self.customer_key(customer);
        let known: Option<CustomerRecord> = self.records.get(&key).await?;
        let marketing = customer
            .accepts_marketing
            .map(|yes| if yes { "1" } else { "0" });
        let input = EcomCustomerInput {
            connectionid: connection_id,
            externalid: customer.externalid,
            email: customer.email,
            accepts_marketing: marketing,
        };
        let record = match known.filter(|k| k.connection_id == connection_id) {
            Some(known) => {
                let consent_changed = customer
                    .accepts_marketing
                    .is_some_and(|c| known.accepts_marketing != Some(c));
                if known.email.eq_ignore_ascii_case(customer.email) && !consent_changed {
                    return Ok(known.id);
                }
                match client.update_ecom_customer(&known.id, input).await {
                    Ok(()) => {}
                    Err(DeliveryError::Permanent {
                        http_status: Some(404),
                        ..
                    }) => {
                        self.forget_customer(customer).await?;
                        return Err(DeliveryError::Retryable {
                            message: format!(
                                "e-commerce customer {} was deleted in ActiveCampaign; creating \
                                 it again",
                                known.id
                            ),
                            retry_after: None,
                            http_status: Some(404),
                        });
                    }
                    Err(other) => return Err(other),
                }
                CustomerRecord {
                    email: customer.email.to_string(),
                    accepts_marketing: customer.accepts_marketing.or(known.accepts_marketing),
                    ..known
                }
            }
            None => {
                let started = self.customer_key_of(customer, "ecom_customer_created");
                let prior = if self.records.create_text(&started, connection_id).await? {
                    Prior::None
                } else {
                    Prior::Unknown
                };
                let (found, created) = client.ensure_ecom_customer(input.clone(), prior).await?;
                if !created
                    && (!found.email.eq_ignore_ascii_case(customer.email)
                        || customer.accepts_marketing.is_some())
                {
                    client.update_ecom_customer(&found.id, input).await?;
                }
                CustomerRecord {
                    id: found.id,
                    connection_id: connection_id.to_string(),
                    email: customer.email.to_string(),
                    accepts_marketing: customer.accepts_marketing,
                }
            }
        };
        self.records.put(&key, &record).await?;
        Ok(record.id)
    }

    fn order_key(&self, source_connection: &str, externalid: &str) -> String {
        self.key(source_connection, &format!("ecom_order/{externalid}"))
    }

    /// Creates or updates the order `planned` describes (for the AC connection, e-commerce
    /// customer and email given). Skips the write when AC already has exactly this, unless
    /// replaying, and refuses events older than the one that last shaped the order.
    pub async fn write_order(
        &self,
        client: &ActiveCampaignClient,
        event: &BillingEventV1,
        planned: &PlannedOrder,
        (connection_id, customer_id, email): (&str, &str, &str),
        pass: Pass,
    ) -> Result<OrderWrite, DeliveryError> {
        let key = self.order_key(&event.connection, &planned.externalid);
        let (mut record, mut revision) = self.load_versioned::<OrderRecord>(&key).await?;
        let position = event.version.position;
        if record.position > position {
            return Ok(OrderWrite::Stale);
        }
        let remembered = (record.position, record.refunded, record.paid);
        let refunded = record.refunded.max(planned.refunded);
        let order = EcomOrderInput {
            externalid: planned.externalid.clone(),
            source: u8::from(planned.realtime),
            email: email.to_string(),
            order_products: planned.products.clone(),
            total_price: (planned.paid - refunded).max(0),
            shipping_amount: planned.shipping_amount,
            tax_amount: planned.tax_amount,
            discount_amount: planned.discount_amount,
            currency: planned.currency.clone(),
            connectionid: connection_id.to_string(),
            customerid: customer_id.to_string(),
            external_created_date: ac_date(DateTime::from_timestamp(planned.created, 0)),
            external_updated_date: ac_date(Some(event.occurred_at)),
            order_number: planned.order_number.clone(),
            order_url: planned.order_url.clone(),
        };
        record.position = position;
        record.refunded = refunded;
        record.paid = Some(planned.paid);
        let unchanged = pass == Pass::Live
            && record.id.is_some()
            && record
                .sent
                .as_ref()
                .is_some_and(|sent| same_order(sent, &order));
        if unchanged {
            // Only what billsync remembers may have moved (a newer position).
            if remembered != (record.position, record.refunded, record.paid) {
                self.save_if_unchanged(&key, &record, revision).await?;
            }
            return Ok(OrderWrite::Unchanged(
                record.id.clone().expect("checked above"),
            ));
        }
        let prior = match (&record.id, record.creating) {
            (Some(id), _) => Prior::Id(id),
            (None, true) => Prior::Unknown,
            (None, false) => Prior::None,
        };
        if prior == Prior::None {
            record.creating = true;
            revision = Some(self.save_if_unchanged(&key, &record, revision).await?);
        }
        let id = client.upsert_ecom_order(&order, prior).await?;
        record.id = Some(id.clone());
        record.creating = false;
        record.sent = Some(order);
        self.save_if_unchanged(&key, &record, revision).await?;
        Ok(OrderWrite::Written(id))
    }

    /// Applies a refund to the order `order_externalid` (an invoice's, refunded through its
    /// charge): lowers its total to paid minus refunded. When the order does not exist yet
    /// the refund is remembered and the order's first write includes it.
    pub async fn record_refund(
        &self,
        client: &ActiveCampaignClient,
        event: &BillingEventV1,
        order_externalid: &str,
        refunded: i64,
    ) -> Result<OrderWrite, DeliveryError> {
        let key = self.order_key(&event.connection, order_externalid);
        let (mut record, revision) = self.load_versioned::<OrderRecord>(&key).await?;
        if refunded <= record.refunded {
            return Ok(match &record.id {
                Some(id) => OrderWrite::Unchanged(id.clone()),
                None => OrderWrite::Deferred,
            });
        }
        record.refunded = refunded;
        let outcome = match (&record.id, &record.sent, record.paid) {
            (Some(id), Some(sent), Some(paid)) => {
                let mut order = sent.clone();
                order.total_price = (paid - refunded).max(0);
                order.external_updated_date = ac_date(Some(event.occurred_at));
                let id = client.upsert_ecom_order(&order, Prior::Id(id)).await?;
                record.id = Some(id.clone());
                record.sent = Some(order);
                OrderWrite::Written(id)
            }
            _ => OrderWrite::Deferred,
        };
        self.save_if_unchanged(&key, &record, revision).await?;
        Ok(outcome)
    }

    fn track_key(&self, event: &BillingEventV1) -> String {
        self.key(
            &event.connection,
            &format!("tracked/{}/{}", event.object, event.object_id),
        )
    }

    /// Whether `event` still has to be sent to event tracking: not when it was sent before
    /// (a replay must not start automations again; AC cannot take a tracked event back),
    /// but also when it arrives after newer events of its object.
    pub async fn needs_tracking(&self, event: &BillingEventV1) -> Result<bool, DeliveryError> {
        let record: TrackRecord = self
            .records
            .get(&self.track_key(event))
            .await?
            .unwrap_or_default();
        Ok(!record.has(event))
    }

    pub async fn mark_tracked(&self, event: &BillingEventV1) -> Result<(), DeliveryError> {
        let key = self.track_key(event);
        let (mut record, revision) = self.load_versioned::<TrackRecord>(&key).await?;
        if !record.has(event) {
            record.add(event);
        }
        self.save_if_unchanged(&key, &record, revision)
            .await
            .map(|_| ())
    }
}

/// Equal but for `externalUpdatedDate`, which every event moves.
fn same_order(a: &EcomOrderInput, b: &EcomOrderInput) -> bool {
    let mut a = a.clone();
    a.external_updated_date.clone_from(&b.external_updated_date);
    a == *b
}

/// AC's date-time format, in UTC: `2024-04-10T12:00:00+00:00`.
pub fn ac_date(at: Option<DateTime<Utc>>) -> String {
    at.unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_the_way_ac_writes_them() {
        assert_eq!(
            ac_date(DateTime::from_timestamp(1_712_750_400, 0)),
            "2024-04-10T12:00:00+00:00"
        );
    }
}
