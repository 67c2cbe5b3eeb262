//! Chargebee → ActiveCampaign end to end (seed 000): a change in the emulated Chargebee is
//! polled, published and written to the emulated ActiveCampaign, field by field.

use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{AcSnapshot, CbCustomerInput, CbSubscriptionInput};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(40);

async fn start(sync_lines: &str) -> Stack {
    Stack::start(StackOptions {
        chargebee_sync: Some(sync_lines.to_string()),
        ..Default::default()
    })
    .await
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

/// An active subscription on `plan`.
fn active_subscription(id: &str, plan: &str) -> CbSubscriptionInput {
    CbSubscriptionInput {
        id: Some(id.into()),
        plan_id: Some(plan.into()),
        status: Some("active".into()),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_and_subscription_fill_the_seed_fields() {
    let stack = start("").await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    cb.create_customer(
        site,
        customer(
            "cb_ada",
            "ada@example.com",
            "Ada",
            "Lovelace",
            "Analytical Engines",
        ),
    )
    .expect("customer");
    cb.create_subscription(
        site,
        "cb_ada",
        CbSubscriptionInput {
            id: Some("sub_ada".into()),
            plan_id: Some("pro-monthly".into()),
            status: Some("in_trial".into()),
            currency_code: Some("EUR".into()),
            trial_start: Some(1_700_000_000),
            trial_end: Some(1_701_209_600),
            next_billing_at: Some(1_701_209_600),
            start_date: Some(1_700_000_000),
            mrr: Some(4_900),
            ..Default::default()
        },
    )
    .expect("subscription");

    let snapshot = snapshot_when(&stack, "the contact with its subscription fields", |s| {
        s.contact_by_email("ada@example.com")
            .is_some_and(|c| s.field_value(&c.id, "Cb_subscriptionID").is_some())
    })
    .await;
    let contact = snapshot
        .contact_by_email("ada@example.com")
        .expect("contact");
    assert_eq!(contact.first_name, "Ada");
    assert_eq!(contact.last_name, "Lovelace");
    let field = |name: &str| snapshot.field_value(&contact.id, name);
    assert_eq!(
        field("Cb_chargebeeCustomerStatus").as_deref(),
        Some("active")
    );
    assert_eq!(field("Cb_orgName").as_deref(), Some("Analytical Engines"));
    assert_eq!(field("Cb_subscriptionID").as_deref(), Some("sub_ada"));
    assert_eq!(
        field("Cb_subscriptionPlanName").as_deref(),
        Some("pro-monthly")
    );
    assert_eq!(field("Cb_subscriptionStatus").as_deref(), Some("in_trial"));
    assert_eq!(
        field("Cb_subscriptionTrialStartDate").as_deref(),
        Some("2023-11-14")
    );
    assert_eq!(
        field("Cb_subscriptionTrialEndDate").as_deref(),
        Some("2023-11-28")
    );
    assert_eq!(
        field("Cb_subscriptionNextBillingDate").as_deref(),
        Some("2023-11-28")
    );
    assert_eq!(
        field("Cb_subscriptionStartsOn").as_deref(),
        Some("2023-11-14")
    );
    assert_eq!(field("Cb_currency").as_deref(), Some("EUR"));
    assert_eq!(field("Cb_subscriptionMRR").as_deref(), Some("49.00"));
    assert!(field("Cb_subscriptionCreatedOn").is_some());
    // The custom fields were created once each, by title.
    let cb_fields: Vec<_> = snapshot
        .fields
        .iter()
        .filter(|f| f.title.starts_with("Cb_"))
        .collect();
    assert_eq!(cb_fields.len(), 14, "{:?}", snapshot.fields);

    // A cancellation reaches the same contact.
    cb.cancel_subscription(site, "sub_ada", Some("Too expensive"))
        .expect("cancel");
    let snapshot = snapshot_when(&stack, "the cancellation", |s| {
        s.contact_by_email("ada@example.com").is_some_and(|c| {
            s.field_value(&c.id, "Cb_subscriptionStatus").as_deref() == Some("cancelled")
        })
    })
    .await;
    let contact = snapshot
        .contact_by_email("ada@example.com")
        .expect("contact");
    assert_eq!(
        snapshot
            .field_value(&contact.id, "Cb_subscriptionCancellationReason")
            .as_deref(),
        Some("Too expensive")
    );
    assert_eq!(snapshot.contacts.len(), 1);
    assert_eq!(
        snapshot
            .fields
            .iter()
            .filter(|f| f.title.starts_with("Cb_"))
            .count(),
        14
    );
    stack.stop().await;
}

/// Creates Chargebee customer `first` with shared@example.com, waits for its contact, then
/// creates `second` with the same email.
async fn second_customer_with_the_same_email(stack: &Stack, first: &str, second: &str) {
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(
        site,
        customer(first, "shared@example.com", "First", "Owner", "A"),
    )
    .expect("first");
    snapshot_when(stack, "the first customer's contact", |s| {
        s.contact_by_email("shared@example.com").is_some()
    })
    .await;
    cb.create_customer(
        site,
        customer(second, "shared@example.com", "Second", "Claimant", "B"),
    )
    .expect("second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_customers_with_one_email_are_an_error_naming_both() {
    let stack = start("").await;
    second_customer_with_the_same_email(&stack, "cb_first", "cb_second").await;

    let pool = sqlx::PgPool::connect(&stack.db.url).await.expect("db");
    let message: String = eventually("a failure row naming both customers", WAIT, || async {
        sqlx::query_scalar(
            "SELECT message FROM sync_failures WHERE record_key = 'customer/cb_second'",
        )
        .fetch_optional(&pool)
        .await
        .ok()
        .flatten()
    })
    .await;
    assert!(
        message.contains("cb_first") && message.contains("cb_second"),
        "{message}"
    );
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert_eq!(snapshot.contacts.len(), 1);
    assert_eq!(
        snapshot.contacts[0].first_name, "First",
        "the first customer's contact must not be overwritten"
    );
    pool.close().await;
    stack.stop().await;
}

/// Creates Chargebee customer `id` with `email`, waits for its contact, deletes the customer
/// and waits for the contact to be gone (a sync with `on_customer_deleted = "delete"`).
async fn deleting_the_customer_deletes_its_contact(stack: &Stack, id: &str, email: &str) {
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(site, customer(id, email, "Soon", "Gone", "C"))
        .expect("customer");
    snapshot_when(stack, "the contact", |s| {
        s.contact_by_email(email).is_some()
    })
    .await;
    cb.delete_customer(site, id).expect("delete");
    snapshot_when(stack, "the contact to be deleted", |s| {
        s.contact_by_email(email).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_customer_deletes_the_contact_when_so_configured() {
    let stack = start("[syncs.options]\non_customer_deleted = \"delete\"").await;
    deleting_the_customer_deletes_its_contact(&stack, "cb_gone", "gone@example.com").await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_customer_keeps_the_contact_marked_deleted_by_default() {
    let stack = start("").await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    cb.create_customer(
        site,
        customer("cb_kept", "kept@example.com", "Still", "Here", "D"),
    )
    .expect("customer");
    snapshot_when(&stack, "the contact", |s| {
        s.contact_by_email("kept@example.com").is_some()
    })
    .await;
    cb.delete_customer(site, "cb_kept").expect("delete");
    snapshot_when(&stack, "the status field to say deleted", |s| {
        s.contact_by_email("kept@example.com").is_some_and(|c| {
            s.field_value(&c.id, "Cb_chargebeeCustomerStatus")
                .as_deref()
                == Some("deleted")
        })
    })
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_join_the_list_and_leave_it_when_the_customer_is_deleted() {
    // A fresh emulated account's first list gets id 1; the worker uses the list only when a
    // customer arrives, so creating it after start is what a user does.
    let stack = start("[syncs.options]\nlist_id = 1\non_customer_deleted = \"unsubscribe\"").await;
    let list = stack.create_ac_list("customers").await;
    assert_eq!(list, "1", "a fresh account's first list has id 1");
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    cb.create_customer(
        site,
        customer("cb_listed", "listed@example.com", "On", "List", "E"),
    )
    .expect("customer");
    let snapshot = snapshot_when(&stack, "list membership", |s| {
        s.contact_by_email("listed@example.com")
            .is_some_and(|c| !s.lists_of(&c.id).is_empty())
    })
    .await;
    let contact = snapshot
        .contact_by_email("listed@example.com")
        .expect("contact");
    assert_eq!(snapshot.lists_of(&contact.id), vec![("1".to_string(), 1)]);
    cb.delete_customer(site, "cb_listed").expect("delete");
    let snapshot = snapshot_when(&stack, "the unsubscription", |s| {
        s.contact_by_email("listed@example.com")
            .is_some_and(|c| s.lists_of(&c.id) == vec![("1".to_string(), 2)])
    })
    .await;
    let contact = snapshot
        .contact_by_email("listed@example.com")
        .expect("contact kept");
    assert_eq!(
        snapshot
            .field_value(&contact.id, "Cb_chargebeeCustomerStatus")
            .as_deref(),
        Some("deleted")
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_change_moves_the_contact_and_older_events_never_bring_the_old_email_back() {
    let stack = start("").await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    cb.create_customer(
        site,
        customer("cb_mover", "old@example.com", "Mo", "Ver", "F"),
    )
    .expect("customer");
    cb.create_subscription(site, "cb_mover", active_subscription("sub_mover", "basic"))
        .expect("subscription");
    let before = snapshot_when(&stack, "the contact with its subscription", |s| {
        s.contact_by_email("old@example.com")
            .is_some_and(|c| s.field_value(&c.id, "Cb_subscriptionID").is_some())
    })
    .await;
    let contact_id = before
        .contact_by_email("old@example.com")
        .expect("contact")
        .id
        .clone();

    cb.update_customer(
        site,
        "cb_mover",
        CbCustomerInput {
            email: Some("new@example.com".into()),
            first_name: Some("Moved".into()),
            ..Default::default()
        },
    )
    .expect("email change");
    let moved = snapshot_when(&stack, "the contact under its new email", |s| {
        s.contact_by_email("new@example.com").is_some()
    })
    .await;
    let contact = moved.contact_by_email("new@example.com").expect("contact");
    assert_eq!(
        contact.id, contact_id,
        "the email change must update the customer's contact, not start a second one: {:#?}",
        moved.contacts
    );
    assert_eq!(contact.first_name, "Moved");
    assert_eq!(moved.contacts.len(), 1, "{:#?}", moved.contacts);

    // The subscription's newest event carries the customer as it was then (old email, old
    // name); replayed now (as a retry of its failure would deliver it), it must write the
    // customer as it is.
    let subscription_events = stack.sequences_of("subscription_created").await;
    assert_eq!(subscription_events.len(), 1);
    stack.replay_events("ac-test", &subscription_events).await;
    eventually("the replay to settle", WAIT, || async {
        stack.worker_idle_for("ac-test").await.then_some(())
    })
    .await;
    let replayed = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert_eq!(replayed.contacts.len(), 1, "{:#?}", replayed.contacts);
    let contact = &replayed.contacts[0];
    assert_eq!(
        (
            contact.id.as_str(),
            contact.email.as_str(),
            contact.first_name.as_str()
        ),
        (contact_id.as_str(), "new@example.com", "Moved"),
        "a replayed older event put old customer data back"
    );
    assert_eq!(
        replayed
            .field_value(&contact_id, "Cb_subscriptionID")
            .as_deref(),
        Some("sub_mover")
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_customer_with_a_deleted_customers_email_takes_the_contact_over() {
    let stack = start("").await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    cb.create_customer(
        site,
        customer("cb_before", "again@example.com", "First", "Life", "G"),
    )
    .expect("customer");
    snapshot_when(&stack, "the contact", |s| {
        s.contact_by_email("again@example.com").is_some()
    })
    .await;
    cb.delete_customer(site, "cb_before").expect("delete");
    snapshot_when(&stack, "the status field to say deleted", |s| {
        s.contact_by_email("again@example.com").is_some_and(|c| {
            s.field_value(&c.id, "Cb_chargebeeCustomerStatus")
                .as_deref()
                == Some("deleted")
        })
    })
    .await;

    cb.create_customer(
        site,
        customer("cb_after", "again@example.com", "Second", "Life", "G"),
    )
    .expect("the same person signs up again");
    let snapshot = snapshot_when(&stack, "the new customer's data on the contact", |s| {
        s.contact_by_email("again@example.com")
            .is_some_and(|c| c.first_name == "Second")
    })
    .await;
    let contact = snapshot
        .contact_by_email("again@example.com")
        .expect("contact");
    assert_eq!(
        snapshot
            .field_value(&contact.id, "Cb_chargebeeCustomerStatus")
            .as_deref(),
        Some("active")
    );
    assert_eq!(snapshot.contacts.len(), 1);

    // Replaying everything, the deleted customer's events write nothing over the new one's.
    stack.replay_whole_stream("ac-test").await;
    eventually("the replay to settle", WAIT, || async {
        stack.worker_idle_for("ac-test").await.then_some(())
    })
    .await;
    let replayed = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let contact = replayed
        .contact_by_email("again@example.com")
        .expect("contact");
    assert_eq!(contact.first_name, "Second");
    assert_eq!(
        replayed
            .field_value(&contact.id, "Cb_chargebeeCustomerStatus")
            .as_deref(),
        Some("active")
    );
    let pool = sqlx::PgPool::connect(&stack.db.url).await.expect("db");
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_failures")
        .fetch_one(&pool)
        .await
        .expect("count failures");
    assert_eq!(failures, 0, "no sync error: the email was free again");
    pool.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscription_fields_describe_only_the_subscription_shown() {
    let stack = start("").await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    cb.create_customer(
        site,
        customer("cb_two", "two@example.com", "Two", "Subs", "H"),
    )
    .expect("customer");
    // An older subscription, cancelled for want of a card: its fields are on the contact.
    cb.create_subscription(site, "cb_two", active_subscription("sub_08b", "basic"))
        .expect("first subscription");
    cb.cancel_subscription(site, "sub_08b", Some("no_card"))
        .expect("cancel");
    snapshot_when(&stack, "the cancelled subscription on the contact", |s| {
        s.contact_by_email("two@example.com").is_some_and(|c| {
            s.field_value(&c.id, "Cb_subscriptionCancellationReason")
                .as_deref()
                == Some("no_card")
        })
    })
    .await;

    // A new, active subscription is the one shown: nothing of the cancelled one may stay.
    cb.create_subscription(site, "cb_two", active_subscription("sub_08", "pro"))
        .expect("second subscription");
    let value = |s: &AcSnapshot, field: &str| {
        let contact = s.contact_by_email("two@example.com")?;
        s.field_value(&contact.id, field).filter(|v| !v.is_empty())
    };
    let shown = snapshot_when(&stack, "the active subscription on the contact", |s| {
        value(s, "Cb_subscriptionID").as_deref() == Some("sub_08")
    })
    .await;
    assert_eq!(
        value(&shown, "Cb_subscriptionStatus").as_deref(),
        Some("active")
    );
    assert_eq!(
        value(&shown, "Cb_subscriptionPlanName").as_deref(),
        Some("pro")
    );
    for field in [
        "Cb_subscriptionCancellationReason",
        "Cb_subscriptionCancelledOn",
    ] {
        assert_eq!(
            value(&shown, field),
            None,
            "{field} of the cancelled sub_08b stayed beside sub_08"
        );
    }

    // A later change of the active subscription keeps them empty.
    cb.update_subscription(
        site,
        "sub_08",
        CbSubscriptionInput {
            plan_id: Some("pro-plus".into()),
            ..Default::default()
        },
    )
    .expect("plan change");
    let changed = snapshot_when(&stack, "the plan change", |s| {
        value(s, "Cb_subscriptionPlanName").as_deref() == Some("pro-plus")
    })
    .await;
    for field in [
        "Cb_subscriptionCancellationReason",
        "Cb_subscriptionCancelledOn",
    ] {
        assert_eq!(value(&changed, field), None, "{field} came back");
    }
    assert_eq!(changed.contacts.len(), 1);
    stack.stop().await;
}

/// The status of the failure of `record_key` at `ac-test`, if there is one.
async fn failure_status(pool: &sqlx::PgPool, record_key: &str) -> Option<String> {
    sqlx::query_scalar("SELECT status FROM sync_failures WHERE record_key = $1")
        .bind(record_key)
        .fetch_optional(pool)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixing_a_customer_retries_the_records_that_failed_with_it() {
    let stack = start("").await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    // A second customer with the same email, and their subscription: both fail.
    second_customer_with_the_same_email(&stack, "cb_owner", "cb_twin").await;
    cb.create_subscription(site, "cb_twin", active_subscription("sub_twin", "basic"))
        .expect("subscription");
    let pool = sqlx::PgPool::connect(&stack.db.url).await.expect("db");
    for record in ["customer/cb_twin", "subscription/sub_twin"] {
        eventually(&format!("the open failure of {record}"), WAIT, || async {
            (failure_status(&pool, record).await.as_deref() == Some("open")).then_some(())
        })
        .await;
    }

    // The user gives the second customer their own email in Chargebee, and does nothing else.
    cb.update_customer(
        site,
        "cb_twin",
        CbCustomerInput {
            email: Some("twin@example.com".into()),
            ..Default::default()
        },
    )
    .expect("email fixed");
    for record in ["customer/cb_twin", "subscription/sub_twin"] {
        eventually(
            &format!("the failure of {record} resolved"),
            WAIT,
            || async {
                (failure_status(&pool, record).await.as_deref() == Some("resolved")).then_some(())
            },
        )
        .await;
    }
    let snapshot = snapshot_when(&stack, "the second contact with its subscription", |s| {
        s.contact_by_email("twin@example.com")
            .is_some_and(|c| s.field_value(&c.id, "Cb_subscriptionID").is_some())
    })
    .await;
    let twin = snapshot
        .contact_by_email("twin@example.com")
        .expect("contact");
    assert_eq!(twin.first_name, "Second");
    assert_eq!(
        snapshot
            .field_value(&twin.id, "Cb_subscriptionID")
            .as_deref(),
        Some("sub_twin")
    );
    let owner = snapshot
        .contact_by_email("shared@example.com")
        .expect("the first contact");
    assert_eq!(
        owner.first_name, "First",
        "the first contact was overwritten"
    );
    assert_eq!(snapshot.contacts.len(), 2);
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_failures WHERE status = 'open'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(open, 0, "no error is left open");
    pool.close().await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_after_the_delete_option_changed_never_deletes_an_unsubscribed_contact() {
    let options = "[syncs.options]\nlist_id = 1\non_customer_deleted = \"unsubscribe\"";
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(options.to_string()),
        worker_process: true,
        ..Default::default()
    })
    .await;
    stack.create_ac_list("customers").await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    cb.create_customer(
        site,
        customer("cb_left", "left@example.com", "Un", "Subscribed", "I"),
    )
    .expect("customer");
    snapshot_when(&stack, "the contact on the list", |s| {
        s.contact_by_email("left@example.com")
            .is_some_and(|c| s.lists_of(&c.id) == vec![("1".to_string(), 1)])
    })
    .await;
    cb.delete_customer(site, "cb_left").expect("delete");
    snapshot_when(&stack, "the unsubscription", |s| {
        s.contact_by_email("left@example.com")
            .is_some_and(|c| s.lists_of(&c.id) == vec![("1".to_string(), 2)])
    })
    .await;
    eventually("the worker to settle", WAIT, || async {
        stack.worker_idle_for("ac-test").await.then_some(())
    })
    .await;

    // The operator switches to "delete" and restarts the worker, then replays what came in.
    let changed = stack.config_toml.replace(
        "on_customer_deleted = \"unsubscribe\"",
        "on_customer_deleted = \"delete\"",
    );
    assert_ne!(changed, stack.config_toml);
    stack.restart_worker_with(&changed).await;
    let replayed = stack.replay_whole_stream("ac-test").await;
    assert!(replayed >= 2, "{replayed} events replayed");
    eventually("the replay to settle", WAIT, || async {
        stack.worker_idle_for("ac-test").await.then_some(())
    })
    .await;
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    let contact = snapshot
        .contact_by_email("left@example.com")
        .expect("the replay deleted a contact that its deletion had only unsubscribed");
    assert_eq!(snapshot.lists_of(&contact.id), vec![("1".to_string(), 2)]);
    assert_eq!(
        snapshot
            .field_value(&contact.id, "Cb_chargebeeCustomerStatus")
            .as_deref(),
        Some("deleted")
    );

    // The new option applies to deletions from now on.
    deleting_the_customer_deletes_its_contact(&stack, "cb_gone_now", "gone-now@example.com").await;
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert!(snapshot.contact_by_email("left@example.com").is_some());
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlinked_sync_is_neither_polled_nor_written_and_relinks_from_then_on() {
    let stack = start("enabled = false").await;
    let cb = &stack.sandbox.chargebee;
    let site = &stack.chargebee_site;
    let created = cb
        .create_customer(
            site,
            customer("cb_unlinked", "unlinked@example.com", "Un", "Linked", "J"),
        )
        .expect("customer");

    // An ingest replica still on the old configuration publishes the event, routed here:
    // the worker, which has the sync unlinked, writes nothing.
    let linked_config = billsync_config::Config::from_toml(
        &stack.config_toml.replace("enabled = false", ""),
        std::path::Path::new("linked.toml"),
    )
    .expect("the configuration, linked");
    let old_replica = billsync_ingest::publisher(&linked_config, stack.nats.clone());
    let event: billsync_ingest::chargebee::types::ChargebeeEvent =
        serde_json::from_value(serde_json::to_value(&created.event).expect("event JSON"))
            .expect("a Chargebee event");
    let billing =
        billsync_ingest::chargebee::event::to_billing_event("cb-test", &event).expect("carried");
    let published = old_replica
        .publish_event(&billing)
        .await
        .expect("published");
    assert!(!published.duplicate);
    // A Stripe customer through the same worker shows it is working.
    stack
        .send_stripe(&billsync_sandbox::stripe::customer_created_event(
            "cus_LINKED",
            "linked@example.com",
            "Still Linked",
        ))
        .await;
    snapshot_when(&stack, "the Stripe sync's contact", |s| {
        s.contact_by_email("linked@example.com").is_some()
    })
    .await;
    eventually("the worker to settle", WAIT, || async {
        stack.worker_idle_for("ac-test").await.then_some(())
    })
    .await;
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert!(
        snapshot.contact_by_email("unlinked@example.com").is_none(),
        "an unlinked sync wrote a contact"
    );
    assert_eq!(snapshot.contacts.len(), 1);
    // Ingest, which has polled nothing of the unlinked site, spent none of its API budget.
    assert_eq!(cb.request_count(site), 0, "ingest polled an unlinked site");
    let refused = stack.sync_now("cb-test").await;
    assert_eq!(refused.status(), 409);
    assert!(refused
        .text()
        .await
        .unwrap_or_default()
        .contains("unlinked"));
    assert_eq!(cb.request_count(site), 0);

    // Linked again (ingest restarted with `enabled = true`): polling starts from then on,
    // as a new connection's does, not from where it stood when it was unlinked.
    let cursors = stack
        .jetstream()
        .get_key_value(stack.topology().cursors_bucket())
        .await
        .expect("cursors bucket");
    let stale = serde_json::json!({"occurred_at": 1_000_000_000});
    cursors
        .put("cb-test", serde_json::to_vec(&stale).expect("JSON").into())
        .await
        .expect("an old cursor");
    // A restart with the sync still unlinked drops the cursor...
    billsync_ingest::chargebee::ChargebeeSources::new(&stack.config, old_replica.clone())
        .await
        .expect("pollers");
    assert!(
        cursors.get("cb-test").await.expect("KV read").is_none(),
        "an unlinked connection kept its cursor"
    );
    // ...so the relinked one's first poll starts now.
    let relinked = billsync_ingest::chargebee::ChargebeeSources::new(&linked_config, old_replica)
        .await
        .expect("pollers");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let report = relinked
        .sync_now("cb-test", &shutdown)
        .await
        .expect("a poll of the relinked site");
    assert_eq!(report.cursor_before, None, "{report:?}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(report.cursor_after >= now - 5, "{report:?}");
    assert!(cb.request_count(site) > 0);
    stack.stop().await;
}
