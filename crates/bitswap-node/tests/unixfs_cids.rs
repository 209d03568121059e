//! Our `add` gives the same root CIDs as ipfs-unixfs-importer (Helia's UnixFS importer) set
//! to kubo's layouts, for both `add` layouts: kubo's defaults, and `--cid-version 1
//! --raw-leaves`. The second cannot be compared with kubo itself here (the kubo wheel's
//! `AddFile` takes no layout options, see `kubo_cids.rs`); the first is compared with kubo
//! there, so it also checks that the importer is set up as kubo lays files out.
//!
//! Needs `node` and the Helia driver's `node_modules` (`npm ci` in `tests/interop/helia`, which
//! `.ci/test` runs); `BITSWAP_INTEROP_SKIP=1` skips it knowingly.

mod common;
#[path = "interop/support.rs"]
mod support;

use std::path::{Path, PathBuf};

use common::{meta, s, write_pseudo_random};
use support::{IMPORTER_LAYOUTS, helia_test, importer_cids, node_json, run_json};

const CHUNK: usize = 256 * 1024;

/// Files of the sizes where layouts differ: empty, one byte, around one chunk, around a full
/// node of 174 links, several chunks, and repeated chunks.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let sizes = [
        0,
        1,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        174 * CHUNK,
        174 * CHUNK + 1,
        (1 << 20) + 3,
        10 << 20,
    ];
    let mut paths: Vec<PathBuf> = sizes
        .into_iter()
        .enumerate()
        .map(|(i, size)| {
            let path = dir.join(format!("file-{size}"));
            write_pseudo_random(&path, size, 0x51de_5eed ^ i as u64);
            path
        })
        .collect();
    let zeros = dir.join("zeros");
    std::fs::write(&zeros, vec![0u8; 3 * CHUNK + 5]).unwrap();
    paths.push(zeros);
    paths
}

#[test]
fn add_gives_the_importers_cids_in_both_layouts() {
    let Some((node, dir)) = helia_test("the UnixFS importer CID comparison") else {
        return;
    };
    let paths = inputs(dir.path());
    for (layout, flags) in IMPORTER_LAYOUTS {
        let expected = importer_cids(&node, layout, &paths);
        let data_dir = dir.path().join(format!("store-{layout}"));
        for path in &paths {
            let mut args = vec!["add", path.to_str().unwrap()];
            args.extend_from_slice(flags);
            let ours = run_json(&data_dir, &args);
            assert_eq!(
                ours["root"],
                expected[path.to_str().unwrap()],
                "{layout}: {}",
                path.display()
            );
        }
    }
}

/// A tree whose files and directories have modes (setuid, read-only directory) and mtimes
/// (with and without nanoseconds), added with `--preserve-mode --preserve-mtime` in Helia's
/// layout, has the root CID @helia/unixfs gives it with the same modes and mtimes; without the
/// flags, the CID of the same tree differs (and is kubo's, as the tests above check).
#[test]
fn add_with_metadata_gives_helias_cid() {
    let Some((node, dir)) = helia_test("the UnixFS metadata CID comparison") else {
        return;
    };
    let tree = dir.path().join("tree");
    let _tree = meta::make(&tree);
    let expected = node_json(&node, "unixfs_add_meta.mjs", [s(&tree)]);
    let data_dir = dir.path().join("store");
    let helia_layout = [
        "--cid-version",
        "1",
        "--chunk-size",
        "1048576",
        "--max-links",
        "1024",
    ];
    let mut args = vec!["add", "--preserve-mode", "--preserve-mtime"];
    args.extend(helia_layout);
    args.push(s(&tree));
    let ours = run_json(&data_dir, &args);
    assert_eq!(ours["root"], expected["root"], "{ours}");
    let mut plain = vec!["add"];
    plain.extend(helia_layout);
    plain.push(s(&tree));
    assert_ne!(run_json(&data_dir, &plain)["root"], ours["root"]);
}
