//! One pass of a case for one client kind and one seed kind: fresh seeds behind fresh links,
//! the leeches, what happens at half time, and the counters each figure is made of.
//!
//! Half time is when the seeds' links have carried, downwards, half of the DAG's bytes times
//! the number of leeches present from the start; the links are sampled every [`SAMPLE`]. The
//! same samples give the longest stall of leeches whose blocks we do not see (kubo's, Helia's):
//! the longest time no link carried a byte down, from the first byte to the leech's end.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bitswap::ClientStats;
use cid::Cid;
use futures::{FutureExt, StreamExt, future::LocalBoxFuture, stream::FuturesUnordered};
use libp2p::{Multiaddr, PeerId};
use link_shaper::{Link, Proxy, ProxyHandle};

use super::{
    cases::{Case, ClientKind, HalfTime, SeedKind},
    ours::{CONNECT_LIMIT, OurFetch, OurLeech, dial_address, socket_addr},
    peers::{Implementation, PeerProcess},
};
use crate::net::ServerProcess;

/// How often the links' counters are read.
pub(super) const SAMPLE: Duration = Duration::from_millis(20);
/// Most time a seed may take to import the file and listen.
const SEED_START_LIMIT: Duration = Duration::from_secs(120);
/// Most time a kubo or Helia leech may take to start.
const LEECH_START_LIMIT: Duration = Duration::from_secs(60);
/// How much longer than a fetch's limit the pass waits, so kubo's and Helia's drivers can
/// answer for themselves (connecting, then their own timeout).
const PASS_GRACE: Duration = Duration::from_secs(30);
/// Most time to shut a link down.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(10);

/// The file every pass fetches, and where its pieces live.
#[derive(Debug)]
pub(super) struct File {
    /// The root of its DAG (kubo's layout).
    pub(super) root: Cid,
    /// Its size.
    pub(super) bytes: usize,
    /// The bytes of all the blocks of its DAG.
    pub(super) dag_bytes: u64,
    /// The seed of its pseudo-random bytes (`net::bytes`).
    pub(super) set: u64,
    /// The file on disk, for kubo seeds to import.
    pub(super) path: PathBuf,
    /// The work directory: logs, kubo's repos, downloads.
    pub(super) work: PathBuf,
    /// A fetch that takes longer fails.
    pub(super) limit: Duration,
}

/// The counters of one pass.
#[derive(Debug)]
pub(super) struct Pass {
    /// Each leech's outcome, in order; the late one (if any) last.
    pub(super) leeches: Vec<LeechOutcome>,
    /// Bytes each seed's link carried down (to the leeches).
    pub(super) seed_down: Vec<u64>,
    /// Bytes each earlier leech's link carried down (to the late leech).
    pub(super) leech_down: Vec<u64>,
    /// When half time came, from the start of the fetches.
    pub(super) half_time_at: Option<Duration>,
}

/// How one leech's fetch went.
#[derive(Debug, Default)]
pub(super) struct LeechOutcome {
    /// Whether it joined at half time.
    pub(super) late: bool,
    /// Time to fetch (ours: the walk's; others: the driver's answer).
    pub(super) time: Duration,
    /// Why it failed, if it did.
    pub(super) error: Option<String>,
    /// Our client's counters and walk.
    pub(super) ours: Option<(ClientStats, super::ours::Walk)>,
    /// The longest stall seen on the links (for leeches that are not ours).
    pub(super) link_stall: Duration,
}

/// A seed of any kind, listening on 127.0.0.1.
enum Seed {
    Ours(ServerProcess),
    Kubo(PeerProcess),
}

impl Seed {
    async fn start(kind: SeedKind, index: usize, file: &File) -> Result<Self, String> {
        match kind {
            SeedKind::Ours => {
                let args = [
                    "swarm-seed".into(),
                    file.set.to_string(),
                    file.bytes.to_string(),
                ];
                tokio::task::block_in_place(|| ServerProcess::spawn_within(&args, SEED_START_LIMIT))
                    .map(Self::Ours)
                    .map_err(|e| format!("our seed: {e}"))
            }
            SeedKind::Kubo => {
                let name = format!("kubo-seed-{index}");
                let paths = [file.path.as_path()];
                let kubo = PeerProcess::start(
                    Implementation::Kubo,
                    &name,
                    &paths,
                    &file.work,
                    SEED_START_LIMIT,
                )
                .await?;
                let added = &kubo.info["added"][file.path.to_string_lossy().as_ref()];
                if added.as_str() != Some(file.root.to_string().as_str()) {
                    return Err(format!(
                        "kubo's root {added} is not ours {}: the layouts differ",
                        file.root
                    ));
                }
                Ok(Self::Kubo(kubo))
            }
        }
    }

    fn target(&self) -> Result<(SocketAddr, PeerId), String> {
        match self {
            Self::Ours(seed) => socket_addr(&seed.address)
                .map(|address| (address, seed.peer))
                .ok_or_else(|| format!("seed address {} is not ip4/tcp", seed.address)),
            Self::Kubo(seed) => seed
                .address
                .map(|address| (address, seed.peer))
                .ok_or_else(|| "a kubo seed without a listen address".to_string()),
        }
    }

    /// Ends the process by PID at once.
    fn stop(self) {
        match self {
            Self::Ours(seed) => drop(seed),
            Self::Kubo(seed) => seed.kill(),
        }
    }

    async fn shutdown(self) {
        match self {
            Self::Ours(seed) => drop(seed),
            Self::Kubo(seed) => seed.shutdown().await,
        }
    }
}

/// A leech before its fetch.
enum Leech {
    Ours(OurLeech),
    /// kubo or Helia; whether it fetches by pinning (kubo only) instead of downloading.
    Peer(PeerProcess, bool),
}

impl Leech {
    async fn start(
        kind: ClientKind,
        name: &str,
        listen: bool,
        work: &Path,
    ) -> Result<Self, String> {
        let implementation = match kind {
            ClientKind::Ours => {
                return OurLeech::new(listen, listen).await.map(Self::Ours);
            }
            ClientKind::Kubo | ClientKind::KuboPin => Implementation::Kubo,
            ClientKind::Helia => Implementation::Helia,
        };
        let pin = kind == ClientKind::KuboPin;
        PeerProcess::start(implementation, name, &[], work, LEECH_START_LIMIT)
            .await
            .map(|peer| Self::Peer(peer, pin))
    }

    fn target(&self) -> Option<(SocketAddr, PeerId)> {
        match self {
            Self::Ours(leech) => Some((leech.listening?, leech.peer)),
            Self::Peer(peer, _) => Some((peer.address?, peer.peer)),
        }
    }

    /// The fetch of `root` after dialling `peers`, as a future that only runs when polled.
    fn fetch(
        self,
        index: usize,
        peers: Vec<(PeerId, Multiaddr)>,
        file: &File,
    ) -> LocalBoxFuture<'static, (usize, Fetched)> {
        let root = file.root;
        let (out, bytes, limit) = (
            file.work.join(format!("download-{index}")),
            file.bytes,
            file.limit,
        );
        match self {
            Self::Ours(leech) => async move {
                let fetched = leech.fetch(peers, root).await;
                (index, Fetched::Ours(fetched))
            }
            .boxed_local(),
            Self::Peer(mut peer, pin) => async move {
                let out = (!pin).then_some(out.as_path());
                let result = peer_fetch(&mut peer, peers, root, out, bytes, limit).await;
                if let Some(out) = out {
                    let _ = std::fs::remove_file(out);
                }
                (index, Fetched::Peer(peer, result))
            }
            .boxed_local(),
        }
    }
}

/// What a leech's fetch future gives back.
enum Fetched {
    Ours(OurFetch),
    /// The process (to shut down) and the time or the error.
    Peer(PeerProcess, Result<Duration, String>),
}

/// Dials `peers`, then fetches `root` into `out` (checking its size), or by a pin if there is
/// no `out`.
async fn peer_fetch(
    peer: &mut PeerProcess,
    peers: Vec<(PeerId, Multiaddr)>,
    root: Cid,
    out: Option<&Path>,
    bytes: usize,
    limit: Duration,
) -> Result<Duration, String> {
    for (_, address) in &peers {
        peer.connect(address, CONNECT_LIMIT).await?;
    }
    let Some(out) = out else {
        return peer.pin(&root.to_string(), limit).await;
    };
    let time = peer.download(&root.to_string(), out, limit).await?;
    let written = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    if written != bytes as u64 {
        return Err(format!("wrote {written} bytes, not {bytes}"));
    }
    Ok(time)
}

/// Starts a link shaped `(rate MB/s, one-way delay ms)` to `target`.
async fn link(target: SocketAddr, (rate, delay): (u64, u64)) -> Result<ProxyHandle, String> {
    let link = Link::default()
        .with_rate(Some(rate * 1_000_000))
        .with_delay(Duration::from_millis(delay));
    Proxy::start(target, link)
        .await
        .map_err(|e| format!("link: {e}"))
}

/// Runs `case` once for `client` leeches and `seeds` seeds. Every process started is ended on
/// return, on every path.
pub(super) async fn run(
    case: &Case,
    client: ClientKind,
    seed_kind: SeedKind,
    file: &File,
) -> Result<Pass, String> {
    let mut seeds = Vec::new();
    for index in 0..case.links.len() {
        seeds.push(Some(Seed::start(seed_kind, index, file).await?));
    }
    let mut seed_links = Vec::new();
    let mut seed_addresses = Vec::new();
    for (seed, &shape) in seeds.iter().flatten().zip(case.links) {
        let (target, peer) = seed.target()?;
        let proxy = link(target, shape).await?;
        seed_addresses.push((peer, dial_address(proxy.local_addr().port(), peer)));
        seed_links.push(proxy);
    }
    let late = case.late_leech.is_some();
    let mut leeches = Vec::new();
    for index in 0..case.leeches + usize::from(late) {
        let name = format!("{}-leech-{index}", client.name());
        leeches.push(Leech::start(client, &name, late, &file.work).await?);
    }
    let mut leech_links = Vec::new();
    let mut leech_addresses = Vec::new();
    if let Some(shape) = case.late_leech {
        for leech in &leeches[..case.leeches] {
            let (target, peer) = leech.target().ok_or("a leech does not listen")?;
            let proxy = link(target, shape).await?;
            leech_addresses.push((peer, dial_address(proxy.local_addr().port(), peer)));
            leech_links.push(proxy);
        }
    }
    let mut fetches = leeches.into_iter().enumerate().map(|(index, leech)| {
        let mut peers = seed_addresses.clone();
        if index >= case.leeches {
            peers.extend(leech_addresses.iter().cloned());
        }
        leech.fetch(index, peers, file)
    });
    let running: FuturesUnordered<_> = fetches.by_ref().take(case.leeches).collect();
    let late_fetch = fetches.next();
    let half = case.leeches as u64 * file.dag_bytes / 2;
    let mut watch = Watch::new(&seed_links, &leech_links, half);
    let outcomes = watch
        .run(
            running,
            late_fetch,
            file.limit + PASS_GRACE,
            || match case.half_time {
                Some(HalfTime::Stop) => {
                    if let Some(seed) = seeds.first_mut().and_then(Option::take) {
                        seed.stop();
                    }
                }
                Some(HalfTime::Cut) => {
                    if let Some(proxy) = seed_links.first() {
                        proxy.cut();
                    }
                }
                None => {}
            },
        )
        .await;
    let half_time_at = watch.half_at;
    let mut pass = Pass {
        leeches: Vec::new(),
        seed_down: Vec::new(),
        leech_down: Vec::new(),
        half_time_at,
    };
    let mut processes = Vec::new();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        let late = index >= case.leeches;
        let mut leech = LeechOutcome {
            late,
            ..LeechOutcome::default()
        };
        match outcome {
            None => {
                leech.time = file.limit;
                leech.error = Some(format!("not fetched within {:?}", file.limit));
            }
            Some((Fetched::Ours(fetched), _)) => {
                leech.time = fetched.walk.time;
                leech.error = fetched.walk.error.clone();
                leech.ours = fetched.stats.map(|s| (s, fetched.walk));
            }
            Some((Fetched::Peer(process, result), stall)) => {
                processes.push(process);
                leech.link_stall = stall;
                match result {
                    Ok(time) => leech.time = time,
                    Err(error) => leech.error = Some(error),
                }
            }
        }
        pass.leeches.push(leech);
    }
    for proxy in seed_links {
        pass.seed_down.push(down(proxy).await);
    }
    for proxy in leech_links {
        pass.leech_down.push(down(proxy).await);
    }
    for process in processes {
        process.shutdown().await;
    }
    for seed in seeds.into_iter().flatten() {
        seed.shutdown().await;
    }
    Ok(pass)
}

/// Bytes the link carried down, once it is shut down (or now, if that takes too long).
async fn down(proxy: ProxyHandle) -> u64 {
    let now = proxy.stats();
    let last = tokio::time::timeout(SHUTDOWN_LIMIT, proxy.shutdown()).await;
    last.unwrap_or(now).down.forwarded
}

/// Watches the links while the fetches run: half time, and the longest stall.
struct Watch<'a> {
    seed_links: &'a [ProxyHandle],
    leech_links: &'a [ProxyHandle],
    half: u64,
    half_at: Option<Duration>,
    last_total: u64,
    last_change: Option<Instant>,
    longest_stall: Duration,
}

impl<'a> Watch<'a> {
    fn new(seed_links: &'a [ProxyHandle], leech_links: &'a [ProxyHandle], half: u64) -> Self {
        Self {
            seed_links,
            leech_links,
            half,
            half_at: None,
            last_total: 0,
            last_change: None,
            longest_stall: Duration::ZERO,
        }
    }

    /// Polls the fetches until all are done or `limit` has passed; starts `late` at half time
    /// (or when the others are done, if half time never came), and calls `on_half` once, at
    /// half time. Returns each fetch's result (`None`: not done in time) and
    /// the longest stall seen up to its end.
    async fn run(
        &mut self,
        mut running: FuturesUnordered<LocalBoxFuture<'static, (usize, Fetched)>>,
        mut late: Option<LocalBoxFuture<'static, (usize, Fetched)>>,
        limit: Duration,
        mut on_half: impl FnMut(),
    ) -> Vec<Option<(Fetched, Duration)>> {
        let count = running.len() + usize::from(late.is_some());
        let mut outcomes: Vec<Option<(Fetched, Duration)>> = (0..count).map(|_| None).collect();
        let start = Instant::now();
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(SAMPLE);
        loop {
            if running.is_empty() {
                match late.take() {
                    Some(fetch) => running.push(fetch),
                    None => break,
                }
            }
            tokio::select! {
                Some((index, fetched)) = running.next() => {
                    self.sample();
                    outcomes[index] = Some((fetched, self.longest_stall));
                }
                _ = tick.tick() => {
                    if self.sample() >= self.half && self.half_at.is_none() {
                        self.half_at = Some(start.elapsed());
                        on_half();
                        if let Some(fetch) = late.take() {
                            running.push(fetch);
                        }
                    }
                }
                () = &mut deadline => break,
            }
        }
        outcomes
    }

    /// Reads the links; returns the bytes the seeds' links carried down so far.
    fn sample(&mut self) -> u64 {
        let now = Instant::now();
        let seeds: u64 = self
            .seed_links
            .iter()
            .map(|p| p.stats().down.forwarded)
            .sum();
        let leeches: u64 = self
            .leech_links
            .iter()
            .map(|p| p.stats().down.forwarded)
            .sum();
        let total = seeds + leeches;
        if total != self.last_total {
            if let Some(last) = self.last_change {
                self.longest_stall = self.longest_stall.max(now - last);
            }
            self.last_change = Some(now);
            self.last_total = total;
        }
        seeds
    }
}
