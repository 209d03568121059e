//! The client's ids and errors: [`QueryId`], [`SessionId`], [`Scope`], [`Progress`] and
//! [`QueryError`]. A leaf: every other file of the client may name them.

use std::{io, sync::Arc, time::Duration};

use cid::Cid;
use libp2p::PeerId;

id_type!(
    /// Identifies a query from [`Engine::get`](super::Engine::get) in its events. Unique
    /// within one [`Engine`](super::Engine).
    QueryId,
    "query"
);

id_type!(
    /// Identifies a session from [`Engine::new_session`](super::Engine::new_session).
    /// Unique within one [`Engine`](super::Engine).
    SessionId,
    "session"
);

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
    /// No peer was connected, and no provider of its blocks found, for
    /// [`Config::no_peer_timeout`](super::Config::no_peer_timeout): nobody is left to ask.
    /// `last_error` is the last connection that closed with an error during the query, if
    /// any: often the reason why no peer is left (a muxer's `FrameTooLarge`, say).
    #[error("no peer to ask for {waited:?}{}", last_error_suffix(.last_error))]
    NoPeers {
        /// How long the query was without peers.
        waited: Duration,
        /// The last connection error seen while the query was live.
        last_error: Option<ConnectionError>,
    },
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

fn last_error_suffix(error: &Option<ConnectionError>) -> String {
    error
        .as_ref()
        .map(|e| format!("; last connection error: {e}"))
        .unwrap_or_default()
}

/// Longest description kept in a [`ConnectionError`], in bytes.
const MAX_CONNECTION_ERROR_LEN: usize = 512;

/// Why a connection to a peer closed, when it did not close cleanly: an I/O, security or
/// muxer error (such as yamux's `FrameTooLarge`). The error is kept as its kind and text (its
/// sources joined, at most 512 bytes) behind an `Arc`, so that events and query errors stay
/// small and cheap to clone and compare.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection to {} failed: {}", .0.peer, .0.message)]
pub struct ConnectionError(Arc<ConnectionErrorInner>);

#[derive(Debug, PartialEq, Eq)]
struct ConnectionErrorInner {
    peer: PeerId,
    kind: io::ErrorKind,
    message: String,
}

impl ConnectionError {
    /// The error of a connection to `peer` that closed with `error`; the text is `error`
    /// followed by its sources.
    pub fn new(peer: PeerId, error: &io::Error) -> Self {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            let text = cause.to_string();
            // Wrappers often repeat their source's text.
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        if message.len() > MAX_CONNECTION_ERROR_LEN {
            let mut end = MAX_CONNECTION_ERROR_LEN;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        Self(Arc::new(ConnectionErrorInner {
            peer,
            kind: error.kind(),
            message,
        }))
    }

    /// The peer of the connection.
    pub fn peer(&self) -> PeerId {
        self.0.peer
    }

    /// The kind of the I/O error the connection closed with.
    pub fn kind(&self) -> io::ErrorKind {
        self.0.kind
    }

    /// What went wrong, with its causes.
    pub fn message(&self) -> &str {
        &self.0.message
    }
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
