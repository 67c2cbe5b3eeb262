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
