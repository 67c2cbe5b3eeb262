//! What a sync into Pipedrive takes: its `[syncs.options]` and its default mappings,
//! declared for the kit (`billsync_sources::sync`), which reads and checks them at start and
//! in `billsync check-config`.
//!
//! Mapped fields are Pipedrive fields by display name: `name`, `first_name`, `last_name`,
//! `email`, `phone` and `organization` are the person's own, every other name a person
//! custom field (created when missing). Fields read from the subscription go where
//! `subscriptions_to` says: onto the person, onto the organization, or (for deals) nowhere.

use billsync_config::ConfigError;
use billsync_events::SourceKind;
use billsync_mapping::Mapping;
use billsync_sources as sources;
use billsync_sources::sync::{MappingDeclaration, OptionReader, SyncDeclaration};

/// The person custom field holding the billing customer's id in the default mappings.
pub const CUSTOMER_ID_FIELD: &str = "Billing customer id";

/// The person's own fields a mapping may name; every other field is a custom field.
pub const PERSON_FIELDS: &[&str] = &[
    "name",
    "first_name",
    "last_name",
    "email",
    "phone",
    "organization",
];

/// Where a subscription's data goes (the seed's setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionsTo {
    /// A deal per subscription (title, value = MRR, currency, status).
    Deals,
    /// The mapping's subscription fields on the person.
    Person,
    /// The mapping's subscription fields on the person's organization.
    Organization,
}

/// How persons are matched the first time: by email, or by a person custom field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UniqueId {
    Email,
    /// The display name of a person custom field the mapping fills.
    Field(String),
}

impl UniqueId {
    /// The mapped field that carries the value.
    pub fn field(&self) -> &str {
        match self {
            UniqueId::Email => "email",
            UniqueId::Field(name) => name,
        }
    }

    /// As configured and as the lock records it.
    pub fn describe(&self) -> String {
        match self {
            UniqueId::Email => "email".to_string(),
            UniqueId::Field(name) => format!("field:{name}"),
        }
    }
}

/// Options of one sync into Pipedrive.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncOptions {
    pub unique_id: UniqueId,
    pub subscriptions_to: SubscriptionsTo,
    /// Paid one-time invoices (no subscription) become won deals.
    pub invoice_deals: bool,
    /// The company becomes an organization linked to the person.
    pub organizations: bool,
    /// Where deals go; Pipedrive's default pipeline and its first stage when unset.
    pub pipeline_id: Option<u64>,
    pub stage_id: Option<u64>,
}

const KNOWN: &[&str] = &[
    "unique_id",
    "subscriptions_to",
    "invoice_deals",
    "organizations",
    "pipeline_id",
    "stage_id",
];

/// What syncs into Pipedrive take: [`SyncOptions`] and the person mappings.
pub struct PipedriveSyncs;

/// Chargebee customer → Pipedrive person; the `subscription.*` fields go where
/// `subscriptions_to` says.
const CHARGEBEE_MAPPING: &[(&str, &str)] = &[
    ("first_name", "customer.first_name"),
    ("last_name", "customer.last_name"),
    ("email", "customer.email"),
    ("phone", "customer.phone"),
    ("organization", "customer.company"),
    (CUSTOMER_ID_FIELD, "customer.id"),
    ("Subscription id", "subscription.id"),
    (
        "Subscription plan",
        "subscription.plan_id ?? subscription.subscription_items.0.item_price_id",
    ),
    ("Subscription status", "subscription.status"),
    ("MRR", "subscription.mrr | cents_to_amount"),
    ("Next billing date", "subscription.next_billing_at | date"),
];

/// Stripe customer → Pipedrive person.
const STRIPE_MAPPING: &[(&str, &str)] = &[
    ("name", "name"),
    ("email", "email"),
    ("phone", "phone"),
    (CUSTOMER_ID_FIELD, "id"),
];

impl SyncDeclaration for PipedriveSyncs {
    const DESTINATION: &'static str = "Pipedrive";
    const OPTIONS: &'static [&'static str] = KNOWN;
    type Options = SyncOptions;

    fn options(options: &OptionReader<'_>) -> Result<SyncOptions, ConfigError> {
        let unique_id = match options.text("unique_id")? {
            None => UniqueId::Email,
            Some(id) if id == "email" => UniqueId::Email,
            Some(id) if PERSON_FIELDS.contains(&id.as_str()) => {
                return Err(options.error(
                    "unique_id",
                    format!(
                        "{id:?} cannot identify persons; use \"email\" or the display name of \
                         a person custom field the mapping fills (such as \
                         \"{CUSTOMER_ID_FIELD}\")"
                    ),
                ))
            }
            Some(field) => UniqueId::Field(field),
        };
        let subscriptions_to = options.choice(
            "subscriptions_to",
            SubscriptionsTo::Deals,
            &[
                ("deals", SubscriptionsTo::Deals),
                ("person", SubscriptionsTo::Person),
                ("organization", SubscriptionsTo::Organization),
            ],
        )?;
        let organizations = options.flag("organizations", true)?;
        if subscriptions_to == SubscriptionsTo::Organization && !organizations {
            return Err(options.error(
                "subscriptions_to",
                "\"organization\" needs options.organizations = true",
            ));
        }
        let id = |option: &str, what: &str| -> Result<Option<u64>, ConfigError> {
            Ok(options
                .numeric_id(option, what)?
                .and_then(|id| id.parse().ok()))
        };
        Ok(SyncOptions {
            unique_id,
            subscriptions_to,
            invoice_deals: options.flag("invoice_deals", true)?,
            organizations,
            pipeline_id: id("pipeline_id", "a pipeline id (Deals > the pipeline's id)")?,
            stage_id: id("stage_id", "a stage id of the pipeline")?,
        })
    }

    fn mapping(source: SourceKind) -> MappingDeclaration {
        let (defaults, roots) = match source {
            SourceKind::Stripe => (STRIPE_MAPPING, sources::stripe::CUSTOMER_FIELDS),
            SourceKind::Chargebee => (CHARGEBEE_MAPPING, sources::chargebee::VIEW_ROOTS),
        };
        MappingDeclaration {
            defaults: Mapping::parse(defaults.iter().copied())
                .expect("the built-in Pipedrive mappings parse"),
            roots,
            required: &[],
        }
    }
}

/// Whether a mapped field reads the subscription (and so goes where `subscriptions_to`
/// says) rather than the customer.
pub fn reads_subscription(mapping: &Mapping, field: &str) -> bool {
    mapping.source_paths().any(|(f, path)| {
        f == field && path.split('.').next() == Some(sources::chargebee::VIEW_ROOTS[1])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use billsync_config::SyncConfig;
    use billsync_sources::sync::read_options;
    use std::path::Path;

    fn parse(options: &str) -> Result<SyncOptions, String> {
        let text = format!("source = \"s\"\ndestination = \"d\"\n[options]\n{options}");
        let sync: SyncConfig = toml::from_str(&text).expect("sync parses");
        read_options::<PipedriveSyncs>(Path::new("b.toml"), "syncs[0]", &sync)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_by_email_and_send_subscriptions_to_deals() {
        let options = parse("").expect("valid");
        assert_eq!(options.unique_id, UniqueId::Email);
        assert_eq!(options.subscriptions_to, SubscriptionsTo::Deals);
        assert!(options.invoice_deals && options.organizations);
        assert_eq!((options.pipeline_id, options.stage_id), (None, None));
    }

    #[test]
    fn options_are_checked_and_name_the_key() {
        let options = parse(
            "unique_id = \"Billing customer id\"\nsubscriptions_to = \"person\"\n\
             pipeline_id = 2\nstage_id = \"7\"",
        )
        .expect("valid");
        assert_eq!(
            options.unique_id,
            UniqueId::Field("Billing customer id".into())
        );
        assert_eq!(options.subscriptions_to, SubscriptionsTo::Person);
        assert_eq!((options.pipeline_id, options.stage_id), (Some(2), Some(7)));
        assert!(parse("unique_id = \"phone\"")
            .expect_err("a standard field")
            .starts_with("b.toml: syncs[0].options.unique_id: \"phone\" cannot identify"));
        assert_eq!(
            parse("subscriptions_to = \"deal\"").expect_err("not a choice"),
            "b.toml: syncs[0].options.subscriptions_to: \"deal\" must be deals, person or \
             organization"
        );
        assert!(parse("subscriptions_to = \"organization\"\norganizations = false").is_err());
        assert!(parse("stage = 1")
            .expect_err("unknown")
            .contains("Pipedrive syncs know unique_id, subscriptions_to"));
    }

    #[test]
    fn subscription_fields_are_told_apart_from_customer_fields() {
        let mapping = PipedriveSyncs::mapping(SourceKind::Chargebee).defaults;
        assert!(reads_subscription(&mapping, "MRR"));
        assert!(!reads_subscription(&mapping, CUSTOMER_ID_FIELD));
    }
}
