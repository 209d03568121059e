//! Peers that never read cannot pin the server's envelopes: three of them want every large
//! block and stop reading, while an honest peer fetches.

use std::time::Duration;

use bitswap::{Entry, Message, network};
use futures::StreamExt;
use libp2p::{Swarm, swarm::SwarmEvent};
use tokio::time::timeout;

use super::harness::*;

/// A peer (the message layer alone) that asks `target` for every block and then is never
/// polled again, so its connection stops reading.
async fn lazy_peer(target: &Target) -> Swarm<network::Behaviour> {
    let mut lazy = new_swarm(network::Behaviour::new(network::Config::default()));
    connect(&mut lazy, target.peer, target.address.clone()).await;
    let mut want = Message::default();
    for block in &target.blocks {
        want.wantlist
            .entries
            .push(Entry::want_block(*block.cid(), 1));
    }
    lazy.behaviour_mut().send(target.peer, want).expect("send");
    timeout(TIMEOUT, async {
        loop {
            if let SwarmEvent::Behaviour(network::Event::MessageSent { .. }) =
                lazy.select_next_some().await
            {
                return;
            }
        }
    })
    .await
    .expect("wants sent");
    lazy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_that_never_read_do_not_stall_an_honest_fetch() {
    let target = target().await;
    honest_fetch(&target).await;
    let normal = honest_fetch(&target).await;
    reset_peak_rss();
    let before = rss();
    let mut lazy = Vec::new();
    for _ in 0..3 {
        lazy.push(lazy_peer(&target).await);
    }
    // Let the server fill their streams.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attacked = honest_fetch(&target).await;
    let after = rss();
    eprintln!(
        "3 peers never read: honest fetch {normal:?} alone, {attacked:?} under attack; {}",
        memory_report(before)
    );
    assert!(
        attacked <= normal * 2 + NOISE,
        "took {attacked:?}, normally {normal:?}"
    );
    // What waits for each lazy peer is bounded by its outstanding bytes (1 MiB, one task
    // more) plus transport buffers.
    assert!(after.saturating_sub(before) < 64 * MIB);
    drop(lazy);
}
