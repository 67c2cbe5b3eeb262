//! The Pipedrive client against the sandbox's Pipedrive (real HTTP) and a real NATS: each
//! answer classified, v2's strict typing, 429s, the token budget shared by replicas, typed
//! calls, and no secret in errors or logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use billsync_bus::{StreamSettings, Topology};
use billsync_events::FailureClass;
use billsync_pipedrive::api::*;
use billsync_sandbox::{PdCompany, PdEntity, PdFaults, RunningSandbox, SandboxConfig};
use billsync_worker::DeliveryError;
use secrecy::SecretString;
use serde_json::json;

const TOKEN: &str = "pd-s3cret-token";
const TIMEOUT: Duration = Duration::from_secs(5);

async fn sandbox(company: PdCompany) -> (RunningSandbox, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let base = sandbox.pipedrive.base_url(&company.name);
    sandbox.pipedrive.add_company(company);
    (sandbox, base)
}

fn company(name: &str) -> PdCompany {
    PdCompany {
        requests_per_2s: 1_000,
        ..PdCompany::new(name, TOKEN)
    }
}

fn client(base: &str, token: &str, daily_tokens: u64) -> PipedriveClient {
    PipedriveClient::new(
        base,
        SecretString::from(token.to_string()),
        1_000,
        PipedriveClient::budget(daily_tokens),
        TIMEOUT,
    )
}

fn person(name: &str, email: &str) -> PersonInput {
    PersonInput {
        name: Some(name.into()),
        emails: Some(vec![ContactEntry::primary(email)]),
        ..PersonInput::default()
    }
}

/// A fresh budgets bucket on the test NATS.
async fn budgets() -> async_nats::jetstream::kv::Store {
    bucket(|topology| topology.budgets_bucket()).await
}

/// A bucket of a fresh topology on the machine's NATS, named by `name`.
async fn bucket(name: impl Fn(&Topology) -> String) -> async_nats::jetstream::kv::Store {
    let url =
        std::env::var("BILLSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url).await.expect("NATS must run");
    let js = async_nats::jetstream::new(client);
    let topology = Topology::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(60),
        replicas: 1,
        retention: Duration::from_secs(3600),
    };
    topology
        .ensure_bucket(&js, name(&topology), &settings, Duration::ZERO)
        .await
        .expect("bucket")
}

fn message(error: &DeliveryError) -> String {
    error.to_string()
}

#[tokio::test]
async fn persons_organizations_deals_notes_and_metadata_round_trip() {
    let (sandbox, base) = sandbox(company("typed")).await;
    let client = client(&base, TOKEN, 30_000);

    let field = client
        .create_field(
            Entity::Person,
            &FieldInput {
                field_name: "Billing MRR".into(),
                field_type: "monetary".into(),
                options: vec![],
            },
        )
        .await
        .expect("field");
    assert_eq!(field.field_code.len(), 40);
    let fields = client.fields(Entity::Person).await.expect("fields");
    assert!(fields
        .iter()
        .any(|f| f.is_custom_field && f.field_name == "Billing MRR"));

    let org = client
        .create_organization(&OrganizationInput {
            name: Some("Acme GmbH".into()),
            ..Default::default()
        })
        .await
        .expect("org");
    assert_eq!(
        client
            .find_organizations_by_name("acme gmbh")
            .await
            .expect("search")[0]
            .id,
        org.id
    );
    client
        .update_organization(
            org.id,
            &OrganizationInput {
                name: Some("Acme AG".into()),
                ..Default::default()
            },
        )
        .await
        .expect("org update");

    let mut input = person("Ada Lovelace", "Ada@Acme.io");
    input.org_id = Some(org.id);
    input.custom_fields.insert(
        field.field_code.clone(),
        FieldValue::Money {
            value: 49.0,
            currency: "EUR".into(),
        },
    );
    let created = client.create_person(&input).await.expect("person");
    let found = client
        .find_persons_by_email("ada@acme.io")
        .await
        .expect("search");
    assert_eq!(
        found.iter().map(|h| h.id).collect::<Vec<_>>(),
        vec![created.id]
    );
    assert!(client
        .find_persons_by_email("ada@acme")
        .await
        .expect("search")
        .is_empty());
    let mut change = PersonInput {
        name: Some("Ada King".into()),
        ..Default::default()
    };
    change
        .custom_fields
        .insert(field.field_code.clone(), FieldValue::Clear);
    let updated = client
        .update_person(created.id, &change)
        .await
        .expect("update");
    assert_eq!(
        updated.emails[0].value, "Ada@Acme.io",
        "PATCH keeps what it does not set"
    );
    assert!(
        updated.custom_fields.get(&field.field_code).is_none(),
        "null clears"
    );

    let pipeline = &client.pipelines().await.expect("pipelines")[0];
    let stage = &client.stages(pipeline.id).await.expect("stages")[1];
    let deal = client
        .create_deal(&DealInput {
            title: Some("Pro plan".into()),
            value: Some(49.0),
            currency: Some("EUR".into()),
            person_id: Some(created.id),
            org_id: Some(org.id),
            stage_id: Some(stage.id),
            expected_close_date: chrono::NaiveDate::from_ymd_opt(2025, 3, 1),
            ..Default::default()
        })
        .await
        .expect("deal");
    let lost = client
        .update_deal(
            deal.id,
            &DealInput {
                status: Some(DealStatus::Lost),
                lost_reason: Some("Cancelled".into()),
                ..Default::default()
            },
        )
        .await
        .expect("deal update");
    assert_eq!((lost.status, lost.value), (DealStatus::Lost, 49.0));
    assert_eq!(
        client
            .get_deal(deal.id)
            .await
            .expect("get")
            .expect("found")
            .stage_id,
        Some(stage.id)
    );
    client
        .create_note(&NoteInput {
            content: "Subscription cancelled".into(),
            deal_id: Some(deal.id),
            ..Default::default()
        })
        .await
        .expect("note");
    assert_eq!(client.users().await.expect("users")[0].id, 1);

    let snapshot = sandbox.pipedrive.snapshot("typed");
    assert_eq!(snapshot.persons[0]["name"], json!("Ada King"));
    assert_eq!(snapshot.persons[0]["org_id"], json!(org.id));
    assert_eq!(snapshot.organizations[0]["name"], json!("Acme AG"));
    assert_eq!(snapshot.deals[0]["status"], json!("lost"));
    assert_eq!(snapshot.deals[0]["lost_reason"], json!("Cancelled"));
    assert_eq!(
        snapshot.deals[0]["expected_close_date"],
        json!("2025-03-01")
    );
    assert_eq!(snapshot.notes[0].deal_id, Some(deal.id));

    // A person purged (or merged away) is gone: None, not an error.
    sandbox
        .pipedrive
        .purge("typed", PdEntity::Person, created.id);
    assert_eq!(
        client.get_person(created.id).await.expect("404 is None"),
        None
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn v2_strict_typing_refusals_are_permanent_with_pipedrives_reason() {
    let (sandbox, base) = sandbox(company("strict")).await;
    let client = client(&base, TOKEN, 30_000);
    let money = client
        .create_field(
            Entity::Deal,
            &FieldInput {
                field_name: "MRR".into(),
                field_type: "monetary".into(),
                options: vec![],
            },
        )
        .await
        .expect("field");
    let mut deal = DealInput {
        title: Some("Pro".into()),
        ..Default::default()
    };
    deal.custom_fields
        .insert(money.field_code.clone(), FieldValue::Number(49.0));
    let error = client
        .create_deal(&deal)
        .await
        .expect_err("a bare number is no money");
    let DeliveryError::Permanent {
        class, http_status, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((*class, *http_status), (FailureClass::Rejected, Some(400)));
    assert!(
        message(&error).contains(&format!(
            "Parameter 'custom_fields.{}' must be an object with value and currency",
            money.field_code
        )),
        "{error}"
    );
    assert!(
        message(&error).starts_with("POST /api/v2/deals answered 400"),
        "{error}"
    );
    let number = client
        .create_field(
            Entity::Person,
            &FieldInput {
                field_name: "Seats".into(),
                field_type: "double".into(),
                options: vec![],
            },
        )
        .await
        .expect("field");
    let mut input = person("A", "a@x.io");
    input
        .custom_fields
        .insert(number.field_code.clone(), FieldValue::Text("3".into()));
    let error = client
        .create_person(&input)
        .await
        .expect_err("numbers are not parsed from strings");
    assert!(message(&error).contains("must be a number"), "{error}");
    let nameless = client
        .create_person(&PersonInput::default())
        .await
        .expect_err("persons need a name");
    assert!(
        message(&nameless).contains("'name' is required"),
        "{nameless}"
    );
    assert!(sandbox.pipedrive.snapshot("strict").persons.is_empty());
    assert!(sandbox.pipedrive.snapshot("strict").deals.is_empty());
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_wrong_token_is_configuration_and_never_shown() {
    let (sandbox, base) = sandbox(company("auth")).await;
    let wrong = "pd-wrong-s3cret";
    let error = client(&base, wrong, 30_000).users().await.expect_err("401");
    let DeliveryError::Permanent {
        class, http_status, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        (*class, *http_status),
        (FailureClass::Configuration, Some(401))
    );
    assert!(!format!("{error:?}").contains(wrong), "{error:?}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_429_is_retryable_with_the_retry_after_and_5xx_too() {
    let (sandbox, base) = sandbox(company("throttled")).await;
    sandbox.pipedrive.set_faults(
        "throttled",
        PdFaults {
            throttle_next: 1,
            retry_after_secs: 3,
            fail_next: 1,
            ..PdFaults::default()
        },
    );
    let client = client(&base, TOKEN, 30_000);
    let error = client.pipelines().await.expect_err("429");
    let DeliveryError::Retryable {
        retry_after,
        http_status,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(
        (*retry_after, *http_status),
        (Some(Duration::from_secs(3)), Some(429))
    );
    assert!(message(&error).contains("over the burst limit"), "{error}");
    // The transport held every caller back for the 3 s Pipedrive asked.
    let started = std::time::Instant::now();
    let error = client.pipelines().await.expect_err("500");
    assert!(
        started.elapsed() >= Duration::from_millis(2_900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            error,
            DeliveryError::Retryable {
                http_status: Some(500),
                ..
            }
        ),
        "{error:?}"
    );
    client.pipelines().await.expect("then answered");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_burst_limit_of_the_emulator_is_honoured_by_the_clients_pace() {
    let company = PdCompany {
        requests_per_2s: 4,
        ..PdCompany::new("paced", TOKEN)
    };
    let (sandbox, base) = sandbox(company).await;
    let client = PipedriveClient::new(
        &base,
        SecretString::from(TOKEN.to_string()),
        4,
        PipedriveClient::budget(30_000),
        TIMEOUT,
    );
    for _ in 0..6 {
        client.get_person(1).await.expect("404 is None");
    }
    assert_eq!(sandbox.pipedrive.request_counts("paced").refused, 0);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn two_replicas_share_the_search_window_and_pipedrive_refuses_none() {
    let (sandbox, base) = sandbox(company("searching")).await;
    let rate_limits = bucket(|topology| topology.rate_limits_bucket()).await;
    let replica = || {
        Arc::new(client(&base, TOKEN, 30_000).with_shared_limiters(
            rate_limits.clone(),
            "pd-searching",
            1_000,
        ))
    };
    let replicas = [replica(), replica()];
    let mut tasks = Vec::new();
    // Each replica alone keeps to 10 searches per 2 s; together, unshared, they would send
    // 20 and Pipedrive would refuse half.
    for (r, client) in replicas.iter().enumerate() {
        for i in 0..12 {
            let client = Arc::clone(client);
            tasks.push(tokio::spawn(async move {
                client
                    .find_persons_by_email(&format!("s{r}-{i}@x.io"))
                    .await
            }));
        }
    }
    for task in tasks {
        task.await
            .expect("task")
            .expect("a search Pipedrive answers");
    }
    let counts = sandbox.pipedrive.request_counts("searching");
    assert_eq!((counts.accepted, counts.refused), (24, 0), "{counts:?}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_timeout_is_retryable() {
    let (sandbox, base) = sandbox(company("slow")).await;
    sandbox.pipedrive.set_faults(
        "slow",
        PdFaults {
            latency_ms: 1_500,
            ..PdFaults::default()
        },
    );
    let client = PipedriveClient::new(
        &base,
        SecretString::from(TOKEN.to_string()),
        1_000,
        PipedriveClient::budget(30_000),
        Duration::from_millis(300),
    );
    let error = client.users().await.expect_err("timeout");
    assert!(
        matches!(
            error,
            DeliveryError::Retryable {
                http_status: None,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(message(&error).contains("timed out"), "{error}");
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_budget_429_and_the_403_page_after_it_are_retryable() {
    // The company's budget is smaller than billsync's ledger thinks: another app spends it.
    let company = PdCompany {
        daily_tokens: 10,
        ..company("spent")
    };
    let (sandbox, base) = sandbox(company).await;
    let client = client(&base, TOKEN, 30_000);
    client
        .create_organization(&OrganizationInput {
            name: Some("A".into()),
            ..Default::default()
        })
        .await
        .expect("5");
    client
        .create_organization(&OrganizationInput {
            name: Some("B".into()),
            ..Default::default()
        })
        .await
        .expect("10");
    let error = client.get_organization(1).await.expect_err("budget 429");
    assert!(
        matches!(
            error,
            DeliveryError::Retryable {
                http_status: Some(429),
                retry_after: None,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(message(&error).contains("daily token budget"), "{error}");
    let error = client.get_organization(1).await.expect_err("403 page");
    assert!(
        matches!(
            error,
            DeliveryError::Retryable {
                http_status: Some(403),
                ..
            }
        ),
        "{error:?}"
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn a_call_the_ledger_cannot_pay_for_is_not_sent() {
    let (sandbox, base) = sandbox(company("ledger")).await;
    let client = client(&base, TOKEN, 12);
    client
        .create_person(&person("A", "a@x.io"))
        .await
        .expect("5 of 12");
    client
        .create_person(&person("B", "b@x.io"))
        .await
        .expect("10 of 12");
    let error = client
        .create_person(&person("C", "c@x.io"))
        .await
        .expect_err("2 left, 5 needed");
    let DeliveryError::Retryable {
        retry_after,
        http_status,
        ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*http_status, None);
    assert!(
        retry_after.is_some_and(|wait| wait > Duration::from_secs(23 * 3600)),
        "{retry_after:?}"
    );
    assert!(message(&error).contains("not sent"), "{error}");
    client
        .get_person(1)
        .await
        .expect("1 token still affordable");
    assert_eq!(sandbox.pipedrive.request_counts("ledger").accepted, 3);
    assert_eq!(sandbox.pipedrive.tokens("ledger").spent, 11);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn two_replicas_share_one_budget_through_nats_kv_and_neither_overspends() {
    let daily = 100;
    let company = PdCompany {
        daily_tokens: daily,
        ..company("shared")
    };
    let (sandbox, base) = sandbox(company).await;
    let handle = billsync_telemetry::metrics_handle();
    let store = budgets().await;
    let replica = |store| {
        PipedriveClient::new(
            &base,
            SecretString::from(TOKEN.to_string()),
            1_000,
            PipedriveClient::shared_budget(store, "pd-shared", daily),
            TIMEOUT,
        )
        .for_connection("pd-shared")
    };
    let replicas = [Arc::new(replica(store.clone())), Arc::new(replica(store))];
    let mut tasks = Vec::new();
    for (r, client) in replicas.iter().enumerate() {
        for i in 0..15 {
            let client = Arc::clone(client);
            tasks.push(tokio::spawn(async move {
                client
                    .create_person(&person(&format!("P{r}-{i}"), &format!("p{r}-{i}@x.io")))
                    .await
            }));
        }
    }
    let mut created = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => created += 1,
            Err(DeliveryError::Retryable {
                http_status: None,
                retry_after: Some(_),
                ..
            }) => refused += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    // 30 writes of 5 tokens against 100: exactly 20 paid, the rest never sent.
    assert_eq!((created, refused), (20, 10));
    let tokens = sandbox.pipedrive.tokens("shared");
    assert_eq!((tokens.spent, tokens.refused), (100, 0));
    assert_eq!(sandbox.pipedrive.request_counts("shared").accepted, 20);
    assert_eq!(sandbox.pipedrive.snapshot("shared").persons.len(), 20);
    let rendered = handle.render();
    let gauge = rendered
        .lines()
        .find(|l| {
            l.starts_with("billsync_crm_budget_remaining{")
                && l.contains("connection=\"pd-shared\"")
        })
        .unwrap_or_else(|| panic!("no budget gauge in {rendered}"));
    assert!(gauge.ends_with(" 0"), "{gauge}");
    sandbox.shutdown().await;
}

/// A writer the test reads back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_token_is_in_no_error_and_no_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let (sandbox, base) = sandbox(company("secret")).await;
    let client = client(&base, TOKEN, 30_000);
    let mut errors = Vec::new();
    client
        .create_person(&person("A", "a@x.io"))
        .await
        .expect("created");
    errors.push(
        client
            .create_person(&PersonInput::default())
            .await
            .expect_err("400"),
    );
    sandbox.pipedrive.set_faults(
        "secret",
        PdFaults {
            fail_next: 1,
            ..PdFaults::default()
        },
    );
    errors.push(client.users().await.expect_err("500"));
    errors.push(
        self::client(&base, &format!("{TOKEN}x"), 30)
            .users()
            .await
            .expect_err("401"),
    );
    let logged = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(
        logged.contains("crm_request"),
        "the calls were logged: {logged}"
    );
    assert!(!logged.contains(TOKEN), "{logged}");
    for error in errors {
        assert!(!format!("{error:?} {error}").contains(TOKEN), "{error:?}");
    }
    sandbox.shutdown().await;
}
