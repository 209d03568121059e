//! IPFS data formats over any [`Blockstore`](ipfs_blockstore::Blockstore): UnixFS import (with
//! kubo's layouts) and export, the links of a block for DAG walks, and CARv1 files.
//!
//! Nothing here touches the network: the formats read and write blocks through the store
//! trait of [`ipfs_blockstore`], so a UnixFS importer or a CAR tool does not pull in libp2p.
//! Here a file goes into a store in kubo's default layout, comes back out, and travels to a
//! second store in a CAR file:
//!
//! ```
//! use std::path::Path;
//!
//! use futures::executor::block_on;
//! use ipfs_blockstore::{Blockstore, MemoryBlockstore};
//! use ipfs_formats::{car, dag, unixfs};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let data: Vec<u8> = (0..600 * 1024).map(|i| (i % 251) as u8).collect();
//! let store = MemoryBlockstore::new();
//! block_on(async {
//!     // kubo's `ipfs add` defaults: CIDv0, 256 KiB chunks, dag-pb leaves.
//!     let layout = unixfs::Layout::default();
//!     let imported = unixfs::import_reader(&store, &data[..], &layout).await?;
//!     assert!(imported.root.to_string().starts_with("Qm"));
//!     // Three leaves under one root node.
//!     let root = store.get(&imported.root).await?.expect("stored");
//!     assert_eq!(dag::links(&root)?.len(), 3);
//!
//!     // Every block is checked against its CID on the way out.
//!     let mut out = Vec::new();
//!     unixfs::write_file(&store, &imported.root, &mut out, Path::new("<memory>")).await?;
//!     assert_eq!(out, data);
//!
//!     // The DAG in one CARv1 file, read into another store.
//!     let mut file = Vec::new();
//!     car::export(&store, &[imported.root], &mut file, Path::new("<memory>")).await?;
//!     let other = MemoryBlockstore::new();
//!     let stats = car::import(&other, &file[..], Path::new("<memory>")).await?;
//!     assert_eq!((stats.roots, stats.blocks), (vec![imported.root], 4));
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! # What it holds
//!
//! - [`unixfs`]: import files and directories with the same CIDs as kubo's `ipfs add`
//!   (CIDv0 and dag-pb leaves by default, or CIDv1 with raw leaves), and export them back,
//!   checking every block and size; the file assembler writes a file from its blocks as they
//!   arrive, in any order.
//! - [`dag`]: the links of a block, for walks over any DAG of dag-pb, dag-cbor and raw blocks
//!   ([`dag_cbor`] reads the CIDs of a dag-cbor block).
//! - [`car`]: CARv1 export and import of a DAG.
//!
//! Files written to a path ([`unixfs::export`], [`car::export_file`], the assembler) go
//! through a temporary file beside the target, renamed into place once complete, so that a
//! failed export leaves no partial file. Its name starts with `.bitswap-node-`, the prefix of
//! every temporary file of the `bitswap-node` binary, which uses these formats.
//!
//! # Hash functions
//!
//! [`unixfs::HashFunction`] offers kubo's `--hash` choices: sha2-256 always, blake2b-256 and
//! sha3-256 when `ipfs-blockstore` is built with its features `blake2b` and `sha3` (blocks are
//! verified there).

pub mod car;
pub mod dag;
pub mod dag_cbor;
pub mod temp;
pub mod unixfs;
