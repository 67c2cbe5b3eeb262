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
    sandbox_with_scopes(None).await
}

/// The sandbox with the organisation; its refresh token has `scopes` when given.
async fn sandbox_with_scopes(scopes: Option<&[&str]>) -> RunningSandbox {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let mut org = ZohoOrg::new(ORG, "1000.START", "start-secret", "1000.start-refresh");
    if let Some(scopes) = scopes {
        org.scopes = scopes.iter().map(|s| s.to_string()).collect();
    }
    sandbox.zoho.add_org(org);
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
    start_against(&sandbox().await, options).await
}

/// Runs the worker with `options` against `sandbox`'s organisation, as `start_with`.
async fn start_against(sandbox: &RunningSandbox, options: &str) -> Option<String> {
    let dir = tempfile::tempdir().expect("a temp dir");
    let config = Arc::new(config(sandbox, dir.path(), options));
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

#[tokio::test]
async fn a_start_against_an_organisation_without_the_link_fields_creates_them() {
    let sandbox = sandbox().await;
    let custom = |module: &str| -> Vec<String> {
        sandbox
            .zoho
            .field_names(ORG, module)
            .into_iter()
            .filter(|f| f.starts_with("Billsync_"))
            .collect()
    };
    assert!(custom("Contacts").is_empty() && custom("Deals").is_empty());
    assert_eq!(start_against(&sandbox, "").await, None);
    assert_eq!(custom("Contacts"), ["Billsync_Customer_Id"]);
    assert_eq!(custom("Deals"), ["Billsync_Subscription_Id"]);
    // A second start finds them: nothing is created twice, and it starts.
    assert_eq!(start_against(&sandbox, "").await, None);
    assert_eq!(custom("Contacts"), ["Billsync_Customer_Id"]);

    // A sync without deals needs no deal field.
    let sandbox = sandbox_with_scopes(None).await;
    assert_eq!(start_against(&sandbox, "sync_deals = false").await, None);
    assert!(!sandbox
        .zoho
        .field_names(ORG, "Deals")
        .contains(&"Billsync_Subscription_Id".to_string()));
}

#[tokio::test]
async fn without_the_scope_to_create_them_the_start_says_which_field_and_how() {
    let sandbox = sandbox_with_scopes(Some(&[
        "ZohoCRM.modules.ALL",
        "ZohoCRM.settings.READ",
        "ZohoCRM.users.READ",
    ]))
    .await;
    let error = start_against(&sandbox, "").await.expect("refused");
    assert!(
        error.contains(
            "zoho.toml: Zoho CRM connection zoho-main: the Contacts module has no field \
             Billsync_Customer_Id, which billsync matches records by, and the OAuth client may \
             not create it (OAUTH_SCOPE_MISMATCH): give the refresh token the scope \
             ZohoCRM.settings.fields.ALL (or ZohoCRM.settings.ALL), or create it in Zoho CRM: \
             Setup → Customization → Modules and Fields → Contacts → a Single Line field \
             labelled \"Billsync Customer Id\" with \"Do not allow duplicate values\""
        ),
        "{error}"
    );
    assert!(!sandbox
        .zoho
        .field_names(ORG, "Contacts")
        .contains(&"Billsync_Customer_Id".to_string()));
}
