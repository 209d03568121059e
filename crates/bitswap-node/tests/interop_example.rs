//! The `bitswap` crate's `peer` example (`crates/bitswap/examples/peer.rs`: bitswap beside
//! identify, ping and kad, on `bitswap::yamux_config`) with kubo v0.22 and Helia, on 127.0.0.1
//! only: a 64 MiB UnixFS file each way with each, verified by hash.
//!
//! - The example fetches a file kubo added (CIDv0, dag-pb leaves) and one Helia added (CIDv1,
//!   1 MiB raw leaves: the frames that broke yamux's default settings).
//! - kubo and Helia each fetch a file the example serves (CIDv1, 256 KiB raw leaves).
//!
//! The example is built by the test (`cargo build --workspace --example peer`), so that it is
//! never stale. kubo and Helia come as in the other interop suites; without them the tests fail
//! unless `BITSWAP_INTEROP_SKIP=1` says to skip them knowingly.

mod common;
#[path = "interop/support.rs"]
mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::{Killed, kubo_python, ok_json, s, write_pseudo_random};
use serde_json::Value;
use support::*;

/// Bound of the example's build (its first build in a target directory compiles libp2p's
/// kad with the workspace's features).
const BUILD_LIMIT: Duration = Duration::from_secs(1200);

/// Size of each file.
const FILE_BYTES: usize = 64 << 20;

/// The example's executable, built once per test binary.
fn example() -> &'static Path {
    static EXAMPLE: OnceLock<PathBuf> = OnceLock::new();
    EXAMPLE.get_or_init(|| {
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--locked", "--workspace", "--example", "peer"])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = Killed(cargo.spawn().expect("cargo")).output("cargo build", BUILD_LIMIT);
        assert!(
            output.status.success(),
            "building the example failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "peer")
            .and_then(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("the example's executable")
    })
}

/// `peer serve FILE`, as a driver: its first line has the root, the address and the peer id;
/// closing its stdin ends it.
fn example_serve(file: &Path) -> Driver {
    let mut command = Command::new(example());
    command.env("RUST_BACKTRACE", "1").args(["serve", s(file)]);
    Driver::start("peer example serve", command)
}

/// `peer get ROOT ADDRESS OUT`, bounded by [`TIME_LIMIT`]; it must succeed. Its JSON line.
fn example_get(root: &str, address: &str, out: &Path) -> Value {
    let args = ["get", root, address, s(out)];
    let mut command = Command::new(example());
    command
        .env("RUST_BACKTRACE", "1")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = Killed(command.spawn().expect("the example")).output("peer get", TIME_LIMIT);
    ok_json(&args, &output)
}

/// The example and a driver fetch a 64 MiB file from each other: `start` starts the driver
/// with the file to add (made from `seed`).
fn both_ways(seed: u64, start: impl FnOnce(&Path) -> Driver) {
    example();
    let temp = tempfile::tempdir().unwrap();
    let theirs = temp.path().join("theirs");
    write_pseudo_random(&theirs, FILE_BYTES, seed);
    let mut driver = start(&theirs);
    let name = driver.name.clone();
    let root = driver.info["added"][s(&theirs)].as_str().expect("a root");
    let out = temp.path().join("from-them");
    let start = Instant::now();
    let got = example_get(root, &driver.address(), &out);
    assert_same_hash(&theirs, &out);
    assert_eq!(got["bytes"], FILE_BYTES, "{got}");
    eprintln!(
        "the example fetched 64 MiB from {name} in {:.2?}: {got}",
        start.elapsed()
    );

    let ours = temp.path().join("ours");
    write_pseudo_random(&ours, FILE_BYTES, seed + 1);
    let serve = example_serve(&ours);
    let root = serve.info["root"].as_str().expect("a root").to_owned();
    driver_connect(&mut driver, &serve.address());
    let out = temp.path().join("from-us");
    let seconds = driver_download(&mut driver, &root, &out, 120);
    assert_same_hash(&ours, &out);
    eprintln!("{name} fetched 64 MiB from the example in {seconds:.2} s");
}

#[test]
fn the_example_and_kubo_fetch_64_mib_from_each_other() {
    let Some(python) = kubo_python("the_example_and_kubo_fetch_64_mib_from_each_other") else {
        return;
    };
    both_ways(0xe8a, |file| start_kubo(&python, None, &[file]));
}

#[test]
fn the_example_and_helia_fetch_64_mib_from_each_other() {
    let Some(node) = helia_node("the_example_and_helia_fetch_64_mib_from_each_other") else {
        return;
    };
    both_ways(0xe8c, |file| start_helia(&node, None, &[file]));
}
