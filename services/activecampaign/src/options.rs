//! The `[syncs.options]` an ActiveCampaign sync understands, checked at start.

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
}

const KNOWN: &[&str] = &["list_id", "on_customer_deleted", "sync_gift_purchasers"];

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
        Ok(SyncOptions {
            list_id,
            on_customer_deleted,
            sync_gift_purchasers,
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
    }

    #[test]
    fn bad_options_name_the_key() {
        assert_eq!(
            parse("list = 3").expect_err("unknown"),
            "b.toml: syncs[0].options.list: unknown option; ActiveCampaign syncs know list_id, \
             on_customer_deleted, sync_gift_purchasers"
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
