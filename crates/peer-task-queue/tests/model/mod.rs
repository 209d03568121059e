//! A naive reference model of the queue, and a harness that runs the same operations on the
//! model and on the real queue, compares every observable result and checks the invariants.
//!
//! Shared by the proptest suite (`tests/model_test.rs`) and the `queue_ops` fuzz target, which
//! includes this file by path. The model keeps plain vectors and scans them: slow and obviously
//! right, which is the point.

#![allow(dead_code, unreachable_pub)]

use std::num::NonZeroU32;

use peer_task_queue::{
    ActiveTasks, Config, DropReason, Fair, GoCompat, PeerTaskQueue, Popped, PoppedTask, Task,
    TaskId, TaskMerger, policy::Policy,
};

/// Task data: whether it is a block (else a have), and a tag unique to each pushed task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data {
    pub block: bool,
    pub tag: u32,
}

/// The Bitswap-like merger under test: a want-block upgrades a pending want-have and takes its
/// work; a want-block is news only if no active task is a block.
#[derive(Debug, Clone, Copy, Default)]
pub struct Upgrade;

impl TaskMerger<u8, Data> for Upgrade {
    type ActiveInfo = bool;

    fn active_info(&self, task: &Task<u8, Data>) -> bool {
        task.data.block
    }

    fn has_new_info(&self, new: &Task<u8, Data>, mut active: ActiveTasks<'_, bool>) -> bool {
        new.data.block && !active.any(|block| *block)
    }

    fn merge(&self, new: Task<u8, Data>, work: &mut u64, data: &mut Data) {
        if new.data.block && !data.block {
            data.block = true;
            *work = new.work;
        }
    }
}

/// One task as an operation describes it.
#[derive(Debug, Clone, Copy)]
pub struct TaskSpec {
    pub topic: u8,
    pub priority: i8,
    pub work: u16,
    pub block: bool,
}

/// One operation on the queue.
#[derive(Debug, Clone)]
pub enum Op {
    Push {
        peer: u8,
        tasks: Vec<TaskSpec>,
    },
    Pop {
        target: u32,
    },
    /// Completes every task of one outstanding popped batch (index taken modulo their count).
    DoneBatch {
        batch: usize,
    },
    /// Completes one task of one outstanding batch.
    DoneOne {
        batch: usize,
        task: usize,
    },
    /// Reports done again a task that was already released (must be ignored).
    DoneAgain {
        index: usize,
    },
    /// Pauses or resumes a peer.
    Pause {
        peer: u8,
        paused: bool,
    },
    Remove {
        peer: u8,
        topic: u8,
    },
    Clear {
        peer: u8,
    },
    Weight {
        peer: u8,
        weight: u8,
    },
}

/// Limits for one run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_active_work: u64,
    pub max_pending: usize,
    pub max_peers: usize,
}

impl Limits {
    fn config(self) -> Config {
        Config::default()
            .with_max_active_work_per_peer(self.max_active_work)
            .with_max_pending_tasks_per_peer(self.max_pending)
            .with_max_peers(self.max_peers)
    }
}

/// Which policy the model imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Fair,
    GoCompat,
}

#[derive(Debug, Clone)]
struct MTask {
    topic: u8,
    priority: i32,
    work: u64,
    data: Data,
    seq: u64,
}

#[derive(Debug, Clone)]
struct MPeer {
    id: u8,
    pending: Vec<MTask>,
    /// (model id, topic, work, is block)
    active: Vec<(u64, u8, u64, bool)>,
    weight: u32,
    start: u128,
    tick: u64,
    arrival: u64,
    held: bool,
    paused: bool,
}

impl MPeer {
    fn pending_work(&self) -> u64 {
        self.pending.iter().map(|t| t.work).sum()
    }
    fn active_work(&self) -> u64 {
        self.active.iter().map(|a| a.2).sum()
    }
    fn eligible(&self, limits: Limits) -> bool {
        !self.paused
            && !self.pending.is_empty()
            && (limits.max_active_work == u64::MAX || self.active_work() < limits.max_active_work)
    }
    /// Index of the next task to serve: highest priority, then oldest.
    fn best(&self) -> Option<usize> {
        (0..self.pending.len()).min_by_key(|&i| {
            let t = &self.pending[i];
            (-t.priority, t.seq)
        })
    }
    /// Index of the task to evict first: lowest priority, then newest.
    fn worst(&self) -> Option<usize> {
        (0..self.pending.len()).min_by_key(|&i| {
            let t = &self.pending[i];
            (t.priority, std::cmp::Reverse(t.seq))
        })
    }
}

/// The reference model.
#[derive(Debug)]
struct Model {
    limits: Limits,
    which: Which,
    peers: Vec<MPeer>,
    counter: u64,
    virtual_time: u128,
}

/// What a model push reports: peer added, queued, merged, dropped (tag, evicted?).
type MPush = (bool, usize, usize, Vec<(u32, bool)>);

impl Model {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn find(&self, id: u8) -> Option<usize> {
        self.peers.iter().position(|p| p.id == id)
    }

    /// The policy's bookkeeping after a change to peer `i`, as the queue's `settle` does it.
    fn settle(&mut self, i: usize, was_backlogged: bool) -> bool {
        let p = &self.peers[i];
        if p.pending.is_empty() && p.active.is_empty() {
            self.peers.remove(i);
            return true;
        }
        let backlogged = !p.pending.is_empty();
        let eligible = p.eligible(self.limits);
        let held = p.held;
        if backlogged && !was_backlogged {
            let tick = self.next();
            let vt = self.virtual_time;
            let p = &mut self.peers[i];
            p.start = vt;
            p.tick = tick;
        } else if eligible && held {
            let vt = self.virtual_time;
            let p = &mut self.peers[i];
            p.start = p.start.max(vt);
        }
        self.peers[i].held = backlogged && !eligible;
        false
    }

    fn push(&mut self, peer: u8, tasks: &[Task<u8, Data>]) -> MPush {
        let mut out = (false, 0, 0, Vec::new());
        if tasks.is_empty() {
            return out;
        }
        let i = match self.find(peer) {
            Some(i) => i,
            None if self.peers.len() >= self.limits.max_peers => {
                out.3 = tasks.iter().map(|t| (t.data.tag, false)).collect();
                return out;
            }
            None => {
                let arrival = self.next();
                self.peers.push(MPeer {
                    id: peer,
                    pending: Vec::new(),
                    active: Vec::new(),
                    weight: 1,
                    start: 0,
                    tick: 0,
                    arrival,
                    held: false,
                    paused: false,
                });
                out.0 = true;
                self.peers.len() - 1
            }
        };
        let was_backlogged = !self.peers[i].pending.is_empty();
        for task in tasks {
            let seq = self.next();
            let max_pending = self.limits.max_pending.max(1);
            let p = &mut self.peers[i];
            let actives: Vec<bool> = p
                .active
                .iter()
                .filter(|a| a.1 == task.topic)
                .map(|a| a.3)
                .collect();
            let news = task.data.block && !actives.contains(&true);
            if !actives.is_empty() && !news {
                out.2 += 1;
                continue;
            }
            if let Some(pt) = p.pending.iter_mut().find(|t| t.topic == task.topic) {
                pt.priority = pt.priority.max(task.priority);
                if task.data.block && !pt.data.block {
                    pt.data.block = true;
                    pt.work = task.work;
                }
                out.2 += 1;
                continue;
            }
            if p.pending.len() >= max_pending {
                let w = p.worst().expect("full means non-empty");
                if p.pending[w].priority < task.priority {
                    let evicted = p.pending.remove(w);
                    out.3.push((evicted.data.tag, true));
                } else {
                    out.3.push((task.data.tag, false));
                    continue;
                }
            }
            out.1 += 1;
            p.pending.push(MTask {
                topic: task.topic,
                priority: task.priority,
                work: task.work,
                data: task.data,
                seq,
            });
        }
        self.settle(i, was_backlogged);
        out
    }

    fn key(&self, p: &MPeer) -> (u128, u64, u64) {
        match self.which {
            Which::Fair => (p.start, p.tick, 0),
            Which::GoCompat => (
                u128::from(p.active_work()),
                u64::MAX - p.pending.len() as u64,
                p.arrival,
            ),
        }
    }

    /// Pops like the queue; returns (peer, [(tag, model id)], pending tasks, pending work).
    fn pop(&mut self, target: u64) -> Option<(u8, Vec<(u32, u64)>, usize, u64)> {
        let i = (0..self.peers.len())
            .filter(|&i| self.peers[i].eligible(self.limits))
            .min_by_key(|&i| self.key(&self.peers[i]))?;
        let tick = self.next();
        let limit = self.limits.max_active_work;
        let p = &mut self.peers[i];
        let mut popped = Vec::new();
        let mut work = 0u64;
        while let Some(b) = p.best() {
            let t = p.pending.remove(b);
            p.active.push((t.seq, t.topic, t.work, t.data.block));
            work += t.work;
            popped.push((t.data.tag, t.seq));
            if work >= target || (limit != u64::MAX && p.active_work() >= limit) {
                break;
            }
        }
        if self.which == Which::Fair {
            self.virtual_time = self.virtual_time.max(p.start);
            p.start += (u128::from(work) << 32) / u128::from(p.weight);
            p.tick = tick;
        }
        let id = p.id;
        let rest = (p.pending.len(), p.pending_work());
        self.settle(i, true);
        Some((id, popped, rest.0, rest.1))
    }

    /// Releases tasks by model id; returns (released, peer removed).
    fn done(&mut self, peer: u8, ids: &[u64]) -> (usize, bool) {
        let Some(i) = self.find(peer) else {
            return (0, false);
        };
        let p = &mut self.peers[i];
        let before = p.active.len();
        p.active.retain(|a| !ids.contains(&a.0));
        let released = before - p.active.len();
        if released == 0 {
            return (0, false);
        }
        let was_backlogged = !p.pending.is_empty();
        (released, self.settle(i, was_backlogged))
    }

    fn remove(&mut self, peer: u8, topic: u8) -> (Option<u32>, bool) {
        let Some(i) = self.find(peer) else {
            return (None, false);
        };
        let p = &mut self.peers[i];
        let Some(at) = p.pending.iter().position(|t| t.topic == topic) else {
            return (None, false);
        };
        let tag = p.pending.remove(at).data.tag;
        (Some(tag), self.settle(i, true))
    }
}

/// A popped task as the harness remembers it: peer, topic, real id, model id, tag.
#[derive(Debug, Clone, Copy)]
struct Outstanding {
    peer: u8,
    topic: u8,
    real: TaskId,
    model: u64,
}

/// Runs operations on the real queue and the model side by side.
pub struct Harness<Pol: Policy> {
    queue: PeerTaskQueue<u8, u8, Data, Upgrade, Pol>,
    model: Model,
    batches: Vec<Vec<Outstanding>>,
    released: Vec<Outstanding>,
    next_tag: u32,
    /// Under `Fair`: peers waiting to be served after becoming backlogged, with the number of
    /// pops by other peers they may still see.
    waiting: Vec<(u8, usize)>,
    /// Tags ever popped, to check that no task is popped twice.
    popped_tags: std::collections::HashSet<u32>,
}

impl Harness<Fair> {
    pub fn fair(limits: Limits) -> Self {
        Self::new(limits, Which::Fair, Fair::default())
    }
}

impl Harness<GoCompat> {
    pub fn go_compat(limits: Limits) -> Self {
        Self::new(limits, Which::GoCompat, GoCompat)
    }
}

fn check<T: PartialEq + std::fmt::Debug>(what: &str, real: T, model: T) -> Result<(), String> {
    if real == model {
        Ok(())
    } else {
        Err(format!("{what}: queue {real:?} != model {model:?}"))
    }
}

/// The model's pending tasks and work, then active tasks and work, summed over `peers`.
fn totals(peers: &[MPeer]) -> (usize, u64, usize, u64) {
    let mut sums = (0, 0, 0, 0);
    for p in peers {
        sums.0 += p.pending.len();
        sums.1 += p.pending_work();
        sums.2 += p.active.len();
        sums.3 += p.active_work();
    }
    sums
}

impl<Pol: Policy> Harness<Pol> {
    fn new(limits: Limits, which: Which, policy: Pol) -> Self {
        Self {
            queue: PeerTaskQueue::with_merger_and_policy(limits.config(), Upgrade, policy),
            model: Model {
                limits,
                which,
                peers: Vec::new(),
                counter: 0,
                virtual_time: 0,
            },
            batches: Vec::new(),
            released: Vec::new(),
            next_tag: 0,
            waiting: Vec::new(),
            popped_tags: Default::default(),
        }
    }

    /// Applies `op` to both sides, compares results and checks invariants.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        let backlogged_before: Vec<u8> = self
            .model
            .peers
            .iter()
            .filter(|p| !p.pending.is_empty())
            .map(|p| p.id)
            .collect();
        match op {
            Op::Push { peer, tasks } => self.push(*peer, tasks)?,
            Op::Pop { target } => self.pop(u64::from(*target))?,
            Op::DoneBatch { batch } => {
                if !self.batches.is_empty() {
                    let batch = self.batches.remove(batch % self.batches.len());
                    self.done(&batch)?;
                }
            }
            Op::DoneOne { batch, task } => {
                if !self.batches.is_empty() {
                    let b = batch % self.batches.len();
                    let t = task % self.batches[b].len();
                    let one = self.batches[b].remove(t);
                    if self.batches[b].is_empty() {
                        self.batches.remove(b);
                    }
                    self.done(&[one])?;
                }
            }
            Op::DoneAgain { index } => {
                if !self.released.is_empty() {
                    let again = self.released[index % self.released.len()];
                    let real = self.queue.task_done(&again.peer, again.real);
                    check("double done released", real.released, 0)?;
                }
            }
            Op::Remove { peer, topic } => {
                let real = self.queue.remove(peer, topic);
                let model = self.model.remove(*peer, *topic);
                check(
                    "remove",
                    (real.task.map(|t| t.data.tag), real.peer_removed),
                    model,
                )?;
            }
            Op::Clear { peer } => {
                let real = self.queue.clear_peer(peer);
                let model = self.model.find(*peer).map(|i| {
                    let p = self.model.peers.remove(i);
                    (p.pending.len(), p.active.len())
                });
                check(
                    "clear",
                    real.map(|s| (s.pending_tasks, s.active_tasks)),
                    model,
                )?;
            }
            Op::Pause { peer, paused } => {
                let real = self.queue.set_peer_paused(peer, *paused);
                let model = match self.model.find(*peer) {
                    Some(i) => {
                        let backlogged = !self.model.peers[i].pending.is_empty();
                        self.model.peers[i].paused = *paused;
                        self.model.settle(i, backlogged);
                        true
                    }
                    None => false,
                };
                check("pause", real, model)?;
                check("paused", self.queue.is_peer_paused(peer), *paused && model)?;
            }
            Op::Weight { peer, weight } => {
                let weight = NonZeroU32::new(u32::from(*weight).max(1)).expect("non-zero");
                let real = self.queue.set_peer_weight(peer, weight);
                let model = match self.model.find(*peer) {
                    Some(i) => {
                        self.model.peers[i].weight = weight.get();
                        true
                    }
                    None => false,
                };
                check("weight", real, model)?;
            }
        }
        self.track_starvation(op, &backlogged_before)?;
        self.compare()
    }

    fn push(&mut self, peer: u8, specs: &[TaskSpec]) -> Result<(), String> {
        let tasks: Vec<Task<u8, Data>> = specs
            .iter()
            .map(|s| {
                self.next_tag += 1;
                Task::new(
                    s.topic,
                    i32::from(s.priority),
                    u64::from(s.work),
                    Data {
                        block: s.block,
                        tag: self.next_tag,
                    },
                )
            })
            .collect();
        let model = self.model.push(peer, &tasks);
        let real = self.queue.push_tasks(&peer, tasks);
        let dropped: Vec<(u32, bool)> = real
            .dropped
            .iter()
            .map(|d| (d.task.data.tag, d.reason == DropReason::Evicted))
            .collect();
        check(
            "push",
            (real.peer_added, real.queued, real.merged, dropped),
            model,
        )
    }

    fn pop(&mut self, target: u64) -> Result<(), String> {
        // Odd targets go through `pop_tasks_into`, which must behave the same.
        let real = if target % 2 == 1 {
            let mut tasks = Vec::new();
            self.queue.pop_tasks_into(target, &mut tasks).map(|served| {
                assert_eq!(served.tasks, tasks.len(), "pop_tasks_into's count");
                Popped {
                    peer: served.peer,
                    tasks,
                    pending_tasks: served.pending_tasks,
                    pending_work: served.pending_work,
                }
            })
        } else {
            self.queue.pop_tasks(target)
        };
        let model = self.model.pop(target);
        let (real, model) = match (real, model) {
            (None, None) => return Ok(()),
            (Some(r), Some(m)) => (r, m),
            (r, m) => return Err(format!("pop: queue {r:?} != model {m:?}")),
        };
        let tags: Vec<u32> = real.tasks.iter().map(|t| t.task.data.tag).collect();
        let model_tags: Vec<u32> = model.1.iter().map(|t| t.0).collect();
        check(
            "pop",
            (real.peer, tags, real.pending_tasks, real.pending_work),
            (model.0, model_tags, model.2, model.3),
        )?;
        self.check_batch(&real.tasks, target)?;
        let batch = real
            .tasks
            .iter()
            .zip(&model.1)
            .map(|(t, m)| Outstanding {
                peer: real.peer,
                topic: t.task.topic,
                real: t.id(),
                model: m.1,
            })
            .collect();
        self.batches.push(batch);
        Ok(())
    }

    /// Invariants of one popped batch that hold whatever the model says.
    fn check_batch(&mut self, tasks: &[PoppedTask<u8, Data>], target: u64) -> Result<(), String> {
        if tasks.is_empty() {
            return Err("pop returned no task".into());
        }
        if tasks
            .windows(2)
            .any(|w| w[0].task.priority < w[1].task.priority)
        {
            return Err("popped tasks out of priority order".into());
        }
        let before_last: u64 = tasks[..tasks.len() - 1].iter().map(|t| t.task.work).sum();
        if before_last >= target && tasks.len() > 1 {
            return Err("popped past the target".into());
        }
        for t in tasks {
            if !self.popped_tags.insert(t.task.data.tag) {
                return Err(format!("task {} popped twice", t.task.data.tag));
            }
        }
        Ok(())
    }

    fn done(&mut self, tasks: &[Outstanding]) -> Result<(), String> {
        let Some(first) = tasks.first() else {
            return Ok(());
        };
        let peer = first.peer;
        let mut real = peer_task_queue::DoneOutcome::default();
        for t in tasks {
            let one = self.queue.task_done(&peer, t.real);
            real.released += one.released;
            real.peer_removed |= one.peer_removed;
        }
        let mut model = (0, false);
        for t in tasks {
            let one = self.model.done(peer, &[t.model]);
            model.0 += one.0;
            model.1 |= one.1;
        }
        self.released.extend_from_slice(tasks);
        if self.released.len() > 64 {
            self.released.drain(..32);
        }
        check("done", (real.released, real.peer_removed), model)
    }

    /// Under `Fair`, a peer that becomes backlogged while eligible is served within B pops,
    /// B the number of backlogged peers at that moment.
    fn track_starvation(&mut self, op: &Op, backlogged_before: &[u8]) -> Result<(), String> {
        if self.model.which != Which::Fair {
            return Ok(());
        }
        let limits = self.model.limits;
        if let Op::Pop { .. } = op
            && let Some(batch) = self.batches.last()
        {
            let served = batch[0].peer;
            self.waiting.retain(|(p, _)| *p != served);
            for (peer, budget) in &mut self.waiting {
                if *budget == 0 {
                    return Err(format!("peer {peer} starved past its bound"));
                }
                *budget -= 1;
            }
        }
        // Stop tracking peers that left, drained or got held back by their limit.
        let peers = &self.model.peers;
        self.waiting
            .retain(|(id, _)| peers.iter().any(|p| p.id == *id && p.eligible(limits)));
        let backlogged = peers.iter().filter(|p| !p.pending.is_empty()).count();
        for p in peers {
            if !p.pending.is_empty()
                && !backlogged_before.contains(&p.id)
                && p.eligible(limits)
                && !self.waiting.iter().any(|(id, _)| *id == p.id)
            {
                // It may see at most B - 1 pops of others before its own.
                self.waiting.push((p.id, backlogged - 1));
            }
        }
        Ok(())
    }

    fn compare(&self) -> Result<(), String> {
        self.queue.check_invariants()?;
        let stats = self.queue.stats();
        let m = &self.model;
        check("peers", stats.peers, m.peers.len())?;
        // Pending tasks and work, then active tasks and work.
        let queue_totals = (
            stats.pending_tasks,
            stats.pending_work,
            stats.active_tasks,
            stats.active_work,
        );
        check("totals", queue_totals, totals(&m.peers))?;
        for p in &m.peers {
            let real = self
                .queue
                .peer_stats(&p.id)
                .ok_or_else(|| format!("peer {} missing", p.id))?;
            check("peer pending", real.pending_tasks, p.pending.len())?;
            check("peer active work", real.active_work, p.active_work())?;
            if real.pending_tasks > m.limits.max_pending.max(1) {
                return Err(format!("peer {} over its pending limit", p.id));
            }
            let topics = self.queue.peer_topics(&p.id).expect("present");
            let mut order: Vec<&MTask> = p.pending.iter().collect();
            order.sort_by_key(|t| (-t.priority, t.seq));
            let model_topics: Vec<u8> = order.iter().map(|t| t.topic).collect();
            check("pending order", topics.pending, model_topics)?;
        }
        Ok(())
    }
}

/// Runs `ops` on a fresh harness for both policies.
pub fn run(limits: Limits, ops: &[Op]) -> Result<(), String> {
    let mut fair = Harness::fair(limits);
    let mut go = Harness::go_compat(limits);
    for (i, op) in ops.iter().enumerate() {
        fair.apply(op)
            .map_err(|e| format!("fair, op {i} {op:?}: {e}"))?;
        go.apply(op)
            .map_err(|e| format!("go-compat, op {i} {op:?}: {e}"))?;
    }
    Ok(())
}
