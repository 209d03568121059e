//! One module per subcommand; [`run`] dispatches.

mod add;
mod block;
mod car;
mod export;
mod get;
mod serve;

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use bitswap::RedbConfig;
use bitswap_node::{
    datadir::DataDir,
    store::{NodeStore, StoreUrl},
};
use ipfs_blockstore::{S3Blockstore, S3Config};
use libp2p::{Swarm, identity::Keypair, kad};
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::{
    cli::{BlockCommand, CarCommand, Cli, Command, NetworkArgs},
    metrics, output,
    swarm::{self, Node, Observer},
};

/// What every command gets: the global flags.
pub(crate) struct GlobalFlags {
    /// The data directory given, if any.
    data_dir: Option<std::path::PathBuf>,
    /// `--store`.
    store: StoreUrl,
    /// `--cache-size`, in bytes.
    cache_size: u64,
    /// `--json`.
    pub(crate) json: bool,
    /// `--bitswap-versions` (empty: all).
    pub(crate) bitswap_versions: Vec<bitswap::Version>,
}

impl GlobalFlags {
    /// Opens the data directory (creating it and its identity on first use).
    pub(crate) fn data_dir(&self) -> anyhow::Result<DataDir> {
        let path = match &self.data_dir {
            Some(path) => path.clone(),
            None => DataDir::default_path()?,
        };
        DataDir::open(&path).with_context(|| format!("data directory {}", path.display()))
    }

    /// Opens the block store of `--store`: the data directory's, or a bucket.
    pub(crate) fn store(&self) -> anyhow::Result<NodeStore> {
        self.open_store(&self.data_dir()?)
    }

    /// Opens the block store of `--store`, with `dir` the data directory already open.
    pub(crate) fn open_store(&self, dir: &DataDir) -> anyhow::Result<NodeStore> {
        Ok(match &self.store {
            StoreUrl::Redb => NodeStore::Redb(dir.open_store(RedbConfig::default())?),
            StoreUrl::S3(url) => NodeStore::S3(
                S3Blockstore::from_url(url, &S3Config::default().with_cache_bytes(self.cache_size))
                    .with_context(|| format!("block store {url}"))?,
            ),
        })
    }
}

/// The node's swarm in `mode` on `store`, its observer, and the metrics endpoint (its address
/// and task) when `--metrics` asks for one: what `get` and `serve` start with.
async fn start_node(
    flags: &GlobalFlags,
    keypair: Keypair,
    store: NodeStore,
    mode: kad::Mode,
    network: &NetworkArgs,
) -> anyhow::Result<(Swarm<Node>, Observer, Option<(SocketAddr, JoinHandle<()>)>)> {
    let mut registry = Registry::default();
    let (swarm, libp2p_metrics) = swarm::build(
        keypair,
        store,
        mode,
        &mut registry,
        &flags.bitswap_versions,
        network.limits.limits(),
    )?;
    let metrics = match network.metrics {
        Some(address) => Some(metrics::serve(address, Arc::new(registry)).await?),
        None => None,
    };
    Ok((swarm, Observer::new(libp2p_metrics), metrics))
}

/// Runs the command line.
pub(crate) async fn run(cli: Cli) -> anyhow::Result<()> {
    let flags = GlobalFlags {
        data_dir: cli.data_dir,
        store: cli.store,
        cache_size: cli.cache_size,
        json: cli.json,
        bitswap_versions: cli.bitswap_versions,
    };
    match cli.command {
        Command::Add(args) => add::run(&flags, args).await,
        Command::Export(args) => export::run(&flags, args).await,
        Command::Serve(args) => serve::run(&flags, args).await,
        Command::Get(args) => get::run(&flags, args).await,
        Command::Block(BlockCommand::Get { cid, output }) => block::get(&flags, cid, output).await,
        Command::Block(BlockCommand::Put {
            file,
            cid_version,
            codec,
        }) => block::put(&flags, &file, cid_version, codec).await,
        Command::Car(CarCommand::Export { cid, output }) => car::export(&flags, cid, &output).await,
        Command::Car(CarCommand::Import { file }) => car::import(&flags, &file).await,
        Command::Id => {
            let dir = flags.data_dir()?;
            let peer_id = dir.identity()?.public().to_peer_id();
            output::emit(
                flags.json,
                &json!({ "peer_id": peer_id.to_string(), "data_dir": dir.path() }),
                || peer_id.to_string(),
            )?;
            Ok(())
        }
    }
}
