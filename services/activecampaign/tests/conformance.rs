//! The runtime conformance suite (`billsync_worker::conformance`) with the ActiveCampaign
//! destination underneath, writing to the sandbox's emulated account: what the CRM shows is
//! read back from the account, and per-event effects are its tracked events.

use billsync_activecampaign::ActiveCampaignDestination;
use billsync_config::Config;
use billsync_sandbox::{AcAccount, RunningSandbox, SandboxConfig};
use billsync_worker::conformance::{position_in, Subject};
use billsync_worker::DestinationStores;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

struct ActiveCampaignSubject {
    sandbox: RunningSandbox,
    account: AcAccount,
    /// The API token and event key, as the configuration reads them.
    secrets: tempfile::TempDir,
}

async fn activecampaign() -> ActiveCampaignSubject {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let account = AcAccount::new("conformance", "conformance-token");
    sandbox.activecampaign.add_account(account.clone());
    let secrets = tempfile::tempdir().expect("a temp dir");
    std::fs::write(secrets.path().join("token"), &account.api_token).expect("token");
    std::fs::write(secrets.path().join("event-key"), &account.event_key).expect("key");
    ActiveCampaignSubject {
        sandbox,
        account,
        secrets,
    }
}

impl Subject for ActiveCampaignSubject {
    type Crm = ActiveCampaignDestination;

    fn destination_toml(&self, name: &str, _: &Path) -> String {
        format!(
            r#"[[destinations.activecampaign]]
name = "{name}"
base_url = "{base}"
api_token = {{ file = "{dir}/token" }}
event_key = {{ file = "{dir}/event-key" }}
"#,
            base = self.sandbox.activecampaign_base_url(&self.account.name),
            dir = self.secrets.path().display(),
        )
    }

    fn sync_toml(&self) -> String {
        format!(
            "[syncs.options]\ndeep_data = false\ntrack_events = true\ntrack_actid = \"{}\"\ntrack_url = \"{}\"\n",
            self.account.event_actid,
            self.sandbox
                .activecampaign
                .tracking_base_url(&self.account.name),
        )
    }

    fn build(&self, config: &Arc<Config>, stores: &DestinationStores) -> ActiveCampaignDestination {
        ActiveCampaignDestination::new(
            config,
            &config.destinations.activecampaign[0],
            stores.links.clone(),
            stores.rate_limits.clone(),
            Duration::from_secs(10),
        )
        .expect("the ActiveCampaign destination")
    }

    async fn shown(&self, customer: &str) -> Option<i64> {
        let email = format!("{customer}@example.com");
        let snapshot = self.sandbox.activecampaign.snapshot(&self.account.name);
        let contact = snapshot.contacts.iter().find(|c| c.email == email)?;
        position_in(&contact.last_name)
    }

    async fn effects(&self, customer: &str) -> Vec<String> {
        let email = format!("{customer}@example.com");
        let snapshot = self.sandbox.activecampaign.snapshot(&self.account.name);
        snapshot
            .tracked_events
            .iter()
            .filter(|t| t.email == email)
            .filter_map(|t| t.eventdata.clone())
            .collect()
    }
}

// 4,000 new customers at 5 requests/s: 250 at a time share a bulk import (about four calls),
// so the backlog completes in some sixteen rounds, each event within seconds of its start.
billsync_worker::conformance_tests!(activecampaign(), backlog = 4000);
