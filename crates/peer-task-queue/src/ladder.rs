//! A ladder queue of handles: [`Fair`](crate::Fair)'s ready set.
//!
//! Keys are grouped in *bands* (a band is a range of virtual start times, see [`Banded`]).
//! The keys of the current band sit in a sorted *run* (a bucket poured and sorted in one go)
//! and a small indexed heap (keys placed in the band one by one); the keys of the next [`RING`]
//! bands sit unsorted in a ring of buckets, one per band; keys further on sit in a second
//! indexed heap. Every key of the current band is below every key of the ring, which are below
//! every key of the far heap, so the smallest key is the smaller of the run's next and the
//! small heap's root: the order is exact, as with one heap.
//!
//! Why: with one heap of 100,000 peers, every pop walked a root-to-leaf path of a 3.2 MB heap,
//! and its last levels were cache misses, one after the other. Serving a peer under `Fair`
//! moves its key a band or more ahead, so here it leaves the current band and is appended to a
//! ring bucket. When the band runs out, the next occupied bucket is sorted (sequential work)
//! and served off the end of the vector, and the far heap hands over the keys that the ring
//! now covers. A served key thus costs an append and its share of one sort, instead of a walk
//! down a cold path.
//!
//! The current band is never empty while the set is not: after any change that empties it,
//! the queue advances to the next occupied band, so the smallest key can be read without
//! `&mut`. Keys taken out of the run early (removed or re-keyed) leave stale entries behind,
//! skipped when they reach its end; they are gone when the band is.
//!
//! A set of at most [`BANDS_ABOVE`] entries is *flat*: the small heap holds every key. Such a
//! heap stays in cache, and bands would only add work to it (with 10 peers, about 90 ns per
//! pop). Past that size the set spreads into bands, and it folds back below [`FLAT_BELOW`].
//!
//! Every operation is O(log n), amortized: a key is sorted into a run or enters the small heap
//! once per band it is placed in, leaves the far heap once, and the changes of form are paid
//! for by the gap between the two sizes.

use crate::heap::IndexedHeap;

/// Buckets in the ring: bands after the current one held unsorted.
const RING: usize = 64;

/// Entries above which the set spreads into bands; below [`FLAT_BELOW`] it folds back into the
/// small heap alone. A heap this small stays in cache, and bands would only cost it work; the
/// gap between the two makes each change of form, O(n log n), pay for itself.
const BANDS_ABOVE: usize = if cfg!(debug_assertions) { 8 } else { 4096 };
/// Entries below which a spread set folds back (see [`BANDS_ABOVE`]).
const FLAT_BELOW: usize = BANDS_ABOVE / 4;

/// The band of a set that is not spread: every key is at or below it.
const FLAT: u128 = u128::MAX;

/// A key with a band: keys of a smaller band are smaller.
pub(crate) trait Banded: Ord + Copy {
    /// The key's band.
    fn band(&self) -> u128;
}

/// Where a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Absent,
    Near,
    Far,
    /// In the current band's sorted run at `index`.
    Run {
        index: u32,
    },
    /// In ring bucket `slot` at `index`.
    Ring {
        slot: u8,
        index: u32,
    },
}

/// See the module docs.
/// The hole `open_first` returns when the first entry came from the run.
const RUN_HOLE: usize = usize::MAX;

#[derive(Debug, Clone)]
pub(crate) struct Ladder<K> {
    /// The current band's keys as a bucket poured them: sorted, largest first, so the next is
    /// popped off the end. Entries whose handle's place is no longer `Run` at their index are
    /// stale (removed or re-keyed) and skipped; the last entry is never stale.
    run: Vec<(K, u32)>,
    /// The current band's other keys: those placed in it one by one.
    near: IndexedHeap<K>,
    ring: Vec<Vec<(K, u32)>>,
    /// Bit `s` set: ring bucket `s` is not empty.
    occupied: u64,
    far: IndexedHeap<K>,
    /// The current band: the small heap holds the keys of this band and below. [`FLAT`]
    /// while the set is small: the small heap holds every key.
    band: u128,
    locs: Vec<Loc>,
    len: usize,
}

impl<K> Default for Ladder<K> {
    fn default() -> Self {
        Self {
            run: Vec::new(),
            near: IndexedHeap::default(),
            ring: (0..RING).map(|_| Vec::new()).collect(),
            occupied: 0,
            far: IndexedHeap::default(),
            band: FLAT,
            locs: Vec::new(),
            len: 0,
        }
    }
}

impl<K: Banded> Ladder<K> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn loc(&self, handle: u32) -> Loc {
        self.locs
            .get(handle as usize)
            .copied()
            .unwrap_or(Loc::Absent)
    }

    fn set_loc(&mut self, handle: u32, loc: Loc) {
        let at = handle as usize;
        if self.locs.len() <= at {
            self.locs.resize(at + 1, Loc::Absent);
        }
        self.locs[at] = loc;
    }

    pub(crate) fn contains(&self, handle: u32) -> bool {
        self.loc(handle) != Loc::Absent
    }

    /// The key of `handle`, if it is in the set.
    pub(crate) fn key(&self, handle: u32) -> Option<&K> {
        match self.loc(handle) {
            Loc::Absent => None,
            Loc::Near => self.near.key(handle),
            Loc::Far => self.far.key(handle),
            Loc::Run { index } => Some(&self.run[index as usize].0),
            Loc::Ring { slot, index } => Some(&self.ring[usize::from(slot)][index as usize].0),
        }
    }

    /// Whether the current band holds no key (the run's last entry is never stale).
    fn band_is_empty(&self) -> bool {
        self.run.is_empty() && self.near.len() == 0
    }

    /// Whether the smallest key is the run's last rather than the heap's root.
    fn run_first(&self) -> bool {
        match (self.run.last(), self.near.peek()) {
            (Some((run, _)), Some((heap, _))) => run < heap,
            (run, _) => run.is_some(),
        }
    }

    /// The handle with the smallest key.
    pub(crate) fn peek(&self) -> Option<u32> {
        if self.run_first() {
            self.run.last().map(|&(_, handle)| handle)
        } else {
            self.near.peek().map(|(_, handle)| handle)
        }
    }

    /// A handle likely to come after the first (a hint: it may be stale or wrong).
    pub(crate) fn runner_up(&self) -> Option<u32> {
        if self.run_first() {
            let run_second = self.run.len().checked_sub(2).map(|at| self.run[at]);
            let heap_first = self.near.peek().map(|(key, handle)| (*key, handle));
            match (run_second, heap_first) {
                (Some(run), Some(heap)) => Some(if run.0 < heap.0 { run.1 } else { heap.1 }),
                (run, heap) => run.or(heap).map(|(_, handle)| handle),
            }
        } else if let Some(&(run, handle)) = self.run.last() {
            match self.near.runner_up() {
                Some(child) if self.near.key(child).is_some_and(|key| *key < run) => Some(child),
                _ => Some(handle),
            }
        } else {
            self.near.runner_up()
        }
    }

    /// Drops stale entries off the end of the run.
    fn trim_run(&mut self) {
        while let Some(&(_, handle)) = self.run.last() {
            let index = (self.run.len() - 1) as u32;
            if self.locs[handle as usize] == (Loc::Run { index }) {
                break;
            }
            self.run.pop();
        }
    }

    /// Puts `handle`, which is nowhere, where its key belongs. Does not advance.
    fn place(&mut self, handle: u32, key: K) {
        let band = key.band();
        let loc = if band <= self.band {
            self.near.push(handle, key);
            Loc::Near
        } else if band - self.band < RING as u128 {
            let slot = (band % RING as u128) as usize;
            let bucket = &mut self.ring[slot];
            let index = bucket.len() as u32;
            bucket.push((key, handle));
            self.occupied |= 1 << slot;
            Loc::Ring {
                slot: slot as u8,
                index,
            }
        } else {
            self.far.push(handle, key);
            Loc::Far
        };
        self.set_loc(handle, loc);
    }

    /// Takes `handle` out of wherever it is, without advancing; returns its key.
    fn take(&mut self, handle: u32) -> Option<K> {
        let key = match self.loc(handle) {
            Loc::Absent => return None,
            Loc::Near => self.near.remove(handle),
            Loc::Far => self.far.remove(handle),
            Loc::Run { index } => {
                let key = self.run[index as usize].0;
                self.locs[handle as usize] = Loc::Absent;
                self.trim_run();
                Some(key)
            }
            Loc::Ring { slot, index } => {
                let bucket = &mut self.ring[usize::from(slot)];
                let (key, _) = bucket.swap_remove(index as usize);
                if let Some(&(_, moved)) = bucket.get(index as usize) {
                    self.locs[moved as usize] = Loc::Ring { slot, index };
                }
                if bucket.is_empty() {
                    self.occupied &= !(1 << slot);
                }
                Some(key)
            }
        };
        self.locs[handle as usize] = Loc::Absent;
        key
    }

    /// Inserts `handle`, which must not be in the set.
    pub(crate) fn push(&mut self, handle: u32, key: K) {
        debug_assert!(!self.contains(handle));
        self.len += 1;
        self.place(handle, key);
        self.advance();
        if self.band == FLAT && self.len > BANDS_ABOVE {
            self.spread();
        }
    }

    /// Gives `handle`, which is in the set, a new key.
    pub(crate) fn update(&mut self, handle: u32, key: K) {
        if self.take(handle).is_some() {
            self.place(handle, key);
            self.advance();
        }
    }

    /// Removes `handle` if it is in the set.
    pub(crate) fn remove(&mut self, handle: u32) {
        if self.take(handle).is_some() {
            self.len -= 1;
            self.advance();
            self.fold_if_small();
        }
    }

    /// Starts replacing the smallest entry: takes it off the run, or begins a root
    /// replacement in the heap (see [`IndexedHeap::open_root_hole`]).
    pub(crate) fn open_first(&mut self) -> Option<(usize, u32)> {
        if self.run_first() {
            let (_, handle) = self.run.pop()?;
            self.locs[handle as usize] = Loc::Absent;
            self.trim_run();
            Some((RUN_HOLE, handle))
        } else {
            (self.near.len() > 0).then(|| self.near.open_root_hole())
        }
    }

    /// Puts the handle returned by [`open_first`](Self::open_first) back under `key`.
    pub(crate) fn refill_first(&mut self, hole: usize, handle: u32, key: K) {
        if hole == RUN_HOLE {
            self.place(handle, key);
            self.advance();
        } else if key.band() <= self.band {
            self.near.fill_hole(hole, handle, key);
        } else {
            // Served peers usually move a band or more ahead: out of the small heap.
            self.near.close_hole(hole, handle);
            self.place(handle, key);
            self.advance();
        }
    }

    /// Leaves the handle returned by [`open_first`](Self::open_first) out of the set.
    pub(crate) fn close_first(&mut self, hole: usize, handle: u32) {
        if hole != RUN_HOLE {
            self.near.close_hole(hole, handle);
        }
        self.locs[handle as usize] = Loc::Absent;
        self.len -= 1;
        self.advance();
        self.fold_if_small();
    }

    /// Makes `entries`, sorted largest first, the current band's run; hands back the old
    /// run's vector, emptied.
    fn start_run(&mut self, mut entries: Vec<(K, u32)>) -> Vec<(K, u32)> {
        for (index, &(_, handle)) in entries.iter().enumerate() {
            self.locs[handle as usize] = Loc::Run {
                index: index as u32,
            };
        }
        std::mem::swap(&mut self.run, &mut entries);
        entries.clear();
        entries
    }

    /// Spreads a flat set into bands: the current band is the smallest key's, and its keys
    /// become the run.
    fn spread(&mut self) {
        let mut entries = Vec::with_capacity(self.near.len());
        while let Some(entry) = self.near.pop() {
            entries.push(entry);
        }
        self.band = entries.first().map_or(FLAT, |(key, _)| key.band());
        let current = entries.partition_point(|(key, _)| key.band() <= self.band);
        for (key, handle) in entries.drain(current..) {
            self.place(handle, key);
        }
        entries.reverse();
        self.start_run(entries);
    }

    /// Folds a spread set that has become small back into the small heap.
    fn fold_if_small(&mut self) {
        if self.band == FLAT || self.len >= FLAT_BELOW {
            return;
        }
        self.band = FLAT;
        self.occupied = 0;
        for (index, (key, handle)) in std::mem::take(&mut self.run).into_iter().enumerate() {
            if self.locs[handle as usize]
                == (Loc::Run {
                    index: index as u32,
                })
            {
                self.near.push(handle, key);
                self.locs[handle as usize] = Loc::Near;
            }
        }
        for slot in 0..RING {
            let mut bucket = std::mem::take(&mut self.ring[slot]);
            for (key, handle) in bucket.drain(..) {
                self.near.push(handle, key);
                self.locs[handle as usize] = Loc::Near;
            }
            self.ring[slot] = bucket;
        }
        while let Some((key, handle)) = self.far.pop() {
            self.near.push(handle, key);
            self.locs[handle as usize] = Loc::Near;
        }
    }

    /// While the small heap is empty and the set is not: moves to the next band that holds a
    /// key, hands the far heap's keys that the ring now covers to the ring, and pours that
    /// band's bucket into the small heap.
    fn advance(&mut self) {
        while self.band_is_empty() && self.len > 0 {
            let next = if self.occupied != 0 {
                // Ring buckets after the current band's slot, in band order.
                let from = ((self.band + 1) % RING as u128) as u32;
                let ahead = u128::from(self.occupied.rotate_right(from).trailing_zeros());
                self.band + 1 + ahead
            } else {
                match self.far.peek() {
                    Some((key, _)) => key.band(),
                    None => return,
                }
            };
            self.band = next;
            while let Some((key, _)) = self.far.peek()
                && key.band() - self.band < RING as u128
            {
                let (key, handle) = self.far.pop().expect("peeked");
                self.place(handle, key);
            }
            let slot = (self.band % RING as u128) as usize;
            if self.occupied & (1 << slot) != 0 {
                self.occupied &= !(1 << slot);
                // Sorted once, sequentially, the bucket is served off the end of a vector.
                let mut bucket = std::mem::take(&mut self.ring[slot]);
                bucket.sort_unstable_by_key(|&(key, _)| std::cmp::Reverse(key));
                let mut emptied = self.start_run(bucket);
                // A bucket keeps its memory for the next band, within twice its share.
                emptied.shrink_to(2 * self.len / RING + 16);
                self.ring[slot] = emptied;
            }
        }
    }

    /// Checks the tiers against each other and against the handles' places.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.near.check()?;
        self.far.check()?;
        if self.len > 0 && self.band_is_empty() {
            return Err("ladder: current band empty while the set is not".into());
        }
        if self.run.windows(2).any(|pair| pair[0].0 <= pair[1].0) {
            return Err("ladder: run out of order".into());
        }
        let mut count = self.near.len() + self.far.len();
        for (index, (key, handle)) in self.run.iter().enumerate() {
            if key.band() > self.band {
                return Err(format!("ladder: run entry of {handle} past the band"));
            }
            if self.loc(*handle)
                == (Loc::Run {
                    index: index as u32,
                })
            {
                count += 1;
            } else if index + 1 == self.run.len() {
                return Err("ladder: stale entry at the end of the run".into());
            }
        }
        for (slot, bucket) in self.ring.iter().enumerate() {
            if bucket.is_empty() == (self.occupied & (1 << slot) != 0) {
                return Err(format!("ladder: ring bucket {slot} marked wrongly"));
            }
            for (index, (key, handle)) in bucket.iter().enumerate() {
                let band = key.band();
                let expected = Loc::Ring {
                    slot: slot as u8,
                    index: index as u32,
                };
                if band <= self.band
                    || band - self.band >= RING as u128
                    || (band % RING as u128) as usize != slot
                    || self.loc(*handle) != expected
                {
                    return Err(format!("ladder: ring entry of {handle} misplaced"));
                }
            }
            count += bucket.len();
        }
        for (handle, loc) in self.locs.iter().enumerate() {
            let handle = handle as u32;
            let right = match loc {
                Loc::Absent => !self.near.contains(handle) && !self.far.contains(handle),
                Loc::Near => self
                    .near
                    .key(handle)
                    .is_some_and(|key| key.band() <= self.band),
                Loc::Run { index } => self
                    .run
                    .get(*index as usize)
                    .is_some_and(|(_, at)| *at == handle),
                Loc::Far => self.far.key(handle).is_some_and(|key| {
                    key.band()
                        .checked_sub(self.band)
                        .is_some_and(|ahead| ahead >= RING as u128)
                }),
                Loc::Ring { .. } => true,
            };
            if !right {
                return Err(format!("ladder: handle {handle} is not where it is noted"));
            }
        }
        if count != self.len {
            return Err(format!("ladder holds {count} entries, counts {}", self.len));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{Banded, Ladder};

    /// A key whose band is its value divided by 4.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct Key(u64, u32);

    impl Banded for Key {
        fn band(&self) -> u128 {
            u128::from(self.0 / 4)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Push or re-key a handle this far above the last popped key (below it when negative).
        Set(u32, i64),
        Pop,
        Remove(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u32..40, prop_oneof![-8i64..8, 0i64..600, 0i64..100_000])
                .prop_map(|(h, d)| Op::Set(h, d)),
            3 => Just(Op::Pop),
            1 => (0u32..40).prop_map(Op::Remove),
        ]
    }

    proptest! {
        // Keys mostly ahead of the last popped one, as under Fair, sometimes far ahead (past the
        // ring) or behind it: the ladder must pop in key order whatever they are.
        #[test]
        fn behaves_like_a_sorted_list(ops in prop::collection::vec(op(), 0..400)) {
            let mut ladder = Ladder::default();
            let mut model: Vec<Key> = Vec::new();
            let mut last = 1_000u64;
            for op in ops {
                match op {
                    Op::Set(h, d) => {
                        let key = Key(last.saturating_add_signed(d), h);
                        if let Some(at) = model.iter().position(|k| k.1 == h) {
                            model[at] = key;
                            ladder.update(h, key);
                        } else {
                            model.push(key);
                            ladder.push(h, key);
                        }
                    }
                    Op::Pop => {
                        model.sort();
                        let expected = (!model.is_empty()).then(|| model.remove(0));
                        let popped = ladder.peek().map(|first| {
                            let key = *ladder.key(first).expect("in the set");
                            let (hole, handle) = ladder.open_first().expect("not empty");
                            assert_eq!(handle, first);
                            ladder.close_first(hole, handle);
                            key
                        });
                        prop_assert_eq!(popped, expected);
                        if let Some(key) = popped {
                            last = key.0;
                        }
                    }
                    Op::Remove(h) => {
                        let at = model.iter().position(|k| k.1 == h);
                        prop_assert_eq!(ladder.contains(h), at.is_some());
                        if let Some(at) = at {
                            model.remove(at);
                        }
                        ladder.remove(h);
                    }
                }
                ladder.check().map_err(TestCaseError::fail)?;
                prop_assert_eq!(ladder.len(), model.len());
                model.sort();
                prop_assert_eq!(ladder.peek(), model.first().map(|k| k.1));
                for key in &model {
                    prop_assert_eq!(ladder.key(key.1), Some(key));
                }
            }
        }

        // A served entry put back under a larger key (the pop path) keeps the order too.
        #[test]
        fn refilled_roots_stay_in_order(
            steps in prop::collection::vec((0u32..20, 0i64..700), 1..300)
        ) {
            let mut ladder = Ladder::default();
            let mut model: Vec<Key> = Vec::new();
            for h in 0..20 {
                ladder.push(h, Key(1_000, h));
                model.push(Key(1_000, h));
            }
            for (_, d) in steps {
                model.sort();
                let (hole, handle) = ladder.open_first().expect("never empty");
                prop_assert_eq!(handle, model[0].1);
                let key = Key(model[0].0.saturating_add_signed(d), handle);
                model[0] = key;
                ladder.refill_first(hole, handle, key);
                ladder.check().map_err(TestCaseError::fail)?;
            }
        }
    }
}
