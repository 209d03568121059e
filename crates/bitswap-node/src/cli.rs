//! The command line, as clap parses it.

use std::{net::SocketAddr, path::PathBuf};

use bitswap::Version;
use cid::Cid;
use clap::{ArgAction, Args, Parser, Subcommand};
use ipfs_formats::unixfs::{DEFAULT_CHUNK_SIZE_BYTES, DEFAULT_MAX_LINKS, HashFunction};
use libp2p::Multiaddr;

use bitswap_node::store::StoreUrl;

use crate::swarm::{Limits, MemoryLimit};

/// A Bitswap node: UnixFS files with kubo's CIDs, raw blocks and CAR files in a persistent
/// block store.
#[derive(Debug, Parser)]
#[command(
    name = "bitswap-node",
    version,
    after_help = "Example:\n  \
        bitswap-node serve report.pdf    # add it, serve it, print how to fetch it"
)]
pub(crate) struct Cli {
    /// The data directory (identity key and block store). Default:
    /// $XDG_DATA_HOME/bitswap-node or ~/.local/share/bitswap-node.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Where the blocks are: `redb` (a file in the data directory) or `s3://BUCKET[/PREFIX]`
    /// (objects of a bucket that other nodes may share; endpoint, region and credentials from
    /// AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and
    /// AWS_ALLOW_HTTP=true for a plain-HTTP endpoint). The identity stays in the data
    /// directory either way.
    #[arg(long, global = true, default_value = "redb", value_name = "URL")]
    pub(crate) store: StoreUrl,
    /// Bytes of hot blocks an S3 store keeps in memory (K, M or G suffixes, powers of 1024).
    #[arg(long, global = true, default_value = "256M", value_name = "BYTES",
        value_parser = parse_bytes)]
    pub(crate) cache_size: u64,
    /// Print exactly one JSON object on stdout (errors still go to stderr).
    #[arg(long, global = true, num_args = 0..=1, require_equals = true,
        default_missing_value = "true", default_value_t = false, action = ArgAction::Set,
        value_name = "BOOL")]
    pub(crate) json: bool,
    /// Bitswap versions to speak, most preferred first, comma separated (1.2.0, 1.1.0, 1.0.0,
    /// legacy). For interoperability tests; default: all four.
    #[arg(long, global = true, hide = true, value_delimiter = ',', value_parser = parse_version)]
    pub(crate) bitswap_versions: Vec<Version>,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Import a file or directory into the store as UnixFS, with kubo's `ipfs add` layout.
    #[command(after_help = "Examples:\n  \
        bitswap-node add report.pdf                  # kubo's `ipfs add` CID (CIDv0)\n  \
        bitswap-node add --cid-version 1 photos/     # CIDv1 over raw leaves\n  \
        bitswap-node add --raw-leaves report.pdf     # CIDv0 over raw leaves\n  \
        bitswap-node add --preserve-mode --preserve-mtime photos/    # keep modes and times")]
    Add(AddArgs),
    /// Write the file or directory of a CID from the store to a new path.
    #[command(after_help = "Example:\n  \
        bitswap-node export QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH -o empty")]
    Export(ExportArgs),
    /// Add paths, then serve the store over Bitswap until Ctrl-C or SIGTERM.
    #[command(after_help = "Examples:\n  \
        bitswap-node serve report.pdf    # on 127.0.0.1, TCP and QUIC; prints the `get` to run\n  \
        bitswap-node serve --listen /ip4/0.0.0.0/tcp/4001 \
        --listen /ip4/0.0.0.0/udp/4001/quic-v1 photos/")]
    Serve(ServeArgs),
    /// Fetch a file or directory from peers over Bitswap (a DAG walk) and write it out.
    #[command(after_help = "Examples (the address is one `serve` prints):\n  \
        bitswap-node get CID --peer /ip4/127.0.0.1/tcp/4001/p2p/PEER -o copy\n  \
        bitswap-node get CID --peer /ip4/127.0.0.1/udp/4001/quic-v1/p2p/PEER -o copy\n  \
        bitswap-node get CID --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/PEER    # providers \
        from the DHT")]
    Get(GetArgs),
    /// Raw blocks of the store.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        bitswap-node block put block.bin\n  \
        bitswap-node block get CID -o block.bin"
    )]
    Block(BlockCommand),
    /// CARv1 files.
    #[command(
        subcommand,
        after_help = "Examples:\n  \
        bitswap-node car export CID -o dag.car\n  \
        bitswap-node car import dag.car"
    )]
    Car(CarCommand),
    /// Print the node's peer id.
    #[command(after_help = "Example:\n  \
        bitswap-node id --json")]
    Id,
}

/// `add`.
#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    /// The file or directory.
    pub(crate) path: PathBuf,
    /// How files become blocks.
    #[command(flatten)]
    pub(crate) layout: LayoutArgs,
}

/// The layout flags of `add` and `serve`.
#[derive(Debug, Args)]
pub(crate) struct LayoutArgs {
    /// CID version of the dag-pb nodes (1 makes leaves raw unless --raw-leaves=false).
    /// Default: 0, or 1 with a --hash other than sha2-256 (CIDv0 is sha2-256 only).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub(crate) cid_version: Option<u8>,
    /// Hash function of the CIDs, as kubo's `ipfs add --hash`.
    #[arg(long, value_enum, default_value_t = Hash::Sha2_256, value_name = "NAME")]
    pub(crate) hash: Hash,
    /// Leaves as raw blocks instead of UnixFS file nodes.
    // As kubo's flags: a value only after `=`, so `--raw-leaves FILE` adds FILE.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        value_name = "BOOL")]
    pub(crate) raw_leaves: Option<bool>,
    /// Chunk size in bytes.
    #[arg(long, default_value_t = DEFAULT_CHUNK_SIZE_BYTES)]
    pub(crate) chunk_size: usize,
    /// Most links per file node.
    #[arg(long, default_value_t = DEFAULT_MAX_LINKS)]
    pub(crate) max_links: usize,
    /// Also add directory entries whose name starts with a dot.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub(crate) hidden: bool,
    /// Store the permission bits of files and directories (UnixFS 1.5 `mode`, kubo's flag);
    /// `get` and `export` restore them. Changes the CIDs.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub(crate) preserve_mode: bool,
    /// Store the modification time of files and directories (UnixFS 1.5 `mtime`, kubo's
    /// flag); `get` and `export` restore it. Changes the CIDs.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true",
        default_value_t = false, action = ArgAction::Set, value_name = "BOOL")]
    pub(crate) preserve_mtime: bool,
}

/// Hash functions `add` and `serve` hash with (kubo's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Hash {
    /// sha2-256 (kubo's default).
    #[value(name = "sha2-256")]
    Sha2_256,
    /// blake2b-256.
    #[value(name = "blake2b-256")]
    Blake2b256,
    /// sha3-256.
    #[value(name = "sha3-256")]
    Sha3_256,
}

impl From<Hash> for HashFunction {
    fn from(hash: Hash) -> Self {
        match hash {
            Hash::Sha2_256 => Self::Sha2_256,
            Hash::Blake2b256 => Self::Blake2b256,
            Hash::Sha3_256 => Self::Sha3_256,
        }
    }
}

/// `serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Files or directories to add before serving.
    pub(crate) paths: Vec<PathBuf>,
    /// Addresses to listen on (repeatable), TCP or QUIC. Default: /ip4/127.0.0.1/tcp/0 and
    /// /ip4/127.0.0.1/udp/0/quic-v1.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) listen: Vec<Multiaddr>,
    /// How added files become blocks.
    #[command(flatten)]
    pub(crate) layout: LayoutArgs,
    /// The DHT.
    #[command(flatten)]
    pub(crate) network: NetworkArgs,
}

/// The DHT and metrics flags of `serve` and `get`.
#[derive(Debug, Args)]
pub(crate) struct NetworkArgs {
    /// A DHT (kad) peer to join the network through, with its /p2p/ id (repeatable). There is
    /// no default: the node joins no public network unless told to.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) bootstrap: Vec<Multiaddr>,
    /// Serve prometheus metrics over HTTP at this address (for example 127.0.0.1:9090), path
    /// /metrics.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<SocketAddr>,
    /// Connection limits.
    #[command(flatten)]
    pub(crate) limits: LimitArgs,
}

/// The connection limits of `serve` and `get`. A connection over a limit is refused (closed
/// before any protocol runs on it); the first refusal of each peer is logged at info level
/// (see RUST_LOG), later ones at trace level.
///
/// The defaults suit a small machine: a peer needs one connection (a few while a simultaneous
/// dial or a reconnection overlaps the old one); a few hundred peers at once take tens of MiB
/// of Bitswap state and transport buffers; a handshake costs a key exchange, so a flood of
/// half-open ones is cut short.
#[derive(Debug, Args)]
pub(crate) struct LimitArgs {
    /// Most established connections in all.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub(crate) max_connections: u32,
    /// Most established connections with one peer.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub(crate) max_connections_per_peer: u32,
    /// Most incoming connections in their handshake at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub(crate) max_pending_incoming: u32,
    /// Most outgoing connections in their handshake at once.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub(crate) max_pending_outgoing: u32,
    /// Refuse new connections while the process's resident memory is above this: bytes (with
    /// an optional K, M or G suffix, powers of 1024) or a percentage of the machine's physical
    /// memory (such as 50%).
    #[arg(long, default_value = "50%", value_name = "SIZE", value_parser = parse_memory)]
    pub(crate) max_memory: MemoryLimit,
}

impl LimitArgs {
    /// The limits the flags ask for.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_established: self.max_connections,
            max_established_per_peer: self.max_connections_per_peer,
            max_pending_incoming: self.max_pending_incoming,
            max_pending_outgoing: self.max_pending_outgoing,
            max_memory: self.max_memory,
        }
    }
}

/// A memory limit from `1073741824`, `512M`, `1G` (powers of 1024) or `50%`.
fn parse_memory(text: &str) -> Result<MemoryLimit, String> {
    let text = text.trim();
    if let Some(percent) = text.strip_suffix('%') {
        let percent: f64 = percent
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a percentage"))?;
        if !(percent > 0.0 && percent <= 100.0) {
            return Err(format!("{text:?} is not between 0% (excluded) and 100%"));
        }
        return Ok(MemoryLimit::Fraction(percent / 100.0));
    }
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 10),
        Some((at, 'M' | 'm')) => (&text[..at], 20),
        Some((at, 'G' | 'g')) => (&text[..at], 30),
        _ => (text, 0),
    };
    let value: u64 = digits
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a size (bytes, K, M, G) or a percentage"))?;
    value
        .checked_mul(1 << shift)
        .filter(|bytes| *bytes > 0)
        .map(MemoryLimit::Bytes)
        .ok_or_else(|| format!("{text:?} is zero or too large"))
}

/// A size in bytes from `1048576`, `512M` or `1G` (powers of 1024); 0 is allowed.
fn parse_bytes(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        return Ok(0);
    }
    match parse_memory(text)? {
        MemoryLimit::Bytes(bytes) => Ok(bytes),
        MemoryLimit::Fraction(_) => Err(format!("{text:?} is not a size in bytes")),
    }
}

/// `get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The root of the file or directory.
    pub(crate) cid: Cid,
    /// A peer to fetch from, with its /p2p/ id (repeatable). Providers found through the DHT
    /// (see --bootstrap) are asked too.
    #[arg(long, value_name = "MULTIADDR")]
    pub(crate) peer: Vec<Multiaddr>,
    /// Where to write it (must not exist). Default: the CID, in the current directory.
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,
    /// Give up after this many seconds without a new block.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub(crate) timeout: u64,
    /// Give up after this many seconds with no peer connected: every peer gone (a server
    /// stopped mid-transfer) and none come back or found through the DHT, or none reached.
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    pub(crate) no_peer_timeout: u64,
    /// The DHT: without --peer, providers are found through the --bootstrap peers.
    #[command(flatten)]
    pub(crate) network: NetworkArgs,
}

/// `export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The root of the file or directory.
    pub(crate) cid: Cid,
    /// Where to write it (must not exist).
    #[arg(short, long)]
    pub(crate) output: PathBuf,
}

/// `block` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BlockCommand {
    /// Print a block's bytes (or write them to a file with -o).
    #[command(after_help = "Example:\n  \
        bitswap-node block get CID -o block.bin")]
    Get {
        /// The block.
        cid: Cid,
        /// Write the bytes to this file (must not exist) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Store a file's bytes as one block.
    #[command(after_help = "Examples:\n  \
        bitswap-node block put block.bin                  # CIDv1, raw\n  \
        bitswap-node block put --codec dag-pb node.pb     # CIDv1, dag-pb\n  \
        bitswap-node block put --codec dag-cbor node.cbor # CIDv1, dag-cbor")]
    Put {
        /// The file (at most 2 MiB).
        file: PathBuf,
        /// CID version (0 means dag-pb).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
        cid_version: u8,
        /// Codec of a CIDv1.
        #[arg(long, value_enum, default_value_t = Codec::Raw)]
        codec: Codec,
    },
}

/// Codecs `block put` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Codec {
    /// Raw bytes (0x55).
    Raw,
    /// dag-pb (0x70).
    DagPb,
    /// dag-cbor (0x71): its CIDs (tag 42) are links for `car export`.
    DagCbor,
}

/// `car` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum CarCommand {
    /// Write the DAG under a CID as a CARv1 file.
    #[command(after_help = "Example:\n  \
        bitswap-node car export CID -o dag.car")]
    Export {
        /// The root.
        cid: Cid,
        /// The CAR file to write (must not exist).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Store every block of a CARv1 file, each checked against its CID.
    #[command(after_help = "Example:\n  \
        bitswap-node car import dag.car")]
    Import {
        /// The CAR file.
        file: PathBuf,
    },
}

/// A Bitswap version from `1.2.0`, `1.1.0`, `1.0.0` or `legacy` (or its protocol id).
fn parse_version(text: &str) -> Result<Version, String> {
    match text {
        "1.2.0" => Ok(Version::V1_2_0),
        "1.1.0" => Ok(Version::V1_1_0),
        "1.0.0" => Ok(Version::V1_0_0),
        "legacy" => Ok(Version::Legacy),
        other => Version::from_protocol(other).ok_or_else(|| {
            format!("unknown Bitswap version {other:?} (1.2.0, 1.1.0, 1.0.0, legacy)")
        }),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn every_command_has_an_example() {
        fn check(command: &clap::Command, path: &str) {
            let help = command
                .get_after_help()
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(help.contains(path), "`{path} --help` has no example");
            for sub in command.get_subcommands() {
                if sub.get_name() != "help" {
                    check(sub, &format!("{path} {}", sub.get_name()));
                }
            }
        }
        let cli = Cli::command();
        cli.clone().debug_assert();
        check(&cli, "bitswap-node");
    }

    #[test]
    fn boolean_flags_take_a_value_only_after_equals() {
        fn check(command: &clap::Command, path: &str) {
            for arg in command.get_arguments() {
                let takes_bool = arg.get_value_names().is_some_and(|n| n == ["BOOL"]);
                let plain = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
                if takes_bool {
                    assert!(arg.is_require_equals_set(), "{path} --{}", arg.get_id());
                } else if plain && !matches!(arg.get_id().as_str(), "help" | "version") {
                    panic!("{path} --{}: a flag that refuses `=false`", arg.get_id());
                }
            }
            for sub in command.get_subcommands() {
                check(sub, &format!("{path} {}", sub.get_name()));
            }
        }
        check(&Cli::command(), "bitswap-node");
    }

    #[test]
    fn memory_limits_parse() {
        assert_eq!(parse_memory("50%"), Ok(MemoryLimit::Fraction(0.5)));
        assert_eq!(parse_memory("1048576"), Ok(MemoryLimit::Bytes(1 << 20)));
        assert_eq!(parse_memory("512M"), Ok(MemoryLimit::Bytes(512 << 20)));
        assert_eq!(parse_memory("2g"), Ok(MemoryLimit::Bytes(2 << 30)));
        for bad in [
            "0",
            "0%",
            "101%",
            "x",
            "12T",
            "",
            "%",
            "99999999999999999999G",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }
}
