//! [`StoreIo`]: the behaviour's store operations, as futures polled by the behaviour: the
//! server engine's lookups, the store reads of local-first queries, and the writes of `put`
//! and of received blocks. It owns the store and the futures in flight; their callers bound
//! them (the server engine its lookups in flight, the client one read per live query,
//! `Config::with_max_puts_in_flight` the puts, the client's wants the received blocks).

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use cid::Cid;
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use ipfs_blockstore::{Block, Blockstore};

use crate::{
    client::QueryId,
    delivery::StoreBatch,
    event::{PutError, PutId, StoreError},
    server::{Lookup, LookupId, LookupKind, LookupResult},
};

/// Store reads a local-first query has in flight at once: a store with a thread pool or a
/// network round trip (redb's readers, S3) answers many CIDs in the time of a few, while the
/// memory store answers at once either way.
const LOCAL_READS_PER_QUERY: usize = 16;

/// Where a store write comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Origin {
    /// `Behaviour::put`.
    User(PutId),
    /// Blocks the client accepted; their events wait for the write.
    Received(StoreBatch),
}

/// What a finished store write reports.
pub(crate) struct PutDone {
    pub(crate) origin: Origin,
    /// The CID and size of each block written.
    pub(crate) blocks: Vec<(Cid, usize)>,
    pub(crate) result: Result<(), StoreError>,
}

/// The store and the operations on it in flight.
pub(crate) struct StoreIo<S> {
    store: Arc<S>,
    lookups: FuturesUnordered<BoxFuture<'static, (LookupId, LookupResult)>>,
    local_reads: FuturesUnordered<BoxFuture<'static, (QueryId, Vec<Block>)>>,
    puts: FuturesUnordered<BoxFuture<'static, PutDone>>,
    /// Writes started by `Behaviour::put` and not finished.
    user_puts: usize,
    /// At most this many of them.
    max_user_puts: usize,
    next_put: u64,
}

impl<S> std::fmt::Debug for StoreIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreIo")
            .field("lookups_in_flight", &self.lookups.len())
            .field("local_reads_in_flight", &self.local_reads.len())
            .field("puts_in_flight", &self.puts.len())
            .finish_non_exhaustive()
    }
}

impl<S: Blockstore + 'static> StoreIo<S> {
    /// Operations on `store`, with at most `max_user_puts` writes of `Behaviour::put` at once.
    pub(crate) fn new(store: S, max_user_puts: usize) -> Self {
        Self {
            store: Arc::new(store),
            lookups: FuturesUnordered::new(),
            local_reads: FuturesUnordered::new(),
            puts: FuturesUnordered::new(),
            user_puts: 0,
            max_user_puts,
            next_put: 0,
        }
    }

    pub(crate) fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// Starts a lookup of the server engine; a failing store answers
    /// [`LookupResult::Failed`], logged.
    pub(crate) fn lookup(&mut self, Lookup { id, cid, kind }: Lookup) {
        let store = Arc::clone(&self.store);
        self.lookups.push(Box::pin(async move {
            let result = match kind {
                LookupKind::Has => store.has(&cid).await.map(LookupResult::Has),
                LookupKind::Size => store.get_size(&cid).await.map(LookupResult::Size),
                LookupKind::Get => store.get(&cid).await.map(LookupResult::Block),
            };
            let result = result.unwrap_or_else(|error| {
                tracing::warn!(%cid, %error, "blockstore lookup failed");
                LookupResult::Failed
            });
            (id, result)
        }));
    }

    /// Reads the blocks of `cids` the store holds, for a local-first `query`. A failing read
    /// counts as a miss (logged): peers are asked instead.
    pub(crate) fn read_local(&mut self, query: QueryId, cids: Vec<Cid>) {
        let store = Arc::clone(&self.store);
        self.local_reads.push(Box::pin(async move {
            let store = &store;
            let found = futures::stream::iter(cids)
                .map(|cid| async move { (cid, store.get(&cid).await) })
                .buffered(LOCAL_READS_PER_QUERY)
                .filter_map(|(cid, result)| async move {
                    result
                        .inspect_err(|error| {
                            tracing::debug!(%cid, %error, "store lookup failed; asking peers");
                        })
                        .ok()
                        .flatten()
                })
                .collect()
                .await;
            (query, found)
        }));
    }

    /// Writes `blocks` for `Behaviour::put`, unless as many such writes as allowed are in
    /// flight.
    pub(crate) fn put_user(&mut self, blocks: Vec<Block>) -> Result<PutId, PutError> {
        if self.user_puts >= self.max_user_puts {
            return Err(PutError::Busy {
                limit: self.max_user_puts,
            });
        }
        let id = PutId(self.next_put);
        self.next_put += 1;
        self.user_puts += 1;
        self.put(Origin::User(id), blocks);
        Ok(id)
    }

    /// Writes `blocks`.
    pub(crate) fn put(&mut self, origin: Origin, blocks: Vec<Block>) {
        let announced = blocks.iter().map(|b| (*b.cid(), b.data().len())).collect();
        let store = Arc::clone(&self.store);
        self.puts.push(Box::pin(async move {
            let result = store
                .put_many(blocks)
                .await
                .map_err(|e| Arc::new(e) as StoreError);
            PutDone {
                origin,
                blocks: announced,
                result,
            }
        }));
    }

    /// The next lookup answered.
    pub(crate) fn poll_lookup(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(LookupId, LookupResult)>> {
        self.lookups.poll_next_unpin(cx)
    }

    /// The next local-first read done: the query and the blocks found.
    pub(crate) fn poll_local_read(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<(QueryId, Vec<Block>)>> {
        self.local_reads.poll_next_unpin(cx)
    }

    /// The next write done.
    pub(crate) fn poll_put(&mut self, cx: &mut Context<'_>) -> Poll<Option<PutDone>> {
        let done = self.puts.poll_next_unpin(cx);
        if let Poll::Ready(Some(PutDone {
            origin: Origin::User(_),
            ..
        })) = &done
        {
            self.user_puts -= 1;
        }
        done
    }
}
