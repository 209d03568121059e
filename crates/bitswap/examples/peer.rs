//! A Bitswap peer that kubo and Helia can talk to: `bitswap::Behaviour` beside identify, ping
//! and kad in one `#[derive(NetworkBehaviour)]`, over TCP, Noise and the library's
//! [`bitswap::yamux_config`].
//!
//! ```text
//! cargo run --example peer -- serve FILE          # adds FILE, serves it until stdin closes
//! cargo run --example peer -- get CID ADDRESS OUT # fetches the file CID from ADDRESS
//! ```
//!
//! `serve` adds the file as UnixFS (CIDv1, raw leaves of 256 KiB, as `ipfs add --cid-version 1
//! --raw-leaves`) and prints one JSON line: its root CID and the address to dial. `get` dials
//! the peer at ADDRESS (a multiaddr ending in `/p2p/<peer id>`), fetches the DAG under CID
//! level by level, and writes the file to OUT. Both listen on 127.0.0.1 only.

use std::{error::Error, path::PathBuf, sync::Arc, time::Duration};

use bitswap::{Control, Event, MemoryBlockstore};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use ipfs_formats::{dag, unixfs};
use libp2p::{
    Multiaddr, StreamProtocol, Swarm, SwarmBuilder, identify, kad, noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp,
};
use tokio::io::AsyncBufReadExt;

/// Errors of any kind, from any task.
type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Everything the peer speaks. identify tells Helia that we speak Bitswap (it opens Bitswap
/// streams only to peers that say so) and gives kad our peers' addresses; kad finds
/// providers when no connected peer has a block.
#[derive(NetworkBehaviour)]
struct Node {
    bitswap: bitswap::Behaviour<MemoryBlockstore>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
}

fn swarm(store: MemoryBlockstore) -> Result<Swarm<Node>> {
    let swarm = SwarmBuilder::with_new_identity()
        .with_tokio()
        // The library's yamux setting: with yamux's default, Helia's large frames kill the
        // connection as soon as a transfer gets fast.
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            bitswap::yamux_config,
        )?
        .with_behaviour(|key| {
            let id = key.public().to_peer_id();
            let mut kad = kad::Behaviour::new(id, kad::store::MemoryStore::new(id));
            // Answer kad requests even without a public address (loopback included).
            kad.set_mode(Some(kad::Mode::Server));
            Node {
                bitswap: bitswap::Behaviour::new(store, bitswap::Config::default()),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/ipfs/0.1.0".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                kad,
            }
        })?
        // A peer that connects and asks later (or between two files) finds us still there.
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    Ok(swarm)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", file] => serve(file.into()).await,
        ["get", cid, address, out] => get(cid.parse()?, address.parse()?, out.into()).await,
        _ => Err("usage: peer serve FILE | peer get CID ADDRESS OUT".into()),
    }
}

/// Adds `file`, prints its root and our address, and serves until stdin closes.
async fn serve(file: PathBuf) -> Result<()> {
    let store = MemoryBlockstore::new();
    let layout = unixfs::Layout::v1_raw_leaves();
    let root = unixfs::import_reader(&store, std::fs::File::open(&file)?, &layout)
        .await?
        .root;
    let mut swarm = swarm(store)?;
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                if let SwarmEvent::NewListenAddr { address, .. } = &event {
                    let peer = swarm.local_peer_id();
                    println!(r#"{{"root": "{root}", "multiaddrs": ["{address}/p2p/{peer}"], "peer_id": "{peer}"}}"#);
                }
                on_event(&mut swarm, event);
            }
            line = stdin.next_line() => if line?.is_none() { return Ok(()) },
        }
    }
}

/// Fetches the file `root` from the peer at `address` into `out`.
async fn get(root: Cid, address: Multiaddr, out: PathBuf) -> Result<()> {
    let mut swarm = swarm(MemoryBlockstore::new())?;
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    swarm.dial(address)?;
    let store = Arc::clone(swarm.behaviour().bitswap.store());
    let fetch = tokio::spawn(fetch_dag(swarm.behaviour().bitswap.control(), root));
    tokio::pin!(fetch);
    let blocks = loop {
        tokio::select! {
            event = swarm.select_next_some() => on_event(&mut swarm, event),
            done = &mut fetch => break done??,
        }
    };
    // Every block is in the store now: write the file from it, checking sizes and hashes.
    let mut file = std::fs::File::create(&out)?;
    let (bytes, _) = unixfs::write_file(&*store, &root, &mut file, &out).await?;
    println!(r#"{{"root": "{root}", "blocks": {blocks}, "bytes": {bytes}}}"#);
    Ok(())
}

/// Fetches every block of the DAG under `root`, one level at a time, in one session (the
/// peers that delivered a level are asked first for the next). Returns how many. A query
/// takes at most 8192 CIDs by default (`ClientConfig::with_max_cids_per_query`): plenty for a
/// level of a file under 2 GiB.
async fn fetch_dag(control: Control, root: Cid) -> Result<usize> {
    let session = control.new_session().await?;
    let (mut level, mut fetched) = (vec![root], 0);
    while !level.is_empty() {
        fetched += level.len();
        let blocks: Vec<_> = control
            .get_many(level, Some(session))
            .await?
            .try_collect()
            .await?;
        level = Vec::new();
        for block in &blocks {
            level.extend(dag::links(block)?);
        }
    }
    control.close_session(session).await?;
    Ok(fetched)
}

/// What the behaviours report: providers searched with kad, peers' addresses given to kad.
fn on_event(swarm: &mut Swarm<Node>, event: SwarmEvent<NodeEvent>) {
    let SwarmEvent::Behaviour(event) = event else {
        return;
    };
    match event {
        NodeEvent::Bitswap(Event::FindProviders { key, .. }) => {
            // The key is the block's multihash, as IPFS keys provider records.
            swarm.behaviour_mut().kad.get_providers(key);
        }
        NodeEvent::Bitswap(Event::ConnectionError { peer, error }) => {
            eprintln!("connection to {peer} failed: {error}");
        }
        NodeEvent::Kad(kad::Event::OutboundQueryProgressed {
            result:
                kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
                    key,
                    providers,
                })),
            ..
        }) => {
            swarm
                .behaviour_mut()
                .bitswap
                .add_providers_for_key(&key, providers);
        }
        NodeEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
            let kad_protocol = StreamProtocol::new("/ipfs/kad/1.0.0");
            if info.protocols.contains(&kad_protocol) {
                for address in info.listen_addrs {
                    swarm.behaviour_mut().kad.add_address(&peer_id, address);
                }
            }
        }
        _ => {}
    }
}
