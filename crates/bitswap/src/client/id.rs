//! The client's ids and errors: [`QueryId`], [`SessionId`], [`Scope`], [`Progress`] and
//! [`QueryError`]. A leaf: every other file of the client may name them.

use std::fmt;

use cid::Cid;

/// Identifies a query from [`Engine::get`](super::Engine::get) in its events. Unique
/// within one [`Engine`](super::Engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueryId(u64);

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "query-{}", self.0)
    }
}

/// Identifies a session from [`Engine::new_session`](super::Engine::new_session). Unique
/// within one [`Engine`](super::Engine).
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

impl QueryId {
    /// The `n`th query of an engine.
    pub(super) fn new(n: u64) -> Self {
        Self(n)
    }
}

impl SessionId {
    /// The `n`th session of an engine.
    pub(super) fn new(n: u64) -> Self {
        Self(n)
    }
}

/// Whose knowledge of peers a want uses: its session's, or its query's when it has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Scope {
    Session(SessionId),
    Query(QueryId),
}
