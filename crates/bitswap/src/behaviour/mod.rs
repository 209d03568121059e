//! [`Behaviour`]: the Bitswap node as one [`NetworkBehaviour`]: the message layer, the server
//! and client engines and a blockstore, wired together.
//!
//! The behaviour only moves data between its parts and keeps the clock: messages from the
//! [`network::Behaviour`] go to both engines; the server's lookups run against the store as
//! futures polled here (bounded by the engine) and its envelopes go back to the network; the
//! client's wantlist updates go to the network, its dials to the swarm, and the blocks it
//! accepts are written to the store (and offered to the peers that want them) before their
//! events are reported.

mod embedder;

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    task::{Context, Poll, Waker},
    time::Instant,
};

use cid::Cid;
use futures::{StreamExt, channel::mpsc};
use ipfs_blockstore::{Block, Blockstore};
use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
        dial_opts::{DialOpts, PeerCondition},
    },
};
#[cfg(feature = "metrics")]
use prometheus_client::registry::Registry;

use crate::{
    addresses::AddressBook,
    alarm::Alarm,
    client::{Action as ClientAction, Engine as ClientEngine, Event as ClientEvent},
    config::Config,
    control::{COMMAND_CAPACITY, Command, Routed, Streams},
    delivery::Delivery,
    event::Event,
    intake::{Intake, Taken},
    keep_alive::KeepAlive,
    message::Message,
    network::{self, HandlerIn},
    outbox::Outbox,
    protocol::Version,
    providers::{Searches, provider_key},
    sent::{Out, Sent},
    server::Engine as ServerEngine,
    store_io::{Origin, PutDone, StoreIo},
    troubles::{Trouble, Troubles},
};

/// Store results taken per round of [`Behaviour`]'s poll, besides one network event.
const LOOKUPS_PER_ROUND: usize = 64;

/// Wantlist updates to one peer that may be handed to the network and not yet written; later
/// ones wait in the [`Outbox`], merged, so that a peer reading slowly gets one update with
/// every change instead of a queue of small ones.
const WANTLISTS_OUT_PER_PEER: usize = 4;
// The client spreads one update's want-blocks over this many messages, all sent at once.
const _: () = assert!(WANTLISTS_OUT_PER_PEER >= crate::client::WANT_BLOCK_MESSAGES);

/// The most entries a merged update waiting for one peer holds, in multiples of the client's
/// wants per peer: of its entries at most that many are wants (the latest entry of a block
/// is a want only while it is outstanding), the others are cancels.
const WAITING_ENTRIES_PER_WANT: usize = 4;

/// A Bitswap node: fetches blocks from peers into its store `S` and serves the store's blocks
/// to the peers that want them.
///
/// It composes with other behaviours in a `#[derive(NetworkBehaviour)]` (identify lets it
/// learn peers' Bitswap versions early; kad can answer [`Event::FindProviders`]).
///
/// - Fetching: [`get`](Self::get), [`get_many`](Self::get_many), sessions and
///   [`cancel`](Self::cancel) report through [`Event`]s; a [`Control`](crate::Control) does the same from
///   other tasks with futures and streams. Each block is verified (its CID recomputed from its
///   bytes) while its message is decoded in the connection's task, not in the swarm's poll.
///   Blocks no query wants are dropped and their sender penalised. A query looks in the store
///   first (unless [`Config::with_local_first`] turned it off): blocks found there are
///   reported as received, and only the others are asked of peers. [`has`](Self::has) asks
///   the store alone.
/// - Serving: blocks put through [`put`](Self::put) (or announced with
///   [`notify_new_blocks`](Self::notify_new_blocks) after writing the store directly), and
///   blocks fetched, go to the peers that already asked for them. Each peer's wantlist
///   entries are taken in at most at [`Config::with_max_wants_per_second`] (with bursts of
///   [`Config::with_want_burst`]), long wantlists by turns between peers, so a peer flooding
///   wants neither grows memory nor takes the CPU other peers' transfers need.
///
/// Everything in flight is bounded: store lookups by
/// [`ServerConfig::with_max_lookups_in_flight`](crate::ServerConfig::with_max_lookups_in_flight),
/// envelopes by
/// [`ServerConfig::with_max_envelopes_in_flight`](crate::ServerConfig::with_max_envelopes_in_flight),
/// wants by the [`ClientConfig`](crate::ClientConfig) limits, store writes of `put` by
/// [`Config::with_max_puts_in_flight`], messages per peer by the network layer, and
/// commands from handles by a channel of 64.
pub struct Behaviour<S> {
    network: network::Behaviour,
    server: ServerEngine,
    client: ClientEngine,
    /// The store, and its reads and writes in flight.
    store: StoreIo<S>,
    /// Whether queries look in the store before asking peers.
    local_first: bool,
    /// Blocks of the client's next events that came from the store: not written again.
    local_hits: HashSet<Cid>,
    /// The CIDs of the provider searches asked for, by kad key.
    searches: Searches,
    /// Client events, each reported after the write of the blocks accepted with or before it.
    delivery: Delivery<Event>,
    /// Envelopes and wantlist updates handed to the network and not yet reported.
    sent: Sent,
    /// Messages per peer the client may have queued in the network layer.
    max_client_messages: usize,
    /// Wantlist updates waiting for room towards their peer, merged per peer.
    outbox: Outbox,
    /// Rings at or before the client's next deadline.
    client_alarm: Alarm,
    commands: mpsc::Receiver<Command>,
    command_sender: mpsc::Sender<Command>,
    /// Queries started through a control, and where their blocks go.
    streams: Streams,
    /// Addresses of peers the swarm told about, to dial providers by peer id.
    addresses: AddressBook,
    /// What was logged about which peer, so each kind is logged once per peer at debug.
    troubles: Troubles,
    /// Received wantlists on their way into the server, by turns within each peer's
    /// allowance.
    intake: Intake,
    /// Wakes the behaviour when peers waiting for their allowance have earned a turn.
    intake_alarm: Alarm,
    /// Peers whose connections are kept alive because an engine owes them something.
    keep_alive: KeepAlive,
    events: VecDeque<ToSwarm<Event, HandlerIn>>,
    waker: Option<Waker>,
}

impl<S> fmt::Debug for Behaviour<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Behaviour")
            .field("server", &self.server.stats())
            .field("client", &self.client.stats())
            .field("store", &self.store)
            .field("envelopes_in_flight", &self.sent.envelopes())
            .finish_non_exhaustive()
    }
}

impl<S: Blockstore + 'static> Behaviour<S> {
    /// A node on `store` with `config`.
    pub fn new(store: S, config: Config) -> Self {
        let config = config.settled();
        let server = ServerEngine::new(config.server.clone());
        Self::from_config(store, config, server)
    }

    /// Like [`Behaviour::new`], and registers the server's metrics on `registry` (under the
    /// `bitswap_server` prefix, see [`ServerMetrics`](crate::ServerMetrics)). Needs the
    /// `metrics` cargo feature (on by default).
    #[cfg(feature = "metrics")]
    pub fn with_metrics(store: S, config: Config, registry: &mut Registry) -> Self {
        let config = config.settled();
        let metrics = crate::ServerMetrics::new(registry);
        let server = ServerEngine::with_metrics(config.server.clone(), metrics);
        Self::from_config(store, config, server)
    }

    /// The behaviour of a [settled](Config::settled) `config`.
    fn from_config(store: S, config: Config, server: ServerEngine) -> Self {
        let (command_sender, commands) = mpsc::channel(COMMAND_CAPACITY);
        let max_client_messages = config
            .network
            .max_queued_messages()
            .saturating_sub(config.server.max_envelopes_in_flight())
            .max(1);
        let max_waiting = config.client.max_wants_per_peer() * WAITING_ENTRIES_PER_WANT;
        let mut network = network::Behaviour::new(config.network);
        network.set_manual_release();
        Self {
            network,
            server,
            client: ClientEngine::new(config.client),
            store: StoreIo::new(store, config.max_puts_in_flight),
            local_first: config.local_first,
            local_hits: HashSet::new(),
            searches: Searches::default(),
            delivery: Delivery::default(),
            sent: Sent::default(),
            max_client_messages,
            outbox: Outbox::new(max_waiting),
            client_alarm: Alarm::default(),
            commands,
            command_sender,
            streams: Streams::default(),
            addresses: AddressBook::default(),
            intake: Intake::new(config.max_wants_per_second, config.want_burst),
            intake_alarm: Alarm::default(),
            keep_alive: KeepAlive::default(),
            troubles: Troubles::default(),
            events: VecDeque::new(),
            waker: None,
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn start_put(&mut self, origin: Origin, blocks: Vec<Block>) {
        self.store.put(origin, blocks);
        self.wake();
    }

    /// Drains what the server engine asks for: lookups become store futures, envelopes go to
    /// the network. Called after every input to the server.
    fn drive_server(&mut self) {
        loop {
            while let Some(lookup) = self.server.poll_lookup() {
                self.store.lookup(lookup);
            }
            let Some(envelope) = self.server.poll_envelope() else {
                break;
            };
            // Blocks are spread over streams, so that a far peer's link is not capped by one
            // stream's window; presences alone are small and go in order with the rest.
            let sent = if envelope.message.blocks.is_empty() {
                self.network.send(envelope.peer, envelope.message)
            } else {
                self.network.send_unordered(envelope.peer, envelope.message)
            };
            match sent {
                Ok(id) => {
                    self.sent.envelope(id, envelope.id);
                }
                Err(error) => {
                    let peer = envelope.peer;
                    self.troubles.log(peer, Trouble::EnvelopeNotSent, &error);
                    self.server.handle_envelope_failed(envelope.id);
                }
            }
        }
        self.wake();
    }

    /// Drains what the client engine asks for. Its events wait in order behind the write of
    /// the blocks accepted in the same drain.
    fn drain_client(&mut self) {
        let now = Instant::now();
        let mut blocks = Vec::new();
        // Blocks found in the store are not written again.
        let mut seen = std::mem::take(&mut self.local_hits);
        let mut events = Vec::new();
        while let Some(action) = self.client.poll_action() {
            match action {
                ClientAction::Send { peer, message } => {
                    self.keep_alive.mark(peer);
                    self.send_wantlist(peer, message, now);
                }
                ClientAction::Dial { peer } => {
                    let opts = DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    self.events.push_back(ToSwarm::Dial { opts });
                }
                ClientAction::FindProviders { cid } => {
                    let key = provider_key(&cid);
                    self.searches.insert(key.clone(), cid);
                    events.push(Event::FindProviders { cid, key });
                }
                ClientAction::Event(event) => {
                    if let ClientEvent::BlockReceived { block, .. } = &event
                        && seen.insert(*block.cid())
                    {
                        blocks.push(block.clone());
                    }
                    events.push(Event::from_client(event));
                }
            }
        }
        let batch = (!blocks.is_empty()).then(|| {
            let batch = self.delivery.start_batch();
            self.start_put(Origin::Received(batch), blocks);
            batch
        });
        self.delivery.queue(batch, events);
        self.release();
        self.client_alarm.set_by(self.client.poll_timeout(), now);
        self.wake();
    }

    /// Sends a client wantlist update to `peer` now if it has room and nothing waits for it,
    /// else merges the update into what waits in the outbox.
    fn send_wantlist(&mut self, peer: PeerId, message: Message, now: Instant) {
        if !self.outbox.is_waiting(&peer) && self.wantlist_room(&peer) {
            self.send_now(peer, message, now);
        } else if let Err(message) = self.outbox.hold(peer, message) {
            let error = "the peer's queue is full and so is its outbox";
            self.troubles.log(peer, Trouble::WantlistNotSent, &error);
            self.client.handle_send_failed(peer, &message, now);
        }
    }

    /// Whether another wantlist update to `peer` may go to the network now.
    fn wantlist_room(&self, peer: &PeerId) -> bool {
        self.network.queued_messages(peer) < self.max_client_messages
            && self.sent.wantlists_to(peer) < WANTLISTS_OUT_PER_PEER
    }

    /// Sends the update waiting for `peer` if it has room now.
    fn send_waiting(&mut self, peer: PeerId, now: Instant) {
        if self.outbox.is_waiting(&peer)
            && self.wantlist_room(&peer)
            && let Some(message) = self.outbox.take(&peer)
        {
            self.send_now(peer, message, now);
        }
    }

    fn send_now(&mut self, peer: PeerId, message: Message, now: Instant) {
        match self.network.send(peer, message.clone()) {
            Ok(id) => self.sent.wantlist(id, peer, message),
            Err(error) => {
                self.troubles.log(peer, Trouble::WantlistNotSent, &error);
                self.client.handle_send_failed(peer, &message, now);
            }
        }
    }

    /// Hands out the client events whose blocks are written, in order.
    fn release(&mut self) {
        while let Some(event) = self.delivery.poll_event() {
            self.deliver(event);
        }
    }

    /// Reports a client event: to the query's stream if a control started it, else to the
    /// swarm.
    fn deliver(&mut self, event: Event) {
        match self.streams.route(event) {
            Routed::Swarm(event) => self.events.push_back(ToSwarm::GenerateEvent(event)),
            Routed::Stream => {}
            Routed::Dropped(query) => {
                self.client.cancel(query, Instant::now());
                self.drain_client();
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Get {
                cids,
                session,
                reply,
            } => {
                let count = cids.len();
                let result = self.start_query(cids, session);
                let result = result.map(|query| self.streams.open(query, count));
                if let Err(Ok(stream)) = reply.send(result) {
                    // The caller stopped waiting.
                    self.streams.close(&stream.query());
                    self.client.cancel(stream.query(), Instant::now());
                }
                self.drain_client();
            }
            Command::NewSession { reply } => {
                let _ = reply.send(self.client.new_session());
            }
            Command::CloseSession { session } => self.close_session(session),
            Command::AddProviders { cid, peers } => self.add_providers(&cid, peers),
        }
    }

    fn on_network_event(&mut self, event: network::Event) {
        let now = Instant::now();
        match event {
            network::Event::PeerConnected { peer } => {
                let version = self.network.peer_version(&peer).unwrap_or(Version::V1_2_0);
                self.server.handle_peer_connected(peer, version);
                self.client.handle_peer_connected(peer, version, now);
            }
            network::Event::PeerVersion { peer, version } => {
                self.server.handle_peer_version(peer, version);
                self.client.handle_peer_version(peer, version);
            }
            network::Event::PeerDisconnected { peer } => {
                self.keep_alive.handle_peer_disconnected(&peer);
                self.intake.handle_peer_disconnected(&peer);
                self.troubles.forget(&peer);
                self.outbox.forget(&peer);
                self.server.handle_peer_disconnected(&peer);
                self.client.handle_peer_disconnected(&peer, now);
            }
            network::Event::Message {
                peer,
                connection,
                message,
                began,
            } => {
                self.keep_alive.mark(peer);
                self.client.handle_message_began(peer, &message, began, now);
                if let Some(message) = self.intake.handle_message(peer, connection, message, now) {
                    self.server.handle_message(peer, &message);
                    self.network.release(peer, connection);
                } else {
                    while self.take_turn(true, now) {}
                }
            }
            network::Event::MessageSent { peer, id } => {
                self.keep_alive.mark(peer);
                if let Some(Out::Envelope(envelope)) = self.sent.take(id) {
                    self.server.handle_envelope_sent_at(envelope, now);
                }
                self.send_waiting(peer, now);
            }
            network::Event::MessageStalled { id, .. } => {
                if let Some(envelope) = self.sent.envelope_of(id) {
                    self.server.handle_envelope_stalled(envelope);
                }
            }
            network::Event::SendFailed { peer, id, error } => {
                self.keep_alive.mark(peer);
                // The handler logs send failures once per connection.
                match self.sent.take(id) {
                    Some(Out::Envelope(envelope)) => {
                        tracing::trace!(%peer, %error, "server envelope failed");
                        // Cut on its way to a peer still connected: it will not ask again.
                        let cut = matches!(
                            error,
                            network::SendFailure::Timeout
                                | network::SendFailure::Write(_)
                                | network::SendFailure::ConnectionClosed
                        );
                        if cut && self.network.is_connected(&peer) {
                            self.server.handle_envelope_lost(envelope);
                        } else {
                            self.server.handle_envelope_failed(envelope);
                        }
                    }
                    Some(Out::Wantlist(peer, message)) => {
                        tracing::trace!(%peer, %error, "wantlist update failed");
                        self.client.handle_send_failed(peer, &message, now);
                    }
                    None => {}
                }
                self.send_waiting(peer, now);
            }
            network::Event::ConnectionError { peer, error, .. } => {
                tracing::debug!(%peer, %error, "connection closed with an error");
                self.client.handle_connection_error(error.clone(), now);
                let event = Event::ConnectionError { peer, error };
                self.events.push_back(ToSwarm::GenerateEvent(event));
            }
            network::Event::InboundFailure { peer, error, .. } => {
                // Logged by the handler once per connection and kind. Only a protocol
                // violation costs the peer its standing: a stream reset or cut in the middle
                // of a message happens to honest peers.
                tracing::trace!(%peer, %error, "inbound Bitswap stream reset");
                if error.is_violation() {
                    self.client.handle_peer_misbehaved(peer, now);
                }
            }
        }
        self.drive_server();
        self.drain_client();
    }

    /// Lets the intake give the server the next turn: a turn beyond the backlog's bound if
    /// `excess`, else the next peer's that has allowance. Returns false if no peer took one.
    fn take_turn(&mut self, excess: bool, now: Instant) -> bool {
        let server = &mut self.server;
        let take = |peer, message: &Message, entries| {
            server.handle_message_part(peer, message, entries);
        };
        let taken = if excess {
            self.intake.take_excess_turn(now, take)
        } else {
            self.intake.take_turn(now, take)
        };
        let Some(Taken { peer, release }) = taken else {
            return false;
        };
        self.keep_alive.mark(peer);
        if let Some(connection) = release {
            self.network.release(peer, connection);
        }
        self.drive_server();
        true
    }

    /// Keeps the connections of the peers that are owed something alive, and lets the others
    /// go idle, for the peers marked since the last call.
    fn refresh_keep_alive(&mut self) {
        let (server, client, network) = (&self.server, &self.client, &mut self.network);
        self.keep_alive.refresh(
            |peer| server.holds_wants_of(peer) || client.has_wants_at(peer),
            |peer, owed| network.set_keep_alive(peer, owed),
        );
    }

    fn on_put_done(
        &mut self,
        PutDone {
            origin,
            blocks,
            result,
        }: PutDone,
    ) {
        let written = blocks.len();
        if result.is_ok() {
            self.server.handle_new_blocks(blocks);
            self.drive_server();
        }
        let event = match (origin, result) {
            (Origin::User(id), Ok(())) => Some(Event::Stored {
                id,
                blocks: written,
            }),
            (Origin::User(id), Err(error)) => {
                tracing::warn!(%id, %error, "blockstore write failed");
                Some(Event::StoreFailed {
                    id: Some(id),
                    error,
                })
            }
            (Origin::Received(_), Ok(())) => None,
            (Origin::Received(_), Err(error)) => {
                tracing::warn!(%error, "blockstore write of received blocks failed");
                Some(Event::StoreFailed { id: None, error })
            }
        };
        self.events.extend(event.map(ToSwarm::GenerateEvent));
        // The failure, if any, is reported ahead of the events that waited for the write.
        if let Origin::Received(batch) = origin {
            self.delivery.handle_written(batch);
            self.release();
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

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.network
            .handle_pending_inbound_connection(connection, local, remote)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.network
            .handle_pending_outbound_connection(connection, peer, addresses, role)?;
        Ok(peer.map_or_else(Vec::new, |peer| self.addresses.get(&peer).to_vec()))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        if let FromSwarm::NewExternalAddrOfPeer(new) = event {
            self.addresses.add(new.peer_id, new.addr);
        }
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
        // Every round takes at most one network event and then what the other sources have
        // ready; long wantlists are taken in by turns once nothing else is ready, and every
        // 32 busy rounds regardless.
        let mut rounds = 0usize;
        loop {
            rounds += 1;
            if let Some(event) = self.events.pop_front() {
                return Poll::Ready(event);
            }
            self.refresh_keep_alive();
            let mut progress = false;
            match self.network.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(event)) => {
                    self.on_network_event(event);
                    progress = true;
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
                    progress = true;
                }
                Poll::Pending => {}
            }
            for _ in 0..LOOKUPS_PER_ROUND {
                let Poll::Ready(Some((id, result))) = self.store.poll_lookup(cx) else {
                    break;
                };
                self.server.handle_lookup(id, result);
                self.drive_server();
                progress = true;
            }
            if let Poll::Ready(Some((query, found))) = self.store.poll_local_read(cx) {
                self.local_hits
                    .extend(found.iter().map(|block| *block.cid()));
                self.client
                    .handle_local_blocks(query, found, Instant::now());
                self.drain_client();
                progress = true;
            }
            if let Poll::Ready(Some(done)) = self.store.poll_put(cx) {
                self.on_put_done(done);
                progress = true;
            }
            if let Poll::Ready(Some(command)) = self.commands.poll_next_unpin(cx) {
                self.on_command(command);
                progress = true;
            }
            if self.intake_alarm.poll_ring(cx).is_ready() {
                progress = true;
            }
            if self.client_alarm.poll_ring(cx).is_ready() {
                // Timeouts may end queries, and so the client's wants at any peer.
                self.keep_alive.mark_all();
                self.client.handle_timeout(Instant::now());
                self.drain_client();
                progress = true;
            }
            if progress {
                if rounds.is_multiple_of(32) {
                    self.take_turn(false, Instant::now());
                }
                continue;
            }
            if self.take_turn(false, Instant::now()) {
                // Back soon for the next turn, after the swarm delivered what else came in.
                cx.waker().wake_by_ref();
            } else if let Some(wait) = self.intake.next_turn_in()
                && !self.intake_alarm.is_set()
                // Peers wait for their allowance: back when one has earned a turn.
                && self.intake_alarm.set_in(wait, Instant::now(), cx).is_ready()
            {
                cx.waker().wake_by_ref();
            }
            self.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
    }
}
