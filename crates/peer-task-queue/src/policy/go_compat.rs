//! [`GoCompat`]: go-peertaskqueue's default order, for comparison.

use std::cmp::Reverse;

use super::{KeyHeap, Policy};
use crate::PeerStats;

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
