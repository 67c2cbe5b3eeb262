//! What a sync into Zoho CRM takes: its `[syncs.options]` (seed 003's sync rules, the deal
//! pipeline and stages, the deal owner, `trigger`) and its default contact mappings,
//! declared for the kit (`billsync_sources::sync`), which reads and checks them at start and
//! in `billsync check-config`.

use crate::api::Trigger;
use billsync_config::ConfigError;
use billsync_events::SourceKind;
use billsync_mapping::Mapping;
use billsync_sources as sources;
use billsync_sources::sync::{MappingDeclaration, OptionReader, SyncDeclaration};

/// A customer with no matching contact in Zoho (seed 003: "create" or "skip").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingContact {
    Create,
    Skip,
}

/// A customer whose contact exists in Zoho (seed 003: overwrite, update blank fields, skip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingContact {
    Overwrite,
    UpdateBlanks,
    Skip,
}

/// A company with no matching account in Zoho (seed 003: create it, or leave the field empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingAccount {
    Create,
    LeaveEmpty,
}

/// The deal stage of each subscription status (names of stages of the deal pipeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DealStages {
    pub active: String,
    pub non_renewing: String,
    pub in_trial: String,
    pub future: String,
    pub paused: String,
    pub cancelled: String,
    /// Any other status (Chargebee `transferred`, Stripe `incomplete`, `unpaid`).
    pub other: String,
}

impl DealStages {
    /// Every option naming a stage, with its value, for the check against the pipeline.
    pub fn named(&self) -> [(&'static str, &str); 7] {
        [
            ("stage_active", &self.active),
            ("stage_non_renewing", &self.non_renewing),
            ("stage_in_trial", &self.in_trial),
            ("stage_future", &self.future),
            ("stage_paused", &self.paused),
            ("stage_cancelled", &self.cancelled),
            ("stage_other", &self.other),
        ]
    }
}

/// Options of one sync into Zoho CRM.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    pub missing_contact: MissingContact,
    pub existing_contact: ExistingContact,
    pub missing_account: MissingAccount,
    /// Subscriptions become deals (seed 003's second table); on by default.
    pub sync_deals: bool,
    /// The deal pipeline's name (`display_value`); the layout's default pipeline when unset.
    pub pipeline: Option<String>,
    pub stages: DealStages,
    /// The email of the Zoho user who owns the deals (seed 003: the user who configured the
    /// integration); Zoho's default, the token's user, when unset.
    pub deal_owner: Option<String>,
    /// What upserts set off in Zoho (workflows, approvals, blueprints); nothing by default.
    pub trigger: Vec<Trigger>,
}

const KNOWN: &[&str] = &[
    "on_missing_contact",
    "on_existing_contact",
    "on_missing_account",
    "sync_deals",
    "deal_pipeline",
    "deal_owner",
    "stage_active",
    "stage_non_renewing",
    "stage_in_trial",
    "stage_future",
    "stage_paused",
    "stage_cancelled",
    "stage_other",
    "trigger",
];

/// What syncs into Zoho CRM take: [`SyncOptions`], and the seed's contact mapping.
pub struct ZohoSyncs;

impl SyncDeclaration for ZohoSyncs {
    const DESTINATION: &'static str = "Zoho CRM";
    const OPTIONS: &'static [&'static str] = KNOWN;
    type Options = SyncOptions;

    fn options(options: &OptionReader<'_>) -> Result<SyncOptions, ConfigError> {
        SyncOptions::read(options)
    }

    /// Seed 003's default mapping (First_Name, Last_Name, Email, Phone, Account_Name from
    /// the company); `Account_Name` names the account, which billsync finds or creates.
    /// `Last_Name` may be overridden but not dropped: Zoho refuses contacts without it.
    fn mapping(source: SourceKind) -> MappingDeclaration {
        let (defaults, roots) = match source {
            SourceKind::Chargebee => (
                vec![
                    ("First_Name", "customer.first_name"),
                    (
                        "Last_Name",
                        "customer.last_name ?? customer.first_name ?? customer.company",
                    ),
                    ("Email", "customer.email"),
                    ("Phone", "customer.phone"),
                    ("Account_Name", "customer.company"),
                ],
                sources::chargebee::VIEW_ROOTS,
            ),
            SourceKind::Stripe => (
                vec![
                    ("First_Name", "name | first_word"),
                    ("Last_Name", "name | after_first_word"),
                    ("Email", "email"),
                    ("Phone", "phone"),
                    ("Account_Name", "metadata.company"),
                ],
                sources::stripe::CUSTOMER_FIELDS,
            ),
        };
        MappingDeclaration {
            defaults: Mapping::parse(defaults).expect("the default mappings parse"),
            roots,
            required: &[(
                "Last_Name",
                "Zoho CRM refuses contacts without a last name (billsync falls back to the \
                 first name, the company, the email's local part and the customer id)",
            )],
        }
    }
}

impl SyncOptions {
    fn read(options: &OptionReader<'_>) -> Result<SyncOptions, ConfigError> {
        let missing_contact = options.choice(
            "on_missing_contact",
            MissingContact::Create,
            &[
                ("create", MissingContact::Create),
                ("skip", MissingContact::Skip),
            ],
        )?;
        let existing_contact = options.choice(
            "on_existing_contact",
            ExistingContact::Overwrite,
            &[
                ("overwrite", ExistingContact::Overwrite),
                ("update_blanks", ExistingContact::UpdateBlanks),
                ("skip", ExistingContact::Skip),
            ],
        )?;
        let missing_account = options.choice(
            "on_missing_account",
            MissingAccount::Create,
            &[
                ("create", MissingAccount::Create),
                ("leave_empty", MissingAccount::LeaveEmpty),
            ],
        )?;
        let stage = |option: &str, default: &str| -> Result<String, ConfigError> {
            Ok(options.text(option)?.unwrap_or_else(|| default.to_string()))
        };
        let stages = DealStages {
            active: stage("stage_active", "Closed Won")?,
            non_renewing: stage("stage_non_renewing", "Closed Won")?,
            in_trial: stage("stage_in_trial", "Qualification")?,
            future: stage("stage_future", "Qualification")?,
            paused: stage("stage_paused", "Negotiation/Review")?,
            cancelled: stage("stage_cancelled", "Closed Lost")?,
            other: stage("stage_other", "Negotiation/Review")?,
        };
        let deal_owner = options.text("deal_owner")?;
        if deal_owner.as_deref().is_some_and(|o| !o.contains('@')) {
            return Err(options.error(
                "deal_owner",
                "must be the email of an active Zoho CRM user (Setup > Users)",
            ));
        }
        let trigger = match options.get("trigger") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|item| match item.as_str() {
                    Some("workflow") => Ok(Trigger::Workflow),
                    Some("approval") => Ok(Trigger::Approval),
                    Some("blueprint") => Ok(Trigger::Blueprint),
                    _ => Err(options.error(
                        "trigger",
                        format!("{item} must be \"workflow\", \"approval\" or \"blueprint\""),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(options.error(
                    "trigger",
                    format!(
                        "{other} must be a list such as [\"workflow\"] (empty: nothing is \
                         triggered)"
                    ),
                ))
            }
        };
        Ok(SyncOptions {
            missing_contact,
            existing_contact,
            missing_account,
            sync_deals: options.flag("sync_deals", true)?,
            pipeline: options.text("deal_pipeline")?,
            stages,
            deal_owner,
            trigger,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn read(text: &str) -> Result<SyncOptions, String> {
        let table: BTreeMap<String, toml::Value> = toml::from_str(text).expect("TOML");
        let reader = OptionReader::new(Path::new("b.toml"), "syncs[0]", &table, "Zoho CRM", KNOWN)
            .map_err(|e| e.to_string())?;
        SyncOptions::read(&reader).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_follow_the_seed_and_trigger_nothing() {
        let options = read("").expect("defaults");
        assert_eq!(options.missing_contact, MissingContact::Create);
        assert_eq!(options.existing_contact, ExistingContact::Overwrite);
        assert_eq!(options.missing_account, MissingAccount::Create);
        assert!(options.sync_deals);
        assert!(options.trigger.is_empty(), "bulk runs set off no workflows");
        assert_eq!(options.stages.cancelled, "Closed Lost");
    }

    #[test]
    fn trigger_is_a_list_of_zohos_actions_and_mistakes_say_what_to_write() {
        let options = read("trigger = [\"workflow\", \"blueprint\"]").expect("valid");
        assert_eq!(options.trigger, vec![Trigger::Workflow, Trigger::Blueprint]);
        assert_eq!(
            read("trigger = \"workflow\"").expect_err("not a list"),
            "b.toml: syncs[0].options.trigger: \"workflow\" must be a list such as \
             [\"workflow\"] (empty: nothing is triggered)"
        );
        assert_eq!(
            read("trigger = [\"macro\"]").expect_err("unknown action"),
            "b.toml: syncs[0].options.trigger: \"macro\" must be \"workflow\", \"approval\" or \
             \"blueprint\""
        );
        assert_eq!(
            read("deal_owner = \"Patricia\"").expect_err("not an email"),
            "b.toml: syncs[0].options.deal_owner: must be the email of an active Zoho CRM user \
             (Setup > Users)"
        );
    }
}
