//! Read-only snapshots of the queue and of one peer.

use std::num::NonZeroU32;

/// One peer's counters, as seen by [`PeerTaskQueue::peer_stats`](crate::PeerTaskQueue::peer_stats)
/// and by a [`Policy`](crate::policy::Policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStats {
    /// Pending tasks (one per topic).
    pub pending_tasks: usize,
    /// Sum of the pending tasks' work, saturated at `u64::MAX`.
    pub pending_work: u64,
    /// Popped tasks not yet reported done.
    pub active_tasks: usize,
    /// Sum of the active tasks' work, saturated at `u64::MAX`.
    pub active_work: u64,
    /// The peer's weight (see [`PeerTaskQueue::set_peer_weight`](crate::PeerTaskQueue::set_peer_weight)).
    pub weight: NonZeroU32,
}

/// Counters summed over every peer, kept up to date on each operation (reading is O(1)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Peers in the queue (each has pending or active tasks).
    pub peers: usize,
    /// Pending tasks.
    pub pending_tasks: usize,
    /// Sum of the pending tasks' work, saturated at `u64::MAX`.
    pub pending_work: u64,
    /// Active tasks.
    pub active_tasks: usize,
    /// Sum of the active tasks' work, saturated at `u64::MAX`.
    pub active_work: u64,
}

/// The topics one peer has in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerTopics<T> {
    /// Pending topics, in the order they would be popped.
    pub pending: Vec<T>,
    /// Topics with at least one active task, in no particular order.
    pub active: Vec<T>,
}
