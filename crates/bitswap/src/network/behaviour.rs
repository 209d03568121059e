//! [`Behaviour`]: the Bitswap [`NetworkBehaviour`]. It tracks peers, their connections and
//! versions, hands outgoing messages to one connection per peer and reports what arrives.
//! It has no policy: the engines decide what to send.

use std::{
    collections::{HashMap, VecDeque},
    fmt, io,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use libp2p::{
    Multiaddr, PeerId,
    core::{Endpoint, transport::PortUse},
    swarm::{
        ConnectionClosed, ConnectionDenied, ConnectionId, DialFailure, FromSwarm, ListenFailure,
        NetworkBehaviour, NotifyHandler, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
        behaviour::ConnectionEstablished,
    },
};

use super::{
    config::Config,
    handler::{Handler, HandlerEvent, HandlerIn},
    inbound::Budget,
};
use crate::{
    client::ConnectionError,
    message::Message,
    protocol::{ProtocolError, Version},
};

/// Identifies a message accepted by [`Behaviour::send`]; [`Event::MessageSent`] and
/// [`Event::SendFailed`] carry it. Unique within one [`Behaviour`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(u64);

#[cfg(test)]
impl MessageId {
    /// An id for the unit tests of the behaviour's parts.
    pub(crate) fn for_test(id: u64) -> Self {
        Self(id)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why [`Behaviour::send`] refused a message at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The peer has no connection.
    #[error("peer not connected")]
    NotConnected,
    /// The peer already has [`Config::max_queued_messages`] messages waiting or being written.
    #[error("{limit} messages already queued for the peer")]
    QueueFull {
        /// The configured limit.
        limit: usize,
    },
}

/// Why an accepted message was not delivered to the peer's stream.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendFailure {
    /// The connection closed before the message was written.
    #[error("connection closed before the message was written")]
    ConnectionClosed,
    /// The peer speaks none of the configured Bitswap versions on this connection.
    #[error("peer speaks none of the configured Bitswap versions")]
    Unsupported,
    /// Opening and negotiating a stream timed out.
    #[error("opening a stream timed out")]
    OpenTimeout,
    /// Opening a stream failed.
    #[error("opening a stream failed: {0}")]
    Open(Arc<io::Error>),
    /// Writing the message took longer than [`Config::send_timeout`].
    #[error("writing timed out")]
    Timeout,
    /// Writing the message failed.
    #[error("writing failed: {0}")]
    Write(Arc<ProtocolError>),
}

/// Why an inbound stream was reset.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InboundFailure {
    /// The peer sent something that is not a valid message (too large, malformed, invalid
    /// block), or the stream failed.
    #[error("reading a message failed: {0}")]
    Protocol(ProtocolError),
    /// The connection already had [`Config::max_inbound_streams`] streams being read and
    /// three times as many waiting for them.
    #[error("more than {limit} inbound streams on one connection")]
    TooManyStreams {
        /// The configured limit.
        limit: usize,
    },
}

impl InboundFailure {
    /// Whether the peer broke the protocol: it sent a length over the limit or malformed, bytes
    /// that are no Bitswap message, or an invalid one. A stream that failed or ended in the
    /// middle of a message is not one (kubo resets a stream when its own write deadline
    /// passes, and networks drop connections), nor is a stream over the limit: the peer loses
    /// the message, and nothing else should follow.
    pub fn is_violation(&self) -> bool {
        match self {
            Self::Protocol(error) => error.is_violation(),
            Self::TooManyStreams { .. } => false,
        }
    }
}

/// What the [`Behaviour`] reports.
#[derive(Debug)]
pub enum Event {
    /// The first connection to a peer was established.
    PeerConnected {
        /// The peer.
        peer: PeerId,
    },
    /// The last connection to a peer closed; its state is gone.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
    },
    /// The best Bitswap version known for a peer changed (see [`Behaviour::peer_version`]).
    PeerVersion {
        /// The peer.
        peer: PeerId,
        /// Its version.
        version: Version,
    },
    /// A message arrived. One event per message, as soon as it is read.
    Message {
        /// The sender.
        peer: PeerId,
        /// The connection it came on.
        connection: ConnectionId,
        /// The message; its blocks are verified.
        message: Message,
        /// When it began to arrive: when the peer opened its stream, for the first message
        /// of a stream, else when its length prefix had arrived. The peer may negotiate the
        /// protocol of a new stream before it writes (go-libp2p does while it does not know
        /// ours), a round trip before the message comes: a round trip measured to the
        /// message would count it twice.
        began: Instant,
    },
    /// A message accepted by [`Behaviour::send`] was written and flushed to its stream.
    MessageSent {
        /// The recipient.
        peer: PeerId,
        /// The id `send` returned.
        id: MessageId,
    },
    /// A message accepted by [`Behaviour::send`] waits behind a write that has taken longer
    /// than [`Config::with_write_stall`]: the peer reads slowly or not at all. Reported once,
    /// before [`Event::MessageSent`] or [`Event::SendFailed`].
    MessageStalled {
        /// The recipient.
        peer: PeerId,
        /// The id `send` returned.
        id: MessageId,
    },
    /// A message accepted by [`Behaviour::send`] was not written.
    SendFailed {
        /// The recipient.
        peer: PeerId,
        /// The id `send` returned.
        id: MessageId,
        /// Why.
        error: SendFailure,
    },
    /// An inbound stream was reset because of the peer.
    InboundFailure {
        /// The peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// Why.
        error: InboundFailure,
    },
    /// A connection closed with an error (I/O, security or muxer, such as yamux's
    /// `FrameTooLarge`), before its [`Event::PeerDisconnected`] if it was the last. Connections
    /// closed by either side cleanly or for idleness are not reported.
    ConnectionError {
        /// The peer.
        peer: PeerId,
        /// The connection.
        connection: ConnectionId,
        /// Why it closed.
        error: ConnectionError,
    },
}

/// The error `cause` of a connection to `peer`, unless it is none: the connection closed
/// locally, for idleness, or because the peer's muxer closed it (yamux reports that as
/// `Closed`, an I/O error like any other).
fn connection_error(
    peer: PeerId,
    cause: Option<&libp2p::swarm::ConnectionError>,
) -> Option<ConnectionError> {
    let libp2p::swarm::ConnectionError::IO(error) = cause? else {
        return None;
    };
    let closed = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<yamux::ConnectionError>())
        .is_some_and(|e| matches!(e, yamux::ConnectionError::Closed));
    (!closed).then(|| ConnectionError::new(peer, error))
}

/// The Bitswap [`NetworkBehaviour`]: composes with `#[derive(NetworkBehaviour)]`.
///
/// Outgoing messages go to the oldest direct connection of the peer (a relayed one only when
/// there is no direct one), so they keep their order.
/// Each is encoded there for the version negotiated on the stream that carries it.
///
/// Every queue is bounded. Per peer at most [`Config::max_queued_messages`] messages are
/// accepted and not yet resolved (sent or failed). The pending-event queue holds at most those
/// plus the events of the last handler report: the swarm only reads more handler reports when
/// [`NetworkBehaviour::poll`] has nothing left, so it is drained before it grows.
pub struct Behaviour {
    config: Arc<Config>,
    peers: HashMap<PeerId, Peer>,
    events: VecDeque<ToSwarm<Event, HandlerIn>>,
    next_id: u64,
    /// The user calls [`release`](Self::release) once done with each message, instead of the
    /// handler being told when the message is taken from [`poll`](NetworkBehaviour::poll).
    manual_release: bool,
    /// How every connection reads inbound messages, with the byte budget they share.
    budget: Budget,
    /// When each connection being set up was dialled or accepted; at most
    /// [`MAX_SETUPS`] (the swarm bounds pending connections itself, usually far lower).
    setups: HashMap<ConnectionId, Instant>,
}

/// Connections being set up whose start is remembered; past this, a connection's set-up is
/// not timed and it spreads its unordered messages.
const MAX_SETUPS: usize = 4096;

/// A connected peer.
#[derive(Default)]
struct Peer {
    /// Oldest first.
    connections: Vec<Connection>,
    /// The last version reported.
    version: Option<Version>,
    /// Its connections are kept alive while idle ([`Behaviour::set_keep_alive`]).
    keep_alive: bool,
}

struct Connection {
    id: ConnectionId,
    version: Option<Version>,
    /// Through a relay: limited in time and bytes, used only when no direct connection is.
    relayed: bool,
    /// Messages handed to this connection's handler, not yet reported sent or failed.
    unresolved: VecDeque<MessageId>,
}

impl Peer {
    fn queued(&self) -> usize {
        self.connections.iter().map(|c| c.unresolved.len()).sum()
    }

    /// The connection messages go to: the oldest direct one, else the oldest relayed one. A
    /// relayed connection (a circuit relay v2 reservation) carries a limited number of bytes
    /// for a limited time, too little for blocks. The choice changes only when connections
    /// open or close, so messages keep their order on one connection meanwhile.
    fn sending(&mut self) -> Option<&mut Connection> {
        let direct = self
            .connections
            .iter()
            .position(|c| !c.relayed)
            .unwrap_or(0);
        self.connections.get_mut(direct)
    }

    fn best_version(&self) -> Option<Version> {
        Version::ALL
            .into_iter()
            .find(|v| self.connections.iter().any(|c| c.version == Some(*v)))
    }
}

impl Behaviour {
    /// A behaviour with `config`.
    pub fn new(config: Config) -> Self {
        Self {
            budget: Budget::new(&config),
            config: Arc::new(config),
            peers: HashMap::new(),
            events: VecDeque::new(),
            next_id: 0,
            manual_release: false,
            setups: HashMap::new(),
        }
    }

    /// Switches to releasing messages by hand: a connection reads at most eight messages ahead
    /// of the [`release`](Self::release) calls for its messages, so the user can take a
    /// large message in over several turns without the peer queueing more meanwhile.
    pub(crate) fn set_manual_release(&mut self) {
        self.manual_release = true;
    }

    /// Done with a message that came on `connection` of `peer` (manual release only).
    pub(crate) fn release(&mut self, peer: PeerId, connection: ConnectionId) {
        self.events.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection),
            event: HandlerIn::Taken,
        });
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Queues `message` for `peer` on its oldest connection. The outcome is reported later as
    /// [`Event::MessageSent`] or [`Event::SendFailed`] with the returned id.
    ///
    /// With the default of one outbound stream per connection, messages to a peer are written
    /// in the order of the calls, and this crate's handler reports them in that order (see
    /// [`Config::with_max_outbound_streams`]). Each message is encoded for the version
    /// negotiated on the stream that carries it, as [`encode`](crate::protocol::encode) does: before
    /// 1.2.0 want-have becomes want-block and presences and pending bytes are left out; before
    /// 1.1.0 only CIDv0 blocks are sent. Check [`Behaviour::peer_version`] first if that matters.
    pub fn send(&mut self, peer: PeerId, message: Message) -> Result<MessageId, SendError> {
        self.send_on(peer, message, false)
    }

    /// Queues `message` for `peer` as [`send`](Self::send) does, on streams of its own: each
    /// unordered message goes to a stream with nothing else to write, or to a new stream, up
    /// to [`Config::with_max_unordered_streams`] per connection; once that many are open, to
    /// one with a single message waiting. Unordered messages may arrive
    /// in any order, among themselves and with those of `send`; in exchange a far peer's link
    /// is not capped by one stream's flow-control window, and they never wait behind the
    /// ordered ones (or these behind them). For answers (blocks and presences), not for
    /// wantlists, whose cancels must not overtake their wants.
    pub fn send_unordered(
        &mut self,
        peer: PeerId,
        message: Message,
    ) -> Result<MessageId, SendError> {
        self.send_on(peer, message, true)
    }

    fn send_on(
        &mut self,
        peer: PeerId,
        message: Message,
        unordered: bool,
    ) -> Result<MessageId, SendError> {
        let limit = self.config.max_queued_messages();
        let state = self.peers.get_mut(&peer).ok_or(SendError::NotConnected)?;
        if state.queued() >= limit {
            return Err(SendError::QueueFull { limit });
        }
        let connection = state.sending().ok_or(SendError::NotConnected)?;
        let id = MessageId(self.next_id);
        self.next_id += 1;
        connection.unresolved.push_back(id);
        self.events.push_back(ToSwarm::NotifyHandler {
            peer_id: peer,
            handler: NotifyHandler::One(connection.id),
            event: HandlerIn::Send {
                id,
                message,
                unordered,
            },
        });
        Ok(id)
    }

    /// Keeps every connection of `peer` alive while idle (`true`), or lets the swarm's idle
    /// connection timeout apply to them again (`false`); connections opened later follow.
    /// For a peer that is owed something without a stream open: a block it wants that may
    /// come later, or blocks we asked it for. No effect if `peer` is not connected.
    pub fn set_keep_alive(&mut self, peer: PeerId, keep: bool) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if std::mem::replace(&mut state.keep_alive, keep) == keep {
            return;
        }
        for connection in &state.connections {
            self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection.id),
                event: HandlerIn::KeepAlive(keep),
            });
        }
    }

    /// The best Bitswap version known for `peer`: negotiated on one of its streams or
    /// advertised by it (identify) and configured here. `None` if not connected or not known
    /// yet.
    pub fn peer_version(&self, peer: &PeerId) -> Option<Version> {
        self.peers.get(peer)?.version
    }

    /// Peers with at least one connection (whether or not they speak Bitswap).
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> {
        self.peers.keys()
    }

    /// Whether `peer` has at least one connection.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// Messages accepted for `peer` and not yet sent or failed.
    pub fn queued_messages(&self, peer: &PeerId) -> usize {
        self.peers.get(peer).map_or(0, Peer::queued)
    }

    fn event(&mut self, event: Event) {
        self.events.push_back(ToSwarm::GenerateEvent(event));
    }

    /// Removes `id` from the connection's unresolved messages; `false` if it was not there
    /// (already reported).
    fn resolve(&mut self, peer: PeerId, connection: ConnectionId, id: MessageId) -> bool {
        let Some(connection) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.connections.iter_mut().find(|c| c.id == connection))
        else {
            return false;
        };
        match connection.unresolved.iter().position(|i| *i == id) {
            Some(position) => {
                connection.unresolved.remove(position);
                true
            }
            None => false,
        }
    }

    fn update_version(&mut self, peer: PeerId) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let best = state.best_version();
        if best == state.version {
            return;
        }
        state.version = best;
        if let Some(version) = best {
            self.event(Event::PeerVersion { peer, version });
        }
    }

    fn on_connection_established(&mut self, peer: PeerId, connection: ConnectionId, relayed: bool) {
        let state = self.peers.entry(peer).or_default();
        let first = state.connections.is_empty();
        state.connections.push(Connection {
            id: connection,
            version: None,
            relayed,
            unresolved: VecDeque::new(),
        });
        if state.keep_alive {
            self.events.push_back(ToSwarm::NotifyHandler {
                peer_id: peer,
                handler: NotifyHandler::One(connection),
                event: HandlerIn::KeepAlive(true),
            });
        }
        if first {
            self.event(Event::PeerConnected { peer });
        }
    }

    fn on_connection_closed(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        error: Option<ConnectionError>,
    ) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(position) = state.connections.iter().position(|c| c.id == connection) else {
            return;
        };
        let closed = state.connections.remove(position);
        let last = state.connections.is_empty();
        if last {
            self.peers.remove(&peer);
        }
        for id in closed.unresolved {
            self.event(Event::SendFailed {
                peer,
                id,
                error: SendFailure::ConnectionClosed,
            });
        }
        if let Some(error) = error {
            self.event(Event::ConnectionError {
                peer,
                connection,
                error,
            });
        }
        if last {
            self.event(Event::PeerDisconnected { peer });
        } else {
            self.update_version(peer);
        }
    }
}

impl Behaviour {
    /// A connection is being dialled or was accepted: its set-up is timed from now.
    fn setup_started(&mut self, connection: ConnectionId) {
        if self.setups.len() < MAX_SETUPS {
            self.setups.insert(connection, Instant::now());
        }
    }

    /// The handler of an established connection, told how long its set-up took.
    fn new_handler(&mut self, connection: ConnectionId) -> Handler {
        let setup = self.setups.remove(&connection).map(|at| at.elapsed());
        Handler::new(
            Arc::clone(&self.config),
            self.budget.for_connection(),
            setup,
        )
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.setup_started(connection);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.new_handler(connection))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection: ConnectionId,
        _: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.setup_started(connection);
        Ok(Vec::new())
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.new_handler(connection))
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => self.on_connection_established(peer_id, connection_id, endpoint.is_relayed()),
            FromSwarm::ConnectionClosed(ConnectionClosed {
                peer_id,
                connection_id,
                cause,
                ..
            }) => {
                let error = connection_error(peer_id, cause);
                self.on_connection_closed(peer_id, connection_id, error);
            }
            FromSwarm::DialFailure(DialFailure { connection_id, .. })
            | FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.setups.remove(&connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {
            HandlerEvent::Message { message, began } => self.event(Event::Message {
                peer,
                connection,
                message,
                began,
            }),
            HandlerEvent::Version(version) => {
                if let Some(c) = self
                    .peers
                    .get_mut(&peer)
                    .and_then(|p| p.connections.iter_mut().find(|c| c.id == connection))
                {
                    c.version = Some(version);
                }
                self.update_version(peer);
            }
            HandlerEvent::Sent(ids) => {
                for id in ids {
                    if self.resolve(peer, connection, id) {
                        self.event(Event::MessageSent { peer, id });
                    }
                }
            }
            HandlerEvent::Stalled(ids) => {
                for id in ids {
                    let unresolved = self
                        .peers
                        .get(&peer)
                        .and_then(|p| p.connections.iter().find(|c| c.id == connection))
                        .is_some_and(|c| c.unresolved.contains(&id));
                    if unresolved {
                        self.event(Event::MessageStalled { peer, id });
                    }
                }
            }
            HandlerEvent::SendFailed { ids, error } => {
                for id in ids {
                    if self.resolve(peer, connection, id) {
                        self.event(Event::SendFailed {
                            peer,
                            id,
                            error: error.clone(),
                        });
                    }
                }
            }
            HandlerEvent::InboundFailure(error) => self.event(Event::InboundFailure {
                peer,
                connection,
                error,
            }),
        }
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        let Some(event) = self.events.pop_front() else {
            return Poll::Pending;
        };
        if let ToSwarm::GenerateEvent(Event::Message {
            peer, connection, ..
        }) = &event
            && !self.manual_release
        {
            // Its handler may read the next message now.
            self.events.push_front(ToSwarm::NotifyHandler {
                peer_id: *peer,
                handler: NotifyHandler::One(*connection),
                event: HandlerIn::Taken,
            });
        }
        Poll::Ready(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(id: usize, relayed: bool, version: Option<Version>) -> Connection {
        Connection {
            id: ConnectionId::new_unchecked(id),
            version,
            relayed,
            unresolved: VecDeque::new(),
        }
    }

    fn sending(connections: Vec<Connection>) -> Option<ConnectionId> {
        let mut peer = Peer {
            connections,
            ..Peer::default()
        };
        peer.sending().map(|c| c.id)
    }

    #[test]
    fn sends_prefer_the_oldest_direct_connection() {
        let v = Some(Version::V1_2_0);
        let id = ConnectionId::new_unchecked;
        assert_eq!(sending(Vec::new()), None);
        assert_eq!(
            sending(vec![connection(1, true, v), connection(2, false, None)]),
            Some(id(2)),
            "direct before relayed"
        );
        assert_eq!(
            sending(vec![
                connection(1, true, v),
                connection(2, false, None),
                connection(3, false, v),
            ]),
            Some(id(2)),
            "the oldest direct one"
        );
        assert_eq!(
            sending(vec![connection(1, true, None), connection(2, true, v)]),
            Some(id(1)),
            "relayed only when there is no direct one"
        );
    }
}
