//! [`Engine`]: the server's parts, its peer inputs, its accessors and invariants. The other
//! inputs and outputs are in `inputs.rs` (wantlists, new blocks), `store.rs` (lookups) and
//! `envelope.rs` (envelopes).

use cid::Cid;
use libp2p::PeerId;
use peer_task_queue::{Config as QueueConfig, PeerTaskQueue};

use super::{
    Config, Metrics, PeerAccounting,
    batch::Batches,
    lookup::Lookups,
    merger::{Merger, TaskData},
    metrics::{Meter, Stats},
    peer::{PeerState, Peers},
    window::Windows,
};
use crate::{message::Entry, protocol::Version};

/// The server's task queue.
pub(super) type Queue = PeerTaskQueue<PeerId, Cid, TaskData, Merger>;

/// The decision engine of a Bitswap server: what every peer gets, and when. Sans-IO: it never
/// touches a blockstore, a socket or a clock; it asks for lookups and hands out envelopes.
///
/// # Call order
///
/// Inputs are `handle_*` calls; outputs are drained with the `poll_*` calls, which return
/// `None` when nothing is ready. Outputs change only during inputs and during
/// [`poll_lookup`](Self::poll_lookup) (which pops the queue into batches when it has no lookup
/// to hand out, and a batch without blocks is an envelope at once), so after **every**
/// `handle_*` call the embedder drains lookups first, then envelopes:
///
/// ```text
/// loop {
///     wait for an input and call the matching handle_*
///     while let Some(lookup) = engine.poll_lookup()     { start it on the blockstore }
///     while let Some(envelope) = engine.poll_envelope() { send it to envelope.peer }
/// }
/// ```
///
/// [`poll_envelope`](Self::poll_envelope) never makes a lookup ready, so nothing is left
/// behind in that order.
///
/// 1. [`handle_peer_connected`](Self::handle_peer_connected) when a peer connects, before
///    any of its messages (messages from unknown peers are ignored);
///    [`handle_peer_version`](Self::handle_peer_version) when its Bitswap version becomes
///    known or changes.
/// 2. [`handle_message`](Self::handle_message) for every message the peer sends.
/// 3. Every [`Lookup`](super::Lookup) from [`poll_lookup`](Self::poll_lookup) is answered
///    exactly once with [`handle_lookup`](Self::handle_lookup) (a store error is
///    [`LookupResult::Failed`](super::LookupResult::Failed)), in any order. At most
///    [`Config::max_lookups_in_flight`] are unanswered at a time.
/// 4. Every [`Envelope`](super::Envelope) from [`poll_envelope`](Self::poll_envelope) is
///    reported exactly once with [`handle_envelope_sent`](Self::handle_envelope_sent) (written
///    to the peer's stream), [`handle_envelope_lost`](Self::handle_envelope_lost) (cut on its
///    way, the peer still connected: answered again) or
///    [`handle_envelope_failed`](Self::handle_envelope_failed) (refused or not written), also
///    when the peer has disconnected meanwhile. Its tasks count against the peer's
///    outstanding bytes and the engine's envelopes in flight until then; one that waits
///    behind a full stream may be reported
///    [`handle_envelope_stalled`](Self::handle_envelope_stalled) before, and then counts
///    against its peer's limits only.
/// 5. [`handle_new_blocks`](Self::handle_new_blocks) after blocks were put in the store:
///    peers that want them get them, in their queue order.
/// 6. [`handle_peer_disconnected`](Self::handle_peer_disconnected) when the peer's last
///    connection closes: everything it had is freed.
///
/// # Rules
///
/// - Wants are kept per peer in a ledger of at most [`Config::max_wants_per_peer`]; a full
///   wantlist replaces the old one (its queued answers are removed), a cancel removes the want
///   and its queued answer.
/// - Each want is probed once per time it is received (size, or presence when want-haves are
///   never replaced), then answered: the block (want-block, or want-have for a block of at most
///   [`Config::want_have_replace_size`]), HAVE, or, if missing, DONT_HAVE when the peer asked
///   for it and speaks 1.2.0. Peers on 1.0.0/1.1.0 have their want-haves read as want-blocks
///   and get no presences.
/// - Blocks are read ([`LookupKind::Get`](super::LookupKind::Get)) only when an envelope is
///   built, so memory holds at most the blocks of the envelopes in flight.
/// - A want answered with a block is forgotten when its envelope is sent; a HAVE forgets a
///   want-have only; after DONT_HAVE the want stays, and a block stored later is sent.
/// - Wants that are not kept (the ledger is full and they rank lower, beyond the per-message
///   cap, denied by the request filter) are answered DONT_HAVE if they asked for it. Identity
///   CIDs, CIDs longer than [`Config::max_cid_size`] and CIDv1 wants from 1.0.0 peers (which
///   cannot carry such blocks) are ignored without an answer.
/// - Nothing is sent for a want cancelled or dropped after its task was popped, unless the
///   envelope carrying it was already handed out.
///
/// # Example
///
/// A driver with a map for a store, answering lookups at once:
///
/// ```
/// use std::collections::HashMap;
///
/// use bitswap::{
///     Block, Entry, LookupKind, LookupResult, Message, ServerConfig, ServerEngine, Version,
/// };
/// use bytes::Bytes;
/// use libp2p::PeerId;
///
/// let block = Block::from_v0_data(Bytes::from_static(b"hello"))?;
/// let store = HashMap::from([(*block.cid(), block.clone())]);
/// let mut engine = ServerEngine::new(ServerConfig::default());
/// let peer = PeerId::random();
/// engine.handle_peer_connected(peer, Version::V1_2_0);
///
/// let mut want = Message::default();
/// want.wantlist.entries.push(Entry::want_block(*block.cid(), 1));
/// engine.handle_message(peer, &want);
///
/// let mut sent = Vec::new();
/// loop {
///     while let Some(lookup) = engine.poll_lookup() {
///         let found = store.get(&lookup.cid);
///         let result = match lookup.kind {
///             LookupKind::Has => LookupResult::Has(found.is_some()),
///             LookupKind::Size => LookupResult::Size(found.map(|b| b.data().len())),
///             LookupKind::Get => LookupResult::Block(found.cloned()),
///             _ => LookupResult::Failed,
///         };
///         engine.handle_lookup(lookup.id, result);
///     }
///     let Some(envelope) = engine.poll_envelope() else { break };
///     // The shell sends `envelope.message` to `envelope.peer`, then reports it.
///     engine.handle_envelope_sent(envelope.id);
///     sent.push(envelope);
/// }
/// assert_eq!(sent.len(), 1);
/// assert_eq!(sent[0].message.blocks, [block]);
/// assert!(engine.peer_wantlist(&peer).is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Engine {
    pub(super) config: Config,
    pub(super) queue: Queue,
    /// The connected peers, their ledgers, and who wants which multihash.
    pub(super) peers: Peers,
    /// Lookups waiting and in flight.
    pub(super) lookups: Lookups,
    /// Batches in flight and the envelopes handed out from them.
    pub(super) batches: Batches,
    /// Each peer's window: the bytes of work it may have outstanding.
    pub(super) windows: Windows<PeerId>,
    pub(super) metrics: Meter,
}

impl Engine {
    /// An engine with `config` and no metrics.
    pub fn new(config: Config) -> Self {
        let windows = Windows::new(
            config.max_outstanding_bytes_per_peer(),
            config.max_window_per_peer(),
            config.max_outstanding_bytes(),
        );
        // The queue stops a peer at the largest window; the engine pauses it at its own.
        let queue = QueueConfig::default()
            .with_max_active_work_per_peer(windows.cap())
            .with_max_pending_tasks_per_peer(config.max_wants_per_peer().saturating_mul(2));
        Self {
            config,
            queue: Queue::new(queue),
            peers: Peers::default(),
            lookups: Lookups::default(),
            batches: Batches::default(),
            windows,
            metrics: Meter::default(),
        }
    }

    /// An engine with `config` that updates `metrics` (see [`Metrics::new`]).
    pub fn with_metrics(config: Config, metrics: Metrics) -> Self {
        let mut engine = Self::new(config);
        engine.metrics = Meter::new(Some(metrics));
        engine.refresh_gauges();
        engine
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A peer connected (its first connection) and speaks `version` (use
    /// [`Version::V1_2_0`] until known). For a peer already connected, only updates the
    /// version.
    pub fn handle_peer_connected(&mut self, peer: PeerId, version: Version) {
        if !self.peers.connect(peer, version) {
            if let Some(state) = self.peers.get_mut(&peer) {
                state.version = version;
            }
            self.settle();
            return;
        }
        self.windows.insert(peer);
        self.refresh_gauges();
    }

    /// The Bitswap version of a connected peer became known or changed. It applies to wants
    /// received from then on and to envelopes built from then on.
    pub fn handle_peer_version(&mut self, peer: PeerId, version: Version) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.version = version;
            self.settle();
        }
    }

    /// The peer's last connection closed: its wants, tasks, queued lookups and unsent
    /// envelopes are dropped, and its accounting forgotten. Envelopes already handed out
    /// still count as in flight until reported sent or failed.
    pub fn handle_peer_disconnected(&mut self, peer: &PeerId) {
        let Some(state) = self.peers.disconnect(peer) else {
            return;
        };
        self.windows.remove(peer);
        let _ = self.queue.clear_peer(peer);
        if state.in_round {
            self.lookups.leave_round(peer);
        }
        self.batches.drop_peer(peer);
        self.settle();
    }

    /// How many envelopes `peer` may have handed out and not reported:
    /// [`Config::max_envelopes_per_peer`], times its window over the floor.
    pub(super) fn envelope_limit(&self, peer: &PeerId) -> usize {
        let base = self.config.max_envelopes_per_peer();
        let scale = self.windows.limit(peer) / self.windows.floor().max(1);
        base.saturating_mul(usize::try_from(scale.max(1)).unwrap_or(usize::MAX))
    }

    /// Whether `peer` must be paused in the queue: at its envelope limit, or with its window's
    /// worth of work outstanding.
    fn should_pause(&self, peer: &PeerId, state: &PeerState) -> bool {
        let active = self.queue.peer_stats(peer).map_or(0, |s| s.active_work);
        state.envelopes_out >= self.envelope_limit(peer) || active >= self.windows.limit(peer)
    }

    /// Pauses or resumes `peer` in the queue as [`should_pause`](Self::should_pause) says,
    /// and tells its window when it is held back with work queued. Run after anything that
    /// changes its envelopes out, its active work or its window.
    pub(super) fn update_pause(&mut self, peer: &PeerId) {
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        let Some(stats) = self.queue.peer_stats(peer) else {
            return;
        };
        let paused = self.should_pause(peer, state);
        if paused && stats.pending_tasks > 0 {
            self.windows.limited(peer);
        }
        if self.queue.is_peer_paused(peer) != paused {
            self.queue.set_peer_paused(peer, paused);
        }
    }

    pub(super) fn refresh_gauges(&self) {
        self.metrics.refresh(|| self.stats());
    }

    /// What `peer` exchanged with the server since it connected, or `None` if it is not
    /// connected.
    pub fn peer_accounting(&self, peer: &PeerId) -> Option<PeerAccounting> {
        Some(self.peers.get(peer)?.accounting)
    }

    /// Whether wants of `peer` are kept: it is owed a block or an answer, maybe later (a block
    /// stored after DONT_HAVE is sent to it).
    pub fn holds_wants_of(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.ledger.len() > 0)
    }

    /// The wants kept for `peer`, highest priority first (empty if not connected).
    pub fn peer_wantlist(&self, peer: &PeerId) -> Vec<Entry> {
        let Some(state) = self.peers.get(peer) else {
            return Vec::new();
        };
        let mut entries: Vec<(u32, Entry)> = state
            .ledger
            .iter()
            .map(|(cid, w)| {
                let entry = Entry {
                    cid,
                    priority: w.priority,
                    want_type: w.want_type,
                    send_dont_have: w.send_dont_have,
                    cancel: false,
                };
                (w.seq, entry)
            })
            .collect();
        entries
            .sort_by(|(a_seq, a), (b_seq, b)| b.priority.cmp(&a.priority).then(a_seq.cmp(b_seq)));
        entries.into_iter().map(|(_, e)| e).collect()
    }

    /// The version the engine assumes for `peer`, or `None` if it is not connected.
    pub fn peer_version(&self, peer: &PeerId) -> Option<Version> {
        Some(self.peers.get(peer)?.version)
    }

    /// The connected peers, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = &PeerId> + '_ {
        self.peers.ids()
    }

    /// Counters over the whole engine.
    pub fn stats(&self) -> Stats {
        let queue = self.queue.stats();
        Stats {
            peers: self.peers.len(),
            wants: self.peers.total_wants(),
            pending_tasks: queue.pending_tasks,
            pending_bytes: queue.pending_work,
            active_tasks: queue.active_tasks,
            active_bytes: queue.active_work,
            lookups_in_flight: self.lookups.in_flight(),
            envelopes_in_flight: self.batches.len(),
            envelopes_out: self.batches.envelopes_out(),
            window_bytes: self.windows.total(),
        }
    }

    /// Checks the engine's internal consistency and its bounds, in O(state). For tests and
    /// fuzzing; returns a description of the first violation found.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.queue.check_invariants()?;
        self.peers.check(self.config.max_wants_per_peer())?;
        for (peer, state) in self.peers.iter() {
            let at_limit = self.should_pause(peer, state);
            if self.queue.contains_peer(peer) && self.queue.is_peer_paused(peer) != at_limit {
                return Err(format!(
                    "{peer}: {} envelopes out, window {}, paused {}",
                    state.envelopes_out,
                    self.windows.limit(peer),
                    self.queue.is_peer_paused(peer)
                ));
            }
            if let Some(topics) = self.queue.peer_topics(peer) {
                for cid in &topics.pending {
                    if !state.ledger.contains(cid) && !state.answer_only.contains(cid) {
                        return Err(format!("{peer}: pending task {cid} answers nothing"));
                    }
                }
            }
        }
        for peer in self.queue.peers() {
            if !self.peers.contains(peer) {
                return Err(format!("{peer}: tasks of a peer not connected"));
            }
        }
        if self.lookups.in_flight() > self.config.max_lookups_in_flight() {
            return Err("too many lookups in flight".into());
        }
        if self.batches.len() > self.config.max_envelopes_in_flight() {
            return Err("too many batches in flight".into());
        }
        self.windows.check()?;
        Ok(())
    }
}
