//! Limits of a [`PeerTaskQueue`](crate::PeerTaskQueue).

/// Limits of a queue. Every limit applies per queue instance; a caller that wants no limit sets
/// the maximum value of the type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Most active work (popped, not yet done) a peer may have before it is skipped, in work
    /// units (bytes in Bitswap). A pop may overshoot it by one task. Default: 1 MiB, boxo's
    /// `MaxOutstandingBytesPerPeer`. `u64::MAX` disables the limit.
    pub max_active_work_per_peer: u64,
    /// Most pending tasks a peer may have, in tasks. At the limit a new task evicts the
    /// lowest-priority pending task if its own priority is higher, and is rejected otherwise.
    /// Default: 1024, boxo's `MaxQueuedWantlistEntriesPerPeer`. At least 1. Whatever it says, a
    /// peer holds at most `u32::MAX - 1` tasks, pending and active together.
    pub max_pending_tasks_per_peer: usize,
    /// Most peers the queue holds, in peers. Tasks for a new peer beyond it are rejected.
    /// Default: `usize::MAX` (the caller's connection limit bounds it).
    pub max_peers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_active_work_per_peer: 1 << 20,
            max_pending_tasks_per_peer: 1024,
            max_peers: usize::MAX,
        }
    }
}

impl Config {
    /// Sets [`max_active_work_per_peer`](Self::max_active_work_per_peer).
    pub fn with_max_active_work_per_peer(mut self, work: u64) -> Self {
        self.max_active_work_per_peer = work;
        self
    }

    /// Sets [`max_pending_tasks_per_peer`](Self::max_pending_tasks_per_peer); 0 counts as 1.
    pub fn with_max_pending_tasks_per_peer(mut self, tasks: usize) -> Self {
        self.max_pending_tasks_per_peer = tasks.max(1);
        self
    }

    /// Sets [`max_peers`](Self::max_peers).
    pub fn with_max_peers(mut self, peers: usize) -> Self {
        self.max_peers = peers;
        self
    }
}
