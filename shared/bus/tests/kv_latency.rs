//! Reading a key that exists must be as quick as reading one that does not (nats-server 2.9).

use std::time::{Duration, Instant};

mod support;

#[tokio::test]
async fn kv_reads_are_prompt() {
    let client = async_nats::connect(support::nats_url())
        .await
        .expect("NATS");
    let js = async_nats::jetstream::new(client);
    let (topology, settings) = support::fresh_topology();
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
