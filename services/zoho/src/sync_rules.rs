//! How each sync into a Zoho CRM connection is applied: its options and mapping (as
//! `options` declares them), checked at start and by `check-config`.

use crate::options::{SyncOptions, ZohoSyncs};
use billsync_config::{Config, ConfigError, ZohoConnection};
use billsync_events::SourceKind;
use billsync_mapping::Mapping;
use billsync_sources::sync::{syncs_into, DeclaredSync};
use std::collections::HashMap;

pub(crate) struct SyncRules {
    /// Where the sync is in the file (`syncs[2]`), for messages.
    pub(crate) key: String,
    pub(crate) source: SourceKind,
    pub(crate) mapping: Mapping,
    pub(crate) options: SyncOptions,
}

/// The rules of every sync into `connection`, keyed by source connection.
pub(crate) fn sync_rules(
    config: &Config,
    connection: &ZohoConnection,
) -> Result<HashMap<String, SyncRules>, ConfigError> {
    let mut syncs = HashMap::new();
    for sync in syncs_into::<ZohoSyncs>(config, &connection.name) {
        let DeclaredSync {
            config: sync,
            key,
            source,
            options,
            mapping,
        } = sync?;
        syncs.insert(
            sync.source.clone(),
            SyncRules {
                key,
                source,
                mapping,
                options,
            },
        );
    }
    Ok(syncs)
}

/// Checks the `[syncs.options]` and `[syncs.mapping]` of every sync into the Zoho CRM
/// connection named `connection`, as its worker does at start, without connecting anywhere
/// (`billsync check-config`). Pipelines, stages and the deal owner are checked against Zoho
/// when the worker starts.
pub fn check_syncs(config: &Config, connection: &str) -> Result<(), ConfigError> {
    for zoho in config
        .destinations
        .zoho
        .iter()
        .filter(|zoho| zoho.name == connection)
    {
        sync_rules(config, zoho)?;
    }
    Ok(())
}
