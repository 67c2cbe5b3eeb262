//! Stripe → ActiveCampaign (seed 001): every event writes its customer's contact from the
//! customer view and puts the event's tags on it, then writes deep data and the tracked
//! event when the sync asks for them.

use crate::contacts::{CustomerRef, MissingFields, UpsertRules};
use crate::destination::ActiveCampaignDestination;
use crate::stripe;
use crate::sync_rules::SyncRules;
use billsync_events::{BillingEventV1, FailureClass, ObjectKind};
use billsync_sources as sources;
use billsync_worker::{Delivered, DeliveryError, Pass};
use serde_json::Value;

impl ActiveCampaignDestination {
    pub(crate) async fn apply_stripe(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let mut fields = sources::stripe::customer_view(event)
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
        let tags = stripe::tags_for(event);
        let (contact_id, email, tagged) = match (&owner, mapped_email) {
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
                            tags: &tags,
                        },
                    )
                    .await?;
                (contact.contact_id, email, contact.tagged)
            }
            _ => {
                let (contact_id, email) = self
                    .linked_contact(event, event.customer_id.as_deref())
                    .await?;
                (contact_id, email, false)
            }
        };
        if !tagged {
            self.put_event_tags(event, &contact_id, owner.as_ref(), pass)
                .await?;
        }
        // A deleted customer has no email left: its e-commerce customer is not created again.
        if rules.options.deep_data && !sources::stripe::deletes_customer(event) {
            self.apply_deep_data(rules, event, &email, pass).await?;
        }
        self.track_event(rules, event, &email).await?;
        Ok(Delivered::Written {
            crm_id: Some(contact_id),
        })
    }

    /// What a Stripe event older than its record's newest still does: its tags and its
    /// tracked event (a `customer.created` that Stripe delivered after `customer.updated`).
    pub(crate) async fn apply_stripe_effects(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        let guest = format!("guest-{}", event.object_id);
        let owner = CustomerRef {
            source: "stripe",
            connection: &event.connection,
            customer_id: event.customer_id.as_deref().unwrap_or(&guest),
        };
        let (contact_id, email) = self.linked_contact(event, Some(owner.customer_id)).await?;
        self.put_event_tags(event, &contact_id, Some(&owner), pass)
            .await?;
        self.track_event(rules, event, &email).await?;
        Ok(Delivered::Written {
            crm_id: Some(contact_id),
        })
    }

    /// Puts the event's tags on its contact. Tags already put on it cost no call (a replay
    /// puts them on again); a contact recreated after a delete has a new id and gets its
    /// tags again.
    async fn put_event_tags(
        &self,
        event: &BillingEventV1,
        contact_id: &str,
        owner: Option<&CustomerRef<'_>>,
        pass: Pass,
    ) -> Result<(), DeliveryError> {
        let client = &self.contacts.client;
        let mut applied = self.contacts.applied_tags(contact_id).await?;
        if pass == Pass::Replay {
            applied.retain(|tag| !stripe::tags_for(event).contains(tag));
        }
        let before = applied.len();
        for tag in stripe::tags_for(event) {
            if applied.contains(&tag) {
                continue;
            }
            let tag_id = client.ensure_tag(&tag).await?;
            if let Err(error) = client.tag_contact(contact_id, &tag_id).await {
                if let (
                    DeliveryError::Retryable {
                        http_status: Some(404),
                        ..
                    },
                    Some(owner),
                ) = (&error, owner)
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
                .save_applied_tags(contact_id, &applied)
                .await?;
        }
        Ok(())
    }

    /// Sends the event to event tracking when the sync tracks events, once per event.
    async fn track_event(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        email: &str,
    ) -> Result<(), DeliveryError> {
        if let (Some(tracker), Some(tracking)) = (&rules.tracker, &rules.options.tracking) {
            if self.ecommerce.needs_tracking(event).await? {
                tracker
                    .track(&tracking.name, &event.event_type, email)
                    .await?;
                self.ecommerce.mark_tracked(event).await?;
            }
        }
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
}
