//! The IPFS Bitswap protocol over rust-libp2p: `/ipfs/bitswap/1.2.0`, `1.1.0`, `1.0.0` and
//! `/ipfs/bitswap`, all advertised and accepted.
//!
//! Spec: <https://specs.ipfs.tech/bitswap-protocol/>.
//!
//! Embed [`Behaviour`] in a swarm (alone or in a `#[derive(NetworkBehaviour)]` beside identify,
//! ping and kad), send [`Message`]s to peers and read the [`Event`]s:
//!
//! ```
//! use std::time::Duration;
//!
//! use bitswap::{Block, Entry, Event, Message};
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use libp2p::{noise, swarm::SwarmEvent, tcp, yamux};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let swarm = || {
//!         libp2p::SwarmBuilder::with_new_identity()
//!             .with_tokio()
//!             .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
//!             .expect("tcp, noise and yamux")
//!             .with_behaviour(|_| bitswap::Behaviour::new(bitswap::Config::default()))
//!             .expect("infallible")
//!             .build()
//!     };
//!     let (mut server, mut client) = (swarm(), swarm());
//!     server.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
//!     let address = loop {
//!         if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
//!             break address;
//!         }
//!     };
//!     client.dial(address)?;
//!
//!     // Blocks are verified on construction: their CID is computed from their bytes.
//!     let block = Block::from_v0_data(Bytes::from_static(b"hello"))?;
//!     let server_id = *server.local_peer_id();
//!     let mut asked = false;
//!     let received = tokio::time::timeout(Duration::from_secs(20), async {
//!         loop {
//!             tokio::select! {
//!                 event = client.select_next_some() => {
//!                     if let SwarmEvent::ConnectionEstablished { peer_id, .. } = event {
//!                         if peer_id == server_id && !asked {
//!                             let mut want = Message::default();
//!                             want.wantlist.entries.push(Entry::want_block(*block.cid(), 1));
//!                             client.behaviour_mut().send(peer_id, want)?;
//!                             asked = true;
//!                         }
//!                     }
//!                 }
//!                 event = server.select_next_some() => {
//!                     // A server engine decides what to answer; here, the block at once.
//!                     if let SwarmEvent::Behaviour(Event::Message { peer, message, .. }) = event {
//!                         let mut reply = Message::default();
//!                         if message.wantlist.entries.iter().any(|e| e.cid == *block.cid()) {
//!                             reply.blocks.push(block.clone());
//!                         }
//!                         server.behaviour_mut().send(peer, reply)?;
//!                         break Ok::<_, Box<dyn std::error::Error>>(());
//!                     }
//!                 }
//!             }
//!         }
//!     })
//!     .await;
//!     received??;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Each peer gets the encoding of the version it negotiated ([`Version`]): 1.2.0 carries
//! want-have, presences and pending bytes; 1.1.0 blocks with CID prefixes; 1.0.0 and the legacy
//! id CIDv0 blocks only.
//!
//! # Layout
//!
//! - [`Message`] and its parts are the domain types; conversions from the wire check every
//!   CID and recompute every block's CID from its bytes.
//! - [`protocol`](crate::Version) functions frame messages: an unsigned-varint length, at most
//!   [`MAX_MESSAGE_SIZE`] bytes, refused before allocation when larger.

mod behaviour;
mod blockstore;
mod client;
mod config;
mod handler;
mod message;
mod proto;
mod protocol;
mod server;
mod upgrade;

pub use behaviour::{Behaviour, Event, InboundFailure, MessageId, SendError, SendFailure};
pub use blockstore::{
    Blockstore, MemoryBlockstore, MemoryBlockstoreError, RedbBlockstore, RedbBlockstoreError,
    RedbConfig, RedbOpenError,
};
pub use client::{
    Action as ClientAction, Config as ClientConfig, Engine as ClientEngine, Event as ClientEvent,
    Progress, QueryError, QueryId, SessionId, Stats as ClientStats,
};
pub use config::Config;
pub use handler::{Handler, HandlerEvent, HandlerIn};
pub use message::{
    Block, BlockError, BlockPresence, BlockPresenceType, Entry, MAX_BLOCK_SIZE, Message,
    MessageError, WantType, Wantlist,
};
pub use protocol::{MAX_MESSAGE_SIZE, ProtocolError, Version, encode, read_message, write_frames};
pub use server::{
    Config as ServerConfig, Engine as ServerEngine, Envelope, EnvelopeId, Lookup, LookupId,
    LookupKind, LookupResult, Metrics as ServerMetrics, PeerAccounting, RequestFilter,
    Stats as ServerStats,
};
pub use upgrade::Upgrade;
