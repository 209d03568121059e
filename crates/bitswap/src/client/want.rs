//! The strategy: which peers are asked for a wanted CID, how, and what their answers change.
//!
//! For every wanted CID there is at most one *target*: the peer sent a want-block whose answer
//! is awaited. Keeping to one want-block at a time is what keeps duplicate blocks low. Other
//! 1.2.0 peers are sent want-haves (at most `Config::max_broadcast_peers` peers asked in all,
//! those that delivered blocks first) so that the next target is known when the current one
//! refuses. That *broadcast* happens:
//!
//! - when the want starts, if its target is not proven (it has not delivered blocks in the
//!   want's session, or anything at all for a want without session) and fewer than
//!   [`DISCOVERY_WANTS`] wants of the same session (or query) are already broadcast that way;
//! - when its target refuses, stays silent past its timeout, leaves or is penalised, unless a
//!   connected peer is proven in its session (or for its query): then the next candidates are
//!   asked for the block one after the other;
//! - to a peer that connects, for wants already broadcast.
//!
//! Servers answer a want-have for a small block (boxo: at most 1 KiB) with the block itself, so
//! a broadcast of such a block costs a duplicate per peer that has it: not broadcasting wants
//! whose target is proven, and discovering one want at a time, keeps duplicates low there too.
//!
//! Targets are picked by:
//!
//! 1. what the peer said: HAVE (or it is a provider) before unknown; peers that said DONT_HAVE
//!    or stayed silent past their timeout are not picked;
//! 2. peers with a non-negative score first;
//! 3. the expected wait, the peer's round trip plus the transfer of the want-blocks already
//!    in flight there at its measured rate (an unmeasured round trip counts as
//!    [`UNKNOWN_LATENCY`]; before its rate is measured a peer is taken to deliver its window
//!    per round trip), in steps of [`WAIT_STEP`]: a batch spreads over the peers that have the
//!    data, the faster ones taking more;
//! 4. peers that delivered blocks in the want's session, then peers that delivered anything;
//! 5. 1.2.0 peers before older ones (which never say DONT_HAVE, so only a timeout moves on);
//! 6. the exact expected wait, then peer id (so runs are reproducible).
//!
//! A peer is only asked while its want-blocks in flight are fewer than its *window* (see
//! `link.rs`: what it delivers in half a second, or twice its bandwidth-delay product,
//! once measured; `Config::initial_window_bytes` before). When the best-ranked peer is at
//! its window the want waits in the client for its room rather than go to a peer expected to
//! deliver later, so wants go to peers in proportion to their rates.
//!
//! When no peer can be picked the want is *stuck*: if it is because the peers asked refused,
//! providers are searched for ([`Action::FindProviders`], rate-limited per CID); if it is
//! because peers are full (their window, or `Config::max_wants_per_peer`), it waits for room.
//! A stuck want is looked at again when a peer connects, a peer says HAVE, a provider is
//! added, room frees up, and on its search timer.

use std::{
    cmp::Reverse,
    time::{Duration, Instant},
};

use cid::Cid;
use libp2p::PeerId;

use super::{
    Engine,
    action::Action,
    peer::{Answer, Asked, Peer},
    query::{QueryId, SessionId},
    timer::{Timer, TimerKey},
};
use crate::message::{Entry, WantType};

/// Wants of one session (or one query without session) broadcast at their start while no
/// peer is proven for them.
pub(super) const DISCOVERY_WANTS: usize = 1;
/// Latency assumed for a peer whose latency was never measured, when ranking targets.
pub(super) const UNKNOWN_LATENCY: Duration = Duration::from_millis(100);
/// Differences of expected wait below this do not matter when ranking targets (helpfulness
/// decides first).
pub(super) const WAIT_STEP: Duration = Duration::from_millis(50);

/// A wanted CID.
#[derive(Debug)]
pub(super) struct Want {
    /// Sent with every entry for it; earlier wants have higher priorities.
    pub(super) priority: i32,
    /// Queries waiting for it (at least one).
    pub(super) queries: Vec<QueryId>,
    /// Session of the query that started it, whose knowledge picks its peers.
    pub(super) session: Option<SessionId>,
    /// Peers holding a want for it (an `Asked` entry).
    pub(super) asked: Vec<PeerId>,
    /// The peer whose want-block answer is awaited.
    pub(super) target: Option<PeerId>,
    /// Peers said to provide it (at most `Config::max_providers_per_want`).
    pub(super) providers: Vec<PeerId>,
    /// Last provider search.
    pub(super) last_search: Option<Instant>,
    pub(super) search_timer: Option<TimerKey>,
    /// In the engine's starved list, waiting for room at a peer.
    pub(super) starved: bool,
    /// Whose knowledge of peers applies.
    pub(super) context: Context,
    /// Want-haves were broadcast for it (peers connecting later are sent one too).
    pub(super) broadcasting: bool,
    /// Broadcast at its start for discovery: counted in `Engine::discovering`.
    pub(super) eager: bool,
}

/// Whose knowledge of peers a want uses: its session's, or its query's when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Context {
    Session(SessionId),
    Query(QueryId),
}

impl Want {
    pub(super) fn new(priority: i32, query: QueryId, session: Option<SessionId>) -> Self {
        Self {
            priority,
            queries: vec![query],
            session,
            asked: Vec::new(),
            target: None,
            providers: Vec::new(),
            last_search: None,
            search_timer: None,
            starved: false,
            context: session.map_or(Context::Query(query), Context::Session),
            broadcasting: false,
            eager: false,
        }
    }
}

/// Why no target could be picked.
enum Stuck {
    /// Some peer could be asked if it had room.
    Full,
    /// No connected peer may have it.
    NoPeer,
}

impl Engine {
    /// Starts asking for a new want: a target, want-haves to the broadcast set, and the first
    /// provider search deadline.
    pub(super) fn start_want(&mut self, cid: Cid, now: Instant) {
        let at = now + self.config.provider_search_delay();
        let key = self.timers.insert(at, Timer::Search { cid });
        if let Some(want) = self.wants.get_mut(&cid) {
            want.search_timer = Some(key);
        }
        self.choose_target(cid, now);
        let Some(want) = self.wants.get(&cid) else {
            return;
        };
        let context = want.context;
        let proven = want.target.is_some_and(|t| self.proven(&t, context));
        let discovering = self.discovering.get(&context).copied().unwrap_or(0);
        if !proven && discovering < DISCOVERY_WANTS {
            if let Some(want) = self.wants.get_mut(&cid) {
                want.eager = true;
            }
            *self.discovering.entry(context).or_default() += 1;
            self.broadcast(cid, now);
        }
    }

    /// Whether `peer` delivered blocks in `context` (any block, for a query context).
    fn proven(&self, peer: &PeerId, context: Context) -> bool {
        match context {
            Context::Session(s) => self
                .sessions
                .get(&s)
                .is_some_and(|s| s.peers.contains_key(peer)),
            Context::Query(_) => self.peers.get(peer).is_some_and(|p| p.useful > 0),
        }
    }

    /// The want's target is gone (refused, silent, left, penalised): the next candidate is
    /// asked for the block, and want-haves are broadcast unless a connected peer is proven in
    /// the want's context (then candidates are tried one after the other, which costs no
    /// duplicate of small blocks and measured no slower with three peers).
    pub(super) fn target_lost(&mut self, cid: Cid, now: Instant) {
        let Some(want) = self.wants.get_mut(&cid) else {
            return;
        };
        want.target = None;
        let context = want.context;
        self.choose_target(cid, now);
        if !self.context_proven(context) {
            self.broadcast(cid, now);
        }
    }

    /// Whether a connected peer delivered blocks in `context`.
    fn context_proven(&self, context: Context) -> bool {
        self.peers
            .iter()
            .any(|(id, p)| p.version.is_some() && self.proven(id, context))
    }

    /// Sends want-haves to the best 1.2.0 peers not yet asked, until the want has been sent to
    /// `Config::max_broadcast_peers` peers.
    pub(super) fn broadcast(&mut self, cid: Cid, now: Instant) {
        let Some(want) = self.wants.get_mut(&cid) else {
            return;
        };
        want.broadcasting = true;
        let Some(want) = self.wants.get(&cid) else {
            return;
        };
        let room = self
            .config
            .max_broadcast_peers()
            .saturating_sub(want.asked.len());
        if room == 0 {
            return;
        }
        let max_wants = self.config.max_wants_per_peer();
        let mut candidates: Vec<(_, PeerId)> = self
            .peers
            .iter()
            .filter(|(id, peer)| {
                peer.supports_have()
                    && !peer.is_penalised(now)
                    && peer.asked_len() < max_wants
                    && peer.asked(&cid).is_none()
                    && !want.asked.contains(id)
            })
            .map(|(id, peer)| {
                let key = (
                    peer.score < 0,
                    self.helped(id, peer, want.session),
                    peer.latency,
                    *id,
                );
                (key, *id)
            })
            .collect();
        candidates.sort();
        for (_, peer) in candidates.into_iter().take(room) {
            self.send_want(peer, cid, WantType::Have, now);
        }
    }

    /// 0 if `peer` delivered in `session`, 1 if it delivered anything, 2 otherwise.
    pub(super) fn helped(&self, id: &PeerId, peer: &Peer, session: Option<SessionId>) -> u8 {
        let in_session = session
            .and_then(|s| self.sessions.get(&s))
            .is_some_and(|s| s.peers.contains_key(id));
        if in_session {
            0
        } else if peer.useful > 0 {
            1
        } else {
            2
        }
    }

    /// Picks a target if the want has none, and sends it a want-block; otherwise notes the
    /// want as stuck.
    pub(super) fn choose_target(&mut self, cid: Cid, now: Instant) {
        let Some(want) = self.wants.get(&cid) else {
            return;
        };
        if want.target.is_some() {
            return;
        }
        let max_wants = self.config.max_wants_per_peer();
        let initial_window = self.config.initial_window_bytes();
        let mut best = None;
        // A penalty only ranks a peer last: with no other candidate a penalised peer is still
        // asked, or a lone slow peer would stall every new want for `penalty_duration`.
        for (id, peer) in &self.peers {
            if peer.version.is_none() {
                continue;
            }
            let asked = peer.asked(&cid);
            let class = match asked.map(|a| a.answer) {
                Some(Answer::DontHave | Answer::TimedOut | Answer::Withdrawn) => continue,
                Some(Answer::Have) => 0,
                _ if want.providers.contains(id) => 0,
                _ => 1,
            };
            let window = peer.link.window(initial_window, max_wants);
            // A full peer still ranks, with its queue: if it would deliver first, the want
            // waits for its room rather than go to a slower peer.
            let is_full = (asked.is_none() && peer.asked_len() >= max_wants)
                || peer.blocks_in_flight() >= window;
            let wait = peer
                .link
                .expected_wait(peer.blocks_in_flight(), window, UNKNOWN_LATENCY)
                .max(Duration::from_millis(1));
            let key = (
                peer.is_penalised(now),
                class,
                peer.score < 0,
                wait.as_micros() / WAIT_STEP.as_micros(),
                self.helped(id, peer, want.session),
                !peer.supports_have(),
                wait,
                *id,
            );
            if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                best = Some((key, *id, is_full));
            }
        }
        match best {
            Some((_, _, true)) => self.stuck(cid, Stuck::Full, now),
            Some((_, peer, false)) => {
                self.send_want(peer, cid, WantType::Block, now);
                if let Some(want) = self.wants.get_mut(&cid) {
                    want.target = Some(peer);
                    if want.starved {
                        // Found room while listed (a search deadline retried it): unlist it,
                        // or it could be listed twice when it starves again.
                        want.starved = false;
                        self.starved.retain(|c| *c != cid);
                    }
                }
            }
            None => self.stuck(cid, Stuck::NoPeer, now),
        }
    }

    fn stuck(&mut self, cid: Cid, why: Stuck, now: Instant) {
        match why {
            Stuck::Full => {
                if let Some(want) = self.wants.get_mut(&cid)
                    && !want.starved
                {
                    want.starved = true;
                    self.starved.push_back(cid);
                }
            }
            Stuck::NoPeer => self.search(cid, now),
        }
    }

    /// Emits [`Action::FindProviders`] unless one was emitted for `cid` within
    /// `Config::provider_search_interval`, or `Config::max_provider_searches` were emitted in
    /// all within it.
    pub(super) fn search(&mut self, cid: Cid, now: Instant) {
        let interval = self.config.provider_search_interval();
        let Some(want) = self.wants.get_mut(&cid) else {
            return;
        };
        if want.last_search.is_some_and(|at| now < at + interval) {
            return;
        }
        while self
            .recent_searches
            .front()
            .is_some_and(|at| now >= *at + interval)
        {
            self.recent_searches.pop_front();
        }
        if self.recent_searches.len() >= self.config.max_provider_searches() {
            // Over the budget: the want's search deadline tries again.
            return;
        }
        self.recent_searches.push_back(now);
        want.last_search = Some(now);
        self.stats.provider_searches += 1;
        self.actions.push_back(Action::FindProviders { cid });
    }

    /// Retries wants that waited for room at a peer, in the order they started waiting.
    pub(super) fn retry_starved(&mut self, now: Instant) {
        for _ in 0..self.starved.len() {
            let Some(cid) = self.starved.pop_front() else {
                break;
            };
            let Some(want) = self.wants.get_mut(&cid) else {
                continue;
            };
            if !want.starved {
                continue;
            }
            want.starved = false;
            self.choose_target(cid, now);
            if self.wants.get(&cid).is_some_and(|w| w.starved) {
                // Still no room anywhere: the rest would not find any either.
                break;
            }
        }
    }

    /// Records and queues a want of `want_type` for `cid` to `peer` (which must be
    /// connected), with its answer deadline.
    pub(super) fn send_want(&mut self, id: PeerId, cid: Cid, want_type: WantType, now: Instant) {
        let Some(want) = self.wants.get_mut(&cid) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        if !want.asked.contains(&id) {
            want.asked.push(id);
        }
        let timeout = self.config.silence_timeout(&peer.link);
        let key = self
            .timers
            .insert(now + timeout, Timer::Answer { peer: id, cid });
        let answer = match peer.asked(&cid).map(|a| a.answer) {
            Some(Answer::Have) => Answer::Have,
            _ => Answer::Pending,
        };
        let first = peer.asked(&cid).is_none();
        let old = peer.insert_asked(
            cid,
            Asked {
                want_type,
                sent_at: now,
                answer,
                timer: Some(key),
                first,
            },
        );
        self.timers.remove(old);
        let entry = match want_type {
            WantType::Block => Entry::want_block(cid, want.priority),
            WantType::Have => Entry::want_have(cid, want.priority),
        };
        peer.outbox.push(entry);
    }

    /// Forgets a want: cancels go to every peer asked but `except` (which just answered with
    /// the block), its deadlines go, and the CID is remembered as recently wanted.
    pub(super) fn drop_want(&mut self, cid: &Cid, except: Option<PeerId>) {
        let Some(want) = self.wants.remove(cid) else {
            return;
        };
        self.timers.remove(want.search_timer);
        if want.starved {
            self.starved.retain(|c| c != cid);
        }
        if want.eager
            && let Some(n) = self.discovering.get_mut(&want.context)
        {
            *n -= 1;
            if *n == 0 {
                self.discovering.remove(&want.context);
            }
        }
        for id in want.asked {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            let withdrawn = match peer.remove_asked(cid) {
                Some(asked) => {
                    self.timers.remove(asked.timer);
                    asked.answer == Answer::Withdrawn
                }
                None => false,
            };
            // A want queued and not sent yet (say, given room by an earlier block of the same
            // message) must not go out after the block came.
            // A withdrawn want's cancel may still be queued: it goes out.
            peer.outbox
                .retain(|entry| entry.cid != *cid || (withdrawn && entry.cancel));
            if Some(id) != except && !withdrawn {
                peer.outbox.push(Entry::cancel(*cid));
            }
        }
        self.recent.insert(*cid);
    }

    /// A peer connected: it is asked for every live want, highest priority first, where a
    /// target is missing, or with a want-have where want-haves were broadcast and the
    /// broadcast set has room.
    pub(super) fn peer_joined(&mut self, now: Instant) {
        let mut cids: Vec<(Reverse<i32>, Cid)> = self
            .wants
            .iter()
            .map(|(cid, w)| (Reverse(w.priority), *cid))
            .collect();
        cids.sort();
        for (_, cid) in cids {
            self.choose_target(cid, now);
            if self.wants.get(&cid).is_some_and(|w| w.broadcasting) {
                self.broadcast(cid, now);
            }
        }
        let wants = &self.wants;
        self.starved
            .retain(|c| wants.get(c).is_some_and(|w| w.starved));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        client::{Config, testing::*},
        message::BlockPresenceType,
        protocol::Version,
    };

    #[test]
    fn one_want_block_and_want_haves_for_discovery() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2, 3], now);
        e.get(vec![cid(1), cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        // The first want discovers: one want-block, want-haves to the others.
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
        assert_eq!(
            sent(&actions, &cid(1), Some(WantType::Have)),
            [peer(2), peer(3)]
        );
        // The second only asks its target (the least loaded peer).
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(2)]);
        assert!(sent(&actions, &cid(2), Some(WantType::Have)).is_empty());
    }

    #[test]
    fn a_proven_session_peer_is_asked_alone_and_refusals_go_one_by_one() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2, 3], now);
        let session = e.new_session().expect("room");
        e.get(vec![cid(1)], Some(session), now).expect("ok");
        drain(&mut e);
        e.handle_message(peer(1), &with_block(&block(1)), now);
        drain(&mut e);
        assert_eq!(e.session_peers(session), [(peer(1), 1)]);
        e.get(vec![cid(2)], Some(session), now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(entries(&actions).len(), 1);
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(1)]);
        e.handle_message(
            peer(1),
            &with_presence(cid(2), BlockPresenceType::DontHave),
            now,
        );
        let actions = drain(&mut e);
        assert_eq!(entries(&actions).len(), 1, "no broadcast: {actions:?}");
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(2)]);
    }

    #[test]
    fn a_want_given_room_by_a_block_is_not_sent_once_its_own_block_came_in_the_same_message() {
        // Found by the client_engine fuzz target: the peer's want slots are full, the first
        // block of a message frees one, the starved want takes it (queued in the outbox),
        // then the second block of the same message is that want's block.
        let now = Instant::now();
        let mut e = engine(Config::default().with_max_wants_per_peer(1), &[1], now);
        e.get(vec![cid(1), cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
        assert!(
            sent(&actions, &cid(2), None).is_empty(),
            "no room for the second"
        );
        let mut message = with_block(&block(1));
        message.blocks.push(block(2));
        e.handle_message(peer(1), &message, now);
        let actions = drain(&mut e);
        assert!(
            entries(&actions).is_empty(),
            "nothing left to ask: {actions:?}"
        );
        assert_eq!(e.stats().blocks_received, 2);
    }

    #[test]
    fn peers_before_1_2_0_get_want_blocks_only() {
        let now = Instant::now();
        let mut e = Engine::new(Config::default());
        e.handle_peer_connected(peer(1), Version::V1_2_0, now);
        e.handle_peer_connected(peer(2), Version::V1_1_0, now);
        e.handle_peer_connected(peer(3), Version::V1_0_0, now);
        drain(&mut e);
        e.get(vec![cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
        assert!(sent(&actions, &cid(1), Some(WantType::Have)).is_empty());
        // 1.2.0 peer refuses: an old peer is asked for the block, only one.
        e.handle_message(
            peer(1),
            &with_presence(cid(1), BlockPresenceType::DontHave),
            now,
        );
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        // It never answers: after the initial timeout the other old peer is asked.
        let deadline = now + Config::default().initial_dont_have_timeout();
        e.handle_timeout(deadline);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(3)]);
        assert!(
            entries(&actions)
                .iter()
                .all(|(_, e)| e.want_type == WantType::Block)
        );
    }

    #[test]
    fn a_full_peer_is_asked_again_when_room_frees_up() {
        let now = Instant::now();
        let config = Config::default().with_max_wants_per_peer(2);
        let mut e = engine(config, &[1], now);
        e.get((1..=4).map(cid).collect(), None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(entries(&actions).len(), 2);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::FindProviders { .. })),
            "a full peer is not a missing block"
        );
        e.handle_message(peer(1), &with_block(&block(1)), now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(3), Some(WantType::Block)), [peer(1)]);
        assert_eq!(e.peer_wants(&peer(1)).len(), 2);
    }

    #[test]
    fn providers_count_as_have_and_unknown_ones_are_dialled_once() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2], now);
        e.get(vec![cid(1)], None, now).expect("ok");
        drain(&mut e);
        e.add_providers(&cid(1), [peer(2), peer(7), peer(7)], now);
        assert_eq!(drain(&mut e), [Action::Dial { peer: peer(7) }]);
        e.add_providers(&cid(1), [peer(7)], now + ms(10));
        assert!(drain(&mut e).is_empty(), "already a provider");
        // The target refuses: the connected provider is preferred to nobody else.
        e.handle_message(
            peer(1),
            &with_presence(cid(1), BlockPresenceType::DontHave),
            now,
        );
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        e.handle_message(
            peer(2),
            &with_presence(cid(1), BlockPresenceType::DontHave),
            now,
        );
        drain(&mut e);
        // The dialled provider connects and is asked for the block at once.
        e.handle_peer_connected(peer(7), Version::V1_2_0, now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(7)]);
    }
}
