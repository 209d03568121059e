//! What the interop tests share: the real peers' drivers as child processes killed on drop,
//! our own `serve` and `get`, test data and hashes. Built on `tests/common` (taken by each
//! interop suite with `mod common;`).
//!
//! Every child runs with a time limit and is killed when its handle drops, so a failing test
//! leaves no peer behind.

// Each interop suite uses only some of the helpers (and the exchange tests).
#![allow(dead_code, unreachable_pub, unused_macros)]

use std::{
    collections::HashSet,
    ffi::OsStr,
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use bitswap::{BlockPresenceType, Entry, Message, network};
use cid::Cid;
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId, Swarm, noise, swarm::SwarmEvent, tcp};
use multihash_codetable::{Code, MultihashDigest};
use serde_json::Value;

use crate::common::{
    Killed, command, json_for, lines, pseudo_random_file, run_for, s, skipped, write_pseudo_random,
};

/// Bound of one answer from a driver, and of one run of our binary.
pub const TIME_LIMIT: Duration = Duration::from_secs(120);

/// A driver process speaking JSON lines: one line per command on stdin, one answer per line on
/// stdout. Killed when dropped.
pub struct Driver {
    /// What it is, for messages.
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The driver's first line.
    pub info: Value,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // EOF asks for a clean exit; the kill makes sure of it.
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    /// Starts `command` and reads its first line.
    pub fn start(name: &str, command: Command) -> Self {
        Self::start_within(name, command, TIME_LIMIT)
    }

    /// [`start`](Self::start), waiting at most `limit` for the first line (a driver that adds
    /// many files first).
    pub fn start_within(name: &str, mut command: Command, limit: Duration) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
        let lines = lines(child.stdout.take().expect("piped"));
        let stdin = child.stdin.take();
        let mut driver = Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            info: Value::Null,
        };
        driver.info = driver.next_line(limit);
        driver
    }

    fn next_line(&mut self, limit: Duration) -> Value {
        let line = self.lines.recv_timeout(limit).unwrap_or_else(|error| {
            let status = self.child.try_wait();
            panic!(
                "{}: no answer within {limit:?} ({error}; exit: {status:?})",
                self.name
            )
        });
        serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("{}: not JSON ({error}): {line:?}", self.name))
    }

    /// Sends one command and waits for its answer, at most `limit`.
    pub fn command(&mut self, command: &Value, limit: Duration) -> Value {
        let stdin = self.stdin.as_mut().expect("open");
        writeln!(stdin, "{command}").expect("driver stdin");
        stdin.flush().expect("driver stdin");
        self.next_line(limit)
    }

    /// The first multiaddr of the first line (with /p2p/).
    pub fn address(&self) -> String {
        self.info["multiaddrs"][0]
            .as_str()
            .expect("a multiaddr")
            .to_owned()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The peer id of the first line.
    pub fn peer_id(&self) -> String {
        self.info["peer_id"].as_str().expect("a peer id").to_owned()
    }
}

/// Starts `kubo_peer.py` with raw blocks from the files of `raw_dir` and files to add.
pub fn start_kubo(python: &str, raw_dir: Option<&Path>, add: &[&Path]) -> Driver {
    start_kubo_with(python, &[], raw_dir, add)
}

/// [`start_kubo`] with the driver's `flags` too (such as `--quic`).
pub fn start_kubo_with(
    python: &str,
    flags: &[&str],
    raw_dir: Option<&Path>,
    add: &[&Path],
) -> Driver {
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/kubo_peer.py");
    let mut command = Command::new(python);
    command.arg(driver).args(flags);
    if let Some(dir) = raw_dir {
        command.arg("--raw-blocks").arg(dir);
    }
    for path in add {
        command.arg("--add").arg(path);
    }
    let kubo = Driver::start("kubo", command);
    // The wrapper's default identity is RSA-2048: its peer ids are base58 sha2-256 ("Qm").
    assert!(kubo.peer_id().starts_with("Qm"), "{}", kubo.info);
    kubo
}

/// Tells a driver (kubo or Helia) to fetch `cid` into `out`, within `seconds`; panics if it
/// fails.
pub fn driver_download(driver: &mut Driver, cid: &str, out: &Path, seconds: u64) -> f64 {
    let answer = driver.command(
        &serde_json::json!({ "op": "download", "cid": cid, "out": out, "timeout": seconds }),
        Duration::from_secs(seconds + 30),
    );
    assert_eq!(
        answer["ok"], true,
        "{} download of {cid}: {answer}",
        driver.name
    );
    answer["seconds"].as_f64().unwrap_or_default()
}

/// Tells a driver (kubo or Helia) to connect to `address`; panics if it fails.
pub fn driver_connect(driver: &mut Driver, address: &str) {
    let answer = driver.command(
        &serde_json::json!({ "op": "connect", "addr": address }),
        Duration::from_secs(60),
    );
    assert_eq!(
        answer["ok"], true,
        "{} connect to {address}: {answer}",
        driver.name
    );
}

/// Our `serve --json` with `extra` flags on `data_dir`, as a driver (no commands).
pub fn start_serve(data_dir: &Path, extra: &[&str], paths: &[&Path]) -> Driver {
    let mut command = command(data_dir, extra);
    command.args(["serve", "--json"]).args(paths);
    Driver::start("bitswap-node serve", command)
}

/// Runs our binary, bounded by [`TIME_LIMIT`].
pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    run_for(data_dir, args, TIME_LIMIT)
}

/// Runs our binary with `--json`, bounded by [`TIME_LIMIT`]; it must succeed. Its JSON.
pub fn run_json(data_dir: &Path, args: &[&str]) -> Value {
    json_for(data_dir, args, TIME_LIMIT)
}

/// `block put FILE` into `data_dir`; the block's CID.
pub fn block_put(data_dir: &Path, file: &Path) -> String {
    let value = run_json(data_dir, &["block", "put", s(file)]);
    value["cid"].as_str().expect("a cid").to_owned()
}

/// `get CID --peer ADDRESS -o OUT` (with `extra` global flags) into `data_dir`.
pub fn get(data_dir: &Path, extra: &[&str], cid: &str, address: &str, out: &Path) -> Value {
    get_within(data_dir, extra, cid, address, out, 30, TIME_LIMIT)
}

/// [`get`] with `get --timeout STALL_SECONDS`, the run bounded by `limit`.
pub fn get_within(
    data_dir: &Path,
    extra: &[&str],
    cid: &str,
    address: &str,
    out: &Path,
    stall_seconds: u64,
    limit: Duration,
) -> Value {
    let stall = stall_seconds.to_string();
    let mut args = extra.to_vec();
    args.extend([
        "get",
        cid,
        "--peer",
        address,
        "-o",
        s(out),
        "--timeout",
        &stall,
    ]);
    json_for(data_dir, &args, limit)
}

/// The SHA-256 of a file's bytes, as hex.
pub fn sha256(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    Code::Sha2_256
        .digest(&bytes)
        .digest()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts that the trees at `expected` and `got` hold the same directories and the same files
/// with the same bytes (symlinks are not expected).
pub fn assert_same_tree(expected: &Path, got: &Path) {
    fn walk(root: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                let relative = path.strip_prefix(root).unwrap().to_path_buf();
                if path.is_dir() {
                    out.push((relative, None));
                    stack.push(path);
                } else {
                    out.push((relative, Some(fs::read(&path).unwrap())));
                }
            }
        }
        out.sort();
        out
    }
    let (expected_tree, got_tree) = (walk(expected), walk(got));
    assert_eq!(
        expected_tree.len(),
        got_tree.len(),
        "{} and {} hold different numbers of entries",
        expected.display(),
        got.display()
    );
    for (want, have) in expected_tree.iter().zip(&got_tree) {
        assert!(
            want == have,
            "{} and {} differ at {}",
            expected.display(),
            got.display(),
            want.0.display()
        );
    }
}

/// Asserts that two files have the same SHA-256.
pub fn assert_same_hash(expected: &Path, got: &Path) {
    assert_eq!(
        sha256(expected),
        sha256(got),
        "{} and {} differ",
        expected.display(),
        got.display()
    );
}

/// The raw-block test files: 1 KiB, 256 KiB and 2 MiB, in `dir`.
pub fn raw_block_files(dir: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    [("1KiB", 1 << 10), ("256KiB", 256 << 10), ("2MiB", 2 << 20)]
        .into_iter()
        .enumerate()
        .map(|(i, (name, len))| {
            let path = dir.join(name);
            write_pseudo_random(&path, len, 0x5eed_0000 + i as u64);
            path
        })
        .collect()
}

/// The Helia driver's directory (its `node_modules` comes from `npm ci` there).
pub fn helia_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/helia")
}

/// A test with Helia: its Node.js (see [`helia_node`]) and a fresh temporary directory, or
/// `None` when the test is skipped knowingly.
pub fn helia_test(test: &str) -> Option<(String, tempfile::TempDir)> {
    let node = helia_node(test)?;
    Some((node, tempfile::tempdir().unwrap()))
}

/// The `node` to run the Helia driver with, or `None` when `BITSWAP_INTEROP_SKIP=1` says to
/// skip knowingly.
///
/// # Panics
///
/// If the driver's dependencies are not installed (`npm ci` in [`helia_dir`], which `.ci/test`
/// runs) and the skip is not set: a missing peer fails the suite.
pub fn helia_node(test: &str) -> Option<String> {
    if skipped(test) {
        return None;
    }
    let node = std::env::var("BITSWAP_INTEROP_NODE").unwrap_or_else(|_| "node".to_owned());
    assert!(
        helia_dir().join("node_modules/helia/package.json").exists(),
        "the Helia driver's dependencies are missing: run `npm ci` in {} (bash .ci/test does), \
         or set BITSWAP_INTEROP_SKIP=1 to skip the interop tests knowingly",
        helia_dir().display()
    );
    Some(node)
}

/// The importer's layouts (as [`importer_cids`] names them), each with the flags that make our
/// `add` lay files out the same way.
pub const IMPORTER_LAYOUTS: [(&str, &[&str]); 2] = [
    ("v0", &[]),
    ("v1-raw", &["--cid-version", "1", "--raw-leaves"]),
];

/// The importer's root CID for every path, with `layout` (`v0` or `v1-raw`).
pub fn importer_cids(node: &str, layout: &str, paths: &[PathBuf]) -> Value {
    let args = std::iter::once(OsStr::new(layout)).chain(paths.iter().map(|p| p.as_os_str()));
    node_json(node, "unixfs_add.mjs", args)
}

/// Starts kubo, with no blocks of its own, connected to `address`.
pub fn kubo_connected_to(python: &str, address: &str) -> Driver {
    let mut kubo = start_kubo(python, None, &[]);
    driver_connect(&mut kubo, address);
    kubo
}

/// Starts `helia_peer.mjs` with raw blocks from the files of `raw_dir` and files to add.
pub fn start_helia(node: &str, raw_dir: Option<&Path>, add: &[&Path]) -> Driver {
    let mut command = Command::new(node);
    command.arg(helia_dir().join("helia_peer.mjs"));
    if let Some(dir) = raw_dir {
        command.arg("--raw-blocks").arg(dir);
    }
    for path in add {
        command.arg("--add").arg(path);
    }
    Driver::start("helia", command)
}

/// A swarm speaking only Bitswap (1.2.0 first), messages by hand.
pub fn test_peer() -> Swarm<network::Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            bitswap::capped_yamux_config,
        )
        .expect("tcp, noise and yamux")
        .with_behaviour(|_| network::Behaviour::new(network::Config::default()))
        .expect("infallible")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(30)))
        .build()
}

/// Dials a driver's peer and waits for the connection.
pub async fn connect(peer: &mut Swarm<network::Behaviour>, driver: &Driver) -> PeerId {
    let address: Multiaddr = driver.address().parse().unwrap();
    let remote: PeerId = driver.peer_id().parse().unwrap();
    peer.dial(address).unwrap();
    loop {
        match peer.select_next_some().await {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == remote => {
                return remote;
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                panic!("dial {}: {error}", driver.name)
            }
            _ => {}
        }
    }
}

/// The next message from `from`.
///
/// # Panics
///
/// If the connection to `from` closes first (with its cause), or an inbound stream of it fails.
pub async fn next_message(peer: &mut Swarm<network::Behaviour>, from: PeerId) -> Message {
    loop {
        match peer.select_next_some().await {
            SwarmEvent::Behaviour(network::Event::Message { peer, message, .. })
                if peer == from =>
            {
                return message;
            }
            SwarmEvent::Behaviour(network::Event::InboundFailure { peer, error, .. })
                if peer == from =>
            {
                panic!("inbound stream from {peer} failed: {error}");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } if peer_id == from => {
                panic!("connection to {peer_id} closed: {cause:?}");
            }
            _ => {}
        }
    }
}

/// A single-threaded runtime for a test peer.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A raw CIDv1 of `data`.
pub fn raw_cid(data: &[u8]) -> Cid {
    Cid::new_v1(0x55, Code::Sha2_256.digest(data))
}

/// Runs `node SCRIPT ARGS...` (a script of [`helia_dir`]), bounded by [`TIME_LIMIT`]; it must
/// succeed and print one JSON object, which is returned.
pub fn node_json<S: AsRef<OsStr>>(
    node: &str,
    script: &str,
    args: impl IntoIterator<Item = S>,
) -> Value {
    let child = Command::new(node)
        .arg(helia_dir().join(script))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {node}: {error}"));
    let output = Killed(child).output(script, TIME_LIMIT);
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

/// Starts a real peer (kubo or Helia) with raw blocks from the files of `raw_dir` and files to
/// add: [`start_kubo`] or [`start_helia`] with their first argument bound.
pub type StartPeer<'a> = &'a dyn Fn(Option<&Path>, &[&Path]) -> Driver;

/// What starts kubo in the test `test`, or `None` when the test is skipped knowingly.
pub fn kubo(test: &str) -> Option<impl Fn(Option<&Path>, &[&Path]) -> Driver> {
    let python = crate::common::kubo_python(test)?;
    Some(move |raw: Option<&Path>, add: &[&Path]| start_kubo(&python, raw, add))
}

/// What starts Helia in the test `test`, or `None` when the test is skipped knowingly.
pub fn helia(test: &str) -> Option<impl Fn(Option<&Path>, &[&Path]) -> Driver> {
    let node = helia_node(test)?;
    Some(move |raw: Option<&Path>, add: &[&Path]| start_helia(&node, raw, add))
}

/// The exchanges every real peer passes, as tests: raw blocks and a 64 MiB UnixFS file, each
/// way. `$name` names the peer in messages, `$start` is [`kubo`] or [`helia`], `$seeds` seed
/// the file each way, and `$blocks` is the number of blocks of the peer's layout of it.
macro_rules! exchange_tests {
    ($name:literal, $start:path, $seeds:expr, $blocks:literal) => {
        /// Raw blocks: the peer fetches each from our `serve` (blocks put into our store first).
        #[test]
        fn peer_fetches_raw_blocks_from_us() {
            if let Some(start) = $start("peer_fetches_raw_blocks_from_us") {
                crate::support::peer_fetches_raw_blocks_from_us($name, &start);
            }
        }

        /// Raw blocks: our `get` fetches each from the peer (blocks in its store at start).
        #[test]
        fn we_fetch_raw_blocks() {
            if let Some(start) = $start("we_fetch_raw_blocks") {
                crate::support::we_fetch_raw_blocks(&start);
            }
        }

        /// A 64 MiB UnixFS file: the peer fetches it from our `serve`, which added it.
        #[test]
        fn peer_fetches_64_mib_file_from_us() {
            if let Some(start) = $start("peer_fetches_64_mib_file_from_us") {
                crate::support::peer_fetches_64_mib_file_from_us($name, $seeds.0, &start);
            }
        }

        /// A 64 MiB UnixFS file: our `get` fetches it from the peer, which added it.
        #[test]
        fn we_fetch_64_mib_file() {
            if let Some(start) = $start("we_fetch_64_mib_file") {
                crate::support::we_fetch_64_mib_file($name, $seeds.1, $blocks, &start);
            }
        }
    };
}

/// Raw blocks: the peer `name` fetches each from our `serve` (blocks put into our store first).
pub fn peer_fetches_raw_blocks_from_us(name: &str, start: StartPeer<'_>) {
    let temp = tempfile::tempdir().unwrap();
    let files = raw_block_files(&temp.path().join("blocks"));
    let ours = temp.path().join("node");
    let cids: Vec<String> = files.iter().map(|file| block_put(&ours, file)).collect();
    let serve = start_serve(&ours, &[], &[]);
    let mut peer = start(None, &[]);
    driver_connect(&mut peer, &serve.address());
    for (file, cid) in files.iter().zip(&cids) {
        let out = temp.path().join(format!("peer-{cid}"));
        let seconds = driver_download(&mut peer, cid, &out, 60);
        assert_same_hash(file, &out);
        eprintln!(
            "{name} fetched {} from us in {seconds:.2} s",
            file.display()
        );
    }
}

/// Raw blocks: our `get` fetches each from the peer (blocks in its store at start), and our
/// store then holds the same block (the CID is the hash of the bytes too).
pub fn we_fetch_raw_blocks(start: StartPeer<'_>) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("blocks");
    let files = raw_block_files(&dir);
    let peer = start(Some(&dir), &[]);
    let ours = temp.path().join("node");
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let cid = peer.info["raw"][name].as_str().expect("a raw CID");
        let out = temp.path().join(format!("ours-{name}"));
        let got = get(&ours, &[], cid, &peer.address(), &out);
        assert_eq!(got["fetched_blocks"], 1, "{got}");
        assert_same_hash(file, &out);
        let block = temp.path().join(format!("block-{name}"));
        let output = run(&ours, &["block", "get", cid, "-o", block.to_str().unwrap()]);
        assert!(output.status.success());
        assert_same_hash(file, &block);
    }
}

/// A 64 MiB UnixFS file of pseudo-random bytes from `seed`: the peer `name` fetches it from
/// our `serve`, which added it (kubo's layout).
pub fn peer_fetches_64_mib_file_from_us(name: &str, seed: u64, start: StartPeer<'_>) {
    let temp = tempfile::tempdir().unwrap();
    let file = pseudo_random_file(temp.path(), 64 << 20, seed);
    let serve = start_serve(&temp.path().join("node"), &[], &[&file]);
    let root = serve.info["roots"][0]["cid"].as_str().unwrap().to_owned();
    let mut peer = start(None, &[]);
    driver_connect(&mut peer, &serve.address());
    let out = temp.path().join("out");
    let seconds = driver_download(&mut peer, &root, &out, 120);
    assert_same_hash(&file, &out);
    eprintln!("{name} fetched 64 MiB from us in {seconds:.2} s");
}

/// A 64 MiB UnixFS file of pseudo-random bytes from `seed`: our `get` fetches it from the peer
/// `name`, which added it in `blocks` blocks (its layout).
pub fn we_fetch_64_mib_file(name: &str, seed: u64, blocks: u64, start: StartPeer<'_>) {
    let temp = tempfile::tempdir().unwrap();
    let file = pseudo_random_file(temp.path(), 64 << 20, seed);
    let peer = start(None, &[&file]);
    let root = peer.info["added"][file.to_str().unwrap()]
        .as_str()
        .expect("a root CID")
        .to_owned();
    let out = temp.path().join("out");
    let got = get(&temp.path().join("node"), &[], &root, &peer.address(), &out);
    assert_eq!(got["fetched_blocks"], blocks, "{got}");
    assert_same_hash(&file, &out);
    eprintln!("we fetched 64 MiB from {name}: {got}");
}

/// Asks the peer `name`, from a test peer and with sendDontHave, want-have for `missing[0]`,
/// want-block for `missing[1]` (blocks it lacks), and want-have for `small` and `medium`
/// (blocks it has); checks that DONT_HAVE comes for both missing blocks, the block itself for
/// `small` (small enough to send instead of HAVE), and HAVE for `medium`.
pub fn assert_answers_want_have(
    name: &str,
    peer: &Driver,
    missing: [Cid; 2],
    small: &[u8],
    medium: Cid,
) {
    let small_cid = raw_cid(small);
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut test_peer = test_peer();
            let remote = connect(&mut test_peer, peer).await;
            let mut want = Message::default();
            want.wantlist.entries = vec![
                Entry::want_have(missing[0], 1),
                Entry::want_block(missing[1], 1),
                Entry::want_have(small_cid, 1),
                Entry::want_have(medium, 1),
            ];
            test_peer.behaviour_mut().send(remote, want).unwrap();
            let (mut dont_have, mut have, mut blocks) =
                (HashSet::new(), HashSet::new(), Vec::new());
            while dont_have.len() < 2 || have.is_empty() || blocks.is_empty() {
                let message = next_message(&mut test_peer, remote).await;
                for presence in message.presences {
                    match presence.presence {
                        BlockPresenceType::DontHave => dont_have.insert(presence.cid),
                        BlockPresenceType::Have => have.insert(presence.cid),
                    };
                }
                blocks.extend(message.blocks);
                eprintln!(
                    "DONT_HAVE {dont_have:?}, HAVE {have:?}, {} block(s)",
                    blocks.len()
                );
            }
            assert_eq!(dont_have, HashSet::from(missing));
            assert_eq!(have, HashSet::from([medium]));
            assert_eq!(blocks.len(), 1);
            assert_eq!(*blocks[0].cid(), small_cid);
            assert_eq!(blocks[0].data().as_ref(), small);
        })
        .await
        .unwrap_or_else(|_| panic!("{name} answered within 60 s"));
    });
}
