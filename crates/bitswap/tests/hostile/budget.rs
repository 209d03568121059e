//! One peer cannot hold the shared inbound byte budget: eight streams of one connection that
//! each send the length of a 4 MiB message and stall, while the node downloads from an honest
//! server and an honest peer sends it a wantlist larger than a connection's own room.

use std::time::{Duration, Instant};

use bitswap::{
    Behaviour, BlockPresenceType, Config, Entry, MemoryBlockstore, Message, Wantlist, network,
};
use cid::Cid;
use futures::{AsyncWriteExt, StreamExt};
use libp2p::swarm::SwarmEvent;
use multihash_codetable::{Code, MultihashDigest};
use tokio::time::timeout;

use super::harness::*;

/// Streams the attacker stalls.
const STALLED: usize = 8;
/// The length each stalled stream declares: a message just under 4 MiB.
const DECLARED: usize = 4 * 1024 * 1024 - 64;

/// Opens [`STALLED`] streams on one connection, each with the length of a message just under
/// 4 MiB and `sent` bytes of it, and holds them.
async fn stall(mut control: libp2p_stream::Control, peer: libp2p::PeerId, sent: usize) {
    let mut writers = Vec::new();
    for _ in 0..STALLED {
        let Ok(mut stream) = control.open_stream(peer, V1_2_0).await else {
            return;
        };
        let mut prefix = [0u8; 10];
        let mut frame = unsigned_varint::encode::usize(DECLARED, &mut prefix).to_vec();
        frame.resize(frame.len() + sent, 0);
        // Each stream writes on its own: a stream the node does not read yet must not hold
        // back the others.
        writers.push(AbortOnDrop(tokio::spawn(async move {
            if stream.write_all(&frame).await.is_ok() {
                let _ = stream.flush().await;
            }
            std::future::pending::<()>().await;
        })));
    }
    std::future::pending::<()>().await;
}

/// The node under attack downloads a fresh set of 32 blocks of 256 KiB from the server;
/// returns how long it took.
async fn download(control: &bitswap::Control, set: u64) -> Duration {
    let cids: Vec<Cid> = (0..u64::from(BLOCKS))
        .map(|i| *raw_block(BLOCK_SIZE, 1_000 * (set + 1) + i).cid())
        .collect();
    timed_fetch(control, cids).await
}

/// A server holding three sets of 32 blocks (for the warm-up, the normal and the attacked
/// download).
async fn server() -> Target {
    let blocks: Vec<_> = (0..3u64)
        .flat_map(|set| {
            (0..u64::from(BLOCKS)).map(move |i| raw_block(BLOCK_SIZE, 1_000 * (set + 1) + i))
        })
        .collect();
    target_with(blocks).await
}

/// Resets the peak RSS, connects an attacker to `target` whose streams stall after `sent`
/// bytes of their bodies, and lets it get going for 300 ms. Returns the RSS before, then the
/// guards of the attacker's swarm and of its attack (each ends its task when dropped).
async fn stalling_attack(target: &Target, sent: usize) -> (u64, AbortOnDrop, AbortOnDrop) {
    reset_peak_rss();
    let before = rss();
    let (control, swarm_task) = attacker(target).await;
    let swarm_task = AbortOnDrop(swarm_task);
    let attack = AbortOnDrop(tokio::spawn(stall(control, target.peer, sent)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    (before, swarm_task, attack)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_do_not_hold_back_the_node_s_downloads() {
    let server = server().await;
    let mut swarm: Node = new_swarm(Behaviour::new(MemoryBlockstore::new(), Config::default()));
    let address = listen(&mut swarm).await;
    connect(&mut swarm, server.peer, server.address.clone()).await;
    let control = swarm.behaviour().control();
    let node = Target {
        peer: *swarm.local_peer_id(),
        address,
        blocks: Vec::new(),
        driver: Driver::start(swarm),
        attacker: None,
    };
    download(&control, 0).await;
    let normal = download(&control, 1).await;
    let (before, _swarm_task, attack) = stalling_attack(&node, 1024).await;
    let attacked = download(&control, 2).await;
    drop(attack);
    eprintln!(
        "stalled bodies: download {normal:?} alone, {attacked:?} under attack; {}",
        memory_report(before)
    );
    assert_twice_normal("the download", attacked, normal);
}

/// An honest peer (the message layer alone) sends one wantlist of 3,000 want-haves, the
/// target's 32 blocks first; returns how long until every one of them is answered HAVE.
async fn large_wantlist(target: &Target, seed: u64) -> Duration {
    let mut peer = new_swarm(network::Behaviour::new(network::Config::default()));
    connect(&mut peer, target.peer, target.address.clone()).await;
    let mut entries: Vec<Entry> = target
        .blocks
        .iter()
        .map(|b| Entry {
            send_dont_have: false,
            ..Entry::want_have(*b.cid(), 2)
        })
        .collect();
    entries.extend((0..3_000 - entries.len() as u64).map(|i| {
        let cid = Cid::new_v1(
            0x55,
            Code::Sha2_256.digest(&[seed.to_le_bytes(), i.to_le_bytes()].concat()),
        );
        Entry {
            send_dont_have: false,
            ..Entry::want_have(cid, 1)
        }
    }));
    let message = Message {
        wantlist: Wantlist {
            entries,
            full: false,
        },
        ..Message::default()
    };
    assert!(
        frame(&message).len() > 64 * 1024,
        "over a connection's own room"
    );
    let start = Instant::now();
    peer.behaviour_mut()
        .send(target.peer, message)
        .expect("send");
    let mut haves = 0;
    timeout(TIMEOUT, async {
        while haves < target.blocks.len() {
            if let SwarmEvent::Behaviour(network::Event::Message { message, .. }) =
                peer.select_next_some().await
            {
                haves += message
                    .presences
                    .iter()
                    .filter(|p| p.presence == BlockPresenceType::Have)
                    .count();
            }
        }
    })
    .await
    .expect("the wantlist answered in time");
    start.elapsed()
}

/// Runs [`large_wantlist`] alone, then while the attacker's streams stall after `sent` bytes
/// of their bodies.
async fn large_wantlist_under_stalls(name: &str, sent: usize) {
    let target = target().await;
    large_wantlist(&target, 1).await;
    let normal = large_wantlist(&target, 2).await;
    let (before, _swarm_task, attack) = stalling_attack(&target, sent).await;
    let attacked = large_wantlist(&target, 3).await;
    drop(attack);
    eprintln!(
        "{name}: 3,000-entry wantlist answered in {normal:?} alone, {attacked:?} under attack; \
         {}",
        memory_report(before)
    );
    assert_twice_normal(&format!("{name}: the wantlist"), attacked, normal);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_do_not_hold_back_a_large_wantlist() {
    large_wantlist_under_stalls("stalled bodies", 1024).await;
}

/// Bodies sent all but their last bytes hold the connection's part of the budget (8 MiB), not
/// the whole budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nearly_whole_stalled_bodies_do_not_hold_back_a_large_wantlist() {
    large_wantlist_under_stalls("nearly whole bodies", DECLARED - 16).await;
}
