//! [`Wants`]: the CIDs the client wants, each with the peers asked for it, its target and its
//! providers; the wants waiting for room at a peer; the wants broadcast for discovery; the
//! CIDs wanted recently. Which peers are asked, and when, is the strategy's (`strategy.rs`).

use std::{
    collections::{HashMap, VecDeque},
    time::Instant,
};

use cid::Cid;
use libp2p::PeerId;

use super::{
    id::{QueryId, Scope, SessionId},
    timer::TimerKey,
};
use crate::map::{Map, Set};

/// CIDs remembered after they stop being wanted, so that late copies count as duplicates
/// rather than as unwanted blocks.
const RECENT_CIDS: usize = 4096;

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
    /// Whose knowledge of peers applies.
    pub(super) scope: Scope,
    /// Want-haves were broadcast for it (peers connecting later are sent one too).
    pub(super) broadcasting: bool,
    /// In the starved list, waiting for room at a peer.
    starved: bool,
    /// Broadcast at its start for discovery: counted in `Wants::discovering`.
    eager: bool,
}

impl Want {
    fn new(priority: i32, query: QueryId, session: Option<SessionId>) -> Self {
        Self {
            priority,
            queries: vec![query],
            session,
            asked: Vec::new(),
            target: None,
            providers: Vec::new(),
            last_search: None,
            search_timer: None,
            scope: session.map_or(Scope::Query(query), Scope::Session),
            broadcasting: false,
            starved: false,
            eager: false,
        }
    }

    /// Whether it waits for room at a peer.
    pub(super) fn is_starved(&self) -> bool {
        self.starved
    }
}

/// The wanted CIDs. Owns three lists kept in step with them: the starved list holds each
/// want waiting for room once, oldest first; the discovery counts are the wants broadcast
/// at their start, per scope, with no zero entries; the last [`RECENT_CIDS`] CIDs that
/// stopped being wanted are remembered.
#[derive(Debug)]
pub(super) struct Wants {
    wants: Map<Cid, Want>,
    /// Wants waiting for room at a peer (see `Want::starved`), oldest first.
    starved: VecDeque<Cid>,
    /// Wants broadcast at their start, per scope; no zero entries.
    discovering: HashMap<Scope, usize>,
    recent: Recent,
    next_priority: i32,
}

impl Default for Wants {
    fn default() -> Self {
        Self {
            wants: Map::default(),
            starved: VecDeque::new(),
            discovering: HashMap::new(),
            recent: Recent::default(),
            next_priority: i32::MAX,
        }
    }
}

impl Wants {
    pub(super) fn get(&self, cid: &Cid) -> Option<&Want> {
        self.wants.get(cid)
    }

    pub(super) fn get_mut(&mut self, cid: &Cid) -> Option<&mut Want> {
        self.wants.get_mut(cid)
    }

    pub(super) fn contains(&self, cid: &Cid) -> bool {
        self.wants.contains_key(cid)
    }

    pub(super) fn len(&self) -> usize {
        self.wants.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Cid, &Want)> {
        self.wants.iter()
    }

    /// A new want for `cid`, for `query` (in `session`), with the next priority.
    pub(super) fn insert(&mut self, cid: Cid, query: QueryId, session: Option<SessionId>) {
        let priority = self.next_priority();
        self.wants.insert(cid, Want::new(priority, query, session));
    }

    /// The priority of the next new want: decreasing, so peers serve wants in the order they
    /// were made (as boxo); wraps back to the top before reaching 0.
    fn next_priority(&mut self) -> i32 {
        let priority = self.next_priority;
        self.next_priority = if priority <= 1 {
            i32::MAX
        } else {
            priority - 1
        };
        priority
    }

    /// Forgets a want (out of the starved list and the discovery counts) and remembers its
    /// CID as recently wanted; returns it.
    pub(super) fn remove(&mut self, cid: &Cid) -> Option<Want> {
        let want = self.wants.remove(cid)?;
        if want.starved {
            self.starved.retain(|c| c != cid);
        }
        if want.eager
            && let Some(n) = self.discovering.get_mut(&want.scope)
        {
            *n -= 1;
            if *n == 0 {
                self.discovering.remove(&want.scope);
            }
        }
        self.recent.insert(*cid);
        Some(want)
    }

    /// Whether `cid` stopped being wanted recently.
    pub(super) fn was_recent(&self, cid: &Cid) -> bool {
        self.recent.contains(cid)
    }

    /// Wants of `scope` broadcast at their start.
    pub(super) fn discovering(&self, scope: Scope) -> usize {
        self.discovering.get(&scope).copied().unwrap_or(0)
    }

    /// Counts the want as broadcast at its start for discovery.
    pub(super) fn mark_eager(&mut self, cid: &Cid) {
        if let Some(want) = self.wants.get_mut(cid)
            && !want.eager
        {
            want.eager = true;
            *self.discovering.entry(want.scope).or_default() += 1;
        }
    }

    /// Lists the want as waiting for room, unless it is already.
    pub(super) fn starve(&mut self, cid: Cid) {
        if let Some(want) = self.wants.get_mut(&cid)
            && !want.starved
        {
            want.starved = true;
            self.starved.push_back(cid);
        }
    }

    /// Takes the want out of the starved list: it found room.
    pub(super) fn unstarve(&mut self, cid: &Cid) {
        if let Some(want) = self.wants.get_mut(cid)
            && want.starved
        {
            want.starved = false;
            self.starved.retain(|c| c != cid);
        }
    }

    /// Entries in the starved list.
    pub(super) fn starved_len(&self) -> usize {
        self.starved.len()
    }

    /// Takes the oldest entry of the starved list: its CID, and whether it was still a
    /// starved want (its flag is then cleared).
    pub(super) fn pop_starved(&mut self) -> Option<(Cid, bool)> {
        let cid = self.starved.pop_front()?;
        let starved = match self.wants.get_mut(&cid) {
            Some(want) => std::mem::replace(&mut want.starved, false),
            None => false,
        };
        Some((cid, starved))
    }

    /// Drops the entries of the starved list whose want found room meanwhile.
    pub(super) fn prune_starved(&mut self) {
        let wants = &self.wants;
        self.starved
            .retain(|c| wants.get(c).is_some_and(|w| w.starved));
    }

    /// Checks the starved list and the discovery counts against the wants.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn check(&self) -> Result<(), String> {
        let mut eager: HashMap<Scope, usize> = HashMap::new();
        for want in self.wants.values().filter(|w| w.eager) {
            *eager.entry(want.scope).or_default() += 1;
        }
        if eager != self.discovering {
            return Err("discovery counts out of step".into());
        }
        if self.starved.len() > self.wants.len() {
            return Err("starved list longer than the wants".into());
        }
        let mut listed = std::collections::HashSet::new();
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

/// The last [`RECENT_CIDS`] CIDs that stopped being wanted.
#[derive(Debug, Default)]
struct Recent {
    order: VecDeque<Cid>,
    set: Set<Cid>,
}

impl Recent {
    fn insert(&mut self, cid: Cid) {
        if self.set.insert(cid) {
            self.order.push_back(cid);
            if self.order.len() > RECENT_CIDS
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    fn contains(&self, cid: &Cid) -> bool {
        self.set.contains(cid)
    }
}
