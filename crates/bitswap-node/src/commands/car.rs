//! `car export` and `car import`: CARv1 files.

use std::{fs, path::Path, time::Instant};

use anyhow::Context as _;
use cid::Cid;
use ipfs_formats::car;
use serde_json::json;

use super::GlobalFlags;
use crate::output;

pub(crate) async fn export(flags: &GlobalFlags, cid: Cid, path: &Path) -> anyhow::Result<()> {
    let store = flags.store()?;
    let start = Instant::now();
    let stats = car::export_file(&store, &[cid], path)
        .await
        .with_context(|| format!("car export {cid}"))?;
    output::emit(
        flags.json,
        &json!({
            "root": cid.to_string(),
            "output": path,
            "blocks": stats.blocks,
            "bytes": stats.bytes,
            "seconds": output::seconds(start.elapsed()),
        }),
        || format!("wrote {} ({} blocks)", path.display(), stats.blocks),
    )?;
    Ok(())
}

pub(crate) async fn import(flags: &GlobalFlags, path: &Path) -> anyhow::Result<()> {
    let file = fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let store = flags.store()?;
    let start = Instant::now();
    let stats = car::import(&store, file, path)
        .await
        .with_context(|| format!("car import {}", path.display()))?;
    store.close().await.context("closing the block store")?;
    let roots: Vec<String> = stats.roots.iter().map(ToString::to_string).collect();
    output::emit(
        flags.json,
        &json!({
            "roots": roots,
            "blocks": stats.blocks,
            "bytes": stats.bytes,
            "seconds": output::seconds(start.elapsed()),
        }),
        || {
            format!(
                "imported {} blocks; roots: {}",
                stats.blocks,
                roots.join(" ")
            )
        },
    )?;
    Ok(())
}
