//! The transport against a real HTTP server on loopback: answers, refusals, 429 back-off for
//! every caller (in one process and across replicas through NATS), 5xx, timeouts, the
//! concurrency limit, budgets, metric labels and spans.

use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, StatusCode as AxumStatus, Uri};
use axum::response::{IntoResponse, Response};
use billsync_crm_http::{Budget, Call, CrmTransport, Vendor};
use billsync_events::FailureClass;
use billsync_worker::DeliveryError;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A vendor as simple as a CRM gets: 2xx fine, 429 and 5xx retryable, other refusals
/// permanent with the body's `message`.
struct TestCrm;

impl Vendor for TestCrm {
    const DESTINATION: &'static str = "testcrm";
    const NAME: &'static str = "TestCRM";

    fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<(), DeliveryError> {
        let detail: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let reason = detail["message"]
            .as_str()
            .unwrap_or("no reason")
            .to_string();
        let retry_after = billsync_bus::retry_after_header(headers, std::time::SystemTime::now());
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::TOO_MANY_REQUESTS => Err(DeliveryError::Retryable {
                message: "TestCRM rate limit reached".into(),
                retry_after: retry_after.or(Some(Duration::from_secs(1))),
                http_status: Some(429),
            }),
            s if s.is_server_error() => Err(DeliveryError::Retryable {
                message: format!("TestCRM failed: {reason}"),
                retry_after,
                http_status: Some(s.as_u16()),
            }),
            s => Err(DeliveryError::Permanent {
                class: FailureClass::Rejected,
                message: format!("TestCRM refused the record: {reason}"),
                http_status: Some(s.as_u16()),
                detail,
            }),
        }
    }
}

/// What the server saw and how it answers.
#[derive(Default)]
struct Server {
    /// (path with query, when it arrived, the `x-api-token` it carried), in arrival order.
    seen: Mutex<Vec<(String, Instant, Option<String>)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

type Shared = Arc<Server>;

async fn serve(app: axum::Router<Shared>) -> (String, Shared) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let server = Shared::default();
    let app = app.with_state(Arc::clone(&server));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, server)
}

fn record(server: &Server, uri: &Uri, headers: &AxumHeaders) -> usize {
    let token = headers
        .get("x-api-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut seen = server.seen.lock().expect("lock");
    seen.push((uri.to_string(), Instant::now(), token));
    seen.len()
}

/// A server whose `n`-th request (1-based) gets `answer(n)`.
async fn answering(answer: fn(usize) -> Response) -> (String, Shared) {
    let app = axum::Router::new().fallback(
        move |State(server): State<Shared>, uri: Uri, headers: AxumHeaders| async move {
            answer(record(&server, &uri, &headers))
        },
    );
    serve(app).await
}

fn ok(_: usize) -> Response {
    axum::Json(json!({"id": 7, "name": "Ada"})).into_response()
}

fn transport(base: &str) -> CrmTransport<TestCrm> {
    CrmTransport::new(base, Duration::from_secs(5))
        .auth_header(
            "x-api-token",
            SecretString::from("s3cret-token".to_string()),
        )
        .rate(1_000)
        .for_connection("test-conn")
}

#[tokio::test]
async fn a_success_is_read_as_json_and_carries_the_credential() {
    let (base, server) = answering(ok).await;
    let got: Value = transport(&base)
        .json(Call::post("/contacts/42?x=1").json(&json!({"email": "ada@example.com"})))
        .await
        .expect("2xx");
    assert_eq!(got["name"], "Ada");
    let seen = server.seen.lock().expect("lock");
    assert_eq!(seen[0].0, "/contacts/42?x=1");
    assert_eq!(seen[0].2.as_deref(), Some("s3cret-token"));
}

#[tokio::test]
async fn a_4xx_is_permanent_through_classify_and_says_which_call_failed() {
    let (base, _server) = answering(|_| {
        (
            AxumStatus::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"message": "Email is invalid"})),
        )
            .into_response()
    })
    .await;
    match transport(&base)
        .send(Call::put("/contacts/123?email=a%40b"))
        .await
    {
        Err(DeliveryError::Permanent {
            class,
            message,
            http_status,
            detail,
        }) => {
            assert_eq!(class, FailureClass::Rejected);
            assert_eq!(http_status, Some(422));
            assert_eq!(
                message,
                "PUT /contacts/{id} answered 422: TestCRM refused the record: Email is invalid"
            );
            assert_eq!(detail["message"], "Email is invalid");
            assert!(!message.contains("s3cret-token"));
        }
        other => panic!("expected a permanent failure, got {other:?}"),
    }
}

#[tokio::test]
async fn a_5xx_is_retryable_with_its_status() {
    let (base, _server) = answering(|n| {
        if n == 1 {
            (
                AxumStatus::BAD_GATEWAY,
                axum::Json(json!({"message": "upstream down"})),
            )
                .into_response()
        } else {
            ok(n)
        }
    })
    .await;
    let transport = transport(&base);
    match transport.send(Call::get("/contacts")).await {
        Err(DeliveryError::Retryable {
            message,
            http_status,
            retry_after,
        }) => {
            assert_eq!(http_status, Some(502));
            assert_eq!(retry_after, None);
            assert_eq!(
                message,
                "GET /contacts answered 502: TestCRM failed: upstream down"
            );
        }
        other => panic!("expected a retryable 502, got {other:?}"),
    }
    transport
        .send(Call::get("/contacts"))
        .await
        .expect("the next call succeeds");
}

#[tokio::test]
async fn a_timeout_is_retryable_and_names_the_call_not_the_url() {
    let app = axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        "late"
    });
    let (base, _server) = serve(app).await;
    let transport = CrmTransport::<TestCrm>::new(&base, Duration::from_millis(100)).auth_header(
        "x-api-token",
        SecretString::from("s3cret-token".to_string()),
    );
    let started = Instant::now();
    match transport
        .send(Call::get("/contacts?email=ada%40example.com"))
        .await
    {
        Err(DeliveryError::Retryable {
            message,
            http_status,
            ..
        }) => {
            assert!(started.elapsed() < Duration::from_secs(1));
            assert_eq!(http_status, None);
            assert!(
                message.starts_with("GET /contacts: request to TestCRM timed out"),
                "{message}"
            );
            assert!(!message.contains("example.com"), "{message}");
            assert!(!message.contains("s3cret-token"), "{message}");
        }
        other => panic!("expected a retryable timeout, got {other:?}"),
    }
}

/// After a 429 with `Retry-After: 1`, no caller of the connection sends for a second — not
/// only the one refused. 8 callers, 50 requests/s: without the back-off the server would
/// see the next request 20 ms after the 429.
#[tokio::test]
async fn a_429_holds_back_every_caller_for_the_retry_after() {
    let (base, server) = answering(|n| {
        if n == 3 {
            (
                AxumStatus::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                axum::Json(json!({"message": "slow down"})),
            )
                .into_response()
        } else {
            ok(n)
        }
    })
    .await;
    let transport = Arc::new(
        CrmTransport::<TestCrm>::new(&base, Duration::from_secs(5))
            .rate(50)
            .for_connection("test-429"),
    );
    let callers: Vec<_> = (0..8)
        .map(|i| {
            let transport = Arc::clone(&transport);
            tokio::spawn(async move { transport.send(Call::get(format!("/items/{i}"))).await })
        })
        .collect();
    let mut refused = Vec::new();
    for caller in callers {
        if let Err(error) = caller.await.expect("caller") {
            refused.push(error);
        }
    }
    match refused.as_slice() {
        [DeliveryError::Retryable {
            retry_after,
            http_status: Some(429),
            message,
        }] => {
            assert_eq!(*retry_after, Some(Duration::from_secs(1)));
            assert!(
                message.starts_with("GET /items/{id} answered 429"),
                "{message}"
            );
        }
        other => panic!("expected exactly one 429, got {other:?}"),
    }
    let seen = server.seen.lock().expect("lock");
    assert_eq!(seen.len(), 8);
    let refused_at = seen[2].1;
    let pause = seen[3].1.duration_since(refused_at);
    println!("measured: first request after the 429 came {pause:?} after it (Retry-After: 1 s)");
    assert!(
        pause >= Duration::from_millis(990) && pause < Duration::from_millis(1_500),
        "the next request came {pause:?} after the 429"
    );
}

/// Two replicas of one connection share a rate through NATS KV: the 429 one of them gets
/// holds back the other, which never saw it.
#[tokio::test]
async fn a_429_holds_back_the_other_replicas_through_the_shared_limiter() {
    use async_nats::jetstream::{self, kv};
    use billsync_bus::{StreamSettings, Topology};
    let url =
        std::env::var("BILLSYNC_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(url)
        .await
        .expect("NATS must run (make services starts it)");
    let js = jetstream::new(client);
    let topology = Topology::new(&format!(
        "t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ));
    let settings = StreamSettings {
        duplicate_window: Duration::from_secs(60),
        replicas: 1,
        retention: Duration::from_secs(3600),
    };
    let store = topology
        .ensure_bucket(
            &js,
            topology.rate_limits_bucket(),
            &settings,
            Duration::ZERO,
        )
        .await
        .expect("bucket");
    let (base, server) = answering(|n| {
        if n == 1 {
            (
                AxumStatus::TOO_MANY_REQUESTS,
                [("retry-after", "2")],
                axum::Json(json!({"message": "slow down"})),
            )
                .into_response()
        } else {
            ok(n)
        }
    })
    .await;
    let replica = |store: &kv::Store| {
        CrmTransport::<TestCrm>::new(&base, Duration::from_secs(5))
            .rate(100)
            .with_shared_limiter(billsync_bus::SharedRateLimiter::new(
                store.clone(),
                "testcrm.acct",
                100,
            ))
    };
    let (a, b) = (replica(&store), replica(&store));
    let refused = a.send(Call::get("/items")).await;
    assert!(matches!(
        refused,
        Err(DeliveryError::Retryable {
            http_status: Some(429),
            ..
        })
    ));
    b.send(Call::get("/items")).await.expect("after the pause");
    let pause = {
        let seen = server.seen.lock().expect("lock");
        seen[1].1.duration_since(seen[0].1)
    };
    println!(
        "measured: the other replica's request came {pause:?} after the 429 (Retry-After: 2 s)"
    );
    assert!(
        pause >= Duration::from_millis(1_950) && pause < Duration::from_millis(2_600),
        "the other replica sent {pause:?} after the 429"
    );
    let _ = js.delete_key_value(topology.rate_limits_bucket()).await;
}

#[tokio::test]
async fn the_concurrency_limit_is_honoured() {
    let app = axum::Router::new().fallback(|State(server): State<Shared>| async move {
        let now = server.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        server.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.in_flight.fetch_sub(1, Ordering::SeqCst);
        axum::Json(json!({}))
    });
    let (base, server) = serve(app).await;
    let transport = Arc::new(
        CrmTransport::<TestCrm>::new(&base, Duration::from_secs(5))
            .rate(10_000)
            .concurrency(3),
    );
    let started = Instant::now();
    let callers: Vec<_> = (0..12)
        .map(|_| {
            let transport = Arc::clone(&transport);
            tokio::spawn(async move { transport.send(Call::post("/upsert")).await })
        })
        .collect();
    for caller in callers {
        caller.await.expect("caller").expect("answered");
    }
    let elapsed = started.elapsed();
    let max = server.max_in_flight.load(Ordering::SeqCst);
    println!("measured: 12 calls of 100 ms with concurrency 3: at most {max} in flight, {elapsed:?} in all");
    assert_eq!(max, 3, "requests in flight at once");
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
}

#[tokio::test]
async fn a_call_the_budget_cannot_pay_for_is_not_sent() {
    let (base, server) = answering(ok).await;
    let transport = transport(&base).with_budget(
        Budget::rolling(12, Duration::from_secs(3_600), "tokens").costing(|method, _| {
            if method == reqwest::Method::POST {
                5
            } else {
                1
            }
        }),
    );
    transport
        .send(Call::post("/persons"))
        .await
        .expect("5 of 12");
    transport
        .send(Call::post("/persons"))
        .await
        .expect("10 of 12");
    transport
        .send(Call::get("/persons/1"))
        .await
        .expect("11 of 12");
    match transport.send(Call::post("/persons")).await {
        Err(DeliveryError::Retryable {
            message,
            retry_after,
            http_status,
        }) => {
            assert_eq!(http_status, None);
            assert!(
                retry_after.is_some_and(|d| d > Duration::from_secs(3_590)),
                "{retry_after:?}"
            );
            assert!(
                message.starts_with("POST /persons: not sent: the call costs 5 tokens and 1 of"),
                "{message}"
            );
        }
        other => panic!("expected the budget to refuse, got {other:?}"),
    }
    // A call that names its own price: one token is still left.
    transport
        .send(Call::post("/persons").cost(1))
        .await
        .expect("12 of 12");
    assert_eq!(server.seen.lock().expect("lock").len(), 4);
}

#[tokio::test]
async fn metric_labels_carry_the_endpoint_template_not_the_ids() {
    let handle = billsync_telemetry::metrics_handle();
    let (base, _server) = answering(ok).await;
    let transport = transport(&base).for_connection("metrics-conn");
    for id in [123, 456] {
        transport
            .send(Call::get(format!("/contacts/{id}?email=x")))
            .await
            .expect("answered");
    }
    transport
        .send(Call::get("/eventTrackingEvents/signup").endpoint("/eventTrackingEvents/{name}"))
        .await
        .expect("answered");
    let rendered = handle.render();
    let ours: Vec<&str> = rendered
        .lines()
        .filter(|l| l.contains("connection=\"metrics-conn\""))
        .collect();
    let count = |metric: &str, endpoint: &str| {
        ours.iter()
            .find(|l| {
                l.starts_with(&format!("{metric}{{"))
                    && l.contains(&format!("endpoint=\"{endpoint}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    assert_eq!(
        count("billsync_crm_requests_total", "/contacts/{id}").as_deref(),
        Some("2"),
        "{ours:#?}"
    );
    let requests = ours
        .iter()
        .find(|l| l.starts_with("billsync_crm_requests_total{") && l.contains("/contacts/"))
        .expect("the requests line");
    for label in [
        "destination=\"testcrm\"",
        "method=\"GET\"",
        "status=\"200\"",
    ] {
        assert!(requests.contains(label), "{requests}");
    }
    assert_eq!(
        count("billsync_crm_request_seconds_count", "/contacts/{id}").as_deref(),
        Some("2"),
        "{ours:#?}"
    );
    assert_eq!(
        count("billsync_crm_requests_total", "/eventTrackingEvents/{name}").as_deref(),
        Some("1")
    );
    assert!(
        ours.iter()
            .all(|l| !l.contains("123") && !l.contains("456") && !l.contains("email")),
        "{ours:#?}"
    );
}

/// A writer the test can read back.
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
async fn each_request_has_a_span_with_its_fields_and_no_secret() {
    use tracing_subscriber::fmt::format::FmtSpan;
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    // Current-thread runtime: the default subscriber covers every poll of this test.
    let _default = tracing::subscriber::set_default(subscriber);
    let (base, _server) = answering(ok).await;
    transport(&base)
        .send(Call::post("/contacts/99").json(&json!({"password": "body-secret"})))
        .await
        .expect("answered");
    let logged = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    let span = logged
        .lines()
        .find(|l| l.contains("crm_request"))
        .unwrap_or_else(|| panic!("no crm_request span in {logged}"));
    for field in [
        "destination=\"testcrm\"",
        "connection=test-conn",
        "method=POST",
        "endpoint=/contacts/{id}",
        "status=\"200\"",
    ] {
        assert!(span.contains(field), "{field} missing from {span}");
    }
    assert!(!logged.contains("s3cret-token"), "{logged}");
    assert!(!logged.contains("body-secret"), "{logged}");
}
