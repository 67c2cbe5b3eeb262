//! What billsync remembers of the Pipedrive records it writes: billing record → Pipedrive id,
//! with a digest of what was last written, kept in NATS KV (`RecordStore`).
//!
//! The link is why an update of a known record costs one PATCH (5 tokens) instead of a
//! search (20) first, and why a redelivered event whose record is unchanged costs nothing.

use billsync_worker::{DeliveryError, Pass, RecordStore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Link {
    pub(crate) id: u64,
    /// What was last written through this link (see [`digest`]).
    #[serde(default)]
    pub(crate) digest: String,
}

impl Link {
    /// Whether writing `digest` again can be skipped: the same data went out last time, and
    /// the event is not an operator's replay (which repairs the CRM whatever billsync thinks).
    pub(crate) fn unchanged(&self, digest: &str, pass: Pass) -> bool {
        pass == Pass::Live && self.digest == digest
    }
}

/// A short fingerprint of a request body.
pub(crate) fn digest(body: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(body).expect("request bodies always encode");
    hex::encode(&Sha256::digest(bytes)[..12])
}

pub(crate) async fn load(records: &RecordStore, key: &str) -> Result<Option<Link>, DeliveryError> {
    records.get(key).await
}

pub(crate) async fn save(
    records: &RecordStore,
    key: &str,
    id: u64,
    digest: String,
) -> Result<(), DeliveryError> {
    records.put(key, &Link { id, digest }).await
}

/// Whether `error` says the record is gone: soft-deleted (Pipedrive answers 404 to updates
/// of deleted records) or purged.
pub(crate) fn is_gone(error: &DeliveryError) -> bool {
    matches!(
        error,
        DeliveryError::Permanent {
            http_status: Some(404 | 410),
            ..
        }
    )
}
