//! Replicas of the ActiveCampaign worker share one durable consumer, so JetStream hands
//! events of one customer to both. Each still takes effect in order and exactly once: a
//! replica claims the customer's records in KV for the length of its write, and tells
//! JetStream it is still working while it waits (for that claim, a rate-limit slot or a
//! slow CRM), so nothing is handed to a second replica meanwhile.

use billsync_e2e::workload::{self, event_for};
use billsync_e2e::{eventually, Stack, StackOptions};
use billsync_sandbox::activecampaign::AcFaults;
use std::time::Duration;

const CUSTOMERS: usize = 30;
const EVENTS_PER_CUSTOMER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_apply_each_customers_events_in_order() {
    let stack = Stack::start(StackOptions {
        ac_requests_per_second: 100,
        worker_replicas: 2,
        worker_max_in_flight: 64,
        ..StackOptions::default()
    })
    .await;
    // A CRM that answers in 15 ms keeps writes of both replicas in flight at once.
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            latency_ms: 15,
            ..AcFaults::default()
        },
    );
    // Every event of a customer carries one `created` second: only stream order ranks them.
    workload::send(&stack, CUSTOMERS, EVENTS_PER_CUSTOMER).await;
    let differences = workload::settle_and_compare(
        &stack,
        CUSTOMERS,
        EVENTS_PER_CUSTOMER,
        Duration::from_secs(240),
    )
    .await;
    assert!(
        differences.is_empty(),
        "with two replicas the account differs from what the events describe:\n{}",
        differences.join("\n")
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_longer_than_ack_wait_is_not_handed_out_again() {
    // ack_wait is 10 s in the stack; a new customer takes 4 requests of 4 s each.
    let stack = Stack::start(StackOptions {
        worker_replicas: 2,
        ..StackOptions::default()
    })
    .await;
    stack.sandbox.activecampaign.set_faults(
        &stack.ac_account,
        AcFaults {
            latency_ms: 4_000,
            ..AcFaults::default()
        },
    );
    let response = stack.send_stripe(&event_for(0, 0)).await;
    assert!(response.status().is_success(), "{}", response.status());
    eventually(
        "the slow write to finish",
        Duration::from_secs(90),
        || async { stack.worker_idle().await.then_some(()) },
    )
    .await;

    let topology = stack.topology();
    let mut consumer = stack
        .jetstream()
        .get_stream(topology.events_stream())
        .await
        .expect("events stream")
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(
            &topology.worker_consumer("ac-test"),
        )
        .await
        .expect("worker consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!(
        info.delivered.consumer_sequence, 1,
        "the event was delivered {} times; JetStream redelivered it while a replica was still \
         writing it",
        info.delivered.consumer_sequence
    );
    let snapshot = stack.sandbox.activecampaign.snapshot(&stack.ac_account);
    assert_eq!(snapshot.contacts.len(), 1);
    stack.stop().await;
}
