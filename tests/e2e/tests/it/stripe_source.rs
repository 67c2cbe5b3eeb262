//! Stripe as a source (issue 6): the webhook receiver's refusals and its JetStream outage
//! behaviour, secret rotation, resource and event-type filtering, and historical backfills:
//! the `billsync backfill stripe` binary killed with SIGKILL midway and resumed, the
//! configuration-triggered historical sync across replicas, and snapshots reaching the CRM.

use billsync_e2e::{
    billsync_binary, ensure_nats, eventually, unique_prefix, PrivateNats, Stack, StackOptions,
};
use billsync_ingest::stripe::backfill::{
    BackfillOptions, Completed, StripeBackfill, TracingProgress, Trigger,
};
use billsync_sandbox::{stripe, StripeAccount, StripeResource, StripeSeed};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);
const CONNECTION: &str = "stripe-src";
const STRIPE_KEY: &str = "sk_test_e2ebackfill0000000001";

/// What a test's configuration varies.
struct Setup {
    nats_url: String,
    secrets: Vec<String>,
    /// Keys added to the `[[sources.stripe]]` table.
    stripe_extra: String,
    /// Keys added to the `[[syncs]]` table.
    sync_extra: String,
    max_body_bytes: usize,
}

impl Setup {
    fn new(nats_url: String) -> Self {
        Self {
            nats_url,
            secrets: vec![format!("whsec_{}", uuid::Uuid::new_v4().simple())],
            stripe_extra: String::new(),
            sync_extra: String::new(),
            max_body_bytes: 64 * 1024,
        }
    }
}

/// A configuration file (and its secret files) for one test, with its own NATS prefix.
struct TestConfig {
    prefix: String,
    path: PathBuf,
    config: Arc<billsync_config::Config>,
    secrets: Vec<String>,
    _dir: tempfile::TempDir,
}

fn write_config(setup: &Setup) -> TestConfig {
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).expect("write secret");
        path.display().to_string()
    };
    let whsecs: Vec<String> = setup
        .secrets
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{{ file = \"{}\" }}", secret_file(&format!("whsec-{i}"), s)))
        .collect();
    let ac_token = secret_file("ac-token", "ac-token-unused");
    let stripe_key = secret_file("stripe-key", STRIPE_KEY);
    let stripe_extra = setup.stripe_extra.replace("{STRIPE_KEY_FILE}", &stripe_key);
    let text = format!(
        r#"
[nats]
url = "{nats_url}"
prefix = "{prefix}"
retention_days = 1

[ingest]
publish_timeout_ms = 1000
max_body_bytes = {max_body}

[telemetry]
log_level = "warn"

[[sources.stripe]]
name = "{CONNECTION}"
webhook_secrets = [{whsecs}]
{stripe_extra}

[[destinations.activecampaign]]
name = "ac-unused"
base_url = "http://127.0.0.1:9"
api_token = {{ file = "{ac_token}" }}

[[syncs]]
source = "{CONNECTION}"
destination = "ac-unused"
{sync_extra}
"#,
        nats_url = setup.nats_url,
        max_body = setup.max_body_bytes,
        whsecs = whsecs.join(", "),
        sync_extra = setup.sync_extra,
    );
    let path = dir.path().join("billsync.toml");
    std::fs::write(&path, &text).expect("write config");
    let config = billsync_config::Config::load(&path).unwrap_or_else(|e| panic!("config: {e}"));
    TestConfig {
        prefix,
        path,
        config: Arc::new(config),
        secrets: setup.secrets.clone(),
        _dir: dir,
    }
}

/// The ingest service in-process, as `billsync ingest` runs it.
struct Ingest {
    url: String,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start_ingest(config: &TestConfig) -> Ingest {
    billsync_e2e::init_telemetry();
    let nats = billsync_bus::connect(&config.config.nats.url, "e2e-ingest")
        .await
        .expect("connect NATS");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(billsync_ingest::run(
        Arc::clone(&config.config),
        nats,
        listener,
        shutdown.clone(),
    ));
    let ready = format!("{url}/readyz");
    eventually("ingest to be ready", WAIT, || async {
        let response = reqwest::get(&ready).await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    Ingest {
        url,
        shutdown,
        task,
    }
}

impl Ingest {
    fn webhook_url(&self) -> String {
        format!("{}/webhooks/stripe/{CONNECTION}", self.url)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("ingest task")
            .expect("ingest ran cleanly");
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// POSTs `body` with a `Stripe-Signature` over `signed_body` (the same unless tampering).
async fn post_signed(
    url: &str,
    secret: &str,
    timestamp: i64,
    signed_body: &[u8],
    body: Vec<u8>,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header(
            "Stripe-Signature",
            stripe::sign(secret, timestamp, signed_body),
        )
        .header("Content-Type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("post webhook")
}

async fn send(url: &str, secret: &str, event: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(event).expect("encode");
    post_signed(url, secret, now(), &body.clone(), body).await
}

async fn stream_count(js: &async_nats::jetstream::Context, prefix: &str) -> u64 {
    let topology = billsync_bus::Topology::new(prefix);
    match js.get_stream(topology.events_stream()).await {
        Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Every message of the events stream, decoded.
async fn stream_events(js: &async_nats::jetstream::Context, prefix: &str) -> Vec<Value> {
    let topology = billsync_bus::Topology::new(prefix);
    let expected = stream_count(js, prefix).await as usize;
    if expected == 0 {
        return Vec::new();
    }
    let stream = js
        .get_stream(topology.events_stream())
        .await
        .expect("events stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut events = Vec::with_capacity(expected);
    let deadline = tokio::time::Instant::now() + WAIT;
    while events.len() < expected {
        let message = tokio::time::timeout_at(deadline, messages.next())
            .await
            .expect("reading the stream in time")
            .expect("a message")
            .expect("a readable message");
        events.push(serde_json::from_slice(&message.payload).expect("event JSON"));
    }
    events
}

async fn cleanup(js: &async_nats::jetstream::Context, prefix: &str) {
    let topology = billsync_bus::Topology::new(prefix);
    let _ = js.delete_stream(topology.events_stream()).await;
    let _ = js.delete_key_value(topology.cursors_bucket()).await;
    let _ = js.delete_key_value(topology.leases_bucket()).await;
}

async fn shared_jetstream() -> async_nats::jetstream::Context {
    let client = billsync_bus::connect(&ensure_nats(), "e2e-check")
        .await
        .expect("connect NATS");
    async_nats::jetstream::new(client)
}

fn customer_event(id: &str) -> Value {
    stripe::customer_created_event(
        id,
        &format!("{}@example.com", id.to_lowercase()),
        "Test Person",
    )
}

// ----- webhook receiver ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_stopped_gets_503_then_2xx_once_it_is_back() {
    let mut nats = PrivateNats::start();
    let config = write_config(&Setup::new(nats.url()));
    let secret = config.secrets[0].clone();
    let ingest = start_ingest(&config).await;

    let before = customer_event("cus_BEFORE");
    assert_eq!(
        send(&ingest.webhook_url(), &secret, &before).await.status(),
        200
    );

    nats.kill();
    let during = customer_event("cus_DURING");
    let started = Instant::now();
    let refused = send(&ingest.webhook_url(), &secret, &during).await;
    let took = started.elapsed();
    assert_eq!(
        refused.status(),
        503,
        "never 2xx for an event that is not durable"
    );
    assert!(
        refused.headers().contains_key("retry-after"),
        "{:?}",
        refused.headers()
    );
    // publish_timeout_ms = 1000: the answer comes from the timeout, not a hang.
    assert!(took < Duration::from_secs(5), "503 took {took:?}");

    nats.restart();
    let accepted = eventually("the retried webhook to be accepted", WAIT, || async {
        let response = send(&ingest.webhook_url(), &secret, &during).await;
        (response.status() == 200).then_some(response)
    })
    .await;
    let body: Value = accepted.json().await.expect("json");
    assert_eq!(body["received"], true);

    let checker = billsync_bus::connect(&nats.url(), "e2e-check")
        .await
        .expect("connect private NATS");
    let js = async_nats::jetstream::new(checker);
    let events = stream_events(&js, &config.prefix).await;
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let expected: BTreeSet<&str> = [
        before["id"].as_str().unwrap(),
        during["id"].as_str().unwrap(),
    ]
    .into_iter()
    .collect();
    assert_eq!(ids, expected);
    assert_eq!(events.len(), 2, "the retried event is stored once");
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_accepts_the_old_and_the_new_secret() {
    let mut setup = Setup::new(ensure_nats());
    setup.secrets = vec![
        format!("whsec_old{}", uuid::Uuid::new_v4().simple()),
        format!("whsec_new{}", uuid::Uuid::new_v4().simple()),
    ];
    let config = write_config(&setup);
    let ingest = start_ingest(&config).await;
    let url = ingest.webhook_url();

    let old = customer_event("cus_ROT_OLD");
    assert_eq!(send(&url, &config.secrets[0], &old).await.status(), 200);
    let new = customer_event("cus_ROT_NEW");
    assert_eq!(send(&url, &config.secrets[1], &new).await.status(), 200);
    // Stripe signs with both secrets during a rotation: two v1 entries, one per secret.
    let both = customer_event("cus_ROT_BOTH");
    let body = serde_json::to_vec(&both).unwrap();
    let t = now();
    let v1 = |secret: &str| {
        stripe::sign(secret, t, &body)
            .split_once(",v1=")
            .unwrap()
            .1
            .to_string()
    };
    let header = format!(
        "t={t},v1={},v1={}",
        v1("whsec_retired"),
        v1(&config.secrets[1])
    );
    let response = reqwest::Client::new()
        .post(&url)
        .header("Stripe-Signature", header)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let other = customer_event("cus_ROT_OTHER");
    assert_eq!(send(&url, "whsec_retired", &other).await.status(), 400);

    let js = shared_jetstream().await;
    let events = stream_events(&js, &config.prefix).await;
    let mut ids: Vec<&str> = events
        .iter()
        .map(|e| e["object_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, vec!["cus_ROT_BOTH", "cus_ROT_NEW", "cus_ROT_OLD"]);
    ingest.stop().await;
    cleanup(&js, &config.prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_tampered_malformed_and_oversized_webhooks_change_nothing() {
    let mut setup = Setup::new(ensure_nats());
    setup.max_body_bytes = 8 * 1024;
    let config = write_config(&setup);
    let secret = config.secrets[0].clone();
    let ingest = start_ingest(&config).await;
    let url = ingest.webhook_url();
    let event = customer_event("cus_BAD");
    let body = serde_json::to_vec(&event).unwrap();

    let reason = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json error body");
        (
            status,
            body["error"].as_str().unwrap_or_default().to_string(),
        )
    };

    let forged = post_signed(&url, "whsec_forged", now(), &body, body.clone()).await;
    let (status, message) = reason(forged).await;
    assert_eq!(status, 400);
    assert!(message.contains("signature"), "{message}");

    let stale = post_signed(&url, &secret, now() - 301, &body, body.clone()).await;
    let (status, message) = reason(stale).await;
    assert_eq!(status, 400);
    assert!(message.contains("tolerance"), "{message}");

    let mut tampered_event = event.clone();
    tampered_event["data"]["object"]["email"] = json!("mallory@example.com");
    let tampered = post_signed(
        &url,
        &secret,
        now(),
        &body,
        serde_json::to_vec(&tampered_event).unwrap(),
    )
    .await;
    let (status, message) = reason(tampered).await;
    assert_eq!(status, 400);
    assert!(message.contains("signature"), "{message}");

    let garbage = b"{\"id\": \"evt_1\", not json".to_vec();
    let malformed = post_signed(&url, &secret, now(), &garbage, garbage.clone()).await;
    let (status, message) = reason(malformed).await;
    assert_eq!(status, 400);
    assert!(message.contains("not a Stripe event"), "{message}");

    let not_an_event = br#"{"hello": "world"}"#.to_vec();
    let response = post_signed(&url, &secret, now(), &not_an_event, not_an_event.clone()).await;
    assert_eq!(response.status(), 400);

    let mut large = event.clone();
    large["data"]["object"]["metadata"]["padding"] = json!("x".repeat(9 * 1024));
    let large_body = serde_json::to_vec(&large).unwrap();
    let oversized = post_signed(&url, &secret, now(), &large_body, large_body.clone()).await;
    let (status, message) = reason(oversized).await;
    assert_eq!(status, 413);
    assert!(message.contains("8192"), "{message}");

    let js = shared_jetstream().await;
    assert_eq!(stream_count(&js, &config.prefix).await, 0);
    // The endpoint works: the genuine event goes through.
    assert_eq!(send(&url, &secret, &event).await.status(), 200);
    assert_eq!(stream_count(&js, &config.prefix).await, 1);
    ingest.stop().await;
    cleanup(&js, &config.prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribed_types_and_resources_get_2xx_publish_nothing_and_duplicates_collapse() {
    let mut setup = Setup::new(ensure_nats());
    setup.sync_extra = r#"resources = ["customer", "subscription"]"#.into();
    let config = write_config(&setup);
    let secret = config.secrets[0].clone();
    let ingest = start_ingest(&config).await;
    let url = ingest.webhook_url();

    let unsubscribed = stripe::event(
        "payment_intent.created",
        json!({"id": "pi_1", "object": "payment_intent", "customer": "cus_1"}),
    );
    let response = send(&url, &secret, &unsubscribed).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ignored"], "event type not synced");

    let not_synced = stripe::event(
        "invoice.created",
        json!({"id": "in_1", "object": "invoice", "customer": "cus_1"}),
    );
    let response = send(&url, &secret, &not_synced).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["ignored"].as_str().unwrap().contains("resource"),
        "{body}"
    );

    let js = shared_jetstream().await;
    assert_eq!(stream_count(&js, &config.prefix).await, 0);

    let subscription = stripe::event(
        "customer.subscription.created",
        json!({"id": "sub_1", "object": "subscription", "customer": "cus_1"}),
    );
    for _ in 0..3 {
        assert_eq!(send(&url, &secret, &subscription).await.status(), 200);
    }
    assert_eq!(
        stream_count(&js, &config.prefix).await,
        1,
        "duplicates collapse"
    );
    let events = stream_events(&js, &config.prefix).await;
    assert_eq!(events[0]["event_type"], "customer.subscription.created");
    assert_eq!(events[0]["object"], "subscription");
    assert_eq!(events[0]["customer_id"], "cus_1");
    ingest.stop().await;
    cleanup(&js, &config.prefix).await;
}

// ----- backfills ---------------------------------------------------------------------------

async fn stripe_sandbox(seed: &StripeSeed) -> billsync_sandbox::RunningSandbox {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sandbox = billsync_sandbox::start(listener, Default::default())
        .await
        .expect("sandbox");
    sandbox
        .stripe
        .add_account(StripeAccount::new("acct", STRIPE_KEY));
    sandbox.stripe.seed("acct", seed);
    sandbox
}

fn backfill_setup(sandbox: &billsync_sandbox::RunningSandbox, sync_type: &str) -> Setup {
    let mut setup = Setup::new(ensure_nats());
    setup.stripe_extra = format!(
        "api_base = \"{}\"\napi_key = {{ file = \"{{STRIPE_KEY_FILE}}\" }}\nsync_type = \"{sync_type}\"",
        sandbox.stripe_base_url("acct")
    );
    setup.sync_extra = r#"resources = ["customer", "subscription", "invoice"]"#.into();
    setup
}

/// Object ids in the stream by object kind, failing on any duplicate.
fn ids_by_object(events: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_object: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in events {
        let object = event["object"].as_str().unwrap().to_string();
        let id = event["object_id"].as_str().unwrap().to_string();
        assert!(
            by_object.entry(object).or_default().insert(id.clone()),
            "{id} published twice"
        );
    }
    by_object
}

fn sandbox_ids(
    sandbox: &billsync_sandbox::RunningSandbox,
    resource: StripeResource,
) -> BTreeSet<String> {
    sandbox.stripe.ids("acct", resource).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_of_5000_customers_killed_midway_resumes_and_publishes_each_object_once() {
    let sandbox = stripe_sandbox(&StripeSeed {
        customers: 5_000,
        subscriptions_per_customer: 1,
        invoices_per_customer: 1,
        ..StripeSeed::default()
    })
    .await;
    let config = write_config(&backfill_setup(&sandbox, "new_only"));
    let binary = billsync_binary();
    let js = shared_jetstream().await;
    let backfill = || {
        let mut command = tokio::process::Command::new(&binary);
        command
            .arg("--config")
            .arg(&config.path)
            .args(["backfill", "stripe", "--connection", CONNECTION])
            .args(["--lease-ttl-secs", "3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command.spawn().expect("start billsync backfill")
    };

    let mut first = backfill();
    let started = Instant::now();
    let seen = loop {
        if let Some(status) = first.try_wait().expect("poll the child") {
            panic!("the first run ended before it could be killed: {status}");
        }
        let count = stream_count(&js, &config.prefix).await;
        if count >= 4_000 {
            break count;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first run did not get midway: {count} published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first.start_kill().expect("SIGKILL");
    let status = first.wait().await.expect("reap");
    assert!(!status.success(), "killed, not finished: {status}");
    let after_kill = stream_count(&js, &config.prefix).await;
    assert!(
        (seen..15_000).contains(&after_kill),
        "killed midway: {after_kill} of 15000 published"
    );

    let second = backfill();
    let output = tokio::time::timeout(Duration::from_secs(120), second.wait_with_output())
        .await
        .expect("the resumed run finishes in time")
        .expect("run billsync");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("(resumed)"), "{stdout}");
    assert!(stdout.contains("customer 5000 published"), "{stdout}");

    let events = stream_events(&js, &config.prefix).await;
    assert_eq!(events.len(), 15_000, "every object exactly once");
    let by_object = ids_by_object(&events);
    assert_eq!(
        by_object["customer"],
        sandbox_ids(&sandbox, StripeResource::Customers)
    );
    assert_eq!(
        by_object["subscription"],
        sandbox_ids(&sandbox, StripeResource::Subscriptions)
    );
    assert_eq!(
        by_object["invoice"],
        sandbox_ids(&sandbox, StripeResource::Invoices)
    );
    let runs: BTreeSet<&str> = events
        .iter()
        .map(|e| e["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(runs.len(), 1, "the resumed run kept its id: {runs:?}");
    for event in events.iter().take(10) {
        assert!(
            event["id"].as_str().unwrap().starts_with("snap_"),
            "{event}"
        );
        assert_eq!(event["version"]["position"], event["data"]["created"]);
    }
    assert_eq!(
        sandbox.stripe.throttled_count("acct"),
        0,
        "paced under 25 requests/s"
    );
    cleanup(&js, &config.prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn historical_and_new_runs_the_backfill_once_across_replicas() {
    let sandbox = stripe_sandbox(&StripeSeed {
        customers: 300,
        subscriptions_per_customer: 1,
        invoices_per_customer: 1,
        ..StripeSeed::default()
    })
    .await;
    let config = write_config(&backfill_setup(&sandbox, "historical_and_new"));
    let js = shared_jetstream().await;
    // Two replicas start together; one runs the backfill, the other waits and stands down.
    let (a, b) = tokio::join!(start_ingest(&config), start_ingest(&config));
    let topology = billsync_bus::Topology::new(&config.prefix);
    let marker_key = format!("stripe.{CONNECTION}.historical");
    eventually(
        "the historical sync to finish",
        Duration::from_secs(60),
        || async {
            let kv = js.get_key_value(topology.cursors_bucket()).await.ok()?;
            kv.get(&marker_key).await.ok().flatten()
        },
    )
    .await;
    let events = stream_events(&js, &config.prefix).await;
    assert_eq!(events.len(), 900);
    let by_object = ids_by_object(&events);
    assert_eq!(
        by_object["customer"],
        sandbox_ids(&sandbox, StripeResource::Customers)
    );
    assert_eq!(
        by_object["invoice"],
        sandbox_ids(&sandbox, StripeResource::Invoices)
    );
    // Three pages per resource, walked once.
    assert_eq!(sandbox.stripe.request_count("acct"), 9);
    a.stop().await;
    b.stop().await;

    // A later start (a third replica, a restart) finds the marker and does not run again.
    let nats = billsync_bus::connect(&config.config.nats.url, "e2e-again")
        .await
        .unwrap();
    let again = StripeBackfill::prepare(&config.config, nats, CONNECTION)
        .await
        .expect("prepare");
    let options = BackfillOptions {
        trigger: Trigger::HistoricalSync,
        ..BackfillOptions::default()
    };
    let completed = again
        .run(&options, &TracingProgress, &CancellationToken::new())
        .await
        .expect("run");
    assert!(
        matches!(completed, Completed::AlreadyDone(_)),
        "{completed:?}"
    );
    assert_eq!(sandbox.stripe.request_count("acct"), 9);
    assert_eq!(stream_count(&js, &config.prefix).await, 900);
    cleanup(&js, &config.prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_reach_activecampaign_like_live_events() {
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("stripe-key");
    std::fs::write(&key_file, STRIPE_KEY).unwrap();
    // The sandbox is the Stack's: start the Stack, then point the connection at it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stripe_only = billsync_sandbox::start(listener, Default::default())
        .await
        .unwrap();
    stripe_only
        .stripe
        .add_account(StripeAccount::new("acct", STRIPE_KEY));
    stripe_only.stripe.seed(
        "acct",
        &StripeSeed {
            customers: 8,
            subscriptions_per_customer: 1,
            invoices_per_customer: 1,
            ..StripeSeed::default()
        },
    );
    let stack = Stack::start(StackOptions {
        stripe_connection_extra: format!(
            "api_base = \"{}\"\napi_key = {{ file = \"{}\" }}",
            stripe_only.stripe_base_url("acct"),
            key_file.display()
        ),
        ..StackOptions::default()
    })
    .await;
    let backfill =
        StripeBackfill::prepare(&stack.config, stack.nats.clone(), &stack.stripe_connection)
            .await
            .expect("prepare");
    let completed = backfill
        .run(
            &BackfillOptions::default(),
            &TracingProgress,
            &CancellationToken::new(),
        )
        .await
        .expect("backfill");
    let Completed::Ran(report) = completed else {
        panic!("ran")
    };
    // 8 customers, 8 subscriptions, 8 invoices; the seed made no charges or sessions.
    assert_eq!(report.published(), 24);

    let snapshot = eventually(
        "8 contacts with their snapshot tags",
        Duration::from_secs(60),
        || async {
            let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
            let complete = snapshot.contacts.len() == 8
                && snapshot
                    .contacts
                    .iter()
                    .all(|c| snapshot.tags_of(&c.id).len() >= 5);
            complete.then_some(snapshot)
        },
    )
    .await;
    let contact = &snapshot.contacts[0];
    let mut tags = snapshot.tags_of(&contact.id);
    tags.sort();
    assert_eq!(
        tags,
        vec![
            "stripe-integration",
            "stripe-integration-Billing_Subscription_Events",
            "stripe-integration-customer.created",
            "stripe-integration-customer.subscription.created",
            "stripe-integration-invoice.created",
        ]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_stripe_connection_answers_webhooks_and_publishes_nothing() {
    let stack = Stack::start(StackOptions {
        stripe_connection_extra: "enabled = false".into(),
        ..StackOptions::default()
    })
    .await;
    let event = stripe::customer_created_event("cus_OFF1", "off@example.com", "Off Line");
    let response = stack.send_stripe(&event).await;
    assert_eq!(response.status(), 200, "Stripe must not retry for days");
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(
        body,
        json!({"received": true, "ignored": "the connection is unlinked (enabled = false)"})
    );
    // A forged one is still refused: switching off does not open the endpoint.
    let forged = stack.post_stripe(&event, "whsec_wrong", 0).await;
    assert_eq!(forged.status(), 400);
    assert_eq!(stack.events_in_stream().await, 0);
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert!(snapshot.contacts.is_empty());
    stack.stop().await;
}
