//! Capability key sets: matching and ordering (docs/builtins.md#the-common-model).
//!
//! Policies match on capability *names* only (`keys(x)`); values are carried through to start
//! requests. A [`KeySet`] holds the ranks of its names in the snapshot's sorted name list, so subset
//! tests are a merge of two sorted lists and the derived `Ord` of the rank vectors is exactly the
//! lexicographic order of the sorted name lists that the built-ins use (a prefix sorts first).

use std::cmp::Ordering;

use crate::model::{CapsetId, NameId, Snapshot};

/// The set of capability names of a capability set, as sorted name ranks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeySet(Vec<u32>);

impl KeySet {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `self ⊆ other`.
    pub fn is_subset(&self, other: &KeySet) -> bool {
        let mut theirs = other.0.iter();
        self.0.iter().all(|mine| theirs.any(|t| t == mine))
    }

    /// The order "most specific first": `(|K| desc, lexicographic)`.
    pub fn cmp_specific_first(&self, other: &KeySet) -> Ordering {
        other.len().cmp(&self.len()).then_with(|| self.cmp(other))
    }

    /// The order "smallest first": `(|K| asc, lexicographic)`.
    pub fn cmp_smallest_first(&self, other: &KeySet) -> Ordering {
        self.len().cmp(&other.len()).then_with(|| self.cmp(other))
    }
}

/// Name ranks and the key set of every capability set of one snapshot, computed once per decision.
pub struct KeyIndex {
    /// `rank[name_id]`: position of the name among the distinct sorted names.
    rank: Vec<u32>,
    sets: Vec<KeySet>,
    sorted_names: Vec<String>,
}

impl KeyIndex {
    pub fn new(snapshot: &Snapshot) -> Self {
        let mut sorted_names: Vec<String> = snapshot.names.clone();
        sorted_names.sort();
        sorted_names.dedup();
        let rank =
            snapshot.names.iter().map(|n| sorted_names.binary_search(n).unwrap_or_default() as u32).collect::<Vec<_>>();
        let mut index = KeyIndex { rank, sets: Vec::new(), sorted_names };
        index.sets = snapshot.capability_sets.iter().map(|set| index.key_set(set.iter().map(|c| c.name))).collect();
        index
    }

    /// The key set of a list of name ids (unknown ids are ignored).
    pub fn key_set(&self, names: impl IntoIterator<Item = NameId>) -> KeySet {
        let mut ranks: Vec<u32> = names.into_iter().filter_map(|n| self.rank.get(n as usize).copied()).collect();
        ranks.sort_unstable();
        ranks.dedup();
        KeySet(ranks)
    }

    /// The key set of a capability set; empty for an id out of range.
    pub fn of(&self, set: CapsetId) -> &KeySet {
        static EMPTY: KeySet = KeySet(Vec::new());
        self.sets.get(set as usize).unwrap_or(&EMPTY)
    }

    /// The key set of names that may not be in the snapshot; `None` if one of them is not (then no
    /// snapshot group or task can match it).
    pub fn key_set_of_names<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Option<KeySet> {
        let mut ranks = Vec::new();
        for name in names {
            ranks.push(self.sorted_names.binary_search_by(|n| n.as_str().cmp(name)).ok()? as u32);
        }
        ranks.sort_unstable();
        ranks.dedup();
        Some(KeySet(ranks))
    }

    /// The names of a key set, for messages.
    pub fn describe(&self, keys: &KeySet) -> String {
        let names: Vec<&str> = keys.0.iter().map(|&r| self.sorted_names[r as usize].as_str()).collect();
        format!("{{{}}}", names.join(","))
    }
}
