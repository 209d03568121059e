//! [`Queries`]: queries (a set of CIDs a user waits for) and sessions (queries that share
//! what they learn about peers).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use cid::Cid;
use ipfs_blockstore::Block;
use libp2p::PeerId;

use super::{
    action::{Actions, Event},
    id::{Progress, QueryError, QueryId, SessionId},
    timer::{Timer, TimerKey, Timers},
};
use crate::map::Set;

/// Distinct delivering peers remembered per query (for [`Progress::peers`]).
const MAX_QUERY_PEERS: usize = 256;
/// Peers remembered per session.
const MAX_SESSION_PEERS: usize = 64;

/// A live query.
#[derive(Debug)]
pub(super) struct Query {
    pub(super) session: Option<SessionId>,
    /// CIDs not yet received.
    pub(super) remaining: Set<Cid>,
    progress: Progress,
    /// Peers that delivered (at most [`MAX_QUERY_PEERS`]).
    peers: HashSet<PeerId>,
    pub(super) deadline: Option<TimerKey>,
    /// When it started: connection errors from before are not its.
    started: Instant,
    /// While no peer is connected: when it fails for lack of peers, and since when it waits.
    pub(super) stranded: Option<(TimerKey, Instant)>,
}

/// A session: what its queries learnt about peers.
#[derive(Debug)]
struct Session {
    queries: HashSet<QueryId>,
    /// Blocks each peer delivered in this session (at most [`MAX_SESSION_PEERS`] peers).
    peers: HashMap<PeerId, u64>,
    /// Value of the query counter when last used (for forgetting the oldest).
    last_used: u64,
}

impl Session {
    /// Notes that `peer` delivered a block.
    fn record(&mut self, peer: PeerId) {
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

/// The live queries and the open sessions. Owns their link: a session's set of queries is
/// exactly its live queries, and ids are never reused.
#[derive(Debug, Default)]
pub(super) struct Queries {
    queries: HashMap<QueryId, Query>,
    sessions: HashMap<SessionId, Session>,
    next_query: u64,
    next_session: u64,
}

impl Queries {
    /// Opens a session, forgetting the least recently used one without live queries if
    /// `max` are open.
    pub(super) fn open_session(&mut self, max: usize) -> Result<SessionId, QueryError> {
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
        let id = SessionId::new(self.next_session);
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

    /// Closes a session; returns its live queries, in order (`None` if it was not open).
    pub(super) fn close_session(&mut self, session: SessionId) -> Option<Vec<QueryId>> {
        let state = self.sessions.remove(&session)?;
        let mut queries: Vec<QueryId> = state.queries.into_iter().collect();
        queries.sort();
        Some(queries)
    }

    /// Marks `session` as used by the next query.
    pub(super) fn touch_session(&mut self, session: SessionId) -> Result<(), QueryError> {
        let state = self
            .sessions
            .get_mut(&session)
            .ok_or(QueryError::UnknownSession(session))?;
        state.last_used = self.next_query + 1;
        Ok(())
    }

    /// Starts a query of `blocks_total` CIDs (added with [`wait_for`](Self::wait_for)) in
    /// `session`, which fails after `timeout` if given.
    pub(super) fn start(
        &mut self,
        session: Option<SessionId>,
        blocks_total: usize,
        timeout: Option<Duration>,
        timers: &mut Timers,
        now: Instant,
    ) -> QueryId {
        self.next_query += 1;
        let id = QueryId::new(self.next_query);
        let deadline =
            timeout.map(|timeout| timers.insert(now + timeout, Timer::Query { query: id }));
        self.queries.insert(
            id,
            Query {
                session,
                remaining: Set::default(),
                progress: Progress {
                    blocks_total,
                    ..Progress::default()
                },
                peers: HashSet::new(),
                deadline,
                started: now,
                stranded: None,
            },
        );
        if let Some(state) = session.and_then(|s| self.sessions.get_mut(&s)) {
            state.queries.insert(id);
        }
        id
    }

    /// Query `id` waits for `cid`.
    pub(super) fn wait_for(&mut self, id: QueryId, cid: Cid) {
        if let Some(query) = self.queries.get_mut(&id) {
            query.remaining.insert(cid);
        }
    }

    /// Removes a query (and its deadlines); returns it, or `None` if it was not live.
    pub(super) fn remove(&mut self, id: QueryId, timers: &mut Timers) -> Option<Query> {
        let query = self.queries.remove(&id)?;
        timers.remove(query.deadline);
        timers.remove(query.stranded.map(|(key, _)| key));
        if let Some(session) = query.session.and_then(|s| self.sessions.get_mut(&s)) {
            session.queries.remove(&id);
        }
        Some(query)
    }

    /// The deadline of query `id` fired; false if the query is not live.
    pub(super) fn deadline_passed(&mut self, id: QueryId) -> bool {
        match self.queries.get_mut(&id) {
            Some(query) => {
                query.deadline = None;
                true
            }
            None => false,
        }
    }

    /// No peer is connected: query `id` fails after `timeout` unless one comes. Its wait
    /// starts again at `now` if `restart`, else only if it was not waiting already.
    pub(super) fn strand(
        &mut self,
        id: QueryId,
        timeout: Duration,
        restart: bool,
        timers: &mut Timers,
        now: Instant,
    ) {
        let Some(query) = self.queries.get_mut(&id) else {
            return;
        };
        let since = match query.stranded {
            Some(_) if !restart => return,
            Some((key, since)) => {
                timers.remove(Some(key));
                since
            }
            None => now,
        };
        let key = timers.insert(now + timeout, Timer::NoPeers { query: id });
        query.stranded = Some((key, since));
    }

    /// Every live query waits for peers (see [`strand`](Self::strand)), in id order.
    pub(super) fn strand_all(&mut self, timeout: Duration, timers: &mut Timers, now: Instant) {
        let mut ids: Vec<QueryId> = self.queries.keys().copied().collect();
        ids.sort();
        for id in ids {
            self.strand(id, timeout, false, timers, now);
        }
    }

    /// A peer connected: no query waits for peers any more.
    pub(super) fn unstrand_all(&mut self, timers: &mut Timers) {
        for query in self.queries.values_mut() {
            if let Some((key, _)) = query.stranded.take() {
                timers.remove(Some(key));
            }
        }
    }

    /// The no-peer deadline of query `id` fired: since when it waited, and when it started;
    /// `None` if the query is not live.
    pub(super) fn stranded_out(&mut self, id: QueryId) -> Option<(Instant, Instant)> {
        let query = self.queries.get_mut(&id)?;
        let (_, since) = query.stranded.take()?;
        Some((since, query.started))
    }

    /// Reports `block` to query `id` (which must want it): events, progress, and the peer
    /// that delivered it.
    pub(super) fn deliver(
        &mut self,
        id: QueryId,
        block: &Block,
        from: Option<PeerId>,
        actions: &mut Actions,
    ) {
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
        actions.event(Event::BlockReceived {
            query: id,
            block: block.clone(),
        });
        actions.event(Event::Progress {
            query: id,
            progress,
        });
    }

    /// Emits [`Event::QueryFinished`] and removes the query if it has every block.
    pub(super) fn finish_if_done(
        &mut self,
        id: QueryId,
        timers: &mut Timers,
        actions: &mut Actions,
    ) {
        if self
            .queries
            .get(&id)
            .is_some_and(|q| q.remaining.is_empty())
        {
            self.remove(id, timers);
            actions.event(Event::QueryFinished { query: id });
        }
    }

    /// `peer` delivered a block wanted by `queries` and by a want started in `session`: every
    /// session concerned notes it.
    pub(super) fn record(&mut self, peer: PeerId, queries: &[QueryId], session: Option<SessionId>) {
        let mut sessions: Vec<SessionId> = queries
            .iter()
            .filter_map(|q| self.queries.get(q)?.session)
            .chain(session)
            .collect();
        sessions.sort();
        sessions.dedup();
        for s in sessions {
            if let Some(state) = self.sessions.get_mut(&s) {
                state.record(peer);
            }
        }
    }

    /// Whether `peer` delivered blocks in `session`.
    pub(super) fn delivered_in(&self, session: SessionId, peer: &PeerId) -> bool {
        self.sessions
            .get(&session)
            .is_some_and(|s| s.peers.contains_key(peer))
    }

    pub(super) fn get(&self, id: &QueryId) -> Option<&Query> {
        self.queries.get(id)
    }

    pub(super) fn len(&self) -> usize {
        self.queries.len()
    }

    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn sessions_len(&self) -> usize {
        self.sessions.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&QueryId, &Query)> {
        self.queries.iter()
    }

    /// Where a live query stands.
    pub(super) fn progress(&self, id: &QueryId) -> Option<Progress> {
        Some(self.queries.get(id)?.progress)
    }

    /// The open sessions, in no particular order.
    pub(super) fn session_ids(&self) -> impl Iterator<Item = SessionId> + '_ {
        self.sessions.keys().copied()
    }

    /// The peers that delivered blocks in `session`, with how many each, most first.
    pub(super) fn session_peers(&self, session: SessionId) -> Vec<(PeerId, u64)> {
        let mut peers: Vec<(PeerId, u64)> = self
            .sessions
            .get(&session)
            .map(|s| s.peers.iter().map(|(p, n)| (*p, *n)).collect())
            .unwrap_or_default();
        peers.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        peers
    }
}
