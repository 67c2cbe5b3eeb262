//! Stripe → ActiveCampaign deep data (seed 001's Create Order / Create Recurring Payment /
//! Create Ecommerce Customer columns): webhooks through ingest, JetStream and the worker into
//! the emulated account's connections, e-commerce customers and orders, asserted field by
//! field; duplicates, late retries and a replay of the whole stream change nothing.

use billsync_e2e::workload::Clock;
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::activecampaign::{AcEcomCustomer, AcEcomOrder};
use billsync_sandbox::{stripe, AcSnapshot};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const EMAIL: &str = "ada.deep@example.com";

/// A charge shaped like `specs/stripe/fixtures3.json` (API 2024-04-10, with `invoice`).
fn charge(
    id: &str,
    customer: Option<&str>,
    amount: i64,
    refunded: i64,
    invoice: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "balance_transaction": format!("txn_{id}"),
        "billing_details": {
            "address": {"city": null, "country": null, "line1": null, "line2": null,
                "postal_code": null, "state": null},
            "email": EMAIL,
            "name": "Ada Deep",
            "phone": null
        },
        "calculated_statement_descriptor": "BILLSYNC SANDBOX",
        "captured": true,
        "created": 1_712_750_400,
        "currency": "usd",
        "customer": customer,
        "description": "Lifetime licence",
        "disputed": false,
        "invoice": invoice,
        "livemode": false,
        "metadata": {},
        "paid": true,
        "payment_intent": format!("pi_{id}"),
        "receipt_email": EMAIL,
        "receipt_number": null,
        "refunded": refunded >= amount,
        "status": "succeeded"
    })
}

fn invoice(id: &str, customer: &str, subscription: &str, amount_paid: i64) -> Value {
    json!({
        "id": id,
        "object": "invoice",
        "amount_due": amount_paid,
        "amount_paid": amount_paid,
        "amount_remaining": 0,
        "billing_reason": "subscription_cycle",
        "created": 1_712_836_800,
        "currency": "usd",
        "customer": customer,
        "customer_email": EMAIL,
        "customer_name": "Ada Deep",
        "hosted_invoice_url": format!("https://invoice.stripe.com/i/{id}"),
        "lines": {
            "object": "list",
            "data": [{
                "id": format!("il_{id}"),
                "object": "line_item",
                "amount": amount_paid,
                "currency": "usd",
                "description": "1 × Team (at $29.00 / month)",
                "price": {"id": "price_team", "object": "price", "unit_amount": amount_paid,
                    "nickname": "Team", "recurring": {"interval": "month", "interval_count": 1}},
                "quantity": 1,
                "subscription": subscription,
                "type": "subscription"
            }],
            "has_more": false
        },
        "livemode": false,
        "number": "DEEP-0001",
        "paid": true,
        "status": "paid",
        "subscription": subscription,
        "total_discount_amounts": [],
        "tax": null
    })
}

fn subscription(id: &str, customer: &str, status: &str, quantity: i64) -> Value {
    json!({
        "id": id,
        "object": "subscription",
        "created": 1_712_750_400,
        "currency": "usd",
        "customer": customer,
        "items": {
            "object": "list",
            "data": [{
                "id": "si_deep",
                "object": "subscription_item",
                "price": {"id": "price_team", "object": "price", "unit_amount": 2900,
                    "nickname": "Team", "product": "prod_team",
                    "recurring": {"interval": "month", "interval_count": 1}},
                "quantity": quantity,
                "subscription": id
            }],
            "has_more": false
        },
        "livemode": false,
        "status": status
    })
}

fn checkout_session(id: &str, customer: &str, payment_intent: &str) -> Value {
    json!({
        "id": id,
        "object": "checkout.session",
        "amount_subtotal": 1500,
        "amount_total": 1500,
        "consent": {"promotions": "opt_in", "terms_of_service": null},
        "created": 1_712_750_400,
        "currency": "eur",
        "customer": customer,
        "customer_details": {"email": EMAIL, "name": "Ada Deep", "phone": null},
        "customer_email": EMAIL,
        "invoice": null,
        "livemode": false,
        "mode": "payment",
        "payment_intent": payment_intent,
        "payment_status": "paid",
        "status": "complete",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0}
    })
}

async fn send(stack: &Stack, event: &Value) {
    let response = stack.send_stripe(event).await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
}

/// Sends `object` as a webhook event of `event_type`, created at the clock's next second.
async fn post(stack: &Stack, clock: &mut Clock, event_type: &str, object: Value) {
    send(stack, &clock.event(event_type, object)).await;
}

/// `customer.created` of customer `id`, Ada Deep at [`EMAIL`].
async fn ada_deep_signs_up(stack: &Stack, clock: &mut Clock, id: &str) {
    post(
        stack,
        clock,
        "customer.created",
        stripe::customer(id, EMAIL, "Ada Deep"),
    )
    .await;
}

/// The account's state once `done` holds and the worker has settled everything.
async fn settled(stack: &Stack, what: &str, done: impl Fn(&AcSnapshot) -> bool) -> AcSnapshot {
    eventually(what, WAIT, || async {
        let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
        (done(&snapshot) && stack.worker_idle_for("ac-test").await).then_some(snapshot)
    })
    .await
}

fn only_order<'a>(snapshot: &'a AcSnapshot, externalid: &str) -> &'a AcEcomOrder {
    let orders = snapshot.ecom_orders_with(externalid);
    assert_eq!(orders.len(), 1, "orders {externalid}: {orders:#?}");
    orders[0]
}

/// An order without what every write moves: write count, update stamps, product ids.
fn as_written(order: &AcEcomOrder) -> AcEcomOrder {
    let mut order = order.clone();
    order.writes = 0;
    order.updated_date.clear();
    order.external_updated_date = None;
    for product in &mut order.order_products {
        product.id.clear();
    }
    order
}

fn only_customer<'a>(snapshot: &'a AcSnapshot, externalid: &str) -> &'a AcEcomCustomer {
    let customers = snapshot.ecom_customers_with(externalid);
    assert_eq!(customers.len(), 1, "customers {externalid}: {customers:#?}");
    customers[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_payments_and_subscriptions_become_orders_once() {
    let stack = Stack::start(StackOptions::default()).await;
    let mut clock = Clock::new();
    ada_deep_signs_up(&stack, &mut clock, "cus_DEEP1").await;
    settled(&stack, "the e-commerce customer", |s| {
        s.ecom_customer("cus_DEEP1").is_some()
    })
    .await;

    // charge.succeeded: one order of the charge, on the customer's e-commerce customer.
    let succeeded = clock.event(
        "charge.succeeded",
        charge("ch_DEEP1", Some("cus_DEEP1"), 4900, 0, None),
    );
    send(&stack, &succeeded).await;
    let snapshot = settled(&stack, "the charge's order", |s| {
        s.ecom_order("ch_DEEP1").is_some()
    })
    .await;
    assert_eq!(snapshot.connections.len(), 1);
    let connection = snapshot
        .connection("stripe", "stripe-test")
        .expect("the Stripe connection");
    assert_eq!(connection.name, "Stripe (stripe-test) via billsync");
    assert_eq!(snapshot.ecom_customers.len(), 1);
    let customer = only_customer(&snapshot, "cus_DEEP1");
    assert_eq!(customer.email, EMAIL);
    assert_eq!(customer.connectionid, connection.id);
    assert_eq!(customer.accepts_marketing, "0");
    let order = only_order(&snapshot, "ch_DEEP1");
    assert_eq!(order.total_price, 4900);
    assert_eq!(order.currency, "USD");
    assert_eq!(order.email, EMAIL);
    assert_eq!(order.source, 1, "a live payment is a real-time order");
    assert_eq!(order.state, 1);
    assert_eq!(order.connectionid, connection.id);
    assert_eq!(order.customerid, customer.id);
    assert_eq!(
        order.external_created_date.as_deref(),
        Some("2024-04-10T12:00:00+00:00")
    );
    assert_eq!(
        order.order_url.as_deref(),
        Some("https://dashboard.stripe.com/test/payments/ch_DEEP1")
    );
    assert_eq!(order.order_products.len(), 1);
    let product = &order.order_products[0];
    assert_eq!(product.externalid, "ch_DEEP1");
    assert_eq!(product.name, "Lifetime licence");
    assert_eq!((product.price, product.quantity), (4900, 1));
    assert_eq!(product.category.as_deref(), Some("payment"));
    let contact = snapshot.contact_by_email(EMAIL).expect("contact");
    assert!(snapshot
        .tags_of(&contact.id)
        .contains(&"stripe-integration-charge.succeeded".to_string()));

    // The same webhook again (JetStream drops it) and as a late retry past the duplicate
    // window (the worker's version check drops it): no call, no second order.
    let requests = stack
        .sandbox
        .activecampaign
        .request_count(&stack.ac_account);
    let again = stack.send_stripe(&succeeded).await;
    let body: Value = again.json().await.expect("json");
    assert_eq!(body["duplicate"], true, "{body}");
    let publisher = billsync_bus::Publisher::new(stack.jetstream(), stack.topology(), WAIT);
    let first = stack
        .jetstream()
        .get_stream(stack.topology().events_stream())
        .await
        .expect("stream")
        .get_raw_message(stack.events_in_stream().await)
        .await
        .expect("the charge's message");
    publisher
        .publish(
            first.subject.to_string(),
            "late-retry-ch_DEEP1",
            first.payload,
            Default::default(),
        )
        .await
        .expect("republish");
    let snapshot = settled(&stack, "the late retry settled", |_| true).await;
    assert_eq!(snapshot.ecom_orders_with("ch_DEEP1").len(), 1);
    assert_eq!(
        stack
            .sandbox
            .activecampaign
            .request_count(&stack.ac_account),
        requests,
        "a duplicate made API calls"
    );

    // charge.refunded: the charge's order keeps what was not refunded.
    post(
        &stack,
        &mut clock,
        "charge.refunded",
        charge("ch_DEEP1", Some("cus_DEEP1"), 4900, 1500, None),
    )
    .await;
    let snapshot = settled(&stack, "the refunded total", |s| {
        s.ecom_order("ch_DEEP1")
            .is_some_and(|o| o.total_price == 3400)
    })
    .await;
    let order = only_order(&snapshot, "ch_DEEP1");
    assert_eq!(
        order.order_products[0].price, 4900,
        "products keep their price"
    );
    assert_eq!(order.source, 1);

    // invoice.payment_succeeded: an order of the invoice with its lines; the invoice's own
    // charge is the same purchase and records none, and its refund lowers the invoice's.
    post(
        &stack,
        &mut clock,
        "charge.succeeded",
        charge("ch_DEEP2", Some("cus_DEEP1"), 2900, 0, Some("in_DEEP1")),
    )
    .await;
    post(
        &stack,
        &mut clock,
        "invoice.payment_succeeded",
        invoice("in_DEEP1", "cus_DEEP1", "sub_DEEP1", 2900),
    )
    .await;
    let snapshot = settled(&stack, "the invoice's order", |s| {
        s.ecom_order("in_DEEP1").is_some()
    })
    .await;
    assert!(
        snapshot.ecom_order("ch_DEEP2").is_none(),
        "an invoice's charge must not count the purchase twice"
    );
    let order = only_order(&snapshot, "in_DEEP1");
    assert_eq!(order.total_price, 2900);
    assert_eq!(order.currency, "USD");
    assert_eq!(order.source, 1);
    assert_eq!(order.email, EMAIL);
    assert_eq!(order.customerid, customer.id);
    assert_eq!(order.order_number.as_deref(), Some("DEEP-0001"));
    assert_eq!(
        order.order_url.as_deref(),
        Some("https://invoice.stripe.com/i/in_DEEP1")
    );
    assert_eq!(order.order_products.len(), 1);
    let line = &order.order_products[0];
    assert_eq!(line.externalid, "price_team");
    assert_eq!(line.name, "1 × Team (at $29.00 / month)");
    assert_eq!((line.price, line.quantity), (2900, 1));
    assert_eq!(line.category.as_deref(), Some("subscription"));
    post(
        &stack,
        &mut clock,
        "charge.refunded",
        charge("ch_DEEP2", Some("cus_DEEP1"), 2900, 2900, Some("in_DEEP1")),
    )
    .await;
    let snapshot = settled(&stack, "the invoice refunded through its charge", |s| {
        s.ecom_order("in_DEEP1").is_some_and(|o| o.total_price == 0)
    })
    .await;
    assert!(snapshot.ecom_order("ch_DEEP2").is_none());

    // A checkout session paid by a payment intent: its charge records the purchase.
    post(
        &stack,
        &mut clock,
        "checkout.session.async_payment_succeeded",
        checkout_session("cs_DEEP1", "cus_DEEP1", "pi_DEEP3"),
    )
    .await;

    // Subscription events: one recurring payment record, updated by each event.
    post(
        &stack,
        &mut clock,
        "customer.subscription.created",
        subscription("sub_DEEP1", "cus_DEEP1", "active", 2),
    )
    .await;
    let snapshot = settled(&stack, "the subscription's record", |s| {
        s.ecom_order("sub_DEEP1").is_some()
    })
    .await;
    assert!(snapshot.ecom_order("cs_DEEP1").is_none());
    let record = only_order(&snapshot, "sub_DEEP1");
    assert_eq!(
        record.source, 0,
        "no purchase and no revenue: its invoices bring those"
    );
    assert_eq!(record.total_price, 5800, "one period: 2 × 29.00");
    assert_eq!(record.currency, "USD");
    assert_eq!(record.customerid, customer.id);
    assert_eq!(record.order_number.as_deref(), Some("sub_DEEP1"));
    assert_eq!(record.order_products.len(), 1);
    let item = &record.order_products[0];
    assert_eq!(item.externalid, "price_team");
    assert_eq!(item.name, "Team");
    assert_eq!((item.price, item.quantity), (2900, 2));
    assert_eq!(item.category.as_deref(), Some("subscription"));
    assert_eq!(item.description.as_deref(), Some("active, every month"));
    let mut tags = snapshot.tags_of(&contact.id);
    tags.sort();
    assert!(tags.contains(&"stripe-integration-Billing_Subscription_Events".to_string()));

    post(
        &stack,
        &mut clock,
        "customer.subscription.updated",
        subscription("sub_DEEP1", "cus_DEEP1", "active", 3),
    )
    .await;
    settled(&stack, "the subscription's new quantity", |s| {
        s.ecom_order("sub_DEEP1")
            .is_some_and(|o| o.total_price == 8700)
    })
    .await;
    post(
        &stack,
        &mut clock,
        "customer.subscription.deleted",
        subscription("sub_DEEP1", "cus_DEEP1", "canceled", 3),
    )
    .await;
    let before = settled(&stack, "the ended subscription", |s| {
        s.ecom_order("sub_DEEP1")
            .is_some_and(|o| o.total_price == 0)
    })
    .await;
    // Created, then updated twice; the charge's order: created, refunded.
    assert_eq!(only_order(&before, "sub_DEEP1").writes, 3);
    assert_eq!(only_order(&before, "ch_DEEP1").writes, 2);
    let ended = only_order(&before, "sub_DEEP1");
    assert_eq!(
        ended.order_products[0].description.as_deref(),
        Some("canceled, every month")
    );

    // Replaying the whole stream re-applies each record's newest event (the operator is
    // repairing the CRM) and never an older one: each order is written exactly once more,
    // with what it already had. Every order, customer and connection is as it was, but for
    // the write counts and stamps of those writes.
    assert_eq!(stack.replay_whole_stream("ac-test").await, 11);
    // Idle consumers alone can be read before the replayed messages count as pending (a
    // loaded server): wait for every order's write too, then check it was only one.
    let after = settled(&stack, "the replay settled", |s| {
        before.ecom_orders.iter().all(|was| {
            s.ecom_orders
                .iter()
                .any(|is| is.id == was.id && is.writes > was.writes)
        })
    })
    .await;
    assert_eq!(after.connections, before.connections);
    assert_eq!(after.ecom_customers, before.ecom_customers);
    assert_eq!(after.ecom_orders.len(), 3, "{:#?}", after.ecom_orders);
    for (was, is) in before.ecom_orders.iter().zip(&after.ecom_orders) {
        assert_eq!(
            is.writes,
            was.writes + 1,
            "{:?} written again once",
            is.externalid
        );
        assert_eq!(
            as_written(is),
            as_written(was),
            "{:?} unchanged",
            is.externalid
        );
    }
    assert_eq!(after.contacts.len(), 1);
    assert_eq!(after.contact_tags.len(), before.contact_tags.len());

    // Every event delivered a second time (under new message ids, as after a lost ack)
    // changes nothing and costs no API call: the account is exactly as it was.
    let calls = stack
        .sandbox
        .activecampaign
        .request_count(&stack.ac_account);
    assert_eq!(stack.redeliver_every_event().await, 11);
    let again = eventually("the redeliveries settled", WAIT, || async {
        (stack.worker_idle_for("ac-test").await && stack.events_in_stream().await == 22)
            .then(|| stack.sandbox.activecampaign.snapshot(&stack.ac_account))
    })
    .await;
    assert_eq!(
        serde_json::to_value(&again).expect("snapshot"),
        serde_json::to_value(&after).expect("snapshot"),
        "a second delivery of every event changed the account"
    );
    assert_eq!(
        stack
            .sandbox
            .activecampaign
            .request_count(&stack.ac_account),
        calls
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_session_records_its_order_when_no_charge_does() {
    // This sync takes customers and checkout sessions only: the session is the purchase.
    let stack = Stack::start(StackOptions {
        extra_config: "resources = [\"customer\", \"checkout_session\"]".into(),
        ..StackOptions::default()
    })
    .await;
    let mut clock = Clock::new();
    ada_deep_signs_up(&stack, &mut clock, "cus_DEEP2").await;
    let session = clock.event(
        "checkout.session.async_payment_succeeded",
        checkout_session("cs_DEEP2", "cus_DEEP2", "pi_DEEP2"),
    );
    send(&stack, &session).await;
    // Its charge is not part of this sync: the worker skips it.
    post(
        &stack,
        &mut clock,
        "charge.succeeded",
        charge("ch_DEEP3", Some("cus_DEEP2"), 1500, 0, None),
    )
    .await;
    let snapshot = settled(&stack, "the session's order", |s| {
        s.ecom_order("cs_DEEP2").is_some()
    })
    .await;
    assert!(snapshot.ecom_order("ch_DEEP3").is_none());
    let customer = only_customer(&snapshot, "cus_DEEP2");
    assert_eq!(
        customer.accepts_marketing, "1",
        "checkout's promotions consent"
    );
    let order = only_order(&snapshot, "cs_DEEP2");
    assert_eq!(order.total_price, 1500);
    assert_eq!(order.currency, "EUR");
    assert_eq!(order.email, EMAIL);
    assert_eq!(order.source, 1);
    assert_eq!(order.customerid, customer.id);
    assert_eq!(
        order.order_url.as_deref(),
        Some("https://dashboard.stripe.com/test/checkout/sessions/cs_DEEP2")
    );
    assert_eq!(order.order_products.len(), 1);
    assert_eq!(order.order_products[0].name, "Checkout");
    assert_eq!(order.order_products[0].price, 1500);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_data_can_be_switched_off() {
    let stack = Stack::start(StackOptions {
        extra_config: "[syncs.options]\ndeep_data = false".into(),
        ..StackOptions::default()
    })
    .await;
    let mut clock = Clock::new();
    ada_deep_signs_up(&stack, &mut clock, "cus_DEEP4").await;
    post(
        &stack,
        &mut clock,
        "charge.succeeded",
        charge("ch_DEEP4", Some("cus_DEEP4"), 4900, 0, None),
    )
    .await;
    let snapshot = settled(&stack, "the charge's contact and tags", |s| {
        s.contact_by_email(EMAIL)
            .is_some_and(|c| s.tags_of(&c.id).len() == 3)
    })
    .await;
    assert!(snapshot.connections.is_empty());
    assert!(snapshot.ecom_customers.is_empty());
    assert!(snapshot.ecom_orders.is_empty());
    stack.stop().await;
}

/// API calls per event, exactly: a `contact/sync` only when the contact's data changed, a
/// `contactTags` per tag the contact does not have yet, one create (no lookup) for a new
/// e-commerce record, one update for a changed one, and none for anything unchanged. A tag
/// the process meets for the first time costs a lookup and a create once; those are counted
/// apart. Printed as a table (`--nocapture`) for the calls-per-event figures of the
/// benchmark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_data_costs_few_api_calls_per_event() {
    let stack = Stack::start(StackOptions::default()).await;
    let mut clock = Clock::new();
    let mut table = vec![format!("{:<50} {:>5} {:>9}", "event", "calls", "new tags")];
    let mut measure = async |label: &str, event: Value, expected: u64| {
        let account = &stack.ac_account;
        let before = stack.sandbox.activecampaign.request_count(account);
        let tags_before = stack.sandbox.activecampaign.snapshot(account).tags.len();
        send(&stack, &event).await;
        // The event is in the stream once the webhook is answered; wait for the worker.
        eventually(label, WAIT, || async {
            stack.worker_idle_for("ac-test").await.then_some(())
        })
        .await;
        let calls = stack.sandbox.activecampaign.request_count(account) - before;
        let new_tags =
            (stack.sandbox.activecampaign.snapshot(account).tags.len() - tags_before) as u64;
        let steady = calls - 2 * new_tags;
        table.push(format!("{label:<50} {steady:>5} {new_tags:>9}"));
        assert_eq!(
            steady, expected,
            "{label}: {steady} calls (besides {new_tags} new tags), expected {expected}"
        );
    };
    // The first event of the process also finds (here: creates) the Stripe connection.
    measure(
        "customer.created (first: + connection)",
        clock.event(
            "customer.created",
            stripe::customer("cus_CALLS0", "calls0@example.com", "Warm Up"),
        ),
        6,
    )
    .await;
    measure(
        "customer.created (new e-commerce customer)",
        clock.event(
            "customer.created",
            stripe::customer("cus_CALLS1", EMAIL, "Ada Deep"),
        ),
        4,
    )
    .await;
    measure(
        "customer.updated (e-commerce customer as is)",
        clock.event(
            "customer.updated",
            stripe::customer("cus_CALLS1", EMAIL, "Ada Deeper"),
        ),
        2,
    )
    .await;
    measure(
        "charge.succeeded (new order)",
        clock.event(
            "charge.succeeded",
            charge("ch_CALLS1", Some("cus_CALLS1"), 4900, 0, None),
        ),
        3,
    )
    .await;
    measure(
        "charge.refunded (order updated)",
        clock.event(
            "charge.refunded",
            charge("ch_CALLS1", Some("cus_CALLS1"), 4900, 900, None),
        ),
        2,
    )
    .await;
    measure(
        "charge.succeeded of an invoice (no order)",
        clock.event(
            "charge.succeeded",
            charge("ch_CALLS2", Some("cus_CALLS1"), 2900, 0, Some("in_CALLS1")),
        ),
        0,
    )
    .await;
    measure(
        "invoice.payment_succeeded (new order)",
        clock.event(
            "invoice.payment_succeeded",
            invoice("in_CALLS1", "cus_CALLS1", "sub_CALLS1", 2900),
        ),
        2,
    )
    .await;
    measure(
        "charge.refunded of an invoice (its order updated)",
        clock.event(
            "charge.refunded",
            charge(
                "ch_CALLS2",
                Some("cus_CALLS1"),
                2900,
                2900,
                Some("in_CALLS1"),
            ),
        ),
        1,
    )
    .await;
    measure(
        "customer.subscription.created (new record)",
        clock.event(
            "customer.subscription.created",
            subscription("sub_CALLS1", "cus_CALLS1", "active", 1),
        ),
        3,
    )
    .await;
    measure(
        "customer.subscription.updated (record updated)",
        clock.event(
            "customer.subscription.updated",
            subscription("sub_CALLS1", "cus_CALLS1", "past_due", 1),
        ),
        2,
    )
    .await;
    measure(
        "customer.subscription.updated (nothing changed)",
        clock.event(
            "customer.subscription.updated",
            subscription("sub_CALLS1", "cus_CALLS1", "past_due", 1),
        ),
        0,
    )
    .await;
    eprintln!("API calls per event:\n{}", table.join("\n"));
    stack.stop().await;
}

/// Deletes `/{what}/{id}` in the emulated account, as someone in ActiveCampaign's UI would.
async fn delete_in_ac(stack: &Stack, what: &str, id: &str) {
    let response = stack
        .http
        .delete(format!(
            "{}/api/3/{what}/{id}",
            stack.sandbox.activecampaign_base_url(&stack.ac_account)
        ))
        .header("Api-Token", &stack.ac_token)
        .send()
        .await
        .expect("delete");
    assert!(response.status().is_success(), "{}", response.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_or_customer_deleted_in_activecampaign_is_created_again() {
    let stack = Stack::start(StackOptions::default()).await;
    let mut clock = Clock::new();
    ada_deep_signs_up(&stack, &mut clock, "cus_GONE").await;
    post(
        &stack,
        &mut clock,
        "charge.succeeded",
        charge("ch_GONE1", Some("cus_GONE"), 1000, 0, None),
    )
    .await;
    let first = settled(&stack, "the first order", |s| {
        s.ecom_order("ch_GONE1").is_some()
    })
    .await;
    let connection = first.connections[0].id.clone();

    // Someone removes the store from ActiveCampaign: its customers and orders go with it.
    delete_in_ac(&stack, "connections", &connection).await;
    post(
        &stack,
        &mut clock,
        "charge.succeeded",
        charge("ch_GONE2", Some("cus_GONE"), 2000, 0, None),
    )
    .await;
    let after = settled(&stack, "the next order, under a new connection", |s| {
        s.ecom_order("ch_GONE2").is_some()
    })
    .await;
    assert_eq!(after.connections.len(), 1, "{:#?}", after.connections);
    assert_ne!(after.connections[0].id, connection);
    assert_eq!(after.ecom_customers.len(), 1, "{:#?}", after.ecom_customers);
    let customer = after.ecom_customers[0].clone();
    assert_eq!(
        (customer.connectionid.as_str(), customer.externalid.as_str()),
        (after.connections[0].id.as_str(), "cus_GONE")
    );
    assert_eq!(
        after.ecom_order("ch_GONE2").expect("order").customerid,
        customer.id
    );

    // Someone deletes the e-commerce customer; the customer's email changes next.
    delete_in_ac(&stack, "ecomCustomers", &customer.id).await;
    post(
        &stack,
        &mut clock,
        "customer.updated",
        stripe::customer("cus_GONE", "ada.moved@example.com", "Ada Deep"),
    )
    .await;
    let last = settled(&stack, "the e-commerce customer again", |s| {
        s.ecom_customers.len() == 1
    })
    .await;
    assert_eq!(last.ecom_customers[0].email, "ada.moved@example.com");
    assert_ne!(last.ecom_customers[0].id, customer.id);

    let pool = sqlx::PgPool::connect(&stack.db.url).await.expect("db");
    let failures: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_failures")
        .fetch_one(&pool)
        .await
        .expect("count failures");
    assert_eq!(failures, 0, "nothing for an operator to do");
    pool.close().await;
    stack.stop().await;
}
