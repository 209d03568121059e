//! Tasks as the caller pushes them and as the queue hands them back.

use std::fmt;

/// A unit of work for one peer: send this block, answer this want-have.
///
/// `T` is the topic, the deduplication key (a CID in Bitswap): a peer has at most one pending
/// task per topic, and a new task for a pending topic is merged into it (see
/// [`TaskMerger`](crate::TaskMerger)). `D` is the caller's payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task<T, D> {
    /// Deduplication key.
    pub topic: T,
    /// Higher is served first within one peer. Equal priorities are served in push order.
    pub priority: i32,
    /// Cost of the task in the caller's unit (bytes in Bitswap). Drives fairness between peers,
    /// the per-peer active-work limit and `pop_tasks`' target.
    pub work: u64,
    /// Caller's payload, handed back when the task is popped.
    pub data: D,
}

impl<T, D> Task<T, D> {
    /// Creates a task.
    pub fn new(topic: T, priority: i32, work: u64, data: D) -> Self {
        Self {
            topic,
            priority,
            work,
            data,
        }
    }
}

/// Identifies a popped task until [`tasks_done`](crate::PeerTaskQueue::tasks_done) releases it.
///
/// Ids are unique within one queue and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    /// Sequence number given at push, unique within the queue.
    pub(crate) seq: u64,
    /// Where the active task sits in its peer's active slab.
    pub(crate) slot: u32,
    /// Where the peer sat in the queue when the task was popped: lets `tasks_done` find the
    /// peer without hashing its id (the hint is checked against the peer, and ignored if stale).
    pub(crate) peer: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task-{}", self.seq)
    }
}

/// A task taken out of the queue by [`pop_tasks`](crate::PeerTaskQueue::pop_tasks).
///
/// Its work counts against the peer's active work until the caller reports it done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoppedTask<T, D> {
    /// The task as it was pending, after any merges.
    pub task: Task<T, D>,
    pub(crate) id: TaskId,
}

impl<T, D> PoppedTask<T, D> {
    /// The id to hand back to [`task_done`](crate::PeerTaskQueue::task_done).
    pub fn id(&self) -> TaskId {
        self.id
    }
}

/// Why [`push_tasks`](crate::PeerTaskQueue::push_tasks) did not keep a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The new task was refused: the peer's pending tasks were at their limit and none had a
    /// lower priority, or the queue was at its peer limit.
    Rejected,
    /// A pending task of lower priority was evicted to make room for the new one.
    Evicted,
}

/// A task that will not be served, returned so the caller can answer for it (a Bitswap server
/// sends DONT_HAVE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedTask<T, D> {
    /// The task given up.
    pub task: Task<T, D>,
    /// Whether it was the new task or an older pending one.
    pub reason: DropReason,
}
