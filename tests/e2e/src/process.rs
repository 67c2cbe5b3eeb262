//! The configuration file of a deployment whose services a test runs as `billsync` child
//! processes: one Stripe source syncing to one ActiveCampaign account, every service on a
//! free loopback port, secrets in files beside the configuration.

use crate::{ensure_nats, free_port};
use std::path::PathBuf;

/// What differs between such deployments.
#[derive(Debug, Clone)]
pub struct ProcessConfig<'a> {
    pub prefix: &'a str,
    pub postgres_url: &'a str,
    pub stripe_connection: &'a str,
    pub webhook_secret: &'a str,
    pub ac_connection: &'a str,
    /// The sandbox account's API URL (`RunningSandbox::activecampaign_base_url`).
    pub ac_base_url: &'a str,
    pub ac_token: &'a str,
    pub ac_requests_per_second: u32,
    pub admin_token: &'a str,
    /// Lines of the `[telemetry]` table, e.g. `log_format = "json"`.
    pub telemetry: &'a str,
    /// Lines of the `[workers]` table besides the listen addresses.
    pub workers: &'a str,
    /// Appended to the file: more destinations and their `[[syncs]]`.
    pub extra: &'a str,
}

/// The written configuration and where its services listen.
pub struct ProcessDeployment {
    /// Holds the configuration, the secrets, and whatever the test puts there (logs).
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub ingest_port: u16,
    pub errors_port: u16,
    pub activecampaign_port: u16,
    pub zoho_port: u16,
    pub pipedrive_port: u16,
}

impl ProcessDeployment {
    /// The `/readyz` ports of ingest, errors and the ActiveCampaign worker.
    pub fn ready_ports(&self) -> [u16; 3] {
        [self.ingest_port, self.errors_port, self.activecampaign_port]
    }
}

impl ProcessConfig<'_> {
    /// Writes the secrets and `billsync.toml` into a fresh temporary directory.
    pub fn write(&self) -> ProcessDeployment {
        let dir = tempfile::tempdir().expect("a temp dir");
        let secret = |name: &str, value: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, value).expect("write a secret");
            path.display().to_string()
        };
        let (whsec, ac, admin) = (
            secret("whsec", self.webhook_secret),
            secret("ac-token", self.ac_token),
            secret("admin-token", self.admin_token),
        );
        let (ingest_port, errors_port, activecampaign_port, zoho_port, pipedrive_port) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let text = format!(
            r#"
[nats]
url = "{nats}"
prefix = "{prefix}"
retention_days = 1
[postgres]
url = "{postgres}"
[telemetry]
{telemetry}
[ingest]
listen = "127.0.0.1:{ingest_port}"
[errors]
listen = "127.0.0.1:{errors_port}"
admin_token = {{ file = "{admin}" }}
[workers]
activecampaign_listen = "127.0.0.1:{activecampaign_port}"
zoho_listen = "127.0.0.1:{zoho_port}"
pipedrive_listen = "127.0.0.1:{pipedrive_port}"
{workers}
[[sources.stripe]]
name = "{stripe}"
webhook_secrets = [{{ file = "{whsec}" }}]
[[destinations.activecampaign]]
name = "{ac_connection}"
base_url = "{ac_base}"
api_token = {{ file = "{ac}" }}
requests_per_second = {rps}
[[syncs]]
source = "{stripe}"
destination = "{ac_connection}"
{extra}
"#,
            extra = self.extra,
            nats = ensure_nats(),
            prefix = self.prefix,
            postgres = self.postgres_url,
            telemetry = self.telemetry,
            workers = self.workers,
            stripe = self.stripe_connection,
            ac_connection = self.ac_connection,
            ac_base = self.ac_base_url,
            rps = self.ac_requests_per_second,
        );
        let config_path = dir.path().join("billsync.toml");
        std::fs::write(&config_path, text).expect("write the configuration");
        ProcessDeployment {
            dir,
            config_path,
            ingest_port,
            errors_port,
            activecampaign_port,
            zoho_port,
            pipedrive_port,
        }
    }
}
