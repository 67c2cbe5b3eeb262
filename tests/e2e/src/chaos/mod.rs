//! The chaos suite: billsync on a three-node JetStream cluster (streams with three replicas),
//! its own PostgreSQL, every service a separate process with replicas, under a mixed Stripe
//! and Chargebee load into every destination, while a schedule of faults runs — SIGKILL of
//! each billsync process, of a NATS node and of the events stream's leader, PostgreSQL
//! stopped, CRM 429 and 5xx storms and latency, and a NATS node cut off from the others.
//!
//! Each fault has customers of its own (changed while it runs), so the report says per fault
//! how many customers were lost, duplicated or left out of order in each CRM, how many events
//! have no outcome, and how long the backlog took to drain. `make chaos` runs the full plan
//! (`billsync-bench`'s `chaos` binary); `make chaos-short` a short one.

pub mod cluster;
pub mod fleet;
pub mod load;

use crate::PrivatePostgres;
use billsync_events::{Outcome, OutcomeResult};
use billsync_sandbox::{AcAccount, CbCustomerInput, PdCompany, RunningSandbox, ZohoOrg};
use cluster::NatsCluster;
use fleet::Fleet;
use futures::StreamExt;
use load::{Customer, Source};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much load and how long the outages.
#[derive(Debug, Clone)]
pub struct Plan {
    /// New customers per source (Stripe and Chargebee) during each fault.
    pub customers: usize,
    /// Changes of each customer after its creation.
    pub updates: usize,
    /// How long a PostgreSQL outage, a cut-off NATS node and CRM latency last.
    pub outage: Duration,
    /// How long a fault's backlog may take to drain before it counts as lost.
    pub drain_within: Duration,
    /// Stripe webhooks (and Chargebee changes) per second the load aims at.
    pub rate: u32,
}

impl Plan {
    /// `make chaos`: 1,088 customers, 10,880 events over the 17 faults.
    pub fn full() -> Plan {
        Plan {
            customers: 32,
            updates: 9,
            outage: Duration::from_secs(30),
            drain_within: Duration::from_secs(300),
            rate: 60,
        }
    }

    /// `make chaos-short`: the same faults, shorter.
    pub fn short() -> Plan {
        Plan {
            customers: 3,
            updates: 3,
            outage: Duration::from_secs(8),
            drain_within: Duration::from_secs(120),
            rate: 30,
        }
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone)]
pub enum Fault {
    /// SIGKILL of a billsync replica (`zoho-2`), started again 2 s later.
    Kill(String),
    /// SIGKILL of a NATS node, started again 5 s later.
    KillNatsNode(usize),
    /// SIGKILL of the node leading the events stream, started again 5 s later.
    KillStreamLeader,
    /// PostgreSQL stopped for the plan's outage.
    PostgresDown,
    /// Every CRM answers its next 300 calls with 429.
    Throttle,
    /// Every CRM answers its next 300 calls with 500.
    ServerErrors,
    /// Every CRM answers 400 ms late for the plan's outage.
    Latency,
    /// A NATS node cut off from the other two (and from clients) for the plan's outage.
    CutOff(usize),
}

impl Fault {
    fn describe(&self, plan: &Plan) -> String {
        let secs = plan.outage.as_secs();
        match self {
            Fault::Kill(name) => format!("kill -9 {name}"),
            Fault::KillNatsNode(i) => format!("kill -9 NATS node{}", i + 1),
            Fault::KillStreamLeader => "kill -9 events stream leader".into(),
            Fault::PostgresDown => format!("PostgreSQL down {secs} s"),
            Fault::Throttle => "CRM 429 storm (300 calls)".into(),
            Fault::ServerErrors => "CRM 5xx storm (300 calls)".into(),
            Fault::Latency => format!("CRM +400 ms for {secs} s"),
            Fault::CutOff(i) => format!("NATS node{} cut off {secs} s", i + 1),
        }
    }
}

/// The default schedule: every billsync replica in turn, then the infrastructure faults.
pub fn schedule(fleet: &Fleet) -> Vec<Fault> {
    let mut faults: Vec<Fault> = fleet.names().into_iter().map(Fault::Kill).collect();
    faults.extend([
        Fault::KillNatsNode(0),
        Fault::KillStreamLeader,
        Fault::PostgresDown,
        Fault::Throttle,
        Fault::ServerErrors,
        Fault::Latency,
        Fault::CutOff(2),
    ]);
    faults
}

/// What went wrong for one fault's customers (or the whole run).
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub customers: usize,
    pub events: usize,
    /// Customer records missing in a CRM, or left at an older version whose newest event
    /// has no synced outcome.
    pub lost: usize,
    /// Extra records of one customer in one CRM.
    pub duplicated: usize,
    /// Records left at an older version although the newest event was synced: an older
    /// write landed after a newer one.
    pub out_of_order: usize,
    /// (event, destination) pairs without an outcome.
    pub missing_outcomes: usize,
    /// Webhooks no ingest replica accepted within two minutes.
    pub refused_webhooks: usize,
    pub details: Vec<String>,
}

impl Counts {
    fn clean(&self) -> bool {
        self.lost
            + self.duplicated
            + self.out_of_order
            + self.missing_outcomes
            + self.refused_webhooks
            == 0
    }
}

pub struct PhaseReport {
    pub fault: String,
    pub counts: Counts,
    /// From the fault's end until its customers were right in every CRM.
    pub drain: Option<Duration>,
}

pub struct Report {
    pub phases: Vec<PhaseReport>,
    /// Replicas that exited by themselves (crashes).
    pub crashed: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.crashed.is_empty()
            && self
                .phases
                .iter()
                .all(|p| p.counts.clean() && p.drain.is_some())
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<34} {:>9} {:>6} {:>5} {:>10} {:>12} {:>16} {:>8} {:>9}",
            "fault",
            "customers",
            "events",
            "lost",
            "duplicated",
            "out of order",
            "missing outcome",
            "refused",
            "drain"
        );
        let mut total = Counts::default();
        for phase in &self.phases {
            let c = &phase.counts;
            let _ = writeln!(
                out,
                "{:<34} {:>9} {:>6} {:>5} {:>10} {:>12} {:>16} {:>8} {:>9}",
                phase.fault,
                c.customers,
                c.events,
                c.lost,
                c.duplicated,
                c.out_of_order,
                c.missing_outcomes,
                c.refused_webhooks,
                phase
                    .drain
                    .map_or("never".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
            );
            total.customers += c.customers;
            total.events += c.events;
            total.lost += c.lost;
            total.duplicated += c.duplicated;
            total.out_of_order += c.out_of_order;
            total.missing_outcomes += c.missing_outcomes;
            total.refused_webhooks += c.refused_webhooks;
        }
        let _ = writeln!(
            out,
            "{:<34} {:>9} {:>6} {:>5} {:>10} {:>12} {:>16} {:>8}",
            "total",
            total.customers,
            total.events,
            total.lost,
            total.duplicated,
            total.out_of_order,
            total.missing_outcomes,
            total.refused_webhooks
        );
        let _ = writeln!(
            out,
            "{} faults, {} events into 3 CRMs, {:.0} s in all; crashed replicas: {}",
            self.phases.len(),
            total.events,
            self.elapsed.as_secs_f64(),
            if self.crashed.is_empty() {
                "none".to_string()
            } else {
                self.crashed.join("; ")
            }
        );
        for phase in &self.phases {
            for detail in phase.counts.details.iter().take(10) {
                let _ = writeln!(out, "  {}: {detail}", phase.fault);
            }
        }
        out
    }
}

/// The destination connections of the run, and how to read what each CRM holds.
const DESTINATIONS: [&str; 3] = ["ac-chaos", "zoho-chaos", "pd-chaos"];

struct Run {
    sandbox: RunningSandbox,
    http: reqwest::Client,
    secret: String,
    ingest_ports: Vec<u16>,
    ac_account: String,
    zoho_org: String,
    pd_company: String,
    cb_site: String,
}

/// Runs `plan` and reports; the environment is torn down before it returns.
pub async fn run(plan: Plan) -> Report {
    let started = Instant::now();
    let mut cluster = NatsCluster::start().await;
    let postgres = PrivatePostgres::start();
    let prefix = crate::unique_prefix();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the sandbox");
    let sandbox = billsync_sandbox::start(listener, billsync_sandbox::SandboxConfig::default())
        .await
        .expect("start the sandbox");
    let dir = tempfile::tempdir().expect("temp dir for configurations and logs");
    let secret = |name: &str, value: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, value).expect("write a secret");
        path.display().to_string()
    };
    let (ac_account, zoho_org, pd_company, cb_site) = (
        format!("ac-{prefix}"),
        format!("zoho-{prefix}"),
        format!("pd-{prefix}"),
        format!("cb-{prefix}"),
    );
    let token = |what: &str| format!("{what}-{}", uuid::Uuid::new_v4().simple());
    let (ac_token, cb_key, pd_token, whsec, admin) = (
        token("ac"),
        token("cb"),
        token("pd"),
        format!("whsec_{}", uuid::Uuid::new_v4().simple()),
        token("admin"),
    );
    let (zoho_secret, zoho_refresh) = (token("zoho-secret"), format!("1000.{}", token("refresh")));
    let mut account = AcAccount::new(ac_account.clone(), ac_token.clone());
    account.requests_per_second = 2_000;
    sandbox.activecampaign.add_account(account);
    let mut site = billsync_sandbox::CbSite::new(cb_site.clone(), cb_key.clone());
    site.requests_per_minute = 60_000;
    sandbox.chargebee.add_site(site);
    sandbox.zoho.add_org(ZohoOrg::new(
        zoho_org.clone(),
        "1000.CHAOS",
        zoho_secret.clone(),
        zoho_refresh.clone(),
    ));
    sandbox.zoho.set_limits(&zoho_org, 100_000_000, 25);
    let mut company = PdCompany::new(pd_company.clone(), pd_token.clone());
    company.requests_per_2s = 1_000;
    company.daily_tokens = 100_000_000;
    sandbox.pipedrive.add_company(company);

    let config = format!(
        r#"
[nats]
url = "{nats}"
prefix = "{prefix}"
replicas = 3
retention_days = 1

[postgres]
url = "{postgres}/postgres"

[ingest]
listen = "{{ingest_listen}}"

[errors]
listen = "{{errors_listen}}"
admin_token = {{ file = "{admin}" }}

[workers]
{{workers_listen}}
# A replica killed mid-write gives its events back after this (JetStream's ack wait).
ack_wait_secs = 20

[[sources.stripe]]
name = "stripe-chaos"
webhook_secrets = [{{ file = "{whsec}" }}]

[[sources.chargebee]]
name = "cb-chaos"
site = "{cb_site}"
api_key = {{ file = "{cb_key}" }}
base_url = "{cb_base}"
poll_interval_secs = 1
requests_per_minute = 6000

[[destinations.activecampaign]]
name = "ac-chaos"
base_url = "{ac_base}"
api_token = {{ file = "{ac_token}" }}
requests_per_second = 500

[[destinations.zoho]]
name = "zoho-chaos"
accounts_url = "{zoho_accounts}"
client_id = {{ file = "{zoho_id}" }}
client_secret = {{ file = "{zoho_secret}" }}
refresh_token = {{ file = "{zoho_refresh}" }}

[[destinations.pipedrive]]
name = "pd-chaos"
base_url = "{pd_base}"
api_token = {{ file = "{pd_token}" }}
requests_per_2s = 500
daily_token_budget = 100000000
{syncs}
"#,
        nats = cluster.url(),
        postgres = postgres.server_url(),
        admin = secret("admin-token", &admin),
        whsec = secret("whsec", &whsec),
        cb_key = secret("cb-key", &cb_key),
        cb_base = sandbox.chargebee.base_url(&cb_site),
        ac_base = sandbox.activecampaign_base_url(&ac_account),
        ac_token = secret("ac-token", &ac_token),
        zoho_accounts = sandbox.zoho.accounts_url(&zoho_org),
        zoho_id = secret("zoho-id", "1000.CHAOS"),
        zoho_secret = secret("zoho-secret", &zoho_secret),
        zoho_refresh = secret("zoho-refresh", &zoho_refresh),
        pd_base = sandbox.pipedrive.base_url(&pd_company),
        pd_token = secret("pd-token", &pd_token),
        syncs = ["stripe-chaos", "cb-chaos"]
            .iter()
            .flat_map(|source| {
                DESTINATIONS.iter().map(move |destination| {
                    format!("\n[[syncs]]\nsource = \"{source}\"\ndestination = \"{destination}\"\n")
                })
            })
            .collect::<String>(),
    );
    let mut fleet = Fleet::new(
        dir.path(),
        &config,
        &[
            ("ingest", 2),
            ("errors", 1),
            ("activecampaign", 2),
            ("zoho", 2),
            ("pipedrive", 2),
        ],
    );
    fleet.start_all().await;
    eprintln!(
        "chaos: NATS cluster {} (subnet {}.0/24), PostgreSQL on {}, {} billsync processes; logs in {}",
        cluster.node_names().join("+"),
        cluster.subnet(),
        postgres.port,
        fleet.names().len(),
        dir.path().display()
    );
    let nats = billsync_bus::connect(&cluster.url(), "billsync-chaos")
        .await
        .expect("connect to the cluster");
    let topology = billsync_bus::Topology::new(&prefix);
    let run = Arc::new(Run {
        sandbox,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client"),
        secret: whsec,
        ingest_ports: fleet.ports_of("ingest"),
        ac_account,
        zoho_org,
        pd_company,
        cb_site,
    });

    let faults = schedule(&fleet);
    let mut phases = Vec::new();
    let mut all: Vec<(usize, Vec<Customer>)> = Vec::new();
    for (phase, fault) in faults.iter().enumerate() {
        let name = fault.describe(&plan);
        eprintln!("chaos: [{}/{}] {name}", phase + 1, faults.len());
        let customers: Vec<Customer> = (0..plan.customers)
            .flat_map(|n| {
                [
                    Customer::new(Source::Stripe, phase, n),
                    Customer::new(Source::Chargebee, phase, n),
                ]
            })
            .collect();
        let load = tokio::spawn(drive(Arc::clone(&run), customers, plan.clone()));
        let events = customers_events(&plan);
        // Let a third of the load in before the fault strikes.
        tokio::time::sleep(Duration::from_secs_f64(
            events as f64 / f64::from(plan.rate) / 3.0,
        ))
        .await;
        apply(
            fault,
            &plan,
            &run,
            &mut fleet,
            &mut cluster,
            &postgres,
            &nats,
            &topology,
        )
        .await;
        let fault_over = Instant::now();
        let (customers, refused) = load.await.expect("the load task");
        // What is left of a storm must not spill into the next fault's customers.
        clear_crm_faults(&run);
        let mut drain = None;
        let mut counts = Counts::default();
        while fault_over.elapsed() < plan.drain_within {
            counts = check(&run, &customers, plan.updates, None);
            if counts.clean() && backlog(&nats, &topology).await == Some(0) {
                drain = Some(fault_over.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        counts.refused_webhooks = refused;
        eprintln!(
            "chaos:   drained in {}",
            drain.map_or("never".into(), |d| format!("{:.1} s", d.as_secs_f64()))
        );
        phases.push(PhaseReport {
            fault: name,
            counts,
            drain,
        });
        all.push((phase, customers));
    }

    // Afterwards: every fault's customers again (nothing undone later), with outcomes.
    let outcomes = read_outcomes(&nats, &topology).await;
    for (phase, customers) in &all {
        let mut counts = check(&run, customers, plan.updates, Some(&outcomes));
        counts.refused_webhooks = phases[*phase].counts.refused_webhooks;
        phases[*phase].counts = counts;
    }
    let crashed = fleet.exited();
    fleet.stop_all().await;
    let report = Report {
        phases,
        crashed,
        elapsed: started.elapsed(),
    };
    if report.passed() {
        drop(dir);
    } else {
        // Keep the logs for whoever reads the report.
        let kept = dir.keep();
        eprintln!("chaos: logs kept in {}", kept.display());
    }
    match Arc::try_unwrap(run) {
        Ok(run) => run.sandbox.shutdown().await,
        Err(_) => unreachable!("every load task has finished"),
    }
    report
}

fn customers_events(plan: &Plan) -> usize {
    plan.customers * 2 * (plan.updates + 1)
}

/// Sends the customers' lives: each step (creation, then each change) for every customer,
/// spread over time at the plan's rate. Returns them with their event ids, and how many
/// webhooks no ingest replica took.
async fn drive(run: Arc<Run>, mut customers: Vec<Customer>, plan: Plan) -> (Vec<Customer>, usize) {
    let pause = Duration::from_secs_f64(1.0 / f64::from(plan.rate));
    let mut refused = 0;
    for version in 0..=plan.updates {
        let mut sends = Vec::new();
        for customer in customers.iter_mut() {
            match customer.source {
                Source::Chargebee => {
                    let input = CbCustomerInput {
                        id: Some(customer.id.clone()),
                        first_name: Some(customer.first_name.clone()),
                        last_name: Some(format!("v{version}")),
                        email: Some(customer.email.clone()),
                        ..CbCustomerInput::default()
                    };
                    let change = if version == 0 {
                        run.sandbox.chargebee.create_customer(&run.cb_site, input)
                    } else {
                        run.sandbox
                            .chargebee
                            .update_customer(&run.cb_site, &customer.id, input)
                    };
                    let change = change.expect("the Chargebee site takes the change");
                    customer.event_ids.push(change.event.id);
                }
                Source::Stripe => {
                    let kind = if version == 0 {
                        "customer.created"
                    } else {
                        "customer.updated"
                    };
                    let mut event = billsync_sandbox::stripe::event(
                        kind,
                        billsync_sandbox::stripe::customer(
                            &customer.id,
                            &customer.email,
                            &customer.name_at(version),
                        ),
                    );
                    let id = format!("evt_{}", uuid::Uuid::new_v4().simple());
                    event["id"] = serde_json::json!(id);
                    customer.event_ids.push(id);
                    let run = Arc::clone(&run);
                    sends.push(tokio::spawn(
                        async move { deliver_webhook(&run, &event).await },
                    ));
                }
            }
            tokio::time::sleep(pause).await;
        }
        // A customer's next change is sent only once Stripe's webhook for this one was taken.
        for send in sends {
            refused += usize::from(!send.await.expect("a webhook task"));
        }
    }
    (customers, refused)
}

/// Posts a signed webhook to the ingest replicas in turn until one takes it, as Stripe
/// retries; false when none did within two minutes.
async fn deliver_webhook(run: &Run, event: &serde_json::Value) -> bool {
    let body = serde_json::to_vec(event).expect("encode the event");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut attempt = 0usize;
    while Instant::now() < deadline {
        let port = run.ingest_ports[attempt % run.ingest_ports.len()];
        attempt += 1;
        let now = chrono::Utc::now().timestamp();
        let response = run
            .http
            .post(format!(
                "http://127.0.0.1:{port}/webhooks/stripe/stripe-chaos"
            ))
            .header(
                "Stripe-Signature",
                billsync_sandbox::stripe::sign(&run.secret, now, &body),
            )
            .header("Content-Type", "application/json")
            .body(body.clone())
            .send()
            .await;
        if response.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

#[allow(clippy::too_many_arguments)]
async fn apply(
    fault: &Fault,
    plan: &Plan,
    run: &Run,
    fleet: &mut Fleet,
    cluster: &mut NatsCluster,
    postgres: &PrivatePostgres,
    nats: &async_nats::Client,
    topology: &billsync_bus::Topology,
) {
    match fault {
        Fault::Kill(name) => {
            let i = fleet.index_of(name);
            fleet.kill(i).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            fleet.start(i);
        }
        Fault::KillNatsNode(i) => {
            cluster.kill(*i);
            tokio::time::sleep(Duration::from_secs(5)).await;
            cluster.restart(*i);
        }
        Fault::KillStreamLeader => {
            let leader = cluster.stream_leader(nats, &topology.events_stream()).await;
            let i = cluster
                .index_of(&leader)
                .expect("the leader is a node of the cluster");
            eprintln!("chaos:   the events stream's leader is {leader}");
            cluster.kill(i);
            tokio::time::sleep(Duration::from_secs(5)).await;
            cluster.restart(i);
        }
        Fault::PostgresDown => {
            postgres.stop();
            tokio::time::sleep(plan.outage).await;
            postgres.resume();
        }
        Fault::Throttle | Fault::ServerErrors => {
            let (throttle_next, fail_next) = if matches!(fault, Fault::Throttle) {
                (300, 0)
            } else {
                (0, 300)
            };
            // ActiveCampaign's emulator has no injected 429s: its 429s come from its rate
            // limit, which the storm of 500s stands in for.
            set_crm_faults(
                run,
                billsync_sandbox::AcFaults {
                    fail_next: 300,
                    ..Default::default()
                },
                billsync_sandbox::ZohoFaults {
                    throttle_next,
                    fail_next,
                    ..Default::default()
                },
                billsync_sandbox::PdFaults {
                    throttle_next,
                    fail_next,
                    retry_after_secs: 2,
                    ..Default::default()
                },
            );
        }
        Fault::Latency => {
            set_crm_faults(
                run,
                billsync_sandbox::AcFaults {
                    latency_ms: 400,
                    ..Default::default()
                },
                billsync_sandbox::ZohoFaults {
                    latency_ms: 400,
                    ..Default::default()
                },
                billsync_sandbox::PdFaults {
                    latency_ms: 400,
                    ..Default::default()
                },
            );
            tokio::time::sleep(plan.outage).await;
            clear_crm_faults(run);
        }
        Fault::CutOff(i) => {
            cluster.cut_off(*i);
            tokio::time::sleep(plan.outage).await;
            cluster.reconnect(*i);
        }
    }
}

/// Sets the faults of the run's three CRM tenants at once.
fn set_crm_faults(
    run: &Run,
    ac: billsync_sandbox::AcFaults,
    zoho: billsync_sandbox::ZohoFaults,
    pd: billsync_sandbox::PdFaults,
) {
    let sandbox = &run.sandbox;
    sandbox.activecampaign.set_faults(&run.ac_account, ac);
    sandbox.zoho.set_faults(&run.zoho_org, zoho);
    sandbox.pipedrive.set_faults(&run.pd_company, pd);
}

fn clear_crm_faults(run: &Run) {
    set_crm_faults(
        run,
        Default::default(),
        Default::default(),
        Default::default(),
    );
}

/// Events not yet settled by the workers (events and replay consumers of every
/// destination) and outcomes not yet stored by the errors service; `None` while one cannot
/// be asked.
async fn backlog(nats: &async_nats::Client, topology: &billsync_bus::Topology) -> Option<u64> {
    use async_nats::jetstream::consumer::pull::Config;
    let js = async_nats::jetstream::new(nats.clone());
    let mut consumers: Vec<(String, String)> = DESTINATIONS
        .iter()
        .flat_map(|connection| {
            [
                (
                    topology.events_stream(),
                    topology.worker_consumer(connection),
                ),
                (
                    topology.replay_stream(),
                    topology.replay_consumer(connection),
                ),
            ]
        })
        .collect();
    consumers.push((topology.outcomes_stream(), topology.errors_consumer()));
    let mut total = 0;
    for (stream, consumer) in consumers {
        let stream = js.get_stream(&stream).await.ok()?;
        let mut consumer = stream.get_consumer::<Config>(&consumer).await.ok()?;
        let info = consumer.info().await.ok()?;
        total += info.num_pending + info.num_ack_pending as u64;
    }
    Some(total)
}

/// Outcomes by (destination connection, event id): whether one says synced.
type Outcomes = BTreeMap<(String, String), bool>;

async fn read_outcomes(nats: &async_nats::Client, topology: &billsync_bus::Topology) -> Outcomes {
    // Right after the last fault the cluster may still be electing leaders: JetStream's
    // answers time out for a while. Read again from the start until one read completes.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        match try_read_outcomes(nats, topology).await {
            Ok(outcomes) => return outcomes,
            Err(error) if Instant::now() < deadline => {
                eprintln!("chaos: reading the outcomes failed ({error}); reading again");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(error) => panic!("reading the outcomes stream: {error}"),
        }
    }
}

async fn try_read_outcomes(
    nats: &async_nats::Client,
    topology: &billsync_bus::Topology,
) -> Result<Outcomes, async_nats::Error> {
    use async_nats::jetstream::consumer::pull::OrderedConfig;
    let js = async_nats::jetstream::new(nats.clone());
    let mut stream = js.get_stream(topology.outcomes_stream()).await?;
    // Read to the last message the stream holds now, by sequence: not until the consumer
    // says nothing is pending, which a consumer recreated mid-read can say early.
    let state = stream.info().await?.state.clone();
    let mut outcomes = Outcomes::new();
    if state.messages == 0 {
        return Ok(outcomes);
    }
    let consumer = stream.create_consumer(OrderedConfig::default()).await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        if let Ok(outcome) = serde_json::from_slice::<Outcome>(&message.payload) {
            let v1 = outcome.v1();
            let synced = matches!(v1.result, OutcomeResult::Synced { .. });
            let entry = outcomes
                .entry((v1.destination_connection.clone(), v1.event_id.clone()))
                .or_default();
            *entry |= synced;
        }
        let read_to = message
            .info()
            .map(|i| i.stream_sequence)
            .unwrap_or(u64::MAX);
        if read_to >= state.last_sequence {
            break;
        }
    }
    Ok(outcomes)
}

/// Compares what each CRM holds for `customers` with their newest version.
fn check(run: &Run, customers: &[Customer], updates: usize, outcomes: Option<&Outcomes>) -> Counts {
    let sandbox = &run.sandbox;
    let ac = sandbox.activecampaign.snapshot(&run.ac_account);
    let zoho = sandbox.zoho.snapshot(&run.zoho_org);
    let pd = sandbox.pipedrive.snapshot(&run.pd_company);
    let mut counts = Counts {
        customers: customers.len(),
        events: customers.iter().map(|c| c.event_ids.len()).sum(),
        ..Counts::default()
    };
    let want_name = |c: &Customer| c.name_at(updates);
    for customer in customers {
        for destination in DESTINATIONS {
            let names = match destination {
                "ac-chaos" => load::names_in_activecampaign(&ac, &customer.email),
                "zoho-chaos" => load::names_in_zoho(&zoho, &customer.email),
                _ => load::names_in_pipedrive(&pd, &customer.email),
            };
            let what = format!("{destination} {}", customer.email);
            if names.is_empty() {
                counts.lost += 1;
                counts.details.push(format!("{what}: no record"));
                continue;
            }
            if names.len() > 1 {
                counts.duplicated += names.len() - 1;
                counts
                    .details
                    .push(format!("{what}: {} records {names:?}", names.len()));
            }
            if !names.contains(&want_name(customer)) {
                let newest_synced = outcomes.and_then(|o| {
                    customer
                        .event_ids
                        .last()
                        .and_then(|id| o.get(&(destination.to_string(), id.clone())).copied())
                });
                let versions: Vec<_> = names.iter().map(|n| load::version_of(n)).collect();
                if newest_synced == Some(true) {
                    counts.out_of_order += 1;
                    counts.details.push(format!(
                        "{what}: holds {names:?} (versions {versions:?}) after v{updates} was synced"
                    ));
                } else {
                    counts.lost += 1;
                    counts.details.push(format!(
                        "{what}: holds {names:?}, expected {:?}",
                        want_name(customer)
                    ));
                }
            }
            if let Some(outcomes) = outcomes {
                for id in &customer.event_ids {
                    if !outcomes.contains_key(&(destination.to_string(), id.clone())) {
                        counts.missing_outcomes += 1;
                        if counts.missing_outcomes <= 3 {
                            counts
                                .details
                                .push(format!("{what}: event {id} has no outcome"));
                        }
                    }
                }
            }
        }
    }
    counts
}
