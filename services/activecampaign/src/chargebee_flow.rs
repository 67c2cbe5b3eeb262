//! Chargebee → ActiveCampaign (seed 000): the customer's contact written from the newest
//! copy of the customer and the subscription shown, its custom fields created when missing.

use crate::contacts::{CustomerRef, MissingFields, UpsertRules};
use crate::destination::ActiveCampaignDestination;
use crate::sync_rules::SyncRules;
use billsync_events::BillingEventV1;
use billsync_sources as sources;
use billsync_sources::chargebee::CustomerSubscriptions;
use billsync_worker::{Delivered, DeliveryError, Pass};

impl ActiveCampaignDestination {
    pub(crate) async fn apply_chargebee(
        &self,
        rules: &SyncRules,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        if sources::chargebee::is_gift_event(event) && !rules.options.sync_gift_purchasers {
            return Ok(Delivered::NotApplicable {
                reason: "gift purchasers are not synced (options.sync_gift_purchasers = false)"
                    .into(),
            });
        }
        let (Some(customer_id), Some(customer)) = (
            event.customer_id.as_deref(),
            sources::chargebee::customer_of(event),
        ) else {
            return Ok(Delivered::NotApplicable {
                reason: format!(
                    "{} events carry no customer for ActiveCampaign",
                    event.event_type
                ),
            });
        };
        self.contacts.ensure_fields(rules.mapping.fields()).await?;
        let reference = CustomerRef::of(event, customer_id);
        let subscriptions =
            CustomerSubscriptions::observe(&self.records, event, customer_id, customer).await?;
        // The newest copy of the customer, not necessarily this event's.
        let customer = subscriptions.customer().unwrap_or(customer);
        if sources::chargebee::is_deletion(event) {
            return self
                .delete_chargebee_customer(rules, event, &reference, customer, &subscriptions, pass)
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
        let fields = subscriptions.fields(&rules.mapping, customer);
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
                    tags: &[],
                },
            )
            .await?
            .contact_id;
        Ok(Delivered::Written {
            crm_id: Some(contact_id),
        })
    }
}
