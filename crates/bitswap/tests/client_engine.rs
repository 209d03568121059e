//! The client engine against in-memory servers with a virtual clock: a tiny network delivers
//! messages (encoded and decoded for the recipient's version) after a per-server latency,
//! drops some, and runs `ServerEngine`s whose lookups are answered from a map. Scenarios cover
//! silent, slow, lossy and lying peers, wrong bytes, reconnections, cancels, sessions over
//! three peers (duplicate bytes measured), 1.1.0 peers and providers; a property test runs
//! random delays, drops, queries and cancels.

use ipfs_blockstore::testing;
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
use libp2p::PeerId;
use multihash::Multihash;
use proptest::prelude::*;

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
            arrivals: Vec::new(),
            loss: 0.0,
            connected: false,
            dialable: true,
            received: Vec::new(),
            raw: Vec::new(),
        });
        i
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
        let window = s.window;
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
            if self.random() >= loss {
                self.schedule(left + latency, Delivery::ToClient(i, decoded));
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

#[test]
fn fetches_a_batch_from_one_server() {
    let data = blocks(50, 8000);
    let mut net = Net::new(ClientConfig::default());
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.connect(s);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(5), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    let stats = net.client.stats();
    assert_eq!(stats.blocks_received, 50);
    assert_eq!(stats.duplicate_blocks, 0);
    assert_eq!(stats.wants, 0);
    assert!(net.client.query_progress(query).is_none());
    let last_progress = net.events.iter().rev().find_map(|e| match e {
        ClientEvent::Progress { progress, .. } => Some(*progress),
        _ => None,
    });
    let progress = last_progress.expect("progress events");
    assert_eq!((progress.blocks_received, progress.blocks_total), (50, 50));
    assert_eq!(progress.bytes_received, 50 * 8000);
    assert_eq!(progress.peers, 1);
    // Everything was asked as want-block from the only server; nothing left there.
    assert!(
        net.servers[s]
            .engine
            .peer_wantlist(&net.client_id)
            .is_empty()
    );
    assert!(net.client.peer_wants(&net.servers[s].id).is_empty());
}

/// boxo's 3-node benchmarks: 100 blocks of 8000 B on three servers (all of them, or
/// overlapping thirds), fetched one at a time, in batches of 10, or all at once, in one
/// session. Duplicate bytes must stay under 5%.
fn three_servers(overlap: bool, batch: usize, size: usize) -> (f64, Duration, u64) {
    let data = blocks(100, size);
    let mut net = Net::new(ClientConfig::default());
    for k in 0..3u32 {
        let held: Vec<Block> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| !overlap || (*i as u32).is_multiple_of(3) || (*i as u32) % 2 == k % 2)
            .map(|(_, b)| b.clone())
            .collect();
        let s = net.server(Kind::Honest, Version::V1_2_0, &held);
        net.servers[s].latency = Duration::from_millis(10 + 5 * k as u64);
        net.connect(s);
    }
    let session = net.client.new_session().expect("room");
    for chunk in data.chunks(batch) {
        let query = net.get(cids(chunk), Some(session));
        assert!(
            net.run_until(Duration::from_secs(60), |n| n.finished(query)),
            "batch fetched"
        );
        assert_exactly(&net, query, &cids(chunk));
    }
    // Let late answers arrive so that duplicates are all counted.
    net.run_until(Duration::from_secs(1), |n| n.in_flight.is_empty());
    let stats = net.client.stats();
    assert_eq!(stats.blocks_received, 100);
    assert_eq!(stats.unwanted_blocks, 0);
    for s in &net.servers {
        assert!(s.engine.peer_wantlist(&net.client_id).is_empty());
    }
    (net.duplicate_percent(), net.elapsed(), stats.messages_sent)
}

#[test]
fn three_peers_all_have_everything_duplicates_stay_under_5_percent() {
    for batch in [1, 10, 100] {
        let (dups, elapsed, messages) = three_servers(false, batch, 8000);
        println!(
            "all-to-all, batch {batch}: {dups:.2}% duplicate bytes, {elapsed:?}, {messages} messages"
        );
        assert!(dups < 5.0, "batch {batch}: {dups}% duplicate bytes");
    }
}

#[test]
fn three_peers_overlapping_data_duplicates_stay_under_5_percent() {
    for batch in [1, 10, 100] {
        let (dups, elapsed, messages) = three_servers(true, batch, 8000);
        println!(
            "overlap, batch {batch}: {dups:.2}% duplicate bytes, {elapsed:?}, {messages} messages"
        );
        assert!(dups < 5.0, "batch {batch}: {dups}% duplicate bytes");
    }
}

#[test]
fn three_peers_small_blocks_duplicates_stay_under_5_percent() {
    // Servers answer a want-have for a block of at most 1 KiB with the block itself.
    for overlap in [false, true] {
        for batch in [1, 10, 100] {
            let (dups, elapsed, messages) = three_servers(overlap, batch, 500);
            println!(
                "500 B, overlap {overlap}, batch {batch}: {dups:.2}% duplicate bytes, {elapsed:?}, {messages} messages"
            );
            assert!(
                dups < 5.0,
                "overlap {overlap}, batch {batch}: {dups}% duplicate bytes"
            );
        }
    }
}

#[test]
fn a_batch_spreads_over_the_peers_that_have_it() {
    let data = blocks(96, 8000);
    let mut net = Net::new(ClientConfig::default());
    for _ in 0..3 {
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].rate = Some(10_000_000);
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    let asked = |net: &Net, s: usize| {
        net.client
            .peer_wants(&net.servers[s].id)
            .iter()
            .filter(|e| e.want_type == WantType::Block)
            .count()
    };
    // Before anything is measured, each peer gets the same window.
    let first = asked(&net, 0);
    assert!(first > 0);
    assert!((0..3).all(|s| asked(&net, s) == first));
    assert!(net.run_until(Duration::from_secs(5), |n| n.finished(query)));
    assert_eq!(net.client.stats().duplicate_blocks, 0);
    // Alike peers end up serving alike shares.
    for s in &net.servers {
        assert!(
            (24..=40).contains(&s.arrivals.len()),
            "{}",
            s.arrivals.len()
        );
    }
}

#[test]
fn a_silent_peer_gets_a_simulated_dont_have_and_others_serve() {
    let data = blocks(20, 8000);
    let mut net = Net::new(ClientConfig::default());
    let silent = net.server(Kind::Silent, Version::V1_2_0, &data);
    let good = net.server(Kind::Honest, Version::V1_2_0, &data);
    // The silent server sorts first, so it is asked for the blocks first.
    assert!(net.servers[silent].id < net.servers[good].id);
    net.connect(silent);
    net.connect(good);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    let stats = net.client.stats();
    assert!(stats.timeouts > 0);
    // The first timeout is the initial 2 s; nothing waits for the 30 s resend.
    assert!(
        net.elapsed() < Duration::from_secs(3),
        "{:?}",
        net.elapsed()
    );
    assert!(
        net.client
            .peer_score(&net.servers[silent].id)
            .expect("known")
            < 0
    );
}

#[test]
fn the_timeout_adapts_to_measured_latency_with_a_floor() {
    let data = blocks(2, 8000);
    let mut net = Net::new(ClientConfig::default());
    let good = net.server(Kind::Honest, Version::V1_2_0, &data[..1]);
    net.servers[good].latency = Duration::from_micros(50);
    net.connect(good);
    let first = net.get(vec![*data[0].cid()], None);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(first)));
    let latency = net
        .client
        .peer_latency(&net.servers[good].id)
        .expect("measured");
    assert!(latency < Duration::from_millis(1));
    // Loopback latency, but the second want (which the server lacks... and stays silent on,
    // since it is made silent) times out after the floor, not after 3 x 100 us.
    net.servers[good].kind = Kind::Silent;
    let start = net.now;
    let second = net.get(vec![*data[1].cid()], None);
    net.run_until(Duration::from_secs(1), |n| n.client.stats().timeouts > 0);
    let waited = net.now - start;
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_millis(110), "{waited:?}");
    assert!(!net.finished(second));
}

#[test]
fn a_slow_peer_does_not_cause_duplicates() {
    let data = blocks(30, 8000);
    let mut net = Net::new(ClientConfig::default());
    let slow = net.server(Kind::Honest, Version::V1_2_0, &data);
    let fast = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.servers[slow].latency = Duration::from_millis(400);
    net.servers[fast].latency = Duration::from_millis(5);
    net.connect(slow);
    net.connect(fast);
    let session = net.client.new_session().expect("room");
    for chunk in data.chunks(3) {
        let query = net.get(cids(chunk), Some(session));
        assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
    }
    net.run_until(Duration::from_secs(2), |n| n.in_flight.is_empty());
    assert!(net.duplicate_percent() < 5.0, "{}", net.duplicate_percent());
    // The fast peer ends up serving most blocks in the session.
    let peers = net.client.session_peers(session);
    assert_eq!(peers[0].0, net.servers[fast].id, "{peers:?}");
}

#[test]
fn a_lossy_network_recovers_by_resending() {
    let data = blocks(40, 8000);
    let mut net = Net::new(ClientConfig::default()).seed(7);
    for _ in 0..2 {
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].loss = 0.4;
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(300), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    let resends = net.servers[0]
        .received
        .iter()
        .chain(&net.servers[1].received)
        .flat_map(|m| &m.wantlist.entries)
        .filter(|e| !e.cancel)
        .count();
    assert!(
        resends > 40,
        "lost wants were sent again ({resends} wants sent)"
    );
}

#[test]
fn a_liar_saying_have_then_dont_have_is_penalised() {
    let data = blocks(10, 8000);
    let mut net = Net::new(ClientConfig::default());
    // The honest server sorts first (asked for the blocks first) but has nothing yet.
    let honest = net.server(Kind::Honest, Version::V1_2_0, &[]);
    let liar = net.server(Kind::Liar, Version::V1_2_0, &[]);
    net.connect(honest);
    net.connect(liar);
    let query = net.get(cids(&data), None);
    net.run_until(Duration::from_secs(1), |_| false);
    // DONT_HAVE from the honest one, HAVE from the liar: the liar was asked for the blocks
    // and refused them.
    let liar_id = net.servers[liar].id;
    let asked_liar = net.servers[liar]
        .received
        .iter()
        .flat_map(|m| &m.wantlist.entries)
        .filter(|e| e.want_type == WantType::Block && !e.cancel)
        .count();
    assert!(asked_liar > 0);
    assert!(net.client.peer_score(&liar_id).expect("known") < 0);
    assert!(!net.finished(query));
    assert!(
        !net.searches.is_empty(),
        "nobody has it: providers searched"
    );
    // The honest server gets the blocks: it still holds the wants and sends them.
    for blk in &data {
        net.servers[honest]
            .store
            .insert(*blk.cid().hash(), blk.clone());
    }
    net.servers[honest]
        .engine
        .handle_new_blocks(data.iter().map(|b| (*b.cid(), b.data().len())));
    net.run_server(honest);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    assert_eq!(net.client.stats().duplicate_blocks, 0);
}

#[test]
fn wrong_bytes_are_dropped_and_the_sender_left_out() {
    let data = blocks(6, 8000);
    let mut net = Net::new(ClientConfig::default());
    let cheat = net.server(Kind::WrongBytes, Version::V1_2_0, &[]);
    let honest = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.servers[cheat].latency = Duration::from_millis(1);
    net.connect(cheat);
    net.connect(honest);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    let stats = net.client.stats();
    assert!(stats.unwanted_blocks > 0);
    // None of the cheat's blocks was reported to a query.
    assert_eq!(net.received(query).len(), 6);
    let cheat_id = net.servers[cheat].id;
    assert!(net.client.is_penalised(&cheat_id, net.now));
    // A penalised peer is asked for nothing new.
    let more = blocks(8, 8000)[6..].to_vec();
    let before = net.servers[cheat].received.len();
    let query = net.get(cids(&more), None);
    assert!(net.client.peer_wants(&cheat_id).is_empty());
    assert_eq!(net.servers[cheat].received.len(), before);
    assert!(!net.finished(query));
}

#[test]
fn a_reconnected_peer_is_sent_the_wantlist_again() {
    let data = blocks(5, 8000);
    let mut net = Net::new(ClientConfig::default());
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.servers[s].latency = Duration::from_millis(50);
    net.connect(s);
    let query = net.get(cids(&data), None);
    // The connection drops while the wants are on the wire: the server never sees them.
    net.disconnect(s);
    assert!(net.client.peer_wants(&net.servers[s].id).is_empty());
    net.run_until(Duration::from_millis(200), |_| false);
    assert!(!net.finished(query));
    net.connect(s);
    // As many as its first window (1 MiB of 256 KiB blocks before it delivered any).
    assert_eq!(net.client.peer_wants(&net.servers[s].id).len(), 4);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
}

#[test]
fn cancels_reach_servers_and_no_block_follows() {
    let data = blocks(4, 8000);
    let mut net = Net::new(ClientConfig::default());
    // Neither server has the blocks yet: they answer DONT_HAVE and keep the wants.
    let a = net.server(Kind::Honest, Version::V1_2_0, &[]);
    let b = net.server(Kind::Honest, Version::V1_2_0, &[]);
    net.connect(a);
    net.connect(b);
    let query = net.get(cids(&data), None);
    net.run_until(Duration::from_millis(500), |n| n.in_flight.is_empty());
    for s in [a, b] {
        assert_eq!(net.servers[s].engine.peer_wantlist(&net.client_id).len(), 4);
    }
    assert!(net.client.cancel(query, net.now));
    assert!(!net.client.cancel(query, net.now));
    net.drain();
    net.run_until(Duration::from_millis(500), |n| n.in_flight.is_empty());
    for s in [a, b] {
        assert!(
            net.servers[s]
                .engine
                .peer_wantlist(&net.client_id)
                .is_empty()
        );
    }
    // The servers get the blocks later: nothing is sent for cancelled wants.
    let events = net.events.len();
    for s in [a, b] {
        for blk in &data {
            net.servers[s].store.insert(*blk.cid().hash(), blk.clone());
        }
        net.servers[s]
            .engine
            .handle_new_blocks(data.iter().map(|b| (*b.cid(), b.data().len())));
        net.run_server(s);
    }
    net.run_until(Duration::from_secs(1), |n| n.in_flight.is_empty());
    assert_eq!(net.events.len(), events, "no event after a cancel");
    assert_eq!(net.client.stats().blocks_received, 0);
    assert_eq!(net.client.stats().wants, 0);
}

#[test]
fn blocks_found_later_by_a_server_still_arrive() {
    let data = blocks(3, 8000);
    let mut net = Net::new(ClientConfig::default());
    let s = net.server(Kind::Honest, Version::V1_2_0, &[]);
    net.connect(s);
    let query = net.get(cids(&data), None);
    net.run_until(Duration::from_secs(2), |_| false);
    assert!(!net.finished(query));
    for blk in &data {
        net.servers[s].store.insert(*blk.cid().hash(), blk.clone());
    }
    net.servers[s]
        .engine
        .handle_new_blocks(data.iter().map(|b| (*b.cid(), b.data().len())));
    net.run_server(s);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
}

#[test]
fn a_1_1_0_peer_is_sent_want_blocks_only_one_at_a_time() {
    let data = blocks(20, 8000);
    let mut net = Net::new(ClientConfig::default());
    let old_a = net.server(Kind::Honest, Version::V1_1_0, &data);
    let old_b = net.server(Kind::Honest, Version::V1_1_0, &data);
    let new = net.server(Kind::Honest, Version::V1_2_0, &[]);
    for s in [old_a, old_b, new] {
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    net.run_until(Duration::from_secs(1), |n| n.in_flight.is_empty());
    // Before encoding too: the client never asked an old peer for a presence.
    assert_eq!(net.client.stats().duplicate_blocks, 0);
    for s in [old_a, old_b] {
        assert!(
            net.servers[s]
                .raw
                .iter()
                .flat_map(|m| &m.wantlist.entries)
                .all(|e| e.cancel || e.want_type == WantType::Block)
        );
    }
}

#[test]
fn a_want_nobody_has_asks_for_providers_and_dials_them() {
    let data = blocks(1, 8000);
    let cid = *data[0].cid();
    let config = ClientConfig::default().with_provider_search_interval(Duration::from_secs(10));
    let mut net = Net::new(config);
    let empty = net.server(Kind::Honest, Version::V1_2_0, &[]);
    let provider = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.connect(empty);
    let query = net.get(vec![cid], None);
    // DONT_HAVE from the only peer: search at once.
    net.run_until(Duration::from_millis(100), |n| !n.searches.is_empty());
    assert_eq!(net.searches.len(), 1);
    assert!(net.searches[0].0 < Duration::from_millis(100));
    // Not again before the interval, again after it; the want stays.
    net.run_until(Duration::from_secs(25), |_| false);
    assert_eq!(net.searches.len(), 3, "{:?}", net.searches);
    assert!(net.searches[1].0 >= Duration::from_secs(10));
    assert!(!net.finished(query));
    // The embedder found a provider that is not connected: it is dialled and asked.
    let provider_id = net.servers[provider].id;
    net.client.add_providers(&cid, [provider_id], net.now);
    net.drain();
    assert_eq!(net.dials, vec![provider_id]);
    assert!(net.servers[provider].connected);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
    // The provider was asked for the block straight away, as if it had said HAVE.
    let first = &net.servers[provider].received[0].wantlist.entries[0];
    assert_eq!((first.cid, first.want_type), (cid, WantType::Block));
}

#[test]
fn without_peers_the_want_waits_and_goes_out_on_connection() {
    let data = blocks(2, 8000);
    // A minute without peers: beyond the default no-peer timeout, which would fail it.
    let mut net = Net::new(ClientConfig::default().with_no_peer_timeout(None));
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    let query = net.get(cids(&data), None);
    assert_eq!(net.searches.len(), 2, "one search per CID at once");
    net.run_until(Duration::from_secs(60), |_| false);
    assert!(!net.finished(query));
    net.connect(s);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
}

/// A CID whose hash function this build cannot compute could never be verified: the query is
/// refused at once, whole, instead of being wanted forever.
#[test]
fn a_cid_whose_hash_cannot_be_verified_is_refused_at_once() {
    let data = blocks(2, 100);
    let mut net = Net::new(ClientConfig::default());
    // md5 (0xd5): in the multihash table, in no hash family of multihash-codetable.
    let md5 = Cid::new_v1(0x55, Multihash::wrap(0xd5, &[7; 16]).expect("short"));
    let mut asked = cids(&data);
    asked.push(md5);
    assert_eq!(
        net.client.get(asked, None, net.now),
        Err(QueryError::UnsupportedHash {
            cid: md5,
            code: 0xd5
        })
    );
    assert!(net.client.wants().next().is_none(), "nothing is wanted");
    // Hash functions of this build are asked for as usual.
    let query = net.get(cids(&data), None);
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.connect(s);
    assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
}

#[test]
fn limits_refuse_queries_and_cap_wants_per_peer() {
    let config = ClientConfig::default()
        .with_max_cids_per_query(50)
        .with_max_wants(60)
        .with_max_queries(3)
        .with_max_wants_per_peer(8);
    let data = blocks(70, 8000);
    let mut net = Net::new(config);
    assert_eq!(
        net.client.get(cids(&data[..51]), None, net.now),
        Err(QueryError::TooManyCids {
            requested: 51,
            max: 50
        })
    );
    let first = net.get(cids(&data[..40]), None);
    assert_eq!(
        net.client.get(cids(&data[30..70]), None, net.now),
        Err(QueryError::TooManyWants { max: 60 })
    );
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.connect(s);
    let id = net.servers[s].id;
    let mut most = 0;
    let done = net.run_until(Duration::from_secs(10), |n| {
        most = most.max(n.client.peer_wants(&id).len());
        n.finished(first)
    });
    assert!(done);
    assert!(most <= 8, "{most} wants at one peer");
    for m in &net.servers[s].received {
        assert!(m.wantlist.entries.iter().filter(|e| !e.cancel).count() <= 8);
    }
    let a = net.get(cids(&data[40..41]), None);
    let _b = net.get(cids(&data[40..41]), None);
    let _c = net.get(cids(&data[41..42]), None);
    assert_eq!(
        net.client.get(cids(&data[42..43]), None, net.now),
        Err(QueryError::TooManyQueries { max: 3 })
    );
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(a)));
}

#[test]
fn wantlist_updates_are_split_under_the_message_size() {
    // A window as large as the wants allowed per peer: all 200 go out at once.
    let config = ClientConfig::default()
        .with_max_message_size(1024)
        .with_initial_window_bytes(u64::MAX);
    let data = blocks(200, 2000);
    let mut net = Net::new(config);
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.connect(s);
    let query = net.get(cids(&data), None);
    let raw = net.servers[s].raw.clone();
    assert!(
        raw.len() > 1,
        "one update split into {} messages",
        raw.len()
    );
    for message in &raw {
        let frames = encode(message, Version::V1_2_0);
        assert!(
            frames.iter().all(|f| f.len() <= 1024),
            "{:?}",
            frames.iter().map(|f| f.len()).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        raw.iter().map(|m| m.wantlist.entries.len()).sum::<usize>(),
        200
    );
    assert!(net.run_until(Duration::from_secs(5), |n| n.finished(query)));
}

#[test]
fn one_block_wanted_by_two_queries_is_reported_to_each_once() {
    let data = blocks(3, 8000);
    let mut net = Net::new(ClientConfig::default());
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.connect(s);
    let q1 = net.get(cids(&data[..2]), None);
    let q2 = net.get(cids(&data[1..]), None);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(q1) && n.finished(q2)));
    assert_exactly(&net, q1, &cids(&data[..2]));
    assert_exactly(&net, q2, &cids(&data[1..]));
    // The shared block was asked once.
    let asked = net.servers[s]
        .received
        .iter()
        .flat_map(|m| &m.wantlist.entries)
        .filter(|e| e.cid == *data[1].cid() && !e.cancel)
        .count();
    assert_eq!(asked, 1);
}

#[test]
fn identity_and_empty_queries_finish_at_once() {
    let mut net = Net::new(ClientConfig::default());
    let digest = b"inline";
    let cid = Cid::new_v1(0x55, Multihash::wrap(0, digest).expect("short"));
    let query = net.get(vec![cid, cid], None);
    assert!(net.finished(query));
    assert_eq!(net.received(query), vec![cid]);
    let empty = net.get(vec![], None);
    assert!(net.finished(empty));
    assert_eq!(net.client.stats().wants, 0);
}

#[test]
fn a_query_timeout_fails_the_query_and_cancels_its_wants() {
    let config = ClientConfig::default().with_query_timeout(Some(Duration::from_secs(5)));
    let mut net = Net::new(config);
    let s = net.server(Kind::Honest, Version::V1_2_0, &[]);
    net.connect(s);
    let query = net.get(cids(&blocks(2, 8000)), None);
    net.run_until(Duration::from_secs(6), |n| {
        n.events
            .iter()
            .any(|e| matches!(e, ClientEvent::QueryFailed { .. }))
    });
    assert!(net.events.contains(&ClientEvent::QueryFailed {
        query,
        error: QueryError::TimedOut
    }));
    assert_eq!(net.client.stats().wants, 0);
    net.run_until(Duration::from_millis(100), |n| n.in_flight.is_empty());
    assert!(
        net.servers[s]
            .engine
            .peer_wantlist(&net.client_id)
            .is_empty()
    );
}

#[test]
fn closing_a_session_cancels_its_queries() {
    let data = blocks(2, 8000);
    let mut net = Net::new(ClientConfig::default());
    let session = net.client.new_session().expect("room");
    let q = net.get(cids(&data), Some(session));
    net.client.close_session(session, net.now);
    net.drain();
    assert!(net.client.query_progress(q).is_none());
    assert_eq!(net.client.stats().wants, 0);
    assert_eq!(
        net.client.get(cids(&data), Some(session), net.now),
        Err(QueryError::UnknownSession(session))
    );
}

/// Want-blocks the client sent `server` more than once for the same CID (a cancel in between
/// does not make a second want-block legitimate; a DONT_HAVE does).
fn want_blocks_sent_twice(net: &Net, server: usize) -> Vec<Cid> {
    let mut asked = std::collections::HashSet::new();
    let mut twice = Vec::new();
    for message in &net.servers[server].raw {
        for entry in &message.wantlist.entries {
            if !entry.cancel && entry.want_type == WantType::Block && !asked.insert(entry.cid) {
                twice.push(entry.cid);
            }
        }
    }
    twice
}

/// The longest time during which the client held a want-block at `server` and no block came
/// from it, and whether the server was still sending then: here, the longest gap between two
/// blocks from the server.
fn longest_gap(net: &Net, server: usize) -> Duration {
    net.servers[server]
        .arrivals
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Two servers with every block, each behind a 20 MB/s link with 25 ms each way: the client
/// keeps both links busy without a want timing out while its server delivers, and without
/// duplicates.
#[test]
fn two_servers_at_20_mb_s_fill_their_links_without_timeouts_or_duplicates() {
    let data = blocks(512, 256 * 1024);
    let mut net = Net::new(ClientConfig::default());
    for _ in 0..2 {
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].rate = Some(20_000_000);
        net.servers[s].latency = Duration::from_millis(25);
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(60), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    net.run_until(Duration::from_secs(2), |n| n.in_flight.is_empty());
    let stats = net.client.stats();
    let seconds = net.elapsed().as_secs_f64();
    let fraction = (512.0 * 256.0 * 1024.0) / seconds / 40e6;
    println!(
        "2 x 20 MB/s, 25 ms: {seconds:.2} s, {fraction:.2} of the links, {:.2}% duplicates, \
         {} timeouts, {} messages, longest gaps {:?} / {:?}",
        net.duplicate_percent(),
        stats.timeouts,
        stats.messages_sent,
        longest_gap(&net, 0),
        longest_gap(&net, 1),
    );
    assert_eq!(
        stats.timeouts, 0,
        "no want timed out while its server delivered"
    );
    assert!(
        net.duplicate_percent() < 5.0,
        "{}%",
        net.duplicate_percent()
    );
    assert!(fraction > 0.85, "{fraction:.2} of the links used");
    for s in 0..2 {
        assert!(want_blocks_sent_twice(&net, s).is_empty());
    }
}

/// Links of different rates: blocks go to each server in proportion to its rate.
#[test]
fn want_blocks_spread_in_proportion_to_the_rates() {
    let data = blocks(384, 256 * 1024);
    let mut net = Net::new(ClientConfig::default());
    for rate in [40_000_000, 10_000_000, 5_000_000] {
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].rate = Some(rate);
        net.servers[s].latency = Duration::from_millis(25);
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(60), |n| n.finished(query)));
    net.run_until(Duration::from_secs(2), |n| n.in_flight.is_empty());
    let shares: Vec<usize> = net.servers.iter().map(|s| s.arrivals.len()).collect();
    let seconds = net.elapsed().as_secs_f64();
    let fraction = (384.0 * 256.0 * 1024.0) / seconds / 55e6;
    println!(
        "40/10/5 MB/s: {seconds:.2} s, {fraction:.2} of the links, blocks per server {shares:?}, \
         {:.2}% duplicates, {} timeouts",
        net.duplicate_percent(),
        net.client.stats().timeouts
    );
    assert!(
        net.duplicate_percent() < 5.0,
        "{}%",
        net.duplicate_percent()
    );
    // 40:10:5 of 384 blocks is about 279:70:35.
    assert!(
        shares[0] > 240 && shares[1] > 45 && shares[2] > 20,
        "{shares:?}"
    );
    assert!(fraction > 0.75, "{fraction:.2} of the links used");
}

/// One server whose large replies each wait a round trip for stream credit (kubo against a
/// 256 KiB initial yamux window) behind a 20 MB/s link with 100 ms each way.
#[test]
fn a_server_slowed_by_stream_windows_is_kept_busy_without_timeouts() {
    let data = blocks(256, 256 * 1024);
    let mut net = Net::new(ClientConfig::default());
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.servers[s].rate = Some(20_000_000);
    net.servers[s].latency = Duration::from_millis(100);
    net.servers[s].window = Some(256 * 1024);
    net.connect(s);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(600), |n| n.finished(query)));
    let stats = net.client.stats();
    let seconds = net.elapsed().as_secs_f64();
    println!(
        "window-bound server 20 MB/s 100 ms: {seconds:.2} s, {:.2} MB/s, {} timeouts",
        256.0 * 256.0 * 1024.0 / seconds / 1e6,
        stats.timeouts
    );
    assert_eq!(stats.timeouts, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// With one server, whatever its link, no want-block goes to it twice for one CID: it
    /// never said DONT_HAVE and the connection is never lost here.
    #[test]
    fn one_server_is_never_sent_a_want_block_twice(
        // 100 kB/s to 100 MB/s, as many slow links as fast ones.
        rate in prop::option::of((5.0f64..8.0).prop_map(|e| 10f64.powf(e) as u64)),
        latency in 0u64..400,
        count in 1u32..64,
        size in 1usize..(512 << 10),
    ) {
        let data = blocks(count, size);
        let mut net = Net::new(ClientConfig::default());
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].rate = rate;
        net.servers[s].latency = Duration::from_millis(latency);
        net.connect(s);
        let query = net.get(cids(&data), None);
        prop_assert!(net.run_until(Duration::from_secs(3600), |n| n.finished(query)));
        assert_exactly(&net, query, &cids(&data));
        prop_assert_eq!(want_blocks_sent_twice(&net, s), Vec::<Cid>::new());
        prop_assert_eq!(net.client.stats().duplicate_blocks, 0);
    }
}

/// A random network: servers with random subsets (every block is somewhere), random
/// latencies and loss, random queries and cancels, a lossy phase then a clean one.
#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    servers: Vec<(Vec<bool>, u64, u8, bool)>,
    queries: Vec<(Vec<usize>, bool)>,
    /// Server (modulo their number) and time (ms) at which its connection drops for 100 ms.
    flaps: Vec<(usize, u64)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let blocks = 12usize;
    let server = (
        prop::collection::vec(any::<bool>(), blocks),
        1u64..300,
        0u8..60,
        any::<bool>(),
    );
    (
        any::<u64>(),
        prop::collection::vec(server, 1..4),
        prop::collection::vec(
            (
                prop::collection::vec(0..blocks, 1..6),
                prop::bool::weighted(0.2),
            ),
            1..6,
        ),
        prop::collection::vec((0usize..4, 0u64..5000), 0..3),
    )
        .prop_map(|(seed, servers, queries, flaps)| Scenario {
            seed,
            servers,
            queries,
            flaps,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_query_gets_exactly_its_blocks_or_is_cancelled(s in scenario()) {
        let data = blocks(12, 3000);
        let mut net = Net::new(ClientConfig::default()).seed(s.seed);
        for (k, (held, latency, loss, old)) in s.servers.iter().enumerate() {
            let mut held: Vec<Block> = data
                .iter()
                .zip(held)
                .filter(|(_, h)| **h)
                .map(|(b, _)| b.clone())
                .collect();
            if k == 0 {
                held = data.clone();
            }
            let version = if *old { Version::V1_1_0 } else { Version::V1_2_0 };
            let i = net.server(Kind::Honest, version, &held);
            net.servers[i].latency = Duration::from_millis(*latency);
            net.servers[i].loss = f64::from(*loss) / 100.0;
            net.connect(i);
        }
        let mut live = Vec::new();
        let mut cancelled = Vec::new();
        for (picks, cancel) in &s.queries {
            let cids: Vec<Cid> = picks.iter().map(|i| *data[*i].cid()).collect();
            let query = net.get(cids.clone(), None);
            net.run_until(Duration::from_millis(50), |_| false);
            if *cancel {
                net.client.cancel(query, net.now);
                net.drain();
                cancelled.push((query, net.events.len()));
            } else {
                live.push((query, cids));
            }
        }
        // Lossy phase with connections dropping, then the network heals.
        let mut flaps = s.flaps.clone();
        flaps.sort_by_key(|(_, at)| *at);
        let start = net.now;
        for (server, at) in flaps {
            let i = server % net.servers.len();
            let wait = (start + Duration::from_millis(at)).saturating_duration_since(net.now);
            net.run_until(wait, |_| false);
            if net.servers[i].connected {
                net.disconnect(i);
                net.run_until(Duration::from_millis(100), |_| false);
                net.connect(i);
            }
        }
        net.run_until(Duration::from_secs(20), |n| live.iter().all(|(q, _)| n.finished(*q)));
        for server in &mut net.servers {
            server.loss = 0.0;
        }
        let done = net.run_until(Duration::from_secs(120), |n| {
            live.iter().all(|(q, _)| n.finished(*q))
        });
        prop_assert!(done, "every live query finishes once the network heals");
        for (query, cids) in &live {
            assert_exactly(&net, *query, cids);
        }
        for (query, events_then) in &cancelled {
            let after = net.events[*events_then..].iter().any(|e| match e {
                ClientEvent::BlockReceived { query: q, .. }
                | ClientEvent::Progress { query: q, .. }
                | ClientEvent::QueryFinished { query: q }
                | ClientEvent::QueryFailed { query: q, .. } => q == query,
            });
            prop_assert!(!after, "nothing reported after a cancel");
        }
        let stats = net.client.stats();
        prop_assert_eq!(stats.wants, 0);
        prop_assert_eq!(stats.queries, 0);
        prop_assert_eq!(stats.unwanted_blocks, 0);
        prop_assert_eq!(net.client.poll_timeout(), None, "no deadline without state");
    }
}
