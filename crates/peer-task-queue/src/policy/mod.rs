//! Which peer is served next: the [`Policy`] trait, the two policies ([`Fair`], the
//! default, and [`GoCompat`]) and the ready sets that keep eligible peers in key order.
//!
//! Most users pick a policy by name (both are re-exported at the crate root) and never
//! touch the rest: the keys, per-peer states and ready sets here are what a policy plugs
//! into the queue.

mod fair;
mod go_compat;
mod ready;

pub use fair::{Fair, FairKey, FairState};
pub use go_compat::{GoCompat, GoCompatState};
pub(crate) use ready::sealed;
pub use ready::{FairReady, KeyHeap, ReadySet};

use std::fmt::Debug;

use crate::PeerStats;

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
