//! Helpers for the client's unit tests: CIDs, blocks, peers, and draining actions.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cid::Cid;
use ipfs_blockstore::Block;
use libp2p::PeerId;
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest};

use super::{Action, Config, Engine, Event, QueryId};
use crate::{
    message::{BlockPresence, BlockPresenceType, Entry, Message, WantType},
    protocol::Version,
};

pub(super) fn block(i: u32) -> Block {
    let data = Bytes::from(format!("block {i}").repeat(200));
    let cid = Cid::new_v1(0x55, Code::Sha2_256.digest(&data));
    Block::new(cid, data).expect("valid")
}

pub(super) fn cid(i: u32) -> Cid {
    *block(i).cid()
}

/// Peer ids that sort in the order of `i`.
pub(super) fn peer(i: u8) -> PeerId {
    PeerId::from_multihash(Multihash::wrap(0, &[1, i]).expect("short")).expect("identity id")
}

pub(super) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// An engine with `peers` connected at `now` (1.2.0), actions drained.
pub(super) fn engine(config: Config, peers: &[u8], now: Instant) -> Engine {
    let mut engine = Engine::new(config);
    for p in peers {
        engine.handle_peer_connected(peer(*p), Version::V1_2_0, now);
    }
    drain(&mut engine);
    engine
}

/// An engine of the default config with `peers` connected that was just asked, at `now`,
/// for the blocks numbered `cids` in one query: it, `now`, the query and the actions drained.
pub(super) fn asked(peers: &[u8], cids: &[u32]) -> (Engine, Instant, QueryId, Vec<Action>) {
    let now = Instant::now();
    let mut engine = engine(Config::default(), peers, now);
    let cids = cids.iter().map(|&i| cid(i)).collect();
    let query = engine.get(cids, None, now).expect("ok");
    let actions = drain(&mut engine);
    (engine, now, query, actions)
}

pub(super) fn drain(engine: &mut Engine) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(action) = engine.poll_action() {
        out.push(action);
    }
    engine.check_invariants().expect("invariants");
    out
}

/// Every wantlist entry sent, with its recipient.
pub(super) fn entries(actions: &[Action]) -> Vec<(PeerId, Entry)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { peer, message } => Some((*peer, message)),
            _ => None,
        })
        .flat_map(|(peer, m)| m.wantlist.entries.iter().map(move |e| (peer, e.clone())))
        .collect()
}

/// Recipients of entries of `kind` (`None`: cancels) for `cid`.
pub(super) fn sent(actions: &[Action], cid: &Cid, kind: Option<WantType>) -> Vec<PeerId> {
    entries(actions)
        .into_iter()
        .filter(|(_, e)| e.cid == *cid && kind.map_or(e.cancel, |k| !e.cancel && e.want_type == k))
        .map(|(p, _)| p)
        .collect()
}

pub(super) fn events(actions: &[Action]) -> Vec<Event> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn with_block(b: &Block) -> Message {
    Message {
        blocks: vec![b.clone()],
        ..Message::default()
    }
}

pub(super) fn with_presence(cid: Cid, presence: BlockPresenceType) -> Message {
    Message {
        presences: vec![BlockPresence { cid, presence }],
        ..Message::default()
    }
}

/// `from` tells `engine` whether it has `cid`, in a message of that presence alone.
pub(super) fn tell(
    engine: &mut Engine,
    from: PeerId,
    cid: Cid,
    presence: BlockPresenceType,
    now: Instant,
) {
    engine.handle_message(from, &with_presence(cid, presence), now);
}
