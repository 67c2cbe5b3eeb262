//! `/metrics`: the open-failures gauge follows failures as they open, resolve, are ignored
//! and are retried, and shows 0 (not its last value) once a connection has none open.

use crate::app::{at, customer_event, eventually, failed, spawn_app, synced, TestApp};
use serde_json::{json, Value};

/// The gauge's value for one destination connection, as `/metrics` shows it now; `None`
/// while it has no series.
async fn open_failures(app: &TestApp, destination: &str, connection: &str) -> Option<f64> {
    let text = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    gauge_value(&text, destination, connection)
}

fn gauge_value(text: &str, destination: &str, connection: &str) -> Option<f64> {
    let destination = format!("destination=\"{destination}\"");
    let connection = format!("destination_connection=\"{connection}\"");
    text.lines()
        .filter(|line| line.starts_with("billsync_errors_open_failures{"))
        .find(|line| line.contains(&destination) && line.contains(&connection))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn wait_open_failures(app: &TestApp, connection: &str, expected: f64) {
    eventually(
        &format!("billsync_errors_open_failures of {connection} to be {expected}"),
        || async move {
            let value = open_failures(app, "activecampaign", connection).await?;
            (value == expected).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn the_open_failures_gauge_goes_up_and_back_down_to_zero() {
    let app = spawn_app().await;
    // A connection name of its own: tests sharing a process share one metrics recorder.
    let connection = format!(
        "ac-gauge-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    assert_eq!(
        open_failures(&app, "activecampaign", &connection).await,
        None
    );

    let first = customer_event("cus_g1", "ev_g1", None, json!({"id": "cus_g1"}));
    let second = customer_event("cus_g2", "ev_g2", None, json!({"id": "cus_g2"}));
    app.publish(&failed(&connection, &first, at(1), "rejected", Value::Null))
        .await;
    wait_open_failures(&app, &connection, 1.0).await;
    app.publish(&failed(
        &connection,
        &second,
        at(2),
        "rejected",
        Value::Null,
    ))
    .await;
    wait_open_failures(&app, &connection, 2.0).await;

    // A later success resolves the first.
    app.publish(&synced(&connection, &first, at(3))).await;
    wait_open_failures(&app, &connection, 1.0).await;

    // Ignoring the second leaves none open: the series stays, at 0.
    let row = app
        .wait_failure("open", &connection, "customer/cus_g2", |_| true)
        .await;
    app.post_json(&format!("/api/v1/failures/{}/ignore", row["id"]), json!({}))
        .await;
    wait_open_failures(&app, &connection, 0.0).await;

    // Retrying the ignored failure opens it again.
    app.post_json(&format!("/api/v1/failures/{}/retry", row["id"]), json!({}))
        .await;
    wait_open_failures(&app, &connection, 1.0).await;

    // The admin API's summary counts the same.
    let summary = app.get_json("/api/v1/failures/summary").await;
    assert_eq!(
        summary,
        json!({"items": [{
            "destination": "activecampaign",
            "destination_connection": connection,
            "open": 1,
        }]})
    );
    app.stop().await;
}

#[test]
fn gauge_lines_are_found_by_their_labels() {
    let text = "# TYPE billsync_errors_open_failures gauge\n\
        billsync_errors_open_failures{destination=\"pipedrive\",destination_connection=\"pd\"} 3\n\
        billsync_errors_open_failures{destination=\"activecampaign\",destination_connection=\"ac\"} 0\n";
    assert_eq!(gauge_value(text, "pipedrive", "pd"), Some(3.0));
    assert_eq!(gauge_value(text, "activecampaign", "ac"), Some(0.0));
    assert_eq!(gauge_value(text, "activecampaign", "a"), None);
}
