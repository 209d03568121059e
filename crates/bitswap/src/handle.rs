//! [`Handle`]: the [`Behaviour`](crate::Behaviour)'s client API for other tasks, over a
//! bounded channel that the behaviour reads while the swarm is polled.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use cid::Cid;
use futures::{
    SinkExt, Stream, StreamExt,
    channel::{mpsc, oneshot},
};
use ipfs_blockstore::Block;
use libp2p::PeerId;

use crate::client::{QueryError, QueryId, SessionId};

/// Commands waiting in a [`Handle`]'s channel before the behaviour reads them.
pub(crate) const COMMAND_CAPACITY: usize = 64;

/// Why a [`Handle`] call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// The client engine refused or gave up the query.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// The behaviour is gone (its swarm was dropped).
    #[error("the bitswap behaviour is gone")]
    Closed,
}

/// What a [`Handle`] asks of the behaviour.
pub(crate) enum Command {
    Get {
        cids: Vec<Cid>,
        session: Option<SessionId>,
        reply: oneshot::Sender<Result<BlockStream, QueryError>>,
    },
    NewSession {
        reply: oneshot::Sender<Result<SessionId, QueryError>>,
    },
    CloseSession {
        session: SessionId,
    },
    AddProviders {
        cid: Cid,
        peers: Vec<PeerId>,
    },
}

/// A cloneable handle to a [`Behaviour`](crate::Behaviour)'s client, usable from any task
/// while the swarm is polled elsewhere. Commands travel over a bounded channel: when it is
/// full, calls wait.
///
/// Queries started here report to their [`BlockStream`], not as swarm events.
#[derive(Debug, Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
}

impl Handle {
    pub(crate) fn new(commands: mpsc::Sender<Command>) -> Self {
        Self { commands }
    }

    async fn send(&mut self, command: Command) -> Result<(), GetError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| GetError::Closed)
    }

    /// Fetches one block from peers.
    pub async fn get(&self, cid: Cid) -> Result<Block, GetError> {
        let mut stream = self.get_many(vec![cid], None).await?;
        match stream.next().await {
            Some(result) => result,
            None => Err(GetError::Closed),
        }
    }

    /// Fetches `cids` from peers, in `session` if given: the stream yields each block once,
    /// in arrival order, then ends; or yields the query's error and ends. Dropping the stream
    /// cancels the query.
    pub async fn get_many(
        &self,
        cids: Vec<Cid>,
        session: Option<SessionId>,
    ) -> Result<BlockStream, GetError> {
        let (reply, answer) = oneshot::channel();
        self.clone()
            .send(Command::Get {
                cids,
                session,
                reply,
            })
            .await?;
        Ok(answer.await.map_err(|_| GetError::Closed)??)
    }

    /// Opens a session: queries in it share what they learn about peers (a DAG walk).
    pub async fn new_session(&self) -> Result<SessionId, GetError> {
        let (reply, answer) = oneshot::channel();
        self.clone().send(Command::NewSession { reply }).await?;
        Ok(answer.await.map_err(|_| GetError::Closed)??)
    }

    /// Closes a session and cancels its queries.
    pub async fn close_session(&self, session: SessionId) -> Result<(), GetError> {
        self.clone().send(Command::CloseSession { session }).await
    }

    /// Reports providers of `cid` (see
    /// [`Behaviour::add_providers`](crate::Behaviour::add_providers)).
    pub async fn add_providers(&self, cid: Cid, peers: Vec<PeerId>) -> Result<(), GetError> {
        self.clone()
            .send(Command::AddProviders { cid, peers })
            .await
    }
}

/// The blocks of a query started through a [`Handle`]; dropping it cancels the query.
#[derive(Debug)]
pub struct BlockStream {
    query: QueryId,
    blocks: mpsc::Receiver<Result<Block, GetError>>,
}

impl BlockStream {
    /// A stream for `query` and the sender the behaviour feeds. Its capacity holds every
    /// block of the query plus the final error, so the behaviour never waits on it.
    pub(crate) fn new(
        query: QueryId,
        cids: usize,
    ) -> (Self, mpsc::Sender<Result<Block, GetError>>) {
        let (sender, blocks) = mpsc::channel(cids + 1);
        (Self { query, blocks }, sender)
    }

    /// The query's id.
    pub fn query(&self) -> QueryId {
        self.query
    }
}

impl Stream for BlockStream {
    type Item = Result<Block, GetError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.blocks.poll_next_unpin(cx)
    }
}
