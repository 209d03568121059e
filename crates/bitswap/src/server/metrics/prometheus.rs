//! The server engine's prometheus-client metrics and the [`Meter`] that writes them. Metrics
//! carry no peer label, so their cardinality does not grow with the number of peers.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use super::{Stats, Tally};

/// The server engine's prometheus-client metrics, registered under the `bitswap_server`
/// prefix of the registry given to [`Metrics::new`]. Clones share the same values.
///
/// Counters are totals over all peers; gauges are refreshed after every engine call.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    messages_received: Counter,
    blocks_received: Counter,
    bytes_received: Counter,
    wants_received: Counter,
    cancels_received: Counter,
    wants_ignored: Counter,
    wants_denied: Counter,
    wants_refused: Counter,
    wants_evicted: Counter,
    messages_sent: Counter,
    messages_failed: Counter,
    blocks_sent: Counter,
    bytes_sent: Counter,
    haves_sent: Counter,
    dont_haves_sent: Counter,
    lookups: Counter,
    peers: Gauge,
    wants: Gauge,
    pending_tasks: Gauge,
    pending_bytes: Gauge,
    active_bytes: Gauge,
    envelopes_in_flight: Gauge,
    lookups_in_flight: Gauge,
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
fn gauge_value(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// The engine's metrics, if it was given any. Only this type writes them, so counters only
/// grow and every gauge is set from one [`Stats`] at a time.
#[derive(Debug, Default)]
pub(in crate::server) struct Meter {
    metrics: Option<Metrics>,
}

impl Meter {
    pub(in crate::server) fn new(metrics: Option<Metrics>) -> Self {
        Self { metrics }
    }

    /// Counts one event.
    pub(in crate::server) fn count(&self, tally: Tally) {
        let Some(m) = &self.metrics else {
            return;
        };
        let counter = match tally {
            Tally::WantReceived => &m.wants_received,
            Tally::CancelReceived => &m.cancels_received,
            Tally::WantIgnored => &m.wants_ignored,
            Tally::WantDenied => &m.wants_denied,
            Tally::WantRefused => &m.wants_refused,
            Tally::WantEvicted => &m.wants_evicted,
            Tally::Lookup => &m.lookups,
        };
        counter.inc();
    }

    /// A message carrying `blocks` blocks of `bytes` bytes of data was received.
    pub(in crate::server) fn received(&self, blocks: u64, bytes: u64) {
        if let Some(m) = &self.metrics {
            m.messages_received.inc();
            m.blocks_received.inc_by(blocks);
            m.bytes_received.inc_by(bytes);
        }
    }

    /// An envelope was reported sent with these answers.
    pub(in crate::server) fn sent(&self, blocks: u64, bytes: u64, haves: u64, dont_haves: u64) {
        if let Some(m) = &self.metrics {
            m.messages_sent.inc();
            m.blocks_sent.inc_by(blocks);
            m.bytes_sent.inc_by(bytes);
            m.haves_sent.inc_by(haves);
            m.dont_haves_sent.inc_by(dont_haves);
        }
    }

    /// An envelope was reported failed or lost.
    pub(in crate::server) fn failed(&self) {
        if let Some(m) = &self.metrics {
            m.messages_failed.inc();
        }
    }

    /// Sets the gauges from the engine's counters, taken only if there are metrics.
    pub(in crate::server) fn refresh(&self, stats: impl FnOnce() -> Stats) {
        let Some(m) = &self.metrics else {
            return;
        };
        let stats = stats();
        m.peers.set(gauge_value(stats.peers));
        m.wants.set(gauge_value(stats.wants));
        m.pending_tasks.set(gauge_value(stats.pending_tasks));
        m.pending_bytes.set(gauge_value(stats.pending_bytes));
        m.active_bytes.set(gauge_value(stats.active_bytes));
        m.envelopes_in_flight
            .set(gauge_value(stats.envelopes_in_flight));
        m.lookups_in_flight
            .set(gauge_value(stats.lookups_in_flight));
    }
}
