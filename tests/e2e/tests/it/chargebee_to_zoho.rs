//! Chargebee → Zoho CRM end to end (seed 003): changes in the emulated Chargebee site are
//! polled, published and written to the emulated Zoho CRM organisation — contacts,
//! accounts and deals asserted field by field, under each sync rule.

use crate::operator_api::wait_failure;
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::{CbCustomerInput, CbSubscriptionInput, ZohoSnapshot};
use serde_json::{json, Value};
use std::time::Duration;

pub const WAIT: Duration = Duration::from_secs(40);

pub async fn start(zoho_sync: &str) -> Stack {
    Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        zoho_sync: Some(zoho_sync.to_string()),
        ..Default::default()
    })
    .await
}

pub fn customer(id: &str, email: &str, first: &str, last: &str, company: &str) -> CbCustomerInput {
    let text = |s: &str| (!s.is_empty()).then(|| s.to_string());
    CbCustomerInput {
        id: Some(id.into()),
        first_name: text(first),
        last_name: text(last),
        email: text(email),
        company: text(company),
        ..Default::default()
    }
}

pub async fn zoho_when(
    stack: &Stack,
    what: &str,
    ready: impl Fn(&ZohoSnapshot) -> bool,
) -> ZohoSnapshot {
    eventually(what, WAIT, || async {
        let snapshot = stack.sandbox.zoho.snapshot(&stack.zoho_org);
        ready(&snapshot).then_some(snapshot)
    })
    .await
}

pub fn text<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record.get(field).and_then(Value::as_str)
}

fn lookup_id<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record
        .pointer(&format!("/{field}/id"))
        .and_then(Value::as_str)
}

fn today_of(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .expect("a time")
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_become_contacts_with_accounts_and_subscriptions_deals_kept_current() {
    let stack = start("[syncs.options]\ndeal_owner = \"patricia.b@zylker.example\"\n").await;
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    let mut ada = customer(
        "cb_ada",
        "ada@example.com",
        "Ada",
        "Lovelace",
        "Analytical Engines",
    );
    ada.phone = Some("+44 20 7946 0000".into());
    cb.create_customer(site, ada).expect("customer");
    let created = cb
        .create_subscription(
            site,
            "cb_ada",
            CbSubscriptionInput {
                id: Some("sub_ada".into()),
                plan_id: Some("pro-monthly".into()),
                status: Some("active".into()),
                mrr: Some(4_900),
                ..Default::default()
            },
        )
        .expect("subscription");
    let created_at = created.record.created_at;

    let snapshot = zoho_when(&stack, "the contact, its account and the deal", |s| {
        s.find("Deals", "Deal_Name", "sub_ada").is_some()
    })
    .await;
    assert_eq!(snapshot.contacts.len(), 1, "{:?}", snapshot.contacts);
    assert_eq!(snapshot.accounts.len(), 1, "{:?}", snapshot.accounts);
    let contact = snapshot
        .find("Contacts", "Email", "ada@example.com")
        .expect("contact");
    assert_eq!(text(contact, "First_Name"), Some("Ada"));
    assert_eq!(text(contact, "Last_Name"), Some("Lovelace"));
    assert_eq!(text(contact, "Phone"), Some("+44 20 7946 0000"));
    assert_eq!(
        text(contact, "Billsync_Customer_Id"),
        Some("cb-test/cb_ada")
    );
    let account = snapshot
        .find("Accounts", "Account_Name", "Analytical Engines")
        .expect("account");
    assert_eq!(lookup_id(contact, "Account_Name"), text(account, "id"));
    let deal = snapshot
        .find("Deals", "Deal_Name", "sub_ada")
        .expect("deal");
    assert_eq!(text(deal, "Billsync_Subscription_Id"), Some("sub_ada"));
    assert_eq!(text(deal, "Stage"), Some("Closed Won"));
    assert_eq!(text(deal, "Pipeline"), Some("Standard (Standard)"));
    assert_eq!(deal["Amount"], json!(49.0));
    assert_eq!(lookup_id(deal, "Contact_Name"), text(contact, "id"));
    assert_eq!(lookup_id(deal, "Account_Name"), text(account, "id"));
    assert_eq!(lookup_id(deal, "Owner"), Some("5725767000000411001"));
    assert_eq!(
        text(deal, "Closing_Date"),
        Some(today_of(created_at).as_str())
    );

    // Someone renames the deal in Zoho: billsync finds it by the subscription id, not by
    // its name, and leaves the name alone.
    let deal_id = text(deal, "id").expect("id").to_string();
    stack.sandbox.zoho.edit(
        &stack.zoho_org,
        "Deals",
        &deal_id,
        json!({"Deal_Name": "Ada's Analytical Engines renewal"}),
    );
    // Every change updates the one deal; non-renewing and cancelled take their stages.
    cb.update_subscription(
        site,
        "sub_ada",
        CbSubscriptionInput {
            status: Some("non_renewing".into()),
            mrr: Some(9_900),
            ..Default::default()
        },
    )
    .expect("update");
    let snapshot = zoho_when(&stack, "the deal's new amount", |s| {
        s.find("Deals", "Billsync_Subscription_Id", "sub_ada")
            .is_some_and(|d| d["Amount"] == json!(99.0))
    })
    .await;
    assert_eq!(snapshot.deals.len(), 1);
    assert_eq!(text(&snapshot.deals[0], "Stage"), Some("Closed Won"));
    assert_eq!(text(&snapshot.deals[0], "id"), Some(deal_id.as_str()));
    assert_eq!(
        text(&snapshot.deals[0], "Deal_Name"),
        Some("Ada's Analytical Engines renewal"),
        "the name people gave it stays"
    );
    cb.cancel_subscription(site, "sub_ada", Some("not_paid"))
        .expect("cancel");
    let snapshot = zoho_when(&stack, "the deal closed lost", |s| {
        s.deals
            .first()
            .is_some_and(|d| text(d, "Stage") == Some("Closed Lost"))
    })
    .await;
    assert_eq!(snapshot.deals.len(), 1, "{:?}", snapshot.deals);
    assert_eq!(snapshot.contacts.len(), 1);
    assert_eq!(snapshot.accounts.len(), 1);

    // The customer moves to another company: the contact and the deal follow its account.
    cb.update_customer(
        site,
        "cb_ada",
        CbCustomerInput {
            company: Some("Babbage & Co".into()),
            ..Default::default()
        },
    )
    .expect("update");
    let snapshot = zoho_when(&stack, "the deal on the new account", |s| {
        let account = s.find("Accounts", "Account_Name", "Babbage & Co");
        account.is_some_and(|a| {
            s.deals
                .first()
                .is_some_and(|d| lookup_id(d, "Account_Name") == text(a, "id"))
        })
    })
    .await;
    let account = snapshot
        .find("Accounts", "Account_Name", "Babbage & Co")
        .expect("account");
    assert_eq!(
        lookup_id(&snapshot.contacts[0], "Account_Name"),
        text(account, "id")
    );
    assert_eq!(
        text(&snapshot.deals[0], "Stage"),
        Some("Closed Lost"),
        "the rest of the deal stays"
    );
    assert_eq!(snapshot.deals.len(), 1);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_last_name_falls_back_to_first_name_company_email_and_id() {
    let stack = start("").await;
    // The default rule overwrites a contact that has the customer's email.
    stack.sandbox.zoho.insert(
        &stack.zoho_org,
        "Contacts",
        &[json!({"Last_Name": "Old", "First_Name": "Old", "Email": "first@example.com"})],
    );
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(
        site,
        customer("cb_first", "first@example.com", "Grace", "", ""),
    )
    .expect("customer");
    cb.create_customer(
        site,
        customer("cb_company", "company@example.com", "", "", "Initech"),
    )
    .expect("customer");
    cb.create_customer(
        site,
        customer("cb_email", "linus.t@example.com", "", "", ""),
    )
    .expect("customer");
    cb.create_customer(site, customer("cb_bare", "", "", "", ""))
        .expect("customer");
    let snapshot = zoho_when(&stack, "four contacts", |s| s.contacts.len() == 4).await;
    let last = |customer: &str| {
        snapshot
            .find(
                "Contacts",
                "Billsync_Customer_Id",
                &format!("cb-test/{customer}"),
            )
            .and_then(|c| text(c, "Last_Name"))
            .map(str::to_string)
    };
    assert_eq!(last("cb_first").as_deref(), Some("Grace"), "overwritten");
    let first = snapshot
        .find("Contacts", "Email", "first@example.com")
        .expect("contact");
    assert_eq!(text(first, "First_Name"), Some("Grace"));
    assert_eq!(last("cb_company").as_deref(), Some("Initech"));
    assert_eq!(last("cb_email").as_deref(), Some("linus.t"));
    assert_eq!(last("cb_bare").as_deref(), Some("cb_bare"));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_missing_update_blanks_and_leave_the_account_empty() {
    let stack = start(
        "[syncs.options]\non_missing_contact = \"skip\"\non_existing_contact = \"update_blanks\"\n\
         on_missing_account = \"leave_empty\"\nsync_deals = false\n",
    )
    .await;
    let zoho = &stack.sandbox.zoho;
    let org = &stack.zoho_org;
    let existing = zoho.insert(org, "Accounts", &[json!({"Account_Name": "Globex"})]);
    let globex = existing[0]["details"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    zoho.insert(
        org,
        "Contacts",
        &[
            json!({"Last_Name": "Keep", "First_Name": "Kept", "Email": "hank@example.com"}),
            json!({"Last_Name": "Other", "Email": "olga@example.com"}),
        ],
    );
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    let mut hank = customer("cb_hank", "hank@example.com", "Hank", "Scorpio", "Globex");
    hank.phone = Some("555-0100".into());
    cb.create_customer(site, hank).expect("customer");
    cb.create_customer(
        site,
        customer(
            "cb_olga",
            "olga@example.com",
            "Olga",
            "Ivanova",
            "Nowhere Inc",
        ),
    )
    .expect("customer");
    cb.create_customer(
        site,
        customer("cb_new", "new@example.com", "New", "Person", "Globex"),
    )
    .expect("customer");

    let snapshot = zoho_when(&stack, "the blanks of both contacts filled", |s| {
        s.find("Contacts", "Email", "hank@example.com")
            .is_some_and(|c| text(c, "Phone").is_some())
            && s.find("Contacts", "Email", "olga@example.com")
                .is_some_and(|c| text(c, "First_Name").is_some())
    })
    .await;
    let hank = snapshot
        .find("Contacts", "Email", "hank@example.com")
        .expect("hank");
    assert_eq!(text(hank, "Last_Name"), Some("Keep"), "not blank: kept");
    assert_eq!(text(hank, "First_Name"), Some("Kept"), "not blank: kept");
    assert_eq!(text(hank, "Phone"), Some("555-0100"), "blank: filled");
    assert_eq!(
        lookup_id(hank, "Account_Name"),
        Some(globex.as_str()),
        "the existing account"
    );
    let olga = snapshot
        .find("Contacts", "Email", "olga@example.com")
        .expect("olga");
    assert_eq!(text(olga, "Last_Name"), Some("Other"));
    assert_eq!(text(olga, "First_Name"), Some("Olga"));
    assert!(
        olga.get("Account_Name").is_none_or(Value::is_null),
        "no account created: {olga}"
    );
    assert_eq!(snapshot.accounts.len(), 1, "{:?}", snapshot.accounts);
    // cb_new has no contact in Zoho, and the sync skips those.
    eventually("the worker to settle", WAIT, || async {
        stack.worker_idle_for("zoho-test").await.then_some(())
    })
    .await;
    let snapshot = zoho.snapshot(org);
    assert!(snapshot
        .find("Contacts", "Email", "new@example.com")
        .is_none());
    assert_eq!(snapshot.contacts.len(), 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_existing_leaves_the_contact_and_a_missing_one_is_created() {
    let stack =
        start("[syncs.options]\non_existing_contact = \"skip\"\nsync_deals = false\n").await;
    let zoho = &stack.sandbox.zoho;
    let org = &stack.zoho_org;
    zoho.insert(
        org,
        "Contacts",
        &[json!({"Last_Name": "Untouched", "Email": "ivy@example.com"})],
    );
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(
        site,
        customer("cb_ivy", "ivy@example.com", "Ivy", "Walker", "Umbrella"),
    )
    .expect("customer");
    cb.create_customer(
        site,
        customer("cb_max", "max@example.com", "Max", "Power", ""),
    )
    .expect("customer");
    let snapshot = zoho_when(&stack, "the missing contact created", |s| {
        s.find("Contacts", "Email", "max@example.com").is_some()
    })
    .await;
    eventually("the worker to settle", WAIT, || async {
        stack.worker_idle_for("zoho-test").await.then_some(())
    })
    .await;
    let snapshot = {
        let _ = snapshot;
        zoho.snapshot(org)
    };
    let ivy = snapshot
        .find("Contacts", "Email", "ivy@example.com")
        .expect("ivy");
    assert_eq!(text(ivy, "Last_Name"), Some("Untouched"));
    assert!(ivy.get("First_Name").is_none(), "{ivy}");
    let max = snapshot
        .find("Contacts", "Email", "max@example.com")
        .expect("max");
    assert_eq!(text(max, "Last_Name"), Some("Power"));
    assert_eq!(snapshot.contacts.len(), 2);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_shared_by_two_zoho_contacts_is_a_sync_error_naming_both() {
    let stack = start("").await;
    let zoho = &stack.sandbox.zoho;
    let org = &stack.zoho_org;
    let twins = zoho.insert(
        org,
        "Contacts",
        &[
            json!({"Last_Name": "One", "Email": "twin@example.com"}),
            json!({"Last_Name": "Two", "Email": "twin@example.com"}),
        ],
    );
    let ids: Vec<String> = twins
        .iter()
        .map(|r| r["details"]["id"].as_str().expect("id").to_string())
        .collect();
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    cb.create_customer(
        site,
        customer("cb_twin", "twin@example.com", "Tw", "In", ""),
    )
    .expect("customer");
    cb.create_customer(
        site,
        customer("cb_solo", "solo@example.com", "So", "Lo", ""),
    )
    .expect("customer");
    let failure = wait_failure(&stack, "open", "zoho-test", "customer/cb_twin").await;
    let message = failure["message"].as_str().unwrap_or_default();
    for id in &ids {
        assert!(message.contains(id.as_str()), "{message} names {id}");
    }
    assert!(message.contains("twin@example.com"), "{message}");
    let snapshot = zoho_when(&stack, "the other customer's contact", |s| {
        s.find("Contacts", "Email", "solo@example.com").is_some()
    })
    .await;
    assert_eq!(
        snapshot.contacts.len(),
        3,
        "neither twin was changed nor a third added"
    );
    for twin in snapshot
        .contacts
        .iter()
        .filter(|c| text(c, "Email") == Some("twin@example.com"))
    {
        assert!(twin.get("First_Name").is_none(), "{twin}");
    }

    // Someone gives the second twin its own email in Zoho, and retries the sync error: the
    // customer's contact is now the one with its email, and the error is resolved.
    zoho.edit(
        org,
        "Contacts",
        &ids[1],
        json!({"Email": "twin.two@example.com"}),
    );
    crate::operator_api::api_post(
        &stack,
        &format!("/api/v1/failures/{}/retry", failure["id"]),
        json!({}),
    )
    .await;
    wait_failure(&stack, "resolved", "zoho-test", "customer/cb_twin").await;
    let snapshot = zoho_when(&stack, "the customer on the first twin", |s| {
        s.find("Contacts", "Email", "twin@example.com")
            .is_some_and(|c| text(c, "First_Name") == Some("Tw"))
    })
    .await;
    let contact = snapshot
        .find("Contacts", "Email", "twin@example.com")
        .expect("contact");
    assert_eq!(text(contact, "id"), Some(ids[0].as_str()));
    assert_eq!(
        text(contact, "Billsync_Customer_Id"),
        Some("cb-test/cb_twin")
    );
    assert_eq!(snapshot.contacts.len(), 3);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_record_fails_alone_and_an_expired_token_is_refreshed_once() {
    let stack = start("").await;
    let (cb, site) = (&stack.sandbox.chargebee, &stack.chargebee_site);
    // The worker's start-up calls (link fields, layouts, pipelines, users) are not the events'.
    let at_start = stack.sandbox.zoho.request_counts(&stack.zoho_org).accepted;
    // Created together, polled together, upserted in one call: Zoho refuses the bad email.
    for n in 0..5 {
        cb.create_customer(
            site,
            customer(
                &format!("cb_{n}"),
                &format!("p{n}@example.com"),
                "P",
                &format!("N{n}"),
                "",
            ),
        )
        .expect("customer");
    }
    cb.create_customer(site, customer("cb_bad", "not-an-email", "Bad", "Email", ""))
        .expect("customer");
    let failure = wait_failure(&stack, "open", "zoho-test", "customer/cb_bad").await;
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("INVALID_DATA") && message.contains("Email"),
        "{message}"
    );
    let snapshot = zoho_when(&stack, "the five good contacts", |s| s.contacts.len() == 5).await;
    let upserts = stack.sandbox.zoho.request_counts(&stack.zoho_org);
    assert!(snapshot.find("Contacts", "Last_Name", "Email").is_none());
    assert_eq!(snapshot.tokens.issued, 1, "one token for every call");
    assert!(
        upserts.accepted - at_start < 6,
        "six customers polled together share upserts, not one call each: {upserts:?}"
    );

    // The access token expires mid-run: the next write refreshes it once and goes through.
    stack.sandbox.zoho.expire_tokens(&stack.zoho_org);
    cb.update_customer(
        site,
        "cb_0",
        CbCustomerInput {
            first_name: Some("Renamed".into()),
            ..Default::default()
        },
    )
    .expect("update");
    let snapshot = zoho_when(&stack, "the renamed contact", |s| {
        s.find("Contacts", "Email", "p0@example.com")
            .is_some_and(|c| text(c, "First_Name") == Some("Renamed"))
    })
    .await;
    assert_eq!(snapshot.tokens.issued, 2, "one refresh after INVALID_TOKEN");
    assert_eq!(snapshot.tokens.refused, 0);
    eprintln!("API calls for 6 customers: {upserts:?}");
    stack.stop().await;
}

/// A Chargebee test site and a live one side by side, each into its own Zoho CRM
/// organisation: the same customer and subscription ids in both stay apart, each
/// organisation holding its own site's records only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_and_live_chargebee_sites_feed_separate_zoho_organisations() {
    let stack = Stack::start(StackOptions {
        chargebee_sync: Some(String::new()),
        zoho_sync: Some(String::new()),
        zoho_live_site: true,
        ..Default::default()
    })
    .await;
    let cb = &stack.sandbox.chargebee;
    let sites = [
        (&stack.chargebee_site, "tess@test.example", "Tess", 1_900),
        (&stack.chargebee_live_site, "liv@live.example", "Liv", 9_900),
    ];
    for (site, email, first, mrr) in sites {
        cb.create_customer(site, customer("cb_same", email, first, "Same", "Same Co"))
            .expect("customer");
        cb.create_subscription(
            site,
            "cb_same",
            CbSubscriptionInput {
                id: Some("sub_same".into()),
                plan_id: Some("pro-monthly".into()),
                status: Some("active".into()),
                mrr: Some(mrr),
                ..Default::default()
            },
        )
        .expect("subscription");
    }
    let organisation = |org: &str| {
        let (stack, org) = (&stack, org.to_string());
        async move {
            eventually(&format!("{org}'s contact and deal"), WAIT, || async {
                let snapshot = stack.sandbox.zoho.snapshot(&org);
                (snapshot.deals.len() == 1 && snapshot.contacts.len() == 1).then_some(snapshot)
            })
            .await
        }
    };
    let test = organisation(&stack.zoho_org).await;
    let live = organisation(&stack.zoho_live_org).await;
    for (snapshot, source, email, first, amount) in [
        (&test, "cb-test", "tess@test.example", "Tess", 19.0),
        (&live, "cb-live", "liv@live.example", "Liv", 99.0),
    ] {
        assert_eq!(snapshot.contacts.len(), 1, "{:?}", snapshot.contacts);
        assert_eq!(snapshot.accounts.len(), 1, "{:?}", snapshot.accounts);
        assert_eq!(snapshot.deals.len(), 1, "{:?}", snapshot.deals);
        let contact = &snapshot.contacts[0];
        assert_eq!(text(contact, "Email"), Some(email));
        assert_eq!(text(contact, "First_Name"), Some(first));
        assert_eq!(
            text(contact, "Billsync_Customer_Id"),
            Some(format!("{source}/cb_same").as_str())
        );
        let deal = &snapshot.deals[0];
        assert_eq!(text(deal, "Deal_Name"), Some("sub_same"));
        assert_eq!(deal["Amount"], json!(amount));
        assert_eq!(deal.pointer("/Contact_Name/id"), contact.get("id"));
        assert_eq!(
            deal.pointer("/Account_Name/id"),
            snapshot.accounts[0].get("id")
        );
    }
    // Each organisation had its own token and was called for its own site only.
    assert_eq!(test.tokens.issued, 1);
    assert_eq!(live.tokens.issued, 1);
    stack.stop().await;
}
