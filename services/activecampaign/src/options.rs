//! What a sync into ActiveCampaign takes: its `[syncs.options]` and its default mappings,
//! declared for the kit (`billsync_sources::sync`), which reads and checks them at start
//! and in `billsync check-config`.

use crate::api::DEFAULT_TRACKING_URL;
use crate::chargebee::{self, OnCustomerDeleted};
use crate::stripe;
use billsync_config::ConfigError;
use billsync_events::SourceKind;
use billsync_sources as sources;
use billsync_sources::sync::{MappingDeclaration, OptionReader, SyncDeclaration};

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

/// The `[syncs.options]` keys, in the order messages list them.
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

/// What syncs into ActiveCampaign take: [`SyncOptions`], and the seeds' contact mappings.
pub struct ActiveCampaignSyncs;

impl SyncDeclaration for ActiveCampaignSyncs {
    const DESTINATION: &'static str = "ActiveCampaign";
    const OPTIONS: &'static [&'static str] = KNOWN;
    type Options = SyncOptions;

    fn options(options: &OptionReader<'_>) -> Result<SyncOptions, ConfigError> {
        SyncOptions::read(options)
    }

    /// The seed's default mapping for the source; syncs add fields, override them
    /// (`field = "expression"`) or drop them (`field = false`), but keep the email.
    fn mapping(source: SourceKind) -> MappingDeclaration {
        let (defaults, roots) = match source {
            SourceKind::Stripe => (
                stripe::default_contact_mapping(),
                sources::stripe::CUSTOMER_FIELDS,
            ),
            SourceKind::Chargebee => (chargebee::default_mapping(), sources::chargebee::VIEW_ROOTS),
        };
        MappingDeclaration {
            defaults,
            roots,
            required: &[("email", "ActiveCampaign identifies contacts by email")],
        }
    }
}

impl SyncOptions {
    fn read(options: &OptionReader<'_>) -> Result<SyncOptions, ConfigError> {
        let list_id = options.numeric_id(
            "list_id",
            "a list id (Lists > the list's id in ActiveCampaign)",
        )?;
        let on_customer_deleted = options.choice(
            "on_customer_deleted",
            OnCustomerDeleted::Keep,
            &[
                ("keep", OnCustomerDeleted::Keep),
                ("unsubscribe", OnCustomerDeleted::Unsubscribe),
                ("delete", OnCustomerDeleted::Delete),
            ],
        )?;
        if on_customer_deleted == OnCustomerDeleted::Unsubscribe && list_id.is_none() {
            return Err(options.error(
                "on_customer_deleted",
                "\"unsubscribe\" needs options.list_id: the list to unsubscribe from",
            ));
        }
        let sync_gift_purchasers = options.flag("sync_gift_purchasers", false)?;
        let deep_data = options.flag("deep_data", true)?;
        let actid = match options.get("track_actid") {
            Some(toml::Value::Integer(id)) if *id > 0 => Some(id.to_string()),
            _ => options.text("track_actid")?,
        };
        if actid
            .as_deref()
            .is_some_and(|a| !a.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(options.error(
                "track_actid",
                "must be the account's numeric actid (Settings > Tracking > Event Tracking)",
            ));
        }
        let url = options
            .text("track_url")?
            .unwrap_or_else(|| DEFAULT_TRACKING_URL.to_string());
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(options.error("track_url", format!("{url:?} is not an http(s) URL")));
        }
        let name = options
            .text("track_event_name")?
            .unwrap_or_else(|| DEFAULT_TRACKED_EVENT.to_string());
        if name.chars().count() > 32 {
            return Err(options.error(
                "track_event_name",
                format!("{name:?} is longer than the 32 characters AC allows for event names"),
            ));
        }
        let tracking = if options.flag("track_events", false)? {
            let actid = actid.ok_or_else(|| {
                options.error(
                    "track_actid",
                    "track_events = true needs the account's event tracking actid (Settings > \
                     Tracking > Event Tracking)",
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
    use billsync_config::SyncConfig;
    use billsync_sources::sync::read_options;
    use std::path::Path;

    fn sync(options: &str) -> SyncConfig {
        let text = format!("source = \"s\"\ndestination = \"d\"\n[options]\n{options}");
        toml::from_str(&text).expect("sync parses")
    }

    fn parse(options: &str) -> Result<SyncOptions, String> {
        read_options::<ActiveCampaignSyncs>(Path::new("b.toml"), "syncs[0]", &sync(options))
            .map_err(|e| e.to_string())
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

    #[test]
    fn mappings_read_their_sources_view_and_keep_the_email() {
        let configure = |source: SourceKind, table: &str| {
            let table = toml::from_str(table).expect("TOML");
            ActiveCampaignSyncs::mapping(source)
                .configure(Path::new("b.toml"), "syncs[0].mapping", &table)
                .map_err(|e| e.to_string())
        };
        let stripe = configure(SourceKind::Stripe, "Stripe_Customer_ID = \"id\"").expect("valid");
        assert!(stripe.fields().any(|f| f == "Stripe_Customer_ID"));
        assert!(stripe.fields().any(|f| f == "firstName"));
        assert!(
            configure(SourceKind::Stripe, "Cb_orgName = \"customer.company\"")
                .expect_err("a Chargebee path")
                .contains("paths start with one of id, email, name")
        );
        let chargebee = configure(SourceKind::Chargebee, "Cb_orgName = false").expect("valid");
        assert!(!chargebee.fields().any(|f| f == "Cb_orgName"));
        assert!(chargebee.fields().any(|f| f == "Cb_subscriptionMRR"));
        assert!(configure(SourceKind::Chargebee, "phone = \"phone\"")
            .expect_err("a Stripe path")
            .contains("paths start with one of customer, subscription"));
        assert_eq!(
            configure(SourceKind::Chargebee, "email = false").expect_err("required"),
            "b.toml: syncs[0].mapping.email: the email mapping is required: ActiveCampaign \
             identifies contacts by email"
        );
    }
}
