//! Accounting: per-peer numbers through the API ([`PeerAccounting`]) and engine-wide
//! prometheus-client metrics ([`Metrics`]). Metrics carry no peer label, so their cardinality
//! does not grow with the number of peers.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

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

/// The server engine's prometheus-client metrics, registered under the `bitswap_server`
/// prefix of the registry given to [`Metrics::new`]. Clones share the same values.
///
/// Counters are totals over all peers; gauges are refreshed after every engine call.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub(super) messages_received: Counter,
    pub(super) blocks_received: Counter,
    pub(super) bytes_received: Counter,
    pub(super) wants_received: Counter,
    pub(super) cancels_received: Counter,
    pub(super) wants_ignored: Counter,
    pub(super) wants_denied: Counter,
    pub(super) wants_refused: Counter,
    pub(super) wants_evicted: Counter,
    pub(super) messages_sent: Counter,
    pub(super) messages_failed: Counter,
    pub(super) blocks_sent: Counter,
    pub(super) bytes_sent: Counter,
    pub(super) haves_sent: Counter,
    pub(super) dont_haves_sent: Counter,
    pub(super) lookups: Counter,
    pub(super) peers: Gauge,
    pub(super) wants: Gauge,
    pub(super) pending_tasks: Gauge,
    pub(super) pending_bytes: Gauge,
    pub(super) active_bytes: Gauge,
    pub(super) envelopes_in_flight: Gauge,
    pub(super) lookups_in_flight: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them on `registry` under the `bitswap_server` prefix.
    pub fn new(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let r = registry.sub_registry_with_prefix("bitswap_server");
        let counters = [
            (
                "messages_received",
                "Messages received",
                &metrics.messages_received,
            ),
            (
                "blocks_received",
                "Blocks carried by messages received",
                &metrics.blocks_received,
            ),
            (
                "received_block_bytes",
                "Bytes of block data received",
                &metrics.bytes_received,
            ),
            (
                "wants_received",
                "Want entries received",
                &metrics.wants_received,
            ),
            (
                "cancels_received",
                "Cancel entries received",
                &metrics.cancels_received,
            ),
            (
                "wants_ignored",
                "Wants ignored without an answer (identity CID, CID too long, unservable)",
                &metrics.wants_ignored,
            ),
            (
                "wants_denied",
                "Wants denied by the request filter",
                &metrics.wants_denied,
            ),
            (
                "wants_refused",
                "Wants refused: ledger full or too many in one message",
                &metrics.wants_refused,
            ),
            (
                "wants_evicted",
                "Wants evicted by higher-ranked ones",
                &metrics.wants_evicted,
            ),
            (
                "messages_sent",
                "Envelopes reported sent",
                &metrics.messages_sent,
            ),
            (
                "messages_failed",
                "Envelopes reported failed",
                &metrics.messages_failed,
            ),
            (
                "blocks_sent",
                "Blocks in envelopes reported sent",
                &metrics.blocks_sent,
            ),
            (
                "sent_block_bytes",
                "Bytes of block data sent",
                &metrics.bytes_sent,
            ),
            (
                "haves_sent",
                "HAVEs in envelopes reported sent",
                &metrics.haves_sent,
            ),
            (
                "dont_haves_sent",
                "DONT_HAVEs in envelopes reported sent",
                &metrics.dont_haves_sent,
            ),
            ("lookups", "Blockstore lookups requested", &metrics.lookups),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        let gauges = [
            ("peers", "Connected peers", &metrics.peers),
            ("wants", "Wants kept over all peers", &metrics.wants),
            (
                "pending_tasks",
                "Tasks waiting in the queue",
                &metrics.pending_tasks,
            ),
            (
                "pending_bytes",
                "Work waiting in the queue, in bytes",
                &metrics.pending_bytes,
            ),
            (
                "active_bytes",
                "Work popped and not yet sent, in bytes",
                &metrics.active_bytes,
            ),
            (
                "envelopes_in_flight",
                "Batches being built or sent",
                &metrics.envelopes_in_flight,
            ),
            (
                "lookups_in_flight",
                "Blockstore lookups requested and not yet answered",
                &metrics.lookups_in_flight,
            ),
        ];
        for (name, help, gauge) in gauges {
            r.register(name, help, gauge.clone());
        }
        metrics
    }
}

/// Converts a count to a gauge value, saturating.
pub(super) fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}
