//! [`RedbBlockstore`]: the persistent default, one redb file with batched background writes.

use std::{
    any::Any,
    fmt, fs, io,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use cid::Cid;
use redb::Builder;

use super::redb_error::{RedbBlockstoreError, RedbOpenError};
use super::{
    Blockstore,
    blobs::{self, BlobFile},
    compact::CompactionPolicy,
    readers::{ReaderGone, Readers},
    tables::{self, Files},
    write_buffer::{BatchPolicy, Buffered, Failure, WriteBuffer},
    writer::{self, BlobPolicy, WriterConfig},
};
use crate::{Block, config_setters};

/// Settings of a [`RedbBlockstore`].
///
/// Build it with [`RedbConfig::default`] and the consuming `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedbConfig {
    /// Memory redb caches pages in, in bytes. Default: 256 MiB.
    cache_size_bytes: usize,
    /// Bytes of puts and deletes accepted and not yet committed. Default: 64 MiB.
    write_buffer_bytes: usize,
    /// Bytes of writes committed in one transaction. Default: 16 MiB.
    max_batch_bytes: usize,
    /// Longest an accepted write waits for a commit without another reason. Default: 1 s.
    commit_interval: Duration,
    /// Reader threads. Default: 2 threads.
    read_threads: usize,
    /// Read jobs queued for the reader threads. Default: 64 jobs.
    read_queue: usize,
    /// Blocks longer than this go to the blob file (when their batch qualifies), in bytes.
    /// Default: 16 KiB.
    blob_threshold_bytes: usize,
    /// Large-block bytes a batch needs for them to go to the blob file, in bytes.
    /// Default: 1 MiB.
    blob_min_batch_bytes: usize,
    /// Share of the blob file that dead bytes must reach for an automatic compaction.
    /// Default: 0.5.
    compaction_ratio: f64,
    /// Dead bytes needed for an automatic compaction, in bytes. Default: 64 MiB.
    compaction_min_dead_bytes: u64,
    /// Bytes a compaction copies between two write batches, in bytes. Default: 8 MiB.
    compaction_chunk_bytes: usize,
}

impl Default for RedbConfig {
    fn default() -> Self {
        Self {
            cache_size_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
            max_batch_bytes: 16 << 20,
            commit_interval: Duration::from_secs(1),
            read_threads: 2,
            read_queue: 64,
            blob_threshold_bytes: 16 << 10,
            blob_min_batch_bytes: 1 << 20,
            compaction_ratio: 0.5,
            compaction_min_dead_bytes: 64 << 20,
            compaction_chunk_bytes: 8 << 20,
        }
    }
}

impl RedbConfig {
    config_setters! {
        /// Sets the memory redb caches pages in, in bytes (a tenth of it buffers the pages of
        /// the transaction being written). Reads of cached blocks need no disk access.
        /// Default: 256 MiB.
        with_cache_size(bytes: usize) -> cache_size_bytes;

        /// Sets how many bytes of puts and deletes the store accepts before they are committed
        /// (block data plus about 256 bytes per put or delete). When it is full,
        /// [`put_many`](Blockstore::put_many) and [`delete`](Blockstore::delete) wait for the
        /// writer: back-pressure. A block larger than the whole buffer is accepted alone.
        /// Default: 64 MiB.
        with_write_buffer(bytes: usize) -> write_buffer_bytes;

        /// Sets how many bytes of writes the writer commits in one transaction, at most (plus one
        /// block); a full batch is committed at once. Default: 16 MiB.
        with_max_batch(bytes: usize) -> max_batch_bytes = bytes.max(1);

        /// Sets how long an accepted write may wait before the writer commits it (durably)
        /// without a flush, a full batch, or a put waiting for room. It bounds what a crash loses
        /// of writes never flushed. Default: 1 s.
        with_commit_interval(interval: Duration) -> commit_interval;

        /// Sets how many threads read from the file, and so how many reads wait for the disk at
        /// the same time. Default: 2 threads.
        ///
        /// With 0, reads run on the caller's task instead: no thread hand-over (about 30 µs per
        /// read on a small virtual machine), but a read that waits for the disk blocks that task,
        /// so only for callers that may block (a thread of their own, `spawn_blocking`).
        with_read_threads(threads: usize) -> read_threads;

        /// Sets how many read jobs wait for a reader thread before a reader waits to queue one
        /// (at least 1; besides these, each read future alive holds one slot). Default: 64 jobs.
        with_read_queue(jobs: usize) -> read_queue = jobs.max(1);

        /// Sets the size above which a block is large, in bytes: a batch's large blocks are
        /// appended to the blob file (next to the database file) instead of the B-tree, when
        /// [`with_blob_min_batch`](Self::with_blob_min_batch) allows it. `usize::MAX` keeps every
        /// block in the B-tree. Default: 16 KiB.
        ///
        /// redb writes a 256 KiB block as a 512 KiB page and rewrites B-tree leaves around it;

        /// the blob file writes its bytes once, which made batched puts of 256 KiB blocks about
        /// 2.5x faster than the B-tree on the machine of the workspace's blockstore bench, at the
        /// cost of space reclaimed only by compaction (see
        /// [`RedbBlockstore::compact`]).
        with_blob_threshold(bytes: usize) -> blob_threshold_bytes;

        /// Sets how many bytes of large blocks a batch needs for them to go to the blob file, in
        /// bytes; a batch with fewer keeps them in the B-tree. The blob file costs a second disk
        /// sync per batch (the blob file, then the database), which a batch of one large block
        /// (a flush per block) does not win back. 0 sends every large block to the blob file.
        /// Default: 1 MiB.
        with_blob_min_batch(bytes: usize) -> blob_min_batch_bytes;
    }

    /// Sets the share of the blob file (0.0 to 1.0) that dead bytes (of deleted or
    /// overwritten large blocks) must reach for the writer to compact it on its own, when
    /// there are also at least [`with_compaction_min_dead`](Self::with_compaction_min_dead)
    /// of them. With the default, the blob file stays under about twice its live bytes (plus
    /// the minimum). A ratio above 1.0 turns automatic compaction off;
    /// [`RedbBlockstore::compact`] still compacts. Default: 0.5.
    pub fn with_compaction_ratio(mut self, ratio: f64) -> Self {
        // NaN would never compare: read it as "off", like any ratio above 1.
        self.compaction_ratio = if ratio.is_nan() { f64::INFINITY } else { ratio };
        self
    }

    config_setters! {
        /// Sets how many dead bytes the blob file needs, at least, for the writer to compact it on
        /// its own (see [`with_compaction_ratio`](Self::with_compaction_ratio)), in bytes: a
        /// compaction copies every live byte, so it waits until enough space is won. Default:
        /// 64 MiB.
        with_compaction_min_dead(bytes: u64) -> compaction_min_dead_bytes;

        /// Sets how many bytes a compaction copies in one step, in bytes (at least one block per
        /// step). The writer commits the write batches that are due between steps, so a write
        /// waits for at most one step of a compaction; the step's bytes are also the memory a
        /// compaction holds. Default: 8 MiB.
        with_compaction_chunk(bytes: usize) -> compaction_chunk_bytes = bytes.max(1);
    }
}

/// Blocks in one [redb](https://docs.rs/redb) file, keyed by multihash, and large blocks in
/// a blob file next to it; the persistent default [`Blockstore`].
///
/// # Files
///
/// - The database file (the path given to [`open`](Self::open)): a redb database holding
///   small blocks, the size of every block, and where each large block lies in the blob file.
/// - The blob file (the same path with `.blobs` appended): the bytes of large blocks
///   ([`RedbConfig::with_blob_threshold`]) written in batches, appended one after the other.
///   Its bytes are `fdatasync`ed before the transaction that indexes them commits, so a
///   committed block is always whole on disk; bytes of a batch a crash cut are dropped at
///   the next open. After compactions, the blob file is the path with `.blobs.N` appended,
///   `N` its generation ([`blob_path`](Self::blob_path) tells which).
///
/// # Compaction
///
/// Deleting or overwriting a large block leaves its bytes in the blob file, dead; the store
/// counts them ([`dead_blob_bytes`](Self::dead_blob_bytes)) in the transactions that drop
/// them. A compaction copies the live blocks into a new blob file and switches the index to
/// it in one transaction, then removes the old file. It runs on the writer thread, a step
/// ([`RedbConfig::with_compaction_chunk`]) at a time, and commits the write batches that are
/// due between steps: writes wait at most a step, reads are held only while the switch
/// commits, and memory holds at most a step's bytes. The writer starts one on its own when
/// dead bytes pass [`RedbConfig::with_compaction_ratio`] and
/// [`RedbConfig::with_compaction_min_dead`], and [`compact`](Self::compact) asks for one.
///
/// A crash at any point of a compaction loses nothing: until the switch commits, the index
/// names the old file, which a compaction only reads; the new file is synced before the
/// switch commits. The next open removes whichever of the two files the index does not name.
/// A store dropped during a compaction abandons it.
///
/// # Threads
///
/// - A writer thread takes accepted puts and deletes from a bounded buffer and commits them in
///   batches, one transaction each (see [`RedbConfig::with_max_batch`]). While it syncs and
///   commits a batch that went to the blob file, a short-lived helper thread appends the large
///   blocks of the next batch already due, so that copying one batch overlaps syncing the one
///   before.
/// - Reader threads ([`RedbConfig::with_read_threads`]) answer `get`, `has` and `get_size`
///   from the file, so a read that waits for the disk never blocks the caller's task, on any
///   runtime or none. A `get` also checks the block there (see [Failures](Self#failures)).
///
/// # Writes and durability
///
/// [`put_many`](Blockstore::put_many) and [`delete`](Blockstore::delete) return once the
/// writes are accepted into the write buffer, in order; when the buffer is full they wait
/// (back-pressure, [`RedbConfig::with_write_buffer`]). Reads see accepted writes at once.
///
/// The writer commits accepted writes in batches, one durable (`fsync`-ed) transaction each,
/// when a batch is due: at a [`flush`](Blockstore::flush), when a batch is full
/// ([`RedbConfig::with_max_batch`]), when a put waits for room, or when a write has waited
/// [`RedbConfig::with_commit_interval`]. So a writer that flushes per block pays a
/// transaction and a disk sync per block, and one that flushes at the end of a transfer pays
/// a few. A batch carrying at least [`RedbConfig::with_blob_min_batch`] bytes of large blocks
/// appends them to the blob file and syncs it before its transaction commits: two disk syncs
/// instead of one, and the large blocks' bytes written once instead of about twice; the next
/// batch due is appended meanwhile, past the end the commit makes durable. `flush`
/// returns once every write accepted before it is committed. After a crash, the files hold
/// every write flushed and, of the others, whole batches or nothing.
///
/// Dropping the store commits what was accepted, blocking until it is written; in async code,
/// [`close`](Self::close) waits for that write without blocking.
///
/// # Failures
///
/// Every block read is checked: a block of the blob file against the checksum (xxh3, 64 bits)
/// of its bytes written with it, since the bytes were checked against the CID when the block
/// was made, before the put, and xxh3 runs several times faster than sha2-256 (the
/// `blockstore` bench shows what that is worth on cached 256 KiB blocks), and every other
/// block against its CID. A corrupt copy is reported as
/// [`RedbBlockstoreError::Corrupt`], never returned (put it again to repair it). When a commit
/// fails (a full disk, an I/O error), the writes not yet committed are dropped, the pending
/// flushes fail, and every later operation fails with [`RedbBlockstoreError::WriteFailed`]:
/// reopen the store to go on.
pub struct RedbBlockstore {
    path: PathBuf,
    buffer: Arc<WriteBuffer>,
    writer: Option<JoinHandle<()>>,
    /// The reader threads, or `None` to read on the caller's task. Dropped after the writer
    /// is joined: `Readers::drop` stops and joins the threads, which releases the file.
    readers: Option<Readers>,
    files: Arc<Files>,
    /// Whether opening repaired the store.
    repaired: bool,
}

impl fmt::Debug for RedbBlockstore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbBlockstore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl RedbBlockstore {
    /// Opens the store in the file at `path`, creating it if it does not exist.
    ///
    /// A file that exists must be a store: an empty, truncated or overwritten file is an
    /// error ([`RedbOpenError::Corrupt`]), never a fresh store, and so is a blob file shorter
    /// than the database says ([`RedbOpenError::BlobsTruncated`]). After a crash, opening
    /// repairs the file's allocation state first, which takes time proportional to its size,
    /// and cuts the blob file back to its committed length. A store of format 1 (no blob
    /// file) is upgraded in place.
    ///
    /// The store is of format 4 (a blob file of some generation, with its dead bytes counted
    /// and a checksum per large block); stores of formats 2 and 3 are upgraded in place too:
    /// a format 2 store's dead bytes are counted once (a scan of the blob index), and the
    /// large blocks of either keep no checksum (they are checked against their CIDs). A store
    /// of another format is refused ([`RedbOpenError::UnsupportedFormat`]), and code of
    /// format 3 refuses a store of format 4.
    pub fn open(path: impl AsRef<Path>, config: RedbConfig) -> Result<Self, RedbOpenError> {
        let path = path.as_ref().to_path_buf();
        let exists = match fs::metadata(&path) {
            Ok(_) => true,
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(source) => return Err(RedbOpenError::Io { path, source }),
        };
        let mut builder = Builder::new();
        // The format of redb 3, which redb 2.6 writes too, so that a later redb reads the file
        // without an upgrade.
        builder
            .create_with_file_format_v3(true)
            .set_cache_size(config.cache_size_bytes);
        // redb "repairs" a file it has just created too (its format 3 keeps the allocator
        // state only from a clean close on), which says nothing about the store: only the
        // repair of a file that existed is one.
        let repaired = Arc::new(AtomicBool::new(false));
        if exists {
            let repaired = Arc::clone(&repaired);
            let shown = path.display().to_string();
            builder.set_repair_callback(move |session| {
                if !repaired.swap(true, Ordering::Relaxed) {
                    tracing::warn!(path = %shown, "block store was not closed cleanly; repairing it");
                }
                tracing::debug!(progress = session.progress(), "block store repair");
            });
        }
        // redb asserts some invariants of the file (its length against its header, the page
        // size), so a damaged file can panic: that is a corrupt file too, not a crash.
        let opened = catch_unwind(AssertUnwindSafe(|| {
            let db = if exists {
                builder.open(&path)
            } else {
                builder.create(&path)
            }
            .map_err(|error| RedbOpenError::from_database(&path, error))?;
            let meta = tables::prepare(&db).map_err(|error| error.at(&path))?;
            Ok((db, meta))
        }));
        let (db, meta) = opened.unwrap_or_else(|panic| {
            Err(RedbOpenError::Corrupt {
                path: path.clone(),
                source: Box::new(redb::Error::Corrupted(format!(
                    "redb panicked reading the file: {}",
                    panic_message(panic.as_ref())
                ))),
            })
        })?;
        let blobs = BlobFile::open(&blobs::path_for(&path, meta.generation), meta.end)?;
        // Only once the index and its blob file are known good.
        blobs::remove_leftovers(&path, meta.generation);
        let files = Arc::new(Files::new(db, blobs, meta));
        tracing::debug!(
            path = %path.display(),
            created = !exists,
            blob_end = meta.end,
            blob_generation = meta.generation,
            blob_dead = meta.dead,
            "block store opened"
        );

        let buffer = Arc::new(WriteBuffer::new(BatchPolicy {
            budget_bytes: config.write_buffer_bytes,
            max_batch_bytes: config.max_batch_bytes,
            interval: config.commit_interval,
        }));
        let readers = match config.read_threads {
            0 => None,
            threads => Some(
                Readers::spawn(&files, threads, config.read_queue).map_err(RedbOpenError::Spawn)?,
            ),
        };
        let blob_policy = BlobPolicy {
            threshold_bytes: config.blob_threshold_bytes,
            min_batch_bytes: config.blob_min_batch_bytes,
        };
        let compaction = CompactionPolicy {
            dead_ratio: config.compaction_ratio,
            min_dead_bytes: config.compaction_min_dead_bytes,
            chunk_bytes: config.compaction_chunk_bytes,
        };
        let writer = {
            let files = files.clone();
            let buffer = buffer.clone();
            let db_path = path.clone();
            thread::Builder::new()
                .name("blockstore-writer".into())
                .spawn(move || {
                    let run = catch_unwind(AssertUnwindSafe(|| {
                        let config = WriterConfig {
                            db_path: &db_path,
                            blobs: blob_policy,
                            compaction,
                        };
                        writer::run(&files, &buffer, config, meta);
                    }));
                    if let Err(panic) = run {
                        tracing::error!(
                            panic = panic_message(panic.as_ref()),
                            "block store writer panicked; the store refuses writes until reopened"
                        );
                        buffer.fail(&Failure::WriterStopped);
                    }
                })
                .map_err(RedbOpenError::Spawn)?
        };
        Ok(Self {
            path,
            buffer,
            writer: Some(writer),
            readers,
            files,
            repaired: repaired.load(Ordering::Relaxed),
        })
    }

    /// Whether [`open`](Self::open) found the store not closed cleanly (its process crashed
    /// or was killed, or the file was copied while the store was open) and repaired it.
    /// Never for a store that `open` created.
    ///
    /// A store is closed cleanly once dropped or [`close`](Self::close)d; one shared through
    /// an `Arc` (a `bitswap::Behaviour` holds its store so) closes when the last `Arc` goes.
    pub fn was_repaired(&self) -> bool {
        self.repaired
    }

    /// The file of the store: its database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The blob file of the store, which holds the bytes of large blocks: [`path`](Self::path)
    /// with `.blobs` appended, and `.N` after that once compacted (`N` its generation). A
    /// compaction replaces it with another. Copy, move or delete it together with the
    /// database file, while the store is closed.
    pub fn blob_path(&self) -> PathBuf {
        self.files.blob_file().path().to_path_buf()
    }

    /// The committed length of the blob file, in bytes.
    pub fn blob_file_bytes(&self) -> u64 {
        self.files.meta().end
    }

    /// Bytes of the blob file that no block uses (deleted or overwritten large blocks, as of
    /// the last commit): what a compaction would reclaim.
    pub fn dead_blob_bytes(&self) -> u64 {
        self.files.meta().dead
    }

    /// Compacts the blob file: copies its live blocks to a new blob file, switches the index
    /// to it and removes the old one (see [Compaction](Self#compaction)). Returns once a
    /// compaction that began after every write accepted before this call was committed has
    /// switched; at once if the blob file has no dead bytes. Writes accepted meanwhile are
    /// committed between the compaction's steps; their dead bytes may remain.
    ///
    /// A failure to read or write the blob files ([`RedbBlockstoreError::CompactionIo`]) or
    /// to read the index ([`RedbBlockstoreError::CompactionDatabase`]) leaves the store as it
    /// was, working. Dropping the future does not stop the compaction.
    pub async fn compact(&self) -> Result<(), RedbBlockstoreError> {
        let compacted = self.buffer.compact()?;
        compacted
            .await
            .map_err(|_| RedbBlockstoreError::Panicked)??;
        Ok(())
    }

    /// Bytes of puts and deletes accepted and not yet committed (block data plus overhead).
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.buffered_bytes()
    }

    /// Flushes, then closes the store: the file is released once this returns.
    pub async fn close(self) -> Result<(), RedbBlockstoreError> {
        let flushed = self.flush().await;
        // Nothing is left to write: dropping only stops and joins the threads.
        drop(self);
        flushed
    }

    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Files) -> Result<T, RedbBlockstoreError> + Send + 'static,
    ) -> Result<T, RedbBlockstoreError> {
        match &self.readers {
            Some(readers) => readers
                .run(read)
                .await
                .map_err(|ReaderGone| RedbBlockstoreError::Panicked)?,
            None => catch_unwind(AssertUnwindSafe(|| read(&self.files)))
                .map_err(|_| RedbBlockstoreError::Panicked)?,
        }
    }

    async fn size(&self, cid: &Cid) -> Result<Option<usize>, RedbBlockstoreError> {
        match self.buffer.lookup(cid.hash())? {
            Buffered::Put(block) => return Ok(Some(block.data().len())),
            Buffered::Deleted => return Ok(None),
            Buffered::Nothing => {}
        }
        let multihash = *cid.hash();
        let size = self.read(move |db| tables::size(db, &multihash)).await?;
        // Sizes are written from `usize` lengths of at most 2 MiB.
        Ok(size.map(|size| usize::try_from(size).unwrap_or(usize::MAX)))
    }
}

impl Drop for RedbBlockstore {
    fn drop(&mut self) {
        self.buffer.close();
        if let Some(writer) = self.writer.take() {
            // The thread catches the writer's panics: joining cannot fail.
            let _ = writer.join();
        }
    }
}

impl Blockstore for RedbBlockstore {
    type Error = RedbBlockstoreError;

    async fn get(&self, cid: &Cid) -> Result<Option<Block>, Self::Error> {
        let cid = *cid;
        match self.buffer.lookup(cid.hash())? {
            Buffered::Put(block) if block.cid() == &cid => return Ok(Some(block)),
            // Another CID of the same multihash: the bytes hash to it.
            Buffered::Put(block) => {
                return Block::new(cid, block.into_parts().1)
                    .map(Some)
                    .map_err(|source| RedbBlockstoreError::corrupt(cid, source));
            }
            Buffered::Deleted => return Ok(None),
            Buffered::Nothing => {}
        }
        self.read(move |db| tables::get(db, &cid)).await
    }

    async fn has(&self, cid: &Cid) -> Result<bool, Self::Error> {
        Ok(self.size(cid).await?.is_some())
    }

    async fn get_size(&self, cid: &Cid) -> Result<Option<usize>, Self::Error> {
        self.size(cid).await
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), Self::Error> {
        Ok(self.buffer.put_many(blocks).await?)
    }

    async fn delete(&self, cid: &Cid) -> Result<(), Self::Error> {
        Ok(self.buffer.delete(*cid.hash()).await?)
    }

    async fn flush(&self) -> Result<(), Self::Error> {
        let flushed = self.buffer.flush()?;
        flushed.await.map_err(|_| RedbBlockstoreError::Panicked)??;
        Ok(())
    }
}

/// The message of a panic payload, when it is a string.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown panic")
}
