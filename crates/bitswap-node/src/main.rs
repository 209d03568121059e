//! `bitswap-node`: add files with kubo's CIDs, serve and fetch them over Bitswap, move blocks
//! and CAR files, all over a persistent local store. See `bitswap-node --help`.

mod cli;
mod commands;
mod fetch;
mod metrics;
mod output;
mod shutdown;
mod swarm;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    process::ExitCode,
};

use clap::Parser as _;

/// Most tokio worker threads: a node has few connections busy at once.
const MAX_WORKER_THREADS: usize = 4;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::quiet_panics();
    init_log();
    // Connection tasks (Noise, Yamux, and Bitswap's hashing of the blocks received) run on
    // worker threads, beside the swarm, the store and the output file on this one.
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_WORKER_THREADS);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return output::fail(&anyhow::Error::new(error)),
    };
    // Dropping the runtime (and the store in it) after a panic runs in the catch too.
    let result = catch_unwind(AssertUnwindSafe(move || {
        let result = runtime.block_on(commands::run(cli));
        drop(runtime);
        result
    }));
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => output::fail(&error),
        Err(_) => {
            let panic = output::last_panic().unwrap_or_else(|| "panicked".to_owned());
            output::fail(&anyhow::anyhow!("internal error (a bug): {panic}"))
        }
    }
}

/// Logs to stderr with the filter in RUST_LOG (targets and levels, such as `info` or
/// `bitswap_node=debug,libp2p_swarm=info`); without RUST_LOG nothing is logged, so that
/// stderr keeps its one line per failure.
fn init_log() {
    use tracing_subscriber::{filter::Targets, layer::SubscriberExt as _};

    let Some(filter) = std::env::var_os("RUST_LOG") else {
        return;
    };
    let targets: Targets = match filter.to_str().map(str::parse) {
        Some(Ok(targets)) => targets,
        _ => {
            eprintln!("RUST_LOG={filter:?} is not a list of TARGET=LEVEL; logging at info level");
            Targets::new().with_default(tracing::Level::INFO)
        }
    };
    // The builder's own filter (info by default) would hide the levels below it that the
    // targets ask for.
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::TRACE)
        .finish()
        .with(targets);
    // Only fails if a subscriber is set already, which nothing else does.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
