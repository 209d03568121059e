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
//! 3. the expected wait, `(want-blocks in flight + 1) × latency` (an unmeasured latency counts
//!    as [`UNKNOWN_LATENCY`]), in steps of [`WAIT_STEP`]: a batch spreads over the peers that
//!    have the data, the faster ones taking more;
//! 4. peers that delivered blocks in the want's session, then peers that delivered anything;
//! 5. 1.2.0 peers before older ones (which never say DONT_HAVE, so only a timeout moves on);
//! 6. the exact expected wait, then peer id (so runs are reproducible).
//!
//! When no peer can be picked the want is *stuck*: if it is because the peers asked refused,
//! providers are searched for ([`Action::FindProviders`], rate-limited per CID); if it is
//! because peers are full (`Config::max_wants_per_peer`), it waits for room. A stuck want is
//! looked at again when a peer connects, a peer says HAVE, a provider is added, room frees up,
//! and on its search timer.

use std::{
    cmp::Reverse,
    time::{Duration, Instant},
};

use cid::Cid;
use libp2p::PeerId;

use super::{
    Engine,
    action::Action,
    peer::{Answer, Asked, BROKEN_PROMISE_PENALTY, Peer, SILENCE_PENALTY, UNWANTED_BLOCK_PENALTY},
    query::{QueryId, SessionId},
    timer::{Timer, TimerKey},
};
use crate::message::{Block, BlockPresenceType, Entry, WantType};

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
    fn helped(&self, id: &PeerId, peer: &Peer, session: Option<SessionId>) -> u8 {
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
        let mut full = false;
        let mut best = None;
        for (id, peer) in &self.peers {
            if peer.version.is_none() || peer.is_penalised(now) {
                continue;
            }
            let asked = peer.asked(&cid);
            let class = match asked.map(|a| a.answer) {
                Some(Answer::DontHave | Answer::TimedOut) => continue,
                Some(Answer::Have) => 0,
                _ if want.providers.contains(id) => 0,
                _ => 1,
            };
            if asked.is_none() && peer.asked_len() >= max_wants {
                full = true;
                continue;
            }
            let in_flight = u32::try_from(peer.blocks_in_flight()).unwrap_or(u32::MAX);
            let wait = peer
                .latency
                .unwrap_or(UNKNOWN_LATENCY)
                .max(Duration::from_millis(1))
                .saturating_mul(in_flight.saturating_add(1));
            let key = (
                class,
                peer.score < 0,
                wait.as_micros() / WAIT_STEP.as_micros(),
                self.helped(id, peer, want.session),
                !peer.supports_have(),
                wait,
                *id,
            );
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, *id));
            }
        }
        match best {
            Some((_, peer)) => {
                self.send_want(peer, cid, WantType::Block, now);
                if let Some(want) = self.wants.get_mut(&cid) {
                    want.target = Some(peer);
                    want.starved = false;
                }
            }
            None if full => self.stuck(cid, Stuck::Full, now),
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
        let timeout = self.config.dont_have_timeout(peer.latency);
        let key = self
            .timers
            .insert(now + timeout, Timer::Answer { peer: id, cid });
        let answer = match peer.asked(&cid).map(|a| a.answer) {
            Some(Answer::Have) => Answer::Have,
            _ => Answer::Pending,
        };
        let old = peer.insert_asked(
            cid,
            Asked {
                want_type,
                sent_at: now,
                answer,
                timer: Some(key),
            },
        );
        self.timers.remove(old);
        let entry = match want_type {
            WantType::Block => Entry::want_block(cid, want.priority),
            WantType::Have => Entry::want_have(cid, want.priority),
        };
        peer.outbox.push(entry);
    }

    /// A HAVE or DONT_HAVE from `peer` for `cid`. Ignored unless the want is live and the peer
    /// was asked.
    pub(super) fn on_presence(
        &mut self,
        id: PeerId,
        cid: Cid,
        presence: BlockPresenceType,
        now: Instant,
    ) {
        let (Some(want), Some(peer)) = (self.wants.get(&cid), self.peers.get_mut(&id)) else {
            return;
        };
        let Some(asked) = peer.asked(&cid).copied() else {
            return;
        };
        if asked.answer == Answer::Pending {
            peer.sample_latency(now.saturating_duration_since(asked.sent_at));
        }
        let is_target = want.target == Some(id);
        match presence {
            BlockPresenceType::Have => {
                // A HAVE'd want-have needs no deadline; a want-block now waits for its block.
                let timer = (asked.want_type == WantType::Block).then(|| {
                    let timeout = self.config.dont_have_timeout(peer.latency);
                    self.timers
                        .insert(now + timeout, Timer::Answer { peer: id, cid })
                });
                let old = peer.update_asked(&cid, |a| {
                    a.answer = Answer::Have;
                    a.timer = timer;
                });
                self.timers.remove(old.flatten());
                if !is_target {
                    self.choose_target(cid, now);
                }
            }
            BlockPresenceType::DontHave => {
                let old = peer.update_asked(&cid, |a| {
                    a.answer = Answer::DontHave;
                    a.timer = None;
                });
                self.timers.remove(old.flatten());
                if is_target {
                    self.target_lost(cid, now);
                }
                if asked.answer == Answer::Have {
                    self.penalise(id, BROKEN_PROMISE_PENALTY, now);
                }
            }
        }
    }

    /// `peer` did not answer its want for `cid` in time: a simulated DONT_HAVE. The want is
    /// sent again after `Config::resend_interval` unless answered meanwhile.
    pub(super) fn on_answer_timeout(&mut self, id: PeerId, cid: Cid, now: Instant) {
        let Some(asked) = self.peers.get(&id).and_then(|p| p.asked(&cid)).copied() else {
            return;
        };
        self.stats.timeouts += 1;
        self.mark_timed_out(id, cid, now);
        let points = if asked.answer == Answer::Have {
            BROKEN_PROMISE_PENALTY
        } else {
            SILENCE_PENALTY
        };
        self.penalise(id, points, now);
    }

    /// Treats `peer`'s want for `cid` as refused (without a real answer): it is sent again
    /// after `Config::resend_interval`, and if the peer was asked for the block the next
    /// candidate is.
    pub(super) fn mark_timed_out(&mut self, id: PeerId, cid: Cid, now: Instant) {
        let resend = self.config.resend_interval();
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(asked) = peer.asked(&cid).copied() else {
            return;
        };
        let at = (asked.sent_at + resend).max(now);
        let key = self.timers.insert(at, Timer::Resend { peer: id, cid });
        let old = peer.update_asked(&cid, |a| {
            a.answer = Answer::TimedOut;
            a.timer = Some(key);
        });
        self.timers.remove(old.flatten());
        if self.wants.get(&cid).is_some_and(|w| w.target == Some(id)) {
            self.target_lost(cid, now);
        }
    }

    /// Lowers `peer`'s score; if that leaves it out, the wants whose block it was asked for
    /// move on to the next candidate at once.
    pub(super) fn penalise(&mut self, id: PeerId, points: i32, now: Instant) {
        let duration = self.config.penalty_duration();
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let was = peer.is_penalised(now);
        peer.penalise(points, now, duration);
        if was || !peer.is_penalised(now) {
            return;
        }
        let mut targets: Vec<(Reverse<i32>, Cid)> = peer
            .asked_iter()
            .filter_map(|(cid, _)| {
                let want = self.wants.get(cid)?;
                (want.target == Some(id)).then_some((Reverse(want.priority), *cid))
            })
            .collect();
        targets.sort();
        for (_, cid) in targets {
            self.mark_timed_out(id, cid, now);
        }
    }

    /// `peer`'s want for `cid` is still unanswered after `Config::resend_interval`: send it
    /// again, in case it or its answer was lost.
    pub(super) fn on_resend(&mut self, id: PeerId, cid: Cid, now: Instant) {
        let resend = self.config.resend_interval();
        let Some(want) = self.wants.get(&cid) else {
            return;
        };
        let priority = want.priority;
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(asked) = peer.asked(&cid).copied() else {
            return;
        };
        let key = self
            .timers
            .insert(now + resend, Timer::Resend { peer: id, cid });
        peer.update_asked(&cid, |a| {
            a.sent_at = now;
            a.timer = Some(key);
        });
        peer.outbox.push(match asked.want_type {
            WantType::Block => Entry::want_block(cid, priority),
            WantType::Have => Entry::want_have(cid, priority),
        });
    }

    /// The search deadline of `cid` passed: pick a target if it has none, search providers if
    /// nobody promising was found, and set the next deadline.
    pub(super) fn on_search(&mut self, cid: Cid, now: Instant) {
        let interval = self.config.provider_search_interval();
        let Some(want) = self.wants.get_mut(&cid) else {
            return;
        };
        want.search_timer = None;
        if want.target.is_none() {
            // A starved want stays in the starved list (its flag kept) if there is still no room.
            self.choose_target(cid, now);
        }
        let Some(want) = self.wants.get(&cid) else {
            return;
        };
        let someone_has = want.asked.iter().any(|id| {
            self.peers
                .get(id)
                .and_then(|p| p.asked(&cid))
                .is_some_and(|a| a.answer == Answer::Have)
        });
        let target_delivers = want.target.is_some_and(|id| {
            self.peers
                .get(&id)
                .is_some_and(|p| self.helped(&id, p, want.session) < 2)
        });
        if !someone_has && !target_delivers {
            self.search(cid, now);
        }
        let key = self.timers.insert(now + interval, Timer::Search { cid });
        if let Some(want) = self.wants.get_mut(&cid) {
            want.search_timer = Some(key);
        }
    }

    /// A block from `from` (if known): reported to every query that wants it, counted as a
    /// duplicate if it was wanted recently, dropped and penalised otherwise.
    pub(super) fn on_block(&mut self, from: PeerId, block: &Block, now: Instant) {
        let cid = *block.cid();
        let size = block.data().len() as u64;
        let Some(want) = self.wants.get(&cid) else {
            if self.recent.contains(&cid) {
                self.stats.duplicate_blocks += 1;
                self.stats.duplicate_bytes += size;
            } else {
                self.stats.unwanted_blocks += 1;
                self.stats.unwanted_bytes += size;
                self.penalise(from, UNWANTED_BLOCK_PENALTY, now);
            }
            return;
        };
        self.stats.blocks_received += 1;
        self.stats.bytes_received += size;
        let queries = want.queries.clone();
        let session = want.session;
        if let Some(peer) = self.peers.get_mut(&from) {
            if let Some(asked) = peer.asked(&cid)
                && matches!(asked.answer, Answer::Pending | Answer::Have)
            {
                let sample = now.saturating_duration_since(asked.sent_at);
                peer.sample_latency(sample);
            }
            peer.reward();
            let mut sessions: Vec<SessionId> = queries
                .iter()
                .filter_map(|q| self.queries.get(q)?.session)
                .chain(session)
                .collect();
            sessions.sort();
            sessions.dedup();
            for s in sessions {
                if let Some(state) = self.sessions.get_mut(&s) {
                    state.record(from);
                }
            }
        }
        self.drop_want(&cid, Some(from));
        for query in queries {
            self.deliver(query, block, Some(from));
            self.finish_if_done(query);
        }
        self.retry_starved(now);
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
            if let Some(asked) = peer.remove_asked(cid) {
                self.timers.remove(asked.timer);
            }
            if Some(id) != except {
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
    use std::time::Duration;

    use super::*;
    use crate::{
        client::{Config, Event, testing::*},
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
    fn have_beats_unknown_and_dont_have_moves_on() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2, 3], now);
        e.get(vec![cid(1)], None, now).expect("ok");
        drain(&mut e);
        // Peer 3 has it, peer 2 does not answer yet; the target (1) refuses.
        e.handle_message(
            peer(3),
            &with_presence(cid(1), BlockPresenceType::Have),
            now,
        );
        assert!(
            entries(&drain(&mut e)).is_empty(),
            "one want-block at a time"
        );
        e.handle_message(
            peer(1),
            &with_presence(cid(1), BlockPresenceType::DontHave),
            now,
        );
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(3)]);
        // Peer 3 refuses too (after saying HAVE): the unknown peer 2 is next.
        e.handle_message(
            peer(3),
            &with_presence(cid(1), BlockPresenceType::DontHave),
            now,
        );
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        assert!(e.peer_score(&peer(3)).expect("known") < 0, "broken promise");
        // Peer 2 refuses: nobody has it, providers are searched for; the want stays.
        e.handle_message(
            peer(2),
            &with_presence(cid(1), BlockPresenceType::DontHave),
            now,
        );
        let actions = drain(&mut e);
        assert!(actions.contains(&Action::FindProviders { cid: cid(1) }));
        assert_eq!(e.stats().wants, 1);
    }

    #[test]
    fn a_proven_session_peer_is_asked_alone_and_refusals_go_one_by_one() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2, 3], now);
        let session = e.new_session();
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
    fn silence_is_a_dont_have_after_the_timeout_and_the_want_is_resent_after_30_s() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1], now);
        e.get(vec![cid(1)], None, now).expect("ok");
        drain(&mut e);
        let timeout = now + Duration::from_secs(2);
        // The provider search deadline (1 s) comes first: nobody said HAVE.
        assert_eq!(e.poll_timeout(), Some(now + Duration::from_secs(1)));
        e.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(drain(&mut e), [Action::FindProviders { cid: cid(1) }]);
        assert_eq!(e.poll_timeout(), Some(timeout));
        e.handle_timeout(timeout);
        drain(&mut e);
        assert_eq!(e.stats().timeouts, 1);
        let resend = now + Duration::from_secs(30);
        e.handle_timeout(resend - ms(1));
        assert!(entries(&drain(&mut e)).is_empty());
        e.handle_timeout(resend);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
    }

    #[test]
    fn a_block_cancels_the_want_everywhere_else_and_late_copies_are_duplicates() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2, 3], now);
        let query = e.get(vec![cid(1)], None, now).expect("ok");
        drain(&mut e);
        e.handle_message(peer(2), &with_block(&block(1)), now + ms(5));
        let actions = drain(&mut e);
        let mut cancelled = sent(&actions, &cid(1), None);
        cancelled.sort();
        assert_eq!(cancelled, [peer(1), peer(3)]);
        assert_eq!(
            events(&actions),
            [
                Event::BlockReceived {
                    query,
                    block: block(1)
                },
                Event::Progress {
                    query,
                    progress: crate::client::Progress {
                        blocks_received: 1,
                        blocks_total: 1,
                        bytes_received: block(1).data().len() as u64,
                        peers: 1,
                    }
                },
                Event::QueryFinished { query },
            ]
        );
        assert_eq!(e.peer_latency(&peer(2)), Some(ms(5)));
        e.handle_message(peer(1), &with_block(&block(1)), now + ms(6));
        assert!(drain(&mut e).is_empty(), "a duplicate is not reported");
        let stats = e.stats();
        assert_eq!((stats.duplicate_blocks, stats.unwanted_blocks), (1, 0));
        assert_eq!(
            e.peer_score(&peer(1)),
            Some(0),
            "duplicates are not penalised"
        );
    }

    #[test]
    fn unwanted_blocks_are_dropped_and_penalised_until_the_peer_is_left_out() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2], now);
        e.get(vec![cid(1)], None, now).expect("ok");
        drain(&mut e);
        e.handle_message(peer(1), &with_block(&block(99)), now);
        assert!(events(&drain(&mut e)).is_empty());
        assert_eq!(e.stats().unwanted_blocks, 1);
        assert!(!e.is_penalised(&peer(1), now));
        e.handle_message(peer(1), &with_block(&block(98)), now);
        // Penalised: the want it was the target of moves to peer 2 at once.
        let actions = drain(&mut e);
        assert!(e.is_penalised(&peer(1), now));
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        e.get(vec![cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert!(sent(&actions, &cid(2), Some(WantType::Block)).contains(&peer(2)));
        assert!(!entries(&actions).iter().any(|(p, _)| *p == peer(1)));
        let later = now + Config::default().penalty_duration();
        assert!(!e.is_penalised(&peer(1), later));
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
