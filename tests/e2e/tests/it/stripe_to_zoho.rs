//! Stripe → Zoho CRM end to end, through the same mappings as Chargebee: customers become
//! contacts with their company's account, subscriptions deals whose Amount is the MRR of
//! their items, and a cancelled subscription's deal takes the configured closed stage.

use crate::chargebee_to_zoho::{text, zoho_when};
use billsync_e2e::{Stack, StackOptions};
use billsync_sandbox::stripe;
use serde_json::{json, Value};

/// A Stripe event of `event_type` created at `created` (Stripe orders by it).
fn event_at(event_type: &str, object: Value, created: i64) -> Value {
    let mut event = stripe::event(event_type, object);
    event["created"] = json!(created);
    event
}

fn subscription(status: &str, quantity: i64, cancel_at_period_end: bool) -> Value {
    json!({
        "id": "sub_1Zoho", "object": "subscription", "customer": "cus_ZADA",
        "status": status, "created": 1_700_000_000, "start_date": 1_700_000_000,
        "cancel_at_period_end": cancel_at_period_end, "currency": "usd",
        "items": {"object": "list", "data": [
            {"id": "si_1", "object": "subscription_item", "quantity": quantity,
             "price": {"id": "price_m", "object": "price", "unit_amount": 1000, "currency": "usd",
                       "recurring": {"interval": "month", "interval_count": 1}}},
            {"id": "si_2", "object": "subscription_item", "quantity": 1,
             "price": {"id": "price_y", "object": "price", "unit_amount": 12000, "currency": "usd",
                       "recurring": {"interval": "year", "interval_count": 1}}},
        ]},
    })
}

/// A stack whose Stripe source feeds Zoho CRM with the default options.
async fn zoho_stack() -> Stack {
    Stack::start(StackOptions {
        zoho_sync: Some(String::new()),
        ..Default::default()
    })
    .await
}

/// Posts `event` to the stack's webhook and expects it taken.
async fn send(stack: &Stack, event: Value) {
    crate::operator_api::send(stack, &event).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_customers_become_contacts_and_subscriptions_deals_with_their_mrr() {
    let stack = Stack::start(StackOptions {
        zoho_sync: Some(
            "[syncs.options]\nstage_cancelled = \"Closed Lost to Competition\"\n".into(),
        ),
        ..Default::default()
    })
    .await;
    let base = chrono::Utc::now().timestamp() - 100;
    let mut ada = stripe::customer("cus_ZADA", "ada@example.com", "Ada King Lovelace");
    ada["metadata"] = json!({"company": "Analytical Engines"});
    ada["phone"] = json!("+1 555 0100");
    let send = |event: Value| {
        let stack = &stack;
        async move {
            let response = stack.send_stripe(&event).await;
            assert_eq!(response.status(), 200);
        }
    };
    send(event_at("customer.created", ada, base)).await;
    send(event_at(
        "customer.created",
        stripe::customer("cus_ZCHER", "cher@example.com", "Cher"),
        base,
    ))
    .await;
    let snapshot = zoho_when(&stack, "both contacts", |s| s.contacts.len() == 2).await;
    let cher = snapshot
        .find("Contacts", "Email", "cher@example.com")
        .expect("cher");
    assert_eq!(text(cher, "First_Name"), Some("Cher"));
    assert_eq!(
        text(cher, "Last_Name"),
        Some("Cher"),
        "the fallback: the first name"
    );
    send(event_at(
        "customer.subscription.created",
        subscription("active", 2, false),
        base + 1,
    ))
    .await;

    let snapshot = zoho_when(&stack, "the deal", |s| !s.deals.is_empty()).await;
    let ada = snapshot
        .find("Contacts", "Email", "ada@example.com")
        .expect("ada");
    assert_eq!(text(ada, "First_Name"), Some("Ada"));
    assert_eq!(text(ada, "Last_Name"), Some("King Lovelace"));
    assert_eq!(text(ada, "Phone"), Some("+1 555 0100"));
    let account = snapshot
        .find("Accounts", "Account_Name", "Analytical Engines")
        .expect("account");
    assert_eq!(ada.pointer("/Account_Name/id"), account.get("id"));
    let deal = &snapshot.deals[0];
    assert_eq!(text(deal, "Deal_Name"), Some("sub_1Zoho"));
    // 2 × $10 a month + $120 a year = $30 a month.
    assert_eq!(deal["Amount"], json!(30.0));
    assert_eq!(text(deal, "Stage"), Some("Closed Won"));
    assert_eq!(text(deal, "Closing_Date"), Some("2023-11-14"));
    assert_eq!(deal.pointer("/Contact_Name/id"), ada.get("id"));
    assert_eq!(deal.pointer("/Account_Name/id"), account.get("id"));

    send(event_at(
        "customer.subscription.updated",
        subscription("active", 5, true),
        base + 2,
    ))
    .await;
    let snapshot = zoho_when(&stack, "the deal's new MRR", |s| {
        s.deals.first().is_some_and(|d| d["Amount"] == json!(60.0))
    })
    .await;
    assert_eq!(snapshot.deals.len(), 1);
    // Non-renewing (cancel_at_period_end) takes its own stage: Closed Won by default.
    assert_eq!(text(&snapshot.deals[0], "Stage"), Some("Closed Won"));
    send(event_at(
        "customer.subscription.deleted",
        subscription("canceled", 5, false),
        base + 3,
    ))
    .await;
    let snapshot = zoho_when(&stack, "the deal in the configured closed stage", |s| {
        s.deals
            .first()
            .is_some_and(|d| text(d, "Stage") == Some("Closed Lost to Competition"))
    })
    .await;
    assert_eq!(snapshot.deals.len(), 1);
    assert_eq!(snapshot.contacts.len(), 2);
    assert_eq!(snapshot.accounts.len(), 1);
    stack.stop().await;
}

/// Stripe does not promise a customer's event comes before its subscriptions': a deal
/// written before its contact existed is pointed to the contact (and its account) once the
/// customer's event writes it, and the subscription's later changes keep the link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_deal_written_before_its_contact_gets_the_contact_once_it_exists() {
    let stack = zoho_stack().await;
    let base = chrono::Utc::now().timestamp() - 100;
    let send = |event: Value| send(&stack, event);
    send(event_at(
        "customer.subscription.created",
        subscription("active", 2, false),
        base + 1,
    ))
    .await;
    let snapshot = zoho_when(&stack, "the deal without its contact", |s| {
        !s.deals.is_empty()
    })
    .await;
    assert!(snapshot.contacts.is_empty());
    assert_eq!(snapshot.deals[0].get("Contact_Name"), None);
    assert_eq!(snapshot.deals[0].get("Account_Name"), None);

    let mut ada = stripe::customer("cus_ZADA", "ada@example.com", "Ada King Lovelace");
    ada["metadata"] = json!({"company": "Analytical Engines"});
    send(event_at("customer.created", ada, base)).await;
    let snapshot = zoho_when(&stack, "the deal pointing to the new contact", |s| {
        s.deals
            .first()
            .is_some_and(|d| d.pointer("/Contact_Name/id").is_some())
    })
    .await;
    let ada = snapshot
        .find("Contacts", "Email", "ada@example.com")
        .expect("ada");
    let account = snapshot
        .find("Accounts", "Account_Name", "Analytical Engines")
        .expect("account");
    assert_eq!(snapshot.deals.len(), 1);
    let deal = &snapshot.deals[0];
    assert_eq!(deal.pointer("/Contact_Name/id"), ada.get("id"));
    assert_eq!(deal.pointer("/Account_Name/id"), account.get("id"));
    // The back-fill wrote only the links: the deal's own fields are as the subscription set them.
    assert_eq!(text(deal, "Deal_Name"), Some("sub_1Zoho"));
    assert_eq!(deal["Amount"], json!(30.0));
    assert_eq!(text(deal, "Stage"), Some("Closed Won"));

    send(event_at(
        "customer.subscription.updated",
        subscription("active", 5, false),
        base + 2,
    ))
    .await;
    let snapshot = zoho_when(&stack, "the deal's new MRR", |s| {
        s.deals.first().is_some_and(|d| d["Amount"] == json!(60.0))
    })
    .await;
    assert_eq!(snapshot.deals.len(), 1);
    assert_eq!(snapshot.deals[0].pointer("/Contact_Name/id"), ada.get("id"));
    assert_eq!(snapshot.contacts.len(), 1);
    stack.stop().await;
}

/// The operator's ignore works for Zoho CRM as for ActiveCampaign: an ignored failure leaves
/// the list and the CSV, the unchanged record's next event is skipped and nothing reaches
/// Zoho, and a change of the record syncs it and lifts the ignore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ignored_zoho_failure_holds_the_record_back_until_it_changes() {
    use crate::operator_api::{api_csv, api_get, ignore_failure, outcomes_of, wait_failure};
    let stack = zoho_stack().await;
    let base = chrono::Utc::now().timestamp() - 100;
    let send = |event: Value| send(&stack, event);
    // Zoho refuses the contact: its email is not one (INVALID_DATA).
    let mut ivy = stripe::customer("cus_ZIGN", "ivy.at.example.com", "Ivy Ignored");
    send(event_at("customer.created", ivy.clone(), base)).await;
    let failure = wait_failure(&stack, "open", "zoho-test", "customer/cus_ZIGN").await;
    assert!(
        failure["message"]
            .as_str()
            .is_some_and(|m| m.contains("INVALID_DATA") && m.contains("Email")),
        "{failure}"
    );
    // ActiveCampaign (fed by the same source) has its own failure: rows are per connection.
    let zoho_row = |csv: &str| {
        csv.lines()
            .any(|l| l.contains("zoho-test") && l.contains("customer/cus_ZIGN"))
    };
    assert!(zoho_row(&api_csv(&stack).await));

    assert_eq!(ignore_failure(&stack, &failure).await["status"], "ignored");
    let open = api_get(&stack, "/api/v1/failures?destination=zoho").await;
    assert_eq!(open["items"], json!([]), "ignored failures leave the list");
    let csv = api_csv(&stack).await;
    assert!(!zoho_row(&csv), "nor the CSV: {csv}");

    // The unchanged record's next event is skipped at Zoho: nothing is written.
    let unchanged = event_at("customer.updated", ivy.clone(), base + 1);
    send(unchanged.clone()).await;
    let skipped = billsync_e2e::eventually(
        "the unchanged record's event skipped at zoho-test",
        std::time::Duration::from_secs(40),
        || async {
            outcomes_of(&stack, unchanged["id"].as_str()?)
                .await
                .into_iter()
                .find(|o| o["destination_connection"] == "zoho-test")
        },
    )
    .await;
    assert_eq!(skipped["result"]["status"], "skipped", "{skipped}");
    assert_eq!(skipped["result"]["reason"], "ignored by operator");
    let snapshot = stack.sandbox.zoho.snapshot(&stack.zoho_org);
    assert!(snapshot.contacts.is_empty(), "{:?}", snapshot.contacts);
    let row = api_get(&stack, &format!("/api/v1/failures/{}", failure["id"])).await;
    assert_eq!(row["status"], "ignored");

    // The record changes (its email fixed): it syncs, and the ignore lifts itself.
    ivy["email"] = json!("ivy@example.com");
    send(event_at("customer.updated", ivy, base + 2)).await;
    let snapshot = zoho_when(&stack, "the fixed contact", |s| {
        s.find("Contacts", "Email", "ivy@example.com").is_some()
    })
    .await;
    let contact = snapshot
        .find("Contacts", "Email", "ivy@example.com")
        .expect("ivy");
    assert_eq!(text(contact, "First_Name"), Some("Ivy"));
    assert_eq!(text(contact, "Last_Name"), Some("Ignored"));
    let resolved = wait_failure(&stack, "resolved", "zoho-test", "customer/cus_ZIGN").await;
    assert_eq!(resolved["id"], failure["id"]);
    stack.stop().await;
}
