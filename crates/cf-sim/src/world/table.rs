//! A table of the world: rows in creation order (`BTreeMap` by a global sequence
//! number, the CC's default order, DB `id` ascending) with a `HashMap` index by guid, so
//! a lookup is O(1) and a filtered listing is one O(n) pass.

use std::collections::{BTreeMap, HashMap};

use crate::error::CcError;

/// A table of rows in creation order with an index by guid.
#[derive(Debug, Clone)]
pub struct Table<T> {
    rows: BTreeMap<u64, T>,
    index: HashMap<String, u64>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Self {
            rows: BTreeMap::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Table<T> {
    pub fn insert(&mut self, seq: u64, guid: String, row: T) {
        self.index.insert(guid, seq);
        self.rows.insert(seq, row);
    }

    pub fn get(&self, guid: &str) -> Option<&T> {
        self.index.get(guid).and_then(|seq| self.rows.get(seq))
    }

    /// The row with `guid`, else 404 CF-ResourceNotFound: "`what` not found".
    pub fn find(&self, guid: &str, what: &str) -> Result<&T, CcError> {
        self.get(guid).ok_or_else(|| CcError::not_found(what))
    }

    /// [`Table::find`], for a change.
    pub fn find_mut(&mut self, guid: &str, what: &str) -> Result<&mut T, CcError> {
        self.get_mut(guid).ok_or_else(|| CcError::not_found(what))
    }

    pub fn get_mut(&mut self, guid: &str) -> Option<&mut T> {
        let seq = self.index.get(guid)?;
        self.rows.get_mut(seq)
    }

    pub fn contains(&self, guid: &str) -> bool {
        self.index.contains_key(guid)
    }

    pub fn remove(&mut self, guid: &str) -> Option<T> {
        let seq = self.index.remove(guid)?;
        self.rows.remove(&seq)
    }

    /// Rows in creation order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.rows.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.rows.values_mut()
    }

    /// Rows with their sequence numbers (the tie-breaker after `created_at`).
    pub fn iter_seq(&self) -> impl Iterator<Item = (u64, &T)> {
        self.rows.iter().map(|(s, r)| (*s, r))
    }

    pub fn seq_of(&self, guid: &str) -> Option<u64> {
        self.index.get(guid).copied()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}
