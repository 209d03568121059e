//! The message layer ([`bitswap::network`]): swarms over loopback TCP (Noise, Yamux)
//! exchanging Bitswap messages, plus raw peers that
//! write the wire format by hand the way kubo and Helia use streams.

mod common;

use ipfs_blockstore::testing;
use std::time::Duration;

use bitswap::{
    Block, BlockPresence, BlockPresenceType, Entry, Message, Version, WantType, Wantlist,
    network::{Behaviour, Config, Event, InboundFailure, MessageId, SendError, SendFailure},
    protocol::ProtocolError,
};
use cid::Cid;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt, channel::mpsc};
use libp2p::{
    PeerId, StreamProtocol, Swarm, SwarmBuilder, identify, identity, noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use multihash_codetable::{Code, MultihashDigest};
use tokio::time::timeout;

use common::{bytes, listen, new_swarm};

/// Bound of every wait in these tests.
const TIMEOUT: Duration = Duration::from_secs(30);

fn node(config: Config) -> Swarm<Behaviour> {
    new_swarm(Behaviour::new(config))
}

/// A CIDv1 raw block of `len` bytes.
fn raw_block(len: usize, seed: u8) -> Block {
    testing::raw_block(u64::from(seed), len)
}

/// A CIDv0 block (what 1.0.0 peers can receive).
fn v0_block(len: usize, seed: u8) -> Block {
    Block::from_v0_data(bytes(len, u32::from(seed))).expect("valid block")
}

fn cid(seed: u8) -> Cid {
    *raw_block(8, seed).cid()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Drives both swarms until `f` returns something, for at most [`TIMEOUT`].
async fn drive<T>(
    a: &mut Swarm<Behaviour>,
    b: &mut Swarm<Behaviour>,
    mut f: impl FnMut(Side, SwarmEvent<Event>) -> Option<T>,
) -> T {
    timeout(TIMEOUT, async {
        loop {
            let (side, event) = tokio::select! {
                event = a.select_next_some() => (Side::A, event),
                event = b.select_next_some() => (Side::B, event),
            };
            if let Some(out) = f(side, event) {
                return out;
            }
        }
    })
    .await
    .expect("timed out driving the swarms")
}

/// Dials `b` from `a` and waits until both report the peer connected.
async fn connect(a: &mut Swarm<Behaviour>, b: &mut Swarm<Behaviour>) {
    let address = listen(b).await;
    a.dial(address).expect("dial");
    let (mut a_connected, mut b_connected) = (false, false);
    drive(a, b, |side, event| {
        if let SwarmEvent::Behaviour(Event::PeerConnected { .. }) = event {
            match side {
                Side::A => a_connected = true,
                Side::B => b_connected = true,
            }
        }
        (a_connected && b_connected).then_some(())
    })
    .await;
}

/// Drives both swarms until `side` received `count` messages; returns them.
async fn receive(
    a: &mut Swarm<Behaviour>,
    b: &mut Swarm<Behaviour>,
    side: Side,
    count: usize,
) -> Vec<Message> {
    let mut received = Vec::new();
    drive(a, b, |s, event| {
        if let SwarmEvent::Behaviour(Event::Message { message, .. }) = event
            && s == side
        {
            received.push(message);
        }
        (received.len() >= count).then_some(())
    })
    .await;
    received
}

#[tokio::test]
async fn wantlist_arrives_and_version_is_reported() {
    let mut a = node(Config::default());
    let mut b = node(Config::default());
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    connect(&mut a, &mut b).await;
    assert_eq!(a.behaviour().connected_peers().collect::<Vec<_>>(), [&b_id]);

    let message = Message::wantlist_update(vec![
        Entry::want_block(cid(1), 10),
        Entry::want_have(cid(2), 5),
        Entry::cancel(cid(3)),
    ]);
    let id = a.behaviour_mut().send(b_id, message.clone()).expect("send");

    let (mut sent, mut received, mut a_version, mut b_version) = (false, None, None, None);
    drive(&mut a, &mut b, |side, event| {
        match (side, event) {
            (Side::A, SwarmEvent::Behaviour(Event::MessageSent { peer, id: sent_id })) => {
                assert_eq!((peer, sent_id), (b_id, id));
                sent = true;
            }
            (Side::A, SwarmEvent::Behaviour(Event::PeerVersion { peer, version })) => {
                assert_eq!(peer, b_id);
                a_version = Some(version);
            }
            (Side::B, SwarmEvent::Behaviour(Event::PeerVersion { peer, version })) => {
                assert_eq!(peer, a_id);
                b_version = Some(version);
            }
            (Side::B, SwarmEvent::Behaviour(Event::Message { peer, message, .. })) => {
                assert_eq!(peer, a_id);
                received = Some(message);
            }
            _ => {}
        }
        (sent && received.is_some() && a_version.is_some() && b_version.is_some()).then_some(())
    })
    .await;
    assert_eq!(received, Some(message));
    assert_eq!(a_version, Some(Version::V1_2_0));
    assert_eq!(b_version, Some(Version::V1_2_0));
    assert_eq!(a.behaviour().peer_version(&b_id), Some(Version::V1_2_0));
    assert_eq!(b.behaviour().peer_version(&a_id), Some(Version::V1_2_0));
    assert_eq!(a.behaviour().queued_messages(&b_id), 0);
}

#[tokio::test]
async fn blocks_arrive_verified() {
    let mut a = node(Config::default());
    let mut b = node(Config::default());
    let a_id = *a.local_peer_id();
    connect(&mut a, &mut b).await;

    let small = raw_block(1024, 1);
    let large = raw_block(2 * 1024 * 1024, 2);
    let other_large = raw_block(2 * 1024 * 1024, 3);
    let first = Message {
        blocks: vec![small.clone(), large.clone()],
        presences: vec![BlockPresence {
            cid: cid(9),
            presence: BlockPresenceType::DontHave,
        }],
        pending_bytes: 12345,
        ..Message::default()
    };
    let second = Message {
        blocks: vec![other_large.clone()],
        ..Message::default()
    };
    b.behaviour_mut().send(a_id, first.clone()).expect("send");
    b.behaviour_mut().send(a_id, second.clone()).expect("send");

    let received = receive(&mut a, &mut b, Side::A, 2).await;
    assert_eq!(received, [first, second]);
    let blocks: Vec<_> = received.iter().flat_map(|m| m.blocks.iter()).collect();
    assert_eq!(blocks, [&small, &large, &other_large]);
    // The receiver rebuilt the CIDs from the bytes.
    assert_eq!(
        blocks[1].cid().hash(),
        &Code::Sha2_256.digest(blocks[1].data())
    );
}

#[tokio::test]
async fn many_messages_arrive_in_order() {
    let mut a = node(Config::default());
    let mut b = node(Config::default());
    let b_id = *b.local_peer_id();
    connect(&mut a, &mut b).await;

    let messages: Vec<_> = (0..200u8)
        .map(|i| Message::wantlist_update(vec![Entry::want_block(cid(i), i32::from(i))]))
        .collect();
    // A first burst, then a second one while the first is being delivered, so several
    // streams carry them one after the other.
    for message in &messages[..100] {
        a.behaviour_mut().send(b_id, message.clone()).expect("send");
    }
    let mut received = receive(&mut a, &mut b, Side::B, 10).await;
    for message in &messages[100..] {
        a.behaviour_mut().send(b_id, message.clone()).expect("send");
    }
    let rest = receive(&mut a, &mut b, Side::B, 200 - received.len()).await;
    received.extend(rest);
    assert_eq!(received, messages);
}

/// Messages B received and ids A saw sent.
#[derive(Default)]
struct Seen {
    received: Vec<Message>,
    sent: Vec<MessageId>,
}

impl Seen {
    fn record(&mut self, side: Side, event: SwarmEvent<Event>) {
        match (side, event) {
            (Side::A, SwarmEvent::Behaviour(Event::MessageSent { id, .. })) => self.sent.push(id),
            (Side::B, SwarmEvent::Behaviour(Event::Message { message, .. })) => {
                self.received.push(message);
            }
            _ => {}
        }
    }
}

#[tokio::test]
async fn concurrent_outbound_streams_deliver_everything() {
    let mut a = node(Config::default().with_max_outbound_streams(4));
    let mut b = node(Config::default());
    let b_id = *b.local_peer_id();
    connect(&mut a, &mut b).await;

    // Small messages interleaved with large ones, so streams overlap.
    let messages: Vec<_> = (0..60u8)
        .map(|i| Message {
            wantlist: Wantlist {
                entries: vec![Entry::want_block(cid(i), 1)],
                full: false,
            },
            blocks: if i % 10 == 0 {
                vec![raw_block(1 << 20, i)]
            } else {
                Vec::new()
            },
            ..Message::default()
        })
        .collect();
    let mut ids = Vec::new();
    let mut seen = Seen::default();
    for chunk in messages.chunks(6) {
        for message in chunk {
            ids.push(a.behaviour_mut().send(b_id, message.clone()).expect("send"));
        }
        // Let the swarms make some progress before the next chunk.
        drive(&mut a, &mut b, |side, event| {
            seen.record(side, event);
            Some(())
        })
        .await;
    }
    drive(&mut a, &mut b, |side, event| {
        seen.record(side, event);
        (seen.received.len() == messages.len() && seen.sent.len() == ids.len()).then_some(())
    })
    .await;
    let Seen {
        mut received,
        mut sent,
    } = seen;
    // Every message arrives once, though not necessarily in order.
    let key = |m: &Message| m.wantlist.entries[0].cid;
    received.sort_by_key(key);
    let mut expected = messages.clone();
    expected.sort_by_key(key);
    assert_eq!(received, expected);
    sent.sort();
    assert_eq!(sent, ids);
}

/// Unordered messages (large ones, so that streams overlap) interleaved with ordered ones:
/// every message arrives once, and the ordered ones arrive in their order.
#[tokio::test]
async fn unordered_messages_spread_and_ordered_ones_keep_their_order() {
    let mut a = node(Config::default().with_max_unordered_streams(4));
    let mut b = node(Config::default());
    let b_id = *b.local_peer_id();
    connect(&mut a, &mut b).await;

    let messages: Vec<_> = (0..40u8)
        .map(|i| Message {
            wantlist: Wantlist {
                entries: vec![Entry::want_block(cid(i), 1)],
                full: false,
            },
            blocks: if i % 2 == 0 {
                vec![raw_block(512 << 10, i)]
            } else {
                Vec::new()
            },
            ..Message::default()
        })
        .collect();
    let mut ids = Vec::new();
    for message in &messages {
        let id = if message.blocks.is_empty() {
            a.behaviour_mut().send(b_id, message.clone())
        } else {
            a.behaviour_mut().send_unordered(b_id, message.clone())
        };
        ids.push(id.expect("send"));
    }
    let mut seen = Seen::default();
    drive(&mut a, &mut b, |side, event| {
        seen.record(side, event);
        (seen.received.len() == messages.len() && seen.sent.len() == ids.len()).then_some(())
    })
    .await;
    let key = |m: &Message| m.wantlist.entries[0].cid;
    let ordered: Vec<_> = seen
        .received
        .iter()
        .filter(|m| m.blocks.is_empty())
        .map(key)
        .collect();
    let expected: Vec<_> = messages
        .iter()
        .filter(|m| m.blocks.is_empty())
        .map(key)
        .collect();
    assert_eq!(ordered, expected);
    let mut received = seen.received;
    received.sort_by_key(key);
    let mut all = messages.clone();
    all.sort_by_key(key);
    assert_eq!(received, all);
    seen.sent.sort();
    assert_eq!(seen.sent, ids);
}

/// An ordered message sent while an unordered stream is open and idle goes out at once: the
/// unordered streams do not count against the ordered ones (they did, and kubo waited for our
/// HAVEs until the unordered stream's idle timeout closed it, about 5 s per fetch).
#[tokio::test]
async fn an_open_unordered_stream_does_not_hold_up_ordered_messages() {
    let config = Config::default().with_outbound_idle_timeout(Duration::from_secs(600));
    let mut a = node(config);
    let mut b = node(Config::default());
    let b_id = *b.local_peer_id();
    connect(&mut a, &mut b).await;
    let with_block = Message {
        blocks: vec![raw_block(64 << 10, 1)],
        ..Message::default()
    };
    a.behaviour_mut()
        .send_unordered(b_id, with_block)
        .expect("send");
    let mut seen = Seen::default();
    drive(&mut a, &mut b, |side, event| {
        seen.record(side, event);
        (seen.received.len() == 1 && seen.sent.len() == 1).then_some(())
    })
    .await;
    let presence = Message {
        wantlist: Wantlist {
            entries: vec![Entry::want_block(cid(2), 1)],
            full: false,
        },
        ..Message::default()
    };
    a.behaviour_mut()
        .send(b_id, presence.clone())
        .expect("send");
    let started = std::time::Instant::now();
    drive(&mut a, &mut b, |side, event| {
        seen.record(side, event);
        (seen.received.len() == 2).then_some(())
    })
    .await;
    assert_eq!(seen.received[1], presence);
    // Far below the idle timeout the stream would otherwise wait for.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// A default peer and one that only speaks `version` exchange messages; each side reports
/// `version` and encodes for it.
async fn talk_to_old_peer(version: Version) {
    let mut a = node(Config::default());
    let mut b = node(Config::default().with_versions([version]));
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    connect(&mut a, &mut b).await;

    let block = if version == Version::V1_1_0 {
        raw_block(100, 7)
    } else {
        v0_block(100, 7)
    };
    let message = Message {
        wantlist: Wantlist {
            entries: vec![Entry::want_have(cid(1), 3), Entry::want_block(cid(2), 2)],
            full: true,
        },
        blocks: vec![block.clone()],
        presences: vec![BlockPresence {
            cid: cid(3),
            presence: BlockPresenceType::Have,
        }],
        pending_bytes: 99,
    };
    a.behaviour_mut().send(b_id, message).expect("send");
    let received = receive(&mut a, &mut b, Side::B, 1).await;

    // Want-have became want-block; presences, pending bytes and DONT_HAVE requests are not
    // part of this version.
    let entries = &received[0].wantlist.entries;
    assert_eq!(entries.len(), 2);
    assert!(entries.iter().all(|e| e.want_type == WantType::Block));
    assert!(entries.iter().all(|e| !e.send_dont_have));
    assert_eq!(entries[0].cid, cid(1));
    assert!(received[0].wantlist.full);
    assert_eq!(received[0].blocks, std::slice::from_ref(&block));
    assert!(received[0].presences.is_empty());
    assert_eq!(received[0].pending_bytes, 0);
    assert_eq!(a.behaviour().peer_version(&b_id), Some(version));
    assert_eq!(b.behaviour().peer_version(&a_id), Some(version));

    // And back.
    let reply = Message {
        blocks: vec![block.clone()],
        ..Message::default()
    };
    b.behaviour_mut().send(a_id, reply.clone()).expect("send");
    let received = receive(&mut a, &mut b, Side::A, 1).await;
    assert_eq!(received, [reply]);
}

#[tokio::test]
async fn talks_to_a_1_0_0_peer() {
    talk_to_old_peer(Version::V1_0_0).await;
}

#[tokio::test]
async fn talks_to_a_1_1_0_peer() {
    talk_to_old_peer(Version::V1_1_0).await;
}

#[test]
fn send_to_unknown_peer_fails() {
    let mut behaviour = Behaviour::new(Config::default());
    let peer = identity::Keypair::generate_ed25519().public().to_peer_id();
    assert_eq!(
        behaviour.send(peer, Message::default()),
        Err(SendError::NotConnected)
    );
    assert_eq!(behaviour.peer_version(&peer), None);
    assert_eq!(behaviour.connected_peers().count(), 0);
}

#[tokio::test]
async fn queue_full_is_reported() {
    let mut a = node(Config::default().with_max_queued_messages(3));
    let mut b = node(Config::default());
    let b_id = *b.local_peer_id();
    connect(&mut a, &mut b).await;

    let message = Message::wantlist_update(vec![Entry::want_block(cid(1), 1)]);
    let ids: Vec<MessageId> = (0..3)
        .map(|_| a.behaviour_mut().send(b_id, message.clone()).expect("send"))
        .collect();
    assert_eq!(
        a.behaviour_mut().send(b_id, message.clone()),
        Err(SendError::QueueFull { limit: 3 })
    );
    assert_eq!(a.behaviour().queued_messages(&b_id), 3);

    let mut sent = Vec::new();
    drive(&mut a, &mut b, |side, event| {
        if let (Side::A, SwarmEvent::Behaviour(Event::MessageSent { id, .. })) = (side, event) {
            sent.push(id);
        }
        (sent.len() == 3).then_some(())
    })
    .await;
    assert_eq!(sent, ids);
    // Room again.
    a.behaviour_mut().send(b_id, message).expect("send");
}

#[tokio::test]
async fn disconnect_frees_peer_state() {
    let mut a = node(Config::default());
    let mut b = node(Config::default());
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    connect(&mut a, &mut b).await;
    a.behaviour_mut()
        .send(
            b_id,
            Message::wantlist_update(vec![Entry::want_block(cid(1), 1)]),
        )
        .expect("send");
    receive(&mut a, &mut b, Side::B, 1).await;
    assert_eq!(a.behaviour().peer_version(&b_id), Some(Version::V1_2_0));

    // A message racing the disconnection is resolved one way or the other.
    let racing = a
        .behaviour_mut()
        .send(
            b_id,
            Message::wantlist_update(vec![Entry::want_block(cid(2), 1)]),
        )
        .expect("send");
    a.disconnect_peer_id(b_id).expect("connected");
    let (mut a_gone, mut b_gone, mut resolved) = (false, false, false);
    drive(&mut a, &mut b, |side, event| {
        match (side, event) {
            (Side::A, SwarmEvent::Behaviour(Event::PeerDisconnected { peer })) => {
                assert_eq!(peer, b_id);
                a_gone = true;
            }
            (Side::B, SwarmEvent::Behaviour(Event::PeerDisconnected { peer })) => {
                assert_eq!(peer, a_id);
                b_gone = true;
            }
            (Side::A, SwarmEvent::Behaviour(Event::MessageSent { id, .. })) => {
                assert_eq!(id, racing);
                assert!(!resolved);
                resolved = true;
            }
            (Side::A, SwarmEvent::Behaviour(Event::SendFailed { id, error, .. })) => {
                assert_eq!(id, racing);
                assert!(!resolved, "{error}");
                resolved = true;
            }
            _ => {}
        }
        (a_gone && b_gone && resolved).then_some(())
    })
    .await;
    assert_eq!(a.behaviour().peer_version(&b_id), None);
    assert_eq!(b.behaviour().peer_version(&a_id), None);
    assert_eq!(a.behaviour().connected_peers().count(), 0);
    assert_eq!(a.behaviour().queued_messages(&b_id), 0);
    assert_eq!(
        a.behaviour_mut().send(b_id, Message::default()),
        Err(SendError::NotConnected)
    );
}

#[derive(NetworkBehaviour)]
struct Node {
    bitswap: Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
}

fn composed_node(config: Config) -> Swarm<Node> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(|key| Node {
            bitswap: Behaviour::new(config),
            identify: identify::Behaviour::new(identify::Config::new(
                "/test/1.0.0".into(),
                key.public(),
            )),
            ping: ping::Behaviour::default(),
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Beside identify, the version is known from the protocols the peer advertises, before any
/// Bitswap stream.
#[tokio::test]
async fn composes_with_identify_and_ping() {
    let mut a = composed_node(Config::default());
    let mut b = composed_node(Config::default().with_versions([Version::V1_1_0, Version::V1_0_0]));
    let b_id = *b.local_peer_id();
    let address = listen(&mut b).await;
    a.dial(address).expect("dial");

    timeout(TIMEOUT, async {
        loop {
            tokio::select! {
                event = a.select_next_some() => {
                    if let SwarmEvent::Behaviour(NodeEvent::Bitswap(Event::PeerVersion {
                        peer,
                        version,
                    })) = event
                    {
                        assert_eq!((peer, version), (b_id, Version::V1_1_0));
                        break;
                    }
                }
                _ = b.select_next_some() => {}
            }
        }
    })
    .await
    .expect("version from identify");
    assert_eq!(
        a.behaviour().bitswap.peer_version(&b_id),
        Some(Version::V1_1_0)
    );

    let message = Message::wantlist_update(vec![Entry::want_block(cid(1), 1)]);
    a.behaviour_mut().bitswap.send(b_id, message).expect("send");
    let received = timeout(TIMEOUT, async {
        loop {
            tokio::select! {
                _ = a.select_next_some() => {}
                event = b.select_next_some() => {
                    if let SwarmEvent::Behaviour(NodeEvent::Bitswap(Event::Message {
                        message,
                        ..
                    })) = event
                    {
                        return message;
                    }
                }
            }
        }
    })
    .await
    .expect("message");
    // Encoded for 1.1.0: no DONT_HAVE request.
    assert_eq!(received.wantlist.entries.len(), 1);
    assert_eq!(received.wantlist.entries[0].cid, cid(1));
    assert!(!received.wantlist.entries[0].send_dont_have);
}

// Raw peers: a libp2p-stream swarm that writes the wire format by hand.

const V1_2_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");

/// A raw peer connected to `node`; its swarm runs in a task for at most a few [`TIMEOUT`]s.
async fn raw_peer(node: &mut Swarm<Behaviour>) -> (PeerId, libp2p_stream::Control) {
    let address = listen(node).await;
    let mut raw = new_swarm(libp2p_stream::Behaviour::new());
    let raw_id = *raw.local_peer_id();
    let control = raw.behaviour().new_control();
    raw.dial(address).expect("dial");
    tokio::spawn(async move {
        let _ = timeout(TIMEOUT * 3, async {
            loop {
                raw.select_next_some().await;
            }
        })
        .await;
    });
    timeout(TIMEOUT, async {
        loop {
            if let SwarmEvent::Behaviour(Event::PeerConnected { peer }) =
                node.select_next_some().await
            {
                assert_eq!(peer, raw_id);
                return;
            }
        }
    })
    .await
    .expect("raw peer connected");
    (raw_id, control)
}

/// Drives `node` until `f` returns something, for at most [`TIMEOUT`].
async fn drive_one<T>(node: &mut Swarm<Behaviour>, mut f: impl FnMut(Event) -> Option<T>) -> T {
    timeout(TIMEOUT, async {
        loop {
            if let SwarmEvent::Behaviour(event) = node.select_next_some().await
                && let Some(out) = f(event)
            {
                return out;
            }
        }
    })
    .await
    .expect("timed out driving the swarm")
}

/// kubo: many messages on one long-lived stream, each reported before the stream ends.
#[tokio::test]
async fn reads_many_messages_on_one_stream() {
    let mut node = node(Config::default());
    let node_id = *node.local_peer_id();
    let (raw_id, mut control) = raw_peer(&mut node).await;

    let messages: Vec<_> = (0..5u8)
        .map(|i| Message::wantlist_update(vec![Entry::want_have(cid(i), 1)]))
        .collect();
    let (mut ack_tx, mut ack_rx) = mpsc::channel::<()>(8);
    let to_write = messages.clone();
    let writer = tokio::spawn(async move {
        let mut stream = control.open_stream(node_id, V1_2_0).await.expect("stream");
        for message in &to_write {
            let frames = bitswap::protocol::encode(message, Version::V1_2_0);
            bitswap::protocol::write_frames(&mut stream, &frames)
                .await
                .expect("write");
            // The stream stays open: the message must be reported now, not at its end.
            timeout(TIMEOUT, ack_rx.next())
                .await
                .expect("message reported while the stream is open");
        }
        stream.close().await.expect("close");
    });

    let mut received = Vec::new();
    drive_one(&mut node, |event| {
        if let Event::Message { peer, message, .. } = event {
            assert_eq!(peer, raw_id);
            received.push(message);
            ack_tx.try_send(()).expect("ack");
        }
        (received.len() == messages.len()).then_some(())
    })
    .await;
    assert_eq!(received, messages);
    timeout(TIMEOUT, writer)
        .await
        .expect("writer finished")
        .expect("writer");
    assert_eq!(
        node.behaviour().peer_version(&raw_id),
        Some(Version::V1_2_0)
    );
}

/// Wants past the limit are dropped as the message is decoded, but those that ask for
/// DONT_HAVE (up to as many again, to be answered); cancels are not counted.
#[tokio::test]
async fn wantlist_entries_past_the_limit_are_dropped() {
    let mut node = node(Config::default().with_max_wantlist_entries(100));
    let node_id = *node.local_peer_id();
    let (_, mut control) = raw_peer(&mut node).await;

    // Every third a cancel, every other want asks for DONT_HAVE.
    let sent = Message::wantlist_update(
        (0..=255u8)
            .map(|i| match i % 3 {
                0 => Entry::cancel(cid(i)),
                _ => Entry {
                    send_dont_have: i % 2 == 0,
                    ..Entry::want_have(cid(i), i32::from(i))
                },
            })
            .collect(),
    );
    let mut wanted = 0;
    let expected: Vec<Entry> = sent
        .wantlist
        .entries
        .iter()
        .filter(|entry| {
            if entry.cancel {
                return true;
            }
            wanted += 1;
            wanted <= 100 || entry.send_dont_have
        })
        .cloned()
        .collect();
    assert!(expected.len() < sent.wantlist.entries.len());
    let frames = bitswap::protocol::encode(&sent, Version::V1_2_0);
    let writer = tokio::spawn(async move {
        let mut stream = control.open_stream(node_id, V1_2_0).await.expect("stream");
        bitswap::protocol::write_frames(&mut stream, &frames)
            .await
            .expect("write");
        stream.close().await.expect("close");
    });
    let received = drive_one(&mut node, |event| match event {
        Event::Message { message, .. } => Some(message),
        _ => None,
    })
    .await;
    assert_eq!(received.wantlist.entries, expected);
    timeout(TIMEOUT, writer)
        .await
        .expect("writer finished")
        .expect("writer");
}

/// With an inbound byte budget smaller than one message, messages too large for a
/// connection's own room (64 KiB) are read one at a time (each waits for the whole budget) and
/// all of them arrive, from every stream and peer.
#[tokio::test]
async fn messages_larger_than_the_inbound_budget_arrive_one_at_a_time() {
    let mut node = node(Config::default().with_max_inbound_bytes(100));
    let node_id = *node.local_peer_id();
    let mut controls = Vec::new();
    for _ in 0..2 {
        controls.push(raw_peer(&mut node).await.1);
    }
    let mut writers = Vec::new();
    for control in controls {
        for stream in 0..3u8 {
            let mut control = control.clone();
            writers.push(tokio::spawn(async move {
                let mut stream_io = control.open_stream(node_id, V1_2_0).await.expect("stream");
                for i in 0..4u8 {
                    let message = Message {
                        blocks: vec![raw_block(70_000, stream * 16 + i)],
                        ..Message::default()
                    };
                    let frames = bitswap::protocol::encode(&message, Version::V1_2_0);
                    bitswap::protocol::write_frames(&mut stream_io, &frames)
                        .await
                        .expect("write");
                }
                stream_io.close().await.expect("close");
            }));
        }
    }
    let mut received = 0;
    drive_one(&mut node, |event| {
        if let Event::Message { message, .. } = event {
            assert_eq!(message.blocks.len(), 1);
            received += 1;
        }
        (received == 2 * 3 * 4).then_some(())
    })
    .await;
    for writer in writers {
        timeout(TIMEOUT, writer)
            .await
            .expect("writer finished")
            .expect("writer");
    }
}

/// Helia: one message per stream, each stream closed after it.
#[tokio::test]
async fn reads_one_message_per_stream() {
    let mut node = node(Config::default());
    let node_id = *node.local_peer_id();
    let (_, mut control) = raw_peer(&mut node).await;

    let messages: Vec<_> = (0..5u8)
        .map(|i| Message {
            blocks: vec![raw_block(1000, i)],
            ..Message::default()
        })
        .collect();
    let to_write = messages.clone();
    let writer = tokio::spawn(async move {
        for message in &to_write {
            let mut stream = control.open_stream(node_id, V1_2_0).await.expect("stream");
            let frames = bitswap::protocol::encode(message, Version::V1_2_0);
            bitswap::protocol::write_frames(&mut stream, &frames)
                .await
                .expect("write");
            stream.close().await.expect("close");
        }
    });

    let mut received = Vec::new();
    drive_one(&mut node, |event| {
        if let Event::Message { message, .. } = event {
            received.push(message);
        }
        (received.len() == messages.len()).then_some(())
    })
    .await;
    // Streams written one after the other are reported in that order.
    assert_eq!(received, messages);
    timeout(TIMEOUT, writer)
        .await
        .expect("writer finished")
        .expect("writer");
}

/// A stream that stays quiet past the idle timeout is reset.
#[tokio::test]
async fn idle_inbound_stream_is_reset() {
    let idle = Duration::from_millis(300);
    let mut node = node(Config::default().with_inbound_idle_timeout(idle));
    let node_id = *node.local_peer_id();
    let (_, mut control) = raw_peer(&mut node).await;

    let message = Message::wantlist_update(vec![Entry::want_block(cid(1), 1)]);
    let to_write = message.clone();
    let writer = tokio::spawn(async move {
        let mut stream = control.open_stream(node_id, V1_2_0).await.expect("stream");
        let frames = bitswap::protocol::encode(&to_write, Version::V1_2_0);
        bitswap::protocol::write_frames(&mut stream, &frames)
            .await
            .expect("write");
        let written = tokio::time::Instant::now();
        // The node never writes on it: the read ends when the node resets the stream.
        let mut buf = [0u8; 16];
        let read = timeout(TIMEOUT, stream.read(&mut buf))
            .await
            .expect("stream reset");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        written.elapsed()
    });
    let received = drive_one(&mut node, |event| match event {
        Event::Message { message, .. } => Some(message),
        _ => None,
    })
    .await;
    assert_eq!(received, message);
    // Keep driving the node while the writer waits for the reset.
    let waited = timeout(TIMEOUT, async {
        tokio::select! {
            waited = writer => waited.expect("writer"),
            () = async { loop { node.select_next_some().await; } } => unreachable!(),
        }
    })
    .await
    .expect("writer done");
    assert!(waited >= idle - Duration::from_millis(50), "{waited:?}");
}

/// Writes `bytes` on a new stream, then keeps writing until the peer resets the stream.
async fn write_until_reset(control: &mut libp2p_stream::Control, peer: PeerId, bytes: &[u8]) {
    let mut stream = control.open_stream(peer, V1_2_0).await.expect("stream");
    stream.write_all(bytes).await.expect("write");
    stream.flush().await.expect("flush");
    timeout(TIMEOUT, async {
        loop {
            if stream.write_all(&[0; 1024]).await.is_err() || stream.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("stream reset");
}

#[tokio::test]
async fn oversized_and_malformed_messages_reset_the_stream() {
    let mut node = node(Config::default());
    let node_id = *node.local_peer_id();
    let (raw_id, mut control) = raw_peer(&mut node).await;

    let good = Message::wantlist_update(vec![Entry::want_block(cid(1), 1)]);
    let to_write = good.clone();
    let writer = tokio::spawn(async move {
        // A declared length of 64 MiB.
        let mut buf = unsigned_varint::encode::u64_buffer();
        let prefix = unsigned_varint::encode::u64(64 << 20, &mut buf);
        write_until_reset(&mut control, node_id, prefix).await;
        // A valid length and bytes that are no protobuf.
        write_until_reset(&mut control, node_id, &[4, 0xff, 0xff, 0xff, 0xff]).await;
        // The node is still fine.
        let mut stream = control.open_stream(node_id, V1_2_0).await.expect("stream");
        let frames = bitswap::protocol::encode(&to_write, Version::V1_2_0);
        bitswap::protocol::write_frames(&mut stream, &frames)
            .await
            .expect("write");
        stream.close().await.expect("close");
    });

    let (mut too_large, mut malformed, mut received) = (false, false, None);
    drive_one(&mut node, |event| {
        match event {
            Event::InboundFailure {
                peer,
                error: InboundFailure::Protocol(error),
                ..
            } => {
                assert_eq!(peer, raw_id);
                match error {
                    ProtocolError::MessageTooLarge { declared } => {
                        assert_eq!(declared, 64 << 20);
                        too_large = true;
                    }
                    ProtocolError::Decode(_) => malformed = true,
                    other => panic!("unexpected error {other}"),
                }
            }
            Event::Message { message, .. } => received = Some(message),
            Event::InboundFailure { error, .. } => panic!("unexpected failure {error}"),
            _ => {}
        }
        (too_large && malformed && received.is_some()).then_some(())
    })
    .await;
    assert_eq!(received, Some(good));
    timeout(TIMEOUT, writer)
        .await
        .expect("writer finished")
        .expect("writer");
    assert!(node.behaviour().is_connected(&raw_id));
}

#[tokio::test]
async fn streams_beyond_the_limit_are_reset() {
    let mut node = node(Config::default().with_max_inbound_streams(2));
    let node_id = *node.local_peer_id();
    let (_, mut control) = raw_peer(&mut node).await;

    let (mut done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let writer = tokio::spawn(async move {
        // Two streams held open, then a third.
        let mut open = Vec::new();
        for _ in 0..2 {
            open.push(control.open_stream(node_id, V1_2_0).await.expect("stream"));
        }
        write_until_reset(&mut control, node_id, &[]).await;
        // Keep the first two open until the node reported the refusal.
        timeout(TIMEOUT, done_rx.next()).await.expect("done");
        drop(open);
    });

    drive_one(&mut node, |event| match event {
        Event::InboundFailure {
            error: InboundFailure::TooManyStreams { limit },
            ..
        } => {
            assert_eq!(limit, 2);
            Some(())
        }
        _ => None,
    })
    .await;
    done_tx.try_send(()).expect("done");
    timeout(TIMEOUT, writer)
        .await
        .expect("writer finished")
        .expect("writer");
}

/// A peer that does not speak Bitswap: messages fail with `Unsupported`.
#[tokio::test]
async fn peer_without_bitswap_fails_sends() {
    let mut node = node(Config::default());
    let (raw_id, _control) = raw_peer(&mut node).await;
    let id = node
        .behaviour_mut()
        .send(
            raw_id,
            Message::wantlist_update(vec![Entry::want_block(cid(1), 1)]),
        )
        .expect("send");
    let error = drive_one(&mut node, |event| match event {
        Event::SendFailed {
            id: failed, error, ..
        } => {
            assert_eq!(failed, id);
            Some(error)
        }
        _ => None,
    })
    .await;
    assert!(matches!(error, SendFailure::Unsupported), "{error}");
}

/// Outbound messages share one long-lived stream, each reported sent while it stays open; the
/// stream closes once idle and the next message opens another.
#[tokio::test]
async fn outbound_messages_share_a_stream_until_it_idles() {
    let idle = Duration::from_millis(300);
    let mut node = node(Config::default().with_outbound_idle_timeout(idle));
    let (raw_id, mut control) = raw_peer(&mut node).await;
    let mut incoming = control.accept(V1_2_0).expect("accept");
    // (stream index, message) for each message read; (stream index, None) at each clean end.
    let (reads_tx, mut reads) = mpsc::channel::<(usize, Option<Message>)>(64);
    tokio::spawn(async move {
        let mut index = 0;
        while let Some((_, mut stream)) = incoming.next().await {
            let mut reads_tx = reads_tx.clone();
            tokio::spawn(async move {
                while let Ok(Some(message)) = bitswap::protocol::read_message(&mut stream).await {
                    let _ = reads_tx.try_send((index, Some(message)));
                }
                let _ = reads_tx.try_send((index, None));
            });
            index += 1;
        }
    });

    let messages: Vec<_> = (0..5u8)
        .map(|i| Message::wantlist_update(vec![Entry::want_have(cid(i), 1)]))
        .collect();
    // One at a time: each is written (and reported) before the next is sent.
    for message in &messages {
        node.behaviour_mut()
            .send(raw_id, message.clone())
            .expect("send");
        drive_one(&mut node, |event| {
            matches!(event, Event::MessageSent { .. }).then_some(())
        })
        .await;
    }
    let mut first = Vec::new();
    while first.len() < messages.len() {
        let (index, message) = timeout(TIMEOUT, reads.next())
            .await
            .expect("read in time")
            .expect("reader alive");
        assert_eq!(index, 0, "every message on the first stream");
        first.push(message.expect("a message, not the end of the stream"));
    }
    assert_eq!(first, messages);

    // Idle: the stream is closed cleanly, without any report to the behaviour.
    let end = timeout(TIMEOUT, reads.next())
        .await
        .expect("closed when idle");
    assert_eq!(end, Some((0, None)));

    let last = Message::wantlist_update(vec![Entry::cancel(cid(9))]);
    node.behaviour_mut()
        .send(raw_id, last.clone())
        .expect("send");
    drive_one(&mut node, |event| {
        matches!(event, Event::MessageSent { .. }).then_some(())
    })
    .await;
    let read = timeout(TIMEOUT, reads.next()).await.expect("read in time");
    assert_eq!(read, Some((1, Some(last))));
}

/// A peer that takes the stream but never reads: the message being written and those
/// queued behind it are reported stalled, once each, and neither sent nor failed meanwhile.
#[tokio::test]
async fn messages_behind_a_stream_the_peer_does_not_read_are_reported_stalled() {
    let config = Config::default().with_write_stall(Duration::from_millis(100));
    let mut a = node(config);
    let (peer, mut control) = raw_peer(&mut a).await;
    let mut incoming = control.accept(V1_2_0).expect("accept");
    // Streams are taken and held, never read.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(stream) = incoming.next().await {
            held.push(stream);
        }
    });
    let ids: Vec<MessageId> = (0..4)
        .map(|i| {
            let message = Message {
                blocks: vec![raw_block(1 << 20, i)],
                ..Message::default()
            };
            a.behaviour_mut().send(peer, message).expect("send")
        })
        .collect();
    let mut stalled = Vec::new();
    drive_one(&mut a, |event| {
        match event {
            Event::MessageStalled { id, .. } => stalled.push(id),
            Event::MessageSent { id, .. } | Event::SendFailed { id, .. } => {
                panic!("{id:?} resolved while the peer reads nothing")
            }
            _ => {}
        }
        (stalled.len() == ids.len()).then_some(())
    })
    .await;
    stalled.sort();
    assert_eq!(stalled, ids);
    holder.abort();
}
