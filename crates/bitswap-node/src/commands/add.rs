//! `add PATH`: UnixFS import with kubo's layout.

use std::time::Instant;

use anyhow::Context as _;
use bitswap_node::unixfs::{CidVersion, ImportOptions, Layout, import_path};
use serde_json::json;

use super::Context;
use crate::{
    cli::{AddArgs, LayoutArgs},
    output,
};

pub(crate) async fn run(cx: &Context, args: AddArgs) -> anyhow::Result<()> {
    let options = import_options(&args.layout)?;
    let store = cx.store()?;
    let start = Instant::now();
    let imported = import_path(&store, &args.path, &options)
        .await
        .with_context(|| format!("add {}", args.path.display()))?;
    store.close().await.context("closing the block store")?;
    let seconds = output::seconds(start.elapsed());
    output::emit(
        cx.json,
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
    let version = if args.cid_version == 1 {
        CidVersion::V1
    } else {
        CidVersion::V0
    };
    // As kubo: CIDv1 means raw leaves unless they are turned off.
    let raw_leaves = args.raw_leaves.unwrap_or(version == CidVersion::V1);
    let layout = Layout::default()
        .with_cid_version(version)
        .with_raw_leaves(raw_leaves)
        .with_chunk_size(args.chunk_size)?
        .with_max_links(args.max_links)?;
    Ok(ImportOptions {
        layout,
        hidden: args.hidden,
    })
}
