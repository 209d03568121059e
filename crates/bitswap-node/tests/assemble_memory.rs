//! A crafted DAG that repeats blocks at many places (a root that links N times to X, where X
//! links N times to Y) must not make the file assembler hold N² places: its memory stays
//! bounded by what was fetched, and the file still comes out right (from the store).
//!
//! A test binary of its own: it reads the process's peak RSS (VmHWM), which other tests
//! running beside it would raise.

mod common;

use std::{fs, path::Path, sync::Mutex};

use bitswap::{Block, Blockstore, MemoryBlockstore};
use bytes::Bytes;
use common::dags::{feed, repeat};
use futures::executor::block_on;
use ipfs_blockstore::multicodec::RAW;
use ipfs_formats::unixfs::{self, FileAssembler};

/// Links per node: N² = 25 million places of Y.
const N: usize = 5_000;
/// Most the peak RSS may grow while the assembler takes the DAG: the N² places would be
/// hundreds of MiB; the DAG's own blocks are under 1 MiB.
const MAX_PEAK_GROWTH_BYTES: u64 = 64 << 20;

/// The measurements share the process's peak RSS: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The process's peak RSS (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Resets the peak RSS to the current RSS (Linux 4.0 and later).
fn reset_peak_rss() {
    fs::write("/proc/self/clear_refs", "5").unwrap();
}

/// Root → N × X → N × Y, in a store; returns the store, the root block and the file size.
fn bomb(leaf: &[u8]) -> (MemoryBlockstore, Block, u64) {
    let y = unixfs::v1_block(RAW, Bytes::copy_from_slice(leaf)).unwrap();
    let x_size = leaf.len() as u64 * N as u64;
    let x = repeat(&y, leaf.len() as u64, N);
    let root = repeat(&x, x_size, N);
    let store = MemoryBlockstore::new();
    block_on(store.put_many(vec![y, x, root.clone()])).unwrap();
    (store, root, x_size * N as u64)
}

/// Hands the DAG to an assembler as `get` does (each block once, after its parent; blocks
/// needed again from the store), then writes the file: the assembler's if it completed it,
/// else an export from the store. Returns the assembler's peak RSS growth, and the file.
fn assemble(store: &MemoryBlockstore, root: &Block, dir: &Path) -> (u64, Vec<u8>, bool) {
    let target = dir.join("file");
    let get = |cid: &cid::Cid| block_on(store.get(cid)).unwrap().unwrap();
    reset_peak_rss();
    let before = peak_rss();
    let mut file = FileAssembler::start(root, &target).unwrap().unwrap();
    // Depth first, the last block known next.
    feed(&mut file, root, get, |known| known - 1);
    let growth = peak_rss().saturating_sub(before);
    let assembled = file.is_complete();
    if assembled {
        file.finish().unwrap();
    } else {
        drop(file);
        block_on(unixfs::export(store, root.cid(), &target)).unwrap();
    }
    let bytes = fs::read(&target).unwrap();
    fs::remove_file(&target).unwrap();
    (growth, bytes, assembled)
}

/// One measurement at a time: [`assemble`] the [`bomb`] of `leaf` in a temporary folder, and
/// report the peak RSS growth as `name`'s. Returns the file size, then what [`assemble`] does.
fn assemble_bomb(name: &str, leaf: &[u8]) -> (u64, u64, Vec<u8>, bool) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let temp = tempfile::tempdir().unwrap();
    let (store, root, size) = bomb(leaf);
    let (growth, bytes, assembled) = assemble(&store, &root, temp.path());
    eprintln!(
        "{name}: peak RSS grew by {} KiB; assembled: {assembled}",
        growth / 1024
    );
    (size, growth, bytes, assembled)
}

/// Y holds one byte: the file is N² = 25 MB, the DAG three blocks of under 250 kB each.
#[test]
fn repeated_places_of_a_one_byte_leaf() {
    let (size, growth, bytes, assembled) = assemble_bomb("one-byte leaf", b"y");
    // N² places are more than the three blocks pay for: the file comes from the store.
    assert!(!assembled);
    assert_eq!(bytes.len() as u64, size);
    assert!(bytes.iter().all(|&b| b == b'y'));
    assert!(
        growth <= MAX_PEAK_GROWTH_BYTES,
        "peak RSS grew by {growth} bytes"
    );
}

/// Y is empty: N² places of nothing, a file of 0 bytes.
#[test]
fn repeated_places_of_an_empty_leaf() {
    let (size, growth, bytes, assembled) = assemble_bomb("empty leaf", b"");
    // An empty child is placed once, however many links lead to it.
    assert!(assembled);
    assert_eq!(size, 0);
    assert!(bytes.is_empty());
    assert!(
        growth <= MAX_PEAK_GROWTH_BYTES,
        "peak RSS grew by {growth} bytes"
    );
}
