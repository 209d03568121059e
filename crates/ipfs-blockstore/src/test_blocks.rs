//! Blocks for the stores' unit tests.

use bytes::Bytes;

use crate::Block;

/// A CIDv0 block of `len` bytes, distinct for each `i`.
pub(crate) fn block(i: u8, len: usize) -> Block {
    let data: Vec<u8> = (0..len).map(|j| (j as u8).wrapping_mul(29) ^ i).collect();
    Block::from_v0_data(Bytes::from(data)).unwrap()
}
