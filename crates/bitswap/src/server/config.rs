//! [`Config`]: the limits and policies of the server [`Engine`](super::Engine).

use std::{fmt, sync::Arc};

use cid::Cid;
use ipfs_blockstore::{config_getters, config_setters};
use libp2p::PeerId;

use crate::protocol::MAX_MESSAGE_SIZE;

/// Decides whether a peer may have a block: `false` answers it as if the block were missing
/// (DONT_HAVE when the peer asked for one). Called once per want received.
pub type RequestFilter = Arc<dyn Fn(&PeerId, &Cid) -> bool + Send + Sync>;

/// Settings of the server [`Engine`](super::Engine).
///
/// Build it with [`Config::default`] and the consuming `with_*` setters. The defaults are
/// boxo's (`bitswap/internal/defaults`, `server/internal/decision/engine.go`) where boxo has
/// the same knob. Every limit is enforced per peer or per engine, as its setter says.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Wants kept per peer, in wants. Default: 1024 (boxo's
    /// `MaxQueuedWantlistEntriesPerPeer`).
    max_wants_per_peer: usize,
    /// Wants taken from one message, in entries (cancels are not counted). Default: 1024.
    max_entries_per_message: usize,
    /// Longest CID accepted in a wantlist, in bytes; 0 = no limit. Default: 168.
    max_cid_size: usize,
    /// Largest block sent in answer to a want-have, in bytes; 0 = never. Default: 1024.
    want_have_replace_size: usize,
    /// Whether DONT_HAVE is ever sent. Default: `true`.
    send_dont_haves: bool,
    /// Work popped per envelope, in bytes. Default: 16 KiB.
    target_message_size: usize,
    /// Bytes popped for one peer and not yet sent, in bytes, where its window starts and
    /// never goes below; 0 = no limit. Default: 1 MiB.
    max_outstanding_bytes_per_peer: u64,
    /// Largest window of one peer, in bytes. Default: 16 MiB.
    max_window_per_peer: u64,
    /// Largest sum of all peers' windows that growth may reach, in bytes. Default: 128 MiB.
    max_outstanding_bytes: u64,
    /// Batches in flight (popped, envelopes not all reported or stalled). Default: 8.
    max_envelopes_in_flight: usize,
    /// Envelopes handed out for one peer and not yet reported. Default: 8.
    max_envelopes_per_peer: usize,
    /// Blockstore lookups requested and not yet answered, in lookups. Default: 256.
    max_lookups_in_flight: usize,
    /// Optional per-peer filter. Default: none (everything allowed).
    request_filter: Option<RequestFilter>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("max_wants_per_peer", &self.max_wants_per_peer)
            .field("max_entries_per_message", &self.max_entries_per_message)
            .field("max_cid_size", &self.max_cid_size)
            .field("want_have_replace_size", &self.want_have_replace_size)
            .field("send_dont_haves", &self.send_dont_haves)
            .field("target_message_size", &self.target_message_size)
            .field(
                "max_outstanding_bytes_per_peer",
                &self.max_outstanding_bytes_per_peer,
            )
            .field("max_window_per_peer", &self.max_window_per_peer)
            .field("max_outstanding_bytes", &self.max_outstanding_bytes)
            .field("max_envelopes_in_flight", &self.max_envelopes_in_flight)
            .field("max_envelopes_per_peer", &self.max_envelopes_per_peer)
            .field("max_lookups_in_flight", &self.max_lookups_in_flight)
            .field("request_filter", &self.request_filter.is_some())
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_wants_per_peer: 1024,
            max_entries_per_message: 1024,
            max_cid_size: 168,
            want_have_replace_size: 1024,
            send_dont_haves: true,
            target_message_size: 16 * 1024,
            max_outstanding_bytes_per_peer: 1 << 20,
            max_window_per_peer: 16 << 20,
            max_outstanding_bytes: 128 << 20,
            max_envelopes_in_flight: 8,
            max_envelopes_per_peer: 8,
            max_lookups_in_flight: 256,
            request_filter: None,
        }
    }
}

impl Config {
    /// The default configuration; the same as [`Config::default`].
    pub fn new() -> Self {
        Self::default()
    }

    config_setters! {
        /// Sets how many wants one peer may have in its ledger (at least 1). A new want beyond it
        /// takes the place of the lowest-ranked want if that one is for a block found missing, or
        /// has a lower priority; otherwise the new want is refused. The want that loses is answered
        /// DONT_HAVE if it asked for one. Default: 1024 wants, as boxo.
        ///
        /// The task queue holds at most twice this many pending tasks per peer (wants, plus
        /// DONT_HAVEs for wants refused), so it never drops a task on its own.
        with_max_wants_per_peer(wants: usize) -> max_wants_per_peer = wants.max(1);

        /// Sets how many wants are taken from one message (at least 1); later wants of the message
        /// are refused (DONT_HAVE if asked, unless the peer already wants that block). Cancels are
        /// always applied. Default: 1024 entries, as boxo.
        with_max_entries_per_message(entries: usize) -> max_entries_per_message = entries.max(1);

        /// Sets the longest CID accepted in a wantlist, in bytes (its binary encoding); longer ones
        /// are ignored without an answer. 0 disables the check. Default: 168 bytes, boxo's
        /// `MaxVarintLen64 * 4 + 128`.
        with_max_cid_size(bytes: usize) -> max_cid_size;

        /// Sets the largest block sent in place of a HAVE: a want-have for a stored block of at
        /// most this many bytes is answered with the block. 0 never replaces (and want-haves are
        /// then probed with [`LookupKind::Has`](super::LookupKind::Has) instead of
        /// [`LookupKind::Size`](super::LookupKind::Size)). Default: 1024 bytes, as boxo.
        with_want_have_replace_size(bytes: usize) -> want_have_replace_size;

        /// Sets whether DONT_HAVE is sent at all (to peers that ask for it and speak 1.2.0).
        /// `false` simulates servers that predate it. Default: `true`.
        with_send_dont_haves(send: bool) -> send_dont_haves;

        /// Sets how much work one envelope takes from the task queue, in bytes (block sizes, and
        /// the encoded size of presences). It is a floor, not a cap: tasks are taken until their
        /// work reaches it, so the last one may overshoot (a 2 MiB block). Envelopes are split so
        /// that none encodes to more than 4 MiB whatever this is. Clamped to `1..=4 MiB`.
        /// Default: 16 KiB, as boxo.
        with_target_message_size(bytes: usize) -> target_message_size =
            bytes.clamp(1, MAX_MESSAGE_SIZE);

        /// Sets how many bytes of work may be taken from the queue for one peer and not yet
        /// reported sent or failed, at first: the floor of the peer's *window*. A peer at its
        /// window is skipped until some of its envelopes complete (one envelope may overshoot it
        /// by one task). 0 disables the limit (and windows). Default: 1 MiB, boxo's
        /// `MaxOutstandingBytesPerPeer`.
        ///
        /// A window grows while the peer reaches it with work still queued and its envelopes
        /// keep being delivered faster as it grows: to twice the peer's delivery rate times
        /// 500 ms, at most fourfold per window's worth delivered, up to
        /// [`with_max_window_per_peer`](Self::with_max_window_per_peer) and while the sum of all
        /// windows stays within [`with_max_outstanding_bytes`](Self::with_max_outstanding_bytes).
        /// It goes back to this floor when the peer had an envelope stall or fail and nothing
        /// delivered for 1 s (it does not read), and after 1 s without work. Growth is measured
        /// only from deliveries reported with their time
        /// ([`Engine::handle_envelope_sent_at`](super::Engine::handle_envelope_sent_at)); with
        /// [`Engine::handle_envelope_sent`](super::Engine::handle_envelope_sent) alone, windows
        /// stay at this floor.
        with_max_outstanding_bytes_per_peer(bytes: u64) -> max_outstanding_bytes_per_peer;

        /// Sets the largest window of one peer, in bytes (see
        /// [`with_max_outstanding_bytes_per_peer`](Self::with_max_outstanding_bytes_per_peer);

        /// raised to that floor if below it). It bounds the memory one peer holds in blocks read
        /// and not yet written, and the rate one peer can reach: a window of 16 MiB fills 40 MB/s
        /// at a 400 ms round trip, or 80 MB/s at 200 ms. Default: 16 MiB (go-yamux's largest
        /// stream window).
        with_max_window_per_peer(bytes: u64) -> max_window_per_peer;

        /// Sets the largest sum of all peers' windows that growth may reach, in bytes: a window
        /// grows only while the sum stays within it, and the floor is granted to every peer
        /// whatever the sum (as before windows grew). It bounds the memory all peers hold beyond
        /// their floors. Default: 128 MiB (eight peers at the largest window).
        with_max_outstanding_bytes(bytes: u64) -> max_outstanding_bytes;

        /// Sets how many batches may be in flight over all peers (at least 1). A batch is the set
        /// of tasks popped for one peer: it counts from the pop, through its block lookups, until
        /// every envelope made from it is reported sent or failed. A batch makes one envelope
        /// unless its blocks would encode to more than 4 MiB. An envelope reported stalled
        /// ([`Engine::handle_envelope_stalled`](super::Engine::handle_envelope_stalled): it waits
        /// behind a full stream) no longer counts, so peers that do not read cannot hold every
        /// slot; it counts against its peer's
        /// [outstanding bytes](Self::with_max_outstanding_bytes_per_peer) and
        /// [envelopes](Self::with_max_envelopes_per_peer) until reported. Likewise an envelope
        /// handed out while its peer's window is above the floor does not count once handed out:
        /// a far peer keeps many envelopes on its way for a round trip, and its window (within
        /// the global cap) paces them, so a far peer does not hold the slots of near ones.
        /// Default: 8 batches, boxo's task worker count.
        with_max_envelopes_in_flight(batches: usize) -> max_envelopes_in_flight = batches.max(1);

        /// Sets how many envelopes of one peer may be handed out and not yet reported sent or
        /// failed (at least 1). A peer at the limit is not popped from the queue: its answers
        /// gather there and go out together in the next envelopes, instead of as many small
        /// messages as the peer's stream is slow, and a peer that does not read holds this many
        /// envelopes at most. The limit grows with the peer's window: it is this many times the
        /// window over its floor (64 at a window of 8 MiB with the defaults). Default: 8, the
        /// envelopes boxo's workers write at once.
        with_max_envelopes_per_peer(envelopes: usize) -> max_envelopes_per_peer = envelopes.max(1);

        /// Sets how many blockstore lookups may be requested and not yet answered (at least 1).
        /// A store answering in a round trip of `t` seconds (a remote store, such as S3) answers
        /// at most this many over `t` lookups a second, and a served block takes two (its size,
        /// then its bytes). Default: 256 lookups: 12,800 lookups a second at 20 ms, 6,400 blocks
        /// or 1.6 GiB/s of 256 KiB blocks, above what one node sends; twice boxo's blockstore
        /// worker count, each lookup costing a future rather than a goroutine's stack.
        with_max_lookups_in_flight(lookups: usize) -> max_lookups_in_flight = lookups.max(1);
    }

    /// Sets a filter called once per want received: `false` answers the want as if the block
    /// were missing (DONT_HAVE if asked) and keeps no want. Default: none.
    pub fn with_request_filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&PeerId, &Cid) -> bool + Send + Sync + 'static,
    {
        self.request_filter = Some(Arc::new(filter));
        self
    }

    config_getters! {
        /// Wants kept per peer.
        max_wants_per_peer: usize;

        /// Wants taken from one message.
        max_entries_per_message: usize;

        /// Longest CID accepted, in bytes; 0 = no limit.
        max_cid_size: usize;

        /// Largest block sent in place of a HAVE, in bytes; 0 = never.
        want_have_replace_size: usize;

        /// Whether DONT_HAVE is ever sent.
        send_dont_haves: bool;

        /// Work taken from the queue per envelope, in bytes.
        target_message_size: usize;

        /// Bytes taken for one peer and not yet sent or failed, at first and at least (the floor
        /// of its window); 0 = no limit.
        max_outstanding_bytes_per_peer: u64;
    }

    /// Largest window of one peer, in bytes.
    pub fn max_window_per_peer(&self) -> u64 {
        self.max_window_per_peer
            .max(self.max_outstanding_bytes_per_peer)
    }

    config_getters! {
        /// Largest sum of all peers' windows that growth may reach, in bytes.
        max_outstanding_bytes: u64;

        /// Batches in flight over all peers.
        max_envelopes_in_flight: usize;

        /// Envelopes handed out for one peer and not yet reported.
        max_envelopes_per_peer: usize;

        /// Blockstore lookups requested and not yet answered.
        max_lookups_in_flight: usize;
    }

    /// The request filter, if any.
    pub fn request_filter(&self) -> Option<&RequestFilter> {
        self.request_filter.as_ref()
    }
}
