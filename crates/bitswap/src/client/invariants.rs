//! The client engine's consistency checks across its parts, for tests and fuzzing. Each part
//! checks its own state; what is checked here is how they refer to each other.

use super::{
    Config, action::Actions, peer::Peers, query::Queries, timer::Timer, timer::Timers, want::Wants,
};

/// Checks the parts' consistency and bounds, in O(state); returns a description of the
/// first violation found.
pub(super) fn check(
    c: &Config,
    wants: &Wants,
    peers: &Peers,
    queries: &Queries,
    timers: &Timers,
    actions: &Actions,
) -> Result<(), String> {
    if wants.len() > c.max_wants() || queries.len() > c.max_queries() {
        return Err("too many wants or queries".into());
    }
    if queries.sessions_len() > c.max_sessions() {
        return Err("too many sessions".into());
    }
    let mut timed = 0;
    for (cid, want) in wants.iter() {
        if want.queries.is_empty() {
            return Err(format!("{cid}: wanted by no query"));
        }
        for q in &want.queries {
            if !queries.get(q).is_some_and(|q| q.remaining.contains(cid)) {
                return Err(format!("{cid}: {q} does not wait for it"));
            }
        }
        if want.providers.len() > c.max_providers_per_want() {
            return Err(format!("{cid}: too many providers"));
        }
        for p in &want.asked {
            if peers.get(p).is_none_or(|s| s.asked(cid).is_none()) {
                return Err(format!("{cid}: {p} listed as asked but holds no want"));
            }
        }
        if let Some(target) = want.target {
            let asked = peers.get(&target).and_then(|p| p.asked(cid));
            if !asked.is_some_and(|a| a.loads()) {
                return Err(format!("{cid}: target {target} is not loading it"));
            }
        }
        timed += usize::from(want.search_timer.is_some());
    }
    for (id, query) in queries.iter() {
        for cid in &query.remaining {
            if !wants.get(cid).is_some_and(|w| w.queries.contains(id)) {
                return Err(format!("{id}: {cid} not wanted"));
            }
        }
        timed += usize::from(query.deadline.is_some()) + usize::from(query.stranded.is_some());
    }
    peers.check(c)?;
    for (id, peer) in peers.iter() {
        for (cid, asked) in peer.asked_iter() {
            if !wants.get(cid).is_some_and(|w| w.asked.contains(id)) {
                return Err(format!("{id}: holds {cid}, not listed"));
            }
            timed += usize::from(asked.timer.is_some());
        }
    }
    if actions.searches_remembered() > c.max_provider_searches() {
        return Err("too many provider searches remembered".into());
    }
    if timed != timers.len() {
        return Err(format!("{} timers for {timed} owners", timers.len()));
    }
    for (key, timer) in timers.iter() {
        let owner = match timer {
            Timer::Answer { peer, cid } | Timer::Resend { peer, cid } => peers
                .get(peer)
                .and_then(|p| p.asked(cid))
                .and_then(|a| a.timer),
            Timer::Search { cid } => wants.get(cid).and_then(|w| w.search_timer),
            Timer::Query { query } => queries.get(query).and_then(|q| q.deadline),
            Timer::NoPeers { query } => queries
                .get(query)
                .and_then(|q| q.stranded.map(|(key, _)| key)),
        };
        if owner != Some(*key) {
            return Err(format!("orphan timer {timer:?}"));
        }
    }
    wants.check()
}
