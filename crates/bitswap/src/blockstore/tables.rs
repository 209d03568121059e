//! The layout of the redb file: its tables, its format marker, and the reads against them.
//!
//! - `blocks`: multihash bytes → block bytes.
//! - `block_sizes`: multihash bytes → block length, so `has` and `get_size` read a small entry
//!   instead of the block's pages.
//! - `blobs`: multihash bytes → `(offset, length)` of a large block in the blob file (see
//!   [`blobs`](super::blobs)). A key is in `blocks` or in `blobs`, never both.
//! - `meta`: `"format"` → [`FORMAT_VERSION`], written when the file is created and checked at
//!   every open; `"blob_end"` → the committed length of the blob file, in bytes.
//!
//! Format 1 (before the blob file) had no `blobs` table and no `blob_end`: opening such a file
//! upgrades it to format 2 by adding them (empty, and 0).

use bytes::Bytes;
use cid::Cid;
use redb::{Database, TableDefinition, TableHandle as _};

use super::{
    blobs::BlobFile,
    pending::Key,
    redb_error::{RedbBlockstoreError, RedbOpenError},
};
use crate::message::Block;

pub(super) const BLOCKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("blocks");
pub(super) const SIZES: TableDefinition<'_, &[u8], u64> = TableDefinition::new("block_sizes");
/// Large blocks: multihash bytes → `(offset, length)` in the blob file.
pub(super) const BLOBS: TableDefinition<'_, &[u8], (u64, u64)> = TableDefinition::new("blobs");
pub(super) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
/// The `meta` key of the committed length of the blob file.
pub(super) const BLOB_END_KEY: &str = "blob_end";

/// The layout version this code reads and writes.
pub(super) const FORMAT_VERSION: u64 = 2;
/// The layout before the blob file, which opening upgrades.
const FORMAT_VERSION_1: u64 = 1;

/// The database and the blob file of a store, shared by its threads.
#[derive(Debug)]
pub(super) struct Files {
    pub(super) db: Database,
    pub(super) blobs: BlobFile,
}

/// The key of a block: its multihash's bytes (code, length, digest).
pub(super) fn key(multihash: &Key) -> Vec<u8> {
    multihash.to_bytes()
}

/// Checks the format of a database opened from an existing file, or initializes a new one
/// (a file with no table at all: just created, possibly by a process that stopped before it
/// wrote its first transaction), or upgrades one of format 1. Returns the committed length of
/// the blob file.
pub(super) fn prepare(db: &Database) -> Result<u64, RedbOpenError> {
    let read = db.begin_read().map_err(redb::Error::from)?;
    let tables = read
        .list_tables()
        .map_err(redb::Error::from)?
        .map(|table| table.name().to_owned())
        .collect::<Vec<_>>();
    if tables.is_empty() {
        drop(read);
        let write = db.begin_write().map_err(redb::Error::from)?;
        {
            write.open_table(BLOCKS).map_err(redb::Error::from)?;
            write.open_table(SIZES).map_err(redb::Error::from)?;
            write.open_table(BLOBS).map_err(redb::Error::from)?;
            let mut meta = write.open_table(META).map_err(redb::Error::from)?;
            meta.insert(FORMAT_KEY, FORMAT_VERSION)
                .map_err(redb::Error::from)?;
            meta.insert(BLOB_END_KEY, 0).map_err(redb::Error::from)?;
        }
        write.commit().map_err(redb::Error::from)?;
        return Ok(0);
    }
    let (found, blob_end) = if tables.iter().any(|name| name == META.name()) {
        let meta = read.open_table(META).map_err(redb::Error::from)?;
        let value = |key| -> Result<Option<u64>, RedbOpenError> {
            Ok(meta
                .get(key)
                .map_err(redb::Error::from)?
                .map(|value| value.value()))
        };
        (value(FORMAT_KEY)?, value(BLOB_END_KEY)?)
    } else {
        (None, None)
    };
    let has = |wanted: &str| tables.iter().any(|name| name == wanted);
    let complete = has(BLOCKS.name()) && has(SIZES.name());
    match (found, blob_end) {
        (Some(FORMAT_VERSION), Some(blob_end)) if complete && has(BLOBS.name()) => Ok(blob_end),
        (Some(FORMAT_VERSION_1), _) if complete => {
            drop(read);
            let write = db.begin_write().map_err(redb::Error::from)?;
            {
                write.open_table(BLOBS).map_err(redb::Error::from)?;
                let mut meta = write.open_table(META).map_err(redb::Error::from)?;
                meta.insert(FORMAT_KEY, FORMAT_VERSION)
                    .map_err(redb::Error::from)?;
                meta.insert(BLOB_END_KEY, 0).map_err(redb::Error::from)?;
            }
            write.commit().map_err(redb::Error::from)?;
            tracing::info!("block store upgraded from format 1 to format {FORMAT_VERSION}");
            Ok(0)
        }
        (found, _) => Err(RedbOpenError::UnsupportedFormat {
            found,
            expected: FORMAT_VERSION,
        }),
    }
}

/// The block stored for `cid`'s multihash, in the B-tree or in the blob file, checked against
/// `cid`.
pub(super) fn get(files: &Files, cid: &Cid) -> Result<Option<Block>, RedbBlockstoreError> {
    let read = files.db.begin_read().map_err(redb::Error::from)?;
    let key = key(cid.hash());
    let inline = {
        let blocks = read.open_table(BLOCKS).map_err(redb::Error::from)?;
        blocks
            .get(key.as_slice())
            .map_err(redb::Error::from)?
            .map(|data| Bytes::copy_from_slice(data.value()))
    };
    let data =
        match inline {
            Some(data) => data,
            None => {
                let blobs = read.open_table(BLOBS).map_err(redb::Error::from)?;
                let Some(entry) = blobs.get(key.as_slice()).map_err(redb::Error::from)? else {
                    return Ok(None);
                };
                let (offset, len) = entry.value();
                // The read transaction pins nothing in the blob file, and needs not: committed
                // ranges are never written again.
                let data = files.blobs.read(offset, len).map_err(|source| {
                    RedbBlockstoreError::BlobRead {
                        cid: Box::new(*cid),
                        offset,
                        len,
                        source,
                    }
                })?;
                Bytes::from(data)
            }
        };
    Block::new(*cid, data)
        .map(Some)
        .map_err(|source| RedbBlockstoreError::corrupt(*cid, source))
}

/// The size of the block stored for `multihash`.
pub(super) fn size(files: &Files, multihash: &Key) -> Result<Option<u64>, RedbBlockstoreError> {
    let read = files.db.begin_read().map_err(redb::Error::from)?;
    let sizes = read.open_table(SIZES).map_err(redb::Error::from)?;
    Ok(sizes
        .get(key(multihash).as_slice())
        .map_err(redb::Error::from)?
        .map(|size| size.value()))
}
