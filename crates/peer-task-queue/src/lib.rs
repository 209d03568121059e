//! A fair, bounded, synchronous queue of tasks per peer, the scheduler at the heart of a
//! Bitswap server.
//!
//! Peers push tasks (send this block, answer this want-have); a sender pops a batch of one
//! peer's tasks, writes them, and reports them done. The queue decides which peer goes next,
//! merges repeated requests for the same topic, and bounds what each peer can hold.
//!
//! ```
//! use peer_task_queue::{Config, PeerTaskQueue, Task};
//!
//! // Peers are `&str`, topics `u32`, task data `()`.
//! let mut queue: PeerTaskQueue<&str, u32, ()> = PeerTaskQueue::new(Config::default());
//! let _ = queue.push_tasks(&"alice", [Task::new(1, 10, 1024, ()), Task::new(2, 20, 1024, ())]);
//! let _ = queue.push_tasks(&"bob", [Task::new(1, 5, 4096, ())]);
//!
//! // Alice arrived first; her higher-priority task comes out first.
//! let popped = queue.pop_tasks(1024).expect("work is pending");
//! assert_eq!(popped.peer, "alice");
//! assert_eq!(popped.tasks[0].task.topic, 2);
//! assert_eq!(popped.pending_work, 1024);
//!
//! // Bob has received nothing yet, so he is next.
//! assert_eq!(queue.pop_tasks(1024).expect("bob").peer, "bob");
//!
//! // Once written, tasks are reported done; an idle peer leaves the queue at once.
//! let done = queue.tasks_done(&"alice", &popped.tasks);
//! assert_eq!(done.released, 1);
//! assert_eq!(queue.stats().pending_tasks, 1);
//! ```
//!
//! # Model
//!
//! - A [`Task`] has a topic (the deduplication key, a CID in Bitswap), a priority, work (its
//!   cost, bytes in Bitswap) and data. Within a peer, higher priority goes first, then push
//!   order.
//! - A peer holds at most one *pending* task per topic; a new task for that topic is merged by
//!   the [`TaskMerger`] (a want-have upgraded to a want-block). Popped tasks are *active* until
//!   [`tasks_done`](PeerTaskQueue::tasks_done).
//! - Between peers, a [`Policy`](policy::Policy) decides. The default, [`Fair`], is byte-fair among backlogged
//!   peers, optionally weighted, and serves a newly backlogged peer within as many pops as there
//!   are backlogged peers. [`GoCompat`] reproduces go-peertaskqueue's default comparator.
//! - Limits ([`Config`]): active work per peer (a peer at its limit is skipped, and
//!   `pop_tasks` still serves everyone else), pending tasks per peer (a new task evicts a
//!   lower-priority one or is rejected; both come back to the caller), number of peers.
//!
//! The queue is `&mut self` only: no clock, no lock, no I/O. Every operation is O(log n) in
//! peers and tasks; pending and active work sums are kept, never recomputed.

mod config;
mod heap;
mod ladder;
mod merge;
mod outcome;
mod peer;
mod pending;
pub mod policy;
mod prefetch;
mod queue;
mod slots;
mod stats;
mod task;

pub use config::Config;
pub use merge::{ActiveTasks, Dedup, TaskMerger};
pub use outcome::{DoneOutcome, Popped, PushOutcome, RemoveOutcome, Served};
pub use policy::{Fair, GoCompat};
pub use queue::PeerTaskQueue;
pub use stats::{PeerStats, PeerTopics, Stats};
pub use task::{DropReason, DroppedTask, PoppedTask, Task, TaskId};
