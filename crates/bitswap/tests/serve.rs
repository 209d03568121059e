//! The whole [`bitswap::Behaviour`] serving its store over loopback TCP (Noise, Yamux) to a
//! peer that speaks the bare message layer, so every byte the server sends is observed.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use bitswap::{
    Behaviour, Block, BlockPresenceType, Blockstore, Config, Entry, Event, MemoryBlockstore,
    Message, RedbBlockstore, RedbConfig, ServerConfig, Version, network,
};
use bytes::Bytes;
use cid::Cid;
use futures::StreamExt;
use ipfs_blockstore::testing;
use libp2p::{PeerId, Swarm, swarm::SwarmEvent};
use prometheus_client::registry::Registry;
use tokio::time::timeout;

use common::{bytes, new_swarm};

/// Bound of every wait in these tests.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A CIDv1 raw block of `len` bytes.
fn raw_block(len: usize, seed: u32) -> Block {
    testing::raw_block(u64::from(seed), len)
}

type Client = Swarm<network::Behaviour>;
type Server<S> = Swarm<Behaviour<S>>;

enum Side<S, C> {
    Server(S),
    Client(C),
    /// Nothing happened for a while: lets conditions on state be checked without events.
    Tick,
}

/// Drives both swarms until `f` returns something, for at most [`TIMEOUT`].
async fn drive<S: Blockstore + 'static, T>(
    server: &mut Server<S>,
    client: &mut Client,
    mut f: impl FnMut(
        &mut Server<S>,
        &mut Client,
        Side<SwarmEvent<Event>, SwarmEvent<network::Event>>,
    ) -> Option<T>,
) -> T {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    timeout(TIMEOUT, async {
        loop {
            let event = tokio::select! {
                event = server.select_next_some() => Side::Server(event),
                event = client.select_next_some() => Side::Client(event),
                _ = tick.tick() => Side::Tick,
            };
            if let Some(out) = f(server, client, event) {
                return out;
            }
        }
    })
    .await
    .expect("timed out driving the swarms")
}

/// Starts `server` listening, dials it from a new client and waits until the client knows the
/// server's Bitswap version.
async fn connect<S: Blockstore + 'static>(
    server: &mut Server<S>,
    client_config: network::Config,
) -> Client {
    let mut client = new_swarm(network::Behaviour::new(client_config));
    server
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"))
        .expect("listen");
    let server_id = *server.local_peer_id();
    drive(server, &mut client, |_, client, event| match event {
        Side::Server(SwarmEvent::NewListenAddr { address, .. }) => {
            client.dial(address).expect("dial");
            Some(())
        }
        _ => None,
    })
    .await;
    drive(server, &mut client, |_, _, event| match event {
        Side::Client(SwarmEvent::ConnectionEstablished { peer_id, .. }) if peer_id == server_id => {
            Some(())
        }
        _ => None,
    })
    .await;
    client
}

/// Everything the client received, in order.
#[derive(Default)]
struct Received {
    blocks: Vec<Block>,
    haves: Vec<Cid>,
    dont_haves: Vec<Cid>,
    messages: usize,
    max_message_bytes: usize,
}

impl Received {
    fn add(&mut self, message: Message) {
        self.messages += 1;
        let size: usize = message.blocks.iter().map(|b| b.data().len()).sum();
        self.max_message_bytes = self.max_message_bytes.max(size);
        for presence in message.presences {
            match presence.presence {
                BlockPresenceType::Have => self.haves.push(presence.cid),
                BlockPresenceType::DontHave => self.dont_haves.push(presence.cid),
            }
        }
        self.blocks.extend(message.blocks);
    }

    fn answers(&self) -> usize {
        self.blocks.len() + self.haves.len() + self.dont_haves.len()
    }
}

/// Sends `message` from the client and collects answers until `done` holds.
async fn ask<S: Blockstore + 'static>(
    server: &mut Server<S>,
    client: &mut Client,
    message: Message,
    mut done: impl FnMut(&Received) -> bool,
) -> Received {
    let server_id = *server.local_peer_id();
    client
        .behaviour_mut()
        .send(server_id, message)
        .expect("send");
    let mut received = Received::default();
    drive(server, client, |_, _, event| {
        if let Side::Client(SwarmEvent::Behaviour(network::Event::Message { message, .. })) = event
        {
            received.add(message);
        }
        done(&received).then_some(())
    })
    .await;
    received
}

/// Asks for every block of `blocks` (want-block, the `i`th at priority `priority(i)`) and
/// collects answers until that many blocks came.
async fn ask_for_blocks<S: Blockstore + 'static>(
    server: &mut Server<S>,
    client: &mut Client,
    blocks: &[Block],
    priority: impl Fn(usize) -> i32,
) -> Received {
    let entries = blocks
        .iter()
        .enumerate()
        .map(|(i, b)| Entry::want_block(*b.cid(), priority(i)))
        .collect();
    let message = Message::wantlist_update(entries);
    ask(server, client, message, |r| r.blocks.len() >= blocks.len()).await
}

/// A server of `config` on a memory store, and a default client connected to it; then the
/// client's id and the server's.
async fn connected(config: Config) -> (Server<MemoryBlockstore>, Client, PeerId, PeerId) {
    let mut server = server_with(MemoryBlockstore::new(), config);
    let client = connect(&mut server, network::Config::default()).await;
    let (client_id, server_id) = (*client.local_peer_id(), *server.local_peer_id());
    (server, client, client_id, server_id)
}

/// Sends `to` a wantlist update of `entries` from `client`.
fn send_wants(client: &mut Client, to: PeerId, entries: Vec<Entry>) {
    client
        .behaviour_mut()
        .send(to, Message::wantlist_update(entries))
        .expect("send");
}

/// Sends `server` a wantlist update of `entries` from `client`, then drives both until the
/// server holds `held` wants of the client.
async fn want_and_wait<S: Blockstore + 'static>(
    server: &mut Server<S>,
    client: &mut Client,
    entries: Vec<Entry>,
    held: usize,
) {
    let client_id = *client.local_peer_id();
    send_wants(client, *server.local_peer_id(), entries);
    drive(server, client, |server, _, _| {
        (server.behaviour().server().peer_wantlist(&client_id).len() == held).then_some(())
    })
    .await;
}

/// Puts `blocks` through the behaviour and waits for [`Event::Stored`].
async fn put<S: Blockstore + 'static>(
    server: &mut Server<S>,
    client: &mut Client,
    blocks: Vec<Block>,
) {
    let id = server.behaviour_mut().put(blocks).expect("put accepted");
    drive(server, client, |_, _, event| match event {
        Side::Server(SwarmEvent::Behaviour(Event::Stored { id: stored, .. })) if stored == id => {
            Some(())
        }
        Side::Server(SwarmEvent::Behaviour(Event::StoreFailed { error, .. })) => {
            panic!("store failed: {error}")
        }
        _ => None,
    })
    .await;
}

fn server_with(store: MemoryBlockstore, config: Config) -> Server<MemoryBlockstore> {
    new_swarm(Behaviour::new(store, config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_fetches_blocks_of_every_size() {
    let mut blocks: Vec<Block> = [
        0usize,
        1,
        100,
        1024,
        8000,
        65_536,
        256 * 1024,
        1 << 20,
        2 << 20,
    ]
    .iter()
    .enumerate()
    .flat_map(|(i, &len)| (0..3).map(move |j| raw_block(len, (i * 10 + j) as u32)))
    .collect();
    // The three empty blocks are one block.
    blocks.sort_by_key(|b| *b.cid());
    blocks.dedup_by_key(|b| *b.cid());
    let mut server = server_with(MemoryBlockstore::new(), Config::default());
    let mut client = connect(&mut server, network::Config::default()).await;
    put(&mut server, &mut client, blocks.clone()).await;

    let received = ask_for_blocks(&mut server, &mut client, &blocks, |i| i as i32).await;

    let mut expected: HashMap<Cid, Bytes> = blocks
        .iter()
        .map(|b| (*b.cid(), b.data().clone()))
        .collect();
    for block in &received.blocks {
        let data = expected.remove(block.cid()).expect("a wanted block, once");
        assert_eq!(&data, block.data());
    }
    assert!(expected.is_empty());
    // One envelope never carries more than the 4 MiB frame allows.
    assert!(received.max_message_bytes <= 4 << 20);

    let client_id = *client.local_peer_id();
    let accounting = server
        .behaviour()
        .server()
        .peer_accounting(&client_id)
        .expect("client known");
    assert_eq!(accounting.blocks_sent, blocks.len() as u64);
    let bytes: u64 = blocks.iter().map(|b| b.data().len() as u64).sum();
    assert_eq!(accounting.bytes_sent, bytes);
    // Answered wants are forgotten.
    assert!(
        server
            .behaviour()
            .server()
            .peer_wantlist(&client_id)
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn want_haves_get_small_blocks_haves_and_dont_haves() {
    let small = raw_block(1000, 1);
    let large = raw_block(5000, 2);
    let missing = raw_block(10, 3);
    let mut server = server_with(MemoryBlockstore::new(), Config::default());
    let mut client = connect(&mut server, network::Config::default()).await;
    put(&mut server, &mut client, vec![small.clone(), large.clone()]).await;

    let entries = vec![
        Entry::want_have(*small.cid(), 3),
        Entry::want_have(*large.cid(), 2),
        Entry {
            send_dont_have: true,
            ..Entry::want_have(*missing.cid(), 1)
        },
    ];
    let received = ask(
        &mut server,
        &mut client,
        Message::wantlist_update(entries),
        |r| r.answers() >= 3,
    )
    .await;
    assert_eq!(received.blocks, vec![small]);
    assert_eq!(received.haves, vec![*large.cid()]);
    assert_eq!(received.dont_haves, vec![*missing.cid()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_that_arrive_later_reach_the_peers_that_want_them() {
    let put_later = raw_block(4096, 7);
    let written_later = raw_block(300_000, 8);
    let (mut server, mut client, _, _) = connected(Config::default()).await;

    // Wants for blocks the server lacks, without DONT_HAVE: they stay in its ledger.
    let entries = vec![
        Entry {
            send_dont_have: false,
            ..Entry::want_block(*put_later.cid(), 2)
        },
        Entry {
            send_dont_have: false,
            ..Entry::want_block(*written_later.cid(), 1)
        },
    ];
    want_and_wait(&mut server, &mut client, entries, 2).await;

    // Through the behaviour's own write...
    server
        .behaviour_mut()
        .put(vec![put_later.clone()])
        .expect("put accepted");
    // ... and written to the store by the embedder, then announced.
    let store = std::sync::Arc::clone(server.behaviour().store());
    store.put(written_later.clone()).await.expect("store write");
    server
        .behaviour_mut()
        .notify_new_blocks([(*written_later.cid(), written_later.data().len())]);

    let mut received = Received::default();
    drive(&mut server, &mut client, |_, _, event| {
        if let Side::Client(SwarmEvent::Behaviour(network::Event::Message { message, .. })) = event
        {
            received.add(message);
        }
        (received.blocks.len() >= 2).then_some(())
    })
    .await;
    let mut got: Vec<Cid> = received.blocks.iter().map(|b| *b.cid()).collect();
    got.sort();
    let mut expected = vec![*put_later.cid(), *written_later.cid()];
    expected.sort();
    assert_eq!(got, expected);
    assert!(received.dont_haves.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_0_0_client_gets_cid_v0_blocks() {
    let block = Block::from_v0_data(bytes(3000, 9)).expect("v0 block");
    let mut server = server_with(MemoryBlockstore::new(), Config::default());
    let mut client = connect(
        &mut server,
        network::Config::default().with_versions([Version::V1_0_0]),
    )
    .await;
    put(&mut server, &mut client, vec![block.clone()]).await;
    let received = ask(
        &mut server,
        &mut client,
        Message::wantlist_update(vec![Entry::want_block(*block.cid(), 1)]),
        |r| !r.blocks.is_empty(),
    )
    .await;
    assert_eq!(received.blocks, vec![block]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_store_serves_and_metrics_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbBlockstore::open(dir.path().join("blocks.redb"), RedbConfig::default())
        .expect("open store");
    let blocks: Vec<Block> = (0..20).map(|i| raw_block(100_000, 100 + i)).collect();
    let mut registry = Registry::default();
    let mut server = new_swarm(Behaviour::with_metrics(
        store,
        Config::default().with_server(ServerConfig::default().with_target_message_size(1)),
        &mut registry,
    ));
    let mut client = connect(&mut server, network::Config::default()).await;
    put(&mut server, &mut client, blocks.clone()).await;
    let received = ask_for_blocks(&mut server, &mut client, &blocks, |_| 1).await;
    assert_eq!(received.blocks.len(), blocks.len());
    // A target of 1 byte puts one block in each message.
    assert_eq!(received.messages, blocks.len());

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains(&format!(
            "bitswap_server_blocks_sent_total {}",
            blocks.len()
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_frees_the_peer() {
    let (mut server, mut client, client_id, server_id) = connected(Config::default()).await;
    let entries = (0..50)
        .map(|i| Entry::want_block(*raw_block(10, 1000 + i).cid(), 1))
        .collect();
    want_and_wait(&mut server, &mut client, entries, 50).await;
    assert!(client.disconnect_peer_id(server_id).is_ok());
    drive(&mut server, &mut client, |server, _, _| {
        let engine = server.behaviour().server();
        (engine.peers().next().is_none()).then_some(())
    })
    .await;
    let engine = server.behaviour().server();
    assert!(engine.peer_accounting(&client_id).is_none());
    assert!(engine.peer_wantlist(&client_id).is_empty());
    engine.check_invariants().expect("engine invariants");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_wantlists_are_taken_in_whole_and_in_order() {
    // A full wantlist far longer than one turn of the server, then many messages right
    // behind it: a long one cancelling half of it, and short ones. The server takes the long
    // ones in over several turns, but the result must be as if each came at once, in order.
    let (mut server, mut client, client_id, server_id) = connected(Config::default()).await;
    let cids: Vec<Cid> = (0..1000).map(|i| *raw_block(10, 5000 + i).cid()).collect();
    let mut full = Message::wantlist_update(cids.iter().map(|c| Entry::want_have(*c, 1)).collect());
    full.wantlist.full = true;
    let cancels = Message::wantlist_update(cids[..500].iter().map(|c| Entry::cancel(*c)).collect());
    let again = Message::wantlist_update(vec![Entry::want_have(cids[0], 7)]);
    for message in [full, cancels, again] {
        client
            .behaviour_mut()
            .send(server_id, message)
            .expect("send");
    }
    drive(&mut server, &mut client, |server, _, _| {
        let wantlist = server.behaviour().server().peer_wantlist(&client_id);
        (wantlist.len() == 501 && wantlist[0].priority == 7).then_some(())
    })
    .await;
    let wantlist = server.behaviour().server().peer_wantlist(&client_id);
    assert_eq!(wantlist[0].cid, cids[0]);
    let mut kept: Vec<Cid> = wantlist[1..].iter().map(|e| e.cid).collect();
    kept.sort();
    let mut expected = cids[500..].to_vec();
    expected.sort();
    assert_eq!(kept, expected);
    let accounting = server
        .behaviour()
        .server()
        .peer_accounting(&client_id)
        .expect("connected");
    assert_eq!(accounting.messages_received, 3);
    server
        .behaviour()
        .server()
        .check_invariants()
        .expect("engine invariants");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peers_wants_are_taken_in_at_the_configured_rate() {
    // 100 entries at once, then 2000 per second: the other 900 of 1000 take about 450 ms,
    // and all of them get in (peers waiting for their allowance are woken by a timer).
    let config = Config::default()
        .with_max_wants_per_second(2000)
        .with_want_burst(100);
    let (mut server, mut client, client_id, server_id) = connected(config).await;
    let entries = (0..1000)
        .map(|i| Entry::want_have(*raw_block(10, 9000 + i).cid(), 1))
        .collect();
    let start = Instant::now();
    send_wants(&mut client, server_id, entries);
    let mut halfway = None;
    drive(&mut server, &mut client, |server, _, _| {
        let kept = server.behaviour().server().peer_wantlist(&client_id).len();
        if kept >= 500 && halfway.is_none() {
            halfway = Some(start.elapsed());
        }
        (kept == 1000).then_some(())
    })
    .await;
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400),
        "1000 wants taken in after {elapsed:?}, faster than the rate allows"
    );
    let halfway = halfway.expect("passed 500 wants");
    assert!(
        halfway >= Duration::from_millis(150) && halfway < elapsed,
        "500 wants after {halfway:?}, all after {elapsed:?}: not spread over time"
    );
}
