//! Named scenarios: behaviour of go-peertaskqueue that still applies to this queue, the defects
//! it was written to avoid, and each limit.

mod model;

use std::num::NonZeroU32;

use model::Data;
use peer_task_queue::{
    Config, Dedup, DropReason, Fair, GoCompat, PeerTaskQueue, Popped, Task, policy::Policy,
};

type Queue<Pol = Fair> = PeerTaskQueue<&'static str, u32, (), Dedup, Pol>;

fn unlimited() -> Config {
    Config::default()
        .with_max_active_work_per_peer(u64::MAX)
        .with_max_pending_tasks_per_peer(usize::MAX)
}

fn task(topic: u32, priority: i32, work: u64) -> Task<u32, ()> {
    Task::new(topic, priority, work, ())
}

fn topics<P, D>(popped: &Popped<P, u32, D>) -> Vec<u32> {
    popped.tasks.iter().map(|t| t.task.topic).collect()
}

/// Pops one batch and reports it done at once; returns the peer and its topics.
fn pop_done<Pol: Policy>(queue: &mut Queue<Pol>, target: u64) -> (&'static str, Vec<u32>) {
    let popped = queue.pop_tasks(target).expect("work is pending");
    let _ = queue.tasks_done(&popped.peer, &popped.tasks);
    (popped.peer, topics(&popped))
}

#[test]
fn push_pop_follows_priority_and_cancels() {
    // Letters pushed in a scrambled order, priority = 100 - position in the alphabet; the
    // consonants are then cancelled: the vowels come out in alphabetical order.
    let mut queue: Queue = Queue::new(unlimited());
    let alphabet: Vec<u32> = (0..26).collect();
    let order = [
        7, 3, 21, 0, 14, 25, 9, 19, 4, 11, 2, 24, 16, 8, 5, 22, 13, 1, 18, 10, 23, 6, 15, 20, 17,
        12,
    ];
    for &i in &order {
        let _ = queue.push_tasks(&"peer", [task(alphabet[i], 100 - i as i32, 1)]);
    }
    let vowels = [0, 4, 8, 14, 20];
    for letter in alphabet.iter().filter(|l| !vowels.contains(l)) {
        assert!(queue.remove(&"peer", letter).task.is_some());
    }
    let mut out = Vec::new();
    while let Some(popped) = queue.pop_tasks(1) {
        out.extend(topics(&popped));
    }
    assert_eq!(out, vowels);
}

#[test]
fn equal_priorities_keep_push_order() {
    let mut queue: Queue = Queue::new(unlimited());
    let _ = queue.push_tasks(&"p", (0..50).map(|t| task(t, 7, 1)));
    let _ = queue.push_tasks(&"p", (50..60).map(|t| task(t, 7, 1)));
    let popped = queue.pop_tasks(u64::MAX).expect("pending");
    assert_eq!(topics(&popped), (0..60).collect::<Vec<_>>());
}

/// Peers a{3,1} b{1,3,1} c{2,2} (work), popped one task at a time without completing any;
/// the order popped, each as its peer and topic (`"b3 a1 ..."`).
fn peer_order<Pol: Policy>(queue: &mut Queue<Pol>) -> String {
    let _ = queue.push_tasks(&"a", [task(1, 2, 3), task(2, 1, 1)]);
    let _ = queue.push_tasks(&"b", [task(3, 3, 1), task(4, 2, 3), task(5, 1, 1)]);
    let _ = queue.push_tasks(&"c", [task(6, 2, 2), task(7, 1, 2)]);
    let mut order = Vec::new();
    while let Some(popped) = queue.pop_tasks(1) {
        assert_eq!(popped.tasks.len(), 1);
        order.push(format!("{}{}", popped.peer, popped.tasks[0].task.topic));
    }
    order.join(" ")
}

#[test]
fn peer_order_go_compat_least_active_work_first() {
    // Equal active work: more pending first (b), then arrival (a, c). Then the least active
    // work: b (1), c (2), a (3); then only b has work left.
    let mut queue = Queue::<GoCompat>::with_merger_and_policy(unlimited(), Dedup, GoCompat);
    assert_eq!(peer_order(&mut queue), "b3 a1 c6 b4 c7 a2 b5");
}

#[test]
fn peer_order_fair_least_work_received_first() {
    // Fair: one task each in arrival order, then whoever has received the fewest bytes.
    let mut queue: Queue = Queue::new(unlimited());
    assert_eq!(peer_order(&mut queue), "a1 b3 c6 b4 c7 a2 b5");
}

#[test]
fn pops_tasks_until_target_work() {
    let mut queue: Queue = Queue::new(unlimited());
    let _ = queue.push_tasks(&"p", (0..10).map(|t| task(t, 0, 10)));
    let popped = queue.pop_tasks(25).expect("pending");
    assert_eq!(topics(&popped), [0, 1, 2]);
    assert_eq!((popped.pending_tasks, popped.pending_work), (7, 70));
    // A target of zero still pops one task; an oversized task is popped alone.
    assert_eq!(topics(&queue.pop_tasks(0).expect("pending")), [3]);
    let _ = queue.push_tasks(&"q", [task(0, 0, 1 << 30)]);
    assert_eq!(topics(&queue.pop_tasks(1).expect("pending")), [0]);
}

#[test]
fn peer_at_its_limit_is_skipped_not_returned_empty() {
    // go-peertaskqueue looks only at its top peer: if that peer is at its limit, PopTasks
    // returns nothing although others have work. Here the capped peer is skipped.
    let config = unlimited().with_max_active_work_per_peer(100);
    let mut queue: Queue<GoCompat> = Queue::with_merger_and_policy(config, Dedup, GoCompat);
    let _ = queue.push_tasks(&"big", (0..10).map(|t| task(t, 0, 100)));
    let first = queue.pop_tasks(1).expect("pending");
    assert_eq!(first.peer, "big");
    let _ = queue.push_tasks(&"small", [task(0, 0, 1)]);
    assert_eq!(queue.pop_tasks(1).expect("small has work").peer, "small");
    assert!(queue.pop_tasks(1).is_none(), "big is at its limit");
    let done = queue.tasks_done(&"big", &first.tasks);
    assert_eq!(done.released, 1);
    assert_eq!(queue.pop_tasks(1).expect("big is back").peer, "big");
}

#[test]
fn active_work_limit_stops_a_pop_early() {
    let config = unlimited().with_max_active_work_per_peer(250);
    let mut queue: Queue = Queue::new(config);
    let _ = queue.push_tasks(&"p", (0..10).map(|t| task(t, 0, 100)));
    // Reaching the limit ends the batch (overshooting by at most one task).
    assert_eq!(
        topics(&queue.pop_tasks(10_000).expect("pending")),
        [0, 1, 2]
    );
    assert!(queue.pop_tasks(10_000).is_none());
    assert_eq!(queue.peer_stats(&"p").expect("present").active_work, 300);
}

#[test]
fn full_peer_evicts_lower_priority_or_rejects() {
    let config = unlimited().with_max_pending_tasks_per_peer(3);
    let mut queue: Queue = Queue::new(config);
    let out = queue.push_tasks(&"p", [task(1, 5, 1), task(2, 1, 1), task(3, 5, 1)]);
    assert!(out.dropped.is_empty());
    // Higher than the lowest (topic 2, priority 1): evicts it.
    let out = queue.push_tasks(&"p", [task(4, 3, 1)]);
    assert_eq!(out.dropped.len(), 1);
    assert_eq!(out.dropped[0].task.topic, 2);
    assert_eq!(out.dropped[0].reason, DropReason::Evicted);
    // Not higher than the lowest (now 3): rejected, returned as is.
    let out = queue.push_tasks(&"p", [task(5, 3, 1)]);
    assert_eq!(out.dropped[0].task.topic, 5);
    assert_eq!(out.dropped[0].reason, DropReason::Rejected);
    // A task for a pending topic merges, whatever the limit.
    let out = queue.push_tasks(&"p", [task(1, 9, 1)]);
    assert_eq!((out.merged, out.dropped.len()), (1, 0));
    let pending = queue.peer_topics(&"p").expect("present").pending;
    assert_eq!(pending, [1, 3, 4]);
}

#[test]
fn peer_limit_rejects_new_peers() {
    let mut queue: Queue = Queue::new(unlimited().with_max_peers(1));
    assert!(queue.push_tasks(&"a", [task(1, 0, 1)]).peer_added);
    let out = queue.push_tasks(&"b", [task(1, 0, 1), task(2, 0, 1)]);
    assert!(!out.peer_added);
    assert_eq!(out.dropped.len(), 2);
    assert!(!queue.contains_peer(&"b"));
}

fn have(topic: u32, priority: i32, tag: u32) -> Task<u32, Data> {
    Task::new(topic, priority, 8, Data { block: false, tag })
}

fn block(topic: u32, priority: i32, tag: u32) -> Task<u32, Data> {
    Task::new(topic, priority, 1000, Data { block: true, tag })
}

/// The model's `Upgrade` merger, over `u32` topics.
#[derive(Debug, Default, Clone, Copy)]
struct UpgradeU32;

impl peer_task_queue::TaskMerger<u32, Data> for UpgradeU32 {
    type ActiveInfo = bool;
    fn active_info(&self, task: &Task<u32, Data>) -> bool {
        task.data.block
    }
    fn has_new_info(
        &self,
        new: &Task<u32, Data>,
        mut active: peer_task_queue::ActiveTasks<'_, bool>,
    ) -> bool {
        new.data.block && !active.any(|b| *b)
    }
    fn merge(&self, new: Task<u32, Data>, work: &mut u64, data: &mut Data) {
        if new.data.block && !data.block {
            data.block = true;
            *work = new.work;
        }
    }
}

type UpgradeQueue = PeerTaskQueue<&'static str, u32, Data, UpgradeU32>;

#[test]
fn want_have_then_want_block_merge_into_one_block_task() {
    let mut queue = UpgradeQueue::new(unlimited());
    let out = queue.push_tasks(&"p", [have(1, 1, 1), have(2, 5, 2)]);
    assert_eq!(out.queued, 2);
    assert_eq!(queue.stats().pending_work, 16);
    // The want-block for topic 1 upgrades the pending want-have: its work becomes the block
    // size and its priority rises to the new one (it never falls).
    let out = queue.push_tasks(&"p", [block(1, 9, 3), have(2, 0, 4)]);
    assert_eq!((out.queued, out.merged), (0, 2));
    assert_eq!(queue.stats().pending_work, 1008);
    let popped = queue.pop_tasks(1).expect("pending");
    assert_eq!(topics(&popped), [1]);
    assert!(popped.tasks[0].task.data.block);
    assert_eq!(popped.tasks[0].task.data.tag, 1);
    assert_eq!(popped.tasks[0].task.priority, 9);
    assert_eq!(topics(&queue.pop_tasks(1).expect("pending")), [2]);
    assert_eq!(queue.pop_tasks(1), None);
}

#[test]
fn tasks_for_active_topics_queue_only_with_new_info() {
    let mut queue = UpgradeQueue::new(unlimited());
    let _ = queue.push_tasks(&"p", [have(1, 0, 1), block(2, 0, 2)]);
    let popped = queue.pop_tasks(u64::MAX).expect("pending");
    assert_eq!(popped.tasks.len(), 2);
    // HAVE for 1 is being sent: a want-block for 1 is news and queues.
    // A block for 2 is being sent: a want-have or want-block for 2 adds nothing.
    let out = queue.push_tasks(&"p", [block(1, 0, 3), have(2, 0, 4), block(2, 0, 5)]);
    assert_eq!((out.queued, out.merged), (1, 2));
    assert_eq!(queue.peer_topics(&"p").expect("present").pending, [1]);
}

#[test]
fn idle_peers_leave_at_once_and_calls_say_so() {
    let mut queue: Queue = Queue::new(unlimited());
    assert!(
        queue
            .push_tasks(&"p", [task(1, 0, 1), task(2, 0, 1)])
            .peer_added
    );
    assert!(!queue.push_tasks(&"p", [task(3, 0, 1)]).peer_added);
    let popped = queue.pop_tasks(1).expect("pending");
    let removed = queue.remove(&"p", &2);
    assert!(removed.task.is_some() && !removed.peer_removed);
    let removed = queue.remove(&"p", &3);
    assert!(!removed.peer_removed, "one task is still active");
    // Cancelling an active task does nothing: it is on its way.
    assert!(queue.remove(&"p", &1).task.is_none());
    let done = queue.tasks_done(&"p", &popped.tasks);
    assert!(done.peer_removed);
    assert!(queue.is_empty());
    assert_eq!(queue.stats(), Default::default());
    // Reporting the same tasks again is harmless.
    assert_eq!(queue.tasks_done(&"p", &popped.tasks).released, 0);
}

#[test]
fn clear_peer_forgets_pending_and_active() {
    let mut queue: Queue = Queue::new(unlimited());
    let _ = queue.push_tasks(&"p", [task(1, 0, 5), task(2, 0, 7)]);
    let popped = queue.pop_tasks(1).expect("pending");
    let cleared = queue.clear_peer(&"p").expect("present");
    assert_eq!((cleared.pending_tasks, cleared.active_tasks), (1, 1));
    assert_eq!(queue.stats(), Default::default());
    assert_eq!(queue.clear_peer(&"p"), None);
    // A new life of the same peer is not disturbed by the old tasks' completion.
    let _ = queue.push_tasks(&"p", [task(1, 0, 5)]);
    let again = queue.pop_tasks(1).expect("pending");
    assert_eq!(queue.tasks_done(&"p", &popped.tasks).released, 0);
    assert_eq!(queue.tasks_done(&"p", &again.tasks).released, 1);
    assert!(queue.is_empty());
}

/// boxo#1141: a peer with one want waited for minutes behind peers with large wantlists.
/// Ten peers with 1000 wants each keep the queue busy; senders complete every batch at once.
fn pops_until_light_peer<Pol: Policy>(mut queue: Queue<Pol>) -> usize {
    let heavy = ["h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8", "h9"];
    for (i, peer) in heavy.iter().enumerate() {
        let _ = queue.push_tasks(peer, (0..1000).map(|t| task(t, i as i32, 16 * 1024)));
    }
    for _ in 0..25 {
        let _ = pop_done(&mut queue, 16 * 1024);
    }
    let _ = queue.push_tasks(&"light", [task(0, 0, 16 * 1024)]);
    let mut pops = 0;
    while queue.contains_peer(&"light") {
        pops += 1;
        let _ = pop_done(&mut queue, 16 * 1024);
        assert!(pops < 20_000, "light peer never served");
    }
    pops
}

#[test]
fn light_peer_is_served_within_the_bound_under_fair() {
    let pops = pops_until_light_peer::<Fair>(Queue::new(unlimited()));
    assert!(pops <= 11, "{pops} pops > 11 backlogged peers");
}

#[test]
fn light_peer_starves_under_go_compat() {
    // The reproduction of go-peertaskqueue's comparator shows the defect: more pending wins
    // between equal active work, so the light peer waits until the heavy wantlists drain.
    let queue = Queue::<GoCompat>::with_merger_and_policy(unlimited(), Dedup, GoCompat);
    let pops = pops_until_light_peer(queue);
    assert!(pops > 9_000, "{pops}");
}

/// Work popped per peer over `pops` pops while every peer stays backlogged.
fn work_shares(queue: &mut Queue, peers: &[&'static str], pops: usize) -> Vec<u64> {
    let mut shares = vec![0; peers.len()];
    for _ in 0..pops {
        let popped = queue.pop_tasks(1).expect("pending");
        let i = peers.iter().position(|p| *p == popped.peer).expect("known");
        shares[i] += popped.tasks.iter().map(|t| t.task.work).sum::<u64>();
        let _ = queue.tasks_done(&popped.peer, &popped.tasks);
    }
    shares
}

#[test]
fn fair_is_byte_fair_whatever_the_task_sizes() {
    // One peer asks for 256 KiB blocks, the other for 1 KiB ones: each gets the same bytes.
    let mut queue: Queue = Queue::new(unlimited());
    let _ = queue.push_tasks(&"big", (0..1000).map(|t| task(t, 0, 256 * 1024)));
    let _ = queue.push_tasks(&"small", (0..100_000).map(|t| task(t, 0, 1024)));
    let shares = work_shares(&mut queue, &["big", "small"], 257 * 20);
    let ratio = shares[0] as f64 / shares[1] as f64;
    assert!((0.95..1.05).contains(&ratio), "{shares:?}");
}

#[test]
fn weights_scale_the_share() {
    let mut queue: Queue = Queue::new(unlimited());
    let _ = queue.push_tasks(&"one", (0..10_000).map(|t| task(t, 0, 1000)));
    let _ = queue.push_tasks(&"three", (0..10_000).map(|t| task(t, 0, 1000)));
    assert!(queue.set_peer_weight(&"three", NonZeroU32::new(3).expect("non-zero")));
    assert!(!queue.set_peer_weight(&"absent", NonZeroU32::MIN));
    let shares = work_shares(&mut queue, &["one", "three"], 4000);
    assert_eq!(shares, [1_000_000, 3_000_000]);
    assert_eq!(queue.peer_stats(&"three").expect("present").weight.get(), 3);
}

#[test]
fn a_late_peer_gets_no_credit_for_the_past() {
    // "old" has been served alone for a long time; "new" arrives and gets its fair share from
    // then on, not a burst that would make up for the time it was absent.
    let mut queue: Queue = Queue::new(unlimited());
    let _ = queue.push_tasks(&"old", (0..10_000).map(|t| task(t, 0, 100)));
    for _ in 0..1000 {
        let _ = pop_done(&mut queue, 1);
    }
    let _ = queue.push_tasks(&"new", (0..10_000).map(|t| task(t, 0, 100)));
    let order: Vec<&str> = (0..10).map(|_| pop_done(&mut queue, 1).0).collect();
    assert_eq!(
        order,
        [
            "new", "old", "new", "old", "new", "old", "new", "old", "new", "old"
        ]
    );
}

#[test]
fn a_drained_peer_keeps_no_debt() {
    // A peer that took a huge task, went idle and came back is served within the bound.
    let mut queue: Queue = Queue::new(unlimited());
    let _ = queue.push_tasks(&"a", (0..100).map(|t| task(t, 0, 10)));
    let _ = queue.push_tasks(&"b", (0..100).map(|t| task(t, 0, 10)));
    let _ = queue.push_tasks(&"huge", [task(0, 0, 1 << 40)]);
    let mut order = Vec::new();
    for _ in 0..3 {
        order.push(pop_done(&mut queue, 1).0);
    }
    assert_eq!(order, ["a", "b", "huge"]);
    let _ = queue.push_tasks(&"huge", [task(1, 0, 1 << 40)]);
    let next: Vec<&str> = (0..3).map(|_| pop_done(&mut queue, 1).0).collect();
    assert!(next.contains(&"huge"), "{next:?}");
}

#[test]
fn extreme_work_values_saturate_instead_of_overflowing() {
    let mut queue: Queue = Queue::new(unlimited());
    let _ = queue.push_tasks(&"p", [task(1, 0, u64::MAX), task(2, 0, u64::MAX)]);
    let _ = queue.push_tasks(&"q", [task(1, 0, u64::MAX)]);
    assert_eq!(queue.stats().pending_work, u64::MAX);
    let mut popped = Vec::new();
    while let Some(p) = queue.pop_tasks(u64::MAX) {
        popped.push(p);
    }
    assert_eq!(popped.len(), 3);
    assert_eq!(queue.stats().active_work, u64::MAX);
    for p in &popped {
        let _ = queue.tasks_done(&p.peer, &p.tasks);
    }
    assert!(queue.is_empty());
    queue.check_invariants().expect("consistent");
}

#[test]
fn a_merger_may_change_work_and_sums_follow() {
    let mut queue = UpgradeQueue::new(unlimited());
    let _ = queue.push_tasks(&"p", [have(1, 0, 1)]);
    let _ = queue.push_tasks(&"p", [block(1, 0, 2)]);
    assert_eq!(queue.peer_stats(&"p").expect("present").pending_work, 1000);
    let _ = queue.pop_tasks(1);
    assert_eq!(queue.stats().active_work, 1000);
    queue.check_invariants().expect("consistent");
}

#[test]
fn pop_tasks_into_appends_to_the_callers_vector() {
    let mut queue: PeerTaskQueue<&str, u32, ()> = PeerTaskQueue::new(Config::default());
    let _ = queue.push_tasks(&"a", [Task::new(1, 2, 10, ()), Task::new(2, 1, 10, ())]);
    let _ = queue.push_tasks(&"b", [Task::new(3, 1, 10, ())]);
    let mut tasks = Vec::new();
    let served = queue.pop_tasks_into(10, &mut tasks).expect("a is pending");
    assert_eq!(
        (served.peer, served.tasks, served.pending_tasks),
        ("a", 1, 1)
    );
    assert_eq!(served.pending_work, 10);
    let served = queue.pop_tasks_into(10, &mut tasks).expect("b is pending");
    assert_eq!((served.peer, served.tasks), ("b", 1));
    // Appended after a's task, which is still there.
    let topics: Vec<u32> = tasks.iter().map(|t| t.task.topic).collect();
    assert_eq!(topics, [1, 3]);
    assert_eq!(queue.tasks_done(&"a", &tasks[..1]).released, 1);
    assert_eq!(queue.tasks_done(&"b", &tasks[1..]).released, 1);
    tasks.clear();
    assert_eq!(
        queue.pop_tasks_into(10, &mut tasks).expect("a again").tasks,
        1
    );
    let _ = queue.tasks_done(&"a", &tasks);
    tasks.clear();
    assert!(queue.pop_tasks_into(10, &mut tasks).is_none());
    assert!(tasks.is_empty() && queue.is_empty());
}

#[test]
fn a_paused_peer_is_skipped_and_its_tasks_gather_until_resumed() {
    paused_scenario(&mut Queue::<Fair>::new(unlimited()));
    paused_scenario(&mut Queue::<GoCompat>::with_merger_and_policy(
        unlimited(),
        Dedup,
        GoCompat,
    ));
}

fn paused_scenario<Pol: Policy>(queue: &mut Queue<Pol>) {
    let _ = queue.push_tasks(&"a", [task(1, 1, 10)]);
    let _ = queue.push_tasks(&"b", [task(2, 1, 10)]);
    assert!(
        !queue.set_peer_paused(&"nobody", true),
        "unknown peers are refused"
    );
    assert!(queue.set_peer_paused(&"a", true));
    assert!(queue.is_peer_paused(&"a"));
    // Only b is popped while a is paused; a's new tasks gather.
    assert_eq!(pop_done(queue, 1), ("b", vec![2]));
    let _ = queue.push_tasks(&"a", [task(3, 1, 10)]);
    assert!(queue.pop_tasks(1).is_none(), "a is paused");
    assert!(queue.set_peer_paused(&"a", false));
    assert_eq!(pop_done(queue, 100), ("a", vec![1, 3]));
    queue.check_invariants().expect("invariants");
}
