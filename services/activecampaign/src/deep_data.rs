//! Stripe deep data in ActiveCampaign (seed 001's e-commerce columns): the order an event
//! records (`stripe_orders` decides which), written through `ecommerce`.

use crate::destination::ActiveCampaignDestination;
use crate::ecommerce::{EcomCustomerRef, OrderWrite};
use crate::stripe_orders::{self, DeepData};
use crate::sync_rules::SyncRules;
use billsync_events::{BillingEventV1, ObjectKind};
use billsync_worker::{DeliveryError, Pass};

impl ActiveCampaignDestination {
    /// The e-commerce side of a Stripe event (see `stripe_orders` for which object records
    /// which order): customer events keep the e-commerce customer current, payments and
    /// subscriptions write their order, refunds of invoice payments lower the invoice's.
    pub(crate) async fn apply_deep_data(
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
}
