//! Replicas starting together all open the same buckets: every one of them must get it,
//! whichever creates it (JetStream answers the others "subjects overlap" or "stream name
//! already in use").

use billsync_bus::{StreamSettings, Topology};
use std::time::Duration;

/// The test NATS server's URL, and single-server stream settings.
fn nats_and_settings() -> (String, StreamSettings) {
    let url =
        std::env::var("BILLSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(60),
        replicas: 1,
        retention: Duration::from_secs(3600),
    };
    (url, settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_opening_a_new_bucket_at_once_all_get_it() {
    let (url, settings) = nats_and_settings();
    for _ in 0..20 {
        let topology = Topology::new(&format!(
            "t{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        ));
        let mut openers = tokio::task::JoinSet::new();
        for _ in 0..8 {
            // Each replica has its own connection, as separate processes do.
            let (url, topology, settings) = (url.clone(), topology.clone(), settings.clone());
            openers.spawn(async move {
                let client = async_nats::connect(url).await.expect("NATS");
                let js = async_nats::jetstream::new(client);
                topology
                    .ensure_bucket(&js, topology.writers_bucket(), &settings, Duration::ZERO)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        }
        while let Some(opened) = openers.join_next().await {
            opened
                .expect("task")
                .expect("every replica opens the bucket");
        }
        let client = async_nats::connect(url.clone()).await.expect("NATS");
        let js = async_nats::jetstream::new(client);
        let _ = js.delete_key_value(topology.writers_bucket()).await;
    }
}

/// On a JetStream cluster a direct get may be answered by a replica that lags behind the
/// leader, so a worker could read a record's applied version from before the last write.
/// Buckets are made without direct gets, and one an earlier billsync made with them is
/// switched when it is opened; buckets holding leases keep the revisions their
/// compare-and-set needs, old ones included.
#[tokio::test]
async fn buckets_read_from_the_leader_and_old_ones_are_switched() {
    let (url, settings) = nats_and_settings();
    let topology = Topology::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    let client = async_nats::connect(url).await.expect("NATS");
    let js = async_nats::jetstream::new(client);

    let fresh = topology
        .ensure_bucket(&js, topology.versions_bucket(), &settings, Duration::ZERO)
        .await
        .expect("a new bucket");
    assert!(!fresh.stream.cached_info().config.allow_direct);
    assert_eq!(
        fresh.stream.cached_info().config.max_messages_per_subject,
        1
    );
    let writers = topology
        .ensure_bucket(&js, topology.writers_bucket(), &settings, Duration::ZERO)
        .await
        .expect("a new bucket");
    assert_eq!(
        writers.stream.cached_info().config.max_messages_per_subject,
        billsync_bus::cas::CAS_HISTORY
    );

    // The links bucket as billsync made it before: a standard KV stream with direct gets.
    let bucket = topology.links_bucket();
    js.create_stream(async_nats::jetstream::stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .expect("an old-style bucket");
    let old = js.get_key_value(&bucket).await.expect("opens");
    old.put("cus_1", "crm-1".into()).await.expect("put");
    let switched = topology
        .ensure_bucket(&js, bucket.clone(), &settings, Duration::ZERO)
        .await
        .expect("the old bucket");
    assert!(!switched.stream.cached_info().config.allow_direct);
    assert_eq!(
        switched
            .stream
            .cached_info()
            .config
            .max_messages_per_subject,
        billsync_bus::cas::CAS_HISTORY,
        "the links bucket holds leases"
    );
    assert_eq!(
        switched.get("cus_1").await.expect("get").as_deref(),
        Some(&b"crm-1"[..]),
        "its entries stay"
    );
    topology.remove_all(&js).await;
}
