//! `net-bench swarm` (issue 19, first version): our client fetching a 64 MiB file from K of
//! our seeds, each behind its own shaped link ([`link_shaper`]), with the rates and one-way
//! delays of each [`Case`].
//!
//! - The file is [`FILE_BYTES`] of pseudo-random bytes ([`net::bytes`]) imported with kubo's
//!   default layout (`ipfs add`: CIDv0, dag-pb leaves of 256 KiB, 174 links per node) by
//!   `bitswap-node`'s UnixFS importer: 256 leaves under 2 inner nodes and a root.
//! - Each seed is a child process (`net-bench swarm-seed SEED BYTES`, see [`seed`]) holding the
//!   whole file in memory, on the node's transport (`bitswap_node::transport::yamux_config`)
//!   and the default Bitswap configuration, as `bitswap-node serve` has them. Each listens on
//!   127.0.0.1 behind its own [`link_shaper::Proxy`], which shapes both directions.
//! - The leech is our client in the bench process (store: [`BenchStore::Sink`]), dialling
//!   each seed through its proxy (`/ip4/127.0.0.1/tcp/PROXY/p2p/SEED`). It walks the DAG as
//!   `get` does: one session, the root first, then each node's links as soon as it arrives.
//! - In `cut-half`, the first seed's link is cut ([`link_shaper::ProxyHandle::cut`]) once half
//!   of the file's bytes have arrived; the others must finish the fetch.
//!
//! Reported per case and run (one JSON line each on stdout, a table
//! `$CARGO_TARGET_DIR/net-bench/swarm.md` and a plot `swarm.svg` of the fraction of the links
//! used): time to fetch, MB/s (10^6 bytes of the file per second), MB/s as a fraction of the
//! sum of the link rates (all links, the cut one included), duplicate bytes as a share of the
//! file, each seed's share of the bytes its proxy forwarded down, the client's messages sent
//! and wants timed out (simulated DONT_HAVEs), and the longest stall (the longest gap between
//! two blocks received). A fetch that takes longer than [`FETCH_LIMIT`] is reported as failed.
//! Every child process is killed by PID when its case ends.
//!
//! The figures of each session that ran it are in its commit messages: this bench exists to
//! show the gap issue 19 closes (on one 40 MB/s link with 25 ms each way our client used
//! about a quarter of the link when it was written).
//!
//! TODO (the rest of issue 19's bench, not in this first version):
//! - kubo's and Helia's clients as leeches on the same links in the same run, and kubo seeds
//!   beside ours (the targets against kubo's client cannot be checked until then);
//! - several leeches, and a leech that joins late and can fetch from earlier leeches;
//! - a seed that leaves at half time by stopping (here the link is cut instead);
//! - the client's messages counted per peer, and the seeds' own counters (messages, blocks
//!   sent) beside the proxies' byte counts.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use bitswap::{ClientStats, Handle, MemoryBlockstore};
use bitswap_node::{
    dag, transport,
    unixfs::{self, Layout},
};
use cid::Cid;
use futures::{StreamExt, stream::SelectAll};
use libp2p::{Multiaddr, multiaddr::Protocol};
use link_shaper::{Link, Proxy, ProxyHandle};
use serde_json::{Value, json};

use crate::net::{self, BenchStore, Driver, ServerProcess};

mod report;

/// Size of the file fetched: 64 MiB.
pub const FILE_BYTES: usize = 64 << 20;
/// Seed of the file's bytes.
const FILE_SEED: u64 = 19;
/// A fetch that takes longer is reported as failed.
pub const FETCH_LIMIT: Duration = Duration::from_secs(600);
/// Most time a seed process may take to import the file and listen.
const SEED_START_LIMIT: Duration = Duration::from_secs(120);
/// Most time to connect to one seed through its proxy.
const CONNECT_LIMIT: Duration = Duration::from_secs(30);
/// Most time to shut a proxy down.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// One scenario: a link per seed, and whether the first is cut at half time.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Its name in the output.
    pub name: &'static str,
    /// Each seed's link: rate in MB/s (10^6 bytes per second, each way) and one-way delay in
    /// ms.
    pub links: &'static [(u64, u64)],
    /// Whether the first seed's link is cut once half of the file has arrived.
    pub cut_half: bool,
    /// Issue 19's target for the fraction of the links used, where it sets one against the
    /// links alone (the others are relative to kubo's client, not run yet).
    pub target: Option<f64>,
}

/// The scenarios, in the order they run.
pub const CASES: [Case; 5] = [
    Case {
        name: "one-40-25",
        links: &[(40, 25)],
        cut_half: false,
        target: Some(0.85),
    },
    Case {
        name: "one-20-100",
        links: &[(20, 100)],
        cut_half: false,
        target: Some(0.8),
    },
    Case {
        name: "three-20-25",
        links: &[(20, 25), (20, 25), (20, 25)],
        cut_half: false,
        target: Some(0.85),
    },
    Case {
        name: "mixed-40-10-5",
        links: &[(40, 25), (10, 25), (5, 25)],
        cut_half: false,
        target: None,
    },
    Case {
        name: "cut-half",
        links: &[(20, 25), (20, 25), (20, 25)],
        cut_half: true,
        target: None,
    },
];

/// The seed child: `swarm-seed SEED BYTES` imports `BYTES` bytes of the set `SEED` with kubo's
/// layout, listens on 127.0.0.1, prints `PEER MULTIADDR`, and serves until its stdin closes.
pub async fn seed(args: &[String]) {
    let number = |i: usize| -> u64 {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .expect("swarm-seed SEED BYTES")
    };
    let (set, len) = (number(0), number(1) as usize);
    let mut swarm = net::node_on(
        BenchStore::Memory(MemoryBlockstore::new()),
        bitswap::Config::default(),
        transport::yamux_config,
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

/// Runs every [`Case`] `runs` times; prints a JSON line per run and writes the table and plot.
pub async fn run(runs: usize) {
    let data = net::bytes(FILE_BYTES, FILE_SEED);
    let root = unixfs::import_reader(&BenchStore::Sink, &data[..], &Layout::default())
        .await
        .expect("import")
        .root;
    drop(data);
    let mut rows = Vec::new();
    for case in CASES {
        for run in 0..runs {
            let row = run_case(&case, run, root).await;
            println!("{row}");
            rows.push(row);
        }
    }
    report::write(&rows);
}

/// What the DAG walk saw.
#[derive(Debug, Default)]
struct Walk {
    blocks: u64,
    bytes: u64,
    longest_gap: Duration,
    cut_after: Option<Duration>,
    /// Set when the walk ended before the last block: why.
    error: Option<String>,
    time: Duration,
}

async fn run_case(case: &Case, run: usize, root: Cid) -> Value {
    let mut row = json!({
        "scenario": "swarm", "case": case.name, "run": run,
        "links": case.links.iter().map(|(rate, delay)| json!({"mb_s": rate, "one_way_ms": delay})).collect::<Vec<_>>(),
        "bytes": FILE_BYTES,
    });
    match fetch(case, root).await {
        Ok((walk, stats, down)) => fill(&mut row, case, &walk, &stats, &down),
        Err(error) => {
            row["failed"] = json!(true);
            row["error"] = json!(error);
        }
    }
    row
}

/// Seeds, proxies and the leech for `case`; the walk; the client's stats and each link's
/// bytes forwarded down. Every child is killed on return.
async fn fetch(case: &Case, root: Cid) -> Result<(Walk, ClientStats, Vec<u64>), String> {
    let mut seeds = Vec::new();
    for _ in case.links {
        let args = [
            "swarm-seed".into(),
            FILE_SEED.to_string(),
            FILE_BYTES.to_string(),
        ];
        let seed =
            tokio::task::block_in_place(|| ServerProcess::spawn_within(&args, SEED_START_LIMIT))
                .map_err(|e| format!("seed process: {e}"))?;
        seeds.push(seed);
    }
    let mut proxies = Vec::new();
    for (seed, &(rate, delay)) in seeds.iter().zip(case.links) {
        let target = socket_addr(&seed.address)
            .ok_or_else(|| format!("seed address {} is not ip4/tcp", seed.address))?;
        let link = Link::default()
            .with_rate(Some(rate * 1_000_000))
            .with_delay(Duration::from_millis(delay));
        let proxy = Proxy::start(target, link)
            .await
            .map_err(|e| format!("proxy: {e}"))?;
        proxies.push(proxy);
    }
    let mut swarm = net::node_on(
        BenchStore::Sink,
        bitswap::Config::default(),
        transport::yamux_config,
    );
    for (seed, proxy) in seeds.iter().zip(&proxies) {
        let address: Multiaddr = format!(
            "/ip4/127.0.0.1/tcp/{}/p2p/{}",
            proxy.local_addr().port(),
            seed.peer
        )
        .parse()
        .map_err(|e| format!("proxy address: {e}"))?;
        tokio::time::timeout(CONNECT_LIMIT, net::connect(&mut swarm, seed.peer, address))
            .await
            .map_err(|_| format!("no connection to a seed within {CONNECT_LIMIT:?}"))?;
    }
    let handle = swarm.behaviour().bitswap.handle();
    let driver = Driver::start(swarm);
    let cut = proxies.first().filter(|_| case.cut_half);
    let start = Instant::now();
    let walk = match tokio::time::timeout(FETCH_LIMIT, walk(&handle, root, cut)).await {
        Ok(walk) => walk,
        Err(_) => Walk {
            error: Some(format!("not fetched within {FETCH_LIMIT:?}")),
            time: start.elapsed(),
            ..Walk::default()
        },
    };
    let stats = driver.stop().await.behaviour().bitswap.client().stats();
    let mut down = Vec::new();
    for proxy in proxies {
        let before = proxy.stats();
        let after = tokio::time::timeout(SHUTDOWN_LIMIT, proxy.shutdown()).await;
        down.push(after.unwrap_or(before).down.forwarded);
    }
    drop(seeds);
    Ok((walk, stats, down))
}

/// Fetches the DAG under `root` as `get` does; cuts `cut` once half of the file has arrived.
async fn walk(handle: &Handle, root: Cid, cut: Option<&ProxyHandle>) -> Walk {
    let start = Instant::now();
    let mut walk = Walk::default();
    if let Err(error) = walk_into(&mut walk, handle, root, cut, start).await {
        walk.error = Some(error);
    }
    walk.time = start.elapsed();
    walk
}

async fn walk_into(
    walk: &mut Walk,
    handle: &Handle,
    root: Cid,
    cut: Option<&ProxyHandle>,
    start: Instant,
) -> Result<(), String> {
    let session = handle.new_session().await.map_err(|e| e.to_string())?;
    let mut queries = SelectAll::new();
    let query = handle.get_many(vec![root], Some(session)).await;
    queries.push(query.map_err(|e| e.to_string())?);
    let mut outstanding = 1usize;
    let mut last: Option<Instant> = None;
    while outstanding > 0 {
        let block = queries
            .next()
            .await
            .ok_or_else(|| "the queries ended with blocks missing".to_string())?
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        if let Some(last) = last {
            walk.longest_gap = walk.longest_gap.max(now - last);
        }
        last = Some(now);
        outstanding -= 1;
        walk.blocks += 1;
        walk.bytes += block.data().len() as u64;
        let links = dag::links(&block).map_err(|e| e.to_string())?;
        if !links.is_empty() {
            outstanding += links.len();
            let query = handle.get_many(links, Some(session)).await;
            queries.push(query.map_err(|e| e.to_string())?);
        }
        if let Some(proxy) = cut
            && walk.cut_after.is_none()
            && walk.bytes >= FILE_BYTES as u64 / 2
        {
            proxy.cut();
            walk.cut_after = Some(now - start);
        }
    }
    let _ = handle.close_session(session).await;
    Ok(())
}

fn fill(row: &mut Value, case: &Case, walk: &Walk, stats: &ClientStats, down: &[u64]) {
    let seconds = walk.time.as_secs_f64();
    let mb_s = FILE_BYTES as f64 / seconds / 1e6;
    let links: u64 = case.links.iter().map(|(rate, _)| rate).sum();
    let total_down: u64 = down.iter().sum();
    let shares: Vec<f64> = down
        .iter()
        .map(|d| *d as f64 / total_down.max(1) as f64)
        .collect();
    let failed = walk.error.is_some();
    let figures = json!({
        "failed": failed,
        "error": walk.error,
        "seconds": seconds,
        "mb_s": (!failed).then_some(mb_s),
        "links_mb_s": links,
        "fraction_of_links": (!failed).then_some(mb_s / links as f64),
        "dag_blocks": walk.blocks,
        "dag_bytes": walk.bytes,
        "blocks_received": stats.blocks_received,
        "bytes_received": stats.bytes_received,
        "duplicate_blocks": stats.duplicate_blocks,
        "duplicate_bytes": stats.duplicate_bytes,
        "duplicate_pct_of_file": 100.0 * stats.duplicate_bytes as f64 / FILE_BYTES as f64,
        "seed_down_bytes": down,
        "seed_shares": shares,
        "messages_sent": stats.messages_sent,
        "entries_sent": stats.entries_sent,
        "cancels_sent": stats.cancels_sent,
        "wants_timed_out": stats.timeouts,
        "longest_stall_ms": walk.longest_gap.as_secs_f64() * 1e3,
        "cut_after_ms": walk.cut_after.map(|t| t.as_secs_f64() * 1e3),
    });
    if let (Some(row), Value::Object(figures)) = (row.as_object_mut(), figures) {
        row.extend(figures);
    }
}

/// The TCP socket address of an `/ip4/A/tcp/P` multiaddr.
fn socket_addr(address: &Multiaddr) -> Option<SocketAddr> {
    let (mut ip, mut port) = (None, None);
    for protocol in address {
        match protocol {
            Protocol::Ip4(a) => ip = Some(a),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    Some(SocketAddr::from((ip?, port?)))
}
