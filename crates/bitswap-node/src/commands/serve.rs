//! `serve [PATH...]`: add the paths, listen, join the DHT and provide the roots there, print
//! where, serve until Ctrl-C or SIGTERM.

use std::{
    collections::HashSet,
    ffi::OsStr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, bail};
use bitswap::Blockstore;
use futures::StreamExt;
use ipfs_formats::unixfs::import_path;
use libp2p::{Multiaddr, kad, multiaddr::Protocol, swarm::SwarmEvent};
use serde_json::json;
use tokio::time::{Instant, sleep_until};

use super::{GlobalFlags, add::import_options, start_node};
use crate::{
    cli::ServeArgs,
    output, shutdown,
    swarm::{self, NodeEvent},
};

/// Where `serve` listens without `--listen`: TCP and QUIC on loopback (kubo listens on both).
const DEFAULT_LISTEN: [&str; 2] = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"];

/// With `--bootstrap`, how long `serve` waits for its roots to be announced on the DHT
/// before it prints its addresses (and serves on, announced or not).
const PROVIDE_WAIT: Duration = Duration::from_secs(20);

pub(crate) async fn run(flags: &GlobalFlags, args: ServeArgs) -> anyhow::Result<()> {
    let options = import_options(&args.layout)?;
    let dir = flags.data_dir()?;
    let keypair = dir.identity()?;
    let store = flags.open_store(&dir)?;
    let mut roots = Vec::new();
    for path in &args.paths {
        let imported = import_path(&store, path, &options)
            .await
            .with_context(|| format!("add {}", path.display()))?;
        roots.push((path.clone(), imported.root));
    }

    let (mut swarm, mut observer, metrics) =
        start_node(flags, keypair, store, kad::Mode::Server, &args.network).await?;
    let peer_id = *swarm.local_peer_id();
    let listen = if args.listen.is_empty() {
        DEFAULT_LISTEN
            .iter()
            .map(|address| address.parse().expect("a valid multiaddr"))
            .collect()
    } else {
        args.listen
    };
    let mut listeners = Vec::new();
    for address in listen {
        let id = swarm
            .listen_on(address.clone())
            .with_context(|| format!("listen on {address}"))?;
        listeners.push(id);
    }
    let mut pending: HashSet<_> = listeners.iter().copied().collect();
    // Each address with the position of its listener: printed in the order of `--listen`
    // (TCP first by default), whichever listener is ready first.
    let mut addresses: Vec<(usize, Multiaddr)> = Vec::new();
    while !pending.is_empty() {
        let event = swarm.select_next_some().await;
        observer.observe(&mut swarm, &event);
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                pending.remove(&listener_id);
                let position = listeners.iter().position(|id| *id == listener_id);
                addresses.push((
                    position.unwrap_or(usize::MAX),
                    address.with(Protocol::P2p(peer_id)),
                ));
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
            .start_providing(bitswap::provider_key(cid))
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

    addresses.sort_by_key(|(position, _)| *position);
    let multiaddrs: Vec<String> = addresses
        .iter()
        .map(|(_, address)| address.to_string())
        .collect();
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
    output::emit(flags.json, &info, || {
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
                "\nfetch it with: {} --data-dir {} get {cid} --peer {address}\n\
                     or with kubo: ipfs swarm connect {address} && ipfs get {cid}",
                program(),
                shell_word(&other_data_dir(dir.path())),
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
    // The swarm held the only other reference: the store is closed here, awaited, rather
    // than in its drop, which blocks the runtime's thread.
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().await.context("closing the block store")?,
        Err(store) => store.flush().await.context("flushing the block store")?,
    }
    Ok(())
}

/// The binary's name, as installed.
const NAME: &str = env!("CARGO_PKG_NAME");

/// How a person runs this program again from another terminal: by its name when that name on
/// PATH is this binary; with `cargo run` when cargo started it (the binary is then in the
/// target directory, not on PATH); else by its full path.
fn program() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return NAME.to_owned();
    };
    let exe = exe.canonicalize().unwrap_or(exe);
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            dir.join(NAME)
                .canonicalize()
                .is_ok_and(|found| found == exe)
        })
    });
    if on_path {
        return NAME.to_owned();
    }
    // `cargo run` sets these for the program it runs.
    let by_cargo = std::env::var_os("CARGO").is_some()
        && std::env::var_os("CARGO_PKG_NAME").is_some_and(|name| name == NAME);
    if by_cargo {
        // The profile is the name of the directory the binary was built in.
        let profile = match exe
            .parent()
            .and_then(Path::file_name)
            .and_then(OsStr::to_str)
        {
            Some("debug") => String::new(),
            Some("release") | None => " --release".to_owned(),
            Some(profile) => format!(" --profile {}", shell_word(Path::new(profile))),
        };
        return format!("cargo run{profile} -p {NAME} --");
    }
    shell_word(&exe)
}

/// A data directory for the `get` of the hint: not `ours`, whose store this process holds
/// open (a second process cannot open it).
fn other_data_dir(ours: &Path) -> PathBuf {
    let other = std::env::temp_dir().join("bitswap-other");
    if other == ours {
        std::env::temp_dir().join("bitswap-other-2")
    } else {
        other
    }
}

/// `path` as one word of a POSIX shell: as it is when it has nothing the shell would read,
/// else in single quotes.
fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word(Path::new("/tmp/a-b_c.1")), "/tmp/a-b_c.1");
        assert_eq!(shell_word(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
        assert_eq!(shell_word(Path::new("")), "''");
    }

    #[test]
    fn the_other_data_dir_is_not_ours() {
        let other = other_data_dir(Path::new("/somewhere/else"));
        assert_ne!(other_data_dir(&other), other);
    }
}
