//! One direction of one connection: read, wait for the rate, queue until the delay has passed,
//! write.
//!
//! The reader and the writer are two futures of the connection's task, joined by a FIFO of
//! (release instant, bytes). The reader reserves room for a whole chunk before it reads, so the
//! queue never holds more than [`Link::queue_limit`](crate::Link::queue_limit); when it is full
//! the reader stops reading and the sender's TCP window fills. The writer writes the chunks in
//! order, each no earlier than its release instant, so chunks never overtake each other.

use std::{
    collections::VecDeque,
    io,
    sync::{Mutex, PoisonError},
    time::Instant,
};

use bytes::{Bytes, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::Notify,
    time::sleep_until,
};

use crate::{Direction, proxy::Shared};

/// A chunk waiting for its release; `None` is the sender's end of stream.
struct Chunk {
    release: Instant,
    bytes: Option<Bytes>,
}

#[derive(Default)]
struct Queue {
    chunks: VecDeque<Chunk>,
    /// Bytes read and not yet written: in `chunks`, or being written.
    queued: usize,
}

/// The FIFO between a direction's reader and its writer.
///
/// There is exactly one reader and one writer, so `Notify::notify_one`, which keeps a permit
/// when nobody waits, cannot lose a wake-up.
#[derive(Default)]
struct Fifo {
    queue: Mutex<Queue>,
    /// Signalled when a chunk is pushed.
    pushed: Notify,
    /// Signalled when a chunk is written and its room released.
    popped: Notify,
}

impl Fifo {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Forwards `from` to `to` in `direction` of the link in `shared`, until the end of `from`
/// (then shuts `to` down), an error, or a cut of the link after `epoch`.
pub(crate) async fn pump<R, W>(
    shared: &Shared,
    epoch: u64,
    direction: Direction,
    mut from: R,
    mut to: W,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let fifo = Fifo::default();
    let _uncount = Uncount {
        shared,
        direction,
        fifo: &fifo,
    };
    let read = async {
        let mut buf = BytesMut::new();
        loop {
            let link = shared.link();
            let chunk_size = link.chunk_size(direction);
            let limit = link.queue_limit(direction);
            // Reserve room for a whole chunk before reading it.
            // Only this reader adds to the queue: the room stays free while it reads.
            while fifo.lock().queued + chunk_size > limit {
                fifo.popped.notified().await;
            }
            buf.reserve(chunk_size);
            let n = (&mut from)
                .take(chunk_size as u64)
                .read_buf(&mut buf)
                .await?;
            let bytes = (n > 0).then(|| buf.split().freeze());
            shared.check_cut(epoch)?;
            if n > 0 {
                shared.wait_for_rate(direction, n).await;
            }
            let release = Instant::now() + shared.link().delay(direction);
            {
                let mut queue = fifo.lock();
                queue.queued += n;
                queue.chunks.push_back(Chunk { release, bytes });
                shared.queued(direction, n, queue.queued);
            }
            fifo.pushed.notify_one();
            if n == 0 {
                return Ok::<_, io::Error>(());
            }
        }
    };
    let write = async {
        loop {
            let chunk = loop {
                if let Some(chunk) = fifo.lock().chunks.pop_front() {
                    break chunk;
                }
                fifo.pushed.notified().await;
            };
            if chunk.release > Instant::now() {
                sleep_until(chunk.release.into()).await;
            }
            shared.check_cut(epoch)?;
            let Some(bytes) = chunk.bytes else {
                to.shutdown().await?;
                return Ok(());
            };
            to.write_all(&bytes).await?;
            fifo.lock().queued -= bytes.len();
            shared.forwarded(direction, bytes.len());
            fifo.popped.notify_one();
        }
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// Uncounts what is still queued when a direction ends, by an error or a cut.
struct Uncount<'a> {
    shared: &'a Shared,
    direction: Direction,
    fifo: &'a Fifo,
}

impl Drop for Uncount<'_> {
    fn drop(&mut self) {
        let left = self.fifo.lock().queued;
        self.shared.dropped(self.direction, left);
    }
}
