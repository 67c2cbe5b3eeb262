//! The real `billsync` processes under sustained load with their production telemetry: info
//! logs (pretty or JSON), spans exported over OTLP to a collector. A span guard held across
//! an `.await` once made the whole process panic within seconds at 100 webhooks/s (issue 11);
//! no test with the test harness's quiet subscriber could see it.
//!
//! Each test sends 3,000 signed `customer.created` webhooks (one new customer each) at a
//! steady 125 per second, then asserts every process is still alive, every webhook was
//! answered 2xx, every contact is in the emulated ActiveCampaign account, and the processes
//! stop cleanly on SIGTERM, having logged no panic. It prints the rate sustained and the
//! latency from each webhook to its contact's creation (p99 must stay under 30 s: a pipeline
//! that falls behind its load is caught even when it would catch up in the end).

use billsync_e2e::{
    ensure_nats, eventually, fresh_database, unique_prefix, OtlpCollector, ProcessConfig,
    ProcessDeployment,
};
use billsync_sandbox::{AcAccount, RunningSandbox, SandboxConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const BIN: &str = env!("CARGO_BIN_EXE_billsync");
const WEBHOOKS: usize = 3_000;
const RATE_PER_SECOND: f64 = 125.0;
const ACCOUNT: &str = "load";

/// One deployment: its configuration, the sandbox it writes to, and its processes.
struct Deployment {
    files: ProcessDeployment,
    prefix: String,
    sandbox: RunningSandbox,
    db: billsync_e2e::TestDatabase,
    otlp: OtlpCollector,
    processes: Vec<(String, Child)>,
    _secrets: tempfile::TempDir,
}

impl Deployment {
    /// With `crms`, the deployment also writes to an emulated Zoho CRM organisation and
    /// Pipedrive company (their secrets in files beside the configuration).
    async fn new(log_format: &str, crms: bool) -> Deployment {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
            .await
            .expect("sandbox");
        let mut account = AcAccount::new(ACCOUNT, "load-token");
        account.requests_per_second = 1_000;
        sandbox.activecampaign.add_account(account);
        let otlp = OtlpCollector::start().await;

        let prefix = unique_prefix();
        let db = fresh_database().await;
        let secrets = tempfile::tempdir().expect("a temp dir");
        let secret = |name: &str, value: &str| {
            let path = secrets.path().join(name);
            std::fs::write(&path, value).expect("write a secret");
            path.display().to_string()
        };
        let extra = if crms {
            sandbox.zoho.add_org(billsync_sandbox::ZohoOrg::new(
                "load-org",
                "1000.LOADCLIENT",
                "zoho-secret-load",
                "1000.refresh-load",
            ));
            sandbox.zoho.set_limits("load-org", 1_000_000, 25);
            sandbox
                .pipedrive
                .add_company(billsync_sandbox::PdCompany::new("load", "pd-token-load"));
            format!(
                "[[destinations.zoho]]\nname = \"zoho-load\"\naccounts_url = \"{accounts}\"\n\
                 client_id = {{ file = \"{id}\" }}\nclient_secret = {{ file = \"{zoho_secret}\" }}\n\
                 refresh_token = {{ file = \"{refresh}\" }}\ncredits_per_day = 1000000\n\n\
                 [[syncs]]\nsource = \"stripe-load\"\ndestination = \"zoho-load\"\n\n\
                 [[destinations.pipedrive]]\nname = \"pd-load\"\nbase_url = \"{pd_base}\"\n\
                 api_token = {{ file = \"{pd_token}\" }}\n\n\
                 [[syncs]]\nsource = \"stripe-load\"\ndestination = \"pd-load\"\n",
                accounts = sandbox.zoho.accounts_url("load-org"),
                id = secret("zoho-id", "1000.LOADCLIENT"),
                zoho_secret = secret("zoho-secret", "zoho-secret-load"),
                refresh = secret("zoho-refresh", "1000.refresh-load"),
                pd_base = sandbox.pipedrive.base_url("load"),
                pd_token = secret("pd-token", "pd-token-load"),
            )
        } else {
            String::new()
        };
        let files = ProcessConfig {
            prefix: &prefix,
            postgres_url: &db.url,
            stripe_connection: "stripe-load",
            webhook_secret: "whsec_load",
            ac_connection: "ac-load",
            ac_base_url: &sandbox.activecampaign_base_url(ACCOUNT),
            ac_token: "load-token",
            ac_requests_per_second: 1_000,
            admin_token: "admin-load",
            telemetry: &format!(
                "log_format = \"{log_format}\"\notlp_endpoint = \"{}\"",
                otlp.endpoint
            ),
            workers: "",
            extra: &extra,
        }
        .write();
        Deployment {
            _secrets: secrets,
            files,
            prefix,
            sandbox,
            db,
            otlp,
            processes: Vec::new(),
        }
    }

    /// Starts `billsync <command>` with the production log level (no `RUST_LOG`).
    fn start(&mut self, command: &str) {
        let log = std::fs::File::create(self.log_path(command)).expect("log file");
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&self.files.config_path)
            .arg(command)
            .env_remove("RUST_LOG")
            .env_remove("BILLSYNC_LOG_FORMAT")
            .env_remove("BILLSYNC_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start billsync {command}: {e}"));
        self.processes.push((command.to_string(), child));
    }

    fn log_path(&self, command: &str) -> PathBuf {
        self.files.dir.path().join(format!("{command}.log"))
    }

    /// The end of `command`'s log, for a failure message.
    fn log_tail(&self, command: &str) -> String {
        let log = std::fs::read_to_string(self.log_path(command)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    async fn wait_ready(&self) {
        billsync_e2e::wait_ready(&self.files.ready_ports()).await;
        if self.processes.iter().any(|(command, _)| command == "zoho") {
            billsync_e2e::wait_ready(&[self.files.zoho_port, self.files.pipedrive_port]).await;
        }
    }

    /// Each process's peak resident memory (MiB) and CPU time so far (s), from /proc.
    fn resources(&self) -> Vec<(String, f64, f64)> {
        self.processes
            .iter()
            .map(|(command, child)| {
                let usage =
                    billsync_e2e::pipeline::ProcessUsage::of(child.id()).unwrap_or_default();
                (command.clone(), usage.peak_mib(), usage.cpu_secs)
            })
            .collect()
    }

    /// Fails the test if a process has exited, naming it and quoting its log.
    fn assert_alive(&mut self) {
        let mut dead = Vec::new();
        for (command, child) in &mut self.processes {
            if let Some(status) = child.try_wait().expect("wait") {
                dead.push((command.clone(), status));
            }
        }
        if let Some((command, status)) = dead.first() {
            panic!(
                "billsync {command} exited under load ({status}); its log ends:\n{}",
                self.log_tail(command)
            );
        }
        // A panic in one task (a lane, a consumer) can leave the process up but that work
        // dead until its messages are redelivered.
        for (command, _) in &self.processes {
            let log = std::fs::read_to_string(self.log_path(command)).unwrap_or_default();
            if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
                panic!("billsync {command} logged a panic under load: {line}");
            }
        }
    }

    /// SIGTERM to every process; each must exit 0 within 30 s and have logged no panic.
    /// Returns the collector, which by then holds the spans flushed at exit.
    async fn stop(mut self) -> OtlpCollector {
        for (_, child) in &self.processes {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .expect("kill");
        }
        let processes = std::mem::take(&mut self.processes);
        for (command, mut child) in processes {
            let started = Instant::now();
            let status = loop {
                if let Some(status) = child.try_wait().expect("wait") {
                    break status;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    let _ = child.kill();
                    panic!(
                        "billsync {command} did not exit within 30 s of SIGTERM; log:\n{}",
                        self.log_tail(&command)
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let log = std::fs::read_to_string(self.log_path(&command)).unwrap_or_default();
            assert!(
                status.success() && !log.contains("panicked"),
                "billsync {command} ended with {status}; log:\n{}",
                self.log_tail(&command)
            );
        }
        let nats = async_nats::connect(ensure_nats()).await.expect("nats");
        billsync_e2e::remove_deployment(&nats, &self.prefix).await;
        self.db.drop_database().await;
        self.otlp
    }
}

/// What the webhook sender saw.
struct Sent {
    /// Lower-cased email → when its webhook was sent.
    at: Vec<(String, SystemTime)>,
    /// Webhooks answered with something other than 2xx, or not answered.
    failed: Vec<String>,
    /// From the first send to the last answer.
    elapsed: Duration,
}

/// Sends `WEBHOOKS` new-customer webhooks at `RATE_PER_SECOND`, each on its own task so a
/// slow answer never lowers the rate (open loop).
async fn send_webhooks(ingest_port: u16, prefix: &str) -> Sent {
    let url = format!("http://127.0.0.1:{ingest_port}/webhooks/stripe/stripe-load");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut at = Vec::with_capacity(WEBHOOKS);
    for i in 0..WEBHOOKS {
        let due = started + Duration::from_secs_f64(i as f64 / RATE_PER_SECOND);
        tokio::time::sleep_until(due.into()).await;
        let email = format!("load-{i}-{prefix}@example.com");
        let event = billsync_sandbox::stripe::customer_created_event(
            &format!("cus_LOAD{i}"),
            &email,
            &format!("Load Customer{i}"),
        );
        let webhook = billsync_sandbox::stripe::signed_webhook(
            "whsec_load",
            chrono::Utc::now().timestamp(),
            &event,
        );
        at.push((email.to_lowercase(), SystemTime::now()));
        let (http, url) = (http.clone(), url.clone());
        tasks.spawn(async move {
            let answer = http
                .post(&url)
                .header("Stripe-Signature", webhook.signature)
                .header("Content-Type", "application/json")
                .body(webhook.body)
                .send()
                .await;
            match answer {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("webhook {i}: HTTP {}", response.status())),
                Err(error) => Some(format!("webhook {i}: {error}")),
            }
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        if let Some(failure) = joined.expect("sender task") {
            failed.push(failure);
        }
    }
    Sent {
        at,
        failed,
        elapsed: started.elapsed(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Runs `commands` as processes of one deployment under the load, and checks the outcome.
async fn survives_load(label: &str, log_format: &str, commands: &[&str]) -> Deployment {
    let crms = commands.contains(&"zoho");
    let mut deployment = Deployment::new(log_format, crms).await;
    for command in commands {
        deployment.start(command);
    }
    deployment.wait_ready().await;

    let sent = send_webhooks(deployment.files.ingest_port, &deployment.prefix).await;
    deployment.assert_alive();
    assert!(
        sent.failed.is_empty(),
        "{} of {WEBHOOKS} webhooks were not answered 2xx, first: {:?}",
        sent.failed.len(),
        sent.failed.first()
    );
    let rate = WEBHOOKS as f64 / sent.elapsed.as_secs_f64();
    assert!(
        rate >= 100.0,
        "the sender reached only {rate:.1} webhooks/s; the test needs at least 100"
    );

    let sandbox = deployment.sandbox.activecampaign.clone();
    let mut created = Default::default();
    let drain = Instant::now();
    let mut alive_check = Instant::now();
    while drain.elapsed() < Duration::from_secs(180) {
        created = sandbox.contact_creation_times(ACCOUNT);
        if created.len() >= WEBHOOKS {
            break;
        }
        if alive_check.elapsed() > Duration::from_secs(1) {
            deployment.assert_alive();
            alive_check = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    deployment.assert_alive();
    let mut latencies = Vec::with_capacity(WEBHOOKS);
    let mut missing = Vec::new();
    for (email, sent_at) in &sent.at {
        match created.get(email) {
            Some(created_at) => {
                latencies.push(created_at.duration_since(*sent_at).unwrap_or_default())
            }
            None => missing.push(email.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {WEBHOOKS} contacts are not in the account 180 s after the last webhook, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    latencies.sort();
    let p99 = percentile(&latencies, 0.99);
    // Not a speed target: a liveness bound. A backlog the worker cannot work off (the shared
    // rate limiter once spent its KV round trips on lost compare-and-sets) shows as a p99
    // of a minute or more while every contact still arrives in the end.
    assert!(
        p99 < Duration::from_secs(30),
        "webhook → contact p99 was {p99:?}: the pipeline fell behind a 125/s load"
    );
    println!(
        "{label}: {WEBHOOKS} webhooks at {rate:.1}/s sustained, all 2xx; webhook → contact \
         created p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; every contact in the account {:.1} s \
         after the last webhook",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        latencies.last().expect("some latencies").as_secs_f64() * 1e3,
        drain.elapsed().as_secs_f64(),
    );
    if crms {
        // Zoho takes the 3,000 contacts in 100-record upserts within seconds; Pipedrive,
        // searching 5 times a second for new persons, works through them much longer, so
        // its worker is measured with most of them waiting (and hands them back at SIGTERM).
        let zoho = deployment.sandbox.zoho.clone();
        let pipedrive = deployment.sandbox.pipedrive.clone();
        eventually(
            "every contact in Zoho and some persons in Pipedrive",
            Duration::from_secs(180),
            || {
                let (zoho, pipedrive) = (zoho.clone(), pipedrive.clone());
                async move {
                    let contacts = zoho.snapshot("load-org").contacts.len();
                    let persons = pipedrive.snapshot("load").persons.len();
                    (contacts >= WEBHOOKS && persons > 0).then_some(())
                }
            },
        )
        .await;
        deployment.assert_alive();
    }
    // What k8s/*.yaml's requests and limits come from; a service past its memory limit at
    // this load would be OOM-killed in a pod.
    let run_secs = sent.elapsed.as_secs_f64() + drain.elapsed().as_secs_f64();
    for (command, peak_mib, cpu_secs) in deployment.resources() {
        println!(
            "{label}: billsync {command}: peak RSS {peak_mib:.0} MiB, CPU {cpu_secs:.1} s \
             ({:.2} cores over the {run_secs:.0} s of load)",
            cpu_secs / run_secs
        );
        if let Some(limit) = k8s_memory_limit_mib(&command) {
            assert!(
                peak_mib < limit * 0.5,
                "billsync {command} peaked at {peak_mib:.0} MiB under load, more than half its \
                 memory limit in k8s ({limit} MiB): raise the limit"
            );
        }
    }
    deployment
}

/// The memory limit (MiB) of the Deployment running `billsync <command>` in k8s/.
fn k8s_memory_limit_mib(command: &str) -> Option<f64> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../k8s/{command}.yaml"));
    let manifest = std::fs::read_to_string(path).ok()?;
    let limits = &manifest[manifest.find("limits:")?..];
    let memory = limits
        .lines()
        .find_map(|l| l.trim().strip_prefix("memory:"))?;
    memory.trim().strip_suffix("Mi")?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billsync_up_with_json_logs_and_otlp_survives_125_webhooks_per_second() {
    let deployment = survives_load("billsync up (json)", "json", &["up"]).await;
    let otlp = deployment.stop().await;
    assert!(
        !otlp.spans().is_empty(),
        "no span reached the OTLP collector"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billsync_up_with_pretty_logs_survives_125_webhooks_per_second() {
    let deployment = survives_load("billsync up (pretty)", "pretty", &["up"]).await;
    deployment.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_alone_survives_125_webhooks_per_second() {
    let deployment = survives_load(
        "ingest, errors and each worker apart (json)",
        "json",
        &["ingest", "errors", "activecampaign", "zoho", "pipedrive"],
    )
    .await;
    let otlp = deployment.stop().await;
    assert!(
        !otlp.spans().is_empty(),
        "no span reached the OTLP collector"
    );
    let chains = otlp.assert_webhook_to_crm(
        "billsync-ingest",
        "billsync-activecampaign",
        "activecampaign",
        &["whsec_load", "load-token", "admin-load"],
    );
    println!("{chains} traces run from a webhook to an ActiveCampaign request");
    for (worker, destination) in [
        ("billsync-zoho", "zoho"),
        ("billsync-pipedrive", "pipedrive"),
    ] {
        let chains = otlp.assert_webhook_to_crm(
            "billsync-ingest",
            worker,
            destination,
            &[
                "whsec_load",
                "load-token",
                "admin-load",
                "zoho-secret-load",
                "1000.refresh-load",
                "pd-token-load",
            ],
        );
        println!("{chains} traces run from a webhook to a {destination} request");
    }
}
