//! The chaos suite's short plan: the same faults as `make chaos` (every billsync replica,
//! a NATS node, the stream leader, PostgreSQL, CRM storms and latency, a cut-off node) on a
//! three-node JetStream cluster, with fewer events.

use billsync_e2e::chaos::{run, Plan};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_every_fault_nothing_is_lost_doubled_or_reordered() {
    let report = run(Plan::short()).await;
    println!("{}", report.render());
    assert!(report.passed(), "{}", report.render());
}
