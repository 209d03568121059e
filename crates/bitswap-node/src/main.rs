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

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    output::quiet_panics();
    let runtime = match tokio::runtime::Builder::new_current_thread()
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
