//! Publishing to JetStream: deduplicated by message id, traced, and acknowledged.

use crate::topology::{Topology, HEADER_DESTINATIONS, HEADER_MSG_ID, HEADER_REPLAY};
use crate::trace;
use async_nats::jetstream::{self, context::Publish};
use async_nats::HeaderMap;
use billsync_config::Config;
use billsync_events::{BillingEvent, BillingEventV1, Outcome, OutcomeResult};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("JetStream did not accept {subject}: {source}")]
    Rejected {
        subject: String,
        #[source]
        source: async_nats::Error,
    },
    #[error("JetStream did not ack {subject} within {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
}

/// What JetStream said about a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub sequence: u64,
    /// True when the stream already held a message with this id (a redelivered webhook).
    pub duplicate: bool,
}

/// Publishes billsync's messages; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    topology: Topology,
    timeout: Duration,
    /// Source connection → the destination connections it syncs to, comma-separated (the
    /// value of [`HEADER_DESTINATIONS`]); empty for publishers that do not publish events.
    routes: Arc<HashMap<String, String>>,
}

impl Publisher {
    pub fn new(js: jetstream::Context, topology: Topology, timeout: Duration) -> Self {
        Self {
            js,
            topology,
            timeout,
            routes: Arc::default(),
        }
    }

    /// Names on every event the destination connections `config` syncs its source to (the
    /// syncs in force: an unlinked one gets nothing).
    pub fn routing(mut self, config: &Config) -> Self {
        let mut routes: HashMap<String, Vec<&str>> = HashMap::new();
        for sync in config.active_syncs() {
            routes
                .entry(sync.source.clone())
                .or_default()
                .push(&sync.destination);
        }
        self.routes = Arc::new(
            routes
                .into_iter()
                .map(|(source, destinations)| (source, destinations.join(",")))
                .collect(),
        );
        self
    }

    /// The headers every billing event is published with, beside id and trace context.
    pub fn event_headers(&self, event: &BillingEventV1) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let destinations = self.routes.get(&event.connection).map(String::as_str);
        headers.insert(HEADER_DESTINATIONS, destinations.unwrap_or_default());
        headers
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes a billing event on its subject with `Nats-Msg-Id` = the source event id and
    /// returns once the stream has stored it.
    pub async fn publish_event(&self, event: &BillingEvent) -> Result<Published, PublishError> {
        let v1 = event.v1();
        let subject = self.topology.event_subject(v1);
        let payload = Bytes::from(serde_json::to_vec(event)?);
        self.publish(subject, &v1.id, payload, self.event_headers(v1))
            .await
    }

    /// Sends an event back to one destination connection only (retry, replay).
    /// `msg_id` decides deduplication: reuse it for the same replay request.
    pub async fn publish_replay(
        &self,
        destination_connection: &str,
        event: &BillingEvent,
        msg_id: &str,
    ) -> Result<Published, PublishError> {
        let subject = self.topology.replay_subject(destination_connection);
        let payload = Bytes::from(serde_json::to_vec(event)?);
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_REPLAY, "true");
        self.publish(subject, msg_id, payload, headers).await
    }

    /// Reports what a destination did with an event.
    pub async fn publish_outcome(&self, outcome: &Outcome) -> Result<Published, PublishError> {
        let v1 = outcome.v1();
        let status = match v1.result {
            OutcomeResult::Synced { .. } => "synced",
            OutcomeResult::Failed(_) => "failed",
            OutcomeResult::Skipped { .. } => "skipped",
        };
        let subject = self
            .topology
            .outcome_subject(&v1.destination_connection, status);
        // One outcome per (destination, event, attempt time): a worker that crashes after
        // publishing and before acking republishes the same id and is deduplicated.
        let msg_id = format!(
            "{}:{}:{}",
            v1.destination_connection,
            v1.event_id,
            v1.at.timestamp_micros()
        );
        let payload = Bytes::from(serde_json::to_vec(outcome)?);
        self.publish(subject, &msg_id, payload, HeaderMap::new())
            .await
    }

    /// Publishes raw bytes with dedupe id and trace context, waiting for the stream's ack.
    pub async fn publish(
        &self,
        subject: String,
        msg_id: &str,
        payload: Bytes,
        mut headers: HeaderMap,
    ) -> Result<Published, PublishError> {
        headers.insert(HEADER_MSG_ID, msg_id);
        // A span of its own, whose context the message carries: the consumer's span becomes
        // its child, so a trace reads webhook → publish → deliver → CRM request.
        let span = tracing::info_span!(
            "publish",
            subject = %subject,
            stream_sequence = tracing::field::Empty,
            duplicate = tracing::field::Empty,
        );
        trace::inject(&span, &mut headers);
        let publish = Publish::build().payload(payload).headers(headers);
        let attempt = async {
            let ack_future = self
                .js
                .send_publish(subject.clone(), publish)
                .await
                .map_err(|e| PublishError::Rejected {
                    subject: subject.clone(),
                    source: e.into(),
                })?;
            ack_future.await.map_err(|e| PublishError::Rejected {
                subject: subject.clone(),
                source: e.into(),
            })
        };
        let ack = tokio::time::timeout(self.timeout, attempt)
            .instrument(span.clone())
            .await
            .map_err(|_| PublishError::Timeout {
                subject: subject.clone(),
                timeout: self.timeout,
            })??;
        span.record("stream_sequence", ack.sequence);
        span.record("duplicate", ack.duplicate);
        Ok(Published {
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }
}
