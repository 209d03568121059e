//! Fuzzes the client engine with arbitrary queries, sessions, cancels, peers coming and going,
//! time passing, and arbitrary answers from peers, lies included: blocks nobody asked for,
//! HAVE then DONT_HAVE, presences for unknown CIDs, failed sends, misbehaviour reports.
//!
//! Asserted after every step: the engine's own invariants (`check_invariants`, bounds
//! included); each live query gets each of its CIDs at most once, as the real block, and
//! nothing after it is cancelled (or its session closed), finished or failed; progress counts
//! match; a query finishes only with all its blocks; wantlist messages go to connected peers,
//! fit the configured message size, ask only for CIDs a live query wants (cancels aside) and
//! carry no want-have for a peer known to be older than 1.2.0; dials are for peers not
//! connected; provider searches are for wanted CIDs; the clock never has to go backwards.

#![no_main]

use std::{
    collections::{HashMap, HashSet},
    sync::OnceLock,
    time::{Duration, Instant},
};

use arbitrary::Arbitrary;
use bitswap::{
    Block, BlockPresence, BlockPresenceType, ClientAction, ClientConfig, ClientEngine, ClientEvent,
    Message, QueryId, SessionId, Version, WantType, protocol::encode,
};
use bytes::Bytes;
use cid::Cid;
use libfuzzer_sys::fuzz_target;
use libp2p::{PeerId, identity::Keypair};

const PEERS: usize = 4;
/// Blocks queries may want; the last few are never wanted (unsolicited when sent).
const BLOCKS: usize = 12;
const WANTABLE: usize = 9;
const MAX_STEPS: usize = 256;
const MAX_MESSAGE: usize = 16 * 1024;

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
    Get {
        cids: Vec<u8>,
        session: Option<u8>,
    },
    Cancel {
        query: u8,
    },
    NewSession,
    CloseSession {
        session: u8,
    },
    /// A message from a peer: blocks (any of the pool) and presences (any CID), which began to
    /// arrive `began` × 4 ms before or after now.
    Answer {
        peer: u8,
        blocks: Vec<u8>,
        presences: Vec<(u8, bool)>,
        began: i8,
    },
    Advance {
        millis: u16,
    },
    Providers {
        cid: u8,
        peers: Vec<u8>,
    },
    SendFailed {
        peer: u8,
    },
    Misbehaved {
        peer: u8,
    },
}

struct Fixture {
    peers: Vec<PeerId>,
    blocks: Vec<Block>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        peers: (0..PEERS)
            .map(|i| {
                Keypair::ed25519_from_bytes([i as u8 + 1; 32])
                    .expect("key")
                    .public()
                    .to_peer_id()
            })
            .collect(),
        blocks: (0..BLOCKS)
            .map(|i| {
                let data = vec![i as u8; 1 + i * 700];
                let hash = multihash_codetable::MultihashDigest::digest(
                    &multihash_codetable::Code::Sha2_256,
                    &data,
                );
                Block::new(Cid::new_v1(0x55, hash), Bytes::from(data)).expect("block")
            })
            .collect(),
    })
}

struct Query {
    cids: HashSet<Cid>,
    received: HashSet<Cid>,
    session: Option<SessionId>,
}

struct Harness {
    engine: ClientEngine,
    fixture: &'static Fixture,
    now: Instant,
    connected: HashMap<PeerId, Version>,
    sessions: Vec<SessionId>,
    queries: HashMap<QueryId, Query>,
    order: Vec<QueryId>,
    /// The last wantlist message sent to each peer.
    last_sent: HashMap<PeerId, Message>,
}

fn version(v: u8) -> Version {
    Version::ALL[usize::from(v) % Version::ALL.len()]
}

impl Harness {
    fn new() -> Self {
        let config = ClientConfig::default()
            .with_max_wants(16)
            .with_max_cids_per_query(6)
            .with_max_queries(6)
            .with_max_sessions(3)
            .with_max_wants_per_peer(5)
            .with_max_broadcast_peers(2)
            .with_max_message_size(MAX_MESSAGE)
            .with_query_timeout(Some(Duration::from_secs(120)));
        Self {
            engine: ClientEngine::new(config),
            fixture: fixture(),
            now: Instant::now(),
            connected: HashMap::new(),
            sessions: Vec::new(),
            queries: HashMap::new(),
            order: Vec::new(),
            last_sent: HashMap::new(),
        }
    }

    fn peer(&self, i: u8) -> PeerId {
        self.fixture.peers[usize::from(i) % PEERS]
    }

    fn block(&self, i: u8) -> &Block {
        &self.fixture.blocks[usize::from(i) % BLOCKS]
    }

    fn step(&mut self, step: Step) {
        match step {
            Step::Connect { peer, version: v } => {
                let peer = self.peer(peer);
                self.connected.insert(peer, version(v));
                self.engine
                    .handle_peer_connected(peer, version(v), self.now);
            }
            Step::Version { peer, version: v } => {
                let peer = self.peer(peer);
                if let Some(known) = self.connected.get_mut(&peer) {
                    *known = version(v);
                }
                self.engine.handle_peer_version(peer, version(v));
            }
            Step::Disconnect { peer } => {
                let peer = self.peer(peer);
                self.connected.remove(&peer);
                self.engine.handle_peer_disconnected(&peer, self.now);
            }
            Step::Get { cids, session } => {
                let cids: Vec<Cid> = cids
                    .iter()
                    .take(8)
                    .map(|&i| *self.fixture.blocks[usize::from(i) % WANTABLE].cid())
                    .collect();
                let session = session.and_then(|s| {
                    (!self.sessions.is_empty())
                        .then(|| self.sessions[usize::from(s) % self.sessions.len()])
                });
                if let Ok(query) = self.engine.get(cids.clone(), session, self.now) {
                    self.queries.insert(
                        query,
                        Query {
                            cids: cids.into_iter().collect(),
                            received: HashSet::new(),
                            session,
                        },
                    );
                    self.order.push(query);
                }
            }
            Step::Cancel { query } => {
                if !self.order.is_empty() {
                    let query = self.order[usize::from(query) % self.order.len()];
                    let live = self.queries.remove(&query).is_some();
                    assert_eq!(self.engine.cancel(query, self.now), live);
                }
            }
            Step::NewSession => {
                if let Ok(session) = self.engine.new_session() {
                    self.sessions.push(session);
                }
            }
            Step::CloseSession { session } => {
                if !self.sessions.is_empty() {
                    let session = self.sessions[usize::from(session) % self.sessions.len()];
                    self.engine.close_session(session, self.now);
                    self.queries.retain(|_, q| q.session != Some(session));
                }
            }
            Step::Answer {
                peer,
                blocks,
                presences,
                began,
            } => {
                let peer = self.peer(peer);
                let message = Message {
                    blocks: blocks
                        .iter()
                        .take(6)
                        .map(|&i| self.block(i).clone())
                        .collect(),
                    presences: presences
                        .iter()
                        .take(8)
                        .map(|&(i, have)| BlockPresence {
                            cid: *self.block(i).cid(),
                            presence: if have {
                                BlockPresenceType::Have
                            } else {
                                BlockPresenceType::DontHave
                            },
                        })
                        .collect(),
                    ..Message::default()
                };
                let offset = Duration::from_millis(u64::from(began.unsigned_abs()) * 4);
                let began = if began < 0 {
                    self.now.checked_sub(offset).unwrap_or(self.now)
                } else {
                    self.now + offset
                };
                self.engine
                    .handle_message_began(peer, &message, began, self.now);
            }
            Step::Advance { millis } => {
                self.now += Duration::from_millis(u64::from(millis) * 4);
                if self
                    .engine
                    .poll_timeout()
                    .is_some_and(|deadline| deadline <= self.now)
                {
                    self.engine.handle_timeout(self.now);
                }
            }
            Step::Providers { cid, peers } => {
                let cid = *self.block(cid).cid();
                let peers: Vec<PeerId> = peers.iter().take(4).map(|&p| self.peer(p)).collect();
                self.engine.add_providers(&cid, peers, self.now);
            }
            Step::SendFailed { peer } => {
                let peer = self.peer(peer);
                if let Some(message) = self.last_sent.remove(&peer) {
                    self.engine.handle_send_failed(peer, &message, self.now);
                }
            }
            Step::Misbehaved { peer } => {
                let peer = self.peer(peer);
                self.engine.handle_peer_misbehaved(peer, self.now);
            }
        }
        self.drain();
        if let Err(violation) = self.engine.check_invariants() {
            panic!("engine invariant broken: {violation}");
        }
    }

    fn wanted(&self) -> HashSet<Cid> {
        self.queries
            .values()
            .flat_map(|q| q.cids.difference(&q.received).copied())
            .collect()
    }

    fn drain(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            match action {
                ClientAction::Send { peer, message } => self.check_send(peer, message),
                ClientAction::Dial { peer } => {
                    assert!(
                        !self.connected.contains_key(&peer),
                        "dial of a connected peer"
                    );
                }
                ClientAction::FindProviders { cid } => {
                    assert!(
                        self.wanted().contains(&cid),
                        "search for a CID nobody wants"
                    );
                }
                ClientAction::Event(event) => self.check_event(event),
            }
        }
    }

    fn check_send(&mut self, peer: PeerId, message: Message) {
        let version = *self
            .connected
            .get(&peer)
            .unwrap_or_else(|| panic!("wantlist sent to a peer not connected"));
        assert!(
            message.blocks.is_empty() && message.presences.is_empty(),
            "client sent blocks or presences"
        );
        let size: usize = encode(&message, Version::V1_2_0)
            .iter()
            .map(Bytes::len)
            .sum();
        assert!(size <= MAX_MESSAGE, "wantlist message of {size} bytes");
        let wanted = self.wanted();
        for entry in &message.wantlist.entries {
            if entry.cancel {
                continue;
            }
            assert!(
                wanted.contains(&entry.cid),
                "want for a CID no live query needs"
            );
            if entry.want_type == WantType::Have {
                assert!(
                    version.supports_have(),
                    "want-have sent to a {version} peer"
                );
            }
        }
        self.last_sent.insert(peer, message);
    }

    fn check_event(&mut self, event: ClientEvent) {
        match event {
            ClientEvent::BlockReceived { query, block } => {
                let state = self
                    .queries
                    .get_mut(&query)
                    .unwrap_or_else(|| panic!("block for a query that is not live"));
                assert!(
                    state.cids.contains(block.cid()),
                    "block the query did not ask for"
                );
                assert!(state.received.insert(*block.cid()), "block reported twice");
                let index = self
                    .fixture
                    .blocks
                    .iter()
                    .position(|b| b.cid() == block.cid())
                    .expect("a pool block");
                assert!(index < WANTABLE);
                assert_eq!(block, self.fixture.blocks[index]);
            }
            ClientEvent::Progress { query, progress } => {
                let state = self
                    .queries
                    .get(&query)
                    .unwrap_or_else(|| panic!("progress of a query that is not live"));
                assert_eq!(progress.blocks_received, state.received.len());
                assert_eq!(progress.blocks_total, state.cids.len());
            }
            ClientEvent::QueryFinished { query } => {
                let state = self
                    .queries
                    .remove(&query)
                    .unwrap_or_else(|| panic!("a query finished twice or after its cancel"));
                assert_eq!(state.received, state.cids, "finished without every block");
            }
            ClientEvent::QueryFailed { query, .. } => {
                assert!(
                    self.queries.remove(&query).is_some(),
                    "a query failed twice or after its cancel"
                );
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
