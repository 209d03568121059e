//! Bounds: wants per message and per peer, envelope sizes, bytes and envelopes in flight,
//! lookups, disconnects and metrics.

use super::*;

#[test]
fn full_ledger_lets_lower_priority_wants_give_way() {
    let config = ServerConfig::default().with_max_wants_per_peer(3);
    let (mut d, peer) = Driver::with_peer(config);
    let blocks: Vec<Block> = (0..8).map(|i| block(i, 10)).collect();
    let w = |i: usize, p: i32| want_block(&blocks[i], p, true);
    // boxo's overflow sorted the existing wants the wrong way and refused 6 here.
    d.want(peer, vec![w(0, 10), w(1, 1), w(2, 5), w(3, 6)]);
    let mut kept = wantlist_cids(&d.engine, &peer);
    kept.sort();
    let mut expected = vec![*blocks[0].cid(), *blocks[2].cid(), *blocks[3].cid()];
    expected.sort();
    assert_eq!(kept, expected);
    // Not higher than the lowest (5): refused.
    d.want(peer, vec![w(4, 5)]);
    assert_eq!(d.engine.peer_wantlist(&peer).len(), 3);
    assert!(!wantlist_cids(&d.engine, &peer).contains(blocks[4].cid()));
    // The evicted and the refused want asked for DONT_HAVE and get it; the kept ones too
    // (all missing).
    let dont_haves: HashSet<Cid> = all_answers(&d.run())
        .into_iter()
        .map(|(_, c, a)| {
            assert_eq!(a, Ans::DontHave);
            c
        })
        .collect();
    let expected: HashSet<Cid> = [0, 1, 2, 3, 4].iter().map(|&i| *blocks[i].cid()).collect();
    assert_eq!(dont_haves, expected);
    // Now every kept want is for a missing block: a new want of any priority takes the
    // place of the lowest of them (boxo#629), without a second DONT_HAVE for it.
    d.want(peer, vec![w(5, -100)]);
    let kept: HashSet<Cid> = wantlist_cids(&d.engine, &peer).into_iter().collect();
    let expected: HashSet<Cid> = [0, 3, 5].iter().map(|&i| *blocks[i].cid()).collect();
    assert_eq!(kept, expected);
    assert_eq!(
        all_answers(&d.run()),
        [(peer, *blocks[5].cid(), Ans::DontHave)]
    );
}

#[test]
fn wants_beyond_the_per_message_cap_are_refused() {
    let config = ServerConfig::default().with_max_entries_per_message(2);
    let blocks: Vec<Block> = (0..4).map(|i| block(i, 10)).collect();
    let (mut d, peer) = Driver::with_stored(config, &[&blocks[0], &blocks[1], &blocks[2]]);
    let entries = vec![
        want_block(&blocks[0], 1, true),
        Entry::cancel(*blocks[3].cid()),
        want_block(&blocks[1], 1, true),
        want_block(&blocks[2], 1, true),
        want_block(&blocks[3], 1, false),
    ];
    d.want(peer, entries);
    assert_eq!(
        d.engine.peer_wantlist(&peer).len(),
        2,
        "cancels are not counted"
    );
    assert_eq!(
        answer_set(&d.run()),
        HashSet::from([
            (peer, *blocks[0].cid(), Ans::Block),
            (peer, *blocks[1].cid(), Ans::Block),
            (peer, *blocks[2].cid(), Ans::DontHave),
        ])
    );
}

/// A wantlist read off the wire as the network layer reads it (with its default cap of 1024
/// wants), then handed to the engine.
fn decoded(entries: Vec<Entry>) -> Message {
    let frame: Vec<u8> = encode(&Message::wantlist_update(entries), Version::V1_2_0).concat();
    let (len, body) = unsigned_varint::decode::usize(&frame).expect("length prefix");
    assert_eq!(len, body.len());
    let (message, dropped) =
        bitswap::protocol::decode_message(&Bytes::copy_from_slice(body), 1024).expect("decodes");
    assert!(dropped.is_empty(), "{dropped:?}");
    message
}

#[test]
fn cancels_beside_a_thousand_wants_all_apply_and_every_want_is_answered() {
    let (mut d, peer) = Driver::with_peer(ServerConfig::default());
    let old: Vec<Block> = (0..200).map(|i| block(i, 10)).collect();
    let new: Vec<Block> = (1000..2000).map(|i| block(i, 10)).collect();
    let first = old.iter().map(|b| want_block(b, 1, false)).collect();
    d.engine.handle_message(peer, &decoded(first));
    assert!(d.run().is_empty(), "missing, and no DONT_HAVE asked");
    let mut entries: Vec<Entry> = old.iter().map(|b| Entry::cancel(*b.cid())).collect();
    entries.extend(new.iter().map(|b| want_have(b, 1, true)));
    d.engine.handle_message(peer, &decoded(entries));
    let got = answer_set(&d.run());
    let expected: HashSet<_> = new
        .iter()
        .map(|b| (peer, *b.cid(), Ans::DontHave))
        .collect();
    assert_eq!(got, expected);
    let held: HashSet<Cid> = wantlist_cids(&d.engine, &peer).into_iter().collect();
    assert_eq!(held, new.iter().map(|b| *b.cid()).collect());
}

#[test]
fn fifteen_hundred_want_haves_get_fifteen_hundred_answers() {
    let (mut d, peer) = Driver::with_peer(ServerConfig::default());
    let wanted: Vec<Block> = (0..1500).map(|i| block(i, 10)).collect();
    // Some are stored: those within the cap get a block (small enough to replace a HAVE),
    // those past it a DONT_HAVE like the rest (refused, not looked up).
    d.put(&[&wanted[0], &wanted[1400]]);
    let entries = wanted.iter().map(|b| want_have(b, 1, true)).collect();
    let message = decoded(entries);
    assert_eq!(message.wantlist.entries.len(), 1500);
    d.engine.handle_message(peer, &message);
    let answers = all_answers(&d.run());
    assert_eq!(answers.len(), 1500);
    let got: HashMap<Cid, Ans> = answers.into_iter().map(|(_, c, a)| (c, a)).collect();
    assert_eq!(got.len(), 1500);
    assert_eq!(got[wanted[0].cid()], Ans::Block);
    assert_eq!(got[wanted[1400].cid()], Ans::DontHave);
    // The cap's wants stay after their DONT_HAVE (the block may come later), but the one
    // answered with its block.
    assert_eq!(d.engine.peer_wantlist(&peer).len(), 1023);
}

#[test]
fn long_cids_are_ignored() {
    // A sha2-256 CIDv1 takes 36 bytes, a sha2-512 one 68.
    let (mut d, peer) = Driver::with_peer(ServerConfig::default().with_max_cid_size(36));
    let short = block(1, 10);
    let data = Bytes::from_static(b"long");
    let long = Block::new(Cid::new_v1(0x55, Code::Sha2_512.digest(&data)), data).expect("ok");
    assert_eq!(long.cid().encoded_len(), 68);
    d.put(&[&short, &long]);
    let entries = vec![want_block(&short, 1, true), want_block(&long, 1, true)];
    d.want(peer, entries);
    assert_eq!(wantlist_cids(&d.engine, &peer), [*short.cid()]);
    assert_eq!(all_answers(&d.run()), [(peer, *short.cid(), Ans::Block)]);
    // The default (168 bytes, boxo's) takes both.
    assert_eq!(ServerConfig::default().max_cid_size(), 168);
}

#[test]
fn identity_cids_are_never_answered() {
    let (mut d, peer) = Driver::with_peer(ServerConfig::default());
    let id = Cid::new_v1(0x55, Multihash::wrap(0x00, b"inline").expect("short"));
    let entries = vec![Entry::want_block(id, 1), Entry::want_have(id, 1)];
    d.want(peer, entries);
    assert!(d.engine.peer_wantlist(&peer).is_empty());
    assert!(d.run().is_empty());
    assert!(d.lookups.is_empty());
}

#[test]
fn filter_denials_are_answered_as_dont_have() {
    let denied = block(1, 10);
    let denied_cid = *denied.cid();
    let config = ServerConfig::default().with_request_filter(move |_, cid| *cid != denied_cid);
    let allowed = block(2, 10);
    let silent = block(3, 10);
    let (mut d, peer) = Driver::with_stored(config, &[&denied, &allowed]);
    let entries = vec![want_block(&denied, 1, true), want_block(&allowed, 1, true)];
    d.want(peer, entries);
    assert_eq!(wantlist_cids(&d.engine, &peer), [*allowed.cid()]);
    assert_eq!(
        answer_set(&d.run()),
        HashSet::from([
            (peer, denied_cid, Ans::DontHave),
            (peer, *allowed.cid(), Ans::Block),
        ])
    );
    assert!(
        !d.lookups.iter().any(|(c, _)| *c == denied_cid),
        "never looked up"
    );
    // Denied without asking for DONT_HAVE: nothing.
    let config = ServerConfig::default().with_request_filter(|_, _| false);
    let (mut d, peer) = Driver::with_peer(config);
    d.want(peer, vec![want_block(&silent, 1, false)]);
    assert!(d.run().is_empty());
}

#[test]
fn envelopes_take_tasks_up_to_the_target_and_report_pending_bytes() {
    let mut d = Driver::new(ServerConfig::default());
    assert_eq!(d.engine.config().target_message_size(), 16 * 1024);
    let peer = d.connect(Version::V1_2_0);
    let blocks: Vec<Block> = (0..10).map(|i| block(i, 4096)).collect();
    d.put(&blocks.iter().collect::<Vec<_>>());
    let entries = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| want_block(b, 100 - i as i32, true))
        .collect();
    d.want(peer, entries);
    let sent = d.run();
    let sizes: Vec<usize> = sent.iter().map(|e| e.message.blocks.len()).collect();
    assert_eq!(sizes, [4, 4, 2]);
    let pending: Vec<i32> = sent.iter().map(|e| e.message.pending_bytes).collect();
    assert_eq!(pending, [6 * 4096, 2 * 4096, 0]);
    // In priority order.
    let order: Vec<Cid> = sent
        .iter()
        .flat_map(|e| e.message.blocks.iter().map(|b| *b.cid()))
        .collect();
    assert_eq!(order, blocks.iter().map(|b| *b.cid()).collect::<Vec<_>>());
}

#[test]
fn envelopes_never_encode_over_4_mib() {
    let config = ServerConfig::default()
        .with_target_message_size(MAX_MESSAGE_SIZE)
        .with_max_outstanding_bytes_per_peer(0)
        .with_max_wants_per_peer(2000)
        .with_max_entries_per_message(2000);
    let (mut d, peer) = Driver::with_peer(config);
    // Three 2 MiB blocks, then 1100 blocks of 4000 bytes (4.4 MB of data).
    let mut blocks: Vec<Block> = (0..3).map(|i| block(i, MAX_BLOCK_SIZE)).collect();
    blocks.extend((3..1103).map(|i| block(i, 4000)));
    d.put(&blocks.iter().collect::<Vec<_>>());
    let entries = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| want_block(b, -(i as i32), true))
        .collect();
    d.want(peer, entries);
    let sent = d.run();
    let mut total = 0;
    for envelope in &sent {
        for version in [Version::V1_2_0, Version::V1_1_0] {
            let frames = encode(&envelope.message, version);
            assert_eq!(frames.len(), 1, "one frame");
            assert!(
                frames[0].len() <= MAX_MESSAGE_SIZE + 4,
                "{}",
                frames[0].len()
            );
        }
        total += envelope.message.blocks.len();
    }
    assert_eq!(total, blocks.len());
    // Two 2 MiB blocks reach the target but do not fit in one message.
    assert_eq!(sent[0].message.blocks.len(), 1);
    assert!(sent.len() >= 4);
}

#[test]
fn outstanding_bytes_per_peer_are_capped_and_other_peers_still_served() {
    let config = ServerConfig::default()
        .with_target_message_size(4096)
        .with_max_outstanding_bytes_per_peer(8192);
    let mut d = Driver::new(config);
    let (heavy, light) = (d.connect(Version::V1_2_0), d.connect(Version::V1_2_0));
    let blocks: Vec<Block> = (0..10).map(|i| block(i, 4096)).collect();
    let other = block(99, 100);
    d.put(&blocks.iter().chain([&other]).collect::<Vec<_>>());
    let entries = blocks.iter().map(|b| want_block(b, 1, true)).collect();
    d.want(heavy, entries);
    let held = d.hold();
    assert_eq!(held.len(), 2, "8 KiB outstanding, then the peer waits");
    assert_eq!(d.engine.stats().active_bytes, 8192);
    d.want(light, vec![want_block(&other, 1, true)]);
    let light_sent = d.hold();
    assert_eq!(light_sent.len(), 1);
    assert_eq!(light_sent[0].peer, light);
    d.engine.handle_envelope_sent(held[0].id);
    let next = d.hold();
    assert_eq!(next.len(), 1, "one envelope's worth freed");
    assert_eq!(next[0].peer, heavy);
}

#[test]
fn envelopes_in_flight_are_bounded_over_all_peers() {
    let config = ServerConfig::default().with_max_envelopes_in_flight(2);
    let mut d = Driver::new(config);
    let b = block(1, 10);
    d.put(&[&b]);
    let peers: Vec<PeerId> = (0..3).map(|_| d.connect(Version::V1_2_0)).collect();
    for peer in &peers {
        d.want(*peer, vec![want_block(&b, 1, true)]);
    }
    let held = d.hold();
    assert_eq!(held.len(), 2);
    assert_eq!(d.engine.stats().envelopes_in_flight, 2);
    d.engine.handle_envelope_failed(held[0].id);
    let next = d.hold();
    assert_eq!(next.len(), 1);
    let served: HashSet<PeerId> = held.iter().chain(&next).map(|e| e.peer).collect();
    assert_eq!(served.len(), 3);
    // The failed one keeps its want.
    assert_eq!(d.engine.peer_wantlist(&held[0].peer).len(), 1);
    assert_eq!(
        d.engine
            .peer_accounting(&held[0].peer)
            .expect("peer")
            .messages_failed,
        1
    );
}

/// Envelopes reported stalled (waiting behind a full stream: a peer that does not read)
/// leave the batch slots to other peers, and count against their own peer's outstanding
/// bytes instead.
#[test]
fn stalled_envelopes_leave_the_slots_to_other_peers() {
    let config = ServerConfig::default()
        .with_max_envelopes_in_flight(1)
        .with_target_message_size(10)
        .with_max_outstanding_bytes_per_peer(15);
    let mut d = Driver::new(config);
    let blocks: Vec<Block> = (0..4).map(|i| block(i, 10)).collect();
    d.put(&blocks.iter().collect::<Vec<_>>());
    let (lazy, honest) = (d.connect(Version::V1_2_0), d.connect(Version::V1_2_0));
    let wants = |range: std::ops::Range<usize>| {
        Message::wantlist_update(
            blocks[range]
                .iter()
                .map(|b| want_block(b, 1, true))
                .collect(),
        )
    };
    d.engine.handle_message(lazy, &wants(0..4));
    let first = d.hold();
    assert_eq!(first.len(), 1, "one slot");
    d.engine.handle_message(honest, &wants(0..2));
    assert!(
        d.hold().is_empty(),
        "the slot is held until the envelope is reported"
    );
    d.engine.handle_envelope_stalled(first[0].id);
    // The lazy peer gets one more block (past its 15 bytes) and stalls again; then the
    // honest peer is served.
    let mut stuck = first;
    let mut served = Vec::new();
    for _ in 0..8 {
        for envelope in d.hold() {
            if envelope.peer == lazy {
                d.engine.handle_envelope_stalled(envelope.id);
                stuck.push(envelope);
            } else {
                d.engine.handle_envelope_sent(envelope.id);
                served.push(envelope);
            }
        }
    }
    assert_eq!(stuck.len(), 2, "the lazy peer is at its outstanding bytes");
    assert_eq!(all_answers(&served).len(), 2, "the honest peer is served");
    assert_eq!(d.engine.stats().envelopes_out, 2);
    for envelope in &stuck {
        d.engine.handle_envelope_sent(envelope.id);
    }
    let rest = d.run();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|e| e.peer == lazy));
}

#[test]
fn lookups_in_flight_are_bounded_and_shared_round_robin() {
    let config = ServerConfig::default().with_max_lookups_in_flight(3);
    let mut d = Driver::new(config);
    let (heavy, light) = (d.connect(Version::V1_2_0), d.connect(Version::V1_2_0));
    let blocks: Vec<Block> = (0..10).map(|i| block(i, 10)).collect();
    let other = block(99, 10);
    let entries = blocks.iter().map(|b| want_block(b, 1, true)).collect();
    d.want(heavy, entries);
    d.want(light, vec![want_block(&other, 1, true)]);
    let lookups: Vec<_> = (0..3).map(|_| d.engine.poll_lookup().expect("3")).collect();
    assert!(d.engine.poll_lookup().is_none(), "three in flight");
    assert_eq!(d.engine.stats().lookups_in_flight, 3);
    // The light peer's only probe comes second, not after the heavy peer's ten.
    let cids: Vec<Cid> = lookups.iter().map(|l| l.cid).collect();
    assert_eq!(cids, [*blocks[0].cid(), *other.cid(), *blocks[1].cid()]);
    d.engine.handle_lookup(lookups[0].id, LookupResult::Failed);
    assert_eq!(d.engine.poll_lookup().expect("room").cid, *blocks[2].cid());
}

#[test]
fn have_being_sent_then_want_block_sends_the_block_too() {
    let b = block(1, 5000);
    let (mut d, peer) = Driver::with_stored(ServerConfig::default(), &[&b]);
    d.want(peer, vec![want_have(&b, 1, true)]);
    let have = d.hold();
    assert_eq!(all_answers(&have), [(peer, *b.cid(), Ans::Have)]);
    d.want(peer, vec![want_block(&b, 1, true)]);
    let block_sent = d.hold();
    assert_eq!(all_answers(&block_sent), [(peer, *b.cid(), Ans::Block)]);
    d.engine.handle_envelope_sent(have[0].id);
    assert_eq!(
        d.engine.peer_wantlist(&peer)[0].want_type,
        WantType::Block,
        "HAVE does not forget a want-block"
    );
    d.engine.handle_envelope_sent(block_sent[0].id);
    assert!(d.engine.peer_wantlist(&peer).is_empty());
}

#[test]
fn disconnect_frees_everything_and_late_reports_are_harmless() {
    let blocks: Vec<Block> = (0..4).map(|i| block(i, 10)).collect();
    let (mut d, peer) = Driver::with_stored(ServerConfig::default(), &[&blocks[0], &blocks[1]]);
    let entries = blocks.iter().map(|b| want_block(b, 1, true)).collect();
    d.want(peer, entries);
    let probe = d.engine.poll_lookup().expect("probe");
    let envelope = {
        let result = d.answer(&probe.cid, probe.kind);
        d.engine.handle_lookup(probe.id, result);
        let got = d.hold();
        assert_eq!(got.len(), 1);
        got.into_iter().next().expect("one")
    };
    let late = d.engine.poll_lookup();
    d.engine.handle_peer_disconnected(&peer);
    let stats = d.engine.stats();
    assert_eq!((stats.peers, stats.wants, stats.pending_tasks), (0, 0, 0));
    assert!(d.engine.peer_accounting(&peer).is_none());
    assert!(d.engine.peer_wantlist(&peer).is_empty());
    assert_eq!(stats.envelopes_out, 1, "until reported");
    if let Some(late) = late {
        d.engine
            .handle_lookup(late.id, LookupResult::Size(Some(10)));
    }
    d.engine.handle_envelope_failed(envelope.id);
    assert!(d.run().is_empty());
    assert_eq!(d.engine.stats(), Default::default());
    // Messages from peers not connected are ignored.
    d.want(peer, vec![want_block(&blocks[0], 1, true)]);
    assert_eq!(d.engine.stats().wants, 0);
}

#[cfg(feature = "metrics")]
#[test]
fn metrics_count_traffic_without_peer_labels() {
    use prometheus_client::{encoding::text::encode as encode_metrics, registry::Registry};
    let mut registry = Registry::default();
    let metrics = bitswap::ServerMetrics::new(&mut registry);
    let mut d = Driver::new(ServerConfig::default());
    d.engine = ServerEngine::with_metrics(ServerConfig::default(), metrics);
    let peer = d.connect(Version::V1_2_0);
    let (a, large, missing) = (block(1, 10), block(2, 2000), block(3, 10));
    d.put(&[&a, &large]);
    let mut m = Message::wantlist_update(vec![
        want_block(&a, 1, true),
        want_have(&large, 1, true),
        want_block(&missing, 1, true),
    ]);
    m.blocks.push(block(4, 50));
    d.engine.handle_message(peer, &m);
    d.run();
    let mut text = String::new();
    encode_metrics(&mut text, &registry).expect("encodes");
    for line in [
        "bitswap_server_messages_received_total 1",
        "bitswap_server_blocks_received_total 1",
        "bitswap_server_received_block_bytes_total 50",
        "bitswap_server_wants_received_total 3",
        "bitswap_server_blocks_sent_total 1",
        "bitswap_server_sent_block_bytes_total 10",
        "bitswap_server_haves_sent_total 1",
        "bitswap_server_dont_haves_sent_total 1",
        "bitswap_server_peers 1",
        "bitswap_server_wants 1",
        "bitswap_server_envelopes_in_flight 0",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert!(!text.contains(&peer.to_string()), "no peer label");
    let accounting = d.engine.peer_accounting(&peer).expect("peer");
    assert_eq!(
        (
            accounting.blocks_received,
            accounting.bytes_received,
            accounting.haves_sent,
            accounting.dont_haves_sent
        ),
        (1, 50, 1, 1)
    );
}

#[test]
fn memory_blockstore_driver() {
    use futures::executor::block_on;
    let store = MemoryBlockstore::new();
    let mut engine = ServerEngine::new(ServerConfig::default());
    let peer = PeerId::random();
    engine.handle_peer_connected(peer, Version::V1_2_0);
    let (a, b) = (block(1, 100), block(2, 100));
    block_on(store.put(a.clone())).expect("put");
    let entries = vec![want_block(&a, 1, true), want_block(&b, 1, true)];
    engine.handle_message(peer, &Message::wantlist_update(entries));
    let mut sent = Vec::new();
    let drive = |engine: &mut ServerEngine, sent: &mut Vec<Envelope>| loop {
        let mut progress = false;
        while let Some(lookup) = engine.poll_lookup() {
            let result = block_on(async {
                match lookup.kind {
                    LookupKind::Has => store.has(&lookup.cid).await.map(LookupResult::Has),
                    LookupKind::Size => store.get_size(&lookup.cid).await.map(LookupResult::Size),
                    LookupKind::Get => store.get(&lookup.cid).await.map(LookupResult::Block),
                    _ => Ok(LookupResult::Failed),
                }
            })
            .unwrap_or(LookupResult::Failed);
            engine.handle_lookup(lookup.id, result);
            progress = true;
        }
        while let Some(envelope) = engine.poll_envelope() {
            engine.handle_envelope_sent(envelope.id);
            sent.push(envelope);
            progress = true;
        }
        if !progress {
            break;
        }
    };
    drive(&mut engine, &mut sent);
    block_on(store.put(b.clone())).expect("put");
    engine.handle_new_blocks([(*b.cid(), b.data().len())]);
    drive(&mut engine, &mut sent);
    let got: Vec<_> = sent.iter().flat_map(answers).collect();
    assert_eq!(
        got,
        [
            (*a.cid(), Ans::Block),
            (*b.cid(), Ans::DontHave),
            (*b.cid(), Ans::Block)
        ]
    );
}
