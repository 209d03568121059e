//! The node's libp2p swarm: identify, ping, kad and Bitswap over TCP (Noise, Yamux) and QUIC
//! (quic-v1), with prometheus metrics, behind connection limits (per peer, in total, pending,
//! and the process's memory).

use std::{
    collections::{HashSet, VecDeque},
    fmt,
    net::IpAddr,
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use bitswap_node::store::NodeStore;
use bitswap_node::transport::StopTolerant;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, Transport as _, connection_limits, identify,
    identity::Keypair,
    kad, memory_connection_limits,
    metrics::{Metrics, Recorder as _},
    multiaddr::Protocol,
    noise, ping, quic,
    swarm::{ConnectionDenied, DialError, ListenError, NetworkBehaviour, SwarmEvent},
    tcp,
};
use prometheus_client::registry::Registry;

/// How long a connection with no stream open stays up.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one kad query (a lookup, a provide) may run.
const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most listen addresses of one peer that identify hands to kad.
const MAX_KAD_ADDRESSES_PER_PEER: usize = 8;
/// Most peers (or addresses, for connections refused before the peer is known) remembered as
/// logged at info level for a refused connection; the oldest is forgotten first.
const MAX_REFUSALS_REMEMBERED: usize = 1024;

/// Limits on connections: beyond them a new connection is refused (closed before any protocol
/// runs on it) and the refusal logged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    /// Established connections in all.
    pub(crate) max_established: u32,
    /// Established connections with one peer.
    pub(crate) max_established_per_peer: u32,
    /// Incoming connections still in their handshake.
    pub(crate) max_pending_incoming: u32,
    /// Outgoing connections still in their handshake.
    pub(crate) max_pending_outgoing: u32,
    /// The process memory (resident) above which new connections are refused.
    pub(crate) max_memory: MemoryLimit,
}

/// A bound on the process's resident memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum MemoryLimit {
    /// In bytes.
    Bytes(u64),
    /// A fraction (0 to 1) of the machine's physical memory.
    Fraction(f64),
}

/// Every protocol the node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Node {
    /// Refuses connections over the [`Limits`] on their number; first, so that a connection
    /// it refuses reaches no other behaviour.
    limits: connection_limits::Behaviour,
    /// Refuses new connections while the process's memory is over its [`Limits`].
    memory: memory_connection_limits::Behaviour,
    /// Tells peers (kubo among them) which protocols we speak, Bitswap's versions included,
    /// and tells us their listen addresses, which go to kad.
    identify: identify::Behaviour,
    /// Keeps connections alive and measures them.
    ping: ping::Behaviour,
    /// The IPFS DHT (`/ipfs/kad/1.0.0`) with an in-memory record store: provider records.
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Serves the store and fetches into it.
    pub(crate) bitswap: bitswap::Behaviour<NodeStore>,
}

/// Batches the Bitswap server keeps in flight over an S3 store: 32 blocks of 256 KiB each
/// 20 ms away read at 400 MB/s.
const S3_ENVELOPES_IN_FLIGHT: usize = 32;

/// A swarm with the identity `keypair` over `store`, whose kad runs in `mode` (server: it
/// answers DHT queries; client: it only asks), with its metrics (libp2p's: bandwidth, swarm,
/// identify, ping, kad; Bitswap's server) registered on `registry`, speaking the Bitswap
/// `versions` (all of them if empty), refusing connections beyond `limits`.
///
/// The returned [`Metrics`] must see the swarm's events ([`Observer::observe`] does it).
pub(crate) fn build(
    keypair: Keypair,
    store: NodeStore,
    mode: kad::Mode,
    registry: &mut Registry,
    versions: &[bitswap::Version],
    limits: Limits,
) -> anyhow::Result<(Swarm<Node>, Metrics)> {
    let mut network = bitswap::network::Config::default();
    if !versions.is_empty() {
        network = network.with_versions(versions.iter().copied());
    }
    // `get` walks a DAG and asks Bitswap only for the blocks its store lacks, and gives up by
    // its own deadlines (`--timeout`, `--no-peer-timeout`, see `fetch.rs`), with messages that
    // name them: the library's no-peer deadline would race them.
    let client = bitswap::ClientConfig::default().with_no_peer_timeout(None);
    let mut bitswap_config = bitswap::Config::default()
        .with_network(network)
        .with_client(client)
        .with_local_first(false);
    if matches!(store, NodeStore::S3(_)) {
        // A batch in flight waits for its blocks' reads: against a store a round trip away,
        // more batches keep the links busy (the outstanding bytes still bound the memory).
        let server = bitswap_config
            .server()
            .clone()
            .with_max_envelopes_in_flight(S3_ENVELOPES_IN_FLIGHT);
        bitswap_config = bitswap_config.with_server(server);
    }
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            bitswap::capped_yamux_config,
        )?
        // Many peers (kubo's default listens on both) are reachable over QUIC only; QUIC brings
        // its own encryption (TLS 1.3) and streams, so Noise and Yamux are TCP's alone.
        .with_other_transport(|key| {
            quic::tokio::Transport::new(quic::Config::new(key))
                .map(|(peer, connection), _| (peer, StopTolerant::new(connection)))
        })?
        .with_bandwidth_metrics(registry)
        .with_behaviour(|key| {
            let peer_id = key.public().to_peer_id();
            let mut config = kad::Config::new(kad::PROTOCOL_NAME);
            config.set_query_timeout(KAD_QUERY_TIMEOUT);
            let mut kad =
                kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), config);
            // Without a confirmed external address kad would stay a client; on loopback and
            // in private networks there is none, so the mode is set, not guessed.
            kad.set_mode(Some(mode));
            let memory = match limits.max_memory {
                MemoryLimit::Bytes(bytes) => memory_connection_limits::Behaviour::with_max_bytes(
                    usize::try_from(bytes).unwrap_or(usize::MAX),
                ),
                MemoryLimit::Fraction(fraction) => {
                    memory_connection_limits::Behaviour::with_max_percentage(fraction)
                }
            };
            Node {
                limits: connection_limits::Behaviour::new(
                    connection_limits::ConnectionLimits::default()
                        .with_max_established(Some(limits.max_established))
                        .with_max_established_per_peer(Some(limits.max_established_per_peer))
                        .with_max_pending_incoming(Some(limits.max_pending_incoming))
                        .with_max_pending_outgoing(Some(limits.max_pending_outgoing)),
                ),
                memory,
                identify: identify::Behaviour::new(
                    identify::Config::new("/ipfs/0.1.0".to_owned(), key.public())
                        .with_agent_version(format!("bitswap-node/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                kad,
                bitswap: bitswap::Behaviour::with_metrics(store, bitswap_config, registry),
            }
        })?
        .with_swarm_config(|config| {
            // Lazy negotiation: a stream offering one protocol carries its first message with
            // the proposal instead of a round trip later (Bitswap offers one version once the
            // peer's is known), as go-libp2p does.
            config
                .with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT)
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    let metrics = Metrics::new(registry);
    Ok((swarm, metrics))
}

/// What `serve` and `get` do with every swarm event besides their own work: record it in the
/// metrics, give kad the listen addresses identify learns from peers that speak kad, and log
/// connections refused by the [`Limits`].
pub(crate) struct Observer {
    /// libp2p's metrics.
    metrics: Metrics,
    /// Who was refused a connection already.
    refusals: Refusals,
}

impl Observer {
    /// An observer recording into `metrics`.
    pub(crate) fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            refusals: Refusals::default(),
        }
    }

    /// Records `event`, routes identify's findings to kad and logs refused connections.
    pub(crate) fn observe(&mut self, swarm: &mut Swarm<Node>, event: &SwarmEvent<NodeEvent>) {
        self.metrics.record(event);
        match event {
            SwarmEvent::IncomingConnectionError {
                error: ListenError::Denied { cause },
                peer_id,
                send_back_addr,
                ..
            } => {
                let who = peer_id.map_or_else(|| Remote::address(send_back_addr), Remote::Peer);
                self.refusals.log(who, "incoming", cause);
            }
            SwarmEvent::OutgoingConnectionError {
                error: DialError::Denied { cause },
                peer_id: Some(peer_id),
                ..
            } => self.refusals.log(Remote::Peer(*peer_id), "outgoing", cause),
            SwarmEvent::Behaviour(NodeEvent::Identify(event)) => {
                self.metrics.record(event);
                if let identify::Event::Received { peer_id, info, .. } = event
                    && info.protocols.contains(&kad::PROTOCOL_NAME)
                {
                    for address in info.listen_addrs.iter().take(MAX_KAD_ADDRESSES_PER_PEER) {
                        swarm
                            .behaviour_mut()
                            .kad
                            .add_address(peer_id, address.clone());
                    }
                }
            }
            SwarmEvent::Behaviour(NodeEvent::Ping(event)) => self.metrics.record(event),
            SwarmEvent::Behaviour(NodeEvent::Kad(event)) => self.metrics.record(event),
            _ => {}
        }
    }
}

/// Who a refused connection came from or went to: the peer once known, else (an incoming
/// connection refused before its handshake) the remote IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Remote {
    Peer(PeerId),
    Ip(IpAddr),
    Address(Multiaddr),
}

impl Remote {
    fn address(address: &Multiaddr) -> Self {
        address
            .iter()
            .find_map(|protocol| match protocol {
                Protocol::Ip4(ip) => Some(Self::Ip(ip.into())),
                Protocol::Ip6(ip) => Some(Self::Ip(ip.into())),
                _ => None,
            })
            .unwrap_or_else(|| Self::Address(address.clone()))
    }
}

impl fmt::Display for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Peer(peer) => write!(f, "peer {peer}"),
            Self::Ip(ip) => write!(f, "address {ip}"),
            Self::Address(address) => write!(f, "address {address}"),
        }
    }
}

/// Logs refused connections: the first of each remote at info level, the rest at trace, so
/// that a peer retrying in a loop does not flood the log. The remotes remembered are bounded
/// ([`MAX_REFUSALS_REMEMBERED`]); one forgotten is logged at info again.
#[derive(Debug, Default)]
struct Refusals {
    logged: HashSet<Remote>,
    /// `logged` in the order they came, to forget the oldest.
    order: VecDeque<Remote>,
}

impl Refusals {
    fn log(&mut self, who: Remote, direction: &str, denied: &ConnectionDenied) {
        // `ConnectionDenied` only says "connection denied"; the limit is its source.
        let cause = std::error::Error::source(denied)
            .map_or_else(|| denied.to_string(), ToString::to_string);
        if self.logged.contains(&who) {
            tracing::trace!(%who, direction, %cause, "connection refused");
            return;
        }
        tracing::info!(
            %who,
            direction,
            %cause,
            "connection refused (further refusals of this remote are logged at trace level)"
        );
        if self.order.len() >= MAX_REFUSALS_REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.logged.remove(&oldest);
        }
        self.logged.insert(who.clone());
        self.order.push_back(who);
    }
}

/// Gives kad the `--bootstrap` peers and starts a bootstrap query. Each address must end in
/// `/p2p/PEER`.
pub(crate) fn bootstrap(swarm: &mut Swarm<Node>, peers: &[Multiaddr]) -> anyhow::Result<()> {
    if peers.is_empty() {
        return Ok(());
    }
    for address in peers {
        let peer = peer_id(address)
            .with_context(|| format!("--bootstrap {address} does not end in /p2p/PEER"))?;
        let mut without_peer = address.clone();
        without_peer.pop();
        swarm.behaviour_mut().kad.add_address(&peer, without_peer);
    }
    swarm
        .behaviour_mut()
        .kad
        .bootstrap()
        .map_err(|_| anyhow!("kad knows no bootstrap peer"))?;
    Ok(())
}

/// The peer id at the end of a multiaddr, if any.
pub(crate) fn peer_id(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}
