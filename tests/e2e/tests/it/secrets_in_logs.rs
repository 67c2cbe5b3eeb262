//! No configured secret ever reaches the logs: the real `billsync up`, logging at debug level
//! in JSON, runs while failures whose data and answers carry secrets flow through ingest, the
//! worker and the errors service, and an operator lists, exports, ignores and retries them.

use billsync_e2e::{
    billsync_binary, ensure_nats, eventually, fresh_database, unique_prefix, ProcessConfig,
};
use billsync_sandbox::{stripe, AcAccount, AcFaults, SandboxConfig};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_configured_secret_appears_in_the_logs() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let whsec = format!("whsec_logtest{}", &tag[..16]);
    let ac_token = format!("actoken{}", &tag[16..]);
    let admin_token = format!("admintoken{}", &tag[..20]);
    let secrets = [whsec.as_str(), ac_token.as_str(), admin_token.as_str()];

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let account = format!("logs-{}", &tag[..8]);
    let mut ac = AcAccount::new(account.clone(), ac_token.clone());
    ac.requests_per_second = 100;
    sandbox.activecampaign.add_account(ac);
    let rejected = "rejected.secret@example.com";
    sandbox.activecampaign.set_faults(
        &account,
        AcFaults {
            reject_emails: vec![rejected.into()],
            ..Default::default()
        },
    );

    let prefix = unique_prefix();
    let db = fresh_database().await;
    let deployment = ProcessConfig {
        prefix: &prefix,
        postgres_url: &db.url,
        stripe_connection: "stripe-logs",
        webhook_secret: &whsec,
        ac_connection: "ac-logs",
        ac_base_url: &sandbox.activecampaign_base_url(&account),
        ac_token: &ac_token,
        ac_requests_per_second: 100,
        admin_token: &admin_token,
        telemetry: "log_format = \"json\"\nlog_level = \"debug\"",
        workers: "max_attempts = 3\nack_wait_secs = 10",
        extra: "",
    }
    .write();
    let (dir, config_path) = (&deployment.dir, &deployment.config_path);
    let (ingest_port, errors_port) = (deployment.ingest_port, deployment.errors_port);
    let log_path = dir.path().join("billsync.log");
    let out_path = dir.path().join("billsync.out");
    let mut child = Command::new(billsync_binary())
        .env_remove("RUST_LOG")
        .arg("--config")
        .arg(config_path)
        .arg("up")
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&log_path).expect("log file"))
        .spawn()
        .expect("start billsync up");

    let http = reqwest::Client::new();
    let ingest = format!("http://127.0.0.1:{ingest_port}");
    let errors = format!("http://127.0.0.1:{errors_port}");
    for url in [&ingest, &errors] {
        eventually(&format!("{url} to be ready"), WAIT, || async {
            let response = http.get(format!("{url}/readyz")).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await;
    }
    let webhook = format!("{ingest}/webhooks/stripe/stripe-logs");

    // 1. A record the CRM refuses, whose data carries every secret.
    let mut refused = stripe::customer("cus_LOG1", rejected, &format!("Sam {admin_token}"));
    refused["description"] = json!(format!("api token {ac_token}"));
    refused["metadata"] = json!({ "signing": whsec, "admin": admin_token });
    let refused_event = stripe::event("customer.created", refused);
    let status = stripe::send_webhook(&webhook, &whsec, &refused_event)
        .await
        .expect("webhook");
    assert_eq!(status, 200);

    // 2. A record the CRM fails on twice (500) before taking it: retries are logged.
    sandbox.activecampaign.set_faults(
        &account,
        AcFaults {
            reject_emails: vec![rejected.into()],
            fail_next: 2,
            ..Default::default()
        },
    );
    let mut flaky = stripe::customer("cus_LOG2", "flaky@example.com", "Flo Flaky");
    flaky["metadata"] = json!({ "token": ac_token });
    let status = stripe::send_webhook(&webhook, &whsec, &stripe::event("customer.created", flaky))
        .await
        .expect("webhook");
    assert_eq!(status, 200);

    // 3. A forged webhook (wrong secret) is refused.
    let forged = stripe::send_webhook(
        &webhook,
        "whsec_forged",
        &stripe::customer_created_event("cus_LOG3", "forged@example.com", "Mal Forged"),
    )
    .await
    .expect("webhook");
    assert_eq!(forged, 400);

    // 4. The operator works the failure through the admin API; one caller has a wrong token.
    let api = |path: &str| {
        http.get(format!("{errors}{path}"))
            .bearer_auth(&admin_token)
    };
    let failure: Value = eventually("the refused record in the failure list", WAIT, || async {
        let list: Value = api("/api/v1/failures")
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list["items"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(failure["record_key"], "customer/cus_LOG1");
    eventually("the flaky record in the CRM", WAIT, || async {
        sandbox
            .activecampaign
            .snapshot(&account)
            .contact_by_email("flaky@example.com")
            .map(|_| ())
    })
    .await;
    let id = failure["id"].to_string();
    for path in [
        format!("/api/v1/failures/{id}"),
        "/api/v1/failures.csv".to_string(),
        "/api/v1/runs".to_string(),
    ] {
        assert_eq!(
            api(&path).send().await.expect("request").status(),
            200,
            "{path}"
        );
    }
    let retry = http
        .post(format!("{errors}/api/v1/failures/{id}/retry"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("retry");
    assert_eq!(retry.status(), 200);
    eventually("the retry to fail again", WAIT, || async {
        let row: Value = api(&format!("/api/v1/failures/{id}"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (row["count"] == 2).then_some(())
    })
    .await;
    let ignore = http
        .post(format!("{errors}/api/v1/failures/{id}/ignore"))
        .bearer_auth(&admin_token)
        .send()
        .await
        .expect("ignore");
    assert_eq!(ignore.status(), 200);
    let intruder = http
        .get(format!("{errors}/api/v1/failures"))
        .bearer_auth(format!("{admin_token}x"))
        .send()
        .await
        .expect("request");
    assert_eq!(intruder.status(), 401);

    // Stop it the way an orchestrator does, so everything buffered is written.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "billsync did not exit within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let logs = std::fs::read_to_string(&log_path).expect("log file");
    let stdout = std::fs::read_to_string(&out_path).expect("stdout file");
    // The flows above were logged (so the check below is not vacuous)...
    for expected in [
        "The CRM did not take the event; recording a sync error.",
        "Transient CRM failure; retrying.",
        "Failure replayed to its destination.",
        "Failure ignored by an operator.",
        "cus_LOG1",
    ] {
        assert!(
            logs.contains(expected),
            "the logs lack {expected:?}:\n{logs}"
        );
    }
    // ...and no configured secret, in any line.
    for secret in secrets {
        for (what, text) in [("stderr", &logs), ("stdout", &stdout)] {
            if let Some(line) = text.lines().find(|line| line.contains(secret)) {
                panic!("a configured secret is in the {what} log: {line}");
            }
        }
    }

    let nats = async_nats::connect(ensure_nats()).await.expect("nats");
    billsync_e2e::remove_deployment(&nats, &prefix).await;
    db.drop_database().await;
}
