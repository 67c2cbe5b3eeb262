//! The configuration file of a deployment whose services a test runs as `billsync` child
//! processes: one Stripe source syncing to one ActiveCampaign account, every service on a
//! free loopback port, secrets in files beside the configuration.

use crate::{ensure_nats, free_port};
use std::path::{Path, PathBuf};

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
        let (ingest_port, errors_port, activecampaign_port, zoho_port, pipedrive_port) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let workers = format!(
            "activecampaign_listen = \"127.0.0.1:{activecampaign_port}\"\n\
             zoho_listen = \"127.0.0.1:{zoho_port}\"\n\
             pipedrive_listen = \"127.0.0.1:{pipedrive_port}\"\n"
        );
        let text = self.render(
            dir.path(),
            &ensure_nats(),
            &format!("127.0.0.1:{ingest_port}"),
            &format!("127.0.0.1:{errors_port}"),
            &workers,
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

    /// Writes the secrets into `dir` and returns the configuration for NATS at `nats_url`
    /// as a [`Fleet`](crate::chaos::fleet::Fleet) template: the listen addresses are its
    /// placeholders, each replica's own put in by the fleet.
    pub fn fleet_template(&self, dir: &Path, nats_url: &str) -> String {
        self.render(
            dir,
            nats_url,
            "{ingest_listen}",
            "{errors_listen}",
            "{workers_listen}",
        )
    }

    /// The configuration's text, its secrets written into `dir`; `workers_listen` holds the
    /// `*_listen` lines of the `[workers]` table.
    fn render(
        &self,
        dir: &Path,
        nats: &str,
        ingest_listen: &str,
        errors_listen: &str,
        workers_listen: &str,
    ) -> String {
        let secret = |name: &str, value: &str| {
            let path = dir.join(name);
            std::fs::write(&path, value).expect("write a secret");
            path.display().to_string()
        };
        let (whsec, ac, admin) = (
            secret("whsec", self.webhook_secret),
            secret("ac-token", self.ac_token),
            secret("admin-token", self.admin_token),
        );
        format!(
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
listen = "{ingest_listen}"
[errors]
listen = "{errors_listen}"
admin_token = {{ file = "{admin}" }}
[workers]
{workers_listen}
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
            prefix = self.prefix,
            postgres = self.postgres_url,
            telemetry = self.telemetry,
            workers = self.workers,
            stripe = self.stripe_connection,
            ac_connection = self.ac_connection,
            ac_base = self.ac_base_url,
            rps = self.ac_requests_per_second,
        )
    }
}
