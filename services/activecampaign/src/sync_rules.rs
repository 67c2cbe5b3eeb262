//! How each sync into an ActiveCampaign connection is applied: its options and mapping (as
//! `options` declares them) and its event tracker, checked at start and by `check-config`.

use crate::api::EventTracker;
use crate::error::StartError;
use crate::options::{ActiveCampaignSyncs, SyncOptions};
use crate::stripe_orders::OrderSources;
use billsync_config::{ActiveCampaignConnection, Config, ConfigError};
use billsync_events::SourceKind;
use billsync_mapping::Mapping;
use billsync_sources::sync::{syncs_into, DeclaredSync};
use std::collections::HashMap;
use std::time::Duration;

pub(crate) struct SyncRules {
    pub(crate) source: SourceKind,
    pub(crate) mapping: Mapping,
    pub(crate) options: SyncOptions,
    /// Which Stripe objects may record a purchase (the sync's `resources`).
    pub(crate) orders: OrderSources,
    /// Set when the sync tracks events (`track_events = true`).
    pub(crate) tracker: Option<EventTracker>,
}

/// The rules of every sync into `connection`: options, mapping and event tracking, each
/// checked against the configuration (an error names the file, key and what to fix).
pub(crate) fn sync_rules(
    config: &Config,
    connection: &ActiveCampaignConnection,
    timeout: Duration,
) -> Result<HashMap<String, SyncRules>, StartError> {
    let file = config.origin.display();
    let mut syncs = HashMap::new();
    for sync in syncs_into::<ActiveCampaignSyncs>(config, &connection.name) {
        let DeclaredSync {
            config: sync,
            key,
            source,
            options,
            mapping,
        } = sync?;
        let tracker = match (&options.tracking, source) {
            (None, _) => None,
            (Some(_), SourceKind::Chargebee) => {
                return Err(ConfigError::new(
                    &config.origin,
                    &format!("{key}.options.track_events"),
                    "event tracking is for Stripe syncs (automations triggered by \
                     \"Stripe event received\")",
                )
                .into())
            }
            (Some(tracking), SourceKind::Stripe) => {
                let index = config
                    .destinations
                    .activecampaign
                    .iter()
                    .position(|c| c.name == connection.name)
                    .unwrap_or_default();
                let Some(event_key) = event_key(connection) else {
                    return Err(ConfigError::new(
                        &config.origin,
                        &format!("destinations.activecampaign[{index}].event_key"),
                        format!(
                            "{key}.options.track_events = true needs the account's Event Key \
                             (Settings > Tracking > Event Tracking) as a secret, \
                             {{ env = \"NAME\" }} or {{ file = \"/path\" }}"
                        ),
                    )
                    .into());
                };
                Some(
                    EventTracker::new(&tracking.url, &tracking.actid, event_key, timeout)
                        .for_connection(&connection.name)
                        .configured_in(format!(
                            "{key}.options.track_actid and \
                             destinations.activecampaign[{index}].event_key of {file}"
                        )),
                )
            }
        };
        let rules = SyncRules {
            source,
            mapping,
            options,
            orders: OrderSources::from_resources(&sync.resources),
            tracker,
        };
        syncs.insert(sync.source.clone(), rules);
    }
    Ok(syncs)
}

/// Checks the `[syncs.options]` and `[syncs.mapping]` of every sync into the ActiveCampaign
/// connection named `connection`, as its worker does at start, without connecting anywhere
/// (`billsync check-config`).
pub fn check_syncs(config: &Config, connection: &str) -> Result<(), StartError> {
    for account in config
        .destinations
        .activecampaign
        .iter()
        .filter(|account| account.name == connection)
    {
        sync_rules(config, account, Duration::from_secs(30))?;
    }
    Ok(())
}

/// The account's event tracking key (`destinations.activecampaign[].event_key`), a secret;
/// `track_events = true` without it is refused at start naming that key.
fn event_key(connection: &ActiveCampaignConnection) -> Option<&str> {
    connection.event_key.as_ref().map(|key| key.expose())
}
