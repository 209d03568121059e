//! What the queue's mutating calls report back.

use crate::{DroppedTask, PoppedTask, Task};

/// Result of [`push_tasks`](crate::PeerTaskQueue::push_tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "dropped tasks will never be served; the caller should answer for them"]
pub struct PushOutcome<T, D> {
    /// The peer was not in the queue before this call and is now.
    pub peer_added: bool,
    /// Tasks that became new pending tasks.
    pub queued: usize,
    /// Tasks folded into a pending or active task with the same topic.
    pub merged: usize,
    /// Tasks given up: the new task rejected, or an older one evicted for it.
    pub dropped: Vec<DroppedTask<T, D>>,
}

/// Result of [`pop_tasks`](crate::PeerTaskQueue::pop_tasks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popped<P, T, D> {
    /// The peer served.
    pub peer: P,
    /// Its tasks, in service order; never empty.
    pub tasks: Vec<PoppedTask<T, D>>,
    /// Tasks the peer still has pending.
    pub pending_tasks: usize,
    /// Work the peer still has pending, saturated at `u64::MAX` (Bitswap's `pendingBytes`).
    pub pending_work: u64,
}

/// Result of [`pop_tasks_into`](crate::PeerTaskQueue::pop_tasks_into): a
/// [`Popped`] whose tasks went into the caller's vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served<P> {
    /// The peer served.
    pub peer: P,
    /// Tasks appended to the caller's vector, in service order; never 0.
    pub tasks: usize,
    /// Tasks the peer still has pending.
    pub pending_tasks: usize,
    /// Work the peer still has pending, saturated at `u64::MAX` (Bitswap's `pendingBytes`).
    pub pending_work: u64,
}

/// Result of [`tasks_done`](crate::PeerTaskQueue::tasks_done) and
/// [`task_done`](crate::PeerTaskQueue::task_done).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DoneOutcome {
    /// Active tasks released. Unknown or already released tasks are ignored.
    pub released: usize,
    /// The peer had nothing left and was removed from the queue.
    pub peer_removed: bool,
}

/// Result of [`remove`](crate::PeerTaskQueue::remove).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveOutcome<T, D> {
    /// The pending task removed, if there was one.
    pub task: Option<Task<T, D>>,
    /// The peer had nothing left and was removed from the queue.
    pub peer_removed: bool,
}
