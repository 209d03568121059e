//! HAMT-sharded directories with kubo v0.22 and Helia, on 127.0.0.1 only, every tree compared
//! file by file.
//!
//! - kubo adds a directory of 10,000 small files, and shards it (its root is a `HAMTShard`).
//!   Our `get` fetches it from kubo and writes the same tree; `export` and `car export` (then
//!   `car import` into another store) write it again from our store; our `add` of the same
//!   tree gives kubo's root CID.
//! - Our `add` of that tree gives the CIDs of ipfs-unixfs-importer (Helia's UnixFS importer)
//!   in both layouts, and Helia fetches the sharded directory from our `serve`, listing the
//!   shards with `ls`.
//!
//! kubo's `AddFile` of 10,000 files takes over a minute here (its block store syncs every
//! block), so the tree is added once and every check on the kubo side runs on that one node.
//! Needs `BITSWAP_INTEROP_PYTHON` and the Helia driver's `node_modules`, as the other interop
//! suites; `BITSWAP_INTEROP_SKIP=1` skips them knowingly.

mod common;
#[path = "interop/support.rs"]
mod support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use common::{kubo_test, s};
use ipfs_formats::unixfs::{DagPbNode, DataType, UnixfsData};
use serde_json::json;
use support::*;

/// Files in the directory: far past kubo's threshold (about 44 bytes each of its estimate).
const FILES: usize = 10_000;
/// How long kubo may take to add them before printing its first line.
const KUBO_ADD_LIMIT: Duration = Duration::from_secs(400);

/// A directory of [`FILES`] files of a few bytes each, in `dir`.
fn make_tree(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    fs::create_dir(&tree).unwrap();
    for i in 0..FILES {
        fs::write(tree.join(format!("file-{i:05}")), format!("{i}\n")).unwrap();
    }
    tree
}

/// The UnixFS type of block `cid` in the store of `data_dir` (`block get`).
fn unixfs_type(data_dir: &Path, cid: &str) -> DataType {
    let out = data_dir.with_extension(format!("{cid}.block"));
    let output = run(data_dir, &["block", "get", cid, "-o", s(&out)]);
    assert!(output.status.success(), "block get {cid}");
    let node = DagPbNode::decode(&fs::read(&out).unwrap()).unwrap();
    UnixfsData::decode_from(&node.data.expect("UnixFS data"))
        .unwrap()
        .kind()
        .unwrap()
}

/// `get CID --peer ADDRESS -o OUT`, failing if no block arrives for 10 s.
///
/// kubo answers a directory of tiny files with many small messages, one stream each, and
/// reads our wantlist updates one message at a time. A client that lost wants or answers on
/// the way (updates beyond the peer's outgoing queue, streams past those a connection reads)
/// would stall until it asks again after its 30 s resend interval: this fails it instead.
fn get_without_stalls(data_dir: &Path, cid: &str, address: &str, out: &Path) -> serde_json::Value {
    get_within(
        data_dir,
        &[],
        cid,
        address,
        out,
        10,
        Duration::from_secs(240),
    )
}

/// A kubo that added a tree of [`FILES`] files (in `dir`): the tree, the node and its root.
fn kubo_seed(python: &str, dir: &Path) -> (PathBuf, Driver, String) {
    let tree = make_tree(dir);
    let mut command = Command::new(python);
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/kubo_peer.py"))
        .arg("--add")
        .arg(&tree);
    let kubo = Driver::start_within("kubo", command, KUBO_ADD_LIMIT);
    let root = kubo.info["added"][s(&tree)]
        .as_str()
        .expect("a root CID")
        .to_owned();
    (tree, kubo, root)
}

#[test]
fn sharded_directory_from_kubo() {
    let Some((python, temp)) = kubo_test("sharded_directory_from_kubo") else {
        return;
    };
    let (tree, kubo, root) = kubo_seed(&python, temp.path());

    let ours = temp.path().join("node");
    let out = temp.path().join("got");
    let got = get_without_stalls(&ours, &root, &kubo.address(), &out);
    eprintln!(
        "we fetched kubo's sharded directory {root}: {} blocks, {} s",
        got["fetched_blocks"], got["seconds"]
    );
    assert_eq!(got["kind"], "directory", "{got}");
    assert_eq!(unixfs_type(&ours, &root), DataType::HamtShard);
    // Every file and at least the root shard.
    assert!(
        got["fetched_blocks"].as_u64().unwrap() > FILES as u64,
        "{got}"
    );
    assert_same_tree(&tree, &out);

    // From our store: `export`, and a CAR read into another store.
    let exported = temp.path().join("exported");
    run_json(&ours, &["export", &root, "-o", s(&exported)]);
    assert_same_tree(&tree, &exported);
    let car = temp.path().join("tree.car");
    let written = run_json(&ours, &["car", "export", &root, "-o", s(&car)]);
    assert_eq!(written["blocks"], got["fetched_blocks"], "{written}");
    let other = temp.path().join("other");
    run_json(&other, &["car", "import", s(&car)]);
    let again = temp.path().join("again");
    run_json(&other, &["export", &root, "-o", s(&again)]);
    assert_same_tree(&tree, &again);

    // Our own `add` lays the tree out as kubo did.
    let added = run_json(&temp.path().join("adder"), &["add", s(&tree)]);
    assert_eq!(added["root"], root.as_str(), "our add and kubo's differ");
}

#[test]
fn helia_fetches_our_sharded_directory() {
    let Some((node, temp)) = helia_test("helia_fetches_our_sharded_directory") else {
        return;
    };
    let tree = make_tree(temp.path());
    // Both layouts give the importer's CIDs (it shards at the same threshold for this tree).
    for (layout, flags) in IMPORTER_LAYOUTS {
        let theirs = importer_cids(&node, layout, std::slice::from_ref(&tree));
        let mut args = vec!["add", s(&tree)];
        args.extend_from_slice(flags);
        let ours = run_json(&temp.path().join(format!("adder-{layout}")), &args);
        assert_eq!(ours["root"], theirs[s(&tree)], "{layout}");
    }

    let data_dir = temp.path().join("node");
    let serve = start_serve(&data_dir, &[], &[&tree]);
    let root = serve.info["roots"][0]["cid"].as_str().unwrap().to_owned();
    let mut helia = start_helia(&node, None, &[]);
    driver_connect(&mut helia, &serve.address());
    let out = temp.path().join("helia");
    let seconds = 300;
    let answer = helia.command(
        &json!({ "op": "download-dir", "cid": root, "out": out, "timeout": seconds }),
        Duration::from_secs(seconds + 30),
    );
    assert_eq!(answer["ok"], true, "Helia download-dir of {root}: {answer}");
    eprintln!(
        "Helia fetched our sharded directory {root} in {} s",
        answer["seconds"]
    );
    assert_same_tree(&tree, &out);
}

/// The `get` figure of the README: the 10,000-file directory fetched from one kubo seed by our
/// `get` and by a second kubo (`Download`, which writes the tree too), one after the other, each
/// into an empty store. Not a test (a figure, which only means something from a release build):
///
/// ```text
/// cargo test --release --locked -p bitswap-node --test interop_hamt -- --ignored --nocapture
/// ```
///
/// Prints one Markdown table row per fetcher: seconds, blocks/s and MB/s of block bytes.
#[test]
#[ignore = "a bench: run it in a release build with --ignored"]
fn bench_get_sharded_directory_from_kubo() {
    let Some((python, temp)) = kubo_test("bench_get_sharded_directory_from_kubo") else {
        return;
    };
    let (tree, seed, root) = kubo_seed(&python, temp.path());

    let got = get_without_stalls(
        &temp.path().join("node"),
        &root,
        &seed.address(),
        &temp.path().join("ours"),
    );
    assert_same_tree(&tree, &temp.path().join("ours"));
    let blocks = got["fetched_blocks"].as_u64().unwrap();
    let bytes = got["fetched_bytes"].as_u64().unwrap();
    let ours = got["seconds"].as_f64().unwrap();

    let mut kubo = kubo_connected_to(&python, &seed.address());
    let out = temp.path().join("kubo");
    let theirs = driver_download(&mut kubo, &root, &out, 300);
    assert_same_tree(&tree, &out);

    println!("| fetcher | seconds | blocks/s | MB/s |\n|---|---|---|---|");
    for (name, seconds) in [("our get", ours), ("kubo Download", theirs)] {
        println!(
            "| {name} | {seconds:.2} | {:.0} | {:.3} |",
            blocks as f64 / seconds,
            bytes as f64 / seconds / 1e6
        );
    }
    println!("({blocks} blocks, {bytes} bytes of blocks, root {root})");
}
