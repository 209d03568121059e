//! The second round, decoding: messages whose decoded form would be far larger than their
//! wire size (empty legacy blocks, empty wantlist entries), and wantlists whose wants must all
//! be answered however many cancels come with them or however far past the per-message cap
//! they go.

use std::{collections::HashSet, sync::Arc, time::Duration};

use bitswap::{BlockPresenceType, Entry, Message};
use cid::Cid;
use futures::{AsyncWriteExt, StreamExt, channel::mpsc};
use libp2p::PeerId;
use multihash_codetable::{Code, MultihashDigest};
use tokio::time::timeout;

use super::harness::*;

/// Streams the attacker writes on at once, one message each: 8 x 4 MiB fill the node's
/// inbound byte budget (32 MiB), so all eight are read and decoded at the same time.
const STREAMS: usize = 8;

/// Body bytes of each amplification message: just under the 4 MiB limit.
const BODY: usize = 4 * 1024 * 1024 - 8;

/// A length-prefixed frame of `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut len = unsigned_varint::encode::usize_buffer();
    let mut frame = unsigned_varint::encode::usize(body.len(), &mut len).to_vec();
    frame.extend_from_slice(body);
    frame
}

/// About two million empty legacy `blocks` (field 2): `0x12 0x00` repeated.
fn empty_blocks_frame() -> Vec<u8> {
    framed(&[0x12, 0x00].repeat(BODY / 2))
}

/// About two million empty entries (`0x0a 0x00`) inside one wantlist (field 1).
fn empty_entries_frame() -> Vec<u8> {
    let entries = [0x0a, 0x00].repeat((BODY - 8) / 2);
    let mut len = unsigned_varint::encode::usize_buffer();
    let mut body = vec![0x0a];
    body.extend_from_slice(unsigned_varint::encode::usize(entries.len(), &mut len));
    body.extend_from_slice(&entries);
    framed(&body)
}

/// The attacker writes `frame` once on each of [`STREAMS`] streams at once and holds them
/// open, while an honest peer fetches: the node's peak RSS may grow by at most 64 MiB (the
/// bodies alone are 32 MiB), and the fetch must stay within twice its normal time.
async fn eight_at_once(name: &str, frame: Vec<u8>) -> Target {
    let frame = Arc::new(frame);
    let mut target = target().await;
    honest_fetch(&target).await;
    let normal = honest_fetch(&target).await;
    let (control, swarm_task) = attacker(&target).await;
    reset_peak_rss();
    let (before, peak_before) = (rss(), peak_rss());
    let (written_tx, mut written) = mpsc::channel::<()>(STREAMS);
    let mut tasks = Vec::new();
    for _ in 0..STREAMS {
        let (mut control, frame, peer) = (control.clone(), Arc::clone(&frame), target.peer);
        let mut written_tx = written_tx.clone();
        tasks.push(AbortOnDrop(tokio::spawn(async move {
            let Ok(mut stream) = control.open_stream(peer, V1_2_0).await else {
                return;
            };
            let _ = stream.write_all(&frame).await;
            let _ = stream.flush().await;
            let _ = written_tx.try_send(());
            std::future::pending::<()>().await;
        })));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let attacked = honest_fetch(&target).await;
    // Every frame was taken in by the node (the bodies fit its budget together), and the
    // node had time to decode them all before the peak is read.
    for _ in 0..STREAMS {
        let _ = timeout(TIMEOUT, written.next()).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (after, peak) = (rss(), peak_rss());
    drop(tasks);
    target.attacker = Some(AbortOnDrop(swarm_task));
    eprintln!(
        "{name}: honest fetch {normal:?} alone, {attacked:?} under attack; RSS {} -> {} MiB, \
         peak {} -> {} MiB",
        before >> 20,
        after >> 20,
        peak_before >> 20,
        peak >> 20
    );
    assert!(
        peak.saturating_sub(peak_before) <= 64 * MIB,
        "{name}: peak RSS grew from {} to {} MiB",
        peak_before >> 20,
        peak >> 20
    );
    assert_twice_normal(&format!("{name}: the honest peer"), attacked, normal);
    target
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_messages_of_empty_legacy_blocks() {
    let target = eight_at_once("empty legacy blocks", empty_blocks_frame()).await;
    let node = target.driver.stop().await;
    // The empty block (a valid CIDv0 block) was never wanted, so never stored.
    assert_eq!(node.behaviour().store().len(), BLOCKS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_messages_of_empty_wantlist_entries() {
    let target = eight_at_once("empty wantlist entries", empty_entries_frame()).await;
    let node = target.driver.stop().await;
    let server = node.behaviour().server();
    server.check_invariants().expect("server invariants");
    for peer in server.peers() {
        assert!(
            server.peer_wantlist(peer).is_empty(),
            "no empty CID is a want"
        );
    }
}

fn random_cid(seed: u64) -> Cid {
    Cid::new_v1(0x55, Code::Sha2_256.digest(&seed.to_le_bytes()))
}

/// A raw 1.2.0 peer of `target` that sends `messages` on one stream, one after the other,
/// and returns the CIDs of every presence and block the node answers with until `expected`
/// are all answered or 20 s pass. The peer stays connected until the returned guard is
/// dropped, so that the node still holds its wants.
async fn answers(
    target: &Target,
    messages: Vec<Message>,
    expected: &HashSet<Cid>,
) -> (HashSet<Cid>, AbortOnDrop) {
    let (mut control, swarm_task) = attacker(target).await;
    let swarm = AbortOnDrop(swarm_task);
    let mut incoming = control.accept(V1_2_0).expect("accept");
    let (answers_tx, mut answers_rx) = mpsc::channel::<Cid>(4096);
    let _reader = AbortOnDrop(tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let mut answers_tx = answers_tx.clone();
            tokio::spawn(async move {
                while let Ok(Some(message)) = bitswap::protocol::read_message(&mut stream).await {
                    for presence in &message.presences {
                        assert_eq!(presence.presence, BlockPresenceType::DontHave);
                        let _ = answers_tx.try_send(presence.cid);
                    }
                    for block in &message.blocks {
                        let _ = answers_tx.try_send(*block.cid());
                    }
                }
            });
        }
    }));
    let mut stream = open_stream(&mut control, target).await;
    for message in &messages {
        stream.write_all(&frame(message)).await.expect("write");
    }
    stream.flush().await.expect("flush");
    let mut got = HashSet::new();
    let _ = timeout(Duration::from_secs(20), async {
        while !expected.is_subset(&got) {
            match answers_rx.next().await {
                Some(cid) => {
                    got.insert(cid);
                }
                None => return,
            }
        }
    })
    .await;
    // Anything else the node had queued arrives by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    while let Ok(cid) = answers_rx.try_recv() {
        got.insert(cid);
    }
    (got, swarm)
}

/// Stops the node and returns the wants its server holds, of every peer.
async fn wants_held(target: Target) -> HashSet<Cid> {
    let node = target.driver.stop().await;
    let server = node.behaviour().server();
    server.check_invariants().expect("server invariants");
    let peers: Vec<PeerId> = server.peers().copied().collect();
    peers
        .iter()
        .flat_map(|peer| server.peer_wantlist(peer))
        .map(|entry| entry.cid)
        .collect()
}

/// 200 want-blocks (no DONT_HAVE asked, so they stay unanswered), then one message of their
/// 200 cancels and 1,000 new want-haves: every cancel applies and every want is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_do_not_count_against_the_entry_cap() {
    let target = target().await;
    let first: Vec<Cid> = (0..200).map(random_cid).collect();
    let wants: Vec<Cid> = (1000..2000).map(random_cid).collect();
    let before = Message::wantlist_update(
        first
            .iter()
            .map(|cid| Entry {
                send_dont_have: false,
                ..Entry::want_block(*cid, 1)
            })
            .collect(),
    );
    let mut entries: Vec<Entry> = first.iter().map(|cid| Entry::cancel(*cid)).collect();
    entries.extend(wants.iter().map(|cid| Entry::want_have(*cid, 1)));
    let expected: HashSet<Cid> = wants.iter().copied().collect();
    let (got, _peer) = answers(
        &target,
        vec![before, Message::wantlist_update(entries)],
        &expected,
    )
    .await;
    let missing = expected.difference(&got).count();
    assert_eq!(missing, 0, "{missing} of 1000 wants unanswered");
    let held = wants_held(target).await;
    let kept = first.iter().filter(|cid| held.contains(cid)).count();
    assert_eq!(kept, 0, "{kept} cancelled wants still held");
    // The wants stay, as boxo keeps them after a DONT_HAVE (the block may come later).
    assert_eq!(held.len(), 1000);
}

/// 1,500 want-haves asking for DONT_HAVE in one message: 1,024 are taken as wants, the rest
/// are over the per-message cap, and every one gets its DONT_HAVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wants_past_the_cap_are_answered_dont_have() {
    let target = target().await;
    let wants: Vec<Cid> = (5000..6500).map(random_cid).collect();
    let expected: HashSet<Cid> = wants.iter().copied().collect();
    let message =
        Message::wantlist_update(wants.iter().map(|cid| Entry::want_have(*cid, 1)).collect());
    let (got, _peer) = answers(&target, vec![message], &expected).await;
    let missing = expected.difference(&got).count();
    assert_eq!(missing, 0, "{missing} of 1500 wants unanswered");
    // The node keeps the wants of its per-message cap, not the ones past it.
    assert_eq!(wants_held(target).await.len(), 1024);
}
