//! What peers' answers change: presences, blocks, silence (simulated DONT_HAVE), resends,
//! provider search deadlines, and penalties.

use std::{cmp::Reverse, time::Instant};

use cid::Cid;
use ipfs_blockstore::Block;
use libp2p::PeerId;

use super::{
    Engine,
    peer::{Answer, BROKEN_PROMISE_PENALTY, SILENCE_PENALTY, UNWANTED_BLOCK_PENALTY},
    query::SessionId,
    timer::Timer,
};
use crate::message::{BlockPresenceType, Entry, WantType};

impl Engine {
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
        // Only a want's first answer shows the peer at work: a peer repeating HAVE would
        // otherwise keep every want-block it holds from ever timing out.
        if asked.answer == Answer::Pending {
            let sample = now.saturating_duration_since(asked.sent_at);
            peer.sample_latency(sample);
            peer.link.heard(now);
            if asked.first {
                peer.link.round_trip(sample);
            }
        }
        let is_target = want.target == Some(id);
        match presence {
            BlockPresenceType::Have => {
                // A HAVE'd want-have needs no deadline; a want-block now waits for its block.
                let timer = (asked.want_type == WantType::Block).then(|| {
                    let timeout = self.config.silence_timeout(&peer.link);
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
        let due = peer
            .link
            .due(asked.sent_at, self.config.silence_timeout(&peer.link));
        if due > now {
            let key = self.timers.insert(due, Timer::Answer { peer: id, cid });
            peer.update_asked(&cid, |a| a.timer = Some(key));
            return;
        }
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
            if let Some(asked) = peer.asked(&cid).copied() {
                let sample = now.saturating_duration_since(asked.sent_at);
                if matches!(asked.answer, Answer::Pending | Answer::Have) {
                    peer.sample_latency(sample);
                }
                if asked.first && asked.answer == Answer::Pending {
                    peer.link.round_trip(sample);
                }
                peer.link.heard(now);
                peer.link.delivered(size, now);
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        client::{Action, Config, Event, testing::*},
        message::BlockPresenceType,
    };

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
    fn a_peer_still_delivering_keeps_its_wants_but_repeated_haves_do_not() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2], now);
        e.get(vec![cid(1), cid(2), cid(3)], None, now).expect("ok");
        drain(&mut e);
        let at_1: Vec<Cid> = e.peer_wants(&peer(1)).iter().map(|w| w.cid).collect();
        assert!(at_1.len() >= 2, "{at_1:?}");
        // Peer 1 answers its first want after 50 ms, then nothing: its other wants time out a
        // silence timeout (100 ms + 3 x its 50 ms round trip) after that answer, not after
        // they were sent.
        let first = at_1[0];
        let i = (1..=3).find(|i| cid(*i) == first).expect("one of ours");
        e.handle_message(peer(1), &with_block(&block(i)), now + ms(50));
        drain(&mut e);
        let timeout = e.config().min_dont_have_timeout() + ms(50 * 3);
        e.handle_timeout(now + ms(50) + timeout - ms(1));
        drain(&mut e);
        assert_eq!(e.stats().timeouts, 0, "still within its silence timeout");
        e.handle_timeout(now + Duration::from_secs(3));
        drain(&mut e);
        assert!(e.stats().timeouts > 0);
        // A peer that repeats HAVE for a want-have is not at work on our wants: only its
        // first answer counts (else it could hold its want-blocks forever).
        let mut e = engine(Config::default(), &[1, 2], now);
        e.get(vec![cid(1), cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Have)), [peer(2)]);
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(2)]);
        for k in 1..100 {
            e.handle_message(
                peer(2),
                &with_presence(cid(1), BlockPresenceType::Have),
                now + ms(10 * k),
            );
            drain(&mut e);
        }
        let link = &e.peers[&peer(2)].link;
        assert_eq!(link.due(now, ms(100)), now + ms(10) + ms(100));
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
}
