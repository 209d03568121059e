//! How the queue keeps its eligible peers in key order: the ready set a [`Policy`](super::Policy)
//! names.

use std::fmt;

use super::FairKey;
use crate::{heap::IndexedHeap, ladder::Ladder};

/// A set of peers ordered by a policy's key: the queue serves the peer with the smallest.
///
/// Sealed: a [`Policy`](super::Policy) picks [`KeyHeap`], which orders any key, or
/// [`FairReady`], which is faster for [`Fair`](super::Fair)'s keys.
pub trait ReadySet<K>: sealed::Sealed<K> {}

pub(crate) mod sealed {
    /// What the queue needs of a ready set. Handles are the peers' slots in the queue.
    #[allow(
        unnameable_types,
        reason = "the supertrait that seals `ReadySet`: outside the crate it must not be named"
    )]
    pub trait Sealed<K>: Default + std::fmt::Debug {
        fn len(&self) -> usize;
        fn contains(&self, handle: u32) -> bool;
        /// The key of `handle`, if it is in the set.
        fn key(&self, handle: u32) -> Option<&K>;
        /// Inserts `handle`, which is not in the set.
        fn push(&mut self, handle: u32, key: K);
        /// Gives `handle`, which is in the set, a new key.
        fn update(&mut self, handle: u32, key: K);
        /// Removes `handle` if it is in the set.
        fn remove(&mut self, handle: u32);
        /// The handle with the smallest key.
        fn peek(&self) -> Option<u32>;
        /// A handle likely to have the smallest key once the first one is served and its key
        /// grows, if one is at hand.
        fn runner_up(&self) -> Option<u32>;
        /// Starts replacing the entry with the smallest key: returns the hole it leaves and its
        /// handle. The hole must be closed by [`refill_first`](Self::refill_first) or
        /// [`close_first`](Self::close_first) before any other call.
        fn open_first(&mut self) -> Option<(usize, u32)>;
        /// Puts the handle returned by [`open_first`](Self::open_first) back under a new key.
        fn refill_first(&mut self, hole: usize, handle: u32, key: K);
        /// Leaves the handle returned by [`open_first`](Self::open_first) out of the set.
        fn close_first(&mut self, hole: usize, handle: u32);
        /// Checks the set's internal invariants.
        fn check(&self) -> Result<(), String>;
    }
}

/// An indexed 4-ary heap: orders any key. [`GoCompat`](crate::GoCompat)'s ready set.
pub struct KeyHeap<K>(IndexedHeap<K>);

impl<K> Default for KeyHeap<K> {
    fn default() -> Self {
        Self(IndexedHeap::default())
    }
}

impl<K> fmt::Debug for KeyHeap<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyHeap").finish_non_exhaustive()
    }
}

/// The methods of a ready set that its inner structure (field 0) has, for keys of type
/// `$key`: under the same names, but `refill_first` and `close_first`, which are `$refill`
/// and `$close` there.
macro_rules! delegate_set_methods {
    ($key:ty, $refill:ident, $close:ident) => {
        fn len(&self) -> usize {
            self.0.len()
        }

        fn contains(&self, handle: u32) -> bool {
            self.0.contains(handle)
        }

        fn key(&self, handle: u32) -> Option<&$key> {
            self.0.key(handle)
        }

        fn push(&mut self, handle: u32, key: $key) {
            self.0.push(handle, key);
        }

        fn update(&mut self, handle: u32, key: $key) {
            self.0.update(handle, key);
        }

        fn remove(&mut self, handle: u32) {
            self.0.remove(handle);
        }

        fn runner_up(&self) -> Option<u32> {
            self.0.runner_up()
        }

        fn refill_first(&mut self, hole: usize, handle: u32, key: $key) {
            self.0.$refill(hole, handle, key);
        }

        fn close_first(&mut self, hole: usize, handle: u32) {
            self.0.$close(hole, handle);
        }

        fn check(&self) -> Result<(), String> {
            self.0.check()
        }
    };
}

impl<K: Ord + Copy> ReadySet<K> for KeyHeap<K> {}

impl<K: Ord + Copy> sealed::Sealed<K> for KeyHeap<K> {
    delegate_set_methods!(K, fill_hole, close_hole);

    fn peek(&self) -> Option<u32> {
        self.0.peek().map(|(_, handle)| handle)
    }

    fn open_first(&mut self) -> Option<(usize, u32)> {
        (self.0.len() > 0).then(|| self.0.open_root_hole())
    }
}

/// A ladder queue over [`Fair`](super::Fair)'s keys: the current band of virtual time in a
/// small heap, the next bands in unsorted buckets, the rest in a second heap. Serving a peer
/// moves it out of the small heap into a bucket, an append, instead of a walk down a heap of
/// every peer; the order is as exact as one heap's. [`Fair`](super::Fair)'s ready set.
#[derive(Default)]
pub struct FairReady(Ladder<FairKey>);

impl fmt::Debug for FairReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FairReady")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl ReadySet<FairKey> for FairReady {}

impl sealed::Sealed<FairKey> for FairReady {
    delegate_set_methods!(FairKey, refill_first, close_first);

    fn peek(&self) -> Option<u32> {
        self.0.peek()
    }

    fn open_first(&mut self) -> Option<(usize, u32)> {
        self.0.open_first()
    }
}
