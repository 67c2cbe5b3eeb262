//! What every billsync service shares at run time: logs, traces, metrics, health, shutdown.

mod ops;
mod tracing_setup;

pub use ops::{ops_router, serve_ops, Readiness};
pub use tracing_setup::{init, TelemetryGuard};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often recorded histogram samples are folded into their summaries.
pub const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder; installed on first use so that `billsync up`, which
/// runs every service in one process, serves one consistent set of metrics.
///
/// A histogram sample is kept raw until the recorder's upkeep folds it into its summary;
/// rendering `/metrics` does that too, but a service nobody scrapes would grow by every
/// sample (about 30 bytes per event in a worker). A thread of its own runs the upkeep, so
/// memory stays flat with or without Prometheus, whatever runtime the caller has.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed by an embedding program; ours then
            // only renders what it records, which is still correct for its own endpoint.
            let _ = metrics::set_global_recorder(recorder);
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(METRICS_UPKEEP_EVERY);
                    upkeep.run_upkeep();
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "Could not start the metrics upkeep thread; histogram samples are folded only when /metrics is scraped.");
            }
            handle
        })
        .clone()
}

/// A token cancelled on SIGTERM or SIGINT: services stop taking work, finish what is in
/// flight, and return.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown signal received; finishing in-flight work.");
        trigger.cancel();
    });
    token
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
