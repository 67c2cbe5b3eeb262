//! What the bus's integration tests share: the test NATS, and a topology of their own.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use billsync_bus::{StreamSettings, Topology};
use std::time::Duration;

/// The test NATS (`make test` starts it).
pub fn nats_url() -> String {
    std::env::var("BILLSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A topology under a fresh prefix, so tests never share streams or buckets, and the
/// single-server settings of its streams.
pub fn fresh_topology() -> (Topology, StreamSettings) {
    let topology = Topology::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(60),
        replicas: 1,
        retention: Duration::from_secs(3600),
    };
    (topology, settings)
}
