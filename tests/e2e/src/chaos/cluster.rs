//! A three-node NATS JetStream cluster on this machine, each node in a network namespace of
//! its own (iproute2: a bridge, and a veth pair per node), so that a node can be killed,
//! restarted, or cut off from the others and from every client while the rest go on.
//!
//! Needs root (CAP_NET_ADMIN). Names carry the driving process's id, so that a run left
//! behind by a killed driver is found and removed by the next one.

use crate::servers::nats_server_binary;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsCluster {
    /// `bc` + the driver's pid in hex: the prefix of every namespace and interface.
    tag: String,
    /// The first three octets of the cluster's /24 (the bridge is `.1`, node i is `.1i`).
    subnet: String,
    nodes: Vec<Node>,
    store: Option<tempfile::TempDir>,
}

struct Node {
    name: String,
    netns: String,
    /// The veth end on the bridge: taking it down cuts the node off.
    host_link: String,
    ip: String,
    store: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts the three nodes and waits until JetStream has a meta leader.
    pub async fn start() -> NatsCluster {
        remove_leftovers();
        let pid = std::process::id();
        let tag = format!("bc{pid:x}");
        let subnet = format!("10.{}.{}", 100 + (pid >> 8) % 150, pid % 250);
        let store = tempfile::tempdir().expect("temp dir for the NATS stores");
        let bridge = format!("{tag}br");
        ip(&["link", "add", &bridge, "type", "bridge"]);
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge]);
        ip(&["link", "set", &bridge, "up"]);
        let mut nodes = Vec::new();
        for i in 1..=3 {
            let node = Node {
                name: format!("node{i}"),
                netns: format!("{tag}n{i}"),
                host_link: format!("{tag}h{i}"),
                ip: format!("{subnet}.1{i}"),
                store: store.path().join(format!("node{i}")),
                log: store.path().join(format!("node{i}.log")),
                child: None,
            };
            let inner = format!("{tag}p{i}");
            ip(&["netns", "add", &node.netns]);
            ip(&[
                "link",
                "add",
                &node.host_link,
                "type",
                "veth",
                "peer",
                "name",
                &inner,
            ]);
            ip(&["link", "set", &inner, "netns", &node.netns]);
            ip(&["link", "set", &node.host_link, "master", &bridge]);
            ip(&["link", "set", &node.host_link, "up"]);
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &node.netns, "ip"];
                all.extend_from_slice(args);
                ip(&all);
            };
            inside(&["addr", "add", &format!("{}/24", node.ip), "dev", &inner]);
            inside(&["link", "set", &inner, "up"]);
            inside(&["link", "set", "lo", "up"]);
            nodes.push(node);
        }
        let mut cluster = NatsCluster {
            tag,
            subnet,
            nodes,
            store: Some(store),
        };
        for i in 0..3 {
            cluster.restart(i);
        }
        cluster.wait_for_meta_leader().await;
        cluster
    }

    /// The client URL: every node, comma-separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("nats://{}:4222", n.ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The index of the node called `name` (`node2`).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// SIGKILL of node `i`'s server.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts node `i`'s server (again) on its own store, routed to the other two.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let routes = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| format!("nats://{}:6222", n.ip))
            .collect::<Vec<_>>()
            .join(",");
        let node = &self.nodes[i];
        let child = Command::new("ip")
            .args(["netns", "exec", &node.netns, nats_server_binary()])
            .args(["-n", &node.name, "-a", &node.ip, "-p", "4222", "-js"])
            .arg("-sd")
            .arg(&node.store)
            .args(["--cluster_name", &self.tag])
            .args(["--cluster", &format!("nats://{}:6222", node.ip)])
            .args(["--routes", &routes])
            .arg("-l")
            .arg(&node.log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server in its namespace (is nats-server installed?)");
        self.nodes[i].child = Some(child);
        let addr = format!("{}:4222", self.nodes[i].ip);
        let start = Instant::now();
        while std::net::TcpStream::connect_timeout(
            &addr.parse().expect("node address"),
            Duration::from_millis(200),
        )
        .is_err()
        {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "nats-server {} did not start on {addr}; its log: {}",
                self.nodes[i].name,
                self.nodes[i].log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Cuts node `i` off from the other nodes and from every client (its veth goes down).
    pub fn cut_off(&self, i: usize) {
        ip(&["link", "set", &self.nodes[i].host_link, "down"]);
    }

    /// Connects node `i` again.
    pub fn reconnect(&self, i: usize) {
        ip(&["link", "set", &self.nodes[i].host_link, "up"]);
    }

    /// The name of the node leading `stream`'s replicas, once it has one.
    pub async fn stream_leader(&self, client: &async_nats::Client, stream: &str) -> String {
        let js = async_nats::jetstream::new(client.clone());
        crate::eventually(
            &format!("stream {stream} to have a leader"),
            Duration::from_secs(60),
            || {
                let js = js.clone();
                async move {
                    let mut stream = js.get_stream(stream).await.ok()?;
                    let info = stream.info().await.ok()?;
                    info.cluster.as_ref()?.leader.clone()
                }
            },
        )
        .await
    }

    async fn wait_for_meta_leader(&self) {
        let url = self.url();
        crate::eventually(
            "the NATS cluster to elect a JetStream meta leader",
            Duration::from_secs(60),
            || {
                let url = url.clone();
                async move {
                    let client = billsync_bus::connect(&url, "billsync-chaos").await.ok()?;
                    // The raw account info: async-nats 0.42's typed one does not parse a 2.9
                    // server's answer. Without a meta leader it carries an error.
                    let reply = client.request("$JS.API.INFO", "".into()).await.ok()?;
                    let info: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
                    info.get("error").is_none().then_some(())
                }
            },
        )
        .await;
    }

    /// The subnet's first three octets, for messages.
    pub fn subnet(&self) -> &str {
        &self.subnet
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
        remove_network(&self.tag);
        if std::thread::panicking() {
            if let Some(store) = self.store.take() {
                eprintln!("NATS stores and logs kept in {}", store.keep().display());
            }
        }
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        output.status.success(),
        "ip {} failed: {} (the chaos suite needs root and iproute2 for its network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Removes namespaces and bridges of runs whose driver is gone (killed before its cleanup).
fn remove_leftovers() {
    let Ok(output) = Command::new("ip").args(["-o", "link", "show"]).output() else {
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    for name in text.split_whitespace().filter_map(|w| w.strip_suffix(':')) {
        let Some(pid) = name
            .strip_prefix("bc")
            .and_then(|rest| rest.strip_suffix("br"))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            remove_network(&format!("bc{pid:x}"));
        }
    }
}

/// Kills what still runs in the tag's namespaces, deletes them (their veths go with them)
/// and the bridge.
fn remove_network(tag: &str) {
    for i in 1..=3 {
        let netns = format!("{tag}n{i}");
        if let Ok(output) = Command::new("ip").args(["netns", "pids", &netns]).output() {
            for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
    }
    let _ = Command::new("ip")
        .args(["link", "del", &format!("{tag}br")])
        .output();
}
