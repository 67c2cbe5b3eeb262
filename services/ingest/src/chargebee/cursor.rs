//! The poll cursor of a connection, kept in NATS KV so that a restart or another replica
//! carries on where the last poll stopped.

use async_nats::jetstream::kv::{self, Operation};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where polling of one connection stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollCursor {
    /// `occurred_at` (Unix seconds) of the newest event published; on a connection's first
    /// poll, the time polling began (earlier history is for `sync all`).
    pub occurred_at: i64,
    /// The id of that event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// When the last poll ended, by whichever replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polled_by: Option<String>,
}

impl PollCursor {
    pub fn starting_now() -> Self {
        Self {
            occurred_at: Utc::now().timestamp(),
            event_id: None,
            polled_at: None,
            polled_by: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    #[error("the cursor was written by someone else meanwhile")]
    Conflict,
    #[error("cursor store: {0}")]
    Store(String),
}

/// The cursor entry of one connection.
#[derive(Clone)]
pub struct CursorStore {
    kv: kv::Store,
    key: String,
}

impl CursorStore {
    pub fn new(kv: kv::Store, key: &str) -> Self {
        Self {
            kv,
            key: key.to_string(),
        }
    }

    /// The cursor and its revision, if one was ever written.
    pub async fn load(&self) -> Result<Option<(PollCursor, u64)>, CursorError> {
        let entry = self
            .kv
            .entry(&self.key)
            .await
            .map_err(|e| CursorError::Store(e.to_string()))?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                let cursor = serde_json::from_slice(&entry.value).map_err(|e| {
                    CursorError::Store(format!(
                        "the cursor of {} is not readable ({e}); delete it to start from now",
                        self.key
                    ))
                })?;
                Ok(Some((cursor, entry.revision)))
            }
            _ => Ok(None),
        }
    }

    /// Drops the cursor: the next poll starts from now, as a new connection's first does.
    pub async fn forget(&self) -> Result<(), CursorError> {
        self.kv
            .delete(&self.key)
            .await
            .map_err(|e| CursorError::Store(e.to_string()))
    }

    /// Writes the cursor if nobody else wrote since `revision` (`None`: if none exists).
    pub async fn save(
        &self,
        cursor: &PollCursor,
        revision: Option<u64>,
    ) -> Result<u64, CursorError> {
        let value: bytes::Bytes = serde_json::to_vec(cursor)
            .expect("a cursor serializes")
            .into();
        match revision {
            None => self
                .kv
                .create(&self.key, value)
                .await
                .map_err(|e| match e.kind() {
                    kv::CreateErrorKind::AlreadyExists => CursorError::Conflict,
                    _ => CursorError::Store(e.to_string()),
                }),
            Some(revision) => self
                .kv
                .update(&self.key, value, revision)
                .await
                .map_err(|e| match e.kind() {
                    kv::UpdateErrorKind::WrongLastRevision => CursorError::Conflict,
                    _ => CursorError::Store(e.to_string()),
                }),
        }
    }
}
