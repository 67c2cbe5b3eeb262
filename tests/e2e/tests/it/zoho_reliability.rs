//! Zoho CRM under redelivery, replay and a crash: every Chargebee event delivered twice,
//! the whole stream replayed, and the Zoho worker SIGKILLed mid-run then restarted each
//! leave the emulated organisation exactly as the Chargebee site says it should be — one
//! contact per customer, one account per company, one deal per subscription, each with
//! the newest data.

use crate::chargebee_to_zoho::{customer, text, WAIT};
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{CbSubscriptionInput, ZohoSnapshot};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Creates `customers` customers (every third without a company, companies shared by
/// pairs), each with a subscription, then changes every customer's name and every other
/// subscription's MRR and status.
fn workload(stack: &Stack, customers: usize) {
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    for n in 0..customers {
        let company = if n % 3 == 0 {
            String::new()
        } else {
            format!("Company {}", n / 2)
        };
        cb.create_customer(
            site,
            customer(
                &format!("cb_{n}"),
                &format!("c{n}@example.com"),
                "First",
                &format!("Last{n}"),
                &company,
            ),
        )
        .expect("customer");
        cb.create_subscription(
            site,
            &format!("cb_{n}"),
            CbSubscriptionInput {
                id: Some(format!("sub_{n}")),
                plan_id: Some("pro".into()),
                status: Some("active".into()),
                mrr: Some(1_000 + n as i64),
                ..Default::default()
            },
        )
        .expect("subscription");
    }
    for n in 0..customers {
        cb.update_customer(
            site,
            &format!("cb_{n}"),
            billsync_sandbox::CbCustomerInput {
                first_name: Some(format!("Renamed{n}")),
                ..Default::default()
            },
        )
        .expect("update");
        if n % 2 == 0 {
            cb.update_subscription(
                site,
                &format!("sub_{n}"),
                CbSubscriptionInput {
                    status: Some("non_renewing".into()),
                    mrr: Some(5_000 + n as i64),
                    ..Default::default()
                },
            )
            .expect("update");
        }
    }
}

/// What the organisation must hold, from the Chargebee site: `Contacts`, `Accounts` and
/// `Deals` keyed by what identifies them, each with the fields that must match.
fn expected(stack: &Stack) -> BTreeMap<String, Value> {
    let site = stack.sandbox.chargebee.snapshot(&stack.chargebee_site);
    let mut expected = BTreeMap::new();
    for c in &site.customers {
        expected.insert(
            format!("contact {}", c.id),
            json!({"First_Name": c.first_name, "Last_Name": c.last_name, "Email": c.email,
                   "Account": c.company.clone().filter(|s| !s.is_empty())}),
        );
        if let Some(company) = c.company.clone().filter(|s| !s.is_empty()) {
            expected.insert(format!("account {company}"), json!({}));
        }
    }
    for s in &site.subscriptions {
        let stage = match s.status.as_str() {
            "active" | "non_renewing" => "Closed Won",
            "cancelled" => "Closed Lost",
            other => panic!("the workload makes no {other} subscriptions"),
        };
        expected.insert(
            format!("deal {}", s.id),
            json!({"Stage": stage, "Amount": s.mrr.unwrap_or(0) as f64 / 100.0,
                   "Contact": format!("cb-test/{}", s.customer_id)}),
        );
    }
    expected
}

/// What the organisation holds, in the shape of [`expected`].
fn held(snapshot: &ZohoSnapshot) -> BTreeMap<String, Value> {
    let mut held = BTreeMap::new();
    let name_of = |id: Option<&Value>, module: &[Value], field: &str| {
        id.and_then(|id| module.iter().find(|r| r.get("id") == Some(id)))
            .and_then(|r| r.get(field).cloned())
            .unwrap_or(Value::Null)
    };
    for c in &snapshot.contacts {
        let key = text(c, "Billsync_Customer_Id")
            .unwrap_or("?")
            .trim_start_matches("cb-test/");
        let previous = held.insert(
            format!("contact {key}"),
            json!({"First_Name": c["First_Name"], "Last_Name": c["Last_Name"], "Email": c["Email"],
                   "Account": name_of(c.pointer("/Account_Name/id"), &snapshot.accounts, "Account_Name")}),
        );
        assert!(previous.is_none(), "two contacts for customer {key}");
    }
    for a in &snapshot.accounts {
        let previous = held.insert(
            format!("account {}", text(a, "Account_Name").unwrap_or("?")),
            json!({}),
        );
        assert!(previous.is_none(), "two accounts named {a}");
    }
    for d in &snapshot.deals {
        let key = text(d, "Billsync_Subscription_Id").unwrap_or("?");
        let previous = held.insert(
            format!("deal {key}"),
            json!({"Stage": d["Stage"], "Amount": d["Amount"],
                   "Contact": name_of(d.pointer("/Contact_Name/id"), &snapshot.contacts, "Billsync_Customer_Id")}),
        );
        assert!(previous.is_none(), "two deals for subscription {key}");
    }
    held
}

async fn settled_as_expected(stack: &Stack, what: &str) -> ZohoSnapshot {
    eventually(what, Duration::from_secs(180), || async {
        if !stack.worker_idle_for("zoho-test").await {
            return None;
        }
        let snapshot = stack.sandbox.zoho.snapshot(&stack.zoho_org);
        (held(&snapshot) == expected(stack)).then_some(snapshot)
    })
    .await
}

/// Every record, without the time Zoho stamps on each write, and lookups by id only (the
/// emulator keeps the name a lookup had when it was written; Zoho shows the current one).
fn records(snapshot: &ZohoSnapshot) -> Vec<Value> {
    [&snapshot.contacts, &snapshot.accounts, &snapshot.deals]
        .into_iter()
        .flatten()
        .map(|record| {
            let mut record = record.clone();
            if let Some(fields) = record.as_object_mut() {
                fields.remove("Modified_Time");
                for value in fields.values_mut() {
                    if let Some(id) = value.get("id").cloned() {
                        *value = json!({ "id": id });
                    }
                }
            }
            record
        })
        .collect()
}

fn assert_same(now: &ZohoSnapshot, before: &ZohoSnapshot, after: &str) {
    let (now, before) = (records(now), records(before));
    let changed: Vec<_> = now.iter().filter(|r| !before.contains(r)).collect();
    assert!(
        now.len() == before.len() && changed.is_empty(),
        "{after} changed the organisation: {} records before, {} now; changed: {changed:?}",
        before.len(),
        now.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_twice_and_a_whole_replay_leave_the_organisation_as_expected() {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        zoho_sync: Some(String::new()),
        ..Default::default()
    })
    .await;
    workload(&stack, 20);
    let first = settled_as_expected(&stack, "the organisation as the site says").await;
    assert_eq!((first.contacts.len(), first.deals.len()), (20, 20));

    let copied = stack.redeliver_every_event().await;
    assert!(copied >= 70, "{copied} events delivered again");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = settled_as_expected(&stack, "the organisation unchanged after redelivery").await;
    assert_same(&again, &first, "delivering every event again");

    let replayed = stack.replay_whole_stream("zoho-test").await;
    assert!(replayed >= 70);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let replayed = settled_as_expected(&stack, "the organisation unchanged after replay").await;
    assert_same(&replayed, &first, "replaying the stream");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zoho_worker_killed_mid_run_leaves_the_expected_organisation_after_a_restart() {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        zoho_sync: Some(String::new()),
        worker_process: true,
        worker_service: "zoho",
        ..Default::default()
    })
    .await;
    workload(&stack, 60);
    eventually("the worker to write some deals", WAIT, || async {
        let snapshot = stack.sandbox.zoho.snapshot(&stack.zoho_org);
        (!snapshot.deals.is_empty()).then_some(())
    })
    .await;
    stack.kill_worker().await;
    let before = stack.sandbox.zoho.snapshot(&stack.zoho_org);
    assert!(
        held(&before) != expected(&stack),
        "the worker finished before it could be killed; the test proves nothing"
    );
    stack.start_worker();
    let after =
        settled_as_expected(&stack, "the organisation as the site says after a restart").await;
    assert_eq!((after.contacts.len(), after.deals.len()), (60, 60));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_is_one_failure_and_readiness_false_without_a_refresh_storm() {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        zoho_sync: Some(String::new()),
        ..Default::default()
    })
    .await;
    let ready = format!("{}/readyz", stack.zoho_ops_url);
    let status = |stack: &Stack| {
        let (http, ready) = (stack.http.clone(), ready.clone());
        async move {
            http.get(&ready)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    };
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(site, customer("cb_a", "a@example.com", "A", "One", ""))
        .expect("customer");
    crate::chargebee_to_zoho::zoho_when(&stack, "the first contact", |s| s.contacts.len() == 1)
        .await;
    assert_eq!(status(&stack).await, Some(200));

    stack.sandbox.zoho.revoke_refresh_token(&stack.zoho_org);
    for n in 0..5 {
        cb.create_customer(
            site,
            customer(
                &format!("cb_r{n}"),
                &format!("r{n}@example.com"),
                "R",
                "Two",
                "",
            ),
        )
        .expect("customer");
    }
    let failure =
        crate::operator_api::wait_failure(&stack, "open", "zoho-test", "customer/cb_r0").await;
    assert_eq!(failure["error_class"], "configuration", "{failure}");
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(message.contains("refresh token"), "{message}");
    assert!(
        !message.contains("1000.refresh"),
        "no secret in the message: {message}"
    );
    eventually("readiness false", WAIT, || async {
        (status(&stack).await == Some(503)).then_some(())
    })
    .await;
    eventually("every event settled", WAIT, || async {
        stack.worker_idle_for("zoho-test").await.then_some(())
    })
    .await;
    let tokens = stack.sandbox.zoho.snapshot(&stack.zoho_org).tokens;
    assert_eq!(
        tokens.refused, 1,
        "one refused refresh, not one per event: {tokens:?}"
    );
    assert_eq!(status(&stack).await, Some(503));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_credits_pause_the_connection_and_it_resumes_by_itself_without_failures() {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        zoho_sync: Some(String::new()),
        ..Default::default()
    })
    .await;
    let (zoho, org) = (&stack.sandbox.zoho, &stack.zoho_org);
    let get = |path: &str| {
        let (http, url) = (stack.http.clone(), format!("{}{path}", stack.zoho_ops_url));
        async move {
            let response = http.get(&url).send().await.ok()?;
            Some((response.status().as_u16(), response.text().await.ok()?))
        }
    };
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(site, customer("cb_a", "a@example.com", "A", "One", ""))
        .expect("customer");
    crate::chargebee_to_zoho::zoho_when(&stack, "the first contact", |s| s.contacts.len() == 1)
        .await;

    // The organisation's credits for the day are spent (other apps share them).
    let used = zoho.snapshot(org).credits_used;
    zoho.set_limits(org, used, 10);
    for n in 0..5 {
        cb.create_customer(
            site,
            customer(
                &format!("cb_p{n}"),
                &format!("p{n}@example.com"),
                "P",
                "Two",
                "",
            ),
        )
        .expect("customer");
    }
    eventually(
        "the connection paused: not ready, the gauge at 1",
        WAIT,
        || async {
            let (status, body) = get("/readyz").await?;
            let (_, metrics) = get("/metrics").await?;
            (status == 503
                && body.contains("paused")
                && metrics
                    .lines()
                    .any(|l| l.starts_with("billsync_destination_paused{") && l.ends_with(" 1")))
            .then_some(())
        },
    )
    .await;
    assert_eq!(zoho.snapshot(org).contacts.len(), 1);

    // Credits come back (the rolling day moves on): the connection resumes by itself.
    zoho.set_limits(org, 51_000, 10);
    let snapshot =
        crate::chargebee_to_zoho::zoho_when(&stack, "every contact", |s| s.contacts.len() == 6)
            .await;
    assert_eq!(snapshot.contacts.len(), 6);
    eventually("ready again", WAIT, || async {
        (get("/readyz").await?.0 == 200).then_some(())
    })
    .await;
    let failures = crate::operator_api::api_get(&stack, "/api/v1/failures").await;
    assert_eq!(
        failures["items"].as_array().map(|items| items
            .iter()
            .filter(|f| f["destination_connection"] == "zoho-test")
            .count()),
        Some(0),
        "no event failed for the pause: {failures}"
    );
    stack.stop().await;
}
