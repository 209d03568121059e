//! The flow's side of the blockstore: `Engine::poll_lookup` hands out reads and
//! `Engine::handle_lookup` takes their answers.
//!
//! Probes (size or presence of a wanted block) wait in one queue per peer and are handed out
//! round-robin between peers, so one large wantlist does not delay a small one. Block reads
//! for envelopes being built go first: their tasks already hold the peer's outstanding bytes.

use cid::Cid;
use ipfs_blockstore::{Block, MAX_BLOCK_SIZE};

use super::Flow;
use crate::{
    message::WantType,
    server::{
        ledger::WantState,
        lookup::{Lookup, LookupId, LookupKind, LookupResult, Pending},
        metrics::Tally,
        peer::QUEUED,
    },
};

impl Flow<'_> {
    pub(in crate::server) fn poll_lookup(&mut self) -> Option<Lookup> {
        let lookup = loop {
            if self.lookups.in_flight() < self.config.max_lookups_in_flight()
                && let Some(lookup) = self.next_get().or_else(|| self.next_probe())
            {
                break Some(lookup);
            }
            if !self.pop_batch() {
                break None;
            }
        };
        if lookup.is_some() {
            self.metrics.count(Tally::Lookup);
        }
        self.refresh_gauges();
        lookup
    }

    fn next_get(&mut self) -> Option<Lookup> {
        while let Some((batch_id, slot)) = self.lookups.pop_get() {
            let Some(batch) = self.batches.get(&batch_id) else {
                continue;
            };
            let cid = batch.slots[slot].task.task.topic;
            let id = self.lookups.start(Pending::Get {
                batch: batch_id,
                slot,
            });
            return Some(Lookup {
                id,
                cid,
                kind: LookupKind::Get,
            });
        }
        None
    }

    fn next_probe(&mut self) -> Option<Lookup> {
        let replace = self.config.want_have_replace_size();
        while let Some(peer) = self.lookups.next_in_round() {
            let Some(state) = self.peers.get_mut(&peer) else {
                continue;
            };
            state.in_round = false;
            while let Some(slot) = state.probe_queue.pop_front() {
                let Some(want) = state.ledger.live_want_at(slot) else {
                    continue;
                };
                if want.state != QUEUED {
                    continue;
                }
                state.set_state_at(slot, WantState::Probing { queued: false });
                let cid = state.ledger.cid_at(slot);
                if !state.probe_queue.is_empty() {
                    state.in_round = true;
                    self.lookups.join_round(peer);
                }
                let kind = if want.want_type == WantType::Have && replace == 0 {
                    LookupKind::Has
                } else {
                    LookupKind::Size
                };
                let id = self.lookups.start(Pending::Probe {
                    peer,
                    session: state.session,
                    slot,
                    seq: want.seq,
                });
                return Some(Lookup { id, cid, kind });
            }
        }
        None
    }

    pub(in crate::server) fn handle_lookup(&mut self, id: LookupId, result: LookupResult) {
        let Some(pending) = self.lookups.finish(id) else {
            return;
        };
        match pending {
            Pending::Probe {
                peer,
                session,
                slot,
                seq,
            } => {
                // Ranks are unique within a peer's session: the slot still holds the want
                // probed if its `seq` is the same.
                let current = self.peers.get(&peer).and_then(|state| {
                    let want = state.ledger.live_want_at(slot)?;
                    (state.session == session
                        && want.seq == seq
                        && want.state == (WantState::Probing { queued: false }))
                    .then_some(())
                });
                if current.is_some() {
                    let found = match result {
                        LookupResult::Size(Some(size)) if size <= MAX_BLOCK_SIZE => {
                            Some(Some(size as u64))
                        }
                        LookupResult::Has(true) => Some(None),
                        LookupResult::Block(Some(block)) => Some(Some(block.data().len() as u64)),
                        _ => None,
                    };
                    self.answer_want(&peer, slot, found);
                }
            }
            Pending::Get { batch, slot } => {
                if let Some(b) = self.batches.get(&batch) {
                    let cid = b.slots[slot].task.task.topic;
                    let block = match result {
                        LookupResult::Block(Some(block)) => same_block(cid, block),
                        _ => None,
                    };
                    let (peer, session) = (b.peer, b.session);
                    let missing = block.is_none();
                    self.batches.fill(batch, slot, block);
                    // Gone since it was probed: the want waits for the block again.
                    if let Some(state) = self.peers.get_mut(&peer)
                        && missing
                        && state.session == session
                    {
                        state.set_state(&cid, WantState::Missing);
                    }
                }
            }
        }
        self.settle();
    }
}

/// The block under the CID asked for: the store keys by multihash, so it may return it under
/// another CID of the same multihash; anything else is treated as missing.
fn same_block(cid: Cid, block: Block) -> Option<Block> {
    if *block.cid() == cid {
        return Some(block);
    }
    if block.cid().hash() != cid.hash() {
        tracing::warn!(%cid, got = %block.cid(), "blockstore returned another block");
        return None;
    }
    let (_, data) = block.into_parts();
    Block::new(cid, data).ok()
}
