//! [`Outbox`]: the client's wantlist updates that wait for room towards a peer, merged into
//! one update per peer.
//!
//! A peer that reads slowly (kubo reads one message at a time and answers a directory of tiny
//! files with a stream per block) lets the updates of a quick walk pile up faster than they
//! are written. Instead of queueing each update as a message of its own, or dropping those
//! beyond the queue's bound (whose wants the peer then never sees, and the client asks again
//! only after its resend interval), updates wait here and are merged: an entry replaces the
//! earlier one for the same block, as the peer would apply them in order. What waits for one
//! peer is bounded by the blocks the client asks for, and by [`Outbox::new`]'s `max_entries`.
//!
//! Sans-IO: the behaviour says when a peer has room ([`Outbox::take`]).

use cid::Cid;
use libp2p::PeerId;

use crate::{
    map::Map,
    message::{Entry, Message, Wantlist},
};

/// Wantlist updates waiting, one merged update per peer.
#[derive(Debug)]
pub(crate) struct Outbox {
    waiting: Map<PeerId, Waiting>,
    max_entries: usize,
}

/// One peer's merged update: its entries, and where each block's entry is.
#[derive(Debug, Default)]
struct Waiting {
    wantlist: Wantlist,
    index: Map<Cid, usize>,
}

impl Outbox {
    /// An empty outbox whose update for one peer holds at most `max_entries` entries.
    pub(crate) fn new(max_entries: usize) -> Self {
        Self {
            waiting: Map::default(),
            max_entries: max_entries.max(1),
        }
    }

    /// Whether an update waits for `peer` (then later ones must wait behind it).
    pub(crate) fn is_waiting(&self, peer: &PeerId) -> bool {
        self.waiting.contains_key(peer)
    }

    /// Merges `message`'s wantlist into what waits for `peer`, after it. Gives the message
    /// back, unmerged, if the merged update would hold more than the outbox's bound.
    pub(crate) fn hold(&mut self, peer: PeerId, message: Message) -> Result<(), Message> {
        let entries = &message.wantlist.entries;
        let after = match self.waiting.get(&peer) {
            Some(waiting) if !message.wantlist.full => {
                let new = entries
                    .iter()
                    .filter(|e| !waiting.index.contains_key(&e.cid));
                waiting.wantlist.entries.len() + new.count()
            }
            _ => entries.len(),
        };
        if after > self.max_entries {
            return Err(message);
        }
        debug_assert!(message.blocks.is_empty() && message.presences.is_empty());
        self.waiting
            .entry(peer)
            .or_default()
            .merge(message.wantlist);
        Ok(())
    }

    /// The update waiting for `peer`, which has room now.
    pub(crate) fn take(&mut self, peer: &PeerId) -> Option<Message> {
        let waiting = self.waiting.remove(peer)?;
        Some(Message {
            wantlist: waiting.wantlist,
            ..Message::default()
        })
    }

    /// Drops what waits for a peer that disconnected: the client asks again on its own.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.waiting.remove(peer);
    }
}

impl Waiting {
    /// Applies `later` on top: a full wantlist replaces everything; an entry replaces the
    /// earlier one for its block; in a full wantlist a cancel removes the block's entry.
    fn merge(&mut self, later: Wantlist) {
        if later.full {
            self.wantlist = Wantlist {
                entries: Vec::with_capacity(later.entries.len()),
                full: true,
            };
            self.index.clear();
        }
        for entry in later.entries {
            self.put(entry);
        }
    }

    fn put(&mut self, entry: Entry) {
        let entries = &mut self.wantlist.entries;
        match self.index.get(&entry.cid) {
            Some(&at) if entry.cancel && self.wantlist.full => {
                entries.swap_remove(at);
                self.index.remove(&entry.cid);
                if let Some(moved) = entries.get(at) {
                    self.index.insert(moved.cid, at);
                }
            }
            Some(&at) => entries[at] = entry,
            None if entry.cancel && self.wantlist.full => {}
            None => {
                self.index.insert(entry.cid, entries.len());
                entries.push(entry);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ipfs_blockstore::testing::raw_block;

    use super::*;
    use crate::message::WantType;

    fn cid(n: u64) -> Cid {
        *raw_block(n, 8).cid()
    }

    fn update(entries: Vec<Entry>) -> Message {
        Message::wantlist_update(entries)
    }

    /// Holds an update of `entries` for `peer`; the outbox must accept it.
    fn hold(outbox: &mut Outbox, peer: PeerId, entries: Vec<Entry>) {
        outbox.hold(peer, update(entries)).unwrap();
    }

    #[test]
    fn later_entries_replace_earlier_ones_for_the_same_block() {
        let peer = PeerId::random();
        let mut outbox = Outbox::new(100);
        assert!(!outbox.is_waiting(&peer));
        hold(
            &mut outbox,
            peer,
            vec![Entry::want_have(cid(1), 1), Entry::want_block(cid(2), 1)],
        );
        hold(
            &mut outbox,
            peer,
            vec![Entry::want_block(cid(1), 2), Entry::cancel(cid(2))],
        );
        hold(&mut outbox, peer, vec![Entry::want_have(cid(3), 1)]);
        assert!(outbox.is_waiting(&peer));

        let merged = outbox.take(&peer).unwrap();
        assert!(!merged.wantlist.full);
        let entries = merged.wantlist.entries;
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0].cid, cid(1));
        assert_eq!(entries[0].want_type, WantType::Block);
        assert_eq!(entries[0].priority, 2);
        assert!(entries[1].cancel && entries[1].cid == cid(2));
        assert_eq!(entries[2].cid, cid(3));
        assert!(!outbox.is_waiting(&peer));
        assert!(outbox.take(&peer).is_none());
    }

    #[test]
    fn a_full_wantlist_replaces_what_waits_and_absorbs_cancels() {
        let peer = PeerId::random();
        let mut outbox = Outbox::new(100);
        hold(&mut outbox, peer, vec![Entry::want_have(cid(1), 1)]);
        let mut full = update(vec![
            Entry::want_block(cid(2), 1),
            Entry::want_block(cid(3), 1),
        ]);
        full.wantlist.full = true;
        outbox.hold(peer, full).unwrap();
        hold(
            &mut outbox,
            peer,
            vec![Entry::cancel(cid(2)), Entry::cancel(cid(4))],
        );

        let merged = outbox.take(&peer).unwrap();
        assert!(merged.wantlist.full);
        let cids: Vec<_> = merged.wantlist.entries.iter().map(|e| e.cid).collect();
        assert_eq!(cids, vec![cid(3)]);
    }

    #[test]
    fn an_update_past_the_bound_is_given_back_and_what_waits_is_kept() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut outbox = Outbox::new(3);
        hold(
            &mut outbox,
            peer,
            vec![Entry::want_have(cid(1), 1), Entry::want_have(cid(2), 1)],
        );
        // Replacing an entry adds none.
        hold(&mut outbox, peer, vec![Entry::want_block(cid(1), 1)]);
        let refused = update(vec![
            Entry::want_have(cid(3), 1),
            Entry::want_have(cid(4), 1),
        ]);
        assert_eq!(outbox.hold(peer, refused.clone()), Err(refused.clone()));
        // A peer with nothing waiting is not left waiting by a refusal.
        let big = update((10..14).map(|n| Entry::want_have(cid(n), 1)).collect());
        assert!(outbox.hold(other, big).is_err());
        assert!(!outbox.is_waiting(&other));

        assert_eq!(outbox.take(&peer).unwrap().wantlist.entries.len(), 2);
        outbox.hold(peer, refused).unwrap();
        outbox.forget(&peer);
        assert!(!outbox.is_waiting(&peer));
    }
}
