//! Criterion benches of the peer-task-queue workloads QW1..QW5 (`shared/queue-workloads.md`),
//! one group per workload, one bench per policy (and per shape in QW4).
//!
//! Each iteration runs the whole workload on a fresh queue; the time measured is the one the
//! workload reports (fill, removals and drain; not the queue's construction and drop), through
//! `iter_custom`. Throughput is in tasks popped. Sample sizes and times are kept small so that
//! a full run stays within about three minutes on two cores (QW4 shapes are 1M tasks each).

use std::time::Duration;

use benches::workloads::{self, BenchPolicy, QW4_SHAPES, WorkloadResult};
use criterion::{
    BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group,
    criterion_main, measurement::WallTime,
};
use peer_task_queue::{Fair, GoCompat};

/// Benches `run` under the id `id` with throughput `tasks`, timing what the workload times.
fn bench_workload(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    tasks: usize,
    run: impl Fn() -> WorkloadResult,
) {
    group.throughput(Throughput::Elements(tasks as u64));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run().elapsed).sum::<Duration>());
    });
}

/// A group of 10 samples with the same iteration count each (an iteration is a whole
/// workload, tens of milliseconds to seconds), `measure` seconds of measurement after a short
/// warm-up.
fn group<'a>(c: &'a mut Criterion, name: &str, measure: u64) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(measure));
    group
}

/// Benches a workload function of `workloads` under each policy, `$tasks` tasks a run.
macro_rules! both_policies {
    ($group:expr, $tasks:expr, workloads::$workload:ident) => {
        bench_one::<Fair>($group, $tasks, workloads::$workload::<Fair>);
        bench_one::<GoCompat>($group, $tasks, workloads::$workload::<GoCompat>);
    };
}

/// A bench function `$name` of one group, `workloads::$name` under each policy.
macro_rules! policies_group {
    ($name:ident, $label:expr, $measure:expr, $tasks:expr) => {
        fn $name(c: &mut Criterion) {
            let mut group = group(c, $label, $measure);
            both_policies!(&mut group, $tasks, workloads::$name);
            group.finish();
        }
    };
}

policies_group!(qw1, "QW1", 2, 100_000);
policies_group!(qw3, "QW3", 2, 50_000);
policies_group!(qw5, "QW5", 1, 501);

fn qw2(c: &mut Criterion) {
    let mut group = group(c, "QW2", 2);
    both_policies!(&mut group, 100_000, workloads::qw2);
    for (policy, tasks, run) in [
        (
            Fair::NAME,
            100_000,
            workloads::qw2_dedup::<Fair> as fn(_) -> _,
        ),
        (GoCompat::NAME, 100_000, workloads::qw2_dedup::<GoCompat>),
    ] {
        let id = BenchmarkId::new("dedup", policy);
        bench_workload(&mut group, id, tasks, || run(None));
    }
    group.finish();
}

fn qw4(c: &mut Criterion) {
    // One iteration is 1M tasks: at most 10 s per bench, one iteration per sample if the
    // queue takes more than 1 µs per task.
    let mut group = group(c, "QW4", 10);
    for shape in QW4_SHAPES {
        qw4_shape::<Fair>(&mut group, shape);
        qw4_shape::<GoCompat>(&mut group, shape);
    }
    group.finish();
}

fn qw4_shape<Pol: BenchPolicy>(group: &mut BenchmarkGroup<'_, WallTime>, shape: (u32, u64)) {
    let (peers, tasks_per_peer) = shape;
    let id = BenchmarkId::new(Pol::NAME, format!("{peers}x{tasks_per_peer}"));
    let tasks = peers as usize * tasks_per_peer as usize;
    bench_workload(group, id, tasks, || workloads::qw4::<Pol>(shape, None));
}

/// Benches one workload function under one policy's name.
fn bench_one<Pol: BenchPolicy>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    tasks: usize,
    run: fn(workloads::AllocProbe) -> WorkloadResult,
) {
    bench_workload(group, BenchmarkId::from_parameter(Pol::NAME), tasks, || {
        run(None)
    });
}

criterion_group!(queue, qw1, qw2, qw3, qw4, qw5);
criterion_main!(queue);
