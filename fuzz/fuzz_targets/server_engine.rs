//! Fuzzes the server engine with arbitrary message sequences from several peers against an
//! in-memory store: connects, disconnects, version changes, wantlists (full or not, cancels,
//! identity and sha2-512 CIDs), new blocks, lookups answered late or failed, envelopes sent or
//! failed in any order.
//!
//! Asserted after every step: the engine's own invariants (`check_invariants`, which include
//! its bounds); every envelope fits one 4 MiB frame for its peer's version; a block goes only
//! to a peer that asked for that CID since it connected, and is the stored block; a HAVE only
//! for a stored block; a DONT_HAVE only for a CID the peer asked about with send_dont_have,
//! never for an identity CID;
//! no envelope for a peer that is not connected; lookups in flight stay within the limit.

#![no_main]

use std::{
    collections::{HashMap, HashSet},
    sync::OnceLock,
};

use arbitrary::Arbitrary;
use bitswap::{
    Block, BlockPresenceType, Entry, Envelope, Lookup, LookupKind, LookupResult, Message,
    ServerConfig, ServerEngine, Version, WantType, Wantlist,
    protocol::{MAX_MESSAGE_SIZE, encode},
};
use bytes::Bytes;
use cid::Cid;
use libfuzzer_sys::fuzz_target;
use libp2p::{PeerId, identity::Keypair};

const PEERS: usize = 3;
const BLOCKS: usize = 12;
/// Steps per input at most.
const MAX_STEPS: usize = 256;

#[derive(Debug, Arbitrary)]
enum Step {
    Connect {
        peer: u8,
        version: u8,
    },
    Version {
        peer: u8,
        version: u8,
    },
    Disconnect {
        peer: u8,
    },
    Wantlist {
        peer: u8,
        full: bool,
        entries: Vec<WantEntry>,
    },
    /// A block is put in the store and announced.
    Store {
        block: u8,
    },
    /// Answer the oldest outstanding lookup (or a failure).
    Answer {
        fail: bool,
        newest: bool,
    },
    /// Report the oldest (or newest) envelope in flight stalled (behind a full stream); it
    /// stays in flight.
    Stall {
        newest: bool,
    },
    /// Report the oldest (or newest) envelope in flight: sent, failed, or lost (cut on its
    /// way to a peer still connected, so answered again).
    Report {
        failed: bool,
        lost: bool,
        newest: bool,
    },
}

#[derive(Debug, Arbitrary)]
struct WantEntry {
    cid: u8,
    priority: i32,
    have: bool,
    send_dont_have: bool,
    cancel: bool,
}

/// Peers, blocks and odd CIDs, made once per process (hashing megabytes per input would
/// slow the fuzzer down).
struct Fixture {
    peers: Vec<PeerId>,
    blocks: Vec<Block>,
    /// CIDs of no stored block: an identity CID (never answered) and a sha2-512 one.
    odd: Vec<Cid>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(Fixture::new)
}

struct Harness {
    engine: ServerEngine,
    peers: &'static [PeerId],
    blocks: &'static [Block],
    odd: &'static [Cid],
    stored: HashSet<usize>,
    connected: HashMap<PeerId, Version>,
    /// CIDs each peer asked about since it connected, and whether with send_dont_have.
    asked: HashMap<PeerId, HashMap<Cid, bool>>,
    lookups: Vec<Lookup>,
    envelopes: Vec<Envelope>,
    max_lookups: usize,
}

fn version(v: u8) -> Version {
    Version::ALL[usize::from(v) % Version::ALL.len()]
}

impl Fixture {
    fn new() -> Self {
        let peers = (0..PEERS)
            .map(|i| {
                let key = Keypair::ed25519_from_bytes([i as u8 + 1; 32]).expect("key");
                key.public().to_peer_id()
            })
            .collect();
        // Sizes around the interesting limits: the want-have replace size (1024 B), the
        // target message size, and large blocks that fill an envelope.
        let sizes = [
            0,
            1,
            100,
            1024,
            1025,
            8000,
            16_384,
            70_000,
            300_000,
            1 << 20,
            2 << 20,
            5,
        ];
        let blocks = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| {
                let mut data = vec![i as u8; size];
                if size > 0 {
                    data[0] = 0xAB;
                }
                if i == BLOCKS - 1 {
                    // A CIDv0 block, which 1.0.0 peers can receive.
                    return Block::from_v0_data(Bytes::from(data)).expect("v0");
                }
                let hash = multihash_codetable::MultihashDigest::digest(
                    &multihash_codetable::Code::Sha2_256,
                    &data,
                );
                Block::new(Cid::new_v1(0x55, hash), Bytes::from(data)).expect("block")
            })
            .collect();
        let identity = Cid::new_v1(0x55, multihash::Multihash::wrap(0, b"inline").expect("mh"));
        let long = Cid::new_v1(
            0x55,
            multihash::Multihash::wrap(0x13, &[7; 64]).expect("mh"),
        );
        Self {
            peers,
            blocks,
            odd: vec![identity, long],
        }
    }
}

impl Harness {
    fn new() -> Self {
        let fixture = fixture();
        let max_lookups = 3;
        let config = ServerConfig::default()
            .with_max_wants_per_peer(6)
            .with_max_entries_per_message(8)
            .with_target_message_size(20_000)
            .with_max_outstanding_bytes_per_peer(400_000)
            .with_max_envelopes_in_flight(2)
            .with_max_lookups_in_flight(max_lookups);
        Self {
            engine: ServerEngine::new(config),
            peers: &fixture.peers,
            blocks: &fixture.blocks,
            odd: &fixture.odd,
            stored: HashSet::new(),
            connected: HashMap::new(),
            asked: HashMap::new(),
            lookups: Vec::new(),
            envelopes: Vec::new(),
            max_lookups,
        }
    }

    fn cid(&self, i: u8) -> Cid {
        let i = usize::from(i) % (BLOCKS + self.odd.len());
        match self.blocks.get(i) {
            Some(block) => *block.cid(),
            None => self.odd[i - BLOCKS],
        }
    }

    fn block_index(&self, cid: &Cid) -> Option<usize> {
        self.blocks.iter().position(|b| b.cid() == cid)
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Connect { peer, version: v } => {
                let peer = self.peers[usize::from(peer) % PEERS];
                if !self.connected.contains_key(&peer) {
                    self.asked.remove(&peer);
                }
                self.connected.insert(peer, version(v));
                self.engine.handle_peer_connected(peer, version(v));
            }
            Step::Version { peer, version: v } => {
                let peer = self.peers[usize::from(peer) % PEERS];
                if let Some(known) = self.connected.get_mut(&peer) {
                    *known = version(v);
                }
                self.engine.handle_peer_version(peer, version(v));
            }
            Step::Disconnect { peer } => {
                let peer = self.peers[usize::from(peer) % PEERS];
                self.connected.remove(&peer);
                self.asked.remove(&peer);
                self.engine.handle_peer_disconnected(&peer);
            }
            Step::Wantlist {
                peer,
                full,
                entries,
            } => {
                let peer = self.peers[usize::from(peer) % PEERS];
                let entries: Vec<Entry> = entries
                    .iter()
                    .take(16)
                    .map(|e| Entry {
                        cid: self.cid(e.cid),
                        priority: e.priority,
                        want_type: if e.have {
                            WantType::Have
                        } else {
                            WantType::Block
                        },
                        send_dont_have: e.send_dont_have,
                        cancel: e.cancel,
                    })
                    .collect();
                if self.connected.contains_key(&peer) {
                    let asked = self.asked.entry(peer).or_default();
                    for e in entries.iter().filter(|e| !e.cancel) {
                        *asked.entry(e.cid).or_default() |= e.send_dont_have;
                    }
                }
                let message = Message {
                    wantlist: Wantlist { entries, full },
                    ..Message::default()
                };
                self.engine.handle_message(peer, &message);
            }
            Step::Store { block } => {
                let i = usize::from(block) % BLOCKS;
                self.stored.insert(i);
                let b = &self.blocks[i];
                self.engine.handle_new_blocks([(*b.cid(), b.data().len())]);
            }
            Step::Answer { fail, newest } => {
                let Some(lookup) = take(&mut self.lookups, newest) else {
                    return;
                };
                let present = self
                    .block_index(&lookup.cid)
                    .filter(|i| self.stored.contains(i));
                let result = if fail {
                    LookupResult::Failed
                } else {
                    match lookup.kind {
                        LookupKind::Has => LookupResult::Has(present.is_some()),
                        LookupKind::Size => {
                            LookupResult::Size(present.map(|i| self.blocks[i].data().len()))
                        }
                        LookupKind::Get => {
                            LookupResult::Block(present.map(|i| self.blocks[i].clone()))
                        }
                        _ => LookupResult::Failed,
                    }
                };
                self.engine.handle_lookup(lookup.id, result);
            }
            Step::Stall { newest } => {
                let envelope = if newest {
                    self.envelopes.last()
                } else {
                    self.envelopes.first()
                };
                if let Some(envelope) = envelope {
                    self.engine.handle_envelope_stalled(envelope.id);
                }
            }
            Step::Report {
                failed,
                lost,
                newest,
            } => {
                let Some(envelope) = take(&mut self.envelopes, newest) else {
                    return;
                };
                if failed && lost {
                    self.engine.handle_envelope_lost(envelope.id);
                } else if failed {
                    self.engine.handle_envelope_failed(envelope.id);
                } else {
                    self.engine.handle_envelope_sent(envelope.id);
                }
            }
        }
        self.drain();
        if let Err(violation) = self.engine.check_invariants() {
            panic!("engine invariant broken: {violation}");
        }
    }

    /// Drains lookups, then envelopes, checking each envelope.
    fn drain(&mut self) {
        while let Some(lookup) = self.engine.poll_lookup() {
            self.lookups.push(lookup);
        }
        assert!(
            self.lookups.len() <= self.max_lookups,
            "lookups over the limit"
        );
        while let Some(envelope) = self.engine.poll_envelope() {
            self.check(&envelope);
            self.envelopes.push(envelope);
        }
    }

    fn check(&self, envelope: &Envelope) {
        let peer = envelope.peer;
        let version = *self
            .connected
            .get(&peer)
            .unwrap_or_else(|| panic!("envelope for a peer not connected"));
        let frames = encode(&envelope.message, version);
        assert!(frames.len() <= 1, "an envelope must fit one frame");
        for frame in &frames {
            assert!(frame.len() <= MAX_MESSAGE_SIZE + 10, "frame over 4 MiB");
        }
        let asked = self.asked.get(&peer);
        for block in &envelope.message.blocks {
            let i = self
                .block_index(block.cid())
                .unwrap_or_else(|| panic!("unknown block sent"));
            assert!(self.stored.contains(&i), "a block never stored was sent");
            assert_eq!(
                block, &self.blocks[i],
                "sent block differs from the stored one"
            );
            assert!(
                asked.is_some_and(|a| a.contains_key(block.cid())),
                "block sent to a peer that never asked for it"
            );
        }
        for presence in &envelope.message.presences {
            assert_ne!(presence.cid, self.odd[0], "identity CID answered");
            let asked_with = asked.and_then(|a| a.get(&presence.cid)).copied();
            assert!(
                asked_with.is_some(),
                "presence for a CID the peer never asked about"
            );
            match presence.presence {
                BlockPresenceType::Have => assert!(
                    self.block_index(&presence.cid)
                        .is_some_and(|i| self.stored.contains(&i)),
                    "HAVE for a block never stored"
                ),
                BlockPresenceType::DontHave => {
                    assert_eq!(asked_with, Some(true), "DONT_HAVE without send_dont_have")
                }
            }
        }
    }
}

fuzz_target!(|steps: Vec<Step>| {
    let mut harness = Harness::new();
    for step in steps.into_iter().take(MAX_STEPS) {
        harness.step(step);
    }
});

/// Takes the newest (last) or the oldest (first) of `items`, if any.
fn take<T>(items: &mut Vec<T>, newest: bool) -> Option<T> {
    if items.is_empty() {
        None
    } else if newest {
        items.pop()
    } else {
        Some(items.remove(0))
    }
}
