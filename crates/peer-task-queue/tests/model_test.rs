//! Property tests: random operation sequences on the queue and on a naive reference model
//! (`model/mod.rs`) must give the same results, and the invariants must hold after every step.

mod model;

use model::{Limits, Op, TaskSpec};
use proptest::prelude::*;

fn task_spec() -> impl Strategy<Value = TaskSpec> {
    (
        0u8..12,
        -3i8..4,
        prop_oneof![1 => Just(0u16), 1 => Just(100u16), 4 => 0u16..300],
        any::<bool>(),
    )
        .prop_map(|(topic, priority, work, block)| TaskSpec {
            topic,
            priority,
            work,
            block,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, prop::collection::vec(task_spec(), 0..6))
            .prop_map(|(peer, tasks)| Op::Push { peer, tasks }),
        4 => prop_oneof![Just(0u32), Just(1u32), 0u32..600].prop_map(|target| Op::Pop { target }),
        2 => any::<usize>().prop_map(|batch| Op::DoneBatch { batch }),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(batch, task)| Op::DoneOne { batch, task }),
        1 => any::<usize>().prop_map(|index| Op::DoneAgain { index }),
        1 => (0u8..6, 0u8..12).prop_map(|(peer, topic)| Op::Remove { peer, topic }),
        1 => (0u8..6).prop_map(|peer| Op::Clear { peer }),
        1 => (0u8..6, 0u8..4).prop_map(|(peer, weight)| Op::Weight { peer, weight }),
        1 => (0u8..6, any::<bool>()).prop_map(|(peer, paused)| Op::Pause { peer, paused }),
    ]
}

fn limits() -> impl Strategy<Value = Limits> {
    (
        prop_oneof![Just(u64::MAX), 1u64..1000],
        prop_oneof![Just(usize::MAX), 1usize..6],
        prop_oneof![Just(usize::MAX), 1usize..5],
    )
        .prop_map(|(max_active_work, max_pending, max_peers)| Limits {
            max_active_work,
            max_pending,
            max_peers,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn queue_matches_model(limits in limits(), ops in prop::collection::vec(op(), 1..120)) {
        if let Err(e) = model::run(limits, &ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}
