//! What a [`Handler`] knows of the peer's Bitswap versions on its connection, and what its new
//! outbound streams offer.

use std::time::Duration;

use futures::channel::oneshot;
use libp2p::swarm::handler::ProtocolsChange;

use super::{Handler, HandlerEvent, OutboundOpen};
use crate::{
    network::{outbound::Guess, upgrade::Upgrade},
    protocol::Version,
};

/// The shortest wait for the verdict on a guessed version ([`Guess`]): on a host busy
/// enough, even a near peer's `na` takes milliseconds.
const GUESS_LIMIT_MIN: Duration = Duration::from_millis(50);
/// The longest wait for that verdict.
const GUESS_LIMIT_MAX: Duration = Duration::from_secs(2);
/// The wait for a connection whose set-up was not seen.
const GUESS_LIMIT_UNSEEN: Duration = Duration::from_secs(1);

/// How long a stream on a guessed version waits for the peer's verdict, for a connection
/// whose set-up took `setup`: twice the set-up (several round trips: the transport's
/// handshakes and the muxer's negotiation), within [`GUESS_LIMIT_MIN`] and
/// [`GUESS_LIMIT_MAX`]. The `na` of a refusal takes one round trip.
pub(super) fn guess_limit(setup: Option<Duration>) -> Duration {
    setup.map_or(GUESS_LIMIT_UNSEEN, |setup| {
        setup
            .saturating_mul(2)
            .clamp(GUESS_LIMIT_MIN, GUESS_LIMIT_MAX)
    })
}

impl Handler {
    pub(super) fn learn_version(&mut self, version: Version) {
        self.negotiated.insert(version);
        self.unsupported = false;
        self.report_version();
    }

    pub(super) fn report_version(&mut self) {
        let mut known = self.negotiated;
        for version in self.upgrade.versions() {
            if self.advertised.contains(*version) {
                known.insert(*version);
            }
        }
        if let Some(best) = known.best()
            && self.reported != Some(best)
        {
            self.reported = Some(best);
            self.events.push_back(HandlerEvent::Version(best));
            // Streams that guessed it need no verdict from the peer.
            for writer in &mut self.writers {
                if writer.guess.as_ref().is_some_and(|(v, _)| *v == best)
                    && let Some((_, confirm)) = writer.guess.take()
                {
                    let _ = confirm.send(());
                }
            }
        }
    }

    /// What a new outbound stream offers, and whether that is a guess: the best version
    /// known for the peer alone once one is (negotiated on this connection, or ours and
    /// advertised); before, our most preferred version alone, guessed (see [`Guess`]),
    /// unless the peer refused that guess on this connection: then every configured version.
    /// With one protocol offered, a swarm whose substream upgrades are
    /// `upgrade::Version::V1Lazy` sends the message with the proposal instead of a round
    /// trip after it, which every new stream of a far peer pays otherwise, the first one
    /// included: a fetch's first want usually leaves before the peer's identify arrives.
    pub(super) fn outbound_upgrade(&self) -> (Upgrade, bool) {
        let versions = self.upgrade.versions();
        match (self.reported, versions) {
            (Some(version), _) => (Upgrade::new([version]), false),
            (None, [first, _, ..]) if !self.guess_refused => (Upgrade::new([*first]), true),
            (None, _) => (self.upgrade.clone(), false),
        }
    }

    /// The verdict a stream negotiated as `open` says on `version` waits for: `None` unless
    /// the version was guessed and is not known to be the peer's. Returns what the
    /// handler keeps to confirm it early, and what the stream's writer waits on.
    pub(super) fn guess(
        &self,
        open: OutboundOpen,
        version: Version,
    ) -> Option<((Version, oneshot::Sender<()>), Guess)> {
        if !open.guessed || self.reported == Some(version) {
            return None;
        }
        let (confirm, confirmed) = oneshot::channel();
        let limit = self.guess_limit;
        Some(((version, confirm), Guess { confirmed, limit }))
    }

    /// The peer refused the guessed version: new streams offer every version until one is
    /// known.
    pub(super) fn refuse_guess(&mut self) {
        if !std::mem::replace(&mut self.guess_refused, true) {
            tracing::debug!(
                "bitswap peer refused the version offered alone: streams offer every version \
                 until one is known"
            );
        }
    }

    pub(super) fn on_remote_protocols(&mut self, change: ProtocolsChange<'_>) {
        match change {
            ProtocolsChange::Added(added) => {
                for protocol in added {
                    if let Some(version) = Version::from_protocol(protocol.as_ref()) {
                        self.advertised.insert(version);
                        if self.upgrade.versions().contains(&version) {
                            self.unsupported = false;
                        }
                    }
                }
            }
            ProtocolsChange::Removed(removed) => {
                for protocol in removed {
                    if let Some(version) = Version::from_protocol(protocol.as_ref()) {
                        self.advertised.remove(version);
                    }
                }
            }
        }
        self.report_version();
    }
}
