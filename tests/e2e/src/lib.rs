//! The harness every end-to-end test uses: real NATS and Postgres (started when they are not
//! running), the sandbox for vendors, and billsync's services started in-process on port 0.
//!
//! Each test gets its own NATS prefix and its own database, so tests run in parallel and
//! never see each other or leftovers.

mod servers;
mod stack;

pub use servers::{ensure_nats, ensure_postgres, fresh_database, PrivateNats, TestDatabase};
pub use stack::{Stack, StackOptions};

use std::future::Future;
use std::time::{Duration, Instant};

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
