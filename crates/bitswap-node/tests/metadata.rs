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
    let _tree = meta::make(&tree);
    let data = temp.path().join("node");
    // Boolean flags take no value: the path after them is the path.
    let added = json(
        &data,
        &["add", "--preserve-mode", s(&tree), "--preserve-mtime"],
    );
    let root = added["root"].as_str().unwrap();
    let out = temp.path().join("out");
    let _out = meta::Writable(out.clone());
    let exported = json(&data, &["export", root, "-o", s(&out)]);
    assert_eq!(exported["kind"], "directory", "{exported}");
    assert_eq!(meta::listing(&out), meta::listing(&tree));

    // A file alone, with both flags, with neither (kubo's CID, the default mode, the time of
    // the export) and with the times only (the default mode).
    let script = tree.join("run.sh");
    let want = fs::metadata(&script).unwrap().modified().unwrap();
    let add_export = |flags: &[&str], name: &str| {
        let mut args = vec!["add"];
        args.extend(flags);
        args.push(s(&script));
        let root = json(&data, &args)["root"].as_str().unwrap().to_owned();
        let out = temp.path().join(name);
        json(&data, &["export", &root, "-o", s(&out)]);
        let got = fs::metadata(&out).unwrap();
        let mode = got.permissions().mode() & 0o7777;
        (root, mode, got.modified().unwrap() == want)
    };
    let (both, mode, same_time) = add_export(&["--preserve-mode", "--preserve-mtime"], "both");
    assert_eq!((mode, same_time), (0o755, true));
    let (plain, mode, same_time) = add_export(&[], "plain");
    assert_eq!((mode, same_time), (0o644, false));
    let (times, mode, same_time) = add_export(&["--preserve-mtime"], "times");
    assert_eq!((mode, same_time), (0o644, true));
    assert!(both != plain && times != plain && times != both);
}

#[test]
fn get_restores_modes_and_mtimes() {
    let temp = tempfile::tempdir().unwrap();
    let tree = temp.path().join("tree");
    let _tree = meta::make(&tree);
    // 2.5 MB in 256 KiB chunks: a file that `get` writes as its blocks come.
    let big = tree.join("sub/big");
    let server = Server::start_with(
        &temp.path().join("server"),
        &[&tree, &big],
        &["--preserve-mode", "--preserve-mtime"],
    );
    let client = temp.path().join("client");
    let out = temp.path().join("out");
    let _out = meta::Writable(out.clone());
    let got = fetch(&client, &server.root(0), &server, &out);
    assert_eq!(got["kind"], "directory", "{got}");
    assert_eq!(meta::listing(&out), meta::listing(&tree));

    let out = temp.path().join("big");
    let got = fetch(&client, &server.root(1), &server, &out);
    assert_eq!(got["kind"], "file", "{got}");
    let (want, got) = (fs::metadata(&big).unwrap(), fs::metadata(&out).unwrap());
    assert_eq!(got.permissions().mode() & 0o7777, 0o640);
    assert_eq!(got.modified().unwrap(), want.modified().unwrap());
    assert_eq!(fs::read(&out).unwrap(), fs::read(&big).unwrap());
}
