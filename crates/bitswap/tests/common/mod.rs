//! Helpers shared by the loopback swarm tests (`network.rs`, `serve.rs`, `fetch.rs`,
//! `hostile/`). Each test binary uses a part of them.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use libp2p::{
    Multiaddr, Swarm, SwarmBuilder,
    core::upgrade::Version,
    identity::Keypair,
    noise,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use tokio::time::timeout;

/// How long a connection with no stream open stays up in these tests.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Bound of the wait for a listening address.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// A swarm of `behaviour` over TCP, Noise and Yamux with a new identity.
pub(crate) fn new_swarm<B: NetworkBehaviour>(behaviour: B) -> Swarm<B> {
    new_swarm_with_idle_timeout(behaviour, IDLE_CONNECTION_TIMEOUT)
}

/// A swarm as [`new_swarm`] makes, closing connections idle for `idle`.
pub(crate) fn new_swarm_with_idle_timeout<B: NetworkBehaviour>(
    behaviour: B,
    idle: Duration,
) -> Swarm<B> {
    new_swarm_of(|_| behaviour, idle)
}

/// A swarm as [`new_swarm`] makes, of the behaviour `make` builds from the swarm's identity
/// (for identify), closing connections idle for `idle`.
pub(crate) fn new_swarm_of<B: NetworkBehaviour>(
    make: impl FnOnce(&Keypair) -> B,
    idle: Duration,
) -> Swarm<B> {
    swarm_of(make, idle, Version::V1)
}

/// A swarm as [`new_swarm`] makes, whose streams negotiate their protocol lazily, as the
/// node's do: a stream that offers one protocol sends its first bytes with the proposal.
pub(crate) fn new_lazy_swarm<B: NetworkBehaviour>(behaviour: B) -> Swarm<B> {
    swarm_of(|_| behaviour, IDLE_CONNECTION_TIMEOUT, Version::V1Lazy)
}

fn swarm_of<B: NetworkBehaviour>(
    make: impl FnOnce(&Keypair) -> B,
    idle: Duration,
    upgrades: Version,
) -> Swarm<B> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp transport")
        .with_behaviour(make)
        .expect("behaviour")
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(idle)
                .with_substream_upgrade_protocol_override(upgrades)
        })
        .build()
}

/// Starts listening on 127.0.0.1 and polls until the first address is known.
pub(crate) async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .expect("listen");
    timeout(LISTEN_TIMEOUT, async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
    .expect("listening")
}

/// Deterministic pseudo-random bytes.
pub(crate) fn bytes(len: usize, seed: u32) -> Bytes {
    ipfs_blockstore::testing::bytes(u64::from(seed), len)
}
