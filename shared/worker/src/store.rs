//! What a destination remembers in NATS KV — source id → CRM ids, applied markers, caches —
//! typed, keyed under its destination connection, with compare-and-set.
//!
//! Replicas may apply two events of one customer at once; a record read with its revision
//! and saved only if nobody saved it since makes the loser read again instead of
//! overwriting (a compare-and-set that holds on a cluster too: see `billsync_bus::cas`).
//! Every KV failure is retryable: the event comes back rather than being
//! recorded as a sync error the operator would have to retry by hand.

use crate::destination::DeliveryError;
use async_nats::jetstream::kv;
use billsync_bus::cas;
use billsync_bus::lease::Lease;
use billsync_bus::Topology;
use billsync_events::DestinationKind;
use serde::{de::DeserializeOwned, Serialize};

/// One destination connection's records.
#[derive(Clone)]
pub struct RecordStore {
    kv: kv::Store,
    kind: DestinationKind,
    connection: String,
}

/// A record as read, with the revision to save it back at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// `None` when there is none (never written, deleted, or no longer decodable).
    pub value: Option<T>,
    /// `None` when there is none: a save then succeeds only if still absent.
    pub revision: Option<u64>,
}

impl RecordStore {
    pub fn new(kv: kv::Store, kind: DestinationKind, connection: &str) -> Self {
        Self {
            kv,
            kind,
            connection: connection.to_string(),
        }
    }

    /// The KV key of `record` (any text; characters KV keys refuse are replaced).
    pub fn key(&self, record: &str) -> String {
        Topology::record_kv_key(self.kind, &self.connection, record)
    }

    /// The record, if there is one that decodes.
    pub async fn get<T: DeserializeOwned>(&self, record: &str) -> Result<Option<T>, DeliveryError> {
        let stored = self.kv.get(self.key(record)).await.map_err(kv_error)?;
        Ok(stored.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Writes the record whatever is there.
    pub async fn put<T: Serialize>(&self, record: &str, value: &T) -> Result<(), DeliveryError> {
        self.kv
            .put(self.key(record), encode(value).into())
            .await
            .map_err(kv_error)?;
        Ok(())
    }

    pub async fn delete(&self, record: &str) -> Result<(), DeliveryError> {
        self.kv.delete(self.key(record)).await.map_err(kv_error)?;
        Ok(())
    }

    /// The record and the revision it was read at.
    pub async fn load<T: DeserializeOwned>(
        &self,
        record: &str,
    ) -> Result<Versioned<T>, DeliveryError> {
        match self.kv.entry(self.key(record)).await.map_err(kv_error)? {
            Some(entry) if entry.operation == kv::Operation::Put => Ok(Versioned {
                value: serde_json::from_slice(&entry.value).ok(),
                revision: Some(entry.revision),
            }),
            _ => Ok(Versioned {
                value: None,
                revision: None,
            }),
        }
    }

    /// Saves `value` only if the record is still at `revision` (`None`: only if absent) and
    /// returns the new revision. When someone saved it meanwhile, the error is retryable
    /// with the message `conflict` gives.
    pub async fn save_if_unchanged<T: Serialize>(
        &self,
        record: &str,
        value: &T,
        revision: Option<u64>,
        conflict: impl FnOnce() -> String,
    ) -> Result<u64, DeliveryError> {
        let key = self.key(record);
        let bytes = encode(value);
        let lost = || DeliveryError::Retryable {
            message: conflict(),
            retry_after: None,
            http_status: None,
        };
        let won = match revision {
            Some(revision) => cas::update(&self.kv, &key, bytes.into(), revision).await,
            None => cas::create(&self.kv, &key, bytes.into()).await,
        };
        won.map_err(kv_error)?.ok_or_else(lost)
    }

    /// The effect chosen for `event` (any text naming one event, such as
    /// `chargebee/{connection}/{event id}`) the first time it was applied: `chosen` when
    /// this is the first time, recorded now, else what was recorded then.
    ///
    /// An option that chooses between a milder and a more destructive effect (keep,
    /// unsubscribe or delete a contact) is read through this, so a changed option applies to
    /// events from then on: a redelivery, retry or replay of an earlier event repeats what
    /// that event did and never turns it into something more destructive.
    pub async fn first_effect<T: Serialize + DeserializeOwned>(
        &self,
        event: &str,
        chosen: T,
    ) -> Result<T, DeliveryError> {
        let key = self.key(&format!("effect/{event}"));
        let created = cas::create(&self.kv, &key, encode(&chosen).into()).await;
        if created.map_err(kv_error)?.is_some() {
            return Ok(chosen);
        }
        let stored = self.kv.get(&key).await.map_err(kv_error)?;
        Ok(stored
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(chosen))
    }

    /// A record kept as plain text (an owner's name, an id), not JSON.
    pub async fn get_text(&self, record: &str) -> Result<Option<String>, DeliveryError> {
        let stored = self.kv.get(self.key(record)).await.map_err(kv_error)?;
        Ok(stored.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    pub async fn put_text(&self, record: &str, text: &str) -> Result<(), DeliveryError> {
        self.kv
            .put(self.key(record), text.to_owned().into_bytes().into())
            .await
            .map_err(kv_error)?;
        Ok(())
    }

    /// Creates a plain-text record only if absent: true when this call created it. Markers
    /// such as "a create of this CRM record has started" are set this way, so of two
    /// replicas exactly one sees `true`.
    pub async fn create_text(&self, record: &str, text: &str) -> Result<bool, DeliveryError> {
        let text = text.to_owned().into_bytes().into();
        let created = cas::create(&self.kv, &self.key(record), text).await;
        Ok(created.map_err(kv_error)?.is_some())
    }

    /// The lease of `record` (one holder at a time across replicas), for `holder`.
    pub fn lease(&self, record: &str, holder: &str, ttl: std::time::Duration) -> Lease {
        Lease::new(self.kv.clone(), &self.key(record), holder, ttl)
    }
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("billsync's records are plain data and always encode")
}

/// A NATS KV failure: transient, so the event is retried rather than recorded as failed.
pub fn kv_error(error: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Retryable {
        message: format!("billsync's key-value store (NATS KV) is unavailable: {error}"),
        retry_after: None,
        http_status: None,
    }
}
