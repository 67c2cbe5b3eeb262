//! The five Stripe resources a sync may pick (seed 001: Charge, Customer, Subscription,
//! Invoice, Checkout Session): their configuration names, list paths and object kinds.

use billsync_config::Config;
use billsync_events::ObjectKind;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StripeResource {
    Customer,
    Subscription,
    Invoice,
    Charge,
    CheckoutSession,
}

impl StripeResource {
    /// Backfill order: customers first, so that a worker meets a customer's contact before
    /// the subscriptions, invoices and payments that only carry the customer's id.
    pub const ALL: [StripeResource; 5] = [
        StripeResource::Customer,
        StripeResource::Subscription,
        StripeResource::Invoice,
        StripeResource::Charge,
        StripeResource::CheckoutSession,
    ];

    /// The name in `syncs[].resources` and on the command line.
    pub fn name(self) -> &'static str {
        self.object_kind().as_str()
    }

    pub fn object_kind(self) -> ObjectKind {
        match self {
            StripeResource::Customer => ObjectKind::Customer,
            StripeResource::Subscription => ObjectKind::Subscription,
            StripeResource::Invoice => ObjectKind::Invoice,
            StripeResource::Charge => ObjectKind::Charge,
            StripeResource::CheckoutSession => ObjectKind::CheckoutSession,
        }
    }

    /// The list endpoint, relative to the API base.
    pub fn list_path(self) -> &'static str {
        match self {
            StripeResource::Customer => "/v1/customers",
            StripeResource::Subscription => "/v1/subscriptions",
            StripeResource::Invoice => "/v1/invoices",
            StripeResource::Charge => "/v1/charges",
            StripeResource::CheckoutSession => "/v1/checkout/sessions",
        }
    }

    /// Query parameters the list needs besides paging: subscriptions are listed without
    /// canceled ones unless asked, and history includes them.
    pub fn list_filter(self) -> &'static [(&'static str, &'static str)] {
        match self {
            StripeResource::Subscription => &[("status", "all")],
            _ => &[],
        }
    }

    pub fn parse(name: &str) -> Option<StripeResource> {
        StripeResource::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn of_object(kind: ObjectKind) -> Option<StripeResource> {
        StripeResource::ALL
            .into_iter()
            .find(|r| r.object_kind() == kind)
    }
}

impl fmt::Display for StripeResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The resources a connection feeds: the union of `resources` over the syncs in force
/// reading from it, where a sync that names none takes all five. `None` when none does.
pub fn synced_resources(config: &Config, connection: &str) -> Option<Vec<StripeResource>> {
    let mut syncs = config
        .active_syncs()
        .filter(|s| s.source == connection)
        .peekable();
    syncs.peek()?;
    let mut chosen: Vec<StripeResource> = Vec::new();
    for sync in syncs {
        if sync.resources.is_empty() {
            return Some(StripeResource::ALL.to_vec());
        }
        // Validation has checked the names; an unknown one cannot reach here.
        chosen.extend(
            sync.resources
                .iter()
                .filter_map(|r| StripeResource::parse(r)),
        );
    }
    chosen.sort();
    chosen.dedup();
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(syncs: &str) -> Config {
        let text = format!(
            r#"
[[sources.stripe]]
name = "s"
webhook_secrets = [{{ env = "PATH" }}]
[[sources.stripe]]
name = "lonely"
webhook_secrets = [{{ env = "PATH" }}]
[[destinations.activecampaign]]
name = "ac"
base_url = "http://127.0.0.1:1"
api_token = {{ env = "PATH" }}
[[destinations.activecampaign]]
name = "ac2"
base_url = "http://127.0.0.1:1"
api_token = {{ env = "PATH" }}
{syncs}
"#
        );
        Config::from_toml(&text, Path::new("t.toml")).expect("config")
    }

    #[test]
    fn resources_are_the_union_over_the_syncs_of_a_connection() {
        let c = config(
            "[[syncs]]\nsource = \"s\"\ndestination = \"ac\"\nresources = [\"invoice\", \"customer\"]\n\
             [[syncs]]\nsource = \"s\"\ndestination = \"ac2\"\nresources = [\"customer\", \"charge\"]\n",
        );
        assert_eq!(
            synced_resources(&c, "s"),
            Some(vec![
                StripeResource::Customer,
                StripeResource::Invoice,
                StripeResource::Charge
            ])
        );
        assert_eq!(synced_resources(&c, "lonely"), None);
        let all = config("[[syncs]]\nsource = \"s\"\ndestination = \"ac\"\n");
        assert_eq!(
            synced_resources(&all, "s"),
            Some(StripeResource::ALL.to_vec())
        );
    }

    #[test]
    fn names_round_trip() {
        for r in StripeResource::ALL {
            assert_eq!(StripeResource::parse(r.name()), Some(r));
            assert_eq!(StripeResource::of_object(r.object_kind()), Some(r));
        }
        assert_eq!(StripeResource::CheckoutSession.name(), "checkout_session");
        assert_eq!(StripeResource::parse("payment"), None);
    }
}
