//! net-bench's `wants` scenario: 1000 peers connect to one server process and each
//! sends 1024 wants for blocks it lacks: the server's RSS above idle (target: at most
//! 128 MiB). A second pass sends the same messages with one CID repeated 1024 times (so one
//! want per peer and the same bytes on the wire), and a third pass in which the peers only
//! connect: what the connections and transport cost without the wants.

use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use tokio::sync::oneshot;

use crate::net::ServerProcess;

/// Runs the scenario and prints its JSON line and a summary.
pub async fn run() {
    const PEERS: usize = 1000;
    const WANTS: usize = 1024;
    let distinct = wants_pass(PEERS, WANTS, Wants::Distinct).await;
    let repeated = wants_pass(PEERS, WANTS, Wants::Repeated).await;
    let silent = wants_pass(PEERS, WANTS, Wants::None).await;
    println!(
        "{}",
        json!({
            "scenario": "wants", "peers": PEERS, "wants_per_peer": WANTS,
            "server_rss_above_idle_mib": distinct.0, "server_peak_above_idle_mib": distinct.1,
            "one_want_per_peer_rss_above_idle_mib": repeated.0,
            "one_want_per_peer_peak_above_idle_mib": repeated.1,
            "connections_only_rss_above_idle_mib": silent.0,
            "connections_only_peak_above_idle_mib": silent.1,
        })
    );
    let mib = |v: Option<f64>| v.unwrap_or(f64::NAN);
    eprintln!(
        "wants: {PEERS} peers x {WANTS} wants: server RSS {:.1} MiB above idle (peak {:.1}; \
         target <= 128); the same messages holding one want per peer: {:.1} MiB (peak {:.1}); \
         the connections alone, no message: {:.1} MiB (peak {:.1})",
        mib(distinct.0),
        mib(distinct.1),
        mib(repeated.0),
        mib(repeated.1),
        mib(silent.0),
        mib(silent.1),
    );
}

/// What each peer of a `wants` pass sends once connected.
#[derive(Clone, Copy, PartialEq)]
enum Wants {
    /// One full wantlist of distinct CIDs.
    Distinct,
    /// One full wantlist repeating one CID: the same bytes, one want.
    Repeated,
    /// Nothing: what the connections alone cost.
    None,
}

/// One server process, `peers` peers each sending what `kind` says (a full wantlist of `wants`
/// entries, or nothing). Returns the server's RSS and peak RSS above idle, MiB.
async fn wants_pass(peers_n: usize, wants: usize, kind: Wants) -> (Option<f64>, Option<f64>) {
    let server = ServerProcess::spawn(&["serve".into(), "4".into(), "1".into(), "1024".into()])
        .expect("server process");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle = server.memory().map(|m| m.0);
    let mut peers = Vec::new();
    for i in 0..peers_n {
        let (sent, ready) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let (peer, address) = (server.peer, server.address.clone());
        let task = tokio::spawn(async move {
            let mut swarm = libp2p::SwarmBuilder::with_new_identity()
                .with_tokio()
                .with_tcp(
                    libp2p::tcp::Config::default(),
                    libp2p::noise::Config::new,
                    libp2p::yamux::Config::default,
                )
                .expect("tcp")
                .with_behaviour(|_| {
                    bitswap::network::Behaviour::new(bitswap::network::Config::default())
                })
                .expect("behaviour")
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(600)))
                .build();
            swarm.dial(address).expect("dial");
            let mut sent = Some(sent);
            let mut stopped = stopped;
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    event = swarm.select_next_some() => match event {
                        libp2p::swarm::SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => {
                            if kind == Wants::None {
                                if let Some(sent) = sent.take() {
                                    let _ = sent.send(());
                                }
                                continue;
                            }
                            let entries = (0..wants)
                                .map(|j| {
                                    let n = if kind == Wants::Distinct { i * wants + j } else { i * wants };
                                    let data = (n as u64).to_le_bytes();
                                    let hash = multihash_codetable::MultihashDigest::digest(&multihash_codetable::Code::Sha2_256, &data);
                                    bitswap::Entry {
                                        send_dont_have: false,
                                        ..bitswap::Entry::want_have(cid::Cid::new_v1(0x55, hash), 1)
                                    }
                                })
                                .collect();
                            let message = bitswap::Message {
                                wantlist: bitswap::Wantlist { entries, full: true },
                                ..bitswap::Message::default()
                            };
                            swarm.behaviour_mut().send(peer, message).expect("send");
                        }
                        libp2p::swarm::SwarmEvent::Behaviour(bitswap::network::Event::MessageSent { .. }) => {
                            if let Some(sent) = sent.take() {
                                let _ = sent.send(());
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        peers.push((stop, task, ready));
    }
    let mut stops = Vec::new();
    for (stop, task, ready) in peers {
        let _ = tokio::time::timeout(Duration::from_secs(120), ready).await;
        stops.push((stop, task));
    }
    // Let the server take in every wantlist.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = server.memory();
    let growth = idle
        .zip(now)
        .map(|(i, (rss, _))| rss.saturating_sub(i) as f64 / (1 << 20) as f64);
    let peak = idle
        .zip(now)
        .map(|(i, (_, hwm))| hwm.saturating_sub(i) as f64 / (1 << 20) as f64);
    for (stop, task) in stops {
        let _ = stop.send(());
        let _ = task.await;
    }
    (growth, peak)
}
