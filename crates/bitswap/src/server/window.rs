//! [`Windows`]: how many bytes of work each peer may have outstanding (popped from the queue
//! and not yet written to its streams), grown towards what its link carries in a round trip.
//!
//! A peer's window starts at the floor ([`Config::max_outstanding_bytes_per_peer`], 1 MiB by
//! default) and is measured in rounds: a round ends once a window's worth of its envelopes
//! were reported sent, and its delivery rate is those bytes over the round's time. When the
//! peer was *limited* during the round (it reached its window with work still queued), the
//! window grows to twice the rate times [`HORIZON`], at most [`MAX_GROWTH`] times per round: a
//! window that limits a peer on a far link sees the rate follow it, one that does not (the link is full,
//! or the peer reads slowly) sees a rate that no longer grows, and the window stops where
//! twice the rate times the horizon covers it, or as soon as a round is not [`MIN_GAIN`]
//! times faster than the last. A peer without work starts a new round at its next delivery:
//! the time it waited for work is not its link's, and the envelopes of that first round,
//! reported together once the peer's flow-control windows open, are no baseline for the
//! next. Windows never grow past the per-peer cap
//! ([`Config::max_window_per_peer`]), and growth stops while the sum of all windows is at the
//! global cap ([`Config::max_outstanding_bytes`]); the floor is granted to every peer whatever
//! the sum.
//!
//! A window goes back to the floor when the peer has had an envelope stalled (or failed, or
//! lost) and nothing delivered for [`STALL_RESET`] (it does not read; a stall alone is what a
//! far link looks like, where envelopes wait a round trip for the peer's flow-control
//! window), and after [`IDLE_RESET`] without work. A peer cannot get a large window by reading
//! slowly: the window follows the rate at which the peer takes what it asked for.
//!
//! Sans-IO: time is passed in with every timed input.
//!
//! [`Config::max_outstanding_bytes_per_peer`]: super::Config::max_outstanding_bytes_per_peer
//! [`Config::max_window_per_peer`]: super::Config::max_window_per_peer
//! [`Config::max_outstanding_bytes`]: super::Config::max_outstanding_bytes

use std::{
    collections::VecDeque,
    hash::Hash,
    time::{Duration, Instant},
};

use crate::map::Map;

/// A window grows to twice the delivery rate times this. A round (a window's worth delivered)
/// lasts a round trip and more (envelopes also wait for a free stream), so the horizon is
/// well above the 200 ms round trips of far links: with 500 ms a window limiting a peer
/// grows by 2.5 to 4 times per round, and 20 MB/s at 200 ms (a 4 MB bandwidth-delay product)
/// gets a window of up to 20 MB (so the cap). On nearer links the window is larger than the
/// link needs, which costs memory (bounded by the caps) and nothing else; a peer that reads
/// at 1 MB/s gets 1 MB.
pub(super) const HORIZON: Duration = Duration::from_millis(500);

/// How much faster than the last round a round must deliver for the window to grow: 1.25
/// times (BBR's test for a full pipe). A window that limits a far peer gets a faster round
/// after each growth; once the link or the peer is the limit, or on a near link where the
/// CPU is, rounds are no faster and the window stays where it is, instead of holding more
/// bytes than make a difference.
pub(super) const MIN_GAIN: f64 = 1.25;

/// The most a window grows in one round (a window's worth delivered): four times.
pub(super) const MAX_GROWTH: u64 = 4;

/// How long a peer stays without work before its window goes back to the floor.
pub(super) const IDLE_RESET: Duration = Duration::from_secs(1);

/// How long a peer with a stalled envelope may go without a delivery before its window goes
/// back to the floor: twice [`HORIZON`], beyond any round trip a window is grown for.
pub(super) const STALL_RESET: Duration = Duration::from_secs(1);

/// The windows of all peers, and their sum against the global cap.
#[derive(Debug)]
pub(super) struct Windows<K> {
    /// The window every peer starts with and never goes below, in bytes; 0 = no windows.
    floor: u64,
    /// The largest window of one peer, in bytes.
    cap: u64,
    /// The largest sum of all windows that growth may reach, in bytes.
    total_cap: u64,
    /// The sum of all windows, in bytes.
    total: u64,
    peers: Map<K, Window>,
    /// Peers above the floor that went idle, with the time, oldest first; at most one entry
    /// per peer.
    idle: VecDeque<(K, Instant)>,
    /// Peers above the floor with a stall since their last delivery, in stall order; at most
    /// one entry per peer.
    stalled: VecDeque<K>,
}

/// One peer's window and its current round.
#[derive(Debug, Clone)]
struct Window {
    /// Bytes of work the peer may have outstanding.
    limit: u64,
    /// When the current round began: the first delivery after the last change of window.
    round_start: Option<Instant>,
    /// Bytes delivered in the current round.
    round_bytes: u64,
    /// The peer reached its window with work queued during the round.
    limited: bool,
    /// The delivery rate of the last round, in bytes per second; 0 before any.
    last_rate: f64,
    /// The current round began after an idle spell.
    restarted: bool,
    /// The last delivery.
    last_delivery: Option<Instant>,
    /// An envelope stalled, failed or was lost since the last delivery.
    stalled_since_delivery: bool,
    /// When the peer went idle, if it is.
    idle_since: Option<Instant>,
    /// The peer is in `Windows::idle`.
    listed_idle: bool,
    /// The peer is in `Windows::stalled`.
    listed_stalled: bool,
}

impl Window {
    /// Back to `floor`, with a new round; returns the old limit.
    fn reset(&mut self, floor: u64) -> u64 {
        self.round_start = None;
        self.round_bytes = 0;
        self.limited = false;
        self.last_rate = 0.0;
        std::mem::replace(&mut self.limit, floor)
    }
}

impl<K: Copy + Eq + Hash> Windows<K> {
    /// Windows between `floor` and `cap` bytes, whose sum grows to at most `total_cap` bytes.
    /// A floor of 0 means no limit: windows are then `u64::MAX` and never change.
    pub(super) fn new(floor: u64, cap: u64, total_cap: u64) -> Self {
        Self {
            floor,
            cap: cap.max(floor),
            total_cap,
            total: 0,
            peers: Map::default(),
            idle: VecDeque::new(),
            stalled: VecDeque::new(),
        }
    }

    /// Whether windows are in use (the floor is not 0).
    fn enabled(&self) -> bool {
        self.floor > 0
    }

    /// The window every peer starts with, in bytes (`u64::MAX` when disabled).
    pub(super) fn floor(&self) -> u64 {
        if self.enabled() { self.floor } else { u64::MAX }
    }

    /// The largest window, in bytes (`u64::MAX` when disabled).
    pub(super) fn cap(&self) -> u64 {
        if self.enabled() { self.cap } else { u64::MAX }
    }

    /// The sum of all windows, in bytes.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// The window of `peer`, in bytes: the floor for a peer not known.
    pub(super) fn limit(&self, peer: &K) -> u64 {
        if !self.enabled() {
            return u64::MAX;
        }
        self.peers.get(peer).map_or(self.floor, |w| w.limit)
    }

    /// Whether the window of `peer` is above the floor.
    pub(super) fn is_grown(&self, peer: &K) -> bool {
        self.enabled() && self.limit(peer) > self.floor
    }

    /// A new peer, at the floor. Nothing happens for a peer already known.
    pub(super) fn insert(&mut self, peer: K) {
        if !self.enabled() || self.peers.contains_key(&peer) {
            return;
        }
        self.total += self.floor;
        self.peers.insert(
            peer,
            Window {
                limit: self.floor,
                round_start: None,
                round_bytes: 0,
                limited: false,
                last_rate: 0.0,
                restarted: false,
                last_delivery: None,
                stalled_since_delivery: false,
                idle_since: None,
                listed_idle: false,
                listed_stalled: false,
            },
        );
    }

    /// The peer left: its window is returned to the global budget.
    pub(super) fn remove(&mut self, peer: &K) {
        if let Some(window) = self.peers.remove(peer) {
            self.total -= window.limit;
            if window.listed_idle {
                self.idle.retain(|(p, _)| p != peer);
            }
            if window.listed_stalled {
                self.stalled.retain(|p| p != peer);
            }
        }
    }

    /// The peer reached its window with work still queued.
    pub(super) fn limited(&mut self, peer: &K) {
        if let Some(window) = self.peers.get_mut(peer) {
            window.limited = true;
            window.idle_since = None;
        }
    }

    /// `bytes` of the peer's work were delivered (reported sent) at `now`. Returns true if its
    /// window changed.
    pub(super) fn delivered(&mut self, peer: &K, bytes: u64, now: Instant) -> bool {
        let changed = self.reset_if_idle(peer, now);
        let (floor, cap) = (self.floor, self.cap);
        let room = self.total_cap.saturating_sub(self.total);
        let Some(window) = self.peers.get_mut(peer) else {
            return changed;
        };
        window.stalled_since_delivery = false;
        window.last_delivery = Some(now);
        window.idle_since = None;
        let Some(start) = window.round_start else {
            // The round's time starts here: this delivery's own start is not known.
            window.round_start = Some(now);
            return changed;
        };
        window.round_bytes = window.round_bytes.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(start);
        if window.round_bytes < window.limit || elapsed.is_zero() {
            return changed;
        }
        let old = window.limit;
        let rate = window.round_bytes as f64 / elapsed.as_secs_f64();
        let faster = rate >= MIN_GAIN * window.last_rate;
        // A round that began at the first delivery after an idle spell times the envelopes
        // that waited together for the peer's flow control, not the link: it is no baseline.
        window.last_rate = if window.restarted { 0.0 } else { rate };
        window.restarted = false;
        if window.limited && faster {
            // Saturating float-to-int conversion.
            let wanted = (2.0 * rate * HORIZON.as_secs_f64()) as u64;
            let grown = wanted
                .min(old.saturating_mul(MAX_GROWTH))
                .min(cap)
                .min(old.saturating_add(room));
            window.limit = grown.max(old).max(floor);
        }
        window.round_start = Some(now);
        window.round_bytes = 0;
        window.limited = false;
        let new = window.limit;
        self.total = self.total - old + new;
        changed || new != old
    }

    /// An envelope of the peer stalled, failed or was lost. That alone changes nothing: on a
    /// far link envelopes wait a round trip or more for the peer's flow-control window, and
    /// some are reported stalled while the peer reads well. If nothing of the peer's is
    /// delivered for [`STALL_RESET`] after its last delivery (checked by
    /// [`expire`](Self::expire)), its window goes back to the floor: the peer does not read.
    pub(super) fn stalled(&mut self, peer: &K) {
        let floor = self.floor;
        let Some(window) = self.peers.get_mut(peer) else {
            return;
        };
        window.stalled_since_delivery = true;
        if window.limit > floor && !window.listed_stalled {
            window.listed_stalled = true;
            self.stalled.push_back(*peer);
        }
    }

    /// The peer has no work left (nothing queued, nothing outstanding) at `now`.
    pub(super) fn idle(&mut self, peer: &K, now: Instant) {
        let floor = self.floor;
        let Some(window) = self.peers.get_mut(peer) else {
            return;
        };
        if window.idle_since.is_none() {
            window.idle_since = Some(now);
        }
        // The time until its next work comes is not the link's: the next round starts at its
        // next delivery.
        window.round_start = None;
        window.round_bytes = 0;
        window.limited = false;
        window.restarted = true;
        if window.limit > floor && !window.listed_idle {
            window.listed_idle = true;
            self.idle.push_back((*peer, now));
        }
    }

    /// Puts back to the floor the windows of peers idle for [`IDLE_RESET`] at `now`, and of
    /// peers with a stall and no delivery for [`STALL_RESET`].
    pub(super) fn expire(&mut self, now: Instant) {
        self.expire_stalled(now);
        while let Some(&(peer, since)) = self.idle.front() {
            if now.saturating_duration_since(since) < IDLE_RESET {
                break;
            }
            self.idle.pop_front();
            if let Some(window) = self.peers.get_mut(&peer) {
                window.listed_idle = false;
            }
            if !self.reset_if_idle(&peer, now) {
                // Busy again, or idle for less long: listed again if it is idle and grown.
                let floor = self.floor;
                if let Some(window) = self.peers.get_mut(&peer)
                    && let Some(since) = window.idle_since
                    && window.limit > floor
                {
                    window.listed_idle = true;
                    self.idle.push_back((peer, since));
                }
            }
        }
    }

    fn expire_stalled(&mut self, now: Instant) {
        let floor = self.floor;
        while let Some(&peer) = self.stalled.front() {
            let Some(window) = self.peers.get_mut(&peer) else {
                self.stalled.pop_front();
                continue;
            };
            if window.stalled_since_delivery {
                let quiet = window
                    .last_delivery
                    .is_none_or(|last| now.saturating_duration_since(last) >= STALL_RESET);
                if !quiet {
                    // Checked again on a later call; the list is in stall order.
                    break;
                }
                window.stalled_since_delivery = false;
                let old = window.reset(floor);
                self.total = self.total - old + floor;
            }
            window.listed_stalled = false;
            self.stalled.pop_front();
        }
    }

    /// Puts the peer's window back to the floor if it has been idle for [`IDLE_RESET`].
    fn reset_if_idle(&mut self, peer: &K, now: Instant) -> bool {
        let floor = self.floor;
        let Some(window) = self.peers.get_mut(peer) else {
            return false;
        };
        let Some(since) = window.idle_since else {
            return false;
        };
        if now.saturating_duration_since(since) < IDLE_RESET {
            return false;
        }
        window.idle_since = None;
        let old = window.reset(floor);
        self.total = self.total - old + floor;
        old != floor
    }

    /// Checks the sum and the bounds of the windows.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn check(&self) -> Result<(), String> {
        let sum: u64 = self.peers.values().map(|w| w.limit).sum();
        if sum != self.total {
            return Err(format!("windows sum to {sum}, counted {}", self.total));
        }
        for window in self.peers.values() {
            if window.limit < self.floor || window.limit > self.cap {
                return Err(format!("a window of {} bytes out of bounds", window.limit));
            }
        }
        // Growth stays within the cap; floors are granted beyond it.
        let floors = self.floor.saturating_mul(self.peers.len() as u64);
        if self.total.saturating_sub(floors) > self.total_cap {
            return Err(format!("windows grew to {} over the cap", self.total));
        }
        if self.idle.len() > self.peers.len() || self.stalled.len() > self.peers.len() {
            return Err("idle or stalled list longer than the peers".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn windows() -> Windows<u32> {
        Windows::new(MIB, 16 * MIB, 64 * MIB)
    }

    /// A peer whose link carries `rate` bytes per second with a round trip of `rtt`: each
    /// round, its whole window is popped (it is limited when `queued`), and delivered at
    /// min(window / rtt, rate), in 64 KiB pieces. Returns the window after `rounds` rounds.
    fn simulate(
        w: &mut Windows<u32>,
        peer: u32,
        rate: f64,
        rtt: Duration,
        queued: bool,
        rounds: usize,
        now: &mut Instant,
    ) -> u64 {
        for _ in 0..rounds {
            let window = w.limit(&peer);
            if queued {
                w.limited(&peer);
            }
            let speed = (window as f64 / rtt.as_secs_f64()).min(rate);
            let piece = 64 * 1024u64;
            let mut left = window;
            while left > 0 {
                let bytes = piece.min(left);
                *now += Duration::from_secs_f64(bytes as f64 / speed);
                w.delivered(&peer, bytes, *now);
                left -= bytes;
            }
            w.check().unwrap();
        }
        w.limit(&peer)
    }

    /// A lone peer's windows and clock after `rounds` rounds of [`simulate`] (limited each
    /// round when `queued`), and its window then.
    fn lone_peer(
        rate: f64,
        rtt: Duration,
        queued: bool,
        rounds: usize,
    ) -> (Windows<u32>, Instant, u64) {
        let mut w = windows();
        w.insert(1);
        let mut now = Instant::now();
        let limit = simulate(&mut w, 1, rate, rtt, queued, rounds, &mut now);
        (w, now, limit)
    }

    /// Ten limited rounds of `peer` on a 1 GB/s link at 100 ms: enough to reach the per-peer
    /// cap from the floor.
    fn saturate(w: &mut Windows<u32>, peer: u32, now: &mut Instant) {
        simulate(w, peer, 1e9, Duration::from_millis(100), true, 10, now);
    }

    #[test]
    fn grows_to_the_bandwidth_delay_product_of_a_far_peer() {
        // 20 MB/s at 200 ms: 4 MB in flight are needed.
        let rtt = Duration::from_millis(200);
        let (_, _, limit) = lone_peer(20e6, rtt, true, 12);
        assert!(limit >= 4_000_000, "window {limit}");
        assert!(limit <= 16 * MIB);
        // At that window the peer gets its link's rate.
        assert!(limit as f64 / rtt.as_secs_f64() >= 20e6);
    }

    #[test]
    fn stays_within_twice_rate_times_horizon_on_a_slow_link() {
        // 1 MB/s at 50 ms: the window need not go past 1 MB (2 x 1 MB/s x 500 ms).
        let (_, _, limit) = lone_peer(1e6, Duration::from_millis(50), true, 20);
        assert_eq!(limit, MIB);
    }

    #[test]
    fn never_passes_the_per_peer_cap() {
        let (_, _, limit) = lone_peer(1e9, Duration::from_millis(100), true, 30);
        assert_eq!(limit, 16 * MIB);
    }

    #[test]
    fn the_sum_never_passes_the_global_cap() {
        let mut w = windows();
        let mut now = Instant::now();
        for peer in 0..8 {
            w.insert(peer);
        }
        for peer in 0..8 {
            saturate(&mut w, peer, &mut now);
        }
        // Three peers at the cap, one partly grown, four at the floor.
        assert_eq!(w.total(), 64 * MIB);
        assert_eq!(w.limit(&0), 16 * MIB);
        assert_eq!(w.limit(&7), MIB);
        // Floors are granted whatever the sum.
        w.insert(100);
        assert_eq!(w.limit(&100), MIB);
        w.check().unwrap();
    }

    #[test]
    fn stops_growing_when_rounds_are_no_faster() {
        // A near peer whose rate is capped by the CPU at 100 MB/s: the window grows while
        // rounds get faster, then stays well under the cap.
        let (_, _, limit) = lone_peer(100e6, Duration::from_millis(1), true, 30);
        assert!(limit <= 4 * MIB, "window {limit}");
    }

    #[test]
    fn does_not_grow_unless_limited() {
        let (_, _, limit) = lone_peer(1e9, Duration::from_millis(100), false, 10);
        assert_eq!(limit, MIB);
    }

    #[test]
    fn stalls_without_deliveries_return_to_the_floor() {
        let (mut w, mut now, limit) = lone_peer(1e9, Duration::from_millis(100), true, 10);
        assert_eq!(limit, 16 * MIB);
        // Stalls between deliveries: a far link.
        w.stalled(&1);
        w.stalled(&1);
        now += Duration::from_millis(300);
        w.delivered(&1, 64 * 1024, now);
        w.expire(now + STALL_RESET);
        assert_eq!(w.limit(&1), 16 * MIB);
        // Nothing delivered for a second after a stall: the peer does not read.
        w.stalled(&1);
        w.expire(now + STALL_RESET / 2);
        assert_eq!(w.limit(&1), 16 * MIB);
        now += STALL_RESET;
        w.expire(now);
        assert_eq!(w.limit(&1), MIB);
        w.check().unwrap();
        // It grows again from the floor once it reads.
        saturate(&mut w, 1, &mut now);
        assert_eq!(w.limit(&1), 16 * MIB);
    }

    #[test]
    fn a_peer_that_reads_slowly_stays_at_the_floor() {
        // 100 kB/s whatever the window, always limited.
        let (_, _, limit) = lone_peer(100e3, Duration::from_millis(10), true, 5);
        assert_eq!(limit, MIB);
    }

    #[test]
    fn idle_peers_return_to_the_floor() {
        let mut w = windows();
        w.insert(1);
        w.insert(2);
        let mut now = Instant::now();
        saturate(&mut w, 1, &mut now);
        saturate(&mut w, 2, &mut now);
        w.idle(&1, now);
        w.idle(&2, now);
        // Peer 2 is busy again before the reset.
        now += Duration::from_millis(500);
        w.limited(&2);
        w.expire(now);
        assert_eq!(w.limit(&1), 16 * MIB);
        now += IDLE_RESET;
        w.expire(now);
        assert_eq!(w.limit(&1), MIB);
        assert_eq!(w.limit(&2), 16 * MIB);
        assert_eq!(w.total(), 17 * MIB);
        w.check().unwrap();
        w.remove(&2);
        w.remove(&1);
        assert_eq!(w.total(), 0);
    }

    #[test]
    fn an_idle_spell_is_not_timed_as_a_slow_round() {
        // A DAG's inner nodes, then 400 ms without work while the peer asks for the leaves,
        // then a far link (20 MB/s, 200 ms): the floor's four 256 KiB blocks are reported
        // together a round trip later, as their streams' flow-control windows open.
        let mut w = windows();
        w.insert(1);
        let mut now = Instant::now();
        w.delivered(&1, 8_000, now);
        w.idle(&1, now);
        now += Duration::from_millis(400);
        w.limited(&1);
        now += Duration::from_millis(200);
        for _ in 0..5 {
            w.delivered(&1, 256 * 1024, now);
            now += Duration::from_millis(3);
        }
        // Timed from the inner nodes, the round read 1.7 MB/s and hardly grew the window.
        assert_eq!(w.limit(&1), 4 * MIB);
        // That burst is no baseline: the next round, at the link's 20 MB/s, grows it again.
        w.limited(&1);
        let mut left = 4 * MIB;
        while left > 0 {
            now += Duration::from_secs_f64(256.0 * 1024.0 / 20e6);
            w.delivered(&1, 256 * 1024, now);
            left -= 256 * 1024;
        }
        assert!(w.limit(&1) > 4 * MIB, "window {}", w.limit(&1));
        w.check().unwrap();
    }

    #[test]
    fn disabled_windows_are_unlimited() {
        let mut w = Windows::new(0, 16 * MIB, 64 * MIB);
        w.insert(1);
        assert_eq!(w.limit(&1), u64::MAX);
        assert!(!w.delivered(&1, MIB, Instant::now()));
        w.stalled(&1);
        w.expire(Instant::now() + STALL_RESET);
        assert_eq!(w.limit(&1), u64::MAX);
        assert!(!w.is_grown(&1));
        w.check().unwrap();
    }
}
