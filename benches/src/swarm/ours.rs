//! Our side of a row: our client as a leech in the bench process (a node, the DAG walk that
//! `get` does, its stats), and the addresses peers dial each other at.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bitswap::{ClientStats, Control, MemoryBlockstore};
use cid::Cid;
use futures::{StreamExt, stream::SelectAll};
use ipfs_formats::dag;
use libp2p::{Multiaddr, PeerId, Swarm, multiaddr::Protocol};

use crate::net::{self, BenchStore, Driver, Node};

/// Most time to connect to one peer through its link.
pub(super) const CONNECT_LIMIT: Duration = Duration::from_secs(30);

/// `/ip4/127.0.0.1/tcp/PORT/p2p/PEER`: how a leech dials `peer` through the link listening on
/// `port`.
pub(super) fn dial_address(port: u16, peer: PeerId) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4([127, 0, 0, 1].into()))
        .with(Protocol::Tcp(port))
        .with(Protocol::P2p(peer))
}

/// The TCP socket address of an `/ip4/A/tcp/P` multiaddr.
pub(super) fn socket_addr(address: &Multiaddr) -> Option<SocketAddr> {
    let (mut ip, mut port) = (None, None);
    for protocol in address {
        match protocol {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::from((ip?, port?)))
}

/// The TCP socket address and the peer id of an `/ip4/A/tcp/P/p2p/PEER` multiaddr.
pub(super) fn tcp_target(address: &Multiaddr) -> Option<(SocketAddr, PeerId)> {
    let peer = address.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })?;
    Some((socket_addr(address)?, peer))
}

/// Our client before its fetch: a node on the seeds' transport, listening on 127.0.0.1 when
/// other leeches may dial it.
pub(super) struct OurLeech {
    /// Boxed: a swarm is large.
    swarm: Box<Swarm<Node>>,
    /// Its peer id.
    pub(super) peer: PeerId,
    /// Where it listens, if it does.
    pub(super) listening: Option<SocketAddr>,
}

impl OurLeech {
    /// A node that keeps what it fetches (so later leeches can fetch from it) if `keep`, and
    /// listens if `listen`.
    pub(super) async fn new(keep: bool, listen: bool) -> Result<Self, String> {
        let store = if keep {
            BenchStore::Memory(MemoryBlockstore::new())
        } else {
            BenchStore::Sink
        };
        let mut swarm = net::node_identified(
            store,
            bitswap::Config::default(),
            bitswap::capped_yamux_config,
        );
        let peer = *swarm.local_peer_id();
        let listening = if listen {
            let address = tokio::time::timeout(CONNECT_LIMIT, net::listen(&mut swarm))
                .await
                .map_err(|_| "our leech did not listen".to_string())?;
            Some(socket_addr(&address).ok_or("our leech's address is not ip4/tcp")?)
        } else {
            None
        };
        Ok(Self {
            swarm: Box::new(swarm),
            peer,
            listening,
        })
    }

    /// Connects to every `(peer, address)`, then fetches the DAG under `root`; returns the
    /// walk and the client's stats. Connecting is not part of the walk's time.
    pub(super) async fn fetch(mut self, peers: Vec<(PeerId, Multiaddr)>, root: Cid) -> OurFetch {
        for (peer, address) in peers {
            let connect = net::connect(&mut self.swarm, peer, address.clone());
            if tokio::time::timeout(CONNECT_LIMIT, connect).await.is_err() {
                return OurFetch {
                    walk: Walk {
                        error: Some(format!("no connection to {address} in {CONNECT_LIMIT:?}")),
                        ..Walk::default()
                    },
                    stats: None,
                };
            }
        }
        let control = self.swarm.behaviour().bitswap.control();
        let driver = Driver::start(*self.swarm);
        let walk = walk(&control, root).await;
        let stats = driver.stop().await.behaviour().bitswap.client().stats();
        OurFetch {
            walk,
            stats: Some(stats),
        }
    }
}

/// What our client's fetch gave.
#[derive(Debug)]
pub(super) struct OurFetch {
    /// What the DAG walk saw.
    pub(super) walk: Walk,
    /// The client's counters at the end (`None` if it never started).
    pub(super) stats: Option<ClientStats>,
}

/// What the DAG walk saw.
#[derive(Debug, Default)]
pub(super) struct Walk {
    /// Blocks of the DAG received.
    pub(super) blocks: u64,
    /// Their bytes.
    pub(super) bytes: u64,
    /// The longest gap between two blocks.
    pub(super) longest_gap: Duration,
    /// Set when the walk ended before the last block: why.
    pub(super) error: Option<String>,
    /// From the first want to the last block.
    pub(super) time: Duration,
}

/// Fetches the DAG under `root` as `get` does: one session, the root first, then each node's
/// links as soon as it arrives.
async fn walk(control: &Control, root: Cid) -> Walk {
    let start = Instant::now();
    let mut walk = Walk::default();
    if let Err(error) = walk_into(&mut walk, control, root).await {
        walk.error = Some(error);
    }
    walk.time = start.elapsed();
    walk
}

async fn walk_into(walk: &mut Walk, control: &Control, root: Cid) -> Result<(), String> {
    let session = control.new_session().await.map_err(|e| e.to_string())?;
    let mut queries = SelectAll::new();
    let query = control.get_many(vec![root], Some(session)).await;
    queries.push(query.map_err(|e| e.to_string())?);
    let mut outstanding = 1usize;
    let mut last: Option<Instant> = None;
    while outstanding > 0 {
        let block = queries
            .next()
            .await
            .ok_or_else(|| "the queries ended with blocks missing".to_string())?
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        if let Some(last) = last {
            walk.longest_gap = walk.longest_gap.max(now - last);
        }
        last = Some(now);
        outstanding -= 1;
        walk.blocks += 1;
        walk.bytes += block.data().len() as u64;
        let links = dag::links(&block).map_err(|e| e.to_string())?;
        if !links.is_empty() {
            outstanding += links.len();
            let query = control.get_many(links, Some(session)).await;
            queries.push(query.map_err(|e| e.to_string())?);
        }
    }
    let _ = control.close_session(session).await;
    Ok(())
}
