//! `billsync status`: how the deployment of the configured prefix stands: its streams, each
//! consumer's backlog, the Chargebee poll cursors, and the open failures per destination
//! connection (from the errors service). Only an unreachable NATS makes it fail.

use crate::admin_api::{AdminApiError, AdminClient};
use crate::operator::{table, AdminArgs};
use anyhow::bail;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamError, GetStreamErrorKind};
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{self, ErrorCode};
use billsync_bus::Topology;
use billsync_config::Config;
use billsync_events::DestinationKind;
use billsync_ingest::chargebee::cursor::CursorStore;
use billsync_ingest::chargebee::PollCursor;
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

/// How long to try reaching NATS before reporting it unreachable.
const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the errors service may take to answer before it counts as unreachable.
const ERRORS_SERVICE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// What one lookup found.
#[derive(Debug, Clone, PartialEq)]
enum Found<T> {
    Present(T),
    /// Not created yet.
    Missing,
    /// The lookup itself failed.
    Failed(String),
}

impl<T> Found<T> {
    fn state(&self) -> &'static str {
        match self {
            Found::Present(_) => "ok",
            Found::Missing => "not_created",
            Found::Failed(_) => "error",
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Found::Failed(error) => Some(error),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct StreamFigures {
    messages: u64,
    bytes: u64,
    first_sequence: u64,
    last_sequence: u64,
}

#[derive(Debug, Clone, PartialEq)]
struct StreamStatus {
    /// `events`, `outcomes` or `replay`.
    role: &'static str,
    name: String,
    found: Found<StreamFigures>,
}

#[derive(Debug, Clone, PartialEq)]
struct ConsumerFigures {
    /// Not yet delivered.
    pending: u64,
    /// Delivered, not yet acked.
    in_flight: usize,
    redelivered: usize,
}

/// Whose consumer it is, which says who creates it.
#[derive(Debug, Clone, PartialEq)]
enum ConsumerOwner {
    Worker {
        destination: DestinationKind,
        connection: String,
    },
    Replay {
        destination: DestinationKind,
        connection: String,
    },
    Errors,
}

impl ConsumerOwner {
    fn role(&self) -> &'static str {
        match self {
            ConsumerOwner::Worker { .. } => "worker",
            ConsumerOwner::Replay { .. } => "replay",
            ConsumerOwner::Errors => "errors",
        }
    }

    fn not_created(&self) -> &'static str {
        match self {
            ConsumerOwner::Worker { .. } | ConsumerOwner::Replay { .. } => {
                "not created (the worker has not started)"
            }
            ConsumerOwner::Errors => "not created (the errors service has not started)",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct ConsumerStatus {
    owner: ConsumerOwner,
    name: String,
    stream: String,
    found: Found<ConsumerFigures>,
}

#[derive(Debug, Clone, PartialEq)]
struct CursorStatus {
    connection: String,
    /// `Missing`: the connection was never polled.
    found: Found<PollCursor>,
}

#[derive(Debug, Clone, PartialEq)]
struct OpenCount {
    destination: String,
    connection: String,
    open: u64,
}

/// The errors service's answer about open failures.
#[derive(Debug, Clone, PartialEq)]
enum OpenFailures {
    Counted {
        url: String,
        counts: Vec<OpenCount>,
    },
    Unreachable {
        url: String,
        reason: String,
    },
    /// It answered with an error, or cannot be asked (no admin token).
    Unavailable {
        url: Option<String>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
struct StatusReport {
    nats_url: String,
    prefix: String,
    now: DateTime<Utc>,
    streams: Vec<StreamStatus>,
    consumers: Vec<ConsumerStatus>,
    cursors: Vec<CursorStatus>,
    open_failures: OpenFailures,
}

/// Gathers the status and writes it to `out`, as tables or JSON.
pub async fn execute(
    config: &Config,
    args: &StatusArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let report = gather(config, args).await?;
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report.to_json())?)?;
    } else {
        report.render(out)?;
    }
    Ok(())
}

async fn gather(config: &Config, args: &StatusArgs) -> anyhow::Result<StatusReport> {
    // Credentials in the URL go into the connect options and never into the output.
    let url = &billsync_bus::setup::redact_url(&config.nats.url);
    let (options, address) =
        billsync_bus::setup::connect_options(&config.nats.url, "billsync-status")?;
    // One attempt, unlike the services' connection (which waits for NATS forever): a status
    // report says at once that NATS cannot be reached.
    let client = match options
        .connection_timeout(NATS_CONNECT_TIMEOUT)
        .connect(address.as_slice())
        .await
    {
        Ok(client) => client,
        Err(error) => bail!(
            "cannot reach NATS at {url} ({error}); check that nats-server is running with \
             JetStream (-js) and that nats.url in {} (or BILLSYNC_NATS_URL) points at it",
            config.origin.display()
        ),
    };
    let js = jetstream::new(client.clone());
    let topology = Topology::new(&config.nats.prefix);

    let mut streams = Vec::new();
    let mut handles: BTreeMap<String, Stream> = BTreeMap::new();
    for (role, name) in [
        ("events", topology.events_stream()),
        ("outcomes", topology.outcomes_stream()),
        ("replay", topology.replay_stream()),
    ] {
        let found = match js.get_stream(&name).await {
            Ok(stream) => {
                let state = &stream.cached_info().state;
                let figures = StreamFigures {
                    messages: state.messages,
                    bytes: state.bytes,
                    first_sequence: state.first_sequence,
                    last_sequence: state.last_sequence,
                };
                handles.insert(name.clone(), stream);
                Found::Present(figures)
            }
            Err(error) if is_stream_not_found(&error) => Found::Missing,
            Err(error) if streams.is_empty() && error.kind() == GetStreamErrorKind::Request => {
                bail!(
                    "NATS at {url} does not answer JetStream requests ({error}); check that \
                     nats-server runs with JetStream enabled (-js)"
                )
            }
            Err(error) => Found::Failed(error.to_string()),
        };
        streams.push(StreamStatus { role, name, found });
    }

    let mut consumers = Vec::new();
    for (destination, connection) in config.destination_connections() {
        consumers.push(ConsumerStatus {
            name: topology.worker_consumer(&connection),
            stream: topology.events_stream(),
            owner: ConsumerOwner::Worker {
                destination,
                connection: connection.clone(),
            },
            found: Found::Missing,
        });
        consumers.push(ConsumerStatus {
            name: topology.replay_consumer(&connection),
            stream: topology.replay_stream(),
            owner: ConsumerOwner::Replay {
                destination,
                connection,
            },
            found: Found::Missing,
        });
    }
    consumers.push(ConsumerStatus {
        name: topology.errors_consumer(),
        stream: topology.outcomes_stream(),
        owner: ConsumerOwner::Errors,
        found: Found::Missing,
    });
    for consumer in &mut consumers {
        if let Some(stream) = handles.get(&consumer.stream) {
            consumer.found = consumer_figures(stream, &consumer.name).await;
        }
    }

    let cursors = cursors(config, &js, &topology).await;
    let open_failures = open_failures(config, args).await;
    Ok(StatusReport {
        nats_url: url.clone(),
        prefix: config.nats.prefix.clone(),
        now: Utc::now(),
        streams,
        consumers,
        cursors,
        open_failures,
    })
}

fn is_stream_not_found(error: &GetStreamError) -> bool {
    matches!(error.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

async fn consumer_figures(stream: &Stream, name: &str) -> Found<ConsumerFigures> {
    match stream.consumer_info(name).await {
        Ok(info) => Found::Present(ConsumerFigures {
            pending: info.num_pending,
            in_flight: info.num_ack_pending,
            redelivered: info.num_redelivered,
        }),
        Err(error)
            if matches!(
                error.kind(),
                ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
            ) =>
        {
            Found::Missing
        }
        Err(error) => Found::Failed(error.to_string()),
    }
}

/// Each Chargebee connection's cursor, read without creating the bucket.
async fn cursors(
    config: &Config,
    js: &jetstream::Context,
    topology: &Topology,
) -> Vec<CursorStatus> {
    let names = config.sources.chargebee.iter().map(|c| c.name.clone());
    let bucket = match js.get_key_value(topology.cursors_bucket()).await {
        Ok(bucket) => Ok(bucket),
        // No bucket: no poller ever ran under this prefix.
        Err(error) if source_is_stream_not_found(&error) => Err(Found::Missing),
        Err(error) => Err(Found::Failed(error.to_string())),
    };
    let mut cursors = Vec::new();
    for connection in names {
        let found = match &bucket {
            Ok(bucket) => match CursorStore::new(bucket.clone(), &connection).load().await {
                Ok(Some((cursor, _revision))) => Found::Present(cursor),
                Ok(None) => Found::Missing,
                Err(error) => Found::Failed(error.to_string()),
            },
            Err(found) => found.clone(),
        };
        cursors.push(CursorStatus { connection, found });
    }
    cursors
}

/// `error` and, after it, each cause its own message does not already tell (the HTTP
/// client's top message names the URL; the reason, e.g. "connection refused", is below it).
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn source_is_stream_not_found(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = error.source();
    while let Some(error) = source {
        if let Some(error) = error.downcast_ref::<GetStreamError>() {
            return is_stream_not_found(error);
        }
        source = error.source();
    }
    false
}

/// Open failures per destination connection: every configured one (0 when it has none) and
/// any other the errors service still counts.
async fn open_failures(config: &Config, args: &StatusArgs) -> OpenFailures {
    let client = match AdminClient::from_config(config, args.admin.url.as_deref()) {
        Ok(client) => client.with_timeout(ERRORS_SERVICE_TIMEOUT),
        Err(error) => {
            return OpenFailures::Unavailable {
                url: None,
                reason: format!("{error:#}"),
            }
        }
    };
    let url = client.base().to_string();
    let answer = match client.get_json("/api/v1/failures/summary", &[]).await {
        Ok(answer) => answer,
        Err(error @ AdminApiError::Unreachable { .. }) => {
            return OpenFailures::Unreachable {
                url,
                reason: with_causes(&error),
            }
        }
        Err(error) => {
            return OpenFailures::Unavailable {
                url: Some(url),
                reason: error.to_string(),
            }
        }
    };
    let mut counts: Vec<OpenCount> = config
        .destination_connections()
        .into_iter()
        .map(|(destination, connection)| OpenCount {
            destination: destination.as_str().to_string(),
            connection,
            open: 0,
        })
        .collect();
    for item in answer["items"].as_array().into_iter().flatten() {
        let (Some(destination), Some(connection), Some(open)) = (
            item["destination"].as_str(),
            item["destination_connection"].as_str(),
            item["open"].as_u64(),
        ) else {
            continue;
        };
        match counts.iter_mut().find(|c| c.connection == connection) {
            Some(count) => count.open = open,
            None => counts.push(OpenCount {
                destination: destination.to_string(),
                connection: connection.to_string(),
                open,
            }),
        }
    }
    OpenFailures::Counted { url, counts }
}

impl StatusReport {
    fn render(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        writeln!(out, "NATS {}, prefix {}", self.nats_url, self.prefix)?;

        writeln!(out)?;
        let rows: Vec<Vec<String>> = self
            .streams
            .iter()
            .map(|s| match &s.found {
                Found::Present(f) => vec![
                    s.name.clone(),
                    f.messages.to_string(),
                    bytes(f.bytes),
                    f.first_sequence.to_string(),
                    f.last_sequence.to_string(),
                    String::new(),
                ],
                other => dashes(&s.name, 4, note(other, "not created")),
            })
            .collect();
        noted_table(
            out,
            &["STREAM", "MESSAGES", "BYTES", "FIRST", "LAST", "NOTE"],
            &rows,
        )?;

        writeln!(out)?;
        let rows: Vec<Vec<String>> = self
            .consumers
            .iter()
            .map(|c| {
                let mut row = match &c.found {
                    Found::Present(f) => vec![
                        c.name.clone(),
                        f.pending.to_string(),
                        f.in_flight.to_string(),
                        f.redelivered.to_string(),
                        String::new(),
                    ],
                    other => dashes(&c.name, 3, note(other, c.owner.not_created())),
                };
                row.insert(1, c.stream.clone());
                row
            })
            .collect();
        noted_table(
            out,
            &[
                "CONSUMER",
                "STREAM",
                "PENDING",
                "IN FLIGHT",
                "REDELIVERED",
                "NOTE",
            ],
            &rows,
        )?;

        writeln!(out)?;
        if self.cursors.is_empty() {
            writeln!(out, "No Chargebee connection is configured.")?;
        } else {
            let rows: Vec<Vec<String>> = self
                .cursors
                .iter()
                .map(|c| match &c.found {
                    Found::Present(cursor) => vec![
                        c.connection.clone(),
                        cursor_time(cursor)
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                        cursor_time(cursor)
                            .map(|t| age(self.now - t))
                            .unwrap_or_default(),
                        cursor
                            .polled_at
                            .map(|t| format!("{} ago", age(self.now - t)))
                            .unwrap_or_else(|| "-".into()),
                        cursor.polled_by.clone().unwrap_or_else(|| "-".into()),
                        String::new(),
                    ],
                    other => dashes(
                        &c.connection,
                        4,
                        note(other, "no cursor yet (the poller has not run)"),
                    ),
                })
                .collect();
            noted_table(
                out,
                &[
                    "CHARGEBEE",
                    "CURSOR",
                    "CURSOR AGE",
                    "LAST POLL",
                    "POLLED BY",
                    "NOTE",
                ],
                &rows,
            )?;
        }

        writeln!(out)?;
        match &self.open_failures {
            OpenFailures::Counted { counts, .. } if counts.is_empty() => {
                writeln!(out, "No destination connection is configured.")?;
            }
            OpenFailures::Counted { counts, .. } => {
                let rows: Vec<Vec<String>> = counts
                    .iter()
                    .map(|c| {
                        vec![
                            c.destination.clone(),
                            c.connection.clone(),
                            c.open.to_string(),
                        ]
                    })
                    .collect();
                table(out, &["DESTINATION", "CONNECTION", "OPEN FAILURES"], &rows)?;
            }
            OpenFailures::Unreachable { reason, .. } | OpenFailures::Unavailable { reason, .. } => {
                writeln!(out, "Open failures unknown: {reason}")?;
            }
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        let streams: Vec<Value> = self
            .streams
            .iter()
            .map(|s| {
                let mut value = json!({
                    "stream": s.name,
                    "role": s.role,
                    "state": s.found.state(),
                    "error": s.found.error(),
                });
                if let Found::Present(f) = &s.found {
                    extend(
                        &mut value,
                        json!({
                            "messages": f.messages,
                            "bytes": f.bytes,
                            "first_sequence": f.first_sequence,
                            "last_sequence": f.last_sequence,
                        }),
                    );
                }
                value
            })
            .collect();
        let consumers: Vec<Value> = self
            .consumers
            .iter()
            .map(|c| {
                let (destination, connection) = match &c.owner {
                    ConsumerOwner::Worker {
                        destination,
                        connection,
                    }
                    | ConsumerOwner::Replay {
                        destination,
                        connection,
                    } => (Some(destination.as_str()), Some(connection.as_str())),
                    ConsumerOwner::Errors => (None, None),
                };
                let mut value = json!({
                    "consumer": c.name,
                    "stream": c.stream,
                    "role": c.owner.role(),
                    "destination": destination,
                    "destination_connection": connection,
                    "state": c.found.state(),
                    "error": c.found.error(),
                });
                match &c.found {
                    Found::Present(f) => extend(
                        &mut value,
                        json!({
                            "pending": f.pending,
                            "in_flight": f.in_flight,
                            "redelivered": f.redelivered,
                        }),
                    ),
                    Found::Missing => extend(&mut value, json!({ "note": c.owner.not_created() })),
                    Found::Failed(_) => {}
                }
                value
            })
            .collect();
        let cursors: Vec<Value> = self
            .cursors
            .iter()
            .map(|c| {
                let state = match &c.found {
                    Found::Present(_) => "polled",
                    Found::Missing => "not_polled",
                    Found::Failed(_) => "error",
                };
                let mut value = json!({
                    "connection": c.connection,
                    "state": state,
                    "error": c.found.error(),
                });
                if let Found::Present(cursor) = &c.found {
                    let at = cursor_time(cursor);
                    extend(
                        &mut value,
                        json!({
                            "cursor_at": at.map(|t| t.to_rfc3339()),
                            "cursor_age_secs": at.map(|t| (self.now - t).num_seconds()),
                            "event_id": cursor.event_id,
                            "polled_at": cursor.polled_at.map(|t| t.to_rfc3339()),
                            "last_poll_age_secs":
                                cursor.polled_at.map(|t| (self.now - t).num_seconds()),
                            "polled_by": cursor.polled_by,
                        }),
                    );
                }
                value
            })
            .collect();
        let errors_service = match &self.open_failures {
            OpenFailures::Counted { url, counts } => json!({
                "url": url,
                "state": "ok",
                "error": null,
                "open_failures": counts
                    .iter()
                    .map(|c| json!({
                        "destination": c.destination,
                        "destination_connection": c.connection,
                        "open": c.open,
                    }))
                    .collect::<Vec<_>>(),
            }),
            OpenFailures::Unreachable { url, reason } => json!({
                "url": url,
                "state": "unreachable",
                "error": reason,
                "open_failures": null,
            }),
            OpenFailures::Unavailable { url, reason } => json!({
                "url": url,
                "state": "error",
                "error": reason,
                "open_failures": null,
            }),
        };
        json!({
            "nats": { "url": self.nats_url, "prefix": self.prefix },
            "at": self.now.to_rfc3339(),
            "streams": streams,
            "consumers": consumers,
            "chargebee_cursors": cursors,
            "errors_service": errors_service,
        })
    }
}

fn extend(value: &mut Value, more: Value) {
    if let (Value::Object(value), Value::Object(more)) = (value, more) {
        value.extend(more);
    }
}

/// [`table`] with a last NOTE column, left out when no row has a note.
fn noted_table(out: &mut dyn Write, header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    if rows
        .iter()
        .any(|row| row.last().is_some_and(|note| !note.is_empty()))
    {
        return table(out, header, rows);
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row[..row.len().saturating_sub(1)].to_vec())
        .collect();
    table(out, &header[..header.len().saturating_sub(1)], &rows)
}

/// What a row says when its figures are missing.
fn note<T>(found: &Found<T>, missing: &str) -> String {
    match found {
        Found::Present(_) => String::new(),
        Found::Missing => missing.to_string(),
        Found::Failed(error) => format!("cannot read: {error}"),
    }
}

/// A row of `name`, `figures` dashes and the note.
fn dashes(name: &str, figures: usize, note: String) -> Vec<String> {
    let mut row = vec![name.to_string()];
    row.extend(std::iter::repeat_n("-".to_string(), figures));
    row.push(note);
    row
}

fn cursor_time(cursor: &PollCursor) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(cursor.occurred_at, 0)
}

/// A duration as an operator reads it: `45s`, `12m05s`, `3h07m`, `2d04h`.
fn age(duration: chrono::TimeDelta) -> String {
    let seconds = duration.num_seconds().max(0);
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        s => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// A size in binary units: `512 B`, `1.5 KiB`, `3.2 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn ages_and_sizes_read_compactly() {
        assert_eq!(age(TimeDelta::seconds(-3)), "0s");
        assert_eq!(age(TimeDelta::seconds(45)), "45s");
        assert_eq!(age(TimeDelta::seconds(725)), "12m05s");
        assert_eq!(age(TimeDelta::seconds(3 * 3600 + 7 * 60 + 9)), "3h07m");
        assert_eq!(age(TimeDelta::seconds(2 * 86_400 + 4 * 3600)), "2d04h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024), "5.0 MiB");
    }

    fn report() -> StatusReport {
        let now = DateTime::from_timestamp(1_750_000_000, 0).expect("time");
        StatusReport {
            nats_url: "nats://127.0.0.1:4222".into(),
            prefix: "billsync".into(),
            now,
            streams: vec![
                StreamStatus {
                    role: "events",
                    name: "BILLSYNC_EVENTS".into(),
                    found: Found::Present(StreamFigures {
                        messages: 3,
                        bytes: 2048,
                        first_sequence: 1,
                        last_sequence: 3,
                    }),
                },
                StreamStatus {
                    role: "replay",
                    name: "BILLSYNC_REPLAY".into(),
                    found: Found::Missing,
                },
            ],
            consumers: vec![
                ConsumerStatus {
                    owner: ConsumerOwner::Worker {
                        destination: DestinationKind::Activecampaign,
                        connection: "ac".into(),
                    },
                    name: "worker-ac".into(),
                    stream: "BILLSYNC_EVENTS".into(),
                    found: Found::Present(ConsumerFigures {
                        pending: 2,
                        in_flight: 1,
                        redelivered: 0,
                    }),
                },
                ConsumerStatus {
                    owner: ConsumerOwner::Replay {
                        destination: DestinationKind::Activecampaign,
                        connection: "ac".into(),
                    },
                    name: "replay-ac".into(),
                    stream: "BILLSYNC_REPLAY".into(),
                    found: Found::Missing,
                },
            ],
            cursors: vec![
                CursorStatus {
                    connection: "cb".into(),
                    found: Found::Present(PollCursor {
                        occurred_at: now.timestamp() - 125,
                        event_id: Some("ev_1".into()),
                        polled_at: Some(now - TimeDelta::seconds(30)),
                        polled_by: Some("ingest-a".into()),
                    }),
                },
                CursorStatus {
                    connection: "cb-new".into(),
                    found: Found::Missing,
                },
            ],
            open_failures: OpenFailures::Unreachable {
                url: "http://127.0.0.1:8090".into(),
                reason: "cannot reach the errors service at http://127.0.0.1:8090".into(),
            },
        }
    }

    #[test]
    fn the_table_aligns_and_notes_what_is_missing() {
        let mut out = Vec::new();
        report().render(&mut out).expect("render");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "\
NATS nats://127.0.0.1:4222, prefix billsync

STREAM           MESSAGES  BYTES    FIRST  LAST  NOTE
BILLSYNC_EVENTS  3         2.0 KiB  1      3
BILLSYNC_REPLAY  -         -        -      -     not created

CONSUMER   STREAM           PENDING  IN FLIGHT  REDELIVERED  NOTE
worker-ac  BILLSYNC_EVENTS  2        1          0
replay-ac  BILLSYNC_REPLAY  -        -          -            not created (the worker has not started)

CHARGEBEE  CURSOR               CURSOR AGE  LAST POLL  POLLED BY  NOTE
cb         2025-06-15 15:04:35  2m05s       30s ago    ingest-a
cb-new     -                    -           -          -          no cursor yet (the poller has not run)

Open failures unknown: cannot reach the errors service at http://127.0.0.1:8090
"
        );
    }

    #[test]
    fn json_keeps_figures_as_numbers_and_states_as_words() {
        let json = report().to_json();
        assert_eq!(json["streams"][0]["messages"], 3);
        assert_eq!(json["streams"][1]["state"], "not_created");
        assert_eq!(json["consumers"][0]["pending"], 2);
        assert_eq!(json["consumers"][0]["in_flight"], 1);
        assert_eq!(json["consumers"][0]["destination"], "activecampaign");
        assert_eq!(
            json["consumers"][1]["note"],
            "not created (the worker has not started)"
        );
        assert_eq!(json["chargebee_cursors"][0]["cursor_age_secs"], 125);
        assert_eq!(json["chargebee_cursors"][1]["state"], "not_polled");
        assert_eq!(json["errors_service"]["state"], "unreachable");
        assert_eq!(json["errors_service"]["url"], "http://127.0.0.1:8090");
    }
}
