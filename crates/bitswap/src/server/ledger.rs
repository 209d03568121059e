//! One peer's wants, kept compactly, with the order in which they give way when it is full.
//!
//! A server holds up to `max_wants_per_peer` wants for every connected peer, so a want must
//! be small: a [`Cid`] value is 96 bytes, a want here about 75 bytes in all. Each want is a
//! record in a slab (the CID in its binary form, inline up to [`INLINE`] bytes), found by CID
//! through a table of slot numbers, and ranked for eviction in a binary heap of slot numbers
//! that knows each record's place (so any want can leave or change rank in O(log n)).

use std::hash::BuildHasher;

use cid::Cid;
use hashbrown::HashTable;

use crate::message::WantType;

/// CIDs up to this many bytes are stored inline: CIDv0 (34) and CIDv1 with a 32-byte digest
/// (36-37) are.
const INLINE: usize = 38;

/// Longest binary CID the `cid` crate can hold: two 9-byte varints, a 9-byte multihash code,
/// its length and a 64-byte digest.
const MAX_CID_BYTES: usize = 96;

/// Ranks are renumbered (oldest first, from 0) when they reach this.
const RANK_LIMIT: u32 = 1 << 31;

/// Where a want stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WantState {
    /// Its blockstore probe is waiting in the peer's lookup queue (`queued`) or in flight.
    Probing {
        /// Not yet handed out by `poll_lookup`.
        queued: bool,
    },
    /// The block was found: a task answers it (pending, being sent, or sent and failed).
    Found,
    /// The block was missing: DONT_HAVE queued or sent if asked; the want waits for the block.
    Missing,
}

/// What a peer asked for in a want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Request {
    /// Higher first.
    pub(super) priority: i32,
    /// Block or presence.
    pub(super) want_type: WantType,
    /// DONT_HAVE asked for.
    pub(super) send_dont_have: bool,
}

/// A want as the ledger keeps it (a copy; change it through the ledger).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Want {
    /// Higher first.
    pub(super) priority: i32,
    /// Block or presence.
    pub(super) want_type: WantType,
    /// DONT_HAVE asked for.
    pub(super) send_dont_have: bool,
    /// Age in the ledger, larger for newer (re)wants: it changes every time the want is
    /// received again, so a lookup result for an earlier request of it is stale. Renumbered
    /// when it runs out (see [`Ledger::take_renumbered`]).
    pub(super) seq: u32,
    /// Where it stands.
    pub(super) state: WantState,
}

/// A CID in binary form; inline when short.
#[derive(Debug, Clone)]
enum CidBytes {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl CidBytes {
    const EMPTY: Self = Self::Inline {
        len: 0,
        bytes: [0; INLINE],
    };

    fn new(encoded: &[u8]) -> Self {
        if encoded.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..encoded.len()].copy_from_slice(encoded);
            Self::Inline {
                len: encoded.len() as u8,
                bytes,
            }
        } else {
            Self::Heap(encoded.into())
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..*len as usize],
            Self::Heap(bytes) => bytes,
        }
    }
}

/// A CID encoded on the stack, to look records up without allocating.
pub(super) struct Encoded {
    len: usize,
    bytes: [u8; MAX_CID_BYTES],
}

impl Encoded {
    pub(super) fn new(cid: &Cid) -> Self {
        let mut bytes = [0; MAX_CID_BYTES];
        let len = cid
            .write_bytes(&mut bytes[..])
            .expect("a CID fits in MAX_CID_BYTES");
        Self { len, bytes }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// The multihash part of a binary CID written by [`Cid::write_bytes`]: all of a CIDv0, the
/// rest of a CIDv1 after its version and codec varints. The blockstore keys blocks by it.
pub(super) fn multihash_bytes(cid: &[u8]) -> &[u8] {
    if cid.len() == 34 && cid[0] == 0x12 && cid[1] == 0x20 {
        return cid;
    }
    let mut rest = cid;
    for _ in 0..2 {
        let end = rest
            .iter()
            .position(|b| b & 0x80 == 0)
            .map_or(rest.len(), |i| i + 1);
        rest = &rest[end..];
    }
    rest
}

fn decode(bytes: &[u8]) -> Cid {
    Cid::try_from(bytes).expect("records hold CIDs written by Cid::write_bytes")
}

#[derive(Debug, Clone)]
struct Record {
    cid: CidBytes,
    priority: i32,
    rank: u32,
    /// Its place in [`Ledger::heap`].
    place: u32,
    want_type: WantType,
    send_dont_have: bool,
    state: WantState,
}

impl Record {
    fn want(&self) -> Want {
        Want {
            priority: self.priority,
            want_type: self.want_type,
            send_dont_have: self.send_dont_have,
            seq: self.rank,
            state: self.state,
        }
    }

    /// Eviction key, smallest first: wants for missing blocks, then lowest priority, then
    /// newest.
    fn key(&self) -> u64 {
        let present = u64::from(self.state != WantState::Missing) << 63;
        let priority = u64::from(self.priority as u32 ^ 0x8000_0000) << 31;
        present | priority | u64::from(RANK_LIMIT - 1 - self.rank)
    }
}

/// One peer's wants by CID, plus their eviction order. Slots (`u32`) name a want until it is
/// removed; a freed slot is reused.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    records: Vec<Record>,
    free: Vec<u32>,
    /// Slots of live records, by the hash of their CID.
    index: HashTable<u32>,
    /// Slots of live records, a min-heap by [`Record::key`].
    heap: Vec<u32>,
    next_rank: u32,
    /// Ranks were renumbered since the last [`take_renumbered`](Self::take_renumbered).
    renumbered: bool,
    hasher: foldhash::fast::RandomState,
}

impl Ledger {
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Makes room for `additional` more wants at once, rather than growing step by step
    /// (each step leaves a freed block behind, which fragments the heap).
    pub(super) fn reserve(&mut self, additional: usize) {
        let additional = additional.saturating_sub(self.free.len());
        self.records.reserve_exact(additional);
        self.heap.reserve_exact(additional);
        let (records, hasher) = (&self.records, &self.hasher);
        self.index.reserve(additional, |&s| {
            hasher.hash_one(records[s as usize].cid.as_slice())
        });
    }

    /// Gives back room that [`reserve`](Self::reserve) took for a message that made fewer
    /// wants than it had entries (repeated CIDs, cancels, ignored entries): what is reserved
    /// and left unused beyond twice the wants kept.
    pub(super) fn trim(&mut self) {
        let sparse = |capacity: usize, len: usize| capacity > 2 * len + 8;
        if sparse(self.records.capacity(), self.records.len()) {
            self.records.shrink_to_fit();
        }
        if sparse(self.heap.capacity(), self.heap.len()) {
            self.heap.shrink_to_fit();
        }
        if sparse(self.index.capacity(), self.index.len()) {
            let (records, hasher) = (&self.records, &self.hasher);
            self.index.shrink_to(self.index.len(), |&s| {
                hasher.hash_one(records[s as usize].cid.as_slice())
            });
        }
    }

    /// The slot of the want for `cid`.
    pub(super) fn find(&self, cid: &Cid) -> Option<u32> {
        let encoded = Encoded::new(cid);
        let bytes = encoded.as_slice();
        let hash = self.hasher.hash_one(bytes);
        self.index
            .find(hash, |&slot| {
                self.records[slot as usize].cid.as_slice() == bytes
            })
            .copied()
    }

    pub(super) fn get(&self, cid: &Cid) -> Option<Want> {
        self.find(cid).map(|slot| self.want_at(slot))
    }

    pub(super) fn contains(&self, cid: &Cid) -> bool {
        self.find(cid).is_some()
    }

    /// The want in a live slot.
    pub(super) fn want_at(&self, slot: u32) -> Want {
        self.records[slot as usize].want()
    }

    /// The want in `slot` if the slot is live (slots kept elsewhere may have been freed).
    pub(super) fn live_want_at(&self, slot: u32) -> Option<Want> {
        let record = self.records.get(slot as usize)?;
        (!record.cid.as_slice().is_empty()).then(|| record.want())
    }

    /// The CID of a live slot.
    pub(super) fn cid_at(&self, slot: u32) -> Cid {
        decode(self.records[slot as usize].cid.as_slice())
    }

    /// The binary CID of a live slot.
    pub(super) fn cid_bytes_at(&self, slot: u32) -> &[u8] {
        self.records[slot as usize].cid.as_slice()
    }

    /// Records `request` for `cid`: a new want (state [`WantState::Found`]) or a new request
    /// of a kept one (its state stays). Either way it gets a new `seq` and becomes the
    /// newest. Returns the slot and the want replaced, if any. The caller keeps the ledger
    /// within its bound, and checks [`take_renumbered`](Self::take_renumbered) after.
    #[cfg(test)]
    pub(super) fn insert(&mut self, cid: &Cid, request: Request) -> (u32, Option<Want>) {
        match self.find(cid) {
            Some(slot) => (slot, Some(self.renew(slot, request))),
            None => (self.insert_new(cid, request), None),
        }
    }

    /// A new request of the kept want in `slot`: it takes the request, a new `seq`, and
    /// becomes the newest; its state stays. Returns the want before.
    pub(super) fn renew(&mut self, slot: u32, request: Request) -> Want {
        let rank = self.take_rank();
        let record = &mut self.records[slot as usize];
        let old = record.want();
        record.priority = request.priority;
        record.want_type = request.want_type;
        record.send_dont_have = request.send_dont_have;
        record.rank = rank;
        let place = record.place;
        self.restore(place);
        old
    }

    /// Adds a want for `cid`, which the ledger must not hold, in state
    /// [`WantState::Found`]; returns its slot.
    pub(super) fn insert_new(&mut self, cid: &Cid, request: Request) -> u32 {
        debug_assert!(self.find(cid).is_none(), "insert_new of a kept want");
        let rank = self.take_rank();
        let encoded = Encoded::new(cid);
        let record = Record {
            cid: CidBytes::new(encoded.as_slice()),
            priority: request.priority,
            rank,
            place: self.heap.len() as u32,
            want_type: request.want_type,
            send_dont_have: request.send_dont_have,
            state: WantState::Found,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.records[slot as usize] = record;
                slot
            }
            None => {
                let slot = u32::try_from(self.records.len()).expect("under 2^32 wants per peer");
                self.records.push(record);
                slot
            }
        };
        self.heap.push(slot);
        self.sift_up(self.heap.len() - 1);
        let (records, hasher) = (&self.records, &self.hasher);
        let hash = hasher.hash_one(encoded.as_slice());
        self.index.insert_unique(hash, slot, |&s| {
            hasher.hash_one(records[s as usize].cid.as_slice())
        });
        slot
    }

    /// Whether ranks (the wants' `seq`) were renumbered since the last call: lookups in
    /// flight then carry stale numbers, and the wants they were for must be probed again.
    pub(super) fn take_renumbered(&mut self) -> bool {
        std::mem::take(&mut self.renumbered)
    }

    /// The next rank; renumbers the kept wants (in their order) when ranks run out.
    fn take_rank(&mut self) -> u32 {
        if self.next_rank == RANK_LIMIT {
            // Keeps every pair's order, so the heap stays valid.
            let mut slots = self.heap.clone();
            slots.sort_by_key(|&s| self.records[s as usize].rank);
            for (rank, slot) in (0..).zip(slots) {
                self.records[slot as usize].rank = rank;
            }
            self.next_rank = self.heap.len() as u32;
            self.renumbered = true;
        }
        self.next_rank += 1;
        self.next_rank - 1
    }

    /// Removes the want in a live slot and returns it.
    pub(super) fn remove_at(&mut self, slot: u32) -> Want {
        let place = self.records[slot as usize].place as usize;
        let last = self.heap.pop().expect("a live slot is in the heap");
        if place < self.heap.len() {
            self.heap[place] = last;
            self.records[last as usize].place = place as u32;
            self.restore(place as u32);
        }
        let record = std::mem::replace(&mut self.records[slot as usize], Record::vacant());
        let hash = self.hasher.hash_one(record.cid.as_slice());
        if let Ok(entry) = self.index.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        if self.heap.is_empty() {
            // Free what a large wantlist left behind. Ranks go on from where they were, so
            // a lookup in flight for a want that left stays stale.
            *self = Self {
                next_rank: self.next_rank,
                renumbered: self.renumbered,
                hasher: self.hasher.clone(),
                ..Self::default()
            };
        } else {
            self.free.push(slot);
        }
        record.want()
    }

    /// Moves the want in a live slot to `state`.
    pub(super) fn set_state_at(&mut self, slot: u32, state: WantState) {
        let record = &mut self.records[slot as usize];
        if record.state != state {
            record.state = state;
            let place = record.place;
            self.restore(place);
        }
    }

    /// The slot of the want that gives way first when the ledger is full.
    pub(super) fn victim(&self) -> Option<u32> {
        self.heap.first().copied()
    }

    /// Live slots, in no particular order.
    pub(super) fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.heap.iter().copied()
    }

    fn key_at(&self, place: usize) -> u64 {
        self.records[self.heap[place] as usize].key()
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.records[self.heap[a] as usize].place = a as u32;
        self.records[self.heap[b] as usize].place = b as u32;
    }

    /// Moves the entry at `place` up or down after its key changed.
    fn restore(&mut self, place: u32) {
        let place = place as usize;
        if place > 0 && self.key_at(place) < self.key_at((place - 1) / 2) {
            self.sift_up(place);
        } else {
            self.sift_down(place);
        }
    }

    fn sift_up(&mut self, mut place: usize) {
        while place > 0 {
            let parent = (place - 1) / 2;
            if self.key_at(place) >= self.key_at(parent) {
                break;
            }
            self.swap(place, parent);
            place = parent;
        }
    }

    fn sift_down(&mut self, mut place: usize) {
        loop {
            let (left, right) = (2 * place + 1, 2 * place + 2);
            let mut least = place;
            if left < self.heap.len() && self.key_at(left) < self.key_at(least) {
                least = left;
            }
            if right < self.heap.len() && self.key_at(right) < self.key_at(least) {
                least = right;
            }
            if least == place {
                return;
            }
            self.swap(place, least);
            place = least;
        }
    }

    /// Every want with its CID, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Cid, Want)> + '_ {
        self.slots().map(|s| (self.cid_at(s), self.want_at(s)))
    }

    /// Checks that the heap, the index and the records agree.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn check(&self) -> Result<(), String> {
        if self.heap.len() != self.index.len()
            || self.heap.len() + self.free.len() != self.records.len()
        {
            return Err(format!(
                "ledger out of step: {} in the heap, {} indexed, {} records, {} free",
                self.heap.len(),
                self.index.len(),
                self.records.len(),
                self.free.len()
            ));
        }
        for (place, &slot) in self.heap.iter().enumerate() {
            let record = &self.records[slot as usize];
            if record.place as usize != place
                || (place > 0 && self.key_at(place) < self.key_at((place - 1) / 2))
                || self.find(&decode(record.cid.as_slice())) != Some(slot)
            {
                return Err(format!("ledger slot {slot} out of step"));
            }
        }
        Ok(())
    }
}

impl Record {
    fn vacant() -> Self {
        Self {
            cid: CidBytes::EMPTY,
            priority: 0,
            rank: 0,
            place: 0,
            want_type: WantType::Block,
            send_dont_have: false,
            state: WantState::Found,
        }
    }
}

#[cfg(test)]
mod tests {
    use multihash_codetable::{Code, MultihashDigest};

    use super::*;

    fn cid(i: u8) -> Cid {
        Cid::new_v1(0x55, Code::Sha2_256.digest(&[i]))
    }

    fn request(priority: i32) -> Request {
        Request {
            priority,
            want_type: WantType::Block,
            send_dont_have: true,
        }
    }

    #[test]
    fn a_record_fits_in_56_bytes() {
        assert!(size_of::<Record>() <= 56, "{}", size_of::<Record>());
    }

    #[test]
    fn room_reserved_for_repeated_entries_is_given_back() {
        let mut ledger = Ledger::default();
        ledger.reserve(1024);
        assert!(ledger.records.capacity() >= 1024);
        ledger.insert(&cid(1), request(1));
        ledger.insert(&cid(1), request(2));
        ledger.trim();
        assert!(
            ledger.records.capacity() < 16,
            "{}",
            ledger.records.capacity()
        );
        assert!(ledger.heap.capacity() < 16, "{}", ledger.heap.capacity());
        assert!(ledger.index.capacity() < 16, "{}", ledger.index.capacity());
        assert_eq!(ledger.get(&cid(1)).map(|w| w.priority), Some(2));
        // Room in use stays.
        ledger.reserve(100);
        for i in 2..102 {
            ledger.insert(&cid(i), request(1));
        }
        let capacity = ledger.records.capacity();
        ledger.trim();
        assert_eq!(ledger.records.capacity(), capacity);
        assert!((1..102).all(|i| ledger.contains(&cid(i))));
    }

    #[test]
    fn missing_wants_give_way_first_then_lowest_priority_then_newest() {
        let mut ledger = Ledger::default();
        ledger.insert(&cid(1), request(1));
        let (two, _) = ledger.insert(&cid(2), request(5));
        let (three, _) = ledger.insert(&cid(3), request(1));
        assert_eq!(ledger.victim(), Some(three));
        ledger.set_state_at(two, WantState::Missing);
        assert_eq!(ledger.victim(), Some(two));
        ledger.remove_at(two);
        ledger.remove_at(three);
        assert_eq!(ledger.cid_at(ledger.victim().expect("a want")), cid(1));
        ledger.check().expect("consistent");
    }

    #[test]
    fn a_new_request_keeps_the_state_and_makes_the_want_newest() {
        let mut ledger = Ledger::default();
        let (one, _) = ledger.insert(&cid(1), request(1));
        ledger.insert(&cid(2), request(1));
        ledger.set_state_at(one, WantState::Missing);
        let first = ledger.want_at(one);
        let (again, old) = ledger.insert(&cid(1), request(1));
        assert_eq!((again, old), (one, Some(first)));
        let want = ledger.want_at(one);
        assert_eq!(want.state, WantState::Missing);
        assert!(want.seq > first.seq);
        ledger.check().expect("consistent");
    }

    #[test]
    fn slots_are_reused_and_an_empty_ledger_frees_its_memory() {
        let mut ledger = Ledger::default();
        let slots: Vec<u32> = (0..10)
            .map(|i| ledger.insert(&cid(i), request(1)).0)
            .collect();
        ledger.remove_at(slots[3]);
        assert_eq!(ledger.live_want_at(slots[3]), None);
        assert_eq!(ledger.insert(&cid(42), request(1)).0, slots[3]);
        for (i, slot) in slots.iter().enumerate() {
            if i != 3 {
                ledger.remove_at(*slot);
            }
        }
        ledger.remove_at(slots[3]);
        assert_eq!(ledger.len(), 0);
        assert_eq!(ledger.records.capacity(), 0);
        ledger.check().expect("consistent");
    }

    #[test]
    fn ranks_are_renumbered_in_order_when_they_run_out() {
        let mut ledger = Ledger::default();
        let (old, _) = ledger.insert(&cid(1), request(1));
        let (new, _) = ledger.insert(&cid(2), request(1));
        ledger.next_rank = RANK_LIMIT;
        let (newest, _) = ledger.insert(&cid(3), request(1));
        assert!(ledger.take_renumbered());
        assert!(!ledger.take_renumbered());
        assert!(ledger.want_at(old).seq < ledger.want_at(new).seq);
        assert!(ledger.want_at(new).seq < ledger.want_at(newest).seq);
        assert_eq!(ledger.victim(), Some(newest));
        ledger.check().expect("consistent");
    }

    #[test]
    fn long_cids_are_kept_on_the_heap_and_multihashes_found_in_both_versions() {
        let mut ledger = Ledger::default();
        let long = Cid::new_v1(0x71, Code::Sha2_512.digest(b"x"));
        let v0 = Cid::new_v0(Code::Sha2_256.digest(b"y")).expect("v0");
        let (slot, _) = ledger.insert(&long, request(1));
        ledger.insert(&v0, request(1));
        assert_eq!(ledger.cid_at(slot), long);
        assert_eq!(ledger.get(&v0).map(|w| w.priority), Some(1));
        let long_bytes = long.to_bytes();
        assert_eq!(multihash_bytes(&long_bytes), long.hash().to_bytes());
        let v0_bytes = v0.to_bytes();
        assert_eq!(multihash_bytes(&v0_bytes), v0.hash().to_bytes());
        let v1 = Cid::new_v1(0x0129, *v0.hash());
        assert_eq!(multihash_bytes(&v1.to_bytes()), v0.hash().to_bytes());
        ledger.check().expect("consistent");
    }
}
