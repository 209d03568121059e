//! Runs the peer-task-queue workloads QW1..QW5 (`shared/queue-workloads.md`) once per policy
//! and prints one JSON object per line on stdout; a summary of the targets goes to stderr.
//!
//! ```text
//! cargo run --release -p benches --bin queue-workloads [WORKLOAD...]
//! ```
//!
//! `WORKLOAD` filters by name, case-insensitively: `QW1`, `QW2` (also runs `QW2-dedup`),
//! `QW2-dedup`, `QW3`, `QW4`, `QW5`. Without arguments every workload runs.
//!
//! Fields: `workload`, `policy`, `tasks` (tasks popped), `seconds` (wall time of fill, any
//! removals and drain, measured with `Instant` inside the workload), `tasks_per_s` (tasks
//! popped / seconds), `ns_per_task`, the same three for the drain alone (`drain_seconds`,
//! `drain_tasks_per_s`, `drain_ns_per_task`: the figure the workload definitions name), `bytes_per_task` (bytes allocated at the end of the fill
//! minus before it, over the tasks then queued, Task itself included), plus `peers` and
//! `tasks_per_peer` for QW4 and `pops_to_light` for QW5.
//!
//! Exits with a failure if a workload's memory per queued task is over its target (200 B):
//! allocations are counted exactly, so CI runs this as a check. The times vary from run to run
//! and are only reported.

use std::process::ExitCode;

use benches::workloads::{
    self, AllocProbe, BenchPolicy, QW4_SHAPES, QW5_MAX_POPS_TO_LIGHT, WorkloadResult,
};
use peer_task_queue::{Fair, GoCompat};
use serde_json::{Value, json};

/// Counts every allocation, so the runner can measure the queue's memory without unsafe code.
#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// Bytes currently allocated by the process.
fn allocated() -> usize {
    ALLOC.allocated()
}

const PROBE: AllocProbe = Some(allocated);

/// Workload names, in run order.
const WORKLOADS: [&str; 6] = ["QW1", "QW2", "QW2-dedup", "QW3", "QW4", "QW5"];

/// Targets the queue must meet.
const QW1_MIN_TASKS_PER_S: f64 = 5e6;
const QW4_MAX_NS_RATIO: f64 = 1.5;
const QW4_MAX_NS_PER_TASK: f64 = 500.0;
const MAX_BYTES_PER_TASK: f64 = 200.0;

/// One printed line.
struct Line {
    workload: &'static str,
    policy: &'static str,
    result: WorkloadResult,
}

impl Line {
    fn to_json(&self) -> Value {
        let r = &self.result;
        let mut line = json!({
            "workload": self.workload,
            "policy": self.policy,
            "tasks": r.tasks_popped,
            "seconds": r.seconds(),
            "tasks_per_s": r.tasks_per_s().round(),
            "ns_per_task": round2(r.ns_per_task()),
            "drain_seconds": r.drain_elapsed.as_secs_f64(),
            "drain_tasks_per_s": r.drain_tasks_per_s().round(),
            "drain_ns_per_task": round2(r.drain_ns_per_task()),
        });
        let fields = line.as_object_mut().expect("an object");
        if self.workload == "QW4" {
            fields.insert("peers".into(), json!(r.peers));
            fields.insert("tasks_per_peer".into(), json!(r.tasks_per_peer));
        }
        if let Some(pops) = r.pops_to_light {
            fields.insert("pops_to_light".into(), json!(pops));
        }
        fields.insert(
            "bytes_per_task".into(),
            json!(r.bytes_per_task().map(round2)),
        );
        line
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn run_policy<Pol: BenchPolicy>(workload: &'static str, out: &mut Vec<Line>) {
    let mut emit = |result| {
        let line = Line {
            workload,
            policy: Pol::NAME,
            result,
        };
        println!("{}", line.to_json());
        out.push(line);
    };
    match workload {
        "QW1" => emit(workloads::qw1::<Pol>(PROBE)),
        "QW2" => emit(workloads::qw2::<Pol>(PROBE)),
        "QW2-dedup" => emit(workloads::qw2_dedup::<Pol>(PROBE)),
        "QW3" => emit(workloads::qw3::<Pol>(PROBE)),
        "QW4" => {
            for shape in QW4_SHAPES {
                emit(workloads::qw4::<Pol>(shape, PROBE));
            }
        }
        "QW5" => emit(workloads::qw5::<Pol>(PROBE)),
        _ => unreachable!("filtered against WORKLOADS"),
    }
}

/// Whether `name` is selected by the command-line filters.
fn selected(name: &str, filters: &[String]) -> bool {
    filters.is_empty()
        || filters.iter().any(|f| {
            name.eq_ignore_ascii_case(f)
                || name
                    .split_once('-')
                    .is_some_and(|(base, _)| base.eq_ignore_ascii_case(f))
        })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// Prints on stderr whether each target was met, for the lines that ran. Returns whether the
/// memory target was met: unlike the times, memory is counted exactly, the same on every run.
fn report_targets(lines: &[Line]) -> bool {
    for policy in [Fair::NAME, GoCompat::NAME] {
        let of = |workload: &'static str| {
            lines
                .iter()
                .filter(move |l| l.policy == policy && l.workload == workload)
                .map(|l| &l.result)
        };
        for r in of("QW1") {
            for (what, rate) in [
                ("drain", r.drain_tasks_per_s()),
                ("fill+drain", r.tasks_per_s()),
            ] {
                eprintln!(
                    "target {policy} QW1 >= 5M tasks/s ({what}): {} ({:.2}M tasks/s)",
                    verdict(rate >= QW1_MIN_TASKS_PER_S),
                    rate / 1e6
                );
            }
        }
        let per_task: [(&str, fn(&WorkloadResult) -> f64); 2] = [
            ("drain", WorkloadResult::drain_ns_per_task),
            ("fill+drain", WorkloadResult::ns_per_task),
        ];
        for (what, figure) in per_task {
            let ns: Vec<f64> = of("QW4").map(figure).collect();
            if ns.is_empty() {
                continue;
            }
            let max = ns.iter().copied().fold(f64::MIN, f64::max);
            let min = ns.iter().copied().fold(f64::MAX, f64::min);
            eprintln!(
                "target {policy} QW4 ns/task within {QW4_MAX_NS_RATIO}x ({what}): {} (max/min {:.2})",
                verdict(max / min <= QW4_MAX_NS_RATIO),
                max / min
            );
            eprintln!(
                "target {policy} QW4 ns/task < {QW4_MAX_NS_PER_TASK} ({what}): {} (max {max:.1} ns)",
                verdict(max < QW4_MAX_NS_PER_TASK)
            );
        }
        for r in of("QW5") {
            let pops = r.pops_to_light.unwrap_or(usize::MAX);
            let binding = if policy == Fair::NAME {
                ""
            } else {
                " (applies to Fair only)"
            };
            eprintln!(
                "target {policy} QW5 <= {QW5_MAX_POPS_TO_LIGHT} pops{binding}: {} ({pops} pops)",
                verdict(pops <= QW5_MAX_POPS_TO_LIGHT)
            );
        }
    }
    let worst = lines
        .iter()
        .filter_map(|l| Some((l.result.bytes_per_task()?, l)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let Some((bytes, line)) = worst else {
        return true;
    };
    eprintln!(
        "target bytes/task <= {MAX_BYTES_PER_TASK}: {} (max {bytes:.1}, {} {} {}x{})",
        verdict(bytes <= MAX_BYTES_PER_TASK),
        line.workload,
        line.policy,
        line.result.peers,
        line.result.tasks_per_peer
    );
    bytes <= MAX_BYTES_PER_TASK
}

fn main() -> ExitCode {
    let filters: Vec<String> = std::env::args().skip(1).collect();
    if filters.iter().any(|f| f == "-h" || f == "--help") {
        eprintln!("usage: queue-workloads [WORKLOAD...]  (one of {WORKLOADS:?})");
        return ExitCode::SUCCESS;
    }
    if let Some(unknown) = filters
        .iter()
        .find(|f| !WORKLOADS.iter().any(|w| selected(w, &[(*f).clone()])))
    {
        eprintln!("unknown workload {unknown:?}; expected one of {WORKLOADS:?}");
        return ExitCode::FAILURE;
    }
    let mut lines = Vec::new();
    for workload in WORKLOADS.into_iter().filter(|w| selected(w, &filters)) {
        run_policy::<Fair>(workload, &mut lines);
        run_policy::<GoCompat>(workload, &mut lines);
    }
    if report_targets(&lines) {
        ExitCode::SUCCESS
    } else {
        eprintln!("memory per task over its target: failing");
        ExitCode::FAILURE
    }
}
