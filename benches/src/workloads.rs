//! The queue benchmark workloads QW1..QW5, exactly as defined in `shared/queue-workloads.md`.
//!
//! Common to every workload:
//! - one [`SplitMix64`] stream seeded with [`SEED`] per workload run, drawn in push order: for
//!   every task, first its priority ([`SplitMix64::priority`]), then its work
//!   ([`SplitMix64::work`]) when the workload draws it, tasks in the order they are pushed
//!   (peer 0's tasks by topic, then peer 1's, ...);
//! - peers are `u32` ids `0..P` pushed in that order, topics are `u64` `0..T` per peer, task
//!   data is `()` (QW2's upgrading merger uses a `bool`);
//! - "drain" is [`drain`]: `pop_tasks(16 KiB)` then at once `tasks_done` of every popped task,
//!   until `pop_tasks` returns `None` (through `pop_tasks_into`, the same pop appending to one
//!   reused vector);
//! - no per-peer limit ([`unlimited_config`]) except in QW5 ([`qw5_config`], 1 MiB).
//!
//! Tasks are generated lazily inside the iterator handed to `push_tasks`, so the fill allocates
//! nothing but what the queue itself allocates (the memory figure is the queue's alone), and
//! the two draws per task (a few nanoseconds) are part of the timed fill.
//!
//! Every workload function asserts the counts its definition demands and returns a
//! [`WorkloadResult`]. What is timed ([`WorkloadResult::elapsed`]) is the fill, any removal,
//! and the drain, from the first `push_tasks` to the last `tasks_done`; the queue's
//! construction and drop are not.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use peer_task_queue::{
    ActiveTasks, Config, Dedup, Fair, GoCompat, PeerTaskQueue, Popped, Task, TaskMerger,
    policy::Policy,
};

/// Seed of the workloads' random stream.
pub const SEED: u64 = 42;

/// `target_min_work` of every `pop_tasks` call: 16 KiB.
pub const TARGET_MIN_WORK: u64 = 16 * 1024;

/// Smallest work drawn by [`SplitMix64::work`]: 1 KiB.
pub const MIN_WORK: u64 = 1024;

/// Largest work drawn by [`SplitMix64::work`] is below this: 256 KiB.
pub const MAX_WORK: u64 = 256 * 1024;

/// (P, T) of QW1 and QW3.
pub const QW1_SHAPE: (u32, u64) = (1000, 100);

/// (P, T) of QW2.
pub const QW2_SHAPE: (u32, u64) = (100, 1000);

/// Work of a QW2 want-have task, in bytes.
pub const WANT_HAVE_WORK: u64 = 64;

/// The three (P, T) shapes of QW4, N = 1,000,000 tasks each.
pub const QW4_SHAPES: [(u32, u64); 3] = [(10, 100_000), (1000, 1000), (100_000, 10)];

/// QW5: number of heavy peers (ids `0..QW5_HEAVY_PEERS`; the light peer's id is
/// `QW5_HEAVY_PEERS`).
pub const QW5_HEAVY_PEERS: u32 = 10;

/// QW5: tasks per heavy peer.
pub const QW5_HEAVY_TASKS: u64 = 50;

/// QW5: work of every task, 256 KiB.
pub const QW5_TASK_WORK: u64 = 256 * 1024;

/// QW5: per-peer active-work limit, 1 MiB.
pub const QW5_MAX_ACTIVE_WORK: u64 = 1 << 20;

/// QW5: popped batches in flight at most (the workers).
pub const QW5_WORKERS: usize = 8;

/// QW5: the target on the number of pops until the light peer is served.
pub const QW5_MAX_POPS_TO_LIGHT: usize = 12;

/// The splitmix64 generator of the workload definitions.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A task priority: `rng % 1_000_000`.
    pub fn priority(&mut self) -> i32 {
        i32::try_from(self.next_u64() % 1_000_000).expect("below 1_000_000")
    }

    /// A task's work in bytes: `1024 + rng % (256*1024 - 1024)`.
    pub fn work(&mut self) -> u64 {
        MIN_WORK + self.next_u64() % (MAX_WORK - MIN_WORK)
    }
}

/// A policy the workloads run under, with the name the reports give it.
pub trait BenchPolicy: Policy + Default {
    /// Name in reports.
    const NAME: &'static str;
}

impl BenchPolicy for Fair {
    const NAME: &'static str = "Fair";
}

impl BenchPolicy for GoCompat {
    const NAME: &'static str = "GoCompat";
}

/// The queue the workloads use: `u32` peers, `u64` topics.
pub type BenchQueue<Pol, M = Dedup, D = ()> = PeerTaskQueue<u32, u64, D, M, Pol>;

/// Reads the bytes currently allocated by the process (a counting global allocator), to
/// measure the queue's memory at its fullest. `None`: not measured.
pub type AllocProbe = Option<fn() -> usize>;

/// Bitswap's want-have/want-block merger, for QW2: the task data is `is_block`.
///
/// A want-block merged into a pending task makes it a want-block of the new task's work (the
/// block size); a want-have merged into anything changes nothing. While tasks for a topic are
/// active, a new want-block is queued unless one of them is already a want-block.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpgradeMerger;

impl<T> TaskMerger<T, bool> for UpgradeMerger {
    type ActiveInfo = bool;

    fn active_info(&self, task: &Task<T, bool>) -> bool {
        task.data
    }

    fn has_new_info(&self, new: &Task<T, bool>, mut active: ActiveTasks<'_, bool>) -> bool {
        new.data && !active.any(|&is_block| is_block)
    }

    fn merge(&self, new: Task<T, bool>, work: &mut u64, data: &mut bool) {
        if new.data {
            *work = new.work;
            *data = true;
        }
    }
}

/// No limit on a peer's active work or pending tasks.
pub fn unlimited_config() -> Config {
    Config::default()
        .with_max_active_work_per_peer(u64::MAX)
        .with_max_pending_tasks_per_peer(usize::MAX)
}

/// QW5's limits: 1 MiB of active work per peer, no pending-task limit.
pub fn qw5_config() -> Config {
    unlimited_config().with_max_active_work_per_peer(QW5_MAX_ACTIVE_WORK)
}

/// What one workload run did and how long it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadResult {
    /// Peers that pushed tasks.
    pub peers: usize,
    /// Tasks each peer pushed (for QW5, each heavy peer).
    pub tasks_per_peer: usize,
    /// Tasks pending at the fullest moment (end of the fill), the divisor of
    /// [`bytes_per_task`](Self::bytes_per_task).
    pub tasks_queued: usize,
    /// Tasks removed before the drain (QW3).
    pub tasks_removed: usize,
    /// Tasks popped.
    pub tasks_popped: usize,
    /// Work popped, summed over the popped tasks.
    pub work_popped: u128,
    /// `pop_tasks` calls that returned a batch.
    pub pops: usize,
    /// QW5: pops until the light peer's task was popped, that pop included.
    pub pops_to_light: Option<usize>,
    /// Wall time of the fill, removals and drain.
    pub elapsed: Duration,
    /// Wall time of the drain alone (QW5: of the worker loop), the figure the workload
    /// definitions name.
    pub drain_elapsed: Duration,
    /// Bytes allocated at the end of the fill minus before it, if a probe was given.
    pub bytes_at_fill: Option<usize>,
}

impl WorkloadResult {
    /// The result of a run without removals or a light peer: `shape` is (peers, tasks per
    /// peer), `times` the whole run and the drain alone.
    fn new(
        shape: (usize, usize),
        tasks_queued: usize,
        drained: Drained,
        times: (Duration, Duration),
        bytes_at_fill: Option<usize>,
    ) -> Self {
        Self {
            peers: shape.0,
            tasks_per_peer: shape.1,
            tasks_queued,
            tasks_removed: 0,
            tasks_popped: drained.tasks,
            work_popped: drained.work,
            pops: drained.pops,
            pops_to_light: None,
            elapsed: times.0,
            drain_elapsed: times.1,
            bytes_at_fill,
        }
    }

    /// [`elapsed`](Self::elapsed) in seconds.
    pub fn seconds(&self) -> f64 {
        self.elapsed.as_secs_f64()
    }

    /// Tasks popped per second.
    pub fn tasks_per_s(&self) -> f64 {
        self.tasks_popped as f64 / self.seconds()
    }

    /// Nanoseconds per popped task.
    pub fn ns_per_task(&self) -> f64 {
        self.seconds() * 1e9 / self.tasks_popped as f64
    }

    /// Nanoseconds per popped task, drain alone.
    pub fn drain_ns_per_task(&self) -> f64 {
        self.drain_elapsed.as_secs_f64() * 1e9 / self.tasks_popped as f64
    }

    /// Tasks popped per second, drain alone.
    pub fn drain_tasks_per_s(&self) -> f64 {
        self.tasks_popped as f64 / self.drain_elapsed.as_secs_f64()
    }

    /// Bytes allocated per queued task at the end of the fill, if measured.
    pub fn bytes_per_task(&self) -> Option<f64> {
        self.bytes_at_fill
            .map(|bytes| bytes as f64 / self.tasks_queued as f64)
    }
}

/// What [`drain`] popped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Tasks popped.
    pub tasks: usize,
    /// Work popped.
    pub work: u128,
    /// Non-empty pops.
    pub pops: usize,
}

fn new_queue<Pol: BenchPolicy, M: TaskMerger<u64, D>, D>(
    config: Config,
    merger: M,
) -> BenchQueue<Pol, M, D> {
    PeerTaskQueue::with_merger_and_policy(config, merger, Pol::default())
}

fn allocated(probe: AllocProbe) -> Option<usize> {
    probe.map(|read| read())
}

fn allocated_since(probe: AllocProbe, before: Option<usize>) -> Option<usize> {
    Some(allocated(probe)?.saturating_sub(before?))
}

/// Releases every task of one popped batch, asserting they were all active.
fn complete<D, M, Pol>(queue: &mut BenchQueue<Pol, M, D>, popped: &Popped<u32, u64, D>)
where
    M: TaskMerger<u64, D>,
    Pol: Policy,
{
    let done = queue.tasks_done(&popped.peer, &popped.tasks);
    assert_eq!(
        done.released,
        popped.tasks.len(),
        "every popped task is active"
    );
}

/// Drains the queue: `pop_tasks(16 KiB)`, then `tasks_done` of every popped task, until
/// `pop_tasks` returns `None`. Asserts the queue is empty afterwards. The pops go through
/// `pop_tasks_into` with one vector reused for every batch, as a server's send loop would.
pub fn drain<D, M, Pol>(queue: &mut BenchQueue<Pol, M, D>) -> Drained
where
    M: TaskMerger<u64, D>,
    Pol: Policy,
{
    let mut drained = Drained::default();
    // One vector for every batch: the caller's side of the loop allocates nothing per pop.
    let mut tasks = Vec::new();
    while let Some(served) = queue.pop_tasks_into(TARGET_MIN_WORK, &mut tasks) {
        drained.pops += 1;
        drained.tasks += served.tasks;
        drained.work += tasks.iter().map(|t| u128::from(t.task.work)).sum::<u128>();
        let done = queue.tasks_done(&served.peer, &tasks);
        assert_eq!(done.released, tasks.len(), "every popped task is active");
        tasks.clear();
    }
    assert!(queue.is_empty(), "drained queue still holds peers");
    drained
}

/// Pushes, for each peer `0..peers` in order, one call with its `tasks_per_peer` tasks
/// (topics `0..tasks_per_peer`, priority then work drawn per task). Returns the work pushed.
fn fill_uniform<Pol: BenchPolicy>(
    queue: &mut BenchQueue<Pol>,
    rng: &mut SplitMix64,
    peers: u32,
    tasks_per_peer: u64,
) -> u128 {
    let mut work_pushed: u128 = 0;
    for peer in 0..peers {
        let tasks = (0..tasks_per_peer).map(|topic| {
            // Draw order: priority, then work.
            let priority = rng.priority();
            let work = rng.work();
            work_pushed += u128::from(work);
            Task::new(topic, priority, work, ())
        });
        let outcome = queue.push_tasks(&peer, tasks);
        assert_eq!(
            outcome.queued as u64, tasks_per_peer,
            "peer {peer}: all queued"
        );
        assert_eq!(outcome.merged, 0, "peer {peer}: unique topics");
        assert!(outcome.dropped.is_empty(), "peer {peer}: nothing dropped");
    }
    work_pushed
}

/// Fills `peers` × `tasks_per_peer` tasks as QW1 does, then drains: QW1 and each QW4 shape.
pub fn fill_drain<Pol: BenchPolicy>(
    peers: u32,
    tasks_per_peer: u64,
    probe: AllocProbe,
) -> WorkloadResult {
    let mut queue = new_queue::<Pol, _, ()>(unlimited_config(), Dedup);
    let mut rng = SplitMix64::new(SEED);
    let total = peers as usize * tasks_per_peer as usize;

    let before = allocated(probe);
    let start = Instant::now();
    let work_pushed = fill_uniform(&mut queue, &mut rng, peers, tasks_per_peer);
    let bytes_at_fill = allocated_since(probe, before);
    let drain_start = Instant::now();
    let drained = drain(&mut queue);
    let drain_elapsed = drain_start.elapsed();
    let elapsed = start.elapsed();

    assert_eq!(drained.tasks, total, "every task drained");
    assert_eq!(drained.work, work_pushed, "every byte drained");
    WorkloadResult::new(
        (peers as usize, tasks_per_peer as usize),
        total,
        drained,
        (elapsed, drain_elapsed),
        bytes_at_fill,
    )
}

/// QW1 fill-drain: P=1000, T=100, one push per peer, then drain.
pub fn qw1<Pol: BenchPolicy>(probe: AllocProbe) -> WorkloadResult {
    fill_drain::<Pol>(QW1_SHAPE.0, QW1_SHAPE.1, probe)
}

/// QW2 fill with any merger; `data(is_block)` makes the task data. Returns the result, and the
/// work of the want-have and of the want-block tasks pushed.
fn qw2_with<Pol, M, D>(merger: M, data: fn(bool) -> D, probe: AllocProbe) -> (WorkloadResult, u128)
where
    Pol: BenchPolicy,
    M: TaskMerger<u64, D>,
{
    let (peers, tasks_per_peer) = QW2_SHAPE;
    let mut queue = new_queue::<Pol, M, D>(unlimited_config(), merger);
    let mut rng = SplitMix64::new(SEED);
    let total = peers as usize * tasks_per_peer as usize;
    let mut block_work: u128 = 0;

    let before = allocated(probe);
    let start = Instant::now();
    for peer in 0..peers {
        // T want-haves: priority drawn, work 64 B (no work draw).
        let haves = (0..tasks_per_peer)
            .map(|topic| Task::new(topic, rng.priority(), WANT_HAVE_WORK, data(false)));
        let outcome = queue.push_tasks(&peer, haves);
        assert_eq!(
            outcome.queued as u64, tasks_per_peer,
            "peer {peer}: haves queued"
        );
        assert!(outcome.merged == 0 && outcome.dropped.is_empty());
        // The same T topics as want-blocks: priority, then work, drawn per task.
        let blocks = (0..tasks_per_peer).map(|topic| {
            let priority = rng.priority();
            let work = rng.work();
            block_work += u128::from(work);
            Task::new(topic, priority, work, data(true))
        });
        let outcome = queue.push_tasks(&peer, blocks);
        assert_eq!(
            outcome.merged as u64, tasks_per_peer,
            "peer {peer}: blocks merged"
        );
        assert!(outcome.queued == 0 && outcome.dropped.is_empty());
    }
    let bytes_at_fill = allocated_since(probe, before);
    assert_eq!(
        queue.stats().pending_tasks,
        total,
        "one pending task per topic"
    );
    let drain_start = Instant::now();
    let drained = drain(&mut queue);
    let drain_elapsed = drain_start.elapsed();
    let elapsed = start.elapsed();

    assert_eq!(drained.tasks, total, "QW2: drained count must equal P*T");
    let result = WorkloadResult::new(
        (peers as usize, tasks_per_peer as usize),
        total,
        drained,
        (elapsed, drain_elapsed),
        bytes_at_fill,
    );
    (result, block_work)
}

/// QW2 merge, with [`UpgradeMerger`]: P=100, T=1000 want-haves (64 B) per peer, then the same
/// topics as want-blocks that upgrade them to the block's work; then drain. Asserts P*T tasks
/// and exactly the want-blocks' work drained.
pub fn qw2<Pol: BenchPolicy>(probe: AllocProbe) -> WorkloadResult {
    let (result, block_work) = qw2_with::<Pol, _, bool>(UpgradeMerger, |is_block| is_block, probe);
    assert_eq!(
        result.work_popped, block_work,
        "every want-have upgraded to its block"
    );
    result
}

/// QW2 with the default [`Dedup`] merger and `()` data: the want-blocks only deduplicate, so
/// every task keeps its 64 B of work. Asserts P*T tasks of 64 B drained.
pub fn qw2_dedup<Pol: BenchPolicy>(probe: AllocProbe) -> WorkloadResult {
    let (result, _) = qw2_with::<Pol, _, ()>(Dedup, |_| (), probe);
    let expected = u128::from(WANT_HAVE_WORK) * result.tasks_queued as u128;
    assert_eq!(result.work_popped, expected, "deduplicated tasks keep 64 B");
    result
}

/// QW3 cancel: QW1's fill, then for every peer in order remove topics 0, 2, 4, ..., then drain.
pub fn qw3<Pol: BenchPolicy>(probe: AllocProbe) -> WorkloadResult {
    let (peers, tasks_per_peer) = QW1_SHAPE;
    let mut queue = new_queue::<Pol, _, ()>(unlimited_config(), Dedup);
    let mut rng = SplitMix64::new(SEED);
    let total = peers as usize * tasks_per_peer as usize;
    let removed_per_peer = tasks_per_peer.div_ceil(2) as usize;

    let before = allocated(probe);
    let start = Instant::now();
    let work_pushed = fill_uniform(&mut queue, &mut rng, peers, tasks_per_peer);
    let bytes_at_fill = allocated_since(probe, before);
    let mut removed = 0;
    let mut work_removed: u128 = 0;
    for peer in 0..peers {
        for topic in (0..tasks_per_peer).step_by(2) {
            let outcome = queue.remove(&peer, &topic);
            let task = outcome.task.expect("the topic is pending");
            assert!(!outcome.peer_removed, "odd topics remain");
            work_removed += u128::from(task.work);
            removed += 1;
        }
    }
    let drain_start = Instant::now();
    let drained = drain(&mut queue);
    let drain_elapsed = drain_start.elapsed();
    let elapsed = start.elapsed();

    assert_eq!(removed, peers as usize * removed_per_peer);
    assert_eq!(drained.tasks, total - removed, "the odd topics drained");
    assert_eq!(drained.work, work_pushed - work_removed);
    WorkloadResult {
        tasks_removed: removed,
        ..WorkloadResult::new(
            (peers as usize, tasks_per_peer as usize),
            total,
            drained,
            (elapsed, drain_elapsed),
            bytes_at_fill,
        )
    }
}

/// QW4 scale, one shape: see [`QW4_SHAPES`].
pub fn qw4<Pol: BenchPolicy>(shape: (u32, u64), probe: AllocProbe) -> WorkloadResult {
    fill_drain::<Pol>(shape.0, shape.1, probe)
}

/// QW5 starvation: 10 heavy peers push 50 tasks of 256 KiB each (one call per peer, priority
/// drawn per task, no work draw), then the light peer (id 10) pushes one such task; limit
/// 1 MiB of active work per peer. Eight workers: at most 8 popped batches in flight; with 8 in
/// flight the oldest is completed (`tasks_done`) before the next pop; when `pop_tasks` returns
/// `None` with batches in flight, the oldest is completed and the pop retried. Runs until every
/// task is popped and done; [`WorkloadResult::pops_to_light`] counts the pops up to and
/// including the one that returned the light peer's task.
pub fn qw5<Pol: BenchPolicy>(probe: AllocProbe) -> WorkloadResult {
    let light = QW5_HEAVY_PEERS;
    let mut queue = new_queue::<Pol, _, ()>(qw5_config(), Dedup);
    let mut rng = SplitMix64::new(SEED);
    let total = QW5_HEAVY_PEERS as usize * QW5_HEAVY_TASKS as usize + 1;

    let before = allocated(probe);
    let start = Instant::now();
    for peer in 0..QW5_HEAVY_PEERS {
        let tasks =
            (0..QW5_HEAVY_TASKS).map(|topic| Task::new(topic, rng.priority(), QW5_TASK_WORK, ()));
        let outcome = queue.push_tasks(&peer, tasks);
        assert_eq!(outcome.queued as u64, QW5_HEAVY_TASKS);
        assert!(outcome.dropped.is_empty());
    }
    let outcome = queue.push_tasks(&light, [Task::new(0, rng.priority(), QW5_TASK_WORK, ())]);
    assert_eq!(outcome.queued, 1);
    assert!(outcome.dropped.is_empty());
    let bytes_at_fill = allocated_since(probe, before);

    let drain_start = Instant::now();
    let mut in_flight: VecDeque<Popped<u32, u64, ()>> = VecDeque::with_capacity(QW5_WORKERS);
    let mut drained = Drained::default();
    let mut pops_to_light = None;
    loop {
        if in_flight.len() == QW5_WORKERS {
            let oldest = in_flight.pop_front().expect("8 in flight");
            complete(&mut queue, &oldest);
        }
        if let Some(popped) = queue.pop_tasks(TARGET_MIN_WORK) {
            drained.pops += 1;
            drained.tasks += popped.tasks.len();
            drained.work += popped
                .tasks
                .iter()
                .map(|t| u128::from(t.task.work))
                .sum::<u128>();
            if popped.peer == light && pops_to_light.is_none() {
                pops_to_light = Some(drained.pops);
            }
            in_flight.push_back(popped);
        } else if let Some(oldest) = in_flight.pop_front() {
            complete(&mut queue, &oldest);
        } else {
            break;
        }
    }
    let drain_elapsed = drain_start.elapsed();
    let elapsed = start.elapsed();

    assert!(queue.is_empty(), "every task done");
    assert_eq!(drained.tasks, total, "every task popped");
    assert_eq!(drained.work, u128::from(QW5_TASK_WORK) * total as u128);
    assert!(pops_to_light.is_some(), "the light peer was served");
    WorkloadResult {
        pops_to_light,
        ..WorkloadResult::new(
            (QW5_HEAVY_PEERS as usize + 1, QW5_HEAVY_TASKS as usize),
            total,
            drained,
            (elapsed, drain_elapsed),
            bytes_at_fill,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference() {
        // Reference values of splitmix64 seeded with 1234567.
        let mut rng = SplitMix64::new(1_234_567);
        let got: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
        assert_eq!(
            got,
            [
                6_457_827_717_110_365_317,
                3_203_168_211_198_807_973,
                9_817_491_932_198_370_423
            ]
        );
    }

    #[test]
    fn draws_are_in_range() {
        let mut rng = SplitMix64::new(SEED);
        for _ in 0..10_000 {
            assert!((0..1_000_000).contains(&rng.priority()));
            assert!((MIN_WORK..MAX_WORK).contains(&rng.work()));
        }
    }

    #[test]
    fn qw1_qw2_qw3_run() {
        for result in [qw1::<Fair>(None), qw1::<GoCompat>(None)] {
            assert_eq!(result.tasks_popped, 100_000);
        }
        for result in [qw2::<Fair>(None), qw2_dedup::<GoCompat>(None)] {
            assert_eq!(result.tasks_popped, 100_000);
        }
        assert_eq!(qw3::<Fair>(None).tasks_popped, 50_000);
        assert_eq!(qw3::<GoCompat>(None).tasks_popped, 50_000);
    }

    #[test]
    fn small_shapes_run() {
        for (peers, tasks) in [(3, 1000), (100, 10), (1000, 1)] {
            let result = fill_drain::<Fair>(peers, tasks, None);
            assert_eq!(result.tasks_popped, peers as usize * tasks as usize);
            let result = fill_drain::<GoCompat>(peers, tasks, None);
            assert_eq!(result.tasks_popped, peers as usize * tasks as usize);
        }
    }

    #[test]
    fn qw5_fair_serves_the_light_peer_early() {
        let fair = qw5::<Fair>(None);
        assert_eq!(fair.tasks_popped, 501);
        let pops = fair.pops_to_light.expect("served");
        assert!(
            pops <= QW5_MAX_POPS_TO_LIGHT,
            "light peer served after {pops} pops"
        );
        let go = qw5::<GoCompat>(None);
        assert_eq!(go.tasks_popped, 501);
    }

    #[test]
    fn upgrade_merger_respects_active_blocks() {
        let mut queue = new_queue::<Fair, _, bool>(unlimited_config(), UpgradeMerger);
        let _ = queue.push_tasks(&0, [Task::new(7, 1, 64, false)]);
        let popped = queue.pop_tasks(TARGET_MIN_WORK).expect("pending");
        // A want-block while only a want-have is active is new information.
        let outcome = queue.push_tasks(&0, [Task::new(7, 1, 5000, true)]);
        assert_eq!(outcome.queued, 1);
        let block = queue.pop_tasks(TARGET_MIN_WORK).expect("pending");
        assert_eq!(block.tasks[0].task.work, 5000);
        // Another want-block while a want-block is active is absorbed.
        let outcome = queue.push_tasks(&0, [Task::new(7, 1, 5000, true)]);
        assert_eq!(outcome.merged, 1);
        complete(&mut queue, &popped);
        complete(&mut queue, &block);
        assert!(queue.is_empty());
    }
}
