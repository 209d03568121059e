//! [`Upgrade`]: negotiates one of the configured Bitswap versions on a stream.

use std::{future, io, sync::Arc};

use libp2p::{
    Stream, StreamProtocol,
    core::upgrade::{InboundUpgrade, OutboundUpgrade, UpgradeInfo},
};

use crate::protocol::Version;

/// Offers (outbound) or accepts (inbound) a set of Bitswap [`Version`]s and yields the stream
/// with the version multistream-select agreed on, so each stream is encoded for its peer.
#[derive(Debug, Clone)]
pub struct Upgrade {
    versions: Arc<[Version]>,
}

impl Upgrade {
    /// Offers or accepts `versions`, most preferred first.
    pub fn new(versions: impl IntoIterator<Item = Version>) -> Self {
        Self {
            versions: versions.into_iter().collect(),
        }
    }

    /// The versions, most preferred first.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    fn negotiated(&self, protocol: &StreamProtocol) -> io::Result<Version> {
        Version::from_protocol(protocol.as_ref())
            .filter(|version| self.versions.contains(version))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{protocol} is not a configured Bitswap protocol"),
                )
            })
    }
}

impl Default for Upgrade {
    /// All four versions, 1.2.0 first.
    fn default() -> Self {
        Self::new(Version::ALL)
    }
}

impl UpgradeInfo for Upgrade {
    type Info = StreamProtocol;
    type InfoIter = Vec<StreamProtocol>;

    fn protocol_info(&self) -> Self::InfoIter {
        self.versions
            .iter()
            .map(|version| version.protocol())
            .collect()
    }
}

impl InboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, Version);
    /// Never happens: multistream-select only agrees on protocols the upgrade listed.
    type Error = io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        future::ready(self.negotiated(&protocol).map(|version| (stream, version)))
    }
}

impl OutboundUpgrade<Stream> for Upgrade {
    type Output = (Stream, Version);
    /// Never happens: multistream-select only agrees on protocols the upgrade listed.
    type Error = io::Error;
    type Future = future::Ready<Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
        future::ready(self.negotiated(&protocol).map(|version| (stream, version)))
    }
}

/// A set of [`Version`]s.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct VersionSet(u8);

impl VersionSet {
    fn bit(version: Version) -> u8 {
        match version {
            Version::V1_2_0 => 1,
            Version::V1_1_0 => 2,
            Version::V1_0_0 => 4,
            Version::Legacy => 8,
        }
    }

    pub(super) fn insert(&mut self, version: Version) {
        self.0 |= Self::bit(version);
    }

    pub(super) fn remove(&mut self, version: Version) {
        self.0 &= !Self::bit(version);
    }

    pub(super) fn contains(self, version: Version) -> bool {
        self.0 & Self::bit(version) != 0
    }

    /// The most capable version of the set.
    pub(super) fn best(self) -> Option<Version> {
        Version::ALL
            .into_iter()
            .find(|version| self.contains(*version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_versions_in_order() {
        let protocols = Upgrade::default().protocol_info();
        assert_eq!(
            protocols,
            [
                "/ipfs/bitswap/1.2.0",
                "/ipfs/bitswap/1.1.0",
                "/ipfs/bitswap/1.0.0",
                "/ipfs/bitswap"
            ]
            .map(StreamProtocol::new)
        );
        let only = Upgrade::new([Version::V1_0_0]);
        assert_eq!(
            only.protocol_info(),
            [StreamProtocol::new("/ipfs/bitswap/1.0.0")]
        );
    }

    #[test]
    fn maps_protocol_to_version() {
        let upgrade = Upgrade::new([Version::V1_1_0, Version::Legacy]);
        assert_eq!(
            upgrade
                .negotiated(&StreamProtocol::new("/ipfs/bitswap"))
                .unwrap(),
            Version::Legacy
        );
        assert!(
            upgrade
                .negotiated(&StreamProtocol::new("/ipfs/bitswap/1.2.0"))
                .is_err()
        );
    }

    #[test]
    fn version_set_best_is_most_capable() {
        let mut set = VersionSet::default();
        assert_eq!(set.best(), None);
        set.insert(Version::Legacy);
        set.insert(Version::V1_1_0);
        assert_eq!(set.best(), Some(Version::V1_1_0));
        set.insert(Version::V1_2_0);
        assert_eq!(set.best(), Some(Version::V1_2_0));
        set.remove(Version::V1_2_0);
        assert_eq!(set.best(), Some(Version::V1_1_0));
    }
}
