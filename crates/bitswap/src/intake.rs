//! How fast each peer's wantlist entries are taken in: a token bucket per peer.
//!
//! A peer that floods wants makes the node spend a core on them (about a microsecond per want
//! in the server engine, more with its store lookups), which other peers' transfers then lack.
//! Each peer may hand in [`Config::with_max_wants_per_second`](crate::Config::with_max_wants_per_second)
//! entries per second on average and bursts of
//! [`Config::with_want_burst`](crate::Config::with_want_burst); what exceeds it waits in the
//! peer's own stream (the network layer reads no further while its messages wait).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use libp2p::PeerId;

/// Token buckets of wantlist entries, one per peer whose bucket is not full.
#[derive(Debug)]
pub(crate) struct Allowances {
    /// Entries per second; 0 means unlimited.
    rate: f64,
    burst: f64,
    /// Tokens and when they were counted, for peers below a full bucket. Peers leave it when
    /// their bucket refills or they disconnect, so it holds at most the connected peers.
    peers: HashMap<PeerId, (f64, Instant)>,
}

impl Allowances {
    /// Buckets of `burst` entries refilled at `rate` entries per second (0: unlimited).
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            peers: HashMap::new(),
        }
    }

    /// Entries `peer` may hand in at `now` (negative after a forced intake).
    pub(crate) fn available(&mut self, peer: &PeerId, now: Instant) -> f64 {
        if self.rate == 0.0 {
            return f64::INFINITY;
        }
        let Some((tokens, at)) = self.peers.get_mut(peer) else {
            return self.burst;
        };
        let elapsed = now.saturating_duration_since(*at).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *at = now;
        let tokens = *tokens;
        if tokens >= self.burst {
            self.peers.remove(peer);
        }
        tokens
    }

    /// `peer` handed in `entries` at `now`.
    pub(crate) fn spend(&mut self, peer: PeerId, entries: usize, now: Instant) {
        if self.rate == 0.0 || entries == 0 {
            return;
        }
        let tokens = self.available(&peer, now) - entries as f64;
        self.peers.insert(peer, (tokens, now));
    }

    /// How long a peer with an empty bucket waits for `entries`.
    pub(crate) fn refill_time(&self, entries: usize) -> Duration {
        if self.rate == 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(entries as f64 / self.rate)
    }

    /// Forgets a peer that disconnected.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_spends_its_burst_then_earns_entries_at_the_rate() {
        let mut allowances = Allowances::new(1000, 100);
        let (peer, other) = (PeerId::random(), PeerId::random());
        let now = Instant::now();
        assert_eq!(allowances.available(&peer, now), 100.0);
        allowances.spend(peer, 100, now);
        assert_eq!(allowances.available(&peer, now), 0.0);
        assert_eq!(
            allowances.available(&other, now),
            100.0,
            "buckets are per peer"
        );
        let later = now + Duration::from_millis(50);
        assert!((allowances.available(&peer, later) - 50.0).abs() < 1e-6);
        // Full again: the peer is forgotten, so the map holds only peers below a full bucket.
        assert_eq!(
            allowances.available(&peer, later + Duration::from_secs(1)),
            100.0
        );
        assert!(allowances.peers.is_empty());
        assert_eq!(allowances.refill_time(100), Duration::from_millis(100));
    }

    #[test]
    fn a_forced_intake_goes_into_debt_and_zero_is_unlimited() {
        let mut allowances = Allowances::new(1000, 100);
        let peer = PeerId::random();
        let now = Instant::now();
        allowances.spend(peer, 300, now);
        assert_eq!(allowances.available(&peer, now), -200.0);
        allowances.forget(&peer);
        assert_eq!(allowances.available(&peer, now), 100.0);
        let mut unlimited = Allowances::new(0, 100);
        unlimited.spend(peer, 1_000_000, now);
        assert_eq!(unlimited.available(&peer, now), f64::INFINITY);
    }
}
