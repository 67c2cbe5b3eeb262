//! `/api/v1/runs`: sync runs (initial sync, sync all, backfills) and what became of each record.

use super::params::{encode_cursor, Page, RunListParams, RunParams};
use super::{ApiPath, ApiQuery, ApiState};
use crate::error::ApiError;
use crate::scrub::storable;
use crate::store;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

/// `GET /api/v1/runs?limit=&cursor=`: latest first, with per-status counts.
pub async fn list(
    State(state): State<ApiState>,
    ApiQuery(params): ApiQuery<RunListParams>,
) -> Result<Json<Value>, ApiError> {
    let Page { limit, after } = params.page()?;
    let mut items =
        store::list_runs(state.db.pool()?, state.db.deployment(), after, limit + 1).await?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items
            .last()
            .map(|run| encode_cursor(run.started_at, &run.run_id))
    } else {
        None
    };
    Ok(Json(json!({ "items": items, "next_cursor": next_cursor })))
}

/// `GET /api/v1/runs/{run_id}?status=&limit=&cursor=`: the summary and a page of records.
pub async fn get_one(
    State(state): State<ApiState>,
    ApiPath(run_id): ApiPath<String>,
    ApiQuery(params): ApiQuery<RunParams>,
) -> Result<Json<Value>, ApiError> {
    let status = params.status()?;
    let (limit, after_id) = params.page()?;
    let run_id = storable(&run_id).into_owned();
    let pool = state.db.pool()?;
    let summary = store::get_run(pool, state.db.deployment(), &run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no run with id {run_id:?}")))?;
    let mut records = store::run_records(
        pool,
        state.db.deployment(),
        &run_id,
        status,
        after_id,
        limit + 1,
    )
    .await?;
    let next_cursor = if records.len() > limit as usize {
        records.truncate(limit as usize);
        records.last().map(|record| record.id.to_string())
    } else {
        None
    };
    for record in &mut records {
        if let Some(reason) = &record.reason {
            record.reason = Some(state.scrubber.text(reason));
        }
    }
    let mut body = json!(summary);
    body["records"] = json!(records);
    body["next_cursor"] = json!(next_cursor);
    Ok(Json(body))
}
