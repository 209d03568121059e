//! Two swarms of the message layer talking: versions, blocks, ordered and unordered
//! streams, old peers, full queues, disconnects, and composition with identify and ping.

use super::*;

#[tokio::test]
async fn wantlist_arrives_and_version_is_reported() {
    let (mut a, mut b, a_id, b_id) = connected_pair(Config::default()).await;
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
    let (mut a, mut b, a_id, _) = connected_pair(Config::default()).await;

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
    let (mut a, mut b, _, b_id) = connected_pair(Config::default()).await;

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
    let (mut a, mut b, _, b_id) =
        connected_pair(Config::default().with_max_outbound_streams(4)).await;

    // Small messages interleaved with large ones, so streams overlap.
    let messages = with_blocks(60, 10, 1 << 20);
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
    // Spreading as over a far link: a loopback connection is set up too fast for it.
    let (mut a, mut b, _, b_id) = connected_pair(
        Config::default()
            .with_max_unordered_streams(4)
            .with_min_setup_to_spread(Duration::ZERO),
    )
    .await;

    let messages = with_blocks(40, 2, 512 << 10);
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
    let config = Config::default()
        .with_outbound_idle_timeout(Duration::from_secs(600))
        .with_min_setup_to_spread(Duration::ZERO);
    let (mut a, mut b, _, b_id) = connected_pair(config).await;
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
    for lazy in [false, true] {
        talk_to_old_peer_with(version, lazy).await;
    }
}

/// [`talk_to_old_peer`], with the default peer's streams negotiated lazily if `lazy`: its
/// first stream offers 1.2.0 alone (a guess, without identify to tell), the old peer refuses
/// it, and the message goes again on a stream that offers every version. Without lazy
/// upgrades the refusal ends the stream's negotiation instead.
async fn talk_to_old_peer_with(version: Version, lazy: bool) {
    let mut a = if lazy {
        new_lazy_swarm(Behaviour::new(Config::default()))
    } else {
        node(Config::default())
    };
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
    let (mut a, mut b, _, b_id) =
        connected_pair(Config::default().with_max_queued_messages(3)).await;

    let message = want_one(1);
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
    let (mut a, mut b, a_id, b_id) = connected_pair(Config::default()).await;
    let first = a.behaviour_mut().send(b_id, want_one(1)).expect("send");
    // Without identify, the version offered alone is known, and the message reported sent,
    // once the peer did not refuse it.
    drive(&mut a, &mut b, |side, event| {
        matches!(
            (side, event),
            (Side::A, SwarmEvent::Behaviour(Event::MessageSent { id, .. })) if id == first
        )
        .then_some(())
    })
    .await;
    assert_eq!(a.behaviour().peer_version(&b_id), Some(Version::V1_2_0));

    // A message racing the disconnection is resolved one way or the other.
    let racing = a.behaviour_mut().send(b_id, want_one(2)).expect("send");
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
    let node = |key: &identity::Keypair| Node {
        bitswap: Behaviour::new(config),
        identify: identify::Behaviour::new(identify::Config::new(
            "/test/1.0.0".into(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
    };
    common::new_swarm_of(node, Duration::from_secs(60))
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

    let message = want_one(1);
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
