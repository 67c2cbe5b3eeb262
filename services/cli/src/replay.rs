//! `billsync replay`: re-delivers a time range of the events stream to one destination, with
//! a progress bar (see `billsync_errors::replay` for what is replayed and how).

use crate::operator::{parse_time_arg, TimeArg};
use anyhow::Context;
use billsync_config::Config;
use billsync_errors::replay::{self, ReplayProgress, ReplayRequest};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::Write;

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The destination connection that receives the events (a [[destinations.*]] name);
    /// no other destination sees them.
    #[arg(long)]
    pub destination: String,
    /// Only events of this source connection [default: every source that syncs to the
    /// destination].
    #[arg(long)]
    pub connection: Option<String>,
    /// Events that entered billsync at or after this time: RFC 3339, a date (UTC), or an age
    /// such as 30m, 2h, 7d.
    #[arg(long, value_parser = parse_time_arg)]
    pub since: TimeArg,
    /// Events that entered billsync before this time [default: up to now].
    #[arg(long, value_parser = parse_time_arg)]
    pub until: Option<TimeArg>,
    /// Names this replay. The same name never sends an event twice within the stream's
    /// duplicate window, so an interrupted replay can simply be run again; by default it is
    /// derived from the other options as written (`--since 2h` run again later is the same
    /// replay). Give a new one to replay the same range again.
    #[arg(long)]
    pub request_id: Option<String>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
}

impl ReplayArgs {
    pub fn request(&self) -> ReplayRequest {
        ReplayRequest {
            destination: self.destination.clone(),
            connection: self.connection.clone(),
            since: self.since.at,
            until: self.until.as_ref().map(|t| t.at),
            request_id: self.request_id.clone(),
            range_as_given: (self.since.relative
                || self.until.as_ref().is_some_and(|t| t.relative))
            .then(|| {
                format!(
                    "since {} until {}",
                    self.since.text,
                    self.until.as_ref().map_or("now", |t| t.text.as_str())
                )
            }),
        }
    }
}

/// Runs the replay and writes its summary to `out`.
pub async fn execute(
    config: &Config,
    args: &ReplayArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let request = args.request();
    // Refuse a bad request before connecting anywhere.
    replay::sources(config, &request)?;
    let client = billsync_bus::connect(&config.nats.url, "billsync-replay").await?;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} events read · {msg}",
        )
        .expect("a valid progress template"),
    );
    let summary = replay::replay(config, client.clone(), &request, |progress| {
        bar.set_length(progress.total.max(progress.scanned));
        bar.set_position(progress.scanned);
        bar.set_message(counts(progress));
    })
    .await
    .with_context(|| format!("replaying to {}", request.destination))?;
    bar.finish_and_clear();
    client.flush().await.ok();

    let p = &summary.progress;
    writeln!(
        out,
        "Replayed {} event(s) to {} from {} (entered billsync {} – {}).",
        p.replayed,
        request.destination,
        summary.sources.join(", "),
        request.since.to_rfc3339(),
        request
            .until
            .map(|t| t.to_rfc3339())
            .unwrap_or_else(|| "the start of this replay".into()),
    )?;
    writeln!(out, "  {}", counts(p))?;
    if let (Some(first), Some(last)) = (summary.first_sequence, summary.last_sequence) {
        writeln!(out, "  stream sequences {first}–{last}")?;
    }
    writeln!(out, "  request id {}", summary.request_id)?;
    if p.duplicates > 0 {
        writeln!(
            out,
            "  {} event(s) were already sent by an earlier run of this replay and were not sent \
             again; pass --request-id with a new name to replay them once more.",
            p.duplicates
        )?;
    }
    Ok(())
}

fn counts(p: &ReplayProgress) -> String {
    format!(
        "{} read, {} replayed, {} already sent, {} not for this destination",
        p.scanned, p.replayed, p.duplicates, p.skipped
    )
}
