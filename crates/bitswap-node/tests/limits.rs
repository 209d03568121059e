//! `serve`'s connection limits, against test peers on 127.0.0.1: connections over the limit
//! per peer, over the total, and past the pending handshakes allowed are refused, each remote
//! logged once however often it tries, while the first connection still fetches.

mod common;
#[path = "interop/support.rs"]
mod support;

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _},
    net::TcpStream,
    path::Path,
    time::Duration,
};

use bitswap::{Entry, Message, network};
use common::{Killed, command, s};
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, Swarm,
    swarm::{
        ConnectionId, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use support::{next_message, raw_cid, runtime, test_peer};

/// How the dialer sees a connection the listener took or refused.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Established, and still up after [`SETTLE`].
    Kept,
    /// Closed by the listener right after the handshake, or failed during it.
    Refused,
}

/// How long a connection must stay up to count as kept.
const SETTLE: Duration = Duration::from_millis(1500);

/// Dials `address` once more (whatever connections exist) and tells what became of it.
async fn dial(
    peer: &mut Swarm<network::Behaviour>,
    remote: PeerId,
    address: &Multiaddr,
) -> Outcome {
    let dial = DialOpts::peer_id(remote)
        .addresses(vec![address.clone()])
        .condition(PeerCondition::Always)
        .build();
    let id: ConnectionId = dial.connection_id();
    peer.dial(dial).unwrap();
    let established = loop {
        match peer.select_next_some().await {
            SwarmEvent::ConnectionEstablished { connection_id, .. } if connection_id == id => {
                break true;
            }
            SwarmEvent::OutgoingConnectionError { connection_id, .. } if connection_id == id => {
                break false;
            }
            _ => {}
        }
    };
    if !established {
        return Outcome::Refused;
    }
    let closed = tokio::time::timeout(SETTLE, async {
        loop {
            if let SwarmEvent::ConnectionClosed { connection_id, .. } =
                peer.select_next_some().await
                && connection_id == id
            {
                return;
            }
        }
    })
    .await;
    if closed.is_ok() {
        Outcome::Refused
    } else {
        Outcome::Kept
    }
}

/// Whether a raw TCP connection (which never starts its handshake) is closed by the node
/// within a few seconds.
fn raw_connection_closed(port: u16) -> (TcpStream, bool) {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 256];
    let closed = loop {
        match (&stream).read(&mut buf) {
            Ok(0) => break true,
            // multistream-select's greeting: the node took the connection.
            Ok(_) => continue,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (stream, closed)
}

/// The info lines of the log about refused connections.
fn refusals(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|line| line.contains("connection refused"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn connections_over_the_limits_are_refused_and_logged_once() {
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("node");
    let block_file = temp.path().join("block");
    let block = b"a block fetched while other connections are refused".to_vec();
    fs::write(&block_file, &block).unwrap();
    let put = command(&data, &["--json", "block", "put", s(&block_file)])
        .output()
        .unwrap();
    assert!(put.status.success(), "{put:?}");
    let cid = raw_cid(&block);

    let log = temp.path().join("serve.log");
    let mut child = command(
        &data,
        &[
            "serve",
            "--json",
            "--max-connections-per-peer",
            "1",
            "--max-connections",
            "2",
            "--max-pending-incoming",
            "1",
        ],
    )
    .env("RUST_LOG", "bitswap_node=info")
    .stderr(fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _serve = Killed(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let info: serde_json::Value = serde_json::from_str(&line).unwrap();
    let full: Multiaddr = info["multiaddrs"][0].as_str().unwrap().parse().unwrap();
    let serve_id: PeerId = info["peer_id"].as_str().unwrap().parse().unwrap();
    let mut address = full.clone();
    address.pop();
    let port = address
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .unwrap();

    let (a, c) = runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            // A: one connection kept, every other refused (one per peer).
            let mut a = test_peer();
            assert_eq!(dial(&mut a, serve_id, &address).await, Outcome::Kept);
            for _ in 0..3 {
                assert_eq!(dial(&mut a, serve_id, &address).await, Outcome::Refused);
            }
            // B: a second peer fits the total of 2; C does not, however often it tries.
            let mut b = test_peer();
            assert_eq!(dial(&mut b, serve_id, &address).await, Outcome::Kept);
            let mut c = test_peer();
            for _ in 0..3 {
                assert_eq!(dial(&mut c, serve_id, &address).await, Outcome::Refused);
            }
            // A's first connection still fetches.
            assert_eq!(a.network_info().connection_counters().num_established(), 1);
            let mut want = Message::default();
            want.wantlist.entries = vec![Entry::want_block(cid, 1)];
            a.behaviour_mut().send(serve_id, want).unwrap();
            let message = next_message(&mut a, serve_id).await;
            assert_eq!(message.blocks.len(), 1, "{message:?}");
            assert_eq!(message.blocks[0].data().as_ref(), block.as_slice());
            (*a.local_peer_id(), *c.local_peer_id())
        })
        .await
        .expect("within 60 s")
    });

    // Handshakes: one raw connection that never speaks holds the only pending slot (until
    // the handshake timeout); the next ones are closed at once.
    let (_holder, closed) = raw_connection_closed(port);
    assert!(!closed, "the first pending connection was closed");
    for _ in 0..3 {
        let (_stream, closed) = raw_connection_closed(port);
        assert!(closed, "a connection past the pending limit stayed open");
    }

    let lines = refusals(&log);
    for line in &lines {
        eprintln!("{line}");
    }
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].contains(&a.to_string()), "{lines:#?}");
    assert!(
        lines[0].contains("established connections per peer"),
        "{lines:#?}"
    );
    assert!(lines[1].contains(&c.to_string()), "{lines:#?}");
    assert!(lines[2].contains("127.0.0.1"), "{lines:#?}");
    assert!(lines[2].contains("pending incoming"), "{lines:#?}");
}
