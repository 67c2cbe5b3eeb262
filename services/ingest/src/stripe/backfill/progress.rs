//! How a backfill shows its progress: a bar with counts and rate on a terminal, plain lines
//! when stderr is not one, structured logs inside the ingest service.

use super::super::StripeResource;
use super::store::{BackfillRun, ResourceCursor};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Told about each step of a run; every method has a no-op default.
pub trait Progress: Send + Sync {
    fn lease_wait(&self, _holder: &str, _expires_at_ms: i64) {}
    fn run_started(&self, _run: &BackfillRun, _resumed: bool) {}
    fn resource_started(&self, _resource: StripeResource, _cursor: &ResourceCursor) {}
    fn page_done(&self, _resource: StripeResource, _cursor: &ResourceCursor) {}
    fn resource_finished(&self, _resource: StripeResource, _cursor: &ResourceCursor) {}
}

/// Progress as log events (the ingest service's automatic historical sync).
pub struct TracingProgress;

impl Progress for TracingProgress {
    fn lease_wait(&self, holder: &str, _expires_at_ms: i64) {
        tracing::info!(%holder, "Backfill lease held elsewhere; waiting.");
    }
    fn run_started(&self, run: &BackfillRun, resumed: bool) {
        tracing::info!(run_id = %run.run_id, resources = ?run.resources, resumed, "Backfill started.");
    }
    fn page_done(&self, resource: StripeResource, cursor: &ResourceCursor) {
        if cursor.pages.is_multiple_of(50) {
            tracing::info!(%resource, published = cursor.published, pages = cursor.pages, "Backfill progress.");
        }
    }
    fn resource_finished(&self, resource: StripeResource, cursor: &ResourceCursor) {
        tracing::info!(%resource, published = cursor.published, skipped = cursor.skipped, "Backfill of a resource finished.");
    }
}

/// Progress for a person at `billsync backfill`: an indicatif bar per resource on a TTY,
/// a line every few pages otherwise (CI logs, pipes).
pub struct TerminalProgress {
    tty: bool,
    state: Mutex<BarState>,
}

struct BarState {
    bar: Option<ProgressBar>,
    started: Instant,
    /// Objects already published when this process took the resource up (a resumed run).
    resumed_at: u64,
}

impl Default for TerminalProgress {
    fn default() -> Self {
        Self::new(std::io::stderr().is_terminal())
    }
}

impl TerminalProgress {
    pub fn new(tty: bool) -> Self {
        Self {
            tty,
            state: Mutex::new(BarState {
                bar: None,
                started: Instant::now(),
                resumed_at: 0,
            }),
        }
    }

    fn rate(state: &BarState, cursor: &ResourceCursor) -> f64 {
        let secs = state.started.elapsed().as_secs_f64().max(0.001);
        (cursor.published + cursor.skipped).saturating_sub(state.resumed_at) as f64 / secs
    }
}

impl Progress for TerminalProgress {
    fn lease_wait(&self, holder: &str, expires_at_ms: i64) {
        let left = (expires_at_ms - chrono::Utc::now().timestamp_millis()).max(0) / 1000;
        eprintln!("Another backfill of this connection holds the lease ({holder}, up to {left} s more); waiting…");
    }

    fn run_started(&self, run: &BackfillRun, resumed: bool) {
        let verb = if resumed { "Resuming" } else { "Starting" };
        eprintln!(
            "{verb} backfill {} of {}.",
            run.run_id,
            run.resources.join(", ")
        );
    }

    fn resource_started(&self, resource: StripeResource, cursor: &ResourceCursor) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.started = Instant::now();
        state.resumed_at = cursor.published + cursor.skipped;
        if !self.tty {
            if cursor.pages > 0 {
                eprintln!("{resource}: resuming after {} published", cursor.published);
            }
            return;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner:.green} {prefix:<17} {pos:>8} published {msg} [{elapsed_precise}]",
            )
            .expect("a valid progress template"),
        );
        bar.set_prefix(resource.name().to_string());
        bar.set_position(cursor.published);
        bar.enable_steady_tick(Duration::from_millis(120));
        state.bar = Some(bar);
    }

    fn page_done(&self, resource: StripeResource, cursor: &ResourceCursor) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rate = Self::rate(&state, cursor);
        match &state.bar {
            Some(bar) => {
                bar.set_position(cursor.published);
                bar.set_message(format!(
                    "· {} skipped · {} pages · {rate:.0} objects/s",
                    cursor.skipped, cursor.pages
                ));
            }
            None if cursor.pages.is_multiple_of(10) => eprintln!(
                "{resource}: {} published, {} skipped, {} pages, {rate:.0} objects/s",
                cursor.published, cursor.skipped, cursor.pages
            ),
            None => {}
        }
    }

    fn resource_finished(&self, resource: StripeResource, cursor: &ResourceCursor) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let rate = Self::rate(&state, cursor);
        let line = format!(
            "{resource}: {} published, {} skipped, {} pages, {rate:.0} objects/s",
            cursor.published, cursor.skipped, cursor.pages
        );
        match state.bar.take() {
            Some(bar) => bar.finish_with_message(format!(
                "· {} skipped · {} pages · {rate:.0} objects/s · done",
                cursor.skipped, cursor.pages
            )),
            None => eprintln!("{line} (done)"),
        }
    }
}
