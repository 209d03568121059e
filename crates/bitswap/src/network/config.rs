//! [`Config`]: limits and timeouts of the libp2p shell.

use std::time::Duration;

use ipfs_blockstore::{config_getters, config_setters};

use crate::protocol::Version;

/// Settings of a [`Behaviour`](crate::network::Behaviour) and its connection handlers.
///
/// Build it with [`Config::default`] and the consuming `with_*` setters. Every limit is bounded
/// and per connection or per peer, as each setter says.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Protocol versions advertised and accepted, most preferred first; dialing proposes them in
    /// this order (see [`Config::with_versions`]). Default: all four, [`Version::ALL`].
    versions: Vec<Version>,
    /// Inbound Bitswap streams read at the same time on one connection; more are reset.
    /// Default: 32 streams.
    max_inbound_streams: usize,
    /// Messages accepted by [`Behaviour::send`](crate::network::Behaviour::send) for one peer and not
    /// yet written (or failed). Default: 256 messages.
    max_queued_messages: usize,
    /// Outbound streams written at the same time on one connection. Default: 1 stream.
    max_outbound_streams: usize,
    /// Streams for unordered messages on one connection. Default: 24 streams.
    max_unordered_streams: usize,
    /// Connections set up faster than this send unordered messages in order. Default: 5 ms.
    min_setup_to_spread: Duration,
    /// How long an inbound stream may stay open waiting for its next message. Default: 5 min.
    inbound_idle_timeout: Duration,
    /// How long an outbound stream stays open without a message to write. Default: 5 s.
    outbound_idle_timeout: Duration,
    /// Fixed part of the write timeout of one message. Default: 2 s.
    send_latency: Duration,
    /// Slowest write rate tolerated, in bytes per second. Default: 12 500 B/s (100 kbit/s).
    min_send_rate: u64,
    /// Lower bound of the write timeout of one message. Default: 10 s.
    min_send_timeout: Duration,
    /// Upper bound of the write timeout of one message. Default: 2 min.
    max_send_timeout: Duration,
    /// How long a write may take before its message and those behind it count as stalled.
    /// Default: 250 ms.
    write_stall: Duration,
    /// Keep idle connections to Bitswap peers open. Default: `false`.
    keep_alive: bool,
    /// Wants kept from one inbound message (cancels not counted); the rest are dropped but
    /// as many more that ask for DONT_HAVE. Default: 1024.
    max_wantlist_entries: usize,
    /// Bytes of inbound messages held over all connections: being read, or read and not yet
    /// taken. Default: 32 MiB.
    max_inbound_bytes: usize,
    /// Bytes of `max_inbound_bytes` one connection may hold. Default: 8 MiB.
    max_inbound_bytes_per_connection: usize,
    /// Slowest rate a message body may arrive at, in bytes per second. Default: 12 500 B/s.
    min_inbound_rate: u64,
    /// The window `min_inbound_rate` is measured over. Default: 10 s.
    inbound_rate_window: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            versions: Version::ALL.to_vec(),
            max_inbound_streams: 32,
            max_queued_messages: 256,
            max_outbound_streams: 1,
            max_unordered_streams: 24,
            min_setup_to_spread: Duration::from_millis(5),
            inbound_idle_timeout: Duration::from_secs(5 * 60),
            outbound_idle_timeout: Duration::from_secs(5),
            send_latency: Duration::from_secs(2),
            min_send_rate: 12_500,
            min_send_timeout: Duration::from_secs(10),
            max_send_timeout: Duration::from_secs(2 * 60),
            write_stall: Duration::from_millis(250),
            keep_alive: false,
            max_wantlist_entries: 1024,
            max_inbound_bytes: 32 * 1024 * 1024,
            max_inbound_bytes_per_connection: 8 * 1024 * 1024,
            min_inbound_rate: 12_500,
            inbound_rate_window: Duration::from_secs(10),
        }
    }
}

impl Config {
    /// The default configuration; the same as [`Config::default`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the protocol versions advertised and accepted, most preferred first (duplicates are
    /// ignored). Outbound streams propose them in this order, so the first one the peer also
    /// speaks is used; before the peer's versions are known, a stream proposes the first one
    /// alone, and every one if the peer refuses it. Default: all four, [`Version::ALL`] (1.2.0
    /// first).
    ///
    /// # Panics
    ///
    /// If `versions` is empty.
    pub fn with_versions(mut self, versions: impl IntoIterator<Item = Version>) -> Self {
        let mut unique = Vec::with_capacity(Version::ALL.len());
        for version in versions {
            if !unique.contains(&version) {
                unique.push(version);
            }
        }
        assert!(!unique.is_empty(), "at least one Bitswap version is needed");
        self.versions = unique;
        self
    }

    config_setters! {
        /// Sets how many inbound Bitswap streams one connection reads at the same time (at least
        /// 1). Up to three times as many more wait, unread, for a reader to finish; a stream beyond
        /// those is reset at once and reported as
        /// [`InboundFailure::TooManyStreams`](crate::network::InboundFailure::TooManyStreams). kubo keeps one
        /// long-lived stream for its wantlist and opens one short stream per response; Helia opens
        /// one short stream per message. Default: 32 streams.
        ///
        /// Each stream reads at most one message at a time, so a connection buffers at most this
        /// many partly received messages of up to 4 MiB each.
        with_max_inbound_streams(streams: usize) -> max_inbound_streams = streams.max(1);

        /// Sets how many messages [`Behaviour::send`](crate::network::Behaviour::send) accepts for
        /// one peer before they are written or have failed (at least 1). Beyond it `send` returns
        /// [`SendError::QueueFull`](crate::network::SendError::QueueFull). Default: 256 messages.
        with_max_queued_messages(messages: usize) -> max_queued_messages = messages.max(1);

        /// Sets how many outbound streams one connection writes at the same time (at least 1).
        /// A stream stays open while messages keep coming (see
        /// [`Config::with_outbound_idle_timeout`]); queued messages go to the stream with the
        /// fewest waiting.
        ///
        /// With 1, messages are written one after the other, so the peer gets them in the
        /// order of [`Behaviour::send`](crate::network::Behaviour::send) (a wantlist's cancel never overtakes
        /// its want). More streams let a small message overtake a large one being written, but
        /// messages of different streams may then arrive in any order. Throughput does not need
        /// more: one stream already saturates the CPU on TCP + Noise + Yamux. Default: 1 stream.
        with_max_outbound_streams(streams: usize) -> max_outbound_streams = streams.max(1);

        /// Sets how many streams one connection may have open (or opening) for unordered
        /// messages ([`Behaviour::send_unordered`](crate::network::Behaviour::send_unordered)), at
        /// least 1. They are apart from the [ordered streams](Self::with_max_outbound_streams):
        /// each unordered message goes to an unordered stream with nothing to write, and while
        /// none is free, one more is opened per message waiting, up to this many (several are
        /// negotiated at once). Each stream has its own flow-control window at the peer, so this
        /// many streams can have this many windows of data on the way. That is what keeps a far
        /// peer's link full: yamux windows start at 256 KiB and grow while the reader keeps up,
        /// to 1 MiB on a few streams per connection under [`yamux_config`](crate::yamux_config)
        /// and on 32 under [`capped_yamux_config`](crate::capped_yamux_config), so one stream
        /// carries about 256 KiB to 1 MiB per round trip. The default, 24 streams, is 6 MiB of
        /// windows at first and up to 24 MiB grown, above the bandwidth-delay product of
        /// 40 MB/s at 100 ms or 20 MB/s at 200 ms round trip (a stream carries one message at a
        /// time, and a 256 KiB block does not quite fit a 256 KiB window, so such a stream
        /// carries less than its window per round trip); with the ordered stream it stays under
        /// the 32 inbound streams this crate's handler reads per connection
        /// ([`Config::with_max_inbound_streams`]).
        /// Helia reads up to 1024 at once. The crate's server sends its blocks this way, on
        /// connections set up slower than
        /// [`with_min_setup_to_spread`](Self::with_min_setup_to_spread). Default: 24 streams.
        with_max_unordered_streams(streams: usize) -> max_unordered_streams = streams.max(1);

        /// Sets how long a connection's set-up (from the dial or the accept to the connection
        /// established: the transport's, security's and muxer's handshakes, each a round trip
        /// or more) must take for its unordered messages to be spread over
        /// [unordered streams](Self::with_max_unordered_streams); a connection set up faster
        /// sends them in order, with the others. Its round trip is shorter than its set-up, so
        /// its bandwidth-delay product is small enough for one stream's window, and spreading
        /// only costs CPU: on loopback, where the link is as fast as the CPU, one stream
        /// carries about 15% more than 24. A connection whose set-up was not seen spreads: one
        /// of more than 4096 being set up at once, or under a behaviour that wraps this one
        /// without passing on `handle_pending_inbound_connection` and
        /// `handle_pending_outbound_connection`. `Duration::ZERO` always spreads. Default: 5 ms.
        with_min_setup_to_spread(setup: Duration) -> min_setup_to_spread;

        /// Sets how long an inbound stream may wait for its next message (measured from the end of
        /// the previous message, or from its opening) before it is reset. Default: 5 min.
        ///
        /// kubo sends its whole wantlist on one stream that it keeps open while it lives and
        /// rebroadcasts wants every 30 s, so the timeout must span several of its quiet periods;

        /// when it does fire, kubo reopens a stream on its next message. The timeout only frees
        /// slots of peers that went quiet without closing. An open stream keeps its connection
        /// alive, so this is also how long a quiet kubo peer keeps an idle connection open.
        with_inbound_idle_timeout(timeout: Duration) -> inbound_idle_timeout;

        /// Sets how long an outbound stream stays open with nothing to write before it is closed;

        /// the next message opens a new one. Keeping it open saves a stream negotiation (a round
        /// trip) and Yamux's window growth per message. Helia resets an inbound stream quiet for
        /// 10 s, so keep this below that. Default: 5 s.
        with_outbound_idle_timeout(timeout: Duration) -> outbound_idle_timeout;
    }

    /// Sets the write timeout of one message of `n` bytes:
    /// `latency + n / min_rate` (`min_rate` in bytes per second), clamped to `[min, max]`.
    /// Past it the stream is reset and its unwritten messages fail with
    /// [`SendFailure::Timeout`](crate::network::SendFailure::Timeout). A `min_rate` of 0 means `max`.
    /// Default: as boxo, 2 s + n / 12 500 B/s, clamped to [10 s, 2 min].
    pub fn with_send_timeout(
        mut self,
        latency: Duration,
        min_rate: u64,
        min: Duration,
        max: Duration,
    ) -> Self {
        self.send_latency = latency;
        self.min_send_rate = min_rate;
        self.min_send_timeout = min;
        self.max_send_timeout = max.max(min);
        self
    }

    config_setters! {
        /// Sets how long writing one message may take before it, and every message waiting
        /// behind it on the connection, is reported stalled
        /// ([`Event::MessageStalled`](crate::network::Event::MessageStalled)): the peer reads
        /// slowly or not at all. Such messages are still written (or time out) as usual; a
        /// stalled report lets the user stop counting them against limits shared with other
        /// peers, as [`bitswap::Behaviour`](crate::Behaviour) does with its server's envelopes in
        /// flight. A 256 KiB block takes well under a millisecond on a fast link and about 50 ms
        /// at 5 MB/s. Default: 250 ms.
        with_write_stall(stall: Duration) -> write_stall;

        /// Sets whether connections to peers that speak Bitswap stay open while idle. When `false`,
        /// a connection is kept alive only while a Bitswap stream is open or a message is queued or
        /// being written, and the swarm's idle connection timeout applies otherwise. Default:
        /// `false`.
        with_keep_alive(keep_alive: bool) -> keep_alive;

        /// Sets how many wants are kept from one inbound message (at least 1); cancels are not
        /// counted. Past it, up to as many more wants are kept if they ask for DONT_HAVE, so that
        /// the server answers them (it takes the same number of wants per message and refuses the
        /// rest with a DONT_HAVE) instead of dropping them in silence; later wants, and cancels
        /// past four times this number, are dropped as the message is decoded, before their CIDs
        /// are parsed, and each connection logs it once. So one message keeps at most six times
        /// this many entries (about 112 bytes each): 0.7 MiB by default, whatever its shape. A 4
        /// MiB message can hold about 100,000 entries, and boxo's server too takes 1024 at most.
        /// [`bitswap::Behaviour`](crate::Behaviour) raises it to the server's
        /// [`max_entries_per_message`](crate::server::Config::with_max_entries_per_message) if that
        /// is higher. Default: 1024 wants.
        with_max_wantlist_entries(entries: usize) -> max_wantlist_entries = entries.max(1);

        /// Sets how many bytes of inbound messages the node holds over all its connections: those
        /// being read and those read and not yet taken by the user (the
        /// [`Event::Message`](crate::network::Event::Message) not yet delivered, or with
        /// [`bitswap::Behaviour`](crate::Behaviour), not yet taken in). A stream reads the next
        /// message's body only once its length fits in what is left, so when many peers send at
        /// once, they wait for each other (first come, first served) instead of filling memory.
        /// Counted in wire bytes; a decoded wantlist takes about 2.5 times its wire size. A message
        /// larger than the budget waits for all of it. Besides it, each connection has 64 KiB of
        /// its own, used first, so that a peer's small messages do not wait behind other peers'
        /// large ones. One connection holds at most
        /// [`max_inbound_bytes_per_connection`](Self::with_max_inbound_bytes_per_connection) of
        /// it, and a message takes its room once its body starts to arrive (see
        /// [`with_min_inbound_rate`](Self::with_min_inbound_rate)). Default: 32 MiB.
        with_max_inbound_bytes(bytes: usize) -> max_inbound_bytes = bytes.max(1);

        /// Sets how many bytes of [`max_inbound_bytes`](Self::with_max_inbound_bytes) one
        /// connection may hold (at most that budget): its messages beyond it wait for each other,
        /// so a peer that opens many streams and sends their bodies slowly holds this much at
        /// most, and other connections keep the rest. Each connection's 64 KiB of its own come on
        /// top. Default: 8 MiB, two of the largest messages.
        with_max_inbound_bytes_per_connection(bytes: usize) -> max_inbound_bytes_per_connection =
            bytes.max(1);
    }

    /// Sets the slowest rate, in bytes per second, at which a message body may arrive once
    /// it started, measured over successive windows of `window`: a window that ends short of
    /// `rate x window` bytes (or the rest of the body) resets the stream. A body that stalls
    /// or trickles so holds its room in the inbound budget for one window, not for the idle
    /// timeout. Waiting for room in the budget is not counted. Default: 12 500 B/s (100
    /// kbit/s, the slowest rate at which kubo itself keeps writing) over 10 s windows.
    pub fn with_min_inbound_rate(mut self, rate: u64, window: Duration) -> Self {
        self.min_inbound_rate = rate;
        self.inbound_rate_window = window;
        self
    }

    config_getters! {
        /// Bytes of the inbound budget one connection may hold.
        max_inbound_bytes_per_connection: usize;

        /// Slowest rate a message body may arrive at, in bytes per second.
        min_inbound_rate: u64;

        /// The window the inbound rate is measured over.
        inbound_rate_window: Duration;

        /// Wants kept from one inbound message (besides those kept for a DONT_HAVE, and cancels).
        max_wantlist_entries: usize;

        /// Bytes of inbound messages held over all connections.
        max_inbound_bytes: usize;
    }

    /// The protocol versions advertised and accepted, most preferred first.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    config_getters! {
        /// Inbound streams read at the same time per connection.
        max_inbound_streams: usize;

        /// Messages queued per peer before [`Behaviour::send`](crate::network::Behaviour::send)
        /// refuses more.
        max_queued_messages: usize;

        /// Outbound streams written at the same time per connection.
        max_outbound_streams: usize;

        /// Streams for unordered messages on one connection.
        max_unordered_streams: usize;

        /// How long a connection's set-up must take for its unordered messages to be spread.
        min_setup_to_spread: Duration;

        /// How long an inbound stream may wait for its next message.
        inbound_idle_timeout: Duration;

        /// Whether idle connections to Bitswap peers are kept open.
        keep_alive: bool;

        /// How long a write may take before its message and those behind it count as stalled.
        write_stall: Duration;
    }

    /// The write timeout of one message of `bytes` bytes.
    pub fn send_timeout(&self, bytes: usize) -> Duration {
        let transfer = match self.min_send_rate {
            0 => self.max_send_timeout,
            rate => Duration::from_secs_f64(bytes as f64 / rate as f64),
        };
        self.send_latency
            .saturating_add(transfer)
            .clamp(self.min_send_timeout, self.max_send_timeout)
    }

    config_getters! {
        /// The timeout of closing a stream after its last message.
        /// How long an outbound stream stays open with nothing to write.
        outbound_idle_timeout: Duration;
    }

    pub(crate) fn close_timeout(&self) -> Duration {
        self.min_send_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_timeout_is_clamped() {
        let config = Config::default();
        assert_eq!(config.send_timeout(0), Duration::from_secs(10));
        // 2 s + 1 MB / 12.5 kB/s = 82 s.
        assert_eq!(config.send_timeout(1_000_000), Duration::from_secs(82));
        assert_eq!(config.send_timeout(4 << 20), Duration::from_secs(120));
    }

    #[test]
    fn versions_are_deduplicated_in_order() {
        let config =
            Config::default().with_versions([Version::V1_0_0, Version::V1_2_0, Version::V1_0_0]);
        assert_eq!(config.versions(), [Version::V1_0_0, Version::V1_2_0]);
    }

    #[test]
    #[should_panic(expected = "at least one")]
    fn empty_versions_panic() {
        let _ = Config::default().with_versions([]);
    }
}
