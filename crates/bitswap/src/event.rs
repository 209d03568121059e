//! [`Event`]: what the [`Behaviour`](crate::Behaviour) reports, and the ids and errors of
//! its store writes.

use std::{error::Error as StdError, fmt, sync::Arc};

use cid::Cid;
use ipfs_blockstore::Block;
use libp2p::{PeerId, kad::RecordKey};

use crate::client::{ConnectionError, Event as ClientEvent, Progress, QueryError, QueryId};

/// Identifies a [`Behaviour::put`](crate::Behaviour::put); [`Event::Stored`] and
/// [`Event::StoreFailed`] carry it. Unique within one [`Behaviour`](crate::Behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PutId(pub(crate) u64);

impl fmt::Display for PutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "put-{}", self.0)
    }
}

/// Why [`Behaviour::put`](crate::Behaviour::put) refused blocks at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// [`Config::max_puts_in_flight`](crate::Config::max_puts_in_flight) writes are
    /// unfinished; retry after an [`Event::Stored`] or [`Event::StoreFailed`].
    #[error("{limit} store writes already in flight")]
    Busy {
        /// The configured limit.
        limit: usize,
    },
}

/// A store failure, shared so that events stay cheap to clone.
pub type StoreError = Arc<dyn StdError + Send + Sync>;

/// What the [`Behaviour`](crate::Behaviour) reports.
///
/// Queries started through a [`Control`](crate::Control) report to the control's
/// [`BlockStream`](crate::BlockStream) instead of here.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A block of a query arrived, verified, and is in the store (or [`Event::StoreFailed`]
    /// came just before); or the store held it already (a local-first query, see
    /// [`Behaviour::get_many`](crate::Behaviour::get_many)). Reported once per CID of the
    /// query.
    BlockReceived {
        /// The query.
        query: QueryId,
        /// The block.
        block: Block,
    },
    /// A query advanced (after each of its blocks): enough to draw a progress bar.
    Progress {
        /// The query.
        query: QueryId,
        /// Where it stands.
        progress: Progress,
    },
    /// Every block of a query arrived; the query is gone.
    QueryFinished {
        /// The query.
        query: QueryId,
    },
    /// A query gave up; it is gone.
    QueryFailed {
        /// The query.
        query: QueryId,
        /// Why.
        error: QueryError,
    },
    /// No connected peer has `cid`: look for providers and report them with
    /// [`Behaviour::add_providers_for_key`](crate::Behaviour::add_providers_for_key) (or
    /// [`add_providers`](crate::Behaviour::add_providers) with the CID). Rate-limited per CID
    /// and in total, see
    /// [`ClientConfig::with_provider_search_interval`](crate::ClientConfig::with_provider_search_interval).
    ///
    /// IPFS keys provider records by the block's multihash, not by its CID (a CIDv0 and a
    /// CIDv1 of the same bytes have one record): `key` is that key, as
    /// [`provider_key`](crate::provider_key) makes it, for kad's `get_providers`. kad answers
    /// with the key alone, which `add_providers_for_key` takes back:
    ///
    /// ```
    /// use bitswap::{Event as BitswapEvent, MemoryBlockstore};
    /// use libp2p::{
    ///     PeerId,
    ///     kad::{self, GetProvidersOk, QueryResult, store::MemoryStore},
    ///     swarm::NetworkBehaviour,
    /// };
    ///
    /// #[derive(NetworkBehaviour)]
    /// struct Node {
    ///     kad: kad::Behaviour<MemoryStore>,
    ///     bitswap: bitswap::Behaviour<MemoryBlockstore>,
    /// }
    ///
    /// fn node(peer: PeerId) -> Node {
    ///     let mut kad = kad::Behaviour::new(peer, MemoryStore::new(peer));
    ///     // A node answers kad queries only in server mode, which kad picks by itself once
    ///     // an external address is confirmed: never on loopback or in a private network.
    ///     kad.set_mode(Some(kad::Mode::Server));
    ///     let bitswap = bitswap::Behaviour::new(MemoryBlockstore::new(), Default::default());
    ///     Node { kad, bitswap }
    /// }
    ///
    /// /// Routes provider searches between bitswap and kad; call it with every event.
    /// fn on_event(node: &mut Node, event: NodeEvent) {
    ///     match event {
    ///         NodeEvent::Bitswap(BitswapEvent::FindProviders { key, .. }) => {
    ///             node.kad.get_providers(key);
    ///         }
    ///         NodeEvent::Kad(kad::Event::OutboundQueryProgressed {
    ///             result:
    ///                 QueryResult::GetProviders(Ok(GetProvidersOk::FoundProviders {
    ///                     key,
    ///                     providers,
    ///                 })),
    ///             ..
    ///         }) => node.bitswap.add_providers_for_key(&key, providers),
    ///         _ => {}
    ///     }
    /// }
    ///
    /// let mut node = node(PeerId::random());
    /// // The key of a CID is the same whatever its version and codec.
    /// let block = bitswap::Block::raw("x")?;
    /// let key = bitswap::provider_key(block.cid());
    /// assert_eq!(key.as_ref(), &block.cid().hash().to_bytes()[..]);
    /// // Providers found under a key bitswap never searched for are ignored.
    /// node.bitswap.add_providers_for_key(&key, [PeerId::random()]);
    /// # Ok::<_, bitswap::BlockError>(())
    /// ```
    ///
    /// To be found as a provider, a node announces its blocks with kad's `start_providing`
    /// under the same key.
    FindProviders {
        /// The wanted block.
        cid: Cid,
        /// The provider record key of `cid`: the bytes of its multihash.
        key: RecordKey,
    },
    /// Blocks were written to the store, and peers that want them are being served. For a
    /// [`Behaviour::put`](crate::Behaviour::put), `id` is the id it returned; blocks received
    /// from peers are written without an event.
    Stored {
        /// The id `put` returned.
        id: PutId,
        /// How many blocks it wrote.
        blocks: usize,
    },
    /// The store refused blocks: those of a [`Behaviour::put`](crate::Behaviour::put) (`id`
    /// is `Some`) or received blocks (`id` is `None`; the blocks are still reported with
    /// [`Event::BlockReceived`]). Failed blocks are not announced to peers.
    StoreFailed {
        /// The id `put` returned, if the blocks came from `put`.
        id: Option<PutId>,
        /// The store's error.
        error: StoreError,
    },
    /// A connection to `peer` closed with an error (I/O, security or muxer, such as yamux's
    /// `FrameTooLarge`) instead of cleanly. Queries left without peers fail after
    /// [`ClientConfig::with_no_peer_timeout`](crate::ClientConfig::with_no_peer_timeout) with
    /// [`QueryError::NoPeers`], which carries the last such error.
    ConnectionError {
        /// The peer.
        peer: PeerId,
        /// Why the connection closed.
        error: ConnectionError,
    },
}

impl Event {
    /// The client engine's event, as the behaviour reports it.
    pub(crate) fn from_client(event: ClientEvent) -> Self {
        match event {
            ClientEvent::BlockReceived { query, block } => Self::BlockReceived { query, block },
            ClientEvent::Progress { query, progress } => Self::Progress { query, progress },
            ClientEvent::QueryFinished { query } => Self::QueryFinished { query },
            ClientEvent::QueryFailed { query, error } => Self::QueryFailed { query, error },
        }
    }
}
