//! `net-bench swarm --smoke` as a test: a 4 MiB file through every client kind (ours, kubo's
//! get and pin, Helia's) and seed kind (ours, kubo) once, a seed stopped at half time and a
//! late leech. About 13 s in a release build here.
//!
//! Ignored by default (it needs kubo's venv and Helia's `node_modules`, as the interop tests
//! do, see `.ci/test`):
//!
//! ```text
//! cargo test --release --locked -p benches --test swarm_smoke -- --ignored
//! ```

use std::{
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

/// Most time the smoke run may take before it is killed.
const LIMIT: Duration = Duration::from_secs(180);

#[test]
#[ignore = "needs kubo (BITSWAP_INTEROP_PYTHON) and Helia (npm ci); run with --ignored"]
fn swarm_smoke_fetches_with_every_client_and_seed_kind() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_net-bench"))
        .args(["swarm", "--smoke"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("net-bench starts");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("net-bench status") {
            break Some(status);
        }
        if start.elapsed() > LIMIT {
            // By PID. Its children (seeds, kubo and Helia drivers) then see their stdin close
            // and exit.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let status = status.unwrap_or_else(|| panic!("net-bench swarm --smoke took over {LIMIT:?}"));
    assert!(status.success(), "net-bench swarm --smoke: {status}");
}
