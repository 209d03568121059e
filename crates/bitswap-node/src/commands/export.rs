//! `export CID -o OUT`: a file or directory from the local store.

use std::time::Instant;

use anyhow::Context as _;
use ipfs_formats::unixfs::{self, EntryKind};
use serde_json::json;

use super::GlobalFlags;
use crate::{cli::ExportArgs, output};

pub(crate) async fn run(flags: &GlobalFlags, args: ExportArgs) -> anyhow::Result<()> {
    let store = flags.store()?;
    let start = Instant::now();
    let exported = unixfs::export(&store, &args.cid, &args.output)
        .await
        .with_context(|| format!("export {}", args.cid))?;
    let kind = match exported.kind {
        EntryKind::File => "file",
        EntryKind::Directory => "directory",
        EntryKind::Symlink => "symlink",
    };
    output::emit(
        flags.json,
        &json!({
            "cid": args.cid.to_string(),
            "output": args.output,
            "kind": kind,
            "bytes": exported.bytes,
            "blocks": exported.blocks,
            "seconds": output::seconds(start.elapsed()),
        }),
        || {
            format!(
                "wrote {} ({kind}, {} bytes)",
                args.output.display(),
                exported.bytes
            )
        },
    )?;
    Ok(())
}
