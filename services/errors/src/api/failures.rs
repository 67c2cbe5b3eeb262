//! `/api/v1/failures`: list, show, ignore, retry, count and download sync errors.

use super::params::{encode_cursor, FailureParams, Page};
use super::{csv as csv_format, ApiPath, ApiQuery, ApiState};
use crate::error::ApiError;
use crate::retry;
use crate::store::{self, FailureFilter, FailureRow, FailureStatus, RecordIdentity};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::Json;
use billsync_bus::{data_fingerprint, ignore_key, IgnoredRecord};
use billsync_events::{BillingEvent, DestinationKind};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use sqlx::PgPool;

/// Rows fetched per page when a request walks every match (bulk retry, CSV).
const WALK_PAGE: u32 = 500;

/// `GET /api/v1/failures?destination=&connection=&source=&class=&status=&q=&since=&until=&limit=&cursor=`
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<FailureParams>,
) -> Result<Json<Value>, ApiError> {
    let filter = params.filter()?;
    let Page { limit, after } = params.page()?;
    let pool = state.db.pool()?;
    let mut items =
        store::list_failures(pool, state.db.deployment(), &filter, after, limit + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|row| encode_cursor(row.last_seen, row.id))
    } else {
        None
    };
    for row in &mut items {
        scrub_row(&state, row);
    }
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}

/// `GET /api/v1/failures/summary`: how many failures are open at each destination
/// connection that has any (`billsync status` shows them).
pub async fn summary(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let items = store::open_failure_counts(state.db.pool()?, state.db.deployment()).await?;
    Ok(Json(json!({ "items": items })))
}

/// `GET /api/v1/failures/{id}`: the failure and the event a retry would replay.
pub async fn get_one(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id = failure_id(&id)?;
    let mut detail = store::get_failure(state.db.pool()?, state.db.deployment(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    scrub_row(&state, &mut detail.failure);
    state.scrubber.json(&mut detail.event);
    Ok(Json(json!(detail)))
}

/// `POST /api/v1/failures/{id}/ignore`: hides an open failure from the list and the CSV,
/// and stops the record from syncing until it changes.
pub async fn ignore_one(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id = failure_id(&id)?;
    let pool = state.db.pool()?;
    let mut tx = pool.begin().await?;
    let changed = store::ignore_failure(&mut tx, state.db.deployment(), id).await?;
    if let Some(record) = &changed {
        record_ignores(&state, std::slice::from_ref(record)).await?;
    }
    tx.commit().await?;
    let changed = changed.is_some();
    if changed {
        state.open_failures.changed();
    }
    let mut detail = store::get_failure(pool, state.db.deployment(), id)
        .await?
        .ok_or_else(|| not_found(id))?;
    if !changed && detail.failure.status == FailureStatus::Resolved.as_str() {
        return Err(ApiError::Conflict(format!(
            "failure {id} is resolved; only open failures can be ignored"
        )));
    }
    if changed {
        tracing::info!(failure_id = id, "Failure ignored by an operator.");
    }
    scrub_row(&state, &mut detail.failure);
    Ok(Json(json!(detail.failure)))
}

/// `POST /api/v1/failures/ignore` with a filter body (`{}` ignores every open failure).
pub async fn ignore_matching(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let filter = FailureParams::from_body(&body)?.action_filter(Some(FailureStatus::Open))?;
    let mut tx = state.db.pool()?.begin().await?;
    let records = store::ignore_matching(&mut tx, state.db.deployment(), &filter).await?;
    record_ignores(&state, &records).await?;
    tx.commit().await?;
    let ignored = records.len();
    if ignored > 0 {
        state.open_failures.changed();
    }
    tracing::info!(ignored, ?filter, "Failures ignored by an operator.");
    Ok(Json(json!({ "ignored": ignored })))
}

/// Concurrent writes to the ignores bucket when many failures are ignored at once.
const IGNORE_WRITES_IN_FLIGHT: usize = 16;

/// Writes each record's ignore into the ignores bucket, where workers look before every
/// delivery. Called inside the transaction that marks the rows ignored, before it commits:
/// if NATS refuses, the rows stay open and the operator is told to try again.
async fn record_ignores(state: &ApiState, records: &[RecordIdentity]) -> Result<(), ApiError> {
    let entries = records
        .iter()
        .map(ignore_entry)
        .collect::<Result<Vec<_>, _>>()?;
    futures::stream::iter(entries)
        .map(|(key, ignored)| async move {
            let value = serde_json::to_vec(&ignored).expect("an ignore always encodes");
            state
                .ignores
                .put(key, value.into())
                .await
                .map(|_| ())
                .map_err(|e| ApiError::Ignores { source: e.into() })
        })
        .buffer_unordered(IGNORE_WRITES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The ignores-bucket key of a failure's record, and what to store there: the version of
/// the failing event and the fingerprint of its data as the worker saw it.
fn ignore_entry(record: &RecordIdentity) -> Result<(String, IgnoredRecord), ApiError> {
    let event: BillingEvent =
        serde_json::from_value(record.event.clone()).map_err(|source| ApiError::StoredEvent {
            id: record.id,
            source,
        })?;
    let destination: DestinationKind =
        serde_json::from_value(Value::String(record.destination.clone())).map_err(|source| {
            ApiError::StoredEvent {
                id: record.id,
                source,
            }
        })?;
    let v1 = event.v1();
    let key = ignore_key(
        destination,
        &record.destination_connection,
        v1.source,
        &v1.connection,
        &v1.record_key(),
    );
    let fingerprint = record
        .data_fingerprint
        .clone()
        // Rows from before fingerprints were kept: their data is scrubbed, which differs
        // from the original only when it held a secret.
        .unwrap_or_else(|| data_fingerprint(&v1.data));
    Ok((
        key,
        IgnoredRecord {
            version: v1.version.clone(),
            fingerprint,
        },
    ))
}

/// `POST /api/v1/failures/{id}/retry`: replays the stored event to its destination only.
/// Retrying an ignored failure lifts its ignore.
pub async fn retry_one(
    State(state): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let id = failure_id(&id)?;
    let pool = state.db.pool()?;
    if !replay(&state, pool, id, 0).await? {
        return Err(not_found(id));
    }
    Ok(Json(json!({ "retried": 1 })))
}

/// `POST /api/v1/failures/retry` with a filter body (status defaults to open).
pub async fn retry_matching(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let filter = FailureParams::from_body(&body)?.action_filter(None)?;
    let pool = state.db.pool()?;
    let mut retried = 0u64;
    let mut skipped = 0u64;
    let mut after_id = 0;
    loop {
        let ids =
            store::failure_ids(pool, state.db.deployment(), &filter, after_id, WALK_PAGE).await?;
        for &id in &ids {
            match replay(&state, pool, id, retried).await {
                Ok(true) => retried += 1,
                Ok(false) => {}
                Err(error @ ApiError::StoredEvent { .. }) => {
                    // One unreadable row must not hold back the others.
                    tracing::warn!(%error, "Skipping a failure whose event cannot be replayed.");
                    skipped += 1;
                }
                Err(error) => return Err(error),
            }
        }
        match ids.last() {
            Some(&last) if ids.len() == WALK_PAGE as usize => after_id = last,
            _ => break,
        }
    }
    tracing::info!(
        retried,
        skipped,
        ?filter,
        "Failures retried by an operator."
    );
    Ok(Json(json!({ "retried": retried, "skipped": skipped })))
}

/// Publishes failure `id`'s event on its destination connection's replay subject
/// ([`retry::send_again`]); retrying an ignored failure lifts its ignore first. False when
/// there is no such failure.
async fn replay(state: &ApiState, pool: &PgPool, id: i64, done: u64) -> Result<bool, ApiError> {
    let mut tx = pool.begin().await?;
    let Some(target) = store::lock_for_retry(&mut tx, state.db.deployment(), id).await? else {
        return Ok(false);
    };
    let record = &target.record;
    retry::stored_event(&target).map_err(|e| e.into_api(done))?;
    let ignored = record.status == FailureStatus::Ignored.as_str();
    if ignored {
        // Retrying is asking for the record to sync: the ignore would make the worker skip it.
        let (key, _) = ignore_entry(record)?;
        state
            .ignores
            .delete(key)
            .await
            .map_err(|e| ApiError::Ignores { source: e.into() })?;
        store::unignore(&mut tx, record).await?;
        tracing::info!(failure_id = id, "Ignore lifted by a retry.");
    }
    retry::send_again(&state.publisher, &mut tx, &target)
        .await
        .map_err(|e| e.into_api(done))?;
    tx.commit().await?;
    if ignored {
        state.open_failures.changed();
    }
    Ok(true)
}

/// `GET /api/v1/failures.csv?<filter>`: every open failure (ignored ones never appear).
pub async fn csv(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<FailureParams>,
) -> Result<Response, ApiError> {
    let filter = params.action_filter(Some(FailureStatus::Open))?;
    let pool = state.db.pool()?.clone();
    // The first page is read before answering, so an unavailable database is a proper
    // JSON error rather than a truncated download.
    let first =
        store::list_failures(&pool, state.db.deployment(), &filter, None, WALK_PAGE).await?;
    let pages = CsvPages {
        pool,
        filter,
        state,
        pending: Some(first),
        after: None,
        header_sent: false,
        done: false,
    };
    let body = Body::from_stream(futures::stream::unfold(pages, CsvPages::next));
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                CONTENT_DISPOSITION,
                "attachment; filename=\"billsync-sync-errors.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// The CSV body, one page of rows per chunk.
struct CsvPages {
    pool: PgPool,
    filter: FailureFilter,
    state: ApiState,
    pending: Option<Vec<FailureRow>>,
    after: Option<(DateTime<Utc>, i64)>,
    header_sent: bool,
    done: bool,
}

impl CsvPages {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.done {
            return None;
        }
        let rows = match self.pending.take() {
            Some(rows) => rows,
            None => {
                match store::list_failures(
                    &self.pool,
                    self.state.db.deployment(),
                    &self.filter,
                    self.after,
                    WALK_PAGE,
                )
                .await
                {
                    Ok(rows) => rows,
                    Err(error) => {
                        tracing::warn!(%error, "Reading failures for the CSV failed; the download is cut short.");
                        self.done = true;
                        return Some((Err(std::io::Error::other("database error")), self));
                    }
                }
            }
        };
        self.done = rows.len() < WALK_PAGE as usize;
        self.after = rows.last().map(|row| (row.last_seen, row.id));
        let mut chunk = String::new();
        if !self.header_sent {
            chunk.push_str(csv_format::HEADER);
            self.header_sent = true;
        }
        for row in &rows {
            chunk.push_str(&csv_format::line(row, &self.state.scrubber));
        }
        Some((Ok(Bytes::from(chunk)), self))
    }
}

/// Rows were scrubbed when stored; scrubbing again on the way out also covers secrets
/// configured after the row was written.
fn scrub_row(state: &ApiState, row: &mut FailureRow) {
    row.message = state.scrubber.text(&row.message);
    state.scrubber.json(&mut row.vendor_detail);
}

fn failure_id(text: &str) -> Result<i64, ApiError> {
    text.parse()
        .map_err(|_| ApiError::NotFound(format!("no failure with id {text:?}")))
}

fn not_found(id: i64) -> ApiError {
    ApiError::NotFound(format!("no failure with id {id}"))
}
