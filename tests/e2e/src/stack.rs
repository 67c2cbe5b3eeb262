//! billsync's services started in-process against the sandbox, with their own prefix and
//! database, for one test.

use crate::servers::{ensure_nats, fresh_database, TestDatabase};
use billsync_config::Config;
use billsync_sandbox::{AcAccount, RunningSandbox, SandboxConfig};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What a test wants running.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Requests per second the emulated ActiveCampaign account allows.
    pub ac_requests_per_second: u32,
    /// Extra TOML appended to the generated configuration (after the `[[syncs]]` table of
    /// `stripe-test` → `ac-test`). `{ac_track_url}` and `{ac_track_actid}` in it become the
    /// sandbox account's event tracking URL and actid (its event key is always configured).
    pub extra_config: String,
    /// Extra keys of the `[[sources.stripe]]` table (`api_base`, `api_key`, `sync_type`).
    pub stripe_connection_extra: String,
    /// Names of further ActiveCampaign destination connections, each writing to a sandbox
    /// account of its own and fed by the Stripe connection like `ac-test`.
    pub extra_activecampaign: Vec<String>,
    /// Adds an emulated Chargebee site as source `cb-test`, polled every second, syncing to
    /// `ac-test` with these lines appended to its `[[syncs]]` table (e.g. options).
    pub chargebee_sync: Option<String>,
    /// Extra keys of the `[[sources.chargebee]]` table of `cb-test` (`auto_sync = false`).
    pub chargebee_source_extra: String,
    /// Another stack's database, for a second deployment (its own NATS prefix) sharing it;
    /// this stack leaves it in place when it stops. A fresh database of its own when unset.
    pub shared_database: Option<TestDatabase>,
    /// Runs the ActiveCampaign worker as a `billsync activecampaign` child process instead
    /// of in-process, so that a test can SIGKILL it ([`Stack::kill_worker`]) and start it
    /// again ([`Stack::start_worker`]).
    pub worker_process: bool,
    /// `[workers] max_in_flight`: events a worker holds unacked at once.
    pub worker_max_in_flight: usize,
    /// In-process ActiveCampaign workers, each with its own NATS connection, standing for
    /// replicas of one Deployment (they share the durable consumer).
    pub worker_replicas: usize,
    /// Adds an emulated Zoho CRM organisation as destination `zoho-test`, fed by
    /// `stripe-test` (and `cb-test` when `chargebee_sync` is set), each `[[syncs]]` table
    /// with these lines appended; its worker runs in-process unless `worker_service` is
    /// `"zoho"` and `worker_process` is set.
    pub zoho_sync: Option<String>,
    /// With `chargebee_sync` and `zoho_sync`: a second Chargebee site, source `cb-live`,
    /// synced with `zoho_sync`'s lines into a second Zoho CRM organisation, destination
    /// `zoho-live` (a Chargebee test site and a live one feeding separate Zoho accounts).
    pub zoho_live_site: bool,
    /// The worker `worker_process` runs as a child process: `activecampaign`, `zoho` or `pipedrive`.
    pub worker_service: &'static str,
    /// Adds an emulated Pipedrive company as destination `pd-test`, fed by `cb-test` (needs
    /// `chargebee_sync`) with these lines appended to its `[[syncs]]` table.
    pub pipedrive_chargebee_sync: Option<String>,
    /// Feeds `pd-test` from `stripe-test` too, with these lines appended to its `[[syncs]]`.
    pub pipedrive_stripe_sync: Option<String>,
    /// Extra keys of the `[[destinations.pipedrive]]` table (`daily_token_budget`).
    pub pipedrive_extra: String,
    /// How long the emulated ActiveCampaign importer takes to process a bulk import
    /// (the sandbox's default when unset).
    pub ac_bulk_import_delay: Option<std::time::Duration>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            ac_requests_per_second: 50,
            extra_config: String::new(),
            stripe_connection_extra: String::new(),
            extra_activecampaign: Vec::new(),
            chargebee_sync: None,
            chargebee_source_extra: String::new(),
            shared_database: None,
            worker_process: false,
            worker_max_in_flight: 512,
            worker_replicas: 1,
            zoho_sync: None,
            zoho_live_site: false,
            worker_service: "activecampaign",
            pipedrive_chargebee_sync: None,
            pipedrive_stripe_sync: None,
            pipedrive_extra: String::new(),
            ac_bulk_import_delay: None,
        }
    }
}

pub struct Stack {
    pub prefix: String,
    pub config: Arc<Config>,
    pub sandbox: RunningSandbox,
    /// The emulated ActiveCampaign account this stack's destination writes to.
    pub ac_account: String,
    /// Its API token, for calling the emulated API directly.
    pub ac_token: String,
    /// The emulated Chargebee site, when `chargebee_sync` was given.
    pub chargebee_site: String,
    /// The emulated Zoho CRM organisation of `zoho-test`, when `zoho_sync` was given.
    pub zoho_org: String,
    /// With `zoho_live_site`: the second Chargebee site (`cb-live`) and the Zoho CRM
    /// organisation of `zoho-live`.
    pub chargebee_live_site: String,
    pub zoho_live_org: String,
    /// The in-process Zoho worker's `/healthz`, `/readyz` and `/metrics`, when it runs.
    pub zoho_ops_url: String,
    worker_service: &'static str,
    pub stripe_connection: String,
    pub stripe_secret: String,
    pub admin_token: String,
    pub ingest_url: String,
    pub errors_url: String,
    pub nats: async_nats::Client,
    pub db: TestDatabase,
    /// False when the database is another stack's (`StackOptions::shared_database`).
    owns_database: bool,
    pub http: reqwest::Client,
    /// The configuration file's text (secrets are files that live as long as the stack), for
    /// tests that run the `billsync` binary against this stack.
    pub config_toml: String,
    /// `(connection, sandbox account)` of each of `StackOptions::extra_activecampaign`.
    pub extra_ac_accounts: Vec<(String, String)>,
    /// The sandbox account's event tracking URL and actid (for `track_url`, `track_actid`).
    pub ac_track_url: String,
    pub ac_track_actid: String,
    /// The emulated Pipedrive company of `pd-test`, when it is configured.
    pub pd_company: String,
    /// `http://host:port` of the in-process Pipedrive worker's `/readyz` and `/metrics`.
    pub pd_worker_url: String,
    shutdown: CancellationToken,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    /// The worker's child process under `StackOptions::worker_process`.
    worker: std::sync::Mutex<Option<tokio::process::Child>>,
    /// The configuration file the child processes read.
    config_path: std::path::PathBuf,
    _secrets: tempfile::TempDir,
}

impl Stack {
    pub async fn start(options: StackOptions) -> Stack {
        crate::init_telemetry();
        let prefix = crate::unique_prefix();
        let nats_url = ensure_nats();
        let owns_database = options.shared_database.is_none();
        let db = match options.shared_database.clone() {
            Some(shared) => shared,
            None => fresh_database().await,
        };

        let sandbox_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sandbox");
        let sandbox = billsync_sandbox::start(sandbox_listener, SandboxConfig::default())
            .await
            .expect("start sandbox");
        let ac_account = format!("acct-{prefix}");
        let ac_token = format!("ac-token-{}", uuid::Uuid::new_v4().simple());
        let mut account = AcAccount::new(ac_account.clone(), ac_token.clone());
        account.requests_per_second = options.ac_requests_per_second;
        if let Some(delay) = options.ac_bulk_import_delay {
            account.bulk_import_delay = delay;
        }
        let (ac_track_actid, ac_event_key) =
            (account.event_actid.clone(), account.event_key.clone());
        sandbox.activecampaign.add_account(account);

        let stripe_secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let secrets = tempfile::tempdir().expect("secrets dir");
        let write = |name: &str, value: &str| {
            let path = secrets.path().join(name);
            std::fs::write(&path, value).expect("write secret");
            path.display().to_string()
        };
        let whsec_file = write("stripe-whsec", &stripe_secret);
        let ac_file = write("ac-token", &ac_token);
        let event_key_file = write("ac-event-key", &ac_event_key);
        let ac_track_url = sandbox.activecampaign.tracking_base_url(&ac_account);
        let extra_config = options
            .extra_config
            .replace("{ac_track_url}", &ac_track_url)
            .replace("{ac_track_actid}", &ac_track_actid);
        let admin_file = write("admin-token", &admin_token);
        let chargebee_site = format!("site-{prefix}");
        let chargebee = match &options.chargebee_sync {
            Some(sync_lines) => {
                let key = format!("cb-key-{}", uuid::Uuid::new_v4().simple());
                let mut site = billsync_sandbox::CbSite::new(chargebee_site.clone(), key.clone());
                site.requests_per_minute = 6_000;
                sandbox.chargebee.add_site(site);
                let key_file = write("cb-key", &key);
                format!(
                    "\n[[sources.chargebee]]\nname = \"cb-test\"\nsite = \"{chargebee_site}\"\n\
                     api_key = {{ file = \"{key_file}\" }}\nbase_url = \"{base}\"\n\
                     poll_interval_secs = 1\nrequests_per_minute = 6000\n{source_extra}\n\n\
                     [[syncs]]\nsource = \"cb-test\"\ndestination = \"ac-test\"\n{sync_lines}\n",
                    base = sandbox.chargebee.base_url(&chargebee_site),
                    source_extra = options.chargebee_source_extra,
                )
            }
            None => String::new(),
        };
        let stripe_connection = "stripe-test".to_string();
        let zoho_org = format!("zoho-{prefix}");
        let (chargebee_live_site, zoho_live_org) =
            (format!("site-{prefix}-live"), format!("zoho-{prefix}-live"));
        let zoho = match &options.zoho_sync {
            Some(sync_lines) => {
                let refresh = format!("1000.refresh.{}", uuid::Uuid::new_v4().simple());
                let secret = format!("zoho-secret-{}", uuid::Uuid::new_v4().simple());
                sandbox.zoho.add_org(billsync_sandbox::ZohoOrg::new(
                    zoho_org.clone(),
                    "1000.E2ECLIENT",
                    secret.clone(),
                    refresh.clone(),
                ));
                let (id_file, secret_file, refresh_file) = (
                    write("zoho-client-id", "1000.E2ECLIENT"),
                    write("zoho-client-secret", &secret),
                    write("zoho-refresh-token", &refresh),
                );
                let mut text = format!(
                    "\n[[destinations.zoho]]\nname = \"zoho-test\"\naccounts_url = \"{accounts}\"\n\
                     client_id = {{ file = \"{id_file}\" }}\n\
                     client_secret = {{ file = \"{secret_file}\" }}\n\
                     refresh_token = {{ file = \"{refresh_file}\" }}\n\n\
                     [[syncs]]\nsource = \"{stripe_connection}\"\ndestination = \"zoho-test\"\n{sync_lines}\n",
                    accounts = sandbox.zoho.accounts_url(&zoho_org),
                );
                if options.chargebee_sync.is_some() {
                    text.push_str(&format!(
                        "\n[[syncs]]\nsource = \"cb-test\"\ndestination = \"zoho-test\"\n{sync_lines}\n"
                    ));
                }
                if options.zoho_live_site {
                    let key = format!("cb-live-key-{}", uuid::Uuid::new_v4().simple());
                    let mut site =
                        billsync_sandbox::CbSite::new(chargebee_live_site.clone(), key.clone());
                    site.requests_per_minute = 6_000;
                    sandbox.chargebee.add_site(site);
                    let refresh = format!("1000.refresh.{}", uuid::Uuid::new_v4().simple());
                    let secret = format!("zoho-secret-{}", uuid::Uuid::new_v4().simple());
                    sandbox.zoho.add_org(billsync_sandbox::ZohoOrg::new(
                        zoho_live_org.clone(),
                        "1000.E2ELIVE",
                        secret.clone(),
                        refresh.clone(),
                    ));
                    let (key_file, id_file, secret_file, refresh_file) = (
                        write("cb-live-key", &key),
                        write("zoho-live-client-id", "1000.E2ELIVE"),
                        write("zoho-live-client-secret", &secret),
                        write("zoho-live-refresh-token", &refresh),
                    );
                    text.push_str(&format!(
                        "\n[[sources.chargebee]]\nname = \"cb-live\"\nsite = \"{chargebee_live_site}\"\n\
                         api_key = {{ file = \"{key_file}\" }}\nbase_url = \"{base}\"\n\
                         poll_interval_secs = 1\nrequests_per_minute = 6000\n{source_extra}\n\n\
                         [[destinations.zoho]]\nname = \"zoho-live\"\naccounts_url = \"{accounts}\"\n\
                         client_id = {{ file = \"{id_file}\" }}\n\
                         client_secret = {{ file = \"{secret_file}\" }}\n\
                         refresh_token = {{ file = \"{refresh_file}\" }}\n\n\
                         [[syncs]]\nsource = \"cb-live\"\ndestination = \"zoho-live\"\n{sync_lines}\n",
                        base = sandbox.chargebee.base_url(&chargebee_live_site),
                        source_extra = options.chargebee_source_extra,
                        accounts = sandbox.zoho.accounts_url(&zoho_live_org),
                    ));
                }
                text
            }
            None => String::new(),
        };
        let pd_company = format!("pd-{prefix}");
        let with_pipedrive =
            options.pipedrive_chargebee_sync.is_some() || options.pipedrive_stripe_sync.is_some();
        let pipedrive = if with_pipedrive {
            let token = format!("pd-token-{}", uuid::Uuid::new_v4().simple());
            sandbox
                .pipedrive
                .add_company(billsync_sandbox::PdCompany::new(
                    pd_company.clone(),
                    token.clone(),
                ));
            let token_file = write("pd-token", &token);
            let mut text = format!(
                "\n[[destinations.pipedrive]]\nname = \"pd-test\"\nbase_url = \"{base}\"\n\
                 api_token = {{ file = \"{token_file}\" }}\n{extra}\n",
                base = sandbox.pipedrive.base_url(&pd_company),
                extra = options.pipedrive_extra,
            );
            if let Some(lines) = &options.pipedrive_chargebee_sync {
                text.push_str(&format!(
                    "\n[[syncs]]\nsource = \"cb-test\"\ndestination = \"pd-test\"\n{lines}\n"
                ));
            }
            if let Some(lines) = &options.pipedrive_stripe_sync {
                text.push_str(&format!(
                    "\n[[syncs]]\nsource = \"stripe-test\"\ndestination = \"pd-test\"\n{lines}\n"
                ));
            }
            text
        } else {
            String::new()
        };
        let mut extra_ac_accounts = Vec::new();
        let mut extra_destinations = String::new();
        for connection in &options.extra_activecampaign {
            let account = format!("acct-{prefix}-{connection}");
            let token = format!("ac-token-{}", uuid::Uuid::new_v4().simple());
            let mut extra = AcAccount::new(account.clone(), token.clone());
            extra.requests_per_second = options.ac_requests_per_second;
            sandbox.activecampaign.add_account(extra);
            let token_file = write(&format!("ac-token-{connection}"), &token);
            extra_destinations.push_str(&format!(
                r#"
[[destinations.activecampaign]]
name = "{connection}"
base_url = "{base}"
api_token = {{ file = "{token_file}" }}
requests_per_second = {rps}

[[syncs]]
source = "{stripe_connection}"
destination = "{connection}"
"#,
                base = sandbox.activecampaign_base_url(&account),
                rps = options.ac_requests_per_second,
            ));
            extra_ac_accounts.push((connection.clone(), account));
        }

        let text = format!(
            r#"
[nats]
url = "{nats_url}"
prefix = "{prefix}"
retention_days = 1

[postgres]
url = "{db_url}"

[errors]
admin_token = {{ file = "{admin_file}" }}

[workers]
max_attempts = 3
ack_wait_secs = 10
max_in_flight = {max_in_flight}
activecampaign_listen = "127.0.0.1:0"
pipedrive_listen = "127.0.0.1:0"

[[sources.stripe]]
name = "{stripe_connection}"
webhook_secrets = [{{ file = "{whsec_file}" }}]
{stripe_extra}

[[destinations.activecampaign]]
name = "ac-test"
base_url = "{ac_base}"
api_token = {{ file = "{ac_file}" }}
event_key = {{ file = "{event_key_file}" }}
requests_per_second = {rps}

[[syncs]]
source = "{stripe_connection}"
destination = "ac-test"
{extra}
{chargebee}
{zoho}
{pipedrive}
"#,
            db_url = db.url,
            ac_base = sandbox.activecampaign_base_url(&ac_account),
            rps = options.ac_requests_per_second,
            extra = extra_destinations + &extra_config,
            stripe_extra = options.stripe_connection_extra,
            max_in_flight = options.worker_max_in_flight,
        );
        let config = Arc::new(
            Config::from_toml(&text, Path::new("e2e.toml"))
                .unwrap_or_else(|e| panic!("test config: {e}")),
        );
        let nats = billsync_bus::connect(&nats_url, "billsync-e2e")
            .await
            .expect("connect NATS");
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let errors_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind errors");
        let errors_url = format!("http://{}", errors_listener.local_addr().expect("addr"));
        let ingest_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind ingest");
        let ingest_url = format!("http://{}", ingest_listener.local_addr().expect("addr"));

        let (c, n, s) = (Arc::clone(&config), nats.clone(), shutdown.clone());
        tasks.spawn(async move {
            (
                "errors",
                billsync_errors::run(c, n, errors_listener, s).await,
            )
        });
        let (c, n, s) = (Arc::clone(&config), nats.clone(), shutdown.clone());
        tasks.spawn(async move {
            (
                "ingest",
                billsync_ingest::run(c, n, ingest_listener, s).await,
            )
        });
        let in_process_workers =
            if options.worker_process && options.worker_service == "activecampaign" {
                0
            } else {
                options.worker_replicas.max(1)
            };
        for _ in 0..in_process_workers {
            let worker_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind worker");
            let n = billsync_bus::connect(&nats_url, "billsync-e2e-worker")
                .await
                .expect("connect NATS");
            let (c, s) = (Arc::clone(&config), shutdown.clone());
            tasks.spawn(async move {
                (
                    "activecampaign",
                    billsync_activecampaign::run(c, n, worker_listener, s).await,
                )
            });
        }
        let mut zoho_ops_url = String::new();
        if options.zoho_sync.is_some()
            && !(options.worker_process && options.worker_service == "zoho")
        {
            let worker_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind worker");
            zoho_ops_url = format!("http://{}", worker_listener.local_addr().expect("addr"));
            let (c, n, s) = (Arc::clone(&config), nats.clone(), shutdown.clone());
            tasks
                .spawn(async move { ("zoho", billsync_zoho::run(c, n, worker_listener, s).await) });
        }
        let mut pd_worker_url = String::new();
        if with_pipedrive && !(options.worker_process && options.worker_service == "pipedrive") {
            let worker_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind worker");
            pd_worker_url = format!("http://{}", worker_listener.local_addr().expect("addr"));
            let (c, n, s) = (Arc::clone(&config), nats.clone(), shutdown.clone());
            tasks.spawn(async move {
                (
                    "pipedrive",
                    billsync_pipedrive::run(c, n, worker_listener, s).await,
                )
            });
        }
        let config_path = secrets.path().join("billsync.toml");
        std::fs::write(&config_path, &text).expect("write the configuration");

        let stack = Stack {
            prefix,
            config,
            sandbox,
            ac_account,
            ac_token,
            chargebee_site,
            zoho_org,
            chargebee_live_site,
            zoho_live_org,
            zoho_ops_url,
            worker_service: options.worker_service,
            stripe_connection,
            stripe_secret,
            admin_token,
            ingest_url,
            errors_url,
            nats,
            db,
            owns_database,
            http: reqwest::Client::new(),
            config_toml: text,
            extra_ac_accounts,
            ac_track_url,
            ac_track_actid,
            pd_company,
            pd_worker_url,
            shutdown,
            tasks,
            worker: std::sync::Mutex::new(None),
            config_path,
            _secrets: secrets,
        };
        if options.worker_process {
            stack.start_worker();
        }
        stack.wait_ready().await;
        stack
    }

    async fn wait_ready(&self) {
        for url in [&self.ingest_url, &self.errors_url] {
            let http = self.http.clone();
            let ready = format!("{url}/readyz");
            crate::eventually(
                &format!("{ready} to answer 200"),
                Duration::from_secs(20),
                || {
                    let http = http.clone();
                    let ready = ready.clone();
                    async move {
                        let response = http.get(&ready).send().await.ok()?;
                        response.status().is_success().then_some(())
                    }
                },
            )
            .await;
        }
    }

    /// Posts `event` to this stack's Stripe webhook, signed with `secret` at `timestamp`.
    pub async fn post_stripe(
        &self,
        event: &serde_json::Value,
        secret: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        let body = serde_json::to_vec(event).expect("encode event");
        let signature = billsync_sandbox::stripe::sign(secret, timestamp, &body);
        self.http
            .post(format!(
                "{}/webhooks/stripe/{}",
                self.ingest_url, self.stripe_connection
            ))
            .header("Stripe-Signature", signature)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("post webhook")
    }

    /// Ingest's sync-now route for Chargebee connection `connection` (the Sync Now button).
    pub async fn sync_now(&self, connection: &str) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/admin/chargebee/{connection}/sync-now",
                self.ingest_url
            ))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .expect("sync-now")
    }

    /// Posts `event` signed correctly, now.
    pub async fn send_stripe(&self, event: &serde_json::Value) -> reqwest::Response {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs() as i64;
        self.post_stripe(event, &self.stripe_secret, now).await
    }

    pub fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.nats.clone())
    }

    pub fn topology(&self) -> billsync_bus::Topology {
        billsync_bus::Topology::new(&self.prefix)
    }

    /// The emulated tenant's authenticated requests so far (`vendor`: `activecampaign`,
    /// `zoho`, `pipedrive`), read back from the sandbox's control API as any client would.
    pub async fn sandbox_request_counts(
        &self,
        vendor: &str,
        tenant: &str,
    ) -> anyhow::Result<billsync_sandbox::RequestCounts> {
        sandbox_request_counts(&self.sandbox.url(), vendor, tenant).await
    }

    /// Messages stored in the events stream.
    pub async fn events_in_stream(&self) -> u64 {
        let mut stream = self
            .jetstream()
            .get_stream(self.topology().events_stream())
            .await
            .expect("events stream exists");
        stream.info().await.expect("stream info").state.messages
    }

    /// True when the worker has settled every event it was given.
    pub async fn worker_idle(&self) -> bool {
        self.worker_backlog().await == Some(0)
    }

    /// Events of the stream the `ac-test` worker has not settled (acked) yet; `None` until
    /// its consumer exists.
    pub async fn worker_backlog(&self) -> Option<u64> {
        let topology = self.topology();
        let consumer = topology.worker_consumer("ac-test");
        consumer_backlog(&self.nats, &topology.events_stream(), &consumer).await
    }

    /// True when the worker of destination connection `connection` has settled every event
    /// and every replay it was given.
    pub async fn worker_idle_for(&self, connection: &str) -> bool {
        let topology = self.topology();
        for (stream, consumer) in [
            (
                topology.events_stream(),
                topology.worker_consumer(connection),
            ),
            (
                topology.replay_stream(),
                topology.replay_consumer(connection),
            ),
        ] {
            let Ok(stream) = self.jetstream().get_stream(stream).await else {
                return false;
            };
            let Ok(mut consumer) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&consumer)
                .await
            else {
                return false;
            };
            match consumer.info().await {
                Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {}
                _ => return false,
            }
        }
        true
    }

    /// The sandbox account and API token of ActiveCampaign destination `connection`.
    pub fn ac_account_of(&self, connection: &str) -> (String, String) {
        let account = if connection == "ac-test" {
            self.ac_account.clone()
        } else {
            self.extra_ac_accounts
                .iter()
                .find(|(c, _)| c == connection)
                .map(|(_, a)| a.clone())
                .unwrap_or_else(|| panic!("no ActiveCampaign destination {connection:?}"))
        };
        let token = self
            .config
            .destinations
            .activecampaign
            .iter()
            .find(|c| c.name == connection)
            .map(|c| c.api_token.expose().to_string())
            .unwrap_or_else(|| panic!("no ActiveCampaign destination {connection:?}"));
        (account, token)
    }

    /// Writes the configuration to `dir/billsync.toml`, for the `billsync` binary.
    pub fn write_config(&self, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("billsync.toml");
        std::fs::write(&path, &self.config_toml).expect("write the configuration");
        path
    }

    /// Publishes every message of the events stream again on its own subject under a new
    /// message id (so JetStream does not drop it as a duplicate): every event delivered a
    /// second time, as a publisher's retry after a lost ack would. Returns how many.
    pub async fn redeliver_every_event(&self) -> u64 {
        self.copy_events(|_| None, "redelivery", |_| true).await
    }

    /// Puts every message of the events stream on the replay subject of destination
    /// `connection`, as `billsync replay` does: the worker applies them again even though it
    /// already has. Returns how many.
    pub async fn replay_whole_stream(&self, connection: &str) -> u64 {
        let subject = self.topology().replay_subject(connection);
        self.copy_events(|_| Some(subject.clone()), "replay", |_| true)
            .await
    }

    /// Replays the messages at `sequences` of the events stream to destination `connection`.
    pub async fn replay_events(&self, connection: &str, sequences: &[u64]) -> u64 {
        let subject = self.topology().replay_subject(connection);
        self.copy_events(
            |_| Some(subject.clone()),
            "replay",
            |s| sequences.contains(&s),
        )
        .await
    }

    /// Sequences in the events stream of the events of `event_type`, oldest first.
    pub async fn sequences_of(&self, event_type: &str) -> Vec<u64> {
        let stream = self
            .jetstream()
            .get_stream(self.topology().events_stream())
            .await
            .expect("events stream");
        let mut found = Vec::new();
        for sequence in 1..=self.events_in_stream().await {
            let message = stream.get_raw_message(sequence).await.expect("message");
            let event: serde_json::Value =
                serde_json::from_slice(&message.payload).expect("an event");
            if event["event_type"] == event_type {
                found.push(sequence);
            }
        }
        found
    }

    async fn copy_events(
        &self,
        subject: impl Fn(&str) -> Option<String>,
        label: &str,
        wanted: impl Fn(u64) -> bool,
    ) -> u64 {
        let topology = self.topology();
        let js = self.jetstream();
        let stream = js
            .get_stream(topology.events_stream())
            .await
            .expect("events stream");
        let publisher =
            billsync_bus::Publisher::new(js.clone(), topology.clone(), Duration::from_secs(30));
        let count = self.events_in_stream().await;
        let run = uuid::Uuid::new_v4().simple().to_string();
        let mut copied = 0;
        for sequence in (1..=count).filter(|s| wanted(*s)) {
            copied += 1;
            let message = stream.get_raw_message(sequence).await.expect("message");
            let mut headers = async_nats::HeaderMap::new();
            let (target, payload) = match subject(&message.subject) {
                Some(replay) => {
                    // As `billsync replay` does: the event keeps its place in the stream.
                    headers.insert(billsync_bus::topology::HEADER_REPLAY, "true");
                    let mut event: serde_json::Value =
                        serde_json::from_slice(&message.payload).expect("an event");
                    event["version"]["sequence"] = sequence.into();
                    (replay, serde_json::to_vec(&event).expect("encode").into())
                }
                None => (message.subject.to_string(), message.payload),
            };
            let published = publisher
                .publish(
                    target,
                    &format!("{label}-{run}-{sequence}"),
                    payload,
                    headers,
                )
                .await
                .unwrap_or_else(|e| panic!("{label} of message {sequence}: {e}"));
            assert!(
                !published.duplicate,
                "{label} of message {sequence} was dropped as a duplicate"
            );
        }
        copied
    }

    /// Creates a list in the emulated ActiveCampaign account through its API, as a user
    /// would in the UI; its id.
    pub async fn create_ac_list(&self, name: &str) -> String {
        let body: serde_json::Value = self
            .http
            .post(format!(
                "{}/api/3/lists",
                self.sandbox.activecampaign_base_url(&self.ac_account)
            ))
            .header("Api-Token", &self.ac_token)
            .json(&serde_json::json!({"list": {"name": name, "stringid": name,
                "sender_url": "https://example.com", "sender_reminder": "You signed up."}}))
            .send()
            .await
            .expect("create a list")
            .json()
            .await
            .expect("the list as JSON");
        match &body["list"]["id"] {
            serde_json::Value::String(id) => id.clone(),
            other => other.to_string(),
        }
    }

    /// Starts `billsync activecampaign` (or `StackOptions::worker_service`) as a child
    /// process (`StackOptions::worker_process`).
    /// Its log goes to stderr at `warn` unless `RUST_LOG` says otherwise.
    pub fn start_worker(&self) {
        let mut worker = self.worker.lock().expect("worker lock");
        assert!(worker.is_none(), "the worker process is already running");
        let child = tokio::process::Command::new(crate::billsync_binary())
            .arg("--config")
            .arg(&self.config_path)
            .arg(self.worker_service)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start billsync {}: {e}", self.worker_service));
        *worker = Some(child);
    }

    /// Stops the worker's child process gracefully (SIGTERM) and starts it again, reading
    /// `config` as its configuration file from now on: an operator's edit and restart.
    pub async fn restart_worker_with(&self, config: &str) {
        let child = self.worker.lock().expect("worker lock").take();
        let mut child = child.expect("no worker process is running");
        terminate(&mut child).await;
        std::fs::write(&self.config_path, config).expect("write the configuration");
        self.start_worker();
    }

    /// SIGKILLs the worker's child process and waits until it is gone: no drain, no acks of
    /// what it was doing — a crash.
    pub async fn kill_worker(&self) {
        let child = self.worker.lock().expect("worker lock").take();
        let mut child = child.expect("no worker process is running");
        child.start_kill().expect("SIGKILL the worker");
        child.wait().await.expect("reap the worker");
    }

    /// Stops the services gracefully, then removes this test's streams, buckets and database.
    pub async fn stop(mut self) {
        let worker = self.worker.lock().expect("worker lock").take();
        if let Some(mut child) = worker {
            terminate(&mut child).await;
        }
        self.shutdown.cancel();
        while let Some(joined) = self.tasks.join_next().await {
            let (name, result) = joined.expect("service task panicked");
            if let Err(error) = result {
                panic!("{name} failed: {error:#}");
            }
        }
        crate::remove_deployment(&self.nats, &self.prefix).await;
        if self.owns_database {
            self.db.drop_database().await;
        }
        self.assert_vendor_requests_valid();
    }

    /// Panics, naming each one, if any request to the sandbox's Zoho CRM organisations or
    /// Pipedrive companies was invalid against the vendor's spec (the emulators check every
    /// request; see `billsync_sandbox::SpecChecks`). `stop` calls it, so every test of those
    /// destinations ends with it. Answers how many requests were checked.
    pub fn assert_vendor_requests_valid(&self) -> u64 {
        let zoho = self.sandbox.zoho.org_names().into_iter().map(|org| {
            (
                format!("Zoho CRM {org}"),
                self.sandbox.zoho.spec_checks(&org),
            )
        });
        let pipedrive = self
            .sandbox
            .pipedrive
            .company_names()
            .into_iter()
            .map(|company| {
                let checks = self.sandbox.pipedrive.spec_checks(&company);
                (format!("Pipedrive {company}"), checks)
            });
        let mut checked = 0;
        let mut invalid = Vec::new();
        for (tenant, checks) in zoho.chain(pipedrive) {
            eprintln!("{tenant}: {}", spec_summary(&checks));
            checked += checks.checked;
            invalid.extend(checks.violations.iter().map(|v| format!("{tenant}: {v}")));
        }
        assert!(
            invalid.is_empty(),
            "requests the vendors' specs refuse:\n{}",
            invalid.join("\n")
        );
        checked
    }
}

/// The requests of `tenant` of the sandbox at `sandbox_url` (`vendor`: `activecampaign`,
/// `zoho`, `pipedrive`) so far, read from its control API as any client would.
pub async fn sandbox_request_counts(
    sandbox_url: &str,
    vendor: &str,
    tenant: &str,
) -> anyhow::Result<billsync_sandbox::RequestCounts> {
    Ok(reqwest::get(format!(
        "{sandbox_url}/__sandbox/{vendor}/{tenant}/requests"
    ))
    .await?
    .error_for_status()?
    .json()
    .await?)
}

/// Messages of `stream` that its pull consumer `consumer` has not settled (acked) yet;
/// `None` until the consumer exists.
pub async fn consumer_backlog(
    nats: &async_nats::Client,
    stream: &str,
    consumer: &str,
) -> Option<u64> {
    let stream = async_nats::jetstream::new(nats.clone())
        .get_stream(stream)
        .await
        .ok()?;
    let mut consumer = stream
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(consumer)
        .await
        .ok()?;
    let info = consumer.info().await.ok()?;
    Some(info.num_pending + info.num_ack_pending as u64)
}

/// SIGTERM, then SIGKILL if the process has not exited within 30 s.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

/// `requests checked against the spec: N, invalid: M`.
fn spec_summary(checks: &billsync_sandbox::SpecChecks) -> String {
    format!(
        "requests checked against the spec: {}, invalid: {}",
        checks.checked, checks.invalid
    )
}

/// Reads the requests the sandbox checked for `tenant` of `vendor` (`zoho`, `pipedrive`)
/// against the vendor's spec from its control API, as any client of it would, prints
/// `requests checked against the spec: N, invalid: M` and the first invalid ones, and fails
/// if there are any. Answers how many were checked.
pub async fn report_spec_checks(
    sandbox_url: &str,
    vendor: &str,
    tenant: &str,
) -> anyhow::Result<u64> {
    let checks: billsync_sandbox::SpecChecks = reqwest::get(format!(
        "{sandbox_url}/__sandbox/{vendor}/{tenant}/violations"
    ))
    .await?
    .error_for_status()?
    .json()
    .await?;
    println!("{}", spec_summary(&checks));
    for violation in checks.violations.iter().take(20) {
        println!("  invalid: {violation}");
    }
    anyhow::ensure!(
        checks.invalid == 0,
        "{} of the requests to {vendor} were invalid against its spec",
        checks.invalid
    );
    Ok(checks.checked)
}
