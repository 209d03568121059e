//! One peer's tasks: pending in service order (see [`Pending`]), every task in a record with a
//! stable slot from push to done, a topic index pointing at each topic's newest record, and the
//! work sums.
//!
//! A task keeps its record slot from push until it is done: the slot is the task id's `slot`,
//! and the topic index points at it. Popping a task therefore touches only the pending order and
//! the record, never the topic index (a hash table, two cache misses per lookup on a cold peer).
//! Releasing a task does not touch the index either: a record freed while the index still
//! points at it leaves a *stale* entry (the record's generation has moved on), which a later
//! push of the topic overwrites. Stale entries are swept out in one pass when a new topic would
//! make the index grow and at least a quarter of it is stale: the sweep is paid for by the
//! releases that made the entries stale (amortised O(1) each), the index keeps the size it had
//! (hash tables never shrink on removal either), and a draining peer never sweeps: its index is
//! dropped with it.

use std::{collections::HashMap, fmt, hash::Hash, num::NonZeroU32};

use smallvec::SmallVec;

use crate::{
    ActiveTasks, DropReason, DroppedTask, PeerStats, PoppedTask, Task, TaskId, TaskMerger,
    pending::{Pending, ServeKey},
};

/// Hasher of every map in the crate: randomly seeded per map, so peers cannot aim collisions.
pub(crate) type RandomState = foldhash::fast::RandomState;

/// Slab handles are `u32`: no peer holds more tasks, and no queue more peers, than this.
pub(crate) const MAX_HANDLES: usize = u32::MAX as usize - 1;

/// No record (end of a list).
const NONE: u32 = u32::MAX;

/// What a record holds.
#[derive(Debug, Clone, Copy)]
enum State<A> {
    /// On the free list (`older` links it).
    Free,
    /// Holds a pending task, always its topic's newest record.
    Pending,
    /// Holds a popped task not yet done, with what the merger keeps of it.
    Active(A),
    /// A released task's slot kept as its topic's newest record, because older active tasks of
    /// the topic remain: the index points here, and it is freed with the last of them.
    Anchor,
}

/// One task from push to done, linked with the other records of its topic, newest first: the
/// pending task (or an anchor) if any, then the active tasks.
#[derive(Debug)]
struct Record<A> {
    /// The task's sequence number (its id).
    seq: u64,
    /// The task's priority while pending (sign-extended), its work while active: one word keeps
    /// the record at 32 bytes.
    value: u64,
    /// Bumped when the record is freed: index entries of an older generation are stale.
    generation: u32,
    /// The next newer record of the topic.
    newer: u32,
    /// The next older record of the topic; the next free record on the free list.
    older: u32,
    state: State<A>,
}

impl<A> Record<A> {
    fn priority(&self) -> i32 {
        self.value as i64 as i32
    }

    fn set_priority(&mut self, priority: i32) {
        self.value = i64::from(priority) as u64;
    }
}

/// A topic index entry: the newest record of the topic, valid while its generation matches.
#[derive(Debug, Clone, Copy)]
struct Link {
    slot: u32,
    generation: u32,
}

/// A pending task and its record.
#[derive(Debug)]
struct Queued<T, D> {
    task: Task<T, D>,
    slot: u32,
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
    pending: Pending<Queued<T, D>>,
    topics: HashMap<T, Link, RandomState>,
    records: Vec<Record<A>>,
    /// Head of the free list of records.
    free: u32,
    /// The record of the task served next, or `NONE`: kept so that a pop can load the record
    /// together with the pending task, instead of after it.
    next_record: u32,
    /// Active tasks.
    active: usize,
    /// Index entries whose record was freed.
    stale: usize,
    pending_work: u128,
    active_work: u128,
    pub(crate) weight: NonZeroU32,
    /// The policy's state for this peer.
    pub(crate) policy: S,
    /// Whether the peer has pending tasks but is held back by its active-work limit (or
    /// paused).
    pub(crate) held: bool,
    /// Not popped until resumed ([`PeerTaskQueue::set_peer_paused`](crate::PeerTaskQueue::set_peer_paused)).
    pub(crate) paused: bool,
}

impl<T, D, A, S> fmt::Debug for PeerTracker<T, D, A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTracker")
            .field("pending_tasks", &self.pending.len())
            .field("pending_work", &self.pending_work)
            .field("active_tasks", &self.active)
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
            records: Vec::new(),
            free: NONE,
            next_record: NONE,
            active: 0,
            stale: 0,
            pending_work: 0,
            active_work: 0,
            weight: NonZeroU32::MIN,
            policy,
            held: false,
            paused: false,
        }
    }

    pub(crate) fn pending_tasks(&self) -> usize {
        self.pending.len()
    }

    pub(crate) fn pending_work(&self) -> u128 {
        self.pending_work
    }

    pub(crate) fn active_tasks(&self) -> usize {
        self.active
    }

    pub(crate) fn active_work(&self) -> u128 {
        self.active_work
    }

    /// No pending and no active task: the queue forgets the peer.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.active == 0
    }

    /// Has pending tasks and room under its active-work limit, and is not paused.
    pub(crate) fn is_eligible(&self, max_active_work: u64) -> bool {
        !self.paused && !self.pending.is_empty() && self.active_work < active_limit(max_active_work)
    }

    pub(crate) fn view(&self) -> PeerStats {
        PeerStats {
            pending_tasks: self.pending.len(),
            pending_work: saturate(self.pending_work),
            active_tasks: self.active,
            active_work: saturate(self.active_work),
            weight: self.weight,
        }
    }

    /// Makes room for `additional` more pending tasks, within `max_pending`. The records are
    /// reserved only on the first push: a later push may merge rather than add, and reserving
    /// for it would double the vector (the vector's own growth covers the tasks it does add).
    pub(crate) fn reserve(&mut self, additional: usize, max_pending: usize) {
        let room = additional.min(max_pending.saturating_sub(self.pending.len()));
        self.topics.reserve(room);
        self.pending.reserve(room);
        if self.records.is_empty() {
            self.records.reserve_exact(room);
        }
    }

    /// The newest record of `topic`, if the index holds a valid entry for it.
    fn head(&self, topic: &T) -> Option<u32> {
        let link = self.topics.get(topic)?;
        let record = self.records.get(link.slot as usize)?;
        (record.generation == link.generation).then_some(link.slot)
    }

    /// Starts loading the next pending task and its record without waiting for them. Their
    /// addresses are read from the peer's state, which should be in cache already.
    pub(crate) fn prefetch_next(&self) {
        if let Some(queued) = self.pending.front_first() {
            crate::prefetch::prefetch(queued);
        }
        // The pop reads the task after it too, to note its record.
        if let Some(queued) = self.pending.front_second() {
            crate::prefetch::prefetch(queued);
        }
        if let Some(record) = self.records.get(self.next_record as usize) {
            crate::prefetch::prefetch(record);
        }
    }

    /// Notes the record of the task now served next, if it is at hand. Called after the
    /// pending tasks change: a push calls it once for its whole batch.
    pub(crate) fn note_next(&mut self) {
        self.next_record = self.due_next();
    }

    /// Ends a push of one or more tasks: merges the pending tasks it left aside (see
    /// `pending.rs`) and notes the task served next.
    pub(crate) fn end_push(&mut self) {
        self.pending.flush();
        self.note_next();
    }

    /// The record of the pending task served next, if it is in the vector; else `NONE`.
    fn due_next(&self) -> u32 {
        self.pending
            .front_first()
            .map_or(NONE, |queued| queued.slot)
    }

    /// Takes a record off the free list, or makes a new one.
    fn alloc(&mut self, seq: u64, priority: i32, older: u32) -> u32 {
        let record = Record {
            seq,
            value: i64::from(priority) as u64,
            generation: 0,
            newer: NONE,
            older,
            state: State::Pending,
        };
        if self.free == NONE {
            let slot = self.records.len() as u32;
            self.records.push(record);
            slot
        } else {
            let slot = self.free;
            let at = &mut self.records[slot as usize];
            self.free = at.older;
            *at = Record {
                generation: at.generation,
                ..record
            };
            slot
        }
    }

    /// Returns a record to the free list; index entries pointing at it become stale.
    fn release_record(&mut self, slot: u32) {
        let free = self.free;
        let record = &mut self.records[slot as usize];
        record.generation = record.generation.wrapping_add(1);
        record.state = State::Free;
        record.newer = NONE;
        record.older = free;
        self.free = slot;
    }

    /// A topic's newest record lost its task: frees it (its index entry goes stale) or, if older
    /// active tasks of the topic remain, keeps it as their anchor.
    fn vacate_head(&mut self, slot: u32) {
        if self.records[slot as usize].older == NONE {
            self.release_record(slot);
            self.stale += 1;
        } else {
            self.records[slot as usize].state = State::Anchor;
        }
    }

    /// Before a new topic enters the index: drops the stale entries if the index is full and
    /// at least a quarter of it is stale.
    fn sweep(&mut self) {
        let len = self.topics.len();
        if len < self.topics.capacity() || self.stale == 0 || self.stale < len / 4 {
            return;
        }
        let records = &self.records;
        self.topics
            .retain(|_, link| records[link.slot as usize].generation == link.generation);
        self.stale = 0;
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
        let head = self.head(&task.topic);
        if let Some(slot) = head {
            let record = &self.records[slot as usize];
            let pending = matches!(record.state, State::Pending);
            let mut at = if matches!(record.state, State::Active(_)) {
                slot
            } else {
                record.older
            };
            if at != NONE {
                let mut infos = SmallVec::new();
                while at != NONE {
                    let active = &self.records[at as usize];
                    if let State::Active(info) = &active.state {
                        infos.push(info);
                    }
                    at = active.older;
                }
                if !merger.has_new_info(&task, ActiveTasks::new(infos)) {
                    return PushedTask::Merged;
                }
            }
            if pending {
                let record = &self.records[slot as usize];
                let key = ServeKey::new(record.priority(), record.seq);
                self.merge(merger, key, task);
                return PushedTask::Merged;
            }
        }
        let mut outcome = PushedTask::Queued;
        // A new record is needed unless the topic's newest record is an anchor to reuse.
        let reuse = head.filter(|&slot| matches!(self.records[slot as usize].state, State::Anchor));
        if reuse.is_none() && self.free == NONE && self.records.len() >= MAX_HANDLES {
            return PushedTask::Dropped(DroppedTask {
                task,
                reason: DropReason::Rejected,
            });
        }
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
        let slot = match reuse {
            Some(slot) => {
                let record = &mut self.records[slot as usize];
                record.seq = seq;
                record.set_priority(task.priority);
                record.state = State::Pending;
                slot
            }
            None => {
                let older = head.unwrap_or(NONE);
                let slot = self.alloc(seq, task.priority, older);
                if older != NONE {
                    self.records[older as usize].newer = slot;
                }
                let link = Link {
                    slot,
                    generation: self.records[slot as usize].generation,
                };
                if head.is_none() {
                    self.sweep();
                }
                if let Some(old) = self.topics.insert(task.topic.clone(), link)
                    && head.is_none()
                {
                    // The entry was stale: overwritten.
                    debug_assert!(old.slot != slot || old.generation != link.generation);
                    self.stale -= 1;
                }
                slot
            }
        };
        self.pending
            .insert(ServeKey::new(task.priority, seq), Queued { task, slot });
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
        let old_work = pending.task.work;
        merger.merge(task, &mut pending.task.work, &mut pending.task.data);
        self.pending_work =
            self.pending_work - u128::from(old_work) + u128::from(pending.task.work);
        if priority > pending.task.priority {
            // The key holds the priority: move the task to its new place.
            if let Some(mut moved) = self.pending.remove(key) {
                moved.task.priority = priority;
                self.records[moved.slot as usize].set_priority(priority);
                self.pending
                    .insert(ServeKey::new(priority, key.seq()), moved);
            }
        }
    }

    /// Removes the pending task at `key` and vacates its record.
    fn take_pending(&mut self, key: ServeKey) -> Task<T, D> {
        let Queued { task, slot } = self.pending.remove(key).expect("key of a pending task");
        self.note_next();
        self.pending_work -= u128::from(task.work);
        self.vacate_head(slot);
        task
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
        if let Some(record) = self.records.get(self.next_record as usize) {
            // Starts loading the record while the pending task loads (both addresses are known
            // from the peer's state); with many peers, each is a cache miss.
            // A read rather than a prefetch: measured faster (the record is usually in cache by
            // now, prefetched at the end of the previous pop).
            std::hint::black_box(record.seq);
        }
        while let Some((key, Queued { task, slot })) = self.pending.pop_first() {
            let work = u128::from(task.work);
            self.pending_work -= work;
            self.active_work += work;
            self.active += 1;
            popped += work;
            let record = &mut self.records[slot as usize];
            debug_assert!(matches!(record.state, State::Pending) && record.seq == key.seq());
            record.value = task.work;
            record.state = State::Active(merger.active_info(&task));
            out.push(PoppedTask {
                task,
                id: TaskId {
                    seq: key.seq(),
                    slot,
                    peer,
                },
            });
            if popped >= u128::from(target_min_work) || self.active_work >= limit {
                break;
            }
        }
        self.note_next();
        popped
    }

    /// Releases one active task; false if the peer has no such active task.
    pub(crate) fn done(&mut self, id: TaskId) -> bool {
        let (newer, older, work) = match self.records.get(id.slot as usize) {
            Some(record) if record.seq == id.seq && matches!(record.state, State::Active(_)) => {
                (record.newer, record.older, record.value)
            }
            _ => return false,
        };
        self.active_work -= u128::from(work);
        self.active -= 1;
        if newer == NONE {
            // The topic's newest record: the index points here.
            self.vacate_head(id.slot);
            return true;
        }
        self.release_record(id.slot);
        self.records[newer as usize].older = older;
        if older != NONE {
            self.records[older as usize].newer = newer;
        } else if matches!(self.records[newer as usize].state, State::Anchor) {
            // The anchor's last active task is gone.
            self.vacate_head(newer);
        }
        true
    }

    /// Removes the pending task for `topic`, if any. Active tasks are left alone.
    pub(crate) fn remove(&mut self, topic: &T) -> Option<Task<T, D>> {
        let slot = self.head(topic)?;
        let record = &self.records[slot as usize];
        if !matches!(record.state, State::Pending) {
            return None;
        }
        Some(self.take_pending(ServeKey::new(record.priority(), record.seq)))
    }

    /// Topics of the pending tasks, in service order, and of the active tasks, in no order.
    pub(crate) fn topics(&self) -> (Vec<T>, Vec<T>) {
        let pending = self
            .pending
            .iter()
            .map(|(_, q)| q.task.topic.clone())
            .collect();
        let active = self
            .topics
            .iter()
            .filter(|(_, link)| {
                let mut at = link.slot;
                if self.records[at as usize].generation != link.generation {
                    return false;
                }
                while at != NONE {
                    let record = &self.records[at as usize];
                    if matches!(record.state, State::Active(_)) {
                        return true;
                    }
                    at = record.older;
                }
                false
            })
            .map(|(t, _)| t.clone())
            .collect();
        (pending, active)
    }

    /// Recomputes every sum and index from scratch and compares them with the running ones.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(crate) fn check(&self) -> Result<(), String> {
        self.pending.check()?;
        let next = self.due_next();
        if self.next_record != next {
            return Err(format!(
                "next record {} noted, {next} due",
                self.next_record
            ));
        }
        let mut pending_work = 0u128;
        for (key, queued) in self.pending.iter() {
            let task = &queued.task;
            if key.priority() != task.priority {
                return Err(format!("key of pending task {} is stale", key.seq()));
            }
            match self.records.get(queued.slot as usize) {
                Some(r)
                    if matches!(r.state, State::Pending)
                        && r.seq == key.seq()
                        && r.priority() == task.priority => {}
                _ => return Err(format!("record of pending task {} is wrong", key.seq())),
            }
            if self.head(&task.topic) != Some(queued.slot) {
                return Err(format!("topic index misses pending task {}", key.seq()));
            }
            pending_work += u128::from(task.work);
        }
        let (mut active, mut anchors, mut active_work) = (0, 0, 0u128);
        for record in &self.records {
            match record.state {
                State::Active(_) => {
                    active += 1;
                    active_work += u128::from(record.value);
                }
                State::Anchor => anchors += 1,
                State::Free | State::Pending => {}
            }
        }
        if pending_work != self.pending_work || active_work != self.active_work {
            return Err(format!(
                "work sums {}/{} != recomputed {pending_work}/{active_work}",
                self.pending_work, self.active_work
            ));
        }
        if active != self.active {
            return Err(format!(
                "{} active tasks counted, {active} held",
                self.active
            ));
        }
        let mut free = 0;
        let mut at = self.free;
        while at != NONE {
            let record = self
                .records
                .get(at as usize)
                .ok_or("free list out of range")?;
            if !matches!(record.state, State::Free) || free > self.records.len() {
                return Err("free list broken".into());
            }
            free += 1;
            at = record.older;
        }
        if free + self.pending.len() + active + anchors != self.records.len() {
            return Err("records leaked".into());
        }
        let (mut linked, mut stale) = (0, 0);
        for link in self.topics.values() {
            let head = self
                .records
                .get(link.slot as usize)
                .ok_or("index points past the records")?;
            if head.generation != link.generation {
                stale += 1;
                continue;
            }
            if head.newer != NONE || matches!(head.state, State::Free) {
                return Err(format!(
                    "index points to a record that is not a head: {}",
                    link.slot
                ));
            }
            if matches!(head.state, State::Anchor) && head.older == NONE {
                return Err("anchor kept without active tasks".into());
            }
            let (mut at, mut newer) = (link.slot, NONE);
            while at != NONE {
                let record = &self.records[at as usize];
                if record.newer != newer {
                    return Err(format!("topic list broken at {at}"));
                }
                if newer != NONE && !matches!(record.state, State::Active(_)) {
                    return Err(format!("older record {at} is not active"));
                }
                linked += 1;
                (newer, at) = (at, record.older);
            }
        }
        if linked != self.pending.len() + active + anchors {
            return Err(format!(
                "{linked} records indexed, {} pending, {active} active, {anchors} anchors",
                self.pending.len()
            ));
        }
        if stale != self.stale {
            return Err(format!(
                "{stale} stale index entries, {} counted",
                self.stale
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
