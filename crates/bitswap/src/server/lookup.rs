//! Blockstore lookups ([`Lookup`]): what the engine asks of the store, and [`Lookups`], the
//! ones waiting and in flight. The engine hands them out and takes their answers in
//! `store.rs`.

use std::collections::VecDeque;

use cid::Cid;
use ipfs_blockstore::Block;
use libp2p::PeerId;

use crate::map::Map;

id_type!(
    /// Identifies a [`Lookup`] until it is answered. Unique within one
    /// [`Engine`](super::Engine).
    LookupId,
    "lookup"
);

/// What a [`Lookup`] asks of the blockstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LookupKind {
    /// Whether the block is stored ([`Blockstore::has`](crate::Blockstore::has)); answer with
    /// [`LookupResult::Has`]. Asked for want-haves when
    /// [`Config::want_have_replace_size`](super::Config::want_have_replace_size) is 0.
    Has,
    /// The block's size ([`Blockstore::get_size`](crate::Blockstore::get_size)); answer with
    /// [`LookupResult::Size`]. Asked for every other want.
    Size,
    /// The block itself ([`Blockstore::get`](crate::Blockstore::get)); answer with
    /// [`LookupResult::Block`]. Asked while an envelope is built.
    Get,
}

/// A blockstore read the engine needs, from
/// [`Engine::poll_lookup`](super::Engine::poll_lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "every lookup must be answered with Engine::handle_lookup"]
pub struct Lookup {
    /// Hand it back to [`Engine::handle_lookup`](super::Engine::handle_lookup).
    pub id: LookupId,
    /// The block.
    pub cid: Cid,
    /// What to read.
    pub kind: LookupKind,
}

/// The answer to a [`Lookup`], for [`Engine::handle_lookup`](super::Engine::handle_lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    /// For [`LookupKind::Has`]: whether the block is stored.
    Has(bool),
    /// For [`LookupKind::Size`]: the block's size in bytes, or `None` if it is not stored.
    Size(Option<usize>),
    /// For [`LookupKind::Get`]: the block, or `None` if it is not stored.
    Block(Option<Block>),
    /// The store failed; the block is treated as missing.
    Failed,
}

/// Lookups waiting and in flight: ids are never reused, and every lookup handed out is in
/// flight until answered.
#[derive(Debug, Default)]
pub(super) struct Lookups {
    next_id: u64,
    in_flight: Map<LookupId, Pending>,
    /// Block reads of batches being built: (batch, slot), oldest first.
    gets: VecDeque<(u64, usize)>,
    /// Peers with queued probes, in service order.
    round: VecDeque<PeerId>,
}

/// What an unanswered lookup was for.
#[derive(Debug)]
pub(super) enum Pending {
    /// A want's probe: its result is used only if the want is still the same.
    Probe {
        peer: PeerId,
        session: u64,
        /// The want's ledger slot.
        slot: u32,
        seq: u32,
    },
    /// A block read for a batch.
    Get { batch: u64, slot: usize },
}

impl Lookups {
    /// Hands out a lookup for `pending`.
    pub(super) fn start(&mut self, pending: Pending) -> LookupId {
        let id = LookupId(self.next_id);
        self.next_id += 1;
        self.in_flight.insert(id, pending);
        id
    }

    /// The lookup `id` was answered: what it was for, or `None` if it was not in flight.
    pub(super) fn finish(&mut self, id: LookupId) -> Option<Pending> {
        self.in_flight.remove(&id)
    }

    /// Lookups handed out and not yet answered.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Queues a block read for slot `slot` of batch `batch`.
    pub(super) fn push_get(&mut self, batch: u64, slot: usize) {
        self.gets.push_back((batch, slot));
    }

    /// The oldest block read queued.
    pub(super) fn pop_get(&mut self) -> Option<(u64, usize)> {
        self.gets.pop_front()
    }

    /// `peer` has probes queued: it takes its turn after the peers already waiting.
    pub(super) fn join_round(&mut self, peer: PeerId) {
        self.round.push_back(peer);
    }

    /// The next peer whose probes are served.
    pub(super) fn next_in_round(&mut self) -> Option<PeerId> {
        self.round.pop_front()
    }

    /// `peer` left: it has no turn any more.
    pub(super) fn leave_round(&mut self, peer: &PeerId) {
        self.round.retain(|p| p != peer);
    }
}
