//! Stripe as a source: webhook signatures, event translation, the webhook endpoint.

pub mod event;
pub mod signature;
pub mod webhook;

use billsync_config::StripeConnection;
use signature::StripeSignatureVerifier;

/// One configured Stripe connection as the webhook endpoint needs it.
pub struct StripeEndpoint {
    pub name: String,
    pub verifier: StripeSignatureVerifier,
}

impl StripeEndpoint {
    pub fn from_config(connection: &StripeConnection) -> Self {
        let secrets = connection
            .webhook_secrets
            .iter()
            .map(|s| s.expose().as_bytes().to_vec());
        Self {
            name: connection.name.clone(),
            verifier: StripeSignatureVerifier::new(
                secrets.collect(),
                connection.signature_tolerance_secs,
            ),
        }
    }
}
