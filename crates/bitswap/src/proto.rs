//! The Bitswap protobuf schema (`bitswap/message/pb/message.proto` in boxo, package
//! `bitswap.message.pb`), written out by hand with prost's derive so no `protoc` or build script
//! is needed. Private: the crate converts to and from its domain types at the boundary.
//!
//! ```proto
//! message Message {
//!   message Wantlist {
//!     enum WantType { Block = 0; Have = 1; }
//!     message Entry {
//!       bytes block = 1;       // the CID
//!       int32 priority = 2;
//!       bool cancel = 3;
//!       WantType wantType = 4;
//!       bool sendDontHave = 5;
//!     }
//!     repeated Entry entries = 1;
//!     bool full = 2;
//!   }
//!   message Block {
//!     bytes prefix = 1;        // CID version, codec, multihash code and length
//!     bytes data = 2;
//!   }
//!   enum BlockPresenceType { Have = 0; DontHave = 1; }
//!   message BlockPresence {
//!     bytes cid = 1;
//!     BlockPresenceType type = 2;
//!   }
//!   Wantlist wantlist = 1;
//!   repeated bytes blocks = 2;          // 1.0.0: block data, CIDv0 implied
//!   repeated Block payload = 3;         // 1.1.0 and later
//!   repeated BlockPresence blockPresences = 4;  // 1.2.0
//!   int32 pendingBytes = 5;             // 1.2.0
//! }
//! ```

#![allow(missing_docs, unreachable_pub)]

use bytes::Bytes;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Message {
    #[prost(message, optional, tag = "1")]
    pub(crate) wantlist: Option<Wantlist>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub(crate) blocks: Vec<Bytes>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) payload: Vec<Block>,
    #[prost(message, repeated, tag = "4")]
    pub(crate) block_presences: Vec<BlockPresence>,
    #[prost(int32, tag = "5")]
    pub(crate) pending_bytes: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Wantlist {
    #[prost(message, repeated, tag = "1")]
    pub(crate) entries: Vec<Entry>,
    #[prost(bool, tag = "2")]
    pub(crate) full: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Entry {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) block: Bytes,
    #[prost(int32, tag = "2")]
    pub(crate) priority: i32,
    #[prost(bool, tag = "3")]
    pub(crate) cancel: bool,
    #[prost(enumeration = "WantType", tag = "4")]
    pub(crate) want_type: i32,
    #[prost(bool, tag = "5")]
    pub(crate) send_dont_have: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum WantType {
    Block = 0,
    Have = 1,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Block {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) prefix: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub(crate) data: Bytes,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BlockPresence {
    #[prost(bytes = "bytes", tag = "1")]
    pub(crate) cid: Bytes,
    #[prost(enumeration = "BlockPresenceType", tag = "2")]
    pub(crate) r#type: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub(crate) enum BlockPresenceType {
    Have = 0,
    DontHave = 1,
}
