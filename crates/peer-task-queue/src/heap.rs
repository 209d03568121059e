//! An indexed 4-ary min-heap with the keys stored inline.
//!
//! Entries are `(key, handle)`; a handle is a small integer (a slab index) whose position the
//! heap tracks, so any entry can be looked up, re-keyed or removed in O(log n). Keys sit in the
//! heap array itself (the `priority-queue` crate keeps them behind a hash index), so a sift
//! touches only the array. The queue keeps its eligible peers in one, keyed by policy.

/// Marks a handle that is not in the heap.
const ABSENT: u32 = u32::MAX;
/// Children per node: a shallower tree, and the children of a node share cache lines.
const ARITY: usize = 4;

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct IndexedHeap<K> {
    entries: Vec<(K, u32)>,
    /// Position of each handle in `entries`, or `ABSENT`.
    positions: Vec<u32>,
}

impl<K> Default for IndexedHeap<K> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            positions: Vec::new(),
        }
    }
}

impl<K: Ord + Copy> IndexedHeap<K> {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn position(&self, handle: u32) -> Option<usize> {
        match self.positions.get(handle as usize) {
            Some(&pos) if pos != ABSENT => Some(pos as usize),
            _ => None,
        }
    }

    pub(crate) fn contains(&self, handle: u32) -> bool {
        self.position(handle).is_some()
    }

    /// The key of `handle`, if it is in the heap.
    pub(crate) fn key(&self, handle: u32) -> Option<&K> {
        self.position(handle).map(|pos| &self.entries[pos].0)
    }

    /// The smallest entry.
    pub(crate) fn peek(&self) -> Option<(&K, u32)> {
        self.entries.first().map(|(key, handle)| (key, *handle))
    }

    /// Inserts `handle`, which must not be in the heap.
    pub(crate) fn push(&mut self, handle: u32, key: K) {
        debug_assert!(handle != ABSENT && !self.contains(handle));
        let slot = handle as usize;
        if self.positions.len() <= slot {
            self.positions.resize(slot + 1, ABSENT);
        }
        let pos = self.entries.len();
        self.entries.push((key, handle));
        self.positions[slot] = pos as u32;
        self.sift_up(pos);
    }

    /// Removes and returns the smallest entry.
    #[cfg(test)]
    pub(crate) fn pop(&mut self) -> Option<(K, u32)> {
        if self.entries.is_empty() {
            return None;
        }
        Some(self.remove_at(0))
    }

    /// Removes `handle`; returns its key if it was in the heap.
    pub(crate) fn remove(&mut self, handle: u32) -> Option<K> {
        let pos = self.position(handle)?;
        Some(self.remove_at(pos).0)
    }

    /// Gives `handle` a new key; returns false if it is not in the heap.
    pub(crate) fn update(&mut self, handle: u32, key: K) -> bool {
        let Some(pos) = self.position(handle) else {
            return false;
        };
        let rises = key < self.entries[pos].0;
        self.entries[pos].0 = key;
        if rises {
            self.sift_up(pos);
        } else {
            self.sift_down(pos);
        }
        true
    }

    fn remove_at(&mut self, pos: usize) -> (K, u32) {
        let last = self.entries.pop().expect("non-empty");
        if pos == self.entries.len() {
            self.positions[last.1 as usize] = ABSENT;
            return last;
        }
        let removed = self.entries[pos];
        self.positions[removed.1 as usize] = ABSENT;
        self.place(pos, last);
        // The entry moved from the end may belong above or below `pos`.
        if pos > 0 && last.0 < self.entries[(pos - 1) / ARITY].0 {
            self.sift_up(pos);
        } else {
            self.sift_down(pos);
        }
        removed
    }

    /// Moves the entry at `pos` up to its place.
    fn sift_up(&mut self, pos: usize) {
        let moving = self.entries[pos];
        self.climb(pos, 0, moving);
    }

    /// Puts `moving` in the hole at `pos` or above it, not above `floor`, shifting the larger
    /// entries above it down (one copy and one position update per level instead of a swap).
    fn climb(&mut self, mut pos: usize, floor: usize, moving: (K, u32)) {
        while pos > floor {
            let parent = (pos - 1) / ARITY;
            let above = self.entries[parent];
            if moving.0 >= above.0 {
                break;
            }
            self.place(pos, above);
            pos = parent;
        }
        self.place(pos, moving);
    }

    /// Moves the entry at `pos` down to its place. Floyd's method: the hole left by the entry
    /// goes down to a leaf along the smallest children, then the entry climbs back to its place.
    /// Entries that sink (the common case: a served peer, the last entry moved to the root)
    /// cost one comparison per level fewer than a plain sift.
    fn sift_down(&mut self, start: usize) {
        let moving = self.entries[start];
        let len = self.entries.len();
        let mut pos = start;
        loop {
            let first = pos * ARITY + 1;
            if first >= len {
                break;
            }
            let children = &self.entries[first..(first + ARITY).min(len)];
            let mut best = 0;
            for (i, child) in children.iter().enumerate().skip(1) {
                if child.0 < children[best].0 {
                    best = i;
                }
            }
            let child = children[best];
            self.place(pos, child);
            pos = first + best;
        }
        self.climb(pos, start, moving);
    }

    fn place(&mut self, pos: usize, entry: (K, u32)) {
        self.entries[pos] = entry;
        self.positions[entry.1 as usize] = pos as u32;
    }

    /// Checks the heap order and the position index.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (pos, (key, handle)) in self.entries.iter().enumerate() {
            if self.position(*handle) != Some(pos) {
                return Err(format!("heap position of handle {handle} is stale"));
            }
            if pos > 0 && *key < self.entries[(pos - 1) / ARITY].0 {
                return Err(format!("heap order broken at {pos}"));
            }
        }
        let indexed = self.positions.iter().filter(|&&p| p != ABSENT).count();
        if indexed != self.entries.len() {
            return Err("heap index holds absent handles".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::IndexedHeap;

    #[derive(Debug, Clone)]
    enum Op {
        Push(u32, i32),
        Pop,
        Remove(u32),
        Update(u32, i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..40, -20i32..20).prop_map(|(h, k)| Op::Push(h, k)),
            Just(Op::Pop),
            (0u32..40).prop_map(Op::Remove),
            (0u32..40, -20i32..20).prop_map(|(h, k)| Op::Update(h, k)),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_sorted_list(ops in prop::collection::vec(op(), 0..200)) {
            let mut heap = IndexedHeap::default();
            let mut model: Vec<(i32, u32)> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(h, k) => {
                        if !model.iter().any(|e| e.1 == h) {
                            heap.push(h, k);
                            model.push((k, h));
                        }
                    }
                    Op::Pop => {
                        model.sort();
                        let popped = heap.pop();
                        // Equal keys may come out in any order: compare keys only.
                        prop_assert_eq!(popped.map(|p| p.0), model.first().map(|e| e.0));
                        if let Some((_, h)) = popped {
                            let at = model.iter().position(|e| e.1 == h).expect("in model");
                            model.remove(at);
                        }
                    }
                    Op::Remove(h) => {
                        let at = model.iter().position(|e| e.1 == h);
                        prop_assert_eq!(heap.remove(h), at.map(|i| model.remove(i).0));
                    }
                    Op::Update(h, k) => {
                        let at = model.iter().position(|e| e.1 == h);
                        prop_assert_eq!(heap.update(h, k), at.is_some());
                        if let Some(i) = at {
                            model[i].0 = k;
                        }
                    }
                }
                heap.check().map_err(TestCaseError::fail)?;
                prop_assert_eq!(heap.len(), model.len());
                for &(k, h) in &model {
                    prop_assert_eq!(heap.key(h), Some(&k));
                }
            }
        }
    }
}
