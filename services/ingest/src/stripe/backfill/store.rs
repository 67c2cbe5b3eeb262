//! Where a backfill stands, in NATS KV (`{prefix}_cursors`), so that a crash, a restart or
//! another replica carries on where it stopped:
//!
//! | key | value |
//! |---|---|
//! | `stripe.<connection>.backfill` | the current or last run: id, resources, start, end |
//! | `stripe.<connection>.backfill.<resource>` | that run's cursor in one resource's list |
//! | `stripe.<connection>.historical` | set once the "historical + new" sync has run |
//!
//! Only the lease holder writes these keys, so plain puts suffice.

use super::super::StripeResource;
use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why a backfill started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `billsync backfill stripe`.
    Command,
    /// The connection is configured "sync historical records and capture new records".
    HistoricalSync,
}

/// One backfill run of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillRun {
    pub run_id: String,
    /// Resource names, in the order they are walked.
    pub resources: Vec<String>,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

impl BackfillRun {
    pub fn resources(&self) -> Vec<StripeResource> {
        self.resources
            .iter()
            .filter_map(|r| StripeResource::parse(r))
            .collect()
    }
}

/// How far a run has walked one resource's list (newest to oldest).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceCursor {
    pub run_id: String,
    /// The last object of the last page whose events JetStream acknowledged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_after: Option<String>,
    pub published: u64,
    pub skipped: u64,
    pub pages: u64,
    pub done: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Written when a connection's historical sync has completed; it never runs again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoricalMarker {
    pub run_id: String,
    pub finished_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
#[error("backfill state in NATS KV ({key}): {reason}")]
pub struct StoreError {
    pub key: String,
    pub reason: String,
}

/// The backfill keys of one connection.
#[derive(Clone)]
pub struct BackfillStore {
    kv: kv::Store,
    connection: String,
}

impl BackfillStore {
    pub fn new(kv: kv::Store, connection: &str) -> Self {
        Self {
            kv,
            connection: connection.to_string(),
        }
    }

    pub fn run_key(&self) -> String {
        format!("stripe.{}.backfill", self.connection)
    }

    pub fn cursor_key(&self, resource: StripeResource) -> String {
        format!("stripe.{}.backfill.{}", self.connection, resource.name())
    }

    pub fn historical_key(&self) -> String {
        format!("stripe.{}.historical", self.connection)
    }

    async fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let err = |reason: String| StoreError {
            key: key.to_string(),
            reason,
        };
        match self.kv.entry(key).await.map_err(|e| err(e.to_string()))? {
            Some(entry) if entry.operation == Operation::Put => {
                serde_json::from_slice(&entry.value)
                    .map(Some)
                    .map_err(|e| err(format!("unreadable ({e}); delete the key to start over")))
            }
            _ => Ok(None),
        }
    }

    async fn write<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).expect("backfill state serializes");
        self.kv
            .put(key, bytes.into())
            .await
            .map(|_| ())
            .map_err(|e| StoreError {
                key: key.to_string(),
                reason: e.to_string(),
            })
    }

    pub async fn run(&self) -> Result<Option<BackfillRun>, StoreError> {
        self.read(&self.run_key()).await
    }

    pub async fn save_run(&self, run: &BackfillRun) -> Result<(), StoreError> {
        self.write(&self.run_key(), run).await
    }

    /// The cursor of `resource` in run `run_id`; a fresh one when the stored cursor belongs
    /// to another run.
    pub async fn cursor(
        &self,
        resource: StripeResource,
        run_id: &str,
    ) -> Result<ResourceCursor, StoreError> {
        let stored: Option<ResourceCursor> = self.read(&self.cursor_key(resource)).await?;
        Ok(stored
            .filter(|c| c.run_id == run_id)
            .unwrap_or_else(|| ResourceCursor {
                run_id: run_id.to_string(),
                ..ResourceCursor::default()
            }))
    }

    pub async fn save_cursor(
        &self,
        resource: StripeResource,
        cursor: &ResourceCursor,
    ) -> Result<(), StoreError> {
        self.write(&self.cursor_key(resource), cursor).await
    }

    pub async fn historical(&self) -> Result<Option<HistoricalMarker>, StoreError> {
        self.read(&self.historical_key()).await
    }

    pub async fn mark_historical(&self, marker: &HistoricalMarker) -> Result<(), StoreError> {
        self.write(&self.historical_key(), marker).await
    }
}
