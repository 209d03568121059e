//! [`Strategy`]: which peers are asked for a wanted CID, how, and what their answers change.
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
//!    in flight there at its measured rate (an unmeasured round trip counts as the smallest
//!    one measured among the connected peers, or [`UNKNOWN_LATENCY`] if none is; before its
//!    rate is measured a peer is taken to deliver its window per round trip), in steps of
//!    [`WAIT_STEP`]: a batch spreads over the peers that have the data, the faster ones
//!    taking more;
//! 4. peers that delivered blocks in the want's session, then peers that delivered anything;
//! 5. 1.2.0 peers before older ones (which never say DONT_HAVE, so only a timeout moves on);
//! 6. the exact expected wait, then peer id (so runs are reproducible).
//!
//! A peer is only asked while its want-blocks in flight are fewer than its *window* (see
//! `link.rs`: what it delivers in half a second, or twice its bandwidth-delay product,
//! once measured; `Config::initial_window_bytes` before). When the best-ranked peer is at
//! its window the want waits in the client for its room rather than go to a peer expected to
//! deliver later (a peer with room expected no later, and ranked no lower by what it said,
//! takes it), so wants go to peers in proportion to their rates.
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
    Config,
    action::Actions,
    id::{Scope, SessionId},
    peer::{Answer, Asked, BROKEN_PROMISE_PENALTY, Peer, Peers, SILENCE_PENALTY},
    query::Queries,
    timer::{Timer, Timers},
    want::Wants,
};
use crate::message::{BlockPresenceType, Entry, WantType};

/// Wants of one session (or one query without session) broadcast at their start while no
/// peer is proven for them.
const DISCOVERY_WANTS: usize = 1;
/// Latency assumed for a peer whose latency was never measured, when ranking targets and no
/// connected peer's is.
const UNKNOWN_LATENCY: Duration = Duration::from_millis(100);
/// Differences of expected wait below this do not matter when ranking targets (helpfulness
/// decides first).
const WAIT_STEP: Duration = Duration::from_millis(50);

/// How a peer ranks as a want-block's target, best (smallest) first: the order of the
/// module docs, field by field.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    penalised: bool,
    /// 0 for a peer known to have the block, 1 for one that may.
    class: u8,
    negative_score: bool,
    /// The expected wait in steps of [`WAIT_STEP`].
    wait_steps: u128,
    /// [`Strategy::helped`].
    helped: u8,
    no_have: bool,
    wait: Duration,
    peer: PeerId,
}

impl Rank {
    /// What the peer said and how it was treated: penalty, class and score.
    fn standing(&self) -> (bool, u8, bool) {
        (self.penalised, self.class, self.negative_score)
    }
}

/// Why no target could be picked.
enum Stuck {
    /// Some peer could be asked if it had room.
    Full,
    /// No connected peer may have it.
    NoPeer,
}

/// The engine's parts the strategy moves between, borrowed for one input: the wants and the
/// peers, whose `asked` lists it keeps in step (a want lists exactly the peers that hold an
/// `Asked` entry for it, and its target is loading it), the deadlines of what it asks, the
/// actions it emits, and what sessions learnt (read only).
pub(super) struct Strategy<'a> {
    config: &'a Config,
    wants: &'a mut Wants,
    peers: &'a mut Peers,
    queries: &'a Queries,
    timers: &'a mut Timers,
    actions: &'a mut Actions,
}

impl<'a> Strategy<'a> {
    pub(super) fn new(
        config: &'a Config,
        wants: &'a mut Wants,
        peers: &'a mut Peers,
        queries: &'a Queries,
        timers: &'a mut Timers,
        actions: &'a mut Actions,
    ) -> Self {
        Self {
            config,
            wants,
            peers,
            queries,
            timers,
            actions,
        }
    }

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
        let scope = want.scope;
        let proven = want.target.is_some_and(|t| self.proven(&t, scope));
        if !proven && self.wants.discovering(scope) < DISCOVERY_WANTS {
            self.wants.mark_eager(&cid);
            self.broadcast(cid, now);
        }
    }

    /// Whether `peer` delivered blocks in `scope` (any block, for a query scope).
    fn proven(&self, peer: &PeerId, scope: Scope) -> bool {
        match scope {
            Scope::Session(s) => self.queries.delivered_in(s, peer),
            Scope::Query(_) => self.peers.get(peer).is_some_and(|p| p.useful > 0),
        }
    }

    /// The want's target is gone (refused, silent, left, penalised): the next candidate is
    /// asked for the block, and want-haves are broadcast unless a connected peer is proven in
    /// the want's scope (then candidates are tried one after the other, which costs no
    /// duplicate of small blocks and measured no slower with three peers).
    pub(super) fn target_lost(&mut self, cid: Cid, now: Instant) {
        let Some(want) = self.wants.get_mut(&cid) else {
            return;
        };
        want.target = None;
        let scope = want.scope;
        self.choose_target(cid, now);
        if !self.scope_proven(scope) {
            self.broadcast(cid, now);
        }
    }

    /// Whether a connected peer delivered blocks in `scope`.
    fn scope_proven(&self, scope: Scope) -> bool {
        self.peers
            .iter()
            .any(|(id, p)| p.version.is_some() && self.proven(id, scope))
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
        let in_session = session.is_some_and(|s| self.queries.delivered_in(s, id));
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
        // The tail of the fetch: the wants waiting for room would all fit in what the queue
        // horizon adds to the windows. Those windows then shrink to a few round trips'
        // worth, so that the last wants go out when little waits at each peer and the peers
        // finish together. With one peer there is nothing to even out.
        let tail = self.wants.starved_len() < self.horizon_blocks(initial_window, max_wants);
        let mut best = None;
        let mut room = None;
        // A peer whose round trip is not measured yet is taken to be as near as the nearest
        // measured one: ranked behind a full peer by a guess, it would stay idle while that
        // peer's queue drains.
        let unknown = self
            .peers
            .iter()
            .filter(|(_, p)| p.version.is_some())
            .filter_map(|(_, p)| p.link.min_rtt())
            .min()
            .unwrap_or(UNKNOWN_LATENCY);
        // A penalty only ranks a peer last: with no other candidate a penalised peer is still
        // asked, or a lone slow peer would stall every new want for `penalty_duration`.
        for (id, peer) in self.peers.iter() {
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
            let window = peer.link.window(initial_window, max_wants, tail);
            // A full peer still ranks, with its queue: if it would deliver first, the want
            // waits for its room rather than go to a slower peer.
            let is_full = (asked.is_none() && peer.asked_len() >= max_wants)
                || peer.blocks_in_flight() >= window;
            let wait = peer
                .link
                .expected_wait(peer.blocks_in_flight(), window, unknown)
                .max(Duration::from_millis(1));
            let key = Rank {
                penalised: peer.is_penalised(now),
                class,
                negative_score: peer.score < 0,
                wait_steps: wait.as_micros() / WAIT_STEP.as_micros(),
                helped: self.helped(id, peer, want.session),
                no_have: !peer.supports_have(),
                wait,
                peer: *id,
            };
            if !is_full && room.as_ref().is_none_or(|(k, _)| key < *k) {
                room = Some((key, *id));
            }
            if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                best = Some((key, *id, is_full));
            }
        }
        // The best peer is full, but one with room is no worse in what it said and expected to
        // deliver no later, to a `WAIT_STEP` as in the ranking: it takes the want now rather
        // than let it wait for room. (A full peer's wait leaves out its wait for room; compared
        // finer, a peer measured a millisecond farther would stay idle while the others fill.)
        if let (Some((full, _, true)), Some((open, peer))) = (&best, &room)
            && open.standing() <= full.standing()
            && open.wait_steps <= full.wait_steps
        {
            best = Some((*open, *peer, false));
        }
        match best {
            Some((_, _, true)) => self.stuck(cid, Stuck::Full, now),
            Some((_, peer, false)) => {
                self.send_want(peer, cid, WantType::Block, now);
                if let Some(want) = self.wants.get_mut(&cid) {
                    want.target = Some(peer);
                    // Found room while listed (a search deadline retried it): unlist it, or
                    // it could be listed twice when it starves again.
                    self.wants.unstarve(&cid);
                }
            }
            None => self.stuck(cid, Stuck::NoPeer, now),
        }
    }

    /// Want-blocks that the queue horizon adds to the windows of the connected peers (see
    /// [`Link::window`](super::link::Link::window)); none unless it adds some to two peers or
    /// more.
    fn horizon_blocks(&self, initial_window: u64, max_wants: usize) -> usize {
        let (peers, blocks) = self
            .peers
            .iter()
            .filter(|(_, p)| p.version.is_some())
            .map(|(_, p)| {
                let full = p.link.window(initial_window, max_wants, false);
                full.saturating_sub(p.link.window(initial_window, max_wants, true))
            })
            .filter(|&extra| extra > 0)
            .fold((0, 0), |(peers, blocks), extra| (peers + 1, blocks + extra));
        if peers < 2 { 0 } else { blocks }
    }

    fn stuck(&mut self, cid: Cid, why: Stuck, now: Instant) {
        match why {
            Stuck::Full => self.wants.starve(cid),
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
        let max = self.config.max_provider_searches();
        if !self.actions.find_providers(cid, now, interval, max) {
            // Over the budget: the want's search deadline tries again.
            return;
        }
        want.last_search = Some(now);
    }

    /// Retries wants that waited for room at a peer, in the order they started waiting.
    pub(super) fn retry_starved(&mut self, now: Instant) {
        for _ in 0..self.wants.starved_len() {
            let Some((cid, starved)) = self.wants.pop_starved() else {
                break;
            };
            if !starved {
                continue;
            }
            self.choose_target(cid, now);
            if self.wants.get(&cid).is_some_and(|w| w.is_starved()) {
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
        let timeout = self.config.silence_timeout(peer, want_type);
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
        self.wants.prune_starved();
    }

    /// A HAVE or DONT_HAVE from `peer` for `cid`, in a message that began to arrive at
    /// `began`. Ignored unless the want is live and the peer was asked.
    pub(super) fn on_presence(
        &mut self,
        id: PeerId,
        cid: Cid,
        presence: BlockPresenceType,
        began: Instant,
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let (Some(want), Some(asked)) = (self.wants.get(&cid), peer.asked(&cid).copied()) else {
            peer.late_answer(&cid, began, now);
            return;
        };
        // Only a want's first answer shows the peer at work: a peer repeating HAVE would
        // otherwise keep every want-block it holds from ever timing out.
        if asked.answer == Answer::Pending {
            let sample = now.saturating_duration_since(asked.sent_at);
            peer.sample_latency(sample);
            peer.link.heard(now);
            if asked.first {
                peer.link.answered(asked.sent_at, began, now);
            }
        }
        let is_target = want.target == Some(id);
        match presence {
            BlockPresenceType::Have => {
                // A HAVE'd want-have needs no deadline; a want-block now waits for its block.
                let timer = (asked.want_type == WantType::Block).then(|| {
                    let timeout = self.config.silence_timeout(peer, WantType::Block);
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

    /// The answer deadline of `peer`'s want for `cid` passed. If the peer answered anything
    /// since, the deadline moves to a silence timeout after that answer: a peer still
    /// delivering is not judged by the length of its queue. Otherwise it is a simulated
    /// DONT_HAVE, with a small penalty.
    pub(super) fn on_answer_timeout(&mut self, id: PeerId, cid: Cid, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(asked) = peer.asked(&cid).copied() else {
            return;
        };
        let due = peer.link.due(
            asked.sent_at,
            self.config.silence_timeout(peer, asked.want_type),
        );
        if due > now {
            let key = self.timers.insert(due, Timer::Answer { peer: id, cid });
            peer.update_asked(&cid, |a| a.timer = Some(key));
            return;
        }
        self.actions.count().timeouts += 1;
        self.mark_timed_out(id, cid, now);
        let points = if asked.answer == Answer::Have {
            BROKEN_PROMISE_PENALTY
        } else {
            SILENCE_PENALTY
        };
        self.penalise(id, points, now);
    }

    /// Treats `peer`'s want for `cid` as refused (without a real answer): it is sent again
    /// after `Config::resend_interval`. If the peer was asked for the block, the next
    /// candidate is; when there is one, the want is withdrawn from this peer (a cancel), so
    /// that a late peer does not send the block as well, and it is sent again only if the
    /// want has no target when the resend is due.
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
        if self.wants.get(&cid).is_none_or(|w| w.target != Some(id)) {
            return;
        }
        self.target_lost(cid, now);
        let moved = self
            .wants
            .get(&cid)
            .is_some_and(|w| w.target.is_some_and(|t| t != id));
        if moved && let Some(peer) = self.peers.get_mut(&id) {
            // The resend deadline stays: if every other candidate fails too, this peer is
            // asked again then (the want or its answer may have been lost).
            peer.update_asked(&cid, |a| a.answer = Answer::Withdrawn);
            peer.outbox.push(Entry::cancel(cid));
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
    /// again, in case it or its answer was lost, unless the peer answered anything within the
    /// interval (then it is still at work on our wants: the deadline moves).
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
        let due = peer.link.due(asked.sent_at, resend);
        let elsewhere = asked.answer == Answer::Withdrawn && want.target.is_some();
        if due > now || elsewhere {
            let at = if elsewhere { now + resend } else { due };
            let key = self.timers.insert(at, Timer::Resend { peer: id, cid });
            peer.update_asked(&cid, |a| a.timer = Some(key));
            return;
        }
        let key = self
            .timers
            .insert(now + resend, Timer::Resend { peer: id, cid });
        peer.update_asked(&cid, |a| {
            a.sent_at = now;
            a.first = false;
            a.timer = Some(key);
            if a.answer == Answer::Withdrawn {
                a.answer = Answer::TimedOut;
            }
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
}
