//! The message layer: Bitswap streams over libp2p, without policy.
//!
//! [`Behaviour`] tracks peers, their connections and Bitswap versions, writes the messages it
//! is given and reports the messages that arrive. It decides nothing: the crate's
//! [`Behaviour`](crate::Behaviour) puts the server and client engines on top of it. Use this
//! layer directly to speak Bitswap with a policy of your own, or to test a peer.
//!
//! ```
//! use std::time::Duration;
//!
//! use bitswap::{Block, Entry, Message, network};
//! use bytes::Bytes;
//! use futures::StreamExt;
//! use libp2p::{noise, swarm::SwarmEvent, tcp};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     let swarm = || {
//!         libp2p::SwarmBuilder::with_new_identity()
//!             .with_tokio()
//!             .with_tcp(tcp::Config::default(), noise::Config::new, bitswap::yamux_config)
//!             .expect("tcp, noise and yamux")
//!             .with_behaviour(|_| network::Behaviour::new(network::Config::default()))
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
//!                     // This layer has no policy: here, the block is answered at once.
//!                     if let SwarmEvent::Behaviour(network::Event::Message { peer, message, .. }) = event {
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
//! - `behaviour.rs`: [`Behaviour`], peers and connections, [`Event`]s.
//! - `handler.rs`: [`Handler`], one per connection: streams in and out, bounded.
//! - `deadline.rs`: one timer for a stream's successive timeouts.
//! - `upgrade.rs`: [`Upgrade`], version negotiation on a stream.
//! - `config.rs`: [`Config`], limits and timeouts.

mod behaviour;
mod config;
mod deadline;
mod handler;
mod inbound;
mod outbound;
mod upgrade;

pub use behaviour::{Behaviour, Event, InboundFailure, MessageId, SendError, SendFailure};
pub use config::Config;
pub use handler::{Handler, HandlerEvent, HandlerIn, OutboundOpen};
pub use upgrade::Upgrade;
