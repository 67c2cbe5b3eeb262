//! The `[syncs.options]` an ActiveCampaign sync understands, checked at start.

use crate::api::DEFAULT_TRACKING_URL;
use crate::chargebee::OnCustomerDeleted;
use crate::error::StartError;
use billsync_config::SyncConfig;
use std::collections::BTreeMap;

/// Options of one sync into ActiveCampaign.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    /// The list (id) contacts are subscribed to; none by default.
    pub list_id: Option<String>,
    /// Chargebee only: what a `customer_deleted` event does.
    pub on_customer_deleted: OnCustomerDeleted,
    /// Chargebee only: whether customers who bought a gift subscription for someone else
    /// are synced.
    pub sync_gift_purchasers: bool,
    /// Stripe only: e-commerce connection, customers and orders (seed 001's deep data).
    pub deep_data: bool,
    /// Stripe only: an AC tracked event per Stripe event, for automations that start on
    /// "Stripe event received" (seed 001's trigger); off unless asked for.
    pub tracking: Option<TrackingOptions>,
}

/// How Stripe events become AC tracked events: event `name`, with the Stripe event type as
/// the event's value, so an automation's event trigger can pick types by value.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingOptions {
    /// The account's event tracking `actid` (Settings > Tracking > Event Tracking).
    pub actid: String,
    /// `https://trackcmp.net` unless set (the sandbox serves its own).
    pub url: String,
    pub name: String,
}

/// The tracked event's name unless `track_event_name` says otherwise (trackcmp allows 32
/// characters; Stripe's longest event types are longer, so the type goes in the value).
pub const DEFAULT_TRACKED_EVENT: &str = "Stripe event received";

const KNOWN: &[&str] = &[
    "list_id",
    "on_customer_deleted",
    "sync_gift_purchasers",
    "deep_data",
    "track_events",
    "track_actid",
    "track_url",
    "track_event_name",
];

impl SyncOptions {
    pub fn parse(file: &str, key: &str, sync: &SyncConfig) -> Result<SyncOptions, StartError> {
        let err = |option: &str, reason: String| StartError::Mapping {
            file: file.to_string(),
            key: format!("{key}.options.{option}"),
            reason,
        };
        let options: &BTreeMap<String, toml::Value> = &sync.options;
        if let Some(unknown) = options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(err(
                unknown,
                format!(
                    "unknown option; ActiveCampaign syncs know {}",
                    KNOWN.join(", ")
                ),
            ));
        }
        let list_id = match options.get("list_id") {
            None => None,
            Some(toml::Value::Integer(id)) if *id > 0 => Some(id.to_string()),
            Some(toml::Value::String(id))
                if id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty() =>
            {
                Some(id.clone())
            }
            Some(other) => {
                return Err(err(
                    "list_id",
                    format!("{other} is not a list id (Lists > the list's id in ActiveCampaign)"),
                ))
            }
        };
        let on_customer_deleted = match options.get("on_customer_deleted") {
            None => OnCustomerDeleted::Keep,
            Some(toml::Value::String(s)) => match s.as_str() {
                "keep" => OnCustomerDeleted::Keep,
                "unsubscribe" => OnCustomerDeleted::Unsubscribe,
                "delete" => OnCustomerDeleted::Delete,
                _ => {
                    return Err(err(
                        "on_customer_deleted",
                        format!("{s:?} must be keep, unsubscribe or delete"),
                    ))
                }
            },
            Some(other) => {
                return Err(err(
                    "on_customer_deleted",
                    format!("{other} must be keep, unsubscribe or delete"),
                ))
            }
        };
        if on_customer_deleted == OnCustomerDeleted::Unsubscribe && list_id.is_none() {
            return Err(err(
                "on_customer_deleted",
                "\"unsubscribe\" needs options.list_id: the list to unsubscribe from".into(),
            ));
        }
        let sync_gift_purchasers = match options.get("sync_gift_purchasers") {
            None => false,
            Some(toml::Value::Boolean(b)) => *b,
            Some(other) => {
                return Err(err(
                    "sync_gift_purchasers",
                    format!("{other} must be true or false"),
                ))
            }
        };
        let flag = |option: &str, default: bool| match options.get(option) {
            None => Ok(default),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(other) => Err(err(option, format!("{other} must be true or false"))),
        };
        let deep_data = flag("deep_data", true)?;
        let text = |option: &str| match options.get(option) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim().to_string())),
            Some(other) => Err(err(option, format!("{other} must be a non-empty string"))),
        };
        let actid = match options.get("track_actid") {
            Some(toml::Value::Integer(id)) if *id > 0 => Some(id.to_string()),
            _ => text("track_actid")?,
        };
        if actid
            .as_deref()
            .is_some_and(|a| !a.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(err(
                "track_actid",
                "must be the account's numeric actid (Settings > Tracking > Event Tracking)".into(),
            ));
        }
        let url = text("track_url")?.unwrap_or_else(|| DEFAULT_TRACKING_URL.to_string());
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(err("track_url", format!("{url:?} is not an http(s) URL")));
        }
        let name = text("track_event_name")?.unwrap_or_else(|| DEFAULT_TRACKED_EVENT.to_string());
        if name.chars().count() > 32 {
            return Err(err(
                "track_event_name",
                format!("{name:?} is longer than the 32 characters AC allows for event names"),
            ));
        }
        let tracking = if flag("track_events", false)? {
            let actid = actid.ok_or_else(|| {
                err(
                    "track_actid",
                    "track_events = true needs the account's event tracking actid (Settings > \
                     Tracking > Event Tracking)"
                        .into(),
                )
            })?;
            Some(TrackingOptions { actid, url, name })
        } else {
            None
        };
        Ok(SyncOptions {
            list_id,
            on_customer_deleted,
            sync_gift_purchasers,
            deep_data,
            tracking,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sync(options: &str) -> SyncConfig {
        let text = format!("source = \"s\"\ndestination = \"d\"\n[options]\n{options}");
        toml::from_str(&text).expect("sync parses")
    }

    fn parse(options: &str) -> Result<SyncOptions, String> {
        SyncOptions::parse("b.toml", "syncs[0]", &sync(options)).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_keep_deleted_contacts_and_skip_gift_purchasers() {
        let options = parse("").expect("valid");
        assert_eq!(options.list_id, None);
        assert_eq!(options.on_customer_deleted, OnCustomerDeleted::Keep);
        assert!(!options.sync_gift_purchasers);
        assert!(options.deep_data);
        assert_eq!(options.tracking, None);
    }

    #[test]
    fn deep_data_and_event_tracking_options() {
        assert!(!parse("deep_data = false").expect("valid").deep_data);
        assert_eq!(
            parse("deep_data = \"no\"").expect_err("not a bool"),
            "b.toml: syncs[0].options.deep_data: \"no\" must be true or false"
        );
        assert!(parse("track_events = true")
            .expect_err("needs the actid")
            .starts_with("b.toml: syncs[0].options.track_actid: track_events = true needs"));
        let tracking = parse("track_events = true\ntrack_actid = 123456")
            .expect("valid")
            .tracking
            .expect("on");
        assert_eq!(
            tracking,
            TrackingOptions {
                actid: "123456".into(),
                url: "https://trackcmp.net".into(),
                name: "Stripe event received".into(),
            }
        );
        assert!(parse("track_actid = \"12a\"").is_err());
        assert!(parse("track_url = \"ftp://x\"").is_err());
        assert!(
            parse("track_event_name = \"a name far longer than thirty-two chars\"")
                .expect_err("too long")
                .contains("32 characters")
        );
        // Settings without track_events are checked but change nothing.
        assert_eq!(parse("track_actid = \"99\"").expect("valid").tracking, None);
    }

    #[test]
    fn bad_options_name_the_key() {
        assert_eq!(
            parse("list = 3").expect_err("unknown"),
            "b.toml: syncs[0].options.list: unknown option; ActiveCampaign syncs know list_id, \
             on_customer_deleted, sync_gift_purchasers, deep_data, track_events, track_actid, \
             track_url, track_event_name"
        );
        assert!(parse("on_customer_deleted = \"unsubscribe\"")
            .expect_err("needs a list")
            .contains(
                "syncs[0].options.on_customer_deleted: \"unsubscribe\" needs options.list_id"
            ));
        assert!(parse("on_customer_deleted = \"purge\"").is_err());
        assert!(parse("list_id = \"abc\"").is_err());
        assert_eq!(
            parse("list_id = \"7\"").expect("valid").list_id.as_deref(),
            Some("7")
        );
    }
}
