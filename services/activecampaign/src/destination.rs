//! One ActiveCampaign connection as a billsync destination.

use crate::api::types::ContactInput;
use crate::api::ActiveCampaignClient;
use crate::error::StartError;
use crate::stripe;
use async_nats::jetstream::kv;
use billsync_bus::Topology;
use billsync_config::{ActiveCampaignConnection, Config, ConnectionKind};
use billsync_events::{BillingEventV1, DestinationKind, FailureClass, SourceKind};
use billsync_mapping::Mapping;
use billsync_worker::{Delivered, DeliveryError, Destination};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub struct ActiveCampaignDestination {
    name: String,
    client: ActiveCampaignClient,
    /// Source customer → ActiveCampaign contact, for events that carry no customer data.
    links: kv::Store,
    /// Contact mapping per source connection feeding this destination.
    mappings: HashMap<String, Mapping>,
    /// Set when ActiveCampaign refuses the token; readiness reports it.
    credentials_refused: AtomicBool,
}

/// What billsync remembers about a synced customer.
#[derive(Debug, Serialize, Deserialize)]
struct ContactLink {
    contact_id: String,
    email: String,
}

impl ActiveCampaignDestination {
    pub fn new(
        config: &Config,
        connection: &ActiveCampaignConnection,
        links: kv::Store,
        timeout: Duration,
    ) -> Result<Self, StartError> {
        let file = config.origin.display().to_string();
        let mut mappings = HashMap::new();
        for (sync_index, sync) in config.syncs.iter().enumerate() {
            if sync.destination != connection.name {
                continue;
            }
            let key = format!("syncs[{sync_index}]");
            let source = config.connection_kind(&sync.source);
            if source != Some(ConnectionKind::Source(SourceKind::Stripe)) {
                return Err(StartError::Mapping {
                    file,
                    key: format!("{key}.source"),
                    reason: format!(
                        "{:?} → ActiveCampaign: only Stripe sources feed ActiveCampaign in this version",
                        sync.source
                    ),
                });
            }
            mappings.insert(sync.source.clone(), contact_mapping(&file, &key, sync)?);
        }
        Ok(Self {
            name: connection.name.clone(),
            client: ActiveCampaignClient::new(
                &connection.base_url,
                connection.api_token.expose(),
                connection.requests_per_second,
                timeout,
            ),
            links,
            mappings,
            credentials_refused: AtomicBool::new(false),
        })
    }

    /// Not ready once ActiveCampaign has refused the credentials: an operator must act.
    pub fn ready(&self) -> Result<(), String> {
        if self.credentials_refused.load(Ordering::Relaxed) {
            Err(format!(
                "ActiveCampaign refused the API token of connection {}",
                self.name
            ))
        } else {
            Ok(())
        }
    }

    fn link_key(&self, event: &BillingEventV1, customer: &str) -> String {
        let record = format!("{}/{}/customer/{customer}", event.source, event.connection);
        Topology::record_kv_key(DestinationKind::Activecampaign, &self.name, &record)
    }

    async fn apply_stripe(&self, event: &BillingEventV1) -> Result<Delivered, DeliveryError> {
        let mapping = self.mappings.get(&event.connection).ok_or_else(|| {
            DeliveryError::permanent(
                FailureClass::Configuration,
                format!(
                    "no sync from {} to {} is configured",
                    event.connection, self.name
                ),
            )
        })?;
        let fields = stripe::customer_view(event)
            .map(|view| mapping.apply(&view))
            .unwrap_or_default();
        let text = |name: &str| fields.get(name).and_then(|v| v.as_str());

        let contact_id = match text("email") {
            Some(email) => {
                let contact = self
                    .client
                    .sync_contact(ContactInput {
                        email,
                        first_name: text("firstName"),
                        last_name: text("lastName"),
                        phone: text("phone"),
                    })
                    .await?;
                if let Some(customer) = &event.customer_id {
                    self.remember(event, customer, &contact.id, &contact.email)
                        .await?;
                }
                contact.id
            }
            None => self.linked_contact(event).await?,
        };

        for tag in stripe::tags_for(event) {
            let tag_id = self.client.ensure_tag(&tag).await?;
            self.client.tag_contact(&contact_id, &tag_id).await?;
        }
        Ok(Delivered::Written {
            crm_id: Some(contact_id),
        })
    }

    async fn remember(
        &self,
        event: &BillingEventV1,
        customer: &str,
        contact_id: &str,
        email: &str,
    ) -> Result<(), DeliveryError> {
        let link = ContactLink {
            contact_id: contact_id.to_string(),
            email: email.to_string(),
        };
        let bytes = serde_json::to_vec(&link).expect("a link always encodes");
        self.links
            .put(self.link_key(event, customer), bytes.into())
            .await
            .map_err(|e| DeliveryError::Retryable {
                message: format!("storing the customer → contact link failed: {e}"),
                retry_after: None,
                http_status: None,
            })?;
        Ok(())
    }

    /// The contact of an event without customer data, from an earlier event's link.
    async fn linked_contact(&self, event: &BillingEventV1) -> Result<String, DeliveryError> {
        let missing = |what: &str| {
            DeliveryError::permanent(
                FailureClass::InvalidEvent,
                format!(
                    "Stripe {} {} {what}; ActiveCampaign identifies contacts by email. Give the \
                     customer an email in Stripe (or map another field to email), then retry",
                    event.object, event.object_id
                ),
            )
        };
        let customer = event
            .customer_id
            .as_deref()
            .ok_or_else(|| missing("has no customer"))?;
        let stored = self
            .links
            .get(self.link_key(event, customer))
            .await
            .map_err(|e| DeliveryError::Retryable {
                message: format!("reading the customer → contact link failed: {e}"),
                retry_after: None,
                http_status: None,
            })?;
        let link: ContactLink = stored
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| {
                missing(&format!(
                    "carries no email and customer {customer} has not been synced yet"
                ))
            })?;
        Ok(link.contact_id)
    }
}

impl Destination for ActiveCampaignDestination {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Activecampaign
    }

    fn connection(&self) -> &str {
        &self.name
    }

    async fn deliver(&self, event: &BillingEventV1) -> Result<Delivered, DeliveryError> {
        let result = match event.source {
            SourceKind::Stripe => self.apply_stripe(event).await,
            SourceKind::Chargebee => Err(DeliveryError::permanent(
                FailureClass::Configuration,
                "Chargebee → ActiveCampaign is not supported in this version",
            )),
        };
        if let Err(DeliveryError::Permanent {
            class: FailureClass::Configuration,
            http_status: Some(_),
            ..
        }) = &result
        {
            self.credentials_refused.store(true, Ordering::Relaxed);
        } else if result.is_ok() {
            self.credentials_refused.store(false, Ordering::Relaxed);
        }
        result
    }

    async fn healthcheck(&self) -> Result<(), String> {
        self.client.check().await.map_err(|e| e.to_string())
    }
}

/// The seed's default mapping with the sync's overrides; only standard contact fields may
/// be targeted (custom fields must exist in ActiveCampaign, which is checked elsewhere).
fn contact_mapping(
    file: &str,
    key: &str,
    sync: &billsync_config::SyncConfig,
) -> Result<Mapping, StartError> {
    let mut overrides = Vec::new();
    for (field, value) in &sync.mapping {
        let err = |reason: String| StartError::Mapping {
            file: file.to_string(),
            key: format!("{key}.mapping.{field}"),
            reason,
        };
        if !stripe::CONTACT_FIELDS.contains(&field.as_str()) {
            return Err(err(format!(
                "ActiveCampaign contact field {field:?} is not supported; use one of {}",
                stripe::CONTACT_FIELDS.join(", ")
            )));
        }
        let expression = value.as_str().ok_or_else(|| {
            err("must be a string expression such as \"name | first_word\"".into())
        })?;
        overrides.push((field.as_str(), expression));
    }
    let overrides = Mapping::parse(overrides).map_err(|e| StartError::Mapping {
        file: file.to_string(),
        key: format!("{key}.mapping.{}", e.field.clone().unwrap_or_default()),
        reason: e.message,
    })?;
    let mapping = stripe::default_contact_mapping().with_overrides(&overrides);
    if !mapping.fields().any(|f| f == "email") {
        return Err(StartError::Mapping {
            file: file.to_string(),
            key: format!("{key}.mapping.email"),
            reason: "the email mapping is required".into(),
        });
    }
    Ok(mapping)
}
