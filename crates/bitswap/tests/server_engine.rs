//! The server engine without sockets: a tiny driver answers its lookups from a map (or a
//! `MemoryBlockstore`) and reports its envelopes sent, and the tests check each rule; property
//! tests run random wantlist sequences from several peers against a reference model.

use std::collections::{HashMap, HashSet};

use bitswap::{
    Block, BlockPresenceType, Blockstore, Entry, Envelope, LookupKind, LookupResult,
    MAX_BLOCK_SIZE, MAX_MESSAGE_SIZE, MemoryBlockstore, Message, ServerConfig, ServerEngine,
    ServerMetrics, Version, WantType, Wantlist, encode,
};
use bytes::Bytes;
use cid::Cid;
use libp2p::PeerId;
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest};

/// A raw-codec sha2-256 block of `size` bytes (at least the seed's digits), distinct per seed.
fn block(seed: u32, size: usize) -> Block {
    let mut data = format!("{seed}:").into_bytes();
    assert!(data.len() <= size, "block too small for its seed");
    data.resize(size, b'x');
    let cid = Cid::new_v1(0x55, Code::Sha2_256.digest(&data));
    Block::new(cid, Bytes::from(data)).expect("valid block")
}

fn message(entries: Vec<Entry>) -> Message {
    Message {
        wantlist: Wantlist {
            entries,
            full: false,
        },
        ..Message::default()
    }
}

fn full(entries: Vec<Entry>) -> Message {
    let mut m = message(entries);
    m.wantlist.full = true;
    m
}

fn want_block(b: &Block, priority: i32, send_dont_have: bool) -> Entry {
    Entry {
        send_dont_have,
        ..Entry::want_block(*b.cid(), priority)
    }
}

fn want_have(b: &Block, priority: i32, send_dont_have: bool) -> Entry {
    Entry {
        send_dont_have,
        ..Entry::want_have(*b.cid(), priority)
    }
}

/// What an envelope says about one CID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ans {
    Block,
    Have,
    DontHave,
}

fn answers(envelope: &Envelope) -> Vec<(Cid, Ans)> {
    let mut out: Vec<(Cid, Ans)> = envelope
        .message
        .blocks
        .iter()
        .map(|b| (*b.cid(), Ans::Block))
        .collect();
    out.extend(envelope.message.presences.iter().map(|p| {
        let ans = match p.presence {
            BlockPresenceType::Have => Ans::Have,
            BlockPresenceType::DontHave => Ans::DontHave,
        };
        (p.cid, ans)
    }));
    out
}

fn all_answers(envelopes: &[Envelope]) -> Vec<(PeerId, Cid, Ans)> {
    envelopes
        .iter()
        .flat_map(|e| answers(e).into_iter().map(|(c, a)| (e.peer, c, a)))
        .collect()
}

/// The engine plus a map store that answers lookups at once.
struct Driver {
    engine: ServerEngine,
    store: HashMap<Multihash<64>, Block>,
    /// Kinds of the lookups answered, in order.
    lookups: Vec<(Cid, LookupKind)>,
}

impl Driver {
    fn new(config: ServerConfig) -> Self {
        Self {
            engine: ServerEngine::new(config),
            store: HashMap::new(),
            lookups: Vec::new(),
        }
    }

    fn connect(&mut self, version: Version) -> PeerId {
        let peer = PeerId::random();
        self.engine.handle_peer_connected(peer, version);
        peer
    }

    fn put(&mut self, blocks: &[&Block]) {
        for b in blocks {
            self.store.insert(*b.cid().hash(), (*b).clone());
        }
    }

    /// Stores blocks and tells the engine.
    fn arrive(&mut self, blocks: &[&Block]) {
        self.put(blocks);
        self.engine
            .handle_new_blocks(blocks.iter().map(|b| (*b.cid(), b.data().len())));
    }

    fn answer(&self, cid: &Cid, kind: LookupKind) -> LookupResult {
        let found = self.store.get(cid.hash());
        match kind {
            LookupKind::Has => LookupResult::Has(found.is_some()),
            LookupKind::Size => LookupResult::Size(found.map(|b| b.data().len())),
            LookupKind::Get => LookupResult::Block(found.cloned()),
            _ => LookupResult::Failed,
        }
    }

    /// Answers every lookup the engine asks for, until it asks for none.
    fn lookups(&mut self) -> usize {
        let mut n = 0;
        while let Some(lookup) = self.engine.poll_lookup() {
            let result = self.answer(&lookup.cid, lookup.kind);
            self.lookups.push((lookup.cid, lookup.kind));
            self.engine.handle_lookup(lookup.id, result);
            n += 1;
        }
        n
    }

    /// Answers probes until the engine asks for a block read, which it returns unanswered.
    fn probes(&mut self) -> Option<bitswap::Lookup> {
        while let Some(lookup) = self.engine.poll_lookup() {
            if lookup.kind == LookupKind::Get {
                return Some(lookup);
            }
            let result = self.answer(&lookup.cid, lookup.kind);
            self.engine.handle_lookup(lookup.id, result);
        }
        None
    }

    /// Holds the only batch slot with a batch for another peer whose block read is left
    /// unanswered, so tasks stay queued; [`release_the_slot`](Self::release_the_slot) answers
    /// it.
    fn block_the_slot(&mut self) -> bitswap::Lookup {
        let other = self.connect(Version::V1_2_0);
        let b = block(424242, 10);
        self.put(&[&b]);
        self.engine
            .handle_message(other, &message(vec![want_block(&b, 1, true)]));
        self.probes().expect("the block read")
    }

    fn release_the_slot(&mut self, read: bitswap::Lookup) {
        let result = self.answer(&read.cid, read.kind);
        self.engine.handle_lookup(read.id, result);
    }

    /// Runs to quiescence, reporting every envelope sent; returns them.
    fn run(&mut self) -> Vec<Envelope> {
        let mut out = Vec::new();
        loop {
            let mut progress = self.lookups() > 0;
            while let Some(envelope) = self.engine.poll_envelope() {
                self.engine.handle_envelope_sent(envelope.id);
                out.push(envelope);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.engine.check_invariants().expect("invariants");
        out
    }

    /// Runs until nothing moves, holding the envelopes (not reported sent).
    fn hold(&mut self) -> Vec<Envelope> {
        let mut out = Vec::new();
        loop {
            let mut progress = self.lookups() > 0;
            while let Some(envelope) = self.engine.poll_envelope() {
                out.push(envelope);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.engine.check_invariants().expect("invariants");
        out
    }
}

fn wantlist_cids(engine: &ServerEngine, peer: &PeerId) -> Vec<Cid> {
    engine.peer_wantlist(peer).iter().map(|e| e.cid).collect()
}

#[test]
fn want_block_for_a_stored_block_gets_the_block_and_is_forgotten() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let b = block(1, 3000);
    d.put(&[&b]);
    d.engine
        .handle_message(peer, &message(vec![want_block(&b, 1, true)]));
    assert_eq!(wantlist_cids(&d.engine, &peer), [*b.cid()]);
    let sent = d.run();
    assert_eq!(all_answers(&sent), [(peer, *b.cid(), Ans::Block)]);
    assert_eq!(sent[0].message.blocks[0], b);
    assert!(d.engine.peer_wantlist(&peer).is_empty());
    // Size first, then the block read when the envelope is built.
    assert_eq!(
        d.lookups,
        [(*b.cid(), LookupKind::Size), (*b.cid(), LookupKind::Get)]
    );
    let accounting = d.engine.peer_accounting(&peer).expect("connected");
    assert_eq!(accounting.blocks_sent, 1);
    assert_eq!(accounting.bytes_sent, 3000);
    assert_eq!(accounting.messages_sent, 1);
    assert_eq!(accounting.messages_received, 1);
}

#[test]
fn want_have_gets_small_blocks_and_a_have_for_large_ones() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let (small, exact, large) = (block(1, 100), block(2, 1024), block(3, 1025));
    d.put(&[&small, &exact, &large]);
    let entries = vec![
        want_have(&small, 3, true),
        want_have(&exact, 2, true),
        want_have(&large, 1, true),
    ];
    d.engine.handle_message(peer, &message(entries));
    let got: HashSet<_> = all_answers(&d.run()).into_iter().collect();
    let expected: HashSet<_> = [
        (peer, *small.cid(), Ans::Block),
        (peer, *exact.cid(), Ans::Block),
        (peer, *large.cid(), Ans::Have),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
    assert!(
        d.engine.peer_wantlist(&peer).is_empty(),
        "HAVE forgets a want-have"
    );
}

#[test]
fn replace_size_zero_probes_presence_and_answers_have() {
    let mut d = Driver::new(ServerConfig::default().with_want_have_replace_size(0));
    let peer = d.connect(Version::V1_2_0);
    let b = block(1, 10);
    d.put(&[&b]);
    d.engine
        .handle_message(peer, &message(vec![want_have(&b, 1, true)]));
    assert_eq!(all_answers(&d.run()), [(peer, *b.cid(), Ans::Have)]);
    assert_eq!(d.lookups, [(*b.cid(), LookupKind::Has)]);
}

#[test]
fn missing_blocks_get_dont_have_only_when_asked_and_the_want_stays() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let (asked, silent, have_asked) = (block(1, 10), block(2, 10), block(3, 10));
    let entries = vec![
        want_block(&asked, 1, true),
        want_block(&silent, 1, false),
        want_have(&have_asked, 1, true),
    ];
    d.engine.handle_message(peer, &message(entries));
    let got: HashSet<_> = all_answers(&d.run()).into_iter().collect();
    let expected: HashSet<_> = [
        (peer, *asked.cid(), Ans::DontHave),
        (peer, *have_asked.cid(), Ans::DontHave),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
    assert_eq!(
        d.engine.peer_wantlist(&peer).len(),
        3,
        "DONT_HAVE keeps wants"
    );
    assert_eq!(
        d.engine
            .peer_accounting(&peer)
            .expect("peer")
            .dont_haves_sent,
        2
    );
}

#[test]
fn send_dont_haves_off_never_sends_them() {
    let mut d = Driver::new(ServerConfig::default().with_send_dont_haves(false));
    let peer = d.connect(Version::V1_2_0);
    let b = block(1, 10);
    d.engine
        .handle_message(peer, &message(vec![want_block(&b, 1, true)]));
    assert!(d.run().is_empty());
}

#[test]
fn blocks_stored_later_reach_the_peers_that_want_them_in_queue_order() {
    let mut d = Driver::new(ServerConfig::default());
    let (a, b) = (d.connect(Version::V1_2_0), d.connect(Version::V1_2_0));
    let (low, high, large) = (block(1, 10), block(2, 10), block(3, 5000));
    d.engine.handle_message(
        a,
        &message(vec![
            want_block(&low, 1, false),
            want_block(&high, 9, false),
        ]),
    );
    d.engine.handle_message(
        b,
        &message(vec![want_have(&large, 1, true), want_block(&low, 1, true)]),
    );
    let first = d.run();
    assert_eq!(
        all_answers(&first)
            .iter()
            .filter(|(_, _, ans)| *ans == Ans::DontHave)
            .count(),
        2
    );
    d.arrive(&[&low, &high, &large]);
    let sent = d.run();
    let to_a: Vec<_> = sent
        .iter()
        .filter(|e| e.peer == a)
        .flat_map(answers)
        .collect();
    assert_eq!(
        to_a,
        [(*high.cid(), Ans::Block), (*low.cid(), Ans::Block)],
        "higher priority first"
    );
    let to_b: HashSet<_> = sent
        .iter()
        .filter(|e| e.peer == b)
        .flat_map(answers)
        .collect();
    let expected: HashSet<_> = [(*large.cid(), Ans::Have), (*low.cid(), Ans::Block)]
        .into_iter()
        .collect();
    assert_eq!(to_b, expected);
    assert!(d.engine.peer_wantlist(&a).is_empty());
    assert!(d.engine.peer_wantlist(&b).is_empty());
}

#[test]
fn blocks_stored_under_another_cid_of_the_same_multihash_are_found() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let v0 = Block::from_v0_data(Bytes::from_static(b"dag-pb bytes")).expect("block");
    let v1 = Block::new(Cid::new_v1(0x70, *v0.cid().hash()), v0.data().clone()).expect("same");
    d.engine
        .handle_message(peer, &message(vec![want_block(&v1, 1, false)]));
    assert!(d.run().is_empty());
    d.arrive(&[&v0]);
    eprintln!("stats after arrive {:?}", d.engine.stats());
    let sent = d.run();
    eprintln!("lookups {:?}", d.lookups);
    assert_eq!(all_answers(&sent), [(peer, *v1.cid(), Ans::Block)]);
    assert_eq!(
        sent[0].message.blocks[0].cid(),
        v1.cid(),
        "under the CID asked"
    );
}

#[test]
fn peers_before_1_2_get_blocks_for_want_haves_and_no_presences() {
    for version in [Version::V1_1_0, Version::V1_0_0] {
        let mut d = Driver::new(ServerConfig::default());
        let peer = d.connect(version);
        // CIDv0 blocks, so that 1.0.0 can carry them.
        let large = Block::from_v0_data(Bytes::from(vec![7u8; 5000])).expect("block");
        let missing = Block::from_v0_data(Bytes::from_static(b"missing")).expect("block");
        d.put(&[&large]);
        let entries = vec![want_have(&large, 1, true), want_have(&missing, 1, true)];
        d.engine.handle_message(peer, &message(entries));
        let sent = d.run();
        assert_eq!(
            all_answers(&sent),
            [(peer, *large.cid(), Ans::Block)],
            "{version}"
        );
        let kept = d.engine.peer_wantlist(&peer);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].want_type, WantType::Block);
        assert!(!kept[0].send_dont_have);
    }
}

#[test]
fn full_wantlist_replaces_and_removes_queued_tasks() {
    let mut d = Driver::new(ServerConfig::default().with_max_envelopes_in_flight(1));
    let held = d.block_the_slot();
    let peer = d.connect(Version::V1_2_0);
    let (a, b, c) = (block(1, 10), block(2, 10), block(3, 10));
    d.put(&[&a, &b, &c]);
    d.engine.handle_message(
        peer,
        &message(vec![want_block(&a, 1, true), want_block(&b, 1, true)]),
    );
    assert!(d.probes().is_none());
    assert_eq!(d.engine.stats().pending_tasks, 2, "answers queued");
    d.engine
        .handle_message(peer, &full(vec![want_block(&c, 1, true)]));
    assert_eq!(wantlist_cids(&d.engine, &peer), [*c.cid()]);
    assert_eq!(d.engine.stats().pending_tasks, 0, "old answers removed");
    d.release_the_slot(held);
    let answers: Vec<_> = all_answers(&d.run())
        .into_iter()
        .filter(|answer| answer.0 == peer)
        .collect();
    assert_eq!(answers, [(peer, *c.cid(), Ans::Block)]);
}

#[test]
fn cancel_removes_the_want_and_its_queued_answer() {
    let mut d = Driver::new(ServerConfig::default().with_max_envelopes_in_flight(1));
    let held = d.block_the_slot();
    let peer = d.connect(Version::V1_2_0);
    let (a, b) = (block(1, 10), block(2, 10));
    d.put(&[&a]);
    let entries = vec![want_block(&a, 1, true), want_block(&b, 1, true)];
    d.engine.handle_message(peer, &message(entries));
    assert!(d.probes().is_none());
    assert_eq!(d.engine.stats().pending_tasks, 2);
    d.engine.handle_message(
        peer,
        &message(vec![Entry::cancel(*a.cid()), Entry::cancel(*b.cid())]),
    );
    assert_eq!(d.engine.stats().pending_tasks, 0);
    assert!(d.engine.peer_wantlist(&peer).is_empty());
    d.release_the_slot(held);
    assert!(d.run().iter().all(|envelope| envelope.peer != peer));
}

#[test]
fn cancel_while_the_block_is_read_sends_nothing() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let a = block(1, 10);
    d.put(&[&a]);
    d.engine
        .handle_message(peer, &message(vec![want_block(&a, 1, true)]));
    let get = d.probes().expect("a block read");
    assert!(
        d.engine.poll_envelope().is_none(),
        "waits for the block read"
    );
    d.engine
        .handle_message(peer, &message(vec![Entry::cancel(*a.cid())]));
    d.engine
        .handle_lookup(get.id, LookupResult::Block(Some(a.clone())));
    assert!(d.run().is_empty());
    let stats = d.engine.stats();
    assert_eq!((stats.active_tasks, stats.envelopes_in_flight), (0, 0));
}

#[test]
fn a_want_asked_again_without_dont_have_gets_none_from_an_earlier_task() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let a = block(1, 10);
    d.engine
        .handle_message(peer, &message(vec![want_block(&a, 1, true)]));
    assert!(d.probes().is_none(), "DONT_HAVE popped, not handed out");
    assert_eq!(d.engine.stats().active_tasks, 1);
    d.engine
        .handle_message(peer, &full(vec![want_block(&a, 1, false)]));
    assert!(d.run().is_empty());
}

#[test]
fn cancel_drops_a_refused_wants_dont_have_before_it_is_handed_out() {
    let mut d = Driver::new(ServerConfig::default().with_request_filter(|_, _| false));
    let peer = d.connect(Version::V1_2_0);
    let a = block(1, 10);
    d.engine
        .handle_message(peer, &message(vec![want_block(&a, 1, true)]));
    assert!(d.engine.poll_lookup().is_none(), "pops the DONT_HAVE");
    assert_eq!(d.engine.stats().active_tasks, 1);
    d.engine
        .handle_message(peer, &message(vec![Entry::cancel(*a.cid())]));
    assert!(d.run().is_empty());
    assert_eq!(d.engine.stats().active_tasks, 0);
}

#[test]
fn a_block_gone_before_it_is_read_is_answered_dont_have_and_stays_wanted() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let a = block(1, 10);
    d.put(&[&a]);
    d.engine
        .handle_message(peer, &message(vec![want_block(&a, 1, true)]));
    let get = d.probes().expect("a block read");
    d.store.clear();
    d.engine.handle_lookup(get.id, LookupResult::Block(None));
    assert_eq!(all_answers(&d.run()), [(peer, *a.cid(), Ans::DontHave)]);
    assert_eq!(wantlist_cids(&d.engine, &peer), [*a.cid()]);
}

#[test]
fn full_ledger_lets_lower_priority_wants_give_way() {
    let config = ServerConfig::default().with_max_wants_per_peer(3);
    let mut d = Driver::new(config);
    let peer = d.connect(Version::V1_2_0);
    let blocks: Vec<Block> = (0..8).map(|i| block(i, 10)).collect();
    let w = |i: usize, p: i32| want_block(&blocks[i], p, true);
    // boxo's overflow sorted the existing wants the wrong way and refused 6 here.
    d.engine
        .handle_message(peer, &message(vec![w(0, 10), w(1, 1), w(2, 5), w(3, 6)]));
    let mut kept = wantlist_cids(&d.engine, &peer);
    kept.sort();
    let mut expected = vec![*blocks[0].cid(), *blocks[2].cid(), *blocks[3].cid()];
    expected.sort();
    assert_eq!(kept, expected);
    // Not higher than the lowest (5): refused.
    d.engine.handle_message(peer, &message(vec![w(4, 5)]));
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
    d.engine.handle_message(peer, &message(vec![w(5, -100)]));
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
    let mut d = Driver::new(config);
    let peer = d.connect(Version::V1_2_0);
    let blocks: Vec<Block> = (0..4).map(|i| block(i, 10)).collect();
    d.put(&[&blocks[0], &blocks[1], &blocks[2]]);
    let entries = vec![
        want_block(&blocks[0], 1, true),
        Entry::cancel(*blocks[3].cid()),
        want_block(&blocks[1], 1, true),
        want_block(&blocks[2], 1, true),
        want_block(&blocks[3], 1, false),
    ];
    d.engine.handle_message(peer, &message(entries));
    assert_eq!(
        d.engine.peer_wantlist(&peer).len(),
        2,
        "cancels are not counted"
    );
    let got: HashSet<_> = all_answers(&d.run()).into_iter().collect();
    let expected: HashSet<_> = [
        (peer, *blocks[0].cid(), Ans::Block),
        (peer, *blocks[1].cid(), Ans::Block),
        (peer, *blocks[2].cid(), Ans::DontHave),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
}

/// A wantlist read off the wire as the network layer reads it (with its default cap of 1024
/// wants), then handed to the engine.
fn decoded(entries: Vec<Entry>) -> Message {
    let frame: Vec<u8> = encode(&message(entries), Version::V1_2_0).concat();
    let (len, body) = unsigned_varint::decode::usize(&frame).expect("length prefix");
    assert_eq!(len, body.len());
    let (message, dropped) =
        bitswap::decode_message(&Bytes::copy_from_slice(body), 1024).expect("decodes");
    assert!(dropped.is_empty(), "{dropped:?}");
    message
}

#[test]
fn cancels_beside_a_thousand_wants_all_apply_and_every_want_is_answered() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let old: Vec<Block> = (0..200).map(|i| block(i, 10)).collect();
    let new: Vec<Block> = (1000..2000).map(|i| block(i, 10)).collect();
    let first = old.iter().map(|b| want_block(b, 1, false)).collect();
    d.engine.handle_message(peer, &decoded(first));
    assert!(d.run().is_empty(), "missing, and no DONT_HAVE asked");
    let mut entries: Vec<Entry> = old.iter().map(|b| Entry::cancel(*b.cid())).collect();
    entries.extend(new.iter().map(|b| want_have(b, 1, true)));
    d.engine.handle_message(peer, &decoded(entries));
    let got: HashSet<_> = all_answers(&d.run()).into_iter().collect();
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
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
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
    let mut d = Driver::new(ServerConfig::default().with_max_cid_size(36));
    let peer = d.connect(Version::V1_2_0);
    let short = block(1, 10);
    let data = Bytes::from_static(b"long");
    let long = Block::new(Cid::new_v1(0x55, Code::Sha2_512.digest(&data)), data).expect("ok");
    assert_eq!(long.cid().encoded_len(), 68);
    d.put(&[&short, &long]);
    let entries = vec![want_block(&short, 1, true), want_block(&long, 1, true)];
    d.engine.handle_message(peer, &message(entries));
    assert_eq!(wantlist_cids(&d.engine, &peer), [*short.cid()]);
    assert_eq!(all_answers(&d.run()), [(peer, *short.cid(), Ans::Block)]);
    // The default (168 bytes, boxo's) takes both.
    assert_eq!(ServerConfig::default().max_cid_size(), 168);
}

#[test]
fn identity_cids_are_never_answered() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let id = Cid::new_v1(0x55, Multihash::wrap(0x00, b"inline").expect("short"));
    let entries = vec![Entry::want_block(id, 1), Entry::want_have(id, 1)];
    d.engine.handle_message(peer, &message(entries));
    assert!(d.engine.peer_wantlist(&peer).is_empty());
    assert!(d.run().is_empty());
    assert!(d.lookups.is_empty());
}

#[test]
fn filter_denials_are_answered_as_dont_have() {
    let denied = block(1, 10);
    let denied_cid = *denied.cid();
    let config = ServerConfig::default().with_request_filter(move |_, cid| *cid != denied_cid);
    let mut d = Driver::new(config);
    let peer = d.connect(Version::V1_2_0);
    let allowed = block(2, 10);
    let silent = block(3, 10);
    d.put(&[&denied, &allowed]);
    let entries = vec![want_block(&denied, 1, true), want_block(&allowed, 1, true)];
    d.engine.handle_message(peer, &message(entries));
    assert_eq!(wantlist_cids(&d.engine, &peer), [*allowed.cid()]);
    let got: HashSet<_> = all_answers(&d.run()).into_iter().collect();
    let expected: HashSet<_> = [
        (peer, denied_cid, Ans::DontHave),
        (peer, *allowed.cid(), Ans::Block),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, expected);
    assert!(
        !d.lookups.iter().any(|(c, _)| *c == denied_cid),
        "never looked up"
    );
    // Denied without asking for DONT_HAVE: nothing.
    let config = ServerConfig::default().with_request_filter(|_, _| false);
    let mut d = Driver::new(config);
    let peer = d.connect(Version::V1_2_0);
    d.engine
        .handle_message(peer, &message(vec![want_block(&silent, 1, false)]));
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
    d.engine.handle_message(peer, &message(entries));
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
    let mut d = Driver::new(config);
    let peer = d.connect(Version::V1_2_0);
    // Three 2 MiB blocks, then 1100 blocks of 4000 bytes (4.4 MB of data).
    let mut blocks: Vec<Block> = (0..3).map(|i| block(i, MAX_BLOCK_SIZE)).collect();
    blocks.extend((3..1103).map(|i| block(i, 4000)));
    d.put(&blocks.iter().collect::<Vec<_>>());
    let entries = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| want_block(b, -(i as i32), true))
        .collect();
    d.engine.handle_message(peer, &message(entries));
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
    d.engine.handle_message(heavy, &message(entries));
    let held = d.hold();
    assert_eq!(held.len(), 2, "8 KiB outstanding, then the peer waits");
    assert_eq!(d.engine.stats().active_bytes, 8192);
    d.engine
        .handle_message(light, &message(vec![want_block(&other, 1, true)]));
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
        d.engine
            .handle_message(*peer, &message(vec![want_block(&b, 1, true)]));
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
        message(
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
    d.engine.handle_message(heavy, &message(entries));
    d.engine
        .handle_message(light, &message(vec![want_block(&other, 1, true)]));
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
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let b = block(1, 5000);
    d.put(&[&b]);
    d.engine
        .handle_message(peer, &message(vec![want_have(&b, 1, true)]));
    let have = d.hold();
    assert_eq!(all_answers(&have), [(peer, *b.cid(), Ans::Have)]);
    d.engine
        .handle_message(peer, &message(vec![want_block(&b, 1, true)]));
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
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let blocks: Vec<Block> = (0..4).map(|i| block(i, 10)).collect();
    d.put(&[&blocks[0], &blocks[1]]);
    let entries = blocks.iter().map(|b| want_block(b, 1, true)).collect();
    d.engine.handle_message(peer, &message(entries));
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
    d.engine
        .handle_message(peer, &message(vec![want_block(&blocks[0], 1, true)]));
    assert_eq!(d.engine.stats().wants, 0);
}

#[test]
fn metrics_count_traffic_without_peer_labels() {
    use prometheus_client::{encoding::text::encode as encode_metrics, registry::Registry};
    let mut registry = Registry::default();
    let metrics = ServerMetrics::new(&mut registry);
    let mut d = Driver::new(ServerConfig::default());
    d.engine = ServerEngine::with_metrics(ServerConfig::default(), metrics);
    let peer = d.connect(Version::V1_2_0);
    let (a, large, missing) = (block(1, 10), block(2, 2000), block(3, 10));
    d.put(&[&a, &large]);
    let mut m = message(vec![
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
    engine.handle_message(peer, &message(entries));
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

/// Property tests: random wantlist sequences from several peers.
mod model {
    use std::cmp::Reverse;

    use proptest::{prelude::*, sample::Index};

    use super::*;

    const PEERS: usize = 3;
    const CAP: usize = 4;
    const PER_MESSAGE: usize = 3;
    const REPLACE: usize = 8;
    /// Block sizes by CID index; at most `REPLACE` is sent for a want-have.
    const SIZES: [usize; 8] = [6, 20, 7, 50, 8, 30, 5, 100];

    fn denied(peer: usize, cid: usize) -> bool {
        (peer == 0 && cid == 7) || (peer == 2 && cid == 3)
    }

    #[derive(Debug, Clone)]
    enum E {
        Cancel(usize),
        Want {
            cid: usize,
            have: bool,
            sdh: bool,
            prio: i32,
        },
    }

    #[derive(Debug, Clone)]
    enum Op {
        Connect(usize, bool),
        Disconnect(usize),
        Msg {
            peer: usize,
            full: bool,
            entries: Vec<E>,
        },
        Arrive(usize),
    }

    fn entry() -> impl Strategy<Value = E> {
        prop_oneof![
            1 => (0..SIZES.len()).prop_map(E::Cancel),
            4 => (0..SIZES.len(), any::<bool>(), any::<bool>(), -3i32..4).prop_map(
                |(cid, have, sdh, prio)| E::Want { cid, have, sdh, prio }
            ),
        ]
    }

    fn msg() -> impl Strategy<Value = Op> {
        (
            0..PEERS,
            prop::bool::weighted(0.2),
            prop::collection::vec(entry(), 0..7),
        )
            .prop_map(|(peer, full, entries)| Op::Msg {
                peer,
                full,
                entries,
            })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            1 => (0..PEERS, any::<bool>()).prop_map(|(p, v)| Op::Connect(p, v)),
            1 => (0..PEERS).prop_map(Op::Disconnect),
            8 => msg(),
            2 => (0..SIZES.len()).prop_map(Op::Arrive),
        ]
    }

    fn to_entry(blocks: &[Block], e: &E) -> Entry {
        match *e {
            E::Cancel(c) => Entry::cancel(*blocks[c].cid()),
            E::Want {
                cid,
                have,
                sdh,
                prio,
            } => Entry {
                cid: *blocks[cid].cid(),
                priority: prio,
                want_type: if have {
                    WantType::Have
                } else {
                    WantType::Block
                },
                send_dont_have: sdh,
                cancel: false,
            },
        }
    }

    struct Setup {
        blocks: Vec<Block>,
        peers: Vec<PeerId>,
    }

    impl Setup {
        fn new() -> Self {
            Self {
                blocks: (0..SIZES.len())
                    .map(|i| block(i as u32, SIZES[i]))
                    .collect(),
                peers: (0..PEERS).map(|_| PeerId::random()).collect(),
            }
        }

        fn config(&self) -> ServerConfig {
            let peers = self.peers.clone();
            let cids: Vec<Cid> = self.blocks.iter().map(|b| *b.cid()).collect();
            ServerConfig::default()
                .with_max_wants_per_peer(CAP)
                .with_max_entries_per_message(PER_MESSAGE)
                .with_want_have_replace_size(REPLACE)
                .with_target_message_size(40)
                .with_max_outstanding_bytes_per_peer(60)
                .with_max_envelopes_in_flight(2)
                .with_max_lookups_in_flight(3)
                .with_request_filter(move |p, c| {
                    let p = peers.iter().position(|x| x == p).expect("known peer");
                    let c = cids.iter().position(|x| x == c).expect("known cid");
                    !denied(p, c)
                })
        }

        fn peer(&self, peer: &PeerId) -> usize {
            self.peers.iter().position(|p| p == peer).expect("known")
        }

        fn cid(&self, cid: &Cid) -> usize {
            self.blocks
                .iter()
                .position(|b| b.cid() == cid)
                .expect("known")
        }
    }

    #[derive(Debug, Clone)]
    struct MWant {
        cid: usize,
        prio: i32,
        have: bool,
        sdh: bool,
        seq: u64,
        missing: bool,
        fresh: bool,
    }

    #[derive(Debug)]
    struct MPeer {
        v12: bool,
        ledger: Vec<MWant>,
    }

    /// The rules, written naively: a wantlist per peer in a `Vec`, scanned.
    struct Model {
        peers: Vec<Option<MPeer>>,
        present: Vec<bool>,
        seq: u64,
    }

    impl Model {
        /// Applies a message; returns the answers the peer must get for it (at most one per
        /// CID) once everything has run.
        fn message(&mut self, p: usize, full: bool, entries: &[E]) -> HashMap<usize, Ans> {
            let mut expected = HashMap::new();
            let Some(peer) = self.peers[p].as_mut() else {
                return expected;
            };
            if full {
                peer.ledger.clear();
            }
            for w in &mut peer.ledger {
                w.fresh = false;
            }
            let v12 = peer.v12;
            let mut answer_only: Vec<usize> = Vec::new();
            let add = |answer_only: &mut Vec<usize>, c: usize| {
                if v12 && !answer_only.contains(&c) && answer_only.len() < CAP {
                    answer_only.push(c);
                }
            };
            let mut taken = 0;
            for e in entries {
                match *e {
                    E::Cancel(c) => {
                        peer.ledger.retain(|w| w.cid != c);
                        answer_only.retain(|&x| x != c);
                    }
                    E::Want {
                        cid: c,
                        have,
                        sdh,
                        prio,
                    } => {
                        let (have, sdh) = if v12 { (have, sdh) } else { (false, false) };
                        let in_ledger = peer.ledger.iter().any(|w| w.cid == c);
                        if taken >= PER_MESSAGE {
                            if !in_ledger && sdh {
                                add(&mut answer_only, c);
                            }
                            continue;
                        }
                        taken += 1;
                        if denied(p, c) {
                            peer.ledger.retain(|w| w.cid != c);
                            if sdh {
                                add(&mut answer_only, c);
                            }
                            continue;
                        }
                        answer_only.retain(|&x| x != c);
                        self.seq += 1;
                        let want = MWant {
                            cid: c,
                            prio,
                            have,
                            sdh,
                            seq: self.seq,
                            missing: false,
                            fresh: true,
                        };
                        if let Some(w) = peer.ledger.iter_mut().find(|w| w.cid == c) {
                            *w = want;
                        } else if peer.ledger.len() < CAP {
                            peer.ledger.push(want);
                        } else {
                            let (i, victim) = peer
                                .ledger
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, w)| (!w.missing, w.prio, Reverse(w.seq)))
                                .map(|(i, w)| (i, w.clone()))
                                .expect("full");
                            if victim.missing || victim.prio < prio {
                                peer.ledger.remove(i);
                                if victim.sdh && !victim.missing {
                                    add(&mut answer_only, victim.cid);
                                }
                                peer.ledger.push(want);
                            } else if sdh {
                                add(&mut answer_only, c);
                            }
                        }
                    }
                }
            }
            for c in answer_only {
                expected.insert(c, Ans::DontHave);
            }
            let present = &self.present;
            peer.ledger.retain_mut(|w| {
                if !w.fresh {
                    return true;
                }
                if present[w.cid] {
                    let block = !w.have || SIZES[w.cid] <= REPLACE;
                    expected.insert(w.cid, if block { Ans::Block } else { Ans::Have });
                    return false;
                }
                w.missing = true;
                if w.sdh {
                    expected.insert(w.cid, Ans::DontHave);
                }
                true
            });
            expected
        }

        /// A block arrives; returns the answers per peer.
        fn arrive(&mut self, c: usize) -> HashMap<(usize, usize), Ans> {
            self.present[c] = true;
            let mut expected = HashMap::new();
            for (p, peer) in self.peers.iter_mut().enumerate() {
                let Some(peer) = peer else { continue };
                peer.ledger.retain(|w| {
                    if w.cid != c {
                        return true;
                    }
                    let block = !w.have || SIZES[c] <= REPLACE;
                    expected.insert((p, c), if block { Ans::Block } else { Ans::Have });
                    false
                });
            }
            expected
        }
    }

    fn check_envelope(envelope: &Envelope, version: Version) -> Result<(), TestCaseError> {
        prop_assert!(!envelope.message.is_empty());
        let frames = encode(&envelope.message, version);
        prop_assert_eq!(frames.len(), 1);
        Ok(())
    }

    fn run_model(
        initial: Vec<bool>,
        versions: Vec<bool>,
        ops: Vec<Op>,
    ) -> Result<(), TestCaseError> {
        let setup = Setup::new();
        let mut d = Driver::new(setup.config());
        let mut model = Model {
            peers: versions
                .iter()
                .map(|&v12| {
                    Some(MPeer {
                        v12,
                        ledger: Vec::new(),
                    })
                })
                .collect(),
            present: initial.clone(),
            seq: 0,
        };
        let version = |v12: bool| {
            if v12 {
                Version::V1_2_0
            } else {
                Version::V1_1_0
            }
        };
        for (i, &v12) in versions.iter().enumerate() {
            d.engine.handle_peer_connected(setup.peers[i], version(v12));
        }
        for (i, &present) in initial.iter().enumerate() {
            if present {
                d.put(&[&setup.blocks[i]]);
            }
        }
        for op in &ops {
            let expected: HashMap<(usize, usize), Ans> = match op {
                Op::Connect(p, v12) => {
                    if model.peers[*p].is_none() {
                        model.peers[*p] = Some(MPeer {
                            v12: *v12,
                            ledger: Vec::new(),
                        });
                        d.engine
                            .handle_peer_connected(setup.peers[*p], version(*v12));
                    }
                    HashMap::new()
                }
                Op::Disconnect(p) => {
                    model.peers[*p] = None;
                    d.engine.handle_peer_disconnected(&setup.peers[*p]);
                    HashMap::new()
                }
                Op::Msg {
                    peer,
                    full: is_full,
                    entries,
                } => {
                    let wire: Vec<Entry> =
                        entries.iter().map(|e| to_entry(&setup.blocks, e)).collect();
                    let m = if *is_full { full(wire) } else { message(wire) };
                    d.engine.handle_message(setup.peers[*peer], &m);
                    model
                        .message(*peer, *is_full, entries)
                        .into_iter()
                        .map(|(c, a)| ((*peer, c), a))
                        .collect()
                }
                Op::Arrive(c) => {
                    let b = setup.blocks[*c].clone();
                    d.arrive(&[&b]);
                    model.arrive(*c)
                }
            };
            let sent = d.run();
            let mut got = HashMap::new();
            for envelope in &sent {
                let p = setup.peer(&envelope.peer);
                let v12 = model.peers[p].as_ref().expect("connected").v12;
                check_envelope(envelope, version(v12))?;
                for (cid, ans) in answers(envelope) {
                    let previous = got.insert((p, setup.cid(&cid)), ans);
                    prop_assert!(previous.is_none(), "answered twice: {:?} {:?}", op, sent);
                }
            }
            prop_assert_eq!(&got, &expected, "after {:?}", op);
            for (p, peer) in model.peers.iter().enumerate() {
                let mut engine_wants: Vec<(usize, i32, bool, bool)> = d
                    .engine
                    .peer_wantlist(&setup.peers[p])
                    .iter()
                    .map(|e| {
                        (
                            setup.cid(&e.cid),
                            e.priority,
                            e.want_type == WantType::Have,
                            e.send_dont_have,
                        )
                    })
                    .collect();
                let mut model_wants: Vec<(usize, i32, bool, bool)> = peer
                    .iter()
                    .flat_map(|peer| &peer.ledger)
                    .map(|w| (w.cid, w.prio, w.have, w.sdh))
                    .collect();
                engine_wants.sort();
                model_wants.sort();
                prop_assert!(engine_wants.len() <= CAP);
                prop_assert_eq!(engine_wants, model_wants, "ledger of {} after {:?}", p, op);
            }
            assert_drained(&d.engine)?;
        }
        Ok(())
    }

    /// Nothing pending, active or in flight: the engine has drained.
    fn assert_drained(engine: &ServerEngine) -> Result<(), TestCaseError> {
        let stats = engine.stats();
        prop_assert_eq!(
            (
                stats.pending_tasks,
                stats.active_tasks,
                stats.envelopes_in_flight,
                stats.lookups_in_flight
            ),
            (0, 0, 0, 0)
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Run to quiescence after every step: every want is answered exactly once as the
        /// rules say (block, HAVE, DONT_HAVE, or nothing), nothing else is sent, and the
        /// ledgers (caps, overflow order, full replacement, cancels) equal the model's.
        #[test]
        fn every_want_is_answered_once_per_the_rules(
            initial in prop::collection::vec(any::<bool>(), SIZES.len()),
            versions in prop::collection::vec(prop::bool::weighted(0.75), PEERS),
            ops in prop::collection::vec(op(), 1..40),
        ) {
            run_model(initial, versions, ops)?;
        }
    }

    /// Steps of an interleaved run: the embedder answers lookups in any order, reports
    /// envelopes late, and blocks come and go meanwhile.
    #[derive(Debug, Clone)]
    enum Step {
        Op(Op),
        Remove(usize),
        PollLookup,
        Answer(Index, bool),
        PollEnvelope,
        Resolve(Index, bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => op().prop_map(Step::Op),
            1 => (0..SIZES.len()).prop_map(Step::Remove),
            3 => Just(Step::PollLookup),
            3 => (any::<Index>(), prop::bool::weighted(0.1)).prop_map(|(i, f)| Step::Answer(i, f)),
            3 => Just(Step::PollEnvelope),
            3 => (any::<Index>(), prop::bool::weighted(0.8)).prop_map(|(i, s)| Step::Resolve(i, s)),
        ]
    }

    /// What may still be sent to a peer about a CID.
    #[derive(Debug, Default, Clone, Copy)]
    struct May {
        /// Wanted (and allowed) since the last cancel, replacement, disconnect or block sent.
        live: bool,
        /// Asked DONT_HAVE since the last cancel, replacement or disconnect.
        dont_have: bool,
        /// A block for it is in an envelope not yet reported.
        block_in_flight: bool,
    }

    struct Weak {
        connected: Vec<Option<bool>>,
        may: HashMap<(usize, usize), May>,
    }

    impl Weak {
        fn message(&mut self, p: usize, full: bool, entries: &[E]) {
            let Some(v12) = self.connected[p] else {
                return;
            };
            if full {
                for ((q, _), may) in self.may.iter_mut() {
                    if *q == p {
                        may.live = false;
                        may.dont_have = false;
                    }
                }
            }
            for e in entries {
                match *e {
                    E::Cancel(c) => {
                        let may = self.may.entry((p, c)).or_default();
                        may.live = false;
                        may.dont_have = false;
                    }
                    E::Want { cid, sdh, .. } => {
                        let may = self.may.entry((p, cid)).or_default();
                        may.dont_have |= sdh && v12;
                        // The filter is fixed: a denied CID is never kept.
                        may.live = !denied(p, cid);
                    }
                }
            }
        }

        fn check(&mut self, setup: &Setup, envelope: &Envelope) -> Result<(), TestCaseError> {
            let p = setup.peer(&envelope.peer);
            let v12 = self.connected[p];
            prop_assert!(v12.is_some(), "envelope for a peer gone");
            let v12 = v12.unwrap_or_default();
            let version = if v12 {
                Version::V1_2_0
            } else {
                Version::V1_1_0
            };
            check_envelope(envelope, version)?;
            for (cid, ans) in answers(envelope) {
                let c = setup.cid(&cid);
                let may = self.may.entry((p, c)).or_default();
                match ans {
                    Ans::Block => {
                        prop_assert!(may.live, "block {} to {} not wanted", c, p);
                        prop_assert!(!may.block_in_flight, "block {} to {} twice", c, p);
                        may.block_in_flight = true;
                    }
                    Ans::Have => prop_assert!(may.live && v12, "HAVE {} to {}", c, p),
                    Ans::DontHave => prop_assert!(may.dont_have && v12, "DONT_HAVE {} to {}", c, p),
                }
            }
            Ok(())
        }

        fn resolved(&mut self, setup: &Setup, envelope: &Envelope, sent: bool, current: bool) {
            let p = setup.peer(&envelope.peer);
            for block in &envelope.message.blocks {
                let may = self.may.entry((p, setup.cid(block.cid()))).or_default();
                may.block_in_flight = false;
                if sent && current {
                    may.live = false;
                }
            }
        }
    }

    fn run_interleaved(initial: Vec<bool>, steps: Vec<Step>) -> Result<(), TestCaseError> {
        let setup = Setup::new();
        let mut d = Driver::new(setup.config());
        let mut weak = Weak {
            connected: vec![None; PEERS],
            may: HashMap::new(),
        };
        for (i, &present) in initial.iter().enumerate() {
            if present {
                d.put(&[&setup.blocks[i]]);
            }
        }
        let mut lookups = Vec::new();
        // Envelopes out, with the connection epoch of their peer.
        let mut out: Vec<(Envelope, u64)> = Vec::new();
        let mut epochs = [0u64; PEERS];
        for p in 0..PEERS {
            weak.connected[p] = Some(true);
            d.engine
                .handle_peer_connected(setup.peers[p], Version::V1_2_0);
        }
        for step in steps {
            match step {
                Step::Op(Op::Connect(p, v12)) => {
                    if weak.connected[p].is_none() {
                        weak.connected[p] = Some(v12);
                        let version = if v12 {
                            Version::V1_2_0
                        } else {
                            Version::V1_1_0
                        };
                        d.engine.handle_peer_connected(setup.peers[p], version);
                    }
                }
                Step::Op(Op::Disconnect(p)) => {
                    weak.connected[p] = None;
                    epochs[p] += 1;
                    for ((q, _), may) in weak.may.iter_mut() {
                        if *q == p {
                            may.live = false;
                            may.dont_have = false;
                        }
                    }
                    d.engine.handle_peer_disconnected(&setup.peers[p]);
                }
                Step::Op(Op::Msg {
                    peer,
                    full: is_full,
                    entries,
                }) => {
                    let wire: Vec<Entry> =
                        entries.iter().map(|e| to_entry(&setup.blocks, e)).collect();
                    let m = if is_full { full(wire) } else { message(wire) };
                    weak.message(peer, is_full, &entries);
                    d.engine.handle_message(setup.peers[peer], &m);
                }
                Step::Op(Op::Arrive(c)) => {
                    let b = setup.blocks[c].clone();
                    d.arrive(&[&b]);
                }
                Step::Remove(c) => {
                    d.store.remove(setup.blocks[c].cid().hash());
                }
                Step::PollLookup => {
                    if let Some(lookup) = d.engine.poll_lookup() {
                        lookups.push(lookup);
                    }
                }
                Step::Answer(i, fail) => {
                    if !lookups.is_empty() {
                        let lookup = lookups.swap_remove(i.index(lookups.len()));
                        let result = if fail {
                            LookupResult::Failed
                        } else {
                            d.answer(&lookup.cid, lookup.kind)
                        };
                        d.engine.handle_lookup(lookup.id, result);
                    }
                }
                Step::PollEnvelope => {
                    if let Some(envelope) = d.engine.poll_envelope() {
                        weak.check(&setup, &envelope)?;
                        let p = setup.peer(&envelope.peer);
                        out.push((envelope, epochs[p]));
                    }
                }
                Step::Resolve(i, sent) => {
                    if !out.is_empty() {
                        let (envelope, epoch) = out.swap_remove(i.index(out.len()));
                        let current = epochs[setup.peer(&envelope.peer)] == epoch;
                        weak.resolved(&setup, &envelope, sent, current);
                        if sent {
                            d.engine.handle_envelope_sent(envelope.id);
                        } else {
                            d.engine.handle_envelope_failed(envelope.id);
                        }
                    }
                }
            }
            d.engine.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert!(lookups.len() <= 3 && out.len() <= 2 * SIZES.len());
        }
        // Finish: answer and report everything, then run to quiescence.
        for lookup in lookups.drain(..) {
            let result = d.answer(&lookup.cid, lookup.kind);
            d.engine.handle_lookup(lookup.id, result);
        }
        for (envelope, epoch) in out.drain(..) {
            let current = epochs[setup.peer(&envelope.peer)] == epoch;
            weak.resolved(&setup, &envelope, true, current);
            d.engine.handle_envelope_sent(envelope.id);
        }
        loop {
            let mut progress = d.lookups() > 0;
            while let Some(envelope) = d.engine.poll_envelope() {
                weak.check(&setup, &envelope)?;
                weak.resolved(&setup, &envelope, true, true);
                d.engine.handle_envelope_sent(envelope.id);
                progress = true;
            }
            if !progress {
                break;
            }
        }
        d.engine.check_invariants().map_err(TestCaseError::fail)?;
        assert_drained(&d.engine)?;
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Lookups answered in any order (some failing), envelopes reported late (some
        /// failing), blocks added and removed meanwhile: the engine's invariants and bounds
        /// hold after every step, nothing is sent for a want cancelled, replaced or dropped by
        /// a disconnect (unless its envelope was already out), no block is sent twice for one
        /// want, and everything drains at the end.
        #[test]
        fn interleaved_runs_keep_the_invariants(
            initial in prop::collection::vec(any::<bool>(), SIZES.len()),
            steps in prop::collection::vec(step(), 1..80),
        ) {
            run_interleaved(initial, steps)?;
        }
    }
}

/// An envelope cut on its way to a peer still connected is answered again (the peer will not
/// ask again); one that failed otherwise is not.
#[test]
fn a_lost_envelope_is_answered_again_and_a_failed_one_is_not() {
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let (a, b) = (block(1, 10), block(2, 10));
    d.put(&[&a]);
    let entries = vec![want_block(&a, 1, true), want_have(&b, 1, true)];
    d.engine.handle_message(peer, &message(entries));
    let first = d.hold();
    assert_eq!(
        all_answers(&first),
        [
            (peer, *a.cid(), Ans::Block),
            (peer, *b.cid(), Ans::DontHave)
        ]
    );
    for envelope in &first {
        d.engine.handle_envelope_lost(envelope.id);
    }
    let again = d.hold();
    assert_eq!(all_answers(&again), all_answers(&first));
    for envelope in &again {
        d.engine.handle_envelope_failed(envelope.id);
    }
    assert!(d.run().is_empty(), "a failure is not retried");
    assert_eq!(d.engine.peer_wantlist(&peer).len(), 2, "the wants stay");
}

/// A peer with `max_envelopes_per_peer` envelopes out gets no more until one is reported;
/// its answers gather meanwhile and leave together.
#[test]
fn answers_gather_while_a_peer_has_its_envelopes_out() {
    let mut d = Driver::new(ServerConfig::default().with_max_envelopes_per_peer(2));
    let peer = d.connect(Version::V1_2_0);
    let blocks: Vec<Block> = (0..6).map(|i| block(i, 10)).collect();
    let mut held = Vec::new();
    for b in &blocks[..2] {
        d.engine
            .handle_message(peer, &message(vec![want_have(b, 1, true)]));
        held.extend(d.hold());
    }
    assert_eq!(held.len(), 2);
    for b in &blocks[2..] {
        d.engine
            .handle_message(peer, &message(vec![want_have(b, 1, true)]));
        assert!(d.hold().is_empty(), "the peer is at its limit");
    }
    d.engine.handle_envelope_sent(held[0].id);
    let gathered = d.hold();
    assert_eq!(
        gathered.len(),
        1,
        "one envelope for the answers that gathered"
    );
    assert_eq!(gathered[0].message.presences.len(), 4);
}

/// A far peer (its envelopes take 200 ms to be written, a round trip behind its flow-control
/// windows) that wants 64 blocks of 256 KiB: delivered envelopes reported with their time grow
/// its window past the 1 MiB floor, so that more than 1 MiB is handed out at once; a peer whose
/// envelopes stall and are not delivered for a second goes back to the floor.
#[test]
fn a_far_peer_s_window_grows_and_returns_to_the_floor_when_it_stops_reading() {
    use std::time::{Duration, Instant};

    const FLOOR: u64 = 1 << 20;
    let mut d = Driver::new(ServerConfig::default());
    let peer = d.connect(Version::V1_2_0);
    let blocks: Vec<Block> = (0..64).map(|i| block(7000 + i, 256 * 1024)).collect();
    d.put(&blocks.iter().collect::<Vec<_>>());
    let wants = blocks.iter().map(|b| want_block(b, 1, false)).collect();
    d.engine.handle_message(peer, &message(wants));
    assert_eq!(d.engine.stats().window_bytes, FLOOR);

    let rtt = Duration::from_millis(200);
    let mut now = Instant::now();
    let mut most_out = 0u64;
    let mut delivered = 0;
    while delivered < blocks.len() {
        // Everything the engine hands out now goes out together and is written a round trip
        // later.
        d.lookups();
        let mut out = Vec::new();
        while let Some(envelope) = d.engine.poll_envelope() {
            out.push(envelope);
            d.lookups();
        }
        let bytes: u64 = out
            .iter()
            .flat_map(|e| &e.message.blocks)
            .map(|b| b.data().len() as u64)
            .sum();
        most_out = most_out.max(bytes);
        assert!(!out.is_empty(), "the engine stopped handing out envelopes");
        now += rtt;
        for envelope in &out {
            d.engine.handle_envelope_sent_at(envelope.id, now);
            delivered += envelope.message.blocks.len();
        }
        d.engine.check_invariants().expect("invariants");
    }
    assert!(
        most_out > 2 * FLOOR,
        "at most {most_out} bytes were handed out at once"
    );
    let grown = d.engine.stats().window_bytes;
    assert!(grown > 2 * FLOOR && grown <= 16 << 20, "window {grown}");

    // Now it asks again and stops reading: its envelopes stall, nothing is delivered.
    let more: Vec<Block> = (0..16).map(|i| block(8000 + i, 256 * 1024)).collect();
    d.put(&more.iter().collect::<Vec<_>>());
    let wants = more.iter().map(|b| want_block(b, 1, false)).collect();
    d.engine.handle_message(peer, &message(wants));
    let held = d.hold();
    assert!(!held.is_empty());
    for envelope in &held {
        d.engine.handle_envelope_stalled(envelope.id);
    }
    // Another peer's delivery a second later lets the engine see the time.
    let other = d.connect(Version::V1_2_0);
    let small = block(9000, 1000);
    d.put(&[&small]);
    d.engine
        .handle_message(other, &message(vec![want_block(&small, 1, false)]));
    d.lookups();
    let envelope = d.engine.poll_envelope().expect("the other peer's block");
    d.engine
        .handle_envelope_sent_at(envelope.id, now + Duration::from_millis(1100));
    assert_eq!(d.engine.stats().window_bytes, 2 * FLOOR);
    for envelope in held {
        d.engine.handle_envelope_failed(envelope.id);
    }
    d.engine.check_invariants().expect("invariants");
}
