//! UnixFS over dag-pb: import files and directories with kubo's layout, export them back.
//!
//! Spec: <https://github.com/ipfs/specs/blob/main/UNIXFS.md>.
//!
//! - [`Chunker`] cuts a reader into fixed-size chunks.
//! - [`FileBuilder`] builds kubo's balanced DAG over those chunks as they come, with the
//!   [`Layout`] (CID version, hash function, raw or UnixFS leaves, chunk size, links per
//!   node).
//! - [`import_path`] and [`import_reader`] write files, directories and symlinks into a
//!   [`Blockstore`](ipfs_blockstore::Blockstore) in batches; [`export`] and [`write_file`] walk a DAG
//!   back out of one, checking every block and size; [`FileAssembler`] writes a file from its
//!   blocks as they arrive, in any order, with the same checks.
//! - [`DagPbNode`] and [`UnixfsData`] are the two protobuf layers of a node; [`Metadata`] is a
//!   node's UnixFS 1.5 mode and mtime, stored on import when asked for and restored on export.
//! - Directories past kubo's threshold ([`HAMT_SHARDING_SIZE_BYTES`]) are written as HAMT
//!   shards in kubo's layout, and sharded directories are read back (see [`murmur3_x64_64`]).

mod assemble;
mod chunker;
mod export;
mod hamt;
mod import;
mod layout;
mod metadata;
mod pb;

pub use assemble::{BYTES_PER_PLACE, FileAssembler, MIN_PLACES};
pub use chunker::Chunker;
pub use export::{EntryKind, ExportError, Exported, MAX_DEPTH, export, write_file};
pub use hamt::{HAMT_FANOUT, HAMT_HASH_MURMUR3, ShardError, murmur3_x64_64};
pub use import::{
    HAMT_SHARDING_SIZE_BYTES, ImportError, ImportOptions, Imported, import_path, import_reader,
};
pub use layout::{
    Child, CidVersion, DEFAULT_CHUNK_SIZE_BYTES, DEFAULT_MAX_LINKS, FileBuilder, HashFunction,
    Layout, LayoutError, MAX_CHUNK_SIZE_BYTES, MAX_LINKS, v1_block, v1_block_with,
};
pub use metadata::{
    DEFAULT_DIRECTORY_MODE, DEFAULT_FILE_MODE, MODE_BITS, Metadata, MetadataError, Mtime,
};
pub use pb::{DagPbNode, DataType, DecodeError, Link, UnixfsData};
