//! net-bench's `s3` scenario: Bitswap serving from the S3 store against serving
//! from the redb store, in the same run.
//!
//! A SeaweedFS (`weed mini` on 127.0.0.1, no telemetry, ended by its PID; see
//! [`ipfs_blockstore::seaweedfs`]) holds `--mib` MiB (default 256) of 256 KiB blocks under one
//! prefix of a bucket, and a redb file (in a temporary directory) holds the same blocks. For
//! each store in turn, a server child process (this binary, `s3-serve`) opens the store as
//! `bitswap-node serve` does (the S3 store from an `s3://` URL and the standard AWS
//! environment, its cache large enough for every block) and serves it over loopback
//! TCP+Noise+Yamux; a client in this process, which keeps nothing it receives, fetches every
//! block twice in one session each: **cold** (the server process just started: its cache is
//! empty, so every S3 block is a GET; for redb, the file's pages are in the OS's page cache
//! since the blocks were just written) and then **warm** (the same server again: every S3
//! block is in its cache). Figures: MB/s (block bytes over the time from the request to the
//! last block) and time to first block, as ratios of S3 to redb. Runs alternate which store
//! goes first; the summary takes medians.
//!
//! Then `has` of blocks nobody stored, on an S3 store in this process whose membership filter
//! was built by a listing: lookups per second and the S3 requests they made (the store counts
//! its requests, `S3Blockstore::stats`), with miss confirmations off (no request expected)
//! and at the default rate (20 a second: a few HEADs expected).
//!
//! Targets: warm MB/s >= 0.9x redb, cold MB/s >= 0.5x redb, has of absent blocks >= 100,000
//! a second with no request. `--smoke` moves 16 MiB once and makes 20,000 lookups.

use std::time::{Duration, Instant};

use bitswap::{Block, Blockstore, Control};
use cid::Cid;
use futures::StreamExt as _;
use ipfs_blockstore::{
    RedbBlockstore, RedbConfig, S3Blockstore, S3Config, S3Stats, multicodec::RAW,
    seaweedfs::SeaweedFs,
};
use multihash_codetable::{Code, MultihashDigest as _};
use serde_json::json;

use crate::net::{self, BenchStore, Driver, ServerProcess};

/// Block size of the scenario.
const BLOCK: usize = 256 * 1024;
/// Seed of its blocks.
const SEED: u64 = 18;
/// The bucket and the prefix its blocks are under.
const BUCKET: &str = "bench";
const PREFIX: &str = "blocks";
/// Most time a server may take to start, and a fetch to finish, before the bench fails.
const LIMIT: Duration = Duration::from_secs(300);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Runs (each: both stores, cold then warm).
    pub runs: usize,
    /// MiB served.
    pub mib: usize,
    /// Has-lookups made in each lookup pass.
    pub lookups: usize,
}

impl Options {
    /// The full scenario: 3 runs of `mib` MiB, 200,000 lookups.
    pub fn full(mib: usize, runs: usize) -> Self {
        Self {
            runs,
            mib,
            lookups: 200_000,
        }
    }

    /// The short one for CI: 16 MiB once, 20,000 lookups.
    pub fn smoke() -> Self {
        Self {
            runs: 1,
            mib: 16,
            lookups: 20_000,
        }
    }
}

/// One fetch: the store, cold or warm, MB/s and time to first block.
#[derive(Debug, Clone, Copy)]
struct Fetch {
    store: &'static str,
    warm: bool,
    mb_s: f64,
    first_ms: f64,
}

/// The server child: `s3-serve redb PATH` or `s3-serve s3 URL CACHE_BYTES` (with the AWS
/// environment) serves that store, prints `PEER MULTIADDR`, and runs until its stdin closes.
pub async fn serve(args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let store = match arg(0) {
        "redb" => BenchStore::Redb(
            RedbBlockstore::open(arg(1), RedbConfig::default()).expect("the redb store opens"),
        ),
        "s3" => {
            let cache = arg(2).parse().expect("cache bytes");
            let config = S3Config::default().with_cache_bytes(cache);
            BenchStore::S3(S3Blockstore::from_url(arg(1), &config).expect("the S3 store opens"))
        }
        other => panic!("unknown store {other:?}"),
    };
    let mut swarm = net::node_with(store, bitswap::Config::default());
    let address = net::listen(&mut swarm).await;
    println!("{} {address}", swarm.local_peer_id());
    net::run_until_stdin_closes(swarm).await;
}

/// Runs the scenario; returns whether every target was met.
pub async fn run(options: &Options) -> bool {
    let Some(server) = SeaweedFs::start(BUCKET) else {
        return true;
    };
    let count = (options.mib * 1024 * 1024 / BLOCK) as u64;
    let total = count as usize * BLOCK;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let redb_path = dir.path().join("blocks.redb");
    let cids = fill(&server, &redb_path, count).await;
    let url = format!("s3://{BUCKET}/{PREFIX}");
    let cache = (total as u64 + count * u64::from(S3Blockstore::CACHE_OVERHEAD_BYTES)) * 2;
    let redb_args = vec!["s3-serve".into(), "redb".into(), path_arg(&redb_path)];
    let s3_args = vec!["s3-serve".into(), "s3".into(), url, cache.to_string()];
    let env = server.env();

    let mut fetches = Vec::new();
    for run in 0..options.runs {
        let order = if run % 2 == 0 {
            ["redb", "s3"]
        } else {
            ["s3", "redb"]
        };
        for store in order {
            let args = if store == "redb" {
                &redb_args
            } else {
                &s3_args
            };
            let child = ServerProcess::spawn_with_env(args, &env, LIMIT).expect("server process");
            let (driver, control) = client(&child).await;
            for warm in [false, true] {
                let (first, all) = fetch(&control, &cids).await;
                let fetch = Fetch {
                    store,
                    warm,
                    mb_s: total as f64 / all.as_secs_f64() / 1e6,
                    first_ms: first.as_secs_f64() * 1e3,
                };
                println!(
                    "{}",
                    json!({
                        "scenario": "s3", "run": run, "store": store,
                        "cache": if warm { "warm" } else { "cold" }, "bytes": total,
                        "mb_s": fetch.mb_s, "first_block_ms": fetch.first_ms,
                    })
                );
                fetches.push(fetch);
            }
            drop(driver.stop().await);
            drop(child);
        }
    }

    let mut met = summarize(&fetches, options, total);
    // No confirmations, then the default rate.
    for confirms in [Some(0), None] {
        let (rate, requests) = lookups(&server, options.lookups, confirms, count).await;
        let name = confirms.map_or_else(|| "default".to_owned(), |c| c.to_string());
        println!(
            "{}",
            json!({
                "scenario": "s3", "lookups": options.lookups, "confirms_per_s": name,
                "has_absent_per_s": rate, "requests": requests,
            })
        );
        eprintln!(
            "s3: has of absent blocks, filter built, {name} confirmations/s: {rate:.0}/s, \
             {requests} S3 requests for {} lookups{}",
            options.lookups,
            if confirms == Some(0) {
                " (target >= 100,000/s with none)"
            } else {
                ""
            }
        );
        if confirms == Some(0) {
            met &= rate >= 100_000.0 && requests == 0;
        }
    }
    met
}

/// Puts blocks `0..count` in the bucket and in a redb file at `redb_path` (closed again);
/// returns their CIDs.
async fn fill(server: &SeaweedFs, redb_path: &std::path::Path, count: u64) -> Vec<Cid> {
    let s3 = S3Blockstore::new(
        server.client(4, Duration::from_secs(60)),
        PREFIX,
        &S3Config::default().with_cache_bytes(0),
    );
    let redb = RedbBlockstore::open(redb_path, RedbConfig::default()).expect("redb opens");
    let mut cids = Vec::new();
    for start in (0..count).step_by(64) {
        let blocks: Vec<Block> = net::blocks(SEED, start..count.min(start + 64), BLOCK);
        cids.extend(blocks.iter().map(|b| *b.cid()));
        redb.put_many(blocks.clone()).await.expect("redb put");
        s3.put_many(blocks).await.expect("S3 put");
    }
    redb.flush().await.expect("redb flush");
    redb.close().await.expect("redb closes");
    cids
}

fn path_arg(path: &std::path::Path) -> String {
    path.to_str().expect("a UTF-8 path").to_owned()
}

/// A client that keeps nothing it receives (blocks are verified on arrival), connected to
/// `server` and polled by its own task.
async fn client(server: &ServerProcess) -> (Driver, Control) {
    let mut swarm = net::node_with(BenchStore::Sink, bitswap::Config::default());
    net::connect(&mut swarm, server.peer, server.address.clone()).await;
    let control = swarm.behaviour().bitswap.control();
    (Driver::start(swarm), control)
}

/// Fetches `cids` in one session: the time to the first block and to the last.
async fn fetch(control: &Control, cids: &[Cid]) -> (Duration, Duration) {
    let fetching = async {
        let start = Instant::now();
        let session = control.new_session().await.expect("session");
        let mut blocks = control
            .get_many(cids.to_vec(), Some(session))
            .await
            .expect("query accepted");
        let mut first = None;
        let mut received = 0;
        while let Some(block) = blocks.next().await {
            block.expect("every block");
            first.get_or_insert_with(|| start.elapsed());
            received += 1;
        }
        let all = start.elapsed();
        assert_eq!(received, cids.len(), "every block arrived");
        let _ = control.close_session(session).await;
        (first.unwrap_or(all), all)
    };
    tokio::time::timeout(LIMIT, fetching)
        .await
        .unwrap_or_else(|_| panic!("a fetch took over {LIMIT:?}"))
}

/// Has of `lookups` blocks nobody stored, on a store whose filter a listing built (it must
/// find `stored` blocks) and that confirms `confirms` misses a second (`None`: the default
/// rate): lookups a second and the S3 requests made during them.
async fn lookups(
    server: &SeaweedFs,
    lookups: usize,
    confirms: Option<u32>,
    stored: u64,
) -> (f64, u64) {
    let mut config = S3Config::default();
    if let Some(confirms) = confirms {
        config = config.with_miss_confirms_per_second(confirms);
    }
    let store = S3Blockstore::new(server.client(4, Duration::from_secs(60)), PREFIX, &config);
    let listed = store.refresh_filter().await.expect("a listing");
    assert_eq!(listed as u64, stored, "the listing found every block");
    let absent: Vec<Cid> = (0..lookups as u64)
        .map(|i| Cid::new_v1(RAW, Code::Sha2_256.digest(&i.to_le_bytes())))
        .collect();
    let before = store.stats();
    let start = Instant::now();
    for cid in &absent {
        assert!(!store.has(cid).await.expect("has"), "never stored");
    }
    let elapsed = start.elapsed();
    let requests = |s: S3Stats| s.gets + s.heads + s.puts + s.deletes + s.list_pages;
    let made = requests(store.stats()) - requests(before);
    (lookups as f64 / elapsed.as_secs_f64(), made)
}

/// Prints the medians and ratios (JSON on stdout, a table on stderr); whether the MB/s
/// targets were met.
fn summarize(fetches: &[Fetch], options: &Options, total: usize) -> bool {
    let median = |store: &str, warm: bool, figure: fn(&Fetch) -> f64| {
        let values: Vec<f64> = fetches
            .iter()
            .filter(|f| f.store == store && f.warm == warm)
            .map(figure)
            .collect();
        net::median(&values)
    };
    let mut met = true;
    eprintln!(
        "s3: {} MiB of 256 KiB blocks through Bitswap over loopback, median of {} runs",
        total >> 20,
        options.runs
    );
    eprintln!("  cache  redb MB/s  s3 MB/s  ratio  target | redb first ms  s3 first ms  ratio");
    for (warm, target) in [(false, 0.5), (true, 0.9)] {
        let (redb, s3) = (
            median("redb", warm, |f| f.mb_s),
            median("s3", warm, |f| f.mb_s),
        );
        let (redb_first, s3_first) = (
            median("redb", warm, |f| f.first_ms),
            median("s3", warm, |f| f.first_ms),
        );
        let cache = if warm { "warm" } else { "cold" };
        met &= s3 / redb >= target;
        println!(
            "{}",
            json!({
                "scenario": "s3", "summary": true, "cache": cache, "runs": options.runs,
                "bytes": total, "redb_mb_s": redb, "s3_mb_s": s3, "ratio": s3 / redb,
                "target": target, "redb_first_block_ms": redb_first,
                "s3_first_block_ms": s3_first, "first_block_ratio": s3_first / redb_first,
            })
        );
        eprintln!(
            "  {cache}  {redb:>10.0}  {s3:>7.0}  {:>5.2}  >= {target:.1} | {redb_first:>13.1}  \
             {s3_first:>11.1}  {:>5.2}",
            s3 / redb,
            s3_first / redb_first
        );
    }
    met
}
