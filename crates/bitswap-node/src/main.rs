//! `bitswap-node`: add files with kubo's CIDs, serve and fetch them over Bitswap, move blocks
//! and CAR files, all over a persistent local store. See `bitswap-node --help`.

mod cli;
mod commands;
mod fetch;
mod metrics;
mod output;
mod shutdown;
mod swarm;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return output::fail(&anyhow::Error::new(error)),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => output::fail(&error),
    }
}
