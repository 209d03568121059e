//! The client engine against in-memory servers with a virtual clock: a tiny network delivers
//! messages (encoded and decoded for the recipient's version) after a per-server latency,
//! drops some, and runs `ServerEngine`s whose lookups are answered from a map. Scenarios cover
//! silent, slow, lossy and lying peers, wrong bytes, reconnections, cancels, sessions over
//! three peers (duplicate bytes measured), 1.1.0 peers and providers; a property test runs
//! random delays, drops, queries and cancels.

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use bitswap::{
    Block, BlockPresence, BlockPresenceType, ClientAction, ClientConfig, ClientEngine, ClientEvent,
    EnvelopeId, LookupKind, LookupResult, Message, QueryError, QueryId, ServerConfig, ServerEngine,
    SessionId, Version, WantType,
    protocol::{encode, read_message},
};
use cid::Cid;
use futures::{executor::block_on, io::Cursor};
use ipfs_blockstore::testing;
use libp2p::PeerId;
use multihash::Multihash;
use proptest::prelude::*;

mod links;
mod model;
mod scenarios;

/// A raw-codec sha2-256 block of `size` bytes, distinct per seed.
fn block(seed: u32, size: usize) -> Block {
    testing::raw_block(u64::from(seed), size)
}

fn blocks(n: u32, size: usize) -> Vec<Block> {
    testing::raw_blocks(0..u64::from(n), size)
}

fn peer_id(tag: u8, i: u8) -> PeerId {
    PeerId::from_multihash(Multihash::wrap(0, &[tag, i, 7, 7]).expect("short"))
        .expect("identity peer id")
}

/// How a server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A `ServerEngine` over its store.
    Honest,
    /// Receives everything, answers nothing.
    Silent,
    /// HAVE to every want-have, DONT_HAVE to every want-block.
    Liar,
    /// Answers every want-block with a valid block of other bytes.
    WrongBytes,
}

struct Server {
    id: PeerId,
    kind: Kind,
    version: Version,
    engine: ServerEngine,
    store: HashMap<Multihash<64>, Block>,
    /// One-way delay of every message to and from it.
    latency: Duration,
    /// Rate of its link towards the client in bytes per second (`None`: unlimited). Its
    /// replies leave one after the other at that rate; an envelope is reported sent to its
    /// engine when its last byte has left, as a stream write completes.
    rate: Option<u64>,
    /// When the last reply queued on its link has left.
    link_free: Instant,
    /// Replies larger than this (in bytes) wait a round trip for flow-control credit before
    /// their end leaves, as kubo's one-stream-per-reply does against a 256 KiB initial
    /// stream window.
    window: Option<usize>,
    /// Replies over 64 KiB reach the client whole only at multiples of this period from the
    /// start, as blocks written on several streams at once do: their frames share the link in
    /// turns, so they all end together, after all their bytes. Small replies (presences,
    /// small blocks) take a frame or two and come through at once.
    bursts: Option<Duration>,
    /// Times at which a block from it reached the client.
    arrivals: Vec<Instant>,
    /// Probability of losing a message, in either direction.
    loss: f64,
    connected: bool,
    /// Whether an `Action::Dial` connects it.
    dialable: bool,
    /// Every message the client sent it, as decoded.
    received: Vec<Message>,
    /// The same, as the client made them (before encoding for the version).
    raw: Vec<Message>,
    /// When each of `raw` was sent.
    raw_at: Vec<Instant>,
}

enum Delivery {
    ToServer(usize, Message),
    ToClient(usize, Message),
    /// An envelope of server `i` has left its link.
    Sent(usize, EnvelopeId),
}

struct Net {
    now: Instant,
    start: Instant,
    client_id: PeerId,
    client: ClientEngine,
    servers: Vec<Server>,
    in_flight: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    rng: u64,
    events: Vec<ClientEvent>,
    dials: Vec<PeerId>,
    searches: Vec<(Duration, Cid)>,
}

impl Net {
    fn new(config: ClientConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            start: now,
            client_id: peer_id(0, 0),
            client: ClientEngine::new(config),
            servers: Vec::new(),
            in_flight: BTreeMap::new(),
            seq: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
            events: Vec::new(),
            dials: Vec::new(),
            searches: Vec::new(),
        }
    }

    fn seed(mut self, seed: u64) -> Self {
        self.rng = seed | 1;
        self
    }

    /// xorshift64*: a number in `0..1`.
    fn random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Adds a server holding `data`, not connected.
    fn server(&mut self, kind: Kind, version: Version, data: &[Block]) -> usize {
        let i = self.servers.len();
        let mut store = HashMap::new();
        for b in data {
            store.insert(*b.cid().hash(), b.clone());
        }
        self.servers.push(Server {
            id: peer_id(1, i as u8),
            kind,
            version,
            engine: ServerEngine::new(ServerConfig::default()),
            store,
            latency: Duration::from_millis(10),
            rate: None,
            link_free: self.now,
            window: None,
            bursts: None,
            arrivals: Vec::new(),
            loss: 0.0,
            connected: false,
            dialable: true,
            received: Vec::new(),
            raw: Vec::new(),
            raw_at: Vec::new(),
        });
        i
    }

    /// New Bitswap 1.2.0 servers of these kinds holding these blocks, connected in order once
    /// all exist; their indices.
    fn connected<const N: usize>(&mut self, servers: [(Kind, &[Block]); N]) -> [usize; N] {
        let indices = servers.map(|(kind, data)| self.server(kind, Version::V1_2_0, data));
        for i in indices {
            self.connect(i);
        }
        indices
    }

    fn connect(&mut self, i: usize) {
        let s = &mut self.servers[i];
        assert!(!s.connected);
        s.connected = true;
        s.engine.handle_peer_connected(self.client_id, s.version);
        let (id, version) = (s.id, s.version);
        self.client.handle_peer_connected(id, version, self.now);
        self.drain();
    }

    fn disconnect(&mut self, i: usize) {
        let s = &mut self.servers[i];
        s.connected = false;
        s.engine.handle_peer_disconnected(&self.client_id);
        let id = s.id;
        // Messages on the wire are lost with the connection.
        self.in_flight.retain(|_, d| match d {
            Delivery::ToServer(j, _) | Delivery::ToClient(j, _) | Delivery::Sent(j, _) => *j != i,
        });
        self.servers[i].link_free = self.now;
        self.client.handle_peer_disconnected(&id, self.now);
        self.drain();
    }

    fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.servers.iter().position(|s| s.id == *peer)
    }

    fn schedule(&mut self, at: Instant, delivery: Delivery) {
        self.seq += 1;
        self.in_flight.insert((at, self.seq), delivery);
    }

    /// Encodes for the peer's version and decodes, as the wire would.
    fn wire(message: &Message, version: Version) -> Vec<Message> {
        encode(message, version)
            .into_iter()
            .map(|frame| {
                let mut io = Cursor::new(frame.to_vec());
                block_on(read_message(&mut io))
                    .expect("decodes")
                    .expect("one message")
            })
            .collect()
    }

    /// Carries out every client action.
    fn drain(&mut self) {
        while let Some(action) = self.client.poll_action() {
            match action {
                ClientAction::Send { peer, message } => {
                    let i = self.index_of(&peer).expect("sent to a known server");
                    let s = &self.servers[i];
                    assert!(s.connected, "sent to a disconnected peer");
                    let frames = encode(&message, s.version);
                    assert!(frames.len() <= 1, "a wantlist message fits one frame");
                    assert!(frames.iter().all(|f| f.len() <= 2 * 1024 * 1024 + 8));
                    let (latency, loss, version) = (s.latency, s.loss, s.version);
                    self.servers[i].raw.push(message.clone());
                    self.servers[i].raw_at.push(self.now);
                    for decoded in Self::wire(&message, version) {
                        self.servers[i].received.push(decoded.clone());
                        if self.random() >= loss {
                            self.schedule(self.now + latency, Delivery::ToServer(i, decoded));
                        }
                    }
                }
                ClientAction::Dial { peer } => {
                    self.dials.push(peer);
                    if let Some(i) = self.index_of(&peer)
                        && !self.servers[i].connected
                        && self.servers[i].dialable
                    {
                        self.connect(i);
                    }
                }
                ClientAction::FindProviders { cid } => {
                    self.searches.push((self.now - self.start, cid));
                }
                ClientAction::Event(event) => self.events.push(event),
            }
        }
        self.client.check_invariants().expect("client invariants");
    }

    /// Sends `reply` from server `i` to the client (unless lost), after the replies queued
    /// before it on the server's link; returns when its last byte leaves.
    fn reply(&mut self, i: usize, reply: Message) -> Instant {
        let s = &self.servers[i];
        let (latency, loss, version, rate) = (s.latency, s.loss, s.version, s.rate);
        let (window, bursts) = (s.window, s.bursts);
        let mut left = self.now;
        for frame in encode(&reply, version) {
            if let Some(rate) = rate {
                let start = self.servers[i].link_free.max(self.now);
                let transfer = Duration::from_secs_f64(frame.len() as f64 / rate as f64);
                self.servers[i].link_free = start + transfer;
                left = start + transfer;
            }
            if window.is_some_and(|w| frame.len() > w) {
                // Its own stream, so it does not hold up the link.
                left = left.max(self.now + 2 * latency);
            }
            let mut io = Cursor::new(frame.to_vec());
            let decoded = block_on(read_message(&mut io))
                .expect("decodes")
                .expect("one message");
            let mut arrives = left + latency;
            if let Some(period) = bursts.filter(|_| frame.len() > 64 * 1024) {
                let periods = (arrives - self.start).as_secs_f64() / period.as_secs_f64();
                arrives = self.start + period.mul_f64(periods.ceil());
            }
            if self.random() >= loss {
                self.schedule(arrives, Delivery::ToClient(i, decoded));
            }
        }
        left
    }

    /// Runs server `i`'s engine until it is idle, sending its envelopes.
    fn run_server(&mut self, i: usize) {
        loop {
            let mut progress = false;
            while let Some(lookup) = self.servers[i].engine.poll_lookup() {
                let found = self.servers[i].store.get(lookup.cid.hash()).cloned();
                let result = match lookup.kind {
                    LookupKind::Has => LookupResult::Has(found.is_some()),
                    LookupKind::Size => LookupResult::Size(found.map(|b| b.data().len())),
                    LookupKind::Get => LookupResult::Block(found),
                    _ => LookupResult::Failed,
                };
                self.servers[i].engine.handle_lookup(lookup.id, result);
                progress = true;
            }
            while let Some(envelope) = self.servers[i].engine.poll_envelope() {
                let left = match self.servers[i].kind {
                    Kind::Honest => self.reply(i, envelope.message),
                    _ => self.now,
                };
                if left > self.now {
                    self.schedule(left, Delivery::Sent(i, envelope.id));
                } else {
                    self.servers[i].engine.handle_envelope_sent(envelope.id);
                }
                progress = true;
            }
            if !progress {
                break;
            }
        }
        self.servers[i]
            .engine
            .check_invariants()
            .expect("server invariants");
    }

    fn server_receives(&mut self, i: usize, message: Message) {
        if !self.servers[i].connected {
            return;
        }
        match self.servers[i].kind {
            Kind::Honest | Kind::Silent => {
                let id = self.client_id;
                self.servers[i].engine.handle_message(id, &message);
                self.run_server(i);
            }
            Kind::Liar | Kind::WrongBytes => {
                let mut reply = Message::default();
                for entry in message.wantlist.entries.iter().filter(|e| !e.cancel) {
                    match (entry.want_type, self.servers[i].kind) {
                        (WantType::Have, _) => reply.presences.push(BlockPresence {
                            cid: entry.cid,
                            presence: BlockPresenceType::Have,
                        }),
                        (WantType::Block, Kind::Liar) => reply.presences.push(BlockPresence {
                            cid: entry.cid,
                            presence: BlockPresenceType::DontHave,
                        }),
                        (WantType::Block, _) => reply
                            .blocks
                            .push(block(1_000_000 + entry.cid.hash().digest()[0] as u32, 100)),
                    }
                }
                self.reply(i, reply);
            }
        }
    }

    /// Advances to the next delivery or client deadline, unless it is after `end` (then to
    /// `end`); false if there is none by then.
    fn step(&mut self, end: Instant) -> bool {
        let next_delivery = self.in_flight.keys().next().map(|(at, _)| *at);
        let next_timer = self.client.poll_timeout();
        let Some(at) = [next_delivery, next_timer].into_iter().flatten().min() else {
            return false;
        };
        if at > end {
            self.now = self.now.max(end);
            return false;
        }
        self.now = self.now.max(at);
        if next_timer.is_some_and(|t| t <= self.now) {
            self.client.handle_timeout(self.now);
            self.drain();
        }
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            match entry.remove() {
                Delivery::ToServer(i, message) => self.server_receives(i, message),
                Delivery::Sent(i, envelope) => {
                    self.servers[i].engine.handle_envelope_sent(envelope);
                    self.run_server(i);
                }
                Delivery::ToClient(i, message) => {
                    if self.servers[i].connected {
                        let id = self.servers[i].id;
                        let now = self.now;
                        self.servers[i]
                            .arrivals
                            .extend(message.blocks.iter().map(|_| now));
                        self.client.handle_message(id, &message, self.now);
                        self.drain();
                    }
                }
            }
        }
        true
    }

    /// Steps until `done` holds or `limit` of virtual time passes; returns whether it held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Self) -> bool) -> bool {
        let end = self.now + limit;
        while !done(self) {
            if !self.step(end) {
                return done(self);
            }
        }
        true
    }

    fn finished(&self, query: QueryId) -> bool {
        self.events.contains(&ClientEvent::QueryFinished { query })
    }

    fn received(&self, query: QueryId) -> Vec<Cid> {
        self.events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::BlockReceived { query: q, block } if *q == query => Some(*block.cid()),
                _ => None,
            })
            .collect()
    }

    fn get(&mut self, cids: Vec<Cid>, session: Option<SessionId>) -> QueryId {
        let query = self.client.get(cids, session, self.now).expect("accepted");
        self.drain();
        query
    }

    /// Duplicate bytes over useful bytes, in percent.
    fn duplicate_percent(&self) -> f64 {
        let stats = self.client.stats();
        100.0 * stats.duplicate_bytes as f64 / stats.bytes_received.max(1) as f64
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }
}

fn cids(blocks: &[Block]) -> Vec<Cid> {
    blocks.iter().map(|b| *b.cid()).collect()
}

fn assert_exactly(net: &Net, query: QueryId, wanted: &[Cid]) {
    let mut got = net.received(query);
    got.sort();
    let mut want = wanted.to_vec();
    want.sort();
    want.dedup();
    assert_eq!(got, want, "{query} received exactly its blocks, once each");
}
