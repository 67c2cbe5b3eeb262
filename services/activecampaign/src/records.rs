//! Records billsync keeps in NATS KV, read with their revision and saved only if nobody
//! saved them since (compare-and-set): replicas may apply two events of one customer or
//! order at once, and the loser must re-read rather than overwrite.

use crate::contacts::kv_error;
use async_nats::jetstream::kv;
use billsync_worker::DeliveryError;
use serde::{de::DeserializeOwned, Serialize};

/// The record at `key` and the revision it was read at; `(None, None)` when there is none
/// (never written, or deleted). A record that no longer decodes reads as none.
pub(crate) async fn load_versioned<T: DeserializeOwned>(
    kv: &kv::Store,
    key: &str,
) -> Result<(Option<T>, Option<u64>), DeliveryError> {
    match kv.entry(key).await.map_err(kv_error)? {
        Some(entry) if entry.operation == kv::Operation::Put => Ok((
            serde_json::from_slice(&entry.value).ok(),
            Some(entry.revision),
        )),
        _ => Ok((None, None)),
    }
}

/// Saves `value` at `key` only if it is still at `revision` (`None`: only if absent) and
/// returns the new revision. When someone saved it meanwhile, `conflict` says what to retry.
pub(crate) async fn save_if_unchanged<T: Serialize>(
    kv: &kv::Store,
    key: &str,
    value: &T,
    revision: Option<u64>,
    conflict: impl FnOnce() -> String,
) -> Result<u64, DeliveryError> {
    let bytes = serde_json::to_vec(value).expect("a record always encodes");
    let lost = || DeliveryError::Retryable {
        message: conflict(),
        retry_after: None,
        http_status: None,
    };
    match revision {
        Some(revision) => match kv.update(key, bytes.into(), revision).await {
            Ok(revision) => Ok(revision),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(lost()),
            Err(e) => Err(kv_error(e)),
        },
        None => match kv.create(key, bytes.into()).await {
            Ok(revision) => Ok(revision),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(lost()),
            Err(e) => Err(kv_error(e)),
        },
    }
}
