//! What the node logged about which peer, so that a misbehaving peer cannot fill the log.

use std::{collections::HashMap, fmt};

use libp2p::PeerId;

/// A kind of per-peer trouble the node logs: the first of each kind per peer at debug, the
/// rest at trace, so a misbehaving peer cannot fill the log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trouble {
    /// A server envelope the network layer refused.
    EnvelopeNotSent = 1,
    /// A client wantlist update not sent.
    WantlistNotSent = 2,
}

/// Kinds of trouble logged per peer, forgotten when the peer disconnects; at most
/// [`Troubles::MAX_PEERS`] peers (then it starts over).
#[derive(Debug, Default)]
pub(crate) struct Troubles(HashMap<PeerId, u8>);

impl Troubles {
    const MAX_PEERS: usize = 4096;

    /// Logs `error`, a trouble of `kind` with `peer`: at debug the first time, else at trace.
    pub(crate) fn log(&mut self, peer: PeerId, kind: Trouble, error: &dyn fmt::Display) {
        let what = match kind {
            Trouble::EnvelopeNotSent => "server envelope not sent",
            Trouble::WantlistNotSent => "wantlist update not sent",
        };
        if self.first(peer, kind) {
            tracing::debug!(%peer, %error, "{what} (more for this peer logged at trace)");
        } else {
            tracing::trace!(%peer, %error, "{what}");
        }
    }

    /// Records `kind` for `peer`; true the first time.
    fn first(&mut self, peer: PeerId, kind: Trouble) -> bool {
        if self.0.len() >= Self::MAX_PEERS && !self.0.contains_key(&peer) {
            self.0.clear();
        }
        let seen = self.0.entry(peer).or_default();
        let first = *seen & kind as u8 == 0;
        *seen |= kind as u8;
        first
    }

    /// Forgets a peer that disconnected.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.0.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trouble_is_logged_once_per_peer_until_it_leaves() {
        let mut troubles = Troubles::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        assert!(troubles.first(a, Trouble::EnvelopeNotSent));
        assert!(!troubles.first(a, Trouble::EnvelopeNotSent));
        assert!(troubles.first(a, Trouble::WantlistNotSent));
        assert!(troubles.first(b, Trouble::EnvelopeNotSent));
        troubles.forget(&a);
        assert!(troubles.first(a, Trouble::EnvelopeNotSent));
        for _ in 0..Troubles::MAX_PEERS * 2 {
            troubles.first(PeerId::random(), Trouble::EnvelopeNotSent);
        }
        assert!(troubles.0.len() <= Troubles::MAX_PEERS);
    }
}
