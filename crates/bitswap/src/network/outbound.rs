//! The task that writes one outbound stream: messages in order, each encoded for the
//! stream's version, each write timed; it reports what it wrote, what stalled or failed,
//! and closes the stream once idle. On a stream whose version was guessed it waits, after
//! the first message, for the peer to accept or refuse the guess.

use std::{future::Future, io, pin::pin, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{
    AsyncReadExt, AsyncWriteExt, SinkExt, StreamExt,
    channel::{mpsc, oneshot},
    future::{Either, select},
};
use futures_bounded::Delay;
use libp2p::{core::upgrade::NegotiationError, swarm::Stream};

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
    /// The peer refused the version guessed for the stream ([`Guess`]): the message written
    /// and those that reached the stream since go back, to a stream that offers every version.
    Refused {
        writer: u64,
        returned: Vec<(MessageId, Message)>,
    },
    /// The peer took the version guessed for the stream: it confirmed it, or did not refuse it
    /// within the guess's limit (a refusal takes a round trip; the limit is several).
    Accepted { writer: u64, version: Version },
}

/// A stream whose version was offered alone before the peer's versions were known, so that
/// its first message travels with the proposal instead of a round trip after it. A peer that
/// refuses the version answers the proposal with `na` and drops what follows, which only a
/// read shows: after its first message, the stream waits for that answer, for `confirmed`
/// (the handler learnt that the peer speaks the version), or for `limit`, before it reports
/// the message sent and writes more.
pub(super) struct Guess {
    /// Fires once the handler knows the version is the peer's; dropped (which ends the wait
    /// as well) when the handler lets the stream go.
    pub(super) confirmed: oneshot::Receiver<()>,
    /// The longest wait for a verdict; a refusal takes a round trip.
    pub(super) limit: Duration,
}

/// Writes the messages of `messages` in order on `stream`, each encoded for `version`, until
/// none comes for [`Config::outbound_idle_timeout`] (then closes the stream), a write fails
/// (then drops, so resets, the stream), or the peer refuses a [`Guess`].
pub(super) async fn write_messages(
    writer: u64,
    mut stream: Stream,
    version: Version,
    mut messages: mpsc::Receiver<(MessageId, Message)>,
    mut reports: mpsc::Sender<WriteReport>,
    config: Arc<Config>,
    mut guess: Option<Guess>,
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
        // Kept for a stream on a different version if the peer refuses the guess.
        let copy = guess.is_some().then(|| message.clone());
        drop(message);
        let size = frames.iter().map(Bytes::len).sum();
        let stall = config.write_stall();
        let timeout = config.send_timeout(size);
        let written = {
            let mut write = pin!(protocol::write_frames(&mut stream, &frames));
            match writes.run(stall.min(timeout), write.as_mut()).await {
                Some(written) => Some(written),
                None if stall >= timeout => None,
                None => {
                    if reports.send(WriteReport::Stalled { writer }).await.is_err() {
                        return;
                    }
                    writes.run(timeout - stall, write).await
                }
            }
        };
        if let (Some(guess), Some(copy)) = (guess.take(), copy) {
            match verdict(&mut stream, guess).await {
                Verdict::Refused => {
                    messages.close();
                    let mut returned = vec![(id, copy)];
                    while let Ok(message) = messages.try_recv() {
                        returned.push(message);
                    }
                    let _ = reports
                        .send(WriteReport::Refused { writer, returned })
                        .await;
                    return;
                }
                Verdict::Accepted => {
                    let accepted = WriteReport::Accepted { writer, version };
                    if reports.send(accepted).await.is_err() {
                        return;
                    }
                }
                Verdict::Unknown => {}
            }
        }
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

/// What the peer said of a guessed version.
enum Verdict {
    /// It answered `na`.
    Refused,
    /// It confirmed the version, sent data or ended the stream, or did not refuse within the
    /// guess's limit.
    Accepted,
    /// The handler learnt the version meanwhile (it needs no report), or the stream failed.
    Unknown,
}

/// What the peer says of the version of `stream`, offered alone: reading completes the
/// negotiation, and fails with [`NegotiationError::Failed`] on a refusal.
async fn verdict(stream: &mut Stream, guess: Guess) -> Verdict {
    let mut byte = [0u8; 1];
    let read = stream.read(&mut byte);
    let limit = Delay::futures_timer(guess.limit);
    match select(pin!(read), select(guess.confirmed, limit)).await {
        Either::Left((Ok(_), _)) | Either::Right((Either::Right(_), _)) => Verdict::Accepted,
        Either::Left((Err(error), _)) if is_refusal(&error) => Verdict::Refused,
        Either::Left((Err(_), _)) | Either::Right((Either::Left(_), _)) => Verdict::Unknown,
    }
}

/// Whether `error` is multistream-select's answer `na` to the only protocol offered.
fn is_refusal(error: &io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<NegotiationError>())
        .is_some_and(|inner| matches!(inner, NegotiationError::Failed))
}

/// `future`'s output, or `None` if it takes longer than `duration`.
async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    match select(pin!(future), Delay::futures_timer(duration)).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}
