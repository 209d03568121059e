//! Accounting: per-peer numbers through the API ([`PeerAccounting`]), counters over the whole
//! engine ([`Stats`]), and the events that engine-wide metrics count ([`Tally`]), written
//! through a [`Meter`]: prometheus-client metrics with the `metrics` cargo feature
//! (`metrics/prometheus.rs`), nothing without it (`metrics/quiet.rs`).

#[cfg(feature = "metrics")]
mod prometheus;
#[cfg(not(feature = "metrics"))]
mod quiet;

#[cfg(feature = "metrics")]
pub(super) use prometheus::Meter;
#[cfg(feature = "metrics")]
pub use prometheus::Metrics;
#[cfg(not(feature = "metrics"))]
pub(super) use quiet::Meter;

/// What one connected peer exchanged with the server since it connected. Forgotten when it
/// disconnects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerAccounting {
    /// Messages received from the peer.
    pub messages_received: u64,
    /// Blocks received from the peer (carried by its messages).
    pub blocks_received: u64,
    /// Bytes of block data received from the peer.
    pub bytes_received: u64,
    /// Envelopes reported sent to the peer.
    pub messages_sent: u64,
    /// Envelopes reported failed.
    pub messages_failed: u64,
    /// Blocks sent to the peer (in envelopes reported sent).
    pub blocks_sent: u64,
    /// Bytes of block data sent to the peer.
    pub bytes_sent: u64,
    /// HAVEs sent to the peer.
    pub haves_sent: u64,
    /// DONT_HAVEs sent to the peer.
    pub dont_haves_sent: u64,
}

/// Counters over the whole [`Engine`](super::Engine), read with
/// [`Engine::stats`](super::Engine::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Connected peers.
    pub peers: usize,
    /// Wants kept over all peers.
    pub wants: usize,
    /// Tasks waiting in the queue.
    pub pending_tasks: usize,
    /// Their work, in bytes.
    pub pending_bytes: u64,
    /// Tasks popped and not yet reported sent or failed.
    pub active_tasks: usize,
    /// Their work, in bytes.
    pub active_bytes: u64,
    /// Lookups handed out and not yet answered.
    pub lookups_in_flight: usize,
    /// Batches in flight: popped, their envelopes not all reported (or stalled), those of
    /// grown windows not counted once handed out.
    pub envelopes_in_flight: usize,
    /// Envelopes handed out and not yet reported sent or failed.
    pub envelopes_out: usize,
    /// The sum of all peers' windows (the outstanding bytes each may have), in bytes.
    pub window_bytes: u64,
}

/// A counter of the metrics bumped by one event.
#[derive(Debug, Clone, Copy)]
pub(super) enum Tally {
    WantReceived,
    CancelReceived,
    WantIgnored,
    WantDenied,
    WantRefused,
    WantEvicted,
    Lookup,
}
