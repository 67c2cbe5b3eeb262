//! A Stripe webhook travels ingest → JetStream → ActiveCampaign worker → the emulated CRM;
//! a CRM refusal becomes a row in Postgres through the errors service.

use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{stripe, AcFaults, AcSnapshot};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn contact_with_tags(stack: &Stack, email: &str, tags: usize) -> AcSnapshot {
    eventually(
        &format!("contact {email} with {tags} tags"),
        WAIT,
        || async {
            let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
            let contact = snapshot.contact_by_email(email)?;
            (snapshot.tags_of(&contact.id).len() >= tags).then_some(snapshot.clone())
        },
    )
    .await
}

/// A paid invoice of `customer` for `amount` cents, carrying the customer's email and name
/// as Stripe froze them when it was finalized.
fn paid_invoice(
    id: &str,
    customer: &str,
    (email, name): (&str, &str),
    amount: i64,
) -> serde_json::Value {
    serde_json::json!({"id": id, "object": "invoice", "customer": customer,
        "customer_email": email, "customer_name": name,
        "amount_due": amount, "amount_paid": amount, "amount_remaining": 0, "currency": "usd",
        "status": "paid", "paid": true, "billing_reason": "manual", "created": 1_700_000_000,
        "lines": {"object": "list", "data": [{"id": format!("il_{id}"), "object": "line_item",
            "amount": amount, "currency": "usd", "description": "Setup", "quantity": 1}]}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customer_created_becomes_a_tagged_contact() {
    let stack = Stack::start(StackOptions::default()).await;
    let event =
        stripe::customer_created_event("cus_E2E1", "ada.lovelace@example.com", "Ada King Lovelace");

    let response = stack.send_stripe(&event).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);

    let snapshot = contact_with_tags(&stack, "ada.lovelace@example.com", 2).await;
    assert_eq!(snapshot.contacts.len(), 1);
    let contact = &snapshot.contacts[0];
    assert_eq!(contact.email, "ada.lovelace@example.com");
    assert_eq!(contact.first_name, "Ada");
    assert_eq!(contact.last_name, "King Lovelace");
    let mut tags = snapshot.tags_of(&contact.id);
    tags.sort();
    assert_eq!(
        tags,
        vec!["stripe-integration", "stripe-integration-customer.created"]
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_webhook_twice_leaves_one_contact_and_one_set_of_tags() {
    let stack = Stack::start(StackOptions::default()).await;
    let event =
        stripe::customer_created_event("cus_E2E2", "grace.hopper@example.com", "Grace Hopper");

    let first = stack.send_stripe(&event).await;
    assert_eq!(first.status(), 200);
    contact_with_tags(&stack, "grace.hopper@example.com", 2).await;
    let second = stack.send_stripe(&event).await;
    assert_eq!(second.status(), 200);
    let body: serde_json::Value = second.json().await.expect("json");
    assert_eq!(
        body["duplicate"], true,
        "JetStream must drop the second copy: {body}"
    );
    assert_eq!(stack.events_in_stream().await, 1);

    // Past JetStream's duplicate window the worker's version check must hold the line: put
    // the same event on the stream again under another message id, as a late Stripe retry.
    let ingest_view: serde_json::Value = {
        let js = stack.jetstream();
        let stream = js
            .get_stream(stack.topology().events_stream())
            .await
            .expect("stream");
        let message = stream.get_raw_message(1).await.expect("first message");
        serde_json::from_slice(&message.payload).expect("event json")
    };
    let subject = format!(
        "{}.billing.stripe.stripe-test.customer.customer.created",
        stack.prefix
    );
    let publisher = billsync_bus::Publisher::new(stack.jetstream(), stack.topology(), WAIT);
    publisher
        .publish(
            subject,
            "late-retry",
            serde_json::to_vec(&ingest_view).expect("encode").into(),
            Default::default(),
        )
        .await
        .expect("republish");
    assert_eq!(stack.events_in_stream().await, 2);
    eventually("the worker to settle both messages", WAIT, || async {
        stack.worker_idle().await.then_some(())
    })
    .await;

    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert_eq!(snapshot.contacts.len(), 1);
    assert_eq!(snapshot.contact_tags.len(), 2);
    assert_eq!(snapshot.tags.len(), 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signature_gets_400_and_publishes_nothing() {
    let stack = Stack::start(StackOptions::default()).await;
    let event = stripe::customer_created_event("cus_E2E3", "forged@example.com", "Mal Lory");
    let now = chrono_now();

    let forged = stack.post_stripe(&event, "whsec_not_the_secret", now).await;
    assert_eq!(forged.status(), 400);
    let body: serde_json::Value = forged.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("signature"),
        "{body}"
    );

    let stale = stack
        .post_stripe(&event, &stack.stripe_secret.clone(), now - 3600)
        .await;
    assert_eq!(stale.status(), 400);

    let unsigned = stack
        .http
        .post(format!(
            "{}/webhooks/stripe/{}",
            stack.ingest_url, stack.stripe_connection
        ))
        .body(serde_json::to_vec(&event).expect("encode"))
        .send()
        .await
        .expect("post");
    assert_eq!(unsigned.status(), 400);

    assert_eq!(stack.events_in_stream().await, 0);
    assert!(stack
        .sandbox
        .activecampaign
        .snapshot(&stack.ac_account)
        .contacts
        .is_empty());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_refusal_becomes_one_failure_row() {
    let stack = Stack::start(StackOptions::default()).await;
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            reject_emails: vec!["refused@example.com".into()],
            ..Default::default()
        },
    );
    let event = stripe::customer_created_event("cus_E2E4", "refused@example.com", "Rita Refused");
    assert_eq!(stack.send_stripe(&event).await.status(), 200);

    let pool = sqlx::PgPool::connect(&stack.db.url)
        .await
        .expect("connect test database");
    let (record_key, class, message, count, status): (String, String, String, i64, String) =
        eventually("a failure row in Postgres", WAIT, || async {
            sqlx::query_as(
                "SELECT record_key, error_class, message, count, status FROM sync_failures \
                 WHERE destination_connection = 'ac-test'",
            )
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
        })
        .await;
    assert_eq!(record_key, "customer/cus_E2E4");
    assert_eq!(class, "rejected");
    assert!(message.contains("422"), "{message}");
    assert_eq!(count, 1);
    assert_eq!(status, "open");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_failures")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(rows, 1);
    assert!(stack
        .sandbox
        .activecampaign
        .snapshot(&stack.ac_account)
        .contacts
        .is_empty());
    pool.close().await;
    stack.stop().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_mappings_go_only_to_fields_that_exist() {
    let stack = Stack::start(StackOptions {
        extra_config: "[syncs.mapping]\nStripe_Customer_ID = \"id\"".into(),
        ..Default::default()
    })
    .await;
    // The field does not exist yet: the seed's rule makes that a configuration error.
    let event = stripe::customer_created_event("cus_MAP1", "mapped@example.com", "Map Ping");
    assert_eq!(stack.send_stripe(&event).await.status(), 200);
    let pool = sqlx::PgPool::connect(&stack.db.url).await.expect("db");
    let (class, message): (String, String) = eventually("a configuration failure", WAIT, || async {
        sqlx::query_as("SELECT error_class, message FROM sync_failures WHERE record_key = 'customer/cus_MAP1'")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
    })
    .await;
    assert_eq!(class, "configuration");
    assert!(message.contains("Stripe_Customer_ID"), "{message}");
    assert!(
        stack
            .sandbox
            .activecampaign
            .snapshot(&stack.ac_account)
            .fields
            .is_empty(),
        "no field may be created"
    );

    // Once the user creates the field, the next event fills it.
    let created = stack
        .http
        .post(format!("{}/api/3/fields", stack.sandbox.activecampaign_base_url(&stack.ac_account)))
        .header("Api-Token", &stack.ac_token)
        .json(&serde_json::json!({"field": {"title": "Stripe_Customer_ID", "type": "text", "perstag": "STRIPE_CUSTOMER_ID"}}))
        .send()
        .await
        .expect("create field");
    assert!(created.status().is_success());
    // The worker read the field catalogue before the field existed; a miss reads it again.
    let event = stripe::customer_created_event("cus_MAP2", "mapped2@example.com", "Map Ped");
    assert_eq!(stack.send_stripe(&event).await.status(), 200);
    let snapshot = eventually("the mapped field value", WAIT, || async {
        let s = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        let contact = s.contact_by_email("mapped2@example.com")?;
        (s.field_value(&contact.id, "Stripe_Customer_ID").as_deref() == Some("cus_MAP2"))
            .then_some(s.clone())
    })
    .await;
    assert!(snapshot.contact_by_email("mapped@example.com").is_none());
    pool.close().await;
    stack.stop().await;
}

/// Events of one second are ordered by their place in the events stream, and a contact takes
/// the customer's data only from the newest event that carried it: a charge (another object)
/// that comes round again after a later `customer.updated` — a redelivery after a crash, or
/// a replay — leaves the contact's name as the later event set it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_event_of_another_object_does_not_overwrite_the_contact() {
    let stack = Stack::start(StackOptions::default()).await;
    let email = "burst@example.com";
    let same_second = |mut event: serde_json::Value| {
        event["created"] = serde_json::json!(1_700_000_000);
        event
    };
    let events = [
        stripe::event(
            "customer.created",
            stripe::customer("cus_BURST", email, "Ada First"),
        ),
        stripe::event(
            "charge.succeeded",
            serde_json::json!({"id": "ch_BURST", "object": "charge", "customer": "cus_BURST",
                "amount": 900, "amount_refunded": 0, "currency": "usd", "status": "succeeded",
                "paid": true, "billing_details": {"email": email, "name": "Ada Second"},
                "created": 1_700_000_000}),
        ),
        stripe::event(
            "customer.updated",
            stripe::customer("cus_BURST", email, "Ada Third"),
        ),
    ];
    for event in events {
        let response = stack.send_stripe(&same_second(event)).await;
        assert!(response.status().is_success(), "{}", response.status());
    }
    let settled = |what: &'static str| {
        let stack = &stack;
        async move {
            eventually(what, WAIT, || async {
                let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
                let contact = snapshot.contact_by_email(email)?.clone();
                stack.worker_idle_for("ac-test").await.then_some(contact)
            })
            .await
        }
    };
    let contact = settled("the three events applied").await;
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("Ada", "Third")
    );

    // The charge (stream sequence 2) comes round again, after the customer.updated (3).
    assert_eq!(stack.replay_events("ac-test", &[2]).await, 1);
    let contact = settled("the charge replayed").await;
    assert_eq!(
        (contact.first_name.as_str(), contact.last_name.as_str()),
        ("Ada", "Third"),
        "an older event's copy of the customer overwrote the contact"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_change_keeps_one_contact_and_a_late_invoice_does_not_bring_the_old_email_back() {
    let stack = Stack::start(StackOptions::default()).await;
    let mut clock = billsync_e2e::workload::Clock::new();
    let send = |event: serde_json::Value| {
        let stack = &stack;
        async move {
            let response = stack.send_stripe(&event).await;
            assert!(response.status().is_success(), "{}", response.status());
        }
    };
    send(clock.event(
        "customer.created",
        stripe::customer("cus_MOVE", "old@example.com", "Mo Ver"),
    ))
    .await;
    let contact_id = contact_with_tags(&stack, "old@example.com", 2)
        .await
        .contact_by_email("old@example.com")
        .expect("contact")
        .id
        .clone();

    send(clock.event(
        "customer.updated",
        stripe::customer("cus_MOVE", "new@example.com", "Mo Ver"),
    ))
    .await;
    // Stripe froze this invoice's customer_email when it was finalized, before the change;
    // it is paid afterwards.
    send(clock.event(
        "invoice.payment_succeeded",
        paid_invoice("in_MOVE", "cus_MOVE", ("old@example.com", "Mo Ver"), 1200),
    ))
    .await;
    let snapshot = eventually("the three events applied", WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        (stack.worker_idle_for("ac-test").await && snapshot.ecom_order("in_MOVE").is_some())
            .then_some(snapshot)
    })
    .await;
    assert_eq!(snapshot.contacts.len(), 1, "{:#?}", snapshot.contacts);
    let contact = &snapshot.contacts[0];
    assert_eq!(
        (contact.id.as_str(), contact.email.as_str()),
        (contact_id.as_str(), "new@example.com"),
        "the customer's contact must carry its new email"
    );
    assert!(
        snapshot
            .tags_of(&contact_id)
            .contains(&"stripe-integration-invoice.payment_succeeded".to_string()),
        "{:?}",
        snapshot.tags_of(&contact_id)
    );
    let emails: Vec<&str> = snapshot
        .ecom_customers
        .iter()
        .map(|c| c.email.as_str())
        .collect();
    assert_eq!(
        emails,
        ["new@example.com"],
        "{:#?}",
        snapshot.ecom_customers
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_change_delivered_after_a_later_invoice_still_applies() {
    let stack = Stack::start(StackOptions::default()).await;
    let mut clock = billsync_e2e::workload::Clock::new();
    let created = clock.event(
        "customer.created",
        stripe::customer("cus_LATE", "before@example.com", "Lee Late"),
    );
    let updated = clock.event(
        "customer.updated",
        stripe::customer("cus_LATE", "after@example.com", "Lee Late"),
    );
    let paid = clock.event(
        "invoice.payment_succeeded",
        paid_invoice(
            "in_LATE",
            "cus_LATE",
            ("before@example.com", "Lee Late"),
            500,
        ),
    );
    // Stripe does not promise order: the email change arrives after the later invoice.
    for event in [created, paid, updated] {
        let response = stack.send_stripe(&event).await;
        assert!(response.status().is_success(), "{}", response.status());
        eventually("the event to settle", WAIT, || async {
            stack.worker_idle_for("ac-test").await.then_some(())
        })
        .await;
    }
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert_eq!(snapshot.contacts.len(), 1, "{:#?}", snapshot.contacts);
    assert_eq!(
        snapshot.contacts[0].email, "after@example.com",
        "the invoice's copy of the customer held back the customer's own update"
    );
    stack.stop().await;
}
