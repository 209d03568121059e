//! The node's libp2p swarm: identify, ping and Bitswap over TCP, Noise and Yamux.

use std::time::Duration;

use bitswap::RedbBlockstore;
use libp2p::{
    Swarm, SwarmBuilder, identify, identity::Keypair, noise, ping, swarm::NetworkBehaviour, tcp,
};

/// How long a connection with no stream open stays up.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Every protocol the node speaks.
#[derive(NetworkBehaviour)]
pub(crate) struct Node {
    /// Tells peers (kubo among them) which protocols we speak, Bitswap's versions included.
    identify: identify::Behaviour,
    /// Keeps connections alive and measures them.
    ping: ping::Behaviour,
    /// Serves the store and fetches into it.
    pub(crate) bitswap: bitswap::Behaviour<RedbBlockstore>,
}

/// A swarm with the identity `keypair` over `store`, speaking the Bitswap `versions` (all of
/// them if empty).
pub(crate) fn build(
    keypair: Keypair,
    store: RedbBlockstore,
    versions: &[bitswap::Version],
) -> anyhow::Result<Swarm<Node>> {
    let mut network = bitswap::network::Config::default();
    if !versions.is_empty() {
        network = network.with_versions(versions.iter().copied());
    }
    let config = bitswap::Config::default().with_network(network);
    let swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            bitswap_node::transport::yamux_config,
        )?
        .with_behaviour(|key| Node {
            identify: identify::Behaviour::new(
                identify::Config::new("/ipfs/0.1.0".to_owned(), key.public())
                    .with_agent_version(format!("bitswap-node/{}", env!("CARGO_PKG_VERSION"))),
            ),
            ping: ping::Behaviour::default(),
            bitswap: bitswap::Behaviour::new(store, config),
        })?
        .with_swarm_config(|config| config.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT))
        .build();
    Ok(swarm)
}
