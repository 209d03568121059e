//! Queries (a set of CIDs a user waits for) and sessions (queries that share what they learn
//! about peers): their ids, state, and the engine's `get`, `cancel` and session calls.

use std::{
    collections::{HashMap, HashSet},
    fmt,
    time::Instant,
};

use cid::Cid;
use ipfs_blockstore::{Block, can_verify, multicodec::IDENTITY};
use libp2p::PeerId;

use super::{
    Engine,
    action::{Action, Event},
    timer::{Timer, TimerKey},
    want::Want,
};
use crate::hash::Set;
/// Distinct delivering peers remembered per query (for [`Progress::peers`]).
const MAX_QUERY_PEERS: usize = 256;
/// Peers remembered per session.
const MAX_SESSION_PEERS: usize = 64;

/// Identifies a query from [`Engine::get`] in its events. Unique within one [`Engine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(u64);

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query-{}", self.0)
    }
}

/// Identifies a session from [`Engine::new_session`]. Unique within one [`Engine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session-{}", self.0)
    }
}

/// Where a query stands, enough to draw a progress bar.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Blocks of the query received so far.
    pub blocks_received: usize,
    /// Distinct CIDs the query asked for.
    pub blocks_total: usize,
    /// Bytes of the blocks received so far.
    pub bytes_received: u64,
    /// Distinct peers that delivered its blocks (saturates at 256).
    pub peers: usize,
}

/// Why a query was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query asks for more CIDs than [`Config::max_cids_per_query`](super::Config).
    #[error("query of {requested} CIDs exceeds the limit of {max}")]
    TooManyCids {
        /// Distinct CIDs asked for.
        requested: usize,
        /// The limit.
        max: usize,
    },
    /// Wanting these CIDs would exceed [`Config::max_wants`](super::Config::max_wants).
    #[error("too many CIDs wanted at once (limit {max})")]
    TooManyWants {
        /// The limit.
        max: usize,
    },
    /// [`Config::max_queries`](super::Config::max_queries) queries are live already.
    #[error("too many queries at once (limit {max})")]
    TooManyQueries {
        /// The limit.
        max: usize,
    },
    /// [`Config::max_sessions`](super::Config::max_sessions) sessions have live queries.
    #[error("too many sessions with live queries (limit {max})")]
    TooManySessions {
        /// The limit.
        max: usize,
    },
    /// The session was never opened by this engine, or was closed.
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
    /// The query did not finish within [`Config::query_timeout`](super::Config::query_timeout).
    #[error("query timed out")]
    TimedOut,
    /// A CID's hash function is not one this build can compute, so no block could ever be
    /// accepted for it (the features `sha3`, `blake2b`, ... add families).
    #[error("{cid}: multihash code {code:#x} is not supported by this build")]
    UnsupportedHash {
        /// The CID.
        cid: Cid,
        /// Its multihash code.
        code: u64,
    },
}

/// A live query.
#[derive(Debug)]
pub(super) struct Query {
    pub(super) session: Option<SessionId>,
    /// CIDs not yet received.
    pub(super) remaining: Set<Cid>,
    pub(super) progress: Progress,
    /// Peers that delivered (at most [`MAX_QUERY_PEERS`]).
    peers: HashSet<PeerId>,
    pub(super) deadline: Option<TimerKey>,
}

/// A session: what its queries learnt about peers.
#[derive(Debug)]
pub(super) struct Session {
    pub(super) queries: HashSet<QueryId>,
    /// Blocks each peer delivered in this session (at most [`MAX_SESSION_PEERS`] peers).
    pub(super) peers: HashMap<PeerId, u64>,
    /// Value of the engine's query counter when last used (for forgetting the oldest).
    pub(super) last_used: u64,
}

impl Session {
    /// Notes that `peer` delivered a block.
    pub(super) fn record(&mut self, peer: PeerId) {
        let len = self.peers.len();
        match self.peers.get_mut(&peer) {
            Some(blocks) => *blocks += 1,
            None if len < MAX_SESSION_PEERS => {
                self.peers.insert(peer, 1);
            }
            None => {}
        }
    }
}

impl Engine {
    /// Opens a session: queries made with it share what they learn about peers (who delivered
    /// blocks is asked first for the next ones), as when fetching the blocks of one DAG. At
    /// most [`Config::max_sessions`](super::Config::max_sessions) are remembered; beyond it the
    /// least recently used one without live queries is forgotten.
    ///
    /// # Errors
    ///
    /// [`QueryError::TooManySessions`] if every session remembered has live queries.
    pub fn new_session(&mut self) -> Result<SessionId, QueryError> {
        let max = self.config.max_sessions();
        if self.sessions.len() >= max {
            let idle = self
                .sessions
                .iter()
                .filter(|(_, s)| s.queries.is_empty())
                .min_by_key(|(id, s)| (s.last_used, **id))
                .map(|(id, _)| *id);
            match idle {
                Some(id) => {
                    self.sessions.remove(&id);
                }
                None => return Err(QueryError::TooManySessions { max }),
            }
        }
        self.next_session += 1;
        let id = SessionId(self.next_session);
        self.sessions.insert(
            id,
            Session {
                queries: HashSet::new(),
                peers: HashMap::new(),
                last_used: self.next_query,
            },
        );
        Ok(id)
    }

    /// Closes a session: its live queries are cancelled (as with [`cancel`](Self::cancel), no
    /// event) and what it learnt is forgotten. Unknown sessions are ignored.
    pub fn close_session(&mut self, session: SessionId, now: Instant) {
        let Some(state) = self.sessions.remove(&session) else {
            return;
        };
        let mut queries: Vec<QueryId> = state.queries.into_iter().collect();
        queries.sort();
        for query in queries {
            self.remove_query(query);
        }
        self.retry_starved(now);
        self.flush();
    }

    /// Starts fetching `cids` (duplicates are asked once), in `session` if given, and returns
    /// the query's id. Each block is reported once with [`Event::BlockReceived`], followed by
    /// [`Event::Progress`]; [`Event::QueryFinished`] follows the last one. The query stays
    /// until then, until [`cancel`](Self::cancel), or until
    /// [`Config::query_timeout`](super::Config::query_timeout) if set: a block that no peer
    /// has is searched for ([`Action::FindProviders`]) and wanted again and again, never given
    /// up on by itself.
    ///
    /// Identity CIDs carry their block: they are reported at once, without asking anyone. An
    /// empty query finishes at once.
    ///
    /// # Errors
    ///
    /// Refused (nothing changes) beyond the limits of [`Config`](super::Config): CIDs per
    /// query, CIDs wanted in all, live queries; if `session` is not open; or if a CID's hash
    /// function is not one this build computes ([`QueryError::UnsupportedHash`]).
    pub fn get(
        &mut self,
        cids: Vec<Cid>,
        session: Option<SessionId>,
        now: Instant,
    ) -> Result<QueryId, QueryError> {
        if let Some(session) = session {
            let state = self
                .sessions
                .get_mut(&session)
                .ok_or(QueryError::UnknownSession(session))?;
            state.last_used = self.next_query + 1;
        }
        // Refused now rather than wanted forever: no block could ever verify.
        if let Some(cid) = cids.iter().find(|c| !can_verify(c.hash().code())) {
            return Err(QueryError::UnsupportedHash {
                cid: *cid,
                code: cid.hash().code(),
            });
        }
        let mut seen = HashSet::with_capacity(cids.len());
        let cids: Vec<Cid> = cids.into_iter().filter(|c| seen.insert(*c)).collect();
        let max = self.config.max_cids_per_query();
        if cids.len() > max {
            return Err(QueryError::TooManyCids {
                requested: cids.len(),
                max,
            });
        }
        if self.queries.len() >= self.config.max_queries() {
            return Err(QueryError::TooManyQueries {
                max: self.config.max_queries(),
            });
        }
        let new = cids
            .iter()
            .filter(|c| c.hash().code() != IDENTITY && !self.wants.contains_key(c))
            .count();
        if self.wants.len() + new > self.config.max_wants() {
            return Err(QueryError::TooManyWants {
                max: self.config.max_wants(),
            });
        }

        self.next_query += 1;
        let id = QueryId(self.next_query);
        let deadline = self.config.query_timeout().map(|timeout| {
            self.timers
                .insert(now + timeout, Timer::Query { query: id })
        });
        self.queries.insert(
            id,
            Query {
                session,
                remaining: Set::default(),
                progress: Progress {
                    blocks_total: cids.len(),
                    ..Progress::default()
                },
                peers: HashSet::new(),
                deadline,
            },
        );
        if let Some(state) = session.and_then(|s| self.sessions.get_mut(&s)) {
            state.queries.insert(id);
        }
        let mut identity = Vec::new();
        for cid in cids {
            if cid.hash().code() == IDENTITY {
                identity.push(cid);
                continue;
            }
            if let Some(query) = self.queries.get_mut(&id) {
                query.remaining.insert(cid);
            }
            if let Some(want) = self.wants.get_mut(&cid) {
                want.queries.push(id);
                continue;
            }
            let priority = self.next_priority();
            self.wants.insert(cid, Want::new(priority, id, session));
            self.start_want(cid, now);
        }
        for cid in identity {
            // An identity CID's digest is the block; `Block::new` checks it.
            let data = bytes::Bytes::copy_from_slice(cid.hash().digest());
            if let Ok(block) = Block::new(cid, data) {
                self.deliver(id, &block, None);
            }
        }
        self.finish_if_done(id);
        self.flush();
        Ok(id)
    }

    /// Cancels a query: nothing more is reported for it, and its blocks are no longer wanted
    /// unless another query wants them (cancels then go to every peer asked). Returns false if
    /// the query was not live (finished, failed, cancelled or unknown).
    pub fn cancel(&mut self, query: QueryId, now: Instant) -> bool {
        let live = self.remove_query(query);
        self.retry_starved(now);
        self.flush();
        live
    }

    /// Removes a query and releases its wants; false if it was not live.
    pub(super) fn remove_query(&mut self, id: QueryId) -> bool {
        let Some(query) = self.queries.remove(&id) else {
            return false;
        };
        self.timers.remove(query.deadline);
        if let Some(session) = query.session.and_then(|s| self.sessions.get_mut(&s)) {
            session.queries.remove(&id);
        }
        let mut cids: Vec<Cid> = query.remaining.into_iter().collect();
        cids.sort_by_key(|c| self.wants.get(c).map(|w| std::cmp::Reverse(w.priority)));
        for cid in cids {
            let Some(want) = self.wants.get_mut(&cid) else {
                continue;
            };
            want.queries.retain(|q| *q != id);
            if want.queries.is_empty() {
                self.drop_want(&cid, None);
            }
        }
        true
    }

    /// Reports `block` to query `id` (which must want it): events, progress, and the peer
    /// that delivered it.
    pub(super) fn deliver(&mut self, id: QueryId, block: &Block, from: Option<PeerId>) {
        let Some(query) = self.queries.get_mut(&id) else {
            return;
        };
        query.remaining.remove(block.cid());
        query.progress.blocks_received += 1;
        query.progress.bytes_received += block.data().len() as u64;
        if let Some(peer) = from
            && query.peers.len() < MAX_QUERY_PEERS
        {
            query.peers.insert(peer);
            query.progress.peers = query.peers.len();
        }
        let progress = query.progress;
        self.actions.push_back(Action::Event(Event::BlockReceived {
            query: id,
            block: block.clone(),
        }));
        self.actions.push_back(Action::Event(Event::Progress {
            query: id,
            progress,
        }));
    }

    /// Emits [`Event::QueryFinished`] and removes the query if it has every block.
    pub(super) fn finish_if_done(&mut self, id: QueryId) {
        if self
            .queries
            .get(&id)
            .is_some_and(|q| q.remaining.is_empty())
        {
            let query = self.queries.remove(&id).expect("checked");
            self.timers.remove(query.deadline);
            if let Some(session) = query.session.and_then(|s| self.sessions.get_mut(&s)) {
                session.queries.remove(&id);
            }
            self.actions
                .push_back(Action::Event(Event::QueryFinished { query: id }));
        }
    }

    /// The query's deadline passed: it fails.
    pub(super) fn query_timed_out(&mut self, id: QueryId, now: Instant) {
        if let Some(query) = self.queries.get_mut(&id) {
            query.deadline = None;
            self.remove_query(id);
            self.retry_starved(now);
            self.actions.push_back(Action::Event(Event::QueryFailed {
                query: id,
                error: QueryError::TimedOut,
            }));
        }
    }

    /// Where a live query stands, or `None` if it is not live.
    pub fn query_progress(&self, query: QueryId) -> Option<Progress> {
        Some(self.queries.get(&query)?.progress)
    }

    /// The CIDs a live query still waits for (empty if it is not live), in no particular order.
    pub fn query_remaining(&self, query: QueryId) -> Vec<Cid> {
        self.queries
            .get(&query)
            .map(|q| q.remaining.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The live queries, in no particular order.
    pub fn queries(&self) -> impl Iterator<Item = QueryId> + '_ {
        self.queries.keys().copied()
    }

    /// The open sessions, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.keys().copied()
    }

    /// The peers that delivered blocks in `session`, with how many each, most first (empty if
    /// the session is not open).
    pub fn session_peers(&self, session: SessionId) -> Vec<(PeerId, u64)> {
        let mut peers: Vec<(PeerId, u64)> = self
            .sessions
            .get(&session)
            .map(|s| s.peers.iter().map(|(p, n)| (*p, *n)).collect())
            .unwrap_or_default();
        peers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        peers
    }
}

#[cfg(test)]
mod tests {
    use multihash::Multihash;

    use super::*;
    use crate::client::{Config, testing::*};

    #[test]
    fn refused_queries_change_nothing() {
        let now = Instant::now();
        let config = Config::default()
            .with_max_cids_per_query(3)
            .with_max_wants(4)
            .with_max_queries(2);
        let mut e = engine(config, &[1], now);
        let too_many = (0..4).map(cid).collect();
        assert_eq!(
            e.get(too_many, None, now),
            Err(QueryError::TooManyCids {
                requested: 4,
                max: 3
            })
        );
        // Duplicates count once.
        e.get(vec![cid(0), cid(0), cid(1), cid(2)], None, now)
            .expect("3 distinct");
        assert_eq!(
            e.get(vec![cid(3), cid(4)], None, now),
            Err(QueryError::TooManyWants { max: 4 })
        );
        e.get(vec![cid(0), cid(3)], None, now)
            .expect("one new want");
        assert_eq!(
            e.get(vec![cid(0)], None, now),
            Err(QueryError::TooManyQueries { max: 2 })
        );
        drain(&mut e);
        assert_eq!(e.stats().wants, 4);
        assert_eq!(e.stats().queries, 2);
    }

    #[test]
    fn identity_cids_are_their_own_blocks() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[], now);
        let inline = Cid::new_v1(0x55, Multihash::wrap(IDENTITY, b"hi").expect("short"));
        let query = e.get(vec![inline, cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        let got = events(&actions);
        assert!(
            matches!(&got[0], Event::BlockReceived { block, .. } if block.data() == &b"hi"[..])
        );
        assert_eq!(e.query_remaining(query), [cid(1)]);
        assert_eq!(e.query_progress(query).map(|p| p.blocks_received), Some(1));
    }

    #[test]
    fn the_least_recently_used_idle_session_is_forgotten() {
        let now = Instant::now();
        let mut e = engine(Config::default().with_max_sessions(2), &[], now);
        let busy = e.new_session().expect("room");
        let idle = e.new_session().expect("room");
        e.get(vec![cid(1)], Some(busy), now).expect("ok");
        let third = e.new_session().expect("an idle one gives way");
        let mut open: Vec<SessionId> = e.sessions().collect();
        open.sort();
        assert_eq!(open, [busy, third]);
        assert_eq!(
            e.get(vec![cid(2)], Some(idle), now),
            Err(QueryError::UnknownSession(idle))
        );
        // Both remembered sessions busy: refused (found by the client_engine fuzz target).
        e.get(vec![cid(3)], Some(third), now).expect("ok");
        assert_eq!(e.new_session(), Err(QueryError::TooManySessions { max: 2 }));
        assert_eq!(e.sessions().count(), 2);
    }

    #[test]
    fn cancelling_withdraws_only_wants_no_other_query_has() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1], now);
        let a = e.get(vec![cid(1), cid(2)], None, now).expect("ok");
        let _b = e.get(vec![cid(2)], None, now).expect("ok");
        drain(&mut e);
        assert!(e.cancel(a, now));
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), None), [peer(1)]);
        assert!(sent(&actions, &cid(2), None).is_empty());
        assert!(events(&actions).is_empty(), "a cancel emits nothing");
        assert_eq!(e.wants().collect::<Vec<_>>(), [&cid(2)]);
    }
}
