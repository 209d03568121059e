//! Fuzzes `peer_task_queue` against the naive reference model of the test suite.
//!
//! The input is a choice of limits and a sequence of operations (pushes, pops, dones, removals,
//! clears, weight changes). Every operation runs on the real queue and on the model under both
//! policies (`Fair` and `GoCompat`); the harness compares every result and checks the queue's
//! invariants and the fairness bound after each step. Any divergence is a panic, i.e. a crash
//! for libFuzzer.
//!
//! The raw input types below take any bytes; their mapping to `model::Op` / `model::Limits`
//! uses modulo and clamping only, so every input is a valid operation sequence. The value
//! ranges follow the proptest strategies in `crates/peer-task-queue/tests/model_test.rs`.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[path = "../../crates/peer-task-queue/tests/model/mod.rs"]
mod model;

use model::{Limits, Op, TaskSpec};

/// Operations kept per input; the rest of a longer input is ignored.
const MAX_OPS: usize = 256;
/// Tasks kept per push.
const MAX_TASKS_PER_PUSH: usize = 8;
/// Peers `0..PEERS`: few, so that operations keep hitting the same peers.
const PEERS: u8 = 6;
/// Topics `0..TOPICS`: few, so that merges and removals find their task.
const TOPICS: u8 = 12;

/// The whole fuzz input.
#[derive(Arbitrary, Debug)]
struct Input {
    limits: RawLimits,
    /// Last field: filled from the rest of the data (one op after another).
    ops: Vec<RawOp>,
}

/// Limits, each either unlimited or, more often, small.
#[derive(Arbitrary, Debug)]
struct RawLimits {
    active_work: u8,
    active_work_value: u16,
    pending: u8,
    peers: u8,
}

impl RawLimits {
    fn limits(&self) -> Limits {
        let max_active_work = match self.active_work % 6 {
            0 => u64::MAX,
            1 => 1,
            2 => 100,
            3 => 1 + u64::from(self.active_work_value % 16),
            _ => 1 + u64::from(self.active_work_value % 999),
        };
        // 0 => unlimited, 1..=5 => that many, 6 => 1..=64.
        let max_pending = match self.pending % 7 {
            0 => usize::MAX,
            6 => 1 + usize::from(self.pending / 7 % 64),
            k => usize::from(k),
        };
        // 0 => unlimited, 1..=4 => that many, 5 => 1..=8.
        let max_peers = match self.peers % 6 {
            0 => usize::MAX,
            5 => 1 + usize::from(self.peers / 6 % 8),
            k => usize::from(k),
        };
        Limits {
            max_active_work,
            max_pending,
            max_peers,
        }
    }
}

/// One task of a push.
#[derive(Arbitrary, Debug)]
struct RawTask {
    topic: u8,
    priority: u8,
    work_kind: u8,
    work: u16,
    block: bool,
}

impl RawTask {
    fn spec(&self) -> TaskSpec {
        let work = match self.work_kind % 6 {
            0 => 0,
            1 => 100,
            _ => self.work % 300,
        };
        TaskSpec {
            topic: self.topic % TOPICS,
            // -3..=3
            priority: (self.priority % 7) as i8 - 3,
            work,
            block: self.block,
        }
    }
}

/// One operation. Pushes and pops get a quarter of the choices each, dones and the rest share
/// the other half.
#[derive(Arbitrary, Debug)]
enum RawOp {
    Push { peer: u8, tasks: Vec<RawTask> },
    Pop { kind: u8, target: u16 },
    Done(RawDone),
    Other(RawOther),
}

#[derive(Arbitrary, Debug)]
enum RawDone {
    Batch { batch: u8 },
    One { batch: u8, task: u8 },
    Again { index: u8 },
}

#[derive(Arbitrary, Debug)]
enum RawOther {
    Remove { peer: u8, topic: u8 },
    Clear { peer: u8 },
    Weight { peer: u8, weight: u8 },
    Pause { peer: u8, paused: bool },
}

impl RawOp {
    fn op(&self) -> Op {
        match self {
            Self::Push { peer, tasks } => Op::Push {
                peer: peer % PEERS,
                tasks: tasks
                    .iter()
                    .take(MAX_TASKS_PER_PUSH)
                    .map(RawTask::spec)
                    .collect(),
            },
            Self::Pop { kind, target } => Op::Pop {
                target: match kind % 4 {
                    0 => 0,
                    1 => 1,
                    _ => u32::from(target % 600),
                },
            },
            // The harness takes batch and task indices modulo the outstanding counts.
            Self::Done(RawDone::Batch { batch }) => Op::DoneBatch {
                batch: usize::from(*batch),
            },
            Self::Done(RawDone::One { batch, task }) => Op::DoneOne {
                batch: usize::from(*batch),
                task: usize::from(*task),
            },
            Self::Done(RawDone::Again { index }) => Op::DoneAgain {
                index: usize::from(*index),
            },
            Self::Other(RawOther::Remove { peer, topic }) => Op::Remove {
                peer: peer % PEERS,
                topic: topic % TOPICS,
            },
            Self::Other(RawOther::Clear { peer }) => Op::Clear { peer: peer % PEERS },
            // 0..=3; the harness treats 0 as 1.
            Self::Other(RawOther::Weight { peer, weight }) => Op::Weight {
                peer: peer % PEERS,
                weight: weight % 4,
            },
            Self::Other(RawOther::Pause { peer, paused }) => Op::Pause {
                peer: peer % PEERS,
                paused: *paused,
            },
        }
    }
}

fuzz_target!(|input: Input| {
    let limits = input.limits.limits();
    let ops: Vec<Op> = input.ops.iter().take(MAX_OPS).map(RawOp::op).collect();
    if let Err(e) = model::run(limits, &ops) {
        panic!("queue diverged from the model: {e}\nlimits: {limits:?}\nops: {ops:?}");
    }
});
