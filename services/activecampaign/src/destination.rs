//! One ActiveCampaign connection as a billsync destination.

use crate::api::{ActiveCampaignClient, EventTracker};
use crate::chargebee::{self, CustomerSubscriptions, OnCustomerDeleted};
use crate::contacts::{ContactBook, CustomerRef, MissingFields, UpsertRules};
use crate::ecommerce::{EcomBook, EcomCustomerRef, OrderWrite};
use crate::error::StartError;
use crate::options::SyncOptions;
use crate::stripe;
use crate::stripe_orders::{self, DeepData, OrderSources};
use async_nats::jetstream::kv;
use billsync_config::{ActiveCampaignConnection, Config, ConnectionKind, SyncConfig};
use billsync_events::{BillingEventV1, DestinationKind, FailureClass, ObjectKind, SourceKind};
use billsync_mapping::Mapping;
use billsync_worker::{Delivered, DeliveryError, Destination, Pass, RecordStore};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

pub struct ActiveCampaignDestination {
    name: String,
    contacts: ContactBook,
    /// Deep data: e-commerce connections, customers and orders.
    ecommerce: EcomBook,
    /// What billsync remembers of this connection's records (Chargebee subscriptions here).
    records: RecordStore,
    /// How each source connection feeding this destination is applied.
    syncs: HashMap<String, SyncRules>,
}

struct SyncRules {
    source: SourceKind,
    mapping: Mapping,
    options: SyncOptions,
    /// Which Stripe objects may record a purchase (the sync's `resources`).
    orders: OrderSources,
    /// Set when the sync tracks events (`track_events = true`).
    tracker: Option<EventTracker>,
}

/// The rules of every sync into `connection`: options, mapping and event tracking, each
/// checked against the configuration (an error names the file, key and what to fix).
fn sync_rules(
    config: &Config,
    connection: &ActiveCampaignConnection,
    timeout: Duration,
) -> Result<HashMap<String, SyncRules>, StartError> {
    let file = config.origin.display().to_string();
    let mut syncs = HashMap::new();
    for (index, sync) in config.syncs.iter().enumerate() {
        if sync.destination != connection.name {
            continue;
        }
        let key = format!("syncs[{index}]");
        let source = match config.connection_kind(&sync.source) {
            Some(ConnectionKind::Source(kind)) => kind,
            _ => unreachable!("Config::load checked that every sync names a source"),
        };
        let options = SyncOptions::parse(&file, &key, sync)?;
        let tracker = match (&options.tracking, source) {
            (None, _) => None,
            (Some(_), SourceKind::Chargebee) => {
                return Err(StartError::Mapping {
                    file: file.clone(),
                    key: format!("{key}.options.track_events"),
                    reason: "event tracking is for Stripe syncs (seed 001's \"Stripe event \
                             received\" trigger)"
                        .into(),
                })
            }
            (Some(tracking), SourceKind::Stripe) => {
                let index = config
                    .destinations
                    .activecampaign
                    .iter()
                    .position(|c| c.name == connection.name)
                    .unwrap_or_default();
                let Some(event_key) = event_key(connection) else {
                    return Err(StartError::Mapping {
                        file: file.clone(),
                        key: format!("destinations.activecampaign[{index}].event_key"),
                        reason: format!(
                            "{key}.options.track_events = true needs the account's Event Key \
                             (Settings > Tracking > Event Tracking) as a secret, \
                             {{ env = \"NAME\" }} or {{ file = \"/path\" }}"
                        ),
                    });
                };
                Some(
                    EventTracker::new(&tracking.url, &tracking.actid, event_key, timeout)
                        .for_connection(&connection.name)
                        .configured_in(format!(
                            "{key}.options.track_actid and \
                             destinations.activecampaign[{index}].event_key of {file}"
                        )),
                )
            }
        };
        let rules = SyncRules {
            source,
            mapping: mapping_for(&file, &key, source, sync)?,
            options,
            orders: OrderSources::from_resources(&sync.resources),
            tracker,
        };
        syncs.insert(sync.source.clone(), rules);
    }
    Ok(syncs)
}

/// Checks the `[syncs.options]` and `[syncs.mapping]` of every sync into ActiveCampaign, as
/// the worker does at start, without connecting anywhere (`billsync check-config`).
pub fn check_syncs(config: &Config) -> Result<(), StartError> {
    for connection in &config.destinations.activecampaign {
        sync_rules(config, connection, Duration::from_secs(30))?;
    }
    Ok(())
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
            contacts: ContactBook::new(client, records.clone()),
            ecommerce: EcomBook::new(records.clone()),
            records,
            syncs,
        })
    }

    async fn apply_stripe(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let client = &self.contacts.client;
        let mut fields = stripe::customer_view(event)
            .map(|view| rules.mapping.apply(&view))
            .unwrap_or_default();
        if let (false, Some(customer), true) = (
            event.object == ObjectKind::Customer,
            &event.customer_id,
            fields.contains_key("email"),
        ) {
            // An invoice keeps the customer_email it was finalized with and a charge the
            // card's billing email, so a later payment can carry an email the customer has
            // since changed. Once the customer is known, its contact's email (set by its
            // customer events) identifies it; a copy that disagrees is an old copy, and
            // none of it is written (nor does it count as newer data: a customer.updated
            // that Stripe delivers after it still applies). The event goes to the contact.
            let copy = fields.get("email").and_then(Value::as_str);
            if let Some(link) = self
                .contacts
                .link(&CustomerRef::of(event, customer))
                .await?
            {
                if !copy.is_some_and(|copy| copy.eq_ignore_ascii_case(&link.email)) {
                    fields.clear();
                }
            }
        }
        let mapped_email = fields
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned);
        // A guest checkout or charge without a customer: the email is all there is.
        let guest = format!("guest-{}", event.object_id);
        let owner = match (&event.customer_id, &mapped_email) {
            (Some(customer), _) => Some(CustomerRef::of(event, customer)),
            (None, Some(_)) => Some(CustomerRef {
                source: "stripe",
                connection: &event.connection,
                customer_id: &guest,
            }),
            (None, None) => None,
        };
        let (contact_id, email) = match (&owner, mapped_email) {
            (Some(owner), Some(email)) => {
                let contact = self
                    .contacts
                    .upsert(
                        owner,
                        &fields,
                        UpsertRules {
                            missing: MissingFields::Refuse,
                            list_id: rules.options.list_id.as_deref(),
                            exclusive_email: false,
                            pass,
                            version: Some(&event.version),
                            own_data: event.object == ObjectKind::Customer,
                        },
                    )
                    .await?;
                (contact, email)
            }
            _ => {
                self.linked_contact(event, event.customer_id.as_deref())
                    .await?
            }
        };
        // Tags already put on this contact cost no call (a replay puts them on again); a
        // contact recreated after a delete has a new id and gets its tags again.
        let mut applied = self.contacts.applied_tags(&contact_id).await?;
        if pass == Pass::Replay {
            applied.retain(|tag| !stripe::tags_for(event).contains(tag));
        }
        let before = applied.len();
        for tag in stripe::tags_for(event) {
            if applied.contains(&tag) {
                continue;
            }
            let tag_id = client.ensure_tag(&tag).await?;
            if let Err(error) = client.tag_contact(&contact_id, &tag_id).await {
                if let (
                    DeliveryError::Retryable {
                        http_status: Some(404),
                        ..
                    },
                    Some(owner),
                ) = (&error, &owner)
                {
                    // The tag or the contact is gone from ActiveCampaign: the retry writes
                    // the contact again rather than trusting that it is unchanged.
                    self.contacts.resync(owner).await?;
                }
                return Err(error);
            }
            applied.push(tag);
        }
        if applied.len() != before {
            self.contacts
                .save_applied_tags(&contact_id, &applied)
                .await?;
        }
        if rules.options.deep_data && stripe_orders::customer_is_live(event) {
            self.apply_deep_data(rules, event, &email, pass).await?;
        }
        if let (Some(tracker), Some(tracking)) = (&rules.tracker, &rules.options.tracking) {
            if self.ecommerce.needs_tracking(event).await? {
                tracker
                    .track(&tracking.name, &event.event_type, &email)
                    .await?;
                self.ecommerce.mark_tracked(event).await?;
            }
        }
        Ok(Delivered::Written {
            crm_id: Some(contact_id),
        })
    }

    /// The e-commerce side of a Stripe event (see `stripe_orders` for which object records
    /// which order): customer events keep the e-commerce customer current, payments and
    /// subscriptions write their order, refunds of invoice payments lower the invoice's.
    async fn apply_deep_data(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        email: &str,
        pass: Pass,
    ) -> Result<(), DeliveryError> {
        let guest = email.trim().to_lowercase();
        let customer = EcomCustomerRef {
            source_connection: &event.connection,
            externalid: event.customer_id.as_deref().unwrap_or(&guest),
            email,
            accepts_marketing: None,
        };
        match self.write_deep_data(rules, event, customer, pass).await {
            Ok(()) => Ok(()),
            Err(error) => Err(self.ecommerce.after_refusal(error, &customer).await),
        }
    }

    async fn write_deep_data(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        customer: EcomCustomerRef<'_>,
        pass: Pass,
    ) -> Result<(), DeliveryError> {
        let client = &self.contacts.client;
        let outcome = match stripe_orders::plan(event, rules.orders) {
            DeepData::Nothing(reason) => {
                if event.object == ObjectKind::Customer && event.customer_id.is_some() {
                    let connection = self
                        .ecommerce
                        .connection_id(client, &event.connection)
                        .await?;
                    self.ecommerce
                        .customer_id(client, &connection, &customer)
                        .await?;
                }
                tracing::debug!(%reason, "No order to write for this event.");
                return Ok(());
            }
            DeepData::Refund { order, refunded } => {
                self.ecommerce
                    .record_refund(client, event, &order, refunded)
                    .await?
            }
            DeepData::Order(planned) => {
                let connection = self
                    .ecommerce
                    .connection_id(client, &event.connection)
                    .await?;
                let customer_id = self
                    .ecommerce
                    .customer_id(
                        client,
                        &connection,
                        &EcomCustomerRef {
                            accepts_marketing: planned.accepts_marketing,
                            ..customer
                        },
                    )
                    .await?;
                self.ecommerce
                    .write_order(
                        client,
                        event,
                        &planned,
                        (&connection, &customer_id, customer.email),
                        pass,
                    )
                    .await?
            }
        };
        let label = match outcome {
            OrderWrite::Written(_) => "written",
            OrderWrite::Unchanged(_) => "unchanged",
            OrderWrite::Stale => "stale",
            OrderWrite::Deferred => "deferred",
        };
        metrics::counter!("billsync_activecampaign_orders_total", "outcome" => label).increment(1);
        Ok(())
    }

    /// The contact (id and email) of an event without customer data, from an earlier
    /// event's link.
    async fn linked_contact(
        &self,
        event: &BillingEventV1,
        customer: Option<&str>,
    ) -> Result<(String, String), DeliveryError> {
        let missing = |what: String| {
            DeliveryError::permanent(
                FailureClass::InvalidEvent,
                format!(
                    "Stripe {} {} {what}; ActiveCampaign identifies contacts by email. Give the \
                     customer an email in Stripe (or map another field to email), then retry",
                    event.object, event.object_id
                ),
            )
        };
        let customer = customer.ok_or_else(|| missing("has no customer and no email".into()))?;
        let link = self
            .contacts
            .link(&CustomerRef::of(event, customer))
            .await?;
        link.map(|l| (l.contact_id, l.email)).ok_or_else(|| {
            missing(format!(
                "carries no email and customer {customer} has not been synced yet"
            ))
        })
    }

    async fn apply_chargebee(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        if chargebee::is_gift_event(event) && !rules.options.sync_gift_purchasers {
            return Ok(Delivered::NotApplicable {
                reason: "gift purchasers are not synced (options.sync_gift_purchasers = false)"
                    .into(),
            });
        }
        let (Some(customer_id), Some(customer)) =
            (event.customer_id.as_deref(), chargebee::customer_of(event))
        else {
            return Ok(Delivered::NotApplicable {
                reason: format!(
                    "{} events carry no customer for ActiveCampaign",
                    event.event_type
                ),
            });
        };
        self.contacts.ensure_fields(rules.mapping.fields()).await?;
        let reference = CustomerRef::of(event, customer_id);
        let subscriptions = self.subscriptions(event, customer_id, customer).await?;
        // The newest copy of the customer, not necessarily this event's.
        let customer = subscriptions.customer().unwrap_or(customer);
        if chargebee::is_deletion(event) {
            return self
                .delete_chargebee_customer(rules, &reference, customer, &subscriptions, pass)
                .await;
        }
        if subscriptions.customer_deleted() {
            // A late event of a deleted customer must not undo what the deletion did (bring a
            // deleted contact back, or set the status field to active again).
            return Ok(Delivered::NotApplicable {
                reason: format!(
                    "Chargebee customer {customer_id} was deleted; its contact stays as \
                     options.on_customer_deleted left it"
                ),
            });
        }
        let fields = rules
            .mapping
            .apply(&chargebee::view(customer, subscriptions.chosen()));
        let contact_id = self
            .contacts
            .upsert(
                &reference,
                &fields,
                UpsertRules {
                    missing: MissingFields::Create,
                    list_id: rules.options.list_id.as_deref(),
                    exclusive_email: true,
                    pass,
                    version: None,
                    own_data: true,
                },
            )
            .await?;
        Ok(Delivered::Written {
            crm_id: Some(contact_id),
        })
    }

    /// The customer and its subscriptions as billsync has seen them, updated with this
    /// event's copies (where they are newer).
    async fn subscriptions(
        &self,
        event: &BillingEventV1,
        customer_id: &str,
        customer: &Value,
    ) -> Result<CustomerSubscriptions, DeliveryError> {
        let record = format!("chargebee/{}/subscriptions/{customer_id}", event.connection);
        let stored: Option<CustomerSubscriptions> = self.records.get(&record).await?;
        let mut seen = stored.clone().unwrap_or_default();
        seen.record_customer(customer, chargebee::is_deletion(event));
        if event.object == ObjectKind::Subscription {
            seen.record(&event.data, event.event_type == "subscription_deleted");
        }
        if stored.as_ref() != Some(&seen) {
            self.records.put(&record, &seen).await?;
        }
        Ok(seen)
    }

    async fn delete_chargebee_customer(
        &self,
        rules: &SyncRules,
        reference: &CustomerRef<'_>,
        customer: &Value,
        subscriptions: &CustomerSubscriptions,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let link = self.contacts.link(reference).await?;
        let email = customer
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or(link.as_ref().map(|l| l.email.clone()));
        if let Some(email) = &email {
            if let Some(other) = self
                .contacts
                .email_held_by_another(reference, email)
                .await?
            {
                // Someone signed up again with this email as a new Chargebee customer (this
                // is a replay of the deletion): the contact is theirs now.
                return Ok(Delivered::NotApplicable {
                    reason: format!(
                        "the email {email} belongs to Chargebee customer {other} now; its \
                         contact is left to it"
                    ),
                });
            }
        }
        match rules.options.on_customer_deleted {
            OnCustomerDeleted::Delete => {
                let contact = match &link {
                    Some(link) => Some(link.contact_id.clone()),
                    None => match &email {
                        Some(email) => self
                            .contacts
                            .client
                            .find_contact(email)
                            .await?
                            .map(|c| c.id),
                        None => None,
                    },
                };
                if let Some(contact) = &contact {
                    self.contacts.client.delete_contact(contact).await?;
                }
                self.contacts.forget(reference, email.as_deref()).await?;
                Ok(Delivered::Written { crm_id: contact })
            }
            OnCustomerDeleted::Keep | OnCustomerDeleted::Unsubscribe => {
                // The status field says "deleted"; the contact stays, with every field as the
                // customer's newest data says.
                let mut deleted = customer.clone();
                if let Some(object) = deleted.as_object_mut() {
                    object.insert("deleted".into(), Value::Bool(true));
                    if let Some(email) = &email {
                        object
                            .entry("email")
                            .or_insert(Value::String(email.clone()));
                    }
                }
                let fields = rules
                    .mapping
                    .apply(&chargebee::view(&deleted, subscriptions.chosen()));
                let contact = self
                    .contacts
                    .upsert(
                        reference,
                        &fields,
                        UpsertRules {
                            missing: MissingFields::Create,
                            list_id: None,
                            exclusive_email: true,
                            pass,
                            version: None,
                            own_data: true,
                        },
                    )
                    .await?;
                if rules.options.on_customer_deleted == OnCustomerDeleted::Unsubscribe {
                    if let Some(list) = &rules.options.list_id {
                        self.contacts
                            .client
                            .set_list_status(list, &contact, 2)
                            .await?;
                    }
                }
                // The email is free for a customer who signs up with it again (that one's
                // events then write this contact); this customer's own events no longer do.
                if let Some(email) = &email {
                    self.contacts.release_email(reference, email).await?;
                }
                Ok(Delivered::Written {
                    crm_id: Some(contact),
                })
            }
        }
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
            return Err(DeliveryError::permanent(
                FailureClass::Configuration,
                format!(
                    "no sync from {} to {} is configured",
                    event.connection, self.name
                ),
            ));
        };
        match rules.source {
            SourceKind::Stripe => self.apply_stripe(rules, event, pass).await,
            SourceKind::Chargebee => self.apply_chargebee(rules, event, pass).await,
        }
    }

    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        self.contacts.client.check().await
    }
}

/// The seed's default mapping for the source, with the sync's overrides and extra fields
/// (`field = "expression"`, or `field = false` to drop a default).
fn mapping_for(
    file: &str,
    key: &str,
    source: SourceKind,
    sync: &SyncConfig,
) -> Result<Mapping, StartError> {
    let defaults = match source {
        SourceKind::Stripe => stripe::default_contact_mapping(),
        SourceKind::Chargebee => chargebee::default_mapping(),
    };
    let mut overrides = Vec::new();
    let mut dropped = Vec::new();
    for (field, value) in &sync.mapping {
        let err = |reason: String| StartError::Mapping {
            file: file.to_string(),
            key: format!("{key}.mapping.{field}"),
            reason,
        };
        match value {
            toml::Value::String(expression) => overrides.push((field.as_str(), expression.as_str())),
            toml::Value::Boolean(false) => dropped.push(field.as_str()),
            _ => return Err(err("must be a string expression such as \"name | first_word\", or false to drop a default mapping".into())),
        }
    }
    let overrides = Mapping::parse(overrides).map_err(|e| StartError::Mapping {
        file: file.to_string(),
        key: format!("{key}.mapping.{}", e.field.clone().unwrap_or_default()),
        reason: e.message,
    })?;
    let known_roots: &[&str] = match source {
        SourceKind::Stripe => &[
            "id",
            "email",
            "name",
            "phone",
            "description",
            "address",
            "metadata",
            "currency",
            "created",
            "shipping",
            "preferred_locales",
            "tax_exempt",
            "balance",
            "delinquent",
            "invoice_prefix",
        ],
        SourceKind::Chargebee => &["customer", "subscription"],
    };
    for (field, path) in overrides.source_paths() {
        let root = path.split('.').next().unwrap_or(path);
        if !known_roots.contains(&root) {
            return Err(StartError::Mapping {
                file: file.to_string(),
                key: format!("{key}.mapping.{field}"),
                reason: format!(
                    "{path:?} is not a field billsync can read here; paths start with one of {}",
                    known_roots.join(", ")
                ),
            });
        }
    }
    let mut mapping = defaults.with_overrides(&overrides);
    for field in dropped {
        mapping = mapping.without(field);
    }
    if !mapping.fields().any(|f| f == "email") {
        return Err(StartError::Mapping {
            file: file.to_string(),
            key: format!("{key}.mapping.email"),
            reason: "the email mapping is required: ActiveCampaign identifies contacts by email"
                .into(),
        });
    }
    Ok(mapping)
}

/// The account's event tracking key (`destinations.activecampaign[].event_key`), a secret;
/// `track_events = true` without it is refused at start naming that key.
fn event_key(connection: &ActiveCampaignConnection) -> Option<&str> {
    connection.event_key.as_ref().map(|key| key.expose())
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
