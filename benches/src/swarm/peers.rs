//! kubo's and Helia's nodes as child processes, through the interop tests' drivers
//! (`crates/bitswap-node/tests/interop/kubo_peer.py` and `helia/helia_peer.mjs`), which
//! speak JSON lines: a first line with the node's peer id and addresses, then one answer
//! per command (`connect`, `download`).
//!
//! kubo runs on the Python of `BITSWAP_INTEROP_PYTHON` (or `~/.cache/bitswap-rs/venv`), with
//! `TMPDIR` set to the bench's work directory so its repo stays there; Helia on `node`, with
//! the `node_modules` that `.ci/test` installs. Each process's stderr goes to a log file in the
//! work directory. Every wait is bounded; a process is ended by PID on every path:
//! [`PeerProcess::shutdown`] (end of input, then a kill after [`EXIT_LIMIT`]),
//! [`PeerProcess::kill`], or dropping it (a kill).

use std::{
    io::{BufRead, BufReader, Write},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use libp2p::{Multiaddr, PeerId};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::ours::tcp_target;

/// Most time a driver has to exit after its input closes before it is killed.
pub(super) const EXIT_LIMIT: Duration = Duration::from_secs(10);

/// Which driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Implementation {
    /// `kubo_peer.py`.
    Kubo,
    /// `helia/helia_peer.mjs`.
    Helia,
}

impl Implementation {
    fn name(self) -> &'static str {
        match self {
            Self::Kubo => "kubo",
            Self::Helia => "helia",
        }
    }
}

/// The interop tests' directory, from this crate's manifest.
fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/bitswap-node/tests/interop")
}

/// The command that runs `implementation`'s driver, or why it cannot run here.
fn command(implementation: Implementation) -> Result<Command, String> {
    match implementation {
        Implementation::Kubo => {
            let python = std::env::var_os("BITSWAP_INTEROP_PYTHON")
                .map(PathBuf::from)
                .or_else(|| {
                    let home = std::env::var_os("HOME")?;
                    let venv = Path::new(&home).join(".cache/bitswap-rs/venv/bin/python");
                    venv.exists().then_some(venv)
                })
                .ok_or("no kubo: set BITSWAP_INTEROP_PYTHON to the venv's python (see .ci/test)")?;
            let mut command = Command::new(python);
            command.arg(interop_dir().join("kubo_peer.py"));
            Ok(command)
        }
        Implementation::Helia => {
            let dir = interop_dir().join("helia");
            if !dir.join("node_modules").is_dir() {
                return Err(format!(
                    "no Helia: run the npm ci line of .ci/test in {}",
                    dir.display()
                ));
            }
            let mut command = Command::new("node");
            command.arg(dir.join("helia_peer.mjs"));
            Ok(command)
        }
    }
}

/// A running kubo or Helia node.
#[derive(Debug)]
pub(super) struct PeerProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
    /// Its peer id.
    pub(super) peer: PeerId,
    /// Its TCP listening address on 127.0.0.1 (Helia listens nowhere).
    pub(super) address: Option<SocketAddr>,
    /// Its first line.
    pub(super) info: Value,
}

impl PeerProcess {
    /// Starts `implementation`'s driver with `--add` for each of `add`, its logs and temporary
    /// files in `work`, named `name`; waits at most `limit` for its first line.
    pub(super) async fn start(
        implementation: Implementation,
        name: &str,
        add: &[&Path],
        work: &Path,
        limit: Duration,
    ) -> Result<Self, String> {
        let mut command = command(implementation)?;
        for path in add {
            command.arg("--add").arg(path);
        }
        command.arg(match implementation {
            Implementation::Kubo => "--no-announce",
            Implementation::Helia => "--no-listen",
        });
        let log = work.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).map_err(|e| format!("{name} log: {e}"))?;
        let mut child = command
            .env("TMPDIR", work)
            .current_dir(work)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", implementation.name()))?;
        let stdout = child.stdout.take();
        let stdin = child.stdin.take();
        let (send, lines) = mpsc::channel(16);
        if let Some(stdout) = stdout {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if send.blocking_send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let mut process = Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
            log,
            peer: PeerId::random(),
            address: None,
            info: Value::Null,
        };
        process.info = process.next_line(limit).await?;
        process.peer = process.info["peer_id"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("{name}: no peer id in {}", process.info))?;
        // kubo's `listen` (it announces nothing), else the first address it gives.
        let listen = process.info["listen"].as_str().into_iter();
        let announced = process.info["multiaddrs"].as_array().into_iter().flatten();
        process.address = listen
            .chain(announced.filter_map(Value::as_str))
            .filter_map(|a| a.parse::<Multiaddr>().ok())
            .find_map(|a| tcp_target(&a))
            .map(|(address, _)| address);
        Ok(process)
    }

    async fn next_line(&mut self, limit: Duration) -> Result<Value, String> {
        let line = match tokio::time::timeout(limit, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => return Err(format!("{}: exited; {}", self.name, self.log_tail())),
            Err(_) => return Err(format!("{}: no answer within {limit:?}", self.name)),
        };
        serde_json::from_str(&line).map_err(|e| format!("{}: not JSON ({e}): {line}", self.name))
    }

    /// The last lines of its stderr, for errors.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().rev().take(5).collect();
        let tail: Vec<&str> = lines.into_iter().rev().collect();
        format!("log {}: {}", self.log.display(), tail.join(" | "))
    }

    /// Sends `command` and waits at most `limit` for its answer.
    pub(super) async fn command(
        &mut self,
        command: &Value,
        limit: Duration,
    ) -> Result<Value, String> {
        let stdin = self.stdin.as_mut().ok_or("input closed")?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: {e}", self.name))?;
        self.next_line(limit).await
    }

    /// Dials `address` (with `/p2p/`), waiting at most `limit`.
    pub(super) async fn connect(
        &mut self,
        address: &Multiaddr,
        limit: Duration,
    ) -> Result<(), String> {
        let answer = self
            .command(
                &json!({"op": "connect", "addr": address.to_string()}),
                limit,
            )
            .await?;
        if answer["ok"] == true {
            Ok(())
        } else {
            Err(format!("{} cannot dial {address}: {answer}", self.name))
        }
    }

    /// Fetches the file `root` into `out`, in at most `limit`; returns the driver's own
    /// measure of the time it took.
    pub(super) async fn download(
        &mut self,
        root: &str,
        out: &Path,
        limit: Duration,
    ) -> Result<Duration, String> {
        let request =
            json!({"op": "download", "cid": root, "out": out, "timeout": limit.as_secs()});
        let answer = self.command(&request, limit + EXIT_LIMIT).await?;
        self.timed(&answer)
    }

    /// Fetches the DAG under `root` as a recursive pin does (kubo only), in at most `limit`;
    /// returns the driver's own measure of the time it took.
    pub(super) async fn pin(&mut self, root: &str, limit: Duration) -> Result<Duration, String> {
        let request = json!({"op": "pin", "cid": root, "timeout": limit.as_secs()});
        let answer = self.command(&request, limit + EXIT_LIMIT).await?;
        self.timed(&answer)
    }

    /// The time of a `download` or `pin` answer, or its error.
    fn timed(&self, answer: &Value) -> Result<Duration, String> {
        if answer["ok"] == true {
            let seconds = answer["seconds"].as_f64().unwrap_or(f64::NAN);
            Duration::try_from_secs_f64(seconds).map_err(|e| format!("{}: {e}", self.name))
        } else {
            Err(format!(
                "{}: {}; {}",
                self.name,
                answer["error"],
                self.log_tail()
            ))
        }
    }

    /// Kills the process by PID at once (how a seed leaves at half time).
    pub(super) fn kill(mut self) {
        self.end();
    }

    /// Closes its input (the driver then stops its node and exits) and waits at most
    /// [`EXIT_LIMIT`], then kills it by PID.
    pub(super) async fn shutdown(mut self) {
        drop(self.stdin.take());
        let start = Instant::now();
        while start.elapsed() < EXIT_LIMIT {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.end();
    }

    fn end(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.end();
    }
}
