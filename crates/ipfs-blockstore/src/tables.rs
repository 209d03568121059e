//! The layout of the redb file: its tables, its format marker, and the reads against them.
//!
//! - `blocks`: multihash bytes → block bytes.
//! - `block_sizes`: multihash bytes → block length, so `has` and `get_size` read a small entry
//!   instead of the block's pages.
//! - `blobs`: multihash bytes → `(offset, length)` of a large block in the blob file (see
//!   [`blobs`](super::blobs)). A key is in `blocks` or in `blobs`, never both.
//! - `blob_sums`: multihash bytes → the [xxh3](https://xxhash.com) 64-bit checksum of a large
//!   block's bytes in the blob file, written with its `blobs` entry (from the block, whose
//!   bytes were checked against its CID when it was made). A read of the blob file checks the
//!   bytes against it (far cheaper than hashing them again for the CID); an entry
//!   of `blobs` without one (written by format 3) is checked against its CID's hash instead.
//!   Blocks in `blocks` are always checked against their CID's hash.
//! - `meta`: `"format"` → [`FORMAT_VERSION`], written when the file is created and checked at
//!   every open; `"blob_end"` → the committed length of the blob file, in bytes;
//!   `"blob_gen"` → the generation of the blob file (which file it is, see
//!   [`blobs::path_for`](super::blobs::path_for)); `"blob_dead"` → bytes of the blob file no
//!   entry of `blobs` points at (deleted or overwritten blocks), which compaction reclaims.
//!
//! Format 1 (before the blob file) had no `blobs` table and no `blob_*` keys; format 2 had no
//! `blob_gen` and `blob_dead`; format 3 had no `blob_sums`. Opening such a file upgrades it to
//! format 4 by adding them (a format 2 file's dead bytes are counted once, by a scan of
//! `blobs`; the blocks already in the blob file keep no checksum and are checked against
//! their CIDs). Format 3 is refused by the code of format 2, which would not find the blob
//! file of a compacted store, and format 4 by the code of format 3, which would leave the
//! checksum of a block it overwrites stale.

use std::sync::{
    Arc, PoisonError, RwLock,
    atomic::{AtomicU64, Ordering},
};

use bytes::Bytes;
use cid::Cid;
use redb::{Database, ReadTransaction, ReadableTable as _, TableDefinition, TableHandle as _};

use super::{
    blobs::BlobFile,
    redb_error::{RedbBlockstoreError, RedbCorruption, RedbOpenError},
    write_buffer::Key,
};
use crate::Block;

pub(super) const BLOCKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("blocks");
pub(super) const SIZES: TableDefinition<'_, &[u8], u64> = TableDefinition::new("block_sizes");
/// Large blocks: multihash bytes → `(offset, length)` in the blob file.
pub(super) const BLOBS: TableDefinition<'_, &[u8], (u64, u64)> = TableDefinition::new("blobs");
/// Large blocks: multihash bytes → xxh3 64-bit checksum of their bytes in the blob file.
pub(super) const BLOB_SUMS: TableDefinition<'_, &[u8], u64> = TableDefinition::new("blob_sums");
pub(super) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
/// The `meta` key of the committed length of the blob file.
pub(super) const BLOB_END_KEY: &str = "blob_end";
/// The `meta` key of the generation of the blob file.
pub(super) const BLOB_GEN_KEY: &str = "blob_gen";
/// The `meta` key of the dead bytes of the blob file.
pub(super) const BLOB_DEAD_KEY: &str = "blob_dead";

/// The layout version this code reads and writes.
pub(super) const FORMAT_VERSION: u64 = 4;
/// The layout before the blob file, which opening upgrades.
const FORMAT_VERSION_1: u64 = 1;
/// The layout before compaction, which opening upgrades.
const FORMAT_VERSION_2: u64 = 2;
/// The layout before the checksums of the blob file, which opening upgrades.
const FORMAT_VERSION_3: u64 = 3;

/// The checksum of a large block's bytes in `blob_sums`.
pub(super) fn blob_sum(data: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(data)
}

/// The committed state of the blob file, as the `meta` table holds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct BlobMeta {
    /// Committed length, in bytes.
    pub(super) end: u64,
    /// Generation: which file it is.
    pub(super) generation: u64,
    /// Bytes no entry points at.
    pub(super) dead: u64,
}

/// The database and the blob file of a store, shared by its threads.
#[derive(Debug)]
pub(super) struct Files {
    pub(super) db: Database,
    /// The current blob file. Replaced by a compaction's switch, under the write lock held
    /// across the commit that switches the index, so that a reader taking a transaction and
    /// the file under the read lock gets a pair that agree (see [`Files::begin_read`]).
    blobs: RwLock<Arc<BlobFile>>,
    /// The committed blob file state, for [`RedbBlockstore`](super::RedbBlockstore)'s getters.
    end: AtomicU64,
    generation: AtomicU64,
    dead: AtomicU64,
}

impl Files {
    pub(super) fn new(db: Database, blobs: BlobFile, meta: BlobMeta) -> Self {
        Self {
            db,
            blobs: RwLock::new(Arc::new(blobs)),
            end: AtomicU64::new(meta.end),
            generation: AtomicU64::new(meta.generation),
            dead: AtomicU64::new(meta.dead),
        }
    }

    /// A read transaction and the blob file its `blobs` entries point into.
    pub(super) fn begin_read(
        &self,
    ) -> Result<(ReadTransaction, Arc<BlobFile>), RedbBlockstoreError> {
        let blobs = self.blobs.read().unwrap_or_else(PoisonError::into_inner);
        let read = self.db.begin_read().map_err(redb::Error::from)?;
        Ok((read, blobs.clone()))
    }

    /// The current blob file.
    pub(super) fn blob_file(&self) -> Arc<BlobFile> {
        self.blobs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs `commit` (the transaction that switches the index to `blobs`) and makes `blobs`
    /// the current file, with no reader beginning a transaction in between.
    pub(super) fn switch<E>(
        &self,
        blobs: Arc<BlobFile>,
        commit: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        let mut current = self.blobs.write().unwrap_or_else(PoisonError::into_inner);
        commit()?;
        *current = blobs;
        Ok(())
    }

    /// Records the committed state of the blob file.
    pub(super) fn set_meta(&self, meta: BlobMeta) {
        self.end.store(meta.end, Ordering::Relaxed);
        self.generation.store(meta.generation, Ordering::Relaxed);
        self.dead.store(meta.dead, Ordering::Relaxed);
    }

    /// The committed state of the blob file, as last recorded.
    pub(super) fn meta(&self) -> BlobMeta {
        BlobMeta {
            end: self.end.load(Ordering::Relaxed),
            generation: self.generation.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
        }
    }
}

/// The key of a block: its multihash's bytes (code, length, digest).
pub(super) fn key(multihash: &Key) -> Vec<u8> {
    multihash.to_bytes()
}

/// Checks the format of a database opened from an existing file, or initializes a new one
/// (a file with no table at all: just created, possibly by a process that stopped before it
/// wrote its first transaction), or upgrades one of format 1 or 2. Returns the committed state
/// of the blob file.
pub(super) fn prepare(db: &Database) -> Result<BlobMeta, RedbOpenError> {
    let read = db.begin_read().map_err(redb::Error::from)?;
    let tables = read
        .list_tables()
        .map_err(redb::Error::from)?
        .map(|table| table.name().to_owned())
        .collect::<Vec<_>>();
    if tables.is_empty() {
        drop(read);
        upgrade(db, None, BlobMeta::default())?;
        return Ok(BlobMeta::default());
    }
    let has = |wanted: &str| tables.iter().any(|name| name == wanted);
    let value = |key| -> Result<Option<u64>, RedbOpenError> {
        if !has(META.name()) {
            return Ok(None);
        }
        let meta = read.open_table(META).map_err(redb::Error::from)?;
        Ok(meta
            .get(key)
            .map_err(redb::Error::from)?
            .map(|value| value.value()))
    };
    let found = value(FORMAT_KEY)?;
    let end = value(BLOB_END_KEY)?;
    let generation = value(BLOB_GEN_KEY)?;
    let dead = value(BLOB_DEAD_KEY)?;
    let complete = has(BLOCKS.name()) && has(SIZES.name());
    let with_blobs = complete && has(BLOBS.name());
    match (found, end, generation, dead) {
        (Some(FORMAT_VERSION), Some(end), Some(generation), Some(dead))
            if with_blobs && has(BLOB_SUMS.name()) =>
        {
            Ok(BlobMeta {
                end,
                generation,
                dead,
            })
        }
        (Some(FORMAT_VERSION_3), Some(end), Some(generation), Some(dead)) if with_blobs => {
            drop(read);
            let meta = BlobMeta {
                end,
                generation,
                dead,
            };
            upgrade(db, Some(FORMAT_VERSION_3), meta)?;
            Ok(meta)
        }
        (Some(FORMAT_VERSION_2), Some(end), _, _) if with_blobs => {
            // Every byte of the file up to its committed end that no entry points at is dead.
            let blobs = read.open_table(BLOBS).map_err(redb::Error::from)?;
            let mut live = 0_u64;
            for entry in blobs.iter().map_err(redb::Error::from)? {
                live = live.saturating_add(entry.map_err(redb::Error::from)?.1.value().1);
            }
            drop(blobs);
            drop(read);
            let meta = BlobMeta {
                end,
                generation: 0,
                dead: end.saturating_sub(live),
            };
            upgrade(db, Some(FORMAT_VERSION_2), meta)?;
            Ok(meta)
        }
        (Some(FORMAT_VERSION_1), _, _, _) if complete => {
            drop(read);
            upgrade(db, Some(FORMAT_VERSION_1), BlobMeta::default())?;
            Ok(BlobMeta::default())
        }
        (found, _, _, _) => Err(RedbOpenError::UnsupportedFormat {
            found,
            expected: FORMAT_VERSION,
        }),
    }
}

/// Creates the tables missing and writes the format marker and `meta`, in one transaction.
fn upgrade(db: &Database, from: Option<u64>, meta: BlobMeta) -> Result<(), RedbOpenError> {
    let write = db.begin_write().map_err(redb::Error::from)?;
    {
        write.open_table(BLOCKS).map_err(redb::Error::from)?;
        write.open_table(SIZES).map_err(redb::Error::from)?;
        write.open_table(BLOBS).map_err(redb::Error::from)?;
        write.open_table(BLOB_SUMS).map_err(redb::Error::from)?;
        let mut table = write.open_table(META).map_err(redb::Error::from)?;
        for (key, value) in [
            (FORMAT_KEY, FORMAT_VERSION),
            (BLOB_END_KEY, meta.end),
            (BLOB_GEN_KEY, meta.generation),
            (BLOB_DEAD_KEY, meta.dead),
        ] {
            table.insert(key, value).map_err(redb::Error::from)?;
        }
    }
    write.commit().map_err(redb::Error::from)?;
    if let Some(from) = from {
        tracing::info!("block store upgraded from format {from} to format {FORMAT_VERSION}");
    }
    Ok(())
}

/// The block stored for `cid`'s multihash, in the B-tree or in the blob file, checked: against
/// the checksum written with it (a block in the blob file, of format 4), or else against
/// `cid`.
pub(super) fn get(files: &Files, cid: &Cid) -> Result<Option<Block>, RedbBlockstoreError> {
    let (read, blob_file) = files.begin_read()?;
    let key = key(cid.hash());
    let inline = {
        let blocks = read.open_table(BLOCKS).map_err(redb::Error::from)?;
        blocks
            .get(key.as_slice())
            .map_err(redb::Error::from)?
            .map(|data| Bytes::copy_from_slice(data.value()))
    };
    let data = match inline {
        Some(data) => data,
        None => {
            let blobs = read.open_table(BLOBS).map_err(redb::Error::from)?;
            let Some(entry) = blobs.get(key.as_slice()).map_err(redb::Error::from)? else {
                return Ok(None);
            };
            let (offset, len) = entry.value();
            let sum = read
                .open_table(BLOB_SUMS)
                .map_err(redb::Error::from)?
                .get(key.as_slice())
                .map_err(redb::Error::from)?
                .map(|sum| sum.value());
            // The read transaction pins nothing in the blob file, and needs not: committed
            // ranges are never written again, and a compaction that replaces the file
            // leaves this one open (and whole) as long as `blob_file` holds it.
            let data =
                blob_file
                    .read(offset, len)
                    .map_err(|source| RedbBlockstoreError::BlobRead {
                        cid: Box::new(*cid),
                        offset,
                        len,
                        source,
                    })?;
            if let Some(sum) = sum {
                // Written from a block whose bytes hash to this multihash (any CID of it).
                return if blob_sum(&data) == sum {
                    Ok(Some(Block::from_verified(*cid, Bytes::from(data))))
                } else {
                    Err(RedbBlockstoreError::corrupt(
                        *cid,
                        RedbCorruption::Checksum { offset, len },
                    ))
                };
            }
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
