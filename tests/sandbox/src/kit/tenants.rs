//! An emulator's tenants (ActiveCampaign accounts, Chargebee sites, Stripe accounts) by name.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

pub(crate) struct Tenants<T> {
    /// `http://127.0.0.1:PORT/{vendor}`, the root of every tenant's URLs.
    base_url: String,
    by_name: RwLock<BTreeMap<String, Arc<T>>>,
}

impl<T> Tenants<T> {
    pub(crate) fn new(base_url: String) -> Self {
        Self {
            base_url,
            by_name: RwLock::new(BTreeMap::new()),
        }
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Adds a tenant, or replaces the one with this name.
    pub(crate) fn insert(&self, name: String, tenant: T) {
        self.by_name
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, Arc::new(tenant));
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<T>> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// Every tenant, sorted by name.
    pub(crate) fn all(&self) -> Vec<Arc<T>> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Names of all tenants, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// The tenant `name`, for the handles tests call.
    ///
    /// # Panics
    /// If there is none, naming `what` it is (`ActiveCampaign account`) and the tenants there
    /// are, so a typo fails the test at the right line.
    pub(crate) fn expect(&self, what: &str, name: &str) -> Arc<T> {
        self.get(name)
            .unwrap_or_else(|| panic!("no sandbox {what} named {name:?} (have {:?})", self.names()))
    }
}
