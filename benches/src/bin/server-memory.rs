//! Memory and time the server engine spends on wants it keeps: PEERS peers each send one full
//! wantlist of WANTS want-haves (no DONT_HAVE asked) for blocks the store does not have, as
//! `net-bench wants` does over the network, but in process and without connections, so the
//! figure is the engine's alone. Prints one JSON line on stdout and a summary on stderr.
//!
//! ```text
//! cargo run --release -p benches --bin server-memory [PEERS] [WANTS]
//! ```
//!
//! Fields: `peers`, `wants_per_peer`, `bytes` (allocated after the wantlists were taken in and
//! every probe answered, minus before), `bytes_per_want`, `ns_per_want` (wall time of taking
//! in the messages and answering the probes, over the wants), `ns_per_want_at_disconnect`
//! (dropping every peer), `bytes_after_disconnect` (what is still allocated once every peer
//! disconnected: leaks show here). With `SHARED=1` every peer wants the same blocks (a
//! popular file), which puts all peers' wants of a block under one hash in the server's index.

use std::time::Instant;

use bitswap::{Entry, LookupResult, Message, ServerConfig, ServerEngine, Version, Wantlist};
use cid::Cid;
use libp2p::PeerId;
use multihash_codetable::{Code, MultihashDigest};
use serde_json::json;

/// Counts every allocation, so the engine's memory is measured without unsafe code.
#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

/// The issue's budget for 1000 peers x 1024 wants, whole server process, in bytes.
const TARGET_BYTES: usize = 128 << 20;

fn argument(index: usize, default: usize) -> usize {
    std::env::args()
        .nth(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// The wantlist of peer number `peer`; with `shared`, every peer's is the same (a popular
/// file).
fn wantlist(peer: usize, wants: usize, shared: bool) -> Message {
    let entries = (0..wants)
        .map(|j| {
            let owner = if shared { 0 } else { peer };
            let data = ((owner * wants + j) as u64).to_le_bytes();
            Entry {
                send_dont_have: false,
                ..Entry::want_have(Cid::new_v1(0x55, Code::Sha2_256.digest(&data)), 1)
            }
        })
        .collect();
    Message {
        wantlist: Wantlist {
            entries,
            full: true,
        },
        ..Message::default()
    }
}

/// Answers every lookup as missing until the engine has nothing more to do.
fn drain(engine: &mut ServerEngine) {
    loop {
        let mut idle = true;
        while let Some(lookup) = engine.poll_lookup() {
            idle = false;
            engine.handle_lookup(lookup.id, LookupResult::Size(None));
        }
        while let Some(envelope) = engine.poll_envelope() {
            idle = false;
            engine.handle_envelope_sent(envelope.id);
        }
        if idle {
            return;
        }
    }
}

fn main() {
    let peers_n = argument(1, 1000);
    let wants = argument(2, 1024);
    let peers: Vec<PeerId> = (0..peers_n).map(|_| PeerId::random()).collect();
    // Built before the measurement: they stand for what the network layer decoded.
    let shared = std::env::var_os("SHARED").is_some();
    let messages: Vec<Message> = (0..peers_n).map(|i| wantlist(i, wants, shared)).collect();

    let mut engine = ServerEngine::new(ServerConfig::default());
    let before = ALLOC.allocated();
    let start = Instant::now();
    for (peer, message) in peers.iter().zip(&messages) {
        engine.handle_peer_connected(*peer, Version::V1_2_0);
        engine.handle_message(*peer, message);
        drain(&mut engine);
    }
    let seconds = start.elapsed().as_secs_f64();
    let bytes = ALLOC.allocated().saturating_sub(before);
    let kept = engine.stats().wants;
    assert_eq!(kept, peers_n * wants, "every want is kept");
    let start = Instant::now();
    for peer in &peers {
        engine.handle_peer_disconnected(peer);
    }
    let leave_seconds = start.elapsed().as_secs_f64();
    let after = ALLOC.allocated().saturating_sub(before);
    let total = (peers_n * wants).max(1);
    let per_want = bytes as f64 / total as f64;
    println!(
        "{}",
        json!({
            "peers": peers_n,
            "wants_per_peer": wants,
            "bytes": bytes,
            "bytes_per_want": per_want,
            "ns_per_want": seconds * 1e9 / total as f64,
            "ns_per_want_at_disconnect": leave_seconds * 1e9 / total as f64,
            "bytes_after_disconnect": after,
        })
    );
    eprintln!(
        "server engine: {peers_n} peers x {wants} wants: {:.1} MiB ({per_want:.0} B per want, \
         {:.0} ns per want, {:.0} ns per want at disconnect); {after} B left after every peer \
         left; budget for the whole process {} MiB",
        bytes as f64 / (1 << 20) as f64,
        seconds * 1e9 / total as f64,
        leave_seconds * 1e9 / total as f64,
        TARGET_BYTES >> 20,
    );
}
