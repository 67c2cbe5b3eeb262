//! The runtime conformance suite (`billsync_worker::conformance`) with the Zoho CRM
//! destination underneath, writing to the sandbox's emulated organisation through batched
//! upserts: what the CRM shows is read back from the organisation. Zoho CRM records carry
//! no per-event effects, so the effects check does not apply.

use billsync_config::Config;
use billsync_sandbox::{RunningSandbox, SandboxConfig, ZohoOrg};
use billsync_worker::conformance::{position_in, Subject};
use billsync_worker::DestinationStores;
use billsync_zoho::ZohoDestination;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ORG: &str = "conformance";

struct ZohoSubject {
    sandbox: RunningSandbox,
    /// The OAuth client's secrets, as the configuration reads them.
    secrets: tempfile::TempDir,
}

async fn zoho() -> ZohoSubject {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let sandbox = billsync_sandbox::start(listener, SandboxConfig::default())
        .await
        .expect("sandbox");
    let org = ZohoOrg::new(
        ORG,
        "1000.CONFORMANCE",
        "conformance-secret",
        "1000.refresh",
    );
    sandbox.zoho.add_org(org.clone());
    let secrets = tempfile::tempdir().expect("a temp dir");
    for (name, value) in [
        ("client-id", &org.client_id),
        ("client-secret", &org.client_secret),
        ("refresh-token", &org.refresh_token),
    ] {
        std::fs::write(secrets.path().join(name), value).expect("secret");
    }
    ZohoSubject { sandbox, secrets }
}

impl Subject for ZohoSubject {
    type Crm = ZohoDestination;

    fn destination_toml(&self, name: &str, _: &Path) -> String {
        format!(
            r#"[[destinations.zoho]]
name = "{name}"
accounts_url = "{accounts}"
client_id = {{ file = "{dir}/client-id" }}
client_secret = {{ file = "{dir}/client-secret" }}
refresh_token = {{ file = "{dir}/refresh-token" }}
"#,
            accounts = self.sandbox.zoho.accounts_url(ORG),
            dir = self.secrets.path().display(),
        )
    }

    fn build(&self, config: &Arc<Config>, stores: &DestinationStores) -> ZohoDestination {
        // The suite opens the kit's buckets; the token and the credits ledger live beside
        // the links under their own keys.
        ZohoDestination::new(
            config,
            &config.destinations.zoho[0],
            stores.links.clone(),
            stores.links.clone(),
            stores.rate_limits.clone(),
            Duration::from_secs(10),
        )
        .expect("the Zoho CRM destination")
    }

    async fn shown(&self, customer: &str) -> Option<i64> {
        let email = format!("{customer}@example.com");
        let snapshot = self.sandbox.zoho.snapshot(ORG);
        let contact = snapshot.find("Contacts", "Email", &email)?;
        // "Ada V5": the first word is the first name, the rest the last name.
        position_in(contact.get("Last_Name")?.as_str()?)
    }

    async fn effects(&self, _customer: &str) -> Vec<String> {
        Vec::new()
    }
}

// Five times the events worked on at once, so the backlog outlasts the first batches.
billsync_worker::conformance_tests!(zoho(), backlog = 1000, no_event_effects);
