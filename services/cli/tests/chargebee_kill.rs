//! SIGKILL of the Chargebee poller mid-poll: after a restart nothing is missing from the
//! stream and, after JetStream's dedupe, nothing is there twice.

use billsync_e2e::{ensure_nats, eventually, unique_prefix};
use billsync_sandbox::{CbCustomerInput, CbFaults, CbSite, SandboxConfig};
use futures::StreamExt;
use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_billsync");

fn start(config: &std::path::Path, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log");
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("ingest")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start billsync ingest")
}

async fn stream_ids(js: &async_nats::jetstream::Context, stream: &str) -> (usize, HashSet<String>) {
    let stream = js.get_stream(stream).await.expect("stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let total = stream.cached_info().state.messages as usize;
    let mut ids = HashSet::new();
    let mut seen = 0;
    while seen < total {
        let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(5), messages.next()).await
        else {
            break;
        };
        seen += 1;
        let event: serde_json::Value =
            serde_json::from_slice(&message.payload).expect("event json");
        ids.insert(event["id"].as_str().expect("id").to_string());
    }
    (seen, ids)
}

#[tokio::test]
async fn a_poller_killed_mid_poll_loses_and_repeats_nothing() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let mut site = CbSite::new("killsite", "cb-kill-key");
    site.requests_per_minute = 10_000;
    sandbox.chargebee.add_site(site);
    for i in 0..600 {
        let input = CbCustomerInput {
            email: Some(format!("k{i}@example.com")),
            first_name: Some(format!("K{i}")),
            ..Default::default()
        };
        sandbox
            .chargebee
            .create_customer("killsite", input)
            .expect("customer");
    }
    // Each page takes 300 ms: the kill lands in the middle of the poll.
    sandbox.chargebee.set_faults(
        "killsite",
        CbFaults {
            latency_ms: 300,
            ..Default::default()
        },
    );

    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cb-key"), "cb-kill-key").expect("secret");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let config = format!(
        "[nats]\nurl = \"{}\"\nprefix = \"{prefix}\"\n[ingest]\nlisten = \"127.0.0.1:{port}\"\n\
         [[sources.chargebee]]\nname = \"cb-kill\"\nsite = \"killsite\"\n\
         api_key = {{ file = \"{}\" }}\nbase_url = \"{}\"\npoll_interval_secs = 1\nrequests_per_minute = 10000\n",
        ensure_nats(),
        dir.path().join("cb-key").display(),
        sandbox.chargebee.base_url("killsite"),
    );
    let path = dir.path().join("billsync.toml");
    std::fs::write(&path, config).expect("config");
    let log = dir.path().join("ingest.log");

    let nats = async_nats::connect(ensure_nats()).await.expect("nats");
    let js = async_nats::jetstream::new(nats.clone());
    let topology = billsync_bus::Topology::new(&prefix);
    let count = || async {
        let mut stream = js.get_stream(topology.events_stream()).await.ok()?;
        Some(stream.info().await.ok()?.state.messages)
    };

    let mut first = start(&path, &log);
    eventually(
        "part of the events in the stream",
        Duration::from_secs(60),
        || async { count().await.filter(|n| *n >= 100).map(|_| ()) },
    )
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reap");
    let at_kill = count().await.unwrap_or(0);
    assert!(
        at_kill < 600,
        "the poll must be cut short, but {at_kill} of 600 were already published"
    );

    sandbox
        .chargebee
        .set_faults("killsite", CbFaults::default());
    let mut second = start(&path, &log);
    // The dead poller's lease expires (30 s) before the new one takes over.
    eventually(
        "all 600 events in the stream",
        Duration::from_secs(120),
        || async { count().await.filter(|n| *n >= 600).map(|_| ()) },
    )
    .await;
    // One more poll interval: a repeat would show up as a 601st message.
    let sandbox_events = sandbox.chargebee.events("killsite").len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (messages, ids) = stream_ids(&js, &topology.events_stream()).await;
    second.kill().expect("stop");
    second.wait().expect("reap");
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(sandbox_events, 600);
    assert_eq!(ids.len(), 600, "every event exactly once; logs:\n{logs}");
    assert_eq!(messages, 600, "no event stored twice; logs:\n{logs}");
    assert!(
        !logs.contains("cb-kill-key"),
        "the API key must never be logged"
    );

    billsync_e2e::remove_deployment(&nats, &prefix).await;
}
