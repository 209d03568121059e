//! `add PATH`: UnixFS import with kubo's layout.

use std::time::Instant;

use anyhow::{Context as _, bail};
use ipfs_formats::unixfs::{CidVersion, HashFunction, ImportOptions, Layout, import_path};
use serde_json::json;

use super::GlobalFlags;
use crate::{
    cli::{AddArgs, LayoutArgs},
    output,
};

pub(crate) async fn run(flags: &GlobalFlags, args: AddArgs) -> anyhow::Result<()> {
    let options = import_options(&args.layout)?;
    let store = flags.store()?;
    let start = Instant::now();
    let imported = import_path(&store, &args.path, &options)
        .await
        .with_context(|| format!("add {}", args.path.display()))?;
    store.close().await.context("closing the block store")?;
    let seconds = output::seconds(start.elapsed());
    output::emit(
        flags.json,
        &json!({
            "root": imported.root.to_string(),
            "path": args.path,
            "bytes": imported.bytes,
            "blocks": imported.blocks,
            "seconds": seconds,
        }),
        || format!("added {} {}", imported.root, args.path.display()),
    )?;
    Ok(())
}

/// The import options the layout flags ask for.
pub(crate) fn import_options(args: &LayoutArgs) -> anyhow::Result<ImportOptions> {
    let hash = HashFunction::from(args.hash);
    // As kubo: CIDv0 is sha2-256 only, so another hash means CIDv1 unless 0 was asked for.
    let version = match (args.cid_version, hash) {
        (Some(0), HashFunction::Sha2_256) | (None, HashFunction::Sha2_256) => CidVersion::V0,
        (Some(0), hash) => bail!(
            "CIDv0 only supports sha2-256: --hash {} needs --cid-version 1",
            hash.name()
        ),
        _ => CidVersion::V1,
    };
    // As kubo: CIDv1 means raw leaves unless they are turned off.
    let raw_leaves = args.raw_leaves.unwrap_or(version == CidVersion::V1);
    let layout = Layout::default()
        .with_cid_version(version)
        .with_hash(hash)
        .with_raw_leaves(raw_leaves)
        .with_chunk_size(args.chunk_size)?
        .with_max_links(args.max_links)?;
    Ok(ImportOptions {
        layout,
        hidden: args.hidden,
        preserve_mode: args.preserve_mode,
        preserve_mtime: args.preserve_mtime,
    })
}
