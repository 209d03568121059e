//! The client engine's consistency checks, for tests and fuzzing.

use std::collections::{HashMap, HashSet};

use super::{
    Engine,
    engine::{MAX_DIALS, REMEMBERED_PEERS},
    timer::Timer,
    want::Context,
};

impl Engine {
    /// Checks the engine's internal consistency and bounds, in O(state). For tests and
    /// fuzzing; returns a description of the first violation found.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let c = &self.config;
        if self.wants.len() > c.max_wants() || self.queries.len() > c.max_queries() {
            return Err("too many wants or queries".into());
        }
        if self.sessions.len() > c.max_sessions() {
            return Err("too many sessions".into());
        }
        let mut timed = 0;
        for (cid, want) in &self.wants {
            if want.queries.is_empty() {
                return Err(format!("{cid}: wanted by no query"));
            }
            for q in &want.queries {
                if !self
                    .queries
                    .get(q)
                    .is_some_and(|q| q.remaining.contains(cid))
                {
                    return Err(format!("{cid}: {q} does not wait for it"));
                }
            }
            if want.providers.len() > c.max_providers_per_want() {
                return Err(format!("{cid}: too many providers"));
            }
            for p in &want.asked {
                if self.peers.get(p).is_none_or(|s| s.asked(cid).is_none()) {
                    return Err(format!("{cid}: {p} listed as asked but holds no want"));
                }
            }
            if let Some(target) = want.target {
                let asked = self.peers.get(&target).and_then(|p| p.asked(cid));
                if !asked.is_some_and(|a| a.loads()) {
                    return Err(format!("{cid}: target {target} is not loading it"));
                }
            }
            timed += usize::from(want.search_timer.is_some());
        }
        for (id, query) in &self.queries {
            for cid in &query.remaining {
                if !self.wants.get(cid).is_some_and(|w| w.queries.contains(id)) {
                    return Err(format!("{id}: {cid} not wanted"));
                }
            }
            timed += usize::from(query.deadline.is_some());
        }
        let mut gone = 0;
        for (id, peer) in &self.peers {
            if peer.version.is_none() {
                gone += 1;
                if peer.asked_len() > 0 {
                    return Err(format!("{id}: disconnected but holds wants"));
                }
            }
            if !peer.outbox.is_empty() {
                return Err(format!("{id}: outbox not flushed"));
            }
            if peer.asked_len() > c.max_wants_per_peer() {
                return Err(format!("{id}: {} wants", peer.asked_len()));
            }
            let loading = peer.asked_iter().filter(|(_, a)| a.loads()).count();
            if loading != peer.blocks_in_flight() {
                return Err(format!("{id}: blocks in flight miscounted"));
            }
            for (cid, asked) in peer.asked_iter() {
                if !self.wants.get(cid).is_some_and(|w| w.asked.contains(id)) {
                    return Err(format!("{id}: holds {cid}, not listed"));
                }
                timed += usize::from(asked.timer.is_some());
            }
        }
        if self.recent_searches.len() > c.max_provider_searches() {
            return Err("too many provider searches remembered".into());
        }
        if gone > REMEMBERED_PEERS || self.dials.len() > MAX_DIALS {
            return Err("too many remembered peers or dials".into());
        }
        if timed != self.timers.len() {
            return Err(format!("{} timers for {timed} owners", self.timers.len()));
        }
        for (key, timer) in self.timers.iter() {
            let owner = match timer {
                Timer::Answer { peer, cid } | Timer::Resend { peer, cid } => self
                    .peers
                    .get(peer)
                    .and_then(|p| p.asked(cid))
                    .and_then(|a| a.timer),
                Timer::Search { cid } => self.wants.get(cid).and_then(|w| w.search_timer),
                Timer::Query { query } => self.queries.get(query).and_then(|q| q.deadline),
            };
            if owner != Some(*key) {
                return Err(format!("orphan timer {timer:?}"));
            }
        }
        let mut eager: HashMap<Context, usize> = HashMap::new();
        for want in self.wants.values().filter(|w| w.eager) {
            *eager.entry(want.context).or_default() += 1;
        }
        if eager != self.discovering {
            return Err("discovery counts out of step".into());
        }
        if self.starved.len() > self.wants.len() {
            return Err("starved list longer than the wants".into());
        }
        let mut listed = HashSet::new();
        if let Some(twice) = self.starved.iter().find(|cid| !listed.insert(**cid)) {
            return Err(format!("{twice} listed twice as starved"));
        }
        for (cid, want) in &self.wants {
            if want.starved && !listed.contains(cid) {
                return Err(format!("starved want {cid} not listed"));
            }
        }
        Ok(())
    }
}
