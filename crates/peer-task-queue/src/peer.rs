//! One peer's tasks: pending in priority order, active by topic, and the work sums.

use std::{
    borrow::Borrow,
    cmp::Reverse,
    collections::HashMap,
    fmt,
    hash::{Hash, Hasher},
    num::NonZeroU32,
};

use priority_queue::DoublePriorityQueue;
use smallvec::SmallVec;

use crate::{
    DropReason, DroppedTask, PeerStats, PoppedTask, Task, TaskId, TaskMerger,
    merge::{ActiveEntry, ActiveTasks},
};

/// Hasher of every map in the crate: randomly seeded per map, so peers cannot aim collisions.
pub(crate) type RandomState = foldhash::fast::RandomState;

/// Order of pending tasks within a peer: the maximum is served first (highest priority, then
/// lowest sequence number); the minimum is evicted first (lowest priority, newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TaskOrder {
    priority: i32,
    seq: Reverse<u64>,
}

/// A pending task, hashed and compared by topic so the heap doubles as the topic index.
#[derive(Debug)]
struct Pending<T, D>(Task<T, D>);

impl<T: PartialEq, D> PartialEq for Pending<T, D> {
    fn eq(&self, other: &Self) -> bool {
        self.0.topic == other.0.topic
    }
}

impl<T: Eq, D> Eq for Pending<T, D> {}

impl<T: Hash, D> Hash for Pending<T, D> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.topic.hash(state);
    }
}

impl<T, D> Borrow<T> for Pending<T, D> {
    fn borrow(&self) -> &T {
        &self.0.topic
    }
}

/// What happened to one pushed task.
pub(crate) enum PushedTask<T, D> {
    /// Became a new pending task.
    Queued,
    /// Folded into a pending or active task of the same topic.
    Merged,
    /// Not kept, or kept at the expense of another task.
    Dropped(DroppedTask<T, D>),
}

/// One peer's state in the queue.
pub(crate) struct PeerTracker<T, D, A, S> {
    pending: DoublePriorityQueue<Pending<T, D>, TaskOrder, RandomState>,
    pending_work: u128,
    active: HashMap<T, SmallVec<[ActiveEntry<A>; 1]>, RandomState>,
    active_tasks: usize,
    active_work: u128,
    pub(crate) weight: NonZeroU32,
    /// The policy's state for this peer.
    pub(crate) policy: S,
    /// Whether the peer is in the queue's heap of eligible peers.
    pub(crate) ready: bool,
    /// Whether the peer has pending tasks but is held back by its active-work limit.
    pub(crate) held: bool,
}

impl<T, D, A, S> fmt::Debug for PeerTracker<T, D, A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTracker")
            .field("pending_tasks", &self.pending.len())
            .field("pending_work", &self.pending_work)
            .field("active_tasks", &self.active_tasks)
            .field("active_work", &self.active_work)
            .field("weight", &self.weight)
            .field("ready", &self.ready)
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

impl<T, D, A, S> PeerTracker<T, D, A, S>
where
    T: Hash + Eq + Clone,
{
    pub(crate) fn new(policy: S) -> Self {
        Self {
            pending: DoublePriorityQueue::with_default_hasher(),
            pending_work: 0,
            active: HashMap::default(),
            active_tasks: 0,
            active_work: 0,
            weight: NonZeroU32::MIN,
            policy,
            ready: false,
            held: false,
        }
    }

    pub(crate) fn pending_tasks(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn pending_work(&self) -> u128 {
        self.pending_work
    }

    pub(crate) fn active_tasks(&self) -> usize {
        self.active_tasks
    }

    pub(crate) fn active_work(&self) -> u128 {
        self.active_work
    }

    /// No pending and no active task: the queue forgets the peer.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.active_tasks == 0
    }

    /// Has pending tasks and room under its active-work limit.
    pub(crate) fn is_eligible(&self, max_active_work: u64) -> bool {
        !self.pending.is_empty() && self.active_work < active_limit(max_active_work)
    }

    pub(crate) fn view(&self) -> PeerStats {
        PeerStats {
            pending_tasks: self.pending.len(),
            pending_work: saturate(self.pending_work),
            active_tasks: self.active_tasks,
            active_work: saturate(self.active_work),
            weight: self.weight,
        }
    }

    /// Pushes one task; `seq` orders it among equal priorities and becomes its id.
    pub(crate) fn push<M>(
        &mut self,
        merger: &M,
        task: Task<T, D>,
        seq: u64,
        max_pending: usize,
    ) -> PushedTask<T, D>
    where
        M: TaskMerger<T, D, ActiveInfo = A>,
    {
        if let Some(active) = self.active.get(&task.topic)
            && !merger.has_new_info(&task, ActiveTasks::new(active))
        {
            return PushedTask::Merged;
        }
        let priority = task.priority;
        if let Some((pending, _)) = self.pending.get_mut(&task.topic) {
            let raise = priority > pending.0.priority;
            let topic = raise.then(|| task.topic.clone());
            let old_work = pending.0.work;
            merger.merge(task, &mut pending.0.work, &mut pending.0.data);
            self.pending_work =
                self.pending_work - u128::from(old_work) + u128::from(pending.0.work);
            if let Some(topic) = topic {
                pending.0.priority = priority;
                self.pending
                    .change_priority_by(&topic, |order| order.priority = priority);
            }
            return PushedTask::Merged;
        }
        let mut outcome = PushedTask::Queued;
        if self.pending.len() >= max_pending {
            match self.pending.peek_min() {
                Some((_, lowest)) if lowest.priority < priority => {
                    if let Some((Pending(evicted), _)) = self.pending.pop_min() {
                        self.pending_work -= u128::from(evicted.work);
                        outcome = PushedTask::Dropped(DroppedTask {
                            task: evicted,
                            reason: DropReason::Evicted,
                        });
                    }
                }
                _ => {
                    return PushedTask::Dropped(DroppedTask {
                        task,
                        reason: DropReason::Rejected,
                    });
                }
            }
        }
        self.pending_work += u128::from(task.work);
        self.pending.push(
            Pending(task),
            TaskOrder {
                priority,
                seq: Reverse(seq),
            },
        );
        outcome
    }

    /// Pops tasks in order until their work reaches `target_min_work`, the peer reaches its
    /// active-work limit or nothing is pending; at least one task if any is pending. Returns the
    /// work popped.
    pub(crate) fn pop<M>(
        &mut self,
        merger: &M,
        target_min_work: u64,
        max_active_work: u64,
        out: &mut Vec<PoppedTask<T, D>>,
    ) -> u128
    where
        M: TaskMerger<T, D, ActiveInfo = A>,
    {
        let mut popped: u128 = 0;
        while let Some((Pending(task), order)) = self.pending.pop_max() {
            let id = order.seq.0;
            let work = u128::from(task.work);
            self.pending_work -= work;
            self.active_work += work;
            self.active_tasks += 1;
            let entry = ActiveEntry {
                id,
                work: task.work,
                info: merger.active_info(&task),
            };
            self.active
                .entry(task.topic.clone())
                .or_default()
                .push(entry);
            popped += work;
            out.push(PoppedTask {
                task,
                id: TaskId(id),
            });
            if popped >= u128::from(target_min_work)
                || self.active_work >= active_limit(max_active_work)
            {
                break;
            }
        }
        popped
    }

    /// Releases one active task; false if the peer has no such active task.
    pub(crate) fn done(&mut self, topic: &T, id: TaskId) -> bool {
        let Some(entries) = self.active.get_mut(topic) else {
            return false;
        };
        let Some(at) = entries.iter().position(|e| e.id == id.0) else {
            return false;
        };
        let entry = entries.remove(at);
        if entries.is_empty() {
            self.active.remove(topic);
        }
        self.active_tasks -= 1;
        self.active_work -= u128::from(entry.work);
        true
    }

    /// Removes the pending task for `topic`, if any. Active tasks are left alone.
    pub(crate) fn remove(&mut self, topic: &T) -> Option<Task<T, D>> {
        let (Pending(task), _) = self.pending.remove(topic)?;
        self.pending_work -= u128::from(task.work);
        Some(task)
    }

    /// Topics of the pending tasks, in service order, and of the active tasks, in no order.
    pub(crate) fn topics(&self) -> (Vec<T>, Vec<T>) {
        let mut pending: Vec<(TaskOrder, T)> = self
            .pending
            .iter()
            .map(|(p, order)| (*order, p.0.topic.clone()))
            .collect();
        pending.sort_unstable_by_key(|(order, _)| Reverse(*order));
        let active = self.active.keys().cloned().collect();
        (pending.into_iter().map(|(_, t)| t).collect(), active)
    }

    /// Recomputes the sums from scratch and compares them with the running ones.
    pub(crate) fn check_sums(&self) -> Result<(), String> {
        let pending: u128 = self.pending.iter().map(|(p, _)| u128::from(p.0.work)).sum();
        let active: u128 = self
            .active
            .values()
            .flatten()
            .map(|e| u128::from(e.work))
            .sum();
        let active_tasks: usize = self.active.values().map(SmallVec::len).sum();
        if pending != self.pending_work {
            return Err(format!("pending work {} != {pending}", self.pending_work));
        }
        if active != self.active_work || active_tasks != self.active_tasks {
            return Err(format!(
                "active work/tasks {}/{} != {active}/{active_tasks}",
                self.active_work, self.active_tasks
            ));
        }
        if self.active.values().any(SmallVec::is_empty) {
            return Err("empty active entry kept".into());
        }
        Ok(())
    }
}

/// The active-work limit in the internal width; `u64::MAX` means none.
fn active_limit(max_active_work: u64) -> u128 {
    if max_active_work == u64::MAX {
        u128::MAX
    } else {
        u128::from(max_active_work)
    }
}

/// Narrows an internal 128-bit sum for the public API.
pub(crate) fn saturate(work: u128) -> u64 {
    u64::try_from(work).unwrap_or(u64::MAX)
}
