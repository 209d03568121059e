//! Bad input and bad luck, through the real binary: a server killed mid-transfer, a full disk
//! (writes failing with `EFBIG` under `ulimit -f`), a damaged store, a peer that accepts TCP
//! and says nothing. Each fails with one error line on stderr (no panic report), a non-zero
//! exit, no output at the `-o` path and no temporary file beside it; the store stays usable.
//!
//! Every process is started with `RUST_BACKTRACE=1`, so that a panic would show as a
//! multi-line report, and is killed by the test if it outlives [`TIME_LIMIT`].

mod common;

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use common::{
    EMPTY_FILE, Killed, Server, TIME_LIMIT, bin, command, fetch, json, nobody_at, node_args,
    pseudo_random, run, s, sample, scrape, temps,
};

/// Runs the binary with writes past `limit_kib` KiB failing (`EFBIG`): `ulimit -f` with
/// SIGXFSZ ignored, which `exec` keeps, so the write fails instead of killing the process.
fn run_with_file_limit(data_dir: &Path, limit_kib: u64, args: &[&str]) -> Output {
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {limit_kib} && exec \"$0\" \"$@\""
        ))
        .arg(bin());
    let child = node_args(bash, data_dir, args).spawn().unwrap();
    Killed(child).output(&format!("ulimit -f {limit_kib}: {args:?}"), TIME_LIMIT)
}

/// The root CID of `add FILE` into `data_dir`.
fn add(data_dir: &Path, file: &Path) -> String {
    json(data_dir, &["add", s(file)])["root"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A failure as the project wants it: non-zero exit, nothing on stdout, exactly one line on
/// stderr, `error: ...`, no panic report. Returns the line.
fn one_error_line(what: &str, output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{what} succeeded: {stderr}");
    assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "{what}: stdout {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert_eq!(stderr.lines().count(), 1, "{what}: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{what}: {stderr:?}");
    for report in ["stack backtrace", "RUST_BACKTRACE", "thread '"] {
        assert!(!stderr.contains(report), "{what}: {stderr:?}");
    }
    stderr
}

/// Nothing at `path`, and no temporary entry of the binary beside it.
fn nothing_left_at(path: &Path) {
    assert!(
        fs::symlink_metadata(path).is_err(),
        "{} exists",
        path.display()
    );
    let temps = temps(path.parent().unwrap());
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
}

/// Runs each of `commands` on `data_dir`: each fails with one line holding `expected`, and
/// leaves nothing at `out`.
fn each_fails(data_dir: &Path, commands: &[&[&str]], expected: &str, out: &Path) {
    for args in commands {
        let error = one_error_line(&format!("{args:?}"), &run(data_dir, args));
        assert!(error.contains(expected), "{args:?}: {error}");
        nothing_left_at(out);
    }
}

/// Cuts the file at `path` to `len` bytes.
fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Rewrites the file at `path` with its bytes changed by `change`.
fn damage(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    change(&mut bytes);
    fs::write(path, &bytes).unwrap();
}

/// `bitswap_server_blocks_sent_total`, from the metrics endpoint of `server`.
fn blocks_sent(server: &Server) -> f64 {
    let name = "bitswap_server_blocks_sent_total";
    let body = scrape(server.metrics());
    sample(&body, name).unwrap_or_else(|| panic!("no blocks_sent in {body}"))
}

/// Reads an unsigned LEB128 varint at `*at`.
fn varint(bytes: &[u8], at: &mut usize) -> usize {
    let mut value = 0usize;
    for shift in (0..).step_by(7) {
        let byte = bytes[*at];
        *at += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    value
}

/// The CARv1 `car` cut to its header and first `blocks` blocks.
fn car_prefix(car: &[u8], blocks: usize) -> Vec<u8> {
    let mut at = 0;
    let header = varint(car, &mut at);
    at += header;
    for _ in 0..blocks {
        let section = varint(car, &mut at);
        at += section;
    }
    car[..at].to_vec()
}

/// A `serve --metrics 127.0.0.1:0 PATHS` process, as every server here is.
fn serve(data_dir: &Path, paths: &[&Path]) -> Server {
    Server::start_with(data_dir, paths, &["--metrics", "127.0.0.1:0"])
}

/// The server dies (SIGKILL) in the middle of a transfer: it holds the root and 6 of the 16
/// leaves, so the transfer cannot end before the kill, which comes once it has sent those 7.
/// The getter fails soon after (not after its 120 s stall timeout), writes nothing, and keeps
/// the blocks it got: a later `get` from a complete server fetches only the rest.
#[test]
fn get_fails_soon_when_the_server_dies_mid_transfer() {
    let temp = tempfile::tempdir().unwrap();
    let dir = |name: &str| temp.path().join(name);
    let file = dir("file");
    // 16 leaves of 256 KiB and their root.
    let data = pseudo_random(4 << 20, 0x5eed_f00d);
    fs::write(&file, &data).unwrap();
    let root = add(&dir("full"), &file);
    let car = dir("dag.car");
    json(&dir("full"), &["car", "export", &root, "-o", s(&car)]);
    let partial = dir("partial.car");
    fs::write(&partial, car_prefix(&fs::read(&car).unwrap(), 7)).unwrap();
    let imported = json(&dir("partial"), &["car", "import", s(&partial)]);
    assert_eq!(imported["blocks"], 7);
    // The root is among them.
    json(&dir("partial"), &["block", "get", &root]);

    let server = serve(&dir("partial"), &[]);
    let out = dir("out");
    let args = [
        "get",
        &root,
        "--peer",
        &server.address(),
        "-o",
        s(&out),
        "--timeout",
        "120",
        "--no-peer-timeout",
        "2",
        "--json",
    ];
    let getter = Killed(command(&dir("client"), &args).spawn().unwrap());
    // The transfer is under way: the server sent what it has.
    let start = Instant::now();
    while blocks_sent(&server) < 7.0 {
        assert!(start.elapsed() < TIME_LIMIT, "the server sent too little");
        thread::sleep(Duration::from_millis(20));
    }
    // Time for the getter to read them (it need not: the count is checked below).
    thread::sleep(Duration::from_millis(200));
    drop(server);
    let killed = Instant::now();
    let output = getter.output("get", TIME_LIMIT);
    let error = one_error_line("get after the kill", &output);
    assert!(killed.elapsed() < Duration::from_secs(30), "{error}");
    assert!(error.contains("disconnected"), "{error}");
    // The root came before any leaf was asked for; a leaf sent just before the kill may be
    // lost with the connection.
    let fetched: u64 = error
        .split(" block(s) fetched")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of blocks fetched: {error}"));
    assert!((1..=7).contains(&fetched), "{error}");
    nothing_left_at(&out);

    // The blocks fetched stayed in the store: only the others are fetched now.
    let server = serve(&dir("full"), &[]);
    let got = fetch(&dir("client"), &root, &server, &out);
    assert_eq!(got["fetched_blocks"], 17 - fetched);
    assert_eq!(fs::read(&out).unwrap(), data);
}

/// A "peer" that accepts TCP connections and never answers: the getter gives up within its
/// no-peer timeout instead of waiting for a handshake forever.
#[test]
fn get_from_a_silent_peer_fails_in_bounded_time() {
    let temp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold connections, saying nothing, until the test ends.
    let (stop, stopped) = mpsc::channel::<()>();
    let holder = thread::spawn(move || {
        listener.set_nonblocking(true).unwrap();
        let mut held = Vec::new();
        while stopped.try_recv().is_err() {
            if let Ok((stream, _)) = listener.accept() {
                held.push(stream);
            }
            thread::sleep(Duration::from_millis(10));
        }
    });
    let address = nobody_at(port);
    let out = temp.path().join("out");
    let start = Instant::now();
    let output = run(
        &temp.path().join("node"),
        &[
            "get",
            EMPTY_FILE,
            "--peer",
            &address,
            "--no-peer-timeout",
            "2",
            "-o",
            s(&out),
        ],
    );
    stop.send(()).unwrap();
    holder.join().unwrap();
    let error = one_error_line("get from a silent peer", &output);
    assert!(start.elapsed() < Duration::from_secs(30), "{error}");
    assert!(
        error.contains("no peer connected within 2 s") || error.contains("cannot reach any peer"),
        "{error}"
    );
    nothing_left_at(&out);
}

/// `add` on a full disk: one error line, and the store keeps what it had and takes more
/// once there is room.
#[test]
fn add_on_a_full_disk_fails_and_the_store_survives() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("node");
    let small = temp.path().join("small");
    fs::write(&small, pseudo_random(300_000, 1)).unwrap();
    let small_root = add(&dir, &small);
    let big = temp.path().join("big");
    let big_data = pseudo_random(6 << 20, 2);
    fs::write(&big, &big_data).unwrap();

    let output = run_with_file_limit(&dir, 1024, &["add", "--json", s(&big)]);
    let error = one_error_line("add on a full disk", &output);
    assert!(error.contains("File too large"), "{error}");

    // What was there is intact, and there is room again.
    let out = temp.path().join("small-out");
    json(&dir, &["export", &small_root, "-o", s(&out)]);
    assert_eq!(fs::read(&out).unwrap(), fs::read(&small).unwrap());
    let big_root = add(&dir, &big);
    let out = temp.path().join("big-out");
    json(&dir, &["export", &big_root, "-o", s(&out)]);
    assert_eq!(fs::read(&out).unwrap(), big_data);
}

/// `get` on a full disk, failing first while storing the fetched blocks, then while writing
/// the output of blocks all in the store: one error line, no output, and a later `get`
/// works.
#[test]
fn get_on_a_full_disk_fails_without_output() {
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("file");
    let data = pseudo_random(6 << 20, 3);
    fs::write(&file, &data).unwrap();
    let server = serve(&temp.path().join("server"), &[&file]);
    let root = server.root(0);
    let client = temp.path().join("client");

    // The fetched blocks do not fit.
    let out = temp.path().join("out");
    let output = run_with_file_limit(
        &client,
        1024,
        &["get", &root, "--peer", &server.address(), "-o", s(&out)],
    );
    let error = one_error_line("get storing on a full disk", &output);
    assert!(error.contains("File too large"), "{error}");
    nothing_left_at(&out);

    // With room: fetched and written.
    fetch(&client, &root, &server, &out);
    assert_eq!(fs::read(&out).unwrap(), data);

    // Every block is in the store now; only the output does not fit.
    let out2 = temp.path().join("out2");
    let output = run_with_file_limit(&client, 1024, &["get", &root, "-o", s(&out2)]);
    let error = one_error_line("get writing on a full disk", &output);
    assert!(error.contains("File too large"), "{error}");
    nothing_left_at(&out2);
    let got = json(&client, &["get", &root, "-o", s(&out2)]);
    assert_eq!(got["fetched_blocks"], 0);
    assert_eq!(fs::read(&out2).unwrap(), data);
}

/// A data directory holding a 3 MB file (12 leaves in the blob file), and the file's root.
fn store_with_a_file(temp: &Path) -> (PathBuf, String) {
    let dir = temp.join("node");
    let file = temp.join("file");
    fs::write(&file, pseudo_random(3_000_000, 4)).unwrap();
    let root = add(&dir, &file);
    (dir, root)
}

/// A store with a file, damaged by `harm` (given its data directory): `serve`, `get`,
/// `export` and `block get` each fail with one line holding `expected`, and leave no output.
fn damaged_store_fails(harm: impl FnOnce(&Path), expected: &str) {
    let temp = tempfile::tempdir().unwrap();
    let (dir, root) = store_with_a_file(temp.path());
    harm(&dir);
    let out = temp.path().join("out");
    let peer = nobody_at(9);
    let commands: [&[&str]; 5] = [
        &["serve"],
        &["get", &root, "-o", s(&out)],
        &["get", &root, "--peer", &peer, "-o", s(&out)],
        &["export", &root, "-o", s(&out)],
        &["block", "get", &root, "-o", s(&out)],
    ];
    each_fails(&dir, &commands, expected, &out);
}

#[test]
fn a_truncated_database_is_named_corrupt() {
    damaged_store_fails(
        |dir| truncate(&dir.join("blocks.redb"), 1000),
        "blocks.redb is corrupt",
    );
}

#[test]
fn an_overwritten_database_is_named_corrupt() {
    // Garbage over everything after the header pages (redb meets it and panics; the store
    // reports that as corruption).
    let overwrite = |dir: &Path| {
        damage(&dir.join("blocks.redb"), |bytes| {
            for byte in bytes.iter_mut().skip(4096).step_by(997) {
                *byte ^= 0x5a;
            }
        });
    };
    damaged_store_fails(overwrite, "blocks.redb is corrupt");
}

#[test]
fn a_truncated_blob_file_is_named() {
    let cut = |dir: &Path| {
        let blobs = dir.join("blocks.redb.blobs");
        let len = fs::metadata(&blobs).unwrap().len();
        assert!(len >= 2_000_000, "the leaves are in the blob file: {len}");
        truncate(&blobs, len / 2);
    };
    damaged_store_fails(cut, "blocks.redb.blobs is truncated");
}

/// A flipped byte in a stored block: found by the hash check on read, never written out.
#[test]
fn a_damaged_block_is_never_written_out() {
    let temp = tempfile::tempdir().unwrap();
    let (dir, root) = store_with_a_file(temp.path());
    damage(&dir.join("blocks.redb.blobs"), |bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
    });
    let out = temp.path().join("out");
    let commands: [&[&str]; 3] = [
        &["export", &root, "-o", s(&out)],
        // No peer to fetch the block again from.
        &["get", &root, "-o", s(&out)],
        &["car", "export", &root, "-o", s(&out)],
    ];
    each_fails(&dir, &commands, "corrupt", &out);

    // `get` from a peer that has the file fetches the damaged block again, which repairs
    // the store.
    let server = serve(&temp.path().join("server"), &[&temp.path().join("file")]);
    let got = fetch(&dir, &root, &server, &out);
    assert_eq!(got["fetched_blocks"], 1);
    let data = fs::read(temp.path().join("file")).unwrap();
    assert_eq!(fs::read(&out).unwrap(), data);
    drop(server);
    let again = temp.path().join("again");
    json(&dir, &["export", &root, "-o", s(&again)]);
    assert_eq!(fs::read(&again).unwrap(), data);

    // One large block alone: `block get` refuses it too.
    let temp = tempfile::tempdir().unwrap();
    let out = temp.path().join("out");
    let dir = temp.path().join("node");
    let input = temp.path().join("block");
    fs::write(&input, pseudo_random(1_500_000, 5)).unwrap();
    let cid = json(&dir, &["block", "put", s(&input)])["cid"]
        .as_str()
        .unwrap()
        .to_owned();
    damage(&dir.join("blocks.redb.blobs"), |bytes| {
        assert!(bytes.len() >= 1_500_000, "the block is in the blob file");
        bytes[700_000] ^= 0xff;
    });
    let commands: [&[&str]; 2] = [
        &["block", "get", &cid, "-o", s(&out)],
        &["block", "get", &cid],
    ];
    each_fails(&dir, &commands, "is corrupt", &out);
}
