//! Stripe → Pipedrive end to end through the same mappings: a customer becomes a person, a
//! subscription a deal worth its items' MRR normalised to a month, a paid one-time invoice a
//! won deal.

use crate::chargebee_to_pipedrive::{custom, deal_titled, pd_when, person};
use billsync_e2e::workload::Clock;
use billsync_e2e::{Stack, StackOptions};
use billsync_sandbox::{stripe, PdEntity};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_subscriptions_and_one_time_invoices_become_persons_and_deals() {
    let stack = Stack::start(StackOptions {
        // Deals into the default pipeline's third stage ("Proposal Made").
        pipedrive_stripe_sync: Some("[syncs.options]\npipeline_id = 1\nstage_id = 3".into()),
        ..Default::default()
    })
    .await;
    let mut clock = Clock::new();
    let send = |event: serde_json::Value| {
        let stack = &stack;
        async move {
            let response = stack.send_stripe(&event).await;
            assert_eq!(response.status(), 200, "{:?}", response.text().await);
        }
    };
    send(clock.event(
        "customer.created",
        stripe::customer("cus_PD1", "grace@example.com", "Grace Hopper"),
    ))
    .await;
    let subscription = json!({"id": "sub_PD1", "object": "subscription", "customer": "cus_PD1",
    "status": "active", "currency": "usd", "created": 1_700_000_000,
    "items": {"object": "list", "data": [
        {"id": "si_1", "quantity": 3, "price": {"id": "price_seat", "nickname": "Team",
            "unit_amount": 1_000, "currency": "usd",
            "recurring": {"interval": "month", "interval_count": 1}}},
        {"id": "si_2", "quantity": 1, "price": {"id": "price_support", "unit_amount": 24_000,
            "currency": "usd", "recurring": {"interval": "year", "interval_count": 1}}}
    ]}});
    send(clock.event("customer.subscription.created", subscription.clone())).await;
    send(clock.event(
        "invoice.payment_succeeded",
        json!({"id": "in_once", "object": "invoice", "customer": "cus_PD1", "number": "PD-0001",
            "customer_email": "grace@example.com", "customer_name": "Grace Hopper",
            "subscription": null, "status": "paid", "total": 15_000, "currency": "usd",
            "amount_paid": 15_000, "billing_reason": "manual", "created": 1_700_000_000}),
    ))
    .await;
    let snapshot = pd_when(&stack, "the person and both deals", |s| {
        deal_titled(s, "Team subscription sub_PD1").is_some()
            && deal_titled(s, "Invoice PD-0001").is_some()
    })
    .await;
    let grace = person(&snapshot, "grace@example.com");
    assert_eq!(grace["name"], "Grace Hopper");
    assert_eq!(
        custom(&snapshot, PdEntity::Person, grace, "Billing customer id"),
        "cus_PD1"
    );
    let deal = deal_titled(&snapshot, "Team subscription sub_PD1").expect("deal");
    // 3 × $10 a month + $240 a year = $50 a month.
    assert_eq!(deal["value"].as_f64(), Some(50.0));
    assert_eq!(deal["currency"], "USD");
    assert_eq!(deal["status"], "won");
    assert_eq!(deal["person_id"], grace["id"]);
    assert_eq!(
        (deal["pipeline_id"].as_u64(), deal["stage_id"].as_u64()),
        (Some(1), Some(3))
    );
    let invoice = deal_titled(&snapshot, "Invoice PD-0001").expect("deal");
    assert_eq!(invoice["value"].as_f64(), Some(150.0));
    assert_eq!(invoice["status"], "won");
    assert_eq!(invoice["person_id"], grace["id"]);

    // Cancelled: the same deal, lost with Stripe's reason.
    let mut cancelled = subscription;
    cancelled["status"] = json!("canceled");
    cancelled["cancellation_details"] =
        json!({"reason": "cancellation_requested", "feedback": "too_expensive"});
    send(clock.event("customer.subscription.deleted", cancelled)).await;
    let snapshot = pd_when(&stack, "the deal lost", |s| {
        deal_titled(s, "Team subscription sub_PD1").is_some_and(|d| d["status"] == "lost")
    })
    .await;
    let deal = deal_titled(&snapshot, "Team subscription sub_PD1").expect("deal");
    assert_eq!(deal["lost_reason"], "too_expensive");
    assert_eq!(snapshot.live(PdEntity::Deal).len(), 2);
    assert_eq!(snapshot.live(PdEntity::Person).len(), 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_token_budget_pauses_the_connection_visibly() {
    // 120 tokens: the first customer costs 40 (fields 10, search 20, field 5, person 5),
    // each next one 25; the fifth cannot be paid for.
    let stack = Stack::start(StackOptions {
        pipedrive_stripe_sync: Some(String::new()),
        pipedrive_extra: "daily_token_budget = 120".into(),
        ..Default::default()
    })
    .await;
    let mut clock = Clock::new();
    for i in 0..6 {
        let event = clock.event(
            "customer.created",
            stripe::customer(
                &format!("cus_B{i}"),
                &format!("b{i}@example.com"),
                "Budget Person",
            ),
        );
        assert_eq!(stack.send_stripe(&event).await.status(), 200);
    }
    let http = reqwest::Client::new();
    let readyz = format!("{}/readyz", stack.pd_worker_url);
    let reason = billsync_e2e::eventually(
        "readiness to report the pause",
        Duration::from_secs(40),
        || async {
            let response = http.get(&readyz).send().await.ok()?;
            let status = response.status();
            let body = response.text().await.ok()?;
            (status == 503 && body.contains("paused") && body.contains("tokens")).then_some(body)
        },
    )
    .await;
    assert!(reason.contains("pd-test"), "{reason}");
    let metrics = http
        .get(format!("{}/metrics", stack.pd_worker_url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("billsync_destination_paused{")
                && l.contains("destination=\"pipedrive\"")
                && l.contains("pd-test")
                && l.ends_with(" 1")),
        "{metrics}"
    );
    // Nothing was sent past the budget, and nothing is sent while paused.
    let spent = stack.sandbox.pipedrive.tokens(&stack.pd_company).spent;
    assert!(spent <= 120, "{spent} tokens charged");
    let requests = stack
        .sandbox
        .pipedrive
        .request_counts(&stack.pd_company)
        .accepted;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack
            .sandbox
            .pipedrive
            .request_counts(&stack.pd_company)
            .accepted,
        requests
    );
    assert_eq!(
        stack
            .sandbox
            .pipedrive
            .snapshot(&stack.pd_company)
            .persons
            .len(),
        4
    );
    stack.stop().await;
}
