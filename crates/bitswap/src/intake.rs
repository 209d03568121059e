//! Taking in peers' wantlist entries: how fast, and in which order.
//!
//! A peer that floods wants makes the node spend a core on them (about a microsecond per want
//! in the server engine, more with its store lookups), which other peers' transfers then lack.
//! Each peer may hand in [`Config::with_max_wants_per_second`](crate::Config::with_max_wants_per_second)
//! entries per second on average and bursts of
//! [`Config::with_want_burst`](crate::Config::with_want_burst) (a token bucket per peer); what
//! exceeds it waits in the peer's own stream (the network layer reads no further while its
//! messages wait). Long wantlists are taken in over several turns, round-robin between peers,
//! so that a flood of wants delays other peers by one turn, not by the whole flood.

use std::{
    collections::{HashMap, VecDeque},
    ops::Range,
    time::{Duration, Instant},
};

use libp2p::{PeerId, swarm::ConnectionId};

use crate::message::Message;

/// Wantlist entries of one peer the server takes in per turn.
const ENTRIES_PER_TURN: usize = 128;

/// Wantlist entries that may wait for their turn over all peers (about 1.8 MiB decoded);
/// beyond it, turns are taken at once.
const MAX_BACKLOG: usize = 16 * 1024;

/// The wantlist entries of received messages on their way into the server engine.
///
/// Feed it every received message ([`handle_message`](Self::handle_message)), which either
/// hands the message back to be taken in whole at once, or keeps it for turns. Then take
/// turns: [`take_excess_turn`](Self::take_excess_turn) until it returns `None` after each
/// message kept, [`take_turn`](Self::take_turn) whenever nothing else is ready, and, when no
/// peer could take a turn, wait [`next_turn_in`](Self::next_turn_in). A message is released
/// to the network layer (which reads no further from its connection meanwhile) once its last
/// entry is taken in.
///
/// Memory is bounded: the messages kept are those the network layer holds unreleased (a few
/// per connection), each waiting peer is in the turn order once, the entries waiting are at
/// most [`MAX_BACKLOG`] after each message kept and its excess turns, and the token buckets
/// are kept only for connected peers below a full bucket.
#[derive(Debug)]
pub(crate) struct Intake {
    allowances: Allowances,
    /// Messages kept, per peer, oldest first; never an empty queue.
    waiting: HashMap<PeerId, VecDeque<Waiting>>,
    /// The peers in `waiting`, each once, in turn order.
    turns: VecDeque<PeerId>,
    /// Wantlist entries waiting in `waiting`.
    backlog: usize,
}

/// A message kept for its turns.
#[derive(Debug)]
struct Waiting {
    /// Where it came from, to release it when taken in.
    connection: ConnectionId,
    message: Message,
    /// The next entry to take in.
    next: usize,
}

/// What a turn took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken {
    /// Whose entries.
    pub(crate) peer: PeerId,
    /// The connection to release the message on: its last entry was taken in.
    pub(crate) release: Option<ConnectionId>,
}

impl Intake {
    /// An intake allowing each peer `rate` entries per second (0: unlimited) in bursts of
    /// `burst`.
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self {
            allowances: Allowances::new(rate, burst),
            waiting: HashMap::new(),
            turns: VecDeque::new(),
            backlog: 0,
        }
    }

    /// A message from `peer` on `connection`, received at `now`. Handed back if the server
    /// takes it in whole at once (it is short, nothing of the peer waits, and its allowance
    /// covers it): release it after. Else it is kept for turns.
    pub(crate) fn handle_message(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        message: Message,
        now: Instant,
    ) -> Option<Message> {
        let entries = message.wantlist.entries.len();
        if entries <= ENTRIES_PER_TURN
            && !self.waiting.contains_key(&peer)
            && self.allowances.available(&peer, now) >= entries as f64
        {
            self.allowances.spend(peer, entries, now);
            return Some(message);
        }
        let queue = self.waiting.entry(peer).or_default();
        if queue.is_empty() {
            self.turns.push_back(peer);
        }
        self.backlog += entries;
        queue.push_back(Waiting {
            connection,
            message,
            next: 0,
        });
        None
    }

    /// Gives the next peer in turn that has allowance at `now` up to [`ENTRIES_PER_TURN`]
    /// entries of its oldest message: `take` gets the peer, the message and the range of
    /// entries to take in. `None` if no peer could take a turn.
    pub(crate) fn take_turn(
        &mut self,
        now: Instant,
        take: impl FnOnce(PeerId, &Message, Range<usize>),
    ) -> Option<Taken> {
        self.turn(false, now, take)
    }

    /// Like [`take_turn`](Self::take_turn) whatever the peers' allowances (which go into
    /// debt), while more than [`MAX_BACKLOG`] entries wait: decoded entries take about 3x
    /// their wire size, so many peers' long wantlists at once are taken in at once (still by
    /// turns) beyond a bound. `None` once within the bound.
    pub(crate) fn take_excess_turn(
        &mut self,
        now: Instant,
        take: impl FnOnce(PeerId, &Message, Range<usize>),
    ) -> Option<Taken> {
        if self.backlog <= MAX_BACKLOG {
            return None;
        }
        self.turn(true, now, take)
    }

    fn turn(
        &mut self,
        force: bool,
        now: Instant,
        take: impl FnOnce(PeerId, &Message, Range<usize>),
    ) -> Option<Taken> {
        for _ in 0..self.turns.len() {
            let peer = self.turns.pop_front()?;
            let Some(queue) = self.waiting.get_mut(&peer) else {
                continue;
            };
            let Some(waiting) = queue.front_mut() else {
                self.waiting.remove(&peer);
                continue;
            };
            let len = waiting.message.wantlist.entries.len();
            let mut count = (len - waiting.next).min(ENTRIES_PER_TURN);
            if !force && count > 0 {
                let available = self.allowances.available(&peer, now);
                if available < 1.0 {
                    self.turns.push_back(peer);
                    continue;
                }
                count = count.min(available as usize);
            }
            let entries = waiting.next..waiting.next + count;
            waiting.next = entries.end;
            take(peer, &waiting.message, entries);
            self.backlog -= count;
            self.allowances.spend(peer, count, now);
            let release = if waiting.next == len {
                queue.pop_front().map(|w| w.connection)
            } else {
                None
            };
            if queue.is_empty() {
                self.waiting.remove(&peer);
            } else {
                self.turns.push_back(peer);
            }
            return Some(Taken { peer, release });
        }
        None
    }

    /// How long until a peer waiting for its allowance has earned a turn, at most; `None` if
    /// no peer waits.
    pub(crate) fn next_turn_in(&self) -> Option<Duration> {
        (!self.turns.is_empty()).then(|| self.allowances.refill_time(ENTRIES_PER_TURN))
    }

    /// Forgets a peer that disconnected, and the messages it had waiting (the network layer
    /// drops their connections' holds itself).
    pub(crate) fn handle_peer_disconnected(&mut self, peer: &PeerId) {
        if let Some(queue) = self.waiting.remove(peer) {
            self.backlog -= queue
                .iter()
                .map(|w| w.message.wantlist.entries.len() - w.next)
                .sum::<usize>();
            self.turns.retain(|p| p != peer);
        }
        self.allowances.forget(peer);
    }
}

/// Token buckets of wantlist entries, one per peer whose bucket is not full.
#[derive(Debug)]
struct Allowances {
    /// Entries per second; 0 means unlimited.
    rate: f64,
    burst: f64,
    /// Tokens and when they were counted, for peers below a full bucket. Peers leave it when
    /// their bucket refills or they disconnect, so it holds at most the connected peers.
    peers: HashMap<PeerId, (f64, Instant)>,
}

impl Allowances {
    /// Buckets of `burst` entries refilled at `rate` entries per second (0: unlimited).
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            peers: HashMap::new(),
        }
    }

    /// Entries `peer` may hand in at `now` (negative after a forced intake).
    fn available(&mut self, peer: &PeerId, now: Instant) -> f64 {
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
    fn spend(&mut self, peer: PeerId, entries: usize, now: Instant) {
        if self.rate == 0.0 || entries == 0 {
            return;
        }
        let tokens = self.available(&peer, now) - entries as f64;
        self.peers.insert(peer, (tokens, now));
    }

    /// How long a peer with an empty bucket waits for `entries`.
    fn refill_time(&self, entries: usize) -> Duration {
        if self.rate == 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(entries as f64 / self.rate)
    }

    /// Forgets a peer that disconnected.
    fn forget(&mut self, peer: &PeerId) {
        self.peers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use cid::Cid;

    use super::*;
    use crate::message::Entry;

    fn message(entries: usize) -> Message {
        let mut message = Message::default();
        message.wantlist.entries = vec![Entry::want_have(Cid::default(), 0); entries];
        message
    }

    /// Takes a turn (forced if `excess`), returning what it took in.
    fn turn(intake: &mut Intake, excess: bool, now: Instant) -> Option<(Taken, Range<usize>)> {
        let mut range = None;
        let take = |_: PeerId, _: &Message, entries: Range<usize>| range = Some(entries);
        let taken = if excess {
            intake.take_excess_turn(now, take)
        } else {
            intake.take_turn(now, take)
        }?;
        Some((taken, range.expect("taken")))
    }

    /// Checks the invariants the docs promise.
    fn check(intake: &Intake) {
        let waiting: usize = intake
            .waiting
            .values()
            .flatten()
            .map(|w| w.message.wantlist.entries.len() - w.next)
            .sum();
        assert_eq!(intake.backlog, waiting);
        assert_eq!(intake.turns.len(), intake.waiting.len());
        for peer in &intake.turns {
            assert!(!intake.waiting[peer].is_empty());
        }
    }

    #[test]
    fn a_short_message_within_the_allowance_is_taken_in_at_once() {
        let mut intake = Intake::new(1000, 100);
        let (peer, connection, now) = (
            PeerId::random(),
            ConnectionId::new_unchecked(1),
            Instant::now(),
        );
        assert!(
            intake
                .handle_message(peer, connection, message(100), now)
                .is_some()
        );
        // The allowance is spent: the next message waits for its turn, and the peer for its
        // allowance.
        assert!(
            intake
                .handle_message(peer, connection, message(1), now)
                .is_none()
        );
        assert!(turn(&mut intake, false, now).is_none());
        assert_eq!(intake.next_turn_in(), Some(Duration::from_millis(128)));
        let later = now + Duration::from_millis(1);
        let (taken, entries) = turn(&mut intake, false, later).expect("earned");
        assert_eq!(entries, 0..1);
        assert_eq!(
            taken,
            Taken {
                peer,
                release: Some(connection)
            }
        );
        assert_eq!(intake.next_turn_in(), None);
        check(&intake);
    }

    #[test]
    fn long_messages_are_taken_in_by_turns_between_peers() {
        let mut intake = Intake::new(0, 100);
        let (a, b, now) = (PeerId::random(), PeerId::random(), Instant::now());
        let (ca, cb) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        assert!(intake.handle_message(a, ca, message(300), now).is_none());
        assert!(intake.handle_message(b, cb, message(200), now).is_none());
        // A short message behind a waiting one waits too, so that each peer's are in order.
        assert!(intake.handle_message(a, ca, message(1), now).is_none());
        check(&intake);
        let mut turns = Vec::new();
        while let Some((taken, entries)) = turn(&mut intake, false, now) {
            turns.push((taken.peer, entries, taken.release));
            check(&intake);
        }
        assert_eq!(
            turns,
            [
                (a, 0..128, None),
                (b, 0..128, None),
                (a, 128..256, None),
                (b, 128..200, Some(cb)),
                (a, 256..300, Some(ca)),
                (a, 0..1, Some(ca)),
            ]
        );
        assert!(intake.waiting.is_empty() && intake.turns.is_empty() && intake.backlog == 0);
    }

    #[test]
    fn a_turn_takes_what_the_allowance_covers() {
        let mut intake = Intake::new(1000, 50);
        let (peer, now) = (PeerId::random(), Instant::now());
        intake.handle_message(peer, ConnectionId::new_unchecked(1), message(200), now);
        assert_eq!(turn(&mut intake, false, now).expect("burst").1, 0..50);
        assert!(turn(&mut intake, false, now).is_none());
        let later = now + Duration::from_millis(20);
        assert_eq!(turn(&mut intake, false, later).expect("earned").1, 50..70);
    }

    #[test]
    fn the_backlog_stays_bounded_whatever_the_allowances() {
        let mut intake = Intake::new(1, 1);
        let now = Instant::now();
        let peers: Vec<PeerId> = (0..64).map(|_| PeerId::random()).collect();
        for (i, peer) in peers.iter().cycle().take(1000).enumerate() {
            let connection = ConnectionId::new_unchecked(i % 64);
            assert!(
                intake
                    .handle_message(*peer, connection, message(1000), now)
                    .is_none()
            );
            while turn(&mut intake, true, now).is_some() {}
            assert!(intake.backlog <= MAX_BACKLOG);
            check(&intake);
        }
        // Within the bound, forced turns stop; the peers are in debt.
        assert!(turn(&mut intake, true, now).is_none());
        assert!(turn(&mut intake, false, now).is_none());
    }

    #[test]
    fn a_peer_that_disconnects_is_forgotten() {
        let mut intake = Intake::new(1000, 100);
        let (a, b, now) = (PeerId::random(), PeerId::random(), Instant::now());
        intake.handle_message(a, ConnectionId::new_unchecked(1), message(500), now);
        intake.handle_message(b, ConnectionId::new_unchecked(2), message(500), now);
        turn(&mut intake, false, now).expect("a's turn");
        intake.handle_peer_disconnected(&a);
        check(&intake);
        assert_eq!(intake.backlog, 500);
        assert_eq!(intake.turns, [b]);
        assert!(!intake.allowances.peers.contains_key(&a));
        intake.handle_peer_disconnected(&b);
        assert!(intake.waiting.is_empty() && intake.turns.is_empty() && intake.backlog == 0);
        assert_eq!(intake.next_turn_in(), None);
    }

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
