//! What the block store tests share: the crash tests' child processes (the test binary runs
//! one of its own tests as a child that writes to a store and prints what it made durable,
//! then SIGKILLs it). Their blocks come from `ipfs_blockstore::testing`.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// A new temporary folder and the path of `name` in it; the folder is removed when the
/// returned guard is dropped.
pub(crate) fn temp_file(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// What a child printed before it died, line by line.
pub(crate) trait Transcript: Default + std::fmt::Debug {
    /// Takes in one line the child printed.
    fn see(&mut self, line: &str);
}

/// Kills and reaps the child when dropped, whatever happened to the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the test `test` of this binary as a child with `envs` and the store at `path` in
/// `path_env`, lets it print `flushed ...` `flushes` times (within 60 s), waits `extra`, and
/// SIGKILLs it. Returns what it printed, up to its death.
pub(crate) fn run_and_kill<P: Transcript>(
    test: &str,
    envs: &[(&str, String)],
    (path_env, path): (&str, &Path),
    flushes: usize,
    extra: Duration,
) -> P {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env(path_env, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines, received) = mpsc::sync_channel(1024);
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut progress = P::default();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < flushes {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = received
            .recv_timeout(left)
            .unwrap_or_else(|error| panic!("child stalled or died ({error}): {progress:?}"));
        if line.starts_with("flushed ") {
            seen += 1;
        }
        progress.see(&line);
    }
    thread::sleep(extra);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);
    // Lines the child wrote before it died are still in the pipe.
    reader.join().unwrap();
    for line in received.try_iter() {
        progress.see(&line);
    }
    progress
}
