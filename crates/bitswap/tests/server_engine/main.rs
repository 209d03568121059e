//! The server engine without sockets: a tiny driver answers its lookups from a map (or a
//! `MemoryBlockstore`) and reports its envelopes sent, and the tests check each rule; property
//! tests run random wantlist sequences from several peers against a reference model.

use std::collections::{HashMap, HashSet};

use bitswap::{
    Block, BlockPresenceType, Blockstore, Entry, Envelope, LookupKind, LookupResult,
    MAX_BLOCK_SIZE, MemoryBlockstore, Message, ServerConfig, ServerEngine, Version, WantType,
    protocol::{MAX_MESSAGE_SIZE, encode},
};
use bytes::Bytes;
use cid::Cid;
use ipfs_blockstore::testing;
use libp2p::PeerId;
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest};

mod flow;
mod limits;
mod model;
mod rules;

/// A raw-codec sha2-256 block of `size` bytes, distinct per seed.
fn block(seed: u32, size: usize) -> Block {
    testing::raw_block(u64::from(seed), size)
}

fn full(entries: Vec<Entry>) -> Message {
    let mut m = Message::wantlist_update(entries);
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

/// [`all_answers`] as a set, for answers whose order does not matter.
fn answer_set(envelopes: &[Envelope]) -> HashSet<(PeerId, Cid, Ans)> {
    all_answers(envelopes).into_iter().collect()
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

    /// A driver of `config` with one Bitswap 1.2.0 peer connected.
    fn with_peer(config: ServerConfig) -> (Self, PeerId) {
        let mut driver = Self::new(config);
        let peer = driver.connect(Version::V1_2_0);
        (driver, peer)
    }

    /// [`Driver::with_peer`], with `stored` in its store.
    fn with_stored(config: ServerConfig, stored: &[&Block]) -> (Self, PeerId) {
        let (mut driver, peer) = Self::with_peer(config);
        driver.put(stored);
        (driver, peer)
    }

    /// A default driver storing `b`, whose one peer has sent a want-block for it (DONT_HAVE
    /// asked).
    fn wanting_stored(b: &Block) -> (Self, PeerId) {
        let (mut driver, peer) = Self::with_stored(ServerConfig::default(), &[b]);
        driver.want(peer, vec![want_block(b, 1, true)]);
        (driver, peer)
    }

    /// `peer` sends a wantlist update of `entries`.
    fn want(&mut self, peer: PeerId, entries: Vec<Entry>) {
        self.engine
            .handle_message(peer, &Message::wantlist_update(entries));
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
        self.want(other, vec![want_block(&b, 1, true)]);
        self.probes().expect("the block read")
    }

    fn release_the_slot(&mut self, read: bitswap::Lookup) {
        let result = self.answer(&read.cid, read.kind);
        self.engine.handle_lookup(read.id, result);
    }

    /// Runs to quiescence, reporting every envelope sent; returns them.
    fn run(&mut self) -> Vec<Envelope> {
        self.drive(true)
    }

    /// Runs until nothing moves, holding the envelopes (not reported sent).
    fn hold(&mut self) -> Vec<Envelope> {
        self.drive(false)
    }

    /// Runs until nothing moves, reporting the envelopes sent if `sent`; returns them.
    fn drive(&mut self, sent: bool) -> Vec<Envelope> {
        let mut out = Vec::new();
        loop {
            let mut progress = self.lookups() > 0;
            while let Some(envelope) = self.engine.poll_envelope() {
                if sent {
                    self.engine.handle_envelope_sent(envelope.id);
                }
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
