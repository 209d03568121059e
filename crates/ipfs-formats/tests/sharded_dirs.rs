//! HAMT-sharded directories in memory: a directory past kubo's threshold is imported as a
//! shard tree, written back out byte for byte, and survives a CAR round trip.

use std::{
    fs,
    path::{Path, PathBuf},
};

use bytes::Bytes;
use futures::executor::block_on;
use ipfs_blockstore::{Block, Blockstore, MemoryBlockstore, multicodec::RAW};
use ipfs_formats::{
    car, dag,
    unixfs::{self, DagPbNode, DataType, ExportError, ImportOptions, Link, UnixfsData},
};
use prost::Message as _;

/// The UnixFS type of the block `cid`.
fn kind(store: &MemoryBlockstore, cid: &cid::Cid) -> DataType {
    let block = block_on(store.get(cid)).unwrap().expect("stored");
    let node = DagPbNode::decode_bytes(block.data()).unwrap();
    UnixfsData::decode_bytes(&node.data.unwrap())
        .unwrap()
        .kind()
        .unwrap()
}

/// Every file, directory and symlink under `root`, relative, with file bytes and link targets.
fn tree(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            let metadata = fs::symlink_metadata(&path).unwrap();
            if metadata.is_dir() {
                stack.push(path);
                out.push((relative, None));
            } else if metadata.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                out.push((relative, Some(target.into_os_string().into_encoded_bytes())));
            } else {
                out.push((relative, Some(fs::read(&path).unwrap())));
            }
        }
    }
    out.sort();
    out
}

/// `count` files with names of `name_len` bytes (each `name_len` + 34 bytes of kubo's estimate
/// with a CIDv0).
fn wide_dir(path: &Path, count: usize, name_len: usize) {
    fs::create_dir_all(path).unwrap();
    for i in 0..count {
        fs::write(path.join(format!("{i:0>name_len$}")), i.to_string()).unwrap();
    }
}

#[test]
fn sharded_directory_round_trips() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("input");
    // 1000 entries of 274 bytes: past the threshold, and enough for some slots to need child
    // shards.
    wide_dir(&input, 1000, 240);
    // A basic subdirectory and a symlink among the shard's entries.
    fs::create_dir(input.join("sub")).unwrap();
    fs::write(input.join("sub/inner"), b"inner").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("sub/inner", input.join("link")).unwrap();

    let store = MemoryBlockstore::new();
    let imported = block_on(unixfs::import_path(
        &store,
        &input,
        &ImportOptions::default(),
    ))
    .unwrap();
    assert_eq!(kind(&store, &imported.root), DataType::HamtShard);
    // Child shards below the root: 1002 entries in 256 slots.
    let root = block_on(store.get(&imported.root)).unwrap().unwrap();
    let children = dag::links(&root).unwrap();
    assert!(
        children
            .iter()
            .any(|cid| kind(&store, cid) == DataType::HamtShard)
    );

    let output = temp.path().join("output");
    let exported = block_on(unixfs::export(&store, &imported.root, &output)).unwrap();
    assert_eq!(exported.kind, unixfs::EntryKind::Directory);
    assert_eq!(exported.bytes, imported.bytes);
    assert_eq!(tree(&output), tree(&input));

    // The DAG walk of a CAR export reaches every shard and entry.
    let mut file = Vec::new();
    let stats = block_on(car::export(
        &store,
        &[imported.root],
        &mut file,
        Path::new("<car>"),
    ))
    .unwrap();
    let other = MemoryBlockstore::new();
    block_on(car::import(&other, &file[..], Path::new("<car>"))).unwrap();
    let again = temp.path().join("again");
    block_on(unixfs::export(&other, &imported.root, &again)).unwrap();
    assert_eq!(tree(&again), tree(&input));
    assert!(stats.blocks > 1000);
}

/// kubo v0.22 shards once the estimate reaches 256 KiB: 2047 entries of 128 bytes stay a basic
/// directory, 2048 (exactly 262144 bytes) make a shard; a sharded subdirectory is an entry
/// like any other.
#[test]
fn threshold_is_kubos() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("wide");
    wide_dir(&dir, 2047, 94);
    let store = MemoryBlockstore::new();
    let options = ImportOptions::default();
    let basic = block_on(unixfs::import_path(&store, &dir, &options)).unwrap();
    assert_eq!(kind(&store, &basic.root), DataType::Directory);
    fs::write(dir.join(format!("{:0>94}", 2047)), b"2047").unwrap();
    let sharded = block_on(unixfs::import_path(&store, &dir, &options)).unwrap();
    assert_eq!(kind(&store, &sharded.root), DataType::HamtShard);

    let parent = temp.path().join("parent");
    fs::create_dir(&parent).unwrap();
    fs::rename(&dir, parent.join("wide")).unwrap();
    fs::write(parent.join("small"), b"small").unwrap();
    let nested = block_on(unixfs::import_path(&store, &parent, &options)).unwrap();
    assert_eq!(kind(&store, &nested.root), DataType::Directory);
    let output = temp.path().join("output");
    block_on(unixfs::export(&store, &nested.root, &output)).unwrap();
    assert_eq!(tree(&output), tree(&parent));
}

/// A shard node of `links` with `hash_type`, its bitfield set for the links' slots.
fn shard_block(links: Vec<Link>, hash_type: u64) -> Block {
    let mut bits = [0u8; 32];
    for link in &links {
        let slot = u8::from_str_radix(&link.name[..2], 16).unwrap();
        bits[31 - usize::from(slot / 8)] |= 1 << (slot % 8);
    }
    let first = bits.iter().position(|&b| b != 0).unwrap_or(32);
    let data = UnixfsData {
        r#type: DataType::HamtShard as i32,
        data: Some(Bytes::copy_from_slice(&bits[first..])),
        hash_type: Some(hash_type),
        fanout: Some(256),
        ..UnixfsData::directory()
    };
    let node = DagPbNode {
        links,
        data: Some(data.encode_to_vec().into()),
    };
    Block::from_v0_data(node.encode().into()).unwrap()
}

/// Shards that lie are errors naming the block, and leave nothing at the target.
#[test]
fn malformed_shards_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let store = MemoryBlockstore::new();
    let raw = unixfs::v1_block(RAW, Bytes::from_static(b"data")).unwrap();
    let raw_cid = *raw.cid();
    let to_raw = |name: &str| Link {
        cid: raw_cid,
        name: name.to_owned(),
        tsize: 4,
    };
    // A child shard (a link named by its slot alone) that is a file.
    let lying_child = shard_block(vec![to_raw("00"), to_raw("01file")], 0x22);
    // A hash other than murmur3.
    let other_hash = shard_block(vec![to_raw("01file")], 0x12);
    block_on(store.put_many(vec![raw, lying_child.clone(), other_hash.clone()])).unwrap();

    let target = temp.path().join("lying");
    let error = block_on(unixfs::export(&store, lying_child.cid(), &target)).unwrap_err();
    assert!(
        matches!(&error, ExportError::Invalid { cid, .. } if *cid == raw_cid),
        "{error}"
    );
    assert!(!target.exists());
    let target = temp.path().join("other");
    let error = block_on(unixfs::export(&store, other_hash.cid(), &target)).unwrap_err();
    assert!(
        matches!(&error, ExportError::Shard { cid, .. } if cid == other_hash.cid()),
        "{error}"
    );
    assert!(!target.exists());
}
