//! A secondary index from an attribute's value to the ids of the records that hold it, so a
//! lookup by external id, customer or email costs a hash probe instead of a scan of every
//! record once a soak has put hundreds of thousands of them in an account.

use std::collections::{BTreeSet, HashMap};

/// Value → ids of the records holding it, ascending (the order the record maps list them),
/// so a lookup answers in the order a scan of the `BTreeMap` would. The owner keeps it in
/// step: [`IdIndex::insert`] on create, [`IdIndex::change`] on an update, and
/// [`IdIndex::remove`] on delete.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct IdIndex {
    ids: HashMap<String, BTreeSet<u64>>,
}

impl IdIndex {
    /// Ids of the records whose value is `key`, ascending.
    pub(crate) fn ids(&self, key: &str) -> impl Iterator<Item = u64> + '_ {
        self.ids.get(key).into_iter().flatten().copied()
    }

    pub(crate) fn insert(&mut self, key: &str, id: u64) {
        self.ids.entry(key.to_owned()).or_default().insert(id);
    }

    pub(crate) fn remove(&mut self, key: &str, id: u64) {
        if let Some(ids) = self.ids.get_mut(key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.ids.remove(key);
            }
        }
    }

    /// Moves `id` from `old` to `new`; either may be absent (an attribute set or cleared).
    pub(crate) fn change(&mut self, id: u64, old: Option<&str>, new: Option<&str>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.remove(old, id);
        }
        if let Some(new) = new {
            self.insert(new, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_inserts_changes_and_removals_in_ascending_order() {
        let mut index = IdIndex::default();
        index.insert("a", 3);
        index.insert("a", 1);
        index.insert("b", 2);
        assert_eq!(index.ids("a").collect::<Vec<_>>(), [1, 3]);
        index.change(3, Some("a"), Some("b"));
        assert_eq!(index.ids("a").collect::<Vec<_>>(), [1]);
        assert_eq!(index.ids("b").collect::<Vec<_>>(), [2, 3]);
        index.change(1, Some("a"), None);
        index.remove("b", 2);
        assert_eq!(index.ids("a").count(), 0);
        assert_eq!(index.ids("b").collect::<Vec<_>>(), [3]);
        assert!(!index.ids.contains_key("a"), "an emptied key is dropped");
    }
}
