//! [`Fair`]: byte-fair start-time fair queueing, the default policy.

use std::cmp::Ordering;

use super::{FairReady, Policy};
use crate::{PeerStats, ladder::Banded};

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
