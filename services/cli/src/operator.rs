//! `billsync errors list|ignore|retry|export` and `billsync runs`: the operator's actions
//! on sync errors and sync runs, through the errors service's admin API.

use crate::admin_api::AdminClient;
use anyhow::{bail, Context};
use billsync_config::{Config, ConnectionKind};
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, NaiveDateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::PathBuf;

/// Where the admin API is.
#[derive(Debug, Clone, Default, Args)]
pub struct AdminArgs {
    /// Base URL of the errors service, e.g. http://errors.internal:8090 [default: from
    /// errors.listen in the configuration]. The token is errors.admin_token.
    #[arg(long, global = true, env = "BILLSYNC_ERRORS_URL")]
    pub url: Option<String>,
}

/// Which failures; every option narrows the selection.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Destination kind: activecampaign, zoho or pipedrive; a destination connection's name
    /// is taken as --connection NAME.
    #[arg(long)]
    pub destination: Option<String>,
    /// A destination or source connection name.
    #[arg(long)]
    pub connection: Option<String>,
    /// Source kind: stripe or chargebee.
    #[arg(long)]
    pub source: Option<String>,
    /// Error class: rejected, retries_exhausted, configuration or invalid_event.
    #[arg(long)]
    pub class: Option<String>,
    /// open (default), ignored or resolved.
    #[arg(long)]
    pub status: Option<String>,
    /// Text in the message, record key, event id or event type.
    #[arg(long)]
    pub q: Option<String>,
    /// Last seen at or after: RFC 3339, a date (UTC), or an age such as 30m, 2h, 7d.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Last seen before (same forms as --since).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
}

impl FilterArgs {
    /// The filter as the API's string fields.
    fn fields(&self) -> Vec<(&'static str, String)> {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        [
            ("destination", self.destination.clone()),
            ("connection", self.connection.clone()),
            ("source", self.source.clone()),
            ("class", self.class.clone()),
            ("status", self.status.clone()),
            ("q", self.q.clone()),
            ("since", self.since.as_ref().map(time)),
            ("until", self.until.as_ref().map(time)),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| (name, v)))
        .collect()
    }

    fn body(&self) -> Value {
        Value::Object(
            self.fields()
                .into_iter()
                .map(|(name, value)| (name.to_string(), Value::String(value)))
                .collect::<Map<_, _>>(),
        )
    }

    fn is_empty(&self) -> bool {
        self.fields().is_empty()
    }

    /// `--destination` names a kind, but people type the connection they see everywhere
    /// (`--destination ac-main`): a configured destination connection's name is taken as
    /// `--connection` instead of being refused by the API.
    fn with_connection_names(mut self, config: &Config) -> anyhow::Result<Self> {
        let Some(value) = self.destination.clone() else {
            return Ok(self);
        };
        if DESTINATION_KINDS.contains(&value.as_str()) {
            return Ok(self);
        }
        let is_destination = matches!(
            config.connection_kind(&value),
            Some(ConnectionKind::Destination(_))
        );
        match (&self.connection, is_destination) {
            (None, true) => {
                self.destination = None;
                self.connection = Some(value);
                Ok(self)
            }
            (Some(other), true) => bail!(
                "--destination takes a destination kind ({}); {value} is a connection, and \
                 --connection {other} is given already",
                DESTINATION_KINDS.join(", ")
            ),
            (_, false) => bail!(
                "--destination takes a destination kind ({}) or a destination connection's \
                 name; {value:?} is neither (connections: {})",
                DESTINATION_KINDS.join(", "),
                config
                    .destination_connections()
                    .into_iter()
                    .map(|(_, name)| name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

/// What `--destination` takes.
const DESTINATION_KINDS: &[&str] = &["activecampaign", "zoho", "pipedrive"];

#[derive(Debug, Clone, Subcommand)]
pub enum ErrorsCommand {
    /// List sync errors, most recent first, as a table.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Rows per page (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Continue after a previous page (the cursor it printed).
        #[arg(long)]
        cursor: Option<String>,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ignore one failure, or every open failure matching the filters (--all): it leaves the
    /// list and the CSV, and the record does not sync to that destination until it changes.
    Ignore {
        /// The failure's id (first column of `billsync errors list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every open failure matching the filters.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Retry one failure, or every failure matching the filters (--all): the stored event
    /// goes back to the one destination that failed, never to the others.
    Retry {
        /// The failure's id (first column of `billsync errors list`).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<i64>,
        /// Every failure matching the filters (open ones unless --status says otherwise).
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Write the open failures matching the filters to a CSV file (ignored ones are never
    /// included, and no secret is).
    Export {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// `billsync runs [<run_id>]`.
#[derive(Debug, Clone, Args)]
pub struct RunsArgs {
    /// Show this run's records; without it, list the runs.
    pub run_id: Option<String>,
    /// With a run id: only records with this outcome (synced, failed, skipped).
    #[arg(long, requires = "run_id")]
    pub status: Option<String>,
    /// Rows per page (1 to 500).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Continue after a previous page (the cursor it printed).
    #[arg(long)]
    pub cursor: Option<String>,
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Runs an `errors` subcommand, writing what it did to `out`.
pub async fn errors(
    config: &Config,
    admin: &AdminArgs,
    command: ErrorsCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let client = AdminClient::from_config(config, admin.url.as_deref())?;
    let command = command.with_connection_names(config)?;
    match command {
        ErrorsCommand::List {
            filter,
            limit,
            cursor,
            json,
        } => {
            let mut query = filter.fields();
            query.push(("limit", limit.to_string()));
            if let Some(cursor) = cursor {
                query.push(("cursor", cursor));
            }
            let page = client.get_json("/api/v1/failures", &query).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&page)?)?;
            } else {
                print_failures(&page, out)?;
            }
        }
        ErrorsCommand::Ignore { id, all, filter } => {
            let target = target(id, all, &filter)?;
            match target {
                Some(id) => {
                    let row = client
                        .post_json(&format!("/api/v1/failures/{id}/ignore"), &json!({}))
                        .await?;
                    writeln!(
                        out,
                        "Ignored failure {id} ({} at {}): it will not sync there again until it changes.",
                        text(&row["record_key"]),
                        text(&row["destination_connection"]),
                    )?;
                }
                None => {
                    let answer = client
                        .post_json("/api/v1/failures/ignore", &filter.body())
                        .await?;
                    writeln!(out, "Ignored {} failure(s).", answer["ignored"])?;
                }
            }
        }
        ErrorsCommand::Retry { id, all, filter } => match target(id, all, &filter)? {
            Some(id) => {
                client
                    .post_json(&format!("/api/v1/failures/{id}/retry"), &json!({}))
                    .await?;
                writeln!(
                    out,
                    "Retry of failure {id} sent to its destination; it is marked resolved once it syncs."
                )?;
            }
            None => {
                let answer = client
                    .post_json("/api/v1/failures/retry", &filter.body())
                    .await?;
                write!(out, "Sent {} retr", answer["retried"])?;
                let one = answer["retried"] == 1;
                write!(out, "{}", if one { "y" } else { "ies" })?;
                if answer["skipped"].as_u64().unwrap_or(0) > 0 {
                    write!(
                        out,
                        "; {} failure(s) skipped because their stored event cannot be read",
                        answer["skipped"]
                    )?;
                }
                writeln!(out, ".")?;
            }
        },
        ErrorsCommand::Export { out: path, filter } => {
            if filter.status.as_deref().is_some_and(|s| s != "open") {
                bail!("the CSV holds open failures only (ignored ones are never exported); drop --status");
            }
            let rows = export(&client, &filter, &path).await?;
            writeln!(out, "Wrote {rows} failure(s) to {}.", path.display())?;
        }
    }
    Ok(())
}

impl ErrorsCommand {
    /// The command with its filter's `--destination` read as a connection where it names one.
    fn with_connection_names(self, config: &Config) -> anyhow::Result<Self> {
        Ok(match self {
            ErrorsCommand::List {
                filter,
                limit,
                cursor,
                json,
            } => ErrorsCommand::List {
                filter: filter.with_connection_names(config)?,
                limit,
                cursor,
                json,
            },
            ErrorsCommand::Ignore { id, all, filter } => ErrorsCommand::Ignore {
                id,
                all,
                filter: filter.with_connection_names(config)?,
            },
            ErrorsCommand::Retry { id, all, filter } => ErrorsCommand::Retry {
                id,
                all,
                filter: filter.with_connection_names(config)?,
            },
            ErrorsCommand::Export { out, filter } => ErrorsCommand::Export {
                out,
                filter: filter.with_connection_names(config)?,
            },
        })
    }
}

/// The single failure to act on, or `None` for all matching the filters.
fn target(id: Option<i64>, all: bool, filter: &FilterArgs) -> anyhow::Result<Option<i64>> {
    match (id, all) {
        (Some(_), _) if !filter.is_empty() => {
            bail!("filters select failures for --all; with an id, give no filter")
        }
        (Some(id), _) => Ok(Some(id)),
        (None, true) => Ok(None),
        (None, false) => {
            bail!("give a failure id, or --all for every failure matching the filters")
        }
    }
}

/// Streams the CSV into `path` (through a temporary file, so a failed download leaves no
/// half file behind); the number of rows.
async fn export(
    client: &AdminClient,
    filter: &FilterArgs,
    path: &std::path::Path,
) -> anyhow::Result<u64> {
    let mut response = client.get("/api/v1/failures.csv", &filter.fields()).await?;
    let partial = path.with_extension("csv.partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut lines = 0u64;
    let mut in_quotes = false;
    let written = async {
        while let Some(chunk) = response.chunk().await.context("downloading the CSV")? {
            // Rows end in CRLF outside quotes; a quoted message may hold line breaks.
            for &byte in chunk.iter() {
                match byte {
                    b'"' => in_quotes = !in_quotes,
                    b'\n' if !in_quotes => lines += 1,
                    _ => {}
                }
            }
            file.write_all(&chunk)
                .with_context(|| format!("writing {}", partial.display()))?;
        }
        file.sync_all()
            .with_context(|| format!("writing {}", partial.display()))?;
        anyhow::Ok(())
    }
    .await;
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, path)
        .with_context(|| format!("moving {} to {}", partial.display(), path.display()))?;
    Ok(lines.saturating_sub(1))
}

/// Runs `billsync runs`.
pub async fn runs(config: &Config, args: RunsArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    let client = AdminClient::from_config(config, args.admin.url.as_deref())?;
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(cursor) = &args.cursor {
        query.push(("cursor", cursor.clone()));
    }
    match &args.run_id {
        None => {
            let page = client.get_json("/api/v1/runs", &query).await?;
            let rows: Vec<Vec<String>> = items(&page)
                .iter()
                .map(|run| {
                    vec![
                        text(&run["run_id"]),
                        time(&run["started_at"]),
                        time(&run["last_outcome_at"]),
                        text(&run["total"]),
                        text(&run["synced"]),
                        text(&run["failed"]),
                        text(&run["skipped"]),
                    ]
                })
                .collect();
            if rows.is_empty() {
                writeln!(out, "No sync runs.")?;
            } else {
                table(
                    out,
                    &[
                        "RUN",
                        "STARTED",
                        "LAST OUTCOME",
                        "RECORDS",
                        "SYNCED",
                        "FAILED",
                        "SKIPPED",
                    ],
                    &rows,
                )?;
            }
            next_page(out, &page["next_cursor"])?;
        }
        Some(run_id) => {
            if let Some(status) = &args.status {
                query.push(("status", status.clone()));
            }
            let path = format!("/api/v1/runs/{}", path_segment(run_id));
            let run = client.get_json(&path, &query).await?;
            writeln!(
                out,
                "Run {}: started {}, {} record(s): {} synced, {} failed, {} skipped.",
                text(&run["run_id"]),
                time(&run["started_at"]),
                run["total"],
                run["synced"],
                run["failed"],
                run["skipped"],
            )?;
            let records = run["records"].as_array().cloned().unwrap_or_default();
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|record| {
                    vec![
                        text(&record["record_key"]),
                        text(&record["destination_connection"]),
                        text(&record["status"]),
                        clip(&text(&record["reason"]), 80),
                        time(&record["at"]),
                    ]
                })
                .collect();
            if !rows.is_empty() {
                table(
                    out,
                    &["RECORD", "DESTINATION", "OUTCOME", "REASON", "AT"],
                    &rows,
                )?;
            }
            next_page(out, &run["next_cursor"])?;
        }
    }
    Ok(())
}

fn print_failures(page: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = items(page)
        .iter()
        .map(|f| {
            vec![
                text(&f["id"]),
                time(&f["last_seen"]),
                format!(
                    "{}/{}",
                    text(&f["destination"]),
                    text(&f["destination_connection"])
                ),
                format!(
                    "{}/{}",
                    text(&f["source_connection"]),
                    text(&f["record_key"])
                ),
                text(&f["error_class"]),
                text(&f["count"]),
                text(&f["status"]),
                clip(&text(&f["message"]), 80),
            ]
        })
        .collect();
    if rows.is_empty() {
        writeln!(out, "No sync errors match.")?;
    } else {
        table(
            out,
            &[
                "ID",
                "LAST SEEN",
                "DESTINATION",
                "RECORD",
                "CLASS",
                "COUNT",
                "STATUS",
                "MESSAGE",
            ],
            &rows,
        )?;
    }
    next_page(out, &page["next_cursor"])
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().cloned().unwrap_or_default()
}

fn next_page(out: &mut dyn Write, cursor: &Value) -> anyhow::Result<()> {
    if let Some(cursor) = cursor.as_str() {
        writeln!(out, "More: repeat with --cursor {cursor}")?;
    }
    Ok(())
}

/// Left-aligned columns, two spaces apart.
pub(crate) fn table(
    out: &mut dyn Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A JSON value as table text: strings unquoted, null empty.
fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time(value: &Value) -> String {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            t.with_timezone(&Utc)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| text(value))
}

/// One line of at most `max` characters.
fn clip(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut clipped: String = flat.chars().take(max.saturating_sub(1)).collect();
        clipped.push('…');
        clipped
    }
}

/// `run_id` as one URL path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A time on the command line: RFC 3339, `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS]` (UTC), or
/// an age before now: `90s`, `30m`, `2h`, `7d`.
/// A time given on the command line: the instant it means now, and how it was written.
#[derive(Debug, Clone)]
pub struct TimeArg {
    pub at: DateTime<Utc>,
    pub text: String,
    /// An age (`30m`, `2h`, `7d`) rather than a date or time.
    pub relative: bool,
}

/// [`parse_time`], keeping the text and whether it was an age.
pub fn parse_time_arg(text: &str) -> Result<TimeArg, String> {
    let at = parse_time(text)?;
    let trimmed = text.trim();
    let relative = trimmed.len() > 1
        && trimmed.ends_with(['s', 'm', 'h', 'd'])
        && trimmed[..trimmed.len() - 1].parse::<i64>().is_ok();
    Ok(TimeArg {
        at,
        text: trimmed.to_string(),
        relative,
    })
}

pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(time) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(time.and_utc());
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc());
    }
    let unit = text.chars().last().unwrap_or(' ');
    let amount = text[..text.len() - unit.len_utf8().min(text.len())].parse::<i64>();
    let age = match (amount, unit) {
        (Ok(n), 's') => Some(ChronoDuration::seconds(n)),
        (Ok(n), 'm') => Some(ChronoDuration::minutes(n)),
        (Ok(n), 'h') => Some(ChronoDuration::hours(n)),
        (Ok(n), 'd') => Some(ChronoDuration::days(n)),
        _ => None,
    };
    match age {
        Some(age) if age >= ChronoDuration::zero() => Ok(Utc::now() - age),
        _ => Err(format!(
            "{text:?} is not a time: use RFC 3339 (2024-05-01T12:00:00Z), a date (2024-05-01, UTC) or an age (30m, 2h, 7d)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_every_documented_form() {
        assert_eq!(
            parse_time("2024-05-01T12:00:00+02:00").expect("rfc3339"),
            parse_time("2024-05-01T10:00:00Z").expect("rfc3339")
        );
        assert_eq!(
            parse_time("2024-05-01").expect("date").to_rfc3339(),
            "2024-05-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2024-05-01T10:30")
                .expect("minutes")
                .to_rfc3339(),
            "2024-05-01T10:30:00+00:00"
        );
        let two_hours_ago = parse_time("2h").expect("age");
        let expected = Utc::now() - ChronoDuration::hours(2);
        assert!((two_hours_ago - expected).num_seconds().abs() < 5);
        for bad in ["yesterday", "2h30", "-5m", "", "h"] {
            assert!(parse_time(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn tables_align_columns() {
        let mut out = Vec::new();
        table(
            &mut out,
            &["ID", "NAME"],
            &[
                vec!["1".into(), "short".into()],
                vec!["1234".into(), "x".into()],
            ],
        )
        .expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "ID    NAME\n1     short\n1234  x\n"
        );
    }

    #[test]
    fn messages_are_clipped_to_one_line() {
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdefghij", 5), "abcd…");
        assert_eq!(path_segment("run 1/x"), "run%201%2Fx");
    }

    #[test]
    fn an_id_and_filters_do_not_mix() {
        let filter = FilterArgs {
            connection: Some("ac".into()),
            ..Default::default()
        };
        assert!(target(Some(1), false, &filter).is_err());
        assert_eq!(
            target(Some(1), false, &FilterArgs::default()).expect("id"),
            Some(1)
        );
        assert_eq!(target(None, true, &filter).expect("all"), None);
        assert!(target(None, false, &filter).is_err());
    }
}
