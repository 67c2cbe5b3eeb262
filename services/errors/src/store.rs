//! Postgres queries: sync failures aggregated per record, and sync-run history.
//!
//! One row per (deployment, destination connection, source connection, record). Every query
//! is scoped to one deployment, named by its NATS prefix (`nats.prefix`): deployments that
//! share a database keep their own failures and runs. Outcomes may arrive
//! redelivered or out of order (JetStream redelivery, several worker replicas), so every
//! write decides from the row it has locked, never from the message alone.

use billsync_events::{DestinationKind, FailureClass, SourceKind};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use std::fmt;
use std::str::FromStr;

/// Where a failure row stands in the operator's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureStatus {
    Open,
    Ignored,
    Resolved,
}

impl FailureStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureStatus::Open => "open",
            FailureStatus::Ignored => "ignored",
            FailureStatus::Resolved => "resolved",
        }
    }
}

impl FromStr for FailureStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(FailureStatus::Open),
            "ignored" => Ok(FailureStatus::Ignored),
            "resolved" => Ok(FailureStatus::Resolved),
            other => Err(format!(
                "unknown status {other:?}; expected open, ignored or resolved"
            )),
        }
    }
}

impl fmt::Display for FailureStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which failures an operator means; every field narrows the selection.
#[derive(Debug, Clone, PartialEq)]
pub struct FailureFilter {
    pub status: FailureStatus,
    pub destination: Option<DestinationKind>,
    pub source: Option<SourceKind>,
    /// Matches the destination connection or the source connection.
    pub connection: Option<String>,
    pub class: Option<FailureClass>,
    /// Case-insensitive substring of the message, record key, event id or event type.
    pub q: Option<String>,
    /// `last_seen >= since`.
    pub since: Option<DateTime<Utc>>,
    /// `last_seen < until`.
    pub until: Option<DateTime<Utc>>,
}

impl Default for FailureFilter {
    fn default() -> Self {
        Self {
            status: FailureStatus::Open,
            destination: None,
            source: None,
            connection: None,
            class: None,
            q: None,
            since: None,
            until: None,
        }
    }
}

/// A failure as listed: everything but the stored event.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FailureRow {
    pub id: i64,
    pub destination: String,
    pub destination_connection: String,
    pub source: String,
    pub source_connection: String,
    pub record_key: String,
    pub status: String,
    pub error_class: String,
    pub message: String,
    pub http_status: Option<i32>,
    pub vendor_detail: Value,
    pub attempts: i32,
    pub event_id: String,
    pub event_type: String,
    pub run_id: Option<String>,
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub ignored_at: Option<DateTime<Utc>>,
    pub retry_count: i32,
    pub last_retry_at: Option<DateTime<Utc>>,
}

const FAILURE_COLUMNS: &str = "id, destination, destination_connection, source, \
    source_connection, record_key, status, error_class, message, http_status, vendor_detail, \
    attempts, event_id, event_type, run_id, count, first_seen, last_seen, resolved_at, \
    ignored_at, retry_count, last_retry_at";

/// One failure with the event a retry would replay.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FailureDetail {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub failure: FailureRow,
    pub event: Value,
}

/// An outcome, scrubbed and ready to store.
#[derive(Debug, Clone)]
pub struct OutcomeRecord {
    pub destination: DestinationKind,
    pub destination_connection: String,
    pub source: SourceKind,
    pub source_connection: String,
    pub record_key: String,
    pub event_id: String,
    pub event_type: String,
    pub run_id: Option<String>,
    /// At the microsecond precision Postgres keeps, so a stored `at` compares equal to the
    /// same outcome delivered again.
    pub at: DateTime<Utc>,
    pub result: RecordResult,
}

#[derive(Debug, Clone)]
pub enum RecordResult {
    Synced,
    Failed(FailureRecord),
    Skipped { reason: String },
}

impl RecordResult {
    pub fn status(&self) -> &'static str {
        match self {
            RecordResult::Synced => "synced",
            RecordResult::Failed(_) => "failed",
            RecordResult::Skipped { .. } => "skipped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FailureRecord {
    pub class: FailureClass,
    pub message: String,
    pub http_status: Option<u16>,
    pub vendor_detail: Value,
    pub attempts: u32,
    /// The `BillingEvent`, as JSON, to replay on retry.
    pub event: Value,
    /// `billsync_bus::data_fingerprint` of the event's data before scrubbing.
    pub data_fingerprint: String,
    /// The customer the failing record belongs to, when the event names one.
    pub customer_id: Option<String>,
}

/// What storing an outcome changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// A new failure row.
    Opened(i64),
    /// Another failing delivery of a record already failing (or ignored).
    Counted(i64),
    /// A resolved or ignored record failed again after a change.
    Reopened(i64),
    /// The very outcome already counted, delivered again.
    Duplicate,
    /// A failure older than the success that resolved the record.
    Stale,
    /// A success resolved this many failure rows (0 or 1).
    Resolved(u64),
    /// Nothing to aggregate (a skip).
    Nothing,
}

/// Stores one outcome in `tx`; the caller commits, and acks only after the commit.
pub async fn record_outcome(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &str,
    outcome: &OutcomeRecord,
) -> Result<Recorded, sqlx::Error> {
    let recorded = match &outcome.result {
        RecordResult::Failed(failure) => upsert_failure(tx, deployment, outcome, failure).await?,
        RecordResult::Synced => Recorded::Resolved(resolve_record(tx, deployment, outcome).await?),
        RecordResult::Skipped { .. } => Recorded::Nothing,
    };
    if let Some(run_id) = &outcome.run_id {
        record_run_outcome(tx, deployment, run_id, outcome).await?;
    }
    Ok(recorded)
}

/// Gives `deployment` the failures and runs stored before rows were kept per deployment
/// (deployment `''`): the first errors service to start after that upgrade takes them.
/// Returns how many failures and runs it took.
pub async fn adopt_unscoped_rows(
    pool: &PgPool,
    deployment: &str,
) -> Result<(u64, u64), sqlx::Error> {
    let mut tx = pool.begin().await?;
    let failures = sqlx::query("UPDATE sync_failures SET deployment = $1 WHERE deployment = ''")
        .bind(deployment)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    // Their records follow through the foreign key (ON UPDATE CASCADE).
    let runs = sqlx::query("UPDATE sync_runs SET deployment = $1 WHERE deployment = ''")
        .bind(deployment)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok((failures, runs))
}

/// The customer whose own record `outcome` is about, if it is a customer's.
pub fn customer_of_record(outcome: &OutcomeRecord) -> Option<&str> {
    outcome.record_key.strip_prefix("customer/")
}

/// The open failures of the other records of `customer_id` (its subscriptions, invoices,
/// charges) at the outcome's destination connection, locked for a retry in `tx`: once the
/// customer's own record syncs, what failed because of it (no email, an email another
/// customer has) can sync too.
pub async fn lock_dependants(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &str,
    outcome: &OutcomeRecord,
    customer_id: &str,
) -> Result<Vec<RetryTarget>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {IDENTITY_COLUMNS}, retry_count FROM sync_failures \
         WHERE deployment = $5 AND destination_connection = $1 AND source_connection = $2 \
           AND customer_id = $3 AND record_key <> $4 AND status = 'open' \
         ORDER BY id FOR UPDATE"
    ))
    .bind(&outcome.destination_connection)
    .bind(&outcome.source_connection)
    .bind(customer_id)
    .bind(&outcome.record_key)
    .bind(deployment)
    .fetch_all(&mut **tx)
    .await
}

/// The part of an existing row that decides what a new failure does to it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Existing {
    id: i64,
    status: String,
    event_id: String,
    last_seen: DateTime<Utc>,
    last_event_id: String,
    last_at: DateTime<Utc>,
    resolved_at: Option<DateTime<Utc>>,
    ignored_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Duplicate,
    Stale,
    /// Count one more failing delivery; `newer` replaces the shown error with this one.
    Count {
        newer: bool,
    },
    /// Start a new episode: status open, count 1.
    Reopen,
}

fn decide(existing: &Existing, event_id: &str, at: DateTime<Utc>) -> Decision {
    if existing.last_event_id == event_id && existing.last_at == at {
        return Decision::Duplicate;
    }
    let newer = at >= existing.last_seen;
    match existing.status.parse::<FailureStatus>() {
        Ok(FailureStatus::Resolved) => match existing.resolved_at {
            Some(resolved_at) if at <= resolved_at => Decision::Stale,
            _ => Decision::Reopen,
        },
        // "Ignoring an error … prevents the record from syncing further unless it is
        // modified": a different event failing after the ignore is a modified record.
        Ok(FailureStatus::Ignored)
            if event_id != existing.event_id
                && existing.ignored_at.is_none_or(|ignored_at| at > ignored_at) =>
        {
            Decision::Reopen
        }
        _ => Decision::Count { newer },
    }
}

async fn upsert_failure(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &str,
    o: &OutcomeRecord,
    f: &FailureRecord,
) -> Result<Recorded, sqlx::Error> {
    let http_status = f.http_status.map(i32::from);
    let attempts = i32::try_from(f.attempts).unwrap_or(i32::MAX);
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO sync_failures (destination, destination_connection, source, \
             source_connection, record_key, status, error_class, message, http_status, \
             vendor_detail, attempts, event_id, event_type, event, run_id, count, first_seen, \
             last_seen, last_event_id, last_at, data_fingerprint, customer_id, deployment) \
         VALUES ($1, $2, $3, $4, $5, 'open', $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15, \
             $15, $11, $15, $16, $17, $18) \
         ON CONFLICT ON CONSTRAINT sync_failures_record DO NOTHING \
         RETURNING id",
    )
    .bind(o.destination.as_str())
    .bind(&o.destination_connection)
    .bind(o.source.as_str())
    .bind(&o.source_connection)
    .bind(&o.record_key)
    .bind(f.class.as_str())
    .bind(&f.message)
    .bind(http_status)
    .bind(&f.vendor_detail)
    .bind(attempts)
    .bind(&o.event_id)
    .bind(&o.event_type)
    .bind(&f.event)
    .bind(&o.run_id)
    .bind(o.at)
    .bind(&f.data_fingerprint)
    .bind(&f.customer_id)
    .bind(deployment)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = inserted {
        return Ok(Recorded::Opened(id));
    }

    let existing: Existing = sqlx::query_as(
        "SELECT id, status, event_id, last_seen, last_event_id, last_at, resolved_at, ignored_at \
         FROM sync_failures \
         WHERE deployment = $4 AND destination_connection = $1 AND source_connection = $2 \
           AND record_key = $3 \
         FOR UPDATE",
    )
    .bind(&o.destination_connection)
    .bind(&o.source_connection)
    .bind(&o.record_key)
    .bind(deployment)
    .fetch_one(&mut **tx)
    .await?;

    let decision = decide(&existing, &o.event_id, o.at);
    let sql = match decision {
        Decision::Duplicate => return Ok(Recorded::Duplicate),
        Decision::Stale => return Ok(Recorded::Stale),
        Decision::Count { newer: false } => {
            // An older failure arriving late: it counts, but the newer error stays shown.
            let _ = sqlx::query(
                "UPDATE sync_failures SET count = count + 1, \
                     first_seen = LEAST(first_seen, $2), last_event_id = $3, last_at = $2, \
                     updated_at = now() \
                 WHERE id = $1",
            )
            .bind(existing.id)
            .bind(o.at)
            .bind(&o.event_id)
            .execute(&mut **tx)
            .await?;
            return Ok(Recorded::Counted(existing.id));
        }
        Decision::Count { newer: true } => {
            "UPDATE sync_failures SET count = count + 1, first_seen = LEAST(first_seen, $13), \
                 last_seen = $13, destination = $2, source = $3, error_class = $4, message = $5, \
                 http_status = $6, vendor_detail = $7, attempts = $8, event_id = $9, \
                 event_type = $10, event = $11, run_id = $12, last_event_id = $9, last_at = $13, \
                 data_fingerprint = $14, customer_id = $15, updated_at = now() \
             WHERE id = $1"
        }
        Decision::Reopen => {
            "UPDATE sync_failures SET status = 'open', count = 1, first_seen = $13, \
                 last_seen = $13, destination = $2, source = $3, error_class = $4, message = $5, \
                 http_status = $6, vendor_detail = $7, attempts = $8, event_id = $9, \
                 event_type = $10, event = $11, run_id = $12, last_event_id = $9, last_at = $13, \
                 data_fingerprint = $14, customer_id = $15, resolved_at = NULL, \
                 ignored_at = NULL, updated_at = now() \
             WHERE id = $1"
        }
    };
    sqlx::query(sql)
        .bind(existing.id)
        .bind(o.destination.as_str())
        .bind(o.source.as_str())
        .bind(f.class.as_str())
        .bind(&f.message)
        .bind(http_status)
        .bind(&f.vendor_detail)
        .bind(attempts)
        .bind(&o.event_id)
        .bind(&o.event_type)
        .bind(&f.event)
        .bind(&o.run_id)
        .bind(o.at)
        .bind(&f.data_fingerprint)
        .bind(&f.customer_id)
        .execute(&mut **tx)
        .await?;
    Ok(match decision {
        Decision::Reopen => Recorded::Reopened(existing.id),
        _ => Recorded::Counted(existing.id),
    })
}

/// Marks the record's open or ignored failure resolved, unless it failed again after `at`.
async fn resolve_record(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &str,
    o: &OutcomeRecord,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE sync_failures SET status = 'resolved', resolved_at = $4, updated_at = now() \
         WHERE deployment = $5 AND destination_connection = $1 AND source_connection = $2 \
           AND record_key = $3 AND status IN ('open', 'ignored') AND last_seen <= $4",
    )
    .bind(&o.destination_connection)
    .bind(&o.source_connection)
    .bind(&o.record_key)
    .bind(o.at)
    .bind(deployment)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected())
}

async fn record_run_outcome(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &str,
    run_id: &str,
    o: &OutcomeRecord,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sync_runs (deployment, run_id, started_at, last_outcome_at) \
         VALUES ($3, $1, $2, $2) \
         ON CONFLICT (deployment, run_id) DO UPDATE SET \
             started_at = LEAST(sync_runs.started_at, EXCLUDED.started_at), \
             last_outcome_at = GREATEST(sync_runs.last_outcome_at, EXCLUDED.last_outcome_at)",
    )
    .bind(run_id)
    .bind(o.at)
    .bind(deployment)
    .execute(&mut **tx)
    .await?;
    let reason = match &o.result {
        RecordResult::Synced => None,
        RecordResult::Failed(failure) => Some(failure.message.as_str()),
        RecordResult::Skipped { reason } => Some(reason.as_str()),
    };
    sqlx::query(
        "INSERT INTO sync_run_records (run_id, destination, destination_connection, \
             source_connection, record_key, event_id, status, reason, at, deployment) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT ON CONSTRAINT sync_run_records_record DO UPDATE SET \
             event_id = EXCLUDED.event_id, status = EXCLUDED.status, reason = EXCLUDED.reason, \
             at = EXCLUDED.at \
         WHERE sync_run_records.at <= EXCLUDED.at",
    )
    .bind(run_id)
    .bind(o.destination.as_str())
    .bind(&o.destination_connection)
    .bind(&o.source_connection)
    .bind(&o.record_key)
    .bind(&o.event_id)
    .bind(o.result.status())
    .bind(reason)
    .bind(o.at)
    .bind(deployment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Appends ` WHERE …` for `filter` in `deployment`.
fn push_filter(qb: &mut QueryBuilder<'_, Postgres>, deployment: &str, filter: &FailureFilter) {
    qb.push(" WHERE deployment = ")
        .push_bind(deployment.to_string())
        .push(" AND status = ")
        .push_bind(filter.status.as_str());
    if let Some(destination) = filter.destination {
        qb.push(" AND destination = ")
            .push_bind(destination.as_str());
    }
    if let Some(source) = filter.source {
        qb.push(" AND source = ").push_bind(source.as_str());
    }
    if let Some(connection) = &filter.connection {
        qb.push(" AND (destination_connection = ")
            .push_bind(connection.clone())
            .push(" OR source_connection = ")
            .push_bind(connection.clone())
            .push(")");
    }
    if let Some(class) = filter.class {
        qb.push(" AND error_class = ").push_bind(class.as_str());
    }
    if let Some(q) = &filter.q {
        let pattern = format!("%{}%", escape_like(q));
        qb.push(" AND (message ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR record_key ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR event_id ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR event_type ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    if let Some(since) = filter.since {
        qb.push(" AND last_seen >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        qb.push(" AND last_seen < ").push_bind(until);
    }
}

/// `text` as a literal inside a `LIKE` pattern (backslash is Postgres's default escape).
fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Failures matching `filter`, newest `last_seen` first, after the keyset position `after`.
pub async fn list_failures(
    pool: &PgPool,
    deployment: &str,
    filter: &FailureFilter,
    after: Option<(DateTime<Utc>, i64)>,
    limit: u32,
) -> Result<Vec<FailureRow>, sqlx::Error> {
    let mut qb = QueryBuilder::new(format!("SELECT {FAILURE_COLUMNS} FROM sync_failures"));
    push_filter(&mut qb, deployment, filter);
    if let Some((last_seen, id)) = after {
        qb.push(" AND (last_seen, id) < (")
            .push_bind(last_seen)
            .push(", ")
            .push_bind(id)
            .push(")");
    }
    qb.push(" ORDER BY last_seen DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb.build_query_as().fetch_all(pool).await
}

/// How many failures are open at one destination connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct OpenFailureCount {
    pub destination: String,
    pub destination_connection: String,
    pub open: i64,
}

/// Open failures per destination connection, for each connection that has any.
pub async fn open_failure_counts(
    pool: &PgPool,
    deployment: &str,
) -> Result<Vec<OpenFailureCount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT destination, destination_connection, count(*) AS open FROM sync_failures \
         WHERE deployment = $2 AND status = $1 \
         GROUP BY destination, destination_connection \
         ORDER BY destination, destination_connection",
    )
    .bind(FailureStatus::Open.as_str())
    .bind(deployment)
    .fetch_all(pool)
    .await
}

pub async fn get_failure(
    pool: &PgPool,
    deployment: &str,
    id: i64,
) -> Result<Option<FailureDetail>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {FAILURE_COLUMNS}, event FROM sync_failures WHERE id = $1 AND deployment = $2"
    ))
    .bind(id)
    .bind(deployment)
    .fetch_optional(pool)
    .await
}

/// What the ignores bucket needs of a failure: which record, and the event ignored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RecordIdentity {
    pub id: i64,
    pub deployment: String,
    pub status: String,
    pub destination: String,
    pub destination_connection: String,
    pub source: String,
    pub source_connection: String,
    pub record_key: String,
    pub event: Value,
    /// Null on rows stored before fingerprints were kept.
    pub data_fingerprint: Option<String>,
}

const IDENTITY_COLUMNS: &str =
    "id, deployment, status, destination, destination_connection, source, \
    source_connection, record_key, event, data_fingerprint";

/// Ignores one open failure, in `tx`; the row when it changed. The caller records the ignore
/// in NATS before committing.
pub async fn ignore_failure(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &str,
    id: i64,
) -> Result<Option<RecordIdentity>, sqlx::Error> {
    sqlx::query_as(&format!(
        "UPDATE sync_failures SET status = 'ignored', ignored_at = now(), updated_at = now() \
         WHERE id = $1 AND deployment = $2 AND status = 'open' RETURNING {IDENTITY_COLUMNS}"
    ))
    .bind(id)
    .bind(deployment)
    .fetch_optional(&mut **tx)
    .await
}

/// Ignores every open failure matching `filter` (whose status must be open), in `tx`.
pub async fn ignore_matching(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &str,
    filter: &FailureFilter,
) -> Result<Vec<RecordIdentity>, sqlx::Error> {
    let mut qb = QueryBuilder::new(
        "UPDATE sync_failures SET status = 'ignored', ignored_at = now(), updated_at = now()",
    );
    push_filter(&mut qb, deployment, filter);
    qb.push(" RETURNING ").push(IDENTITY_COLUMNS);
    qb.build_query_as().fetch_all(&mut **tx).await
}

/// Turns an ignored failure back into an open one (a retry lifts the ignore).
pub async fn unignore(
    tx: &mut Transaction<'_, Postgres>,
    record: &RecordIdentity,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sync_failures SET status = 'open', ignored_at = NULL, updated_at = now() \
         WHERE id = $1 AND deployment = $2 AND status = 'ignored'",
    )
    .bind(record.id)
    .bind(&record.deployment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ids of failures matching `filter`, ascending, after `after_id`: pages for bulk retries.
pub async fn failure_ids(
    pool: &PgPool,
    deployment: &str,
    filter: &FailureFilter,
    after_id: i64,
    limit: u32,
) -> Result<Vec<i64>, sqlx::Error> {
    let mut qb = QueryBuilder::new("SELECT id FROM sync_failures");
    push_filter(&mut qb, deployment, filter);
    qb.push(" AND id > ")
        .push_bind(after_id)
        .push(" ORDER BY id LIMIT ")
        .push_bind(i64::from(limit));
    qb.build_query_scalar().fetch_all(pool).await
}

/// What a retry needs of a failure, read under a row lock held until the transaction ends,
/// so that two concurrent retries of one row take distinct retry numbers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RetryTarget {
    #[sqlx(flatten)]
    pub record: RecordIdentity,
    pub retry_count: i32,
}

pub async fn lock_for_retry(
    tx: &mut Transaction<'_, Postgres>,
    deployment: &str,
    id: i64,
) -> Result<Option<RetryTarget>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {IDENTITY_COLUMNS}, retry_count FROM sync_failures \
         WHERE id = $1 AND deployment = $2 FOR UPDATE"
    ))
    .bind(id)
    .bind(deployment)
    .fetch_optional(&mut **tx)
    .await
}

pub async fn mark_retried(
    tx: &mut Transaction<'_, Postgres>,
    record: &RecordIdentity,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sync_failures SET retry_count = retry_count + 1, last_retry_at = now(), \
             updated_at = now() \
         WHERE id = $1 AND deployment = $2",
    )
    .bind(record.id)
    .bind(&record.deployment)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A sync run with its per-record outcome counts.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunSummary {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub last_outcome_at: DateTime<Utc>,
    pub total: i64,
    pub synced: i64,
    pub failed: i64,
    pub skipped: i64,
}

const RUN_SUMMARY: &str = "SELECT r.run_id, r.started_at, r.last_outcome_at, \
        count(rr.id) AS total, \
        count(rr.id) FILTER (WHERE rr.status = 'synced') AS synced, \
        count(rr.id) FILTER (WHERE rr.status = 'failed') AS failed, \
        count(rr.id) FILTER (WHERE rr.status = 'skipped') AS skipped \
    FROM sync_runs r LEFT JOIN sync_run_records rr \
        ON rr.deployment = r.deployment AND rr.run_id = r.run_id";

/// Runs, latest start first, after the keyset position `after`.
pub async fn list_runs(
    pool: &PgPool,
    deployment: &str,
    after: Option<(DateTime<Utc>, String)>,
    limit: u32,
) -> Result<Vec<RunSummary>, sqlx::Error> {
    let mut qb = QueryBuilder::new(RUN_SUMMARY);
    qb.push(" WHERE r.deployment = ")
        .push_bind(deployment.to_string());
    if let Some((started_at, run_id)) = after {
        qb.push(" AND (r.started_at, r.run_id) < (")
            .push_bind(started_at)
            .push(", ")
            .push_bind(run_id)
            .push(")");
    }
    qb.push(" GROUP BY r.deployment, r.run_id ORDER BY r.started_at DESC, r.run_id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb.build_query_as().fetch_all(pool).await
}

pub async fn get_run(
    pool: &PgPool,
    deployment: &str,
    run_id: &str,
) -> Result<Option<RunSummary>, sqlx::Error> {
    sqlx::query_as(&format!(
        "{RUN_SUMMARY} WHERE r.run_id = $1 AND r.deployment = $2 GROUP BY r.deployment, r.run_id"
    ))
    .bind(run_id)
    .bind(deployment)
    .fetch_optional(pool)
    .await
}

/// What became of one record in a run.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct RunRecordRow {
    pub id: i64,
    pub destination: String,
    pub destination_connection: String,
    pub source_connection: String,
    pub record_key: String,
    pub event_id: String,
    pub status: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Records of a run in arrival order, after record id `after_id`.
pub async fn run_records(
    pool: &PgPool,
    deployment: &str,
    run_id: &str,
    status: Option<&str>,
    after_id: i64,
    limit: u32,
) -> Result<Vec<RunRecordRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, destination, destination_connection, source_connection, record_key, \
             event_id, status, reason, at \
         FROM sync_run_records \
         WHERE deployment = $5 AND run_id = $1 AND ($2::text IS NULL OR status = $2) \
           AND id > $3 \
         ORDER BY id LIMIT $4",
    )
    .bind(run_id)
    .bind(status)
    .bind(after_id)
    .bind(i64::from(limit))
    .bind(deployment)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + seconds, 0)
            .single()
            .expect("valid time")
    }

    fn existing(status: &str) -> Existing {
        Existing {
            id: 1,
            status: status.into(),
            event_id: "evt_1".into(),
            last_seen: at(10),
            last_event_id: "evt_1".into(),
            last_at: at(10),
            resolved_at: (status == "resolved").then(|| at(20)),
            ignored_at: (status == "ignored").then(|| at(20)),
        }
    }

    #[test]
    fn the_same_outcome_twice_is_a_duplicate() {
        assert_eq!(
            decide(&existing("open"), "evt_1", at(10)),
            Decision::Duplicate
        );
        assert_eq!(
            decide(&existing("ignored"), "evt_1", at(10)),
            Decision::Duplicate
        );
    }

    #[test]
    fn open_failures_count_every_other_delivery() {
        let row = existing("open");
        assert_eq!(
            decide(&row, "evt_1", at(11)),
            Decision::Count { newer: true }
        );
        assert_eq!(
            decide(&row, "evt_2", at(12)),
            Decision::Count { newer: true }
        );
        assert_eq!(
            decide(&row, "evt_0", at(5)),
            Decision::Count { newer: false }
        );
    }

    #[test]
    fn resolved_records_reopen_only_for_later_failures() {
        let row = existing("resolved");
        assert_eq!(decide(&row, "evt_1", at(15)), Decision::Stale);
        assert_eq!(decide(&row, "evt_2", at(21)), Decision::Reopen);
    }

    #[test]
    fn ignored_records_reopen_only_when_the_record_changed() {
        let row = existing("ignored");
        // The same event failing again (a retry) keeps it ignored.
        assert_eq!(
            decide(&row, "evt_1", at(30)),
            Decision::Count { newer: true }
        );
        // A late failure from before the ignore keeps it ignored.
        assert_eq!(
            decide(&row, "evt_2", at(15)),
            Decision::Count { newer: true }
        );
        // A new event after the ignore: the record was modified.
        assert_eq!(decide(&row, "evt_2", at(30)), Decision::Reopen);
    }

    #[test]
    fn like_patterns_match_literally() {
        assert_eq!(escape_like(r"50%_off\now"), r"50\%\_off\\now");
    }

    #[test]
    fn statuses_parse_and_reject_unknown_values() {
        assert_eq!(
            "ignored".parse::<FailureStatus>(),
            Ok(FailureStatus::Ignored)
        );
        assert!("closed".parse::<FailureStatus>().is_err());
    }
}
