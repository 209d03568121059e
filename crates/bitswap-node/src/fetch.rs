//! The network DAG walk of `get`: every block under a root into the store, many wants in
//! flight at once.
//!
//! Blocks already in the store are read, not fetched (a stored copy that fails its hash check
//! is fetched again, which repairs the store); each block fetched (verified by the
//! Bitswap layer and written to the store before it is reported) adds its links to the walk
//! at once, so the wants of a whole level go out together and the next level follows each
//! block as it comes. When the root is a file, each block's data also goes to the output
//! ([`FileAssembler`]) as it comes, so nothing is read back from the store afterwards.
//!
//! Providers are the `--peer`s, every peer connected, and, with `--bootstrap`, those kad finds:
//! the root's providers are looked up at once, and any other CID's when Bitswap asks
//! ([`Event::FindProviders`]), at most [`MAX_PROVIDER_QUERIES`] lookups at a time.

use std::{
    collections::{BTreeSet, HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use bitswap::{Block, Blockstore, Event};
use bitswap_node::store::NodeStore;
use cid::Cid;
use futures::StreamExt;
use indicatif::ProgressBar;
use ipfs_blockstore::multicodec::DAG_PB;
use ipfs_formats::{
    dag,
    unixfs::{DagPbNode, DataType, FileAssembler, UnixfsData},
};
use libp2p::{
    Multiaddr, PeerId, Swarm,
    core::ConnectedPoint,
    kad,
    swarm::{
        SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use tokio::time::{Instant, sleep_until};

use crate::swarm::{self, Node, NodeEvent, Observer};

/// Most CIDs wanted from the network at once.
const MAX_WANTS_IN_FLIGHT: usize = 1024;
/// Most CIDs in one query.
const MAX_CIDS_PER_QUERY: usize = 256;
/// Most kad provider lookups at once; Bitswap asks again later for the CIDs turned away
/// (see `ClientConfig::with_provider_search_interval`).
const MAX_PROVIDER_QUERIES: usize = 8;
/// Most providers taken from one kad answer.
const MAX_PROVIDERS_PER_ANSWER: usize = 16;

/// When the walk gives up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Without a new block for this long.
    pub(crate) stall: Duration,
    /// With no peer connected for this long.
    pub(crate) no_peer: Duration,
}

/// What the walk did.
#[derive(Debug, Default)]
pub(crate) struct Fetched {
    /// Blocks that came from the network.
    pub(crate) blocks: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
    /// Blocks that were in the store already.
    pub(crate) local_blocks: u64,
    /// Blocks whose stored copy failed its hash check: fetched again, which repairs the
    /// store.
    pub(crate) corrupt_blocks: u64,
    /// Peers we were connected to.
    pub(crate) peers: BTreeSet<PeerId>,
    /// Providers the DHT named, of any CID of the DAG.
    pub(crate) providers: BTreeSet<PeerId>,
    /// The file written as its blocks came, when the root is a file and an output was given;
    /// complete once the walk is.
    pub(crate) file: Option<FileAssembler>,
}

/// The walk's state.
struct Walk<'a> {
    swarm: &'a mut Swarm<Node>,
    store: Arc<NodeStore>,
    bar: &'a ProgressBar,
    root: Cid,
    /// Where to write the file, if the root is one.
    output: Option<&'a std::path::Path>,
    /// Every CID met, so that a block shared by several parents is fetched once.
    seen: HashSet<Cid>,
    /// CIDs to look up in the store.
    unchecked: Vec<Cid>,
    /// CIDs not in the store, to ask the network for.
    wanted: VecDeque<Cid>,
    in_flight: usize,
    fetched: Fetched,
    /// Kad provider lookups running, and the CID each looks for (`None` without
    /// `--bootstrap`: no DHT).
    provider_queries: Option<HashMap<kad::QueryId, Cid>>,
}

impl Walk<'_> {
    /// Takes note of a block's links (and of the DAG's size, at the root), writes its data to
    /// the output file and moves the progress bar (bytes, and blocks in its message).
    fn visit(&mut self, block: &Block) -> anyhow::Result<()> {
        if *block.cid() == self.root {
            check_root(block)?;
        }
        let links = dag::links(block)?;
        if let Some(file) = &mut self.fetched.file {
            file.add(block).with_context(|| self.output_context())?;
        }
        if *block.cid() == self.root {
            if let Some(output) = self.output {
                self.fetched.file =
                    FileAssembler::start(block, output).with_context(|| self.output_context())?;
            }
            // The root's cumulative size: its block and every link's Tsize.
            if let Ok(node) = DagPbNode::decode_bytes(block.data()) {
                // Tsize comes from the peer: a wrong sum only misleads the progress bar.
                let total = node
                    .links
                    .iter()
                    .fold(block.data().len() as u64, |sum, link| {
                        sum.saturating_add(link.tsize)
                    });
                self.bar.set_length(total);
            } else {
                self.bar.set_length(block.data().len() as u64);
            }
        }
        self.bar.inc(block.data().len() as u64);
        if !self.bar.is_hidden() {
            let blocks = self.fetched.blocks + self.fetched.local_blocks;
            self.bar.set_message(format!("{blocks} blocks"));
        }
        for link in links {
            if self.seen.insert(link) {
                self.unchecked.push(link);
            }
        }
        Ok(())
    }

    fn output_context(&self) -> String {
        match self.output {
            Some(output) => format!("write {}", output.display()),
            None => "write the output".to_owned(),
        }
    }

    /// Reads what the store has; queues the rest for the network. Hands the output file the
    /// blocks it needs again (a chunk repeated in the file).
    async fn check_store(&mut self) -> anyhow::Result<()> {
        while let Some(cid) = self.unchecked.pop() {
            match self.store.get(&cid).await {
                Ok(Some(block)) => {
                    self.fetched.local_blocks += 1;
                    self.visit(&block)?;
                }
                Ok(None) => self.wanted.push_back(cid),
                Err(error) if error.is_corrupt() => {
                    self.fetched.corrupt_blocks += 1;
                    self.wanted.push_back(cid);
                }
                Err(error) => return Err(anyhow::Error::new(error).context("block store")),
            }
        }
        loop {
            let again = match &mut self.fetched.file {
                Some(file) => file.take_again(),
                None => Vec::new(),
            };
            if again.is_empty() {
                return Ok(());
            }
            for cid in again {
                let block = self
                    .store
                    .get(&cid)
                    .await
                    .context("block store")?
                    .with_context(|| format!("block {cid} left the store"))?;
                if let Some(file) = &mut self.fetched.file {
                    file.add(&block).with_context(|| self.output_context())?;
                }
            }
        }
    }

    /// Starts a kad lookup of `cid`'s providers, unless there is no DHT, one is running for
    /// it already, or [`MAX_PROVIDER_QUERIES`] are.
    fn find_providers(&mut self, cid: Cid) {
        let Some(queries) = &mut self.provider_queries else {
            return;
        };
        if queries.len() >= MAX_PROVIDER_QUERIES || queries.values().any(|c| *c == cid) {
            return;
        }
        let query = self
            .swarm
            .behaviour_mut()
            .kad
            .get_providers(bitswap::provider_key(&cid));
        queries.insert(query, cid);
    }

    /// Takes kad's answers: providers found are dialled (kad knows their addresses while
    /// the lookup runs) and handed to Bitswap.
    fn on_kad(&mut self, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        let Some(queries) = &mut self.provider_queries else {
            return;
        };
        let Some(&cid) = queries.get(&id) else {
            return;
        };
        if step.last {
            queries.remove(&id);
        }
        let kad::QueryResult::GetProviders(Ok(kad::GetProvidersOk::FoundProviders {
            providers,
            ..
        })) = result
        else {
            return;
        };
        let local = *self.swarm.local_peer_id();
        let providers: Vec<PeerId> = providers
            .into_iter()
            .filter(|p| *p != local)
            .take(MAX_PROVIDERS_PER_ANSWER)
            .collect();
        self.fetched.providers.extend(providers.iter().copied());
        for provider in &providers {
            // The addresses kad's routing table has go to the swarm, for Bitswap's later
            // dials; the lookup's own addresses serve the dial made now.
            let addresses: Vec<Multiaddr> = self
                .swarm
                .behaviour_mut()
                .kad
                .kbucket(*provider)
                .and_then(|bucket| {
                    bucket
                        .iter()
                        .find(|entry| entry.node.key.preimage() == provider)
                        .map(|entry| entry.node.value.iter().cloned().collect())
                })
                .unwrap_or_default();
            for address in addresses {
                self.swarm.add_peer_address(*provider, address);
            }
            if !self.swarm.is_connected(provider) {
                let dial = DialOpts::peer_id(*provider)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                // A failure is reported as an event; Bitswap dials again later.
                let _ = self.swarm.dial(dial);
            }
        }
        self.swarm
            .behaviour_mut()
            .bitswap
            .add_providers(&cid, providers);
    }

    /// Asks the network for queued CIDs, up to the in-flight bound.
    fn request(&mut self, session: bitswap::SessionId) -> anyhow::Result<()> {
        while self.in_flight < MAX_WANTS_IN_FLIGHT && !self.wanted.is_empty() {
            let n = (MAX_WANTS_IN_FLIGHT - self.in_flight)
                .min(MAX_CIDS_PER_QUERY)
                .min(self.wanted.len());
            let cids: Vec<Cid> = self.wanted.drain(..n).collect();
            self.swarm
                .behaviour_mut()
                .bitswap
                .get_many(cids, Some(session))
                .map_err(|error| anyhow!("bitswap refused the wants: {error}"))?;
            self.in_flight += n;
        }
        Ok(())
    }
}

/// Fails unless `root` is a block `get` can write out: raw (a file of one block) or a dag-pb
/// node with the UnixFS data of a file, a directory or a symlink. Checked as soon as the root
/// is at hand, so that the rest of a DAG that cannot be written is not fetched.
fn check_root(root: &Block) -> anyhow::Result<()> {
    let cid = root.cid();
    if cid.codec() != DAG_PB {
        // Raw; `get` refuses the other codecs before it starts.
        return Ok(());
    }
    let node = DagPbNode::decode_bytes(root.data()).with_context(|| format!("root {cid}"))?;
    let data = node.data.with_context(|| {
        format!("root {cid} is a dag-pb node without UnixFS data: get writes out UnixFS only")
    })?;
    let kind = UnixfsData::decode_bytes(&data)
        .and_then(|data| data.kind())
        .with_context(|| format!("root {cid}"))?;
    if kind == DataType::Metadata {
        bail!(
            "root {cid} is a UnixFS metadata node: get writes out files, directories and symlinks"
        );
    }
    Ok(())
}

/// Where blocks come from: `--peer` and `--bootstrap`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sources<'a> {
    /// Peers to dial, each with its `/p2p/` id.
    pub(crate) peers: &'a [Multiaddr],
    /// DHT peers to join through.
    pub(crate) bootstrap: &'a [Multiaddr],
}

/// Fetches every block of the DAG under `root` that the store lacks from the `sources`
/// peers and the providers found through the DHT joined through theirs, writing the file to a
/// temporary file beside `output` as the blocks come when the root is a file (see
/// [`Fetched::file`]), giving up after
/// `timeouts.stall` without a new block or `timeouts.no_peer` without a connected peer.
/// `observer` sees every swarm event.
pub(crate) async fn fetch_dag(
    swarm: &mut Swarm<Node>,
    observer: &mut Observer,
    root: Cid,
    output: Option<&std::path::Path>,
    sources: Sources<'_>,
    bar: &ProgressBar,
    timeouts: Timeouts,
) -> anyhow::Result<Fetched> {
    let Timeouts { stall, no_peer } = timeouts;
    let Sources { peers, bootstrap } = sources;
    let store = swarm.behaviour().bitswap.store().clone();
    let mut walk = Walk {
        swarm,
        store,
        bar,
        root,
        output,
        seen: HashSet::from([root]),
        unchecked: vec![root],
        wanted: VecDeque::new(),
        in_flight: 0,
        fetched: Fetched::default(),
        provider_queries: (!bootstrap.is_empty()).then(HashMap::new),
    };
    walk.check_store().await?;
    if walk.wanted.is_empty() {
        return Ok(walk.fetched);
    }
    if peers.is_empty() && bootstrap.is_empty() {
        if walk.fetched.corrupt_blocks > 0 {
            bail!(
                "{} block(s) of {root} are corrupt in the local store (their bytes do not match \
                 their CIDs), {} missing, and no --peer or --bootstrap was given to fetch them \
                 again",
                walk.fetched.corrupt_blocks,
                walk.wanted.len() as u64 - walk.fetched.corrupt_blocks,
            );
        }
        bail!("{root} is not in the local store and no --peer or --bootstrap was given");
    }
    for address in peers {
        walk.swarm
            .dial(address.clone())
            .with_context(|| format!("dial {address}"))?;
    }
    swarm::bootstrap(walk.swarm, bootstrap)?;
    walk.find_providers(root);
    let expected: HashSet<PeerId> = peers
        .iter()
        .chain(bootstrap)
        .filter_map(swarm::peer_id)
        .collect();
    let dials = peers.len() + bootstrap.len();
    let session = walk
        .swarm
        .behaviour_mut()
        .bitswap
        .new_session()
        .map_err(|error| anyhow!("bitswap refused a session: {error}"))?;
    let mut failed_dials = 0;
    let mut last_error = String::new();
    let mut deadline = Instant::now() + stall;
    // Set while no peer is connected: when to give up unless one connects.
    let mut alone_until = Some(Instant::now() + no_peer);
    loop {
        walk.check_store().await?;
        walk.request(session)?;
        if walk.in_flight == 0 && walk.wanted.is_empty() {
            break;
        }
        if walk.swarm.connected_peers().next().is_some() {
            alone_until = None;
        } else if alone_until.is_none() {
            alone_until = Some(Instant::now() + no_peer);
        }
        let alone_deadline = alone_until.unwrap_or(deadline);
        let missing = walk.in_flight + walk.wanted.len();
        let event = tokio::select! {
            event = walk.swarm.select_next_some() => event,
            () = sleep_until(deadline) => bail!(
                "no block for {} s from {} connected peer(s); {missing} block(s) still \
                 missing{}",
                stall.as_secs(),
                walk.swarm.connected_peers().count(),
                note(&last_error),
            ),
            () = sleep_until(alone_deadline), if alone_until.is_some() => {
                if walk.fetched.peers.is_empty() {
                    bail!("no peer connected within {} s{}", no_peer.as_secs(), note(&last_error));
                }
                bail!(
                    "every peer disconnected and none connected for {} s; {} block(s) \
                     fetched, {missing} still missing{}",
                    no_peer.as_secs(),
                    walk.fetched.blocks,
                    note(&last_error),
                );
            }
        };
        observer.observe(walk.swarm, &event);
        match event {
            SwarmEvent::Behaviour(NodeEvent::Kad(event)) => walk.on_kad(event),
            SwarmEvent::Behaviour(NodeEvent::Bitswap(event)) => match event {
                Event::BlockReceived { block, .. } => {
                    walk.in_flight = walk.in_flight.saturating_sub(1);
                    walk.fetched.blocks += 1;
                    walk.fetched.bytes += block.data().len() as u64;
                    deadline = Instant::now() + stall;
                    walk.visit(&block)?;
                }
                Event::QueryFailed { error, .. } => bail!("fetch failed: {error}"),
                Event::StoreFailed { error, .. } => bail!("block store: {error}"),
                Event::FindProviders { cid, .. } => {
                    let peers: Vec<PeerId> = walk.fetched.peers.iter().copied().collect();
                    walk.swarm
                        .behaviour_mut()
                        .bitswap
                        .add_providers(&cid, peers);
                    walk.find_providers(cid);
                }
                _ => {}
            },
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if let ConnectedPoint::Dialer { address, .. } = endpoint {
                    // Known good: Bitswap may dial it again by peer id.
                    walk.swarm.add_peer_address(peer_id, address);
                }
                walk.fetched.peers.insert(peer_id);
                walk.swarm
                    .behaviour_mut()
                    .bitswap
                    .add_providers(&root, [peer_id]);
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                last_error = error.to_string().replace('\n', " ");
                if peer_id.is_none_or(|peer| expected.contains(&peer)) {
                    failed_dials += 1;
                }
                if failed_dials >= dials && walk.fetched.peers.is_empty() {
                    bail!("cannot reach any peer: {last_error}");
                }
            }
            _ => {}
        }
    }
    Ok(walk.fetched)
}

/// ` (last error: ERROR)`, or nothing without an error.
fn note(last_error: &str) -> String {
    if last_error.is_empty() {
        String::new()
    } else {
        format!(" (last error: {last_error})")
    }
}
