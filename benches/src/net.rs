//! Pieces of the network benches (`net-bench`): nodes over loopback TCP+Noise+Yamux, a
//! server child process, the verified-transfer ceiling and fairness figures.
//!
//! The ceiling is what a receiver can do at best with the same transport: a raw libp2p stream
//! carrying the same bytes, the receiver hashing (SHA-256) every 256 KiB as Bitswap's
//! verification does. It runs on the same connection, between the same two processes, in the
//! same run as the Bitswap transfer it is compared with.

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use bitswap::{Block, Blockstore, MemoryBlockstore, MemoryBlockstoreError};
use bytes::Bytes;
use cid::Cid;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use ipfs_blockstore::multicodec::RAW;
use ipfs_blockstore::{RedbBlockstore, RedbBlockstoreError, S3Blockstore, S3BlockstoreError};
use libp2p::{
    Multiaddr, PeerId, Stream, StreamProtocol, Swarm, SwarmBuilder, identify, noise, ping,
    swarm::{NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle},
    tcp, yamux,
};
use multihash_codetable::{Code, MultihashDigest};

/// The raw-stream protocol of the ceiling: the client writes a big-endian `u64` byte count,
/// the server answers with that many bytes.
pub const CEILING_PROTOCOL: StreamProtocol = StreamProtocol::new("/bitswap-bench/ceiling/1.0.0");

/// The unit the ceiling's receiver hashes, as a Bitswap client verifies a block: 256 KiB.
pub const HASH_UNIT: usize = 256 * 1024;

/// A bench node: Bitswap beside raw streams, on one connection per peer; identify and ping
/// only where [`node_identified`] made it.
#[derive(NetworkBehaviour)]
#[behaviour(prelude = "libp2p::swarm::derive_prelude", to_swarm = "NodeEvent")]
pub struct Node {
    /// The node under test.
    pub bitswap: bitswap::Behaviour<BenchStore>,
    /// Raw streams for the ceiling.
    pub stream: libp2p_stream::Behaviour,
    /// identify, as `bitswap-node` has it (Helia needs it to learn that a peer speaks Bitswap).
    pub identify: Toggle<identify::Behaviour>,
    /// ping, as `bitswap-node` has it.
    pub ping: Toggle<ping::Behaviour>,
}

/// What a [`Node`] reports.
#[derive(Debug)]
pub enum NodeEvent {
    /// From Bitswap.
    Bitswap(bitswap::Event),
    /// Raw streams report nothing.
    Stream,
    /// From identify or ping (ignored).
    Other,
}

impl From<identify::Event> for NodeEvent {
    fn from(_: identify::Event) -> Self {
        Self::Other
    }
}

impl From<ping::Event> for NodeEvent {
    fn from(_: ping::Event) -> Self {
        Self::Other
    }
}

impl From<bitswap::Event> for NodeEvent {
    fn from(event: bitswap::Event) -> Self {
        Self::Bitswap(event)
    }
}

impl From<()> for NodeEvent {
    fn from((): ()) -> Self {
        Self::Stream
    }
}

/// The store of a bench [`Node`].
#[derive(Debug)]
pub enum BenchStore {
    /// Keeps every block.
    Memory(MemoryBlockstore),
    /// Keeps nothing: for clients that fetch more than memory should hold (blocks are still
    /// verified on arrival; writes succeed and are dropped).
    Sink,
    /// The persistent store (net-bench's `s3` scenario compares the S3 store with it).
    Redb(RedbBlockstore),
    /// Blocks in an S3 bucket.
    S3(S3Blockstore),
}

/// The error of a [`BenchStore`]: its store's.
#[derive(Debug, thiserror::Error)]
pub enum BenchStoreError {
    /// Of the memory store.
    #[error(transparent)]
    Memory(#[from] MemoryBlockstoreError),
    /// Of the redb store.
    #[error(transparent)]
    Redb(#[from] RedbBlockstoreError),
    /// Of the S3 store.
    #[error(transparent)]
    S3(#[from] S3BlockstoreError),
}

/// Runs `$call` on the store of a [`BenchStore`], with `$sink` for [`BenchStore::Sink`].
macro_rules! each_store {
    ($self:ident, $store:ident => $call:expr, $sink:expr) => {
        match $self {
            Self::Memory($store) => Ok($call.await?),
            Self::Redb($store) => Ok($call.await?),
            Self::S3($store) => Ok($call.await?),
            Self::Sink => Ok($sink),
        }
    };
}

impl Blockstore for BenchStore {
    type Error = BenchStoreError;

    async fn get(&self, cid: &Cid) -> Result<Option<Block>, Self::Error> {
        each_store!(self, store => store.get(cid), None)
    }

    async fn has(&self, cid: &Cid) -> Result<bool, Self::Error> {
        each_store!(self, store => store.has(cid), false)
    }

    async fn get_size(&self, cid: &Cid) -> Result<Option<usize>, Self::Error> {
        each_store!(self, store => store.get_size(cid), None)
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), Self::Error> {
        each_store!(self, store => store.put_many(blocks), ())
    }

    async fn delete(&self, cid: &Cid) -> Result<(), Self::Error> {
        each_store!(self, store => store.delete(cid), ())
    }

    async fn flush(&self) -> Result<(), Self::Error> {
        each_store!(self, store => store.flush(), ())
    }
}

/// A swarm of a [`Node`] with `config` and a memory store; see [`node_with`].
pub fn node(config: bitswap::Config) -> Swarm<Node> {
    node_with(BenchStore::Memory(MemoryBlockstore::new()), config)
}

/// A swarm of a [`Node`] on `store` with `config`, on TCP+Noise+Yamux, connections kept 10
/// minutes.
pub fn node_with(store: BenchStore, config: bitswap::Config) -> Swarm<Node> {
    build(store, config, yamux::Config::default, false)
}

/// A swarm of a [`Node`] on `store` with `config`, on TCP+Noise and the Yamux that `yamux`
/// configures, connections kept 10 minutes, with identify (protocol `/ipfs/0.1.0`; listen addresses not told) and ping,
/// as `bitswap-node` has them.
pub fn node_identified(
    store: BenchStore,
    config: bitswap::Config,
    yamux: fn() -> yamux::Config,
) -> Swarm<Node> {
    build(store, config, yamux, true)
}

fn build(
    store: BenchStore,
    config: bitswap::Config,
    yamux: fn() -> yamux::Config,
    identified: bool,
) -> Swarm<Node> {
    SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux,
        )
        .expect("tcp, noise and yamux")
        .with_behaviour(|key| Node {
            bitswap: bitswap::Behaviour::new(store, config),
            stream: libp2p_stream::Behaviour::new(),
            identify: identified
                .then(|| {
                    // Listen addresses hidden: a peer that reached this node through a shaped
                    // link must not learn where to dial it around the link.
                    let config = identify::Config::new("/ipfs/0.1.0".to_owned(), key.public())
                        .with_hide_listen_addrs(true);
                    identify::Behaviour::new(config)
                })
                .into(),
            ping: identified.then(ping::Behaviour::default).into(),
        })
        .expect("infallible")
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(600))
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build()
}

/// Deterministic pseudo-random bytes (xorshift64), fast enough for hundreds of MiB.
pub fn bytes(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// Block `index` of the set `seed`: CIDv1 raw, `size` bytes. The same arguments give the same
/// block in every process.
pub fn block(seed: u64, index: u64, size: usize) -> Block {
    let data = bytes(size, seed.wrapping_mul(1_000_003).wrapping_add(index));
    Block::new(Cid::new_v1(RAW, Code::Sha2_256.digest(&data)), data).expect("valid block")
}

/// Blocks `range` of the set `seed`.
pub fn blocks(seed: u64, range: std::ops::Range<u64>, size: usize) -> Vec<Block> {
    range.map(|i| block(seed, i, size)).collect()
}

/// Starts listening on 127.0.0.1 and returns the first address.
pub async fn listen(swarm: &mut Swarm<Node>) -> Multiaddr {
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .expect("listen");
    loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            return address;
        }
    }
}

/// Dials `address` and polls until `peer` is connected.
pub async fn connect(swarm: &mut Swarm<Node>, peer: PeerId, address: Multiaddr) {
    swarm.dial(address).expect("dial");
    loop {
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = swarm.select_next_some().await
            && peer_id == peer
        {
            return;
        }
    }
}

/// Answers ceiling requests on `control` forever (run it in a task): each stream gets the
/// bytes it asks for, taken from `payloads` in turn (cycling), so the ceiling moves the same
/// bytes as a Bitswap fetch of those blocks, not one block that stays in the CPU's cache.
pub async fn serve_ceiling(mut control: libp2p_stream::Control, payloads: Vec<Bytes>) {
    let Ok(mut incoming) = control.accept(CEILING_PROTOCOL) else {
        return;
    };
    let payloads = std::sync::Arc::new(payloads);
    while let Some((_, stream)) = incoming.next().await {
        tokio::spawn(answer_ceiling(stream, payloads.clone()));
    }
}

async fn answer_ceiling(
    mut stream: Stream,
    payloads: std::sync::Arc<Vec<Bytes>>,
) -> std::io::Result<()> {
    let mut request = [0u8; 8];
    stream.read_exact(&mut request).await?;
    let mut left = u64::from_be_bytes(request) as usize;
    for payload in payloads.iter().filter(|p| !p.is_empty()).cycle() {
        if left == 0 {
            break;
        }
        let n = left.min(payload.len());
        stream.write_all(&payload[..n]).await?;
        left -= n;
    }
    stream.close().await
}

/// Reads `total` bytes from `peer` over a raw stream, hashing every [`HASH_UNIT`] with
/// SHA-256; returns the time from the request to the last hash.
pub async fn fetch_ceiling(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    total: usize,
) -> std::io::Result<Duration> {
    let mut stream = control
        .open_stream(peer, CEILING_PROTOCOL)
        .await
        .map_err(std::io::Error::other)?;
    let start = Instant::now();
    stream.write_all(&(total as u64).to_be_bytes()).await?;
    stream.flush().await?;
    let mut unit = vec![0u8; HASH_UNIT];
    let mut left = total;
    let mut check = 0u8;
    while left > 0 {
        let n = left.min(HASH_UNIT);
        stream.read_exact(&mut unit[..n]).await?;
        check ^= Code::Sha2_256.digest(&unit[..n]).digest()[0];
        left -= n;
    }
    let elapsed = start.elapsed();
    std::hint::black_box(check);
    Ok(elapsed)
}

/// Jain's fairness index of `values`: 1 when all are equal, 1/n when one takes everything.
pub fn jain(values: &[f64]) -> f64 {
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|v| v * v).sum();
    if squares == 0.0 {
        return 1.0;
    }
    sum * sum / (values.len() as f64 * squares)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// CPU seconds (user + system) process `pid` used so far, from `/proc/PID/stat` in clock
/// ticks of 10 ms (Linux's `USER_HZ`); `None` where there is no `/proc`.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}

/// Resident memory of process `pid` now and at its peak (`VmRSS`, `VmHWM`), in bytes, from
/// `/proc/PID/status`; `None` where there is no `/proc`.
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// A server child process (this binary, run with `args`), killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// Kept open: the child serves until its stdin closes.
    _stdin: Option<ChildStdin>,
    /// The server's peer id.
    pub peer: PeerId,
    /// Its listening address.
    pub address: Multiaddr,
}

impl ServerProcess {
    /// Starts `std::env::current_exe()` with `args`; it must print one line
    /// `PEER_ID MULTIADDR` on stdout when ready.
    pub fn spawn(args: &[String]) -> std::io::Result<Self> {
        Self::spawn_within(args, Duration::from_secs(600))
    }

    /// [`ServerProcess::spawn`], but a child that has not printed its line within `limit` is
    /// killed and an error returned.
    pub fn spawn_within(args: &[String], limit: Duration) -> std::io::Result<Self> {
        Self::spawn_with_env(args, &[], limit)
    }

    /// [`ServerProcess::spawn_within`], with `env` added to the child's environment.
    pub fn spawn_with_env(
        args: &[String],
        env: &[(&str, String)],
        limit: Duration,
    ) -> std::io::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = sender.send(read);
        });
        let line = match receiver.recv_timeout(limit) {
            Ok(Ok(line)) => line,
            failed => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(match failed {
                    Ok(Err(error)) => error,
                    _ => std::io::Error::other(format!("no server line within {limit:?}")),
                });
            }
        };
        let bad = || std::io::Error::other(format!("bad server line {line:?}"));
        let (peer, address) = line.trim().split_once(' ').ok_or_else(bad)?;
        let peer = peer.parse().map_err(|_| bad())?;
        let address = address.parse().map_err(|_| bad())?;
        Ok(Self {
            child,
            _stdin: stdin,
            peer,
            address,
        })
    }

    /// CPU seconds (user + system) the child used so far; see [`cpu_seconds`].
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.child.id())
    }

    /// The child's resident memory now and at its peak; see [`memory`].
    pub fn memory(&self) -> Option<(u64, u64)> {
        memory(self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A [`Node`] polled by its own task until stopped; stopping hands it back.
pub type Driver = bitswap::testing::Driver<Node>;

/// Polls `swarm` until this process's stdin closes (how a [`ServerProcess`] child learns that
/// its parent is done with it).
pub async fn run_until_stdin_closes(mut swarm: Swarm<Node>) {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    loop {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            read = tokio::io::AsyncReadExt::read(&mut stdin, &mut buffer) => {
                if matches!(read, Ok(0) | Err(_)) {
                    return;
                }
            }
        }
    }
}
