//! The layout of the redb file: its tables, its format marker, and the reads against them.
//!
//! - `blocks`: multihash bytes → block bytes.
//! - `block_sizes`: multihash bytes → block length, so `has` and `get_size` read a small entry
//!   instead of the block's pages.
//! - `meta`: `"format"` → [`FORMAT_VERSION`], written when the file is created and checked at
//!   every open.

use bytes::Bytes;
use cid::Cid;
use redb::{Database, TableDefinition, TableHandle as _};

use super::{
    pending::Key,
    redb_error::{RedbBlockstoreError, RedbOpenError},
};
use crate::message::Block;

pub(super) const BLOCKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("blocks");
pub(super) const SIZES: TableDefinition<'_, &[u8], u64> = TableDefinition::new("block_sizes");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";

/// The layout version this code reads and writes.
pub(super) const FORMAT_VERSION: u64 = 1;

/// The key of a block: its multihash's bytes (code, length, digest).
pub(super) fn key(multihash: &Key) -> Vec<u8> {
    multihash.to_bytes()
}

/// Checks the format of a database opened from an existing file, or initializes a new one
/// (a file with no table at all: just created, possibly by a process that stopped before it
/// wrote its first transaction).
pub(super) fn prepare(db: &Database) -> Result<(), RedbOpenError> {
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
            let mut meta = write.open_table(META).map_err(redb::Error::from)?;
            meta.insert(FORMAT_KEY, FORMAT_VERSION)
                .map_err(redb::Error::from)?;
        }
        write.commit().map_err(redb::Error::from)?;
        return Ok(());
    }
    let found = if tables.iter().any(|name| name == META.name()) {
        let meta = read.open_table(META).map_err(redb::Error::from)?;
        meta.get(FORMAT_KEY)
            .map_err(redb::Error::from)?
            .map(|version| version.value())
    } else {
        None
    };
    let complete = [BLOCKS.name(), SIZES.name()]
        .iter()
        .all(|wanted| tables.iter().any(|name| name == wanted));
    match found {
        Some(FORMAT_VERSION) if complete => Ok(()),
        found => Err(RedbOpenError::UnsupportedFormat {
            found,
            expected: FORMAT_VERSION,
        }),
    }
}

/// The block stored for `cid`'s multihash, checked against `cid`.
pub(super) fn get(db: &Database, cid: &Cid) -> Result<Option<Block>, RedbBlockstoreError> {
    let read = db.begin_read().map_err(redb::Error::from)?;
    let blocks = read.open_table(BLOCKS).map_err(redb::Error::from)?;
    let Some(data) = blocks
        .get(key(cid.hash()).as_slice())
        .map_err(redb::Error::from)?
    else {
        return Ok(None);
    };
    let data = Bytes::copy_from_slice(data.value());
    Block::new(*cid, data)
        .map(Some)
        .map_err(|source| RedbBlockstoreError::corrupt(*cid, source))
}

/// The size of the block stored for `multihash`.
pub(super) fn size(db: &Database, multihash: &Key) -> Result<Option<u64>, RedbBlockstoreError> {
    let read = db.begin_read().map_err(redb::Error::from)?;
    let sizes = read.open_table(SIZES).map_err(redb::Error::from)?;
    Ok(sizes
        .get(key(multihash).as_slice())
        .map_err(redb::Error::from)?
        .map(|size| size.value()))
}
