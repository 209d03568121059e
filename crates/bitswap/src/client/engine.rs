//! [`Engine`]: the client's state, its peer and message inputs, its timers and outputs.
//! Queries and sessions are in `query.rs`, the strategy in `want.rs`.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use cid::Cid;
use libp2p::PeerId;

use super::{
    Config,
    action::{Action, Stats},
    peer::{Answer, MISBEHAVIOUR_PENALTY, Peer},
    query::{Query, QueryId, Session, SessionId},
    timer::{Timer, Timers},
    want::{Context, Want},
};
use crate::{
    hash::{Map, Set},
    message::{Entry, Message, WantType},
    protocol::Version,
};

/// CIDs remembered after they stop being wanted, so that late copies count as duplicates
/// rather than as unwanted blocks.
const RECENT_CIDS: usize = 4096;
/// Disconnected peers whose score and latency are remembered.
pub(super) const REMEMBERED_PEERS: usize = 1024;
/// Peers with a dial under way remembered (for `Config::dial_interval`).
pub(super) const MAX_DIALS: usize = 1024;

/// The decision engine of a Bitswap client: which peers are asked for which blocks, and how.
/// Sans-IO: it owns no socket, task, store or clock. The embedder reports what happens
/// (`handle_*`, each with the current time) and carries out the [`Action`]s it asks for.
///
/// # Call order
///
/// After **every** call that takes `&mut self` (inputs, [`get`](Self::get),
/// [`cancel`](Self::cancel), sessions), drain [`poll_action`](Self::poll_action) until it
/// returns `None`, then sleep until [`poll_timeout`](Self::poll_timeout) (if any) and call
/// [`handle_timeout`](Self::handle_timeout) then:
///
/// ```text
/// loop {
///     wait for an input or the deadline from poll_timeout, call the matching handle_*
///     while let Some(action) = engine.poll_action() { carry it out }
/// }
/// ```
///
/// 1. [`handle_peer_connected`](Self::handle_peer_connected) when a peer's first connection
///    is up (with [`Version::V1_2_0`] until its version is known, then
///    [`handle_peer_version`](Self::handle_peer_version)); it is then sent the live wants.
/// 2. [`handle_message`](Self::handle_message) for every message a peer sends (its blocks
///    were checked against their CIDs when decoded);
///    [`handle_peer_misbehaved`](Self::handle_peer_misbehaved) when one could not be decoded.
/// 3. [`handle_send_failed`](Self::handle_send_failed) if an [`Action::Send`] could not be
///    written (nothing to report on success).
/// 4. [`add_providers`](Self::add_providers) with what an [`Action::FindProviders`] found.
/// 5. [`handle_peer_disconnected`](Self::handle_peer_disconnected) when its last connection
///    closed.
///
/// # Strategy
///
/// A wanted CID is asked as a want-block from one peer at a time (the best candidate: HAVE,
/// then unknown; helpful peers and those expected to deliver soonest first) and as a
/// want-have from a bounded set of other 1.2.0 peers. Each peer holds at most a window of
/// want-blocks, sized from its measured delivery rate and round trip to cover twice its
/// bandwidth-delay product; the rest wait in the engine for the first peer with room, so
/// peers take blocks in proportion to their rates. DONT_HAVE, or silence (no answer of any
/// kind) for a timeout derived from the peer's round trip and rate (a simulated DONT_HAVE),
/// moves the want-block to the next candidate, with a cancel to the silent peer. Peers
/// before 1.2.0 are only ever sent want-blocks, one at a time. Wants left unanswered are
/// sent again after [`Config::resend_interval`] of silence. When a block arrives every other
/// peer asked gets a cancel.
/// When no connected peer may have the block, providers are searched for and the want stays
/// until its query is cancelled. See the `want` module's source for the exact ranking.
///
/// # Bounds
///
/// Wants (in all, per query, per peer), queries, sessions, providers per want, remembered
/// peers and recently wanted CIDs are bounded by [`Config`] or constants; deadlines exist
/// only for live state. Actions are produced only by calls and drained by the embedder.
///
/// # Example
///
/// ```
/// use std::time::Instant;
///
/// use bitswap::{Block, ClientAction, ClientConfig, ClientEngine, ClientEvent, Message, Version};
/// use bytes::Bytes;
/// use libp2p::PeerId;
///
/// let block = Block::from_v0_data(Bytes::from_static(b"hello"))?;
/// let mut engine = ClientEngine::new(ClientConfig::default());
/// let now = Instant::now();
/// let server = PeerId::random();
/// engine.handle_peer_connected(server, Version::V1_2_0, now);
/// let query = engine.get(vec![*block.cid()], None, now)?;
/// // The engine asks the server for the block.
/// let Some(ClientAction::Send { peer, message }) = engine.poll_action() else { panic!() };
/// assert_eq!((peer, message.wantlist.entries[0].cid), (server, *block.cid()));
///
/// // The server answers with it.
/// let reply = Message { blocks: vec![block.clone()], ..Message::default() };
/// engine.handle_message(server, &reply, now);
/// let mut events = Vec::new();
/// while let Some(action) = engine.poll_action() {
///     if let ClientAction::Event(event) = action {
///         events.push(event);
///     }
/// }
/// assert!(matches!(&events[0], ClientEvent::BlockReceived { block: b, .. } if *b == block));
/// assert_eq!(events.last(), Some(&ClientEvent::QueryFinished { query }));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Engine {
    pub(super) config: Config,
    /// Connected peers, and up to [`REMEMBERED_PEERS`] disconnected ones.
    pub(super) peers: HashMap<PeerId, Peer>,
    pub(super) wants: Map<Cid, Want>,
    pub(super) queries: HashMap<QueryId, Query>,
    pub(super) sessions: HashMap<SessionId, Session>,
    pub(super) timers: Timers,
    pub(super) actions: VecDeque<Action>,
    pub(super) stats: Stats,
    pub(super) next_query: u64,
    pub(super) next_session: u64,
    next_priority: i32,
    pub(super) recent: Recent,
    /// When each peer was last asked to be dialled.
    pub(super) dials: HashMap<PeerId, Instant>,
    /// Wants waiting for room at a peer (see `Want::starved`), oldest first.
    pub(super) starved: VecDeque<Cid>,
    /// Wants broadcast at their start, per context (see `want.rs`); no zero entries.
    pub(super) discovering: HashMap<Context, usize>,
    /// When the provider searches of the last `Config::provider_search_interval` were
    /// emitted, oldest first (at most `Config::max_provider_searches`).
    pub(super) recent_searches: VecDeque<Instant>,
}

/// The last [`RECENT_CIDS`] CIDs that stopped being wanted.
#[derive(Debug, Default)]
pub(super) struct Recent {
    order: VecDeque<Cid>,
    set: Set<Cid>,
}

impl Recent {
    pub(super) fn insert(&mut self, cid: Cid) {
        if self.set.insert(cid) {
            self.order.push_back(cid);
            if self.order.len() > RECENT_CIDS
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    pub(super) fn contains(&self, cid: &Cid) -> bool {
        self.set.contains(cid)
    }
}

impl Engine {
    /// An engine with `config`, no peer and no query.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            peers: HashMap::new(),
            wants: Map::default(),
            queries: HashMap::new(),
            sessions: HashMap::new(),
            timers: Timers::default(),
            actions: VecDeque::new(),
            stats: Stats::default(),
            next_query: 0,
            next_session: 0,
            next_priority: i32::MAX,
            recent: Recent::default(),
            dials: HashMap::new(),
            starved: VecDeque::new(),
            discovering: HashMap::new(),
            recent_searches: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The priority of the next new want: decreasing, so peers serve wants in the order they
    /// were made (as boxo); wraps back to the top before reaching 0.
    pub(super) fn next_priority(&mut self) -> i32 {
        let priority = self.next_priority;
        self.next_priority = if priority <= 1 {
            i32::MAX
        } else {
            priority - 1
        };
        priority
    }

    /// A peer's first connection is up and it speaks `version`. It is sent the live wants: a
    /// want-block for each want without a target for which it is the best candidate, and a
    /// want-have (1.2.0 only) for each want whose want-haves were broadcast, while that want's
    /// broadcast set has room. This is also how the wantlist is re-sent after a
    /// reconnection. For a peer already connected, this is
    /// [`handle_peer_version`](Self::handle_peer_version).
    ///
    /// Report the version negotiated on the first stream if the shell can: if it is not known
    /// yet, pass [`Version::V1_2_0`] and correct it with `handle_peer_version`, but want-haves
    /// sent meanwhile reach an older peer as want-blocks (the shell encodes for the version
    /// negotiated), which may cost duplicate blocks.
    pub fn handle_peer_connected(&mut self, peer: PeerId, version: Version, now: Instant) {
        if let Some(state) = self.peers.get_mut(&peer) {
            if state.version.is_some() {
                self.handle_peer_version(peer, version);
                return;
            }
            state.version = Some(version);
            state.last_seen = now;
            state.link.reconnected();
        } else {
            self.peers.insert(peer, Peer::new(version, now));
        }
        self.dials.remove(&peer);
        self.peer_joined(now);
        self.flush();
    }

    /// The Bitswap version of a connected peer became known or changed. It applies to wants
    /// sent from then on. A peer that turns out to be older than 1.2.0 would read the
    /// want-haves it was sent as want-blocks (the shell encodes for its version), and each
    /// would bring a block: they are withdrawn (cancels, queued as [`Action::Send`]) so that
    /// only the peer's targets are sent.
    pub fn handle_peer_version(&mut self, peer: PeerId, version: Version) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.version.is_none() {
            return;
        }
        let had_have = state.supports_have();
        state.version = Some(version);
        if !had_have || state.supports_have() {
            return;
        }
        let haves: Vec<Cid> = state
            .asked_iter()
            .filter(|(_, a)| a.want_type == WantType::Have)
            .map(|(cid, _)| *cid)
            .collect();
        for cid in haves {
            if let Some(asked) = state.remove_asked(&cid) {
                self.timers.remove(asked.timer);
            }
            state.outbox.push(Entry::cancel(cid));
            if let Some(want) = self.wants.get_mut(&cid) {
                want.asked.retain(|p| *p != peer);
            }
        }
        self.flush();
    }

    /// A peer's last connection closed. The wants it was sent are forgotten (a want whose
    /// block it was asked for moves to the next candidate); its score and latency are
    /// remembered for when it comes back, which re-sends it the live wants.
    pub fn handle_peer_disconnected(&mut self, peer: &PeerId, now: Instant) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.version.is_none() {
            return;
        }
        state.version = None;
        state.last_seen = now;
        state.outbox.clear();
        let mut orphans = Vec::new();
        for (cid, asked) in state.drain_asked() {
            self.timers.remove(asked.timer);
            if let Some(want) = self.wants.get_mut(&cid) {
                want.asked.retain(|p| p != peer);
                if want.target == Some(*peer) {
                    orphans.push((want.priority, cid));
                }
            }
        }
        orphans.sort_by_key(|o| std::cmp::Reverse(o.0));
        for (_, cid) in orphans {
            self.target_lost(cid, now);
        }
        self.forget_old_peers();
        self.flush();
    }

    /// Drops the disconnected peers seen longest ago beyond [`REMEMBERED_PEERS`].
    fn forget_old_peers(&mut self) {
        let gone = self.peers.values().filter(|p| p.version.is_none()).count();
        if gone <= REMEMBERED_PEERS {
            return;
        }
        let mut old: Vec<(Instant, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.version.is_none())
            .map(|(id, p)| (p.last_seen, *id))
            .collect();
        old.sort();
        for (_, id) in old.into_iter().take(gone - REMEMBERED_PEERS) {
            self.peers.remove(&id);
        }
    }

    /// Peers said to provide `cid` (e.g. found by kad after an [`Action::FindProviders`]).
    /// They count as having said HAVE when a target is picked; connected ones may be asked at
    /// once, the others are asked to be dialled ([`Action::Dial`], at most once per
    /// [`Config::dial_interval`] per peer). Ignored if `cid` is not wanted; at most
    /// [`Config::max_providers_per_want`] are remembered per CID.
    pub fn add_providers(
        &mut self,
        cid: &Cid,
        peers: impl IntoIterator<Item = PeerId>,
        now: Instant,
    ) {
        let max = self.config.max_providers_per_want();
        let Some(want) = self.wants.get_mut(cid) else {
            return;
        };
        let mut dial = Vec::new();
        for peer in peers {
            if want.providers.contains(&peer) {
                continue;
            }
            if want.providers.len() >= max {
                break;
            }
            want.providers.push(peer);
            if self.peers.get(&peer).is_none_or(|p| p.version.is_none()) {
                dial.push(peer);
            }
        }
        let interval = self.config.dial_interval();
        for peer in dial {
            if self.dials.get(&peer).is_some_and(|at| now < *at + interval) {
                continue;
            }
            if self.dials.len() >= MAX_DIALS {
                self.dials.retain(|_, at| now < *at + interval);
                if self.dials.len() >= MAX_DIALS {
                    break;
                }
            }
            self.dials.insert(peer, now);
            self.actions.push_back(Action::Dial { peer });
        }
        self.choose_target(*cid, now);
        self.flush();
    }

    /// A message from `peer`. Its blocks (already checked against their CIDs when decoded)
    /// are reported to the queries that want them, counted as duplicates if wanted recently,
    /// or dropped with a penalty for the sender if nobody wanted them. Its presences update
    /// what the peer is known to have (ignored for CIDs the peer was not asked for). Its
    /// wantlist is the server's business and is ignored here. Blocks from a peer not
    /// connected are taken if wanted; its presences are ignored.
    pub fn handle_message(&mut self, peer: PeerId, message: &Message, now: Instant) {
        for block in &message.blocks {
            self.on_block(peer, block, now);
        }
        for presence in &message.presences {
            self.on_presence(peer, presence.cid, presence.presence, now);
        }
        self.flush();
    }

    /// An [`Action::Send`] to `peer` carrying `message` could not be sent. Its wants that are
    /// still unanswered are treated as unanswered in time (a simulated DONT_HAVE, without
    /// penalty: the block is asked from the next candidate) and are sent again after
    /// [`Config::resend_interval`] if the peer stays connected.
    pub fn handle_send_failed(&mut self, peer: PeerId, message: &Message, now: Instant) {
        for entry in message.wantlist.entries.iter().filter(|e| !e.cancel) {
            let unanswered = self
                .peers
                .get(&peer)
                .and_then(|p| p.asked(&entry.cid))
                .is_some_and(|a| a.answer == Answer::Pending);
            if unanswered {
                self.mark_timed_out(peer, entry.cid, now);
            }
        }
        self.flush();
    }

    /// `peer` misbehaved (e.g. sent a message that could not be decoded): its score drops
    /// sharply. A peer whose score falls too low is asked for nothing new during
    /// [`Config::penalty_duration`], and the blocks it was asked for are asked from the next
    /// candidates at once.
    pub fn handle_peer_misbehaved(&mut self, peer: PeerId, now: Instant) {
        self.penalise(peer, MISBEHAVIOUR_PENALTY, now);
        self.flush();
    }

    /// The next deadline: call [`handle_timeout`](Self::handle_timeout) at (or after) it.
    /// `None` if nothing is timed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Time passed: runs every deadline at or before `now` (simulated DONT_HAVEs, resends,
    /// provider searches, query timeouts).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                Timer::Answer { peer, cid } => {
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.update_asked(&cid, |a| a.timer = None);
                    }
                    self.on_answer_timeout(peer, cid, now);
                }
                Timer::Resend { peer, cid } => {
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.update_asked(&cid, |a| a.timer = None);
                    }
                    self.on_resend(peer, cid, now);
                }
                Timer::Search { cid } => self.on_search(cid, now),
                Timer::Query { query } => self.query_timed_out(query, now),
            }
        }
        self.flush();
    }

    /// The next thing to do, or `None`. Drain it after every call that changes the engine.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Turns every peer's queued entries into [`Action::Send`]s, peers in id order.
    pub(super) fn flush(&mut self) {
        let mut ready: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.outbox.is_empty())
            .map(|(id, _)| *id)
            .collect();
        ready.sort();
        let max_size = self.config.max_message_size();
        for id in ready {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            for message in peer.take_messages(max_size) {
                let entries = &message.wantlist.entries;
                self.stats.messages_sent += 1;
                self.stats.entries_sent += entries.len() as u64;
                self.stats.cancels_sent += entries.iter().filter(|e| e.cancel).count() as u64;
                self.actions.push_back(Action::Send { peer: id, message });
            }
        }
    }

    /// Counters over the whole engine.
    pub fn stats(&self) -> Stats {
        Stats {
            wants: self.wants.len(),
            queries: self.queries.len(),
            peers: self.peers.values().filter(|p| p.version.is_some()).count(),
            ..self.stats
        }
    }

    /// The CIDs wanted now, in no particular order.
    pub fn wants(&self) -> impl Iterator<Item = &Cid> + '_ {
        self.wants.keys()
    }

    /// The wants `peer` holds from us (sent and neither answered with a block nor
    /// cancelled), highest priority first; empty if it is not connected.
    pub fn peer_wants(&self, peer: &PeerId) -> Vec<Entry> {
        let Some(state) = self.peers.get(peer) else {
            return Vec::new();
        };
        let mut entries: Vec<Entry> = state
            .asked_iter()
            .map(|(cid, asked)| {
                let priority = self.wants.get(cid).map_or(0, |w| w.priority);
                match asked.want_type {
                    WantType::Block => Entry::want_block(*cid, priority),
                    WantType::Have => Entry::want_have(*cid, priority),
                }
            })
            .collect();
        entries.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.cid.cmp(&b.cid)));
        entries
    }

    /// The connected peers, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| p.version.is_some())
            .map(|(id, _)| id)
    }

    /// Whether `peer` was asked for blocks or presences it has not answered yet (or answered
    /// DONT_HAVE, while the block is still wanted).
    pub fn has_wants_at(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.asked_len() > 0)
    }

    /// A peer's measured want-to-answer latency (a moving average), if measured and the peer
    /// is remembered.
    pub fn peer_latency(&self, peer: &PeerId) -> Option<Duration> {
        self.peers.get(peer)?.latency
    }

    /// A peer's score (from -100 to 100; 0 for a new peer), if remembered. It rises with
    /// blocks delivered first and falls with unwanted blocks, HAVEs not honoured, silence and
    /// misbehaviour.
    pub fn peer_score(&self, peer: &PeerId) -> Option<i32> {
        Some(self.peers.get(peer)?.score)
    }

    /// Whether `peer` is left out at `now` because of a low score.
    pub fn is_penalised(&self, peer: &PeerId, now: Instant) -> bool {
        self.peers.get(peer).is_some_and(|p| p.is_penalised(now))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        client::{Event, testing::*},
        message::BlockPresenceType,
    };

    #[test]
    fn a_disconnected_target_is_replaced_and_a_reconnection_resends_the_wants() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2], now);
        e.get(vec![cid(1), cid(2)], None, now).expect("ok");
        drain(&mut e);
        // Peer 1 is the target of the first want, peer 2 (less loaded) of the second.
        assert_eq!(e.peer_wants(&peer(1)).len(), 1);
        e.handle_peer_disconnected(&peer(1), now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        assert!(e.peer_wants(&peer(1)).is_empty());
        assert_eq!(e.peers().count(), 1);
        e.handle_peer_connected(peer(1), Version::V1_2_0, now);
        let actions = drain(&mut e);
        // Both wants have a target (peer 2); the broadcast one is sent as a want-have again.
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Have)), [peer(1)]);
        assert_eq!(entries(&actions).len(), 1);
        assert!(
            e.peer_score(&peer(1)).is_some(),
            "remembered across the reconnection"
        );
    }

    #[test]
    fn a_peer_found_older_than_1_2_0_has_its_want_haves_withdrawn() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2], now);
        e.get(vec![cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Have)), [peer(2)]);
        e.handle_peer_version(peer(2), Version::V1_1_0);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), None), [peer(2)]);
        assert!(e.peer_wants(&peer(2)).is_empty());
    }

    #[test]
    fn a_failed_send_moves_the_want_on_without_penalty() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2], now);
        e.get(vec![cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        let Some(Action::Send { peer: p, message }) = actions.first() else {
            panic!("{actions:?}");
        };
        assert_eq!(*p, peer(1));
        e.handle_send_failed(peer(1), message, now);
        let actions = drain(&mut e);
        // Peer 2 was sent a want-have; it is now asked for the block.
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        assert_eq!(e.peer_score(&peer(1)), Some(0));
        assert_eq!(e.stats().timeouts, 0);
    }

    #[test]
    fn misbehaviour_leaves_a_peer_out() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2], now);
        e.handle_peer_misbehaved(peer(1), now);
        drain(&mut e);
        assert!(e.is_penalised(&peer(1), now));
        e.get(vec![cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert!(entries(&actions).iter().all(|(p, _)| *p == peer(2)));
    }

    #[test]
    fn a_penalised_peer_is_still_asked_when_no_other_peer_can_be() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1], now);
        e.handle_peer_misbehaved(peer(1), now);
        drain(&mut e);
        assert!(e.is_penalised(&peer(1), now));
        e.get(vec![cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
        // With another peer connected, the penalised one is left out again.
        e.handle_peer_connected(peer(2), Version::V1_2_0, now);
        e.get(vec![cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(2)]);
    }

    #[test]
    fn provider_searches_have_a_budget_per_interval() {
        let now = Instant::now();
        let config = Config::default().with_max_provider_searches(4);
        let interval = config.provider_search_interval();
        let mut e = engine(config, &[], now);
        e.get((0..10).map(cid).collect(), None, now).expect("ok");
        let searches = |actions: &[Action]| {
            actions
                .iter()
                .filter(|a| matches!(a, Action::FindProviders { .. }))
                .count()
        };
        assert_eq!(searches(&drain(&mut e)), 4);
        e.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(searches(&drain(&mut e)), 0, "budget spent");
        e.handle_timeout(now + interval + Duration::from_secs(1));
        assert_eq!(searches(&drain(&mut e)), 4);
        e.handle_timeout(now + 3 * interval);
        assert_eq!(searches(&drain(&mut e)), 4);
    }

    #[test]
    fn presences_and_blocks_from_strangers() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1], now);
        let query = e.get(vec![cid(1)], None, now).expect("ok");
        drain(&mut e);
        // A presence from a peer never asked changes nothing.
        e.handle_message(
            peer(9),
            &with_presence(cid(1), BlockPresenceType::Have),
            now,
        );
        assert!(drain(&mut e).is_empty());
        // A wanted block from anyone is taken: it is verified.
        e.handle_message(peer(9), &with_block(&block(1)), now);
        let actions = drain(&mut e);
        assert!(events(&actions).contains(&Event::QueryFinished { query }));
        assert_eq!(sent(&actions, &cid(1), None), [peer(1)]);
    }
}
