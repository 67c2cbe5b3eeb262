//! Sending a failure's stored event again, to the one destination connection that failed:
//! an operator's retry, and the retry of a customer's other records once the customer's own
//! record syncs.

use crate::error::ApiError;
use crate::store::{self, RetryTarget};
use billsync_bus::{PublishError, Publisher};
use billsync_events::BillingEvent;
use sqlx::{Postgres, Transaction};

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("stored event of failure {id} cannot be read: {source}")]
    StoredEvent {
        id: i64,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl RetryError {
    /// The admin API's error, `done` retries into a bulk retry.
    pub fn into_api(self, done: u64) -> ApiError {
        match self {
            RetryError::StoredEvent { id, source } => ApiError::StoredEvent { id, source },
            RetryError::Publish(source) => ApiError::Replay { done, source },
            RetryError::Database(error) => ApiError::Database(error),
        }
    }
}

/// The stored event of a failure.
pub fn stored_event(target: &RetryTarget) -> Result<BillingEvent, RetryError> {
    serde_json::from_value(target.record.event.clone()).map_err(|source| RetryError::StoredEvent {
        id: target.record.id,
        source,
    })
}

/// Publishes `target`'s stored event on its destination connection's replay subject and
/// counts the retry, in `tx`, which holds the row locked from reading `retry_count` on: so
/// concurrent retries of one failure get distinct message ids (`retry:{id}:{n}`), and a
/// retry whose count was not stored reuses its id and is deduplicated by JetStream.
pub async fn send_again(
    publisher: &Publisher,
    tx: &mut Transaction<'_, Postgres>,
    target: &RetryTarget,
) -> Result<(), RetryError> {
    let record = &target.record;
    let event = stored_event(target)?;
    let msg_id = format!("retry:{}:{}", record.id, target.retry_count);
    let published = publisher
        .publish_replay(&record.destination_connection, &event, &msg_id)
        .await?;
    store::mark_retried(tx, record).await?;
    tracing::info!(
        failure_id = record.id,
        destination_connection = %record.destination_connection,
        event_id = %event.v1().id,
        duplicate = published.duplicate,
        "Failure replayed to its destination."
    );
    metrics::counter!("billsync_errors_retries_total").increment(1);
    Ok(())
}
