//! One Pipedrive connection as a billsync destination: what it is made of, which flow an
//! event takes (`chargebee_flow`, `stripe_flow`), and how a customer's mapped fields become
//! its person and organization.

use crate::api::{ContactEntry, Entity, PersonInput, PipedriveClient};
use crate::deals::{self, DealDraft, DealOwner};
use crate::fields::FieldBook;
use crate::options::{reads_subscription, SubscriptionsTo, UniqueId, PERSON_FIELDS};
use crate::persons::{self, PersonWrite};
use crate::sync_rules::{sync_rules, SyncRules};
use crate::{organizations, PIPEDRIVE};
use async_nats::jetstream::kv;
use billsync_config::{Config, PipedriveConnection};
use billsync_events::{BillingEventV1, DestinationKind, SourceKind};
use billsync_worker::{Delivered, DeliveryError, Destination, Pass, Pause, RecordStore};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct PipedriveDestination {
    name: String,
    requests_per_2s: u32,
    pub(crate) client: PipedriveClient,
    pub(crate) fields: FieldBook,
    pub(crate) records: RecordStore,
    syncs: HashMap<String, SyncRules>,
    pause: Pause,
}

impl PipedriveDestination {
    /// The destination of `connection`: links in `links`, the burst limiter in `rate_limits`
    /// and the daily token ledger in `budgets`, each shared by every replica.
    pub fn new(
        config: &Config,
        connection: &PipedriveConnection,
        links: kv::Store,
        rate_limits: kv::Store,
        budgets: kv::Store,
        timeout: Duration,
    ) -> Result<Self, billsync_config::ConfigError> {
        let syncs = sync_rules(config, &connection.name)?;
        let client = PipedriveClient::from_config(connection, budgets, timeout)
            .with_shared_limiters(rate_limits, &connection.name, connection.requests_per_2s);
        Ok(Self {
            name: connection.name.clone(),
            requests_per_2s: connection.requests_per_2s,
            client,
            fields: FieldBook::default(),
            records: RecordStore::new(links, DestinationKind::Pipedrive, &connection.name),
            syncs,
            pause: Pause::new(
                "pipedrive",
                "tokens",
                &connection.name,
                CancellationToken::new(),
            ),
        })
    }

    /// Events waiting for a paused connection go back to JetStream when `shutdown` fires.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.pause = Pause::new("pipedrive", "tokens", &self.name, shutdown);
        self
    }

    /// Writes the customer `customer_id` of `source` from its mapped `fields`: the
    /// organization (when the sync writes them), then the person; returns their ids.
    pub(crate) async fn write_customer(
        &self,
        rules: &SyncRules,
        source: &str,
        customer_id: &str,
        fields: &BTreeMap<String, Value>,
        pass: Pass,
    ) -> Result<(u64, Option<u64>), DeliveryError> {
        let text = |field: &str| {
            fields
                .get(field)
                .and_then(|v| match v {
                    Value::String(s) => Some(s.trim().to_string()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .filter(|s| !s.is_empty())
        };
        let to = rules.options.subscriptions_to;
        let mut person_custom = BTreeMap::new();
        let mut org_custom = BTreeMap::new();
        for (field, value) in fields {
            if PERSON_FIELDS.contains(&field.as_str()) {
                continue;
            }
            if !reads_subscription(&rules.mapping, field) || to == SubscriptionsTo::Person {
                person_custom.insert(field.clone(), value.clone());
            } else if to == SubscriptionsTo::Organization {
                org_custom.insert(field.clone(), value.clone());
            }
        }
        let company = text("organization").filter(|_| rules.options.organizations);
        let customer = format!("{source}/{customer_id}");
        organizations::remember_company(&self.records, &customer, company.as_deref()).await?;
        let org_id = match company {
            Some(name) => {
                let custom = self
                    .fields
                    .custom_fields(&self.client, Entity::Organization, &org_custom)
                    .await?;
                Some(organizations::write(&self.client, &self.records, &name, custom, pass).await?)
            }
            None => None,
        };
        let name = text("name")
            .or_else(|| {
                let full = [text("first_name"), text("last_name")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ");
                (!full.is_empty()).then_some(full)
            })
            .or_else(|| text("email"))
            .or_else(|| text("organization"))
            .unwrap_or_else(|| customer_id.to_string());
        let input = PersonInput {
            name: Some(name),
            emails: text("email").map(|e| vec![ContactEntry::primary(e)]),
            phones: text("phone").map(|p| vec![ContactEntry::primary(p)]),
            org_id,
            owner_id: None,
            custom_fields: self
                .fields
                .custom_fields(&self.client, Entity::Person, &person_custom)
                .await?,
        };
        let unique_value = text(rules.options.unique_id.field());
        let unique_key = match &rules.options.unique_id {
            UniqueId::Email => None,
            UniqueId::Field(name) => {
                self.fields
                    .key_of(&self.client, Entity::Person, name)
                    .await?
            }
        };
        let person_id = persons::write(
            &self.client,
            &self.records,
            PersonWrite {
                customer: &customer,
                unique_id: &rules.options.unique_id,
                unique_value: unique_value.as_deref(),
                unique_key,
                input,
                pass,
            },
        )
        .await?;
        Ok((person_id, org_id))
    }
}

impl PipedriveDestination {
    /// The organization of `customer` (`{source connection}/{customer id}`) as its last
    /// write left it, for events that carry no customer.
    pub(crate) async fn organization_of(
        &self,
        customer: &str,
        pass: Pass,
    ) -> Result<Option<u64>, DeliveryError> {
        organizations::of_customer(&self.client, &self.records, customer, pass).await
    }

    /// Writes `deal` for the billing record `event` is about, owned by `person_id` and
    /// `org_id`.
    pub(crate) async fn write_deal(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        deal: DealDraft,
        (person_id, org_id): (Option<u64>, Option<u64>),
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let owner = DealOwner {
            record: format!("{}/{}/{}", event.connection, event.object, event.object_id),
            person_id,
            org_id,
        };
        let id = deals::write(
            &self.client,
            &self.records,
            deal,
            owner,
            (&rules.options, pass),
        )
        .await?;
        Ok(Delivered::Written {
            crm_id: Some(id.to_string()),
        })
    }
}

impl Destination for PipedriveDestination {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Pipedrive
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
        self.pause.wait().await?;
        let delivered = match rules.source {
            SourceKind::Stripe => self.apply_stripe(rules, event, pass).await,
            SourceKind::Chargebee => self.apply_chargebee(rules, event, pass).await,
        };
        self.pause.observe(&delivered);
        delivered
    }

    /// About what Pipedrive's burst window serves in a second: an event costs one to three
    /// calls once its records are linked.
    fn concurrency(&self) -> usize {
        (self.requests_per_2s / 2).max(1) as usize
    }

    fn paused(&self) -> Option<String> {
        self.pause.reason()
    }

    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        self.client.pipelines().await.map(|_| ())
    }
}

impl std::fmt::Debug for PipedriveDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(PIPEDRIVE)
            .field("connection", &self.name)
            .finish()
    }
}
