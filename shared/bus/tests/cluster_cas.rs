//! One winner of a compare-and-set, and one holder of a lease at a time, on a three-node
//! JetStream cluster, however many replicas contend.
//!
//! nats-server 2.9 checks a KV update's expected revision on the stream leader before it
//! proposes the write, against what the leader has applied so far: two updates expecting
//! the same revision that are in flight together can both be stored (nats-server#4320).
//! On one server that never happens, so this runs on a cluster of its own, on loopback.

use async_nats::jetstream;
use billsync_bus::cas;
use billsync_bus::lease::{Lease, LeaseError};
use billsync_bus::Topology;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod support;

/// Three nats-server processes routed to each other on loopback, each with its own store;
/// killed when dropped.
struct LoopbackCluster {
    children: Vec<Child>,
    client_ports: Vec<u16>,
    _store: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl LoopbackCluster {
    fn start() -> LoopbackCluster {
        let store = tempfile::tempdir().expect("temp dir");
        let client_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let name = format!("race{}", std::process::id());
        let children = (0..3)
            .map(|i| {
                let routes = (0..3)
                    .filter(|j| *j != i)
                    .map(|j| format!("nats://127.0.0.1:{}", route_ports[j]))
                    .collect::<Vec<_>>()
                    .join(",");
                Command::new("nats-server")
                    .args(["-n", &format!("node{i}"), "-a", "127.0.0.1", "-js"])
                    .args(["-p", &client_ports[i].to_string()])
                    .arg("-sd")
                    .arg(store.path().join(format!("node{i}")))
                    .args(["--cluster_name", &name])
                    .args(["--cluster", &format!("nats://127.0.0.1:{}", route_ports[i])])
                    .args(["--routes", &routes])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start nats-server (is it installed?)")
            })
            .collect();
        LoopbackCluster {
            children,
            client_ports,
            _store: store,
        }
    }

    async fn client(&self, node: usize) -> async_nats::Client {
        let url = format!("nats://127.0.0.1:{}", self.client_ports[node]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match async_nats::connect(&url).await {
                Ok(client) => return client,
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("node {node} of the test cluster: {error}"),
            }
        }
    }
}

impl Drop for LoopbackCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A fresh topology whose `bucket` exists on the cluster with three replicas.
async fn replicated_bucket(
    cluster: &LoopbackCluster,
    bucket: impl Fn(&Topology) -> String,
) -> Topology {
    let (topology, mut settings) = support::fresh_topology();
    settings.replicas = 3;
    let js = jetstream::new(cluster.client(0).await);
    topology
        .ensure_bucket(&js, bucket(&topology), &settings, Duration::ZERO)
        .await
        .expect("a replicated bucket");
    topology
}

/// Replicas on every node create the same markers ("this CRM record's create has started")
/// at once, each deleted before (a create expecting no revision at all is checked when
/// stored, and never races): each marker has exactly one creator, and holds its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_replicas_creating_one_key_on_a_cluster_exactly_one_wins() {
    let cluster = LoopbackCluster::start();
    let topology = replicated_bucket(&cluster, |t| t.links_bucket()).await;
    let keys = 60;
    let store = jetstream::new(cluster.client(1).await)
        .get_key_value(topology.links_bucket())
        .await
        .expect("bucket");
    for key in 0..keys {
        let key = format!("marker{key}");
        store.put(&key, "earlier".into()).await.expect("put");
        store.delete(&key).await.expect("delete");
    }
    let mut contenders = Vec::new();
    for replica in 0..6 {
        let client = cluster.client(replica % 3).await;
        let bucket = topology.links_bucket();
        contenders.push(tokio::spawn(async move {
            let store = jetstream::new(client)
                .get_key_value(&bucket)
                .await
                .expect("bucket");
            let mut won = Vec::new();
            for key in 0..keys {
                let value = format!("replica-{replica}").into_bytes().into();
                let created = cas::create(&store, &format!("marker{key}"), value).await;
                if created.expect("the store answers").is_some() {
                    won.push(key);
                }
            }
            (replica, won)
        }));
    }
    let mut winners = vec![Vec::new(); keys];
    for contender in contenders {
        let (replica, won) = contender.await.expect("contender");
        for key in won {
            winners[key].push(replica);
        }
    }
    for (key, winners) in winners.iter().enumerate() {
        assert_eq!(winners.len(), 1, "marker{key} was created by {winners:?}");
        let value = store.get(format!("marker{key}")).await.expect("get");
        assert_eq!(
            value.as_deref(),
            Some(format!("replica-{}", winners[0]).as_bytes()),
            "marker{key} holds its creator's value"
        );
    }
}

/// Replicas on every node of the cluster take, hold and release one customer's claim as
/// fast as they can; at no moment may two of them hold it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contenders_on_a_cluster_never_hold_one_claim_at_once() {
    let cluster = LoopbackCluster::start();
    let topology = replicated_bucket(&cluster, |t| t.writers_bucket()).await;

    let holding = Arc::new(AtomicUsize::new(0));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let acquired = Arc::new(AtomicUsize::new(0));
    let run_for = Duration::from_secs(8);
    let mut contenders = Vec::new();
    for replica in 0..6 {
        let client = cluster.client(replica % 3).await;
        let bucket = topology.writers_bucket();
        let (holding, overlaps, acquired) = (holding.clone(), overlaps.clone(), acquired.clone());
        contenders.push(tokio::spawn(async move {
            let js = jetstream::new(client);
            let store = js.get_key_value(&bucket).await.expect("bucket");
            let lease = Lease::new(
                store,
                "customer",
                &format!("replica-{replica}"),
                Duration::from_secs(10),
            );
            let started = Instant::now();
            while started.elapsed() < run_for {
                match lease.acquire().await {
                    Ok(guard) => {
                        if holding.fetch_add(1, Ordering::SeqCst) > 0 {
                            overlaps.fetch_add(1, Ordering::SeqCst);
                        }
                        acquired.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(3)).await;
                        holding.fetch_sub(1, Ordering::SeqCst);
                        guard.release().await;
                    }
                    Err(LeaseError::Held { .. }) => {
                        tokio::time::sleep(Duration::from_millis(1)).await
                    }
                    Err(LeaseError::Store(error)) => panic!("replica {replica}: {error}"),
                }
            }
        }));
    }
    for contender in contenders {
        contender.await.expect("contender");
    }
    let acquired = acquired.load(Ordering::SeqCst);
    let overlaps = overlaps.load(Ordering::SeqCst);
    eprintln!("{acquired} acquisitions, {overlaps} while another replica held the claim");
    assert!(
        acquired >= 100,
        "only {acquired} acquisitions in {run_for:?}: the race was hardly run"
    );
    assert_eq!(overlaps, 0, "two replicas held one claim at once");
}
