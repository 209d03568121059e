//! [`Sent`]: the messages the behaviour handed to the network layer and waits to hear about,
//! by the id the network gave them: server envelopes (whose fate the server engine is told)
//! and client wantlist updates (kept to tell the client engine which wants a failure lost).
//! Each entry leaves when the network reports the message sent or failed; the server engine
//! and the client's limits bound how many are out.

use std::collections::HashMap;

use libp2p::PeerId;

use crate::{map::Map, message::Message, network::MessageId, server::EnvelopeId};

/// A message handed to the network.
pub(crate) enum Out {
    /// A server envelope.
    Envelope(EnvelopeId),
    /// A client wantlist update to `peer`.
    Wantlist(PeerId, Message),
}

/// The messages handed to the network and not yet reported.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    envelopes: HashMap<MessageId, EnvelopeId>,
    wantlists: HashMap<MessageId, (PeerId, Message)>,
    /// Wantlist updates out, per peer (peers with none are not kept).
    wantlists_to: Map<PeerId, usize>,
}

impl Sent {
    /// The network took envelope `envelope` as message `id`.
    pub(crate) fn envelope(&mut self, id: MessageId, envelope: EnvelopeId) {
        self.envelopes.insert(id, envelope);
    }

    /// The network took the wantlist update `message` to `peer` as message `id`.
    pub(crate) fn wantlist(&mut self, id: MessageId, peer: PeerId, message: Message) {
        *self.wantlists_to.entry(peer).or_default() += 1;
        self.wantlists.insert(id, (peer, message));
    }

    /// Wantlist updates to `peer` out.
    pub(crate) fn wantlists_to(&self, peer: &PeerId) -> usize {
        self.wantlists_to.get(peer).copied().unwrap_or(0)
    }

    /// Message `id` was reported sent or failed: what it was, if it was ours.
    pub(crate) fn take(&mut self, id: MessageId) -> Option<Out> {
        if let Some(envelope) = self.envelopes.remove(&id) {
            return Some(Out::Envelope(envelope));
        }
        let (peer, message) = self.wantlists.remove(&id)?;
        if let Some(out) = self.wantlists_to.get_mut(&peer) {
            *out -= 1;
            if *out == 0 {
                self.wantlists_to.remove(&peer);
            }
        }
        Some(Out::Wantlist(peer, message))
    }

    /// The envelope message `id` carries, if it is one, left in place.
    pub(crate) fn envelope_of(&self, id: MessageId) -> Option<EnvelopeId> {
        self.envelopes.get(&id).copied()
    }

    /// Envelopes out.
    pub(crate) fn envelopes(&self) -> usize {
        self.envelopes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wantlists_are_counted_per_peer_until_reported() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut sent = Sent::default();
        let id = MessageId::for_test;
        sent.wantlist(id(1), a, Message::default());
        sent.wantlist(id(2), a, Message::default());
        sent.wantlist(id(3), b, Message::default());
        assert_eq!((sent.wantlists_to(&a), sent.wantlists_to(&b)), (2, 1));

        assert!(matches!(sent.take(id(1)), Some(Out::Wantlist(p, _)) if p == a));
        assert!(sent.take(id(1)).is_none());
        assert!(matches!(sent.take(id(3)), Some(Out::Wantlist(p, _)) if p == b));
        assert_eq!((sent.wantlists_to(&a), sent.wantlists_to(&b)), (1, 0));
        assert!(sent.take(id(2)).is_some());
        assert!(sent.wantlists_to.is_empty());
    }
}
