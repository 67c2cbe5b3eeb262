//! What the Zoho worker checks before it takes any event: each sync's options (as
//! `check-config` does) and, against the Zoho organisation, the deal pipeline, its stages and
//! the deal owner — a mismatch stops the start with the file, the option and what Zoho has.

use billsync_config::Config;
use billsync_sandbox::{RunningSandbox, SandboxConfig, ZohoOrg};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const ORG: &str = "start";

async fn sandbox() -> RunningSandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    sandbox.zoho.add_org(ZohoOrg::new(
        ORG,
        "1000.START",
        "start-secret",
        "1000.start-refresh",
    ));
    sandbox
}

/// A configuration with one Stripe → Zoho sync taking `options`.
fn config(sandbox: &RunningSandbox, dir: &Path, options: &str) -> Config {
    for (name, value) in [
        ("whsec", "whsec_start"),
        ("client-id", "1000.START"),
        ("client-secret", "start-secret"),
        ("refresh-token", "1000.start-refresh"),
    ] {
        std::fs::write(dir.join(name), value).expect("secret");
    }
    let prefix = format!("zs{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let text = format!(
        r#"
[nats]
url = "nats://127.0.0.1:4222"
prefix = "{prefix}"
retention_days = 1
[[sources.stripe]]
name = "st"
webhook_secrets = [{{ file = "{dir}/whsec" }}]
[[destinations.zoho]]
name = "zoho-main"
accounts_url = "{accounts}"
client_id = {{ file = "{dir}/client-id" }}
client_secret = {{ file = "{dir}/client-secret" }}
refresh_token = {{ file = "{dir}/refresh-token" }}
[[syncs]]
source = "st"
destination = "zoho-main"
[syncs.options]
{options}
"#,
        dir = dir.display(),
        accounts = sandbox.zoho.accounts_url(ORG),
    );
    Config::from_toml(&text, Path::new("zoho.toml")).expect("a valid configuration")
}

/// Runs the worker with `options`: the error it stops with, or `None` when it started (it
/// is then stopped).
async fn start_with(options: &str) -> Option<String> {
    let sandbox = sandbox().await;
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = Arc::new(config(&sandbox, dir.path(), options));
    let client = async_nats::connect("127.0.0.1:4222").await.expect("nats");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(billsync_zoho::run(
        config,
        client,
        listener,
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    let result = run.await.expect("the worker task");
    result.err().map(|e| format!("{e:#}"))
}

#[tokio::test]
async fn a_stage_the_pipeline_lacks_stops_the_start_naming_the_option_and_the_stages() {
    let error = start_with("stage_active = \"Won\"").await.expect("refused");
    assert!(
        error.contains("zoho.toml: Zoho CRM connection zoho-main: syncs[0].options.stage_active: \"Won\" is not a stage of pipeline \"Standard (Standard)\""),
        "{error}"
    );
    assert!(error.contains("Closed Won"), "lists the stages: {error}");
}

#[tokio::test]
async fn an_unknown_pipeline_or_owner_stops_the_start_and_good_settings_start() {
    let error = start_with("deal_pipeline = \"Renewals\"")
        .await
        .expect("refused");
    assert!(
        error.contains("syncs[0].options.deal_pipeline: \"Renewals\" is not a pipeline")
            && error.contains("Standard (Standard)"),
        "{error}"
    );
    let error = start_with("deal_owner = \"nobody@example.com\"")
        .await
        .expect("refused");
    assert!(
        error.contains("syncs[0].options.deal_owner: \"nobody@example.com\" is not an active user"),
        "{error}"
    );
    let error = start_with("on_existing_contact = \"merge\"")
        .await
        .expect("refused");
    assert!(
        error.contains("syncs[0].options.on_existing_contact: \"merge\" must be overwrite, update_blanks or skip"),
        "{error}"
    );
    assert_eq!(
        start_with(
            "deal_pipeline = \"Standard (Standard)\"\nstage_cancelled = \"Closed Lost to Competition\"\n\
             deal_owner = \"patricia.b@zylker.example\""
        )
        .await,
        None
    );
}
