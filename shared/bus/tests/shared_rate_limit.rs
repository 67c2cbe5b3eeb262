//! Two replicas sharing one account's rate never exceed it together (real NATS).

use billsync_bus::{SharedRateLimiter, StreamSettings, Topology};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test]
async fn two_replicas_together_stay_under_the_rate() {
    let url =
        std::env::var("BILLSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url)
        .await
        .expect("NATS must run (make test starts it)");
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
        .ensure_bucket(
            &js,
            topology.rate_limits_bucket(),
            &settings,
            Duration::ZERO,
        )
        .await
        .expect("bucket");
    // Two limiters on one key stand for two worker replicas.
    let a = Arc::new(SharedRateLimiter::new(
        store.clone(),
        "activecampaign.acct",
        10,
    ));
    let b = Arc::new(SharedRateLimiter::new(
        store.clone(),
        "activecampaign.acct",
        10,
    ));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for limiter in [a, b] {
        for _ in 0..3 {
            let limiter = Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                let mut at = Vec::new();
                for _ in 0..5 {
                    limiter.acquire().await;
                    at.push(start.elapsed());
                }
                at
            }));
        }
    }
    let mut times: Vec<Duration> = Vec::new();
    for task in tasks {
        times.extend(task.await.expect("task"));
    }
    times.sort();
    assert_eq!(times.len(), 30);
    // 30 requests at 10/s: at least 2.9 s, and never more than 10 (+1 at a window edge) in
    // any one-second window.
    assert!(times[29] >= Duration::from_millis(2_850), "{:?}", times[29]);
    for (i, t) in times.iter().enumerate() {
        let in_window = times[i..]
            .iter()
            .take_while(|u| **u < *t + Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 11,
            "{in_window} requests within 1 s from {t:?}"
        );
    }
    let _ = js.delete_key_value(topology.rate_limits_bucket()).await;
}
