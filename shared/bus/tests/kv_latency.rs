//! Reading a key that exists must be as quick as reading one that does not (nats-server 2.9).

use billsync_bus::{StreamSettings, Topology};
use std::time::{Duration, Instant};

#[tokio::test]
async fn kv_reads_are_prompt() {
    let url =
        std::env::var("BILLSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let topology = Topology::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(60),
        replicas: 1,
        retention: Duration::from_secs(3600),
    };
    let store = topology
        .ensure_bucket(&js, topology.versions_bucket(), &settings, Duration::ZERO)
        .await
        .expect("bucket");
    let started = Instant::now();
    assert!(store.get("a.missing").await.expect("get").is_none());
    let missing = started.elapsed();
    store.put("a.present", "v".into()).await.expect("put");
    let started = Instant::now();
    assert_eq!(
        store.get("a.present").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
    let present = started.elapsed();
    let _ = js.delete_key_value(topology.versions_bucket()).await;
    assert!(
        missing < Duration::from_secs(1) && present < Duration::from_secs(1),
        "missing {missing:?}, present {present:?}"
    );
}
