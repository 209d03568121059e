//! The IPFS Bitswap protocol over rust-libp2p: `/ipfs/bitswap/1.2.0`, `1.1.0`, `1.0.0` and
//! `/ipfs/bitswap`, all advertised and accepted.
//!
//! Spec: <https://specs.ipfs.tech/bitswap-protocol/>.
//!
//! Embed [`Behaviour`] in a swarm (alone or in a `#[derive(NetworkBehaviour)]` beside identify,
//! ping and kad) with a [`Blockstore`]: it fetches blocks from peers into the store and serves
//! the store's blocks to the peers that want them. Give the transport [`yamux_config`] as its
//! muxer: with yamux's default, Helia's large frames kill the connection (see its docs). Here
//! one node fetches a block from another:
//!
//! ```
//! use std::time::Duration;
//!
//! use bitswap::{Block, Event, MemoryBlockstore};
//! use futures::StreamExt;
//! use libp2p::{noise, swarm::SwarmEvent, tcp};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let node = || -> Result<_, Box<dyn std::error::Error>> {
//!         Ok(libp2p::SwarmBuilder::with_new_identity()
//!             .with_tokio()
//!             .with_tcp(tcp::Config::default(), noise::Config::new, bitswap::yamux_config)?
//!             .with_behaviour(|_| {
//!                 bitswap::Behaviour::new(MemoryBlockstore::new(), bitswap::Config::default())
//!             })?
//!             .build())
//!     };
//!     let (mut server, mut client) = (node()?, node()?);
//!     // Blocks are verified on construction: their CID is computed from their bytes.
//!     let block = Block::raw("hello")?;
//!     server.behaviour_mut().put(vec![block.clone()])?;
//!     server.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
//!
//!     let received = tokio::time::timeout(Duration::from_secs(20), async {
//!         loop {
//!             tokio::select! {
//!                 event = server.select_next_some() => {
//!                     if let SwarmEvent::NewListenAddr { address, .. } = event {
//!                         client.dial(address)?;
//!                     }
//!                 }
//!                 event = client.select_next_some() => match event {
//!                     SwarmEvent::ConnectionEstablished { .. } => {
//!                         client.behaviour_mut().get(*block.cid())?;
//!                     }
//!                     SwarmEvent::Behaviour(Event::BlockReceived { block, .. }) => {
//!                         break Ok::<_, Box<dyn std::error::Error>>(block);
//!                     }
//!                     _ => {}
//!                 },
//!             }
//!         }
//!     })
//!     .await??;
//!     assert_eq!(received, block);
//!     // The block is in the client's store now, and served to its peers.
//!     assert_eq!(client.behaviour().store().len(), 1);
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Each peer gets the encoding of the version it negotiated ([`Version`]): 1.2.0 carries
//! want-have, presences and pending bytes; 1.1.0 blocks with CID prefixes; 1.0.0 and the legacy
//! id CIDv0 blocks only.
//!
//! # Blocks, CIDs and the types the API names
//!
//! A [`Block`] is made from its bytes: [`Block::raw`] (CIDv1, raw, sha2-256: opaque bytes),
//! [`Block::dag_pb`] (CIDv1, dag-pb, sha2-256: UnixFS nodes), [`Block::from_v0_data`]
//! (CIDv0), [`Block::with_codec`] for any other codec and hash, or [`Block::new`] from a CID
//! and bytes, checked. This crate re-exports the types its API names, so that an embedder
//! uses the versions it was built with instead of guessing compatible ones: [`Cid`],
//! [`Multihash`] (`Multihash<64>`, what [`Cid::hash`] returns), [`Bytes`], [`PeerId`], kad's
//! [`RecordKey`] and the [`multicodec`] codes; and the crates [`cid`] and [`bytes`]
//! themselves.
//!
//! # Fetching, and what is already here
//!
//! [`Behaviour::get_many`] (and [`Control::get_many`]) looks in the store first and asks peers
//! only for the blocks it lacks; [`Config::with_local_first`] turns that off.
//! [`Behaviour::has`] and [`Control::has`] ask the store alone.
//!
//! # Finding providers
//!
//! Peers connected are asked first. When none has a block, the behaviour reports
//! [`Event::FindProviders`] with the block's provider record key (its multihash, as kubo and
//! Helia key provider records: [`provider_key`]); kad's answers go back through
//! [`Behaviour::add_providers_for_key`]. The event's docs show the wiring. kad answers other
//! nodes' searches only in server mode, which it picks by itself only once an external address
//! is confirmed: on loopback and in private networks, set it with
//! `kad::Behaviour::set_mode(Some(kad::Mode::Server))`.
//!
//! # Keeping connections open
//!
//! The behaviour keeps a connection open by itself while a Bitswap stream is open or a
//! message is queued, while one of its queries wants a block from the peer, and while its
//! server still owes the peer blocks it asked for: a fetch or a transfer in progress needs no
//! setting. Between those, the swarm's idle connection timeout applies (libp2p's default:
//! 10 s after the last stream closed), so a peer dialled well before a `get`, or a peer that
//! fetches now and then, may be gone when wanted again, and is dialled again only if its
//! address is known. To keep peers longer, raise the swarm's `with_idle_connection_timeout`
//! (the node of this workspace uses 60 s; kubo keeps idle connections far longer), or keep
//! every Bitswap peer's connection open while idle with
//! [`network::Config::with_keep_alive`]. ping and identify do not keep connections open; kad
//! does while its own queries run.
//!
//! # Shutting down
//!
//! The behaviour owns its store in an `Arc` ([`Behaviour::store`]), and a swarm cannot be
//! taken apart. To close a store (flush it and release its files) without blocking: clone the
//! `Arc`, drop the swarm, then take the store out of the `Arc`. [`Control`]s hold no
//! reference to it. Dropping the swarm alone closes a store too (the `RedbBlockstore` commits
//! what it accepted and closes its file in its `Drop`), blocking the thread meanwhile.
//!
//! ```
//! # #[cfg(feature = "redb")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use bitswap::{RedbBlockstore, RedbConfig};
//! use libp2p::{noise, tcp, yamux};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("blocks.redb");
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let store = RedbBlockstore::open(&path, RedbConfig::default())?;
//!     let swarm = libp2p::SwarmBuilder::with_new_identity()
//!         .with_tokio()
//!         .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)?
//!         .with_behaviour(|_| bitswap::Behaviour::new(store, bitswap::Config::default()))?
//!         .build();
//!     let control = swarm.behaviour().control();
//!     // ... run the swarm ...
//!     let store = Arc::clone(swarm.behaviour().store());
//!     drop(swarm);
//!     let store = Arc::try_unwrap(store).map_err(|_| "the store is still shared")?;
//!     store.close().await?;
//!     assert!(matches!(
//!         control.has(bitswap::Block::raw("x")?.cid()).await,
//!         Err(bitswap::HasError::Closed)
//!     ));
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! // Closed cleanly: the next open has nothing to repair.
//! assert!(!RedbBlockstore::open(&path, RedbConfig::default())?.was_repaired());
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "redb"))]
//! # fn main() {}
//! ```
//!
//! # Hash functions
//!
//! Blocks are verified by recomputing their multihash: sha2-256, sha2-512, their truncated
//! forms, blake3 and identity are always available. The cargo features `sha1`, `sha3`,
//! `blake2b`, `blake2s` and `ripemd` add those families (they enable the same features of
//! [`ipfs_blockstore`], which verifies blocks); a block hashed with anything else is refused
//! with [`BlockError::UnsupportedHash`].
//!
//! # Block stores
//!
//! Blocks and their stores come from [`ipfs_blockstore`], re-exported here: [`Block`],
//! [`Blockstore`], [`MemoryBlockstore`], and the persistent `RedbBlockstore` with its
//! configuration and errors behind the default cargo feature `redb`. An embedder with a store
//! of its own turns default features off and compiles no redb. The cargo feature `s3` adds
//! `S3Blockstore`, blocks kept as objects of an S3-compatible bucket that several nodes can
//! serve at once.
//!
//! # Metrics
//!
//! With the default cargo feature `metrics`, `Behaviour::with_metrics` registers the server
//! engine's counters and gauges (`ServerMetrics`) on a prometheus-client registry, as
//! libp2p's own behaviours do. Without it, the crate compiles no prometheus-client.
//!
//! # Layout
//!
//! - [`Behaviour`] wires the parts below into one `NetworkBehaviour`; [`Config`] sets them.
//! - [`network`]: the message layer, Bitswap streams over libp2p without policy.
//! - [`transport`]: [`yamux_config`], the muxer setting that works with kubo and Helia, and
//!   [`capped_yamux_config`] for a yamux that caps stream windows.
//! - [`ServerEngine`]: the sans-IO decision engine: what every peer gets, and when.
//! - [`ClientEngine`]: the sans-IO client: which peers are asked for which blocks, and when;
//!   [`Control`] reaches it from other tasks.
//! - [`Blockstore`]: the store trait (from [`ipfs_blockstore`]), which [`Behaviour`] reads
//!   served blocks from and writes fetched blocks to.
//! - [`Message`] and its parts are the domain types.
//! - [`protocol`]: the wire format. [`protocol::decode_message`] reads messages with memory
//!   bounded by per-message caps whatever the message's shape, leaves out (and counts in
//!   [`protocol::Dropped`]) entries and presences that make no sense alone, and recomputes
//!   every block's CID from its bytes; frames are an unsigned-varint length and at most
//!   [`protocol::MAX_MESSAGE_SIZE`] bytes, refused before allocation when larger.

#[macro_use]
mod ids;

mod addresses;
mod alarm;
mod behaviour;
mod client;
mod config;
mod control;
mod decode;
mod delivery;
mod event;
mod intake;
mod keep_alive;
mod map;
mod message;
pub mod network;
mod outbox;
mod proto;
pub mod protocol;
mod providers;
mod sent;
mod server;
mod store_io;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;
mod troubles;

pub use behaviour::Behaviour;
pub use client::{
    Action as ClientAction, Config as ClientConfig, ConnectionError, Engine as ClientEngine,
    Event as ClientEvent, Progress, QueryError, QueryId, SessionId, Stats as ClientStats,
};
pub use config::Config;
pub use control::{BlockStream, Control, GetError, HasError};
pub use event::{Event, PutError, PutId, StoreError};
// The types of other crates this crate's API names, in the versions it was built with.
pub use bytes::{self, Bytes};
pub use cid::{self, Cid, multihash::Multihash};
pub use libp2p::{PeerId, kad::RecordKey};
// The block and store types this crate's API names, so that its users need not depend on
// `ipfs-blockstore` themselves.
pub use ipfs_blockstore::{
    Block, BlockError, Blockstore, MAX_BLOCK_SIZE, MemoryBlockstore, MemoryBlockstoreError,
    multicodec,
};
#[cfg(feature = "redb")]
pub use ipfs_blockstore::{
    RedbBlockstore, RedbBlockstoreError, RedbConfig, RedbCorruption, RedbOpenError,
};
#[cfg(feature = "s3")]
pub use ipfs_blockstore::{S3Blockstore, S3BlockstoreError, S3Config, S3OpenError, S3Stats};
pub use message::{
    BlockPresence, BlockPresenceType, Entry, Message, MessageError, WantType, Wantlist,
};
pub use protocol::Version;
pub use providers::provider_key;
#[cfg(feature = "metrics")]
pub use server::Metrics as ServerMetrics;
pub use server::{
    Config as ServerConfig, Engine as ServerEngine, Envelope, EnvelopeId, Lookup, LookupId,
    LookupKind, LookupResult, PeerAccounting, RequestFilter, Stats as ServerStats,
};
pub use transport::{capped_yamux_config, yamux_config};
