//! HTTP handlers of AC's bulk contact importer: `POST /import/bulk_import` queues a batch,
//! `GET /import/info?batchId=` reports one, `GET /import/bulk_import` lists them by day.
//! They sit behind the same gatekeeper (token, requests per second, faults, request counts)
//! as every v3 route; the importer's own per-minute limits come on top.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::Extension;
use serde_json::json;
use tokio::time::Instant;

use super::bulk_import::ImportRequest;
use super::error::ApiError;
use super::routes::{reply, Reply};
use super::Account;
use crate::kit;

/// `POST /import/bulk_import` → 200 `{"Success": 1, ...}` (the spec's capital `S`; its 400s
/// say `success`). The contacts are written `bulk_import_delay` later, by a timer or by the
/// first request that looks at the account after that, whichever comes first.
pub(crate) async fn queue_import(
    Extension(account): Extension<Arc<Account>>,
    body: Bytes,
) -> Reply {
    let request = ImportRequest::parse(&body)?;
    let queued = request.contacts.len();
    let now = Instant::now();
    if !account.faults().rate_limit_disabled {
        let admitted = kit::lock(&account.import_windows).admit(now, queued);
        if let Err(refused) = admitted {
            account.gate.count_refused();
            return Err(refused);
        }
    }
    let (batch_id, due) = account
        .data()
        .imports
        .queue(request, now, account.bulk_import_delay);
    let timer = Arc::clone(&account);
    tokio::spawn(async move {
        tokio::time::sleep_until(due).await;
        drop(timer.data());
    });
    Ok(reply(
        StatusCode::OK,
        json!({
            "Success": 1,
            "queued_contacts": queued,
            "batchId": batch_id,
            "message": "Contact import queued"
        }),
    ))
}

/// `GET /import/info?batchId=`: 400 without a batch id (spec example); an id the account
/// never issued is a 404 in AC's "No Result found" shape (not in the spec).
pub(crate) async fn import_info(
    Extension(account): Extension<Arc<Account>>,
    Query(query): Query<HashMap<String, String>>,
) -> Reply {
    let batch_id = query
        .get("batchId")
        .map(|id| id.trim())
        .filter(|id| !id.is_empty())
        .ok_or_else(ApiError::batch_id_required)?;
    let info = account
        .data()
        .imports
        .info(batch_id, Instant::now())
        .ok_or_else(|| ApiError::no_result("ImportBatch", batch_id))?;
    Ok(reply(StatusCode::OK, info))
}

/// `GET /import/bulk_import`: outstanding and recently completed batches per day.
pub(crate) async fn import_status_list(Extension(account): Extension<Arc<Account>>) -> Reply {
    let today = chrono::Utc::now().date_naive();
    Ok(reply(
        StatusCode::OK,
        account.data().imports.status_list(today),
    ))
}
