//! Peers' addresses, to dial providers by peer id.

use std::collections::{HashMap, VecDeque};

use libp2p::{Multiaddr, PeerId};

/// Peers' addresses reported by the swarm (`Swarm::add_peer_address`, kad, identify): the
/// most recent [`AddressBook::MAX_PEERS`] peers, [`AddressBook::MAX_PER_PEER`] addresses each.
#[derive(Debug, Default)]
pub(crate) struct AddressBook {
    peers: HashMap<PeerId, Vec<Multiaddr>>,
    /// Peers oldest first, for eviction.
    order: VecDeque<PeerId>,
}

impl AddressBook {
    const MAX_PEERS: usize = 1024;
    const MAX_PER_PEER: usize = 8;

    /// Remembers `address` for `peer`, evicting the oldest peer or address beyond the bounds.
    pub(crate) fn add(&mut self, peer: PeerId, address: &Multiaddr) {
        let addresses = match self.peers.get_mut(&peer) {
            Some(addresses) => addresses,
            None => {
                if self.order.len() >= Self::MAX_PEERS
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.peers.remove(&oldest);
                }
                self.order.push_back(peer);
                self.peers.entry(peer).or_default()
            }
        };
        if !addresses.contains(address) {
            if addresses.len() >= Self::MAX_PER_PEER {
                addresses.remove(0);
            }
            addresses.push(address.clone());
        }
    }

    /// The addresses remembered for `peer`.
    pub(crate) fn get(&self, peer: &PeerId) -> &[Multiaddr] {
        self.peers.get(peer).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_peers_and_addresses_are_kept_within_the_bounds() {
        let mut book = AddressBook::default();
        let address =
            |i: usize| -> Multiaddr { format!("/ip4/10.0.0.1/tcp/{i}").parse().expect("valid") };
        let first = PeerId::random();
        for i in 0..AddressBook::MAX_PER_PEER * 2 {
            book.add(first, &address(i));
            book.add(first, &address(i));
        }
        let kept: Vec<Multiaddr> = (AddressBook::MAX_PER_PEER..AddressBook::MAX_PER_PEER * 2)
            .map(address)
            .collect();
        assert_eq!(book.get(&first), kept, "the latest, each once");
        for i in 0..AddressBook::MAX_PEERS * 2 {
            book.add(PeerId::random(), &address(i));
        }
        assert!(book.get(&first).is_empty(), "the oldest peer is evicted");
        assert_eq!(book.peers.len(), AddressBook::MAX_PEERS);
        assert_eq!(book.order.len(), AddressBook::MAX_PEERS);
    }
}
