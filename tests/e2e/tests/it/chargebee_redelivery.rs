//! Chargebee → ActiveCampaign under redelivery and replay (seed 000, "at-least-once in,
//! exactly-once effect"): after a realistic Chargebee story (four customers, subscriptions
//! started, activated, upgraded and cancelled, a rename, a company change, a customer
//! deleted), delivering every event of the stream a second time and then replaying the whole
//! stream leaves the emulated ActiveCampaign account as it was: the same contacts with the
//! same ids, the same custom field values, no second `Cb_*` field, the same tags and list
//! memberships, and no deleted contact brought back. Each delete behaviour (keep, unsubscribe
//! from the list, delete) is proved on its own stack.

use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{AcSnapshot, CbCustomerInput, CbSubscriptionInput};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

const ADA: &str = "ada@example.com";
const GRACE: &str = "grace@example.com";
const LINUS: &str = "linus@example.com";
const MARGARET: &str = "margaret@example.com";

/// The list a listed sync subscribes contacts to: a fresh account's first list.
const LIST: &str = "1";

/// The sync's `on_customer_deleted`, and what Margaret's contact looks like after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deletion {
    /// The default: the contact stays, `Cb_chargebeeCustomerStatus` says deleted.
    Keep,
    /// As `Keep`, and the contact is unsubscribed from the sync's list.
    Unsubscribe,
    /// The contact is deleted from ActiveCampaign.
    Delete,
}

impl Deletion {
    /// The `[syncs.options]` of this variant; every variant but the default uses a list.
    fn sync_lines(self) -> &'static str {
        match self {
            Deletion::Keep => "",
            Deletion::Unsubscribe => {
                "[syncs.options]\nlist_id = 1\non_customer_deleted = \"unsubscribe\""
            }
            Deletion::Delete => "[syncs.options]\nlist_id = 1\non_customer_deleted = \"delete\"",
        }
    }

    fn listed(self) -> bool {
        self != Deletion::Keep
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_twice_and_a_replay_change_nothing_when_deleted_customers_are_kept() {
    let stack = start(Deletion::Keep).await;
    play_the_story(&stack, Deletion::Keep).await;
    redelivery_and_replay_change_nothing(&stack, Deletion::Keep).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_twice_and_a_replay_keep_list_memberships_and_the_unsubscription() {
    let stack = start(Deletion::Unsubscribe).await;
    play_the_story(&stack, Deletion::Unsubscribe).await;
    redelivery_and_replay_change_nothing(&stack, Deletion::Unsubscribe).await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_twice_and_a_replay_do_not_bring_back_a_deleted_contact() {
    let stack = start(Deletion::Delete).await;
    play_the_story(&stack, Deletion::Delete).await;
    redelivery_and_replay_change_nothing(&stack, Deletion::Delete).await;
    stack.stop().await;
}

/// A stack polling an emulated Chargebee site into `ac-test`, with the list created as a
/// user does in ActiveCampaign before the first customer arrives.
async fn start(deletion: Deletion) -> Stack {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(deletion.sync_lines().to_string()),
        ..Default::default()
    })
    .await;
    if deletion.listed() {
        let list = stack.create_ac_list("customers").await;
        assert_eq!(list, LIST, "a fresh account's first list has id 1");
    }
    stack
}

/// Four customers' lives in Chargebee, polled, published and applied: when this returns,
/// every Chargebee event is in the stream and the worker has settled all of them.
async fn play_the_story(stack: &Stack, deletion: Deletion) {
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    let day = 86_400;
    let t0 = 1_700_000_000;

    // Ada starts a trial, which converts.
    cb.create_customer(
        site,
        customer("cb_ada", ADA, "Ada", "Lovelace", "Analytical Engines"),
    )
    .expect("Ada");
    cb.create_subscription(
        site,
        "cb_ada",
        CbSubscriptionInput {
            id: Some("sub_ada".into()),
            plan_id: Some("pro-monthly".into()),
            plan_unit_price: Some(4_900),
            status: Some("in_trial".into()),
            currency_code: Some("EUR".into()),
            trial_start: Some(t0),
            trial_end: Some(t0 + 14 * day),
            ..Default::default()
        },
    )
    .expect("Ada's trial");

    // Grace has a basic plan, takes a team plan beside it, drops the basic one, marries and
    // changes company.
    cb.create_customer(
        site,
        customer("cb_grace", GRACE, "Grace", "Hopper", "Eckert-Mauchly"),
    )
    .expect("Grace");
    cb.create_subscription(
        site,
        "cb_grace",
        CbSubscriptionInput {
            id: Some("sub_grace_basic".into()),
            plan_id: Some("basic-monthly".into()),
            plan_unit_price: Some(1_500),
            status: Some("active".into()),
            currency_code: Some("USD".into()),
            mrr: Some(1_500),
            ..Default::default()
        },
    )
    .expect("Grace's basic plan");

    // Linus subscribes, then cancels.
    cb.create_customer(
        site,
        customer("cb_linus", LINUS, "Linus", "Torvalds", "Transmeta"),
    )
    .expect("Linus");
    cb.create_subscription(
        site,
        "cb_linus",
        CbSubscriptionInput {
            id: Some("sub_linus".into()),
            plan_id: Some("pro-monthly".into()),
            plan_unit_price: Some(4_900),
            status: Some("active".into()),
            currency_code: Some("EUR".into()),
            mrr: Some(4_900),
            ..Default::default()
        },
    )
    .expect("Linus's plan");

    // Margaret subscribes, changes company, and later leaves Chargebee altogether.
    cb.create_customer(
        site,
        customer(
            "cb_margaret",
            MARGARET,
            "Margaret",
            "Hamilton",
            "MIT Instrumentation Lab",
        ),
    )
    .expect("Margaret");
    cb.create_subscription(
        site,
        "cb_margaret",
        CbSubscriptionInput {
            id: Some("sub_margaret".into()),
            plan_id: Some("team-yearly".into()),
            plan_unit_price: Some(99_000),
            status: Some("active".into()),
            currency_code: Some("USD".into()),
            mrr: Some(8_250),
            ..Default::default()
        },
    )
    .expect("Margaret's plan");

    // The changes come while the first events are being applied, as they do in real life.
    cb.update_subscription(
        site,
        "sub_ada",
        CbSubscriptionInput {
            status: Some("active".into()),
            next_billing_at: Some(t0 + 44 * day),
            ..Default::default()
        },
    )
    .expect("Ada's trial converts");
    cb.create_subscription(
        site,
        "cb_grace",
        CbSubscriptionInput {
            id: Some("sub_grace_team".into()),
            plan_id: Some("team-yearly".into()),
            plan_unit_price: Some(99_000),
            status: Some("active".into()),
            currency_code: Some("USD".into()),
            mrr: Some(8_250),
            ..Default::default()
        },
    )
    .expect("Grace's team plan");
    cb.cancel_subscription(site, "sub_grace_basic", Some("Upgraded to team"))
        .expect("Grace drops the basic plan");
    cb.update_customer(
        site,
        "cb_grace",
        CbCustomerInput {
            last_name: Some("Murray Hopper".into()),
            company: Some("Remington Rand".into()),
            ..Default::default()
        },
    )
    .expect("Grace's new name and company");
    cb.cancel_subscription(site, "sub_linus", Some("Too expensive"))
        .expect("Linus cancels");
    cb.update_customer(
        site,
        "cb_margaret",
        CbCustomerInput {
            company: Some("Hamilton Technologies".into()),
            ..Default::default()
        },
    )
    .expect("Margaret's new company");

    // Margaret's contact exists with her new company before she is deleted, so deleting it
    // is a real change in ActiveCampaign.
    snapshot_when(stack, "Margaret's contact with her new company", |s| {
        s.contact_by_email(MARGARET).is_some_and(|c| {
            s.field_value(&c.id, "Cb_orgName").as_deref() == Some("Hamilton Technologies")
        })
    })
    .await;
    cb.delete_customer(site, "cb_margaret")
        .expect("Margaret is deleted");

    let published = cb.events(site).len() as u64;
    eventually(
        "every Chargebee event in the stream and applied",
        WAIT,
        || async {
            (stack.events_in_stream().await == published && stack.worker_idle_for("ac-test").await)
                .then_some(())
        },
    )
    .await;
    let snapshot = snapshot_when(stack, "the story's final state", |s| {
        story_applied(s, deletion)
    })
    .await;

    // Someone in the marketing team tags Grace by hand: a record billsync does not own, which
    // nothing billsync replays may disturb.
    let grace = snapshot.contact_by_email(GRACE).expect("Grace's contact");
    tag_by_hand(stack, &grace.id, "VIP").await;
}

/// Whether the account shows the end of the story, customer by customer.
fn story_applied(s: &AcSnapshot, deletion: Deletion) -> bool {
    let value = |email: &str, field: &str| {
        s.contact_by_email(email)
            .and_then(|c| s.field_value(&c.id, field))
    };
    let on_list = |email: &str, status: u8| {
        !deletion.listed()
            || s.contact_by_email(email)
                .is_some_and(|c| s.lists_of(&c.id) == vec![(LIST.to_string(), status)])
    };
    let ada = value(ADA, "Cb_subscriptionStatus").as_deref() == Some("active") && on_list(ADA, 1);
    let grace = s
        .contact_by_email(GRACE)
        .is_some_and(|c| c.last_name == "Murray Hopper")
        && value(GRACE, "Cb_orgName").as_deref() == Some("Remington Rand")
        && value(GRACE, "Cb_subscriptionID").as_deref() == Some("sub_grace_team")
        && on_list(GRACE, 1);
    let linus = value(LINUS, "Cb_subscriptionStatus").as_deref() == Some("cancelled")
        && value(LINUS, "Cb_subscriptionCancellationReason").as_deref() == Some("Too expensive")
        && on_list(LINUS, 1);
    let margaret = match deletion {
        Deletion::Keep => {
            value(MARGARET, "Cb_chargebeeCustomerStatus").as_deref() == Some("deleted")
        }
        Deletion::Unsubscribe => {
            value(MARGARET, "Cb_chargebeeCustomerStatus").as_deref() == Some("deleted")
                && on_list(MARGARET, 2)
        }
        Deletion::Delete => s.contact_by_email(MARGARET).is_none(),
    };
    ada && grace && linus && margaret
}

/// The proof: (1) every event again under a new message id, (2) the whole stream replayed;
/// after each the account is what it was.
async fn redelivery_and_replay_change_nothing(stack: &Stack, deletion: Deletion) {
    let before = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let requests_before = stack
        .sandbox
        .activecampaign
        .request_count(&stack.ac_account);
    assert_non_trivial(&before, deletion);
    let events = stack.events_in_stream().await;

    // (1) Every event delivered twice: past JetStream's duplicate window, as a poll overlap,
    // a crashed ack or a restarted poller would. The worker's version check must see that
    // each one is already applied, so ActiveCampaign is not even asked.
    assert_eq!(stack.redeliver_every_event().await, events);
    assert_eq!(stack.events_in_stream().await, 2 * events);
    settle(stack, "the worker to settle every redelivered event").await;
    let topology = stack.topology();
    assert_eq!(
        acked_through(
            stack,
            &topology.events_stream(),
            &topology.worker_consumer("ac-test")
        )
        .await,
        2 * events,
        "the worker must have taken and acked every redelivered event"
    );
    let redelivered = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let requests_redelivered = stack
        .sandbox
        .activecampaign
        .request_count(&stack.ac_account);
    eprintln!(
        "chargebee_redelivery ({deletion:?}): {events} events; ActiveCampaign requests: {requests_before} \
         before, +{} for the redelivery",
        requests_redelivered - requests_before
    );
    assert_same_state(
        &before,
        &redelivered,
        "after every event was delivered twice",
    );
    assert_eq!(
        redelivered, before,
        "a redelivery must not even touch a record (not one udate)"
    );
    assert_eq!(
        requests_redelivered, requests_before,
        "redelivered events are already applied: no ActiveCampaign request is needed"
    );

    // (2) The whole stream (both copies of every event) replayed from the start. Replays
    // skip the version check, so every write is made again: each must be idempotent, and the
    // customer deleted in Chargebee must end as it was (kept, unsubscribed, or gone).
    assert_eq!(stack.replay_whole_stream("ac-test").await, 2 * events);
    settle(stack, "the worker to settle the replay").await;
    assert_eq!(
        acked_through(
            stack,
            &topology.replay_stream(),
            &topology.replay_consumer("ac-test")
        )
        .await,
        2 * events,
        "the worker must have taken and acked every replayed event"
    );
    let replayed = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let requests_replayed = stack
        .sandbox
        .activecampaign
        .request_count(&stack.ac_account);
    eprintln!(
        "chargebee_redelivery ({deletion:?}): +{} ActiveCampaign requests for replaying {} messages",
        requests_replayed - requests_redelivered,
        2 * events
    );
    assert!(
        requests_replayed > requests_redelivered,
        "a replay must really write again, or it proves nothing"
    );
    assert_same_state(&before, &replayed, "after replaying the whole stream");
    if deletion == Deletion::Delete {
        assert!(
            replayed.contact_by_email(MARGARET).is_none(),
            "the replay brought back the contact of a customer deleted in Chargebee"
        );
    }
}

/// Before calling two states identical, check there is something to compare: contacts with
/// their `Cb_*` values filled, the 14 fields created once, a tag, list memberships.
fn assert_non_trivial(s: &AcSnapshot, deletion: Deletion) {
    // Customers are applied in parallel, so contact ids follow no particular order.
    let mut emails: Vec<&str> = s.contacts.iter().map(|c| c.email.as_str()).collect();
    emails.sort_unstable();
    let expected: &[&str] = match deletion {
        Deletion::Delete => &[ADA, GRACE, LINUS],
        _ => &[ADA, GRACE, LINUS, MARGARET],
    };
    assert_eq!(emails, expected, "{:#?}", s.contacts);
    for email in expected {
        let contact = s.contact_by_email(email).expect("listed above");
        for field in [
            "Cb_chargebeeCustomerStatus",
            "Cb_orgName",
            "Cb_subscriptionID",
            "Cb_subscriptionPlanName",
            "Cb_subscriptionStatus",
            "Cb_subscriptionCreatedOn",
            "Cb_currency",
            "Cb_subscriptionMRR",
        ] {
            assert!(
                s.field_value(&contact.id, field)
                    .is_some_and(|v| !v.is_empty()),
                "{email} has no {field}: {:#?}",
                s.field_values
            );
        }
    }
    let cb_fields = s
        .fields
        .iter()
        .filter(|f| f.title.starts_with("Cb_"))
        .count();
    assert_eq!(cb_fields, 14, "{:#?}", s.fields);
    let grace = s.contact_by_email(GRACE).expect("Grace");
    assert_eq!(grace.first_name, "Grace");
    assert_eq!(s.tags_of(&grace.id), vec!["VIP".to_string()]);
    assert_eq!(s.contact_tags.len(), 1, "{:#?}", s.contact_tags);
    let ada = s.contact_by_email(ADA).expect("Ada");
    assert_eq!(
        s.field_value(&ada.id, "Cb_subscriptionTrialEndDate")
            .as_deref(),
        Some("2023-11-28")
    );
    assert_eq!(
        s.field_value(&ada.id, "Cb_subscriptionMRR").as_deref(),
        Some("49.00")
    );
    if deletion.listed() {
        assert_eq!(s.lists.len(), 1);
        assert_eq!(
            s.contact_lists.len(),
            expected.len(),
            "{:#?}",
            s.contact_lists
        );
    } else {
        assert!(s.contact_lists.is_empty(), "{:#?}", s.contact_lists);
    }
    assert!(
        s.ecom_customers.is_empty() && s.ecom_orders.is_empty() && s.connections.is_empty(),
        "Chargebee syncs write no deep data"
    );
}

/// Compares what must not move, part by part so a difference reads plainly, then the whole
/// account. AC stamps `udate` on every write, even of the same value, so a replay (which
/// writes again on purpose) may move those stamps and nothing else.
fn assert_same_state(before: &AcSnapshot, after: &AcSnapshot, when: &str) {
    let contacts = |s: &AcSnapshot| -> Vec<(String, String, String, String)> {
        s.contacts
            .iter()
            .map(|c| {
                (
                    c.id.clone(),
                    c.email.clone(),
                    c.first_name.clone(),
                    c.last_name.clone(),
                )
            })
            .collect()
    };
    assert_eq!(contacts(after), contacts(before), "contacts {when}");
    assert_eq!(
        values_by_email(after),
        values_by_email(before),
        "custom field values {when}"
    );
    let fields = |s: &AcSnapshot| -> Vec<(String, String)> {
        s.fields
            .iter()
            .map(|f| (f.id.clone(), f.title.clone()))
            .collect()
    };
    assert_eq!(fields(after), fields(before), "custom fields {when}");
    assert_eq!(after.tags, before.tags, "tags {when}");
    assert_eq!(
        after.contact_tags, before.contact_tags,
        "contact tags {when}"
    );
    assert_eq!(after.lists, before.lists, "lists {when}");
    let memberships = |s: &AcSnapshot| -> Vec<(String, String, String, u8)> {
        s.contact_lists
            .iter()
            .map(|cl| {
                (
                    cl.id.clone(),
                    email_of(s, &cl.contact),
                    cl.list.clone(),
                    cl.status,
                )
            })
            .collect()
    };
    assert_eq!(
        memberships(after),
        memberships(before),
        "list memberships {when}"
    );
    assert_eq!(
        without_write_stamps(after),
        without_write_stamps(before),
        "the whole account (write stamps aside) {when}"
    );
}

/// `(contact email, field title) → (field value id, value)`.
fn values_by_email(s: &AcSnapshot) -> BTreeMap<(String, String), (String, String)> {
    s.field_values
        .iter()
        .map(|fv| {
            let title = s
                .fields
                .iter()
                .find(|f| f.id == fv.field)
                .map(|f| f.title.clone())
                .unwrap_or_else(|| format!("field {}", fv.field));
            (
                (email_of(s, &fv.contact), title),
                (fv.id.clone(), fv.value.clone()),
            )
        })
        .collect()
}

fn email_of(s: &AcSnapshot, contact_id: &str) -> String {
    s.contacts
        .iter()
        .find(|c| c.id == contact_id)
        .map(|c| c.email.clone())
        .unwrap_or_else(|| format!("missing contact {contact_id}"))
}

fn without_write_stamps(s: &AcSnapshot) -> AcSnapshot {
    let mut s = s.clone();
    for contact in &mut s.contacts {
        contact.udate.clear();
    }
    for value in &mut s.field_values {
        value.udate.clear();
    }
    for membership in &mut s.contact_lists {
        membership.udate.clear();
    }
    s
}

async fn settle(stack: &Stack, what: &str) {
    eventually(what, WAIT, || async {
        stack.worker_idle_for("ac-test").await.then_some(())
    })
    .await;
}

/// The last stream sequence `consumer` of `stream` has acked, with everything before it.
async fn acked_through(stack: &Stack, stream: &str, consumer: &str) -> u64 {
    let stream = stack.jetstream().get_stream(stream).await.expect("stream");
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(consumer)
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    info.ack_floor.stream_sequence
}

fn customer(id: &str, email: &str, first: &str, last: &str, company: &str) -> CbCustomerInput {
    CbCustomerInput {
        id: Some(id.into()),
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        email: Some(email.into()),
        company: Some(company.into()),
        ..Default::default()
    }
}

async fn snapshot_when(
    stack: &Stack,
    what: &str,
    ready: impl Fn(&AcSnapshot) -> bool,
) -> AcSnapshot {
    eventually(what, WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        ready(&snapshot).then_some(snapshot)
    })
    .await
}

/// Calls the emulated account's API as a person in ActiveCampaign's UI would.
async fn ac_post(stack: &Stack, path: &str, body: Value) -> Value {
    let response = stack
        .http
        .post(format!(
            "{}/api/3/{path}",
            stack.sandbox.activecampaign_base_url(&stack.ac_account)
        ))
        .header("Api-Token", &stack.ac_token)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    assert!(
        response.status().is_success(),
        "POST {path}: {}",
        response.status()
    );
    response.json().await.expect("json")
}

fn id_of(value: &Value) -> String {
    value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string())
}

async fn tag_by_hand(stack: &Stack, contact_id: &str, tag: &str) {
    let created = ac_post(
        stack,
        "tags",
        json!({"tag": {"tag": tag, "tagType": "contact", "description": "Set by hand"}}),
    )
    .await;
    let tag_id = id_of(&created["tag"]["id"]);
    ac_post(
        stack,
        "contactTags",
        json!({"contactTag": {"contact": contact_id, "tag": tag_id}}),
    )
    .await;
}
