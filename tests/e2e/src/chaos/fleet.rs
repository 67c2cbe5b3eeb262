//! billsync as an operator runs it on a cluster: every service a separate `billsync` process,
//! each with replicas, each replica with its own `/readyz` port and log.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// One replica: `billsync --config <its file> <service>`.
pub struct Replica {
    /// `activecampaign-2`: the service and the replica's number.
    pub name: String,
    service: &'static str,
    pub port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<tokio::process::Child>,
    /// How many times it was killed (and started again).
    pub kills: u32,
}

impl Replica {
    /// The replica's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(tokio::process::Child::id)
    }

    pub fn service(&self) -> &'static str {
        self.service
    }
}

pub struct Fleet {
    pub replicas: Vec<Replica>,
    binary: PathBuf,
}

impl Fleet {
    /// Writes one configuration per replica into `dir`: `config` with the replica's own
    /// listen address put in (`{ingest_listen}`, `{errors_listen}`, `{workers_listen}`
    /// placeholders), every other service's on port 0.
    pub fn new(dir: &Path, config: &str, services: &[(&'static str, usize)]) -> Fleet {
        let mut replicas = Vec::new();
        for (service, count) in services {
            for n in 1..=*count {
                let port = crate::free_port();
                let own = |s: &str| if s == *service { port } else { 0 };
                let workers = ["activecampaign", "zoho", "pipedrive"]
                    .iter()
                    .map(|w| format!("{w}_listen = \"127.0.0.1:{}\"\n", own(w)))
                    .collect::<String>();
                let text = config
                    .replace("{ingest_listen}", &format!("127.0.0.1:{}", own("ingest")))
                    .replace("{errors_listen}", &format!("127.0.0.1:{}", own("errors")))
                    .replace("{workers_listen}", &workers);
                let name = format!("{service}-{n}");
                let path = dir.join(format!("{name}.toml"));
                std::fs::write(&path, text).expect("write a replica's configuration");
                replicas.push(Replica {
                    name: name.clone(),
                    service,
                    port,
                    config: path,
                    log: dir.join(format!("{name}.log")),
                    child: None,
                    kills: 0,
                });
            }
        }
        Fleet {
            replicas,
            binary: crate::billsync_binary(),
        }
    }

    /// Starts every replica and waits until each answers `/readyz`.
    pub async fn start_all(&mut self) {
        for i in 0..self.replicas.len() {
            self.start(i);
        }
        let http = reqwest::Client::new();
        for replica in &self.replicas {
            let url = format!("http://127.0.0.1:{}/readyz", replica.port);
            let deadline = std::time::Instant::now() + Duration::from_secs(90);
            loop {
                if let Ok(response) = http.get(&url).send().await {
                    if response.status().is_success() {
                        break;
                    }
                }
                if std::time::Instant::now() > deadline {
                    let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(20).collect();
                    panic!(
                        "{} did not get ready on {url} within 90 s; its log ends:\n{}",
                        replica.name,
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    pub fn index_of(&self, name: &str) -> usize {
        self.replicas
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| panic!("no replica {name}"))
    }

    pub fn names(&self) -> Vec<String> {
        self.replicas.iter().map(|r| r.name.clone()).collect()
    }

    /// Ports of the replicas of `service` (ingest's take webhooks).
    pub fn ports_of(&self, service: &str) -> Vec<u16> {
        self.replicas
            .iter()
            .filter(|r| r.service == service)
            .map(|r| r.port)
            .collect()
    }

    pub fn start(&mut self, i: usize) {
        let replica = &mut self.replicas[i];
        assert!(replica.child.is_none(), "{} is running", replica.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&replica.log)
            .expect("open the replica's log");
        let child = tokio::process::Command::new(&self.binary)
            .arg("--config")
            .arg(&replica.config)
            .arg(replica.service)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start billsync {}: {e}", replica.service));
        replica.child = Some(child);
    }

    /// SIGKILL, as the OOM killer or a node failure would.
    pub async fn kill(&mut self, i: usize) {
        let replica = &mut self.replicas[i];
        if let Some(mut child) = replica.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
            replica.kills += 1;
        }
    }

    /// Whether every replica still runs (none exited on its own).
    pub fn exited(&mut self) -> Vec<String> {
        let mut gone = Vec::new();
        for replica in &mut self.replicas {
            if let Some(child) = replica.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    gone.push(format!(
                        "{} exited by itself ({status}); see {}",
                        replica.name,
                        replica.log.display()
                    ));
                    replica.child = None;
                }
            }
        }
        gone
    }

    /// SIGTERM to every replica, then SIGKILL to what is left after 20 s.
    pub async fn stop_all(&mut self) {
        for replica in &mut self.replicas {
            if let Some(pid) = replica.child.as_ref().and_then(|c| c.id()) {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
        for replica in &mut self.replicas {
            if let Some(mut child) = replica.child.take() {
                if tokio::time::timeout(Duration::from_secs(20), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
        }
    }
}
