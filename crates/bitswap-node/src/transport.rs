//! Transport settings of the node beyond the library's: QUIC streams that tolerate kubo's
//! early stops. The yamux setting is the library's [`bitswap::capped_yamux_config`]: the
//! workspace builds yamux with stream windows capped at 1 MiB (`vendor/yamux`).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent, StreamMuxerExt as _};

/// A QUIC connection (any [`StreamMuxer`]) whose inbound streams keep working after the peer
/// stops reading them: writes then succeed and go nowhere, reads go on.
///
/// kubo (a go-multistream whose lazy streams do not wait for the listener's echo) answers a
/// want on a new stream it closes right after writing: its `Close` also stops reading, which
/// over QUIC sends `STOP_SENDING` before our multistream-select listener has echoed the
/// protocol. The listener's echo then fails and rust-libp2p drops the stream with the blocks
/// kubo wrote on it. go-libp2p's own listener ignores that failed echo; so does this wrapper,
/// by swallowing writes (and flushes and the close) on an inbound stream from the first write
/// the peer stopped. Over TCP, go-yamux stops reading without telling the peer, so only QUIC
/// needs it. Outbound streams are left as they are: a message we send there must fail when it
/// cannot arrive.
#[derive(Debug)]
pub struct StopTolerant<M> {
    inner: M,
}

impl<M> StopTolerant<M> {
    /// Wraps `inner`.
    pub fn new(inner: M) -> Self {
        Self { inner }
    }
}

impl<M> StreamMuxer for StopTolerant<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = StopTolerantStream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let stream = ready!(self.inner.poll_inbound_unpin(cx))?;
        Poll::Ready(Ok(StopTolerantStream::new(stream, true)))
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let stream = ready!(self.inner.poll_outbound_unpin(cx))?;
        Poll::Ready(Ok(StopTolerantStream::new(stream, false)))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_close_unpin(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        self.inner.poll_unpin(cx)
    }
}

/// A stream of a [`StopTolerant`] connection.
#[derive(Debug)]
pub struct StopTolerantStream<S> {
    inner: S,
    /// Opened by the peer: its writes may be swallowed.
    inbound: bool,
    /// The peer stopped reading: every write from now on is swallowed.
    stopped: bool,
}

impl<S> StopTolerantStream<S> {
    fn new(inner: S, inbound: bool) -> Self {
        Self {
            inner,
            inbound,
            stopped: false,
        }
    }

    /// `write` on the inner stream, unless the peer stopped reading: then `done`, and every
    /// later write too. quinn reports a `STOP_SENDING` as `ConnectionReset`; a lost
    /// connection is `NotConnected` and stays an error.
    fn write<T>(
        &mut self,
        cx: &mut Context<'_>,
        done: T,
        write: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>>
    where
        S: Unpin,
    {
        if self.stopped {
            return Poll::Ready(Ok(done));
        }
        let result = ready!(write(Pin::new(&mut self.inner), cx));
        self.stopped = self.inbound
            && matches!(&result, Err(error) if error.kind() == io::ErrorKind::ConnectionReset);
        Poll::Ready(if self.stopped { Ok(done) } else { result })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StopTolerantStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StopTolerantStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(cx, buf.len(), |inner, cx| inner.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write(cx, (), |inner, cx| inner.poll_flush(cx))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Not passed on once stopped: libp2p-quic's stream reads nothing more after a failed
        // close, and the peer's data may still be there to read.
        self.write(cx, (), |inner, cx| inner.poll_close(cx))
    }
}

#[cfg(test)]
mod tests {
    use futures::{AsyncReadExt as _, AsyncWriteExt as _, executor::block_on};

    use super::*;

    /// A stream whose peer sent `data` and stopped reading (or lost the connection).
    struct Stopped {
        data: io::Cursor<Vec<u8>>,
        kind: io::ErrorKind,
        writes: usize,
        closes: usize,
    }

    impl AsyncRead for Stopped {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(io::Read::read(&mut self.data, buf))
        }
    }

    impl AsyncWrite for Stopped {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            Poll::Ready(Err(self.kind.into()))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.closes += 1;
            Poll::Ready(Err(self.kind.into()))
        }
    }

    fn stopped(kind: io::ErrorKind, inbound: bool) -> StopTolerantStream<Stopped> {
        let inner = Stopped {
            data: io::Cursor::new(b"the blocks".to_vec()),
            kind,
            writes: 0,
            closes: 0,
        };
        StopTolerantStream::new(inner, inbound)
    }

    #[test]
    fn an_inbound_stream_the_peer_stopped_is_still_read() {
        block_on(async {
            let mut stream = stopped(io::ErrorKind::ConnectionReset, true);
            stream.write_all(b"/multistream/1.0.0\n").await.unwrap();
            stream.write_all(b"more").await.unwrap();
            stream.flush().await.unwrap();
            stream.close().await.unwrap();
            let mut read = Vec::new();
            stream.read_to_end(&mut read).await.unwrap();
            assert_eq!(read, b"the blocks");
            // The stop was seen once; nothing more reached the stream.
            assert_eq!((stream.inner.writes, stream.inner.closes), (1, 0));
        });
    }

    #[test]
    fn other_failures_and_outbound_streams_stay_errors() {
        block_on(async {
            let mut lost = stopped(io::ErrorKind::NotConnected, true);
            assert!(lost.write_all(b"x").await.is_err());
            assert!(lost.close().await.is_err());
            let mut outbound = stopped(io::ErrorKind::ConnectionReset, false);
            assert!(outbound.write_all(b"x").await.is_err());
            assert!(outbound.write_all(b"x").await.is_err());
            assert!(outbound.close().await.is_err());
        });
    }
}
