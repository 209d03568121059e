//! Nodes on one S3 bucket (SeaweedFS on 127.0.0.1, started and ended here by its PID): a node
//! serves what another added, kubo and Helia fetch it from that node alone; faults of the
//! store and of the nodes.
//!
//! Needs `BITSWAP_SEAWEEDFS` (the `weed` binary, which `.ci/test` installs), and for the fleet
//! test kubo and Helia as the interop suites do; without them the tests fail, unless
//! `BITSWAP_INTEROP_SKIP=1` says to skip them knowingly.

mod common;
#[path = "interop/support.rs"]
mod support;

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use common::{Killed, kubo_python, pseudo_random_file, s};
use ipfs_blockstore::seaweedfs::SeaweedFs;
use serde_json::Value;
use support::*;

/// `bitswap-node --data-dir DIR --store URL ARGS...` with the server's AWS environment.
fn node(server: &SeaweedFs, data_dir: &Path, args: &[&str]) -> Command {
    let url = format!("s3://{}/fleet", server.bucket());
    let mut all = vec!["--store", url.as_str()];
    all.extend_from_slice(args);
    let mut command = common::command(data_dir, &all);
    command.envs(server.env());
    command
}

fn finish(command: &mut Command, what: &str) -> Output {
    Killed(command.spawn().expect("the node starts")).output(what, TIME_LIMIT)
}

fn add(server: &SeaweedFs, data_dir: &Path, file: &Path) -> Value {
    let output = finish(
        &mut node(server, data_dir, &["--json", "add", s(file)]),
        "add",
    );
    assert!(
        output.status.success(),
        "add: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Node A adds 64 MiB to the bucket; node B (its own identity and data directory) serves the
/// bucket without adding anything; kubo, then Helia, fetch the file from B alone.
#[test]
fn kubo_and_helia_fetch_from_a_node_that_did_not_add() {
    let Some(server) = SeaweedFs::start("fleet") else {
        return;
    };
    let Some(python) = kubo_python("kubo_and_helia_fetch_from_a_node_that_did_not_add") else {
        return;
    };
    let Some((helia_node, temp)) = helia_test("kubo_and_helia_fetch_from_a_node_that_did_not_add")
    else {
        return;
    };
    let file = pseudo_random_file(temp.path(), 64 << 20, 1864);
    let added = add(&server, &temp.path().join("a"), &file);
    let root = added["root"].as_str().unwrap().to_owned();

    let serve = Driver::start(
        "serve B",
        node(&server, &temp.path().join("b"), &["serve", "--json"]),
    );
    assert_eq!(
        serve.info["roots"],
        serde_json::json!([]),
        "B added nothing"
    );

    // One peer at a time, each from B alone.
    let peers: [(&str, &dyn Fn() -> Driver); 2] = [
        ("kubo", &|| start_kubo(&python, None, &[])),
        ("Helia", &|| start_helia(&helia_node, None, &[])),
    ];
    for (name, start) in peers {
        let mut peer = start();
        driver_connect(&mut peer, &serve.address());
        let out = temp.path().join(format!("{name}-out"));
        let seconds = driver_download(&mut peer, &root, &out, 120);
        assert_same_hash(&file, &out);
        eprintln!("{name} fetched 64 MiB from B in {seconds:.2} s");
    }
}

/// S3 stops while a node serves: a fetch gets nothing (never a wrong block), the node stays
/// up, and serves again once S3 is back.
#[test]
fn a_node_outlives_its_store_stopping() {
    let Some(mut server) = SeaweedFs::start("fleet") else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let file = pseudo_random_file(temp.path(), 4 << 20, 18);
    let root = add(&server, &temp.path().join("a"), &file)["root"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut serve = Driver::start(
        "serve",
        node(&server, &temp.path().join("b"), &["serve", "--json"]),
    );
    server.stop();
    let out = temp.path().join("out-down");
    let failed = common::run_for(
        &temp.path().join("c"),
        &[
            "--json",
            "get",
            &root,
            "--peer",
            &serve.address(),
            "-o",
            s(&out),
            "--timeout",
            "5",
        ],
        TIME_LIMIT,
    );
    assert!(
        !failed.status.success(),
        "nothing to fetch while S3 is down"
    );
    assert!(!out.exists());
    assert!(serve.is_running(), "the node stays up");
    // Returns once the restarted server reads and writes objects again (its volume server
    // answers 500 InternalError for a while after a restart).
    server.resume();
    let out = temp.path().join("out-up");
    get(&temp.path().join("c"), &[], &root, &serve.address(), &out);
    assert_same_hash(&file, &out);
}

/// `kill -9` of a node during `add` leaves only objects that verify (a rerun completes, and
/// another node serves every block); two nodes adding the same file at once both succeed.
#[test]
fn killed_and_concurrent_adds_leave_a_sound_bucket() {
    let Some(server) = SeaweedFs::start("fleet") else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let file = pseudo_random_file(temp.path(), 32 << 20, 1818);
    let mut adding = node(&server, &temp.path().join("a"), &["add", s(&file)]);
    let child = adding.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    drop(Killed(child));

    let mut first = node(
        &server,
        &temp.path().join("a"),
        &["--json", "add", s(&file)],
    );
    let mut second = node(
        &server,
        &temp.path().join("b"),
        &["--json", "add", s(&file)],
    );
    let (first, second) = (first.spawn().unwrap(), second.spawn().unwrap());
    let first = Killed(first).output("add A", TIME_LIMIT);
    let second = Killed(second).output("add B", TIME_LIMIT);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let root: Value = serde_json::from_slice(&first.stdout).unwrap();
    let root = root["root"].as_str().unwrap();

    // Every block read back through a third node is verified: export fails on a corrupt one.
    let out = temp.path().join("out");
    let exported = finish(
        &mut node(
            &server,
            &temp.path().join("c"),
            &["export", root, "-o", s(&out)],
        ),
        "export",
    );
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert_same_hash(&file, &out);
}
