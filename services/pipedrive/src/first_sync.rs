//! The first full sync and what it settles (seed 004): from then on the unique id persons
//! are matched by is locked, and deals are written — not during the initial sync of 10
//! customers nor during that first full sync, so that the sales pipeline is not flooded with
//! a deal per historical subscription while the persons are being set up.

use billsync_events::{BillingEventV1, RunKind};
use billsync_worker::{DeliveryError, RecordStore};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Written when the first event of a source's first full sync reaches the connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstFullSync {
    /// The unique id persons were matched by (`UniqueId::describe`).
    pub unique_id: String,
    pub run_id: String,
    pub at: DateTime<Utc>,
}

/// The record of `source`'s first full sync into the connection.
pub fn record_key(source: &str) -> String {
    format!("first_full_sync/{source}")
}

pub(crate) async fn first_full_sync(
    records: &RecordStore,
    source: &str,
) -> Result<Option<FirstFullSync>, DeliveryError> {
    records.get(&record_key(source)).await
}

/// Whether `event` may create or update deals, recording the first full sync (and so the
/// lock of `unique_id`) when it is the first event of one.
pub(crate) async fn deals_allowed(
    records: &RecordStore,
    event: &BillingEventV1,
    unique_id: &str,
) -> Result<bool, DeliveryError> {
    let Some(run_id) = event.run_id.as_deref() else {
        // Live events: once the first full sync has run.
        return Ok(first_full_sync(records, &event.connection).await?.is_some());
    };
    match RunKind::of(run_id) {
        RunKind::Initial => Ok(false),
        RunKind::Full => {
            if let Some(first) = first_full_sync(records, &event.connection).await? {
                return Ok(first.run_id != run_id);
            }
            let mine = FirstFullSync {
                unique_id: unique_id.to_string(),
                run_id: run_id.to_string(),
                at: Utc::now(),
            };
            // Of two replicas recording it at once, the loser reads the winner's on retry.
            records
                .save_if_unchanged(&record_key(&event.connection), &mine, None, || {
                    "another replica recorded the first full sync meanwhile".to_string()
                })
                .await?;
            tracing::info!(source = %event.connection, run = %run_id, unique_id = %unique_id,
                "First full sync: the unique id is locked from now on; deals follow after it.");
            Ok(false)
        }
        RunKind::Other => Ok(first_full_sync(records, &event.connection).await?.is_some()),
    }
}
