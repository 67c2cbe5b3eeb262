//! Integration tests of the errors service against real NATS and Postgres.

mod app;
mod ignores;
mod open_failures;
mod openapi;
mod postgres_outage;
mod schemathesis;

use app::{
    at, customer_event, eventually, eventually_within, failed, simple_failure, skipped, spawn_app,
    spawn_app_with, synced, Options, AC, CB, PD,
};
use async_nats::jetstream::consumer::pull;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn five_failures_of_one_record_make_one_row_counted_five_times() {
    let app = spawn_app().await;
    let mut last = None;
    for step in 1..=5 {
        last = Some(app.publish(&simple_failure(PD, "cus_5", step)).await);
    }
    let row = app
        .wait_failure("open", PD, "customer/cus_5", |row| row["count"] == 5)
        .await;
    assert_eq!(row["first_seen"], json!(at(1)));
    assert_eq!(row["last_seen"], json!(at(5)));
    assert_eq!(row["event_id"], "ev_cus_5_5");
    assert_eq!(row["destination"], "pipedrive");
    assert_eq!(row["source"], "chargebee");
    assert_eq!(row["source_connection"], CB);
    assert_eq!(row["error_class"], "rejected");
    assert_eq!(row["http_status"], 422);

    app.wait_consumed(last.expect("published").sequence).await;
    let stored = app.stored_failures().await;
    assert_eq!(stored.len(), 1, "one row per record: {stored:?}");
    assert_eq!(stored[0]["count"], 5);
    app.stop().await;
}

#[tokio::test]
async fn a_redelivered_outcome_is_not_counted_twice() {
    let app = spawn_app().await;
    // Workers stamp outcomes with nanoseconds; Postgres keeps microseconds.
    let event = customer_event("cus_r", "ev_cus_r_1", None, json!({"id": "cus_r"}));
    let first = failed(
        AC,
        &event,
        at(1) + chrono::Duration::nanoseconds(456),
        "rejected",
        Value::Null,
    );
    app.publish(&first).await;
    app.wait_failure("open", AC, "customer/cus_r", |row| row["count"] == 1)
        .await;

    let again = app.redeliver(&first).await;
    app.wait_consumed(again.sequence).await;
    let stored = app.stored_failures().await;
    assert_eq!(
        stored[0]["count"], 1,
        "a redelivery counted again: {stored:?}"
    );

    // A genuinely new failing delivery still counts.
    app.publish(&simple_failure(AC, "cus_r", 2)).await;
    app.wait_failure("open", AC, "customer/cus_r", |row| row["count"] == 2)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn a_later_success_resolves_the_failure() {
    let app = spawn_app().await;
    let event = customer_event("cus_ok", "ev_ok_1", None, json!({"id": "cus_ok"}));
    app.publish(&failed(AC, &event, at(1), "rejected", Value::Null))
        .await;
    // The same record failing at another destination stays open: resolution is per destination.
    app.publish(&failed(PD, &event, at(1), "rejected", Value::Null))
        .await;
    app.wait_failure("open", AC, "customer/cus_ok", |_| true)
        .await;
    app.wait_failure("open", PD, "customer/cus_ok", |_| true)
        .await;

    app.publish(&synced(AC, &event, at(2))).await;
    let resolved = app
        .wait_failure("resolved", AC, "customer/cus_ok", |row| {
            !row["resolved_at"].is_null()
        })
        .await;
    assert_eq!(resolved["resolved_at"], json!(at(2)));
    let open = app.get_json("/api/v1/failures").await;
    let open: Vec<&Value> = open["items"].as_array().expect("items").iter().collect();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["destination_connection"], PD);

    // A failure older than the success is stale and does not reopen the row.
    let late = app
        .publish(&failed(
            AC,
            &event,
            at(1) + chrono::Duration::milliseconds(5),
            "late",
            Value::Null,
        ))
        .await;
    app.wait_consumed(late.sequence).await;
    let row = app
        .get_json(&format!("/api/v1/failures/{}", resolved["id"]))
        .await;
    assert_eq!(row["status"], "resolved");

    // A new failure after the success opens a new episode.
    let changed = customer_event("cus_ok", "ev_ok_2", None, json!({"id": "cus_ok"}));
    app.publish(&failed(AC, &changed, at(3), "rejected again", Value::Null))
        .await;
    let reopened = app
        .wait_failure("open", AC, "customer/cus_ok", |row| {
            row["event_id"] == "ev_ok_2"
        })
        .await;
    assert_eq!(reopened["id"], resolved["id"]);
    assert_eq!(reopened["count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn ignored_failures_are_left_out_of_the_csv() {
    let app = spawn_app().await;
    for (connection, id, step) in [
        (AC, "cus_a", 1),
        (AC, "cus_b", 2),
        (PD, "cus_c", 3),
        (PD, "cus_d", 4),
    ] {
        app.publish(&simple_failure(connection, id, step)).await;
    }
    let a = app
        .wait_failure("open", AC, "customer/cus_a", |_| true)
        .await;
    for (connection, record) in [
        (AC, "customer/cus_b"),
        (PD, "customer/cus_c"),
        (PD, "customer/cus_d"),
    ] {
        app.wait_failure("open", connection, record, |_| true).await;
    }

    let ignored = app
        .post_json(&format!("/api/v1/failures/{}/ignore", a["id"]), json!({}))
        .await;
    assert_eq!(ignored["status"], "ignored");
    let bulk = app
        .post_json(
            "/api/v1/failures/ignore",
            json!({"connection": PD, "q": "cus_d"}),
        )
        .await;
    assert_eq!(bulk, json!({"ignored": 1}));

    let csv = app.get("/api/v1/failures.csv").send().await.expect("csv");
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/csv"));
    let csv = csv.text().await.expect("text");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "id,destination,destination_connection,source,source_connection,record_key,event_type,\
         error_class,http_status,message,count,first_seen,last_seen"
    );
    assert_eq!(lines.len(), 3, "header and two open failures: {csv}");
    assert!(
        csv.contains("customer/cus_b") && csv.contains("customer/cus_c"),
        "{csv}"
    );
    assert!(
        !csv.contains("customer/cus_a") && !csv.contains("customer/cus_d"),
        "{csv}"
    );

    let listed = app.get_json("/api/v1/failures?status=ignored").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2));
    // Asking the CSV for ignored failures is refused rather than answered with open ones.
    let refused = app
        .get("/api/v1/failures.csv?status=ignored")
        .send()
        .await
        .expect("csv");
    assert_eq!(refused.status(), 400);
    app.stop().await;
}

#[tokio::test]
async fn the_csv_never_contains_a_configured_secret() {
    let app = spawn_app().await;
    let s = &app.secrets;
    let event = customer_event(
        "cus_s",
        "ev_s_1",
        None,
        json!({"id": "cus_s", "note": s.cb_key}),
    );
    let message = format!(
        "ActiveCampaign refused Api-Token {}: \"bad, really\"\nline two",
        s.ac_token
    );
    let detail = json!({"errors": [{"title": format!("token {} invalid", s.ac_token)}], s.pd_token.clone(): s.admin_token});
    app.publish(&failed(AC, &event, at(1), &message, detail))
        .await;
    let row = app
        .wait_failure("open", AC, "customer/cus_s", |_| true)
        .await;

    let csv = app
        .get("/api/v1/failures.csv")
        .send()
        .await
        .expect("csv")
        .text()
        .await
        .expect("text");
    let listed = app
        .get("/api/v1/failures")
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    let detail = app
        .get(&format!("/api/v1/failures/{}", row["id"]))
        .send()
        .await
        .expect("detail")
        .text()
        .await
        .expect("text");
    let stored = serde_json::to_string(&app.stored_failures().await).expect("json");
    for secret in [&s.admin_token, &s.ac_token, &s.pd_token, &s.cb_key] {
        for (what, text) in [
            ("CSV", &csv),
            ("list", &listed),
            ("detail", &detail),
            ("database", &stored),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "the {what} contains a secret: {text}"
            );
        }
    }
    assert!(csv.contains("[redacted]"), "{csv}");
    // The message keeps its comma, quotes and line break, quoted as one CSV cell.
    assert!(
        csv.contains(
            "\"ActiveCampaign refused Api-Token [redacted]: \"\"bad, really\"\"\nline two\""
        ),
        "{csv}"
    );
    app.stop().await;
}

#[tokio::test]
async fn requests_without_the_admin_token_are_refused() {
    let app = spawn_app().await;
    for path in [
        "/api/v1/failures",
        "/api/v1/failures.csv",
        "/api/v1/runs",
        "/api/v1/failures/1",
    ] {
        let url = format!("{}{path}", app.base);
        for request in [
            app.http.get(&url),
            app.http.get(&url).bearer_auth("wrong-token"),
            app.http
                .get(&url)
                .header("Authorization", app.secrets.admin_token.as_str()),
        ] {
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 401, "{path}");
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.expect("json");
            assert_eq!(body, json!({"error": "missing or invalid bearer token"}));
        }
    }
    let retry = app
        .http
        .post(format!("{}/api/v1/failures/retry", app.base))
        .send()
        .await
        .expect("post");
    assert_eq!(retry.status(), 401);
    // Health and metrics stay open to probes and scrapers.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .expect("ops");
        assert_eq!(response.status(), 200, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn without_an_admin_token_configured_the_api_is_closed() {
    let app = spawn_app_with(Options {
        admin_token: false,
        ..Options::default()
    })
    .await;
    let response = app.get("/api/v1/failures").send().await.expect("request");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": "errors.admin_token is not configured"})
    );
    app.stop().await;
}

/// Every message in the replay stream: (subject, payload, replay header present).
async fn replayed(app: &app::TestApp) -> Vec<(String, Value, bool)> {
    let stream = app
        .js
        .get_stream(app.topology.replay_stream())
        .await
        .expect("replay stream");
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: app.topology.replay_subjects(),
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .messages()
        .await
        .expect("fetch");
    let mut out = Vec::new();
    while let Some(message) = batch.next().await {
        let message = message.expect("message");
        let replay = message
            .headers
            .as_ref()
            .and_then(|h| h.get(billsync_bus::topology::HEADER_REPLAY))
            .is_some();
        let payload = serde_json::from_slice(&message.payload).expect("json payload");
        out.push((message.subject.to_string(), payload, replay));
    }
    out
}

#[tokio::test]
async fn retry_replays_to_the_failing_destination_only() {
    let app = spawn_app().await;
    let event = customer_event("cus_x", "ev_x_1", None, json!({"id": "cus_x"}));
    app.publish(&failed(AC, &event, at(1), "rejected", Value::Null))
        .await;
    app.publish(&failed(PD, &event, at(1), "rejected", Value::Null))
        .await;
    let ac = app
        .wait_failure("open", AC, "customer/cus_x", |_| true)
        .await;
    app.wait_failure("open", PD, "customer/cus_x", |_| true)
        .await;

    let answer = app
        .post_json(&format!("/api/v1/failures/{}/retry", ac["id"]), json!({}))
        .await;
    assert_eq!(answer, json!({"retried": 1}));
    let messages = replayed(&app).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (subject, payload, replay_header) = &messages[0];
    assert_eq!(subject, &app.topology.replay_subject(AC));
    assert_ne!(subject, &app.topology.replay_subject(PD));
    assert!(replay_header, "replays carry the replay header");
    assert_eq!(payload, &serde_json::to_value(&event).expect("json"));

    let row = app
        .get_json(&format!("/api/v1/failures/{}", ac["id"]))
        .await;
    assert_eq!(row["retry_count"], 1);
    assert!(!row["last_retry_at"].is_null());

    // A second retry is a new message (not deduplicated as the first one).
    app.post_json(&format!("/api/v1/failures/{}/retry", ac["id"]), json!({}))
        .await;
    let messages = replayed(&app).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages
        .iter()
        .all(|(subject, _, _)| subject == &app.topology.replay_subject(AC)));

    // Retrying by filter reaches the filtered destination only.
    let answer = app
        .post_json(
            "/api/v1/failures/retry",
            json!({"destination": "pipedrive"}),
        )
        .await;
    assert_eq!(answer["retried"], 1);
    let messages = replayed(&app).await;
    let to_pd: Vec<_> = messages
        .iter()
        .filter(|(s, _, _)| s == &app.topology.replay_subject(PD))
        .collect();
    assert_eq!((messages.len(), to_pd.len()), (3, 1), "{messages:?}");

    let missing = app
        .post("/api/v1/failures/999999/retry")
        .send()
        .await
        .expect("retry");
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn listing_filters_and_pages_newest_first() {
    let app = spawn_app().await;
    for step in 1..=5 {
        app.publish(&simple_failure(
            if step % 2 == 0 { PD } else { AC },
            &format!("cus_p{step}"),
            step,
        ))
        .await;
    }
    app.wait_failure("open", AC, "customer/cus_p5", |_| true)
        .await;
    app.wait_failure("open", PD, "customer/cus_p4", |_| true)
        .await;
    eventually("all five failures", || async {
        let list = app.get_json("/api/v1/failures").await;
        (list["items"].as_array()?.len() == 5).then_some(())
    })
    .await;

    let mut seen = Vec::new();
    let mut path = "/api/v1/failures?limit=2".to_string();
    loop {
        let page = app.get_json(&path).await;
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["record_key"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/failures?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let expected: Vec<Value> = (1..=5)
        .rev()
        .map(|s| json!(format!("customer/cus_p{s}")))
        .collect();
    assert_eq!(seen, expected);

    let pd = app.get_json("/api/v1/failures?destination=pipedrive").await;
    assert_eq!(pd["items"].as_array().map(Vec::len), Some(2));
    let by_connection = app
        .get_json(&format!("/api/v1/failures?connection={AC}"))
        .await;
    assert_eq!(by_connection["items"].as_array().map(Vec::len), Some(3));
    let q = app.get_json("/api/v1/failures?q=CUS_P3").await;
    assert_eq!(q["items"][0]["record_key"], "customer/cus_p3");
    let since = at(4).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let recent = app
        .get_json(&format!("/api/v1/failures?since={since}"))
        .await;
    assert_eq!(recent["items"].as_array().map(Vec::len), Some(2));
    let none = app.get_json("/api/v1/failures?class=configuration").await;
    assert_eq!(none["items"], json!([]));

    for bad in [
        "status=closed",
        "destination=hubspot",
        "limit=0",
        "cursor=zzz",
        "since=yesterday",
        "conection=x",
    ] {
        let response = app
            .get(&format!("/api/v1/failures?{bad}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.expect("json error");
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn run_outcomes_are_recorded_per_record() {
    let app = spawn_app().await;
    let run = "run_initial_1";
    let one = customer_event("cus_1", "snap_1", Some(run), json!({}));
    let two = customer_event("cus_2", "snap_2", Some(run), json!({}));
    let three = customer_event("cus_3", "snap_3", Some(run), json!({}));
    app.publish(&synced(AC, &one, at(1))).await;
    app.publish(&failed(
        AC,
        &two,
        at(2),
        &format!("bad token {}", app.secrets.ac_token),
        Value::Null,
    ))
    .await;
    app.publish(&skipped(AC, &three, at(3), "already applied"))
        .await;

    let summary = eventually("three records in the run", || async {
        let run = app.get(&format!("/api/v1/runs/{run}")).send().await.ok()?;
        let body: Value = run.json().await.ok()?;
        (body["total"] == 3).then_some(body)
    })
    .await;
    assert_eq!(
        (
            summary["synced"].clone(),
            summary["failed"].clone(),
            summary["skipped"].clone()
        ),
        (json!(1), json!(1), json!(1))
    );
    assert_eq!(summary["started_at"], json!(at(1)));
    let records = summary["records"].as_array().expect("records");
    let failed_record = records
        .iter()
        .find(|r| r["status"] == "failed")
        .expect("failed record");
    assert_eq!(failed_record["record_key"], "customer/cus_2");
    assert_eq!(failed_record["reason"], "bad token [redacted]");

    let runs = app.get_json("/api/v1/runs").await;
    assert_eq!(runs["items"][0]["run_id"], run);
    let only_failed = app
        .get_json(&format!("/api/v1/runs/{run}?status=failed"))
        .await;
    assert_eq!(only_failed["records"].as_array().map(Vec::len), Some(1));
    let missing = app.get("/api/v1/runs/nope").send().await.expect("request");
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn outcomes_wait_in_jetstream_until_postgres_is_there() {
    let mut app = spawn_app_with(Options {
        database_later: true,
        ..Options::default()
    })
    .await;
    app.publish(&simple_failure(PD, "cus_w", 1)).await;
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);
    let api = app.get("/api/v1/failures").send().await.expect("request");
    assert_eq!(api.status(), 503);
    let body: Value = api.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not ready")),
        "{body}"
    );

    app.db.create().await;
    // The service retries every few seconds.
    eventually_within(
        "the service to reach the new database",
        Duration::from_secs(20),
        || async {
            let ready = app
                .http
                .get(format!("{}/readyz", app.base))
                .send()
                .await
                .ok()?;
            (ready.status() == 200).then_some(())
        },
    )
    .await;
    app.wait_ready().await;
    app.wait_failure("open", PD, "customer/cus_w", |row| row["count"] == 1)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn an_outcome_that_cannot_be_stored_is_not_acked() {
    let app = spawn_app().await;
    // Make every write fail the way a broken database would, without stopping Postgres.
    sqlx::query("ALTER TABLE sync_failures RENAME TO sync_failures_away")
        .execute(app.pool())
        .await
        .expect("rename");
    let published = app.publish(&simple_failure(AC, "cus_down", 1)).await;
    let js = app.js.clone();
    let (stream, name) = (
        app.topology.outcomes_stream(),
        app.topology.errors_consumer(),
    );
    eventually("the consumer to try the outcome and hand it back", || {
        let js = js.clone();
        let (stream, name) = (stream.clone(), name.clone());
        async move {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                js.get_consumer_from_stream(name, stream).await.ok()?;
            let info = consumer.info().await.ok()?;
            let tried = info.delivered.stream_sequence >= published.sequence;
            let acked = info.ack_floor.stream_sequence >= published.sequence;
            assert!(
                !acked,
                "an outcome was acked although its row could not be stored"
            );
            tried.then_some(())
        }
    })
    .await;

    sqlx::query("ALTER TABLE sync_failures_away RENAME TO sync_failures")
        .execute(app.pool())
        .await
        .expect("rename back");
    // The NAK delay is 5 s; the redelivered outcome is stored then.
    eventually_within(
        "the redelivered outcome to be stored",
        Duration::from_secs(20),
        || async {
            let stored = sqlx::query_scalar::<_, i64>(
                "SELECT count FROM sync_failures WHERE record_key = 'customer/cus_down'",
            )
            .fetch_optional(app.pool())
            .await
            .ok()??;
            (stored == 1).then_some(())
        },
    )
    .await;
    app.wait_consumed(published.sequence).await;
    app.stop().await;
}

#[tokio::test]
async fn an_outcome_this_version_cannot_read_is_kept_not_dropped() {
    let app = spawn_app().await;
    // What a newer worker might publish during a rolling upgrade.
    let subject = app.topology.outcome_subject("ac-main", "failed");
    let ack = app
        .js
        .publish(
            subject,
            r#"{"schema":"outcome.v2","carries":"a sync error"}"#.into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
    let js = app.js.clone();
    let (stream, name) = (
        app.topology.outcomes_stream(),
        app.topology.errors_consumer(),
    );
    let info = || {
        let js = js.clone();
        let (stream, name) = (stream.clone(), name.clone());
        async move {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                js.get_consumer_from_stream(name, stream).await.ok()?;
            consumer.info().await.ok().cloned()
        }
    };
    eventually("the consumer to try the message", || async {
        let info = info().await?;
        (info.delivered.stream_sequence >= ack.sequence).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let info = info().await.expect("consumer info");
    assert!(
        info.ack_floor.stream_sequence < ack.sequence && info.num_ack_pending == 1,
        "the message was settled as done (acked or terminated): {info:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn failures_stored_before_rows_were_kept_per_deployment_are_taken_over() {
    let app = spawn_app().await;
    let published = app.publish(&simple_failure(PD, "cus_older", 1)).await;
    app.wait_consumed(published.sequence).await;
    // The row as an errors service before this version left it: no deployment.
    sqlx::query("UPDATE sync_failures SET deployment = ''")
        .execute(app.pool())
        .await
        .expect("unscope the row");
    let listed = app.get_json("/api/v1/failures").await;
    assert_eq!(listed["items"], json!([]), "{listed}");

    // What the errors service does at start, after its migrations.
    let (failures, runs) =
        billsync_errors::store::adopt_unscoped_rows(app.pool(), app.topology.prefix())
            .await
            .expect("adopt");
    assert_eq!((failures, runs), (1, 0));
    let listed = app.get_json("/api/v1/failures").await;
    assert_eq!(listed["items"][0]["record_key"], "customer/cus_older");
    // Taken once: another deployment starting later finds nothing left to take.
    let again = billsync_errors::store::adopt_unscoped_rows(app.pool(), "another")
        .await
        .expect("adopt");
    assert_eq!(again, (0, 0));
    app.stop().await;
}

/// Postgres refuses a NUL character in text (SQLSTATE 22021) on every redelivery: the
/// failure is stored with it replaced, never dropped.
#[tokio::test]
async fn a_failure_postgres_refuses_as_sent_is_stored_cleaned_not_dropped() {
    let app = spawn_app().await;
    let mut event = customer_event("cus_nul", "ev_cus_nul", None, json!({"id": "cus_nul"}));
    let billsync_events::BillingEvent::V1(v1) = &mut event;
    v1.event_type = "customer\u{0}changed".into();
    let published = app
        .publish(&failed(AC, &event, at(1), "refused", Value::Null))
        .await;
    let row = app
        .wait_failure("open", AC, "customer/cus_nul", |_| true)
        .await;
    assert_eq!(row["event_type"], "customer\u{FFFD}changed");
    assert_eq!(row["message"], "refused");
    app.wait_consumed(published.sequence).await;
    assert_eq!(app.stored_failures().await.len(), 1);
    app.stop().await;
}
