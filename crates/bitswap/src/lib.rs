//! The IPFS Bitswap protocol over rust-libp2p: `/ipfs/bitswap/1.2.0`, `1.1.0`, `1.0.0` and
//! `/ipfs/bitswap`, all advertised and accepted.
//!
//! Spec: <https://specs.ipfs.tech/bitswap-protocol/>.
//!
//! ```
//! use bitswap::{Block, Entry, Message, Version};
//! use bytes::Bytes;
//!
//! // Blocks are verified on construction: their CID is computed from their bytes.
//! let block = Block::from_v0_data(Bytes::from_static(b"hello")).expect("small block");
//! let mut message = Message::default();
//! message.wantlist.entries.push(Entry::want_have(*block.cid(), 1));
//! message.blocks.push(block);
//!
//! // Each peer gets the encoding of the version it negotiated.
//! let frames = bitswap::encode(&message, Version::V1_2_0);
//! assert_eq!(frames.len(), 1);
//! ```
//!
//! # Layout
//!
//! - [`Message`] and its parts are the domain types; conversions from the wire check every
//!   CID and recompute every block's CID from its bytes.
//! - [`protocol`](crate::Version) functions frame messages: an unsigned-varint length, at most
//!   [`MAX_MESSAGE_SIZE`] bytes, refused before allocation when larger.

mod behaviour;
mod config;
mod handler;
mod message;
mod proto;
mod protocol;
mod upgrade;

pub use behaviour::{Behaviour, Event, InboundFailure, MessageId, SendError, SendFailure};
pub use config::Config;
pub use handler::{Handler, HandlerEvent, HandlerIn};
pub use message::{
    Block, BlockError, BlockPresence, BlockPresenceType, Entry, MAX_BLOCK_SIZE, Message,
    MessageError, WantType, Wantlist,
};
pub use protocol::{MAX_MESSAGE_SIZE, ProtocolError, Version, encode, read_message, write_frames};
pub use upgrade::Upgrade;
