//! Reading inbound streams: [`Budget`], the room messages take in memory from their first body
//! byte until they are taken, and [`read_messages`], which reads a stream message after
//! message within that room and the timeouts.
//!
//! Room comes from three places. Each connection has 64 KiB of its own, taken first by a
//! message that fits whole, so a peer's small messages never wait behind other peers' large
//! ones. Larger messages take room from the budget all connections share
//! ([`Config::max_inbound_bytes`]), and at most [`Config::max_inbound_bytes_per_connection`]
//! of it per connection: the connection's own messages wait for each other there, first come
//! first served, so one peer cannot take the whole budget however many streams it opens.
//!
//! A message takes its room once its first body byte has arrived, not when its length is
//! read: a peer that sends a length and stalls holds nothing. From then on the body must keep
//! arriving at [`Config::min_inbound_rate`], measured over windows of
//! [`Config::inbound_rate_window`]: a window that ends short of its bytes resets the stream.
//! A slow or stalled body is so cut within one window instead of holding its room until the
//! idle timeout, while an honest peer on a slow link (kubo itself gives up on writes slower
//! than 100 kbit/s) is never cut. Waiting for room is not timed: the peer's bytes wait in
//! its stream, within its flow-control window.

use std::{
    io,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, StreamExt, stream::BoxStream};
use libp2p::swarm::Stream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{config::Config, deadline::Deadlines};
use crate::{
    decode::{Dropped, decode_message},
    message::Message,
    protocol::{self, ProtocolError},
};

/// Bytes of inbound messages each connection may hold of its own, outside the shared budget.
pub(super) const OWN_BYTES: usize = 64 * 1024;

/// The room inbound messages may take, as seen by one connection: the budget shared by all
/// connections, the connection's part of it, and its own room.
#[derive(Clone)]
pub(crate) struct Budget {
    /// Room left in [`Config::max_inbound_bytes`], shared by all connections.
    shared: Arc<Semaphore>,
    /// [`Config::max_inbound_bytes`]: the most one message may take of `shared`.
    shared_bytes: u32,
    /// Room left of what this connection may take of `shared`.
    connection: Arc<Semaphore>,
    /// [`Config::max_inbound_bytes_per_connection`].
    connection_bytes: u32,
    /// Room left of the connection's own [`OWN_BYTES`], taken first.
    own: Arc<Semaphore>,
    /// [`Config::max_wantlist_entries`].
    pub(super) max_entries: usize,
    /// [`Config::inbound_idle_timeout`].
    idle: Duration,
    /// [`Config::min_inbound_rate`], in bytes per second.
    min_rate: u64,
    /// [`Config::inbound_rate_window`].
    window: Duration,
}

impl Budget {
    pub(crate) fn new(config: &Config) -> Self {
        let shared = config.max_inbound_bytes().min(Semaphore::MAX_PERMITS);
        let connection = config.max_inbound_bytes_per_connection().min(shared);
        Self {
            shared: Arc::new(Semaphore::new(shared)),
            shared_bytes: u32::try_from(shared).unwrap_or(u32::MAX),
            connection: Arc::new(Semaphore::new(connection)),
            connection_bytes: u32::try_from(connection).unwrap_or(u32::MAX),
            own: Arc::new(Semaphore::new(OWN_BYTES)),
            max_entries: config.max_wantlist_entries(),
            idle: config.inbound_idle_timeout(),
            min_rate: config.min_inbound_rate(),
            window: config.inbound_rate_window(),
        }
    }

    /// The same limits and shared budget, with a part and room of its own for a new
    /// connection.
    pub(crate) fn for_connection(&self) -> Self {
        Self {
            connection: Arc::new(Semaphore::new(self.connection_bytes as usize)),
            own: Arc::new(Semaphore::new(OWN_BYTES)),
            ..self.clone()
        }
    }

    /// Room for a message of `len` bytes: the connection's own if it fits there, else its
    /// part of the shared budget and then the shared budget (waiting for each, first come,
    /// first served).
    async fn share(&self, len: usize) -> Share {
        // At most 4 MiB: fits in u32.
        let bytes = (len as u32).max(1);
        if let Ok(own) = Arc::clone(&self.own).try_acquire_many_owned(bytes) {
            return Share {
                room: own,
                shared: None,
            };
        }
        let connection = Arc::clone(&self.connection)
            .acquire_many_owned(bytes.min(self.connection_bytes))
            .await
            .expect("the budget is never closed");
        let shared = Arc::clone(&self.shared)
            .acquire_many_owned(bytes.min(self.shared_bytes))
            .await
            .expect("the budget is never closed");
        Share {
            room: connection,
            shared: Some(shared),
        }
    }

    /// The bytes a body must get in each rate window (at least 1).
    fn bytes_per_window(&self) -> usize {
        let bytes = self.min_rate as f64 * self.window.as_secs_f64();
        (bytes as usize).max(1)
    }
}

/// A message's room in the [`Budget`], given back when dropped.
#[derive(Debug)]
#[allow(
    dead_code,
    reason = "the permits are held for their drop, read by tests only"
)]
pub(crate) struct Share {
    /// The connection's own room, or its part of the shared budget.
    room: OwnedSemaphorePermit,
    /// The shared budget's, unless the message fit in the connection's own room.
    shared: Option<OwnedSemaphorePermit>,
}

impl Share {
    /// Bytes held of the budget, the shared part counted once.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.shared.as_ref().unwrap_or(&self.room).num_permits()
    }
}

/// A message read from an inbound stream, holding its room in the budget.
pub(crate) struct Read {
    pub(crate) message: Message,
    /// When it began to arrive: when the peer opened the stream, for the stream's first
    /// message (the peer may have negotiated the protocol first, a round trip before the
    /// message), else when its length had arrived.
    pub(crate) began: Instant,
    /// Given back when the message is taken.
    pub(crate) share: Share,
    /// What decoding left out (wants over [`Config::max_wantlist_entries`], entries with
    /// bad CIDs, ...).
    pub(crate) dropped: Dropped,
}

/// Reads messages from an inbound stream the peer opened at `opened` until the peer closes
/// it, it fails, no message starts within the idle timeout, or a body arrives too slowly (see
/// the module docs). Ends after a failure; dropping the stream then resets it.
pub(crate) fn read_messages(
    stream: Stream,
    opened: Instant,
    budget: Budget,
) -> BoxStream<'static, Result<Read, ProtocolError>> {
    let state = Some((stream, Deadlines::default(), Some(opened)));
    futures::stream::unfold(state, move |state| {
        let budget = budget.clone();
        async move {
            let (mut stream, mut deadlines, opened) = state?;
            let idle = budget.idle;
            let length = protocol::read_message_length(&mut stream);
            let len = match deadlines.run(idle, length).await {
                Some(Ok(Some(len))) => len,
                // The peer closed its side; dropping the stream closes ours.
                Some(Ok(None)) => return None,
                // Dropping the stream (still open) resets it.
                Some(Err(error)) => return Some((Err(error), None)),
                None => {
                    tracing::trace!(?idle, "idle bitswap inbound stream reset");
                    return None;
                }
            };
            let began = opened.unwrap_or_else(Instant::now);
            let (body, share) = match read_body(&mut stream, len, &budget, &mut deadlines).await {
                Ok(Some(body)) => body,
                Ok(None) => {
                    tracing::trace!("bitswap inbound message too slow, stream reset");
                    return None;
                }
                Err(error) => return Some((Err(error.into()), None)),
            };
            match decode_message(&body, budget.max_entries) {
                Ok((message, dropped)) => {
                    let read = Read {
                        message,
                        began,
                        share,
                        dropped,
                    };
                    Some((Ok(read), Some((stream, deadlines, None))))
                }
                Err(error) => Some((Err(error), None)),
            }
        }
    })
    .boxed()
}

/// Reads a body of `len` bytes (at most [`MAX_MESSAGE_SIZE`](crate::protocol::MAX_MESSAGE_SIZE)) once its
/// first byte is there and room is taken for it; `None` if it arrives too slowly.
async fn read_body<R: AsyncRead + Unpin>(
    io: &mut R,
    len: usize,
    budget: &Budget,
    deadlines: &mut Deadlines,
) -> io::Result<Option<(Bytes, Share)>> {
    let mut rate = Rate::new(budget);
    if len == 0 {
        return Ok(Some((Bytes::new(), budget.share(0).await)));
    }
    let mut first = [0u8; 1];
    let Some(()) = rate.read(io, &mut first, deadlines).await? else {
        return Ok(None);
    };
    let share = budget.share(len).await;
    // The window starts again once room is there: waiting for it is not the peer's doing.
    rate.restart();
    // The room for all of it is taken: one buffer of the exact length (blocks keep slices of
    // it, so no spare capacity is kept alive), filled as bytes arrive.
    let mut buf = vec![0u8; len];
    buf[0] = first[0];
    let Some(()) = rate.read(io, &mut buf[1..], deadlines).await? else {
        return Ok(None);
    };
    Ok(Some((Bytes::from(buf), share)))
}

/// The body's rate: the bytes the current window still needs and when it ends.
struct Rate {
    per_window: usize,
    window: Duration,
    /// Bytes still due in the current window.
    due: usize,
    ends: Instant,
}

impl Rate {
    fn new(budget: &Budget) -> Self {
        let per_window = budget.bytes_per_window();
        Self {
            per_window,
            window: budget.window,
            due: per_window,
            ends: Instant::now() + budget.window,
        }
    }

    fn restart(&mut self) {
        self.due = self.per_window;
        self.ends = Instant::now() + self.window;
    }

    /// Fills `buf`; `None` if a window ends short of its bytes.
    async fn read<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        buf: &mut [u8],
        deadlines: &mut Deadlines,
    ) -> io::Result<Option<()>> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.read_some(io, &mut buf[filled..], deadlines).await? {
                Some(n) => filled += n,
                None => return Ok(None),
            }
        }
        Ok(Some(()))
    }

    /// Reads at least one byte into `buf`; `None` if the window ends first. An end of stream
    /// is an error: the message was cut.
    async fn read_some<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        buf: &mut [u8],
        deadlines: &mut Deadlines,
    ) -> io::Result<Option<usize>> {
        let left = self.ends.saturating_duration_since(Instant::now());
        match deadlines.run(left, io.read(buf)).await {
            None => Ok(None),
            Some(Ok(0)) => Err(io::ErrorKind::UnexpectedEof.into()),
            Some(Ok(n)) => {
                self.due = self.due.saturating_sub(n);
                if self.due == 0 {
                    self.restart();
                }
                Ok(Some(n))
            }
            Some(Err(error)) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use futures::executor::block_on;

    use super::*;

    /// A reader that yields `chunks` one per read, then stalls (or ends, if `ends`).
    struct Chunks {
        chunks: Vec<Vec<u8>>,
        ends: bool,
    }

    impl Chunks {
        /// `chunks`, then nothing more (the stream stays open).
        fn open(chunks: Vec<Vec<u8>>) -> Self {
            Self {
                chunks,
                ends: false,
            }
        }
    }

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.chunks.is_empty() {
                return if self.ends {
                    Poll::Ready(Ok(0))
                } else {
                    Poll::Pending
                };
            }
            let chunk = &mut self.chunks[0];
            let n = chunk.len().min(buf.len());
            buf[..n].copy_from_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.chunks.remove(0);
            }
            Poll::Ready(Ok(n))
        }
    }

    fn budget(config: Config) -> Budget {
        Budget::new(&config).for_connection()
    }

    /// A budget whose reads must come at 1,000 B/s over 50 ms windows (50 bytes per window).
    fn slow_budget() -> Budget {
        budget(Config::default().with_min_inbound_rate(1_000, Duration::from_millis(50)))
    }

    /// Reads a body of `len` bytes from `io` with `budget`, to the end, without a deadline.
    fn read(io: &mut Chunks, len: usize, budget: &Budget) -> io::Result<Option<(Bytes, Share)>> {
        block_on(read_body(io, len, budget, &mut Deadlines::default()))
    }

    #[test]
    fn a_body_is_read_whole_into_an_exact_buffer() {
        let budget = budget(Config::default());
        let body: Vec<u8> = (0..300_000u32).map(|i| i as u8).collect();
        let mut io = Chunks::open(body.chunks(7_000).map(<[u8]>::to_vec).collect());
        let (read, share) = read(&mut io, body.len(), &budget)
            .expect("read")
            .expect("in time");
        assert_eq!(read, body);
        assert_eq!(share.bytes(), body.len());
    }

    #[test]
    fn small_messages_use_the_connection_s_own_room_first() {
        let budget = budget(Config::default());
        let mut io = Chunks::open(vec![vec![1; 1000]]);
        let (_, share) = read(&mut io, 1000, &budget)
            .expect("read")
            .expect("in time");
        assert!(share.shared.is_none(), "own room only");
        assert_eq!(budget.own.available_permits(), OWN_BYTES - 1000);
        assert_eq!(budget.shared.available_permits(), 32 << 20);
    }

    #[test]
    fn a_length_without_a_body_takes_no_room() {
        let budget = slow_budget();
        let mut io = Chunks::open(Vec::new());
        let read = read(&mut io, 4 << 20, &budget).expect("no error");
        assert!(read.is_none(), "cut by the rate window");
        assert_eq!(budget.shared.available_permits(), 32 << 20);
    }

    #[test]
    fn a_body_slower_than_the_rate_is_cut_within_a_window() {
        // 1,000 B/s over 50 ms windows: 50 bytes per window; 10 bytes come, then nothing.
        let budget = slow_budget();
        let mut io = Chunks::open(vec![vec![1; 10]]);
        let start = Instant::now();
        let read = read(&mut io, 1 << 20, &budget).expect("no error");
        assert!(read.is_none());
        assert!(start.elapsed() < Duration::from_secs(5));
        // Its room is given back.
        assert_eq!(budget.shared.available_permits(), 32 << 20);
        assert_eq!(budget.connection.available_permits(), 8 << 20);
    }

    #[test]
    fn a_cut_body_is_an_error() {
        let budget = budget(Config::default());
        let mut io = Chunks {
            chunks: vec![vec![1; 10]],
            ends: true,
        };
        let error = read(&mut io, 100, &budget).expect_err("cut");
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn one_connection_holds_at_most_its_part_of_the_shared_budget() {
        let config = Config::default()
            .with_max_inbound_bytes(1 << 20)
            .with_max_inbound_bytes_per_connection(256 * 1024);
        let node = Budget::new(&config);
        let (a, b) = (node.for_connection(), node.for_connection());
        let first = block_on(a.share(200 * 1024));
        // A second large message of the same connection waits for the first.
        assert!(
            futures::FutureExt::now_or_never(a.share(200 * 1024)).is_none(),
            "over the connection's part"
        );
        // Another connection still gets room.
        let other = futures::FutureExt::now_or_never(b.share(200 * 1024));
        assert!(other.is_some(), "the shared budget has room");
        drop(first);
        assert!(futures::FutureExt::now_or_never(a.share(200 * 1024)).is_some());
    }
}
