//! billsync as an operator runs it, measured from outside: ingest, errors and the
//! ActiveCampaign worker as `billsync` processes on a nats-server of their own (with its
//! monitoring endpoint), a fresh database, and the `billsync-sandbox` binary serving one
//! ActiveCampaign account with its rate limit lifted. What benchmarks read of it is what an
//! operator could: resident memory and CPU time from /proc, the server's message counts, the
//! worker's `/metrics`, the account's request counts and state from the sandbox's control API.

use crate::chaos::fleet::Fleet;
use crate::{fresh_database, unique_prefix, PrivateNats, ProcessConfig, TestDatabase};
use anyhow::Context as _;
use billsync_bus::Topology;
use futures::StreamExt;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The destination connection the worker writes to.
pub const AC_CONNECTION: &str = "ac-bench";
/// The billsync services the pipeline runs, one process each, in the order they start.
pub const SERVICES: [&str; 3] = ["ingest", "errors", "activecampaign"];
/// The harness's own NATS connections are named with this, and left out of the message
/// counts billsync causes.
pub const HARNESS_CLIENT: &str = "billsync-bench-";
const STRIPE_CONNECTION: &str = "stripe-bench";

/// What differs between runs.
#[derive(Debug, Clone, Default)]
pub struct PipelineOptions {
    /// `[workers] max_in_flight`; billsync's default when unset.
    pub max_in_flight: Option<usize>,
}

pub struct Pipeline {
    pub nats: PrivateNats,
    /// The harness's connection: consumer backlogs (not counted in [`NatsCounts::billsync`]).
    pub client: async_nats::Client,
    pub topology: Topology,
    pub sandbox: SandboxProcess,
    pub fleet: Fleet,
    /// The emulated ActiveCampaign account the worker writes to.
    pub ac_account: String,
    db: TestDatabase,
    http: reqwest::Client,
    secret: String,
    /// The configuration, secrets, logs of the processes.
    dir: tempfile::TempDir,
}

impl Pipeline {
    /// Starts NATS, the sandbox and a fresh database, and writes the configuration; the
    /// billsync services are started with [`Pipeline::start_service`].
    pub async fn start(options: PipelineOptions) -> anyhow::Result<Pipeline> {
        let nats = PrivateNats::start_monitored();
        let prefix = unique_prefix();
        let db = fresh_database().await;
        let ac_account = format!("acct-{prefix}");
        let ac_token = format!("ac-token-{}", uuid::Uuid::new_v4().simple());
        let sandbox = SandboxProcess::start(&ac_account, &ac_token).await?;
        sandbox.lift_rate_limit(&ac_account).await?;
        let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let workers = options
            .max_in_flight
            .map(|n| format!("max_in_flight = {n}"))
            .unwrap_or_default();
        let dir = tempfile::tempdir().context("a temp dir")?;
        let template = ProcessConfig {
            prefix: &prefix,
            postgres_url: &db.url,
            stripe_connection: STRIPE_CONNECTION,
            webhook_secret: &secret,
            ac_connection: AC_CONNECTION,
            ac_base_url: &format!("{}/activecampaign/{ac_account}", sandbox.url),
            ac_token: &ac_token,
            // billsync's own limiter is not what is measured: far above any rate reached.
            ac_requests_per_second: 100_000,
            admin_token: &admin_token,
            telemetry: "",
            workers: &workers,
            extra: "",
        }
        .fleet_template(dir.path(), &nats.url());
        let fleet = Fleet::new(dir.path(), &template, &SERVICES.map(|service| (service, 1)));
        let client =
            billsync_bus::connect(&nats.url(), &format!("{HARNESS_CLIENT}harness")).await?;
        Ok(Pipeline {
            nats,
            client,
            topology: Topology::new(&prefix),
            sandbox,
            fleet,
            ac_account,
            db,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            secret,
            dir,
        })
    }

    /// Starts `billsync <service>` and waits until it answers `/readyz`.
    pub async fn start_service(&mut self, service: &str) {
        let i = self.fleet.index_of(&format!("{service}-1"));
        self.fleet.start(i);
        crate::wait_ready(&[self.fleet.replicas[i].port]).await;
    }

    /// The process id of the running `service`.
    pub fn pid(&self, service: &str) -> Option<u32> {
        self.fleet.replicas[self.fleet.index_of(&format!("{service}-1"))].pid()
    }

    /// Posts `event` to ingest's Stripe webhook, signed now; an error unless answered 2xx.
    pub async fn post(&self, event: &Value) -> anyhow::Result<()> {
        let now = chrono::Utc::now().timestamp();
        let signed = billsync_sandbox::stripe::signed_webhook(&self.secret, now, event);
        let port = self.fleet.ports_of("ingest")[0];
        let response = self
            .http
            .post(format!(
                "http://127.0.0.1:{port}/webhooks/stripe/{STRIPE_CONNECTION}"
            ))
            .header("Stripe-Signature", signed.signature)
            .header("Content-Type", "application/json")
            .body(signed.body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "ingest answered a webhook {}",
            response.status()
        );
        Ok(())
    }

    /// Posts `events`, `concurrency` at a time; with `max_backlog`, waits whenever the worker
    /// has more than that many events unsettled, so that the load never runs ahead of it.
    pub async fn post_all(
        &self,
        events: impl Iterator<Item = Value>,
        concurrency: usize,
        max_backlog: Option<u64>,
    ) -> anyhow::Result<u64> {
        let mut posted = 0;
        let mut posts = futures::stream::iter(events)
            .map(|event| async move { self.post(&event).await })
            .buffer_unordered(concurrency.max(1));
        while let Some(result) = posts.next().await {
            result?;
            posted += 1;
            if let Some(bound) = max_backlog.filter(|_| posted % 100 == 0) {
                while self.worker_backlog().await.unwrap_or(0) > bound {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Ok(posted)
    }

    /// Messages in the events stream (0 until it exists).
    pub async fn events_in_stream(&self) -> u64 {
        let js = async_nats::jetstream::new(self.client.clone());
        match js.get_stream(self.topology.events_stream()).await {
            Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
            Err(_) => 0,
        }
    }

    /// Events in the stream the worker has not settled; `None` until its consumer exists.
    pub async fn worker_backlog(&self) -> Option<u64> {
        let consumer = self.topology.worker_consumer(AC_CONNECTION);
        crate::consumer_backlog(&self.client, &self.topology.events_stream(), &consumer).await
    }

    /// Outcomes the errors service has not stored yet.
    pub async fn outcomes_backlog(&self) -> Option<u64> {
        let consumer = self.topology.errors_consumer();
        crate::consumer_backlog(&self.client, &self.topology.outcomes_stream(), &consumer).await
    }

    /// Waits until the worker has settled `events` events in all and the errors service has
    /// stored every outcome.
    pub async fn settled(&self, events: u64, within: Duration) {
        crate::eventually("the pipeline to settle every event", within, || async {
            let stored = self.events_in_stream().await;
            let idle = self.worker_backlog().await? == 0 && self.outcomes_backlog().await? == 0;
            (stored >= events && idle).then_some(())
        })
        .await;
    }

    /// The worker's `billsync_worker_events_total` by result (`synced`, `skipped`, `failed`,
    /// `requeued`, …), from its `/metrics`.
    pub async fn worker_events(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let port = self.fleet.ports_of("activecampaign")[0];
        let text = self
            .http
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(counter_by_label(
            &text,
            "billsync_worker_events_total",
            "result",
        ))
    }

    /// GETs `/metrics` of every running service, as Prometheus's scrape would.
    pub async fn scrape_metrics(&self) -> anyhow::Result<()> {
        for replica in &self.fleet.replicas {
            self.http
                .get(format!("http://127.0.0.1:{}/metrics", replica.port))
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
        }
        Ok(())
    }

    /// The account's API requests so far, accepted and refused with 429.
    pub async fn request_counts(&self) -> anyhow::Result<billsync_sandbox::RequestCounts> {
        crate::sandbox_request_counts(&self.sandbox.url, "activecampaign", &self.ac_account).await
    }

    /// The account's state, read from the sandbox's control API.
    pub async fn snapshot(&self) -> anyhow::Result<billsync_sandbox::AcSnapshot> {
        let url = format!(
            "{}/__sandbox/activecampaign/{}",
            self.sandbox.url, self.ac_account
        );
        Ok(self
            .http
            .get(url)
            .timeout(Duration::from_secs(600))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// The server's message counts now: in total and per client connection.
    pub async fn nats_counts(&self) -> anyhow::Result<NatsCounts> {
        let base = self
            .nats
            .monitor_url()
            .context("the server has no monitoring port")?;
        let get = |path: &str| {
            let request = self.http.get(format!("{base}{path}"));
            async move {
                request
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<Value>()
                    .await
            }
        };
        let varz = get("/varz").await?;
        let connz = get("/connz?limit=1024").await?;
        let number = |v: &Value, key: &str| v[key].as_u64().unwrap_or(0);
        let mut connections = BTreeMap::new();
        for connection in connz["connections"].as_array().into_iter().flatten() {
            let name = connection["name"]
                .as_str()
                .unwrap_or("(unnamed)")
                .to_string();
            let counts = connections.entry(name).or_insert(MessageCounts::default());
            counts.received += number(connection, "in_msgs");
            counts.sent += number(connection, "out_msgs");
        }
        Ok(NatsCounts {
            server: MessageCounts {
                received: number(&varz, "in_msgs"),
                sent: number(&varz, "out_msgs"),
            },
            connections,
        })
    }

    /// Where the processes' logs are.
    pub fn log_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Stops the services (SIGTERM), the sandbox and NATS, and drops the database.
    pub async fn stop(mut self) {
        self.fleet.stop_all().await;
        self.sandbox.stop().await;
        self.db.drop_database().await;
    }
}

/// Messages a server received from clients and sent to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    pub received: u64,
    pub sent: u64,
}

impl MessageCounts {
    pub fn total(&self) -> u64 {
        self.received + self.sent
    }

    /// What happened between `earlier` and this.
    pub fn since(&self, earlier: &MessageCounts) -> MessageCounts {
        MessageCounts {
            received: self.received.saturating_sub(earlier.received),
            sent: self.sent.saturating_sub(earlier.sent),
        }
    }
}

/// `/varz` and `/connz` of the pipeline's nats-server at one moment.
#[derive(Debug, Clone, Default)]
pub struct NatsCounts {
    /// All the server's client traffic (`in_msgs`, `out_msgs`).
    pub server: MessageCounts,
    /// Per connection name (`billsync-activecampaign`, …), counted from the client's side
    /// of the server: `received` is what the client published.
    pub connections: BTreeMap<String, MessageCounts>,
}

impl NatsCounts {
    /// The server's messages but those of the harness's connections: billsync's, and
    /// JetStream's own on billsync's behalf.
    pub fn billsync(&self) -> MessageCounts {
        let harness = self
            .connections
            .iter()
            .filter(|(name, _)| name.starts_with(HARNESS_CLIENT))
            .fold(MessageCounts::default(), |sum, (_, c)| MessageCounts {
                received: sum.received + c.received,
                sent: sum.sent + c.sent,
            });
        MessageCounts {
            received: self.server.received.saturating_sub(harness.received),
            sent: self.server.sent.saturating_sub(harness.sent),
        }
    }

    /// Per connection, what happened between `earlier` and this.
    pub fn connections_since(&self, earlier: &NatsCounts) -> BTreeMap<String, MessageCounts> {
        self.connections
            .iter()
            .map(|(name, now)| {
                let before = earlier.connections.get(name).copied().unwrap_or_default();
                (name.clone(), now.since(&before))
            })
            .collect()
    }
}

/// Every message the server routes, counted by the shape of its subject (`$JS.ACK.<stream>.
/// <consumer>`, `_INBOX.*`, …), on a connection of the harness's own: which subjects
/// billsync's traffic is made of. It doubles what the server sends while it runs.
pub struct SubjectCensus {
    counts: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SubjectCensus {
    pub async fn start(nats_url: &str) -> anyhow::Result<SubjectCensus> {
        let client = billsync_bus::connect(nats_url, &format!("{HARNESS_CLIENT}census")).await?;
        let mut messages = client.subscribe(">").await?;
        let counts = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let counted = std::sync::Arc::clone(&counts);
        let task = tokio::spawn(async move {
            let _client = client;
            while let Some(message) = messages.next().await {
                let shape = subject_shape(&message.subject);
                *counted
                    .lock()
                    .expect("census lock")
                    .entry(shape)
                    .or_insert(0) += 1;
            }
        });
        Ok(SubjectCensus { counts, task })
    }

    /// Stops counting; the shapes, most messages first.
    pub fn finish(self) -> Vec<(String, u64)> {
        self.task.abort();
        let counts = self.counts.lock().expect("census lock").clone();
        let mut shapes: Vec<(String, u64)> = counts.into_iter().collect();
        shapes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        shapes
    }
}

/// A subject with what varies per message (inbox ids, message positions, record keys)
/// replaced by `*`: its first tokens, those that name a stream, consumer or API call.
fn subject_shape(subject: &str) -> String {
    let tokens: Vec<&str> = subject.split('.').collect();
    let kept = match tokens.first() {
        Some(&"_INBOX") => 1,
        Some(&"$JS") if tokens.get(1) == Some(&"ACK") => 4,
        Some(&"$JS") => 6,
        Some(&"$KV") => 2,
        _ => 3,
    };
    let mut shape = tokens[..kept.min(tokens.len())].join(".");
    if tokens.len() > kept {
        shape.push_str(".*");
    }
    shape
}

/// Sums the samples of Prometheus counter `name` by the value of `label`.
fn counter_by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    let wanted = format!("{label}=\"");
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name).and_then(|r| r.strip_prefix('{')) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Some(key) = labels
            .split_once(&wanted)
            .and_then(|(_, v)| v.split_once('"'))
            .map(|(v, _)| v.to_string())
        else {
            continue;
        };
        let value = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *sums.entry(key).or_insert(0) += value;
    }
    sums
}

/// A process's resident memory and CPU time, from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessUsage {
    /// `VmRSS`, in KiB.
    pub rss_kib: u64,
    /// `VmHWM`: the highest `VmRSS` so far, in KiB.
    pub peak_kib: u64,
    /// User and system time (`utime` + `stime`), in seconds.
    pub cpu_secs: f64,
}

impl ProcessUsage {
    /// `None` when the process is gone.
    pub fn of(pid: u32) -> Option<ProcessUsage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = |field: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        };
        let (rss_kib, peak_kib) = (kib("VmRSS:")?, kib("VmHWM:")?);
        // Fields 14 and 15 of /proc/PID/stat; the command name before them may hold spaces.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let after_name: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = after_name
            .get(11..13)?
            .iter()
            .filter_map(|t| t.parse::<u64>().ok())
            .sum();
        Some(ProcessUsage {
            rss_kib,
            peak_kib,
            cpu_secs: ticks as f64 / clock_ticks_per_second(),
        })
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

/// The machine's 1-minute load average and its cores, as printed beside timings that other
/// work on the machine slows down: `load 3.2 on 2 cores`.
pub fn machine_load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "load {} on {cores} cores",
        load.split_whitespace().next().unwrap_or("?")
    )
}

/// `getconf CLK_TCK` (100 on Linux everywhere we run), read once.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// `billsync-sandbox serve` with one ActiveCampaign account, as a process of its own so that
/// its CPU is not the harness's. Killed on drop.
pub struct SandboxProcess {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: Option<tokio::process::Child>,
}

impl SandboxProcess {
    pub async fn start(account: &str, token: &str) -> anyhow::Result<SandboxProcess> {
        let port = crate::free_port();
        let child = tokio::process::Command::new(crate::sandbox_binary())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--ac-account", &format!("{account}:{token}")])
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start billsync-sandbox")?;
        let sandbox = SandboxProcess {
            url: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        };
        let faults = format!("{}/__sandbox/activecampaign/{account}/faults", sandbox.url);
        crate::eventually("the sandbox to serve", Duration::from_secs(30), || async {
            let response = reqwest::get(&faults).await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
        Ok(sandbox)
    }

    /// Turns the account's rate limit off (fault `rate_limit_disabled`): the CRM is not the
    /// limit.
    pub async fn lift_rate_limit(&self, account: &str) -> anyhow::Result<()> {
        reqwest::Client::new()
            .put(format!(
                "{}/__sandbox/activecampaign/{account}/faults",
                self.url
            ))
            .json(&billsync_sandbox::AcFaults {
                rate_limit_disabled: true,
                ..Default::default()
            })
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_by_label() {
        let text = "# TYPE billsync_worker_events_total counter\n\
            billsync_worker_events_total{destination=\"activecampaign\",result=\"synced\"} 7\n\
            billsync_worker_events_total{result=\"synced\",destination=\"zoho\"} 2\n\
            billsync_worker_events_total{destination=\"activecampaign\",result=\"failed\"} 1\n\
            billsync_worker_events_totals{result=\"synced\"} 100\n";
        let sums = counter_by_label(text, "billsync_worker_events_total", "result");
        assert_eq!(
            sums,
            BTreeMap::from([("failed".to_string(), 1), ("synced".to_string(), 9)])
        );
    }

    #[test]
    fn subjects_keep_their_naming_tokens() {
        for (subject, shape) in [
            ("_INBOX.abc.def", "_INBOX.*"),
            (
                "$JS.ACK.T1_EVENTS.worker-ac.1.2.3.4.5",
                "$JS.ACK.T1_EVENTS.worker-ac.*",
            ),
            (
                "$JS.API.CONSUMER.MSG.NEXT.T1_EVENTS.worker-ac",
                "$JS.API.CONSUMER.MSG.NEXT.T1_EVENTS.*",
            ),
            ("$KV.links.cus_1", "$KV.links.*"),
            ("t1.events", "t1.events"),
        ] {
            assert_eq!(subject_shape(subject), shape, "{subject}");
        }
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let usage = ProcessUsage::of(std::process::id()).expect("our own /proc entry");
        assert!(usage.rss_kib > 0);
        assert!(usage.cpu_secs >= 0.0);
    }
}
