//! The embedder's side of [`Behaviour`]: its store and engines, queries, sessions,
//! providers and puts. Each call hands its input to an engine and drains what the engine asks
//! for, as the swarm's events do in `mod.rs`.

use std::{future::Future, sync::Arc, time::Instant};

use cid::Cid;
use ipfs_blockstore::{Block, Blockstore};
use libp2p::{PeerId, kad::RecordKey};

use super::Behaviour;
use crate::{
    client::{Engine as ClientEngine, QueryError, QueryId, SessionId},
    control::Control,
    event::{PutError, PutId},
    network,
    server::Engine as ServerEngine,
};

impl<S: Blockstore + 'static> Behaviour<S> {
    /// The store.
    ///
    /// To close it at shutdown (a `RedbBlockstore` flushes and
    /// releases its files), clone this `Arc`, drop the swarm, and take the store out of the
    /// `Arc` (see the crate docs' "Shutting down"): the behaviour's store operations are
    /// gone with it, and [`Control`]s keep no reference.
    pub fn store(&self) -> &Arc<S> {
        self.store.store()
    }

    /// Whether the store holds a block of `cid`'s multihash. Asks the store alone, never a
    /// peer; the future owns what it needs (an `Arc` of the store), so it can be awaited
    /// away from the swarm, which need not be polled meanwhile.
    pub fn has(&self, cid: &Cid) -> impl Future<Output = Result<bool, S::Error>> + Send + 'static {
        let (store, cid) = (Arc::clone(self.store.store()), *cid);
        async move { store.has(&cid).await }
    }

    /// The server engine: per-peer accounting, wantlists and statistics.
    pub fn server(&self) -> &ServerEngine {
        &self.server
    }

    /// The client engine: queries, wants, peers and statistics (duplicates included).
    pub fn client(&self) -> &ClientEngine {
        &self.client
    }

    /// The message layer: connected peers and their Bitswap versions.
    pub fn network(&self) -> &network::Behaviour {
        &self.network
    }

    /// A control for other tasks: async `get`, `get_many`, `has` and sessions.
    pub fn control(&self) -> Control {
        Control::new(self.command_sender.clone(), self.store.store())
    }

    /// Fetches one block, from the store if it holds it; see [`Behaviour::get_many`].
    pub fn get(&mut self, cid: Cid) -> Result<QueryId, QueryError> {
        self.get_many(vec![cid], None)
    }

    /// Fetches `cids`, in `session` if given. Reports [`Event::BlockReceived`](crate::Event::BlockReceived) (after the
    /// block is in the store) and [`Event::Progress`](crate::Event::Progress) for each block, then
    /// [`Event::QueryFinished`](crate::Event::QueryFinished), or [`Event::QueryFailed`](crate::Event::QueryFailed).
    ///
    /// The store is looked up first (unless [`Config::with_local_first`](crate::Config::with_local_first) turned it off): the
    /// blocks it holds are reported the same way, from no peer and without a write, and only
    /// the others are asked of peers, once the lookup is done. A store that fails the lookup
    /// counts as not holding the block.
    pub fn get_many(
        &mut self,
        cids: Vec<Cid>,
        session: Option<SessionId>,
    ) -> Result<QueryId, QueryError> {
        let query = self.start_query(cids, session);
        self.drain_client();
        query
    }

    /// Starts a query in the client engine, and its store lookup if it is local-first.
    pub(super) fn start_query(
        &mut self,
        cids: Vec<Cid>,
        session: Option<SessionId>,
    ) -> Result<QueryId, QueryError> {
        let now = Instant::now();
        if !self.local_first {
            return self.client.get(cids, session, now);
        }
        let query = self.client.get_local_first(cids, session, now)?;
        let cids = self.client.query_remaining(query);
        if !cids.is_empty() {
            self.store.read_local(query, cids);
            self.wake();
        }
        Ok(query)
    }

    /// Cancels a query: it reports nothing more, and its blocks are no longer wanted (unless
    /// another query wants them). `false` if it was not live.
    pub fn cancel(&mut self, query: QueryId) -> bool {
        let cancelled = self.client.cancel(query, Instant::now());
        self.streams.close(&query);
        self.drain_client();
        cancelled
    }

    /// Opens a session: queries in it share what they learn about peers (a DAG walk).
    ///
    /// # Errors
    ///
    /// [`QueryError::TooManySessions`] if every session remembered has live queries (see
    /// [`ClientConfig::with_max_sessions`](crate::ClientConfig::with_max_sessions)).
    pub fn new_session(&mut self) -> Result<SessionId, QueryError> {
        self.client.new_session()
    }

    /// Closes a session and cancels its queries.
    pub fn close_session(&mut self, session: SessionId) {
        self.client.close_session(session, Instant::now());
        self.drain_client();
    }

    /// Reports providers of a wanted `cid` (after [`Event::FindProviders`](crate::Event::FindProviders), or known
    /// otherwise): they are asked first, and those not connected are dialled by peer id. The
    /// addresses come from the swarm: kad's, or those given to `Swarm::add_peer_address`
    /// (this behaviour remembers up to 8 for each of the last 1024 peers reported).
    pub fn add_providers(&mut self, cid: &Cid, peers: impl IntoIterator<Item = PeerId>) {
        self.client.add_providers(cid, peers, Instant::now());
        self.drain_client();
    }

    /// Reports providers found under a provider record `key`, as kad's
    /// `GetProvidersOk::FoundProviders` carries it: they are providers of every CID of the
    /// last 1024 [`Event::FindProviders`](crate::Event::FindProviders) with that key (see [`add_providers`](Self::add_providers)).
    /// A key not asked for is ignored. The example of [`Event::FindProviders`](crate::Event::FindProviders) uses it.
    pub fn add_providers_for_key(
        &mut self,
        key: &RecordKey,
        peers: impl IntoIterator<Item = PeerId>,
    ) {
        let peers: Vec<PeerId> = peers.into_iter().collect();
        let now = Instant::now();
        for cid in self.searches.cids(key) {
            self.client.add_providers(cid, peers.iter().copied(), now);
        }
        self.drain_client();
    }

    /// Writes `blocks` to the store; once written, peers that want them get them, and
    /// [`Event::Stored`](crate::Event::Stored) reports it ([`Event::StoreFailed`](crate::Event::StoreFailed) if the store refused them).
    pub fn put(&mut self, blocks: Vec<Block>) -> Result<PutId, PutError> {
        let id = self.store.put_user(blocks)?;
        self.wake();
        Ok(id)
    }

    /// Announces blocks written to the store without [`Behaviour::put`] (CID and size in
    /// bytes): peers that want them get them.
    pub fn notify_new_blocks(&mut self, blocks: impl IntoIterator<Item = (Cid, usize)>) {
        self.server.handle_new_blocks(blocks);
        self.drive_server();
    }
}
