//! The admin API against its own OpenAPI document: schemathesis generates requests from
//! `/api/v1/openapi.json` (valid and invalid parameters, bodies and paths, with the token,
//! without it and with a wrong one) and checks every answer against the document.
//!
//! schemathesis comes from PyPI into the tools venv (`deploy/ensure-check-tools.sh`, which
//! `make test` runs first). Without it this test fails: it never passes by skipping.

use crate::app::{at, customer_event, failed, simple_failure, skipped, spawn_app, synced, AC, PD};
use serde_json::json;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// The checks of issue 16: no 5xx, statuses, content types and bodies as documented, and
/// every route refusing a request without the token or with a wrong one.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,ignored_auth";

fn schemathesis() -> PathBuf {
    let venv = std::env::var_os("BILLSYNC_TOOLS_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|home| PathBuf::from(home).join(".cache/billsync/tools-venv"))
        })
        .expect("HOME or BILLSYNC_TOOLS_VENV is set");
    let bin = venv.join("bin/schemathesis");
    assert!(
        bin.is_file(),
        "schemathesis is not installed at {}: run deploy/ensure-check-tools.sh",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_answers_as_its_openapi_document_says() {
    let schemathesis = schemathesis();
    let app = spawn_app().await;
    // Rows of every status, and a run, so that lists and details carry items to check.
    let event = customer_event("cus_st", "ev_st_1", None, json!({"id": "cus_st"}));
    app.publish(&failed(
        AC,
        &event,
        at(1),
        "rejected",
        json!({"errors": [{"title": "bad"}]}),
    ))
    .await;
    for (connection, id, step) in [(AC, "cus_st2", 2), (PD, "cus_st3", 3), (PD, "cus_st4", 4)] {
        app.publish(&simple_failure(connection, id, step)).await;
    }
    let run = "run_st_1";
    let one = customer_event("cus_r1", "snap_r1", Some(run), json!({}));
    let two = customer_event("cus_r2", "snap_r2", Some(run), json!({}));
    app.publish(&synced(AC, &one, at(5))).await;
    app.publish(&skipped(AC, &two, at(6), "already applied"))
        .await;
    app.publish(&synced(AC, &event, at(7))).await;
    let ignored = app
        .wait_failure("open", PD, "customer/cus_st4", |_| true)
        .await;
    app.wait_failure("resolved", AC, "customer/cus_st", |_| true)
        .await;
    app.post_json(
        &format!("/api/v1/failures/{}/ignore", ignored["id"]),
        json!({}),
    )
    .await;
    let runs = app.get_json("/api/v1/runs").await;
    assert_eq!(runs["items"][0]["run_id"], run, "{runs}");

    // What schemathesis found first: PostgreSQL refuses NUL in text and times before 4713 BC,
    // and such parameters were a 500 instead of an answer.
    for (path, expected) in [
        ("/api/v1/failures?connection=%00&q=a%00", 200),
        ("/api/v1/failures.csv?q=%00", 200),
        ("/api/v1/runs/run%00", 404),
        ("/api/v1/runs?cursor=1700000000000000_run%00", 200),
        ("/api/v1/failures?cursor=-8000000000000000000_1", 400),
        ("/api/v1/runs?cursor=-8000000000000000000_run", 400),
    ] {
        let response = app.get(path).send().await.expect("request");
        assert_eq!(response.status(), expected, "GET {path}");
    }
    for path in ["/api/v1/failures/ignore", "/api/v1/failures/retry"] {
        let response = app
            .post(path)
            .json(&json!({"q": "\u{0}x", "source": "stripe"}))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "POST {path}");
    }

    let report = tempfile::tempdir().expect("report dir");
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", app.base))
        .args(["--checks", CHECKS])
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", app.secrets.admin_token))
        // One worker: hypothesis describes strategies with `ast.parse`, which CPython 3.11
        // does not support from several threads at once ("AST constructor recursion depth
        // mismatch", a runtime error of the run, not a finding).
        .args(["--max-examples", "25", "--seed", "16", "--workers", "1"])
        .args(["--max-time", "75", "--request-timeout", "10"])
        .args(["--suppress-health-check", "too_slow"])
        .arg("--report-dir")
        .arg(report.path())
        // Its cache directory goes there too, not into the repository.
        .current_dir(report.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = tokio::time::timeout(Duration::from_secs(150), command.output())
        .await
        .expect("schemathesis finished within 150 s")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis found answers that contradict the document ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // It really tested the API: every operation, thousands of cases, no untested errors.
    for line in ["Tested: 10", "No issues found"] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    let generated: u64 = stdout
        .lines()
        .find_map(|l| l.trim().split_once(" generated, "))
        .and_then(|(n, _)| n.parse().ok())
        .expect("a count of test cases");
    assert!(generated >= 1000, "only {generated} cases:\n{stdout}");
    app.stop().await;
}
