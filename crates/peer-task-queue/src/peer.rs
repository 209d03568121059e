//! One peer's tasks: pending in service order (see [`Pending`]), active in a slab linked per
//! topic, both indexed by topic, and the work sums.

use std::{
    collections::{HashMap, hash_map::Entry},
    fmt,
    hash::Hash,
    num::NonZeroU32,
};

use slab::Slab;
use smallvec::SmallVec;

use crate::{
    ActiveTasks, DropReason, DroppedTask, PeerStats, PoppedTask, Task, TaskId, TaskMerger,
    pending::{Pending, ServeKey},
};

/// Hasher of every map in the crate: randomly seeded per map, so peers cannot aim collisions.
pub(crate) type RandomState = foldhash::fast::RandomState;

/// Slab handles are `u32`: no peer holds more active tasks, and no queue more peers, than this.
pub(crate) const MAX_HANDLES: usize = u32::MAX as usize - 1;

/// No slab entry (end of a list).
const NONE: u32 = u32::MAX;

/// Marks "no pending task" in [`TopicEntry::seq`]; sequence numbers never reach it.
const NO_SEQ: u64 = u64::MAX;

/// An active task, linked with the other active tasks of its topic.
#[derive(Debug)]
struct ActiveEntry<T, A> {
    topic: T,
    seq: u64,
    work: u64,
    info: A,
    prev: u32,
    next: u32,
}

/// What a peer has for one topic: its pending task's key (priority and sequence number; `seq`
/// is [`NO_SEQ`] if none) and the head of its active list.
#[derive(Debug, Clone, Copy)]
struct TopicEntry {
    seq: u64,
    priority: i32,
    active: u32,
}

impl TopicEntry {
    fn pending(self) -> Option<ServeKey> {
        (self.seq != NO_SEQ).then(|| ServeKey::new(self.priority, self.seq))
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
    pending: Pending<T, D>,
    topics: HashMap<T, TopicEntry, RandomState>,
    active: Slab<ActiveEntry<T, A>>,
    pending_work: u128,
    active_work: u128,
    pub(crate) weight: NonZeroU32,
    /// The policy's state for this peer.
    pub(crate) policy: S,
    /// Whether the peer has pending tasks but is held back by its active-work limit.
    pub(crate) held: bool,
}

impl<T, D, A, S> fmt::Debug for PeerTracker<T, D, A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTracker")
            .field("pending_tasks", &self.pending.len())
            .field("pending_work", &self.pending_work)
            .field("active_tasks", &self.active.len())
            .field("active_work", &self.active_work)
            .field("weight", &self.weight)
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
            pending: Pending::default(),
            topics: HashMap::default(),
            active: Slab::new(),
            pending_work: 0,
            active_work: 0,
            weight: NonZeroU32::MIN,
            policy,
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
        self.active.len()
    }

    pub(crate) fn active_work(&self) -> u128 {
        self.active_work
    }

    /// No pending and no active task: the queue forgets the peer.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.active.is_empty()
    }

    /// Has pending tasks and room under its active-work limit.
    pub(crate) fn is_eligible(&self, max_active_work: u64) -> bool {
        !self.pending.is_empty() && self.active_work < active_limit(max_active_work)
    }

    pub(crate) fn view(&self) -> PeerStats {
        PeerStats {
            pending_tasks: self.pending.len(),
            pending_work: saturate(self.pending_work),
            active_tasks: self.active.len(),
            active_work: saturate(self.active_work),
            weight: self.weight,
        }
    }

    /// Makes room in the topic index for `additional` more pending tasks, within
    /// `max_pending`.
    pub(crate) fn reserve(&mut self, additional: usize, max_pending: usize) {
        let room = max_pending.saturating_sub(self.pending.len());
        self.topics.reserve(additional.min(room));
        self.pending.reserve(additional.min(room));
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
        if let Some(&entry) = self.topics.get(&task.topic) {
            if entry.active != NONE {
                let mut infos = SmallVec::new();
                let mut at = entry.active;
                while at != NONE {
                    let active = &self.active[at as usize];
                    infos.push(&active.info);
                    at = active.next;
                }
                if !merger.has_new_info(&task, ActiveTasks::new(infos)) {
                    return PushedTask::Merged;
                }
            }
            if let Some(key) = entry.pending() {
                self.merge(merger, key, task);
                return PushedTask::Merged;
            }
        }
        let mut outcome = PushedTask::Queued;
        if self.pending.len() >= max_pending {
            match self.pending.last_key() {
                Some(lowest) if lowest.priority() < task.priority => {
                    let evicted = self.take_pending(lowest);
                    outcome = PushedTask::Dropped(DroppedTask {
                        task: evicted,
                        reason: DropReason::Evicted,
                    });
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
        let entry = self.topics.entry(task.topic.clone()).or_insert(TopicEntry {
            seq: NO_SEQ,
            priority: 0,
            active: NONE,
        });
        entry.seq = seq;
        entry.priority = task.priority;
        self.pending.insert(ServeKey::new(task.priority, seq), task);
        outcome
    }

    /// Folds `task` into the pending task at `key`; the priority only rises.
    fn merge<M>(&mut self, merger: &M, key: ServeKey, task: Task<T, D>)
    where
        M: TaskMerger<T, D, ActiveInfo = A>,
    {
        let Some(pending) = self.pending.get_mut(key) else {
            debug_assert!(false, "topic index points to a missing task");
            return;
        };
        let priority = task.priority;
        let old_work = pending.work;
        merger.merge(task, &mut pending.work, &mut pending.data);
        self.pending_work = self.pending_work - u128::from(old_work) + u128::from(pending.work);
        if priority > pending.priority {
            // The key holds the priority: move the task to its new place.
            if let Some(mut moved) = self.pending.remove(key) {
                moved.priority = priority;
                if let Some(entry) = self.topics.get_mut(&moved.topic) {
                    entry.priority = priority;
                }
                self.pending
                    .insert(ServeKey::new(priority, key.seq()), moved);
            }
        }
    }

    /// Removes the pending task at `key` from the tree and the topic index.
    fn take_pending(&mut self, key: ServeKey) -> Task<T, D> {
        let task = self.pending.remove(key).expect("key of a pending task");
        self.pending_work -= u128::from(task.work);
        self.forget_pending(&task.topic);
        task
    }

    /// Marks `topic` as having no pending task; drops its entry if nothing is active either.
    fn forget_pending(&mut self, topic: &T) {
        if let Some(entry) = self.topics.get_mut(topic) {
            if entry.active == NONE {
                self.topics.remove(topic);
            } else {
                entry.seq = NO_SEQ;
            }
        }
    }

    /// Pops tasks in order until their work reaches `target_min_work`, the peer reaches its
    /// active-work limit or nothing is pending; at least one task if any is pending. Returns the
    /// work popped. `peer` is the peer's slot in the queue, recorded in the task ids.
    pub(crate) fn pop<M>(
        &mut self,
        merger: &M,
        target_min_work: u64,
        max_active_work: u64,
        peer: u32,
        out: &mut Vec<PoppedTask<T, D>>,
    ) -> u128
    where
        M: TaskMerger<T, D, ActiveInfo = A>,
    {
        let limit = active_limit(max_active_work);
        let mut popped: u128 = 0;
        while let Some((key, task)) = self.pending.pop_first() {
            let seq = key.seq();
            let work = u128::from(task.work);
            self.pending_work -= work;
            self.active_work += work;
            popped += work;
            let slot = self.active.vacant_key() as u32;
            let topic = self
                .topics
                .get_mut(&task.topic)
                .expect("a pending task has a topic entry");
            topic.seq = NO_SEQ;
            let next = topic.active;
            topic.active = slot;
            if next != NONE {
                self.active[next as usize].prev = slot;
            }
            self.active.insert(ActiveEntry {
                topic: task.topic.clone(),
                seq,
                work: task.work,
                info: merger.active_info(&task),
                prev: NONE,
                next,
            });
            out.push(PoppedTask {
                task,
                id: TaskId { seq, slot, peer },
            });
            if popped >= u128::from(target_min_work)
                || self.active_work >= limit
                || self.active.len() >= MAX_HANDLES
            {
                break;
            }
        }
        popped
    }

    /// Releases one active task; false if the peer has no such active task.
    pub(crate) fn done(&mut self, id: TaskId) -> bool {
        match self.active.get(id.slot as usize) {
            Some(active) if active.seq == id.seq => {}
            _ => return false,
        }
        let ActiveEntry {
            topic,
            work,
            prev,
            next,
            ..
        } = self.active.remove(id.slot as usize);
        self.active_work -= u128::from(work);
        if next != NONE {
            self.active[next as usize].prev = prev;
        }
        if prev != NONE {
            self.active[prev as usize].next = next;
        } else if let Entry::Occupied(mut entry) = self.topics.entry(topic) {
            if next == NONE && entry.get().seq == NO_SEQ {
                entry.remove();
            } else {
                entry.get_mut().active = next;
            }
        }
        true
    }

    /// Removes the pending task for `topic`, if any. Active tasks are left alone.
    pub(crate) fn remove(&mut self, topic: &T) -> Option<Task<T, D>> {
        let key = self.topics.get(topic)?.pending()?;
        Some(self.take_pending(key))
    }

    /// Topics of the pending tasks, in service order, and of the active tasks, in no order.
    pub(crate) fn topics(&self) -> (Vec<T>, Vec<T>) {
        let pending = self.pending.iter().map(|(_, t)| t.topic.clone()).collect();
        let active = self
            .topics
            .iter()
            .filter(|(_, e)| e.active != NONE)
            .map(|(t, _)| t.clone())
            .collect();
        (pending, active)
    }

    /// Recomputes every sum and index from scratch and compares them with the running ones.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.pending.check()?;
        let mut pending_work = 0u128;
        for (key, task) in self.pending.iter() {
            if key.priority() != task.priority {
                return Err(format!("key of pending task {} is stale", key.seq()));
            }
            match self.topics.get(&task.topic) {
                Some(t) if t.pending() == Some(*key) => {}
                _ => return Err(format!("topic index misses pending task {}", key.seq())),
            }
            pending_work += u128::from(task.work);
        }
        let active_work: u128 = self.active.iter().map(|(_, e)| u128::from(e.work)).sum();
        if pending_work != self.pending_work || active_work != self.active_work {
            return Err(format!(
                "work sums {}/{} != recomputed {pending_work}/{active_work}",
                self.pending_work, self.active_work
            ));
        }
        let mut linked = 0;
        let mut with_pending = 0;
        for (topic, entry) in &self.topics {
            if entry.seq == NO_SEQ && entry.active == NONE {
                return Err("empty topic entry kept".into());
            }
            if let Some(key) = entry.pending() {
                if !self.pending.contains(key) {
                    return Err(format!(
                        "topic index points to a missing task {}",
                        key.seq()
                    ));
                }
                with_pending += 1;
            }
            let (mut at, mut prev) = (entry.active, NONE);
            while at != NONE {
                let active = self
                    .active
                    .get(at as usize)
                    .ok_or("active list points to a free slot")?;
                if active.topic != *topic || active.prev != prev {
                    return Err(format!("active list of a topic broken at {at}"));
                }
                linked += 1;
                (prev, at) = (at, active.next);
            }
        }
        if linked != self.active.len() || with_pending != self.pending.len() {
            return Err(format!(
                "{linked}/{with_pending} active/pending tasks indexed, {}/{} held",
                self.active.len(),
                self.pending.len()
            ));
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
