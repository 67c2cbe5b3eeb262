//! The harness every end-to-end test uses: real NATS and Postgres (started when they are not
//! running), the sandbox for vendors, and billsync's services started in-process on port 0.
//!
//! Each test gets its own NATS prefix and its own database, so tests run in parallel and
//! never see each other or leftovers.

mod binary;
pub mod chaos;
mod otlp;
pub mod pipeline;
mod process;
mod servers;
mod stack;
pub mod workload;

pub use binary::{billsync_binary, sandbox_binary};
pub use otlp::{OtlpCollector, ReceivedSpan};
pub use process::{ProcessConfig, ProcessDeployment};
pub use servers::{
    ensure_nats, ensure_postgres, fresh_database, PrivateNats, PrivatePostgres, TestDatabase,
};
pub use stack::{
    consumer_backlog, report_spec_checks, sandbox_request_counts, Stack, StackOptions,
};

use std::future::Future;
use std::time::{Duration, Instant};

/// Installs billsync's logging and tracing once per test process, as the binaries do, so
/// that trace context is propagated exactly as in production. `RUST_LOG` shows more.
pub fn init_telemetry() {
    static GUARD: std::sync::OnceLock<Option<billsync_telemetry::TelemetryGuard>> =
        std::sync::OnceLock::new();
    GUARD.get_or_init(|| {
        let config = billsync_config::TelemetryConfig {
            log_level: "warn".into(),
            ..Default::default()
        };
        billsync_telemetry::init("billsync-e2e", &config).ok()
    });
}

/// A loopback port free now, for a process the test starts (which binds it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A prefix no other test uses: `t` + 10 hex digits.
pub fn unique_prefix() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// Polls `check` every 50 ms until it yields `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to 60 s for `/readyz` on each of these loopback ports to answer 200.
pub async fn wait_ready(ports: &[u16]) {
    let http = reqwest::Client::new();
    for port in ports {
        let url = format!("http://127.0.0.1:{port}/readyz");
        eventually(
            &format!("{url} to answer 200"),
            Duration::from_secs(60),
            || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    let response = http.get(&url).send().await.ok()?;
                    response.status().is_success().then_some(())
                }
            },
        )
        .await;
    }
}

/// Deletes every stream and KV bucket of the deployment with NATS prefix `prefix`, so that
/// a test leaves nothing behind on the shared server.
pub async fn remove_deployment(nats: &async_nats::Client, prefix: &str) {
    let js = async_nats::jetstream::new(nats.clone());
    billsync_bus::Topology::new(prefix).remove_all(&js).await;
}
