//! [`Engine`]: the server's parts, its inputs and outputs, its accessors and invariants. What
//! the inputs change across the parts is the flow's (`flow.rs`).

use std::{ops::Range, time::Instant};

use cid::Cid;
use libp2p::PeerId;
use peer_task_queue::Config as QueueConfig;

use super::{
    Config, Envelope, EnvelopeId, Lookup, LookupId, LookupResult, PeerAccounting,
    batch::Batches,
    flow::{self, Flow},
    lookup::Lookups,
    merger::Queue,
    metrics::{Meter, Stats},
    peer::Peers,
    window::Windows,
};
use crate::{
    message::{Entry, Message},
    protocol::Version,
};

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
    config: Config,
    /// The tasks waiting and popped, per peer, and which peers are paused.
    queue: Queue,
    /// The connected peers, their ledgers, and who wants which multihash.
    peers: Peers,
    /// Lookups waiting and in flight.
    lookups: Lookups,
    /// Batches in flight and the envelopes handed out from them.
    batches: Batches,
    /// Each peer's window: the bytes of work it may have outstanding.
    windows: Windows<PeerId>,
    /// The embedder's metrics, if it gave any.
    metrics: Meter,
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

    /// An engine with `config` that updates `metrics` (see [`Metrics::new`](super::Metrics::new)).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(config: Config, metrics: super::Metrics) -> Self {
        let mut engine = Self::new(config);
        engine.metrics = Meter::new(Some(metrics));
        engine.flow().refresh_gauges();
        engine
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The parts an input changes, borrowed for one step.
    fn flow(&mut self) -> Flow<'_> {
        Flow {
            config: &self.config,
            queue: &mut self.queue,
            peers: &mut self.peers,
            lookups: &mut self.lookups,
            batches: &mut self.batches,
            windows: &mut self.windows,
            metrics: &self.metrics,
        }
    }

    /// A peer connected (its first connection) and speaks `version` (use
    /// [`Version::V1_2_0`] until known). For a peer already connected, only updates the
    /// version.
    pub fn handle_peer_connected(&mut self, peer: PeerId, version: Version) {
        self.flow().peer_connected(peer, version);
    }

    /// The Bitswap version of a connected peer became known or changed. It applies to wants
    /// received from then on and to envelopes built from then on.
    pub fn handle_peer_version(&mut self, peer: PeerId, version: Version) {
        self.flow().peer_version(peer, version);
    }

    /// The peer's last connection closed: its wants, tasks, queued lookups and unsent
    /// envelopes are dropped, and its accounting forgotten. Envelopes already handed out
    /// still count as in flight until reported sent or failed.
    pub fn handle_peer_disconnected(&mut self, peer: &PeerId) {
        self.flow().peer_disconnected(peer);
    }

    /// A message arrived from `peer`: its wantlist updates the peer's ledger (cancels, full
    /// replacement, new wants) and the blocks it carries are counted. Blocks are not stored
    /// here: once the embedder has stored them, [`handle_new_blocks`](Self::handle_new_blocks)
    /// serves the peers that want them.
    pub fn handle_message(&mut self, peer: PeerId, message: &Message) {
        self.handle_message_part(peer, message, 0..message.wantlist.entries.len());
    }

    /// Like [`handle_message`](Self::handle_message), for wantlist entries `entries` of the
    /// message only, so that a large message can be taken in over several turns and other
    /// peers served in between. Call it with consecutive ranges that cover every entry, in
    /// order, the first starting at 0 (which also counts the message, its blocks, and clears
    /// the old wantlist if this one is full), and no other message of the peer in between.
    /// Ranges past the end are cut at it.
    pub fn handle_message_part(&mut self, peer: PeerId, message: &Message, entries: Range<usize>) {
        self.flow().handle_message_part(peer, message, entries);
    }

    /// Blocks were put in the store (CID and size in bytes): every peer that wants one of
    /// them (under any CID of the same multihash) gets it, or a HAVE for a want-have of a
    /// block larger than [`Config::want_have_replace_size`], through its queue.
    pub fn handle_new_blocks<I>(&mut self, blocks: I)
    where
        I: IntoIterator<Item = (Cid, usize)>,
    {
        self.flow().handle_new_blocks(blocks);
    }

    /// The next blockstore lookup to perform, if fewer than
    /// [`Config::max_lookups_in_flight`](super::Config::max_lookups_in_flight) are unanswered.
    /// Answer each with [`handle_lookup`](Self::handle_lookup).
    ///
    /// Block reads of batches being built come first, then probes of new wants. When neither
    /// can be handed out, it pops the next batch of tasks from the queue (while fewer than
    /// [`Config::max_envelopes_in_flight`](super::Config::max_envelopes_in_flight) are in
    /// flight): so the tasks of a whole wantlist are probed before the first envelope is
    /// built, and envelopes are built when there is room for them, as boxo's workers do. A
    /// batch without blocks is ready at once, which is why
    /// [`poll_envelope`](Self::poll_envelope) is drained after this.
    #[must_use = "lookups must be performed and answered"]
    pub fn poll_lookup(&mut self) -> Option<Lookup> {
        self.flow().poll_lookup()
    }

    /// The answer to a lookup from [`poll_lookup`](Self::poll_lookup). Unknown ids (already
    /// answered) are ignored; an answer for a want changed or dropped meanwhile is discarded.
    pub fn handle_lookup(&mut self, id: LookupId, result: LookupResult) {
        self.flow().handle_lookup(id, result);
    }

    /// The next envelope to send, if one is ready. It only hands out batches made ready by
    /// inputs or by [`poll_lookup`](Self::poll_lookup) and never makes lookups ready: drain
    /// `poll_lookup` first, then this.
    #[must_use = "envelopes must be sent and reported"]
    pub fn poll_envelope(&mut self) -> Option<Envelope> {
        self.flow().poll_envelope()
    }

    /// The envelope was written to the peer's stream: its tasks are done, wants answered with
    /// a block (and want-haves answered with HAVE) are forgotten, and the peer's accounting
    /// and the metrics count it. Unknown ids are ignored.
    pub fn handle_envelope_sent(&mut self, id: EnvelopeId) {
        self.flow().handle_envelope_sent(id);
    }

    /// As [`handle_envelope_sent`](Self::handle_envelope_sent), at `now`: the delivery also
    /// measures the peer's rate, from which its window grows (see
    /// [`Config::with_max_outstanding_bytes_per_peer`](super::Config::with_max_outstanding_bytes_per_peer)),
    /// and windows of peers idle for a second go back to the floor. `now` never goes back
    /// from one call to the next (an earlier time is taken as no time elapsed).
    pub fn handle_envelope_sent_at(&mut self, id: EnvelopeId, now: Instant) {
        self.flow().handle_envelope_sent_at(id, now);
    }

    /// The envelope waits behind a full stream: the peer reads slowly or not at all. It stops
    /// counting against [`Config::max_envelopes_in_flight`](super::Config::max_envelopes_in_flight) (otherwise a few peers that do
    /// not read would hold every slot until their write timeouts) and still counts against its
    /// peer's outstanding bytes and [`Config::max_envelopes_per_peer`](super::Config::max_envelopes_per_peer) until it is reported
    /// sent, failed or lost. Unknown ids are ignored.
    pub fn handle_envelope_stalled(&mut self, id: EnvelopeId) {
        self.flow().handle_envelope_stalled(id);
    }

    /// The envelope was not written (refused by the shell, stream or connection failed): its
    /// tasks are done and the wants stay as they are. Unknown ids are ignored.
    pub fn handle_envelope_failed(&mut self, id: EnvelopeId) {
        self.flow().handle_envelope_failed(id);
    }

    /// The envelope was cut on its way (its stream was reset or its write timed out) while
    /// the peer stays connected: as [`handle_envelope_failed`](Self::handle_envelope_failed),
    /// and the wants it answered that are still kept are answered again (probed, then
    /// queued), since a peer does not ask again for what it asked while connected (Helia never
    /// does). After 64 lost envelopes of one peer with none sent between
    /// them, its losses are plain failures until an envelope gets through, so a peer that
    /// resets every stream does not keep the server busy. Answer-only DONT_HAVEs (for wants
    /// not kept) are not sent again. Unknown ids are ignored.
    pub fn handle_envelope_lost(&mut self, id: EnvelopeId) {
        self.flow().handle_envelope_lost(id);
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
        flow::stats(
            &self.queue,
            &self.peers,
            &self.lookups,
            &self.batches,
            &self.windows,
        )
    }

    /// Checks the engine's internal consistency and its bounds, in O(state); returns a
    /// description of the first violation found. For tests (the `testing` feature) and fuzz
    /// targets (`cfg(fuzzing)`).
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.queue.check_invariants()?;
        self.peers.check(self.config.max_wants_per_peer())?;
        for (peer, state) in self.peers.iter() {
            let at_limit =
                flow::should_pause(&self.config, &self.queue, &self.windows, peer, state);
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
