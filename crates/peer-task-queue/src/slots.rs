//! The queue's peer slots: a vector of optional entries and a stack of free indices.
//!
//! The `slab` crate does the same, but reading an entry's address there loads the entry (its
//! tag). Here the address of a slot is known from the vector alone, so a slot can be
//! prefetched before it is read.

use std::ops::{Index, IndexMut};

use crate::prefetch::prefetch_all;

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Slots<S> {
    entries: Vec<Option<S>>,
    /// Indices of the empty entries, the most recently freed last (reused first).
    free: Vec<u32>,
    len: usize,
}

impl<S> Default for Slots<S> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<S> Slots<S> {
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Stores `value` in a free slot; returns its index.
    pub(crate) fn insert(&mut self, value: S) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(at) => {
                self.entries[at as usize] = Some(value);
                at as usize
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    /// Empties slot `at`, which must be occupied, and returns what it held.
    pub(crate) fn remove(&mut self, at: usize) -> S {
        let value = self.entries[at].take().expect("removing an occupied slot");
        self.free.push(at as u32);
        self.len -= 1;
        value
    }

    pub(crate) fn get(&self, at: usize) -> Option<&S> {
        self.entries.get(at)?.as_ref()
    }

    /// The occupied slots and their indices.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &S)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(at, entry)| Some((at, entry.as_ref()?)))
    }

    /// Starts loading slot `at` into the cache, without reading it.
    pub(crate) fn prefetch(&self, at: usize) {
        if let Some(entry) = self.entries.get(at) {
            prefetch_all(entry);
        }
    }
}

impl<S> Index<usize> for Slots<S> {
    type Output = S;

    fn index(&self, at: usize) -> &S {
        self.entries[at].as_ref().expect("an occupied slot")
    }
}

impl<S> IndexMut<usize> for Slots<S> {
    fn index_mut(&mut self, at: usize) -> &mut S {
        self.entries[at].as_mut().expect("an occupied slot")
    }
}
