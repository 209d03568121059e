//! `net-bench swarm`: clients fetching a 64 MiB file from K seeds, each behind its
//! own shaped link ([`link_shaper`]), with the rates and one-way delays of each [`Case`];
//! our client, kubo's (fetching as `ipfs get` and as `ipfs pin add` do) and Helia's on the
//! same links in the same run, from our seeds and from kubo seeds.
//!
//! - The file is [`FILE_BYTES`] of pseudo-random bytes ([`net::bytes`]) imported with kubo's
//!   default layout (`ipfs add`: CIDv0, dag-pb leaves of 256 KiB, 174 links per node) by
//!   `ipfs-formats`'s UnixFS importer: 256 leaves under 2 inner nodes and a root. kubo seeds
//!   import the same bytes with `AddFile`; a pass whose kubo root differs from ours fails.
//! - Seeds ([`SeedKind`]): ours are child processes (`net-bench swarm-seed SEED BYTES`, see
//!   [`seed`]) holding the whole file in memory, on the node's transport
//!   (`bitswap::capped_yamux_config`) and the default Bitswap configuration, as
//!   `bitswap-node serve` has them; kubo's are the interop tests' driver `kubo_peer.py --add`.
//!   Each listens on 127.0.0.1 behind its own [`link_shaper::Proxy`], which shapes both
//!   directions.
//! - Leeches ([`ClientKind`]): ours runs in the bench process (see `swarm/ours.rs`), walking the
//!   DAG as `get` does; kubo's and Helia's are the interop drivers (`swarm/peers.rs`), told to
//!   dial each seed's link (`/ip4/127.0.0.1/tcp/PROXY/p2p/SEED`) and to download the root
//!   (kubo-pin: to pin it).
//! - Every client kind runs against every seed kind of a case, one pass after the other, each
//!   on fresh seeds and fresh links of the same shape (`swarm/pass.rs`). At half time the
//!   first seed's link can be cut, or its process killed ([`HalfTime`]); with
//!   [`Case::late_leech`] each leech listens behind a link of its own and one more leech joins
//!   at half time, dialling the seeds and the earlier leeches. Half time is when the seeds'
//!   links have carried half of the DAG's bytes (per leech present from the start) down,
//!   duplicates included.
//! - No peer learns another's real address (kubo announces none, Helia listens nowhere, our
//!   nodes' identify hides listen addresses), so nothing is fetched around a link; a row whose
//!   links carried less than the DAG says `links_bypassed`.
//!
//! Reported per leech, pass and run (one JSON line each on stdout, a table
//! `$CARGO_TARGET_DIR/net-bench/swarm.md` and a plot `swarm.svg`; `swarm-smoke.*` for
//! `--smoke`): time to fetch, MB/s and its fraction of the link rates, duplicate bytes, each
//! link's share, our client's messages sent and wants timed out, the longest stall, and issue
//! 19's targets with pass or fail (`swarm/figures.rs` says how each is measured). A fetch that
//! takes longer than [`FETCH_LIMIT`] fails. Every child process is ended by PID when its pass
//! ends, on every path; the work directory (the file, kubo's repos, the drivers' logs) is
//! removed at the end.
//!
//! The figures of each session that ran it are in its commit messages: this bench exists to
//! show the gap to close.
//!
//! Not measured yet: the client's messages per peer, and the seeds' own counters (messages,
//! blocks sent) beside the links' byte counts.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bitswap::{Block, Blockstore, MemoryBlockstore, MemoryBlockstoreError};
use cid::Cid;
use ipfs_formats::unixfs::{self, Layout};

use crate::net::{self, BenchStore};

mod cases;
mod figures;
mod ours;
mod pass;
mod peers;
mod report;

pub use cases::{CASES, Case, Check, ClientKind, HalfTime, SMOKE_CASES, SeedKind, Target};

/// Size of the file fetched: 64 MiB.
pub const FILE_BYTES: usize = 64 << 20;
/// Size of the file of `--smoke`: 4 MiB.
pub const SMOKE_FILE_BYTES: usize = 4 << 20;
/// Seed of the file's bytes.
const FILE_SEED: u64 = 19;
/// A fetch that takes longer is reported as failed.
pub const FETCH_LIMIT: Duration = Duration::from_secs(600);
/// The same, for `--smoke`.
const SMOKE_FETCH_LIMIT: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Runs of each case.
    pub runs: usize,
    /// Run only the cases whose name starts with one of these (all if empty).
    pub cases: Vec<String>,
    /// Run only the client kinds whose [`ClientKind::name`] starts with one of these (all if
    /// empty).
    pub clients: Vec<String>,
    /// Run only the seed kinds whose [`SeedKind::name`] starts with one of these (all if
    /// empty).
    pub seeds: Vec<String>,
    /// Run [`SMOKE_CASES`] on a [`SMOKE_FILE_BYTES`] file instead of [`CASES`].
    pub smoke: bool,
}

impl Options {
    fn selected(&self, filter: &[String], name: &str) -> bool {
        filter.is_empty() || filter.iter().any(|f| name.starts_with(f.as_str()))
    }
}

/// The seed child: `swarm-seed SEED BYTES` imports `BYTES` bytes of the set `SEED` with kubo's
/// layout, listens on 127.0.0.1, prints `PEER MULTIADDR`, and serves until its stdin closes.
pub async fn seed(args: &[String]) {
    let number = |i: usize| -> u64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .expect("swarm-seed SEED BYTES")
    };
    let (set, len) = (number(0), number(1) as usize);
    let mut swarm = net::node_identified(
        BenchStore::Memory(MemoryBlockstore::new()),
        bitswap::Config::default(),
        bitswap::capped_yamux_config,
    );
    let data = net::bytes(len, set);
    unixfs::import_reader(
        swarm.behaviour().bitswap.store().as_ref(),
        &data[..],
        &Layout::default(),
    )
    .await
    .expect("import into memory");
    drop(data);
    let address = net::listen(&mut swarm).await;
    println!("{} {address}", swarm.local_peer_id());
    net::run_until_stdin_closes(swarm).await;
}

/// Runs the cases `options` selects; prints a JSON line per row and writes the table and
/// plot. Returns how many rows failed.
pub async fn run(options: &Options) -> usize {
    let (cases, bytes, limit) = if options.smoke {
        (SMOKE_CASES, SMOKE_FILE_BYTES, SMOKE_FETCH_LIMIT)
    } else {
        (CASES, FILE_BYTES, FETCH_LIMIT)
    };
    let cases: Vec<&Case> = cases
        .iter()
        .filter(|c| options.selected(&options.cases, c.name))
        .collect();
    let work = WorkDir::new();
    let file = match prepare(bytes, limit, &work.0).await {
        Ok(file) => file,
        Err(error) => {
            eprintln!("swarm: {error}");
            return 1;
        }
    };
    let mut rows = Vec::new();
    for case in &cases {
        for run in 0..options.runs {
            let mut case_rows = Vec::new();
            for &seeds in case.seeds {
                if !options.selected(&options.seeds, seeds.name()) {
                    continue;
                }
                for &client in case.clients {
                    if !options.selected(&options.clients, client.name()) {
                        continue;
                    }
                    let pair = figures::Pair {
                        case,
                        client,
                        seeds,
                        run,
                    };
                    eprintln!(
                        "swarm: {} run {run}: {} client, {} seeds",
                        case.name,
                        client.name(),
                        seeds.name()
                    );
                    match pass::run(case, client, seeds, &file).await {
                        Ok(pass) => case_rows.extend(figures::rows(pair, &file, &pass)),
                        Err(error) => case_rows.push(figures::failed(pair, &file, &error)),
                    }
                }
            }
            figures::check_targets(case, &mut case_rows);
            for row in &case_rows {
                println!("{row}");
            }
            rows.extend(case_rows);
        }
    }
    let name = if options.smoke {
        "swarm-smoke"
    } else {
        "swarm"
    };
    report::write(name, &cases, &rows);
    rows.iter().filter(|r| r["failed"] == true).count()
}

/// The file on disk (for kubo seeds) and its DAG's root and size.
async fn prepare(
    bytes: usize,
    limit: Duration,
    work: &std::path::Path,
) -> Result<pass::File, String> {
    let data = net::bytes(bytes, FILE_SEED);
    let path = work.join("file.bin");
    std::fs::write(&path, &data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let counter = Counter::default();
    let root = unixfs::import_reader(&counter, &data[..], &Layout::default())
        .await
        .map_err(|e| format!("import: {e}"))?
        .root;
    Ok(pass::File {
        root,
        bytes,
        dag_bytes: counter.0.load(Ordering::Relaxed),
        set: FILE_SEED,
        path,
        work: work.to_path_buf(),
        limit,
    })
}

/// The bench's work directory under the system's temporary directory, removed when dropped
/// unless `NET_BENCH_SWARM_KEEP` is set (to read the drivers' logs).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("net-bench-swarm-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        Self(dir)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::env::var_os("NET_BENCH_SWARM_KEEP").is_some() {
            eprintln!("swarm: work directory kept: {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A store that keeps nothing and counts the bytes put into it: the DAG's size.
#[derive(Debug, Default)]
struct Counter(AtomicU64);

impl Blockstore for Counter {
    type Error = MemoryBlockstoreError;

    async fn get(&self, _: &Cid) -> Result<Option<Block>, Self::Error> {
        Ok(None)
    }

    async fn has(&self, _: &Cid) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn get_size(&self, _: &Cid) -> Result<Option<usize>, Self::Error> {
        Ok(None)
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), Self::Error> {
        let bytes: usize = blocks.iter().map(|b| b.data().len()).sum();
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn delete(&self, _: &Cid) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}
