//! UnixFS 1.5 metadata through the binary: `add --preserve-mode --preserve-mtime` stores each
//! file's and directory's mode and mtime, and `export` and `get` (a directory, and a file
//! written as its blocks arrive) restore them; without the flags nothing is stored. The CIDs
//! are compared with Helia's in `unixfs_cids.rs`.

mod common;

use std::{fs, os::unix::fs::PermissionsExt as _};

use common::{Server, fetch, json, meta, s};

#[test]
fn export_restores_modes_and_mtimes() {
    let temp = tempfile::tempdir().unwrap();
    let tree = temp.path().join("tree");
    meta::make(&tree);
    let data = temp.path().join("node");
    // Boolean flags take no value: the path after them is the path.
    let added = json(
        &data,
        &["add", "--preserve-mode", s(&tree), "--preserve-mtime"],
    );
    let root = added["root"].as_str().unwrap();
    let out = temp.path().join("out");
    let exported = json(&data, &["export", root, "-o", s(&out)]);
    assert_eq!(exported["kind"], "directory", "{exported}");
    assert_eq!(meta::listing(&out), meta::listing(&tree));
    meta::make_writable(&out);

    // A file alone.
    let script = tree.join("run.sh");
    let added = json(
        &data,
        &["add", "--preserve-mode", "--preserve-mtime", s(&script)],
    );
    let out = temp.path().join("run.sh");
    json(
        &data,
        &["export", added["root"].as_str().unwrap(), "-o", s(&out)],
    );
    let (want, got) = (fs::metadata(&script).unwrap(), fs::metadata(&out).unwrap());
    assert_eq!(got.permissions().mode() & 0o7777, 0o755);
    assert_eq!(got.modified().unwrap(), want.modified().unwrap());

    // Without the flags: another CID, and the default mode and a new time.
    let plain = json(&data, &["add", s(&script)]);
    assert_ne!(plain["root"], added["root"]);
    let out = temp.path().join("plain");
    json(
        &data,
        &["export", plain["root"].as_str().unwrap(), "-o", s(&out)],
    );
    let got = fs::metadata(&out).unwrap();
    assert_eq!(got.permissions().mode() & 0o7777, 0o644);
    assert_ne!(got.modified().unwrap(), want.modified().unwrap());

    // Only the times: default modes.
    let times = json(&data, &["add", "--preserve-mtime", s(&script)]);
    assert_ne!(times["root"], added["root"]);
    assert_ne!(times["root"], plain["root"]);
    let out = temp.path().join("times");
    json(
        &data,
        &["export", times["root"].as_str().unwrap(), "-o", s(&out)],
    );
    let got = fs::metadata(&out).unwrap();
    assert_eq!(got.permissions().mode() & 0o7777, 0o644);
    assert_eq!(got.modified().unwrap(), want.modified().unwrap());
    meta::make_writable(&tree);
}

#[test]
fn get_restores_modes_and_mtimes() {
    let temp = tempfile::tempdir().unwrap();
    let tree = temp.path().join("tree");
    meta::make(&tree);
    // 2.5 MB in 256 KiB chunks: a file that `get` writes as its blocks come.
    let big = tree.join("sub/big");
    let server = Server::start_with(
        &temp.path().join("server"),
        &[&tree, &big],
        &["--preserve-mode", "--preserve-mtime"],
    );
    let client = temp.path().join("client");
    let out = temp.path().join("out");
    let got = fetch(&client, &server.root(0), &server, &out);
    assert_eq!(got["kind"], "directory", "{got}");
    assert_eq!(meta::listing(&out), meta::listing(&tree));
    meta::make_writable(&out);

    let out = temp.path().join("big");
    let got = fetch(&client, &server.root(1), &server, &out);
    assert_eq!(got["kind"], "file", "{got}");
    let (want, got) = (fs::metadata(&big).unwrap(), fs::metadata(&out).unwrap());
    assert_eq!(got.permissions().mode() & 0o7777, 0o640);
    assert_eq!(got.modified().unwrap(), want.modified().unwrap());
    assert_eq!(fs::read(&out).unwrap(), fs::read(&big).unwrap());
    meta::make_writable(&tree);
}
