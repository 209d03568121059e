//! `get CID [--peer MADDR] [--bootstrap MADDR]`: fetch a DAG over Bitswap into the store
//! (from the peers given and the providers the DHT knows), then write it out.

use std::{io::IsTerminal as _, path::PathBuf, time::Duration, time::Instant};

use anyhow::{Context as _, bail};
use bitswap::Blockstore;
use cid::Cid;
use indicatif::{ProgressBar, ProgressStyle};
use ipfs_blockstore::multicodec::{DAG_PB, RAW};
use ipfs_formats::unixfs::{self, EntryKind, ExportError};
use libp2p::kad;
use serde_json::json;

use super::{GlobalFlags, start_node};
use crate::{cli::GetArgs, fetch, output, shutdown};

pub(crate) async fn run(flags: &GlobalFlags, args: GetArgs) -> anyhow::Result<()> {
    check_codec(&args.cid)?;
    let target = args
        .output
        .unwrap_or_else(|| PathBuf::from(args.cid.to_string()));
    if std::fs::symlink_metadata(&target).is_ok() {
        bail!("{} exists already", target.display());
    }
    let dir = flags.data_dir()?;
    let keypair = dir.identity()?;
    let store = flags.open_store(&dir)?;
    // A client of the DHT: `get` does not listen, so it could not answer.
    let (mut swarm, mut observer, metrics) =
        start_node(flags, keypair, store, kad::Mode::Client, &args.network).await?;
    let store = swarm.behaviour().bitswap.store().clone();
    // Only for a person watching: a script reads the JSON or the final line.
    let bar = if flags.json || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        // Bytes against the root's cumulative size (the whole tree for a directory), the
        // rate, and the blocks walked (the message, see `fetch`).
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{bytes}/{total_bytes} {bytes_per_sec} {msg} {wide_bar} eta {eta}",
            )
            .expect("a valid template"),
        );
        bar
    };
    let start = Instant::now();
    let timeouts = fetch::Timeouts {
        stall: Duration::from_secs(args.timeout.max(1)),
        no_peer: Duration::from_secs(args.no_peer_timeout.max(1)),
    };
    let stop = shutdown::signal();
    tokio::pin!(stop);
    let fetched = tokio::select! {
        fetched = fetch::fetch_dag(
            &mut swarm,
            &mut observer,
            args.cid,
            Some(&target),
            fetch::Sources {
                peers: &args.peer,
                bootstrap: &args.network.bootstrap,
            },
            &bar,
            timeouts,
        ) => fetched,
        result = &mut stop => {
            result?;
            Err(anyhow::anyhow!("interrupted"))
        }
    };
    bar.finish_and_clear();
    let mut fetched = fetched;
    // An assembler that gave up (a DAG repeating its blocks at too many places) is dropped,
    // with its temporary file: the file is exported from the store below.
    let written = fetched
        .as_mut()
        .ok()
        .and_then(|fetched| fetched.file.take())
        .filter(|file| !file.is_given_up());
    // What arrived stays in the store (verified blocks), durable for the next try. A file was
    // written as its blocks came: it goes to disk meanwhile, and is renamed into place once
    // the store is flushed.
    let (flushed, written) = match written {
        Some(mut file) => {
            let (flushed, synced) = tokio::join!(
                store.flush(),
                tokio::task::spawn_blocking(move || file.sync().map(|()| file))
            );
            (flushed, Some(synced.context("syncing the output")?))
        }
        None => (store.flush().await, None),
    };
    let flushed = flushed.context("flushing the block store");
    let fetched = fetched?;
    flushed?;
    let written = written
        .transpose()
        .map_err(|error| export_error(error, &target))?;
    // A directory or symlink (or a file the assembler gave up on) is exported from the
    // store now.
    let exported = tokio::select! {
        exported = async {
            match written {
                Some(file) => file.finish(),
                None => unixfs::export(&store, &args.cid, &target).await,
            }
        } => exported,
        result = &mut stop => {
            result?;
            bail!("interrupted");
        }
    }
    .map_err(|error| export_error(error, &target))?;
    drop(swarm);
    if let Some((_, task)) = metrics {
        task.abort();
    }
    let kind = match exported.kind {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
    };
    let peers: Vec<String> = fetched.peers.iter().map(ToString::to_string).collect();
    let providers: Vec<String> = fetched.providers.iter().map(ToString::to_string).collect();
    let seconds = output::seconds(start.elapsed());
    output::emit(
        flags.json,
        &json!({
            "cid": args.cid.to_string(),
            "output": target,
            "kind": kind,
            "bytes": exported.bytes,
            "blocks": exported.blocks,
            "fetched_blocks": fetched.blocks,
            "fetched_bytes": fetched.bytes,
            "seconds": seconds,
            "peers": peers,
            "providers": providers,
        }),
        || {
            format!(
                "wrote {} ({kind}, {} bytes; {} blocks fetched from {} peer(s) in {seconds} s)",
                target.display(),
                exported.bytes,
                fetched.blocks,
                peers.len()
            )
        },
    )?;
    Ok(())
}

/// Fails unless `root`'s codec is one `get` writes out (dag-pb for UnixFS, raw for a file of
/// one block): the CID says so before anything is fetched.
fn check_codec(root: &Cid) -> anyhow::Result<()> {
    let codec = root.codec();
    if codec == DAG_PB || codec == RAW {
        return Ok(());
    }
    let name = codec_name(codec).map_or_else(|| "codec".to_owned(), |name| format!("{name},"));
    bail!(
        "{root} is {name} codec {codec:#x}: get writes out UnixFS (dag-pb) and raw blocks \
         only, so nothing was fetched (block get reads any block of the store)"
    )
}

/// The multicodec name of a codec that an IPLD root may have, if it is a common one.
fn codec_name(codec: u64) -> Option<&'static str> {
    Some(match codec {
        0x51 => "cbor",
        0x71 => "dag-cbor",
        0x72 => "libp2p-key",
        0x78 => "git-raw",
        0x85 => "dag-jose",
        0x0129 => "dag-json",
        0x0200 => "json",
        _ => return None,
    })
}

/// An error writing `target`, named once.
fn export_error(error: ExportError, target: &std::path::Path) -> anyhow::Error {
    match error {
        // It names the file.
        ExportError::Io { .. } | ExportError::Exists(_) => anyhow::Error::new(error),
        error => anyhow::Error::new(error).context(format!("write {}", target.display())),
    }
}
