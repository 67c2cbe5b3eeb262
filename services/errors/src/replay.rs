//! Replaying a time range of the events stream to one destination connection
//! (`billsync replay --destination D [--connection C] --since T [--until T]`).
//!
//! An ephemeral consumer reads the events stream from `since` (the time each event entered
//! billsync) up to `until` or to the end the stream had when the replay started. Every event
//! of a source connection that syncs to the destination is published on that destination's
//! replay subject, where its worker applies it even if it already has; no other destination
//! sees it. Message ids are `replay:{request id}:{stream sequence}`, so running the same
//! replay again within the stream's duplicate window resends only what is missing.

use async_nats::jetstream::{self, consumer};
use billsync_bus::{PublishError, Publisher, Topology};
use billsync_config::{Config, ConnectionKind};
use billsync_events::BillingEvent;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long the server keeps the replay's consumer after the replay stops reading.
const CONSUMER_INACTIVE_THRESHOLD: Duration = Duration::from_secs(60);
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// What an operator asked to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    /// The destination connection that receives the events.
    pub destination: String,
    /// Only this source connection's events; every source that syncs to `destination` when
    /// unset.
    pub connection: Option<String>,
    /// Events that entered the stream at or after this time...
    pub since: DateTime<Utc>,
    /// ...and before this one; up to the end of the stream when unset.
    pub until: Option<DateTime<Utc>>,
    /// Names this replay in message ids. Unset, it is derived from the other fields, so the
    /// same command run twice (after an interruption, say) does not send an event twice.
    pub request_id: Option<String>,
    /// The range as the operator wrote it, when it is relative (`--since 2h`): the default
    /// request id then comes from these words rather than from the instants they resolved
    /// to, so the same command run again later is the same replay and resends nothing it
    /// already sent.
    pub range_as_given: Option<String>,
}

impl ReplayRequest {
    /// The request id given, or one derived from the destination, connection and range.
    pub fn request_id(&self) -> String {
        if let Some(id) = self.request_id.as_deref().filter(|id| !id.is_empty()) {
            return id.to_string();
        }
        let range = match &self.range_as_given {
            Some(given) => format!("as given: {given}"),
            None => format!(
                "{}|{}",
                self.since.to_rfc3339_opts(SecondsFormat::Nanos, true),
                self.until
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::Nanos, true))
                    .unwrap_or_default()
            ),
        };
        let described = format!(
            "{}|{}|{range}",
            self.destination,
            self.connection.as_deref().unwrap_or("*"),
        );
        hex::encode(&Sha256::digest(described.as_bytes())[..8])
    }
}

/// How far a replay got; reported after every message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayProgress {
    /// Messages from `since` on when the replay started (of the chosen source connection
    /// when there is one): an upper bound of what it reads.
    pub total: u64,
    /// Messages read.
    pub scanned: u64,
    /// Events published to the destination's replay subject.
    pub replayed: u64,
    /// Events an earlier run of the same request already sent (dropped by JetStream).
    pub duplicates: u64,
    /// Messages not replayed: of a source that does not sync to the destination, or not a
    /// billing event.
    pub skipped: u64,
}

/// What a finished replay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    pub request_id: String,
    /// The source connections whose events were replayed.
    pub sources: Vec<String>,
    pub progress: ReplayProgress,
    /// Stream sequences of the first and last event replayed.
    pub first_sequence: Option<u64>,
    pub last_sequence: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{destination:?} is not a destination connection of this configuration (destinations: {known})")]
    UnknownDestination { destination: String, known: String },
    #[error("no [[syncs]] entry feeds destination {0:?}, so there is nothing to replay to it")]
    NoSyncs(String),
    #[error("the sync from {connection:?} to {destination:?} is unlinked (enabled = false on it or on its source); link it again before replaying to it")]
    Unlinked {
        connection: String,
        destination: String,
    },
    #[error("source connection {connection:?} does not sync to {destination:?} (sources that do: {sources})")]
    NotSynced {
        connection: String,
        destination: String,
        sources: String,
    },
    #[error("--until ({until}) must be later than --since ({since})")]
    EmptyRange {
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    #[error("reading the events stream failed: {0}")]
    Stream(async_nats::Error),
    #[error("publishing the event at stream sequence {sequence} failed after {replayed} were replayed (run the same command again to resume): {source}")]
    Publish {
        sequence: u64,
        replayed: u64,
        #[source]
        source: PublishError,
    },
}

/// The source connections whose events go to the destination, checked against the config.
pub fn sources(config: &Config, request: &ReplayRequest) -> Result<Vec<String>, ReplayError> {
    if !matches!(
        config.connection_kind(&request.destination),
        Some(ConnectionKind::Destination(_))
    ) {
        let known: Vec<&str> = config
            .destinations
            .activecampaign
            .iter()
            .map(|c| c.name.as_str())
            .chain(config.destinations.zoho.iter().map(|c| c.name.as_str()))
            .chain(
                config
                    .destinations
                    .pipedrive
                    .iter()
                    .map(|c| c.name.as_str()),
            )
            .collect();
        return Err(ReplayError::UnknownDestination {
            destination: request.destination.clone(),
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        });
    }
    if let Some(until) = request.until {
        if until <= request.since {
            return Err(ReplayError::EmptyRange {
                since: request.since,
                until,
            });
        }
    }
    if let Some(connection) = &request.connection {
        if config
            .syncs_to(&request.destination)
            .any(|sync| &sync.source == connection && !config.sync_active(sync))
        {
            return Err(ReplayError::Unlinked {
                connection: connection.clone(),
                destination: request.destination.clone(),
            });
        }
    }
    // Unlinked syncs are left out: their worker would not write what it is sent.
    let mut sources: Vec<String> = config
        .syncs_to(&request.destination)
        .filter(|sync| config.sync_active(sync))
        .map(|sync| sync.source.clone())
        .collect();
    sources.sort();
    sources.dedup();
    if sources.is_empty() {
        return Err(ReplayError::NoSyncs(request.destination.clone()));
    }
    match &request.connection {
        None => Ok(sources),
        Some(connection) if sources.contains(connection) => Ok(vec![connection.clone()]),
        Some(connection) => Err(ReplayError::NotSynced {
            connection: connection.clone(),
            destination: request.destination.clone(),
            sources: sources.join(", "),
        }),
    }
}

/// Replays `request`, calling `on_progress` after each message read.
pub async fn replay(
    config: &Config,
    client: async_nats::Client,
    request: &ReplayRequest,
    mut on_progress: impl FnMut(&ReplayProgress),
) -> Result<ReplaySummary, ReplayError> {
    let sources = sources(config, request)?;
    let request_id = request.request_id();
    let topology = Topology::new(&config.nats.prefix);
    let js = jetstream::new(client);
    let publisher = Publisher::new(js.clone(), topology.clone(), PUBLISH_TIMEOUT);
    let stream_error = |e: &dyn std::fmt::Display| ReplayError::Stream(e.to_string().into());

    let mut stream = js
        .get_stream(topology.events_stream())
        .await
        .map_err(|e| stream_error(&e))?;
    // Events published after this point are delivered live; the replay stops before them.
    let end_sequence = stream
        .info()
        .await
        .map_err(|e| stream_error(&e))?
        .state
        .last_sequence;
    // With one source connection the server filters; with several, this loop does.
    let filter_subject = match sources.as_slice() {
        [only] => match config.connection_kind(only) {
            Some(ConnectionKind::Source(kind)) => topology.source_events_subjects(kind, only),
            _ => topology.events_subjects(),
        },
        _ => topology.events_subjects(),
    };
    let mut consumer = stream
        .create_consumer(consumer::pull::Config {
            description: Some(format!(
                "billsync replay {request_id} to {}",
                request.destination
            )),
            deliver_policy: start_at(request.since),
            ack_policy: consumer::AckPolicy::None,
            filter_subject,
            inactive_threshold: CONSUMER_INACTIVE_THRESHOLD,
            ..Default::default()
        })
        .await
        .map_err(|e| stream_error(&e))?;
    let info = consumer.info().await.map_err(|e| stream_error(&e))?;
    let consumer_name = info.name.clone();
    let mut progress = ReplayProgress {
        total: info.num_pending,
        ..Default::default()
    };
    let mut summary = ReplaySummary {
        request_id: request_id.clone(),
        sources: sources.clone(),
        progress,
        first_sequence: None,
        last_sequence: None,
    };
    on_progress(&progress);
    if progress.total == 0 || end_sequence == 0 {
        let _ = stream.delete_consumer(&consumer_name).await;
        return Ok(summary);
    }

    let until_nanos = request.until.and_then(|t| t.timestamp_nanos_opt());
    let mut messages = consumer.messages().await.map_err(|e| stream_error(&e))?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| stream_error(&e))?;
        let (sequence, published_nanos, pending) = {
            let info = message.info().map_err(|e| stream_error(&e))?;
            (
                info.stream_sequence,
                info.published.unix_timestamp_nanos(),
                info.pending,
            )
        };
        if sequence > end_sequence {
            break;
        }
        if until_nanos.is_some_and(|until| published_nanos >= i128::from(until)) {
            break;
        }
        progress.scanned += 1;
        match serde_json::from_slice::<BillingEvent>(&message.payload) {
            Ok(mut event) if sources.contains(&event.v1().connection) => {
                // The place it had in the events stream orders it among its second's events.
                let BillingEvent::V1(v1) = &mut event;
                v1.version.sequence = Some(sequence);
                let msg_id = format!("replay:{request_id}:{sequence}");
                let published = publisher
                    .publish_replay(&request.destination, &event, &msg_id)
                    .await
                    .map_err(|source| ReplayError::Publish {
                        sequence,
                        replayed: progress.replayed,
                        source,
                    })?;
                if published.duplicate {
                    progress.duplicates += 1;
                } else {
                    progress.replayed += 1;
                }
                summary.first_sequence.get_or_insert(sequence);
                summary.last_sequence = Some(sequence);
            }
            Ok(_) => progress.skipped += 1,
            Err(error) => {
                tracing::warn!(%error, sequence, "Not replaying a message that is not a billing event.");
                progress.skipped += 1;
            }
        }
        on_progress(&progress);
        if pending == 0 || sequence >= end_sequence {
            break;
        }
    }
    drop(messages);
    let _ = stream.delete_consumer(&consumer_name).await;
    summary.progress = progress;
    Ok(summary)
}

/// `DeliverPolicy::ByStartTime` at `since`. async-nats takes a `time::OffsetDateTime`; going
/// through the policy's serde form (RFC 3339, as the server reads it) spares billsync a
/// second date-time crate.
fn start_at(since: DateTime<Utc>) -> consumer::DeliverPolicy {
    serde_json::from_value(serde_json::json!({
        "deliver_policy": "by_start_time",
        "opt_start_time": since.to_rfc3339_opts(SecondsFormat::Nanos, true),
    }))
    .expect("an RFC 3339 time is a valid opt_start_time")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        std::env::set_var("BILLSYNC_REPLAY_TEST_SECRET", "s3cret-value");
        Config::from_toml(
            r#"
[[sources.stripe]]
name = "stripe-a"
webhook_secrets = [{ env = "BILLSYNC_REPLAY_TEST_SECRET" }]

[[sources.stripe]]
name = "stripe-b"
webhook_secrets = [{ env = "BILLSYNC_REPLAY_TEST_SECRET" }]

[[destinations.activecampaign]]
name = "ac-one"
base_url = "http://127.0.0.1:9"
api_token = { env = "BILLSYNC_REPLAY_TEST_SECRET" }

[[destinations.activecampaign]]
name = "ac-idle"
base_url = "http://127.0.0.1:9"
api_token = { env = "BILLSYNC_REPLAY_TEST_SECRET" }

[[syncs]]
source = "stripe-b"
destination = "ac-one"

[[syncs]]
source = "stripe-a"
destination = "ac-one"
"#,
            Path::new("replay-test.toml"),
        )
        .expect("valid config")
    }

    fn request(destination: &str, connection: Option<&str>) -> ReplayRequest {
        ReplayRequest {
            destination: destination.into(),
            connection: connection.map(str::to_string),
            since: DateTime::from_timestamp(1_700_000_000, 0).expect("time"),
            until: None,
            request_id: None,
            range_as_given: None,
        }
    }

    #[test]
    fn sources_are_those_syncing_to_the_destination() {
        let config = config();
        assert_eq!(
            sources(&config, &request("ac-one", None)).expect("sources"),
            vec!["stripe-a", "stripe-b"]
        );
        assert_eq!(
            sources(&config, &request("ac-one", Some("stripe-b"))).expect("sources"),
            vec!["stripe-b"]
        );
    }

    #[test]
    fn requests_that_cannot_replay_anything_are_refused() {
        let config = config();
        let unknown = sources(&config, &request("stripe-a", None)).expect_err("a source");
        assert!(unknown.to_string().contains("ac-one, ac-idle"), "{unknown}");
        assert!(matches!(
            sources(&config, &request("ac-idle", None)),
            Err(ReplayError::NoSyncs(_))
        ));
        assert!(matches!(
            sources(&config, &request("ac-one", Some("stripe-c"))),
            Err(ReplayError::NotSynced { .. })
        ));
        let mut backwards = request("ac-one", None);
        backwards.until = Some(backwards.since);
        assert!(matches!(
            sources(&config, &backwards),
            Err(ReplayError::EmptyRange { .. })
        ));
    }

    #[test]
    fn request_ids_are_stable_per_request_and_differ_between_requests() {
        let a = request("ac-one", None);
        assert_eq!(a.request_id(), request("ac-one", None).request_id());
        assert_eq!(a.request_id().len(), 16);
        assert_ne!(
            a.request_id(),
            request("ac-one", Some("stripe-a")).request_id()
        );
        let mut later = a.clone();
        later.until = Some(later.since + chrono::Duration::hours(1));
        assert_ne!(a.request_id(), later.request_id());
        let mut named = a.clone();
        named.request_id = Some("again-1".into());
        assert_eq!(named.request_id(), "again-1");
        // `--since 2h` run now and a minute later: one replay.
        let mut relative = a.clone();
        relative.range_as_given = Some("since 2h".into());
        let mut a_minute_later = relative.clone();
        a_minute_later.since += chrono::Duration::minutes(1);
        assert_eq!(relative.request_id(), a_minute_later.request_id());
        assert_ne!(relative.request_id(), a.request_id());
    }

    #[test]
    fn the_start_time_reaches_the_consumer_policy() {
        let since = DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("time");
        let policy = start_at(since);
        let json = serde_json::to_value(policy).expect("serialize");
        assert_eq!(json["deliver_policy"], "by_start_time");
        assert_eq!(json["opt_start_time"], "2023-11-14T22:13:20.123456789Z");
    }
}
