//! The node's libp2p swarm: identify, ping, kad and Bitswap over TCP, Noise and Yamux, with
//! prometheus metrics.

use std::time::Duration;

use anyhow::{Context as _, anyhow};
use bitswap::RedbBlockstore;
use cid::Cid;
use libp2p::{
    Multiaddr, PeerId, Swarm, SwarmBuilder, identify,
    identity::Keypair,
    kad,
    metrics::{Metrics, Recorder as _},
    multiaddr::Protocol,
    noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp,
};
use prometheus_client::registry::Registry;

/// How long a connection with no stream open stays up.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one kad query (a lookup, a provide) may run.
const KAD_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Most listen addresses of one peer that identify hands to kad.
const MAX_KAD_ADDRESSES_PER_PEER: usize = 8;

/// Every protocol the node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Node {
    /// Tells peers (kubo among them) which protocols we speak, Bitswap's versions included,
    /// and tells us their listen addresses, which go to kad.
    identify: identify::Behaviour,
    /// Keeps connections alive and measures them.
    ping: ping::Behaviour,
    /// The IPFS DHT (`/ipfs/kad/1.0.0`) with an in-memory record store: provider records.
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    /// Serves the store and fetches into it.
    pub(crate) bitswap: bitswap::Behaviour<RedbBlockstore>,
}

/// A swarm with the identity `keypair` over `store`, whose kad runs in `mode` (server: it
/// answers DHT queries; client: it only asks), with its metrics (libp2p's: bandwidth, swarm,
/// identify, ping, kad; Bitswap's server) registered on `registry`, speaking the Bitswap
/// `versions` (all of them if empty).
///
/// The returned [`Metrics`] must see the swarm's events ([`Observer::observe`] does it).
pub(crate) fn build(
    keypair: Keypair,
    store: RedbBlockstore,
    mode: kad::Mode,
    registry: &mut Registry,
    versions: &[bitswap::Version],
) -> anyhow::Result<(Swarm<Node>, Metrics)> {
    let mut network = bitswap::network::Config::default();
    if !versions.is_empty() {
        network = network.with_versions(versions.iter().copied());
    }
    let bitswap_config = bitswap::Config::default().with_network(network);
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            bitswap_node::transport::yamux_config,
        )?
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
            Node {
                identify: identify::Behaviour::new(
                    identify::Config::new("/ipfs/0.1.0".to_owned(), key.public())
                        .with_agent_version(format!("bitswap-node/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                kad,
                bitswap: bitswap::Behaviour::with_metrics(store, bitswap_config, registry),
            }
        })?
        .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    let metrics = Metrics::new(registry);
    Ok((swarm, metrics))
}

/// What `serve` and `get` do with every swarm event besides their own work: record it in the
/// metrics, and give kad the listen addresses identify learns from peers that speak kad.
pub(crate) struct Observer {
    /// libp2p's metrics.
    metrics: Metrics,
}

impl Observer {
    /// An observer recording into `metrics`.
    pub(crate) fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }

    /// Records `event` and routes identify's findings to kad.
    pub(crate) fn observe(&mut self, swarm: &mut Swarm<Node>, event: &SwarmEvent<NodeEvent>) {
        self.metrics.record(event);
        match event {
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

/// The DHT key under which `cid` is provided: its multihash, as kubo does (so a CIDv0 and
/// a CIDv1 of the same bytes share providers).
pub(crate) fn provider_key(cid: &Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}

/// The peer id at the end of a multiaddr, if any.
pub(crate) fn peer_id(address: &Multiaddr) -> Option<PeerId> {
    match address.iter().last() {
        Some(Protocol::P2p(peer)) => Some(peer),
        _ => None,
    }
}
