//! `billsync status` against real NATS (a prefix of its own) and a real errors service: the
//! figures it prints, as a table and as JSON; what it says when the errors service or NATS
//! cannot be reached.

use async_nats::jetstream::{self, consumer::PullConsumer};
use billsync_bus::{Publisher, StreamSettings, Topology};
use billsync_config::Config;
use billsync_e2e::{ensure_nats, eventually, free_port, fresh_database, unique_prefix};
use billsync_events::{
    BillingEvent, BillingEventV1, DestinationKind, Failure, FailureClass, ObjectKind, Outcome,
    OutcomeResult, OutcomeV1, RecordVersion, SourceKind,
};
use billsync_ingest::chargebee::cursor::CursorStore;
use billsync_ingest::chargebee::PollCursor;
use chrono::{TimeDelta, Utc};
use futures::StreamExt;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_billsync");
const AC: &str = "ac-status";
const PD: &str = "pd-status";
const CB: &str = "cb-status";
const CB_IDLE: &str = "cb-idle";
const ADMIN_TOKEN: &str = "admin-status-token";

/// A configuration with two destination and two Chargebee connections, secrets in files.
fn write_config(dir: &Path, nats: &str, prefix: &str, postgres: &str, errors_port: u16) -> PathBuf {
    let secret = |name: &str, value: &str| {
        let path = dir.join(name);
        std::fs::write(&path, value).expect("secret");
        path.display().to_string()
    };
    let (admin, ac, pd, cb) = (
        secret("admin", ADMIN_TOKEN),
        secret("ac", "ac-status-secret"),
        secret("pd", "pd-status-secret"),
        secret("cb", "cb-status-secret"),
    );
    let config = format!(
        r#"
[nats]
url = "{nats}"
prefix = "{prefix}"
[postgres]
url = "{postgres}"
[errors]
listen = "127.0.0.1:{errors_port}"
admin_token = {{ file = "{admin}" }}
[[sources.chargebee]]
name = "{CB}"
site = "status-test"
api_key = {{ file = "{cb}" }}
[[sources.chargebee]]
name = "{CB_IDLE}"
site = "status-idle"
api_key = {{ file = "{cb}" }}
[[destinations.activecampaign]]
name = "{AC}"
base_url = "http://127.0.0.1:9"
api_token = {{ file = "{ac}" }}
[[destinations.pipedrive]]
name = "{PD}"
base_url = "http://127.0.0.1:9"
api_token = {{ file = "{pd}" }}
"#
    );
    let path = dir.join("billsync.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// Runs `billsync --config <config> status [extra]`, with no environment override. Async:
/// the errors service some tests run shares this runtime and must answer meanwhile.
async fn status(config: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--config")
        .arg(config)
        .arg("status")
        .args(extra)
        .env_remove("BILLSYNC_NATS_URL")
        .env_remove("BILLSYNC_NATS_PREFIX")
        .env_remove("BILLSYNC_ERRORS_URL")
        .output()
        .await
        .expect("run billsync status")
}

fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "billsync status failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// The cells of the table row whose first cell is `first` (columns are two spaces apart).
fn row(table: &str, first: &str) -> Vec<String> {
    table
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .find(|cells| cells.first().is_some_and(|cell| cell == first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{table}"))
}

fn event(n: u32) -> BillingEvent {
    let id = format!("cus_st{n}");
    BillingEvent::V1(BillingEventV1 {
        id: format!("ev_status_{n}"),
        source: SourceKind::Chargebee,
        connection: CB.into(),
        event_type: "customer_changed".into(),
        object: ObjectKind::Customer,
        object_id: id.clone(),
        customer_id: Some(id.clone()),
        occurred_at: Utc::now(),
        version: RecordVersion {
            position: i64::from(n),
            event_id: format!("ev_status_{n}"),
            sequence: None,
        },
        run_id: None,
        data: json!({"id": id}),
        related: Value::Null,
    })
}

fn failed_at(connection: &str, event: &BillingEvent) -> Outcome {
    let v1 = event.v1();
    Outcome::V1(OutcomeV1 {
        destination: DestinationKind::Activecampaign,
        destination_connection: connection.into(),
        source: v1.source,
        source_connection: v1.connection.clone(),
        record_key: v1.record_key(),
        event_id: v1.id.clone(),
        event_type: v1.event_type.clone(),
        run_id: None,
        at: Utc::now(),
        result: OutcomeResult::Failed(Failure {
            class: FailureClass::Rejected,
            message: "Email already belongs to another contact".into(),
            http_status: Some(422),
            vendor_detail: Value::Null,
            attempts: 1,
            event: event.clone(),
        }),
    })
}

#[tokio::test]
async fn status_shows_streams_consumers_cursors_and_open_failures() {
    let prefix = unique_prefix();
    let db = fresh_database().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let errors_port = listener.local_addr().expect("address").port();
    let path = write_config(dir.path(), &ensure_nats(), &prefix, &db.url, errors_port);

    // The errors service, in this process: it declares the outcomes and replay streams and
    // its consumer, and answers the CLI.
    let mut config = Config::load(&path).expect("valid config");
    config.nats.url = ensure_nats();
    config.nats.prefix = prefix.clone();
    config.postgres.url = db.url.clone();
    let config = Arc::new(config);
    let nats = billsync_bus::connect(&ensure_nats(), "billsync-status-test")
        .await
        .expect("NATS");
    let shutdown = CancellationToken::new();
    let errors = tokio::spawn(billsync_errors::run(
        Arc::clone(&config),
        nats.clone(),
        listener,
        shutdown.clone(),
    ));

    // Three events in the stream; the ActiveCampaign worker's consumer holds one unacked.
    let js = jetstream::new(nats.clone());
    let topology = Topology::new(&prefix);
    let settings = StreamSettings::from(&config.nats);
    topology
        .ensure_events_stream(&js, &settings)
        .await
        .expect("events stream");
    let publisher = Publisher::new(js.clone(), topology.clone(), Duration::from_secs(5));
    for n in 1..=3 {
        publisher.publish_event(&event(n)).await.expect("publish");
    }
    let worker: PullConsumer = topology
        .ensure_pull_consumer(
            &js,
            &topology.events_stream(),
            &topology.worker_consumer(AC),
            topology.events_subjects(),
            Duration::from_secs(120),
            100,
        )
        .await
        .expect("worker consumer");
    let mut batch = worker
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .expect("fetch");
    let held = batch
        .next()
        .await
        .expect("one message")
        .expect("a message, not an error");
    eventually(
        "the consumer to show 2 pending, 1 in flight",
        Duration::from_secs(10),
        || {
            let mut worker = worker.clone();
            async move {
                let info = worker.info().await.ok()?;
                (info.num_pending == 2 && info.num_ack_pending == 1).then_some(())
            }
        },
    )
    .await;

    // One Chargebee connection polled (newest event 2 minutes old, polled 30 s ago), one not.
    let cursors = topology
        .ensure_bucket(&js, topology.cursors_bucket(), &settings, Duration::ZERO)
        .await
        .expect("cursors bucket");
    let now = Utc::now();
    CursorStore::new(cursors, CB)
        .save(
            &PollCursor {
                occurred_at: now.timestamp() - 120,
                event_id: Some("ev_cb_newest".into()),
                polled_at: Some(now - TimeDelta::seconds(30)),
                polled_by: Some("ingest-status-test".into()),
            },
            None,
        )
        .await
        .expect("save cursor");

    // One open failure at ActiveCampaign, none at Pipedrive.
    publisher
        .publish_outcome(&failed_at(AC, &event(1)))
        .await
        .expect("publish outcome");
    let http = reqwest::Client::new();
    let summary = format!("http://127.0.0.1:{errors_port}/api/v1/failures/summary");
    eventually(
        "the errors service to count the failure",
        Duration::from_secs(30),
        || async {
            let answer: Value = http
                .get(&summary)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (answer["items"][0]["open"] == 1).then_some(())
        },
    )
    .await;
    eventually(
        "the errors consumer to ack the outcome",
        Duration::from_secs(10),
        || async {
            let stream = js.get_stream(topology.outcomes_stream()).await.ok()?;
            let info = stream
                .consumer_info(topology.errors_consumer())
                .await
                .ok()?;
            (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
        },
    )
    .await;

    let table = stdout_of(&status(&path, &[]).await);
    assert!(
        table.starts_with(&format!("NATS {}, prefix {prefix}\n", ensure_nats())),
        "{table}"
    );
    let events = row(&table, &topology.events_stream());
    assert_eq!(events[1], "3", "messages: {events:?}");
    assert_eq!(events[3..5], ["1", "3"], "first/last sequence: {events:?}");
    assert_eq!(row(&table, &topology.outcomes_stream())[1], "1");
    assert_eq!(row(&table, &topology.replay_stream())[1], "0");

    assert_eq!(
        row(&table, &topology.worker_consumer(AC)),
        [
            topology.worker_consumer(AC),
            topology.events_stream(),
            "2".into(),
            "1".into(),
            "0".into(),
        ]
    );
    for (name, stream) in [
        (topology.replay_consumer(AC), topology.replay_stream()),
        (topology.worker_consumer(PD), topology.events_stream()),
        (topology.replay_consumer(PD), topology.replay_stream()),
    ] {
        assert_eq!(
            row(&table, &name),
            [
                name.clone(),
                stream,
                "-".into(),
                "-".into(),
                "-".into(),
                "not created (the worker has not started)".into(),
            ]
        );
    }
    assert_eq!(
        row(&table, &topology.errors_consumer())[2..5],
        ["0", "0", "0"]
    );

    let polled = row(&table, CB);
    assert!(
        polled[2].starts_with("2m"),
        "cursor age about 2 minutes: {polled:?}"
    );
    assert!(polled[3].ends_with("s ago"), "{polled:?}");
    assert_eq!(polled[4], "ingest-status-test");
    assert_eq!(
        row(&table, CB_IDLE).last().map(String::as_str),
        Some("no cursor yet (the poller has not run)")
    );

    assert_eq!(row(&table, "activecampaign"), ["activecampaign", AC, "1"]);
    assert_eq!(row(&table, "pipedrive"), ["pipedrive", PD, "0"]);

    let json: Value =
        serde_json::from_str(&stdout_of(&status(&path, &["--json"]).await)).expect("JSON output");
    assert_eq!(json["nats"]["prefix"], prefix.as_str());
    assert_eq!(
        json["streams"][0],
        json!({
            "stream": topology.events_stream(),
            "role": "events",
            "state": "ok",
            "error": null,
            "messages": 3,
            "bytes": json["streams"][0]["bytes"],
            "first_sequence": 1,
            "last_sequence": 3,
        })
    );
    assert!(json["streams"][0]["bytes"].as_u64().is_some_and(|b| b > 0));
    let consumer = |name: String| {
        json["consumers"]
            .as_array()
            .expect("consumers")
            .iter()
            .find(|c| c["consumer"] == name.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("no consumer {name} in {json}"))
    };
    assert_eq!(
        consumer(topology.worker_consumer(AC)),
        json!({
            "consumer": topology.worker_consumer(AC),
            "stream": topology.events_stream(),
            "role": "worker",
            "destination": "activecampaign",
            "destination_connection": AC,
            "state": "ok",
            "error": null,
            "pending": 2,
            "in_flight": 1,
            "redelivered": 0,
        })
    );
    let missing = consumer(topology.replay_consumer(PD));
    assert_eq!(missing["state"], "not_created");
    assert_eq!(missing["note"], "not created (the worker has not started)");
    assert!(missing.get("pending").is_none(), "{missing}");
    assert_eq!(consumer(topology.errors_consumer())["pending"], 0);

    let cursors = json["chargebee_cursors"].as_array().expect("cursors");
    assert_eq!(cursors[0]["connection"], CB);
    assert_eq!(cursors[0]["state"], "polled");
    assert_eq!(cursors[0]["event_id"], "ev_cb_newest");
    assert_eq!(cursors[0]["polled_by"], "ingest-status-test");
    let age = cursors[0]["cursor_age_secs"].as_i64().expect("age");
    assert!((120..180).contains(&age), "cursor age {age}");
    assert_eq!(cursors[1]["connection"], CB_IDLE);
    assert_eq!(cursors[1]["state"], "not_polled");

    assert_eq!(
        json["errors_service"],
        json!({
            "url": format!("http://127.0.0.1:{errors_port}"),
            "state": "ok",
            "error": null,
            "open_failures": [
                {"destination": "activecampaign", "destination_connection": AC, "open": 1},
                {"destination": "pipedrive", "destination_connection": PD, "open": 0},
            ],
        })
    );

    // Acking the held event empties the worker's backlog, and status says so.
    held.ack().await.expect("ack");
    eventually(
        "status to show nothing in flight",
        Duration::from_secs(10),
        || async {
            let table = stdout_of(&status(&path, &[]).await);
            (row(&table, &topology.worker_consumer(AC))[2..5] == ["2", "0", "0"]).then_some(())
        },
    )
    .await;

    shutdown.cancel();
    let stopped = tokio::time::timeout(Duration::from_secs(15), errors)
        .await
        .expect("the errors service stops")
        .expect("no panic");
    stopped.expect("the errors service ended cleanly");
    billsync_e2e::remove_deployment(&nats, topology.prefix()).await;
    db.drop_database().await;
}

#[tokio::test]
async fn an_unreachable_errors_service_is_named_and_the_rest_still_shown() {
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    let errors_port = free_port();
    let path = write_config(
        dir.path(),
        &ensure_nats(),
        &prefix,
        "postgres://postgres@127.0.0.1:5432/unused",
        errors_port,
    );
    let nats = async_nats::connect(ensure_nats()).await.expect("NATS");
    let js = jetstream::new(nats.clone());
    let topology = Topology::new(&prefix);
    let config = Config::load(&path).expect("valid config");
    topology
        .ensure_events_stream(&js, &StreamSettings::from(&config.nats))
        .await
        .expect("events stream");
    Publisher::new(js.clone(), topology.clone(), Duration::from_secs(5))
        .publish_event(&event(1))
        .await
        .expect("publish");
    let url = format!("http://127.0.0.1:{errors_port}");

    let table = stdout_of(&status(&path, &[]).await);
    assert_eq!(row(&table, &topology.events_stream())[1], "1", "{table}");
    assert_eq!(
        row(&table, &topology.outcomes_stream())
            .last()
            .map(String::as_str),
        Some("not created")
    );
    assert_eq!(
        row(&table, &topology.errors_consumer())
            .last()
            .map(String::as_str),
        Some("not created (the errors service has not started)")
    );
    let line = table
        .lines()
        .find(|line| line.starts_with("Open failures unknown:"))
        .unwrap_or_else(|| panic!("no word on open failures in:\n{table}"));
    assert!(
        line.contains(&format!("cannot reach the errors service at {url}")),
        "{line}"
    );

    let json: Value =
        serde_json::from_str(&stdout_of(&status(&path, &["--json"]).await)).expect("JSON output");
    assert_eq!(json["errors_service"]["state"], "unreachable");
    assert_eq!(json["errors_service"]["url"], url.as_str());
    assert!(json["errors_service"]["open_failures"].is_null());
    assert!(json["errors_service"]["error"]
        .as_str()
        .is_some_and(|e| e.contains(&url)));
    assert_eq!(json["streams"][0]["messages"], 1);
    assert_eq!(json["streams"][1]["state"], "not_created");

    billsync_e2e::remove_deployment(&nats, topology.prefix()).await;
}

#[tokio::test]
async fn an_unreachable_nats_fails_naming_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = format!("nats://127.0.0.1:{}", free_port());
    let path = write_config(
        dir.path(),
        &nats,
        "tnonats",
        "postgres://postgres@127.0.0.1:5432/unused",
        free_port(),
    );
    let output = status(&path, &[]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot reach NATS at {nats}")) && stderr.contains("nats.url"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}
