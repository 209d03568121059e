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
//! use bytes::Bytes;
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
//!     let block = Block::from_v0_data(Bytes::from_static(b"hello"))?;
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
//! of its own turns default features off and compiles no redb.
//!
//! # Layout
//!
//! - [`Behaviour`] wires the parts below into one `NetworkBehaviour`; [`Config`] sets them.
//! - [`network`]: the message layer, Bitswap streams over libp2p without policy.
//! - [`transport`]: [`yamux_config`], the muxer setting that works with kubo and Helia.
//! - [`ServerEngine`]: the sans-IO decision engine: what every peer gets, and when.
//! - [`ClientEngine`]: the sans-IO client: which peers are asked for which blocks, and when;
//!   [`Handle`] reaches it from other tasks.
//! - [`Blockstore`]: the store trait (from [`ipfs_blockstore`]), which [`Behaviour`] reads
//!   served blocks from and writes fetched blocks to.
//! - [`Message`] and its parts are the domain types; [`decode_message`] reads them from the
//!   wire with memory bounded by per-message caps whatever the message's shape, leaves out
//!   (and counts in [`Dropped`]) entries and presences that make no sense alone, and recomputes
//!   every block's CID from its bytes.
//! - [`protocol`](crate::Version) functions frame messages: an unsigned-varint length, at most
//!   [`MAX_MESSAGE_SIZE`] bytes, refused before allocation when larger.

mod addresses;
mod behaviour;
mod client;
mod config;
mod decode;
mod delivery;
mod event;
mod handle;
mod hash;
mod intake;
mod keep_alive;
mod message;
pub mod network;
mod proto;
mod protocol;
mod server;
pub mod transport;
mod troubles;

pub use behaviour::Behaviour;
pub use client::{
    Action as ClientAction, Config as ClientConfig, ConnectionError, Engine as ClientEngine,
    Event as ClientEvent, Progress, QueryError, QueryId, SessionId, Stats as ClientStats,
};
pub use config::Config;
pub use decode::{
    Dropped, MAX_BLOCKS_PER_MESSAGE, MAX_CID_SIZE, MAX_PRESENCES_PER_MESSAGE, decode_message,
};
pub use event::{Event, PutError, PutId, StoreError};
pub use handle::{BlockStream, GetError, Handle};
// The block and store types this crate's API names, so that its users need not depend on
// `ipfs-blockstore` themselves.
pub use ipfs_blockstore::{
    Block, BlockError, Blockstore, MAX_BLOCK_SIZE, MemoryBlockstore, MemoryBlockstoreError,
};
#[cfg(feature = "redb")]
pub use ipfs_blockstore::{
    RedbBlockstore, RedbBlockstoreError, RedbConfig, RedbCorruption, RedbOpenError,
};
pub use message::{
    BlockPresence, BlockPresenceType, Entry, Message, MessageError, WantType, Wantlist,
};
pub use protocol::{MAX_MESSAGE_SIZE, ProtocolError, Version, encode, read_message, write_frames};
pub use server::{
    Config as ServerConfig, Engine as ServerEngine, Envelope, EnvelopeId, Lookup, LookupId,
    LookupKind, LookupResult, Metrics as ServerMetrics, PeerAccounting, RequestFilter,
    Stats as ServerStats,
};
pub use transport::yamux_config;
