//! One peer's pending tasks in service order: a sorted vector while the peer has few, a
//! B-tree once it has many.
//!
//! Most peers hold a handful of wants. For them a vector sorted in *reverse* service order is
//! one allocation, and serving the next task is `Vec::pop`: it touches one cache line and
//! shifts nothing, where a B-tree pop loads and shifts a whole leaf node. Inserting or removing
//! in the middle shifts the tail, which is cheap up to [`SMALL_MAX`] tasks; beyond it the tasks
//! move to a B-tree, where every operation is O(log n). A peer that drains back to half of
//! [`SMALL_MAX`] returns to the vector (the gap makes each move pay for itself: at least
//! `SMALL_MAX / 2` operations separate two moves, each of which costs O(`SMALL_MAX`)).

use std::collections::BTreeMap;

/// Most pending tasks a peer keeps in the sorted vector; one more moves them to a B-tree.
///
/// Chosen where the insertion costs meet: inserting at a random place shifts half the vector,
/// and at 128 tasks (48-byte entries) that costs about what a `BTreeMap` insertion costs (about
/// 70 ns each, measured over many peers), while a pop stays an order of magnitude cheaper
/// (10 ns against 140 ns). Debug builds use a tiny vector so that the tests, whose peers hold a
/// few tasks, cross between the two forms all the time.
pub(crate) const SMALL_MAX: usize = if cfg!(debug_assertions) { 4 } else { 128 };

/// A pending task's place in service order: higher priority first, then lower sequence number,
/// packed into one integer so that comparisons are a single compare. The smallest key is
/// served next; the largest (lowest priority, newest) is evicted first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ServeKey(u128);

impl ServeKey {
    pub(crate) fn new(priority: i32, seq: u64) -> Self {
        // Flipping the sign bit maps i32 onto u32 in order; inverting it puts high first.
        let rank = !((priority as u32) ^ 0x8000_0000);
        Self((u128::from(rank) << 64) | u128::from(seq))
    }

    pub(crate) fn priority(self) -> i32 {
        (!((self.0 >> 64) as u32) ^ 0x8000_0000) as i32
    }

    pub(crate) fn seq(self) -> u64 {
        self.0 as u64
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) enum Pending<V> {
    /// Sorted by key, *descending*: the last entry is served next.
    Small(Vec<(ServeKey, V)>),
    /// Sorted by key, ascending: the first entry is served next.
    Large(BTreeMap<ServeKey, V>),
}

impl<V> Default for Pending<V> {
    fn default() -> Self {
        Self::Small(Vec::new())
    }
}

impl<V> Pending<V> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Small(tasks) => tasks.len(),
            Self::Large(tasks) => tasks.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `key` is, or would go, in a small vector (sorted descending).
    fn search(tasks: &[(ServeKey, V)], key: ServeKey) -> Result<usize, usize> {
        tasks.binary_search_by(|(k, _)| key.cmp(k))
    }

    /// Makes room for `additional` more tasks if they fit in the vector.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if let Self::Small(tasks) = self
            && tasks.len() + additional <= SMALL_MAX
        {
            tasks.reserve(additional);
        }
    }

    /// Inserts a task under a key not yet present.
    pub(crate) fn insert(&mut self, key: ServeKey, task: V) {
        match self {
            Self::Small(tasks) if tasks.len() < SMALL_MAX => {
                let at = Self::search(tasks, key).unwrap_or_else(|at| at);
                debug_assert!(tasks.get(at).is_none_or(|(k, _)| *k != key));
                tasks.insert(at, (key, task));
            }
            Self::Small(tasks) => {
                let mut large: BTreeMap<_, _> = std::mem::take(tasks).into_iter().collect();
                large.insert(key, task);
                *self = Self::Large(large);
            }
            Self::Large(tasks) => {
                let previous = tasks.insert(key, task);
                debug_assert!(previous.is_none(), "pending key inserted twice");
            }
        }
    }

    pub(crate) fn get_mut(&mut self, key: ServeKey) -> Option<&mut V> {
        match self {
            Self::Small(tasks) => {
                let at = Self::search(tasks, key).ok()?;
                Some(&mut tasks[at].1)
            }
            Self::Large(tasks) => tasks.get_mut(&key),
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: ServeKey) -> bool {
        match self {
            Self::Small(tasks) => Self::search(tasks, key).is_ok(),
            Self::Large(tasks) => tasks.contains_key(&key),
        }
    }

    pub(crate) fn remove(&mut self, key: ServeKey) -> Option<V> {
        let task = match self {
            Self::Small(tasks) => {
                let at = Self::search(tasks, key).ok()?;
                tasks.remove(at).1
            }
            Self::Large(tasks) => tasks.remove(&key)?,
        };
        self.shrink();
        Some(task)
    }

    /// Removes the task served next.
    pub(crate) fn pop_first(&mut self) -> Option<(ServeKey, V)> {
        match self {
            Self::Small(tasks) => tasks.pop(),
            Self::Large(tasks) => {
                let first = tasks.pop_first();
                self.shrink();
                first
            }
        }
    }

    /// The key served last (evicted first).
    pub(crate) fn last_key(&self) -> Option<ServeKey> {
        match self {
            Self::Small(tasks) => tasks.first().map(|(k, _)| *k),
            Self::Large(tasks) => tasks.last_key_value().map(|(k, _)| *k),
        }
    }

    /// Moves a B-tree that has shrunk to half of [`SMALL_MAX`] back to a vector.
    fn shrink(&mut self) {
        if let Self::Large(tasks) = self
            && tasks.len() <= SMALL_MAX / 2
        {
            let mut small = Vec::with_capacity(SMALL_MAX / 2);
            small.extend(std::mem::take(tasks).into_iter().rev());
            *self = Self::Small(small);
        }
    }

    /// Every task, in service order.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = (&ServeKey, &V)> + '_> {
        match self {
            Self::Small(tasks) => Box::new(tasks.iter().rev().map(|(k, t)| (k, t))),
            Self::Large(tasks) => Box::new(tasks.iter()),
        }
    }

    /// Checks the order of the vector.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            Self::Small(tasks) => {
                if tasks.len() > SMALL_MAX {
                    return Err("pending vector over its size".into());
                }
                if tasks.windows(2).any(|w| w[0].0 <= w[1].0) {
                    return Err("pending vector out of order".into());
                }
            }
            Self::Large(tasks) => {
                if tasks.len() <= SMALL_MAX / 2 {
                    return Err("pending B-tree below its size".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Pending, SMALL_MAX, ServeKey};
    use crate::Task;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i32),
        Pop,
        Remove(usize),
        Raise(usize, i32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (-5i32..5).prop_map(Op::Insert),
            2 => Just(Op::Pop),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => (any::<usize>(), -5i32..5).prop_map(|(i, p)| Op::Raise(i, p)),
        ]
    }

    proptest! {
        // Crosses the vector/B-tree boundary both ways: runs long enough to pass SMALL_MAX.
        #[test]
        fn behaves_like_a_sorted_list(ops in prop::collection::vec(op(), 0..(SMALL_MAX * 6))) {
            let mut pending: Pending<Task<u64, ()>> = Pending::default();
            let mut model: Vec<ServeKey> = Vec::new();
            let mut seq = 0u64;
            for op in ops {
                match op {
                    Op::Insert(priority) => {
                        let key = ServeKey::new(priority, seq);
                        pending.insert(key, Task::new(seq, priority, 1, ()));
                        model.push(key);
                        seq += 1;
                    }
                    Op::Pop => {
                        model.sort();
                        let expected = (!model.is_empty()).then(|| model.remove(0));
                        prop_assert_eq!(pending.pop_first().map(|(k, _)| k), expected);
                    }
                    Op::Remove(i) if !model.is_empty() => {
                        let key = model.swap_remove(i % model.len());
                        prop_assert_eq!(pending.remove(key).map(|t| t.topic), Some(key.seq()));
                        prop_assert!(pending.remove(key).is_none());
                    }
                    Op::Raise(i, priority) if !model.is_empty() => {
                        let i = i % model.len();
                        let key = model[i];
                        let task = pending.get_mut(key).expect("present");
                        task.priority = priority;
                        let task = pending.remove(key).expect("present");
                        let moved = ServeKey::new(priority, key.seq());
                        pending.insert(moved, task);
                        model[i] = moved;
                    }
                    Op::Remove(_) | Op::Raise(..) => {}
                }
                pending.check().map_err(TestCaseError::fail)?;
                model.sort();
                let keys: Vec<ServeKey> = pending.iter().map(|(k, _)| *k).collect();
                prop_assert_eq!(&keys, &model);
                prop_assert_eq!(pending.last_key(), model.last().copied());
                for key in &model {
                    prop_assert!(pending.contains(*key));
                }
            }
        }
    }
}
