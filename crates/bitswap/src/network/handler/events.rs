//! [`HandlerIn`] and [`HandlerEvent`]: what the [`Behaviour`](crate::network::Behaviour) and a
//! [`Handler`](super::Handler) tell each other.

use std::time::Instant;

use crate::{
    message::Message,
    network::behaviour::{InboundFailure, MessageId, SendFailure},
    protocol::Version,
};

/// What an outbound stream a [`Handler`](super::Handler) asks for is for (its
/// `OutboundOpenInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboundOpen {
    /// It carries unordered messages.
    pub unordered: bool,
    /// It offers a version alone before the peer's versions are known: its first message
    /// waits for the peer to accept or refuse it.
    pub guessed: bool,
}

/// What the [`Behaviour`](crate::network::Behaviour) tells a [`Handler`](super::Handler).
#[derive(Debug)]
pub enum HandlerIn {
    /// Queue a message for the peer.
    Send {
        /// Reported back in [`HandlerEvent::Sent`] or [`HandlerEvent::SendFailed`].
        id: MessageId,
        /// The message, encoded later for the version of the stream that carries it.
        message: Message,
        /// Spread over the unordered streams (see
        /// [`Config::with_max_unordered_streams`](crate::network::Config::with_max_unordered_streams))
        /// instead of the ordered ones.
        unordered: bool,
    },
    /// A message this handler reported was taken from the behaviour: one more may be read.
    Taken,
    /// Keep the connection alive while idle (`true`), or let the swarm's idle timeout apply
    /// again (`false`): set while the peer is owed something, such as a block it wants.
    KeepAlive(bool),
}

/// What a [`Handler`](super::Handler) reports to the [`Behaviour`](crate::network::Behaviour).
#[derive(Debug)]
pub enum HandlerEvent {
    /// A message was read from an inbound stream.
    Message {
        /// The message.
        message: Message,
        /// When it began to arrive (see [`Event::Message`](crate::network::Event::Message)).
        began: Instant,
    },
    /// The best Bitswap version known for the peer on this connection changed: learnt from a
    /// negotiated stream or from the protocols the peer advertises (identify).
    Version(Version),
    /// These messages were written and flushed.
    Sent(Vec<MessageId>),
    /// These messages wait behind a write that has taken longer than
    /// [`Config::write_stall`](crate::network::Config::write_stall): the peer reads slowly or not at all. Each is reported once,
    /// and later as sent or failed as usual.
    Stalled(Vec<MessageId>),
    /// These messages were not (completely) written.
    SendFailed {
        /// The messages lost.
        ids: Vec<MessageId>,
        /// Why.
        error: SendFailure,
    },
    /// An inbound stream failed and was reset.
    InboundFailure(InboundFailure),
}
