//! What the operator tests share: the admin API of a stack, the sandbox CRM as an operator
//! would change it, and reading streams.

use async_nats::jetstream::consumer::pull;
use billsync_e2e::{eventually, Stack};
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(30);

pub async fn api_get(stack: &Stack, path: &str) -> Value {
    let response = stack
        .http
        .get(format!("{}{path}", stack.errors_url))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("admin API request");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

pub async fn api_post(stack: &Stack, path: &str, body: Value) -> Value {
    let response = stack
        .http
        .post(format!("{}{path}", stack.errors_url))
        .bearer_auth(&stack.admin_token)
        .json(&body)
        .send()
        .await
        .expect("admin API request");
    let status = response.status();
    let body: Value = response.json().await.expect("JSON answer");
    assert_eq!(status, 200, "POST {path}: {body}");
    body
}

/// Waits for the failure of `record_key` at `destination_connection` with status `status`.
pub async fn wait_failure(
    stack: &Stack,
    status: &str,
    destination_connection: &str,
    record_key: &str,
) -> Value {
    eventually(
        &format!("a {status} failure of {record_key} at {destination_connection}"),
        WAIT,
        || async {
            let list = stack
                .http
                .get(format!(
                    "{}/api/v1/failures?status={status}&limit=500",
                    stack.errors_url
                ))
                .bearer_auth(&stack.admin_token)
                .send()
                .await
                .ok()?
                .json::<Value>()
                .await
                .ok()?;
            list["items"]
                .as_array()?
                .iter()
                .find(|row| {
                    row["destination_connection"] == destination_connection
                        && row["record_key"] == record_key
                })
                .cloned()
        },
    )
    .await
}

/// The operator ignores `failure` through the admin API; the failure as it is then.
pub async fn ignore_failure(stack: &Stack, failure: &Value) -> Value {
    api_post(
        stack,
        &format!("/api/v1/failures/{}/ignore", failure["id"]),
        json!({}),
    )
    .await
}

/// Deletes the contact with `email` from the sandbox account of destination `connection`,
/// through ActiveCampaign's API, as someone working in the CRM would.
pub async fn delete_ac_contact(stack: &Stack, connection: &str, email: &str) {
    let (account, token) = stack.ac_account_of(connection);
    let snapshot = stack.sandbox.activecampaign.snapshot(&account);
    let contact = snapshot
        .contact_by_email(email)
        .unwrap_or_else(|| panic!("no contact {email} in {account}"));
    let response = stack
        .http
        .delete(format!(
            "{}/api/3/contacts/{}",
            stack.sandbox.activecampaign_base_url(&account),
            contact.id
        ))
        .header("Api-Token", token)
        .send()
        .await
        .expect("delete contact");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
    assert!(stack
        .sandbox
        .activecampaign
        .snapshot(&account)
        .contact_by_email(email)
        .is_none());
}

/// Every message of `stream` on subjects matching `filter`: (subject, payload as JSON).
pub async fn stream_messages(stack: &Stack, stream: &str, filter: &str) -> Vec<(String, Value)> {
    let js = stack.jetstream();
    let Ok(stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let consumer = stream
        .create_consumer(pull::Config {
            filter_subject: filter.to_string(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let pending = consumer.cached_info().num_pending as usize;
    let mut out = Vec::new();
    if pending == 0 {
        return out;
    }
    let mut batch = consumer
        .fetch()
        .max_messages(pending)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    while let Some(message) = batch.next().await {
        let message = message.expect("message");
        let payload = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        out.push((message.subject.to_string(), payload));
    }
    out
}

/// Outcomes the workers published for the event with id `event_id`.
pub async fn outcomes_of(stack: &Stack, event_id: &str) -> Vec<Value> {
    let topology = stack.topology();
    stream_messages(
        stack,
        &topology.outcomes_stream(),
        &topology.outcomes_subjects(),
    )
    .await
    .into_iter()
    .map(|(_, outcome)| outcome)
    .filter(|outcome| outcome["event_id"] == event_id)
    .collect()
}

/// The time (RFC 3339, as the server keeps it) stream `stream` stored message `sequence`.
pub async fn stored_at(stack: &Stack, stream: &str, sequence: u64) -> String {
    let answer = stack
        .nats
        .request(
            format!("$JS.API.STREAM.MSG.GET.{stream}"),
            json!({ "seq": sequence }).to_string().into(),
        )
        .await
        .expect("message get");
    let body: Value = serde_json::from_slice(&answer.payload).expect("JSON answer");
    body["message"]["time"]
        .as_str()
        .unwrap_or_else(|| panic!("no message {sequence} in {stream}: {body}"))
        .to_string()
}

/// A Stripe event of `event_type` about `object`, created `created` (Unix seconds).
pub fn stripe_event(event_type: &str, object: &Value, created: i64) -> Value {
    let mut event = billsync_sandbox::stripe::event(event_type, object.clone());
    event["created"] = json!(created);
    event
}

/// Posts `event` to the stack's webhook and expects it taken.
pub async fn send(stack: &Stack, event: &Value) {
    let response = stack.send_stripe(event).await;
    let status = response.status();
    assert_eq!(status, 200, "{:?}", response.text().await);
}

/// A new Stripe customer that the stack's ActiveCampaign account refuses (`reject_emails`),
/// so that it becomes a sync error at `ac-test`.
pub async fn send_refused_customer(stack: &Stack, customer: &str, email: &str, name: &str) {
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        billsync_sandbox::AcFaults {
            reject_emails: vec![email.into()],
            ..Default::default()
        },
    );
    send(
        stack,
        &billsync_sandbox::stripe::customer_created_event(customer, email, name),
    )
    .await;
}

/// The admin API's CSV of the open failures.
pub async fn api_csv(stack: &Stack) -> String {
    stack
        .http
        .get(format!("{}/api/v1/failures.csv", stack.errors_url))
        .bearer_auth(&stack.admin_token)
        .send()
        .await
        .expect("CSV")
        .text()
        .await
        .expect("CSV text")
}
