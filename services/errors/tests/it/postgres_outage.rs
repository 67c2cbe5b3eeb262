//! Losing Postgres for a while loses nothing: failures wait in JetStream until it is back.
//!
//! The test runs its own PostgreSQL (initdb and pg_ctl on a temporary directory and a free
//! port), so stopping it never touches the machine's shared cluster or other tests.

use crate::app::{eventually_within, simple_failure, spawn_app_with, Options, AC, PD};
use billsync_e2e::PrivatePostgres;
use std::time::{Duration, Instant};

/// How long Postgres stays down while failures keep arriving.
const OUTAGE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn failures_arriving_while_postgres_is_down_are_all_stored_once_it_returns() {
    let postgres = PrivatePostgres::start();
    let app = spawn_app_with(Options {
        postgres_server: Some(postgres.server_url()),
        ..Options::default()
    })
    .await;

    // Before the outage: two failures stored as usual.
    app.publish(&simple_failure(AC, "cus_before_a", 1)).await;
    app.publish(&simple_failure(PD, "cus_before_b", 2)).await;
    app.wait_failure("open", PD, "customer/cus_before_b", |_| true)
        .await;

    postgres.stop();
    let down_at = Instant::now();
    // Failures keep arriving for the whole outage: a new record every second, and a repeat
    // of one stored before (which must be counted, not lost).
    let mut published = Vec::new();
    let mut step = 10;
    while down_at.elapsed() < OUTAGE {
        let connection = if step % 2 == 0 { AC } else { PD };
        published.push(
            app.publish(&simple_failure(
                connection,
                &format!("cus_down_{step}"),
                step,
            ))
            .await,
        );
        if step == 20 {
            published.push(app.publish(&simple_failure(AC, "cus_before_a", step)).await);
        }
        step += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let arrived_during_outage = (step - 10) as usize;
    assert!(
        arrived_during_outage >= 25,
        "only {arrived_during_outage} failures were sent"
    );
    // Nothing was acked while the database was away.
    let ready = app
        .http
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503, "ready without Postgres");
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = app
        .js
        .get_consumer_from_stream(
            app.topology.errors_consumer(),
            app.topology.outcomes_stream(),
        )
        .await
        .expect("errors consumer");
    let info = consumer.info().await.expect("consumer info");
    assert!(
        info.ack_floor.stream_sequence < published[0].sequence,
        "an outcome was acked while Postgres was down: {info:?}"
    );

    postgres.resume();
    let last = published.last().expect("published").sequence;
    app.wait_consumed_within(last, Duration::from_secs(120))
        .await;

    let rows: Vec<(String, String, i64)> = eventually_within(
        "every failure in Postgres",
        Duration::from_secs(30),
        || async {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT destination_connection, record_key, count FROM sync_failures \
                 ORDER BY record_key",
            )
            .fetch_all(app.pool())
            .await
            .ok()?;
            (rows.len() == arrived_during_outage + 2).then_some(rows)
        },
    )
    .await;
    for offset in 0..arrived_during_outage {
        let step = 10 + offset;
        let connection = if step % 2 == 0 { AC } else { PD };
        let record = format!("customer/cus_down_{step}");
        assert!(
            rows.iter()
                .any(|(c, r, count)| c == connection && *r == record && *count == 1),
            "{record} at {connection} missing: {rows:?}"
        );
    }
    assert!(
        rows.iter()
            .any(|(c, r, count)| c == AC && r == "customer/cus_before_a" && *count == 2),
        "the repeat during the outage was not counted: {rows:?}"
    );
    app.stop().await;
}
