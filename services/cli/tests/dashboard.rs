//! The Grafana dashboard and the alerting rules against a real Prometheus: Debian's
//! `prometheus` scrapes a running `billsync up` (against the sandbox) every second while
//! events flow through every part the dashboard shows — Stripe webhooks (good and forged), a
//! Stripe historical backfill with throttled API calls, a Chargebee site polled through 429s,
//! ActiveCampaign writes with 500s, a refused contact, tracked events, orders, and an
//! operator's retry, into ActiveCampaign, Zoho CRM and Pipedrive. Then every query of `deploy/grafana/billsync-dashboard.json` goes
//! through Prometheus's HTTP API, and the test fails on any that errors or returns no series,
//! and on any `billsync_*` metric an alert in `k8s/monitoring/prometheus-rules.yaml` reads
//! that the processes do not export. Names in the dashboard, the alerts and the code can no
//! longer drift apart unnoticed. The spans exported meanwhile must hold, for each destination,
//! one trace from a webhook to that CRM's requests, and no email or secret.
//!
//! Needs the `prometheus` binary (`make test` installs it: deploy/ensure-check-tools.sh).

use billsync_e2e::{
    ensure_nats, eventually, free_port, fresh_database, unique_prefix, OtlpCollector,
};
use billsync_sandbox::{
    AcAccount, AcFaults, CbCustomerInput, CbFaults, CbSite, StripeAccount, StripeFaults, StripeSeed,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_billsync");
const WEBHOOK_SECRET: &str = "whsec_dashboard";
const ADMIN_TOKEN: &str = "admin-dashboard";
const REFUSED_EMAIL: &str = "refused-dashboard@example.com";
/// What the test puts for Grafana's `$__rate_interval` (scrapes are 1 s apart) and `$__range`.
const RATE_INTERVAL: &str = "15s";
const RANGE: &str = "10m";

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Prometheus server scraping one target every second, with its data in a temp dir.
struct Prometheus {
    _process: Running,
    url: String,
    http: reqwest::Client,
}

impl Prometheus {
    async fn start(dir: &Path, target: &str) -> Prometheus {
        let binary = which("prometheus").unwrap_or_else(|| {
            panic!(
                "the `prometheus` binary is not on PATH: install Debian's `prometheus` package \
                 (deploy/ensure-check-tools.sh, which `make test` runs, does)"
            )
        });
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: billsync\n    static_configs:\n      \
                 - targets: ['{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
        let process = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            _process: Running(process),
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        eventually(
            "Prometheus to be ready",
            Duration::from_secs(30),
            || async {
                let response = prometheus
                    .http
                    .get(format!("{}/-/ready", prometheus.url))
                    .send()
                    .await
                    .ok()?;
                response.status().is_success().then_some(())
            },
        )
        .await;
        prometheus
    }

    /// The series an instant query returns now, or Prometheus's error.
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let response = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("not JSON: {e}"))?;
        if body["status"] != "success" {
            return Err(format!(
                "{}: {}",
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("no message")
            ));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

fn which(binary: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|path| path.is_file())
    })
}

/// Every query of the dashboard: (panel title, expression with Grafana's variables filled).
fn dashboard_queries() -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for panel in panels {
            walk(panel["panels"].as_array().map_or(&[], |p| p), out);
            for target in panel["targets"].as_array().map_or(&[][..], |t| t) {
                if let Some(expr) = target["expr"].as_str() {
                    let expr = expr
                        .replace("$__rate_interval", RATE_INTERVAL)
                        .replace("$__range", RANGE);
                    assert!(
                        !expr.contains('$'),
                        "panel {:?}: a dashboard variable this test does not fill: {expr}",
                        panel["title"]
                    );
                    out.push((panel["title"].as_str().unwrap_or("?").to_string(), expr));
                }
            }
        }
    }
    let path = repository().join("deploy/grafana/billsync-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    walk(
        dashboard["panels"].as_array().expect("panels"),
        &mut queries,
    );
    assert!(queries.len() > 20, "found only {} queries", queries.len());
    queries
}

/// The `billsync_*` metric names the alerting rules' expressions read.
fn alert_metrics() -> BTreeSet<String> {
    let rules = std::fs::read_to_string(repository().join("k8s/monitoring/prometheus-rules.yaml"))
        .expect("read the alerting rules");
    // The text of every `expr:` (a block scalar: the lines indented deeper than its key).
    let mut expressions = String::new();
    let mut expr_indent = None;
    for line in rules.lines() {
        let indent = line.len() - line.trim_start().len();
        match expr_indent {
            Some(key) if indent > key || line.trim().is_empty() => {
                expressions.push_str(line);
                expressions.push('\n');
                continue;
            }
            _ => expr_indent = None,
        }
        if let Some(inline) = line.trim_start().strip_prefix("expr:") {
            expressions.push_str(inline);
            expressions.push('\n');
            expr_indent = Some(indent);
        }
    }
    let names: BTreeSet<String> = expressions
        .match_indices("billsync_")
        .map(|(start, _)| {
            expressions[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect();
    assert!(
        names.len() >= 6,
        "found only {names:?} in the alerting rules"
    );
    names
}

async fn send_webhook(http: &reqwest::Client, url: &str, secret: &str, event: &Value) -> u16 {
    let webhook =
        billsync_sandbox::stripe::signed_webhook(secret, chrono::Utc::now().timestamp(), event);
    http.post(url)
        .header("Stripe-Signature", webhook.signature)
        .header("Content-Type", "application/json")
        .body(webhook.body)
        .send()
        .await
        .expect("ingest answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_alert_metric_has_series_in_a_real_prometheus() {
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = fresh_database().await;

    // The sandbox, with a fault in each place the dashboard watches.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, Default::default())
        .await
        .expect("sandbox");
    let mut account = AcAccount::new("dash", "ac-token-dashboard");
    account.requests_per_second = 1_000;
    let (actid, event_key) = (account.event_actid.clone(), account.event_key.clone());
    sandbox.activecampaign.add_account(account);
    sandbox.activecampaign.set_faults(
        "dash",
        AcFaults {
            reject_emails: vec![REFUSED_EMAIL.into()],
            fail_next: 3,
            ..AcFaults::default()
        },
    );
    let stripe_key = "sk_test_dashboard000000000001";
    sandbox
        .stripe
        .add_account(StripeAccount::new("dash", stripe_key));
    sandbox.stripe.seed(
        "dash",
        &StripeSeed {
            customers: 4,
            subscriptions_per_customer: 1,
            invoices_per_customer: 1,
            charges_per_customer: 0,
            checkout_sessions_per_customer: 0,
        },
    );
    sandbox.stripe.set_faults(
        "dash",
        StripeFaults {
            throttle_next: 2,
            retry_after_secs: 1,
            ..StripeFaults::default()
        },
    );
    sandbox.zoho.add_org(billsync_sandbox::ZohoOrg::new(
        "dash-org",
        "1000.DASHCLIENT",
        "zoho-secret-dashboard",
        "1000.refresh-dashboard",
    ));
    sandbox
        .pipedrive
        .add_company(billsync_sandbox::PdCompany::new(
            "dash",
            "pd-token-dashboard",
        ));
    let otlp = OtlpCollector::start().await;
    let cb_key = "cb-key-dashboard";
    sandbox.chargebee.add_site(CbSite::new("dash", cb_key));
    sandbox.chargebee.set_faults(
        "dash",
        CbFaults {
            throttle_next: 2,
            retry_after_secs: 1,
            ..CbFaults::default()
        },
    );
    sandbox
        .chargebee
        .create_customer(
            "dash",
            CbCustomerInput {
                first_name: Some("Grace".into()),
                last_name: Some("Hopper".into()),
                email: Some("grace-dashboard@example.com".into()),
                ..CbCustomerInput::default()
            },
        )
        .expect("a Chargebee customer");

    // `billsync up`, every service in one process.
    let secret = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).expect("write a secret");
        path.display().to_string()
    };
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let config = format!(
        r#"
[telemetry]
otlp_endpoint = "{otlp}"
[nats]
url = "{nats}"
prefix = "{prefix}"
retention_days = 1
[postgres]
url = "{postgres}"
[ingest]
listen = "127.0.0.1:{ingest}"
[errors]
listen = "127.0.0.1:{errors}"
admin_token = {{ file = "{admin}" }}
[workers]
max_attempts = 5
activecampaign_listen = "127.0.0.1:{ac_port}"
zoho_listen = "127.0.0.1:{zoho_port}"
pipedrive_listen = "127.0.0.1:{pipedrive_port}"

[[sources.stripe]]
name = "stripe-dash"
webhook_secrets = [{{ file = "{whsec}" }}]
api_base = "{stripe_base}"
api_key = {{ file = "{stripe_key}" }}
sync_type = "historical_and_new"

[[sources.chargebee]]
name = "cb-dash"
site = "dash"
api_key = {{ file = "{cb_key}" }}
base_url = "{cb_base}"
poll_interval_secs = 1

[[destinations.activecampaign]]
name = "ac-dash"
base_url = "{ac_base}"
api_token = {{ file = "{ac_token}" }}
event_key = {{ file = "{event_key}" }}
requests_per_second = 1000

[[syncs]]
source = "stripe-dash"
destination = "ac-dash"
resources = ["customer", "subscription", "invoice"]
[syncs.options]
track_events = true
track_url = "{track_url}"
track_actid = "{actid}"

[[syncs]]
source = "cb-dash"
destination = "ac-dash"

[[destinations.zoho]]
name = "zoho-dash"
accounts_url = "{zoho_accounts}"
client_id = {{ file = "{zoho_id}" }}
client_secret = {{ file = "{zoho_secret}" }}
refresh_token = {{ file = "{zoho_refresh}" }}

[[syncs]]
source = "stripe-dash"
destination = "zoho-dash"

[[destinations.pipedrive]]
name = "pd-dash"
base_url = "{pd_base}"
api_token = {{ file = "{pd_token}" }}

[[syncs]]
source = "stripe-dash"
destination = "pd-dash"
"#,
        otlp = otlp.endpoint,
        zoho_accounts = sandbox.zoho.accounts_url("dash-org"),
        zoho_id = secret("zoho-id", "1000.DASHCLIENT"),
        zoho_secret = secret("zoho-secret", "zoho-secret-dashboard"),
        zoho_refresh = secret("zoho-refresh", "1000.refresh-dashboard"),
        pd_base = sandbox.pipedrive.base_url("dash"),
        pd_token = secret("pd-token", "pd-token-dashboard"),
        nats = ensure_nats(),
        postgres = db.url,
        ingest = ports[0],
        errors = ports[1],
        ac_port = ports[2],
        zoho_port = ports[3],
        pipedrive_port = ports[4],
        admin = secret("admin-token", ADMIN_TOKEN),
        whsec = secret("whsec", WEBHOOK_SECRET),
        stripe_base = sandbox.stripe_base_url("dash"),
        stripe_key = secret("stripe-key", stripe_key),
        cb_key = secret("cb-key", cb_key),
        cb_base = sandbox.chargebee.base_url("dash"),
        ac_base = sandbox.activecampaign_base_url("dash"),
        ac_token = secret("ac-token", "ac-token-dashboard"),
        event_key = secret("event-key", &event_key),
        track_url = sandbox.activecampaign.tracking_base_url("dash"),
    );
    let config_path = dir.path().join("billsync.toml");
    std::fs::write(&config_path, config).expect("write the configuration");
    let log_path = dir.path().join("billsync.log");
    let up = Running(
        Command::new(BIN)
            .arg("--config")
            .arg(&config_path)
            .arg("up")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).expect("log file"))
            .spawn()
            .expect("start billsync up"),
    );
    billsync_e2e::wait_ready(&ports).await;
    let http = reqwest::Client::new();
    // Every service of `billsync up` serves the process's one registry: scrape it once.
    let prometheus = Prometheus::start(dir.path(), &format!("127.0.0.1:{}", ports[0])).await;

    // Webhooks: three customers, one of which ActiveCampaign refuses, and a forged one.
    let webhooks = format!("http://127.0.0.1:{}/webhooks/stripe/stripe-dash", ports[0]);
    for (i, email) in [
        "ada-dashboard@example.com",
        "alan-dashboard@example.com",
        REFUSED_EMAIL,
    ]
    .iter()
    .enumerate()
    {
        let event = billsync_sandbox::stripe::customer_created_event(
            &format!("cus_DASH{i}"),
            email,
            &format!("Dashboard Customer{i}"),
        );
        assert_eq!(
            send_webhook(&http, &webhooks, WEBHOOK_SECRET, &event).await,
            200
        );
    }
    let forged =
        billsync_sandbox::stripe::customer_created_event("cus_FORGED", "f@example.com", "F");
    assert_eq!(
        send_webhook(&http, &webhooks, "whsec_wrong", &forged).await,
        400
    );

    // The refused contact becomes a sync error; the operator retries it (it fails again).
    let errors_url = format!("http://127.0.0.1:{}", ports[1]);
    eventually(
        "the refused contact in the errors list",
        Duration::from_secs(60),
        || {
            let http = http.clone();
            let url = format!("{errors_url}/api/v1/failures");
            async move {
                let body: Value = http
                    .get(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                body.to_string()
                    .contains("\"customer/cus_DASH2\"")
                    .then_some(())
            }
        },
    )
    .await;
    let retry = Command::new(BIN)
        .arg("--config")
        .arg(&config_path)
        .args(["errors", "retry", "--all", "--url", &errors_url])
        .output()
        .expect("run billsync errors retry");
    assert!(
        retry.status.success(),
        "billsync errors retry --all: {}",
        String::from_utf8_lossy(&retry.stderr)
    );

    // Every query answers with series (counters appear as their events happen: wait).
    let queries = dashboard_queries();
    let alert_metrics = alert_metrics();
    let mut missing = Vec::new();
    for _ in 0..60 {
        missing.clear();
        for (title, expr) in &queries {
            match prometheus.query(expr).await {
                Ok(series) if !series.is_empty() => {}
                Ok(_) => missing.push(format!("panel {title:?}: no series for {expr}")),
                Err(error) => missing.push(format!("panel {title:?}: {error} in {expr}")),
            }
        }
        for name in &alert_metrics {
            if prometheus.query(name).await.map_or(true, |s| s.is_empty()) {
                missing.push(format!(
                    "k8s/monitoring/prometheus-rules.yaml reads {name}, which billsync does not export"
                ));
            }
        }
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let exported = prometheus
        .query(r#"count by (__name__) ({__name__=~"billsync_.+"})"#)
        .await
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_string))
        .collect::<Vec<_>>();
    // SIGTERM, so the process flushes its spans before it exits.
    let mut up = up;
    Command::new("kill")
        .args(["-TERM", &up.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    for _ in 0..300 {
        if up.0.try_wait().expect("wait").is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(up);
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        missing.is_empty(),
        "{} of {} dashboard queries and alert metrics have no series after 2 minutes:\n  {}\n\
         billsync exports: {exported:?}\nits log ends:\n{}",
        missing.len(),
        queries.len() + alert_metrics.len(),
        missing.join("\n  "),
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    // One trace from a webhook to each destination's CRM requests (`billsync up` is one
    // process, service "billsync"; the cross-process chain is under_load.rs's).
    let secrets = [
        WEBHOOK_SECRET,
        ADMIN_TOKEN,
        "ac-token-dashboard",
        "zoho-secret-dashboard",
        "1000.refresh-dashboard",
        "pd-token-dashboard",
        stripe_key,
        cb_key,
    ];
    for destination in ["activecampaign", "zoho", "pipedrive"] {
        let chains = otlp.assert_webhook_to_crm("billsync", "billsync", destination, &secrets);
        println!("{chains} traces run from a webhook to a {destination} request");
    }
    println!(
        "{} dashboard queries and {} alert metrics answered by Prometheus ({} billsync metrics exported)",
        queries.len(),
        alert_metrics.len(),
        exported.len()
    );
    let nats = async_nats::connect(ensure_nats()).await.expect("nats");
    billsync_e2e::remove_deployment(&nats, &prefix).await;
    db.drop_database().await;
}
