//! Deadlines of the client engine, kept in one ordered map. Every deadline belongs to exactly
//! one piece of state (a want sent to a peer, a want, a query), which stores its key and
//! removes it when it goes away, so the map never holds more deadlines than there is state.

use std::{collections::BTreeMap, time::Instant};

use cid::Cid;
use libp2p::PeerId;

use super::id::QueryId;

/// What happens when a deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Timer {
    /// `peer` has not answered its want for `cid` in time: simulated DONT_HAVE.
    Answer { peer: PeerId, cid: Cid },
    /// `peer`'s want for `cid` is still unanswered: send it again.
    Resend { peer: PeerId, cid: Cid },
    /// Check whether `cid` needs a provider search or a new peer.
    Search { cid: Cid },
    /// `query` has taken too long.
    Query { query: QueryId },
    /// `query` has had no peer to ask for too long.
    NoPeers { query: QueryId },
}

/// Identifies one deadline; ordered by time, then by creation.
pub(super) type TimerKey = (Instant, u64);

/// The pending deadlines.
#[derive(Debug, Default)]
pub(super) struct Timers {
    map: BTreeMap<TimerKey, Timer>,
    next: u64,
}

impl Timers {
    /// Adds a deadline at `at`.
    pub(super) fn insert(&mut self, at: Instant, timer: Timer) -> TimerKey {
        self.next += 1;
        let key = (at, self.next);
        self.map.insert(key, timer);
        key
    }

    /// Removes a deadline (nothing if it already fired).
    pub(super) fn remove(&mut self, key: Option<TimerKey>) {
        if let Some(key) = key {
            self.map.remove(&key);
        }
    }

    /// The earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.map.first_key_value().map(|((at, _), _)| *at)
    }

    /// Removes and returns the earliest deadline if it is at or before `now`.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<(TimerKey, Timer)> {
        let entry = self.map.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let key = *entry.key();
        Some((key, entry.remove()))
    }

    /// Number of deadlines.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// Every deadline, earliest first.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&TimerKey, &Timer)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deadlines_pop_in_order_and_removed_ones_never_fire() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        let cid = Cid::default();
        let late = timers.insert(t0 + Duration::from_secs(2), Timer::Search { cid });
        let early = timers.insert(t0 + Duration::from_secs(1), Timer::Search { cid });
        let gone = timers.insert(t0, Timer::Search { cid });
        timers.remove(Some(gone));
        assert_eq!(timers.next_deadline(), Some(early.0));
        assert!(timers.pop_due(t0).is_none());
        assert_eq!(timers.pop_due(late.0).map(|(k, _)| k), Some(early));
        assert_eq!(timers.pop_due(late.0).map(|(k, _)| k), Some(late));
        assert_eq!(timers.len(), 0);
    }
}
