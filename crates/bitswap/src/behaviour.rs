//! [`Behaviour`]: the Bitswap node as one [`NetworkBehaviour`]: the message layer, the server
//! engine and a blockstore, wired together.
//!
//! The behaviour only moves data between its parts: messages from the
//! [`network::Behaviour`] go to the [`ServerEngine`]; the engine's lookups run against the
//! store as futures polled here (bounded by the engine); its envelopes go back to the network
//! and their outcome back to the engine.

use std::{
    collections::{HashMap, VecDeque},
    error::Error as StdError,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use cid::Cid;
use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
    },
};
use prometheus_client::registry::Registry;

use crate::{
    blockstore::Blockstore,
    config::Config,
    message::Block,
    network::{self, MessageId},
    protocol::Version,
    server::{
        Engine as ServerEngine, EnvelopeId, Lookup, LookupId, LookupKind, LookupResult,
        Metrics as ServerMetrics,
    },
};

/// Identifies a [`Behaviour::put`]; [`Event::Stored`] and [`Event::StoreFailed`] carry it.
/// Unique within one [`Behaviour`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PutId(u64);

impl fmt::Display for PutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "put-{}", self.0)
    }
}

/// Why [`Behaviour::put`] refused blocks at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// [`Config::max_puts_in_flight`] writes are unfinished; retry after an
    /// [`Event::Stored`] or [`Event::StoreFailed`].
    #[error("{limit} store writes already in flight")]
    Busy {
        /// The configured limit.
        limit: usize,
    },
}

/// A store failure, shared so that events stay cheap to clone.
pub type StoreError = Arc<dyn StdError + Send + Sync>;

/// What the [`Behaviour`] reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// The blocks of a [`Behaviour::put`] are in the store (durable once the store is
    /// flushed), and peers that want them are being served.
    Stored {
        /// The id `put` returned.
        id: PutId,
        /// How many blocks it wrote.
        blocks: usize,
    },
    /// The store refused the blocks of a [`Behaviour::put`]; none of them is announced.
    StoreFailed {
        /// The id `put` returned.
        id: PutId,
        /// The store's error.
        error: StoreError,
    },
}

/// What a finished store write reports.
struct PutDone {
    id: PutId,
    blocks: Vec<(Cid, usize)>,
    result: Result<(), StoreError>,
}

/// A Bitswap node: serves the blocks of its store `S` to the peers that want them.
///
/// It composes with other behaviours in a `#[derive(NetworkBehaviour)]`. Blocks put through
/// [`Behaviour::put`] (or announced with [`Behaviour::notify_new_blocks`] after writing the
/// store directly) go to the peers that already asked for them.
///
/// Everything in flight is bounded: store lookups by
/// [`ServerConfig::with_max_lookups_in_flight`](crate::ServerConfig::with_max_lookups_in_flight),
/// envelopes by
/// [`ServerConfig::with_max_envelopes_in_flight`](crate::ServerConfig::with_max_envelopes_in_flight),
/// store writes by [`Config::with_max_puts_in_flight`], and messages by the network layer.
pub struct Behaviour<S> {
    network: network::Behaviour,
    server: ServerEngine,
    store: Arc<S>,
    lookups: FuturesUnordered<BoxFuture<'static, (LookupId, LookupResult)>>,
    puts: FuturesUnordered<BoxFuture<'static, PutDone>>,
    max_puts_in_flight: usize,
    next_put: u64,
    /// Server envelopes handed to the network, by the id it gave them.
    envelopes: HashMap<MessageId, EnvelopeId>,
    events: VecDeque<Event>,
}

impl<S> fmt::Debug for Behaviour<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Behaviour")
            .field("server", &self.server.stats())
            .field("lookups_in_flight", &self.lookups.len())
            .field("puts_in_flight", &self.puts.len())
            .field("envelopes_in_flight", &self.envelopes.len())
            .finish_non_exhaustive()
    }
}

impl<S: Blockstore + 'static> Behaviour<S> {
    /// A node serving `store` with `config`.
    pub fn new(store: S, config: Config) -> Self {
        let (network, server, puts) = config.into_parts();
        Self::from_parts(store, network, ServerEngine::new(server), puts)
    }

    /// Like [`Behaviour::new`], and registers the server's metrics on `registry` (under the
    /// `bitswap_server` prefix, see [`ServerMetrics`]).
    pub fn with_metrics(store: S, config: Config, registry: &mut Registry) -> Self {
        let (network, server, puts) = config.into_parts();
        let engine = ServerEngine::with_metrics(server, ServerMetrics::new(registry));
        Self::from_parts(store, network, engine, puts)
    }

    fn from_parts(
        store: S,
        network: network::Config,
        server: ServerEngine,
        max_puts_in_flight: usize,
    ) -> Self {
        Self {
            network: network::Behaviour::new(network),
            server,
            store: Arc::new(store),
            lookups: FuturesUnordered::new(),
            puts: FuturesUnordered::new(),
            max_puts_in_flight,
            next_put: 0,
            envelopes: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The server engine: per-peer accounting, wantlists and statistics.
    pub fn server(&self) -> &ServerEngine {
        &self.server
    }

    /// The message layer: connected peers and their Bitswap versions.
    pub fn network(&self) -> &network::Behaviour {
        &self.network
    }

    /// Writes `blocks` to the store; once written, peers that want them get them, and
    /// [`Event::Stored`] reports it ([`Event::StoreFailed`] if the store refused them).
    pub fn put(&mut self, blocks: Vec<Block>) -> Result<PutId, PutError> {
        if self.puts.len() >= self.max_puts_in_flight {
            return Err(PutError::Busy {
                limit: self.max_puts_in_flight,
            });
        }
        let id = PutId(self.next_put);
        self.next_put += 1;
        let announced = blocks.iter().map(|b| (*b.cid(), b.data().len())).collect();
        let store = Arc::clone(&self.store);
        self.puts.push(Box::pin(async move {
            let result = store
                .put_many(blocks)
                .await
                .map_err(|e| Arc::new(e) as StoreError);
            PutDone {
                id,
                blocks: announced,
                result,
            }
        }));
        Ok(id)
    }

    /// Announces blocks written to the store without [`Behaviour::put`] (CID and size in
    /// bytes): peers that want them get them.
    pub fn notify_new_blocks(&mut self, blocks: impl IntoIterator<Item = (Cid, usize)>) {
        self.server.handle_new_blocks(blocks);
        self.drive();
    }

    /// Drains what the server engine asks for: lookups become store futures, envelopes go to
    /// the network. Called after every input to the engine.
    fn drive(&mut self) {
        loop {
            while let Some(lookup) = self.server.poll_lookup() {
                self.start_lookup(lookup);
            }
            let Some(envelope) = self.server.poll_envelope() else {
                break;
            };
            match self.network.send(envelope.peer, envelope.message) {
                Ok(id) => {
                    self.envelopes.insert(id, envelope.id);
                }
                Err(error) => {
                    tracing::debug!(peer = %envelope.peer, %error, "server envelope not sent");
                    self.server.handle_envelope_failed(envelope.id);
                }
            }
        }
    }

    fn start_lookup(&mut self, Lookup { id, cid, kind }: Lookup) {
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

    fn on_network_event(&mut self, event: network::Event) {
        match event {
            network::Event::PeerConnected { peer } => {
                let version = self.network.peer_version(&peer).unwrap_or(Version::V1_2_0);
                self.server.handle_peer_connected(peer, version);
            }
            network::Event::PeerVersion { peer, version } => {
                self.server.handle_peer_version(peer, version);
            }
            network::Event::PeerDisconnected { peer } => {
                self.server.handle_peer_disconnected(&peer);
            }
            network::Event::Message { peer, message, .. } => {
                self.server.handle_message(peer, &message);
            }
            network::Event::MessageSent { id, .. } => {
                if let Some(envelope) = self.envelopes.remove(&id) {
                    self.server.handle_envelope_sent(envelope);
                }
            }
            network::Event::SendFailed { peer, id, error } => {
                if let Some(envelope) = self.envelopes.remove(&id) {
                    tracing::debug!(%peer, %error, "server envelope failed");
                    self.server.handle_envelope_failed(envelope);
                }
            }
            network::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound Bitswap stream reset");
            }
        }
        self.drive();
    }

    fn on_put_done(&mut self, done: PutDone) {
        match done.result {
            Ok(()) => {
                let blocks = done.blocks.len();
                self.server.handle_new_blocks(done.blocks);
                self.drive();
                self.events.push_back(Event::Stored {
                    id: done.id,
                    blocks,
                });
            }
            Err(error) => {
                tracing::warn!(id = %done.id, %error, "blockstore write failed");
                self.events
                    .push_back(Event::StoreFailed { id: done.id, error });
            }
        }
    }
}

impl<S: Blockstore + 'static> NetworkBehaviour for Behaviour<S> {
    type ConnectionHandler = network::Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.network
            .handle_established_inbound_connection(connection, peer, local, remote)
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        address: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.network
            .handle_established_outbound_connection(connection, peer, address, role, port_use)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        self.network.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.network
            .on_connection_handler_event(peer, connection, event);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(ToSwarm::GenerateEvent(event));
            }
            match self.network.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(event)) => {
                    self.on_network_event(event);
                    continue;
                }
                Poll::Ready(ToSwarm::NotifyHandler {
                    peer_id,
                    handler,
                    event,
                }) => {
                    return Poll::Ready(ToSwarm::NotifyHandler {
                        peer_id,
                        handler,
                        event,
                    });
                }
                Poll::Ready(other) => {
                    tracing::error!(?other, "unexpected request from the network layer");
                    continue;
                }
                Poll::Pending => {}
            }
            if let Poll::Ready(Some((id, result))) = self.lookups.poll_next_unpin(cx) {
                self.server.handle_lookup(id, result);
                self.drive();
                continue;
            }
            if let Poll::Ready(Some(done)) = self.puts.poll_next_unpin(cx) {
                self.on_put_done(done);
                continue;
            }
            return Poll::Pending;
        }
    }
}
