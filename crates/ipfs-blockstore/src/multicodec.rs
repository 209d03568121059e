//! The [multicodec](https://github.com/multiformats/multicodec/blob/master/table.csv) codes the
//! workspace names: the codecs of CIDs and the multihash codes of their digests.
//!
//! Codes are plain `u64`s, as [`Cid::codec`](cid::Cid::codec) and
//! [`Multihash::code`](cid::multihash::Multihash::code) return them, so that they can be
//! matched on.

/// Codec of dag-pb: protobuf nodes with links, UnixFS's format and the only codec of CIDv0.
pub const DAG_PB: u64 = 0x70;

/// Codec of raw bytes: a block that is its own content, with no links.
pub const RAW: u64 = 0x55;

/// Multihash code of the identity "hash": the digest is the data itself, so a CID of it
/// carries its block.
pub const IDENTITY: u64 = 0x00;

/// Multihash code of SHA2-256: kubo's default, and the only hash of CIDv0.
pub const SHA2_256: u64 = 0x12;

/// Multihash code of SHA3-256 (verified with the cargo feature `sha3`).
pub const SHA3_256: u64 = 0x16;

/// Multihash code of BLAKE2b-256 (verified with the cargo feature `blake2b`).
pub const BLAKE2B_256: u64 = 0xb220;
