//! Whole nodes ([`bitswap::Behaviour`]) fetching from each other over loopback TCP (Noise,
//! Yamux): queries, handles, sessions over several servers, cancels, relaying and hostile
//! senders.

mod common;

use std::{collections::HashSet, time::Duration};

use bitswap::{
    Behaviour, Block, Blockstore, ClientConfig, Config, Event, MemoryBlockstore, Message, QueryId,
    Version, network,
};
use cid::Cid;
use futures::{StreamExt, TryStreamExt};
use ipfs_blockstore::testing;
use libp2p::{Multiaddr, PeerId, Swarm, swarm::SwarmEvent};
use tokio::{task::JoinHandle, time::timeout};

use common::{listen, new_swarm};

/// Bound of every wait in these tests.
const TIMEOUT: Duration = Duration::from_secs(60);

type Node = Swarm<Behaviour<MemoryBlockstore>>;

fn node(config: Config) -> Node {
    new_swarm(Behaviour::new(MemoryBlockstore::new(), config))
}

/// A node whose store holds `blocks` already.
async fn node_holding(blocks: &[Block], config: Config) -> Node {
    let store = MemoryBlockstore::new();
    store.put_many(blocks.to_vec()).await.expect("store");
    new_swarm(Behaviour::new(store, config))
}

/// `count` distinct CIDv1 raw blocks of `len` bytes.
fn raw_blocks(count: u32, len: usize, seed: u32) -> Vec<Block> {
    let first = u64::from(seed) * 100_003;
    testing::raw_blocks(first..first + u64::from(count), len)
}

fn cids(blocks: &[Block]) -> Vec<Cid> {
    blocks.iter().map(|b| *b.cid()).collect()
}

/// A server node holding `blocks`, listening and polled by its own task (aborted on drop).
struct Server {
    peer: PeerId,
    address: Multiaddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server(blocks: &[Block], config: Config) -> Server {
    let mut swarm = node_holding(blocks, config).await;
    let address = listen(&mut swarm).await;
    let peer = *swarm.local_peer_id();
    let task = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    Server {
        peer,
        address,
        task,
    }
}

/// Dials every server from `client` and waits until each is connected.
async fn connect(client: &mut Node, servers: &[&Server]) {
    for server in servers {
        client.dial(server.address.clone()).expect("dial");
    }
    let mut connected = HashSet::new();
    timeout(TIMEOUT, async {
        while connected.len() < servers.len() {
            if let SwarmEvent::ConnectionEstablished { peer_id, .. } =
                client.select_next_some().await
            {
                connected.insert(peer_id);
            }
        }
    })
    .await
    .expect("connected");
}

/// What a query reported.
#[derive(Debug, Default)]
struct Outcome {
    blocks: Vec<Block>,
    progress: usize,
    finished: bool,
}

/// Polls `client` until `query` finishes (panics if it fails).
async fn finish(client: &mut Node, query: QueryId) -> Outcome {
    let mut outcome = Outcome::default();
    timeout(TIMEOUT, async {
        loop {
            match client.select_next_some().await {
                SwarmEvent::Behaviour(Event::BlockReceived { query: q, block }) if q == query => {
                    outcome.blocks.push(block);
                }
                SwarmEvent::Behaviour(Event::Progress { query: q, .. }) if q == query => {
                    outcome.progress += 1;
                }
                SwarmEvent::Behaviour(Event::QueryFinished { query: q }) if q == query => {
                    outcome.finished = true;
                    return;
                }
                SwarmEvent::Behaviour(Event::QueryFailed { query: q, error }) if q == query => {
                    panic!("query failed: {error}")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("query finished in time");
    outcome
}

/// Fetches `blocks` in one query and checks that each came once, with its progress.
async fn fetch_all(client: &mut Node, blocks: &[Block]) -> Outcome {
    let query = client
        .behaviour_mut()
        .get_many(cids(blocks), None)
        .expect("query accepted");
    let outcome = finish(client, query).await;
    assert!(outcome.finished);
    assert_eq!(outcome.progress, blocks.len());
    assert_same_blocks(outcome.blocks.clone(), blocks.to_vec());
    outcome
}

fn assert_same_blocks(mut got: Vec<Block>, mut expected: Vec<Block>) {
    got.sort_by_key(|b| *b.cid());
    expected.sort_by_key(|b| *b.cid());
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "different blocks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_fetches_from_another_and_stores_what_it_gets() {
    let blocks = raw_blocks(64, 256 * 1024, 1);
    let server = server(&blocks, Config::default()).await;
    let mut client = node(Config::default());
    connect(&mut client, &[&server]).await;
    fetch_all(&mut client, &blocks).await;
    // Every block reported is in the store already.
    for block in &blocks {
        let stored = client.behaviour().store().get(block.cid()).await;
        assert_eq!(stored.expect("store").as_ref(), Some(block));
    }
    let stats = client.behaviour().client().stats();
    assert_eq!(stats.blocks_received, blocks.len() as u64);
    assert_eq!(stats.duplicate_blocks, 0);
    assert_eq!(stats.queries, 0);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_blocks_from_three_servers_with_few_duplicates() {
    let blocks = raw_blocks(1000, 8000, 2);
    let a = server(&blocks, Config::default()).await;
    let b = server(&blocks, Config::default()).await;
    let c = server(&blocks, Config::default()).await;
    let mut client = node(Config::default());
    connect(&mut client, &[&a, &b, &c]).await;

    let session = client.behaviour_mut().new_session().expect("room");
    // A DAG walk asks in rounds: 10 batches of 100 in one session.
    let mut got = Vec::new();
    for chunk in blocks.chunks(100) {
        let query = client
            .behaviour_mut()
            .get_many(cids(chunk), Some(session))
            .expect("query accepted");
        got.extend(finish(&mut client, query).await.blocks);
    }
    assert_same_blocks(got, blocks.clone());
    let stats = client.behaviour().client().stats();
    let duplicate_share = stats.duplicate_bytes as f64 / stats.bytes_received as f64;
    eprintln!(
        "1000 blocks from 3 servers: {} duplicate blocks ({:.2}% of bytes), {} messages sent",
        stats.duplicate_blocks,
        duplicate_share * 100.0,
        stats.messages_sent
    );
    assert!(duplicate_share < 0.05, "{stats:?}");
    // Wantlist updates are batched, not one message per block and peer.
    assert!(stats.messages_sent < 3 * 1000, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_fetches_from_another_task() {
    let blocks = raw_blocks(20, 50_000, 3);
    let server = server(&blocks, Config::default()).await;
    let mut client = node(Config::default());
    connect(&mut client, &[&server]).await;
    let control = client.behaviour().control();
    let driver = tokio::spawn(async move {
        loop {
            client.select_next_some().await;
        }
    });

    let (one, many) = timeout(TIMEOUT, async {
        let one = control.get(*blocks[0].cid()).await.expect("one block");
        let session = control.new_session().await.expect("session");
        let many: Vec<Block> = control
            .get_many(cids(&blocks[1..]), Some(session))
            .await
            .expect("query accepted")
            .try_collect()
            .await
            .expect("every block");
        (one, many)
    })
    .await
    .expect("in time");
    driver.abort();
    assert_eq!(one, blocks[0]);
    assert_same_blocks(many, blocks[1..].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_query_reports_nothing_and_is_withdrawn() {
    let missing = raw_blocks(5, 100, 4);
    let server = server(&[], Config::default()).await;
    let mut client = node(Config::default());
    connect(&mut client, &[&server]).await;
    let query = client
        .behaviour_mut()
        .get_many(cids(&missing), None)
        .expect("query accepted");
    // Let the wants reach the server, then cancel.
    timeout(Duration::from_millis(300), async {
        loop {
            client.select_next_some().await;
        }
    })
    .await
    .expect_err("the client keeps polling");
    assert!(client.behaviour_mut().cancel(query));
    assert!(!client.behaviour_mut().cancel(query));
    assert_eq!(client.behaviour().client().stats().wants, 0);
    let peer_wants = client.behaviour().client().peer_wants(&server.peer);
    assert!(peer_wants.is_empty(), "{peer_wants:?}");
    let events = timeout(Duration::from_millis(300), async {
        let mut events = Vec::new();
        loop {
            if let SwarmEvent::Behaviour(event) = client.select_next_some().await {
                events.push(event);
            }
        }
        #[allow(unreachable_code)]
        events
    })
    .await;
    assert!(events.is_err(), "no event after the cancel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_block_is_relayed_to_a_peer_that_wanted_it() {
    // C wants blocks from B; B has none but fetches them from A; C gets them through B. C
    // never answers B's wants (a silent peer), which costs B its initial DONT_HAVE timeout
    // for the wants it first sends to C.
    let blocks = raw_blocks(10, 20_000, 5);
    let a = server(&blocks, Config::default()).await;
    let mut b = node(Config::default());
    let b_address = listen(&mut b).await;
    let b_peer = *b.local_peer_id();
    connect(&mut b, &[&a]).await;

    let mut c = new_swarm(network::Behaviour::new(network::Config::default()));
    c.dial(b_address).expect("dial");
    let mut asked = false;
    let mut relayed = HashSet::new();
    let mut query = None;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    timeout(TIMEOUT, async {
        while relayed.len() < blocks.len() {
            tokio::select! {
                _ = tick.tick() => {
                    if query.is_none()
                        && b.behaviour().server().peer_wantlist(c.local_peer_id()).len() == blocks.len()
                    {
                        query = Some(b.behaviour_mut().get_many(cids(&blocks), None).expect("query"));
                    }
                }
                event = c.select_next_some() => match event {
                    SwarmEvent::Behaviour(network::Event::PeerConnected { peer }) if !asked => {
                        let mut want = Message::default();
                        for block in &blocks {
                            want.wantlist.entries.push(bitswap::Entry {
                                send_dont_have: false,
                                ..bitswap::Entry::want_block(*block.cid(), 1)
                            });
                        }
                        c.behaviour_mut().send(peer, want).expect("send");
                        asked = true;
                    }
                    SwarmEvent::Behaviour(network::Event::Message { message, .. }) => {
                        relayed.extend(message.blocks.iter().map(|b| *b.cid()));
                    }
                    _ => {}
                },
                _ = b.select_next_some() => {}
            }
        }
    })
    .await
    .expect("relayed in time");
    assert_eq!(relayed, cids(&blocks).into_iter().collect());
    let _ = b_peer;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_1_0_node_fetches_from_a_1_2_0_server() {
    let blocks = raw_blocks(30, 10_000, 6);
    let server = server(&blocks, Config::default()).await;
    let mut client = node(
        Config::default().with_network(network::Config::default().with_versions([Version::V1_1_0])),
    );
    connect(&mut client, &[&server]).await;
    let query = client
        .behaviour_mut()
        .get_many(cids(&blocks), None)
        .expect("query accepted");
    assert_same_blocks(finish(&mut client, query).await.blocks, blocks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_blocks_are_dropped_and_never_stored() {
    let mut victim = node(Config::default().with_client(ClientConfig::default()));
    let address = listen(&mut victim).await;
    let mut hostile = new_swarm(network::Behaviour::new(network::Config::default()));
    hostile.dial(address).expect("dial");
    let junk = raw_blocks(100, 1000, 7);
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    timeout(TIMEOUT, async {
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if victim.behaviour().client().stats().unwanted_blocks == junk.len() as u64 {
                        return;
                    }
                }
                event = hostile.select_next_some() => match event {
                    SwarmEvent::Behaviour(network::Event::PeerConnected { peer }) => {
                        for chunk in junk.chunks(10) {
                            let message = Message { blocks: chunk.to_vec(), ..Message::default() };
                            hostile.behaviour_mut().send(peer, message).expect("send");
                        }
                    }
                    SwarmEvent::Behaviour(network::Event::MessageSent { .. }) => sent += 1,
                    _ => {}
                },
                event = victim.select_next_some() => {
                    if let SwarmEvent::Behaviour(event) = event {
                        panic!("unexpected event {event:?}");
                    }
                }
            }
        }
    })
    .await
    .expect("all junk seen");
    assert_eq!(sent, 10);
    for block in &junk {
        assert!(
            !victim
                .behaviour()
                .store()
                .has(block.cid())
                .await
                .expect("store")
        );
    }
    let hostile_id = *hostile.local_peer_id();
    assert!(
        victim
            .behaviour()
            .client()
            .peer_score(&hostile_id)
            .unwrap_or(0)
            < 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_reported_after_a_search_are_dialled_and_asked() {
    let blocks = raw_blocks(3, 30_000, 8);
    let server = server(&blocks, Config::default()).await;
    // Nobody connected: the client asks for providers, then dials the one it is told about.
    let mut client = node(Config::default().with_client(
        ClientConfig::default().with_provider_search_delay(Duration::from_millis(50)),
    ));
    client.add_peer_address(server.peer, server.address.clone());
    let query = client
        .behaviour_mut()
        .get_many(cids(&blocks), None)
        .expect("query accepted");
    let mut searched = HashSet::new();
    let mut got = Vec::new();
    timeout(TIMEOUT, async {
        loop {
            match client.select_next_some().await {
                SwarmEvent::Behaviour(Event::FindProviders { cid, .. }) => {
                    searched.insert(cid);
                    client.behaviour_mut().add_providers(&cid, [server.peer]);
                }
                SwarmEvent::Behaviour(Event::BlockReceived { query: q, block }) if q == query => {
                    got.push(block);
                }
                SwarmEvent::Behaviour(Event::QueryFinished { query: q }) if q == query => return,
                _ => {}
            }
        }
    })
    .await
    .expect("fetched from the provider in time");
    assert!(!searched.is_empty());
    assert!(searched.iter().all(|cid| cids(&blocks).contains(cid)));
    assert!(client.is_connected(&server.peer));
    assert_same_blocks(got, blocks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_in_the_local_store_are_not_asked_of_peers() {
    let blocks = raw_blocks(6, 20_000, 9);
    let server = server(&blocks, Config::default()).await;
    let mut client = node_holding(&blocks[..4], Config::default()).await;
    connect(&mut client, &[&server]).await;
    fetch_all(&mut client, &blocks).await;
    // Only the two blocks the store lacked came from the server.
    let stats = client.behaviour().client().stats();
    assert_eq!(stats.blocks_received, 2, "{stats:?}");
    assert_eq!(client.behaviour().store().len(), blocks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_block_is_had_and_got_without_any_peer() {
    let blocks = raw_blocks(2, 1000, 10);
    let (local, absent) = (&blocks[0], &blocks[1]);
    let mut client = node_holding(&blocks[..1], Config::default()).await;
    let behaviour = client.behaviour();
    assert!(behaviour.has(local.cid()).await.expect("has"));
    assert!(!behaviour.has(absent.cid()).await.expect("has"));
    // Any CID of the same multihash.
    let v0 = Cid::new_v0(*local.cid().hash()).expect("sha2-256");
    assert!(behaviour.has(&v0).await.expect("has"));

    let control = client.behaviour().control();
    assert!(control.has(local.cid()).await.expect("has"));
    assert!(!control.has(absent.cid()).await.expect("has"));
    let driver = tokio::spawn(async move {
        let mut searched = Vec::new();
        loop {
            if let SwarmEvent::Behaviour(Event::FindProviders { cid, .. }) =
                client.select_next_some().await
            {
                searched.push(cid);
                if searched.len() == 1 {
                    return (client, searched);
                }
            }
        }
    });
    let got = timeout(TIMEOUT, control.get(*local.cid()))
        .await
        .expect("in time, with no peer")
        .expect("the block");
    assert_eq!(&got, local);
    // A block the store lacks still goes to the network: here, a provider search.
    let absent_query = control.get_many(vec![*absent.cid()], None).await;
    let (client, searched) = timeout(TIMEOUT, driver)
        .await
        .expect("searched in time")
        .expect("driver");
    assert_eq!(
        searched,
        [*absent.cid()],
        "only the absent block is searched for"
    );
    drop(absent_query);
    assert_eq!(client.behaviour().client().stats().blocks_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_local_first_a_stored_block_is_asked_of_peers() {
    let blocks = raw_blocks(1, 1000, 11);
    let config = Config::default()
        .with_local_first(false)
        .with_client(ClientConfig::default().with_provider_search_delay(Duration::from_millis(10)));
    let mut client = node_holding(&blocks, config).await;
    let query = client
        .behaviour_mut()
        .get(*blocks[0].cid())
        .expect("query accepted");
    let searched = timeout(TIMEOUT, async {
        loop {
            match client.select_next_some().await {
                SwarmEvent::Behaviour(Event::FindProviders { cid, key }) => break (cid, key),
                SwarmEvent::Behaviour(Event::BlockReceived { .. }) => {
                    panic!("served from the store though local-first is off")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("searched in time");
    assert_eq!(
        searched,
        (*blocks[0].cid(), bitswap::provider_key(blocks[0].cid()))
    );
    assert!(client.behaviour_mut().cancel(query));
}
