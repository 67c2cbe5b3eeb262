//! SIGKILL of the ActiveCampaign worker in the middle of a run: the worker runs as its own
//! `billsync activecampaign` process, is killed with half the events unsettled (some of them
//! half-written: a contact synced but not yet tagged, an order created but not yet
//! remembered), and started again. Afterwards the account holds exactly what the events
//! describe — no contact, tag, e-commerce customer or order missing or doubled, and none
//! older than it should be (every event of a customer carries one `created` second, so only
//! stream order ranks them). Events the dead worker held come back after `ack_wait`; whether
//! they then arrive behind later events of their customer depends on timing, so that case is
//! pinned down deterministically in
//! `stripe_to_activecampaign::an_older_event_of_another_object_does_not_overwrite_the_contact`
//! and the `billsync-events` version tests.
//! `make bench-activecampaign` does the same at 1,000 customers and AC's real rate.

use billsync_e2e::workload;
use billsync_e2e::{eventually, Stack, StackOptions};
use std::time::Duration;

const CUSTOMERS: usize = 30;
const EVENTS_PER_CUSTOMER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_leaves_exactly_the_expected_state_after_a_restart() {
    let stack = Stack::start(StackOptions {
        ac_requests_per_second: 40,
        worker_process: true,
        worker_max_in_flight: 16,
        ..StackOptions::default()
    })
    .await;
    let total = (CUSTOMERS * EVENTS_PER_CUSTOMER) as u64;
    workload::send(&stack, CUSTOMERS, EVENTS_PER_CUSTOMER).await;

    let calls_before_kill = eventually(
        "the worker to settle a third of the events",
        Duration::from_secs(120),
        || async {
            let backlog = stack.worker_backlog().await?;
            (backlog <= total * 2 / 3).then(|| {
                stack
                    .sandbox
                    .activecampaign
                    .request_count(&stack.ac_account)
            })
        },
    )
    .await;
    stack.kill_worker().await;
    let backlog = stack.worker_backlog().await.expect("consumer");
    assert!(
        backlog > 0,
        "the worker finished before it could be killed; the test proves nothing"
    );
    eprintln!("worker SIGKILLed with {backlog} of {total} events unsettled after {calls_before_kill} API calls");
    stack.start_worker();

    let differences = workload::settle_and_compare(
        &stack,
        CUSTOMERS,
        EVENTS_PER_CUSTOMER,
        Duration::from_secs(180),
    )
    .await;
    assert!(
        differences.is_empty(),
        "killed with {backlog} of {total} events unsettled after {calls_before_kill} API calls; \
         the account differs:\n{}",
        differences.join("\n")
    );
    stack.stop().await;
}
