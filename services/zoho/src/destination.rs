//! One Zoho CRM connection as a billsync destination: its client, its batched upserts, the
//! deal pipeline checked against Zoho, and which flow an event takes (`chargebee_flow`,
//! `stripe_flow`).

use crate::api::{
    Module, OAuthSettings, RecordResult, Trigger, ZohoClient, MAX_RECORDS_PER_UPSERT,
};
use crate::sync_rules::{sync_rules, SyncRules};
use async_nats::jetstream::kv;
use billsync_config::{Config, ZohoConnection};
use billsync_events::{BillingEventV1, DestinationKind, FailureClass, SourceKind};
use billsync_worker::{
    BatchSink, Batcher, Delivered, DeliveryError, Destination, Pass, Pause, RecordStore,
    MAX_CALLING,
};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

/// How long a record waits for others to share its upsert: latency stays within a second.
pub const BATCH_WAIT: Duration = Duration::from_millis(500);

/// Events of one connection worked on at once. Every event's calls run at once (Zoho has no
/// turns like ActiveCampaign's), so this stays at the kit's [`MAX_CALLING`]: upserts of up to
/// 64 records. Twice `MAX_RECORDS_PER_UPSERT` would fill them, but a backlog then no longer
/// completes in arrival order (the kit's conformance check: the median event of 4,000
/// finished at 3.8 s of 15.2 s); not measured further yet.
pub const CONCURRENCY: usize = MAX_CALLING;

pub struct ZohoDestination {
    name: String,
    pub(crate) zoho: Arc<ZohoClient>,
    pub(crate) upserts: Batcher<Upserts>,
    /// What billsync remembers of this connection's records: contacts and deals written,
    /// accounts found, Chargebee customers' subscriptions.
    pub(crate) records: RecordStore,
    syncs: HashMap<String, SyncRules>,
    /// Each deal-writing sync's pipeline and owner, checked against Zoho once.
    deal_settings: OnceCell<HashMap<String, DealSettings>>,
    /// Set once the link fields are known to exist (`link_fields`).
    pub(crate) link_fields: OnceCell<()>,
    /// Set while the connection's API credits are spent.
    pause: Pause,
}

/// A sync's deal pipeline and owner, as Zoho knows them.
#[derive(Debug, Clone)]
pub(crate) struct DealSettings {
    pub(crate) pipeline: String,
    pub(crate) owner_id: Option<String>,
}

impl ZohoDestination {
    /// `links` keeps the records, `tokens` the shared OAuth token, `budgets` the credits
    /// ledger every replica shares.
    pub fn new(
        config: &Config,
        connection: &ZohoConnection,
        links: kv::Store,
        tokens: kv::Store,
        budgets: kv::Store,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let syncs = sync_rules(config, connection)?;
        let settings = OAuthSettings {
            accounts_url: connection.accounts_url(),
            client_id: connection.client_id.expose().into(),
            client_secret: connection.client_secret.expose().into(),
            refresh_token: connection.refresh_token.expose().into(),
        };
        let zoho = ZohoClient::new(
            &connection.name,
            settings,
            RecordStore::new(tokens, DestinationKind::Zoho, &connection.name),
            connection.credits_per_day,
            connection.concurrency as usize,
            timeout,
        )
        .with_shared_credits(budgets, &connection.name, connection.credits_per_day);
        let zoho = Arc::new(zoho);
        Ok(Self {
            name: connection.name.clone(),
            upserts: Batcher::new(
                Upserts {
                    zoho: Arc::clone(&zoho),
                },
                MAX_RECORDS_PER_UPSERT,
                BATCH_WAIT,
            ),
            zoho,
            records: RecordStore::new(links, DestinationKind::Zoho, &connection.name),
            syncs,
            deal_settings: OnceCell::new(),
            link_fields: OnceCell::new(),
            pause: Pause::new(
                "zoho",
                "credits",
                &connection.name,
                CancellationToken::new(),
            ),
        })
    }

    /// Events waiting for a paused connection go back to JetStream when `shutdown` fires.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.pause = Pause::new("zoho", "credits", &self.name, shutdown);
        self
    }

    /// Checks every deal-writing sync's pipeline, stages and owner against the Deals
    /// layouts, pipelines and users of the Zoho account. The worker calls it at start; a
    /// delivery calls it until it has once succeeded. A mismatch is a configuration error
    /// naming the sync's option, the value and what Zoho has.
    pub async fn check_deal_settings(&self) -> Result<(), DeliveryError> {
        self.deal_settings().await.map(|_| ())
    }

    /// Whether a sync of this connection writes deals.
    pub(crate) fn writes_deals(&self) -> bool {
        self.syncs.values().any(|r| r.options.sync_deals)
    }

    pub(crate) fn connection_name(&self) -> &str {
        &self.name
    }

    pub(crate) async fn deal_settings(
        &self,
    ) -> Result<&HashMap<String, DealSettings>, DeliveryError> {
        self.deal_settings
            .get_or_try_init(|| async {
                let mut settings = HashMap::new();
                if !self.writes_deals() {
                    return Ok(settings);
                }
                let layouts = self.zoho.layouts(Module::Deals).await?;
                let mut pipelines = Vec::new();
                for layout in layouts.iter().filter(|l| l.status != "inactive") {
                    for pipeline in self.zoho.pipelines(&layout.id).await? {
                        pipelines.push((layout.name.clone(), pipeline));
                    }
                }
                let users = self.zoho.users().await?;
                for (source, rules) in self.syncs.iter().filter(|(_, r)| r.options.sync_deals) {
                    let wrong = |option: &str, reason: String| {
                        DeliveryError::permanent(
                            FailureClass::Configuration,
                            format!("{}.options.{option}: {reason}", rules.key),
                        )
                    };
                    let chosen = match &rules.options.pipeline {
                        Some(name) => pipelines.iter().find(|(_, p)| &p.display_value == name),
                        None => pipelines
                            .iter()
                            .find(|(_, p)| p.default == Some(true))
                            .or(pipelines.first()),
                    };
                    let names: Vec<&str> =
                        pipelines.iter().map(|(_, p)| p.display_value.as_str()).collect();
                    let Some((layout, pipeline)) = chosen else {
                        return Err(wrong(
                            "deal_pipeline",
                            format!(
                                "{:?} is not a pipeline of Zoho CRM's Deals layouts; they have {}",
                                rules.options.pipeline.as_deref().unwrap_or("(the default)"),
                                names.join(", ")
                            ),
                        ));
                    };
                    for (option, stage) in rules.options.stages.named() {
                        if !pipeline.maps.iter().any(|s| s.display_value == stage) {
                            let stages: Vec<&str> =
                                pipeline.maps.iter().map(|s| s.display_value.as_str()).collect();
                            return Err(wrong(
                                option,
                                format!(
                                    "{stage:?} is not a stage of pipeline {:?} (Deals layout \
                                     {layout:?}); its stages are {}",
                                    pipeline.display_value,
                                    stages.join(", ")
                                ),
                            ));
                        }
                    }
                    let owner_id = match &rules.options.deal_owner {
                        None => None,
                        Some(email) => Some(
                            users
                                .iter()
                                .find(|u| u.email.eq_ignore_ascii_case(email))
                                .map(|u| u.id.clone())
                                .ok_or_else(|| {
                                    wrong(
                                        "deal_owner",
                                        format!("{email:?} is not an active user of the Zoho CRM account"),
                                    )
                                })?,
                        ),
                    };
                    settings.insert(
                        source.clone(),
                        DealSettings {
                            pipeline: pipeline.display_value.clone(),
                            owner_id,
                        },
                    );
                }
                Ok(settings)
            })
            .await
    }
}

impl Destination for ZohoDestination {
    fn kind(&self) -> DestinationKind {
        DestinationKind::Zoho
    }

    fn connection(&self) -> &str {
        &self.name
    }

    /// Waits while the connection is paused, then applies the event; what happens tells
    /// the pause whether the credits are spent.
    async fn deliver(
        &self,
        event: &BillingEventV1,
        pass: Pass,
    ) -> Result<Delivered, DeliveryError> {
        self.pause.wait().await?;
        let result = self.apply(event, pass).await;
        self.pause.observe(&result);
        result
    }

    fn paused(&self) -> Option<String> {
        self.pause.reason()
    }

    fn concurrency(&self) -> usize {
        CONCURRENCY
    }

    /// Readiness: false once Zoho refused the refresh token (one failure shared by every
    /// replica, not a refresh per event); an access token then proves it works again.
    async fn healthcheck(&self) -> Result<(), DeliveryError> {
        if let Err(reason) = self.zoho.healthcheck() {
            return Err(DeliveryError::Permanent {
                class: FailureClass::Configuration,
                message: reason,
                http_status: Some(401),
                detail: Value::Null,
            });
        }
        self.zoho.tokens().token().await.map(|_| ())
    }
}

impl ZohoDestination {
    /// Which flow the event takes: its sync's source decides.
    async fn apply(&self, event: &BillingEventV1, pass: Pass) -> Result<Delivered, DeliveryError> {
        let Some(rules) = self.syncs.get(&event.connection) else {
            return Err(DeliveryError::no_sync(&event.connection, &self.name));
        };
        self.ensure_link_fields().await?;
        match rules.source {
            SourceKind::Chargebee => self.apply_chargebee(rules, event, pass).await,
            SourceKind::Stripe => self.apply_stripe(rules, event, pass).await,
        }
    }
}

/// One upsert call's records share a module, a duplicate check and a trigger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct UpsertGroup {
    pub(crate) module: Module,
    pub(crate) duplicate_check: &'static [&'static str],
    pub(crate) trigger: Vec<Trigger>,
}

/// Zoho's upsert as a batch sink: each record's own result, in order.
pub(crate) struct Upserts {
    zoho: Arc<ZohoClient>,
}

impl BatchSink for Upserts {
    type Key = UpsertGroup;
    type Item = Value;
    type Output = RecordResult;

    async fn flush(
        &self,
        group: &UpsertGroup,
        records: Vec<Value>,
    ) -> Result<Vec<Result<RecordResult, DeliveryError>>, DeliveryError> {
        let results = self
            .zoho
            .upsert(
                group.module,
                &records,
                group.duplicate_check,
                &group.trigger,
            )
            .await?;
        Ok(results.into_iter().map(Ok).collect())
    }
}

impl ZohoDestination {
    /// Upserts one record through the batcher: its own result, success or Zoho's error.
    pub(crate) async fn upsert(
        &self,
        rules: &SyncRules,
        module: Module,
        duplicate_check: &'static [&'static str],
        record: Value,
    ) -> Result<RecordResult, DeliveryError> {
        let group = UpsertGroup {
            module,
            duplicate_check,
            trigger: rules.options.trigger.clone(),
        };
        self.upserts.submit(group, record).await
    }
}

/// A record Zoho refused: permanent, with Zoho's code, message and field.
pub(crate) fn refused(module: Module, result: &RecordResult) -> DeliveryError {
    let field = result
        .field()
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default();
    DeliveryError::Permanent {
        class: FailureClass::Rejected,
        message: format!(
            "Zoho CRM refused the {} record: {}: {}{field}",
            module.api_name(),
            result.code,
            result.message
        ),
        http_status: None,
        detail: serde_json::to_value(result).unwrap_or_default(),
    }
}

/// Whether a stored copy of what billsync last wrote lets a live event skip the write.
pub(crate) fn unchanged(pass: Pass, stored: Option<&Value>, record: &Value) -> bool {
    pass == Pass::Live && stored == Some(record)
}

/// Delivered: the id written, or why nothing was.
pub(crate) fn delivered(id: Option<String>, reason: impl FnOnce() -> String) -> Delivered {
    match id {
        Some(id) => Delivered::Written { crm_id: Some(id) },
        None => Delivered::NotApplicable { reason: reason() },
    }
}
