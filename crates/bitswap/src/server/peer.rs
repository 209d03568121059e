//! The connected peers ([`Peers`]): each one's state ([`PeerState`]: its ledger of wants,
//! its probe queue, its envelopes out, its accounting), and the index of who wants which
//! multihash.

use std::{
    collections::{HashSet, VecDeque},
    hash::BuildHasher,
};

use cid::Cid;
use hashbrown::HashTable;
use libp2p::PeerId;

use super::{
    ledger::{Encoded, Ledger, Request, Want, WantState, multihash_bytes},
    metrics::PeerAccounting,
};
use crate::{
    map::{Map, Set},
    protocol::Version,
};

/// A connected peer.
#[derive(Debug)]
pub(super) struct PeerState {
    /// Its index in `Peers::peer_ids`, which `Peers::wanted` refers to.
    pub(super) index: u32,
    pub(super) version: Version,
    /// Distinguishes this connection period from earlier ones of the same peer.
    pub(super) session: u64,
    pub(super) ledger: Ledger,
    /// CIDs with a pending DONT_HAVE task that answers a want the ledger does not keep.
    /// Disjoint from the ledger; at most `max_wants_per_peer`.
    pub(super) answer_only: Set<Cid>,
    /// CIDs of answer-only DONT_HAVEs popped into a batch and not yet handed out; a cancel
    /// (or a new want) takes the CID out, and the batch then skips it.
    pub(super) answer_only_popped: Set<Cid>,
    /// Ledger slots whose wants wait for a probe; entries for slots no longer waiting are
    /// skipped.
    pub(super) probe_queue: VecDeque<u32>,
    /// Wants in `Probing { queued: true }`.
    pub(super) probes_queued: usize,
    /// Whether the peer is in the lookup round-robin.
    pub(super) in_round: bool,
    /// Entries of its current message taken in so far (against
    /// `max_entries_per_message`), for messages handled in parts.
    pub(super) taken: usize,
    /// Its envelopes lost in a row, none sent between them (see
    /// [`Engine::handle_envelope_lost`](super::Engine::handle_envelope_lost)).
    pub(super) lost_in_a_row: u32,
    /// Its envelopes handed out and not yet reported; at
    /// [`Config::max_envelopes_per_peer`](super::Config::max_envelopes_per_peer) it is paused
    /// in the queue.
    pub(super) envelopes_out: usize,
    pub(super) accounting: PeerAccounting,
}

impl PeerState {
    fn new(index: u32, version: Version, session: u64) -> Self {
        Self {
            index,
            version,
            session,
            ledger: Ledger::default(),
            answer_only: Set::default(),
            answer_only_popped: Set::default(),
            probe_queue: VecDeque::new(),
            probes_queued: 0,
            in_round: false,
            taken: 0,
            lost_in_a_row: 0,
            envelopes_out: 0,
            accounting: PeerAccounting::default(),
        }
    }

    /// Moves a want to `state`, keeping the probe count; false if there is no such want.
    pub(super) fn set_state(&mut self, cid: &Cid, state: WantState) -> bool {
        let Some(slot) = self.ledger.find(cid) else {
            return false;
        };
        self.set_state_at(slot, state);
        true
    }

    /// Moves the want in a live ledger slot to `state`, keeping the probe count.
    pub(super) fn set_state_at(&mut self, slot: u32, state: WantState) {
        let old = self.ledger.want_at(slot).state;
        debug_assert!(state != QUEUED || old == QUEUED, "use request_probe");
        self.ledger.set_state_at(slot, state);
        if old == QUEUED && state != QUEUED {
            self.probes_queued -= 1;
            // Wants dropped or answered while queued leave stale entries behind.
            self.compact_probes();
        }
    }

    /// Drops stale and repeated entries of the probe queue once they outnumber the live ones
    /// (so it stays within `2 * probes_queued + 16` entries), and frees its capacity when it
    /// empties.
    fn compact_probes(&mut self) {
        if self.probe_queue.len() > 2 * self.probes_queued + 16 {
            let mut seen = HashSet::new();
            let ledger = &self.ledger;
            self.probe_queue.retain(|&slot| {
                ledger.live_want_at(slot).is_some_and(|w| w.state == QUEUED) && seen.insert(slot)
            });
        }
        if self.probe_queue.is_empty() && self.probe_queue.capacity() > 64 {
            self.probe_queue = VecDeque::new();
        }
    }

    /// Records a want: a new request of the kept want in `existing` ([`Ledger::renew`]), or a
    /// new want for `cid` ([`Ledger::insert_new`]); returns its slot. If that renumbered the
    /// wants, those with a probe in flight are probed again (the results in flight carry
    /// numbers that no longer match and will be dropped).
    fn insert_want(&mut self, existing: Option<u32>, cid: &Cid, request: Request) -> u32 {
        let slot = match existing {
            Some(slot) => {
                self.ledger.renew(slot, request);
                slot
            }
            None => self.ledger.insert_new(cid, request),
        };
        if self.ledger.take_renumbered() {
            let in_flight: Vec<u32> = self
                .ledger
                .slots()
                .filter(|&s| self.ledger.want_at(s).state == WantState::Probing { queued: false })
                .collect();
            for s in in_flight {
                self.request_probe(s);
            }
        }
        slot
    }

    /// Puts the want in a live ledger slot in the probe queue unless it is there already.
    /// Returns true if the peer must join the lookup round-robin.
    pub(super) fn request_probe(&mut self, slot: u32) -> bool {
        if self.ledger.want_at(slot).state == QUEUED {
            return false;
        }
        self.ledger.set_state_at(slot, QUEUED);
        self.probes_queued += 1;
        self.probe_queue.push_back(slot);
        self.compact_probes();
        !std::mem::replace(&mut self.in_round, true)
    }
}

/// A want waiting in its peer's probe queue.
pub(super) const QUEUED: WantState = WantState::Probing { queued: true };

/// The connected peers, and who wants each multihash (the store keys blocks by multihash):
/// every want of every ledger is indexed once in `wanted`, as (peer index, ledger slot), by
/// the hash of its multihash, and nothing else is.
pub(super) struct Peers {
    peers: Map<PeerId, PeerState>,
    /// Connected peers by [`PeerState::index`].
    peer_ids: Vec<Option<PeerId>>,
    /// Free indices of `peer_ids`.
    free_indices: Vec<u32>,
    wanted: HashTable<(u32, u32)>,
    /// Hashes multihashes for `wanted`.
    hasher: foldhash::fast::RandomState,
    total_wants: usize,
    /// Source of peer sessions; only grows.
    next_session: u64,
}

impl Default for Peers {
    fn default() -> Self {
        Self {
            peers: Map::default(),
            peer_ids: Vec::new(),
            free_indices: Vec::new(),
            wanted: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            total_wants: 0,
            next_session: 0,
        }
    }
}

impl Peers {
    pub(super) fn get(&self, peer: &PeerId) -> Option<&PeerState> {
        self.peers.get(peer)
    }

    pub(super) fn get_mut(&mut self, peer: &PeerId) -> Option<&mut PeerState> {
        self.peers.get_mut(peer)
    }

    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&PeerId, &PeerState)> {
        self.peers.iter()
    }

    pub(super) fn ids(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    pub(super) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Wants kept over all peers.
    pub(super) fn total_wants(&self) -> usize {
        self.total_wants
    }

    /// A new peer with `version`, in a new session; false (and nothing changes) if it is
    /// connected already.
    pub(super) fn connect(&mut self, peer: PeerId, version: Version) -> bool {
        if self.peers.contains_key(&peer) {
            return false;
        }
        self.next_session += 1;
        let session = self.next_session;
        let index = match self.free_indices.pop() {
            Some(index) => {
                self.peer_ids[index as usize] = Some(peer);
                index
            }
            None => {
                self.peer_ids.push(Some(peer));
                u32::try_from(self.peer_ids.len() - 1).expect("under 2^32 peers")
            }
        };
        self.peers
            .insert(peer, PeerState::new(index, version, session));
        true
    }

    /// The peer left: its wants leave the index; returns its state.
    pub(super) fn disconnect(&mut self, peer: &PeerId) -> Option<PeerState> {
        let state = self.peers.remove(peer)?;
        for slot in state.ledger.slots() {
            let hash = self.multihash_hash(state.ledger.cid_bytes_at(slot));
            self.unindex(state.index, slot, hash);
        }
        self.peer_ids[state.index as usize] = None;
        self.free_indices.push(state.index);
        Some(state)
    }

    /// Records a want of `peer` ([`PeerState::insert_want`]), indexing it if it is new;
    /// returns its slot, or `None` if the peer is not connected.
    pub(super) fn insert_want(
        &mut self,
        peer: &PeerId,
        existing: Option<u32>,
        cid: &Cid,
        request: Request,
    ) -> Option<u32> {
        let state = self.peers.get_mut(peer)?;
        let slot = state.insert_want(existing, cid, request);
        if existing.is_none() {
            let hash = self
                .hasher
                .hash_one(multihash_bytes(state.ledger.cid_bytes_at(slot)));
            let index = state.index;
            self.index_want(index, slot, hash);
        }
        Some(slot)
    }

    /// Removes the want of `peer` for `cid` from its ledger and the index; returns it.
    pub(super) fn remove_want(&mut self, peer: &PeerId, cid: &Cid) -> Option<Want> {
        let state = self.peers.get_mut(peer)?;
        let slot = state.ledger.find(cid)?;
        state.set_state_at(slot, WantState::Found);
        let hash = self
            .hasher
            .hash_one(multihash_bytes(state.ledger.cid_bytes_at(slot)));
        let index = state.index;
        let want = state.ledger.remove_at(slot);
        self.unindex(index, slot, hash);
        Some(want)
    }

    /// Hash of the multihash of a binary CID, for `wanted`.
    fn multihash_hash(&self, cid: &[u8]) -> u64 {
        self.hasher.hash_one(multihash_bytes(cid))
    }

    /// Adds a want (peer index, ledger slot, hash of its multihash) to `wanted`.
    fn index_want(&mut self, index: u32, slot: u32, hash: u64) {
        let (peers, ids, hasher) = (&self.peers, &self.peer_ids, &self.hasher);
        self.wanted.insert_unique(hash, (index, slot), |&(p, s)| {
            indexed_hash(peers, ids, hasher, p, s)
        });
        self.total_wants += 1;
    }

    /// Takes a want out of `wanted`.
    fn unindex(&mut self, index: u32, slot: u32, hash: u64) {
        self.total_wants -= 1;
        if let Ok(entry) = self.wanted.find_entry(hash, |&e| e == (index, slot)) {
            entry.remove();
        }
    }

    /// Returns memory of `wanted` once most of it is unused (after many peers left). Only
    /// between inputs: resizing rehashes every entry through its peer's ledger.
    pub(super) fn shrink_index(&mut self) {
        let len = self.wanted.len();
        if self.wanted.capacity() > 4 * len + 1024 {
            let (peers, ids, hasher) = (&self.peers, &self.peer_ids, &self.hasher);
            self.wanted
                .shrink_to(2 * len, |&(p, s)| indexed_hash(peers, ids, hasher, p, s));
        }
        if self.peer_ids.len() > 64 && self.free_indices.len() > self.peer_ids.len() / 2 {
            // Trailing free indices can go.
            while self.peer_ids.last().is_some_and(Option::is_none) {
                self.peer_ids.pop();
            }
            let end = self.peer_ids.len() as u32;
            self.free_indices.retain(|&i| i < end);
            self.peer_ids.shrink_to_fit();
            self.free_indices.shrink_to_fit();
        }
    }

    /// The peers (with the slot) that want a block with the multihash of `cid`.
    pub(super) fn wanters(&self, cid: &Cid) -> Vec<(PeerId, u32)> {
        let encoded = Encoded::new(cid);
        let multihash = multihash_bytes(encoded.as_slice());
        let hash = self.hasher.hash_one(multihash);
        self.wanted
            .iter_hash(hash)
            .filter_map(|&(index, slot)| {
                let peer = self.peer_ids[index as usize]?;
                let ledger = &self.peers.get(&peer)?.ledger;
                (multihash_bytes(ledger.cid_bytes_at(slot)) == multihash).then_some((peer, slot))
            })
            .collect()
    }

    /// Checks every peer's ledger, probe queue and place in the index, within `cap` wants
    /// per peer.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn check(&self, cap: usize) -> Result<(), String> {
        let mut wants = 0;
        for (peer, state) in &self.peers {
            state.ledger.check()?;
            wants += state.ledger.len();
            if state.ledger.len() > cap || state.answer_only.len() > cap {
                return Err(format!("{peer}: ledger or answer-only set over {cap}"));
            }
            let queued = state
                .ledger
                .iter()
                .filter(|(_, w)| w.state == QUEUED)
                .count();
            if queued != state.probes_queued || state.probe_queue.len() > 2 * queued + 17 {
                return Err(format!(
                    "{peer}: probe queue out of step ({queued} queued, counter {}, queue {})",
                    state.probes_queued,
                    state.probe_queue.len()
                ));
            }
            if self.peer_ids.get(state.index as usize) != Some(&Some(*peer)) {
                return Err(format!("{peer}: peer index {} out of step", state.index));
            }
            for slot in state.ledger.slots() {
                let cid = state.ledger.cid_at(slot);
                if state.answer_only.contains(&cid) || state.answer_only_popped.contains(&cid) {
                    return Err(format!("{peer}: {cid} both wanted and answer-only"));
                }
                let hash = self.multihash_hash(state.ledger.cid_bytes_at(slot));
                if self
                    .wanted
                    .find(hash, |&e| e == (state.index, slot))
                    .is_none()
                    || !self.wanters(&cid).contains(&(*peer, slot))
                {
                    return Err(format!("{peer}: {cid} not indexed"));
                }
            }
        }
        let indexed = self.wanted.len();
        if wants != self.total_wants || indexed != wants {
            return Err(format!(
                "{wants} wants, {} counted, {indexed} indexed",
                self.total_wants
            ));
        }
        Ok(())
    }
}

/// Hash of the multihash wanted in slot `slot` of the peer with index `index`, for resizing
/// `wanted` (every entry names a connected peer and a live slot).
fn indexed_hash(
    peers: &Map<PeerId, PeerState>,
    ids: &[Option<PeerId>],
    hasher: &foldhash::fast::RandomState,
    index: u32,
    slot: u32,
) -> u64 {
    let state = ids[index as usize]
        .and_then(|peer| peers.get(&peer))
        .expect("wanted names connected peers");
    hasher.hash_one(multihash_bytes(state.ledger.cid_bytes_at(slot)))
}
