//! [`Flow`]: what an input changes across the engine's parts. A want is received
//! (`flow/inputs.rs`), probed through a lookup and queued as a task (`flow/store.rs`), popped
//! into a batch, packed into envelopes and reported (`flow/envelope.rs`). This file has the
//! peers' inputs and what every step ends with: a peer is paused in the queue exactly when it
//! is at its envelope limit or has its window's worth of work outstanding, and ready batches
//! always have something to send.

mod envelope;
mod inputs;
mod store;

use libp2p::PeerId;

use super::{
    Config,
    batch::Batches,
    lookup::Lookups,
    merger::Queue,
    metrics::{Meter, Stats},
    peer::{PeerState, Peers},
    window::Windows,
};
use crate::protocol::Version;

/// The engine's parts, borrowed for one input: the steps of a want move between them, and
/// each step keeps them in step (a peer's pause in the queue with its envelopes out and its
/// window, a batch's slots with the queue's active tasks and the peer's wants, a lookup with
/// the want or batch slot it reads for). The configuration and the metrics are read only.
/// Only `Engine::flow` builds one, from its own parts.
pub(super) struct Flow<'a> {
    pub(super) config: &'a Config,
    pub(super) queue: &'a mut Queue,
    pub(super) peers: &'a mut Peers,
    pub(super) lookups: &'a mut Lookups,
    pub(super) batches: &'a mut Batches,
    pub(super) windows: &'a mut Windows<PeerId>,
    pub(super) metrics: &'a Meter,
}

impl Flow<'_> {
    /// A peer connected, or a connected one's version is known again.
    pub(super) fn peer_connected(&mut self, peer: PeerId, version: Version) {
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

    /// The version of a connected peer changed.
    pub(super) fn peer_version(&mut self, peer: PeerId, version: Version) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.version = version;
            self.settle();
        }
    }

    /// The peer left: everything of it goes but its envelopes handed out.
    pub(super) fn peer_disconnected(&mut self, peer: &PeerId) {
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

    /// Pauses or resumes `peer` in the queue as [`should_pause`] says, and tells its window
    /// when it is held back with work queued. Run after anything that changes its envelopes
    /// out, its active work or its window.
    fn update_pause(&mut self, peer: &PeerId) {
        let Some(state) = self.peers.get(peer) else {
            return;
        };
        let Some(stats) = self.queue.peer_stats(peer) else {
            return;
        };
        let paused = should_pause(self.config, self.queue, self.windows, peer, state);
        if paused && stats.pending_tasks > 0 {
            self.windows.limited(peer);
        }
        if self.queue.is_peer_paused(peer) != paused {
            self.queue.set_peer_paused(peer, paused);
        }
    }

    /// Sets the metrics' gauges from the parts; run at the end of every input.
    pub(super) fn refresh_gauges(&self) {
        self.metrics.refresh(|| {
            stats(
                self.queue,
                self.peers,
                self.lookups,
                self.batches,
                self.windows,
            )
        });
    }
}

/// How many envelopes `peer` may have handed out and not reported:
/// [`Config::max_envelopes_per_peer`], times its window over the floor.
fn envelope_limit(config: &Config, windows: &Windows<PeerId>, peer: &PeerId) -> usize {
    let base = config.max_envelopes_per_peer();
    let scale = windows.limit(peer) / windows.floor().max(1);
    base.saturating_mul(usize::try_from(scale.max(1)).unwrap_or(usize::MAX))
}

/// Whether `peer` must be paused in the queue: at its envelope limit, or with its window's
/// worth of work outstanding.
pub(super) fn should_pause(
    config: &Config,
    queue: &Queue,
    windows: &Windows<PeerId>,
    peer: &PeerId,
    state: &PeerState,
) -> bool {
    let active = queue.peer_stats(peer).map_or(0, |s| s.active_work);
    state.envelopes_out >= envelope_limit(config, windows, peer) || active >= windows.limit(peer)
}

/// Counters over the whole engine, from its parts.
pub(super) fn stats(
    queue: &Queue,
    peers: &Peers,
    lookups: &Lookups,
    batches: &Batches,
    windows: &Windows<PeerId>,
) -> Stats {
    let queue = queue.stats();
    Stats {
        peers: peers.len(),
        wants: peers.total_wants(),
        pending_tasks: queue.pending_tasks,
        pending_bytes: queue.pending_work,
        active_tasks: queue.active_tasks,
        active_bytes: queue.active_work,
        lookups_in_flight: lookups.in_flight(),
        envelopes_in_flight: batches.len(),
        envelopes_out: batches.envelopes_out(),
        window_bytes: windows.total(),
    }
}
