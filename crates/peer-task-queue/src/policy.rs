//! Which peer is served next.

use std::{
    cmp::{Ordering, Reverse},
    fmt::Debug,
};

use crate::{FairReady, KeyHeap, PeerStats, ReadySet, ladder::Banded};

/// Orders the peers that can be served.
///
/// The queue keeps every *eligible* peer (one with pending tasks whose active work is under its
/// limit) in a heap by [`key`](Self::key) and serves the smallest. It calls the other methods at
/// the moments they name and recomputes the key after every change to the peer. `tick` is a
/// counter that grows with every call into the queue that changes it: policies use it to break
/// ties by arrival, never wall-clock time.
pub trait Policy {
    /// What the policy keeps for each peer while the peer is in the queue.
    type State: Debug;
    /// Sort key; the eligible peer with the smallest key is served next.
    type Key: Ord + Copy + Debug;
    /// How the queue keeps the eligible peers in key order: [`KeyHeap`] orders any key.
    type Ready: ReadySet<Self::Key>;

    /// A peer enters the queue (its first push since it was last removed).
    fn peer_added(&mut self, tick: u64) -> Self::State;

    /// The peer's pending set went from empty to non-empty.
    fn backlogged(&mut self, state: &mut Self::State, tick: u64);

    /// The peer has pending work and dropped back under its active-work limit, after pops had
    /// taken it to or over the limit.
    fn resumed(&mut self, state: &mut Self::State, tick: u64);

    /// `work` was just popped from the peer in one `pop_tasks` call.
    fn served(&mut self, state: &mut Self::State, work: u64, view: &PeerStats, tick: u64);

    /// The peer's current sort key.
    fn key(&self, state: &Self::State, view: &PeerStats) -> Self::Key;
}

/// Fixed-point scale of [`Fair`]'s virtual time: one unit of work at weight 1 advances it by
/// 2^32.
const FAIR_SCALE_SHIFT: u32 = 32;

/// Byte-fair start-time fair queueing, the default policy.
///
/// Each peer carries a virtual start time. Serving a peer moves its start time forward by the
/// work popped divided by its weight, and the system's virtual time to the start time of the
/// peer just served. The eligible peer with the smallest start time goes next; ties go to the
/// peer that has waited longest (smallest tick).
///
/// - **Byte-fair**: among peers that stay backlogged, work popped is proportional to weight,
///   whatever the size of each peer's tasks or wantlist.
/// - **No credit, no debt across an idle gap**: a peer whose pending set was empty (new, or
///   drained, or cancelled) starts at the current virtual time. A peer held back by its active
///   work limit keeps its start time, raised to the current virtual time if it lags.
/// - **Starvation bound**: a peer that becomes backlogged while eligible is served within at
///   most *B* pops, *B* being the number of peers with pending tasks at that moment (itself
///   included), for as long as it stays eligible. Proof sketch: every eligible key is at least
///   the virtual time `V`, which never falls; the newcomer's key is `(V, t)` with `t` larger than
///   any tick before it. Only peers that were already backlogged can have a smaller key; each
///   such peer, once served, gets a key with a larger start or a larger tick, so it is served at
///   most once before the newcomer; peers that arrive later get keys after it.
#[derive(Debug, Clone, Default)]
pub struct Fair {
    virtual_time: u128,
}

/// [`Fair`]'s sort key: the virtual start time, then the tick. The start is held as two `u64`
/// halves so that heap entries stay 8-byte aligned and small; keys compare by start, then tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairKey {
    start_hi: u64,
    start_lo: u64,
    tick: u64,
}

impl Ord for FairKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.start_hi
            .cmp(&other.start_hi)
            .then(self.start_lo.cmp(&other.start_lo))
            .then(self.tick.cmp(&other.tick))
    }
}

impl PartialOrd for FairKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }

    // The heap compares with `<` and `>=`; spelled out, each is a short chain of branches that
    // the high word, nearly always equal, predicts well (fewer instructions than comparing
    // the words as an array, measured with callgrind).
    fn lt(&self, other: &Self) -> bool {
        if self.start_hi != other.start_hi {
            self.start_hi < other.start_hi
        } else if self.start_lo != other.start_lo {
            self.start_lo < other.start_lo
        } else {
            self.tick < other.tick
        }
    }

    fn ge(&self, other: &Self) -> bool {
        !self.lt(other)
    }
}

/// Work, in units at weight 1, in one band of [`Fair`]'s ready set (`FairReady`): 4 KiB,
/// as a power of two.
const FAIR_BAND_SHIFT: u32 = FAIR_SCALE_SHIFT + 12;

impl Banded for FairKey {
    fn band(&self) -> u128 {
        ((u128::from(self.start_hi) << 64) | u128::from(self.start_lo)) >> FAIR_BAND_SHIFT
    }
}

/// [`Fair`]'s per-peer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairState {
    start: u128,
    tick: u64,
}

impl Policy for Fair {
    type State = FairState;
    type Key = FairKey;
    type Ready = FairReady;

    fn peer_added(&mut self, tick: u64) -> FairState {
        FairState {
            start: self.virtual_time,
            tick,
        }
    }

    fn backlogged(&mut self, state: &mut FairState, tick: u64) {
        state.start = self.virtual_time;
        state.tick = tick;
    }

    fn resumed(&mut self, state: &mut FairState, _tick: u64) {
        state.start = state.start.max(self.virtual_time);
    }

    fn served(&mut self, state: &mut FairState, work: u64, view: &PeerStats, tick: u64) {
        self.virtual_time = self.virtual_time.max(state.start);
        let charge = (u128::from(work) << FAIR_SCALE_SHIFT) / u128::from(view.weight.get());
        state.start = state.start.saturating_add(charge);
        state.tick = tick;
    }

    fn key(&self, state: &FairState, _view: &PeerStats) -> FairKey {
        FairKey {
            start_hi: (state.start >> 64) as u64,
            start_lo: state.start as u64,
            tick: state.tick,
        }
    }
}

/// go-peertaskqueue's `DefaultPeerComparator`, for comparison in benchmarks.
///
/// The peer with the least active work goes first; between equal active work, the peer with
/// more pending tasks; then the peer that entered the queue first. Freezing is not reproduced
/// (boxo disables it), nor is Go's stall on a capped top peer: this queue never offers a peer at
/// its active-work limit. Weights are ignored. Under steady load this policy can starve a peer
/// with few wants behind peers with many (boxo#1141).
#[derive(Debug, Clone, Default)]
pub struct GoCompat;

/// [`GoCompat`]'s per-peer state: the tick at which the peer entered the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoCompatState {
    arrival: u64,
}

impl Policy for GoCompat {
    type State = GoCompatState;
    type Key = (u64, Reverse<usize>, u64);
    type Ready = KeyHeap<Self::Key>;

    fn peer_added(&mut self, tick: u64) -> GoCompatState {
        GoCompatState { arrival: tick }
    }

    fn backlogged(&mut self, _state: &mut GoCompatState, _tick: u64) {}

    fn resumed(&mut self, _state: &mut GoCompatState, _tick: u64) {}

    fn served(&mut self, _state: &mut GoCompatState, _work: u64, _view: &PeerStats, _tick: u64) {}

    fn key(&self, state: &GoCompatState, view: &PeerStats) -> Self::Key {
        (view.active_work, Reverse(view.pending_tasks), state.arrival)
    }
}
