//! `serve [PATH...]`: add the paths, listen, join the DHT and provide the roots there, print
//! where, serve until Ctrl-C or SIGTERM.

use std::{collections::HashSet, sync::Arc, time::Duration};

use anyhow::{Context as _, bail};
use bitswap::{Blockstore, RedbConfig};
use futures::StreamExt;
use ipfs_formats::unixfs::import_path;
use libp2p::{Multiaddr, kad, multiaddr::Protocol, swarm::SwarmEvent};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::time::{Instant, sleep_until};

use super::{Context, add::import_options};
use crate::{
    cli::ServeArgs,
    metrics, output, shutdown,
    swarm::{self, NodeEvent, Observer},
};

/// With `--bootstrap`, how long `serve` waits for its roots to be announced on the DHT
/// before it prints its addresses (and serves on, announced or not).
const PROVIDE_WAIT: Duration = Duration::from_secs(20);

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

    let mut registry = Registry::default();
    let (mut swarm, libp2p_metrics) = swarm::build(
        keypair,
        store,
        kad::Mode::Server,
        &mut registry,
        &cx.bitswap_versions,
        args.network.limits.limits(),
    )?;
    let mut observer = Observer::new(libp2p_metrics);
    let metrics = match args.network.metrics {
        Some(address) => Some(metrics::serve(address, Arc::new(registry)).await?),
        None => None,
    };
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
        let event = swarm.select_next_some().await;
        observer.observe(&mut swarm, &event);
        match event {
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

    // The roots go into kad's store, so that this node answers for them, and to the peers
    // closest to them, once it knows some.
    swarm::bootstrap(&mut swarm, &args.network.bootstrap)?;
    let mut providing = HashSet::new();
    for (_, cid) in &roots {
        let query = swarm
            .behaviour_mut()
            .kad
            .start_providing(swarm::provider_key(cid))
            .with_context(|| format!("provide {cid} on the DHT"))?;
        providing.insert(query);
    }
    if !args.network.bootstrap.is_empty() {
        let deadline = Instant::now() + PROVIDE_WAIT;
        while !providing.is_empty() {
            let event = tokio::select! {
                event = swarm.select_next_some() => event,
                () = sleep_until(deadline) => break,
            };
            observer.observe(&mut swarm, &event);
            if let SwarmEvent::Behaviour(NodeEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::StartProviding(_),
                step,
                ..
            })) = event
                && step.last
            {
                providing.remove(&id);
            }
        }
    }

    let multiaddrs: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    let json_roots: Vec<_> = roots
        .iter()
        .map(|(path, cid)| json!({ "path": path, "cid": cid.to_string() }))
        .collect();
    let metrics_url = metrics
        .as_ref()
        .map(|(address, _)| format!("http://{address}/metrics"));
    let mut info =
        json!({ "peer_id": peer_id.to_string(), "multiaddrs": multiaddrs, "roots": json_roots });
    if let Some(url) = &metrics_url {
        info["metrics"] = json!(url);
    }
    output::emit(cx.json, &info, || {
        let mut text = format!("peer id {peer_id}");
        for address in &multiaddrs {
            text.push_str(&format!("\nlistening on {address}"));
        }
        if let Some(url) = &metrics_url {
            text.push_str(&format!("\nmetrics at {url}"));
        }
        for (path, cid) in &roots {
            text.push_str(&format!("\nadded {cid} {}", path.display()));
        }
        if let (Some((_, cid)), Some(address)) = (roots.first(), multiaddrs.first()) {
            text.push_str(&format!(
                "\nfetch it with: bitswap-node get {cid} --peer {address}\n\
                     or with kubo: ipfs swarm connect {address} && ipfs get {cid}"
            ));
        }
        text.push_str("\nserving until Ctrl-C");
        text
    })?;

    let stop = shutdown::signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            result = &mut stop => {
                result?;
                break;
            }
            event = swarm.select_next_some() => observer.observe(&mut swarm, &event),
        }
    }
    if let Some((_, task)) = metrics {
        task.abort();
    }
    let store = swarm.behaviour().bitswap.store().clone();
    drop(swarm);
    store.flush().await.context("flushing the block store")?;
    Ok(())
}
