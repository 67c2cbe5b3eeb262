//! Stripe as a source: webhook signatures, event translation, the webhook endpoint, the
//! list-API client and historical backfills.

pub mod backfill;
pub mod client;
pub mod event;
pub mod resource;
pub mod signature;
pub mod webhook;

pub use resource::StripeResource;

use billsync_config::{Config, StripeConnection};
use billsync_events::ObjectKind;
use signature::StripeSignatureVerifier;

/// One configured Stripe connection as the webhook endpoint needs it.
pub struct StripeEndpoint {
    pub name: String,
    pub verifier: StripeSignatureVerifier,
    /// The objects whose events some sync of this connection takes (seed 001: "choose a
    /// Resource"); events about other objects are answered 2xx and not published, like
    /// event types outside the seed's table. `None` when no sync reads the connection yet:
    /// everything is kept, for a sync added later to replay.
    pub resources: Option<Vec<ObjectKind>>,
    /// False when the connection is unlinked (`enabled = false` on it, or on every sync of
    /// it): its webhooks are answered 2xx and dropped.
    pub linked: bool,
}

impl StripeEndpoint {
    pub fn from_config(config: &Config, connection: &StripeConnection) -> Self {
        let secrets = connection
            .webhook_secrets
            .iter()
            .map(|s| s.expose().as_bytes().to_vec());
        let resources = resource::synced_resources(config, &connection.name)
            .map(|rs| rs.into_iter().map(StripeResource::object_kind).collect());
        Self {
            name: connection.name.clone(),
            verifier: StripeSignatureVerifier::new(
                secrets.collect(),
                connection.signature_tolerance_secs,
            ),
            resources,
            linked: config.source_linked(&connection.name),
        }
    }

    /// True when events about `object` feed a sync of this connection.
    pub fn takes(&self, object: ObjectKind) -> bool {
        self.resources
            .as_ref()
            .is_none_or(|resources| resources.contains(&object))
    }
}
