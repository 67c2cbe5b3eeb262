//! `POST /webhooks/stripe/{connection}`: verify, translate, publish, then answer.

use super::event::{self, StripeEvent};
use crate::{IngestError, IngestState};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

#[tracing::instrument(
    name = "stripe_webhook",
    skip_all,
    fields(connection = %connection, event_id = tracing::field::Empty, event_type = tracing::field::Empty)
)]
pub async fn receive(
    State(state): State<Arc<IngestState>>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), IngestError> {
    let result = handle(&state, &connection, &headers, body).await;
    let label = match &result {
        Ok(Outcome::Published { duplicate: false }) => "accepted",
        Ok(Outcome::Published { duplicate: true }) => "duplicate",
        Ok(Outcome::Unsubscribed) => "unsubscribed_type",
        Ok(Outcome::ResourceNotSynced) => "resource_not_synced",
        Ok(Outcome::Unlinked) => "unlinked",
        Err(error) => error.label(),
    };
    // Unknown connection names come from the URL; keep the label set bounded.
    let connection_label = if state.stripe.contains_key(&connection) {
        connection.clone()
    } else {
        "unknown".into()
    };
    metrics::counter!("billsync_ingest_webhooks_total", "source" => "stripe",
        "connection" => connection_label, "result" => label)
    .increment(1);
    match result {
        Ok(Outcome::Published { duplicate }) => Ok((
            StatusCode::OK,
            Json(json!({ "received": true, "duplicate": duplicate })),
        )),
        Ok(Outcome::Unsubscribed) => Ok((
            StatusCode::OK,
            Json(json!({ "received": true, "ignored": "event type not synced" })),
        )),
        Ok(Outcome::ResourceNotSynced) => Ok((
            StatusCode::OK,
            Json(
                json!({ "received": true, "ignored": "no sync of this connection takes this resource" }),
            ),
        )),
        Ok(Outcome::Unlinked) => Ok((
            StatusCode::OK,
            Json(
                json!({ "received": true, "ignored": "the connection is unlinked (enabled = false)" }),
            ),
        )),
        Err(error) => {
            if error.status().is_server_error() {
                tracing::warn!(reason = %error, "Webhook not stored; Stripe will retry.");
            } else {
                tracing::info!(reason = %error, "Webhook refused.");
            }
            Err(error)
        }
    }
}

enum Outcome {
    Published {
        duplicate: bool,
    },
    Unsubscribed,
    ResourceNotSynced,
    /// The connection, or every sync of it, is switched off.
    Unlinked,
}

async fn handle(
    state: &IngestState,
    connection: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Outcome, IngestError> {
    let endpoint = state
        .stripe
        .get(connection)
        .ok_or_else(|| IngestError::UnknownConnection(connection.to_string()))?;
    let signature = headers
        .get("stripe-signature")
        .ok_or(IngestError::MissingSignature)?
        .to_str()
        .map_err(|_| IngestError::MalformedSignature("not ASCII"))?;
    let body = axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|error| {
            if is_length_limit(&error) {
                IngestError::TooLarge {
                    limit: state.max_body_bytes,
                }
            } else {
                IngestError::UnreadableBody(error.to_string())
            }
        })?;
    endpoint
        .verifier
        .verify(signature, &body, chrono::Utc::now().timestamp())?;

    if !endpoint.linked {
        return Ok(Outcome::Unlinked);
    }
    let stripe_event: StripeEvent =
        serde_json::from_slice(&body).map_err(|e| IngestError::MalformedEvent(e.to_string()))?;
    let span = tracing::Span::current();
    span.record("event_id", stripe_event.id.as_str());
    span.record("event_type", stripe_event.event_type.as_str());
    if !event::is_subscribed(&stripe_event.event_type) {
        metrics::counter!("billsync_ingest_unsubscribed_events_total", "source" => "stripe")
            .increment(1);
        return Ok(Outcome::Unsubscribed);
    }
    if !endpoint.takes(event::object_kind(&stripe_event.event_type)) {
        return Ok(Outcome::ResourceNotSynced);
    }
    let encoded =
        event::encode(&endpoint.name, &stripe_event).map_err(IngestError::MalformedEvent)?;
    let subject = state.publisher.topology().event_subject(&encoded.envelope);
    let headers = state.publisher.event_headers(&encoded.envelope);
    let published = state
        .publisher
        .publish(subject, &encoded.envelope.id, encoded.payload, headers)
        .await
        .map_err(|error| {
            tracing::warn!(%error, "Publishing to JetStream failed.");
            IngestError::Unavailable
        })?;
    Ok(Outcome::Published {
        duplicate: published.duplicate,
    })
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
