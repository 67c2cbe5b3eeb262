//! A sync's options and mapping, declared by each destination and read and checked here.
//!
//! A destination states what the syncs into it take — its option names and the struct it
//! reads them into, its default mapping per source, the source view that mapping reads,
//! the fields every mapping must keep — by implementing [`SyncDeclaration`]. The kit then
//! reads every sync of the configuration against that declaration, the same way at the
//! worker's start and in `billsync check-config`, and every problem is a
//! [`ConfigError`] naming the file, the key and what to fix.

mod mapping;
mod options;

pub use mapping::MappingDeclaration;
pub use options::OptionReader;

use billsync_config::{Config, ConfigError, ConnectionKind, SyncConfig};
use billsync_events::SourceKind;
use billsync_mapping::Mapping;
use std::path::Path;

/// What a destination declares about the syncs into it.
pub trait SyncDeclaration {
    /// How messages name the destination ("ActiveCampaign syncs know ...").
    const DESTINATION: &'static str;
    /// Every `[syncs.options]` key it knows, in the order messages list them.
    const OPTIONS: &'static [&'static str];
    /// What the options of one sync become.
    type Options;

    /// Reads one sync's options; the reader has already refused keys not in
    /// [`Self::OPTIONS`].
    fn options(options: &OptionReader<'_>) -> Result<Self::Options, ConfigError>;

    /// The default mapping of syncs from `source`, the view it reads and what it must keep.
    fn mapping(source: SourceKind) -> MappingDeclaration;
}

/// One sync into a destination connection, read and checked against the declaration.
#[derive(Debug)]
pub struct DeclaredSync<'a, O> {
    pub config: &'a SyncConfig,
    /// Where the sync is in the file (`syncs[2]`), for messages.
    pub key: String,
    pub source: SourceKind,
    pub options: O,
    /// The declaration's defaults with the sync's overrides.
    pub mapping: Mapping,
}

/// Every sync into the destination connection named `connection`, in the file's order, each
/// read when the iterator reaches it (so a caller's own checks of a sync come before the
/// next sync's errors).
pub fn syncs_into<'a, D: SyncDeclaration>(
    config: &'a Config,
    connection: &'a str,
) -> impl Iterator<Item = Result<DeclaredSync<'a, D::Options>, ConfigError>> + 'a {
    config
        .syncs
        .iter()
        .enumerate()
        .filter(move |(_, sync)| sync.destination == connection)
        .map(|(index, sync)| {
            let key = format!("syncs[{index}]");
            let source = match config.connection_kind(&sync.source) {
                Some(ConnectionKind::Source(kind)) => kind,
                _ => unreachable!("Config::load checked that every sync names a source"),
            };
            let options = read_options::<D>(&config.origin, &key, sync)?;
            let mapping = D::mapping(source).configure(
                &config.origin,
                &format!("{key}.mapping"),
                &sync.mapping,
            )?;
            Ok(DeclaredSync {
                config: sync,
                key,
                source,
                options,
                mapping,
            })
        })
}

/// Reads the options of `sync`, found at `key` (`syncs[0]`) of `file`.
pub fn read_options<D: SyncDeclaration>(
    file: &Path,
    key: &str,
    sync: &SyncConfig,
) -> Result<D::Options, ConfigError> {
    let reader = OptionReader::new(file, key, &sync.options, D::DESTINATION, D::OPTIONS)?;
    D::options(&reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{chargebee, stripe};
    use serde_json::json;

    /// A destination with one option and an email it cannot do without.
    struct Crm;

    impl SyncDeclaration for Crm {
        const DESTINATION: &'static str = "Test CRM";
        const OPTIONS: &'static [&'static str] = &["archive"];
        type Options = bool;

        fn options(options: &OptionReader<'_>) -> Result<bool, ConfigError> {
            options.flag("archive", false)
        }

        fn mapping(source: SourceKind) -> MappingDeclaration {
            let (defaults, roots) = match source {
                SourceKind::Stripe => (vec![("Email", "email")], stripe::CUSTOMER_FIELDS),
                SourceKind::Chargebee => (vec![("Email", "customer.email")], chargebee::VIEW_ROOTS),
            };
            MappingDeclaration {
                defaults: Mapping::parse(defaults).expect("valid"),
                roots,
                required: &[("Email", "the test CRM finds people by email")],
            }
        }
    }

    fn config(syncs: &str) -> Config {
        let text = format!(
            "[[sources.stripe]]\nname = \"st\"\nwebhook_secrets = [{{ env = \"X\" }}]\n\
             [[sources.chargebee]]\nname = \"cb\"\nsite = \"acme\"\napi_key = {{ env = \"X\" }}\n\
             [[destinations.pipedrive]]\nname = \"crm\"\nbase_url = \"http://127.0.0.1:1\"\n\
             api_token = {{ env = \"X\" }}\n\
             [[destinations.pipedrive]]\nname = \"other\"\nbase_url = \"http://127.0.0.1:1\"\n\
             api_token = {{ env = \"X\" }}\n{syncs}"
        );
        let mut config: Config = toml::from_str(&text).expect("a configuration");
        config.origin = "b.toml".into();
        config
    }

    fn read(config: &Config) -> Result<Vec<DeclaredSync<'_, bool>>, String> {
        syncs_into::<Crm>(config, "crm")
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_sync_into_the_connection_gets_its_options_and_its_sources_mapping() {
        let config = config(
            "[[syncs]]\nsource = \"st\"\ndestination = \"other\"\noptions = { archive = \"x\" }\n\
             [[syncs]]\nsource = \"cb\"\ndestination = \"crm\"\n\
             [syncs.options]\narchive = true\n[syncs.mapping]\nCompany = \"customer.company\"\n\
             [[syncs]]\nsource = \"st\"\ndestination = \"crm\"\n",
        );
        let syncs = read(&config).expect("valid");
        assert_eq!(
            syncs.len(),
            2,
            "the sync into another connection is not read"
        );
        assert_eq!(syncs[0].key, "syncs[1]");
        assert_eq!(syncs[0].source, SourceKind::Chargebee);
        assert!(syncs[0].options);
        let fields = syncs[0].mapping.apply(&chargebee::view(
            &json!({"email": "a@x.io", "company": "Acme"}),
            None,
        ));
        assert_eq!(fields["Email"], "a@x.io");
        assert_eq!(fields["Company"], "Acme");
        assert_eq!(syncs[1].key, "syncs[2]");
        assert_eq!(syncs[1].source, SourceKind::Stripe);
        assert!(!syncs[1].options);
        assert_eq!(syncs[1].mapping.fields().collect::<Vec<_>>(), vec!["Email"]);
    }

    #[test]
    fn problems_name_the_file_the_sync_and_the_key() {
        let bad_option = config(
            "[[syncs]]\nsource = \"st\"\ndestination = \"crm\"\n\
             [[syncs]]\nsource = \"st\"\ndestination = \"crm\"\noptions = { archived = true }\n",
        );
        assert_eq!(
            read(&bad_option).expect_err("unknown option"),
            "b.toml: syncs[1].options.archived: unknown option; Test CRM syncs know archive"
        );
        let bad_root = config(
            "[[syncs]]\nsource = \"cb\"\ndestination = \"crm\"\n\
             mapping = { Email = \"email\" }\n",
        );
        assert_eq!(
            read(&bad_root).expect_err("a Stripe path on a Chargebee sync"),
            "b.toml: syncs[0].mapping.Email: \"email\" is not a field billsync can read here; \
             paths start with one of customer, subscription"
        );
        let dropped = config(
            "[[syncs]]\nsource = \"st\"\ndestination = \"crm\"\nmapping = { Email = false }\n",
        );
        assert_eq!(
            read(&dropped).expect_err("required"),
            "b.toml: syncs[0].mapping.Email: the Email mapping is required: the test CRM finds \
             people by email"
        );
    }
}
