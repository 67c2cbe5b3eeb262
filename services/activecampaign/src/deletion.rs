//! A Chargebee customer deleted (seed 000's `customer_deleted`): its contact is kept with the
//! status field saying so, unsubscribed, or deleted, as `options.on_customer_deleted` says.
//!
//! What a deletion event does is decided the first time it is applied, under the options
//! then in force, and recorded: a redelivery, retry or replay of it repeats that (an
//! unsubscribe replayed after the option became "delete" stays an unsubscribe, from the
//! list it was then), so changed options apply to deletions from then on.

use crate::chargebee::OnCustomerDeleted;
use crate::contacts::{CustomerRef, MissingFields, UpsertRules};
use crate::destination::ActiveCampaignDestination;
use crate::sync_rules::SyncRules;
use billsync_events::BillingEventV1;
use billsync_sources::chargebee::CustomerSubscriptions;
use billsync_worker::{Delivered, DeliveryError, Pass};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What one deletion event does to the contact: the options it was first applied under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeletionEffect {
    on_customer_deleted: OnCustomerDeleted,
    list_id: Option<String>,
}

impl ActiveCampaignDestination {
    pub(crate) async fn delete_chargebee_customer(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        reference: &CustomerRef<'_>,
        customer: &Value,
        subscriptions: &CustomerSubscriptions,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let effect = self
            .records
            .first_effect(
                &format!("chargebee/{}/{}", event.connection, event.id),
                DeletionEffect {
                    on_customer_deleted: rules.options.on_customer_deleted,
                    list_id: rules.options.list_id.clone(),
                },
            )
            .await?;
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
        match effect.on_customer_deleted {
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
                let fields = subscriptions.fields(&rules.mapping, &deleted);
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
                            tags: &[],
                        },
                    )
                    .await?
                    .contact_id;
                if effect.on_customer_deleted == OnCustomerDeleted::Unsubscribe {
                    if let Some(list) = &effect.list_id {
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
