use super::*;

const GOOD: &str = r#"
[nats]
prefix = "demo"

[[sources.stripe]]
name = "stripe-test"
webhook_secrets = [{ env = "T_WHSEC" }]

[[destinations.activecampaign]]
name = "ac-main"
base_url = "http://127.0.0.1:9000"
api_token = { env = "T_AC_TOKEN" }

[[syncs]]
source = "stripe-test"
destination = "ac-main"
resources = ["customer"]
"#;

fn env(name: &str) -> Option<String> {
    match name {
        "T_WHSEC" => Some("whsec_abc".into()),
        "T_AC_TOKEN" => Some("ac-token".into()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    let origin = Path::new("billsync.toml");
    let mut config: Config =
        toml::from_str(text).map_err(|e| ConfigError::new(origin, "", e.message().to_string()))?;
    config.origin = origin.to_path_buf();
    config.validate_with(&env, Role::All)?;
    Ok(config)
}

#[test]
fn a_good_file_resolves_its_secrets() {
    let config = parse(GOOD).expect("valid");
    assert_eq!(config.nats.prefix, "demo");
    assert_eq!(
        config.sources.stripe[0].webhook_secrets[0].expose(),
        "whsec_abc"
    );
    assert_eq!(config.secret_values().len(), 2);
    assert!(
        !format!("{config:?}").contains("whsec_abc"),
        "Debug must not print secrets"
    );
}

#[test]
fn a_missing_secret_names_key_and_variable() {
    let text = GOOD.replace("T_AC_TOKEN", "T_MISSING");
    let error = parse(&text).expect_err("must fail").to_string();
    assert_eq!(
        error,
        "billsync.toml: destinations.activecampaign[0].api_token: environment variable \
         T_MISSING is not set (it holds this secret)"
    );
}

#[test]
fn a_sync_to_an_unknown_destination_lists_the_known_ones() {
    let text = GOOD.replace("destination = \"ac-main\"", "destination = \"ac-mian\"");
    let error = parse(&text).expect_err("must fail").to_string();
    assert!(
        error.starts_with("billsync.toml: syncs[0].destination: \"ac-mian\""),
        "{error}"
    );
    assert!(error.contains("defined: ac-main"), "{error}");
}

#[test]
fn bad_names_and_resources_are_refused() {
    let error = parse(&GOOD.replace("name = \"stripe-test\"", "name = \"Stripe Test\""))
        .expect_err("must fail")
        .to_string();
    assert!(error.contains("sources.stripe[0].name"), "{error}");
    let error = parse(&GOOD.replace("[\"customer\"]", "[\"customers\"]"))
        .expect_err("must fail")
        .to_string();
    assert!(
        error.contains("syncs[0].resources[0]: unknown resource \"customers\""),
        "{error}"
    );
}

#[test]
fn parse_errors_carry_file_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("billsync.toml");
    std::fs::write(&path, "[ingest]\nmax_body_bytes = \"big\"\n").expect("write");
    let error = Config::load(&path).expect_err("must fail").to_string();
    assert!(
        error.starts_with(&format!("{}: ingest.max_body_bytes: ", path.display())),
        "{error}"
    );
}

/// Found by the `config` fuzz target: an unknown key's error points at the key, and the key
/// named was the one on the line before it (or none at the top of the file).
#[test]
fn errors_name_the_key_on_their_line() {
    for (text, key) in [
        (
            "unknown_wait_secs = 300\n[nats]\nprefix = \"a\"\n",
            "unknown_wait_secs",
        ),
        ("[nats]\nprefix = \"a\"\nprefixx = \"b\"\n", "nats.prefixx"),
        (
            "[nats]\n# retention_days = 1\nduplicate_window_secs = \"x\"\n",
            "nats.duplicate_window_secs",
        ),
        ("[nats]\nprefix = \"a\"\n[natz]\nurl = \"b\"\n", "natz"),
        ("[naus] # the bus\nurl = \"b\"\n", "naus"),
        ("[ \"na#s\" ] # [bus]\nurl = \"b\"\n", "\"na#s\""),
        ("\t \"\ts\"=3\n", "\"\ts\""),
    ] {
        let error = Config::from_toml(text, Path::new("billsync.toml")).expect_err(text);
        assert_eq!(error.key, key, "{error}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("billsync.toml");
    std::fs::write(&path, "[ingest]\nlisten_port = 80\n").expect("write");
    let error = Config::load(&path).expect_err("must fail").to_string();
    assert!(error.contains("unknown field `listen_port`"), "{error}");
}

#[test]
fn a_worker_needs_only_its_own_secrets() {
    let text = GOOD.replace("T_WHSEC", "T_NOT_SET_FOR_WORKERS");
    let origin = Path::new("billsync.toml");
    let mut config: Config = toml::from_str(&text).expect("parse");
    config.origin = origin.to_path_buf();
    config
        .validate_with(&env, Role::Destination(DestinationKind::Activecampaign))
        .expect("the ActiveCampaign worker does not need the webhook secret");
    assert_eq!(
        config.destinations.activecampaign[0].api_token.expose(),
        "ac-token"
    );
    let mut config: Config = toml::from_str(&text).expect("parse");
    config.origin = origin.to_path_buf();
    let error = config
        .validate_with(&env, Role::Ingest)
        .expect_err("ingest needs it")
        .to_string();
    assert!(
        error.contains("sources.stripe[0].webhook_secrets[0]"),
        "{error}"
    );
}

#[test]
fn an_unknown_log_format_in_the_environment_is_refused() {
    let mut config = parse(GOOD).expect("valid");
    let error = config
        .apply_env(|name| (name == "BILLSYNC_LOG_FORMAT").then(|| "jsno".to_string()))
        .expect_err("a typo must not be ignored");
    let text = error.to_string();
    assert!(
        text.contains("BILLSYNC_LOG_FORMAT") && text.contains("\"json\""),
        "{text}"
    );
    config
        .apply_env(|name| (name == "BILLSYNC_LOG_FORMAT").then(|| "json".to_string()))
        .expect("json is a format");
    assert_eq!(config.telemetry.log_format, LogFormat::Json);
}

fn with_zoho(keys: &str) -> String {
    format!(
        "{GOOD}\n[[destinations.zoho]]\nname = \"zoho-main\"\nclient_id = {{ env = \"T_AC_TOKEN\" }}\n\
         client_secret = {{ env = \"T_AC_TOKEN\" }}\nrefresh_token = {{ env = \"T_AC_TOKEN\" }}\n{keys}"
    )
}

#[test]
fn a_zoho_connection_takes_a_data_centre_or_an_accounts_url() {
    let config = parse(&with_zoho("")).expect("valid");
    let zoho = &config.destinations.zoho[0];
    assert_eq!(zoho.accounts_url(), "https://accounts.zoho.com");
    assert_eq!((zoho.credits_per_day, zoho.concurrency), (50_000, 10));
    let config = parse(&with_zoho("data_center = \"ca\"")).expect("valid");
    assert_eq!(
        config.destinations.zoho[0].accounts_url(),
        "https://accounts.zohocloud.ca"
    );
    let config = parse(&with_zoho("data_center = \"eu\"")).expect("valid");
    assert_eq!(
        config.destinations.zoho[0].accounts_url(),
        "https://accounts.zoho.eu"
    );
    let config = parse(&with_zoho(
        "accounts_url = \"http://127.0.0.1:9100/zoho/demo/accounts/\"\ncredits_per_day = 5000\nconcurrency = 5",
    ))
    .expect("valid");
    let zoho = &config.destinations.zoho[0];
    assert_eq!(
        zoho.accounts_url(),
        "http://127.0.0.1:9100/zoho/demo/accounts"
    );
    assert_eq!((zoho.credits_per_day, zoho.concurrency), (5000, 5));

    let error = parse(&with_zoho("data_center = \"us\"")).expect_err("unknown");
    assert!(
        error
            .to_string()
            .contains("destinations.zoho[0].data_center: unknown data centre \"us\""),
        "{error}"
    );
    let both = with_zoho("data_center = \"eu\"\naccounts_url = \"https://accounts.zoho.eu\"");
    assert!(parse(&both).is_err());
    assert!(parse(&with_zoho("concurrency = 0")).is_err());
    assert!(parse(&with_zoho("credits_per_day = 0")).is_err());
    assert!(parse(&with_zoho("api_domain = \"https://www.zohoapis.com\"")).is_err());
}

#[test]
fn pipedrive_budget_and_burst_default_to_lite_and_refuse_zero() {
    let pipedrive = r#"
[[destinations.pipedrive]]
name = "pd-main"
base_url = "https://acme.pipedrive.com"
api_token = { env = "T_AC_TOKEN" }
"#;
    let config = parse(&format!("{GOOD}{pipedrive}")).expect("valid");
    let connection = &config.destinations.pipedrive[0];
    assert_eq!(connection.daily_token_budget, 30_000);
    assert_eq!(connection.requests_per_2s, 20);
    assert!(!format!("{connection:?}").contains("ac-token"));
    let sized = parse(&format!(
        "{GOOD}{pipedrive}daily_token_budget = 300000\nrequests_per_2s = 120\n"
    ))
    .expect("valid");
    assert_eq!(sized.destinations.pipedrive[0].daily_token_budget, 300_000);
    let error = parse(&format!("{GOOD}{pipedrive}daily_token_budget = 0\n"))
        .expect_err("must fail")
        .to_string();
    assert_eq!(
        error,
        "billsync.toml: destinations.pipedrive[0].daily_token_budget: must be at least 1"
    );
}

#[test]
fn syncs_and_sources_can_be_switched_off() {
    let two_syncs = format!(
        "{GOOD}\n[[sources.stripe]]\nname = \"stripe-off\"\nwebhook_secrets = [{{ env = \"T_WHSEC\" }}]\n\
         enabled = false\n\n[[sources.stripe]]\nname = \"stripe-lonely\"\n\
         webhook_secrets = [{{ env = \"T_WHSEC\" }}]\n\n\
         [[syncs]]\nsource = \"stripe-off\"\ndestination = \"ac-main\"\n"
    );
    let config = parse(&two_syncs).expect("valid");
    assert!(config.syncs.iter().all(|s| s.enabled), "enabled by default");
    let active: Vec<&str> = config.active_syncs().map(|s| s.source.as_str()).collect();
    assert_eq!(active, vec!["stripe-test"]);
    assert!(config.source_linked("stripe-test"));
    assert!(!config.source_linked("stripe-off"));
    // A source no sync reads yet keeps its events for one added later.
    assert!(config.source_linked("stripe-lonely"));

    let sync_off = GOOD.replace(
        "resources = [\"customer\"]",
        "resources = [\"customer\"]\nenabled = false",
    );
    let config = parse(&sync_off).expect("valid");
    assert_eq!(config.active_syncs().count(), 0);
    assert!(config.source_enabled("stripe-test"));
    assert!(!config.source_linked("stripe-test"));

    let error = parse(&GOOD.replace(
        "resources = [\"customer\"]",
        "resources = [\"customer\"]\nenabled = \"no\"",
    ))
    .expect_err("not a bool");
    assert!(error.to_string().contains("boolean"), "{error}");
}

/// Values that would break a service are refused at start, naming the key and the range.
#[test]
fn numeric_settings_that_break_a_service_are_refused_with_key_and_range() {
    let cases = [
        (
            "[ingest]\npublish_timeout_ms = 0",
            "ingest.publish_timeout_ms: 0 is outside 100..=25000",
        ),
        (
            "[ingest]\nmax_body_bytes = 0",
            "ingest.max_body_bytes: 0 is outside",
        ),
        (
            "[workers]\nmax_attempts = 0",
            "workers.max_attempts: 0 is outside 1..=100",
        ),
        (
            "[workers]\nmax_in_flight = 0",
            "workers.max_in_flight: 0 is outside",
        ),
        (
            "[workers]\nack_wait_secs = 0",
            "workers.ack_wait_secs: 0 is outside 1..=3600",
        ),
        (
            "[workers]\nrequest_timeout_ms = 0",
            "workers.request_timeout_ms: 0 is outside",
        ),
        (
            "[workers]\nunknown_sync_wait_secs = 100000",
            "workers.unknown_sync_wait_secs: 100000",
        ),
        (
            "[postgres]\nmax_connections = 0",
            "postgres.max_connections: 0 is outside",
        ),
        (
            "[nats]\nretention_days = 0",
            "nats.retention_days: 0 is outside",
        ),
        (
            "[nats]\nduplicate_window_secs = 0",
            "nats.duplicate_window_secs: 0 is outside",
        ),
    ];
    for (table, expected) in cases {
        // The table goes first: GOOD's own tables come after it.
        let text = GOOD.replacen("[nats]\nprefix = \"demo\"\n", "", 1);
        let (head, rest) = table.split_once('\n').expect("a table and a key");
        let text = if head == "[nats]" {
            format!("[nats]\nprefix = \"demo\"\n{rest}\n{text}")
        } else {
            format!("[nats]\nprefix = \"demo\"\n{table}\n{text}")
        };
        let error = parse(&text).expect_err(expected).to_string();
        assert!(error.contains(expected), "{table}: {error}");
        assert!(error.starts_with("billsync.toml: "), "{error}");
    }
    let text = GOOD.replacen(
        "webhook_secrets = [{ env = \"T_WHSEC\" }]",
        "webhook_secrets = [{ env = \"T_WHSEC\" }]\nsignature_tolerance_secs = 0",
        1,
    );
    let error = parse(&text).expect_err("tolerance 0").to_string();
    assert!(
        error.contains("sources.stripe[0].signature_tolerance_secs: 0 is outside 10..=3600"),
        "{error}"
    );
    assert!(parse(GOOD).is_ok(), "the defaults are inside every range");
}

/// Found by the `config` fuzz target: toml gives no message for a control character in a
/// comment, and the refusal said nothing but the file name.
#[test]
fn a_file_that_is_not_toml_is_refused_with_where_and_why() {
    for (text, place) in [
        ("# a\0b\n", "line 1, column 4"),
        ("[nats]\n# \u{7}\n", "line 2, column 3"),
    ] {
        let error = Config::from_toml(text, Path::new("billsync.toml")).expect_err("not TOML");
        assert!(error.reason.contains(place), "{error}");
        assert!(error.reason.contains("not valid TOML"), "{error}");
    }
    let error = Config::from_toml("[nats]\nprefix = \"a\0\"\n", Path::new("billsync.toml"))
        .expect_err("not TOML");
    assert_eq!(error.key, "nats.prefix");
    assert_eq!(error.reason, "invalid basic string");
}
