//! A connection killed by a muxer error fails the query that relied on it, with the error,
//! instead of leaving it waiting: the client's yamux meets a data frame over its 1 MiB limit
//! (`FrameTooLarge`, what Helia's window-sized frames caused with yamux's default settings).
//!
//! The oversized frame is made on the client's side of a loopback connection: its muxer reads
//! the connection through [`OversizedFrame`], which rewrites the length of one data frame's
//! header once some data went by. The client's own rust-yamux then refuses the frame, exactly
//! as when a peer sends it.

mod common;

use std::{
    io, iter,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bitswap::{
    Behaviour, Block, ClientConfig, Config, Event, GetError, MemoryBlockstore, QueryError,
};
use cid::Cid;
use futures::{AsyncRead, AsyncWrite, StreamExt, future};
use ipfs_blockstore::multicodec::RAW;
use libp2p::{
    SwarmBuilder,
    core::{
        UpgradeInfo,
        upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade},
    },
    noise,
    swarm::SwarmEvent,
    tcp, yamux,
};
use multihash_codetable::{Code, MultihashDigest};
use tokio::{sync::mpsc, time::timeout};

use common::{bytes, listen, new_swarm};

/// Bound of the whole test.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Size of a yamux frame header.
const HEADER_BYTES: usize = 12;

/// The length written into the header: 2 MiB, over rust-yamux's 1 MiB limit.
const OVERSIZED_BYTES: u32 = 2 << 20;

/// A yamux connection's byte stream, as its muxer reads it: once `after` bytes went by, the
/// next data frame's header claims [`OVERSIZED_BYTES`] of body. Writes pass unchanged.
struct OversizedFrame<S> {
    inner: S,
    after: usize,
    seen: usize,
    /// Position in the current header; [`HEADER_BYTES`] while in a body.
    position: usize,
    /// The current header's type (0: data, with a body) and length.
    tag: u8,
    length: usize,
    /// Bytes of the current body still to pass.
    body_left: usize,
    /// The current header is the one rewritten.
    rewriting: bool,
    /// The header was rewritten: nothing more to do.
    done: bool,
}

impl<S> OversizedFrame<S> {
    fn new(inner: S, after: usize) -> Self {
        Self {
            inner,
            after,
            seen: 0,
            position: 0,
            tag: 0,
            length: 0,
            body_left: 0,
            rewriting: false,
            done: false,
        }
    }

    /// Follows the frames in `bytes`, just read, and rewrites the chosen header's length.
    fn follow(&mut self, bytes: &mut [u8]) {
        let mut i = 0;
        while i < bytes.len() && !self.done {
            if self.body_left > 0 {
                let skip = self.body_left.min(bytes.len() - i);
                self.body_left -= skip;
                self.seen += skip;
                i += skip;
                continue;
            }
            let byte = &mut bytes[i];
            match self.position {
                1 => {
                    self.tag = *byte;
                    self.rewriting = self.seen >= self.after && self.tag == 0;
                }
                8..=11 => {
                    if self.rewriting {
                        *byte = OVERSIZED_BYTES.to_be_bytes()[self.position - 8];
                    }
                    self.length = self.length << 8 | usize::from(*byte);
                }
                _ => {}
            }
            self.position += 1;
            self.seen += 1;
            i += 1;
            if self.position == HEADER_BYTES {
                self.done = self.rewriting;
                if self.tag == 0 {
                    self.body_left = self.length;
                }
                (self.position, self.length) = (0, 0);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for OversizedFrame<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let read = futures::ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.follow(&mut buf[..read]);
        Poll::Ready(Ok(read))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for OversizedFrame<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// The library's yamux, reading its connection through [`OversizedFrame`].
#[derive(Clone)]
struct OversizedFrameYamux {
    after: usize,
}

impl UpgradeInfo for OversizedFrameYamux {
    type Info = &'static str;
    type InfoIter = iter::Once<Self::Info>;

    fn protocol_info(&self) -> Self::InfoIter {
        iter::once("/yamux/1.0.0")
    }
}

/// Implements the upgrade `$upgrade` (by its method `$method`) for [`OversizedFrameYamux`]: the
/// library's yamux, of the same direction, over an [`OversizedFrame`] of the connection.
macro_rules! oversized_frame_upgrade {
    ($upgrade:ident, $method:ident) => {
        impl<C> $upgrade<C> for OversizedFrameYamux
        where
            C: AsyncRead + AsyncWrite + Send + Unpin + 'static,
        {
            type Output = yamux::Muxer<OversizedFrame<C>>;
            type Error = io::Error;
            type Future = future::Ready<Result<Self::Output, Self::Error>>;

            fn $method(self, io: C, info: Self::Info) -> Self::Future {
                bitswap::yamux_config().$method(OversizedFrame::new(io, self.after), info)
            }
        }
    };
}

oversized_frame_upgrade!(InboundConnectionUpgrade, upgrade_inbound);
oversized_frame_upgrade!(OutboundConnectionUpgrade, upgrade_outbound);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_too_large_fails_the_query_with_the_muxer_error() {
    let blocks: Vec<Block> = (0..8)
        .map(|i| {
            let data = bytes(256 << 10, 0xf7a3_0000 + i);
            Block::new(Cid::new_v1(RAW, Code::Sha2_256.digest(&data)), data).expect("block")
        })
        .collect();
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();

    let mut server = new_swarm(Behaviour::new(MemoryBlockstore::new(), Config::default()));
    server.behaviour_mut().put(blocks).expect("put");
    let address = listen(&mut server).await;
    let server_id = *server.local_peer_id();

    let no_peers = Duration::from_secs(2);
    let client_config = ClientConfig::default().with_no_peer_timeout(Some(no_peers));
    let behaviour = Behaviour::new(
        MemoryBlockstore::new(),
        Config::default().with_client(client_config),
    );
    let mut client = SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, || {
            OversizedFrameYamux { after: 64 << 10 }
        })
        .expect("tcp transport")
        .with_behaviour(|_| behaviour)
        .expect("behaviour")
        .build();
    let control = client.behaviour().control();
    client.dial(address).expect("dial");

    let server_task = tokio::spawn(async move {
        loop {
            server.select_next_some().await;
        }
    });
    let (errors, mut reported) = mpsc::channel(16);
    let (connected, mut established) = mpsc::channel(1);
    let client_task = tokio::spawn(async move {
        loop {
            match client.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => {
                    let _ = connected.try_send(());
                }
                SwarmEvent::Behaviour(Event::ConnectionError { peer, error }) => {
                    let _ = errors.try_send((peer, error));
                }
                _ => {}
            }
        }
    });

    let outcome = timeout(TIMEOUT, async {
        established.recv().await.expect("connected");
        let mut stream = control.get_many(cids.clone(), None).await.expect("query");
        let mut received = 0;
        loop {
            match stream.next().await.expect("the stream ends with the error") {
                Ok(_) => received += 1,
                Err(error) => break (received, error),
            }
        }
    })
    .await;
    let event = reported.try_recv();
    server_task.abort();
    client_task.abort();

    let (received, error) = outcome.expect("the query ended instead of hanging");
    assert!(received < cids.len(), "the connection died mid-fetch");
    let GetError::Query(QueryError::NoPeers {
        waited,
        last_error: Some(cause),
    }) = &error
    else {
        panic!("unexpected error: {error}");
    };
    assert!(*waited >= no_peers, "{waited:?}");
    assert_eq!(cause.peer(), server_id);
    assert!(
        cause
            .message()
            .contains("frame body is too large (2097152)"),
        "{cause}"
    );
    assert!(
        error.to_string().contains("frame body is too large"),
        "{error}"
    );
    assert_eq!(
        event.expect("a ConnectionError event"),
        (server_id, cause.clone())
    );
}
