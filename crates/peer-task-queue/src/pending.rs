//! One peer's pending tasks in service order: a sorted vector while the peer has few, a
//! B-tree behind a short sorted vector of the next tasks once it has many.
//!
//! Most peers hold a handful of wants. For them a vector sorted in *reverse* service order is
//! one allocation, and serving the next task is `Vec::pop`: it touches one cache line and
//! shifts nothing, where a B-tree pop loads and shifts a whole leaf node. Inserting or removing
//! in the middle shifts the tail, which is cheap up to [`SMALL_MAX`] tasks; beyond it the tasks
//! move to a B-tree, where every operation is O(log n). A peer that drains back to half of
//! [`SMALL_MAX`] returns to the vector (the gap makes each move pay for itself: at least
//! `SMALL_MAX / 2` operations separate two moves, each of which costs O(`SMALL_MAX`)).
//!
//! A large peer serves its next tasks from a *front* vector, sorted like the small form, that
//! holds keys smaller than any in the B-tree. Popping from the front touches one cache line
//! where a B-tree pop walks from the root to the leftmost leaf and shifts it; on a peer not
//! served for a while (many peers), that walk is several cache misses per task. An empty front
//! is refilled with the B-tree's [`FRONT_REFILL`] smallest tasks, walked once for all of them; a
//! new task that sorts before the front's largest goes into the front, which hands its largest
//! back to the B-tree beyond [`FRONT_MAX`] tasks. Every operation stays O(log n).
//!
//! A large peer's new tasks that go past the front wait, unsorted, in an *inbox* until the end
//! of the push that brought them (or until the B-tree is read during it). Then the inbox is
//! sorted and merged into the tree in one pass if it holds at least an eighth of the tree's
//! size (a peer pushing a long wantlist: one sort instead of a cache-missing B-tree walk per
//! task), or inserted one by one if not. Either way each task costs O(log n), amortized, and
//! the push pays for its own tasks: a pop never meets a full inbox.

use std::collections::BTreeMap;

/// Most pending tasks a peer keeps in the sorted vector; one more moves them to a B-tree.
///
/// Chosen where the insertion costs meet: inserting at a random place shifts half the vector,
/// and at 128 tasks (48-byte entries) that costs about what a `BTreeMap` insertion costs (about
/// 70 ns each, measured over many peers), while a pop stays an order of magnitude cheaper
/// (10 ns against 140 ns). Debug builds use a tiny vector so that the tests, whose peers hold a
/// few tasks, cross between the two forms all the time.
pub(crate) const SMALL_MAX: usize = if cfg!(debug_assertions) { 4 } else { 128 };

/// Tasks moved from a large peer's B-tree to its front at once (see the module docs).
const FRONT_REFILL: usize = if cfg!(debug_assertions) { 2 } else { 16 };

/// Most tasks in a large peer's front.
const FRONT_MAX: usize = 2 * FRONT_REFILL;

/// An inbox of at least 1/`BULK_RATIO` of the B-tree's size is merged in one pass.
const BULK_RATIO: usize = 8;

/// A large peer's tasks past the front: a B-tree, and an inbox of tasks not yet in it.
#[derive(Debug)]
struct Large<V> {
    tree: BTreeMap<ServeKey, V>,
    /// Tasks pushed since the tree was last read, in no order; every key above the front's.
    inbox: Vec<(ServeKey, V)>,
}

impl<V> Large<V> {
    fn len(&self) -> usize {
        self.tree.len() + self.inbox.len()
    }

    /// Moves the inbox into the tree (see the module docs).
    fn flush(&mut self) {
        if self.inbox.is_empty() {
            return;
        }
        if self.inbox.len() * BULK_RATIO >= self.tree.len() {
            self.inbox.sort_unstable_by_key(|(key, _)| *key);
            // Built from sorted keys, the new tree is filled leaf by leaf; `append` then merges
            // the two sorted trees in one pass.
            let mut new: BTreeMap<_, _> = self.inbox.drain(..).collect();
            self.tree.append(&mut new);
        } else {
            for (key, task) in self.inbox.drain(..) {
                let previous = self.tree.insert(key, task);
                debug_assert!(previous.is_none(), "pending key inserted twice");
            }
        }
        // A long push's inbox is not kept: the tasks now live in the tree.
        self.inbox.shrink_to(FRONT_MAX);
    }
}

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
pub(crate) struct Pending<V> {
    /// Sorted by key, *descending*: the last entry is served next. Every task while the peer
    /// is small; the front (the next tasks) once it is large.
    front: Vec<(ServeKey, V)>,
    /// A large peer's other tasks, every key above the front's; `None` while the peer is
    /// small. Boxed so that a small peer pays one word for it.
    rest: Option<Box<Large<V>>>,
}

impl<V> Default for Pending<V> {
    fn default() -> Self {
        Self {
            front: Vec::new(),
            rest: None,
        }
    }
}

impl<V> Pending<V> {
    pub(crate) fn len(&self) -> usize {
        self.front.len() + self.rest.as_ref().map_or(0, |rest| rest.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `key` is, or would go, in the vector (sorted descending).
    fn search(front: &[(ServeKey, V)], key: ServeKey) -> Result<usize, usize> {
        front.binary_search_by(|(k, _)| key.cmp(k))
    }

    /// Merges a large peer's inbox into its B-tree; called at the end of a push.
    pub(crate) fn flush(&mut self) {
        if let Some(rest) = &mut self.rest {
            rest.flush();
        }
    }

    /// The large peer's other tasks, with the inbox merged into the tree.
    fn tree(&mut self) -> Option<&mut BTreeMap<ServeKey, V>> {
        let rest = self.rest.as_mut()?;
        rest.flush();
        Some(&mut rest.tree)
    }

    /// Whether `key`, if pending, is in the vector rather than the B-tree.
    fn in_front(&self, key: ServeKey) -> bool {
        self.rest.is_none()
            || self
                .front
                .first()
                .is_some_and(|(largest, _)| key <= *largest)
    }

    /// Makes room for `additional` more tasks if they fit in the vector of a small peer.
    pub(crate) fn reserve(&mut self, additional: usize) {
        if self.rest.is_none() && self.front.len() + additional <= SMALL_MAX {
            self.front.reserve(additional);
        }
    }

    /// Inserts a task under a key not yet present.
    pub(crate) fn insert(&mut self, key: ServeKey, task: V) {
        let front = &mut self.front;
        match &mut self.rest {
            None if front.len() < SMALL_MAX => {
                let at = Self::search(front, key).unwrap_or_else(|at| at);
                debug_assert!(front.get(at).is_none_or(|(k, _)| *k != key));
                front.insert(at, (key, task));
            }
            None => {
                // The peer becomes large; the front refills on the next pop.
                let tree: BTreeMap<_, _> = std::mem::take(front).into_iter().collect();
                self.rest = Some(Box::new(Large {
                    tree,
                    inbox: vec![(key, task)],
                }));
            }
            Some(rest) => match front.first() {
                Some((largest, _)) if key < *largest => {
                    let at = Self::search(front, key).unwrap_or_else(|at| at);
                    front.insert(at, (key, task));
                    if front.len() > FRONT_MAX {
                        let (k, v) = front.remove(0);
                        rest.inbox.push((k, v));
                    }
                }
                _ => rest.inbox.push((key, task)),
            },
        }
    }

    pub(crate) fn get_mut(&mut self, key: ServeKey) -> Option<&mut V> {
        if self.in_front(key) {
            let at = Self::search(&self.front, key).ok()?;
            Some(&mut self.front[at].1)
        } else {
            self.tree()?.get_mut(&key)
        }
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, key: ServeKey) -> bool {
        Self::search(&self.front, key).is_ok()
            || self.rest.as_ref().is_some_and(|rest| {
                rest.tree.contains_key(&key) || rest.inbox.iter().any(|(k, _)| *k == key)
            })
    }

    pub(crate) fn remove(&mut self, key: ServeKey) -> Option<V> {
        let task = if self.in_front(key) {
            let at = Self::search(&self.front, key).ok()?;
            self.front.remove(at).1
        } else {
            self.tree()?.remove(&key)?
        };
        self.shrink();
        Some(task)
    }

    /// Removes the task served next.
    pub(crate) fn pop_first(&mut self) -> Option<(ServeKey, V)> {
        let Some(rest) = &mut self.rest else {
            return self.front.pop();
        };
        if self.front.is_empty() {
            rest.flush();
            let rest = &mut rest.tree;
            // Refill with the B-tree's smallest tasks, largest first.
            let head = match rest.keys().nth(FRONT_REFILL) {
                Some(&bound) => {
                    let tail = rest.split_off(&bound);
                    std::mem::replace(rest, tail)
                }
                None => std::mem::take(rest),
            };
            self.front.extend(head.into_iter().rev());
        }
        let first = self.front.pop();
        self.shrink();
        first
    }

    /// The task served next if it is in the vector (it is unless a large peer's front is
    /// empty, to be refilled on the next pop).
    pub(crate) fn front_first(&self) -> Option<&V> {
        self.front.last().map(|(_, task)| task)
    }

    /// The task served after the next one, if it is in the vector.
    pub(crate) fn front_second(&self) -> Option<&V> {
        let len = self.front.len();
        self.front.get(len.checked_sub(2)?).map(|(_, task)| task)
    }

    /// The key served last (evicted first).
    pub(crate) fn last_key(&mut self) -> Option<ServeKey> {
        self.tree()
            .and_then(|tree| tree.last_key_value().map(|(k, _)| *k))
            .or_else(|| self.front.first().map(|(k, _)| *k))
    }

    /// Moves a large peer that has shrunk to half of [`SMALL_MAX`] back to the vector alone.
    fn shrink(&mut self) {
        if self.rest.is_some() && self.len() <= SMALL_MAX / 2 {
            let tree = self.tree().map(std::mem::take).unwrap_or_default();
            self.rest = None;
            let mut small = Vec::with_capacity(SMALL_MAX / 2);
            small.extend(tree.into_iter().rev());
            small.append(&mut self.front);
            self.front = small;
        }
    }

    /// Every task, in service order. O(n log n) while a large peer's inbox holds tasks: for
    /// inspection, not for the hot path.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ServeKey, &V)> + '_ {
        let mut rest: Vec<(&ServeKey, &V)> = self
            .rest
            .iter()
            .flat_map(|rest| {
                rest.tree
                    .iter()
                    .chain(rest.inbox.iter().map(|(k, t)| (k, t)))
            })
            .collect();
        if self
            .rest
            .as_ref()
            .is_some_and(|rest| !rest.inbox.is_empty())
        {
            rest.sort_unstable_by_key(|(key, _)| **key);
        }
        self.front.iter().rev().map(|(k, t)| (k, t)).chain(rest)
    }

    /// Checks the order of the vector and its bounds.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.front.windows(2).any(|w| w[0].0 <= w[1].0) {
            return Err("pending vector out of order".into());
        }
        match &self.rest {
            None if self.front.len() > SMALL_MAX => Err("pending vector over its size".into()),
            None => Ok(()),
            Some(_) if self.len() <= SMALL_MAX / 2 => Err("pending B-tree below its size".into()),
            Some(_) if self.front.len() > FRONT_MAX => Err("pending front over its size".into()),
            Some(rest) => {
                let smallest = rest
                    .tree
                    .first_key_value()
                    .map(|(k, _)| k)
                    .into_iter()
                    .chain(rest.inbox.iter().map(|(k, _)| k))
                    .min();
                match (self.front.first(), smallest) {
                    (Some((largest, _)), Some(smallest)) if largest >= smallest => {
                        Err("pending front overlaps the B-tree".into())
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{FRONT_MAX, Pending, SMALL_MAX, ServeKey};
    use crate::Task;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(i32),
        Pop,
        Remove(usize),
        Raise(usize, i32),
        /// Reads the key served last, which merges the inbox.
        LastKey,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (-5i32..5).prop_map(Op::Insert),
            2 => Just(Op::Pop),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => (any::<usize>(), -5i32..5).prop_map(|(i, p)| Op::Raise(i, p)),
            1 => Just(Op::LastKey),
        ]
    }

    proptest! {
        // Crosses the vector/B-tree boundary both ways, refills and overflows the front of the
        // large form, and merges its inbox both ways (inserts runs of tasks between reads):
        // runs long enough to pass SMALL_MAX and FRONT_MAX several times.
        #[test]
        fn behaves_like_a_sorted_list(
            ops in prop::collection::vec(op(), 0..(SMALL_MAX * 6 + FRONT_MAX * 8))
        ) {
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
                    Op::LastKey => {
                        model.sort();
                        prop_assert_eq!(pending.last_key(), model.last().copied());
                    }
                    Op::Remove(_) | Op::Raise(..) => {}
                }
                pending.check().map_err(TestCaseError::fail)?;
                model.sort();
                let keys: Vec<ServeKey> = pending.iter().map(|(k, _)| *k).collect();
                prop_assert_eq!(&keys, &model);
                for key in &model {
                    prop_assert!(pending.contains(*key));
                }
            }
        }
    }
}
