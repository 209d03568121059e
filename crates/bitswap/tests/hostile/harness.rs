//! What every hostile scenario uses: the target node, the honest fetch, raw attackers and
//! memory readings.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use bitswap::{
    Behaviour, Block, Blockstore, Config, Entry, MemoryBlockstore, Message, Version, Wantlist,
    protocol::encode,
};
use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use ipfs_blockstore::testing;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm,
    swarm::{NetworkBehaviour, SwarmEvent},
};
use multihash_codetable::{Code, MultihashDigest};
use tokio::{task::JoinHandle, time::timeout};

pub(crate) use crate::common::{listen, new_swarm};
pub(crate) use bitswap::testing::Driver;

/// Bound of every wait in these tests.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(90);
/// What the honest fetch may take beyond twice its normal time: scheduling noise.
pub(crate) const NOISE: Duration = Duration::from_millis(250);
/// Blocks the honest peer fetches: 32 of 256 KiB.
pub(crate) const BLOCKS: u32 = 32;
pub(crate) const BLOCK_SIZE: usize = 256 * 1024;
pub(crate) const V1_2_0: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");

pub(crate) type Node = Swarm<Behaviour<MemoryBlockstore>>;

/// Deterministic pseudo-random bytes.
pub(crate) fn bytes(len: usize, seed: u64) -> Bytes {
    testing::bytes(seed, len)
}

pub(crate) fn raw_block(len: usize, seed: u64) -> Block {
    testing::raw_block(seed, len)
}

/// Resident memory of this process, in bytes (Linux).
pub(crate) fn rss() -> u64 {
    status_bytes("VmRSS:")
}

/// Peak resident memory of this process, in bytes (Linux).
pub(crate) fn peak_rss() -> u64 {
    status_bytes("VmHWM:")
}

/// Resets this process's peak resident memory (VmHWM) to its current size (Linux 4.0+), so
/// that the peak read later is the attack's, not an earlier test's.
pub(crate) fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("/proc/self/clear_refs");
}

/// Resident memory now and at its peak since [`reset_peak_rss`], in MiB, for reports.
pub(crate) fn memory_report(before: u64) -> String {
    format!(
        "RSS {} -> {} MiB, peak {} MiB",
        before >> 20,
        rss() >> 20,
        peak_rss() >> 20
    )
}

/// A field of `/proc/self/status` given in kB, in bytes.
pub(crate) fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect(field)
        * 1024
}

pub(crate) async fn connect<B: NetworkBehaviour>(
    swarm: &mut Swarm<B>,
    peer: PeerId,
    address: Multiaddr,
) {
    swarm.dial(address).expect("dial");
    timeout(TIMEOUT, async {
        loop {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                swarm.select_next_some().await
                && peer_id == peer
            {
                return;
            }
        }
    })
    .await
    .expect("connected");
}

/// The node under attack, its blocks, and where to reach it.
pub(crate) struct Target {
    pub(crate) peer: PeerId,
    pub(crate) address: Multiaddr,
    pub(crate) blocks: Vec<Block>,
    pub(crate) driver: Driver<Behaviour<MemoryBlockstore>>,
    /// The attacker's swarm once an attack has run: kept connected until the target is
    /// dropped, so that a test can read what the target holds for it after stopping it.
    /// Aborted on drop, so its connection does not outlive the test.
    pub(crate) attacker: Option<AbortOnDrop>,
}

/// A task aborted when this is dropped.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) async fn target() -> Target {
    target_of(BLOCK_SIZE).await
}

/// A node as [`target`]'s, holding [`BLOCKS`] blocks of `size` bytes.
pub(crate) async fn target_of(size: usize) -> Target {
    target_with((0..u64::from(BLOCKS)).map(|i| raw_block(size, i)).collect()).await
}

/// A node holding `blocks` in memory, listening on loopback. It spreads its answers over
/// streams as it does for far peers (a loopback connection is set up too fast for that).
pub(crate) async fn target_with(blocks: Vec<Block>) -> Target {
    let store = MemoryBlockstore::new();
    store.put_many(blocks.clone()).await.expect("store");
    let network = bitswap::network::Config::default().with_min_setup_to_spread(Duration::ZERO);
    let config = Config::default().with_network(network);
    let mut swarm: Node = new_swarm(Behaviour::new(store, config));
    let address = listen(&mut swarm).await;
    Target {
        peer: *swarm.local_peer_id(),
        address,
        blocks,
        driver: Driver::start(swarm),
        attacker: None,
    }
}

/// A fresh honest node fetches every block of `target`; returns how long it took.
pub(crate) async fn honest_fetch(target: &Target) -> Duration {
    let mut client: Node = new_swarm(Behaviour::new(MemoryBlockstore::new(), Config::default()));
    connect(&mut client, target.peer, target.address.clone()).await;
    let control = client.behaviour().control();
    let driver = Driver::start(client);
    let cids: Vec<Cid> = target.blocks.iter().map(|b| *b.cid()).collect();
    let elapsed = timed_fetch(&control, cids).await;
    drop(driver.stop().await);
    elapsed
}

/// Fetches every block of `cids` through `control`; returns how long it took.
pub(crate) async fn timed_fetch(control: &bitswap::Control, cids: Vec<Cid>) -> Duration {
    let count = cids.len();
    let start = Instant::now();
    let got: Vec<Block> = timeout(TIMEOUT, async {
        control
            .get_many(cids, None)
            .await
            .expect("query")
            .try_collect()
            .await
            .expect("blocks")
    })
    .await
    .expect("fetch in time");
    let elapsed = start.elapsed();
    assert_eq!(got.len(), count);
    elapsed
}

/// A peer (the message layer alone) that asks `target` for every block and then is never
/// polled again, so its connection stops reading.
pub(crate) async fn lazy_peer(target: &Target) -> Swarm<bitswap::network::Behaviour> {
    use bitswap::network;
    let mut lazy = new_swarm(network::Behaviour::new(network::Config::default()));
    connect(&mut lazy, target.peer, target.address.clone()).await;
    let mut want = Message::default();
    for block in &target.blocks {
        want.wantlist
            .entries
            .push(Entry::want_block(*block.cid(), 1));
    }
    lazy.behaviour_mut().send(target.peer, want).expect("send");
    timeout(TIMEOUT, async {
        loop {
            if let SwarmEvent::Behaviour(network::Event::MessageSent { .. }) =
                lazy.select_next_some().await
            {
                return;
            }
        }
    })
    .await
    .expect("wants sent");
    lazy
}

/// A raw attacker connected to `target`: it opens Bitswap streams and writes what it likes.
pub(crate) async fn attacker(target: &Target) -> (libp2p_stream::Control, JoinHandle<()>) {
    let mut swarm = new_swarm(libp2p_stream::Behaviour::new());
    let control = swarm.behaviour().new_control();
    connect(&mut swarm, target.peer, target.address.clone()).await;
    let task = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    (control, task)
}

pub(crate) fn frame(message: &Message) -> Vec<u8> {
    encode(message, Version::V1_2_0).concat()
}

pub(crate) fn random_wants(count: usize, seed: u64, full: bool) -> Message {
    Message {
        wantlist: Wantlist {
            entries: (0..count)
                .map(|i| {
                    let cid = Cid::new_v1(
                        0x55,
                        Code::Sha2_256.digest(&(seed * 1_000_003 + i as u64).to_le_bytes()),
                    );
                    Entry::want_block(cid, i as i32)
                })
                .collect(),
            full,
        },
        ..Message::default()
    }
}

/// How long the honest fetch may take under attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// At most twice its normal time, plus [`NOISE`].
    TwiceNormal,
    /// Only within [`TIMEOUT`].
    Completes,
}

/// The bound of the want floods: twice the normal time in release builds (see the module
/// docs for debug builds).
pub(crate) const FLOOD_BOUND: Bound = if cfg!(debug_assertions) {
    Bound::Completes
} else {
    Bound::TwiceNormal
};

/// Runs the honest fetch alone, then during `attack`, and checks time and memory.
pub(crate) async fn under_attack<F, Fut>(
    name: &str,
    bound: Bound,
    memory_bound: u64,
    attack: F,
) -> Target
where
    F: FnOnce(libp2p_stream::Control, PeerId) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut target = target().await;
    // Warm up (connections, allocator), then measure the normal time.
    honest_fetch(&target).await;
    let normal = honest_fetch(&target).await;
    reset_peak_rss();
    let before = rss();
    let (control, swarm_task) = attacker(&target).await;
    let attack = tokio::spawn(attack(control, target.peer));
    // Let the attack get going, then fetch while it lasts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let attacked = honest_fetch(&target).await;
    let after = rss();
    attack.abort();
    // The attacker stays connected: had it left now, the target could forget it (and what
    // it sent) before a test reads the target's state.
    target.attacker = Some(AbortOnDrop(swarm_task));
    eprintln!(
        "{name}: honest fetch {normal:?} alone, {attacked:?} under attack; RSS {} -> {} MiB, \
         peak {} MiB",
        before >> 20,
        after >> 20,
        peak_rss() >> 20
    );
    if bound == Bound::TwiceNormal {
        assert_twice_normal(&format!("{name}: the honest peer"), attacked, normal);
    }
    assert!(
        after.saturating_sub(before) < memory_bound,
        "{name}: RSS grew from {before} to {after} bytes"
    );
    target
}

pub(crate) const MIB: u64 = 1 << 20;

/// Opens a Bitswap 1.2.0 stream from `control` to `target`.
pub(crate) async fn open_stream(
    control: &mut libp2p_stream::Control,
    target: &Target,
) -> libp2p::Stream {
    control
        .open_stream(target.peer, V1_2_0)
        .await
        .expect("stream")
}

/// Asserts that `what` took at most twice its `normal` time, plus [`NOISE`], when
/// `attacked`.
pub(crate) fn assert_twice_normal(what: &str, attacked: Duration, normal: Duration) {
    assert!(
        attacked <= normal * 2 + NOISE,
        "{what} took {attacked:?} (normally {normal:?})"
    );
}
