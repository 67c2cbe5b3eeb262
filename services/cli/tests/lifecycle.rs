//! The `billsync` binary's life cycle: a bad configuration fails at start naming file, key
//! and reason; SIGTERM lets in-flight events finish before the process exits.

use billsync_e2e::{
    ensure_nats, eventually, free_port, fresh_database, unique_prefix, ProcessConfig,
};
use billsync_sandbox::{AcAccount, AcFaults, SandboxConfig};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_billsync");

#[test]
fn a_bad_configuration_fails_at_start_with_file_key_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("billsync.toml");
    std::fs::write(
        &path,
        "[[destinations.activecampaign]]\nname = \"ac\"\nbase_url = \"http://127.0.0.1:1\"\n\
         api_token = { env = \"BILLSYNC_TEST_SURELY_UNSET_TOKEN\" }\n",
    )
    .expect("write config");
    let output = Command::new(BIN)
        .args(["--config"])
        .arg(&path)
        .arg("up")
        .output()
        .expect("run billsync");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: destinations.activecampaign[0].api_token: environment variable \
             BILLSYNC_TEST_SURELY_UNSET_TOKEN is not set",
            path.display()
        )),
        "{stderr}"
    );
}

/// The Zoho CRM and Pipedrive services run on the destination kit: with no connection they
/// are ready, and a configured connection without syncs runs and serves health while its
/// CRM is out of reach; both stop cleanly on SIGTERM.
#[tokio::test]
async fn zoho_and_pipedrive_serve_health_with_and_without_a_configured_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "not-a-real-secret").expect("write secret");
    let prefix = unique_prefix();
    let secret = format!("{{ file = {:?} }}", secret.display().to_string());
    for (command, connection) in [
        (
            "zoho",
            format!(
                "accounts_url = \"http://127.0.0.1:1\"\n\
                 client_id = {secret}\nclient_secret = {secret}\nrefresh_token = {secret}"
            ),
        ),
        (
            "pipedrive",
            format!("base_url = \"http://127.0.0.1:1\"\napi_token = {secret}"),
        ),
    ] {
        let port = free_port();
        let base = format!(
            "[nats]\nurl = \"{}\"\nprefix = \"{prefix}\"\n[workers]\n{command}_listen = \"127.0.0.1:{port}\"\n",
            ensure_nats()
        );
        let path = dir.path().join(format!("{command}.toml"));
        std::fs::write(&path, &base).expect("write config");
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg(command)
            .stderr(Stdio::null())
            .spawn()
            .expect("start the service");
        let http = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/readyz");
        eventually(
            &format!("{command} to be ready"),
            Duration::from_secs(30),
            || async {
                let response = http.get(&ready).send().await.ok()?;
                response.status().is_success().then_some(())
            },
        )
        .await;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(
            child.wait().expect("wait").success(),
            "{command} stops cleanly"
        );

        let configured =
            format!("{base}[[destinations.{command}]]\nname = \"{command}-one\"\n{connection}\n");
        std::fs::write(&path, configured).expect("write config");
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(&path)
            .arg(command)
            .stderr(Stdio::null())
            .spawn()
            .expect("start the service");
        eventually(
            &format!("{command} to serve health with a connection"),
            Duration::from_secs(30),
            || async {
                let response = http
                    .get(format!("http://127.0.0.1:{port}/healthz"))
                    .send()
                    .await
                    .ok()?;
                response.status().is_success().then_some(())
            },
        )
        .await;
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(
            child.wait().expect("wait").success(),
            "{command} stops cleanly"
        );
    }
    let nats = async_nats::connect(ensure_nats()).await.expect("nats");
    billsync_e2e::remove_deployment(&nats, &prefix).await;
}

#[test]
fn check_config_checks_sync_options_as_the_worker_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("billsync.toml");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "not-a-real-secret").expect("write secret");
    let config = |options: &str| {
        format!(
            "[[sources.stripe]]\nname = \"stripe\"\nwebhook_secrets = [{{ file = {secret:?} }}]\n\n\
             [[destinations.activecampaign]]\nname = \"ac\"\nbase_url = \"http://127.0.0.1:1\"\n\
             api_token = {{ file = {secret:?} }}\n\n[[syncs]]\nsource = \"stripe\"\n\
             destination = \"ac\"\n[syncs.options]\n{options}\n"
        )
    };
    let check = |text: String| {
        std::fs::write(&path, text).expect("write config");
        Command::new(BIN)
            .args(["--config"])
            .arg(&path)
            .arg("check-config")
            .output()
            .expect("run billsync")
    };
    let output = check(config("list_id = 3"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = check(config("list_idd = 3"));
    assert!(!output.status.success(), "a misspelt option must not pass");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("syncs[0].options.list_idd") && stderr.contains("list_id"),
        "{stderr}"
    );

    // Zoho CRM syncs: their options and mappings, as the Zoho worker reads them.
    let zoho = |options: &str| {
        format!(
            "[[sources.stripe]]\nname = \"stripe\"\nwebhook_secrets = [{{ file = {secret:?} }}]\n\n\
             [[destinations.zoho]]\nname = \"zoho\"\naccounts_url = \"http://127.0.0.1:1\"\n\
             client_id = {{ file = {secret:?} }}\nclient_secret = {{ file = {secret:?} }}\n\
             refresh_token = {{ file = {secret:?} }}\n\n[[syncs]]\nsource = \"stripe\"\n\
             destination = \"zoho\"\n{options}\n"
        )
    };
    let output = check(zoho(
        "[syncs.options]\non_existing_contact = \"update_blanks\"",
    ));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = check(zoho("[syncs.options]\non_existing_contact = \"merge\""));
    assert!(
        !output.status.success(),
        "an unknown sync rule must not pass"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("syncs[0].options.on_existing_contact")
            && stderr.contains("overwrite, update_blanks or skip"),
        "{stderr}"
    );
    let output = check(zoho("[syncs.mapping]\nLast_Name = false"));
    assert!(!output.status.success(), "Last_Name cannot be dropped");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("syncs[0].mapping.Last_Name") && stderr.contains("last name"),
        "{stderr}"
    );
}

#[tokio::test]
async fn sigterm_finishes_in_flight_events_then_exits() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let mut account = AcAccount::new("life", "life-token");
    account.requests_per_second = 100;
    sandbox.activecampaign.add_account(account);
    // Every ActiveCampaign call takes 400 ms: the event is mid-flight when SIGTERM arrives.
    sandbox.activecampaign.set_faults(
        "life",
        AcFaults {
            latency_ms: 400,
            ..Default::default()
        },
    );

    let prefix = unique_prefix();
    let db = fresh_database().await;
    let deployment = ProcessConfig {
        prefix: &prefix,
        postgres_url: &db.url,
        stripe_connection: "stripe-life",
        webhook_secret: "whsec_life",
        ac_connection: "ac-life",
        ac_base_url: &sandbox.activecampaign_base_url("life"),
        ac_token: "life-token",
        ac_requests_per_second: 100,
        admin_token: "admin-life",
        telemetry: "log_format = \"json\"",
        workers: "",
        extra: "",
    }
    .write();
    let (dir, path, ingest_port) = (
        &deployment.dir,
        &deployment.config_path,
        deployment.ingest_port,
    );
    let log = std::fs::File::create(dir.path().join("billsync.log")).expect("log file");
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(path)
        .arg("up")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start billsync up");

    let http = reqwest::Client::new();
    let ingest = format!("http://127.0.0.1:{ingest_port}");
    eventually("ingest to be ready", Duration::from_secs(30), || async {
        let response = http.get(format!("{ingest}/readyz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;

    let event = billsync_sandbox::stripe::customer_created_event(
        "cus_LIFE",
        "life@example.com",
        "Life Cycle",
    );
    let status = billsync_sandbox::stripe::send_webhook(
        &format!("{ingest}/webhooks/stripe/stripe-life"),
        "whsec_life",
        &event,
    )
    .await
    .expect("send webhook");
    assert_eq!(status, 200);

    let nats = async_nats::connect(ensure_nats()).await.expect("nats");
    let js = async_nats::jetstream::new(nats.clone());
    let topology = billsync_bus::Topology::new(&prefix);
    let in_flight = || async {
        let stream = js.get_stream(topology.events_stream()).await.ok()?;
        let mut consumer = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
                &topology.worker_consumer("ac-life"),
            )
            .await
            .ok()?;
        let info = consumer.info().await.ok()?;
        Some((info.num_pending, info.num_ack_pending))
    };
    eventually(
        "the worker to hold the event",
        Duration::from_secs(20),
        || async { matches!(in_flight().await, Some((0, 1))).then_some(()) },
    )
    .await;
    assert!(
        sandbox.activecampaign.snapshot("life").contacts.is_empty()
            || sandbox.activecampaign.snapshot("life").contact_tags.len() < 2,
        "the event must still be in flight when SIGTERM is sent"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "billsync did not exit within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let logs = std::fs::read_to_string(dir.path().join("billsync.log")).unwrap_or_default();
    assert!(
        exit.success(),
        "billsync exited with {exit:?}; logs:\n{logs}"
    );

    // The in-flight event finished: its contact and both tags are in the CRM, and it was acked.
    let snapshot = sandbox.activecampaign.snapshot("life");
    let contact = snapshot
        .contact_by_email("life@example.com")
        .expect("contact written before exit");
    assert_eq!(snapshot.tags_of(&contact.id).len(), 2, "logs:\n{logs}");
    assert_eq!(
        in_flight().await,
        Some((0, 0)),
        "the event must be acked before exit"
    );
    assert!(
        !logs.contains("whsec_life")
            && !logs.contains("life-token")
            && !logs.contains("admin-life")
    );

    billsync_e2e::remove_deployment(&nats, &prefix).await;
    db.drop_database().await;
}
