//! `serve` and `get` between two of our processes on 127.0.0.1: files and directories come
//! back identical, bad input fails with one line, and `serve` stops cleanly on SIGTERM with
//! its store flushed. Five processes find a provider through the DHT (kad) alone, and
//! `serve --metrics` answers prometheus scrapes during the transfer.

mod common;

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use common::{
    EMPTY_FILE, Killed, Server, TIME_LIMIT, command, fetch, fetch_from, json, nobody_at, ok_json,
    pseudo_random, run, s, sample, scrape, temps,
};

/// Writes `data` to `dir/file`, and each of `files` (a path in the tree and its bytes) under
/// `dir/tree`; returns the file's path and the tree's.
fn file_and_tree(dir: &Path, data: &[u8], files: &[(&str, &[u8])]) -> (PathBuf, PathBuf) {
    let (file, tree) = (dir.join("file"), dir.join("tree"));
    fs::write(&file, data).unwrap();
    for (path, bytes) in files {
        let path = tree.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }
    (file, tree)
}

/// [`fetch`] that must fail, as [`get_fails`]: the error line.
fn fetch_fails(data_dir: &Path, cid: &str, server: &Server, out: &Path) -> String {
    get_fails(
        data_dir,
        &["get", cid, "--peer", &server.address(), "-o", s(out)],
    )
}

/// Runs a command that must fail: one line on stderr, nothing on stdout. The line.
fn get_fails(data_dir: &Path, args: &[&str]) -> String {
    let output = run(data_dir, args);
    assert!(!output.status.success(), "{args:?} succeeded");
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    stderr
}

#[test]
fn get_fetches_what_serve_serves() {
    let temp = tempfile::tempdir().unwrap();
    // 12 chunks and their parent.
    let data = pseudo_random(3_000_000, 0x1234_5678_9abc_def1);
    let sub_b = pseudo_random(600_000, 99);
    let (file, tree) = file_and_tree(temp.path(), &data, &[("a", b"alpha"), ("sub/b", &sub_b)]);
    let server_dir = temp.path().join("server");
    let server = Server::start(&server_dir, &[&file, &tree]);
    let address = server.address();
    assert!(address.starts_with("/ip4/127.0.0.1/tcp/"), "{address}");
    assert!(address.contains("/p2p/"), "{address}");
    assert_eq!(server.info["roots"][0]["path"], s(&file));
    let (file_root, tree_root) = (server.root(0), server.root(1));

    let client_dir = temp.path().join("client");
    let out = temp.path().join("out");
    let got = fetch(&client_dir, &file_root, &server, &out);
    assert_eq!(fs::read(&out).unwrap(), data);
    assert_eq!(got["bytes"], 3_000_000);
    assert_eq!(got["fetched_blocks"], 13);
    assert_eq!(got["peers"][0], server.info["peer_id"]);

    let out_tree = temp.path().join("out-tree");
    let got = fetch(&client_dir, &tree_root, &server, &out_tree);
    assert_eq!(got["kind"], "directory");
    assert_eq!(fs::read(out_tree.join("a")).unwrap(), b"alpha");
    assert_eq!(
        fs::read(out_tree.join("sub/b")).unwrap(),
        pseudo_random(600_000, 99)
    );

    // Everything is local now: no peer needed.
    let again = temp.path().join("again");
    let got = json(&client_dir, &["get", &file_root, "-o", s(&again)]);
    assert_eq!(got["fetched_blocks"], 0);

    // A CID the server lacks: one error line after the stall timeout, no output.
    let missing = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy";
    let nothing = temp.path().join("nothing");
    let error = get_fails(
        &client_dir,
        &[
            "get",
            missing,
            "--peer",
            &address,
            "--timeout",
            "2",
            "-o",
            s(&nothing),
            "--json",
        ],
    );
    assert!(error.contains("no block for 2 s"), "{error}");
    assert!(!nothing.exists());

    // SIGTERM: a clean exit, and the store is closed and durable.
    let status = server.terminate();
    assert!(status.success(), "serve exited with {status}");
    let output = run(&server_dir, &["block", "get", &file_root, "--json"]);
    assert!(output.status.success());
    let leftovers = temps(temp.path());
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// `serve` listens on TCP and QUIC by default (TCP first); `get` fetches a file and a
/// directory over QUIC alone, and from a `serve` that listens on QUIC only.
#[test]
fn get_fetches_over_quic() {
    let temp = tempfile::tempdir().unwrap();
    let data = pseudo_random(3_000_000, 0x9e37_79b9);
    let (file, tree) = file_and_tree(
        temp.path(),
        &data,
        &[("sub/b", &pseudo_random(600_000, 98))],
    );
    let server = Server::start(&temp.path().join("server"), &[&file, &tree]);
    let addresses: Vec<&str> = server.info["multiaddrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|address| address.as_str().unwrap())
        .collect();
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    assert!(
        addresses[0].starts_with("/ip4/127.0.0.1/tcp/"),
        "{addresses:?}"
    );
    assert!(
        addresses[1].starts_with("/ip4/127.0.0.1/udp/") && addresses[1].contains("/quic-v1/p2p/"),
        "{addresses:?}"
    );
    let client = temp.path().join("client");
    let out = temp.path().join("out");
    let got = fetch_from(&client, &server.root(0), addresses[1], &out);
    assert_eq!(fs::read(&out).unwrap(), data);
    assert_eq!(got["fetched_blocks"], 13);
    let out_tree = temp.path().join("out-tree");
    let got = fetch_from(&client, &server.root(1), addresses[1], &out_tree);
    assert_eq!(got["kind"], "directory");
    assert_eq!(
        fs::read(out_tree.join("sub/b")).unwrap(),
        pseudo_random(600_000, 98)
    );

    // A server on QUIC alone; the file comes to a fresh store.
    let quic_only = Server::start_with(
        &temp.path().join("quic-server"),
        &[&file],
        &["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"],
    );
    let address = quic_only.address();
    assert_eq!(quic_only.info["multiaddrs"].as_array().unwrap().len(), 1);
    assert!(address.contains("/quic-v1/"), "{address}");
    let out = temp.path().join("out-quic-only");
    let got = fetch_from(
        &temp.path().join("client-2"),
        &quic_only.root(0),
        &address,
        &out,
    );
    assert_eq!(fs::read(&out).unwrap(), data);
    assert_eq!(got["fetched_blocks"], 13);
}

/// Runs `bitswap-node --data-dir DIR ARGS...` on a terminal of its own (`script` gives it a
/// pseudo-terminal, stderr included); what the terminal showed.
#[cfg(target_os = "linux")]
fn on_a_terminal(data_dir: &Path, args: &[&str]) -> String {
    let mut line = format!("{} --data-dir {}", common::bin(), s(data_dir));
    for arg in args {
        assert!(!arg.contains([' ', '\'', '"', '\\', '$']), "{arg:?}");
        line.push(' ');
        line.push_str(arg);
    }
    let mut script = std::process::Command::new("script");
    script
        .args(["--quiet", "--return", "--command", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output =
        Killed(script.spawn().expect("util-linux `script` runs")).output(&line, TIME_LIMIT);
    let shown = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{line}: {shown}");
    shown
}

/// `get`'s progress bar shows bytes, the rate and the blocks, for a directory as for a file,
/// on a terminal only: not with `--json`, not when stderr is a pipe or a file.
#[cfg(target_os = "linux")]
#[test]
fn get_shows_progress_on_a_terminal_only() {
    let temp = tempfile::tempdir().unwrap();
    let (a, sub_b) = (pseudo_random(700_000, 1), pseudo_random(900_000, 2));
    let (file, tree) = file_and_tree(
        temp.path(),
        &pseudo_random(2_000_000, 0x5151),
        &[("a", &a), ("sub/b", &sub_b)],
    );
    let server = Server::start(&temp.path().join("server"), &[&file, &tree]);
    let address = server.address();
    for (i, root) in [server.root(0), server.root(1)].iter().enumerate() {
        let client = temp.path().join(format!("client-{i}"));
        let out = temp.path().join(format!("shown-{i}"));
        let shown = on_a_terminal(&client, &["get", root, "--peer", &address, "-o", s(&out)]);
        // Bytes of the total (indicatif's binary units), a rate, and blocks.
        assert!(shown.contains(" MiB/"), "{shown:?}");
        assert!(shown.contains("/s"), "{shown:?}");
        // "N blocks" in the bar, besides the final line's "N blocks fetched".
        let in_bar = shown
            .split(" blocks ")
            .skip(1)
            .any(|after| !after.starts_with("fetched"));
        assert!(in_bar, "{shown:?}");
        assert!(shown.contains("wrote"), "{shown:?}");

        // --json on a terminal: the object only.
        let client = temp.path().join(format!("json-{i}"));
        let out = temp.path().join(format!("json-out-{i}"));
        let shown = on_a_terminal(
            &client,
            &["get", root, "--peer", &address, "-o", s(&out), "--json"],
        );
        assert!(!shown.contains("blocks "), "{shown:?}");
        assert!(shown.trim_start().starts_with('{'), "{shown:?}");

        // stderr a pipe: nothing on it.
        let client = temp.path().join(format!("piped-{i}"));
        let out = temp.path().join(format!("piped-out-{i}"));
        let output = run(&client, &["get", root, "--peer", &address, "-o", s(&out)]);
        assert!(output.status.success());
        assert!(
            output.stderr.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A CARv1 holding the one block `data` with the CIDv1 of `codec`: its bytes and the CID.
fn one_block_car(codec: u64, data: &[u8]) -> (Vec<u8>, cid::Cid) {
    use multihash_codetable::{Code, MultihashDigest as _};
    let cid = cid::Cid::new_v1(codec, Code::Sha2_256.digest(data));
    let cid_bytes = cid.to_bytes();
    // dag-cbor {"roots": [CID], "version": 1}: a CID is tag 42 over its bytes after a 0.
    let mut header = vec![0xa2, 0x65];
    header.extend(b"roots");
    header.extend([
        0x81,
        0xd8,
        0x2a,
        0x58,
        u8::try_from(cid_bytes.len() + 1).unwrap(),
        0,
    ]);
    header.extend(&cid_bytes);
    header.push(0x67);
    header.extend(b"version");
    header.push(0x01);
    let mut car = Vec::new();
    for section in [header, [cid_bytes, data.to_vec()].concat()] {
        let mut length = unsigned_varint::encode::usize_buffer();
        car.extend(unsigned_varint::encode::usize(section.len(), &mut length));
        car.extend(section);
    }
    (car, cid)
}

/// `get` of a root it cannot write out fails at once with the codec's name: a dag-cbor root
/// a peer has is not fetched; a dag-json root fails before any dial; a dag-pb root that is
/// not UnixFS fails once that block came. `block get` still reads the dag-cbor block.
#[test]
fn get_refuses_a_root_it_cannot_write_out() {
    let temp = tempfile::tempdir().unwrap();
    // {"hello": "world"}
    let cbor = b"\xa1\x65hello\x65world";
    let (car, cid) = one_block_car(0x71, cbor);
    let car_file = temp.path().join("block.car");
    fs::write(&car_file, car).unwrap();
    let server_dir = temp.path().join("server");
    json(&server_dir, &["car", "import", s(&car_file)]);
    // A dag-pb node with one link, to a raw block, and no UnixFS data.
    let leaf = temp.path().join("leaf");
    fs::write(&leaf, b"a raw leaf").unwrap();
    let leaf = json(&server_dir, &["block", "put", s(&leaf)]);
    let leaf = leaf["cid"].as_str().unwrap().to_owned();
    let leaf_bytes = leaf.parse::<cid::Cid>().unwrap().to_bytes();
    let link = [
        &[0x0a, u8::try_from(leaf_bytes.len()).unwrap()][..],
        &leaf_bytes,
    ]
    .concat();
    let node = [&[0x12, u8::try_from(link.len()).unwrap()][..], &link].concat();
    let not_unixfs = temp.path().join("node.pb");
    fs::write(&not_unixfs, node).unwrap();
    let pb = json(
        &server_dir,
        &["block", "put", "--codec", "dag-pb", s(&not_unixfs)],
    );
    let pb = pb["cid"].as_str().unwrap().to_owned();
    let server = Server::start(&server_dir, &[]);
    let client = temp.path().join("client");
    let cid = cid.to_string();

    let out = temp.path().join("out");
    let error = fetch_fails(&client, &cid, &server, &out);
    assert!(error.contains("dag-cbor"), "{error}");
    assert!(!out.exists());
    // Nothing was fetched: the client's store lacks the block.
    let output = run(&client, &["block", "get", &cid]);
    assert!(!output.status.success());

    // dag-json: refused before any dial (nobody listens there).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dag_json = "baguqeeraiqjw7i2vwntyuekgvulpp2det2kpwt6cd7tx5ayqybqpmhfk76fa";
    let start = Instant::now();
    let error = get_fails(&client, &["get", dag_json, "--peer", &nobody_at(port)]);
    assert!(error.contains("dag-json"), "{error}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // dag-pb, but no UnixFS data in it: refused once the root came, before its link.
    let error = fetch_fails(&client, &pb, &server, &out);
    assert!(error.contains("UnixFS"), "{error}");
    assert!(!out.exists());
    let output = run(&client, &["block", "get", &leaf]);
    assert!(!output.status.success(), "the link was fetched");

    // The block itself is there to read.
    assert!(server.terminate().success());
    let block = temp.path().join("block");
    json(&server_dir, &["block", "get", &cid, "-o", s(&block)]);
    assert_eq!(fs::read(&block).unwrap(), cbor);
}

/// A file whose chunks repeat (runs of zeros) is one block per distinct chunk on the wire,
/// written at every place it holds in the file, as the blocks arrive.
#[test]
fn get_writes_repeated_chunks_at_every_place() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("zeros");
    let mut data = vec![0u8; 2 << 20];
    data.extend(pseudo_random(300_000, 7));
    data.extend(vec![0u8; 1 << 20]);
    fs::write(&file, &data).unwrap();
    let server = Server::start(&temp.path().join("server"), &[&file]);
    let out = temp.path().join("out");
    let got = fetch(&temp.path().join("client"), &server.root(0), &server, &out);
    assert_eq!(fs::read(&out).unwrap(), data);
    // The root, the zero chunk, two chunks with random bytes and the short last chunk; 14
    // chunks and the root written.
    assert_eq!(got["fetched_blocks"], 1 + 1 + 2 + 1);
    assert_eq!(got["blocks"], 15);
}

/// A crafted DAG whose root links 1,000 times to X, and X 1,000 times to a one-byte leaf: a
/// million places from three blocks, more than the file assembler holds for them. `get` still
/// writes the 1 MB file, exported from the store once the three blocks are there.
#[test]
fn get_writes_a_dag_of_n_squared_places_from_the_store() {
    use bitswap::{Blockstore as _, MemoryBlockstore};
    use bytes::Bytes;
    use futures::executor::block_on;
    use ipfs_blockstore::multicodec::RAW;
    use ipfs_formats::unixfs;

    const N: usize = 1_000;
    let y = unixfs::v1_block(RAW, Bytes::from_static(b"y")).unwrap();
    let x = common::dags::repeat(&y, 1, N);
    let root = common::dags::repeat(&x, N as u64, N);
    let store = MemoryBlockstore::new();
    block_on(store.put_many(vec![y, x, root.clone()])).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let car = temp.path().join("bomb.car");
    let mut out = fs::File::create(&car).unwrap();
    block_on(ipfs_formats::car::export(
        &store,
        &[*root.cid()],
        &mut out,
        &car,
    ))
    .unwrap();
    drop(out);

    let server_dir = temp.path().join("server");
    ok_json(
        &["car", "import"],
        &run(&server_dir, &["--json", "car", "import", s(&car)]),
    );
    let server = Server::start(&server_dir, &[]);
    let out = temp.path().join("out");
    let got = fetch(
        &temp.path().join("client"),
        &root.cid().to_string(),
        &server,
        &out,
    );
    assert_eq!(got["fetched_blocks"], 3, "{got}");
    assert_eq!(got["bytes"], N * N, "{got}");
    let data = fs::read(&out).unwrap();
    assert_eq!(data.len(), N * N);
    assert!(data.iter().all(|&b| b == b'y'));
    assert!(
        temps(temp.path()).is_empty(),
        "a temporary file was left behind"
    );
}

#[test]
fn get_from_an_unreachable_peer_fails_fast() {
    let temp = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = nobody_at(port);
    let out = temp.path().join("out");
    // As the peer, then as the only bootstrap peer (the DHT): unreachable either way.
    for flag in ["--peer", "--bootstrap"] {
        let start = Instant::now();
        let error = get_fails(
            &temp.path().join("node"),
            &["get", EMPTY_FILE, flag, &address, "-o", s(&out)],
        );
        assert!(error.contains("cannot reach any peer"), "{flag}: {error}");
        assert!(start.elapsed() < Duration::from_secs(30), "{flag}");
        assert!(!out.exists(), "{flag}");
    }
    // No peer at all, and the block is not local.
    let error = get_fails(
        &temp.path().join("node"),
        &["get", EMPTY_FILE, "-o", s(&out)],
    );
    assert!(error.contains("no --peer or --bootstrap"), "{error}");
}

/// Five processes on 127.0.0.1, each knowing only the one before it: A (bootstrap), B, C,
/// D (serves the file), and the getter, which knows only A. The file can only be found
/// through the DHT; it arrives verified, and D's metrics count the blocks sent.
#[test]
fn get_finds_a_provider_through_the_dht() {
    let temp = tempfile::tempdir().unwrap();
    let dir = |name: &str| temp.path().join(name);
    let file = dir("file");
    // 4 chunks and their parent.
    let data = pseudo_random(1_000_000, 0x0dd_ba11);
    fs::write(&file, &data).unwrap();

    let a = Server::start_with(&dir("a"), &[], &["--metrics", "127.0.0.1:0"]);
    let b = Server::start_with(&dir("b"), &[], &["--bootstrap", &a.address()]);
    let c = Server::start_with(&dir("c"), &[], &["--bootstrap", &b.address()]);
    let d = Server::start_with(
        &dir("d"),
        &[&file],
        &["--bootstrap", &c.address(), "--metrics", "127.0.0.1:0"],
    );
    let root = d.root(0);
    // D prints its line once its root is provided: A, which D knew nothing of, was told
    // (it may read the message a moment after D sent it).
    let add_provider = r#"libp2p_kad_inbound_requests_total{request="AddProvider"}"#;
    let start = Instant::now();
    loop {
        let a_metrics = scrape(a.metrics());
        if sample(&a_metrics, add_provider).is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{a_metrics}");
        thread::sleep(Duration::from_millis(50));
    }
    let metrics = d.metrics();
    assert!(metrics.starts_with("http://127.0.0.1:"), "{metrics}");
    let blocks_sent = "bitswap_server_blocks_sent_total";
    assert_eq!(sample(&scrape(metrics), blocks_sent), Some(0.0));

    let out = dir("out");
    let args = [
        "get",
        &root,
        "--bootstrap",
        &a.address(),
        "-o",
        s(&out),
        "--timeout",
        "30",
        "--json",
    ];
    let mut getter = Killed(command(&dir("getter"), &args).spawn().unwrap());
    // Scrape while the transfer runs, until the getter exits.
    let start = Instant::now();
    let mut scrapes = 0;
    while getter.0.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < TIME_LIMIT,
            "get ran longer than {TIME_LIMIT:?}"
        );
        let body = scrape(metrics);
        assert!(sample(&body, blocks_sent).is_some(), "{body}");
        scrapes += 1;
        thread::sleep(Duration::from_millis(50));
    }
    assert!(scrapes > 0);
    let got = ok_json(&args, &getter.output("get", TIME_LIMIT));
    assert_eq!(fs::read(&out).unwrap(), data);
    assert_eq!(got["fetched_blocks"], 5);
    let peers: Vec<&str> = got["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        peers.contains(&d.info["peer_id"].as_str().unwrap()),
        "{peers:?}"
    );
    // D was named by a provider lookup (the getter also asks every peer it is connected to,
    // and kad's lookups connect it to D; this shows the provider records were found).
    assert_eq!(got["providers"], serde_json::json!([d.info["peer_id"]]));
    // Every block the getter fetched came from D.
    let sent = sample(&scrape(metrics), blocks_sent).unwrap();
    assert!(sent >= 5.0, "{sent}");
    drop((a, b, c));
}
