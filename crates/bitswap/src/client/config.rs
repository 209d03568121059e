//! [`Config`]: the limits, timeouts and strategy knobs of the client [`Engine`](super::Engine).

use std::time::Duration;

use ipfs_blockstore::{config_getters, config_setters};

use super::peer::Peer;
use crate::message::WantType;

/// Largest wantlist message the client sends, in encoded bytes: 2 MiB, as boxo's message queue.
pub(super) const MAX_WANTLIST_MESSAGE_SIZE: usize = 2 * 1024 * 1024;

/// Settings of the client [`Engine`](super::Engine).
///
/// Build it with [`Config::default`] and the consuming `with_*` setters. Defaults follow boxo's
/// client where it has the same knob; every limit says what it counts and in which unit.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    max_wants: usize,
    max_cids_per_query: usize,
    max_queries: usize,
    max_sessions: usize,
    max_wants_per_peer: usize,
    initial_window_bytes: u64,
    max_broadcast_peers: usize,
    max_providers_per_want: usize,
    max_message_size: usize,
    min_dont_have_timeout: Duration,
    initial_dont_have_timeout: Duration,
    max_dont_have_timeout: Duration,
    latency_multiplier: u32,
    resend_interval: Duration,
    provider_search_delay: Duration,
    provider_search_interval: Duration,
    max_provider_searches: usize,
    dial_interval: Duration,
    query_timeout: Option<Duration>,
    no_peer_timeout: Option<Duration>,
    penalty_duration: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_wants: 16 * 1024,
            max_cids_per_query: 8 * 1024,
            max_queries: 4096,
            max_sessions: 1024,
            max_wants_per_peer: 1024,
            initial_window_bytes: 8 * 1024 * 1024,
            max_broadcast_peers: 8,
            max_providers_per_want: 16,
            max_message_size: MAX_WANTLIST_MESSAGE_SIZE,
            min_dont_have_timeout: Duration::from_millis(100),
            initial_dont_have_timeout: Duration::from_secs(2),
            max_dont_have_timeout: Duration::from_secs(7),
            latency_multiplier: 3,
            resend_interval: Duration::from_secs(30),
            provider_search_delay: Duration::from_secs(1),
            provider_search_interval: Duration::from_secs(10),
            max_provider_searches: 16,
            dial_interval: Duration::from_secs(10),
            query_timeout: None,
            no_peer_timeout: Some(Duration::from_secs(30)),
            penalty_duration: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// The default configuration; the same as [`Config::default`].
    pub fn new() -> Self {
        Self::default()
    }

    config_setters! {
        /// Sets how many distinct CIDs may be wanted at once over all queries (at least 1). A
        /// [`get`](super::Engine::get) that would go beyond it is refused with
        /// [`QueryError::TooManyWants`](super::QueryError::TooManyWants). Default: 16384 CIDs.
        with_max_wants(cids: usize) -> max_wants = cids.max(1);

        /// Sets how many CIDs one query may ask for (at least 1); a larger
        /// [`get`](super::Engine::get) is refused with
        /// [`QueryError::TooManyCids`](super::QueryError::TooManyCids). Default: 8192 CIDs.
        with_max_cids_per_query(cids: usize) -> max_cids_per_query = cids.max(1);

        /// Sets how many queries may be live at once (at least 1); beyond it
        /// [`get`](super::Engine::get) is refused with
        /// [`QueryError::TooManyQueries`](super::QueryError::TooManyQueries). Default: 4096
        /// queries.
        with_max_queries(queries: usize) -> max_queries = queries.max(1);

        /// Sets how many sessions are remembered (at least 1). Opening one more forgets the
        /// least recently used session that has no live query (what it learnt about peers is
        /// lost; a later [`get`](super::Engine::get) with it starts afresh). Default: 1024.
        with_max_sessions(sessions: usize) -> max_sessions = sessions.max(1);

        /// Sets how many wants (want-have and want-block) one peer is sent and not yet answered
        /// with a block or cancelled, at least 1. A peer at the limit is not asked for more until
        /// some complete. Default: 1024, the number of wants boxo and this crate's server keep per
        /// peer (wants beyond a server's limit would be dropped by it).
        with_max_wants_per_peer(wants: usize) -> max_wants_per_peer = wants.max(1);

        /// Sets how much a peer is asked for at once before its delivery rate and round trip
        /// are measured, in bytes of want-blocks (counted in its average block size, or in
        /// 256 KiB blocks before it delivered any). Once measured, a peer is sent as many
        /// want-blocks as cover twice its bandwidth-delay product (rate × smallest
        /// want-to-answer time), so that a far or fast peer stays busy while a slow one is not
        /// handed blocks that others would deliver sooner; wants beyond every peer's window wait
        /// in the client and go to the first peer with room. Never fewer than 2 or more than
        /// [`with_max_wants_per_peer`](Self::with_max_wants_per_peer) wants. Default: 8 MiB,
        /// twice the bandwidth-delay product of a 20 MB/s link with a 200 ms round trip (each
        /// 256 KiB block takes two round trips there: it is just over a new yamux stream's
        /// window). A peer slower than that delivers its first window late, and wants waiting
        /// in the client go to the peers that measured faster meanwhile.
        with_initial_window_bytes(bytes: u64) -> initial_window_bytes;

        /// Sets how many peers are sent a want-have when a CID starts being wanted, the peer asked
        /// for the block included, at least 1. Peers that delivered blocks to the want's session
        /// come first, then peers that delivered anything, then the others. Peers connecting later
        /// are asked too while fewer than this many were asked. Default: 8 peers.
        with_max_broadcast_peers(peers: usize) -> max_broadcast_peers = peers.max(1);

        /// Sets how many providers are remembered per wanted CID (further ones given to
        /// [`add_providers`](super::Engine::add_providers) are ignored). Default: 16 peers, as
        /// boxo's provider query manager.
        with_max_providers_per_want(peers: usize) -> max_providers_per_want;

        /// Sets the largest wantlist message sent, in encoded bytes, clamped to `1 KiB..=2 MiB`:
        /// wantlist updates are split into several [`Action::Send`](super::Action::Send)s beyond
        /// it. The size is estimated from above. Default: 2 MiB.
        with_max_message_size(bytes: usize) -> max_message_size =
            bytes.clamp(1024, MAX_WANTLIST_MESSAGE_SIZE);

        /// Sets the floor of the simulated DONT_HAVE timeout. A want is treated as answered
        /// DONT_HAVE when its peer has answered nothing (no block, no presence) since it was sent,
        /// or since the peer last answered anything, for `floor + multiplier × round trip + the
        /// transfer time of the want-blocks of ours it holds (at least 4 average blocks)` (round
        /// trip: the smallest time measured from a want to the start of its answer; transfer
        /// time: at the peer's measured delivery rate; blocks written on several streams at
        /// once arrive whole together, after all their bytes), at most
        /// [`with_max_dont_have_timeout`](Self::with_max_dont_have_timeout). So a peer that keeps
        /// delivering keeps every want it holds alive, however long its queue, and silence is
        /// measured on the peer's own scale. The floor keeps loopback peers, whose round trip is
        /// microseconds, from timing out while they read a block (boxo#959 broke at 2.5 ms).
        /// Until the peer's delivery rate is measured, its want-blocks (and its other wants
        /// while want-blocks of ours are in flight there) get
        /// [`with_initial_dont_have_timeout`](Self::with_initial_dont_have_timeout) instead.
        /// Default: 100 ms.
        with_min_dont_have_timeout(floor: Duration) -> min_dont_have_timeout;

        /// Sets the simulated DONT_HAVE timeout of a peer whose latency was never measured, and
        /// of its want-blocks while its delivery rate is not (a round trip measured on small
        /// answers does not foresee a large block on a slow link). Default: 2 s (boxo: 2 s plus
        /// a multiple of the ping time).
        with_initial_dont_have_timeout(timeout: Duration) -> initial_dont_have_timeout;

        /// Sets the ceiling of the simulated DONT_HAVE timeout. Default: 7 s, as boxo.
        with_max_dont_have_timeout(timeout: Duration) -> max_dont_have_timeout;

        /// Sets the multiple of a peer's round trip (its smallest measured time from a want to
        /// the start of its answer) added to the floor of its simulated DONT_HAVE timeout; see
        /// [`with_min_dont_have_timeout`](Self::with_min_dont_have_timeout). Default: 3.
        with_latency_multiplier(multiplier: u32) -> latency_multiplier;

        /// Sets how long a want that went unanswered (a simulated DONT_HAVE) waits before it is
        /// sent again to the same peer, in case the message or its answer was lost; counted, like
        /// the timeout, from the peer's last answer of anything, so a peer still delivering is not
        /// asked twice. A want-block that moved to another peer is cancelled instead, and never
        /// sent again. Default: 30 s, as boxo.
        with_resend_interval(interval: Duration) -> resend_interval =
            interval.max(Duration::from_millis(1));

        /// Sets how long a want may go without any peer saying HAVE before
        /// [`Action::FindProviders`](super::Action::FindProviders) is emitted for it.
        /// Default: 1 s, boxo's `ProviderSearchDelay`.
        with_provider_search_delay(delay: Duration) -> provider_search_delay;

        /// Sets the shortest time between two
        /// [`Action::FindProviders`](super::Action::FindProviders) for the same CID. Default:
        /// 10 s (kad lookups take seconds; boxo's provider queries time out after 10 s).
        with_provider_search_interval(interval: Duration) -> provider_search_interval =
            interval.max(Duration::from_millis(1));

        /// Sets how many [`Action::FindProviders`](super::Action::FindProviders) may be emitted
        /// within one [`provider_search_interval`](Self::with_provider_search_interval), over all
        /// CIDs (at least 1). Wants over the budget are searched for at their next search
        /// deadline. It keeps a large DAG fetch with no peer from starting thousands of DHT
        /// lookups. Default: 16.
        with_max_provider_searches(searches: usize) -> max_provider_searches = searches.max(1);

        /// Sets the shortest time between two [`Action::Dial`](super::Action::Dial) for the same
        /// peer. Default: 10 s.
        with_dial_interval(interval: Duration) -> dial_interval;

        /// Sets how long a query may stay unfinished before it fails with
        /// [`QueryError::TimedOut`](super::QueryError::TimedOut); `None` keeps it until it finishes
        /// or is cancelled. Default: `None`: any fixed total would fail large fetches on slow
        /// links, and a query left without peers fails after
        /// [`with_no_peer_timeout`](Self::with_no_peer_timeout) anyway. A query whose peers are
        /// connected but lack its blocks waits for providers meanwhile, as in boxo; set this to
        /// bound that wait.
        with_query_timeout(timeout: Option<Duration>) -> query_timeout;

        /// Sets how long a query may go with no peer connected and no provider of its blocks
        /// found ([`add_providers`](super::Engine::add_providers) with a new peer starts the wait
        /// again, so that its dial has time) before it fails with
        /// [`QueryError::NoPeers`](super::QueryError::NoPeers), which carries the last connection
        /// error seen during the query. The wait starts when the query starts without peers or
        /// when the last peer disconnects, and ends when a peer connects. `None` keeps such a
        /// query until a peer comes. Default: 30 s.
        with_no_peer_timeout(timeout: Option<Duration>) -> no_peer_timeout;

        /// Sets how long a peer whose score fell too low (unwanted blocks, broken promises,
        /// silence, [`handle_peer_misbehaved`](super::Engine::handle_peer_misbehaved)) is asked
        /// for nothing new. Default: 60 s.
        with_penalty_duration(duration: Duration) -> penalty_duration;
    }

    config_getters! {
        /// Distinct CIDs wanted at once.
        max_wants: usize;

        /// CIDs per query.
        max_cids_per_query: usize;

        /// Live queries.
        max_queries: usize;

        /// Sessions remembered.
        max_sessions: usize;

        /// Wants outstanding per peer.
        max_wants_per_peer: usize;

        /// Bytes of want-blocks in flight at a peer before its rate is measured.
        initial_window_bytes: u64;

        /// Peers asked when a CID starts being wanted.
        max_broadcast_peers: usize;

        /// Providers remembered per wanted CID.
        max_providers_per_want: usize;

        /// Largest wantlist message, in encoded bytes.
        max_message_size: usize;

        /// Floor of the simulated DONT_HAVE timeout.
        min_dont_have_timeout: Duration;

        /// Simulated DONT_HAVE timeout before any latency is measured.
        initial_dont_have_timeout: Duration;

        /// Ceiling of the simulated DONT_HAVE timeout.
        max_dont_have_timeout: Duration;

        /// Multiple of the measured latency in the simulated DONT_HAVE timeout.
        latency_multiplier: u32;

        /// Time before an unanswered want is sent again.
        resend_interval: Duration;

        /// Time without HAVE before the first provider search.
        provider_search_delay: Duration;

        /// Shortest time between two provider searches for one CID.
        provider_search_interval: Duration;

        /// Provider searches per search interval, over all CIDs.
        max_provider_searches: usize;

        /// Shortest time between two dials of one peer.
        dial_interval: Duration;

        /// Time after which an unfinished query fails, if any.
        query_timeout: Option<Duration>;

        /// Time a query may go without peers or providers, if bounded.
        no_peer_timeout: Option<Duration>;

        /// Time a peer with a bad score is left out.
        penalty_duration: Duration;
    }

    /// How long `peer` may stay silent, with the want-blocks of ours it holds, before a want
    /// of `want_type` it holds is a simulated DONT_HAVE.
    pub(super) fn silence_timeout(&self, peer: &Peer, want_type: WantType) -> Duration {
        peer.link.silence_timeout(
            want_type,
            peer.blocks_in_flight(),
            self.min_dont_have_timeout,
            self.latency_multiplier,
            self.initial_dont_have_timeout,
            self.max_dont_have_timeout,
        )
    }
}
