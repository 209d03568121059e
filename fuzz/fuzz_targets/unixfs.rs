//! Fuzzes the UnixFS side of `ipfs-formats`: the dag-pb and UnixFS decoders, the file assembler
//! that `get` writes with, and the exporter it falls back to.
//!
//! The input is a list of blocks separated by [`SEPARATOR`]; the first is the root. A block
//! that decodes as dag-pb is a dag-pb node (CIDv0), any other a raw leaf (CIDv1). So that
//! arbitrary bytes still make a DAG, each link is pointed at a later block of the input: the
//! one whose digest it names if there is one (real nodes in the seeds keep their shape), else
//! the one its digest's last byte picks. Nodes are then encoded again bottom-up with those
//! CIDs; a DAG it is by construction, with repeats (the N × N bomb) allowed.
//!
//! Checks:
//! - decoding never panics; a dag-pb node that decodes encodes canonically and decodes back to
//!   itself;
//! - for a root whose declared size is small, the assembler (blocks handed in as `get` does)
//!   and the exporter agree: the assembler succeeds exactly when the export does (unless it
//!   gave up, or the DAG is too deep for one of them), with the same bytes, whose length is
//!   the root's declared size; the assembler never holds more places than its bound.

#![no_main]

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use cid::Cid;
use futures::executor::block_on;
use ipfs_blockstore::{Block, Blockstore, MemoryBlockstore, multicodec::RAW};
use ipfs_formats::{
    dag,
    unixfs::{
        self, BYTES_PER_PLACE, DagPbNode, ExportError, FileAssembler, Link, MIN_PLACES, UnixfsData,
    },
};
use libfuzzer_sys::fuzz_target;

/// Between two blocks of the input.
const SEPARATOR: &[u8] = b"\xfe\xfe\xfe\xfe";
/// Blocks read at most.
const MAX_BLOCKS: usize = 32;
/// Largest declared file assembled and exported: a DAG of repeats can declare 2^64 bytes that
/// really are there, which would only test the disk.
const MAX_FILE_BYTES: u64 = 1 << 16;

/// Where the assembler writes: in memory where there is room (it syncs every file it
/// finishes), else the temporary directory. No directory of its own, which libFuzzer's exit
/// would leave behind: each file is removed once read.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        }
    })
}

/// A fresh output path, unique among processes fuzzing at once.
fn target() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    scratch().join(format!(
        ".bitswap-node-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The decoders alone: no panic, and a canonical round trip of whatever decodes.
fn check_decoders(bytes: &[u8]) -> Option<DagPbNode> {
    let node = DagPbNode::decode(bytes).ok()?;
    let encoded = node.encode();
    let again = DagPbNode::decode(&encoded).expect("our own encoding decodes");
    assert_eq!(again, node, "dag-pb round trip changed the node");
    assert_eq!(again.encode(), encoded, "the encoding is not canonical");
    if let Some(data) = &node.data
        && let Ok(unixfs) = UnixfsData::decode_bytes(data)
    {
        let _ = unixfs.kind();
    }
    Some(node)
}

/// Builds the DAG: the blocks, root first.
fn build(parts: &[&[u8]]) -> Vec<Block> {
    let decoded: Vec<Option<DagPbNode>> = parts.iter().map(|p| check_decoders(p)).collect();
    // The digest each block would have as given, to keep the links of real nodes.
    let digests: Vec<Vec<u8>> = parts
        .iter()
        .zip(&decoded)
        .map(|(bytes, node)| {
            let block = if node.is_some() {
                Block::from_v0_data(Bytes::copy_from_slice(bytes))
            } else {
                unixfs::v1_block(RAW, Bytes::copy_from_slice(bytes))
            };
            block.expect("under 2 MiB").cid().hash().digest().to_vec()
        })
        .collect();
    let mut cids: Vec<Option<Cid>> = vec![None; parts.len()];
    let mut blocks: Vec<Option<Block>> = vec![None; parts.len()];
    for i in (0..parts.len()).rev() {
        let block = match &decoded[i] {
            None => unixfs::v1_block(RAW, Bytes::copy_from_slice(parts[i])),
            Some(node) => {
                let later = parts.len() - i - 1;
                let links = if later == 0 {
                    Vec::new()
                } else {
                    node.links
                        .iter()
                        .map(|link| {
                            let digest = link.cid.hash().digest();
                            let j = (i + 1..parts.len())
                                .find(|&j| digests[j] == digest)
                                .unwrap_or_else(|| {
                                    let pick = digest.last().copied().unwrap_or(0);
                                    i + 1 + usize::from(pick) % later
                                });
                            Link {
                                cid: cids[j].expect("later blocks are built first"),
                                name: link.name.clone(),
                                tsize: link.tsize,
                            }
                        })
                        .collect()
                };
                Block::from_v0_data(Bytes::from(
                    DagPbNode {
                        links,
                        data: node.data.clone(),
                    }
                    .encode(),
                ))
            }
        }
        .expect("under 2 MiB");
        cids[i] = Some(*block.cid());
        blocks[i] = Some(block);
    }
    blocks.into_iter().flatten().collect()
}

/// The file size the root declares, if it is a file.
fn declared_size(root: &Block) -> Option<u64> {
    if root.cid().codec() == RAW {
        return Some(root.data().len() as u64);
    }
    let node = DagPbNode::decode_bytes(root.data()).ok()?;
    let unixfs = UnixfsData::decode_bytes(&node.data?).ok()?;
    unixfs
        .blocksizes
        .iter()
        .try_fold(unixfs.data.map_or(0, |d| d.len() as u64), |sum, size| {
            sum.checked_add(*size)
        })
}

/// What the assembler made of the DAG.
enum Assembled {
    /// Not a file, by its root.
    NotAFile,
    /// The file's bytes.
    File(Vec<u8>),
    /// It gave up: too many places.
    GaveUp,
    /// It refused the DAG.
    Failed(ExportError),
}

/// Hands the blocks to an assembler as `get` does: each once, after its parent, in the order
/// the walk finds them; blocks needed again from the store.
/// `handed_in` is the bytes of every block: what pays for the assembler's places at most.
fn assemble(store: &MemoryBlockstore, root: &Block, handed_in: u64) -> Assembled {
    let target = target();
    let get = |cid: &Cid| block_on(store.get(cid)).expect("memory").expect("stored");
    let mut file = match FileAssembler::start(root, &target) {
        Ok(Some(file)) => file,
        Ok(None) => return Assembled::NotAFile,
        Err(error) => return Assembled::Failed(error),
    };
    let mut seen = HashSet::from([*root.cid()]);
    let mut known: Vec<Cid> = dag::links(root).unwrap_or_default();
    known.retain(|cid| seen.insert(*cid));
    let bound = MIN_PLACES + (handed_in / BYTES_PER_PLACE) as usize;
    while let Some(cid) = known.pop() {
        let block = get(&cid);
        if let Err(error) = file.add(&block) {
            return Assembled::Failed(error);
        }
        assert!(
            file.pending_places() <= bound,
            "the assembler holds too much"
        );
        for link in dag::links(&block).unwrap_or_default() {
            if seen.insert(link) {
                known.push(link);
            }
        }
        loop {
            let again = file.take_again();
            if again.is_empty() {
                break;
            }
            for cid in again {
                if let Err(error) = file.add(&get(&cid)) {
                    return Assembled::Failed(error);
                }
            }
        }
    }
    if file.is_given_up() {
        return Assembled::GaveUp;
    }
    match file.finish() {
        Ok(exported) => {
            let bytes = fs::read(&target).expect("the file written");
            fs::remove_file(&target).expect("removable");
            assert_eq!(exported.bytes, bytes.len() as u64);
            Assembled::File(bytes)
        }
        Err(error) => Assembled::Failed(error),
    }
}

fuzz_target!(|input: &[u8]| {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = input;
    while parts.len() < MAX_BLOCKS {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + SEPARATOR.len()..];
            }
            None => {
                parts.push(rest);
                break;
            }
        }
    }
    let blocks = build(&parts);
    for block in &blocks {
        let _ = dag::links(block);
    }
    let root = blocks[0].clone();
    let Some(size) = declared_size(&root) else {
        return;
    };
    if size > MAX_FILE_BYTES {
        return;
    }
    let handed_in = blocks.iter().map(|b| b.data().len() as u64).sum();
    let store = MemoryBlockstore::new();
    block_on(store.put_many(blocks)).expect("memory");

    let mut exported = Vec::new();
    let export = block_on(unixfs::write_file(
        &store,
        root.cid(),
        &mut exported,
        Path::new("<memory>"),
    ));
    if let Ok((bytes, _)) = &export {
        assert_eq!(*bytes, exported.len() as u64);
        assert_eq!(*bytes, size, "the export's length is not the declared size");
    }
    match (assemble(&store, &root, handed_in), export) {
        (Assembled::NotAFile | Assembled::GaveUp, _) => {}
        (Assembled::File(bytes), Ok(_)) => {
            assert_eq!(
                bytes.len() as u64,
                size,
                "the file's length is not the declared size"
            );
            assert_eq!(bytes, exported, "the assembler and the export differ");
        }
        (Assembled::Failed(ExportError::TooDeep), _) | (_, Err(ExportError::TooDeep)) => {}
        (Assembled::File(_), Err(error)) => panic!("assembled, but the export failed: {error}"),
        (Assembled::Failed(error), Ok(_)) => panic!("exported, but the assembler failed: {error}"),
        (Assembled::Failed(_), Err(_)) => {}
    }
});
