//! [`Control`]: the [`Behaviour`](crate::Behaviour)'s client API for other tasks, over a
//! bounded channel that the behaviour reads while the swarm is polled.

use std::{
    collections::HashMap,
    fmt,
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll},
};

use cid::Cid;
use futures::{
    FutureExt, SinkExt, Stream, StreamExt,
    channel::{mpsc, oneshot},
    future::BoxFuture,
};
use ipfs_blockstore::{Block, Blockstore};
use libp2p::PeerId;

use crate::{
    client::{QueryError, QueryId, SessionId},
    event::{Event, StoreError},
};

/// Commands waiting in a [`Control`]'s channel before the behaviour reads them.
pub(crate) const COMMAND_CAPACITY: usize = 64;

/// Why a [`Control`] call failed.
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

/// Why [`Control::has`] failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HasError {
    /// The store failed the lookup.
    #[error("block store lookup failed: {0}")]
    Store(StoreError),
    /// The behaviour is gone (its swarm was dropped), and its store with it.
    #[error("the bitswap behaviour is gone")]
    Closed,
}

/// The store lookups a [`Control`] makes itself, without naming the store's type.
trait LocalStore: Send + Sync {
    fn has(&self, cid: Cid) -> BoxFuture<'static, Result<bool, HasError>>;
}

/// The behaviour's store, for as long as the behaviour has it: a control must not keep it
/// open past the swarm, which would stop an embedder from closing it.
struct WeakStore<S>(Weak<S>);

impl<S: Blockstore + 'static> LocalStore for WeakStore<S> {
    fn has(&self, cid: Cid) -> BoxFuture<'static, Result<bool, HasError>> {
        let store = self.0.upgrade();
        async move {
            let store = store.ok_or(HasError::Closed)?;
            store
                .has(&cid)
                .await
                .map_err(|error| HasError::Store(Arc::new(error)))
        }
        .boxed()
    }
}

/// What a [`Control`] asks of the behaviour.
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

/// The cloneable control of a [`Behaviour`](crate::Behaviour)'s client, usable from any task
/// while the swarm is polled elsewhere. Commands travel over a bounded channel: when it is
/// full, calls wait.
///
/// Queries started here report to their [`BlockStream`], not as swarm events.
#[derive(Clone)]
pub struct Control {
    commands: mpsc::Sender<Command>,
    store: Arc<dyn LocalStore>,
}

impl fmt::Debug for Control {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Control").finish_non_exhaustive()
    }
}

impl Control {
    pub(crate) fn new<S: Blockstore + 'static>(
        commands: mpsc::Sender<Command>,
        store: &Arc<S>,
    ) -> Self {
        Self {
            commands,
            store: Arc::new(WeakStore(Arc::downgrade(store))),
        }
    }

    /// Whether the behaviour's store holds a block of `cid`'s multihash. Asks the store
    /// directly from the calling task, never a peer, and does not wait for the swarm to be
    /// polled. Holds the store only while it runs.
    pub async fn has(&self, cid: &Cid) -> Result<bool, HasError> {
        self.store.has(*cid).await
    }

    async fn send(&mut self, command: Command) -> Result<(), GetError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| GetError::Closed)
    }

    /// Fetches one block: from the store if it holds it, else from peers (see
    /// [`Behaviour::get_many`](crate::Behaviour::get_many)).
    pub async fn get(&self, cid: Cid) -> Result<Block, GetError> {
        let mut stream = self.get_many(vec![cid], None).await?;
        match stream.next().await {
            Some(result) => result,
            None => Err(GetError::Closed),
        }
    }

    /// Fetches `cids`, in `session` if given, those the store holds from it and the others
    /// from peers (see [`Behaviour::get_many`](crate::Behaviour::get_many)): the stream yields
    /// each block once, in arrival order, then ends; or yields the query's error and ends.
    /// Dropping the stream cancels the query.
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

/// The blocks of a query started through a [`Control`]; dropping it cancels the query.
#[derive(Debug)]
pub struct BlockStream {
    query: QueryId,
    blocks: mpsc::Receiver<Result<Block, GetError>>,
}

impl BlockStream {
    /// A stream for `query` and the sender the behaviour feeds. Its capacity holds every
    /// block of the query plus the final error, so the behaviour never waits on it.
    fn new(query: QueryId, cids: usize) -> (Self, mpsc::Sender<Result<Block, GetError>>) {
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

/// The streams of the queries started through a control, by query: one per live query, closed
/// when it finishes, fails or is cancelled.
#[derive(Debug, Default)]
pub(crate) struct Streams(HashMap<QueryId, mpsc::Sender<Result<Block, GetError>>>);

/// Where [`Streams::route`] took an event.
#[derive(Debug)]
pub(crate) enum Routed {
    /// Not an event of a control's query: the swarm's.
    Swarm(Event),
    /// To its query's stream.
    Stream,
    /// The query's stream was dropped: nobody wants the query any more.
    Dropped(QueryId),
}

impl Streams {
    /// A stream for the events of `query`, of `cids` blocks.
    pub(crate) fn open(&mut self, query: QueryId, cids: usize) -> BlockStream {
        let (stream, sender) = BlockStream::new(query, cids);
        self.0.insert(query, sender);
        stream
    }

    /// Forgets the stream of `query`, which ended otherwise.
    pub(crate) fn close(&mut self, query: &QueryId) {
        self.0.remove(query);
    }

    /// Takes `event` to its query's stream, if a control started the query.
    pub(crate) fn route(&mut self, event: Event) -> Routed {
        let query = match &event {
            Event::BlockReceived { query, .. }
            | Event::Progress { query, .. }
            | Event::QueryFinished { query }
            | Event::QueryFailed { query, .. } => *query,
            _ => return Routed::Swarm(event),
        };
        let Some(stream) = self.0.get_mut(&query) else {
            return Routed::Swarm(event);
        };
        let dropped = match event {
            // Never full: the stream has room for every block of the query and its end.
            Event::BlockReceived { block, .. } => stream.try_send(Ok(block)).is_err(),
            Event::QueryFailed { error, .. } => {
                let _ = stream.try_send(Err(GetError::Query(error)));
                self.0.remove(&query);
                false
            }
            Event::QueryFinished { .. } => {
                self.0.remove(&query);
                false
            }
            _ => stream.is_closed(),
        };
        if dropped {
            self.0.remove(&query);
            return Routed::Dropped(query);
        }
        Routed::Stream
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::client::{Config, Engine};

    fn queries(n: usize) -> Vec<QueryId> {
        let mut client = Engine::new(Config::default());
        (0..n)
            .map(|i| {
                let block = Block::from_v0_data(Bytes::from(i.to_string())).expect("block");
                client
                    .get(vec![*block.cid()], None, Instant::now())
                    .expect("query")
            })
            .collect()
    }

    #[test]
    fn a_control_s_query_reports_to_its_stream_until_it_ends() {
        let (mut streams, ids) = (Streams::default(), queries(2));
        let (query, other) = (ids[0], ids[1]);
        let block = Block::from_v0_data(Bytes::from_static(b"a")).expect("block");
        let mut stream = streams.open(query, 1);
        let received = Event::BlockReceived {
            query,
            block: block.clone(),
        };
        assert!(matches!(streams.route(received), Routed::Stream));
        let finished = Event::QueryFinished { query };
        assert!(matches!(streams.route(finished), Routed::Stream));
        assert!(streams.0.is_empty(), "closed at its end");
        let blocks: Vec<_> = futures::executor::block_on_stream(&mut stream).collect();
        assert_eq!(blocks, [Ok(block)]);
        // Others' events are the swarm's.
        let finished = Event::QueryFinished { query: other };
        assert!(matches!(streams.route(finished), Routed::Swarm(_)));
    }

    #[test]
    fn a_dropped_stream_is_forgotten_and_reported() {
        let (mut streams, query) = (Streams::default(), queries(1)[0]);
        drop(streams.open(query, 1));
        let progress = Event::Progress {
            query,
            progress: Default::default(),
        };
        assert!(matches!(streams.route(progress), Routed::Dropped(q) if q == query));
        assert!(streams.0.is_empty());
    }
}
