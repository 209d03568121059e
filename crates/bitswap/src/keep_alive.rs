//! Which peers' connections are kept alive: those one engine owes, or is owed by, something
//! that may come later (wants kept by the server: a block stored after DONT_HAVE is still
//! sent; blocks the client asked for). The others may go idle and close.

use std::collections::HashSet;

use libp2p::PeerId;

/// The peers kept alive, and those whose standing may have changed since it was last checked.
///
/// [`mark`](Self::mark) a peer after any input that may change what the engines owe it, and
/// [`refresh`](Self::refresh) before the network layer next decides on idle connections.
/// It holds the connected peers kept alive and the peers marked since the last refresh.
#[derive(Debug, Default)]
pub(crate) struct KeepAlive {
    owed: HashSet<PeerId>,
    marked: HashSet<PeerId>,
}

impl KeepAlive {
    /// What the engines owe `peer`, or it them, may have changed.
    pub(crate) fn mark(&mut self, peer: PeerId) {
        self.marked.insert(peer);
    }

    /// What the engines owe may have changed for every peer kept alive.
    pub(crate) fn mark_all(&mut self) {
        self.marked.extend(self.owed.iter().copied());
    }

    /// Forgets a peer that disconnected.
    pub(crate) fn handle_peer_disconnected(&mut self, peer: &PeerId) {
        self.owed.remove(peer);
        self.marked.remove(peer);
    }

    /// Checks the marked peers with `is_owed` and calls `set` for each whose standing changed
    /// (true: keep its connections alive).
    pub(crate) fn refresh(
        &mut self,
        mut is_owed: impl FnMut(&PeerId) -> bool,
        mut set: impl FnMut(PeerId, bool),
    ) {
        // Drained rather than replaced, so that its room is reused.
        for peer in self.marked.drain() {
            let owed = is_owed(&peer);
            let changed = if owed {
                self.owed.insert(peer)
            } else {
                self.owed.remove(&peer)
            };
            if changed {
                set(peer, owed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(keep_alive: &mut KeepAlive, owed: &[PeerId]) -> Vec<(PeerId, bool)> {
        let mut changes = Vec::new();
        keep_alive.refresh(
            |peer| owed.contains(peer),
            |peer, owed| changes.push((peer, owed)),
        );
        changes
    }

    #[test]
    fn only_changes_of_marked_peers_are_reported() {
        let mut keep_alive = KeepAlive::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        keep_alive.mark(a);
        keep_alive.mark(b);
        assert_eq!(refresh(&mut keep_alive, &[a]), [(a, true)]);
        // Unmarked peers are not checked.
        assert_eq!(refresh(&mut keep_alive, &[b]), []);
        keep_alive.mark(a);
        assert_eq!(refresh(&mut keep_alive, &[a]), [], "unchanged");
        keep_alive.mark_all();
        assert_eq!(refresh(&mut keep_alive, &[]), [(a, false)]);
        assert!(keep_alive.owed.is_empty() && keep_alive.marked.is_empty());
    }

    #[test]
    fn a_peer_that_disconnects_is_forgotten() {
        let mut keep_alive = KeepAlive::default();
        let peers: Vec<PeerId> = (0..100).map(|_| PeerId::random()).collect();
        for peer in &peers {
            keep_alive.mark(*peer);
        }
        assert_eq!(refresh(&mut keep_alive, &peers).len(), 100);
        for peer in &peers {
            keep_alive.mark(*peer);
            keep_alive.handle_peer_disconnected(peer);
        }
        assert!(keep_alive.owed.is_empty() && keep_alive.marked.is_empty());
    }
}
