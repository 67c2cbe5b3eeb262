//! One ActiveCampaign connection as a billsync destination: what it is made of, and which
//! flow an event takes (`stripe_flow`, `chargebee_flow`).

use crate::api::{as_one_event, ActiveCampaignClient};
use crate::bulk::{imports_pay, MAX_BULK};
use crate::contacts::ContactBook;
use crate::ecommerce::EcomBook;
use crate::error::StartError;
use crate::sync_rules::{sync_rules, SyncRules};
use async_nats::jetstream::kv;
use billsync_config::{ActiveCampaignConnection, Config};
use billsync_events::{BillingEventV1, DestinationKind, SourceKind};
use billsync_worker::{
    Delivered, DeliveryError, Destination, Pass, RecordStore, MAX_CALLING, NO_EVENT_EFFECTS,
};
use std::collections::HashMap;
use std::time::Duration;

pub struct ActiveCampaignDestination {
    name: String,
    /// The account's request rate (`requests_per_second`).
    requests_per_second: u32,
    pub(crate) contacts: ContactBook,
    /// Deep data: e-commerce connections, customers and orders.
    pub(crate) ecommerce: EcomBook,
    /// What billsync remembers of this connection's records (Chargebee subscriptions here).
    pub(crate) records: RecordStore,
    /// How each source connection feeding this destination is applied.
    syncs: HashMap<String, SyncRules>,
}

impl ActiveCampaignDestination {
    pub fn new(
        config: &Config,
        connection: &ActiveCampaignConnection,
        kv: kv::Store,
        rate_limits: kv::Store,
        timeout: Duration,
    ) -> Result<Self, StartError> {
        let syncs = sync_rules(config, connection, timeout)?;
        let client = ActiveCampaignClient::new(
            &connection.base_url,
            connection.api_token.expose(),
            connection.requests_per_second,
            timeout,
        )
        .for_connection(&connection.name)
        .with_shared_limiter(billsync_bus::SharedRateLimiter::new(
            rate_limits,
            &account_rate_key(&connection.base_url),
            connection.requests_per_second,
        ));
        let records = RecordStore::new(kv, DestinationKind::Activecampaign, &connection.name);
        Ok(Self {
            name: connection.name.clone(),
            contacts: ContactBook::new(client, records.clone(), connection.requests_per_second),
            requests_per_second: connection.requests_per_second,
            ecommerce: EcomBook::new(records.clone()),
            records,
            syncs,
        })
    }
}

impl Destination for ActiveCampaignDestination {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Activecampaign
    }

    fn connection(&self) -> &str {
        &self.name
    }

    async fn deliver(
        &self,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let Some(rules) = self.syncs.get(&event.connection) else {
            return Err(DeliveryError::no_sync(&event.connection, &self.name));
        };
        as_one_event(async {
            match rules.source {
                SourceKind::Stripe => self.apply_stripe(rules, event, pass).await,
                SourceKind::Chargebee => self.apply_chargebee(rules, event, pass).await,
            }
        })
        .await
    }

    async fn deliver_effects(
        &self,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        match self.syncs.get(&event.connection) {
            Some(rules) if rules.source == SourceKind::Stripe => {
                as_one_event(self.apply_stripe_effects(rules, event, pass)).await
            }
            // Chargebee's events carry no effects of their own in ActiveCampaign: a
            // customer's contact shows its newest data, and that is all.
            _ => Ok(Delivered::NotApplicable {
                reason: NO_EVENT_EFFECTS.to_string(),
            }),
        }
    }

    /// As many events at once as one bulk import takes, whatever the account's 5 requests/s:
    /// the contacts of events in flight together are written by one bulk import (see
    /// [`crate::bulk`]), so the more there are, the fewer calls each costs. Of those, only
    /// as many make single calls at once as the account takes requests in a second
    /// ([`crate::api::Turns`]). An account whose limit is lifted so far that single writes
    /// beat an import (see [`crate::bulk::min_group`]) works on as many events at once as
    /// the kit lets call.
    fn concurrency(&self) -> usize {
        if imports_pay(self.requests_per_second) {
            MAX_BULK
        } else {
            MAX_CALLING
        }
    }

    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        self.contacts.client.check().await
    }
}

/// The rate-limit key of an ActiveCampaign account: its API URL, so two connections to one
/// account (say, two API keys) share its 5 requests/s as ActiveCampaign counts them.
fn account_rate_key(base_url: &str) -> String {
    let account: String = base_url
        .trim_end_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("activecampaign.{account}")
}
