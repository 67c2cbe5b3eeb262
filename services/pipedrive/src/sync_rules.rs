//! How each sync into a Pipedrive connection is applied: its options and mapping (as
//! `options` declares them), checked at start and by `check-config`.

use crate::options::{PipedriveSyncs, SubscriptionsTo, SyncOptions, UniqueId};
use billsync_config::{Config, ConfigError};
use billsync_events::SourceKind;
use billsync_mapping::Mapping;
use billsync_sources::sync::{syncs_into, DeclaredSync};
use std::collections::HashMap;

pub(crate) struct SyncRules {
    pub(crate) source: SourceKind,
    pub(crate) mapping: Mapping,
    pub(crate) options: SyncOptions,
    /// Where the sync is in the file (`syncs[2]`), for messages.
    pub(crate) key: String,
}

/// The rules of every sync into the Pipedrive connection `connection`, by source connection.
pub(crate) fn sync_rules(
    config: &Config,
    connection: &str,
) -> Result<HashMap<String, SyncRules>, ConfigError> {
    let mut syncs = HashMap::new();
    for sync in syncs_into::<PipedriveSyncs>(config, connection) {
        let DeclaredSync {
            config: sync,
            key,
            source,
            options,
            mapping,
        } = sync?;
        if let UniqueId::Field(field) = &options.unique_id {
            if !mapping.fields().any(|f| f == field) {
                return Err(ConfigError::new(
                    &config.origin,
                    &format!("{key}.options.unique_id"),
                    format!(
                        "{field:?} is not a mapped field; map it in [syncs.mapping] \
                         (\"{field}\" = \"customer.id\", say) or use \"email\""
                    ),
                ));
            }
        }
        if source == SourceKind::Stripe && options.subscriptions_to != SubscriptionsTo::Deals {
            return Err(ConfigError::new(
                &config.origin,
                &format!("{key}.options.subscriptions_to"),
                "Stripe syncs send subscriptions to deals (a Stripe customer carries no \
                 subscription to map onto the person); remove the option",
            ));
        }
        syncs.insert(
            sync.source.clone(),
            SyncRules {
                source,
                mapping,
                options,
                key,
            },
        );
    }
    Ok(syncs)
}

/// Checks the `[syncs.options]` and `[syncs.mapping]` of every sync into the Pipedrive
/// connection named `connection`, as its worker does at start (`billsync check-config`).
pub fn check_syncs(config: &Config, connection: &str) -> Result<(), ConfigError> {
    sync_rules(config, connection).map(|_| ())
}

/// What `billsync sync validate` checks for the sync from `source` into the Pipedrive
/// connection `destination` (seed 004, step 3).
pub struct ValidationRule {
    /// The unique id persons are matched by, as messages name it.
    pub label: String,
    /// `None` for the email (every destination's default check); else reads the unique id
    /// from a Chargebee customer through the sync's mapping.
    pub unique_id: Option<UniqueIdReader>,
    /// Subscriptions go to persons or organizations, so every customer needs one.
    pub require_subscription: bool,
}

pub type UniqueIdReader = Box<dyn Fn(&serde_json::Value) -> String + Send + Sync>;

/// The validation of the sync from `source` into `destination`, if that is a Pipedrive
/// connection with such a sync.
pub fn validation_rule(
    config: &Config,
    source: &str,
    destination: &str,
) -> Result<Option<ValidationRule>, ConfigError> {
    if !config
        .destinations
        .pipedrive
        .iter()
        .any(|c| c.name == destination)
    {
        return Ok(None);
    }
    let Some(rules) = sync_rules(config, destination)?.remove(source) else {
        return Ok(None);
    };
    let require_subscription = rules.options.subscriptions_to != SubscriptionsTo::Deals;
    let (label, unique_id) = match rules.options.unique_id {
        UniqueId::Email => ("email".to_string(), None),
        UniqueId::Field(field) => {
            let mapping = rules.mapping;
            let name = field.clone();
            let reader: UniqueIdReader = Box::new(move |customer| {
                let view = billsync_sources::chargebee::view(customer, None);
                match mapping.apply(&view).get(&name) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Number(n)) => n.to_string(),
                    _ => String::new(),
                }
            });
            (field, Some(reader))
        }
    };
    Ok(Some(ValidationRule {
        label,
        unique_id,
        require_subscription,
    }))
}
