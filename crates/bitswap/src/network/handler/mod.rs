//! [`Handler`]: one per connection; moves messages between Bitswap streams and the behaviour.

use std::{
    collections::{HashSet, VecDeque},
    io,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{
    FutureExt, StreamExt,
    channel::{mpsc, oneshot},
    future::BoxFuture,
    stream::{BoxStream, FuturesUnordered},
};
use futures_bounded::Delay;
use libp2p::swarm::{
    ConnectionHandler, ConnectionHandlerEvent, Stream, StreamUpgradeError, SubstreamProtocol,
    handler::{
        ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
        ListenUpgradeError,
    },
};

use super::{
    behaviour::{InboundFailure, MessageId, SendFailure},
    config::Config,
    inbound::{Budget, Read, Share, read_messages},
    outbound::{WriteReport, write_messages},
    upgrade::{Upgrade, VersionSet},
};
use crate::{
    decode::Dropped,
    message::Message,
    protocol::{ProtocolError, Version},
};

mod events;
mod versions;

pub use self::events::{HandlerEvent, HandlerIn, OutboundOpen};

/// Messages a handler reports and the behaviour's user has not taken yet, per connection: as
/// many as libp2p's default event buffer of a connection (7) plus one. Inbound streams are not
/// read beyond it, so a peer that floods messages waits in its own
/// stream (bounded by its flow-control window) instead of queueing ahead of other peers'
/// events in the swarm.
const MAX_UNTAKEN: usize = 8;

/// The [`ConnectionHandler`] of Bitswap, one per connection. It only moves messages between
/// Bitswap streams and the [`Behaviour`](crate::network::Behaviour); it decides nothing about what to
/// send.
///
/// # Streams
///
/// - Inbound: every stream is read message after message until the peer closes it, so kubo's
///   long-lived wantlist stream and Helia's one-message streams both work. Each message is
///   reported as soon as it is read, while fewer than eight of the connection's messages wait
///   to be taken from the behaviour (a peer's flood stays in its own stream). Open streams are
///   polled oldest first, so messages of streams the peer wrote one after the other are
///   reported in that order. A message's body is read once its first byte arrived and it
///   has room: the connection's own (64 KiB) or its part
///   ([`Config::max_inbound_bytes_per_connection`]) of the inbound byte budget all
///   connections share ([`Config::max_inbound_bytes`]); the room is given back when the
///   message is taken. Messages are decoded with bounded memory
///   ([`decode_message`](crate::protocol::decode_message)): wants beyond
///   [`Config::max_wantlist_entries`] (but those kept for a DONT_HAVE) and what makes no sense
///   alone are left out and logged once per connection. At most
///   [`Config::max_inbound_streams`] are read at once; up to three times as many more wait,
///   unread, for a reader to finish (kubo answers on one short stream per message, which pile
///   up while the behaviour has not taken the messages already read), and more are reset; a
///   stream waiting longer than [`Config::inbound_idle_timeout`] for its
///   next message, or whose body arrives slower than [`Config::min_inbound_rate`], is reset;
///   a stream that fails to decode is reset and the failure
///   reported.
/// - Outbound: messages from the behaviour wait in a FIFO queue until an open stream takes
///   them; when none is open, the handler opens one. A stream encodes each message for the
///   version negotiated on it, writes them in order, reports each once flushed, and stays
///   open until it has had nothing to write for [`Config::outbound_idle_timeout`]. At most
///   one stream is being negotiated and [`Config::max_outbound_streams`] are open at once.
///   Unordered messages ([`Behaviour::send_unordered`](crate::network::Behaviour::send_unordered))
///   have a queue and streams of their own: each goes to an unordered stream with nothing to
///   write, or waits while more are opened (as many negotiated at once as are open, so
///   their number at most doubles per round trip), up to [`Config::max_unordered_streams`]. Each stream has its own flow-control window at the
///   peer, so a far peer's link is kept full by several streams where one stream's window
///   would cap it (rust-yamux, for instance, grants at most 1 MiB per stream). A connection
///   set up faster than [`Config::min_setup_to_spread`] is near enough for one stream's window:
///   its unordered messages go in order with the others, which costs less CPU.
///   Before the peer's versions are known (from a negotiated stream or identify), a new
///   stream offers our most preferred version alone, a guess that lets the first message
///   travel with the proposal; that message waits for the peer's verdict before others
///   follow it, and a refusal sends them again on a stream that offers every version.
///   Each message has its own write timeout ([`Config::send_timeout`]); a failed write resets
///   the stream and fails the messages waiting for it. A write that takes longer than
///   [`Config::write_stall`] reports its message and those waiting behind it as stalled.
pub struct Handler {
    config: Arc<Config>,
    upgrade: Upgrade,
    /// Messages not yet taken by a stream, oldest first. Bounded by the behaviour, which
    /// accepts at most [`Config::max_queued_messages`] unresolved messages per peer.
    queue: VecDeque<(MessageId, Message)>,
    /// An outbound stream for `queue` is being opened and negotiated.
    opening: bool,
    /// Unordered messages not yet taken by a stream, oldest first; bounded as `queue`.
    unordered: VecDeque<(MessageId, Message)>,
    /// Unordered streams being opened and negotiated.
    opening_unordered: usize,
    /// Unordered messages get streams of their own; false for a connection set up faster
    /// than [`Config::min_setup_to_spread`] (a near peer), and once the peer reset a new one
    /// (then they go with the ordered ones).
    spread: bool,
    /// Open outbound streams; at most [`Config::max_outbound_streams`] ordered ones and
    /// [`Config::max_unordered_streams`] unordered ones.
    writers: Vec<Writer>,
    /// The writers' tasks (and those closing their streams).
    writer_tasks: FuturesUnordered<BoxFuture<'static, ()>>,
    /// What the writers report, and the sender they share.
    reports: mpsc::Receiver<WriteReport>,
    report_sender: mpsc::Sender<WriteReport>,
    next_writer: u64,
    /// How inbound streams are read.
    budget: Budget,
    /// Streams being read, oldest first; at most [`Config::max_inbound_streams`].
    inbound: Vec<BoxStream<'static, Result<Read, ProtocolError>>>,
    /// Streams waiting for a reader, oldest first; at most [`WAITING_STREAMS_PER_READER`]
    /// times [`Config::max_inbound_streams`]. Their bytes wait in the muxer, within its
    /// flow-control window.
    waiting: VecDeque<(Stream, Instant)>,
    /// The budget shares of messages reported and not yet taken ([`HandlerIn::Taken`]),
    /// oldest first; at most [`MAX_UNTAKEN`].
    untaken: VecDeque<Share>,
    /// Events to report. `poll` reports them before anything else; they come from single
    /// stream events, finished writes, or messages refused at once (peer unsupported, bounded
    /// by the behaviour's queue limit).
    events: VecDeque<HandlerEvent>,
    /// Versions negotiated on streams of this connection.
    negotiated: VersionSet,
    /// Our versions the peer advertises (identify).
    advertised: VersionSet,
    /// The version last reported.
    reported: Option<Version>,
    /// The peer refused every version we offered.
    unsupported: bool,
    /// The peer refused the version offered alone before its versions were known: new
    /// streams offer every version until one is.
    guess_refused: bool,
    /// How long a stream on a guessed version waits for the peer's verdict.
    guess_limit: Duration,
    /// Each kind of failure is logged once per connection (at debug), then only at trace.
    logged_stream_limit: bool,
    logged_inbound_failure: bool,
    logged_send_failure: bool,
    logged_dropped_entries: bool,
    /// The behaviour asks to keep the connection alive ([`HandlerIn::KeepAlive`]).
    kept_alive: bool,
    /// No outbound stream is opened before it fires: set when a new stream failed before
    /// anything was written on it, or could not be opened.
    retry: Option<Delay>,
    /// How long the next [`Handler::retry`] waits: [`RETRY_MIN`] at first and after each
    /// message written, doubled by each failure up to [`RETRY_MAX`].
    next_retry: Duration,
    /// Messages reported stalled and not yet sent or failed; at most the messages queued for
    /// the peer ([`Config::max_queued_messages`]).
    stalled: HashSet<MessageId>,
}

impl Handler {
    /// The handler of a connection whose set-up took `setup` (`None` if not seen): one set up
    /// faster than [`Config::min_setup_to_spread`] does not spread unordered messages.
    pub(crate) fn new(config: Arc<Config>, budget: Budget, setup: Option<Duration>) -> Self {
        let (report_sender, reports) = mpsc::channel(REPORT_CAPACITY);
        let spread = setup.is_none_or(|setup| setup >= config.min_setup_to_spread());
        if !spread {
            tracing::trace!(
                ?setup,
                "near bitswap peer: unordered messages go on one stream"
            );
        }
        Self {
            upgrade: Upgrade::new(config.versions().iter().copied()),
            queue: VecDeque::new(),
            opening: false,
            unordered: VecDeque::new(),
            opening_unordered: 0,
            spread,
            writers: Vec::new(),
            writer_tasks: FuturesUnordered::new(),
            reports,
            report_sender,
            next_writer: 0,
            budget,
            inbound: Vec::new(),
            waiting: VecDeque::new(),
            untaken: VecDeque::new(),
            events: VecDeque::new(),
            negotiated: VersionSet::default(),
            advertised: VersionSet::default(),
            reported: None,
            unsupported: false,
            guess_refused: false,
            guess_limit: versions::guess_limit(setup),
            logged_stream_limit: false,
            logged_inbound_failure: false,
            logged_send_failure: false,
            logged_dropped_entries: false,
            kept_alive: false,
            retry: None,
            next_retry: RETRY_MIN,
            stalled: HashSet::new(),
            config,
        }
    }

    fn on_inbound(&mut self, stream: Stream, version: Version) {
        self.learn_version(version);
        let limit = self.config.max_inbound_streams();
        if self.inbound.len() < limit {
            self.inbound
                .push(read_messages(stream, Instant::now(), self.budget.clone()));
        } else if self.waiting.len() < limit.saturating_mul(WAITING_STREAMS_PER_READER) {
            self.waiting.push_back((stream, Instant::now()));
        } else {
            // Dropping a stream that is still open resets it.
            drop(stream);
            self.inbound_failure(InboundFailure::TooManyStreams { limit });
        }
    }

    /// Starts reading waiting streams, oldest first, while readers are free.
    fn start_waiting_readers(&mut self) {
        while self.inbound.len() < self.config.max_inbound_streams()
            && let Some((stream, opened)) = self.waiting.pop_front()
        {
            self.inbound
                .push(read_messages(stream, opened, self.budget.clone()));
        }
    }

    fn on_outbound(&mut self, stream: Stream, version: Version, open: OutboundOpen) {
        let unordered = open.unordered;
        if unordered {
            self.opening_unordered = self.opening_unordered.saturating_sub(1);
        } else {
            self.opening = false;
        }
        if !open.guessed {
            self.learn_version(version);
        }
        let (guess, verdict) = self.guess(open, version).unzip();
        let id = self.next_writer;
        self.next_writer += 1;
        let (messages, receiver) = mpsc::channel(self.config.max_queued_messages());
        self.writers.push(Writer {
            id,
            messages,
            pending: VecDeque::new(),
            stalled: false,
            unordered,
            delivered: false,
            guess,
        });
        self.writer_tasks.push(
            write_messages(
                id,
                stream,
                version,
                receiver,
                self.report_sender.clone(),
                Arc::clone(&self.config),
                verdict,
            )
            .boxed(),
        );
        self.dispatch();
    }

    /// Hands queued messages, oldest first, to the open stream with the fewest waiting. While
    /// every stream is stalled, messages are reported stalled as they come.
    fn dispatch(&mut self) {
        self.dispatch_queue(true);
        self.dispatch_queue(false);
        self.report_stalled();
    }

    /// Hands the messages of one queue, oldest first, each to the stream of its kind with the
    /// fewest waiting: any ordered stream; an unordered stream with nothing to write, or once
    /// no more streams may be opened, one with fewer than [`UNORDERED_DEPTH`] messages. The
    /// others wait for one (or for a new stream).
    fn dispatch_queue(&mut self, unordered: bool) {
        loop {
            let depth = if !unordered {
                usize::MAX
            } else if self.writers.iter().filter(|w| w.unordered).count() + self.opening_unordered
                >= self.config.max_unordered_streams()
            {
                UNORDERED_DEPTH
            } else {
                1
            };
            let queue = if unordered {
                &mut self.unordered
            } else {
                &mut self.queue
            };
            let Some((id, message)) = queue.pop_front() else {
                break;
            };
            let Some(writer) = self
                .writers
                .iter_mut()
                .filter(|w| w.unordered == unordered && w.pending.len() < depth)
                .min_by_key(|w| w.pending.len())
            else {
                queue.push_front((id, message));
                break;
            };
            match writer.messages.try_send((id, message)) {
                Ok(()) => writer.pending.push_back(id),
                Err(error) => {
                    // The writer stopped taking messages (it is closing or failed) and will
                    // report; the message waits for another stream.
                    let writer = writer.id;
                    self.writers.retain(|w| w.id != writer);
                    queue.push_front(error.into_inner());
                }
            }
        }
    }

    /// Whether to open one more unordered stream now: an unordered message waits beyond
    /// those the streams being opened will take, within [`Config::max_unordered_streams`],
    /// and fewer are being opened than are open (at least one), so the streams of a
    /// connection double per round trip at most instead of all opening at once (a peer that
    /// takes inbound streams one at a time may reset those that come together).
    fn unordered_streams_wanted(&self) -> bool {
        let open = self.writers.iter().filter(|w| w.unordered).count();
        self.unordered.len() > self.opening_unordered
            && open + self.opening_unordered < self.config.max_unordered_streams()
            && self.opening_unordered < open.max(1)
    }

    /// The peer reset an unordered stream before anything was written on it, or one could
    /// not be opened: it may not take streams that come together. From now on this
    /// connection sends unordered messages in order, with the others; those waiting join
    /// them.
    fn stop_spreading(&mut self) {
        if !self.spread {
            return;
        }
        self.spread = false;
        tracing::debug!("bitswap peer reset a new stream: answers go on one stream from now on");
        self.queue.extend(self.unordered.drain(..));
    }

    /// Reports as stalled, once each, the messages of stalled streams, and the queued ones
    /// when every open stream is stalled and no other may be opened.
    fn report_stalled(&mut self) {
        let mut ids = Vec::new();
        for writer in self.writers.iter().filter(|w| w.stalled) {
            ids.extend(writer.pending.iter().copied());
        }
        for (unordered, queue, limit) in [
            (false, &self.queue, self.config.max_outbound_streams()),
            (true, &self.unordered, self.config.max_unordered_streams()),
        ] {
            let mut writers = self.writers.iter().filter(|w| w.unordered == unordered);
            let open = writers.clone().count();
            if open > 0 && open >= limit && writers.all(|w| w.stalled) {
                ids.extend(queue.iter().map(|(id, _)| *id));
            }
        }
        ids.retain(|id| self.stalled.insert(*id));
        if !ids.is_empty() {
            self.events.push_back(HandlerEvent::Stalled(ids));
        }
    }

    fn on_report(&mut self, report: WriteReport) {
        match report {
            WriteReport::Sent { writer, id } => {
                if let Some(w) = self.writers.iter_mut().find(|w| w.id == writer) {
                    w.pending.retain(|pending| *pending != id);
                    w.stalled = false;
                    w.delivered = true;
                }
                self.next_retry = RETRY_MIN;
                self.stalled.remove(&id);
                if let Some(HandlerEvent::Sent(ids)) = self.events.back_mut() {
                    ids.push(id);
                } else {
                    self.events.push_back(HandlerEvent::Sent(vec![id]));
                }
            }
            WriteReport::Stalled { writer } => {
                if let Some(w) = self.writers.iter_mut().find(|w| w.id == writer) {
                    w.stalled = true;
                }
                self.report_stalled();
            }
            WriteReport::Failed { writer, ids, error } => {
                let fresh = self
                    .writers
                    .iter()
                    .find(|w| w.id == writer)
                    .filter(|w| !w.delivered)
                    .map(|w| w.unordered);
                if let Some(unordered) = fresh {
                    if unordered {
                        self.stop_spreading();
                    }
                    self.back_off();
                }
                self.writers.retain(|w| w.id != writer);
                for id in &ids {
                    self.stalled.remove(id);
                }
                self.send_failed(ids, error);
            }
            WriteReport::Closed { writer, returned } => self.take_back(writer, returned),
            WriteReport::Accepted { writer, version } => {
                if let Some(w) = self.writers.iter_mut().find(|w| w.id == writer) {
                    w.guess = None;
                }
                self.learn_version(version);
            }
            WriteReport::Refused { writer, returned } => {
                self.refuse_guess();
                self.take_back(writer, returned);
            }
        }
    }

    /// `writer` ended and gave back `returned`, which it had taken but not written (or which
    /// the peer refused): they go first, before anything still queued.
    fn take_back(&mut self, writer: u64, returned: Vec<(MessageId, Message)>) {
        let unordered = self
            .writers
            .iter()
            .find(|w| w.id == writer)
            .is_some_and(|w| w.unordered);
        self.writers.retain(|w| w.id != writer);
        let queue = if unordered {
            &mut self.unordered
        } else {
            &mut self.queue
        };
        for message in returned.into_iter().rev() {
            queue.push_front(message);
        }
    }

    /// A new stream failed: the next one waits, so that a peer that resets streams (or
    /// cannot take them for a while) is not sent a stream per queued message, each failing
    /// and losing what it carried.
    fn back_off(&mut self) {
        if self.retry.is_none() {
            self.retry = Some(Delay::futures_timer(self.next_retry));
            self.next_retry = (self.next_retry * 2).min(RETRY_MAX);
        }
    }

    /// Whether outbound streams may be opened now (no [`Handler::retry`] pending).
    fn may_open(&mut self, cx: &mut Context<'_>) -> bool {
        match self.retry.as_mut().map(|retry| retry.poll_unpin(cx)) {
            Some(Poll::Pending) => false,
            Some(Poll::Ready(_)) => {
                self.retry = None;
                true
            }
            None => true,
        }
    }

    fn on_dial_upgrade_error(&mut self, error: StreamUpgradeError<io::Error>, open: OutboundOpen) {
        let unordered = open.unordered;
        if unordered {
            self.opening_unordered = self.opening_unordered.saturating_sub(1);
        } else {
            self.opening = false;
        }
        if open.guessed && matches!(error, StreamUpgradeError::NegotiationFailed) {
            // A swarm whose upgrades are not lazy learns of the refusal here: the messages
            // wait for a stream that offers every version.
            self.refuse_guess();
            return;
        }
        if unordered {
            self.stop_spreading();
        }
        self.back_off();
        let error = match error {
            StreamUpgradeError::NegotiationFailed => {
                self.unsupported = true;
                SendFailure::Unsupported
            }
            StreamUpgradeError::Timeout => SendFailure::OpenTimeout,
            StreamUpgradeError::Apply(error) | StreamUpgradeError::Io(error) => {
                SendFailure::Open(Arc::new(error))
            }
        };
        // A peer that cannot take a stream now is not retried for the messages that were
        // waiting for it: they fail, and later messages try again (unless unsupported).
        // Unordered messages wait on while other unordered streams are open or opening.
        let mut ids = Vec::new();
        if self.unsupported || !unordered {
            ids.extend(self.queue.drain(..).map(|(id, _)| id));
        }
        let unordered_alive =
            self.opening_unordered > 0 || self.writers.iter().any(|w| w.unordered);
        if self.unsupported || (unordered && !unordered_alive) {
            ids.extend(self.unordered.drain(..).map(|(id, _)| id));
        }
        self.send_failed(ids, error);
    }

    fn send_failed(&mut self, ids: Vec<MessageId>, error: SendFailure) {
        if ids.is_empty() {
            return;
        }
        if self.logged_send_failure {
            tracing::trace!(%error, messages = ids.len(), "bitswap send failed");
        } else {
            self.logged_send_failure = true;
            tracing::debug!(
                %error,
                messages = ids.len(),
                "bitswap send failed (further failures on this connection logged at trace)"
            );
        }
        self.events
            .push_back(HandlerEvent::SendFailed { ids, error });
    }

    fn inbound_failure(&mut self, error: InboundFailure) {
        let logged = match error {
            InboundFailure::TooManyStreams { .. } => &mut self.logged_stream_limit,
            _ => &mut self.logged_inbound_failure,
        };
        if *logged {
            tracing::trace!(%error, "bitswap inbound stream reset");
        } else {
            *logged = true;
            tracing::debug!(
                %error,
                "bitswap inbound stream reset (more of this kind on this connection logged at \
                 trace)"
            );
        }
        self.events.push_back(HandlerEvent::InboundFailure(error));
    }

    /// Logs what decoding left out of a message: once per connection at debug, then at trace.
    fn log_dropped(&mut self, dropped: &Dropped) {
        if dropped.is_empty() {
            return;
        }
        let max_wants = self.budget.max_entries;
        if std::mem::replace(&mut self.logged_dropped_entries, true) {
            tracing::trace!(?dropped, max_wants, "parts of a bitswap message left out");
        } else {
            tracing::debug!(
                ?dropped,
                max_wants,
                "parts of a bitswap message left out (more on this connection logged at trace)"
            );
        }
    }

    /// Asks for a new outbound stream, for unordered messages or not.
    fn open_stream(
        &self,
        unordered: bool,
    ) -> ConnectionHandlerEvent<Upgrade, OutboundOpen, HandlerEvent> {
        let (upgrade, guessed) = self.outbound_upgrade();
        let open = OutboundOpen { unordered, guessed };
        ConnectionHandlerEvent::OutboundSubstreamRequest {
            protocol: SubstreamProtocol::new(upgrade, open),
        }
    }

    /// Polls inbound streams oldest first and returns the first message or failure.
    fn poll_inbound(&mut self, cx: &mut Context<'_>) -> Option<HandlerEvent> {
        self.start_waiting_readers();
        let mut i = 0;
        while i < self.inbound.len() {
            match self.inbound[i].poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(read))) => {
                    self.log_dropped(&read.dropped);
                    self.untaken.push_back(read.share);
                    return Some(HandlerEvent::Message {
                        message: read.message,
                        began: read.began,
                    });
                }
                Poll::Ready(Some(Err(error))) => {
                    drop(self.inbound.remove(i));
                    self.inbound_failure(InboundFailure::Protocol(error));
                    return self.events.pop_front();
                }
                Poll::Ready(None) => {
                    drop(self.inbound.remove(i));
                    self.start_waiting_readers();
                }
                Poll::Pending => i += 1,
            }
        }
        None
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = HandlerIn;
    type ToBehaviour = HandlerEvent;
    type InboundProtocol = Upgrade;
    type OutboundProtocol = Upgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = OutboundOpen;

    fn listen_protocol(&self) -> SubstreamProtocol<Upgrade> {
        SubstreamProtocol::new(self.upgrade.clone(), ())
    }

    fn connection_keep_alive(&self) -> bool {
        // Open streams keep the connection alive by themselves.
        !self.queue.is_empty()
            || self.opening
            || !self.unordered.is_empty()
            || self.opening_unordered > 0
            || self.writers.iter().any(|w| !w.pending.is_empty())
            || self.kept_alive
            || (self.config.keep_alive() && self.reported.is_some())
    }

    fn on_behaviour_event(&mut self, event: HandlerIn) {
        match event {
            HandlerIn::Send {
                id,
                message,
                unordered,
            } => {
                if self.unsupported {
                    self.send_failed(vec![id], SendFailure::Unsupported);
                } else {
                    if unordered && self.spread {
                        self.unordered.push_back((id, message));
                    } else {
                        self.queue.push_back((id, message));
                    }
                    self.dispatch();
                }
            }
            HandlerIn::Taken => drop(self.untaken.pop_front()),
            HandlerIn::KeepAlive(keep) => self.kept_alive = keep,
        }
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            '_,
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, version),
                ..
            }) => self.on_inbound(stream, version),
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: (stream, version),
                info,
            }) => self.on_outbound(stream, version, info),
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, info }) => {
                self.on_dial_upgrade_error(error, info);
            }
            ConnectionEvent::ListenUpgradeError(ListenUpgradeError { error, .. }) => {
                tracing::debug!(%error, "bitswap inbound upgrade failed");
            }
            ConnectionEvent::RemoteProtocolsChange(change) => self.on_remote_protocols(change),
            _ => {}
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Upgrade, OutboundOpen, HandlerEvent>> {
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        while let Poll::Ready(Some(())) = self.writer_tasks.poll_next_unpin(cx) {}
        while let Poll::Ready(Some(report)) = self.reports.poll_next_unpin(cx) {
            self.on_report(report);
        }
        self.dispatch();
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        if self.untaken.len() < MAX_UNTAKEN
            && let Some(event) = self.poll_inbound(cx)
        {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        if !self.may_open(cx) {
            return Poll::Pending;
        }
        if !self.queue.is_empty()
            && !self.opening
            && self.writers.iter().filter(|w| !w.unordered).count()
                < self.config.max_outbound_streams()
        {
            self.opening = true;
            return Poll::Ready(self.open_stream(false));
        }
        if !self.unsupported && self.unordered_streams_wanted() {
            self.opening_unordered += 1;
            return Poll::Ready(self.open_stream(true));
        }
        Poll::Pending
    }

    fn poll_close(&mut self, _: &mut Context<'_>) -> Poll<Option<HandlerEvent>> {
        // Messages still queued are reported failed by the behaviour when the connection
        // closes; only events already made are delivered here.
        Poll::Ready(self.events.pop_front())
    }
}

/// Inbound streams that may wait for a reader, per reader ([`Config::max_inbound_streams`]):
/// enough for kubo's bursts of one-message streams while the behaviour takes what was read.
const WAITING_STREAMS_PER_READER: usize = 3;

/// Reports of writer tasks waiting for the handler.
const REPORT_CAPACITY: usize = 32;

/// Messages an unordered stream takes at once when no more streams may be opened. With one,
/// a stream goes quiet at the end of each message until the handler hands it the next, and
/// a block larger than the stream's flow-control window (yamux grants 256 KiB, kubo's chunks
/// are 256 KiB plus framing) leaves the rest of the window unused while its last bytes wait
/// for the window update: the stream carries a block per two round trips. With two, the next
/// message uses the window as soon as it opens, and a stream carries its window per round trip.
const UNORDERED_DEPTH: usize = 2;

/// The first wait before opening a stream after a new one failed: about a round trip on a
/// continent, so a peer that dropped one stream while busy is asked again soon.
const RETRY_MIN: Duration = Duration::from_millis(20);
/// The longest wait between failing streams: a peer that keeps refusing them is tried every
/// two seconds, instead of hundreds of times a second.
const RETRY_MAX: Duration = Duration::from_secs(2);

/// An open outbound stream, seen from the handler: its task takes messages from a channel.
struct Writer {
    id: u64,
    messages: mpsc::Sender<(MessageId, Message)>,
    /// Messages handed to it and not yet reported, oldest first.
    pending: VecDeque<MessageId>,
    /// A write has taken longer than [`Config::write_stall`] and none finished since.
    stalled: bool,
    /// It carries unordered messages.
    unordered: bool,
    /// A message was written on it.
    delivered: bool,
    /// Its version was guessed and awaits the peer's verdict: the version, and what tells
    /// the writer that the handler learnt it is the peer's.
    guess: Option<(Version, oneshot::Sender<()>)>,
}

#[cfg(test)]
mod tests;
