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
