//! The queue: peers in a heap by policy key, each with its own tasks.

use std::{collections::HashMap, fmt, hash::Hash, num::NonZeroU32};

use crate::{
    Config, Dedup, DoneOutcome, Fair, PeerStats, PeerTopics, Popped, PoppedTask, PushOutcome,
    RemoveOutcome, Served, Stats, Task, TaskId, TaskMerger,
    peer::{MAX_HANDLES, PeerTracker, PushedTask, RandomState, saturate},
    policy::{Policy, sealed::Sealed as _},
    slots::Slots,
    task::{DropReason, DroppedTask},
};

/// A peer's place in the slab and its state.
struct Slot<P, T, D, A, S> {
    peer: P,
    tracker: PeerTracker<T, D, A, S>,
}

/// Running sums over all peers, in the internal 128-bit width.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Totals {
    pending_tasks: usize,
    pending_work: u128,
    active_tasks: usize,
    active_work: u128,
}

impl Totals {
    fn of<T: Hash + Eq + Clone, D, A, S>(tracker: &PeerTracker<T, D, A, S>) -> Self {
        Self {
            pending_tasks: tracker.pending_tasks(),
            pending_work: tracker.pending_work(),
            active_tasks: tracker.active_tasks(),
            active_work: tracker.active_work(),
        }
    }

    /// Replaces one peer's `before` contribution by its `after`.
    fn update(&mut self, before: Self, after: Self) {
        self.pending_tasks = self.pending_tasks - before.pending_tasks + after.pending_tasks;
        self.pending_work = self.pending_work - before.pending_work + after.pending_work;
        self.active_tasks = self.active_tasks - before.active_tasks + after.active_tasks;
        self.active_work = self.active_work - before.active_work + after.active_work;
    }
}

/// A fair, bounded queue of tasks per peer.
///
/// - `P`: peer id; `T`: topic, the deduplication key; `D`: the caller's task data.
/// - `M`: the [`TaskMerger`], [`Dedup`] by default.
/// - `Pol`: the [`Policy`] that orders peers, [`Fair`] by default.
///
/// Every operation is O(log n) in peers and in the peer's tasks (plus the tasks it returns).
/// A peer with no pending and no active task is removed at once; calls report it
/// (`peer_added`, `peer_removed`). The queue owns no clock, thread or lock.
pub struct PeerTaskQueue<P, T, D, M = Dedup, Pol = Fair>
where
    M: TaskMerger<T, D>,
    Pol: Policy,
{
    config: Config,
    merger: M,
    policy: Pol,
    slots: Slots<Slot<P, T, D, M::ActiveInfo, Pol::State>>,
    index: HashMap<P, usize, RandomState>,
    /// Eligible peers (pending tasks, under their active-work limit) by policy key, by slot.
    ready: Pol::Ready,
    totals: Totals,
    /// Source of task sequence numbers and policy ticks; only grows.
    next_seq: u64,
}

impl<P, T, D, M, Pol> fmt::Debug for PeerTaskQueue<P, T, D, M, Pol>
where
    M: TaskMerger<T, D>,
    Pol: Policy,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerTaskQueue")
            .field("config", &self.config)
            .field("peers", &self.index.len())
            .field("ready_peers", &self.ready.len())
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl<P, T, D, M, Pol> PeerTaskQueue<P, T, D, M, Pol>
where
    P: Hash + Eq + Clone,
    T: Hash + Eq + Clone,
    M: TaskMerger<T, D>,
    Pol: Policy,
{
    /// Creates an empty queue with the default merger and policy.
    pub fn new(config: Config) -> Self
    where
        M: Default,
        Pol: Default,
    {
        Self::with_merger_and_policy(config, M::default(), Pol::default())
    }

    /// Creates an empty queue with the given merger and policy.
    pub fn with_merger_and_policy(config: Config, merger: M, policy: Pol) -> Self {
        Self {
            config,
            merger,
            policy,
            slots: Slots::default(),
            index: HashMap::default(),
            ready: Pol::Ready::default(),
            totals: Totals::default(),
            next_seq: 0,
        }
    }

    /// The queue's limits.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The task merger.
    pub fn merger(&self) -> &M {
        &self.merger
    }

    /// The peer policy.
    pub fn policy(&self) -> &Pol {
        &self.policy
    }

    fn tick(&mut self) -> u64 {
        let tick = self.next_seq;
        self.next_seq += 1;
        tick
    }

    /// Adds tasks for `peer`, in order: tasks pushed in one call keep their order among equal
    /// priorities. Tasks for a topic the peer already has are merged (see [`TaskMerger`]).
    /// Tasks that will never be served are returned in
    /// [`dropped`](PushOutcome::dropped).
    pub fn push_tasks<I>(&mut self, peer: &P, tasks: I) -> PushOutcome<T, D>
    where
        I: IntoIterator<Item = Task<T, D>>,
    {
        let mut outcome = PushOutcome {
            peer_added: false,
            queued: 0,
            merged: 0,
            dropped: Vec::new(),
        };
        let mut tasks = tasks.into_iter().peekable();
        if tasks.peek().is_none() {
            return outcome;
        }
        let slot = match self.index.get(peer) {
            Some(&slot) => slot,
            None if self.index.len() >= self.config.max_peers.min(MAX_HANDLES) => {
                outcome.dropped = tasks
                    .map(|task| DroppedTask {
                        task,
                        reason: DropReason::Rejected,
                    })
                    .collect();
                return outcome;
            }
            None => {
                let tick = self.tick();
                let state = self.policy.peer_added(tick);
                let slot = self.slots.insert(Slot {
                    peer: peer.clone(),
                    tracker: PeerTracker::new(state),
                });
                self.index.insert(peer.clone(), slot);
                outcome.peer_added = true;
                slot
            }
        };
        let max_pending = self.config.max_pending_tasks_per_peer.max(1);
        let tracker = &mut self.slots[slot].tracker;
        tracker.reserve(tasks.size_hint().0, max_pending);
        let before = Totals::of(tracker);
        for task in tasks {
            let seq = self.next_seq;
            self.next_seq += 1;
            match tracker.push(&self.merger, task, seq, max_pending) {
                PushedTask::Queued => outcome.queued += 1,
                PushedTask::Merged => outcome.merged += 1,
                PushedTask::Dropped(dropped) => {
                    if dropped.reason == DropReason::Evicted {
                        outcome.queued += 1;
                    }
                    outcome.dropped.push(dropped);
                }
            }
        }
        tracker.end_push();
        self.totals.update(before, Totals::of(tracker));
        if self.settle(slot, before.pending_tasks > 0) {
            outcome.peer_added = false;
        }
        outcome
    }

    /// Serves the next peer: pops its tasks in order until their work reaches
    /// `target_min_work` or the peer reaches its active-work limit, at least one task.
    ///
    /// Returns `None` only when no peer has a task it may be given: a peer at its limit is
    /// skipped, never returned empty. Popped tasks stay active until reported done.
    pub fn pop_tasks(&mut self, target_min_work: u64) -> Option<Popped<P, T, D>> {
        let mut tasks = Vec::with_capacity(1);
        let served = self.pop_tasks_into(target_min_work, &mut tasks)?;
        Some(Popped {
            peer: served.peer,
            tasks,
            pending_tasks: served.pending_tasks,
            pending_work: served.pending_work,
        })
    }

    /// [`pop_tasks`](Self::pop_tasks), appending the tasks to `tasks` instead of a new vector:
    /// a caller that drains the queue in a loop reuses one vector and allocates nothing per
    /// call. Returns `None`, leaving `tasks` as it was, when `pop_tasks` would.
    pub fn pop_tasks_into(
        &mut self,
        target_min_work: u64,
        tasks: &mut Vec<PoppedTask<T, D>>,
    ) -> Option<Served<P>> {
        let handle = self.ready.peek()?;
        let tick = self.tick();
        let max_active = self.config.max_active_work_per_peer;
        let before = Totals::of(&self.slots[handle as usize].tracker);
        // The peer is the first in the ready set and stays in the queue (it is about to hold
        // active tasks). Its new key depends on what is popped, but taking it out of the ready
        // set (a heap's descent) does not: starting that now overlaps its loads with those of
        // the peer's state above.
        let (hole, first) = self.ready.open_first()?;
        debug_assert_eq!(first, handle);
        let Slot { peer, tracker } = &mut self.slots[handle as usize];
        let count = tasks.len();
        let work = tracker.pop(&self.merger, target_min_work, max_active, handle, tasks);
        let view = tracker.view();
        self.policy
            .served(&mut tracker.policy, saturate(work), &view, tick);
        // As `settle` would do for a peer that was and stays backlogged or held.
        let eligible = tracker.is_eligible(max_active);
        tracker.held = view.pending_tasks > 0 && !eligible;
        if eligible {
            let key = self.policy.key(&tracker.policy, &view);
            self.ready.refill_first(hole, handle, key);
        } else {
            self.ready.close_first(hole, handle);
        }
        self.totals.update(before, Totals::of(tracker));
        let served = Served {
            peer: peer.clone(),
            tasks: tasks.len() - count,
            pending_tasks: view.pending_tasks,
            pending_work: view.pending_work,
        };
        // The peers served next are known now. With many peers their state is a cache miss;
        // prefetching it here lets the misses overlap with the caller's work until the next
        // pops: the next peer's pending task and record (its state came in one pop ago, when
        // it was the runner-up), and the state of the peer likely to come after it.
        if let Some(next) = self.ready.peek() {
            self.slots[next as usize].tracker.prefetch_next();
        }
        if let Some(after) = self.ready.runner_up() {
            self.slots.prefetch(after as usize);
        }
        Some(served)
    }

    /// Releases popped tasks of `peer`, freeing their work under the peer's limit. Unknown or
    /// already released tasks are ignored.
    pub fn tasks_done<'a, I>(&mut self, peer: &P, tasks: I) -> DoneOutcome
    where
        I: IntoIterator<Item = &'a PoppedTask<T, D>>,
        T: 'a,
        D: 'a,
    {
        self.release(peer, tasks.into_iter().map(PoppedTask::id))
    }

    /// Releases one popped task by id; see [`tasks_done`](Self::tasks_done).
    pub fn task_done(&mut self, peer: &P, id: TaskId) -> DoneOutcome {
        self.release(peer, std::iter::once(id))
    }

    fn release(&mut self, peer: &P, ids: impl Iterator<Item = TaskId>) -> DoneOutcome {
        let mut outcome = DoneOutcome::default();
        let mut ids = ids.peekable();
        let Some(first) = ids.peek() else {
            return outcome;
        };
        // The peer's slot as recorded at pop time saves hashing the peer id, if still its.
        let hint = first.peer as usize;
        let slot = match self.slots.get(hint) {
            Some(at) if at.peer == *peer => hint,
            _ => match self.index.get(peer) {
                Some(&slot) => slot,
                None => return outcome,
            },
        };
        let tracker = &mut self.slots[slot].tracker;
        let before = Totals::of(tracker);
        for id in ids {
            if tracker.done(id) {
                outcome.released += 1;
            }
        }
        if outcome.released > 0 {
            self.totals.update(before, Totals::of(tracker));
            self.tick();
            outcome.peer_removed = self.settle(slot, before.pending_tasks > 0);
        }
        outcome
    }

    /// Cancels the pending task of `peer` for `topic`. Active tasks for the topic are left
    /// alone (they are already on their way).
    pub fn remove(&mut self, peer: &P, topic: &T) -> RemoveOutcome<T, D> {
        let mut outcome = RemoveOutcome {
            task: None,
            peer_removed: false,
        };
        let Some(&slot) = self.index.get(peer) else {
            return outcome;
        };
        let tracker = &mut self.slots[slot].tracker;
        let before = Totals::of(tracker);
        outcome.task = tracker.remove(topic);
        if outcome.task.is_some() {
            self.totals.update(before, Totals::of(tracker));
            self.tick();
            outcome.peer_removed = self.settle(slot, true);
        }
        outcome
    }

    /// Forgets `peer` and all its tasks, pending and active (for a disconnect). Returns what
    /// it had, or `None` if it was not in the queue.
    pub fn clear_peer(&mut self, peer: &P) -> Option<PeerStats> {
        let slot = *self.index.get(peer)?;
        let stats = self.slots[slot].tracker.view();
        self.remove_slot(slot);
        Some(stats)
    }

    /// Sets the weight of `peer` under [`Fair`]: a backlogged peer of weight 2 gets twice the
    /// work of a peer of weight 1. New peers have weight 1; the weight is forgotten when the
    /// peer leaves the queue. Returns false if the peer is not in the queue.
    pub fn set_peer_weight(&mut self, peer: &P, weight: NonZeroU32) -> bool {
        let Some(&slot) = self.index.get(peer) else {
            return false;
        };
        self.slots[slot].tracker.weight = weight;
        self.settle(slot, true);
        true
    }

    /// Pauses `peer` (`true`) or resumes it: a paused peer keeps its tasks, gets new ones, and
    /// finishes its active ones, but is not popped, as if it were at its active-work limit.
    /// For a peer whose earlier tasks wait somewhere else (say, behind a full connection): its
    /// tasks gather meanwhile and are popped together. Under [`Fair`] a resumed peer is
    /// treated as one whose active work went back under its limit. Forgotten when the peer
    /// leaves the queue. Returns false if the peer is not in the queue.
    pub fn set_peer_paused(&mut self, peer: &P, paused: bool) -> bool {
        let Some(&slot) = self.index.get(peer) else {
            return false;
        };
        let tracker = &mut self.slots[slot].tracker;
        if tracker.paused != paused {
            tracker.paused = paused;
            let backlogged = tracker.pending_tasks() > 0;
            self.settle(slot, backlogged);
        }
        true
    }

    /// Whether `peer` is paused ([`set_peer_paused`](Self::set_peer_paused)).
    pub fn is_peer_paused(&self, peer: &P) -> bool {
        self.index
            .get(peer)
            .is_some_and(|&slot| self.slots[slot].tracker.paused)
    }

    /// After a change to a peer: notifies the policy, keeps the ready heap in step and removes
    /// the peer if it is idle. `was_backlogged` says whether it had pending tasks before the
    /// change. Returns true if the peer was removed.
    fn settle(&mut self, slot: usize, was_backlogged: bool) -> bool {
        let max_active = self.config.max_active_work_per_peer;
        let tracker = &mut self.slots[slot].tracker;
        if tracker.is_idle() {
            self.remove_slot(slot);
            return true;
        }
        let handle = slot as u32;
        let ready = self.ready.contains(handle);
        let backlogged = tracker.pending_tasks() > 0;
        let eligible = tracker.is_eligible(max_active);
        if backlogged && !was_backlogged {
            let tick = self.next_seq;
            self.next_seq += 1;
            self.policy.backlogged(&mut tracker.policy, tick);
        } else if eligible && !ready && tracker.held {
            let tick = self.next_seq;
            self.next_seq += 1;
            self.policy.resumed(&mut tracker.policy, tick);
        }
        tracker.held = backlogged && !eligible;
        if eligible {
            let key = self.policy.key(&tracker.policy, &tracker.view());
            match self.ready.key(handle) {
                Some(old) if *old == key => {}
                Some(_) => self.ready.update(handle, key),
                None => self.ready.push(handle, key),
            }
        } else if ready {
            self.ready.remove(handle);
        }
        false
    }

    fn remove_slot(&mut self, slot: usize) {
        let Slot { peer, tracker } = self.slots.remove(slot);
        self.ready.remove(slot as u32);
        self.index.remove(&peer);
        self.totals.update(Totals::of(&tracker), Totals::default());
    }

    /// Counters over all peers, O(1).
    pub fn stats(&self) -> Stats {
        Stats {
            peers: self.index.len(),
            pending_tasks: self.totals.pending_tasks,
            pending_work: saturate(self.totals.pending_work),
            active_tasks: self.totals.active_tasks,
            active_work: saturate(self.totals.active_work),
        }
    }

    /// One peer's counters, or `None` if it is not in the queue.
    pub fn peer_stats(&self, peer: &P) -> Option<PeerStats> {
        let slot = *self.index.get(peer)?;
        Some(self.slots[slot].tracker.view())
    }

    /// One peer's topics, pending in service order and active, or `None` if it is not in the
    /// queue. O(n log n) in the peer's tasks: for inspection, not for the hot path.
    pub fn peer_topics(&self, peer: &P) -> Option<PeerTopics<T>> {
        let slot = *self.index.get(peer)?;
        let (pending, active) = self.slots[slot].tracker.topics();
        Some(PeerTopics { pending, active })
    }

    /// Whether `peer` has pending or active tasks.
    pub fn contains_peer(&self, peer: &P) -> bool {
        self.index.contains_key(peer)
    }

    /// The peers in the queue, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = &P> + '_ {
        self.index.keys()
    }

    /// Whether the queue holds no peer (so no task, pending or active).
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Checks every internal invariant in O(n): sums, heap membership, idle peers; returns a
    /// description of the first violation found. For tests (the `testing` feature) and fuzz
    /// targets (`cfg(fuzzing)`).
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut sums = Totals::default();
        for (slot, Slot { peer, tracker }) in self.slots.iter() {
            tracker.check()?;
            if self.index.get(peer) != Some(&slot) {
                return Err(format!("slot {slot} missing from the index"));
            }
            if tracker.is_idle() {
                return Err(format!("idle peer kept in slot {slot}"));
            }
            let eligible = tracker.is_eligible(self.config.max_active_work_per_peer);
            let ready = self.ready.contains(slot as u32);
            if eligible != ready {
                return Err(format!("slot {slot}: eligible {eligible}, in heap {ready}"));
            }
            if tracker.pending_tasks() > self.config.max_pending_tasks_per_peer.max(1) {
                return Err(format!("slot {slot} over its pending limit"));
            }
            if ready {
                let key = self.policy.key(&tracker.policy, &tracker.view());
                if self.ready.key(slot as u32) != Some(&key) {
                    return Err(format!("slot {slot} has a stale key"));
                }
            }
            sums.update(Totals::default(), Totals::of(tracker));
        }
        self.ready.check()?;
        if self.index.len() != self.slots.len() || self.ready.len() > self.slots.len() {
            return Err("index, slots and ready set sizes disagree".into());
        }
        if sums != self.totals {
            return Err(format!("totals {:?} != recomputed {sums:?}", self.totals));
        }
        Ok(())
    }
}
