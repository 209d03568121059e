//! The message layer ([`bitswap::network`]): swarms over loopback TCP (Noise, Yamux)
//! exchanging Bitswap messages, plus raw peers that
//! write the wire format by hand the way kubo and Helia use streams.

#[path = "../common/mod.rs"]
mod common;

use std::time::Duration;

use bitswap::{
    Block, BlockPresence, BlockPresenceType, Entry, Message, Version, WantType, Wantlist,
    network::{Behaviour, Config, Event, InboundFailure, MessageId, SendError, SendFailure},
    protocol::ProtocolError,
};
use cid::Cid;
use futures::{AsyncReadExt, AsyncWriteExt, StreamExt, channel::mpsc};
use ipfs_blockstore::testing;
use libp2p::{
    PeerId, StreamProtocol, Swarm, identify, identity, ping,
    swarm::{NetworkBehaviour, SwarmEvent},
};
use multihash_codetable::{Code, MultihashDigest};
use tokio::time::timeout;

use common::{bytes, listen, new_lazy_swarm, new_swarm};

mod raw;
mod swarms;

/// Bound of every wait in these tests.
const TIMEOUT: Duration = Duration::from_secs(30);

fn node(config: Config) -> Swarm<Behaviour> {
    new_swarm(Behaviour::new(config))
}

/// A CIDv1 raw block of `len` bytes.
fn raw_block(len: usize, seed: u8) -> Block {
    testing::raw_block(u64::from(seed), len)
}

/// A CIDv0 block (what 1.0.0 peers can receive).
fn v0_block(len: usize, seed: u8) -> Block {
    Block::from_v0_data(bytes(len, u32::from(seed))).expect("valid block")
}

fn cid(seed: u8) -> Cid {
    *raw_block(8, seed).cid()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

/// Drives both swarms until `f` returns something, for at most [`TIMEOUT`].
async fn drive<T>(
    a: &mut Swarm<Behaviour>,
    b: &mut Swarm<Behaviour>,
    mut f: impl FnMut(Side, SwarmEvent<Event>) -> Option<T>,
) -> T {
    timeout(TIMEOUT, async {
        loop {
            let (side, event) = tokio::select! {
                event = a.select_next_some() => (Side::A, event),
                event = b.select_next_some() => (Side::B, event),
            };
            if let Some(out) = f(side, event) {
                return out;
            }
        }
    })
    .await
    .expect("timed out driving the swarms")
}

/// A wantlist update of one want-block for `cid(seed)`.
fn want_one(seed: u8) -> Message {
    Message::wantlist_update(vec![Entry::want_block(cid(seed), 1)])
}

/// `count` messages, message `i` wanting `cid(i)`; every `every`-th one (from the first) also
/// carries a raw block of `block_size` bytes.
fn with_blocks(count: u8, every: u8, block_size: usize) -> Vec<Message> {
    (0..count)
        .map(|i| Message {
            wantlist: Wantlist {
                entries: vec![Entry::want_block(cid(i), 1)],
                full: false,
            },
            blocks: if i % every == 0 {
                vec![raw_block(block_size, i)]
            } else {
                Vec::new()
            },
            ..Message::default()
        })
        .collect()
}

/// A node of `a_config` connected to a default one: both, then their ids.
async fn connected_pair(a_config: Config) -> (Swarm<Behaviour>, Swarm<Behaviour>, PeerId, PeerId) {
    let mut a = node(a_config);
    let mut b = node(Config::default());
    let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
    connect(&mut a, &mut b).await;
    (a, b, a_id, b_id)
}

/// Dials `b` from `a` and waits until both report the peer connected.
async fn connect(a: &mut Swarm<Behaviour>, b: &mut Swarm<Behaviour>) {
    let address = listen(b).await;
    a.dial(address).expect("dial");
    let (mut a_connected, mut b_connected) = (false, false);
    drive(a, b, |side, event| {
        if let SwarmEvent::Behaviour(Event::PeerConnected { .. }) = event {
            match side {
                Side::A => a_connected = true,
                Side::B => b_connected = true,
            }
        }
        (a_connected && b_connected).then_some(())
    })
    .await;
}

/// Drives both swarms until `side` received `count` messages; returns them.
async fn receive(
    a: &mut Swarm<Behaviour>,
    b: &mut Swarm<Behaviour>,
    side: Side,
    count: usize,
) -> Vec<Message> {
    let mut received = Vec::new();
    drive(a, b, |s, event| {
        if let SwarmEvent::Behaviour(Event::Message { message, .. }) = event
            && s == side
        {
            received.push(message);
        }
        (received.len() >= count).then_some(())
    })
    .await;
    received
}
