//! Runs that copy Chargebee's current records to one destination: the initial sync of the
//! 10 latest customers and "sync all records" (seeds 000 and 004), with the validation step
//! that comes before a first full sync (seed 004).
//!
//! A run walks the list APIs, validates, and sends snapshot events to the one destination
//! through its replay subject — so other destinations fed by the same site are untouched —
//! then waits for the destination's outcome of every record and reports it. Outcomes carry
//! the run id, so the errors service records the run per record as well.

use super::client::{ChargebeeClient, ChargebeeError};
use super::settings::ConnectionSettings;
use super::types::Resource;
use billsync_bus::{Publisher, StreamSettings, Topology};
use billsync_config::{Config, ConnectionKind};
use billsync_events::{
    BillingEvent, BillingEventV1, Failure, FailureClass, ObjectKind, Outcome, OutcomeResult,
    OutcomeV1, RecordVersion, RunKind, SourceKind,
};
use futures::StreamExt;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

/// How much a run copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunScope {
    /// The initial sync: the `n` most recently created customers and their subscriptions.
    LatestCustomers(usize),
    /// "Sync all records": every customer, subscription and invoice.
    All,
}

/// Which customers cannot be synced, found before a first full sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationIssue {
    pub customer_id: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub problem: String,
}

/// What the list APIs returned for a run.
#[derive(Debug, Default)]
pub struct Collected {
    /// Customers, newest first.
    pub customers: Vec<Map<String, Value>>,
    pub subscriptions: Vec<Map<String, Value>>,
    pub invoices: Vec<Map<String, Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0} is not a configured Chargebee connection")]
    UnknownSource(String),
    #[error("{0} is not a configured destination connection")]
    UnknownDestination(String),
    #[error("no sync from {from} to {to} is configured; add a [[syncs]] entry")]
    NoSync { from: String, to: String },
    #[error(
        "the sync from {from} to {to} is unlinked (enabled = false on it or on {from}); link it \
         again first"
    )]
    Unlinked { from: String, to: String },
    #[error("Chargebee: {0}")]
    Chargebee(#[from] ChargebeeError),
    #[error("NATS: {0}")]
    Bus(String),
}

fn text(record: &Map<String, Value>, key: &str) -> String {
    match record.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// Walks the list APIs for `scope`; `progress` is told how many records were read so far.
pub async fn collect(
    client: &ChargebeeClient,
    scope: RunScope,
    mut progress: impl FnMut(&str, usize),
) -> Result<Collected, ChargebeeError> {
    let mut collected = Collected::default();
    let newest_first = [("sort_by[desc]", "created_at".to_string())];
    match scope {
        RunScope::LatestCustomers(n) => {
            let page = client
                .list(Resource::Customers, n.min(100), None, &newest_first)
                .await?;
            collected.customers = take(page.entries, "customer").into_iter().take(n).collect();
            progress("customers", collected.customers.len());
            if !collected.customers.is_empty() {
                let ids: Vec<String> = collected.customers.iter().map(|c| text(c, "id")).collect();
                let filter = [("customer_id[in]", format!("[{}]", ids.join(",")))];
                collected.subscriptions = walk(client, Resource::Subscriptions, &filter, |n| {
                    progress("subscriptions", n)
                })
                .await?;
            }
        }
        RunScope::All => {
            collected.customers = walk(client, Resource::Customers, &newest_first, |n| {
                progress("customers", n)
            })
            .await?;
            collected.subscriptions = walk(client, Resource::Subscriptions, &[], |n| {
                progress("subscriptions", n)
            })
            .await?;
            collected.invoices =
                walk(client, Resource::Invoices, &[], |n| progress("invoices", n)).await?;
        }
    }
    Ok(collected)
}

async fn walk(
    client: &ChargebeeClient,
    resource: Resource,
    params: &[(&str, String)],
    mut progress: impl FnMut(usize),
) -> Result<Vec<Map<String, Value>>, ChargebeeError> {
    let mut records = Vec::new();
    let mut offset: Option<String> = None;
    loop {
        let page = client
            .list(resource, 100, offset.as_deref(), params)
            .await?;
        records.extend(take(page.entries, resource.key()));
        progress(records.len());
        match page.next_offset {
            Some(next) => offset = Some(next),
            None => return Ok(records),
        }
    }
}

fn take(entries: Vec<Map<String, Value>>, key: &str) -> Vec<Map<String, Value>> {
    entries
        .into_iter()
        .filter_map(|mut entry| match entry.remove(key) {
            Some(Value::Object(record)) => Some(record),
            _ => None,
        })
        .collect()
}

/// The unique id a destination matches customers by, for validation: what to call it and
/// how to read it from a Chargebee customer (blank when absent).
pub struct UniqueIdRule {
    pub label: String,
    pub read: ReadUniqueId,
}

/// Reads a customer's unique id; blank when it has none.
pub type ReadUniqueId = Box<dyn Fn(&Map<String, Value>) -> String + Send + Sync>;

impl UniqueIdRule {
    /// The email, every destination's default.
    pub fn email() -> Self {
        Self {
            label: "email".into(),
            read: Box::new(|customer| text(customer, "email")),
        }
    }
}

/// Seed 004's validation: customers without the unique id (email) and, when the sync needs
/// subscriptions, customers without one.
pub fn validate(collected: &Collected, require_subscription: bool) -> Vec<ValidationIssue> {
    validate_with(collected, require_subscription, &UniqueIdRule::email())
}

/// [`validate`] with the destination's unique id.
pub fn validate_with(
    collected: &Collected,
    require_subscription: bool,
    unique_id: &UniqueIdRule,
) -> Vec<ValidationIssue> {
    let with_subscription: HashSet<String> = collected
        .subscriptions
        .iter()
        .map(|s| text(s, "customer_id"))
        .collect();
    collected
        .customers
        .iter()
        .filter_map(|c| {
            let id = text(c, "id");
            let email = text(c, "email");
            let problem = if (unique_id.read)(c).trim().is_empty() {
                format!(
                    "no {} (the unique id matching the CRM record)",
                    unique_id.label
                )
            } else if require_subscription && !with_subscription.contains(&id) {
                "no subscription".to_string()
            } else {
                return None;
            };
            Some(ValidationIssue {
                customer_id: id,
                email,
                first_name: text(c, "first_name"),
                last_name: text(c, "last_name"),
                company: text(c, "company"),
                problem,
            })
        })
        .collect()
}

/// The validation issues as CSV, one customer per row.
pub fn issues_csv(issues: &[ValidationIssue]) -> String {
    let mut out = String::from("customer_id,email,first_name,last_name,company,problem\n");
    for i in issues {
        let row = [
            &i.customer_id,
            &i.email,
            &i.first_name,
            &i.last_name,
            &i.company,
            &i.problem,
        ];
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn csv_cell(value: &str) -> String {
    // A leading = + - @ would run as a formula in a spreadsheet.
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// Snapshot events for the records of a run, customers before their subscriptions, leaving
/// out the customers in `skip` (and their subscriptions and invoices).
pub fn snapshot_events(
    connection: &str,
    run_id: &str,
    collected: &Collected,
    skip: &HashSet<String>,
) -> Vec<BillingEvent> {
    split_snapshot_events(connection, run_id, collected, skip).0
}

/// The snapshot events of a run: those to send, and those of the customers in `skip` with
/// their subscriptions and invoices, which become sync errors instead.
pub fn split_snapshot_events(
    connection: &str,
    run_id: &str,
    collected: &Collected,
    skip: &HashSet<String>,
) -> (Vec<BillingEvent>, Vec<BillingEvent>) {
    let customers: HashMap<String, &Map<String, Value>> = collected
        .customers
        .iter()
        .map(|c| (text(c, "id"), c))
        .collect();
    let now = chrono::Utc::now();
    let event = |object: ObjectKind, record: &Map<String, Value>, customer_id: String| {
        let object_id = text(record, "id");
        let related = customers
            .get(&customer_id)
            .filter(|_| object != ObjectKind::Customer)
            .map(|c| serde_json::json!({ "customer": c }))
            .unwrap_or(Value::Null);
        let id = format!("snap_{run_id}_{}_{object_id}", object.as_str());
        let position = record
            .get("resource_version")
            .and_then(Value::as_i64)
            .or_else(|| {
                record
                    .get("updated_at")
                    .and_then(Value::as_i64)
                    .map(|s| s * 1000)
            })
            .unwrap_or(0);
        BillingEvent::V1(BillingEventV1 {
            version: RecordVersion {
                position,
                event_id: id.clone(),
                sequence: None,
            },
            id,
            source: SourceKind::Chargebee,
            connection: connection.to_string(),
            event_type: format!("{}_snapshot", object.as_str()),
            object,
            object_id,
            customer_id: Some(customer_id),
            occurred_at: now,
            run_id: Some(run_id.to_string()),
            data: Value::Object(record.clone()),
            related,
        })
    };
    let (mut sent, mut skipped) = (Vec::new(), Vec::new());
    let mut add = |kind: ObjectKind, record: &Map<String, Value>, customer: String| {
        let list = if skip.contains(&customer) {
            &mut skipped
        } else {
            &mut sent
        };
        list.push(event(kind, record, customer));
    };
    for customer in &collected.customers {
        add(ObjectKind::Customer, customer, text(customer, "id"));
    }
    for (kind, records) in [
        (ObjectKind::Subscription, &collected.subscriptions),
        (ObjectKind::Invoice, &collected.invoices),
    ] {
        for record in records {
            add(kind, record, text(record, "customer_id"));
        }
    }
    (sent, skipped)
}

/// The sync error of a record a run did not send because validation skipped its customer:
/// listed with the other errors (and in their CSV) until it syncs or is ignored. Fixed in
/// Chargebee, the customer syncs with that change, and the errors service then retries its
/// subscriptions and invoices by themselves.
fn skipped_by_validation(event: &BillingEventV1, problem: &str) -> OutcomeResult {
    let customer = event.customer_id.as_deref().unwrap_or_default();
    let message = if event.object == ObjectKind::Customer {
        format!(
            "skipped by validation before syncing all records: Chargebee customer {customer} \
             has {problem}. Fix it in Chargebee: the change syncs the customer, and its \
             subscriptions and invoices follow by themselves. Or ignore this error"
        )
    } else {
        format!(
            "skipped by validation before syncing all records: its Chargebee customer \
             {customer} has {problem}; retried by itself once the customer syncs"
        )
    };
    OutcomeResult::Failed(Failure {
        class: FailureClass::InvalidEvent,
        message,
        http_status: None,
        vendor_detail: Value::Null,
        attempts: 0,
        event: BillingEvent::V1(event.clone()),
    })
}

/// One record's result in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordResult {
    pub record_key: String,
    pub status: &'static str,
    pub detail: String,
}

/// What a run did, record by record.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub run_id: String,
    pub results: Vec<RecordResult>,
    pub skipped_by_validation: Vec<ValidationIssue>,
    /// Records sent whose outcome did not arrive before the deadline.
    pub pending: Vec<String>,
}

impl RunReport {
    pub fn count(&self, status: &str) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }

    /// The report as the CLI prints it: one line per record, then a summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for r in &self.results {
            out.push_str(&format!(
                "{:<8} {:<40} {}\n",
                r.status, r.record_key, r.detail
            ));
        }
        for issue in &self.skipped_by_validation {
            out.push_str(&format!(
                "{:<8} customer/{:<31} {} (a sync error until fixed or ignored)\n",
                "skipped", issue.customer_id, issue.problem
            ));
        }
        for key in &self.pending {
            out.push_str(&format!(
                "{:<8} {key:<40} no outcome yet; see `billsync runs {}`\n",
                "pending", self.run_id
            ));
        }
        out.push_str(&format!(
            "run {}: {} synced, {} failed, {} skipped, {} pending\n",
            self.run_id,
            self.count("synced"),
            self.count("failed"),
            self.count("skipped") + self.skipped_by_validation.len(),
            self.pending.len()
        ));
        out
    }
}

/// What a run needs from its caller.
pub struct RunRequest<'a> {
    pub source: &'a str,
    pub destination: &'a str,
    pub scope: RunScope,
    /// Customers without a subscription are skipped too (for syncs that need one).
    pub require_subscription: bool,
    /// How long to wait for the destination's outcomes.
    pub wait: Duration,
    /// The destination's unique id when it is not the email.
    pub unique_id: Option<&'a UniqueIdRule>,
}

/// Runs an initial or full sync of `request.source` to `request.destination`.
pub async fn run(
    config: &Config,
    client: async_nats::Client,
    request: &RunRequest<'_>,
    mut progress: impl FnMut(&str, usize),
) -> Result<RunReport, RunError> {
    let connection = config
        .sources
        .chargebee
        .iter()
        .find(|c| c.name == request.source)
        .ok_or_else(|| RunError::UnknownSource(request.source.to_string()))?;
    let destination_kind = match config.connection_kind(request.destination) {
        Some(ConnectionKind::Destination(kind)) => kind,
        _ => {
            return Err(RunError::UnknownDestination(
                request.destination.to_string(),
            ))
        }
    };
    let Some(sync) = config
        .syncs
        .iter()
        .find(|s| s.source == request.source && s.destination == request.destination)
    else {
        return Err(RunError::NoSync {
            from: request.source.to_string(),
            to: request.destination.to_string(),
        });
    };
    if !config.sync_active(sync) {
        return Err(RunError::Unlinked {
            from: request.source.to_string(),
            to: request.destination.to_string(),
        });
    }
    let settings = ConnectionSettings::from_config(connection);
    let chargebee = ChargebeeClient::new(
        &settings.base_url,
        settings.api_key.clone(),
        settings.request_timeout,
        settings.requests_per_minute,
    )?;
    let topology = Topology::new(&config.nats.prefix);
    let js = async_nats::jetstream::new(client);
    let stream_settings = StreamSettings::from(&config.nats);
    let bus = |e: &dyn std::fmt::Display| RunError::Bus(e.to_string());
    topology
        .ensure_replay_stream(&js, &stream_settings)
        .await
        .map_err(|e| bus(&e))?;
    topology
        .ensure_outcomes_stream(&js, &stream_settings)
        .await
        .map_err(|e| bus(&e))?;
    let publisher = Publisher::new(js.clone(), topology.clone(), Duration::from_secs(10));

    // Listen before sending, so no outcome can be missed.
    let outcomes_stream = js
        .get_stream(topology.outcomes_stream())
        .await
        .map_err(|e| bus(&e))?;
    let consumer = outcomes_stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{}.outcomes.{}.>", topology.prefix(), request.destination),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| bus(&e))?;
    let mut outcomes = consumer.messages().await.map_err(|e| bus(&e))?;

    let kind = match request.scope {
        RunScope::LatestCustomers(_) => RunKind::Initial,
        RunScope::All => RunKind::Full,
    };
    let run_id = kind.new_run_id(&uuid::Uuid::new_v4().simple().to_string()[..12]);
    let collected = collect(&chargebee, request.scope, &mut progress).await?;
    let issues = match request.scope {
        RunScope::All => validate_with(
            &collected,
            request.require_subscription,
            request.unique_id.unwrap_or(&UniqueIdRule::email()),
        ),
        // The initial sync shows every error, validation ones included, so the user can fix
        // them before syncing all records.
        RunScope::LatestCustomers(_) => Vec::new(),
    };
    let problems: HashMap<&str, &str> = issues
        .iter()
        .map(|i| (i.customer_id.as_str(), i.problem.as_str()))
        .collect();
    let skip: HashSet<String> = issues.iter().map(|i| i.customer_id.clone()).collect();
    let (events, skipped) = split_snapshot_events(request.source, &run_id, &collected, &skip);
    let mut waiting: BTreeMap<String, ()> = BTreeMap::new();
    for (sent, event) in events.iter().enumerate() {
        publisher
            .publish_replay(request.destination, event, &event.v1().id)
            .await
            .map_err(|e| bus(&e))?;
        waiting.insert(event.v1().record_key(), ());
        progress("sent", sent + 1);
    }
    for event in &skipped {
        let event = event.v1();
        let problem = event
            .customer_id
            .as_deref()
            .and_then(|c| problems.get(c))
            .copied()
            .unwrap_or_default();
        let outcome = Outcome::V1(OutcomeV1 {
            destination: destination_kind,
            destination_connection: request.destination.to_string(),
            source: SourceKind::Chargebee,
            source_connection: request.source.to_string(),
            record_key: event.record_key(),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            run_id: Some(run_id.clone()),
            at: chrono::Utc::now(),
            result: skipped_by_validation(event, problem),
        });
        publisher
            .publish_outcome(&outcome)
            .await
            .map_err(|e| bus(&e))?;
    }

    let mut results = Vec::new();
    let deadline = tokio::time::Instant::now() + request.wait;
    while !waiting.is_empty() {
        let next = tokio::time::timeout_at(deadline, outcomes.next()).await;
        let Ok(Some(Ok(message))) = next else {
            if matches!(next, Ok(Some(Err(_)))) {
                continue;
            }
            break;
        };
        let Ok(outcome) = serde_json::from_slice::<Outcome>(&message.payload) else {
            continue;
        };
        let outcome = outcome.v1();
        if outcome.run_id.as_deref() != Some(run_id.as_str())
            || waiting.remove(&outcome.record_key).is_none()
        {
            continue;
        }
        let (status, detail) = match &outcome.result {
            OutcomeResult::Synced { crm_id } => (
                "synced",
                crm_id
                    .as_ref()
                    .map(|id| format!("CRM record {id}"))
                    .unwrap_or_default(),
            ),
            OutcomeResult::Failed(failure) => ("failed", failure.message.clone()),
            OutcomeResult::Skipped { reason } => ("skipped", reason.clone()),
        };
        results.push(RecordResult {
            record_key: outcome.record_key.clone(),
            status,
            detail,
        });
        progress("outcomes", results.len());
    }
    Ok(RunReport {
        run_id,
        results,
        skipped_by_validation: issues,
        pending: waiting.into_keys().collect(),
    })
}

/// The validation step alone, for `billsync sync validate`.
pub async fn validate_connection(
    config: &Config,
    source: &str,
    require_subscription: bool,
    unique_id: &UniqueIdRule,
    progress: impl FnMut(&str, usize),
) -> Result<Vec<ValidationIssue>, RunError> {
    let connection = config
        .sources
        .chargebee
        .iter()
        .find(|c| c.name == source)
        .ok_or_else(|| RunError::UnknownSource(source.to_string()))?;
    let settings = ConnectionSettings::from_config(connection);
    let client = ChargebeeClient::new(
        &settings.base_url,
        settings.api_key.clone(),
        settings.request_timeout,
        settings.requests_per_minute,
    )?;
    let mut collected = collect(&client, RunScope::All, progress).await?;
    collected.invoices.clear();
    Ok(validate_with(&collected, require_subscription, unique_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn collected() -> Collected {
        Collected {
            customers: vec![
                record(json!({"id": "c1", "email": "a@x.io", "first_name": "Ann"})),
                record(
                    json!({"id": "c2", "email": "", "first_name": "No", "last_name": "Mail", "company": "=cmd, Inc"}),
                ),
                record(json!({"id": "c3", "email": "c@x.io"})),
            ],
            subscriptions: vec![record(
                json!({"id": "s1", "customer_id": "c1", "resource_version": 5}),
            )],
            invoices: vec![],
        }
    }

    #[test]
    fn validation_lists_missing_emails_and_optionally_missing_subscriptions() {
        let issues = validate(&collected(), false);
        assert_eq!(
            issues
                .iter()
                .map(|i| i.customer_id.as_str())
                .collect::<Vec<_>>(),
            vec!["c2"]
        );
        let issues = validate(&collected(), true);
        assert_eq!(
            issues
                .iter()
                .map(|i| i.customer_id.as_str())
                .collect::<Vec<_>>(),
            vec!["c2", "c3"]
        );
        assert_eq!(
            issues_csv(&issues[..1]),
            "customer_id,email,first_name,last_name,company,problem\n\
             c2,,No,Mail,\"'=cmd, Inc\",no email (the unique id matching the CRM record)\n"
        );
    }

    #[test]
    fn snapshots_skip_invalid_customers_and_carry_the_customer_with_subscriptions() {
        let skip: HashSet<String> = ["c2".to_string()].into();
        let events = snapshot_events("cb", "run_1", &collected(), &skip);
        let keys: Vec<String> = events.iter().map(|e| e.v1().record_key()).collect();
        assert_eq!(keys, vec!["customer/c1", "customer/c3", "subscription/s1"]);
        let sub = events[2].v1();
        assert_eq!(sub.related["customer"]["email"], "a@x.io");
        assert_eq!(sub.version.position, 5);
        assert_eq!(sub.run_id.as_deref(), Some("run_1"));
        assert_eq!(sub.id, "snap_run_1_subscription_s1");
    }
}
