//! An indexed 4-ary min-heap with the keys stored inline.
//!
//! Entries are `(key, handle)`; a handle is a small integer (a slab index) whose position the
//! heap tracks, so any entry can be looked up, re-keyed or removed in O(log n). Keys sit in the
//! heap array itself (the `priority-queue` crate keeps them behind a hash index), so a sift
//! touches only the array. The queue keeps its eligible peers in one, keyed by policy.
//!
//! The array is stored in 128-byte-aligned groups of [`ARITY`] entries, shifted so that the
//! children of any node fill exactly one group: a sift reads one aligned block per level (two
//! cache lines for 32-byte entries, which the adjacent-line prefetcher fetches together)
//! instead of straddling three.

/// Marks a handle that is not in the heap.
const ABSENT: u32 = u32::MAX;
/// Children per node: a shallower tree, and the children of a node share one group.
const ARITY: usize = 4;
/// Entry `i` is stored at flat index `i + SHIFT`: the children `4p+1..=4p+4` of entry `p` then
/// sit at flat `4(p+1)..4(p+1)+4`, the whole of group `p + 1`; the root is the last slot of
/// group 0.
const SHIFT: usize = ARITY - 1;

/// [`ARITY`] consecutive entries, aligned so that a group never straddles a 128-byte block.
#[derive(Debug, Clone, Copy)]
#[repr(align(128))]
struct Group<E>([E; ARITY]);

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct IndexedHeap<K> {
    groups: Vec<Group<(K, u32)>>,
    len: usize,
    /// Position of each handle in the heap, or `ABSENT`.
    positions: Vec<u32>,
}

impl<K> Default for IndexedHeap<K> {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            len: 0,
            positions: Vec::new(),
        }
    }
}

impl<K: Ord + Copy> IndexedHeap<K> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn get(&self, pos: usize) -> (K, u32) {
        let flat = pos + SHIFT;
        self.groups[flat / ARITY].0[flat % ARITY]
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
        let flat = self.position(handle)? + SHIFT;
        Some(&self.groups[flat / ARITY].0[flat % ARITY].0)
    }

    /// The smallest entry.
    pub(crate) fn peek(&self) -> Option<(&K, u32)> {
        if self.len == 0 {
            return None;
        }
        let (key, handle) = &self.groups[0].0[SHIFT];
        Some((key, *handle))
    }

    /// The handle of the smallest child of the root: the next root if the root's key grows
    /// past it, which is what serving the root nearly always does.
    pub(crate) fn runner_up(&self) -> Option<u32> {
        let count = self.len.saturating_sub(1).min(ARITY);
        let group = &self.groups.get(1)?.0;
        (0..count).min_by_key(|&i| group[i].0).map(|i| group[i].1)
    }

    /// Inserts `handle`, which must not be in the heap.
    pub(crate) fn push(&mut self, handle: u32, key: K) {
        debug_assert!(handle != ABSENT && !self.contains(handle));
        let slot = handle as usize;
        if self.positions.len() <= slot {
            self.positions.resize(slot + 1, ABSENT);
        }
        let pos = self.len;
        if (pos + SHIFT) / ARITY == self.groups.len() {
            // Slots past the end are never read; fill them with a copy.
            self.groups.push(Group([(key, handle); ARITY]));
        }
        self.len += 1;
        self.climb(pos, 0, (key, handle));
    }

    /// Removes and returns the smallest entry.
    pub(crate) fn pop(&mut self) -> Option<(K, u32)> {
        if self.len == 0 {
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
        let rises = key < self.get(pos).0;
        if rises {
            self.climb(pos, 0, (key, handle));
        } else {
            self.sift_down(pos, (key, handle));
        }
        true
    }

    /// Starts replacing the smallest entry: moves the smallest child up at each level from the
    /// root down to a leaf (Floyd's descent, which does not depend on the new key) and returns
    /// the leaf, now a hole, and the handle that was at the root. The heap must not be empty,
    /// and the hole must be closed with [`fill_hole`](Self::fill_hole) or
    /// [`close_hole`](Self::close_hole) before any other call.
    ///
    /// Splitting the replacement lets the caller start the descent before it knows the root's
    /// new key: the descent's loads (cold in a large heap) then overlap with the caller's own.
    pub(crate) fn open_root_hole(&mut self) -> (usize, u32) {
        debug_assert!(self.len > 0);
        let root = self.get(0).1;
        (self.descend(0), root)
    }

    /// Puts `(key, handle)` in the hole left by [`open_root_hole`](Self::open_root_hole).
    pub(crate) fn fill_hole(&mut self, hole: usize, handle: u32, key: K) {
        self.climb(hole, 0, (key, handle));
    }

    /// Closes the hole left by [`open_root_hole`](Self::open_root_hole) without putting the old
    /// root back: `handle`, the old root, leaves the heap.
    pub(crate) fn close_hole(&mut self, hole: usize, handle: u32) {
        self.positions[handle as usize] = ABSENT;
        self.len -= 1;
        let last = self.get(self.len);
        if self.len == 0 || (self.len + SHIFT).is_multiple_of(ARITY) {
            self.groups.pop();
        }
        if hole != self.len {
            // The hole is a leaf: the last entry can only climb from it.
            self.climb(hole, 0, last);
        }
    }

    fn remove_at(&mut self, pos: usize) -> (K, u32) {
        let removed = self.get(pos);
        self.positions[removed.1 as usize] = ABSENT;
        self.len -= 1;
        let last = self.get(self.len);
        if self.len == 0 || (self.len + SHIFT).is_multiple_of(ARITY) {
            // The old last entry was alone in its group.
            self.groups.pop();
        }
        if pos == self.len {
            return removed;
        }
        // The entry moved from the end may belong above or below `pos`.
        if pos > 0 && last.0 < self.get((pos - 1) / ARITY).0 {
            self.climb(pos, 0, last);
        } else {
            self.sift_down(pos, last);
        }
        removed
    }

    /// Puts `moving` in the hole at `pos` or above it, not above `floor`, shifting the larger
    /// entries above it down (one copy and one position update per level instead of a swap).
    fn climb(&mut self, mut pos: usize, floor: usize, moving: (K, u32)) {
        while pos > floor {
            let parent = (pos - 1) / ARITY;
            let above = self.get(parent);
            if moving.0 >= above.0 {
                break;
            }
            self.place(pos, above);
            pos = parent;
        }
        self.place(pos, moving);
    }

    /// Puts `moving` in the hole at `start` or below it. Floyd's method: the hole goes down to a
    /// leaf along the smallest children, then the entry climbs back to its place. Entries that
    /// sink (the common case: a served peer, the last entry moved to the root) cost one
    /// comparison per level fewer than a plain sift.
    fn sift_down(&mut self, start: usize, moving: (K, u32)) {
        let pos = self.descend(start);
        self.climb(pos, start, moving);
    }

    /// Moves the hole at `start` down to a leaf along the smallest children; returns the leaf.
    fn descend(&mut self, start: usize) -> usize {
        let len = self.len;
        let mut pos = start;
        loop {
            let first = pos * ARITY + 1;
            if first >= len {
                break;
            }
            // The children of `pos` are group `pos + 1`, full unless it is the last one.
            let group = &self.groups[pos + 1].0;
            let count = (len - first).min(ARITY);
            let best = if count == ARITY {
                // A tournament: the two first comparisons are independent.
                let a = usize::from(group[1].0 < group[0].0);
                let b = 2 + usize::from(group[3].0 < group[2].0);
                if group[b].0 < group[a].0 { b } else { a }
            } else {
                let mut best = 0;
                for i in 1..count {
                    if group[i].0 < group[best].0 {
                        best = i;
                    }
                }
                best
            };
            let child = group[best];
            self.place(pos, child);
            pos = first + best;
        }
        pos
    }

    fn place(&mut self, pos: usize, entry: (K, u32)) {
        let flat = pos + SHIFT;
        self.groups[flat / ARITY].0[flat % ARITY] = entry;
        self.positions[entry.1 as usize] = pos as u32;
    }

    /// Checks the heap order and the position index.
    pub(crate) fn check(&self) -> Result<(), String> {
        let groups = if self.len == 0 {
            0
        } else {
            (self.len - 1 + SHIFT) / ARITY + 1
        };
        if self.groups.len() != groups {
            return Err("heap groups and length disagree".into());
        }
        for pos in 0..self.len {
            let (key, handle) = self.get(pos);
            if self.position(handle) != Some(pos) {
                return Err(format!("heap position of handle {handle} is stale"));
            }
            if pos > 0 && key < self.get((pos - 1) / ARITY).0 {
                return Err(format!("heap order broken at {pos}"));
            }
        }
        let indexed = self.positions.iter().filter(|&&p| p != ABSENT).count();
        if indexed != self.len {
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
