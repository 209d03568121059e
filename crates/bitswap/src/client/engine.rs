//! [`Engine`]: the client engine's parts and its inputs, outputs and accessors. What the
//! inputs change between wants and peers is the strategy's (`strategy.rs`).

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use cid::Cid;
use ipfs_blockstore::{Block, can_verify, multicodec::IDENTITY};
use libp2p::PeerId;

use super::{
    Config,
    action::{Action, Actions, Event, Stats},
    held::Held,
    id::{ConnectionError, Progress, QueryError, QueryId, SessionId},
    peer::{Answer, MISBEHAVIOUR_PENALTY, Peers, UNWANTED_BLOCK_PENALTY},
    query::Queries,
    strategy::Strategy,
    timer::{Timer, Timers},
    want::Wants,
};
use crate::{
    message::{Entry, Message, WantType},
    protocol::Version,
};

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
/// 5. [`handle_connection_error`](Self::handle_connection_error) when a connection closed
///    with an error, then [`handle_peer_disconnected`](Self::handle_peer_disconnected) when
///    the peer's last connection closed.
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
/// until its query is cancelled or times out ([`Config::with_query_timeout`]). A query left
/// with no peer connected and no provider found fails after [`Config::with_no_peer_timeout`]
/// (30 s by default) with [`QueryError::NoPeers`], carrying the last connection error.
/// See the `want` module's source for the exact ranking.
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
    config: Config,
    /// The CIDs wanted and what each is waiting for.
    wants: Wants,
    /// Connected and remembered peers, with the wants each holds.
    peers: Peers,
    /// Queries and sessions.
    queries: Queries,
    /// Every deadline, each owned by a want, a want sent to a peer, or a query.
    timers: Timers,
    /// What the embedder is asked to do, and the counters.
    actions: Actions,
    /// The CIDs of local-first queries, not yet wanted from peers: until
    /// [`Engine::handle_local_blocks`] says which the embedder's store holds.
    held: Held,
}

impl Engine {
    /// An engine with `config`, no peer and no query.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            wants: Wants::default(),
            peers: Peers::default(),
            queries: Queries::default(),
            timers: Timers::default(),
            actions: Actions::default(),
            held: Held::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The parts the strategy moves between, for one step of an input.
    fn strategy(&mut self) -> Strategy<'_> {
        Strategy::new(
            &self.config,
            &mut self.wants,
            &mut self.peers,
            &self.queries,
            &mut self.timers,
            &mut self.actions,
        )
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
        if !self.peers.connect(peer, version, now) {
            self.handle_peer_version(peer, version);
            return;
        }
        self.queries.unstrand_all(&mut self.timers);
        self.strategy().peer_joined(now);
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
        let Some(asked) = self.peers.disconnect(peer, now) else {
            return;
        };
        let mut orphans = Vec::new();
        for (cid, asked) in asked {
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
            self.strategy().target_lost(cid, now);
        }
        self.peers.forget_old();
        if let Some(timeout) = self.config.no_peer_timeout()
            && self.peers.none_connected()
        {
            self.queries.strand_all(timeout, &mut self.timers, now);
        }
        self.flush();
    }

    /// A connection to a peer closed with an error (I/O, security, muxer): it is kept as
    /// the last connection error, which a query that fails for lack of peers
    /// ([`QueryError::NoPeers`]) reports. Report it before
    /// [`handle_peer_disconnected`](Self::handle_peer_disconnected) if it was the peer's last
    /// connection; clean closes and idle timeouts are not errors.
    pub fn handle_connection_error(&mut self, error: ConnectionError, now: Instant) {
        self.peers.connection_failed(error, now);
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
        if !dial.is_empty()
            && let Some(timeout) = self.config.no_peer_timeout()
        {
            // A new provider to dial: the queries waiting for peers give it time.
            for query in want.queries.clone() {
                self.queries
                    .strand(query, timeout, true, &mut self.timers, now);
            }
        }
        let interval = self.config.dial_interval();
        for peer in dial {
            match self.peers.dial(peer, now, interval) {
                Some(true) => self.actions.dial(peer),
                Some(false) => {}
                None => break,
            }
        }
        self.strategy().choose_target(*cid, now);
        self.flush();
    }

    /// A message from `peer`. Its blocks (already checked against their CIDs when decoded)
    /// are reported to the queries that want them, counted as duplicates if wanted recently,
    /// or dropped with a penalty for the sender if nobody wanted them. Its presences update
    /// what the peer is known to have (ignored for CIDs the peer was not asked for). Its
    /// wantlist is the server's business and is ignored here. Blocks from a peer not
    /// connected are taken if wanted; its presences are ignored.
    pub fn handle_message(&mut self, peer: PeerId, message: &Message, now: Instant) {
        self.handle_message_began(peer, message, now, now);
    }

    /// [`handle_message`](Self::handle_message) for a message that began to arrive at
    /// `began`: when its stream was opened, for the first message of a stream (see
    /// [`network::Event::Message`](crate::network::Event::Message)). The round trips it
    /// measures end there: a peer that negotiates the protocol of each new stream before it
    /// writes (go-libp2p does until it learns ours) would otherwise look twice as far as it is,
    /// and be sent fewer wants. A `began` before the want was sent, or after `now`, is not
    /// taken.
    pub fn handle_message_began(
        &mut self,
        peer: PeerId,
        message: &Message,
        began: Instant,
        now: Instant,
    ) {
        let began = began.min(now);
        for block in &message.blocks {
            self.on_block(peer, block, began, now);
        }
        for presence in &message.presences {
            self.strategy()
                .on_presence(peer, presence.cid, presence.presence, began, now);
        }
        self.flush();
    }

    /// A block from `from` (if known): reported to every query that wants it, counted as a
    /// duplicate if it was wanted recently, dropped and penalised otherwise.
    fn on_block(&mut self, from: PeerId, block: &Block, began: Instant, now: Instant) {
        let cid = *block.cid();
        let size = block.data().len() as u64;
        let Some(want) = self.wants.get(&cid) else {
            if let Some(peer) = self.peers.get_mut(&from) {
                peer.late_answer(&cid, began, now);
            }
            if self.wants.was_recent(&cid) {
                let stats = self.actions.count();
                stats.duplicate_blocks += 1;
                stats.duplicate_bytes += size;
            } else {
                let stats = self.actions.count();
                stats.unwanted_blocks += 1;
                stats.unwanted_bytes += size;
                self.strategy().penalise(from, UNWANTED_BLOCK_PENALTY, now);
            }
            return;
        };
        let queries = want.queries.clone();
        let session = want.session;
        let stats = self.actions.count();
        stats.blocks_received += 1;
        stats.bytes_received += size;
        if let Some(peer) = self.peers.get_mut(&from) {
            peer.delivered(&cid, size, began, now);
            self.queries.record(from, &queries, session);
        }
        self.strategy().drop_want(&cid, Some(from));
        for query in queries {
            self.queries
                .deliver(query, block, Some(from), &mut self.actions);
            self.queries
                .finish_if_done(query, &mut self.timers, &mut self.actions);
        }
        self.strategy().retry_starved(now);
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
                self.strategy().mark_timed_out(peer, entry.cid, now);
            }
        }
        self.flush();
    }

    /// `peer` misbehaved (e.g. sent a message that could not be decoded): its score drops
    /// sharply. A peer whose score falls too low is asked for nothing new during
    /// [`Config::penalty_duration`], and the blocks it was asked for are asked from the next
    /// candidates at once.
    pub fn handle_peer_misbehaved(&mut self, peer: PeerId, now: Instant) {
        self.strategy().penalise(peer, MISBEHAVIOUR_PENALTY, now);
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
                    self.strategy().on_answer_timeout(peer, cid, now);
                }
                Timer::Resend { peer, cid } => {
                    if let Some(state) = self.peers.get_mut(&peer) {
                        state.update_asked(&cid, |a| a.timer = None);
                    }
                    self.strategy().on_resend(peer, cid, now);
                }
                Timer::Search { cid } => self.strategy().on_search(cid, now),
                Timer::Query { query } => self.query_timed_out(query, now),
                Timer::NoPeers { query } => self.query_stranded(query, now),
            }
        }
        self.flush();
    }

    /// The next thing to do, or `None`. Drain it after every call that changes the engine.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop()
    }

    /// Turns every peer's queued entries into [`Action::Send`]s, peers in id order.
    fn flush(&mut self) {
        self.peers
            .flush(self.config.max_message_size(), &mut self.actions);
    }

    /// Opens a session: queries made with it share what they learn about peers (who delivered
    /// blocks is asked first for the next ones), as when fetching the blocks of one DAG. At
    /// most [`Config::max_sessions`](Config::max_sessions) are remembered; beyond it the
    /// least recently used one without live queries is forgotten.
    ///
    /// # Errors
    ///
    /// [`QueryError::TooManySessions`] if every session remembered has live queries.
    pub fn new_session(&mut self) -> Result<SessionId, QueryError> {
        self.queries.open_session(self.config.max_sessions())
    }

    /// Closes a session: its live queries are cancelled (as with [`cancel`](Self::cancel), no
    /// event) and what it learnt is forgotten. Unknown sessions are ignored.
    pub fn close_session(&mut self, session: SessionId, now: Instant) {
        let Some(queries) = self.queries.close_session(session) else {
            return;
        };
        for query in queries {
            self.remove_query(query);
        }
        self.strategy().retry_starved(now);
        self.flush();
    }

    /// Starts fetching `cids` (duplicates are asked once), in `session` if given, and returns
    /// the query's id. Each block is reported once with [`Event::BlockReceived`], followed by
    /// [`Event::Progress`]; [`Event::QueryFinished`] follows the last one. The query stays
    /// until then, until [`cancel`](Self::cancel), or until
    /// [`Config::query_timeout`](Config::query_timeout) if set: a block that no peer
    /// has is searched for ([`Action::FindProviders`]) and wanted again and again, never given
    /// up on by itself, unless no peer is connected: then it fails after
    /// [`Config::no_peer_timeout`](Config::no_peer_timeout) without peers or providers.
    ///
    /// Identity CIDs carry their block: they are reported at once, without asking anyone. An
    /// empty query finishes at once.
    ///
    /// # Errors
    ///
    /// Refused (nothing changes) beyond the limits of [`Config`](Config): CIDs per
    /// query, CIDs wanted in all, live queries; if `session` is not open; or if a CID's hash
    /// function is not one this build computes ([`QueryError::UnsupportedHash`]).
    pub fn get(
        &mut self,
        cids: Vec<Cid>,
        session: Option<SessionId>,
        now: Instant,
    ) -> Result<QueryId, QueryError> {
        self.start_query(cids, session, false, now)
    }

    /// Like [`get`](Self::get), but no CID is wanted from peers until
    /// [`handle_local_blocks`](Self::handle_local_blocks) says which of them the embedder's
    /// own store holds: those are reported as received (from no peer), and only the others
    /// are wanted. The CIDs to look up are those of [`query_remaining`](Self::query_remaining).
    /// Until then they count against [`Config::max_wants`](Config::max_wants), and the query's
    /// deadline runs.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn get_local_first(
        &mut self,
        cids: Vec<Cid>,
        session: Option<SessionId>,
        now: Instant,
    ) -> Result<QueryId, QueryError> {
        self.start_query(cids, session, true, now)
    }

    /// The embedder's store holds `found` of the CIDs of the local-first query `query`: they
    /// are reported as received, and the query's other CIDs are wanted from peers now.
    /// Blocks of other CIDs are ignored, and so is a query that is not live or not waiting for
    /// its lookup (a second call, a cancelled query).
    pub fn handle_local_blocks(&mut self, query: QueryId, found: Vec<Block>, now: Instant) {
        let Some(cids) = self.held.release(query) else {
            return;
        };
        let Some(session) = self.queries.get(&query).map(|q| q.session) else {
            return;
        };
        let mut missing: HashSet<Cid> = cids.iter().copied().collect();
        for block in found {
            if missing.remove(block.cid()) {
                self.queries.deliver(query, &block, None, &mut self.actions);
            }
        }
        // In the order asked for, as `get` wants them.
        for cid in cids.into_iter().filter(|c| missing.contains(c)) {
            self.want(query, cid, session, now);
        }
        self.queries
            .finish_if_done(query, &mut self.timers, &mut self.actions);
        self.flush();
    }

    /// Makes `query` wait for `cid`, and wants it from peers unless it is wanted already.
    fn want(&mut self, query: QueryId, cid: Cid, session: Option<SessionId>, now: Instant) {
        self.queries.wait_for(query, cid);
        if let Some(want) = self.wants.get_mut(&cid) {
            want.queries.push(query);
            return;
        }
        self.wants.insert(cid, query, session);
        self.strategy().start_want(cid, now);
    }

    /// Starts a query: its CIDs are wanted at once, or `held` until the embedder looked them
    /// up.
    fn start_query(
        &mut self,
        cids: Vec<Cid>,
        session: Option<SessionId>,
        held: bool,
        now: Instant,
    ) -> Result<QueryId, QueryError> {
        if let Some(session) = session {
            self.queries.touch_session(session)?;
        }
        // Refused now rather than wanted forever: no block could ever verify.
        if let Some(cid) = cids.iter().find(|c| !can_verify(c.hash().code())) {
            return Err(QueryError::UnsupportedHash {
                cid: *cid,
                code: cid.hash().code(),
            });
        }
        let mut seen = HashSet::with_capacity(cids.len());
        let cids: Vec<Cid> = cids.into_iter().filter(|c| seen.insert(*c)).collect();
        let max = self.config.max_cids_per_query();
        if cids.len() > max {
            return Err(QueryError::TooManyCids {
                requested: cids.len(),
                max,
            });
        }
        if self.queries.len() >= self.config.max_queries() {
            return Err(QueryError::TooManyQueries {
                max: self.config.max_queries(),
            });
        }
        let new = cids
            .iter()
            .filter(|c| c.hash().code() != IDENTITY && !self.wants.contains(c))
            .count();
        if self.wants.len() + self.held.cids() + new > self.config.max_wants() {
            return Err(QueryError::TooManyWants {
                max: self.config.max_wants(),
            });
        }

        let timeout = self.config.query_timeout();
        let id = self
            .queries
            .start(session, cids.len(), timeout, &mut self.timers, now);
        if let Some(timeout) = self.config.no_peer_timeout()
            && self.peers.none_connected()
        {
            self.queries
                .strand(id, timeout, false, &mut self.timers, now);
        }
        let (identity, others): (Vec<Cid>, Vec<Cid>) =
            cids.into_iter().partition(|c| c.hash().code() == IDENTITY);
        if held && !others.is_empty() {
            self.held.hold(id, others);
        } else {
            for cid in others {
                self.want(id, cid, session, now);
            }
        }
        for cid in identity {
            // An identity CID's digest is the block; `Block::new` checks it.
            let data = bytes::Bytes::copy_from_slice(cid.hash().digest());
            if let Ok(block) = Block::new(cid, data) {
                self.queries.deliver(id, &block, None, &mut self.actions);
            }
        }
        // A query waiting for its lookup is not done, even with nothing left to want yet.
        if !self.held.contains(id) {
            self.queries
                .finish_if_done(id, &mut self.timers, &mut self.actions);
        }
        self.flush();
        Ok(id)
    }

    /// Cancels a query: nothing more is reported for it, and its blocks are no longer wanted
    /// unless another query wants them (cancels then go to every peer asked). Returns false if
    /// the query was not live (finished, failed, cancelled or unknown).
    pub fn cancel(&mut self, query: QueryId, now: Instant) -> bool {
        let live = self.remove_query(query);
        self.strategy().retry_starved(now);
        self.flush();
        live
    }

    /// Removes a query and releases its wants; false if it was not live.
    fn remove_query(&mut self, id: QueryId) -> bool {
        self.held.release(id);
        let Some(query) = self.queries.remove(id, &mut self.timers) else {
            return false;
        };
        let mut cids: Vec<Cid> = query.remaining.into_iter().collect();
        cids.sort_by_key(|c| self.wants.get(c).map(|w| std::cmp::Reverse(w.priority)));
        for cid in cids {
            let Some(want) = self.wants.get_mut(&cid) else {
                continue;
            };
            want.queries.retain(|q| *q != id);
            if want.queries.is_empty() {
                self.strategy().drop_want(&cid, None);
            }
        }
        true
    }

    /// The query's deadline passed: it fails.
    fn query_timed_out(&mut self, id: QueryId, now: Instant) {
        if self.queries.deadline_passed(id) {
            self.remove_query(id);
            self.strategy().retry_starved(now);
            self.actions.event(Event::QueryFailed {
                query: id,
                error: QueryError::TimedOut,
            });
        }
    }

    /// The query had no peer to ask for too long: it fails, with the last connection error
    /// seen since it started.
    fn query_stranded(&mut self, id: QueryId, now: Instant) {
        let Some((since, started)) = self.queries.stranded_out(id) else {
            return;
        };
        let last_error = self.peers.last_error_since(started).cloned();
        self.remove_query(id);
        self.strategy().retry_starved(now);
        self.actions.event(Event::QueryFailed {
            query: id,
            error: QueryError::NoPeers {
                waited: now.saturating_duration_since(since),
                last_error,
            },
        });
    }

    /// Where a live query stands, or `None` if it is not live.
    pub fn query_progress(&self, query: QueryId) -> Option<Progress> {
        self.queries.progress(&query)
    }

    /// The CIDs a live query still waits for (empty if it is not live), in no particular order:
    /// for a local-first query not yet looked up, every CID to look up.
    pub fn query_remaining(&self, query: QueryId) -> Vec<Cid> {
        self.queries
            .get(&query)
            .map(|q| q.remaining.iter().copied())
            .into_iter()
            .flatten()
            .chain(self.held.of(query).copied())
            .collect()
    }

    /// The live queries, in no particular order.
    pub fn queries(&self) -> impl Iterator<Item = QueryId> + '_ {
        self.queries.iter().map(|(id, _)| *id)
    }

    /// The open sessions, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.queries.session_ids()
    }

    /// The peers that delivered blocks in `session`, with how many each, most first (empty if
    /// the session is not open).
    pub fn session_peers(&self, session: SessionId) -> Vec<(PeerId, u64)> {
        self.queries.session_peers(session)
    }

    /// Counters over the whole engine.
    pub fn stats(&self) -> Stats {
        Stats {
            wants: self.wants.len(),
            queries: self.queries.len(),
            peers: self.peers.connected().count(),
            ..self.actions.stats()
        }
    }

    /// The CIDs wanted now, in no particular order.
    pub fn wants(&self) -> impl Iterator<Item = &Cid> + '_ {
        self.wants.iter().map(|(cid, _)| cid)
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
        self.peers.connected().map(|(id, _)| id)
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

    /// Checks the engine's internal consistency and its bounds, in O(state); returns a
    /// description of the first violation found. For tests (the `testing` feature) and fuzz
    /// targets (`cfg(fuzzing)`).
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub fn check_invariants(&self) -> Result<(), String> {
        super::invariants::check(
            &self.config,
            &self.wants,
            &self.peers,
            &self.queries,
            &self.timers,
            &self.actions,
        )
    }

    /// The link measurements of `peer`, for tests.
    #[cfg(test)]
    pub(super) fn link(&self, peer: &PeerId) -> Option<&super::link::Link> {
        Some(&self.peers.get(peer)?.link)
    }
}
