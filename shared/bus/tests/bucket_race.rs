//! Replicas starting together all open the same buckets: every one of them must get it,
//! whichever creates it (JetStream answers the others "subjects overlap" or "stream name
//! already in use").

use billsync_bus::{StreamSettings, Topology};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_opening_a_new_bucket_at_once_all_get_it() {
    let url =
        std::env::var("BILLSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(60),
        replicas: 1,
        retention: Duration::from_secs(3600),
    };
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
