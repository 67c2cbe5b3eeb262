//! The runtime conformance suite (`billsync_worker::conformance`) with the Pipedrive
//! destination underneath, writing to the sandbox's emulated company: what the CRM shows is
//! read back from the person's name.
//!
//! Pipedrive's destination has no per-event effects (the seed asks for none: persons,
//! organizations and deals show state), so the check that late events apply their effects
//! once has nothing to observe and is not run; every other check is.

use billsync_config::Config;
use billsync_pipedrive::PipedriveDestination;
use billsync_sandbox::{PdCompany, RunningSandbox, SandboxConfig};
use billsync_worker::conformance::{self, position_in, Subject};
use billsync_worker::DestinationStores;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct PipedriveSubject {
    sandbox: RunningSandbox,
    company: PdCompany,
    secrets: tempfile::TempDir,
}

async fn pipedrive() -> PipedriveSubject {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let company = PdCompany::new("conformance", "conformance-token");
    sandbox.pipedrive.add_company(company.clone());
    let secrets = tempfile::tempdir().expect("a temp dir");
    std::fs::write(secrets.path().join("token"), &company.api_token).expect("token");
    PipedriveSubject {
        sandbox,
        company,
        secrets,
    }
}

impl Subject for PipedriveSubject {
    type Crm = PipedriveDestination;

    fn destination_toml(&self, name: &str, _: &Path) -> String {
        format!(
            r#"[[destinations.pipedrive]]
name = "{name}"
base_url = "{base}"
api_token = {{ file = "{dir}/token" }}
"#,
            base = self.sandbox.pipedrive.base_url(&self.company.name),
            dir = self.secrets.path().display(),
        )
    }

    fn build(&self, config: &Arc<Config>, stores: &DestinationStores) -> PipedriveDestination {
        // The suite opens the links and rate-limit buckets; the token ledger's key is the
        // same as the rate limiter's, so it goes in the links bucket here, where no record
        // key can meet it.
        PipedriveDestination::new(
            config,
            &config.destinations.pipedrive[0],
            stores.links.clone(),
            stores.rate_limits.clone(),
            stores.links.clone(),
            Duration::from_secs(10),
        )
        .expect("the Pipedrive destination")
    }

    async fn shown(&self, customer: &str) -> Option<i64> {
        let email = format!("{customer}@example.com");
        let snapshot = self.sandbox.pipedrive.snapshot(&self.company.name);
        let persons = snapshot.persons_with_email(&email);
        position_in(persons.first()?["name"].as_str()?)
    }

    async fn effects(&self, customer: &str) -> Vec<String> {
        // No per-event effects; notes would be them, and none are written.
        let snapshot = self.sandbox.pipedrive.snapshot(&self.company.name);
        let person = snapshot
            .persons_with_email(&format!("{customer}@example.com"))
            .first()
            .and_then(|p| p["id"].as_u64());
        snapshot
            .notes
            .iter()
            .filter(|n| n.person_id.is_some() && n.person_id == person)
            .map(|n| n.content.clone())
            .collect()
    }
}

macro_rules! checks {
    ($($check:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                conformance::$check(pipedrive().await).await;
            }
        )+
    };
}

checks!(
    order_per_record,
    ignored_records_wait_for_a_modification,
    retries_honour_retry_after_and_refusals_fail_once,
    two_replicas_keep_one_writer_per_record,
    queued_events_are_never_redelivered,
    shutdown_finishes_started_events_and_hands_back_the_rest,
    unreadable_messages_become_failures,
    events_without_a_sync_here_wait_then_fail_visibly
);

// 40 new customers at 10 requests/s, about three calls each (search, create, fields once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_completes_in_arrival_order() {
    conformance::a_backlog_completes_in_arrival_order(pipedrive().await, 40).await;
}
