//! Deterministic bytes and blocks for tests, benches and fuzz targets (the `testing` cargo
//! feature), so that every test of the workspace makes its blocks the same way.
//!
//! ```
//! use ipfs_blockstore::testing;
//!
//! let block = testing::raw_block(7, 1024);
//! assert_eq!(block.data().len(), 1024);
//! assert_eq!(block, testing::raw_block(7, 1024));
//! assert_ne!(block, testing::raw_block(8, 1024));
//! ```

use std::ops::Range;

use bytes::Bytes;
use cid::Cid;
use multihash_codetable::{Code, MultihashDigest};

use crate::{Block, multicodec::RAW};

/// `len` pseudo-random bytes from a splitmix64 stream seeded by `seed`: incompressible,
/// different for every seed, the same on every run and machine.
pub fn bytes(seed: u64, len: usize) -> Bytes {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// A CIDv1 raw-codec sha2-256 block of [`bytes`]`(seed, len)`.
pub fn raw_block(seed: u64, len: usize) -> Block {
    let data = bytes(seed, len);
    let cid = Cid::new_v1(RAW, Code::Sha2_256.digest(&data));
    Block::new(cid, data).expect("a block of at most MAX_BLOCK_SIZE bytes")
}

/// A [`raw_block`] of `len` bytes for each seed of `seeds`.
pub fn raw_blocks(seeds: Range<u64>, len: usize) -> Vec<Block> {
    seeds.map(|seed| raw_block(seed, len)).collect()
}

/// A CIDv0 block (dag-pb codec, sha2-256) of [`bytes`]`(seed, len)`. Its bytes are not a
/// valid dag-pb node: stores and the Bitswap wire do not look inside blocks.
pub fn v0_block(seed: u64, len: usize) -> Block {
    Block::from_v0_data(bytes(seed, len)).expect("a block of at most MAX_BLOCK_SIZE bytes")
}
