//! Import then export: arbitrary bytes and trees come back identical, through the store and
//! through CAR files; a damaged DAG fails without leaving output behind.

mod common;

use std::{fs, path::Path};

use bitswap::{Block, Blockstore, MemoryBlockstore};
use bytes::Bytes;
use cid::Cid;
use common::names;
use futures::executor::block_on;
use ipfs_blockstore::multicodec::{DAG_PB, RAW};
use ipfs_formats::{
    car,
    unixfs::{
        self, CidVersion, ExportError, FileAssembler, ImportOptions, Layout, import_path,
        import_reader,
    },
};
use proptest::prelude::*;

fn layout(chunk: usize, links: usize, v1_raw: bool) -> Layout {
    let base = if v1_raw {
        Layout::v1_raw_leaves()
    } else {
        Layout::default()
    };
    base.with_chunk_size(chunk)
        .unwrap()
        .with_max_links(links)
        .unwrap()
}

fn read_back(store: &MemoryBlockstore, root: &Cid) -> Vec<u8> {
    let mut out = Vec::new();
    block_on(unixfs::write_file(
        store,
        root,
        &mut out,
        Path::new("<memory>"),
    ))
    .unwrap();
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Multi-level trees: chunks of 1 to 16 bytes and 2 to 4 links give up to 6 levels.
    #[test]
    fn file_round_trips(
        data in proptest::collection::vec(any::<u8>(), 0..1500),
        chunk in 1usize..16,
        links in 2usize..5,
        v1_raw in any::<bool>(),
    ) {
        let store = MemoryBlockstore::new();
        let layout = layout(chunk, links, v1_raw);
        let imported = block_on(import_reader(&store, &data[..], &layout)).unwrap();
        prop_assert_eq!(imported.bytes, data.len() as u64);
        prop_assert_eq!(read_back(&store, &imported.root), data.clone());
        // The same bytes give the same root, whatever else is in the store.
        let again = block_on(import_reader(&store, &data[..], &layout)).unwrap();
        prop_assert_eq!(again.root, imported.root);
        // A CAR of the DAG carries it whole into an empty store.
        let mut file = Vec::new();
        block_on(car::export(&store, &[imported.root], &mut file, Path::new("<car>"))).unwrap();
        let other = MemoryBlockstore::new();
        let stats = block_on(car::import(&other, &file[..], Path::new("<car>"))).unwrap();
        prop_assert_eq!(stats.roots, vec![imported.root]);
        prop_assert_eq!(read_back(&other, &imported.root), data);
    }
}

/// Feeds the DAG under `root` to a [`FileAssembler`] as `get` does: a block only once its
/// parent came, each once, in the order `picks` chooses among the blocks known; blocks the
/// assembler needs again come from the store. Returns the file written.
fn assemble(store: &MemoryBlockstore, root: &Cid, picks: &[usize], dir: &Path) -> Vec<u8> {
    let target = dir.join("assembled");
    let get = |cid: &Cid| block_on(store.get(cid)).unwrap().unwrap();
    let root_block = get(root);
    let mut file = FileAssembler::start(&root_block, &target).unwrap().unwrap();
    let mut picks = picks.iter().cycle();
    common::dags::feed(&mut file, &root_block, get, |_| *picks.next().unwrap());
    assert!(file.is_complete());
    let exported = file.finish().unwrap();
    let bytes = fs::read(&target).unwrap();
    assert_eq!(exported.bytes, bytes.len() as u64);
    fs::remove_file(&target).unwrap();
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Blocks in any order (parents first) give the same file as the exporter, also when
    /// chunks repeat (few distinct bytes, small chunks): a repeated block is written at each
    /// of its places.
    #[test]
    fn assembled_in_any_order(
        data in proptest::collection::vec(0u8..3, 0..1500),
        chunk in 1usize..8,
        links in 2usize..5,
        v1_raw in any::<bool>(),
        picks in proptest::collection::vec(any::<usize>(), 1..64),
    ) {
        let store = MemoryBlockstore::new();
        let imported = block_on(import_reader(&store, &data[..], &layout(chunk, links, v1_raw)))
            .unwrap();
        let temp = tempfile::tempdir().unwrap();
        prop_assert_eq!(assemble(&store, &imported.root, &picks, temp.path()), data);
        // Nothing else is left in the directory.
        prop_assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 0);
    }
}

#[test]
fn assembler_checks_sizes_and_leaves_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let target = temp.path().join("out");
    let store = MemoryBlockstore::new();
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let imported = block_on(import_reader(&store, &data[..], &layout(1000, 8, true))).unwrap();
    let root = block_on(store.get(&imported.root)).unwrap().unwrap();
    let mut file = FileAssembler::start(&root, &target).unwrap().unwrap();
    assert!(!file.is_complete());
    // The assembler ignores blocks no place waits for.
    let stray = unixfs::v1_block(RAW, Bytes::from_static(b"stray")).unwrap();
    file.add(&stray).unwrap();
    // Missing blocks: `finish` fails and the temporary file goes.
    let error = file.finish().unwrap_err();
    assert!(matches!(error, ExportError::Missing(_)), "{error}");
    assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 0);

    // A root that claims 999 bytes for a 1000-byte leaf: refused when the leaf comes.
    let leaf = unixfs::v1_block(RAW, Bytes::from(vec![7u8; 1000])).unwrap();
    let liar = unixfs::DagPbNode {
        links: vec![unixfs::Link {
            cid: *leaf.cid(),
            name: String::new(),
            tsize: 1000,
        }],
        data: Some(
            prost::Message::encode_to_vec(&unixfs::UnixfsData::file(Bytes::new(), vec![999]))
                .into(),
        ),
    };
    let liar = unixfs::v1_block(DAG_PB, Bytes::from(liar.encode())).unwrap();
    let mut file = FileAssembler::start(&liar, &target).unwrap().unwrap();
    let error = file.add(&leaf).unwrap_err();
    assert!(matches!(error, ExportError::Invalid { .. }), "{error}");
    drop(file);
    assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 0);
    // A directory is not a file: no assembler.
    let dir = temp.path().join("tree");
    fs::create_dir(&dir).unwrap();
    let tree = block_on(import_path(&store, &dir, &ImportOptions::default())).unwrap();
    let tree_root = block_on(store.get(&tree.root)).unwrap().unwrap();
    assert!(FileAssembler::start(&tree_root, &target).unwrap().is_none());
}

#[test]
fn layouts_differ_only_as_asked() {
    let store = MemoryBlockstore::new();
    let data = vec![7u8; 1000];
    let v0 = block_on(import_reader(&store, &data[..], &layout(100, 3, false))).unwrap();
    let v1 = block_on(import_reader(&store, &data[..], &layout(100, 3, true))).unwrap();
    assert_eq!(v0.root.version(), cid::Version::V0);
    assert_eq!(v1.root.version(), cid::Version::V1);
    assert_eq!(v1.root.codec(), DAG_PB);
    assert_ne!(v0.root, v1.root);
    // CIDv1 with UnixFS leaves: every block dag-pb CIDv1.
    let mixed = Layout::default().with_cid_version(CidVersion::V1);
    let mixed = block_on(import_reader(&store, &data[..1], &mixed)).unwrap();
    assert_eq!(mixed.root.codec(), DAG_PB);
    assert_eq!(read_back(&store, &mixed.root), &data[..1]);
}

/// Writes a small tree: files of several sizes, an empty file and directory, a symlink and a
/// hidden file.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("a.txt"), b"hello").unwrap();
    fs::write(root.join("zero"), b"").unwrap();
    fs::write(root.join("sub/big"), vec![42u8; 3000]).unwrap();
    fs::write(root.join("sub/deeper/x"), b"x").unwrap();
    fs::write(root.join(".hidden"), b"h").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("../a.txt", root.join("sub/link")).unwrap();
}

/// Every entry of a tree, with file contents and symlink targets.
fn listing(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let kind = entry.file_type().unwrap();
            let what = if kind.is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                stack.push(path);
                "dir".to_owned()
            } else {
                format!("{:?}", fs::read(&path).unwrap())
            };
            out.push((name, what));
        }
    }
    out.sort();
    out
}

#[test]
fn directory_round_trips() {
    let temp = tempfile::tempdir().unwrap();
    let input = temp.path().join("in");
    make_tree(&input);
    let store = MemoryBlockstore::new();
    let options = ImportOptions {
        layout: layout(1000, 2, false),
        hidden: true,
        ..ImportOptions::default()
    };
    let imported = block_on(import_path(&store, &input, &options)).unwrap();
    let out = temp.path().join("out");
    let exported = block_on(unixfs::export(&store, &imported.root, &out)).unwrap();
    assert_eq!(exported.kind, unixfs::EntryKind::Directory);
    assert_eq!(exported.bytes, imported.bytes);
    assert_eq!(listing(&out), listing(&input));

    // Without hidden entries, `.hidden` is not there.
    let options = ImportOptions {
        hidden: false,
        ..options
    };
    let visible = block_on(import_path(&store, &input, &options)).unwrap();
    assert_ne!(visible.root, imported.root);
    let out = temp.path().join("visible");
    block_on(unixfs::export(&store, &visible.root, &out)).unwrap();
    assert!(!out.join(".hidden").exists());
    assert!(out.join("a.txt").exists());
    // Nothing else was left in the directory (no temporary entries).
    assert_eq!(names(temp.path()), ["in", "out", "visible"]);
}

#[test]
fn missing_block_fails_and_leaves_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let store = MemoryBlockstore::new();
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    let imported = block_on(import_reader(&store, &data[..], &layout(100, 4, false))).unwrap();
    // Drop one leaf from the middle of the file.
    let leaf = Block::from_v0_data(Bytes::from(
        unixfs::DagPbNode {
            links: Vec::new(),
            data: Some(
                prost::Message::encode_to_vec(&unixfs::UnixfsData::file(
                    Bytes::copy_from_slice(&data[2500..2600]),
                    Vec::new(),
                ))
                .into(),
            ),
        }
        .encode(),
    ))
    .unwrap();
    block_on(store.delete(leaf.cid())).unwrap();
    let out = temp.path().join("out");
    let error = block_on(unixfs::export(&store, &imported.root, &out)).unwrap_err();
    assert!(
        matches!(error, ExportError::Missing(cid) if cid == *leaf.cid()),
        "{error}"
    );
    assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 0);

    // The CAR export of that DAG fails too, and leaves no file.
    let car_path = temp.path().join("dag.car");
    assert!(block_on(car::export_file(&store, &[imported.root], &car_path)).is_err());
    assert_eq!(fs::read_dir(temp.path()).unwrap().count(), 0);
}

#[test]
fn export_refuses_an_existing_target() {
    let temp = tempfile::tempdir().unwrap();
    let store = MemoryBlockstore::new();
    let imported = block_on(import_reader(&store, &b"abc"[..], &Layout::default())).unwrap();
    let out = temp.path().join("out");
    fs::write(&out, b"mine").unwrap();
    let error = block_on(unixfs::export(&store, &imported.root, &out)).unwrap_err();
    assert!(matches!(error, ExportError::Exists(_)));
    assert_eq!(fs::read(&out).unwrap(), b"mine");
}

#[test]
fn car_import_refuses_a_corrupt_block() {
    let store = MemoryBlockstore::new();
    let imported = block_on(import_reader(
        &store,
        &b"some bytes"[..],
        &Layout::default(),
    ))
    .unwrap();
    let mut file = Vec::new();
    block_on(car::export(
        &store,
        &[imported.root],
        &mut file,
        Path::new("<car>"),
    ))
    .unwrap();
    // Flip the last byte: the block's data.
    let last = file.len() - 1;
    file[last] ^= 1;
    let other = MemoryBlockstore::new();
    let error = block_on(car::import(&other, &file[..], Path::new("<car>"))).unwrap_err();
    assert!(
        matches!(error, car::CarError::Block { index: 0, .. }),
        "{error}"
    );
    assert!(!block_on(other.has(&imported.root)).unwrap());
    // A truncated file is an error, not a shorter import.
    let error = block_on(car::import(
        &other,
        &file[..file.len() - 3],
        Path::new("<car>"),
    ));
    assert!(error.is_err());
}
