//! A lease holder never counts itself valid past what its entry tells the others, however
//! slow the cluster answers; and a takeover grace keeps others out after the expiry.

use async_nats::jetstream::{self, kv};
use billsync_bus::lease::{Lease, LeaseError, LeaseRecord};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod support;

fn nats_addr() -> String {
    support::nats_url()
        .trim_start_matches("nats://")
        .to_string()
}

/// A writers bucket of a fresh prefix, through `client`.
async fn bucket(client: async_nats::Client) -> (jetstream::Context, String, kv::Store) {
    let js = jetstream::new(client);
    let (topology, settings) = support::fresh_topology();
    let name = topology.writers_bucket();
    let store = topology
        .ensure_bucket(&js, name.clone(), &settings, Duration::ZERO)
        .await
        .expect("bucket");
    (js, name, store)
}

/// Writes a lease of `holder` that expired `ago` before now.
async fn expired(store: &kv::Store, key: &str, holder: &str, ago: Duration) {
    let now = chrono::Utc::now().timestamp_millis();
    let record = LeaseRecord {
        holder: holder.into(),
        expires_at_ms: now - ago.as_millis() as i64,
        acquired_at_ms: now - 60_000,
    };
    store
        .put(key, serde_json::to_vec(&record).expect("json").into())
        .await
        .expect("put");
}

/// A TCP proxy to NATS that delays every byte by `delay` each way, as a cluster busy
/// electing leaders or short of CPU answers.
async fn slow_proxy(delay: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let upstream = nats_addr();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(&upstream).await.expect("NATS");
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(delayed(client_read, server_write, delay));
            tokio::spawn(delayed(server_read, client_write, delay));
        }
    });
    addr
}

async fn delayed(
    mut from: impl AsyncReadExt + Unpin + Send + 'static,
    mut to: impl AsyncWriteExt + Unpin + Send + 'static,
    delay: Duration,
) {
    let (chunks, mut queued) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buffer).await {
            let due = tokio::time::Instant::now() + delay;
            if chunks.send((due, buffer[..n].to_vec())).is_err() {
                return;
            }
        }
    });
    while let Some((due, bytes)) = queued.recv().await {
        tokio::time::sleep_until(due).await;
        if to.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_takeover_through_a_slow_cluster_counts_its_validity_from_its_own_write() {
    let fast = async_nats::connect(nats_addr()).await.expect("NATS");
    let (js, name, store) = bucket(fast).await;
    expired(
        &store,
        "customer",
        "crashed-replica",
        Duration::from_secs(1),
    )
    .await;

    // Each round trip takes 1.6 s: the takeover's create, read and update take about 6 s,
    // more than the 1.5 s margin of a 6 s lease.
    let proxy = slow_proxy(Duration::from_millis(800)).await;
    let slow = async_nats::ConnectOptions::new()
        .request_timeout(Some(Duration::from_secs(30)))
        .connect(proxy)
        .await
        .expect("NATS through the proxy");
    let slow_store = jetstream::new(slow)
        .get_key_value(&name)
        .await
        .expect("bucket through the proxy");
    let lease = Lease::new(slow_store, "customer", "taker", Duration::from_secs(6));
    let guard = lease
        .acquire()
        .await
        .expect("the expired lease is taken over");

    let valid_until = chrono::Utc::now().timestamp_millis() + guard.remaining().as_millis() as i64;
    let entry = store.entry("customer").await.expect("read").expect("entry");
    let written: LeaseRecord = serde_json::from_slice(&entry.value).expect("record");
    let _ = js.delete_key_value(&name).await;
    assert_eq!(written.holder, "taker");
    assert!(
        valid_until <= written.expires_at_ms,
        "the holder counts itself valid {} ms past the expiry the others read",
        valid_until - written.expires_at_ms
    );
}

#[tokio::test]
async fn others_wait_out_the_takeover_grace_after_the_expiry() {
    let client = async_nats::connect(nats_addr()).await.expect("NATS");
    let (js, name, store) = bucket(client).await;
    let ttl = Duration::from_secs(20);
    expired(
        &store,
        "customer",
        "stopped-replica",
        Duration::from_secs(2),
    )
    .await;

    let patient = Lease::new(store.clone(), "customer", "next", ttl)
        .with_takeover_grace(Duration::from_secs(10));
    match patient.acquire().await {
        Err(LeaseError::Held { holder, .. }) => assert_eq!(holder, "stopped-replica"),
        Ok(_) => panic!("taken over 2 s after the expiry, inside a 10 s grace"),
        Err(error) => panic!("{error}"),
    }
    let current = patient.current().await.expect("read");
    assert_eq!(
        current.map(|r| r.holder).as_deref(),
        Some("stopped-replica"),
        "inside the grace the stopped holder is still the current one"
    );

    let eager = Lease::new(store.clone(), "customer", "next", ttl);
    let guard = eager
        .acquire()
        .await
        .expect("without a grace it is taken over");
    assert!(guard.is_valid());
    let _ = js.delete_key_value(&name).await;
}
