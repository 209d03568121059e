//! `block get` and `block put`: raw blocks of the local store.

use std::{
    fs,
    io::{self, Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use bitswap::{Block, Blockstore, MAX_BLOCK_SIZE};
use bytes::Bytes;
use cid::Cid;
use ipfs_blockstore::multicodec::{DAG_PB, RAW};
use ipfs_formats::{
    dag::DAG_CBOR,
    dag_cbor,
    unixfs::{DagPbNode, v1_block},
};
use serde_json::json;

use super::GlobalFlags;
use crate::{cli::Codec, output};

pub(crate) async fn get(flags: &GlobalFlags, cid: Cid, out: Option<PathBuf>) -> anyhow::Result<()> {
    let store = flags.store()?;
    let block = store
        .get(&cid)
        .await
        .context("block store")?
        .with_context(|| format!("block {cid} is not in the store"))?;
    let data = block.data();
    let mut value = json!({ "cid": cid.to_string(), "size": data.len() });
    match &out {
        Some(path) => {
            write_new(path, data)?;
            value["output"] = json!(path);
        }
        None if flags.json => value["data_hex"] = json!(hex(data)),
        None => {
            let mut stdout = io::stdout().lock();
            stdout.write_all(data)?;
            stdout.flush()?;
            return Ok(());
        }
    }
    output::emit(flags.json, &value, || {
        format!("wrote {} bytes of {cid}", data.len())
    })?;
    Ok(())
}

pub(crate) async fn put(
    flags: &GlobalFlags,
    file: &Path,
    cid_version: u8,
    codec: Codec,
) -> anyhow::Result<()> {
    let mut data = Vec::new();
    fs::File::open(file)
        .and_then(|f| f.take(MAX_BLOCK_SIZE as u64 + 1).read_to_end(&mut data))
        .with_context(|| format!("{}", file.display()))?;
    if data.len() > MAX_BLOCK_SIZE {
        bail!("{}: larger than a block may be (2 MiB)", file.display());
    }
    let data = Bytes::from(data);
    if cid_version == 0 && codec != Codec::DagPb {
        bail!("CIDv0 is dag-pb only: pass --codec dag-pb or --cid-version 1");
    }
    if codec == Codec::DagPb {
        DagPbNode::decode(&data)
            .with_context(|| format!("{}: not a dag-pb node", file.display()))?;
    }
    if codec == Codec::DagCbor {
        dag_cbor::links(&data)
            .with_context(|| format!("{}: not a dag-cbor block", file.display()))?;
    }
    let block = match (cid_version, codec) {
        (0, _) => Block::from_v0_data(data)?,
        (_, Codec::Raw) => v1_block(RAW, data)?,
        (_, Codec::DagPb) => v1_block(DAG_PB, data)?,
        (_, Codec::DagCbor) => v1_block(DAG_CBOR, data)?,
    };
    let store = flags.store()?;
    let cid = *block.cid();
    let size = block.data().len();
    store.put(block).await.context("block store")?;
    store.close().await.context("closing the block store")?;
    output::emit(
        flags.json,
        &json!({ "cid": cid.to_string(), "size": size }),
        || cid.to_string(),
    )?;
    Ok(())
}

/// Writes `data` to a new file at `path`, complete or not at all.
fn write_new(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut file = ipfs_formats::temp::file_beside(path)
        .with_context(|| format!("{}", ipfs_formats::temp::dir_of(path).display()))?;
    file.write_all(data)?;
    file.as_file().sync_all()?;
    file.persist_noclobber(path)
        .map_err(|error| error.error)
        .with_context(|| format!("{}", path.display()))?;
    Ok(())
}

fn hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(data.len() * 2);
    for byte in data {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
