//! Stripe → ActiveCampaign tracked events end to end (seed 001's "Stripe event received"
//! automation trigger): with `track_events = true` every Stripe event, from the signed
//! webhook through ingest, JetStream and the worker, becomes exactly one AC tracked event on
//! the contact's email, named as configured and valued with the Stripe event type, in source
//! order; duplicates, a late retry and a replay of the whole stream track nothing again;
//! without `track_events` nothing is tracked; an Event Key AC refuses (with the actid it
//! goes with) becomes one sync failure that says what to fix, is not retried and leaks no
//! key; and event tracking switched off in AC fails the same way until it is switched on and
//! the failure retried, which then tracks the event once.
//!
//! The harness configures `ac-test` with the sandbox account's own Event Key; the sync's
//! `track_url` and `track_actid` are the account's too, through the `{ac_track_url}` and
//! `{ac_track_actid}` placeholders of `extra_config`. The sandbox counts the tracking
//! requests it serves, so the tests can tell that a refusal is not retried.

use crate::operator_api::{api_post, outcomes_of, wait_failure};
use billsync_e2e::workload::Clock;
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{stripe, AcSnapshot};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const EMAIL: &str = "tara.tracked@example.com";
/// Not AC's default name, so the test proves `track_event_name` is used.
const EVENT_NAME: &str = "Stripe event (billsync e2e)";

fn charge(id: &str, customer: &str, amount: i64) -> Value {
    json!({
        "id": id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": 0,
        "balance_transaction": format!("txn_{id}"),
        "billing_details": {
            "address": {"city": null, "country": null, "line1": null, "line2": null,
                "postal_code": null, "state": null},
            "email": EMAIL,
            "name": "Tara Tracked",
            "phone": null
        },
        "captured": true,
        "created": 1_712_750_400,
        "currency": "usd",
        "customer": customer,
        "description": "Lifetime licence",
        "disputed": false,
        "invoice": null,
        "livemode": false,
        "metadata": {},
        "paid": true,
        "payment_intent": format!("pi_{id}"),
        "receipt_email": EMAIL,
        "refunded": false,
        "status": "succeeded"
    })
}

fn subscription(id: &str, customer: &str) -> Value {
    json!({
        "id": id,
        "object": "subscription",
        "created": 1_712_750_400,
        "currency": "usd",
        "customer": customer,
        "items": {
            "object": "list",
            "data": [{
                "id": format!("si_{id}"),
                "object": "subscription_item",
                "price": {"id": "price_team", "object": "price", "unit_amount": 2900,
                    "nickname": "Team", "product": "prod_team",
                    "recurring": {"interval": "month", "interval_count": 1}},
                "quantity": 1,
                "subscription": id
            }],
            "has_more": false
        },
        "livemode": false,
        "status": "active"
    })
}

/// customer.created, then a payment and a subscription of that customer.
fn customer_payment_and_subscription(clock: &mut Clock) -> [Value; 3] {
    [
        clock.event(
            "customer.created",
            stripe::customer("cus_TRK1", EMAIL, "Tara Tracked"),
        ),
        clock.event("charge.succeeded", charge("ch_TRK1", "cus_TRK1", 4900)),
        clock.event(
            "customer.subscription.created",
            subscription("sub_TRK1", "cus_TRK1"),
        ),
    ]
}

/// Which event tracking actid the sync is configured with.
enum Actid {
    /// The sandbox account's own: trackcmp accepts the account's Event Key with it.
    Account,
    /// Another one: trackcmp refuses the actid and key (it checks them together).
    Wrong,
}

struct TrackingStack {
    stack: Stack,
    /// The Event Key billsync is configured with (the sandbox account's own).
    event_key: String,
}

impl TrackingStack {
    /// A stack whose Stripe → `ac-test` sync has every tracking option, with
    /// `track_events = {track_events}` (absent when `None`), the sandbox account's tracking
    /// URL and the actid `actid` says.
    async fn start(track_events: Option<bool>, actid: Actid) -> Self {
        let switch = match track_events {
            Some(on) => format!("track_events = {on}\n"),
            None => String::new(),
        };
        // Still all digits, as billsync requires, but ten of them: no account's (nine-digit)
        // actid.
        let actid = match actid {
            Actid::Account => "{ac_track_actid}",
            Actid::Wrong => "{ac_track_actid}0",
        };
        // `[syncs.options]` belongs to the Stack's last `[[syncs]]` (stripe-test → ac-test).
        let extra_config = format!(
            "[syncs.options]\n{switch}track_actid = \"{actid}\"\n\
             track_url = \"{{ac_track_url}}\"\ntrack_event_name = \"{EVENT_NAME}\"\n"
        );
        let stack = Stack::start(StackOptions {
            extra_config,
            ..StackOptions::default()
        })
        .await;
        let event_key = stack
            .config
            .destinations
            .activecampaign
            .iter()
            .find(|c| c.name == "ac-test")
            .and_then(|c| c.event_key.as_ref())
            .map(|key| key.expose().to_string())
            .expect("the stack configures ac-test's event key");
        Self { stack, event_key }
    }

    /// Tracking requests the worker made (accepted or refused).
    fn tracking_requests(&self) -> u64 {
        self.stack
            .sandbox
            .activecampaign
            .tracking_request_count(&self.stack.ac_account)
    }

    async fn stop(self) {
        self.stack.stop().await;
    }
}

async fn send(stack: &Stack, event: &Value) {
    let response = stack.send_stripe(event).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

/// The account's state once `done` holds and the worker has settled everything.
async fn settled(stack: &Stack, what: &str, done: impl Fn(&AcSnapshot) -> bool) -> AcSnapshot {
    eventually(what, WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        (done(&snapshot) && stack.worker_idle_for("ac-test").await).then_some(snapshot)
    })
    .await
}

/// `(event name, value, contact)` of each event tracked for `email`, oldest first.
fn tracked(snapshot: &AcSnapshot, email: &str) -> Vec<(String, Option<String>, Option<String>)> {
    snapshot
        .tracked_events_of(email)
        .into_iter()
        .map(|t| (t.event.clone(), t.eventdata.clone(), t.contact.clone()))
        .collect()
}

fn sorted_tags(snapshot: &AcSnapshot, email: &str) -> Vec<String> {
    let contact = snapshot
        .contact_by_email(email)
        .unwrap_or_else(|| panic!("no contact {email}: {:?}", snapshot.contacts));
    let mut tags = snapshot.tags_of(&contact.id);
    tags.sort();
    tags
}

const ALL_TAGS: [&str; 5] = [
    "stripe-integration",
    "stripe-integration-Billing_Subscription_Events",
    "stripe-integration-charge.succeeded",
    "stripe-integration-customer.created",
    "stripe-integration-customer.subscription.created",
];

/// The status of each outcome of `event_id`, oldest first.
async fn outcome_statuses(stack: &Stack, event_id: &str) -> Vec<String> {
    outcomes_of(stack, event_id)
        .await
        .iter()
        .map(|o| {
            o["result"]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_stripe_event_becomes_one_tracked_event_in_order() {
    let tracking = TrackingStack::start(Some(true), Actid::Account).await;
    let stack = &tracking.stack;
    let events = customer_payment_and_subscription(&mut Clock::new());
    // Back to back: one customer's events take effect in source order.
    for event in &events {
        send(stack, event).await;
    }
    let snapshot = settled(stack, "three tracked events and all tags", |s| {
        s.tracked_events.len() >= 3
            && s.contact_by_email(EMAIL)
                .is_some_and(|c| s.tags_of(&c.id).len() == ALL_TAGS.len())
    })
    .await;

    assert_eq!(snapshot.contacts.len(), 1, "{:?}", snapshot.contacts);
    let contact = snapshot.contact_by_email(EMAIL).expect("contact");
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("Tara", "Tracked")
    );
    assert_eq!(sorted_tags(&snapshot, EMAIL), ALL_TAGS);
    let on_contact = |event_type: &str| {
        (
            EVENT_NAME.to_string(),
            Some(event_type.to_string()),
            Some(contact.id.clone()),
        )
    };
    assert_eq!(
        tracked(&snapshot, EMAIL),
        vec![
            on_contact("customer.created"),
            on_contact("charge.succeeded"),
            on_contact("customer.subscription.created"),
        ]
    );
    assert_eq!(
        snapshot.tracked_events.len(),
        3,
        "tracked events of other emails: {:?}",
        snapshot.tracked_events
    );
    assert_eq!(
        tracking.tracking_requests(),
        3,
        "one tracking request per event"
    );
    for event in &events {
        let id = event["id"].as_str().expect("event id");
        assert_eq!(outcome_statuses(stack, id).await, ["synced"], "{id}");
    }
    tracking.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_late_retries_and_replays_track_nothing_again() {
    let tracking = TrackingStack::start(Some(true), Actid::Account).await;
    let stack = &tracking.stack;
    let events = customer_payment_and_subscription(&mut Clock::new());
    for event in &events {
        send(stack, event).await;
    }
    let first = settled(stack, "three tracked events", |s| {
        s.tracked_events.len() >= 3
    })
    .await;
    assert_eq!(first.tracked_events.len(), 3, "{:?}", first.tracked_events);

    // The same webhook twice: ingest answers that JetStream dropped the copy.
    let again = stack.send_stripe(&events[1]).await;
    assert_eq!(again.status(), 200);
    let body: Value = again.json().await.expect("json");
    assert_eq!(body["duplicate"], true, "{body}");
    assert_eq!(stack.events_in_stream().await, 3);

    // A late Stripe retry past JetStream's duplicate window: the same event under another
    // message id; the worker's version check skips it.
    let charge_id = events[1]["id"].as_str().expect("event id");
    let charge_message = stack
        .jetstream()
        .get_stream(stack.topology().events_stream())
        .await
        .expect("stream")
        .get_raw_message(2)
        .await
        .expect("the charge's message");
    let stored: Value = serde_json::from_slice(&charge_message.payload).expect("event JSON");
    assert_eq!(stored["id"], charge_id, "{stored}");
    billsync_bus::Publisher::new(stack.jetstream(), stack.topology(), WAIT)
        .publish(
            charge_message.subject.to_string(),
            "late-retry-ch_TRK1",
            charge_message.payload,
            Default::default(),
        )
        .await
        .expect("republish");
    // A live stale event is skipped, with an outcome saying so: every event of the stream
    // is accounted for.
    settled(stack, "the late retry settled", |_| true).await;
    eventually("the late retry's outcome", WAIT, || async {
        (outcome_statuses(stack, charge_id).await.len() == 2).then_some(())
    })
    .await;
    assert_eq!(
        outcome_statuses(stack, charge_id).await,
        ["synced", "skipped"]
    );

    // A replay of the whole stream: the worker applies every event again (no version
    // check), but AC cannot take a tracked event back, so none is tracked twice.
    assert_eq!(stack.replay_whole_stream("ac-test").await, 4);
    for event in &events {
        let id = event["id"].as_str().expect("event id");
        let expected: &[&str] = if id == charge_id {
            // The original and the late retry's skip, then the replays of both messages.
            &["synced", "skipped", "synced", "synced"]
        } else {
            &["synced", "synced"]
        };
        let statuses = eventually(&format!("the replay of {id}"), WAIT, || async {
            let statuses = outcome_statuses(stack, id).await;
            (statuses.len() >= expected.len()).then_some(statuses)
        })
        .await;
        assert_eq!(statuses, expected, "outcomes of {id}");
    }
    let snapshot = settled(stack, "the replays settled", |_| true).await;
    let contact = snapshot.contact_by_email(EMAIL).expect("contact");
    assert_eq!(
        tracked(&snapshot, EMAIL)
            .into_iter()
            .map(|(name, value, _)| (name, value.unwrap_or_default()))
            .collect::<Vec<_>>(),
        [
            "customer.created",
            "charge.succeeded",
            "customer.subscription.created"
        ]
        .map(|t| (EVENT_NAME.to_string(), t.to_string())),
        "tracked again by a duplicate or a replay"
    );
    assert_eq!(snapshot.tracked_events.len(), 3);
    assert_eq!(
        tracking.tracking_requests(),
        3,
        "a tracking request was made for an event already tracked"
    );
    assert_eq!(snapshot.contacts.len(), 1);
    assert_eq!(sorted_tags(&snapshot, EMAIL), ALL_TAGS);
    assert_eq!(snapshot.contact_tags.len(), ALL_TAGS.len(), "{contact:?}");
    tracking.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_track_events_nothing_is_tracked() {
    // Every other tracking option is set, so only the switch (off by default) holds it back.
    let tracking = TrackingStack::start(None, Actid::Account).await;
    let stack = &tracking.stack;
    let events = customer_payment_and_subscription(&mut Clock::new());
    for event in &events {
        send(stack, event).await;
    }
    let snapshot = settled(stack, "the contact with all tags", |s| {
        s.contact_by_email(EMAIL)
            .is_some_and(|c| s.tags_of(&c.id).len() == ALL_TAGS.len())
    })
    .await;
    for event in &events {
        let id = event["id"].as_str().expect("event id");
        assert_eq!(outcome_statuses(stack, id).await, ["synced"], "{id}");
    }
    assert_eq!(sorted_tags(&snapshot, EMAIL), ALL_TAGS);
    assert_eq!(snapshot.tracked_events, [], "tracking is off by default");
    assert_eq!(
        tracking.tracking_requests(),
        0,
        "no tracking request when off"
    );
    tracking.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_key_is_one_failure_that_says_what_to_fix() {
    // trackcmp checks the actid and the key together: with another account's actid it
    // refuses billsync's key, as it refuses a wrong key.
    let tracking = TrackingStack::start(Some(true), Actid::Wrong).await;
    let stack = &tracking.stack;
    let created = Clock::new().event(
        "customer.created",
        stripe::customer("cus_TRK1", EMAIL, "Tara Tracked"),
    );
    send(stack, &created).await;
    let event_id = created["id"].as_str().expect("event id");

    let failure = wait_failure(stack, "open", "ac-test", "customer/cus_TRK1").await;
    let outcomes = eventually("the failed outcome", WAIT, || async {
        let outcomes = outcomes_of(stack, event_id).await;
        (!outcomes.is_empty()).then_some(outcomes)
    })
    .await;
    eventually("the worker to settle", WAIT, || async {
        stack.worker_idle_for("ac-test").await.then_some(())
    })
    .await;
    assert_eq!(outcomes.len(), 1, "{outcomes:#?}");
    let result = &outcomes[0]["result"];
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["class"], "configuration", "{result}");
    assert_eq!(
        result["attempts"], 1,
        "a refusal is not worth retrying: {result}"
    );

    let pool = sqlx::PgPool::connect(&stack.db.url)
        .await
        .expect("connect test database");
    let rows: Vec<(String, String, String, Option<i32>, Value, i64)> = sqlx::query_as(
        "SELECT record_key, error_class, message, http_status, vendor_detail, count \
         FROM sync_failures",
    )
    .fetch_all(&pool)
    .await
    .expect("failure rows");
    pool.close().await;
    assert_eq!(rows.len(), 1, "{rows:#?}");
    let (record_key, class, message, http_status, detail, count) = &rows[0];
    assert_eq!(record_key, "customer/cus_TRK1");
    assert_eq!(class, "configuration");
    assert_eq!(*count, 1);
    assert_eq!(*http_status, Some(200), "trackcmp refuses with a 200");
    assert_eq!(detail["success"], 0, "{detail}");
    for says in [
        EVENT_NAME,
        "Invalid actid or key",
        "actid and key",
        "Settings > Tracking > Event Tracking",
        "syncs[0].options.track_actid",
        "destinations.activecampaign[0].event_key",
    ] {
        assert!(message.contains(says), "{says:?} missing from: {message}");
    }
    assert_eq!(failure["message"], message.as_str());
    let row_text = format!("{failure} {detail} {message}");
    assert!(
        !row_text.contains(&tracking.event_key),
        "the event key leaked into the failure: {row_text}"
    );
    assert_eq!(
        tracking.tracking_requests(),
        1,
        "a refused key must not be retried"
    );

    // The contact was written before tracking was refused; nothing was tracked.
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert!(snapshot.contact_by_email(EMAIL).is_some());
    assert_eq!(snapshot.tracked_events, []);
    tracking.stop().await;
}

/// Turns event tracking (Settings > Tracking > Event Tracking) on or off in the account,
/// through AC's v3 API, as its owner would.
async fn switch_event_tracking(stack: &Stack, enabled: bool) {
    let response = stack
        .http
        .put(format!(
            "{}/api/3/eventTracking",
            stack.sandbox.activecampaign_base_url(&stack.ac_account)
        ))
        .header("Api-Token", &stack.ac_token)
        .json(&json!({"eventTracking": {"enabled": enabled}}))
        .send()
        .await
        .expect("PUT /eventTracking");
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_switched_off_fails_and_a_retry_after_switching_it_on_tracks_once() {
    let tracking = TrackingStack::start(Some(true), Actid::Account).await;
    let stack = &tracking.stack;
    switch_event_tracking(stack, false).await;
    let mut clock = Clock::new();
    let created = clock.event(
        "customer.created",
        stripe::customer("cus_TRK1", EMAIL, "Tara Tracked"),
    );
    send(stack, &created).await;
    let failure = wait_failure(stack, "open", "ac-test", "customer/cus_TRK1").await;
    assert_eq!(failure["error_class"], "configuration", "{failure}");
    let message = failure["message"].as_str().unwrap_or_default();
    for says in ["Event tracking is disabled", "event tracking is on"] {
        assert!(message.contains(says), "{says:?} missing from: {message}");
    }
    settled(stack, "the failure settled", |_| true).await;
    assert_eq!(
        tracking.tracking_requests(),
        1,
        "a refusal must not be retried"
    );

    // The owner switches event tracking on; the operator retries the failure: the event is
    // tracked once, and a failed tracking request was not remembered as done.
    switch_event_tracking(stack, true).await;
    let retried = api_post(
        stack,
        &format!("/api/v1/failures/{}/retry", failure["id"]),
        json!({}),
    )
    .await;
    assert_eq!(retried, json!({"retried": 1}));
    let resolved = wait_failure(stack, "resolved", "ac-test", "customer/cus_TRK1").await;
    assert_eq!(resolved["id"], failure["id"]);
    let snapshot = settled(stack, "the retried event tracked", |s| {
        !s.tracked_events.is_empty()
    })
    .await;
    let contact = snapshot.contact_by_email(EMAIL).expect("contact");
    let customer_created = (
        EVENT_NAME.to_string(),
        Some("customer.created".to_string()),
        Some(contact.id.clone()),
    );
    assert_eq!(
        tracked(&snapshot, EMAIL),
        std::slice::from_ref(&customer_created)
    );
    assert_eq!(tracking.tracking_requests(), 2);

    // The next event tracks as usual, and nothing before it again.
    send(
        stack,
        &clock.event("charge.succeeded", charge("ch_TRK1", "cus_TRK1", 4900)),
    )
    .await;
    let snapshot = settled(stack, "the payment tracked", |s| {
        s.tracked_events.len() >= 2
    })
    .await;
    assert_eq!(
        tracked(&snapshot, EMAIL),
        [
            customer_created,
            (
                EVENT_NAME.to_string(),
                Some("charge.succeeded".to_string()),
                Some(contact.id.clone())
            )
        ]
    );
    assert_eq!(snapshot.contacts.len(), 1);
    tracking.stop().await;
}
