//! One peer's tasks: pending in two heaps (service order and eviction order), active in a
//! slab, both indexed by topic, and the work sums.

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
    heap::IndexedHeap,
};

/// Hasher of every map in the crate: randomly seeded per map, so peers cannot aim collisions.
pub(crate) type RandomState = foldhash::fast::RandomState;

/// Slab handles are `u32`: no peer holds more tasks, and no queue more peers, than this.
pub(crate) const MAX_HANDLES: usize = u32::MAX as usize - 1;

/// No slab entry (end of a list, or no pending task for a topic).
const NONE: u32 = u32::MAX;

/// Service order: the smallest key is served first (highest priority, then oldest). Packed
/// into one integer so heap comparisons are a single compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct ServeKey(u128);

/// Eviction order: the smallest key is evicted first (lowest priority, then newest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EvictKey(u128);

/// Maps `i32` onto `u32` preserving order.
fn ordered(priority: i32) -> u32 {
    (priority as u32) ^ 0x8000_0000
}

fn keys(priority: i32, seq: u64) -> (ServeKey, EvictKey) {
    let rank = u128::from(ordered(priority));
    (
        ServeKey((u128::from(!ordered(priority)) << 64) | u128::from(seq)),
        EvictKey((rank << 64) | u128::from(!seq)),
    )
}

/// The priority an [`EvictKey`] was made from.
fn evict_priority(key: EvictKey) -> i32 {
    ((key.0 >> 64) as u32 ^ 0x8000_0000) as i32
}

#[derive(Debug)]
struct PendingEntry<T, D> {
    task: Task<T, D>,
    seq: u64,
}

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

/// What a peer has for one topic: its pending task and the head of its active list.
#[derive(Debug, Clone, Copy)]
struct TopicEntry {
    pending: u32,
    active: u32,
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
    pending: Slab<PendingEntry<T, D>>,
    serve: IndexedHeap<ServeKey>,
    evict: IndexedHeap<EvictKey>,
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
            pending: Slab::new(),
            serve: IndexedHeap::default(),
            evict: IndexedHeap::default(),
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

    /// Makes room for `additional` more pending tasks, within `max_pending`.
    pub(crate) fn reserve(&mut self, additional: usize, max_pending: usize) {
        let additional = additional.min(
            max_pending
                .min(MAX_HANDLES)
                .saturating_sub(self.pending.len()),
        );
        if additional > 0 {
            self.pending.reserve(additional);
            let handles = self.pending.capacity();
            self.serve.reserve(additional, handles);
            self.evict.reserve(additional, handles);
            self.topics.reserve(additional);
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
            if entry.pending != NONE {
                let handle = entry.pending;
                self.merge(merger, handle, task);
                return PushedTask::Merged;
            }
        }
        let mut outcome = PushedTask::Queued;
        if self.pending.len() >= max_pending.min(MAX_HANDLES) {
            match self.evict.peek() {
                Some((&lowest, handle)) if evict_priority(lowest) < task.priority => {
                    let evicted = self.take_pending(handle);
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
        let (serve, evict) = keys(task.priority, seq);
        self.pending_work += u128::from(task.work);
        let topic = task.topic.clone();
        let handle = self.pending.insert(PendingEntry { task, seq }) as u32;
        self.serve.push(handle, serve);
        self.evict.push(handle, evict);
        self.topics
            .entry(topic)
            .or_insert(TopicEntry {
                pending: NONE,
                active: NONE,
            })
            .pending = handle;
        outcome
    }

    /// Folds `task` into the pending task at `handle`; the priority only rises.
    fn merge<M>(&mut self, merger: &M, handle: u32, task: Task<T, D>)
    where
        M: TaskMerger<T, D, ActiveInfo = A>,
    {
        let entry = &mut self.pending[handle as usize];
        let priority = task.priority;
        let old_work = entry.task.work;
        merger.merge(task, &mut entry.task.work, &mut entry.task.data);
        self.pending_work = self.pending_work - u128::from(old_work) + u128::from(entry.task.work);
        if priority > entry.task.priority {
            entry.task.priority = priority;
            let (serve, evict) = keys(priority, entry.seq);
            self.serve.update(handle, serve);
            self.evict.update(handle, evict);
        }
    }

    /// Removes the pending task at `handle` from every index.
    fn take_pending(&mut self, handle: u32) -> Task<T, D> {
        self.serve.remove(handle);
        self.evict.remove(handle);
        let PendingEntry { task, .. } = self.pending.remove(handle as usize);
        self.pending_work -= u128::from(task.work);
        if let Entry::Occupied(mut entry) = self.topics.entry(task.topic.clone()) {
            if entry.get().active == NONE {
                entry.remove();
            } else {
                entry.get_mut().pending = NONE;
            }
        }
        task
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
        let limit = active_limit(max_active_work);
        let mut popped: u128 = 0;
        while let Some((_, handle)) = self.serve.pop() {
            self.evict.remove(handle);
            let PendingEntry { task, seq } = self.pending.remove(handle as usize);
            let work = u128::from(task.work);
            self.pending_work -= work;
            self.active_work += work;
            popped += work;
            let slot = self.active.vacant_key() as u32;
            let topic = self
                .topics
                .get_mut(&task.topic)
                .expect("a pending task has a topic entry");
            topic.pending = NONE;
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
                id: TaskId { seq, slot },
            });
            if popped >= u128::from(target_min_work) || self.active_work >= limit {
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
            if next == NONE && entry.get().pending == NONE {
                entry.remove();
            } else {
                entry.get_mut().active = next;
            }
        }
        true
    }

    /// Removes the pending task for `topic`, if any. Active tasks are left alone.
    pub(crate) fn remove(&mut self, topic: &T) -> Option<Task<T, D>> {
        let handle = self.topics.get(topic)?.pending;
        (handle != NONE).then(|| self.take_pending(handle))
    }

    /// Topics of the pending tasks, in service order, and of the active tasks, in no order.
    pub(crate) fn topics(&self) -> (Vec<T>, Vec<T>) {
        let mut pending: Vec<(ServeKey, &T)> = self
            .pending
            .iter()
            .map(|(_, e)| (keys(e.task.priority, e.seq).0, &e.task.topic))
            .collect();
        pending.sort_unstable_by_key(|(key, _)| *key);
        let active = self
            .topics
            .iter()
            .filter(|(_, e)| e.active != NONE)
            .map(|(t, _)| t.clone())
            .collect();
        (
            pending.into_iter().map(|(_, t)| t.clone()).collect(),
            active,
        )
    }

    /// Recomputes every sum and index from scratch and compares them with the running ones.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.serve.check()?;
        self.evict.check()?;
        if self.serve.len() != self.pending.len() || self.evict.len() != self.pending.len() {
            return Err("heaps and pending slab disagree".into());
        }
        let mut pending_work = 0u128;
        for (handle, e) in &self.pending {
            let (serve, evict) = keys(e.task.priority, e.seq);
            let handle = handle as u32;
            if self.serve.key(handle) != Some(&serve) || self.evict.key(handle) != Some(&evict) {
                return Err(format!("stale heap key for pending task {handle}"));
            }
            match self.topics.get(&e.task.topic) {
                Some(t) if t.pending == handle => {}
                _ => return Err(format!("topic index misses pending task {handle}")),
            }
            pending_work += u128::from(e.task.work);
        }
        let active_work: u128 = self.active.iter().map(|(_, e)| u128::from(e.work)).sum();
        if pending_work != self.pending_work || active_work != self.active_work {
            return Err(format!(
                "work sums {}/{} != recomputed {pending_work}/{active_work}",
                self.pending_work, self.active_work
            ));
        }
        let mut linked = 0;
        for (topic, entry) in &self.topics {
            if entry.pending == NONE && entry.active == NONE {
                return Err("empty topic entry kept".into());
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
        if linked != self.active.len() {
            return Err(format!(
                "{linked} active tasks linked, {} held",
                self.active.len()
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
