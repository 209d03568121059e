//! Compaction of the blob file: the live blocks copied into a new file, the index switched to
//! it in one transaction.
//!
//! # Steps
//!
//! A compaction runs on the writer thread, one bounded step at a time between write batches,
//! so writes wait at most one step (see [`CompactionPolicy::chunk_bytes`]) and reads never
//! wait but for the switch's commit.
//!
//! 1. **Start.** Take a read snapshot of the `blobs` table and the committed end of the current
//!    file (`snapshot_end`), and create the file of the next generation, empty, its name
//!    synced.
//! 2. **Keyed copy.** Walk the snapshot in key order and append each entry's bytes to the new
//!    file; an entry's new offset is the sum of the lengths before it in that order, so it
//!    needs not be remembered. Batches committed meanwhile append past `snapshot_end` in the
//!    old file and may drop or replace entries: the old file is never written below its
//!    committed end, so what the snapshot names stays whole.
//! 3. **Tail copy.** Copy the old file's bytes from `snapshot_end` to its committed end as one
//!    range, verbatim, after the keyed copy (`tail_start`): an entry written since the start
//!    keeps its place in that range.
//! 4. **Switch.** With less than a step of tail left: copy it, `fdatasync` the new file, then
//!    in one transaction rewrite every entry of the current `blobs` table (an entry equal to
//!    its snapshot entry to its keyed-copy offset, one past `snapshot_end` to its tail offset)
//!    and set `blob_gen`, `blob_end` and `blob_dead` for the new file. The commit and the
//!    swap of the readers' file happen under [`Files::switch`]'s lock. Then the old file is
//!    removed.
//!
//! # Crash safety
//!
//! Until the switch commits, the index names the old file, which the compaction only reads:
//! a crash leaves the store as it was, plus a new file that the next open removes. The switch
//! commits only after the new file's bytes are durable (and its name, synced at creation),
//! and redb commits a transaction whole or not at all: after it, the index names the new file
//! and every entry points at durable bytes equal to those it pointed at before. A crash before
//! the old file is removed leaves it behind, and the next open removes it. An entry found in
//! neither the snapshot nor the tail (a bug, or a corrupt index) aborts the compaction before
//! anything is switched.

use std::{
    io,
    ops::Bound,
    path::{Path, PathBuf},
    sync::Arc,
};

use redb::{Durability, ReadOnlyTable};

use super::{
    blobs::{self, BlobFile},
    tables::{BLOB_DEAD_KEY, BLOB_END_KEY, BLOB_GEN_KEY, BLOBS, BlobMeta, Files, META},
    write_buffer::Failure,
};

/// Entries copied per step at most, however small they are.
const MAX_ENTRIES_PER_STEP: usize = 4096;

/// When the writer compacts on its own, and how much it copies per step.
#[derive(Debug, Clone, Copy)]
pub(super) struct CompactionPolicy {
    /// Dead bytes must be at least this share of the blob file.
    pub(super) dead_ratio: f64,
    /// Dead bytes must be at least this many.
    pub(super) min_dead_bytes: u64,
    /// Bytes copied per step, about (at least one block).
    pub(super) chunk_bytes: usize,
}

impl CompactionPolicy {
    /// Whether a blob file in state `meta` is due for an automatic compaction.
    pub(super) fn due(&self, meta: &BlobMeta) -> bool {
        #[expect(
            clippy::cast_precision_loss,
            reason = "a ratio of byte counts needs no precision below a byte in 2^52"
        )]
        let over_ratio = meta.dead as f64 >= self.dead_ratio * meta.end as f64;
        meta.dead > 0 && meta.dead >= self.min_dead_bytes && over_ratio
    }
}

/// Why a compaction failed. Shared by every waiter told.
#[derive(Debug, Clone)]
pub(super) enum CompactFailure {
    /// The store failed (a commit, or the writer): see [`Failure`].
    Store(Failure),
    /// Reading the old blob file, or creating, writing or syncing the new one (`path`).
    Io {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// Reading the index, or building the switch's transaction; or an entry found neither in
    /// the snapshot nor in the tail.
    Database(Arc<redb::Error>),
}

impl CompactFailure {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }
}

impl<E: Into<redb::Error>> From<E> for CompactFailure {
    fn from(error: E) -> Self {
        Self::Database(Arc::new(error.into()))
    }
}

/// How a switch failed.
#[derive(Debug)]
pub(super) enum SwitchError {
    /// Before the commit: nothing changed, the store goes on with the old file.
    Aborted(CompactFailure),
    /// The commit failed: which file the index names is unknown until the store is reopened,
    /// so both are left in place.
    Commit(Box<redb::Error>),
}

/// Where a compaction stands.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Copying the snapshot's entries in key order.
    Keyed,
    /// Copying the old file's tail, from `snapshot_end`; `copied_to` is the old offset reached.
    Tail { tail_start: u64, copied_to: u64 },
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Copied a chunk; more to copy.
    Copied,
    /// Less than a chunk left: [`Compaction::switch`] next.
    Ready,
}

/// A compaction under way (see the module doc).
pub(super) struct Compaction {
    /// The `blobs` table when the compaction began.
    snapshot: ReadOnlyTable<&'static [u8], (u64, u64)>,
    /// The committed end of the old file when the compaction began.
    snapshot_end: u64,
    old: Arc<BlobFile>,
    new: BlobFile,
    generation: u64,
    /// The key of the last snapshot entry copied.
    cursor: Option<Vec<u8>>,
    /// Bytes written to the new file.
    written: u64,
    phase: Phase,
    chunk_bytes: usize,
    /// The chunk being copied: at most a chunk and a block.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Compaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compaction")
            .field("new", &self.new)
            .field("snapshot_end", &self.snapshot_end)
            .field("written", &self.written)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Compaction {
    /// Starts compacting the blob file of `files`, committed in state `meta`, into the next
    /// generation's file next to `db_path`. To be called between commits.
    pub(super) fn start(
        files: &Files,
        db_path: &Path,
        meta: BlobMeta,
        chunk_bytes: usize,
    ) -> Result<Self, CompactFailure> {
        let generation = meta.generation.checked_add(1).ok_or_else(|| {
            CompactFailure::from(redb::Error::Corrupted(
                "blob file generation overflows".into(),
            ))
        })?;
        let snapshot = files.db.begin_read()?.open_table(BLOBS)?;
        let path = blobs::path_for(db_path, generation);
        let new = BlobFile::create(&path).map_err(CompactFailure::io(&path))?;
        tracing::debug!(
            path = %path.display(),
            file_bytes = meta.end,
            dead_bytes = meta.dead,
            "blob file compaction started"
        );
        Ok(Self {
            snapshot,
            snapshot_end: meta.end,
            old: files.blob_file(),
            new,
            generation,
            cursor: None,
            written: 0,
            phase: Phase::Keyed,
            chunk_bytes: chunk_bytes.max(1),
            buf: Vec::new(),
        })
    }

    /// Copies about a chunk; `blob_end` is the old file's committed end now.
    pub(super) fn step(&mut self, blob_end: u64) -> Result<Progress, CompactFailure> {
        match self.phase {
            Phase::Keyed => self.step_keyed(),
            Phase::Tail {
                tail_start,
                copied_to,
            } => {
                if blob_end.saturating_sub(copied_to) <= self.chunk_bytes as u64 {
                    return Ok(Progress::Ready);
                }
                let to = copied_to + self.chunk_bytes as u64;
                self.copy_tail(tail_start, copied_to, to)?;
                Ok(Progress::Copied)
            }
        }
    }

    fn step_keyed(&mut self) -> Result<Progress, CompactFailure> {
        let range = match &self.cursor {
            Some(last) => self
                .snapshot
                .range::<&[u8]>((Bound::Excluded(last.as_slice()), Bound::Unbounded))?,
            None => self.snapshot.range::<&[u8]>(..)?,
        };
        self.buf.clear();
        let start = self.written;
        let mut exhausted = true;
        let mut entries = 0;
        for entry in range {
            let (key, value) = entry?;
            let (offset, len) = value.value();
            let end = offset
                .checked_add(len)
                .filter(|end| *end <= self.snapshot_end)
                .ok_or_else(|| inconsistent(key.value(), offset, len))?;
            let at = self.buf.len();
            let len_usize = usize::try_from(end - offset)
                .map_err(|_| inconsistent(key.value(), offset, len))?;
            self.buf.resize(at + len_usize, 0);
            self.old
                .read_raw(&mut self.buf[at..], offset)
                .map_err(CompactFailure::io(self.old.path()))?;
            self.cursor = Some(key.value().to_vec());
            entries += 1;
            if self.buf.len() >= self.chunk_bytes || entries >= MAX_ENTRIES_PER_STEP {
                exhausted = false;
                break;
            }
        }
        self.new
            .write_at(&self.buf, start)
            .map_err(CompactFailure::io(self.new.path()))?;
        self.written += self.buf.len() as u64;
        if exhausted {
            self.phase = Phase::Tail {
                tail_start: self.written,
                copied_to: self.snapshot_end,
            };
        }
        self.buf = shrink(std::mem::take(&mut self.buf), self.chunk_bytes);
        Ok(Progress::Copied)
    }

    /// Copies the old file's bytes `from..to` (offsets at or past `snapshot_end`) to their
    /// place in the new file's tail, a chunk at a time.
    fn copy_tail(&mut self, tail_start: u64, from: u64, to: u64) -> Result<(), CompactFailure> {
        let mut at = from;
        while at < to {
            let len = usize::try_from(to - at)
                .unwrap_or(usize::MAX)
                .min(self.chunk_bytes);
            self.buf.resize(len, 0);
            self.old
                .read_raw(&mut self.buf, at)
                .map_err(CompactFailure::io(self.old.path()))?;
            self.new
                .write_at(&self.buf, tail_start + (at - self.snapshot_end))
                .map_err(CompactFailure::io(self.new.path()))?;
            at += len as u64;
        }
        self.written = tail_start + (to - self.snapshot_end);
        self.phase = Phase::Tail {
            tail_start,
            copied_to: to,
        };
        Ok(())
    }

    /// Copies what is left, syncs the new file, and switches the index and the readers to it
    /// (see the module doc); then removes the old file. `meta` is the old file's committed
    /// state, and becomes the new one's. To be called between commits.
    pub(super) fn switch(mut self, files: &Files, meta: &mut BlobMeta) -> Result<(), SwitchError> {
        let (transaction, new) = match self.prepare_switch(files, meta) {
            Ok(prepared) => prepared,
            Err(failure) => {
                self.abort();
                return Err(SwitchError::Aborted(failure));
            }
        };
        let new_path = self.new.path().to_path_buf();
        files
            .switch(Arc::new(self.new), || transaction.commit())
            .map_err(|error| SwitchError::Commit(Box::new(error.into())))?;
        tracing::info!(
            path = %new_path.display(),
            file_bytes_before = meta.end,
            file_bytes_after = new.end,
            reclaimed_bytes = meta.end.saturating_sub(new.end),
            "blob file compacted"
        );
        *meta = new;
        files.set_meta(new);
        // Readers still holding the old file read on from their open handle.
        if let Err(error) = std::fs::remove_file(self.old.path()) {
            tracing::warn!(
                path = %self.old.path().display(),
                %error,
                "cannot remove the blob file a compaction replaced; the next open retries"
            );
        }
        Ok(())
    }

    /// Everything of [`switch`](Self::switch) before the commit: the rest of the copy, the
    /// sync, and the transaction, with the new file's state.
    fn prepare_switch(
        &mut self,
        files: &Files,
        meta: &BlobMeta,
    ) -> Result<(redb::WriteTransaction, BlobMeta), CompactFailure> {
        let (tail_start, copied_to) = loop {
            match self.phase {
                Phase::Keyed => {
                    self.step_keyed()?;
                }
                Phase::Tail {
                    tail_start,
                    copied_to,
                } => break (tail_start, copied_to),
            }
        };
        if meta.end < copied_to {
            return Err(CompactFailure::from(redb::Error::Corrupted(
                "the blob file's committed end went back".into(),
            )));
        }
        self.copy_tail(tail_start, copied_to, meta.end)?;
        let new_end = self.written;
        self.new
            .sync()
            .map_err(CompactFailure::io(self.new.path()))?;

        let current = files.db.begin_read()?.open_table(BLOBS)?;
        let mut transaction = files.db.begin_write()?;
        transaction.set_durability(Durability::Immediate);
        let mut live = 0_u64;
        {
            let mut table = transaction.open_table(BLOBS)?;
            let mut snapshot = self.snapshot.range::<&[u8]>(..)?;
            // The snapshot entry not yet passed, and the new offset of its bytes.
            let mut head: Option<(Vec<u8>, (u64, u64))> = None;
            let mut head_offset = 0_u64;
            for entry in current.range::<&[u8]>(..)? {
                let (key, value) = entry?;
                let key = key.value();
                let (offset, len) = value.value();
                let new_offset = if offset >= self.snapshot_end {
                    // Written since the start: in the tail, at its place.
                    offset
                        .checked_add(len)
                        .filter(|end| *end <= meta.end)
                        .ok_or_else(|| inconsistent(key, offset, len))?;
                    tail_start + (offset - self.snapshot_end)
                } else {
                    // Older: must be the snapshot's entry, bytes unchanged.
                    loop {
                        match &head {
                            Some((head_key, (_, head_len))) if head_key.as_slice() < key => {
                                head_offset += head_len;
                                head = None;
                            }
                            Some(_) => break,
                            None => match snapshot.next() {
                                Some(next) => {
                                    let (next_key, next_value) = next?;
                                    head = Some((next_key.value().to_vec(), next_value.value()));
                                }
                                None => break,
                            },
                        }
                    }
                    match &head {
                        Some((head_key, head_value))
                            if head_key.as_slice() == key && *head_value == (offset, len) =>
                        {
                            head_offset
                        }
                        _ => return Err(inconsistent(key, offset, len).into()),
                    }
                };
                table.insert(key, (new_offset, len))?;
                live += len;
            }
            let dead = new_end.checked_sub(live).ok_or_else(|| {
                redb::Error::Corrupted(format!(
                    "{live} live bytes in a compacted blob file of {new_end}"
                ))
            })?;
            let mut table = transaction.open_table(META)?;
            table.insert(BLOB_GEN_KEY, self.generation)?;
            table.insert(BLOB_END_KEY, new_end)?;
            table.insert(BLOB_DEAD_KEY, dead)?;
        }
        drop(current);
        Ok((
            transaction,
            BlobMeta {
                end: new_end,
                generation: self.generation,
                dead: new_end - live,
            },
        ))
    }

    /// Gives up: removes the new file. The index still names the old one.
    pub(super) fn abort(self) {
        let path = self.new.path().to_path_buf();
        drop(self);
        if let Err(error) = std::fs::remove_file(&path)
            && error.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(
                path = %path.display(),
                %error,
                "cannot remove the file of an abandoned compaction; the next open retries"
            );
        }
    }
}

/// A buffer kept for the next step: dropped when a large block made it much larger than a
/// chunk.
fn shrink(buf: Vec<u8>, chunk_bytes: usize) -> Vec<u8> {
    if buf.capacity() > chunk_bytes.saturating_mul(2) {
        Vec::new()
    } else {
        buf
    }
}

fn inconsistent(key: &[u8], offset: u64, len: u64) -> redb::Error {
    redb::Error::Corrupted(format!(
        "blob entry {} ({len} bytes at offset {offset}) is in neither the compaction's \
         snapshot nor its tail",
        key.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use cid::Cid;

    use super::{
        super::{
            tables,
            write_buffer::Write,
            writer::{self, BlobPolicy},
        },
        *,
    };
    use crate::Block;

    /// Every large block to the blob file, whatever its batch.
    const ALL_TO_BLOBS: BlobPolicy = BlobPolicy {
        threshold_bytes: 0,
        min_batch_bytes: 0,
    };

    fn block(i: u8, len: usize) -> Block {
        crate::testing::v0_block(u64::from(i), len)
    }

    fn len(blocks: &[&Block]) -> u64 {
        blocks.iter().map(|block| block.data().len() as u64).sum()
    }

    fn open(path: &Path) -> (Files, BlobMeta) {
        let db = redb::Database::create(path).unwrap();
        let meta = tables::prepare(&db).unwrap();
        let blobs = BlobFile::open(&blobs::path_for(path, meta.generation), meta.end).unwrap();
        blobs::remove_leftovers(path, meta.generation);
        (Files::new(db, blobs, meta), meta)
    }

    fn put(files: &Files, meta: &mut BlobMeta, blocks: &[&Block]) {
        let writes: Vec<_> = blocks
            .iter()
            .map(|block| Write::Put {
                seq: 0,
                block: (*block).clone(),
            })
            .collect();
        writer::commit(files, &writes, ALL_TO_BLOBS, meta).unwrap();
    }

    /// Every block of `blocks` reads back from `files`.
    fn assert_stored(files: &Files, blocks: &[Block]) {
        for block in blocks {
            assert_eq!(get(files, block).as_ref(), Some(block));
        }
    }

    /// A store in a new directory (its file `blocks.redb`) holding `count` blocks of `len`
    /// bytes, then with block `deleted` deleted.
    fn store_less_one(
        count: u8,
        len: usize,
        deleted: usize,
    ) -> (tempfile::TempDir, Vec<Block>, Files, BlobMeta) {
        let dir = tempfile::tempdir().unwrap();
        let blocks: Vec<_> = (0..count).map(|i| block(i, len)).collect();
        let (files, mut meta) = open(&dir.path().join("blocks.redb"));
        put(&files, &mut meta, &blocks.iter().collect::<Vec<_>>());
        delete(&files, &mut meta, blocks[deleted].cid());
        (dir, blocks, files, meta)
    }

    fn delete(files: &Files, meta: &mut BlobMeta, cid: &Cid) {
        let writes = [Write::Delete {
            seq: 0,
            key: *cid.hash(),
        }];
        writer::commit(files, &writes, ALL_TO_BLOBS, meta).unwrap();
    }

    fn get(files: &Files, block: &Block) -> Option<Block> {
        tables::get(files, block.cid()).unwrap()
    }

    fn run_to_ready(compaction: &mut Compaction, meta: &BlobMeta) {
        for _ in 0..1000 {
            if compaction.step(meta.end).unwrap() == Progress::Ready {
                return;
            }
        }
        panic!("the compaction never got ready");
    }

    /// Deletes, overwrites and new puts committed between the steps: every live block reads
    /// back intact from the new file, the dropped ones are gone, and the dead bytes are
    /// exactly those of the entries dropped since the snapshot.
    #[test]
    fn writes_between_steps_are_kept_and_dead_bytes_are_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.redb");
        let blocks: Vec<_> = (0..10)
            .map(|i| block(i, 1000 * (usize::from(i) + 1)))
            .collect();
        let (files, mut meta) = open(&path);
        let first: Vec<_> = blocks[..8].iter().collect();
        put(&files, &mut meta, &first);
        assert_eq!((meta.end, meta.dead), (len(&first), 0));

        let mut compaction = Compaction::start(&files, &path, meta, 3000).unwrap();
        assert_eq!(compaction.step(meta.end).unwrap(), Progress::Copied);
        delete(&files, &mut meta, blocks[0].cid());
        // Put again: its old copy is dead, its new one in the tail.
        put(&files, &mut meta, &[&blocks[1], &blocks[8]]);
        assert_eq!(meta.dead, len(&[&blocks[0], &blocks[1]]));
        assert_eq!(compaction.step(meta.end).unwrap(), Progress::Copied);
        put(&files, &mut meta, &[&blocks[9]]);
        run_to_ready(&mut compaction, &meta);
        compaction.switch(&files, &mut meta).unwrap();

        let tail = len(&[&blocks[1], &blocks[8], &blocks[9]]);
        let expected = BlobMeta {
            end: len(&first) + tail,
            generation: 1,
            dead: len(&[&blocks[0], &blocks[1]]),
        };
        assert_eq!(meta, expected);
        assert_eq!(files.meta(), expected);
        assert!(!blobs::path_for(&path, 0).exists());
        let new_path = blobs::path_for(&path, 1);
        assert_eq!(std::fs::metadata(&new_path).unwrap().len(), expected.end);
        assert_eq!(files.blob_file().path(), new_path);
        assert_eq!(get(&files, &blocks[0]), None);
        assert_stored(&files, &blocks[1..]);

        // Reopened: the same state; compacted again, nothing dead is left.
        drop(files);
        let (files, mut meta) = open(&path);
        assert_eq!(meta, expected);
        let mut compaction = Compaction::start(&files, &path, meta, 1 << 20).unwrap();
        run_to_ready(&mut compaction, &meta);
        compaction.switch(&files, &mut meta).unwrap();
        let live: Vec<_> = blocks[1..].iter().collect();
        assert_eq!(
            meta,
            BlobMeta {
                end: len(&live),
                generation: 2,
                dead: 0,
            }
        );
        assert!(!new_path.exists());
        assert_stored(&files, &blocks[1..]);
    }

    /// An abandoned compaction removes its file and changes nothing.
    #[test]
    fn an_aborted_compaction_changes_nothing() {
        let (dir, blocks, files, meta) = store_less_one(4, 5000, 0);
        let path = dir.path().join("blocks.redb");
        let before = meta;
        let mut compaction = Compaction::start(&files, &path, meta, 5000).unwrap();
        compaction.step(meta.end).unwrap();
        assert!(blobs::path_for(&path, 1).exists());
        compaction.abort();
        assert!(!blobs::path_for(&path, 1).exists());
        assert_eq!(files.meta(), before);
        assert_stored(&files, &blocks[1..]);
    }

    /// An entry that points below the snapshot's end but is not the snapshot's (which no
    /// write of the store makes: a corrupt index) aborts the switch: nothing is switched.
    #[test]
    fn an_entry_the_snapshot_does_not_know_aborts_the_switch() {
        let (dir, blocks, files, mut meta) = store_less_one(3, 4000, 2);
        let path = dir.path().join("blocks.redb");
        let mut compaction = Compaction::start(&files, &path, meta, 1 << 20).unwrap();
        // Block 0's entry now points at block 1's bytes.
        let write = files.db.begin_write().unwrap();
        write
            .open_table(BLOBS)
            .unwrap()
            .insert(tables::key(blocks[0].cid().hash()).as_slice(), (4000, 4000))
            .unwrap();
        write.commit().unwrap();
        run_to_ready(&mut compaction, &meta);
        let before = meta;
        match compaction.switch(&files, &mut meta) {
            Err(SwitchError::Aborted(CompactFailure::Database(error))) => {
                assert!(error.to_string().contains("neither"), "{error}");
            }
            other => panic!("expected an aborted switch, got {other:?}"),
        }
        assert_eq!(meta, before);
        assert_eq!(files.meta().generation, 0);
        assert!(!blobs::path_for(&path, 1).exists());
        assert_eq!(get(&files, &blocks[1]).as_ref(), Some(&blocks[1]));
    }
}
