//! IPFS blocks and where they are kept: verified [`Block`]s, the [`Blockstore`] trait, a
//! store in memory and a persistent one.
//!
//! A [`Block`] is a CID and bytes that hash to it, checked when the block is made; a
//! [`Blockstore`] keeps blocks by their multihash, so that every CID of the same bytes finds
//! them:
//!
//! ```
//! use bytes::Bytes;
//! use cid::Cid;
//! use futures::executor::block_on;
//! use ipfs_blockstore::{Block, Blockstore, MemoryBlockstore, multicodec::RAW};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The CID of a CIDv0 block is computed from its bytes.
//! let block = Block::from_v0_data(Bytes::from_static(b"hello"))?;
//! // A block made from a CID is checked against it.
//! assert!(Block::new(*block.cid(), Bytes::from_static(b"other")).is_err());
//!
//! let store = MemoryBlockstore::new();
//! block_on(async {
//!     store.put(block.clone()).await?;
//!     // The CIDv1 of the same multihash finds the same bytes, under the CID asked for.
//!     let v1 = Cid::new_v1(RAW, *block.cid().hash());
//!     let found = store.get(&v1).await?.expect("stored");
//!     assert_eq!((found.cid(), found.data()), (&v1, block.data()));
//!     store.flush().await
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! # What it holds
//!
//! - [`Block`] (with [`BlockError`]) and [`MAX_BLOCK_SIZE`]: a block is at most 2 MiB, and its
//!   bytes are hashed again whenever it is built from outside data.
//! - [`multicodec`]: the codec and multihash codes the workspace names (dag-pb, raw,
//!   identity, sha2-256, ...).
//! - [`Blockstore`]: the asynchronous trait an embedder implements for its own storage, with
//!   its rules (keyed by multihash, verified both ways, ordered, durable at
//!   [`flush`](Blockstore::flush), idempotent).
//! - [`MemoryBlockstore`]: a map in memory, bounded by an optional byte budget, for tests and
//!   small nodes.
//! - `RedbBlockstore` (cargo feature `redb`, on by default): the persistent store, one
//!   [redb](https://docs.rs/redb) file (pure Rust, ACID, copy-on-write B-trees), with puts
//!   batched by a background writer thread and durable at explicit [`Blockstore::flush`]
//!   points (and in large batches between them); large blocks written in batches go to an
//!   append-only blob file next to it, indexed by the redb file, and compacted when deleted
//!   blocks leave enough of it dead. Without the feature, the crate compiles no redb, for
//!   embedders that bring their own store.
//! - `S3Blockstore` (cargo feature `s3`): blocks as objects of an S3-compatible bucket
//!   (through [object_store](https://docs.rs/object_store)), shared by any number of nodes,
//!   with a byte-bounded cache of hot blocks and a membership filter in front, so that lookups
//!   of blocks nobody stored make no request. Its docs have an example on the in-memory
//!   backend.
//! - `seaweedfs` (cargo feature `seaweedfs`): a SeaweedFS server on loopback, started and
//!   ended by its PID, for the tests and benches of the S3 store.
//!
//! # Hash functions
//!
//! Blocks are verified by recomputing their multihash: sha2-256, sha2-512, their truncated
//! forms, blake3 and identity are always available. The cargo features `sha1`, `sha3`,
//! `blake2b`, `blake2s` and `ripemd` add those families ([`can_verify`] says what this build
//! knows); a block hashed with anything else is refused with [`BlockError::UnsupportedHash`].

mod accessors;
mod block;
mod memory;
pub mod multicodec;
mod store;

#[cfg(feature = "redb")]
mod blobs;
#[cfg(feature = "redb")]
mod compact;
#[cfg(feature = "redb")]
mod readers;
#[cfg(feature = "redb")]
mod redb_error;
#[cfg(feature = "redb")]
mod redb_store;
#[cfg(feature = "s3")]
mod s3;
#[cfg(feature = "seaweedfs")]
pub mod seaweedfs;
#[cfg(feature = "redb")]
mod tables;
#[cfg(feature = "redb")]
mod write_buffer;
#[cfg(feature = "redb")]
mod writer;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use block::{Block, BlockError, MAX_BLOCK_SIZE, can_verify};
pub use memory::{MemoryBlockstore, MemoryBlockstoreError};
#[cfg(feature = "redb")]
pub use redb_error::{RedbBlockstoreError, RedbCorruption, RedbOpenError};
#[cfg(feature = "redb")]
pub use redb_store::{RedbBlockstore, RedbConfig};
#[cfg(feature = "s3")]
pub use s3::{S3Blockstore, S3BlockstoreError, S3Config, S3OpenError, S3Stats};
pub use store::Blockstore;
