//! The task that writes one outbound stream: messages in order, each encoded for the
//! stream's version, each write timed; it reports what it wrote, what stalled or failed,
//! and closes the stream once idle.

use std::{future::Future, pin::pin, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{
    AsyncWriteExt, SinkExt, StreamExt,
    channel::mpsc,
    future::{Either, select},
};
use futures_bounded::Delay;
use libp2p::swarm::Stream;

use super::{
    behaviour::{MessageId, SendFailure},
    config::Config,
    deadline::Deadlines,
};
use crate::{
    message::Message,
    protocol::{self, Version},
};

/// What a writer task reports.
pub(super) enum WriteReport {
    /// A message was written and flushed.
    Sent { writer: u64, id: MessageId },
    /// A write has taken longer than [`Config::write_stall`].
    Stalled { writer: u64 },
    /// Writing failed: the stream is reset; this message and those waiting for it fail.
    Failed {
        writer: u64,
        ids: Vec<MessageId>,
        error: SendFailure,
    },
    /// The stream stayed idle and is being closed; messages that reached it meanwhile go back.
    Closed {
        writer: u64,
        returned: Vec<(MessageId, Message)>,
    },
}

/// Writes the messages of `messages` in order on `stream`, each encoded for `version`, until
/// none comes for [`Config::outbound_idle_timeout`] (then closes the stream) or a write fails
/// (then drops, so resets, the stream).
pub(super) async fn write_messages(
    writer: u64,
    mut stream: Stream,
    version: Version,
    mut messages: mpsc::Receiver<(MessageId, Message)>,
    mut reports: mpsc::Sender<WriteReport>,
    config: Arc<Config>,
) {
    // Waits for the next message, and writes, each with a timer of their own kind.
    let (mut idle, mut writes) = (Deadlines::default(), Deadlines::default());
    loop {
        let next = idle.run(config.outbound_idle_timeout(), messages.next());
        let (id, message) = match next.await {
            Some(Some(next)) => next,
            // The handler is gone: the connection is closing.
            Some(None) => return,
            None => {
                messages.close();
                let mut returned = Vec::new();
                while let Ok(message) = messages.try_recv() {
                    returned.push(message);
                }
                let _ = reports.send(WriteReport::Closed { writer, returned }).await;
                // Everything was flushed; a failing close (say, the peer reset after reading)
                // loses nothing we could still resend.
                match timeout(config.close_timeout(), stream.close()).await {
                    Some(Ok(())) => {}
                    Some(Err(error)) => tracing::trace!(%error, "closing bitswap stream failed"),
                    None => tracing::trace!("closing bitswap stream timed out"),
                }
                return;
            }
        };
        let frames = protocol::encode_segments(&message, version);
        drop(message);
        let size = frames.iter().map(Bytes::len).sum();
        let mut write = pin!(protocol::write_frames(&mut stream, &frames));
        let stall = config.write_stall();
        let timeout = config.send_timeout(size);
        let written = match writes.run(stall.min(timeout), write.as_mut()).await {
            Some(written) => Some(written),
            None if stall >= timeout => None,
            None => {
                if reports.send(WriteReport::Stalled { writer }).await.is_err() {
                    return;
                }
                writes.run(timeout - stall, write).await
            }
        };
        let error = match written {
            Some(Ok(())) => {
                if reports
                    .send(WriteReport::Sent { writer, id })
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
            Some(Err(error)) => SendFailure::Write(Arc::new(error)),
            None => SendFailure::Timeout,
        };
        messages.close();
        let mut ids = vec![id];
        while let Ok((id, _)) = messages.try_recv() {
            ids.push(id);
        }
        let _ = reports
            .send(WriteReport::Failed { writer, ids, error })
            .await;
        return;
    }
}

/// `future`'s output, or `None` if it takes longer than `duration`.
async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    match select(pin!(future), Delay::futures_timer(duration)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}
