//! Bitswap over real loopback swarms (TCP+Noise+Yamux), release build:
//!
//! ```text
//! cargo run --release -p benches --bin net-bench -- [throughput] [fairness] [boxo] [load] [wants] [swarm] [--runs N] [--mib N]
//!     [s3] [--case PREFIX]... [--client ours|kubo|kubo-pin|helia]... [--seeds ours|kubo]... [--smoke]
//! ```
//!
//! - `throughput`: one server process, one client process (this one), `--mib` MiB
//!   (default 256) of 256 KiB blocks; each run also measures the ceiling on the same
//!   connection: a raw libp2p stream carrying the same bytes (the blocks' data, in order),
//!   the receiver SHA-256-hashing every 256 KiB. Runs alternate which goes first. Reports
//!   MB/s, the ratio, CPU of both processes. With `NET_BENCH_HOT_CEILING=1` the ceiling
//!   sends one block again and again instead (it stays in the sender's CPU cache), as the
//!   bench did before 2026-11-25.
//! - `fairness`: one server process, 10 heavy clients each fetching the same 64
//!   blocks of 256 KiB, and one light client asking for one other block 200 ms later:
//!   the light client's latency and Jain's index over the heavy clients' throughput.
//! - `boxo`: boxo's 3-node scenarios (2 seeds, 1 fetcher) in this process: layouts
//!   all-to-all, overlap1 (A 0-74, B 25-99), overlap3 (A even, B odd, both every 3rd);
//!   patterns one-at-a-time, batch-by-10, all-concurrent, big-batch; 100 blocks of 8000 B and
//!   of 256 KiB. Reports time, messages and duplicate blocks.
//!
//! - `load`: for N = 1, 10, 100 clients each fetching the same 64 MiB (256 blocks of
//!   256 KiB) from one server process: aggregate and per-client MB/s, Jain's index, p50/p99
//!   time to first block, server peak RSS above idle, server CPU seconds per GB, and the
//!   ceiling (one raw stream + SHA-256) measured in the same run. Writes `load.md` and
//!   `load.svg` (throughput vs N) to `$CARGO_TARGET_DIR/net-bench/` (or `target/net-bench/`).
//! - `wants`: 1000 peers connect to one server process and each sends 1024 wants
//!   for blocks it lacks: the server's RSS above idle (target: at most 128 MiB). A second
//!   pass sends the same messages with one CID repeated 1024 times (so one want per peer and
//!   the same bytes on the wire), and a third pass in which the peers only connect: what the
//!   connections and transport cost without the wants.
//!
//! - `swarm`: clients fetching a 64 MiB file (kubo's layout) from K seeds, each
//!   behind its own shaped loopback link (`link-shaper`): our client, kubo's (get, and pin as
//!   `kubo-pin`) and Helia's, from
//!   our seeds and from kubo seeds, in cases `one-40-25`, `one-20-100`, `three-20-25`,
//!   `mixed-40-10-5`, `cut-half`, `stop-half`, `leeches-3x2` and `late-join` (see
//!   `benches::swarm`). Reports time, MB/s and its fraction of the link rates, duplicate
//!   bytes, each link's share, messages sent, wants timed out, the longest stall and issue
//!   19's targets; writes `swarm.md` and `swarm.svg` beside `load.md`. `--runs` defaults to 1
//!   here; `--case`, `--client`, `--seeds` (each repeatable, each a name prefix: `--client
//!   kubo` takes `kubo-pin` too) run a subset;
//!   `--smoke` runs a 4 MiB file through every client and seed kind once (`swarm-smoke.md`)
//!   and exits with 1 if a fetch failed. kubo needs `BITSWAP_INTEROP_PYTHON` (or the venv of
//!   `.ci/test`), Helia the `node_modules` that `.ci/test` installs.
//!
//! - `s3`: `--mib` MiB (default 256) of 256 KiB blocks served through Bitswap from
//!   the S3 store (SeaweedFS on loopback, started and ended here) and from the redb store, in
//!   the same run, cold and warm cache: MB/s and time to first block as ratios to redb; then
//!   has-lookups of absent blocks with a built filter, and the S3 requests they made (see
//!   `benches::s3`). `--runs` defaults to 3; `--smoke` moves 16 MiB once. Needs
//!   `BITSWAP_SEAWEEDFS` (the `weed` binary `.ci/test` installs).
//!
//! Every figure goes to stdout as one JSON object per line; a summary goes to stderr. Without a
//! scenario, `throughput`, `fairness` and `boxo` run. Server processes are killed when the
//! bench ends.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use benches::net::{self, BenchStore, Driver, ServerProcess};
use bitswap::{Block, Blockstore, Control};
use futures::{StreamExt, TryStreamExt, future::join_all};
use serde_json::json;

/// Block size of the throughput and fairness scenarios.
const BLOCK: usize = 256 * 1024;

/// Seed of the throughput set.
const THROUGHPUT_SEED: u64 = 1;
/// Seed of the fairness set.
const FAIRNESS_SEED: u64 = 2;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match args.first().map(String::as_str) {
        Some("serve") => return runtime.block_on(serve(&args[1..])),
        Some("swarm-seed") => return runtime.block_on(benches::swarm::seed(&args[1..])),
        Some("s3-serve") => return runtime.block_on(benches::s3::serve(&args[1..])),
        _ => {}
    }
    let mut scenarios = Vec::new();
    let mut runs = None;
    let mut mib = 256;
    let mut swarm = benches::swarm::Options::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--runs" => runs = Some(number(iter.next())),
            "--mib" => mib = number(iter.next()),
            "--case" => swarm.cases.push(text(iter.next())),
            "--client" => swarm.clients.push(text(iter.next())),
            "--seeds" => swarm.seeds.push(text(iter.next())),
            "--smoke" => swarm.smoke = true,
            "throughput" | "fairness" | "boxo" | "load" | "wants" | "swarm" | "s3" => {
                scenarios.push(arg.clone());
            }
            other => {
                eprintln!("unknown argument {other}; see the doc comment of net-bench.rs");
                std::process::exit(2);
            }
        }
    }
    if scenarios.is_empty() {
        scenarios = vec!["throughput".into(), "fairness".into(), "boxo".into()];
    }
    for scenario in scenarios {
        match scenario.as_str() {
            "throughput" => runtime.block_on(throughput(runs.unwrap_or(5), mib)),
            "fairness" => runtime.block_on(fairness(runs.unwrap_or(5))),
            "swarm" => {
                swarm.runs = runs.unwrap_or(1);
                let failed = runtime.block_on(benches::swarm::run(&swarm));
                if swarm.smoke && failed > 0 {
                    eprintln!("swarm --smoke: {failed} fetches failed");
                    std::process::exit(1);
                }
            }
            "s3" => {
                let options = if swarm.smoke {
                    benches::s3::Options::smoke()
                } else {
                    benches::s3::Options::full(mib, runs.unwrap_or(3))
                };
                // The smoke run checks that every fetch completes, not the targets.
                if !runtime.block_on(benches::s3::run(&options)) && !swarm.smoke {
                    eprintln!("s3: a target was missed");
                }
            }
            "load" => runtime.block_on(load()),
            "wants" => runtime.block_on(benches::wants::run()),
            _ => runtime.block_on(boxo()),
        }
    }
}

fn number(arg: Option<&String>) -> usize {
    arg.and_then(|a| a.parse().ok()).unwrap_or_else(|| {
        eprintln!("expected a number");
        std::process::exit(2);
    })
}

fn text(arg: Option<&String>) -> String {
    arg.cloned().unwrap_or_else(|| {
        eprintln!("expected a value");
        std::process::exit(2);
    })
}

/// The server child: `serve SEED COUNT SIZE` serves blocks `0..COUNT` of the set `SEED` and
/// the ceiling protocol, prints `PEER MULTIADDR`, and runs until its stdin closes.
async fn serve(args: &[String]) {
    let [seed, count, size] = [0, 1, 2].map(|i| number(args.get(i)) as u64);
    let mut swarm = net::node(bitswap::Config::default());
    let blocks = net::blocks(seed, 0..count, size as usize);
    let mut payloads: Vec<_> = blocks.iter().map(|b| b.data().clone()).collect();
    if std::env::var_os("NET_BENCH_HOT_CEILING").is_some() {
        // The ceiling as measured before 2026-11-25: one block sent again and again.
        payloads.truncate(1);
    }
    swarm
        .behaviour()
        .bitswap
        .store()
        .put_many(blocks)
        .await
        .expect("memory store");
    tokio::spawn(net::serve_ceiling(
        swarm.behaviour().stream.new_control(),
        payloads,
    ));
    let address = net::listen(&mut swarm).await;
    println!("{} {address}", swarm.local_peer_id());
    net::run_until_stdin_closes(swarm).await;
}

/// A client node connected to `server`, polled by its own task.
async fn client(server: &ServerProcess) -> (Driver, Control, libp2p_stream::Control) {
    client_with(server, BenchStore::Memory(bitswap::MemoryBlockstore::new())).await
}

/// A client node on `store` connected to `server`, polled by its own task.
async fn client_with(
    server: &ServerProcess,
    store: BenchStore,
) -> (Driver, Control, libp2p_stream::Control) {
    let mut swarm = net::node_with(store, bitswap::Config::default());
    net::connect(&mut swarm, server.peer, server.address.clone()).await;
    let control = swarm.behaviour().bitswap.control();
    let stream = swarm.behaviour().stream.new_control();
    (Driver::start(swarm), control, stream)
}

async fn fetch(control: &Control, blocks: &[Block]) -> Duration {
    let cids = blocks.iter().map(|b| *b.cid()).collect();
    let start = Instant::now();
    let session = control.new_session().await.expect("session");
    let received: Vec<Block> = control
        .get_many(cids, Some(session))
        .await
        .expect("query accepted")
        .try_collect()
        .await
        .expect("every block");
    let elapsed = start.elapsed();
    assert_eq!(received.len(), blocks.len());
    let _ = control.close_session(session).await;
    elapsed
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e6
}

async fn throughput(runs: usize, mib: usize) {
    let count = (mib * 1024 * 1024 / BLOCK) as u64;
    let total = count as usize * BLOCK;
    let server = ServerProcess::spawn(&[
        "serve".into(),
        THROUGHPUT_SEED.to_string(),
        count.to_string(),
        BLOCK.to_string(),
    ])
    .expect("server process");
    let blocks = net::blocks(THROUGHPUT_SEED, 0..count, BLOCK);
    let (mut bitswap, mut ceiling) = (Vec::new(), Vec::new());
    let (mut bitswap_cpu, mut ceiling_cpu) = (Vec::new(), Vec::new());
    let me = std::process::id();
    // CPU seconds per GB moved of both processes during `f`, and its duration.
    let cpu = |before: (Option<f64>, Option<f64>)| {
        let after = (server.cpu_seconds(), net::cpu_seconds(me));
        let server = before
            .0
            .zip(after.0)
            .map(|(a, b)| (b - a) / (total as f64 / 1e9));
        let client = before
            .1
            .zip(after.1)
            .map(|(a, b)| (b - a) / (total as f64 / 1e9));
        json!({ "server": server, "client": client })
    };
    for run in 0..runs {
        let (driver, control, stream) = client(&server).await;
        let mut figures = Vec::new();
        for part in if run % 2 == 0 { [0, 1] } else { [1, 0] } {
            let before = (server.cpu_seconds(), net::cpu_seconds(me));
            let time = if part == 0 {
                net::fetch_ceiling(stream.clone(), server.peer, total)
                    .await
                    .expect("ceiling stream")
            } else {
                fetch(&control, &blocks).await
            };
            figures.push((part, time, cpu(before)));
        }
        figures.sort_by_key(|f| f.0);
        drop(driver.stop().await);
        let (c, b) = (mb_per_s(total, figures[0].1), mb_per_s(total, figures[1].1));
        bitswap.push(b);
        ceiling.push(c);
        bitswap_cpu.push(figures[1].2.clone());
        ceiling_cpu.push(figures[0].2.clone());
        println!(
            "{}",
            json!({
                "scenario": "throughput", "run": run, "bytes": total,
                "bitswap_mb_s": b, "ceiling_mb_s": c, "ratio": b / c,
                "bitswap_cpu_s_per_gb": figures[1].2, "ceiling_cpu_s_per_gb": figures[0].2,
            })
        );
    }
    let (b, c) = (net::median(&bitswap), net::median(&ceiling));
    println!(
        "{}",
        json!({
            "scenario": "throughput", "summary": true, "runs": runs, "bytes": total,
            "bitswap_mb_s_median": b, "ceiling_mb_s_median": c, "ratio_of_medians": b / c,
            "bitswap_cpu_s_per_gb": bitswap_cpu, "ceiling_cpu_s_per_gb": ceiling_cpu,
        })
    );
    eprintln!(
        "throughput: {mib} MiB of 256 KiB blocks, median of {runs}: bitswap {b:.0} MB/s, \
         ceiling (raw stream + SHA-256) {c:.0} MB/s, ratio {:.2} (target >= 0.8)",
        b / c
    );
}

async fn fairness(runs: usize) {
    const HEAVY: usize = 10;
    let server = ServerProcess::spawn(&[
        "serve".into(),
        FAIRNESS_SEED.to_string(),
        "65".into(),
        BLOCK.to_string(),
    ])
    .expect("server process");
    let heavy_blocks = net::blocks(FAIRNESS_SEED, 0..64, BLOCK);
    let light_block = net::block(FAIRNESS_SEED, 64, BLOCK);
    let (mut latencies, mut indices) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let mut heavies = Vec::new();
        for _ in 0..HEAVY {
            heavies.push(client(&server).await);
        }
        let light = client(&server).await;
        let start = Instant::now();
        let heavy_fetches = heavies.iter().map(|(_, control, _)| async {
            let time = fetch(control, &heavy_blocks).await;
            mb_per_s(heavy_blocks.len() * BLOCK, time)
        });
        let light_fetch = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let asked = Instant::now();
            let block = light.1.get(*light_block.cid()).await.expect("light block");
            assert_eq!(block, light_block);
            (asked.duration_since(start), asked.elapsed())
        };
        let (throughputs, (asked_at, latency)) = tokio::join!(join_all(heavy_fetches), light_fetch);
        let index = net::jain(&throughputs);
        let latency_ms = latency.as_secs_f64() * 1e3;
        latencies.push(latency_ms);
        indices.push(index);
        println!(
            "{}",
            json!({
                "scenario": "fairness", "run": run, "heavy_mb_s": throughputs,
                "jain": index, "light_asked_after_ms": asked_at.as_secs_f64() * 1e3,
                "light_latency_ms": latency_ms,
                "all_done_ms": start.elapsed().as_secs_f64() * 1e3,
            })
        );
        for (driver, _, _) in heavies {
            drop(driver.stop().await);
        }
        drop(light.0.stop().await);
    }
    let (latency, index) = (net::median(&latencies), net::median(&indices));
    let worst_latency = latencies.iter().copied().fold(0.0, f64::max);
    let worst_index = indices.iter().copied().fold(1.0, f64::min);
    println!(
        "{}",
        json!({
            "scenario": "fairness", "summary": true, "runs": runs,
            "light_latency_ms_median": latency, "light_latency_ms_max": worst_latency,
            "jain_median": index, "jain_min": worst_index,
        })
    );
    eprintln!(
        "fairness: 10 heavy clients x 64 x 256 KiB + 1 light client, {runs} runs: light latency \
         median {latency:.1} ms (max {worst_latency:.1}; target <= 50), Jain median {index:.3} \
         (min {worst_index:.3}; target >= 0.95)"
    );
}

/// Which seed holds block `i` in a boxo layout.
fn holds(layout: &str, seed: usize, i: u64) -> bool {
    match layout {
        "all-to-all" => true,
        "overlap1" => {
            if seed == 0 {
                i < 75
            } else {
                i >= 25
            }
        }
        _ => i.is_multiple_of(3) || i % 2 == seed as u64,
    }
}

async fn boxo() {
    let mut summary = Vec::new();
    for size in [8000usize, BLOCK] {
        for layout in ["all-to-all", "overlap1", "overlap3"] {
            for pattern in [
                "one-at-a-time",
                "batch-by-10",
                "all-concurrent",
                "big-batch",
            ] {
                let set = 10 + size as u64;
                let blocks = net::blocks(set, 0..100, size);
                let mut seeds = Vec::new();
                for seed in 0..2 {
                    let mut swarm = net::node(bitswap::Config::default());
                    let held: Vec<Block> = (0..100u64)
                        .filter(|i| holds(layout, seed, *i))
                        .map(|i| blocks[i as usize].clone())
                        .collect();
                    swarm
                        .behaviour()
                        .bitswap
                        .store()
                        .put_many(held)
                        .await
                        .expect("store");
                    let address = net::listen(&mut swarm).await;
                    seeds.push((*swarm.local_peer_id(), address, Driver::start(swarm)));
                }
                let mut fetcher = net::node(bitswap::Config::default());
                for (peer, address, _) in &seeds {
                    net::connect(&mut fetcher, *peer, address.clone()).await;
                }
                let fetcher_id = *fetcher.local_peer_id();
                let control = fetcher.behaviour().bitswap.control();
                let driver = Driver::start(fetcher);
                let start = Instant::now();
                let session = control.new_session().await.expect("session");
                let cids: Vec<_> = blocks.iter().map(|b| *b.cid()).collect();
                let groups: Vec<Vec<_>> = match pattern {
                    "one-at-a-time" => cids.chunks(1).map(<[_]>::to_vec).collect(),
                    "batch-by-10" => cids.chunks(10).map(<[_]>::to_vec).collect(),
                    _ => vec![cids.clone()],
                };
                let mut got = HashSet::new();
                if pattern == "all-concurrent" {
                    let fetches = cids.iter().map(|cid| {
                        let control = control.clone();
                        async move { control.get_many(vec![*cid], Some(session)).await }
                    });
                    for stream in join_all(fetches).await {
                        let blocks: Vec<Block> =
                            stream.expect("query").try_collect().await.expect("block");
                        got.extend(blocks.iter().map(|b| *b.cid()));
                    }
                } else {
                    for group in groups {
                        let mut stream =
                            control.get_many(group, Some(session)).await.expect("query");
                        while let Some(block) = stream.next().await {
                            got.insert(*block.expect("block").cid());
                        }
                    }
                }
                let elapsed = start.elapsed();
                assert_eq!(got.len(), 100);
                let fetcher = driver.stop().await;
                let stats = fetcher.behaviour().bitswap.client().stats();
                let mut received_messages = 0;
                for (_, _, driver) in seeds {
                    let seed = driver.stop().await;
                    if let Some(accounting) = seed
                        .behaviour()
                        .bitswap
                        .server()
                        .peer_accounting(&fetcher_id)
                    {
                        received_messages += accounting.messages_sent;
                    }
                }
                let line = json!({
                    "scenario": "boxo", "block_size": size, "layout": layout,
                    "pattern": pattern, "ms": elapsed.as_secs_f64() * 1e3,
                    "messages_sent": stats.messages_sent,
                    "messages_received": received_messages,
                    "blocks_received": stats.blocks_received,
                    "duplicate_blocks": stats.duplicate_blocks,
                    "duplicate_bytes_pct":
                        100.0 * stats.duplicate_bytes as f64 / stats.bytes_received.max(1) as f64,
                });
                println!("{line}");
                summary.push(format!(
                    "{size:>6} B {layout:<10} {pattern:<14} {:>8.1} ms  sent {:>4}  recv {:>4}  dups {:>3}",
                    elapsed.as_secs_f64() * 1e3,
                    stats.messages_sent,
                    received_messages,
                    stats.duplicate_blocks
                ));
            }
        }
    }
    eprintln!("boxo scenarios (2 seeds, 1 fetcher, 100 blocks):");
    for line in summary {
        eprintln!("  {line}");
    }
}

/// Seed of the load set.
const LOAD_SEED: u64 = 3;

/// One client's fetch: time to the first block and to the last.
async fn timed_fetch(control: &Control, cids: Vec<cid::Cid>) -> (Duration, Duration) {
    let start = Instant::now();
    let mut stream = control.get_many(cids, None).await.expect("query accepted");
    let mut first = None;
    while let Some(block) = stream.next().await {
        block.expect("block");
        first.get_or_insert_with(|| start.elapsed());
    }
    (first.unwrap_or_default(), start.elapsed())
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn load() {
    const COUNT: u64 = 256;
    let total = COUNT as usize * BLOCK;
    let cids: Vec<cid::Cid> = net::blocks(LOAD_SEED, 0..COUNT, BLOCK)
        .iter()
        .map(|b| *b.cid())
        .collect();
    let mut rows = Vec::new();
    for n in [1usize, 10, 100] {
        let server = ServerProcess::spawn(&[
            "serve".into(),
            LOAD_SEED.to_string(),
            COUNT.to_string(),
            BLOCK.to_string(),
        ])
        .expect("server process");
        let idle = server.memory().map(|m| m.0);
        // The ceiling, on one connection, first.
        let (driver, _, stream) = client(&server).await;
        let ceiling_time = net::fetch_ceiling(stream, server.peer, total)
            .await
            .expect("ceiling stream");
        drop(driver.stop().await);
        let ceiling = mb_per_s(total, ceiling_time);
        let mut clients = Vec::new();
        for _ in 0..n {
            clients.push(client_with(&server, BenchStore::Sink).await);
        }
        let cpu_before = server.cpu_seconds();
        let start = Instant::now();
        let fetches = clients
            .iter()
            .map(|(_, control, _)| timed_fetch(control, cids.clone()));
        let results = join_all(fetches).await;
        let wall = start.elapsed();
        let cpu = cpu_before.zip(server.cpu_seconds()).map(|(a, b)| b - a);
        let peak = server.memory().map(|m| m.1);
        for (driver, _, _) in clients {
            drop(driver.stop().await);
        }
        let per_client: Vec<f64> = results.iter().map(|(_, t)| mb_per_s(total, *t)).collect();
        let first_ms: Vec<f64> = results.iter().map(|(f, _)| f.as_secs_f64() * 1e3).collect();
        let aggregate = mb_per_s(total * n, wall);
        let row = json!({
            "scenario": "load", "clients": n, "bytes_per_client": total,
            "aggregate_mb_s": aggregate,
            "per_client_mb_s_median": net::median(&per_client),
            "per_client_mb_s_min": per_client.iter().copied().fold(f64::INFINITY, f64::min),
            "jain": net::jain(&per_client),
            "first_block_ms_p50": percentile(&first_ms, 0.5),
            "first_block_ms_p99": percentile(&first_ms, 0.99),
            "server_peak_rss_above_idle_mib": idle.zip(peak).map(|(i, p)| p.saturating_sub(i) as f64 / (1 << 20) as f64),
            "server_cpu_s_per_gb": cpu.map(|c| c / (total as f64 * n as f64 / 1e9)),
            "ceiling_mb_s": ceiling,
            "ratio_to_ceiling": aggregate / ceiling,
        });
        println!("{row}");
        rows.push(row);
    }
    write_load_report(&rows);
}

fn write_load_report(rows: &[serde_json::Value]) {
    let dir = std::path::PathBuf::from(
        std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()),
    )
    .join("net-bench");
    if let Err(error) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {error}", dir.display());
        return;
    }
    let number = |row: &serde_json::Value, key: &str| row[key].as_f64().unwrap_or(f64::NAN);
    let mut table = String::from(
        "| clients | aggregate MB/s | per-client MB/s (median / min) | Jain | first block p50 / p99 ms | server peak RSS above idle MiB | server CPU s/GB | ceiling MB/s | ratio |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        table.push_str(&format!(
            "| {} | {:.0} | {:.1} / {:.1} | {:.3} | {:.1} / {:.1} | {:.1} | {:.2} | {:.0} | {:.2} |\n",
            row["clients"],
            number(row, "aggregate_mb_s"),
            number(row, "per_client_mb_s_median"),
            number(row, "per_client_mb_s_min"),
            number(row, "jain"),
            number(row, "first_block_ms_p50"),
            number(row, "first_block_ms_p99"),
            number(row, "server_peak_rss_above_idle_mib"),
            number(row, "server_cpu_s_per_gb"),
            number(row, "ceiling_mb_s"),
            number(row, "ratio_to_ceiling"),
        ));
    }
    // Throughput against the number of clients, log scale in N.
    let (w, h, left, bottom) = (640.0, 360.0, 70.0, 50.0);
    let max = rows
        .iter()
        .flat_map(|r| [number(r, "aggregate_mb_s"), number(r, "ceiling_mb_s")])
        .fold(1.0, f64::max)
        * 1.1;
    let x = |n: f64| left + (n.log10() / 2.0) * (w - left - 30.0);
    let y = |v: f64| h - bottom - v / max * (h - bottom - 30.0);
    let line = |key: &str| -> String {
        rows.iter()
            .map(|r| format!("{:.1},{:.1}", x(number(r, "clients")), y(number(r, key))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n<line x1='{left}' y1='{b}' x2='{r}' y2='{b}' stroke='black'/>\n<line x1='{left}' y1='30' x2='{left}' y2='{b}' stroke='black'/>\n<text x='{cx}' y='{t}' text-anchor='middle'>clients (log scale)</text>\n<text x='15' y='{cy}' transform='rotate(-90 15 {cy})' text-anchor='middle'>MB/s</text>\n",
        b = h - bottom,
        r = w - 20.0,
        cx = (w + left) / 2.0,
        t = h - 10.0,
        cy = (h - bottom) / 2.0,
    );
    for n in [1.0, 10.0, 100.0] {
        svg.push_str(&format!(
            "<text x='{:.1}' y='{:.1}' text-anchor='middle'>{n}</text>\n",
            x(n),
            h - bottom + 18.0
        ));
    }
    for tick in 0..=4 {
        let v = max * f64::from(tick) / 4.0;
        svg.push_str(&format!(
            "<text x='{:.1}' y='{:.1}' text-anchor='end'>{v:.0}</text>\n",
            left - 6.0,
            y(v) + 4.0
        ));
    }
    for (key, colour, label, dy) in [
        ("aggregate_mb_s", "#1f77b4", "bitswap, all clients", 0.0),
        (
            "ceiling_mb_s",
            "#888888",
            "ceiling: raw stream + SHA-256",
            16.0,
        ),
        (
            "per_client_mb_s_median",
            "#ff7f0e",
            "per client (median)",
            32.0,
        ),
    ] {
        svg.push_str(&format!(
            "<polyline fill='none' stroke='{colour}' stroke-width='2' points='{}'/>\n<text x='{:.1}' y='{:.1}' fill='{colour}'>{label}</text>\n",
            line(key),
            left + 10.0,
            40.0 + dy
        ));
    }
    svg.push_str("</svg>\n");
    let md = dir.join("load.md");
    let plot = dir.join("load.svg");
    match std::fs::write(&md, &table).and_then(|()| std::fs::write(&plot, svg)) {
        Ok(()) => eprintln!(
            "load: table {} and plot {}\n{table}",
            md.display(),
            plot.display()
        ),
        Err(error) => eprintln!("cannot write the load report: {error}"),
    }
}
