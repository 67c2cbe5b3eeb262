//! `billsync errors list|ignore|retry|export` and `billsync runs` (the real binary) against
//! a running stack, through the admin API.

use crate::operator_api::{api_get, send, send_refused_customer, wait_failure, WAIT};
use billsync_e2e::{billsync_binary, eventually, Stack, StackOptions};
use billsync_sandbox::{stripe, AcFaults};
use serde_json::Value;
use std::path::Path;
use tokio::process::Command;

/// Runs `billsync --config <config> <args> --url <errors>`; its stdout, or the failure.
/// Asynchronously: the stack it talks to runs on this test's runtime.
async fn billsync(stack: &Stack, config: &Path, args: &[&str]) -> Result<String, String> {
    let url = ["--url", stack.errors_url.as_str()];
    billsync_local(config, &[args, &url].concat()).await
}

/// Runs `billsync --config <config> <args>`: its stdout, or stdout and stderr on failure.
pub(crate) async fn billsync_local(config: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new(billsync_binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .await
        .expect("run billsync");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stdout}{stderr}"))
    }
}

fn ok(result: Result<String, String>) -> String {
    result.unwrap_or_else(|failure| panic!("billsync failed: {failure}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_ignores_retries_and_exports_sync_errors() {
    let stack = Stack::start(StackOptions::default()).await;
    let (ignored_email, retried_email) = ("cli.ignored@example.com", "cli.retried@example.com");
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            reject_emails: vec![ignored_email.into(), retried_email.into()],
            ..Default::default()
        },
    );
    send(
        &stack,
        &stripe::customer_created_event("cus_CLI1", ignored_email, "Ivy Ignored"),
    )
    .await;
    send(
        &stack,
        &stripe::customer_created_event("cus_CLI2", retried_email, "Rex Retried"),
    )
    .await;
    let to_ignore = wait_failure(&stack, "open", "ac-test", "customer/cus_CLI1").await;
    let to_retry = wait_failure(&stack, "open", "ac-test", "customer/cus_CLI2").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = stack.write_config(dir.path());

    // list: a table with both failures.
    let table = ok(billsync(&stack, &config, &["errors", "list"]).await);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(lines[0].contains("MESSAGE"), "{table}");
    for (failure, record) in [
        (&to_ignore, "customer/cus_CLI1"),
        (&to_retry, "customer/cus_CLI2"),
    ] {
        let line = lines
            .iter()
            .find(|line| line.starts_with(&format!("{} ", failure["id"])))
            .unwrap_or_else(|| panic!("no row for failure {}: {table}", failure["id"]));
        assert!(line.contains(&format!("stripe-test/{record}")), "{line}");
        assert!(line.contains("activecampaign/ac-test"), "{line}");
        assert!(line.contains("rejected") && line.contains("open"), "{line}");
    }
    // Filters reach the API; --json prints its answer.
    let json: Value = serde_json::from_str(&ok(billsync(
        &stack,
        &config,
        &["errors", "list", "--q", "cus_CLI2", "--json"],
    )
    .await))
    .expect("JSON output");
    assert_eq!(json["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(json["items"][0]["id"], to_retry["id"]);
    let none = ok(billsync(
        &stack,
        &config,
        &["errors", "list", "--class", "configuration"],
    )
    .await);
    assert_eq!(none.trim(), "No sync errors match.");

    // export: both rows in a CSV file.
    let csv_path = dir.path().join("errors.csv");
    let csv_arg = csv_path.to_str().expect("utf-8 path");
    let exported = ok(billsync(&stack, &config, &["errors", "export", "--out", csv_arg]).await);
    assert!(exported.contains("Wrote 2 failure(s)"), "{exported}");
    let csv = std::fs::read_to_string(&csv_path).expect("CSV file");
    assert!(
        csv.starts_with("id,destination,destination_connection,"),
        "{csv}"
    );
    assert!(
        csv.contains("customer/cus_CLI1") && csv.contains("customer/cus_CLI2"),
        "{csv}"
    );
    assert!(!csv.contains(&stack.admin_token));

    // ignore <id>: the failure leaves the list and the next export.
    let ignore_id = to_ignore["id"].to_string();
    let answer = ok(billsync(&stack, &config, &["errors", "ignore", &ignore_id]).await);
    assert!(
        answer.contains(&format!("Ignored failure {ignore_id}")),
        "{answer}"
    );
    let row = api_get(&stack, &format!("/api/v1/failures/{ignore_id}")).await;
    assert_eq!(row["status"], "ignored");
    let exported = ok(billsync(&stack, &config, &["errors", "export", "--out", csv_arg]).await);
    assert!(exported.contains("Wrote 1 failure(s)"), "{exported}");
    let csv = std::fs::read_to_string(&csv_path).expect("CSV file");
    assert!(!csv.contains("customer/cus_CLI1"), "{csv}");

    // An id and filters do not mix; neither does exporting ignored failures.
    let refused = billsync(
        &stack,
        &config,
        &["errors", "retry", "1", "--connection", "ac-test"],
    )
    .await;
    assert!(refused.is_err_and(|e| e.contains("with an id, give no filter")));
    let refused = billsync(
        &stack,
        &config,
        &["errors", "export", "--out", csv_arg, "--status", "ignored"],
    )
    .await;
    assert!(refused.is_err_and(|e| e.contains("open failures only")));

    // retry --all: the open failure goes back to ac-test, which now takes it.
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            reject_emails: vec![ignored_email.into()],
            ..Default::default()
        },
    );
    let answer = ok(billsync(
        &stack,
        &config,
        &["errors", "retry", "--all", "--connection", "ac-test"],
    )
    .await);
    assert!(answer.contains("Sent 1 retry"), "{answer}");
    eventually("the retried record in the CRM", WAIT, || async {
        stack
            .sandbox
            .activecampaign
            .snapshot(&stack.ac_account)
            .contact_by_email(retried_email)
            .map(|_| ())
    })
    .await;
    wait_failure(&stack, "resolved", "ac-test", "customer/cus_CLI2").await;
    let open = ok(billsync(&stack, &config, &["errors", "list"]).await);
    assert_eq!(open.trim(), "No sync errors match.");
    let ignored = ok(billsync(&stack, &config, &["errors", "list", "--status", "ignored"]).await);
    assert!(ignored.contains("customer/cus_CLI1"), "{ignored}");

    // An unreachable service is named, with what to do.
    let output = Command::new(billsync_binary())
        .arg("--config")
        .arg(&config)
        .args(["errors", "list", "--url", "http://127.0.0.1:9"])
        .output()
        .await
        .expect("run billsync");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach the errors service at http://127.0.0.1:9"),
        "{stderr}"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_sync_runs_and_their_records() {
    let stack = Stack::start(StackOptions::default()).await;
    send(
        &stack,
        &stripe::customer_created_event("cus_RUN1", "run.one@example.com", "Rune One"),
    )
    .await;
    eventually("the record in the CRM", WAIT, || async {
        stack.worker_idle().await.then_some(())
    })
    .await;

    // A backfill's snapshot of the same record: part of run `run_cli_1`, skipped by the
    // worker because that version is already applied.
    let stream = stack
        .jetstream()
        .get_stream(stack.topology().events_stream())
        .await
        .expect("events stream");
    let message = stream.get_raw_message(1).await.expect("the first event");
    let mut snapshot: Value = serde_json::from_slice(&message.payload).expect("event JSON");
    snapshot["id"] = Value::from("snap_run_cli_1_cus_RUN1");
    snapshot["run_id"] = Value::from("run_cli_1");
    let publisher = billsync_bus::Publisher::new(stack.jetstream(), stack.topology(), WAIT);
    publisher
        .publish(
            message.subject.to_string(),
            "snap_run_cli_1_cus_RUN1",
            serde_json::to_vec(&snapshot).expect("encode").into(),
            Default::default(),
        )
        .await
        .expect("publish the snapshot");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = stack.write_config(dir.path());
    let runs = eventually("the run to be listed", WAIT, || async {
        match billsync(&stack, &config, &["runs"]).await {
            Ok(runs) if runs.contains("run_cli_1") => Some(runs),
            // Shown if the wait times out.
            other => {
                eprintln!("billsync runs: {other:?}");
                None
            }
        }
    })
    .await;
    let header = runs.lines().next().expect("header");
    assert!(
        header.starts_with("RUN") && header.contains("SKIPPED"),
        "{runs}"
    );
    let row = runs
        .lines()
        .find(|line| line.starts_with("run_cli_1"))
        .expect("the run's row");
    let counts: Vec<&str> = row.split_whitespace().rev().take(4).collect();
    // skipped, failed, synced, records: read right to left.
    assert_eq!(counts, vec!["1", "0", "0", "1"], "{row}");

    let records = ok(billsync(&stack, &config, &["runs", "run_cli_1"]).await);
    assert!(
        records.contains("Run run_cli_1: started")
            && records.contains("1 record(s): 0 synced, 0 failed, 1 skipped"),
        "{records}"
    );
    assert!(records.contains("customer/cus_RUN1"), "{records}");
    assert!(records.contains("already applied"), "{records}");
    let missing = billsync(&stack, &config, &["runs", "no_such_run"]).await;
    assert!(missing.is_err_and(|e| e.contains("404") && e.contains("no run with id")));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_takes_connection_names_and_says_plainly_what_a_poll_did() {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        chargebee_source_extra: "auto_sync = false".into(),
        ..StackOptions::default()
    })
    .await;
    send_refused_customer(&stack, "cus_CLI3", "cli.named@example.com", "Nat Named").await;
    wait_failure(&stack, "open", "ac-test", "customer/cus_CLI3").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = stack.write_config(dir.path());

    // `--destination` with the connection's name, as `sync all`'s own hint used to say.
    let table = ok(billsync(
        &stack,
        &config,
        &["errors", "list", "--destination", "ac-test"],
    )
    .await);
    assert!(table.contains("customer/cus_CLI3"), "{table}");
    let refused = billsync(
        &stack,
        &config,
        &["errors", "list", "--destination", "ac-nope"],
    )
    .await
    .expect_err("neither a kind nor a connection");
    assert!(
        refused.contains("activecampaign, zoho, pipedrive") && refused.contains("ac-test"),
        "{refused}"
    );

    // sync-now says what the poll did, in a sentence.
    let polled = ok(billsync_local(&config, &["sync-now", "--connection", "cb-test"]).await);
    assert!(
        polled.starts_with("Polled cb-test: ") && polled.contains("The next poll starts from"),
        "{polled}"
    );
    let json: Value = serde_json::from_str(&ok(billsync_local(
        &config,
        &["sync-now", "--connection", "cb-test", "--json"],
    )
    .await))
    .expect("--json prints JSON");
    assert_eq!(json["connection"], "cb-test");

    // A refused API key is reported once.
    let wrong_key = dir.path().join("wrong-cb-key");
    std::fs::write(&wrong_key, "cb_wrong_key").expect("write the key");
    let key_file = stack
        .config_toml
        .lines()
        .find_map(|line| {
            line.strip_prefix("api_key = { file = \"")
                .and_then(|rest| rest.strip_suffix("\" }"))
                .filter(|path| path.ends_with("cb-key"))
        })
        .expect("the Chargebee key file");
    let wrong_config = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong_config,
        stack
            .config_toml
            .replace(key_file, &wrong_key.display().to_string()),
    )
    .expect("write the configuration");
    let failed = billsync_local(&wrong_config, &["sync-now", "--connection", "cb-test"])
        .await
        .expect_err("a wrong key is refused");
    assert_eq!(
        failed.matches("check the connection's api_key").count(),
        1,
        "{failed}"
    );
    stack.stop().await;
}
