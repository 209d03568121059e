//! `serve [PATH...]`: add the paths, listen, print where, serve until Ctrl-C or SIGTERM.

use std::collections::HashSet;

use anyhow::{Context as _, bail};
use bitswap::{Blockstore, RedbConfig};
use bitswap_node::unixfs::import_path;
use futures::StreamExt;
use libp2p::{Multiaddr, multiaddr::Protocol, swarm::SwarmEvent};
use serde_json::json;

use super::{Context, add::import_options};
use crate::{cli::ServeArgs, output, shutdown, swarm};

pub(crate) async fn run(cx: &Context, args: ServeArgs) -> anyhow::Result<()> {
    let options = import_options(&args.layout)?;
    let dir = cx.data_dir()?;
    let keypair = dir.identity()?;
    let store = dir.open_store(RedbConfig::default())?;
    let mut roots = Vec::new();
    for path in &args.paths {
        let imported = import_path(&store, path, &options)
            .await
            .with_context(|| format!("add {}", path.display()))?;
        roots.push((path.clone(), imported.root));
    }

    let mut swarm = swarm::build(keypair, store, &cx.bitswap_versions)?;
    let peer_id = *swarm.local_peer_id();
    let listen = if args.listen.is_empty() {
        vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a valid multiaddr")]
    } else {
        args.listen
    };
    let mut pending = HashSet::new();
    for address in listen {
        let id = swarm
            .listen_on(address.clone())
            .with_context(|| format!("listen on {address}"))?;
        pending.insert(id);
    }
    let mut addresses: Vec<Multiaddr> = Vec::new();
    while !pending.is_empty() {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                pending.remove(&listener_id);
                addresses.push(address.with(Protocol::P2p(peer_id)));
            }
            SwarmEvent::ListenerClosed { reason, .. } => {
                bail!("listener closed: {reason:?}")
            }
            SwarmEvent::ListenerError { error, .. } => bail!("listener failed: {error}"),
            _ => {}
        }
    }

    let multiaddrs: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    let json_roots: Vec<_> = roots
        .iter()
        .map(|(path, cid)| json!({ "path": path, "cid": cid.to_string() }))
        .collect();
    output::emit(
        cx.json,
        &json!({ "peer_id": peer_id.to_string(), "multiaddrs": multiaddrs, "roots": json_roots }),
        || {
            let mut text = format!("peer id {peer_id}");
            for address in &multiaddrs {
                text.push_str(&format!("\nlistening on {address}"));
            }
            for (path, cid) in &roots {
                text.push_str(&format!("\nadded {cid} {}", path.display()));
            }
            if let (Some((_, cid)), Some(address)) = (roots.first(), multiaddrs.first()) {
                text.push_str(&format!(
                    "\nfetch it with: bitswap-node get {cid} --peer {address}"
                ));
            }
            text.push_str("\nserving until Ctrl-C");
            text
        },
    )?;

    let stop = shutdown::signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            result = &mut stop => {
                result?;
                break;
            }
            _ = swarm.select_next_some() => {}
        }
    }
    let store = swarm.behaviour().bitswap.store().clone();
    drop(swarm);
    store.flush().await.context("flushing the block store")?;
    Ok(())
}
