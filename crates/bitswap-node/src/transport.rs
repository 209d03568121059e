//! Transport settings shared by the node and its tests.

use libp2p::yamux;

/// Largest data frame body rust yamux 0.14 accepts; a larger one closes the connection.
pub const YAMUX_MAX_FRAME_BODY_BYTES: usize = 1024 * 1024;

/// Yamux's initial (and minimum) receive window of a stream.
const YAMUX_DEFAULT_CREDIT_BYTES: usize = 256 * 1024;

/// Yamux's connection-wide receive window, which libp2p-yamux 0.48 does not let us set.
const YAMUX_CONNECTION_WINDOW_BYTES: usize = 1024 * 1024 * 1024;

/// Most streams per connection: chosen so that the window beyond each stream's 256 KiB that
/// yamux may hand out, shared by all streams of a connection, is 768 KiB.
pub const YAMUX_MAX_STREAMS: usize = (YAMUX_CONNECTION_WINDOW_BYTES
    - (YAMUX_MAX_FRAME_BODY_BYTES - YAMUX_DEFAULT_CREDIT_BYTES))
    / YAMUX_DEFAULT_CREDIT_BYTES;

/// The yamux configuration of the node: no stream's receive window ever exceeds 1 MiB.
///
/// rust yamux 0.14 refuses data frames over 1 MiB, while js-yamux (Helia's `@libp2p/yamux`)
/// sends frames as large as the stream's send window. Yamux auto-tunes a stream's window up to
/// the connection's window (1 GiB) minus 256 KiB for each of `max_num_streams` streams, so with
/// the default 512 streams a fast Helia peer gets a window of several MiB, sends a 2 MiB frame,
/// and the connection dies (`FrameTooLarge`). With [`YAMUX_MAX_STREAMS`] streams the spare
/// window is 768 KiB per connection, so a window reaches at most 1 MiB. go-yamux (kubo) caps
/// its frames at 64 KiB and is unaffected either way.
///
/// The frame limit is a constant of rust yamux 0.14 (`MAX_FRAME_BODY_LEN`), and libp2p-yamux
/// 0.48 lets us set nothing but the stream count, so there is no setting that gives one
/// stream both a large window and Helia's frames. Large windows come from several streams
/// instead: each stream has its own window (256 KiB, and rust yamux never returns the
/// connection's spare window once a stream took it), and the Bitswap server spreads its
/// blocks over up to 24 streams per connection
/// ([`bitswap::network::Config::with_max_unordered_streams`]), so a far peer of ours has up to
/// 6 MiB on its way while no frame over 1 MiB is ever needed from js-yamux.
pub fn yamux_config() -> yamux::Config {
    let mut config = yamux::Config::default();
    config.set_max_num_streams(YAMUX_MAX_STREAMS);
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
}
