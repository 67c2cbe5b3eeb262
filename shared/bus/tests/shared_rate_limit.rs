//! Two replicas sharing one account's rate never exceed it together (real NATS).

use async_nats::jetstream::{self, kv};
use billsync_bus::rate_limit::MAX_BACK_OFF;
use billsync_bus::{SharedRateLimiter, Topology};

mod support;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A rate-limits bucket of a fresh prefix on the test NATS.
async fn bucket() -> (jetstream::Context, Topology, kv::Store) {
    let client = async_nats::connect(support::nats_url())
        .await
        .expect("NATS must run (make test starts it)");
    let js = jetstream::new(client);
    let (topology, settings) = support::fresh_topology();
    let store = topology
        .ensure_bucket(
            &js,
            topology.rate_limits_bucket(),
            &settings,
            Duration::ZERO,
        )
        .await
        .expect("bucket");
    (js, topology, store)
}

#[tokio::test]
async fn a_retry_after_of_a_day_pauses_every_replica_for_at_most_five_minutes() {
    let (js, topology, store) = bucket().await;
    let limiter = SharedRateLimiter::new(store.clone(), "activecampaign.acct", 5);
    limiter.back_off(Duration::from_secs(86_400)).await;
    let slot: u64 = String::from_utf8(
        store
            .get("activecampaign.acct")
            .await
            .expect("read the slot")
            .expect("back_off wrote the slot")
            .to_vec(),
    )
    .expect("utf-8")
    .parse()
    .expect("microseconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64;
    let pause = Duration::from_micros(slot.saturating_sub(now));
    assert!(
        pause > MAX_BACK_OFF - Duration::from_secs(5) && pause <= MAX_BACK_OFF,
        "every replica now waits {pause:?}"
    );
    let _ = js.delete_key_value(topology.rate_limits_bucket()).await;
}

#[tokio::test]
async fn two_replicas_together_stay_under_the_rate() {
    let (js, topology, store) = bucket().await;
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

/// A backlog of waiters in one process is granted slots at the configured rate. Each waiter
/// once raced the others' compare-and-set on the slot: every loser read again, so the KV
/// round trips per granted slot grew with the backlog and the limiter granted far fewer
/// slots per second than configured (a worker fell behind a 125 webhooks/s load for good).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_in_one_process_is_granted_at_the_configured_rate() {
    let (js, topology, store) = bucket().await;
    let limiter = Arc::new(SharedRateLimiter::new(store, "activecampaign.busy", 1_000));
    let waiters = 800;
    let start = Instant::now();
    let tasks: Vec<_> = (0..waiters)
        .map(|_| {
            let limiter = Arc::clone(&limiter);
            tokio::spawn(async move { limiter.acquire().await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let elapsed = start.elapsed();
    // The rate allows 800 slots in 0.82 s; lost races made it several times that.
    assert!(
        elapsed < Duration::from_millis(2_500),
        "{waiters} waiters at 1,000/s took {elapsed:?}"
    );
    let _ = js.delete_key_value(topology.rate_limits_bucket()).await;
}

/// A backlog takes its slots in blocks: far fewer KV writes than requests, and two busy
/// replicas together still never exceed the rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_replicas_reserve_slots_in_blocks_and_keep_the_rate() {
    let (js, topology, store) = bucket().await;
    let key = "activecampaign.blocks";
    let rate = 200;
    let replicas = [
        Arc::new(SharedRateLimiter::new(store.clone(), key, rate)),
        Arc::new(SharedRateLimiter::new(store.clone(), key, rate)),
    ];
    let start = Instant::now();
    let mut tasks = Vec::new();
    for limiter in &replicas {
        for _ in 0..100 {
            let limiter = Arc::clone(limiter);
            tasks.push(tokio::spawn(async move {
                limiter.acquire().await;
                start.elapsed()
            }));
        }
    }
    let mut times = Vec::new();
    for task in tasks {
        times.push(task.await.expect("task"));
    }
    times.sort();
    let writes = store
        .entry(key)
        .await
        .expect("read")
        .expect("the slot entry")
        .revision;
    let _ = js.delete_key_value(topology.rate_limits_bucket()).await;
    assert!(
        writes <= 50,
        "{writes} KV writes for 200 slots: slots are not reserved in blocks"
    );
    // 200 requests at 200/s: never more than 200 (+2 at the window's edges) in a second,
    // nor more than 20 (+2) in any tenth of one.
    for (i, t) in times.iter().enumerate() {
        let within = |span: Duration| times[i..].iter().take_while(|u| **u < *t + span).count();
        let tenth = within(Duration::from_millis(100));
        assert!(tenth <= 22, "{tenth} requests within 100 ms from {t:?}");
    }
    assert!(
        times[199] >= Duration::from_millis(950),
        "200 slots at 200/s granted in {:?}",
        times[199]
    );
}
