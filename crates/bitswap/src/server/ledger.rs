//! One peer's wants, with the order in which they give way when the ledger is full.

use std::{cmp::Reverse, collections::BTreeSet};

use cid::Cid;

use crate::hash::Map;
use crate::message::WantType;

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

/// A want as the ledger keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Want {
    /// Higher first.
    pub(super) priority: i32,
    /// Block or presence.
    pub(super) want_type: WantType,
    /// DONT_HAVE asked for.
    pub(super) send_dont_have: bool,
    /// Unique per (re)want in the engine: a lookup result for an older sequence is stale.
    pub(super) seq: u64,
    /// Where it stands.
    pub(super) state: WantState,
}

/// Eviction rank, smallest first: wants for missing blocks, then lowest priority, then newest.
type Rank = (bool, i32, Reverse<u64>, Cid);

fn rank(cid: Cid, want: &Want) -> Rank {
    (
        want.state != WantState::Missing,
        want.priority,
        Reverse(want.seq),
        cid,
    )
}

/// One peer's wants by CID, plus their eviction order.
#[derive(Debug, Default)]
pub(super) struct Ledger {
    wants: Map<Cid, Want>,
    order: BTreeSet<Rank>,
}

impl Ledger {
    pub(super) fn len(&self) -> usize {
        self.wants.len()
    }

    pub(super) fn get(&self, cid: &Cid) -> Option<&Want> {
        self.wants.get(cid)
    }

    pub(super) fn contains(&self, cid: &Cid) -> bool {
        self.wants.contains_key(cid)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Cid, &Want)> {
        self.wants.iter()
    }

    /// Inserts or replaces the want for `cid`; returns the old one.
    pub(super) fn insert(&mut self, cid: Cid, want: Want) -> Option<Want> {
        let old = self.wants.insert(cid, want);
        if let Some(old) = &old {
            self.order.remove(&rank(cid, old));
        }
        self.order.insert(rank(cid, &want));
        old
    }

    pub(super) fn remove(&mut self, cid: &Cid) -> Option<Want> {
        let want = self.wants.remove(cid)?;
        self.order.remove(&rank(*cid, &want));
        Some(want)
    }

    /// Moves the want to `state`; false if there is no such want.
    pub(super) fn set_state(&mut self, cid: &Cid, state: WantState) -> bool {
        let Some(want) = self.wants.get_mut(cid) else {
            return false;
        };
        if want.state != state {
            self.order.remove(&rank(*cid, want));
            want.state = state;
            self.order.insert(rank(*cid, want));
        }
        true
    }

    /// The want that gives way first when the ledger is full.
    pub(super) fn victim(&self) -> Option<(Cid, Want)> {
        let &(_, _, _, cid) = self.order.first()?;
        Some((cid, self.wants[&cid]))
    }

    /// Removes every want.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = (Cid, Want)> + '_ {
        self.order.clear();
        self.wants.drain()
    }

    /// Checks that the order set matches the map.
    pub(super) fn check(&self) -> Result<(), String> {
        if self.order.len() != self.wants.len() {
            return Err("ledger order and wants differ in size".into());
        }
        for (cid, want) in &self.wants {
            if !self.order.contains(&rank(*cid, want)) {
                return Err(format!("want {cid} missing from the ledger order"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use multihash_codetable::{Code, MultihashDigest};

    use super::*;

    fn cid(i: u8) -> Cid {
        Cid::new_v1(0x55, Code::Sha2_256.digest(&[i]))
    }

    fn want(priority: i32, seq: u64, state: WantState) -> Want {
        Want {
            priority,
            want_type: WantType::Block,
            send_dont_have: true,
            seq,
            state,
        }
    }

    #[test]
    fn missing_wants_give_way_first_then_lowest_priority_then_newest() {
        let mut ledger = Ledger::default();
        ledger.insert(cid(1), want(1, 1, WantState::Found));
        ledger.insert(cid(2), want(5, 2, WantState::Found));
        ledger.insert(cid(3), want(1, 3, WantState::Found));
        assert_eq!(ledger.victim().expect("wants").0, cid(3));
        ledger.set_state(&cid(2), WantState::Missing);
        assert_eq!(ledger.victim().expect("wants").0, cid(2));
        ledger.remove(&cid(2));
        ledger.remove(&cid(3));
        assert_eq!(ledger.victim().expect("wants").0, cid(1));
        ledger.check().expect("consistent");
    }
}
