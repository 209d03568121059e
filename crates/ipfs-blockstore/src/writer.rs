//! The writer thread of the redb store: commits buffered writes in batches.
//!
//! A batch is one write transaction, committed with [`Durability::Immediate`]: once it
//! returns, the batch is on disk (redb's commit `fsync`s), and the flushes queued in the batch
//! are answered. The buffer decides when a batch is due ([`WriteBuffer::next_batch`]): at a
//! flush, when a batch is full, when a caller waits for room, or after the commit interval, so
//! writes without a flush reach the disk too, in a few large transactions. A crash loses the
//! batches not committed whole; redb never leaves half of a transaction in the file.
//!
//! Large blocks go to the blob file instead of the B-tree when the batch carries enough of them
//! ([`BlobPolicy`]): the writer appends them past the blob file's committed end, `fdatasync`s
//! it, and then commits the transaction that indexes them and moves the committed end (see
//! [`blobs`](super::blobs)). That is two syncs per batch instead of one, which is why a batch
//! with few large bytes (a flush per block) keeps them in the B-tree.
//!
//! Appending a batch's large blocks (copying them into the page cache) costs about as much as
//! syncing them, so the two overlap: while the writer syncs and commits a batch that went to
//! the blob file, a helper thread appends the large blocks of the next batch already due past
//! its end (a *lookahead* batch, taken from the buffer early; its writes stay buffered, and
//! readers see them there, until it commits after the batch before it). The lookahead's bytes
//! lie past the committed end until its own commit, so a crash cuts them off like those of any
//! batch not committed. A flush per block never has a batch due behind it: it pays exactly
//! what it did without the lookahead. No lookahead is taken while a compaction runs or is
//! asked for, so appended offsets always point into the blob file the index names.
//!
//! Each transaction that drops or replaces a blob entry adds its length to the dead bytes of
//! the blob file (`meta` key `blob_dead`), in the same transaction, so the count is exact
//! after any crash. When dead bytes pass the [`CompactionPolicy`], or a compaction is asked
//! for, the writer compacts the blob file (see [`compact`](super::compact)): a step at a time,
//! committing the batches that are due between steps.
//!
//! When the store is dropped, the writer commits what is queued and stops; a compaction under
//! way is abandoned (its file removed), the blob file it would have replaced kept.

use std::{io, mem, path::Path, thread};

use futures::channel::oneshot;
use redb::Durability;

use super::{
    blobs::BlobFile,
    compact::{CompactFailure, Compaction, CompactionPolicy, Progress, SwitchError},
    tables::{
        self, BLOB_DEAD_KEY, BLOB_END_KEY, BLOB_SUMS, BLOBS, BLOCKS, BlobMeta, Files, META, SIZES,
    },
    write_buffer::{CompactResult, Failure, Write, WriteBatch, WriteBuffer},
};

/// Which blocks the writer puts in the blob file rather than the B-tree.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlobPolicy {
    /// Blocks longer than this many bytes are large.
    pub(super) threshold_bytes: usize,
    /// A batch's large blocks go to the blob file when they add up to at least this many bytes.
    pub(super) min_batch_bytes: usize,
}

/// What the writer needs besides the files and the buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct WriterConfig<'a> {
    /// The database file, next to which the blob files are.
    pub(super) db_path: &'a Path,
    pub(super) blobs: BlobPolicy,
    pub(super) compaction: CompactionPolicy,
}

/// A compaction under way and the requests it answers.
struct Active {
    compaction: Compaction,
    waiters: Vec<oneshot::Sender<CompactResult>>,
    /// Started on the writer's own (by the policy), not asked for.
    automatic: bool,
}

/// A batch taken from the buffer, with where its large blocks go and how appending them went.
struct Staged {
    batch: WriteBatch,
    plan: Plan,
    /// Appending the batch's large blocks to the blob file: their checksums (see [`Sums`]).
    appended: io::Result<Sums>,
}

/// Per write of a batch, in order: the checksum of its block's bytes, if it went to the blob
/// file.
type Sums = Vec<Option<u64>>;

/// Runs until the buffer is closed and drained, or a commit fails. `meta` is the committed
/// state of the blob file.
pub(super) fn run(files: &Files, buffer: &WriteBuffer, config: WriterConfig<'_>, meta: BlobMeta) {
    let mut meta = meta;
    let mut active: Option<Active> = None;
    // Compaction requests taken, for the next compaction to start.
    let mut requested = Vec::new();
    // After an automatic compaction failed: the dead bytes at which the policy may try again,
    // so that a full disk does not make every batch start (and fail) a compaction.
    let mut retry_at_dead = 0;
    // The next batch, taken early and its large blocks appended while the batch before it
    // committed (see the module doc): committed before anything else happens.
    let mut lookahead: Option<Staged> = None;
    loop {
        if active.is_none() && lookahead.is_none() {
            let automatic = requested.is_empty();
            if automatic && !(config.compaction.due(&meta) && meta.dead >= retry_at_dead) {
                // Nothing to start.
            } else if meta.dead == 0 {
                // Nothing to reclaim: the file is as small as it gets.
                answer(mem::take(&mut requested), &Ok(()));
            } else {
                match Compaction::start(files, config.db_path, meta, config.compaction.chunk_bytes)
                {
                    Ok(compaction) => {
                        active = Some(Active {
                            compaction,
                            waiters: mem::take(&mut requested),
                            automatic,
                        });
                    }
                    Err(failure) => {
                        log_failure(&failure);
                        if automatic {
                            retry_at_dead = retry_after(&meta, &config.compaction);
                        }
                        answer(mem::take(&mut requested), &Err(failure));
                    }
                }
            }
        }
        let staged = match lookahead.take() {
            Some(staged) => staged,
            None => {
                let Some(batch) = buffer.next_batch(active.is_some()) else {
                    break;
                };
                stage(files, batch, config.blobs, meta.end)
            }
        };
        let Staged {
            batch:
                WriteBatch {
                    writes,
                    flushes,
                    compactions,
                },
            plan,
            appended,
        } = staged;
        // Only behind a batch that syncs the blob file (what the next batch's appends overlap
        // with), and never with a compaction running or asked for: a compaction's switch
        // would leave the next batch's offsets in the file it replaced.
        let look_ahead = plan.end != meta.end
            && active.is_none()
            && requested.is_empty()
            && compactions.is_empty();
        let result = if writes.is_empty() {
            // Everything before these flushes was committed, durably, by earlier batches.
            Ok(())
        } else {
            match appended {
                Err(error) => Err(error.into()),
                Ok(sums) if look_ahead => {
                    let (result, next) = commit_overlapped(
                        files,
                        buffer,
                        (&writes, &plan, &sums),
                        config.blobs,
                        &mut meta,
                    );
                    lookahead = next;
                    result
                }
                Ok(sums) => commit_planned(files, &writes, &plan, &sums, &mut meta),
            }
        };
        match result {
            Ok(()) => {
                if !writes.is_empty() {
                    tracing::trace!(
                        writes = writes.len(),
                        flushes = flushes.len(),
                        lookahead = lookahead.is_some(),
                        "block store batch committed"
                    );
                }
                buffer.committed(&writes);
                for flush in flushes {
                    let _ = flush.send(Ok(()));
                }
            }
            Err(error) => {
                // The batch taken early is dropped with the rest: tell its waiters too.
                let (mut flushes, mut compactions) = (flushes, compactions);
                if let Some(next) = lookahead.take() {
                    flushes.extend(next.batch.flushes);
                    compactions.extend(next.batch.compactions);
                }
                fail(buffer, error, flushes, compactions, requested, active);
                return;
            }
        }
        requested.extend(compactions);
        let Some(mut current) = active.take() else {
            continue;
        };
        let progress = match current.compaction.step(meta.end) {
            Ok(Progress::Copied) => {
                active = Some(current);
                continue;
            }
            Ok(Progress::Ready) => current.compaction.switch(files, &mut meta),
            Err(failure) => {
                current.compaction.abort();
                Err(SwitchError::Aborted(failure))
            }
        };
        match progress {
            Ok(()) => {
                retry_at_dead = 0;
                answer(current.waiters, &Ok(()));
            }
            Err(SwitchError::Aborted(failure)) => {
                log_failure(&failure);
                if current.automatic {
                    retry_at_dead = retry_after(&meta, &config.compaction);
                }
                answer(current.waiters, &Err(failure));
            }
            Err(SwitchError::Commit(error)) => {
                fail(buffer, *error, Vec::new(), current.waiters, requested, None);
                return;
            }
        }
    }
    if let Some(active) = active {
        tracing::debug!("block store closing: compaction abandoned");
        active.compaction.abort();
    }
}

/// The dead bytes at which an automatic compaction that failed now may be tried again.
fn retry_after(meta: &BlobMeta, policy: &CompactionPolicy) -> u64 {
    meta.dead
        .saturating_add(policy.min_dead_bytes.max(meta.end / 16).max(1))
}

fn log_failure(failure: &CompactFailure) {
    tracing::warn!(
        ?failure,
        "blob file compaction failed; the store goes on with the blob file it had"
    );
}

fn answer(waiters: Vec<oneshot::Sender<CompactResult>>, result: &CompactResult) {
    for waiter in waiters {
        let _ = waiter.send(result.clone());
    }
}

/// A commit failed: the store refuses everything from now on; everyone waiting is told.
fn fail(
    buffer: &WriteBuffer,
    error: redb::Error,
    flushes: Vec<oneshot::Sender<Result<(), Failure>>>,
    compactions: Vec<oneshot::Sender<CompactResult>>,
    requested: Vec<oneshot::Sender<CompactResult>>,
    active: Option<Active>,
) {
    tracing::error!(
        %error,
        "block store write failed; the store refuses operations until reopened"
    );
    let failure = Failure::Write(error.into());
    buffer.fail(&failure);
    for flush in flushes {
        let _ = flush.send(Err(failure.clone()));
    }
    let mut waiters = compactions;
    waiters.extend(requested);
    if let Some(active) = active {
        waiters.extend(active.waiters);
        // The index still names the old file: this one was never switched to.
        active.compaction.abort();
    }
    answer(waiters, &Err(CompactFailure::Store(failure)));
}

/// Where a batch's puts go: the offset in the blob file of each large block that goes there.
#[derive(Debug)]
struct Plan {
    /// Per write of the batch, in order: the offset of its block in the blob file, if it goes
    /// there.
    offsets: Vec<Option<u64>>,
    /// The end of the blob file before the batch: where its first large block goes.
    start: u64,
    /// The end of the blob file after the batch.
    end: u64,
}

/// Decides where the puts of `writes` go: a batch's large blocks go to the blob file, from
/// `start` on, when they add up to at least [`BlobPolicy::min_batch_bytes`].
fn plan(writes: &[Write], policy: BlobPolicy, start: u64) -> Plan {
    let large = |write: &Write| match write {
        Write::Put { block, .. } if block.data().len() > policy.threshold_bytes => {
            Some(block.data().len())
        }
        Write::Put { .. } | Write::Delete { .. } => None,
    };
    let large_bytes: usize = writes.iter().filter_map(large).sum();
    let mut offsets = vec![None; writes.len()];
    let mut end = start;
    if large_bytes > 0 && large_bytes >= policy.min_batch_bytes {
        for (write, offset) in writes.iter().zip(&mut offsets) {
            if let Some(len) = large(write) {
                *offset = Some(end);
                end += len as u64;
            }
        }
    }
    Plan {
        offsets,
        start,
        end,
    }
}

/// Takes `batch` for the writer: decides where its puts go (the blob file from `start` on)
/// and appends its large blocks there.
fn stage(files: &Files, batch: WriteBatch, policy: BlobPolicy, start: u64) -> Staged {
    let plan = plan(&batch.writes, policy, start);
    let appended = if plan.end == plan.start {
        Ok(vec![None; batch.writes.len()])
    } else {
        append(&files.blob_file(), &batch.writes, &plan)
    };
    Staged {
        batch,
        plan,
        appended,
    }
}

/// Writes the large blocks of `writes` at their offsets in `blob_file`, past its committed
/// end, and returns their checksums: each block's bytes straight from its buffer, one
/// positional write each (a block is one copy into the page cache, whatever the number of
/// calls).
fn append(blob_file: &BlobFile, writes: &[Write], plan: &Plan) -> io::Result<Sums> {
    let mut sums = vec![None; writes.len()];
    for ((write, offset), sum) in writes.iter().zip(&plan.offsets).zip(&mut sums) {
        if let (Write::Put { block, .. }, Some(offset)) = (write, offset) {
            blob_file.write_at(block.data(), *offset)?;
            *sum = Some(tables::blob_sum(block.data()));
        }
    }
    Ok(sums)
}

/// Commits `writes` (their large blocks appended as `plan` says, with checksums `sums`) and
/// meanwhile, if a batch is due in `buffer`, takes it and appends its large blocks past
/// `plan.end` on a helper thread. Returns the commit's result and the batch taken, staged:
/// the writer commits it next.
fn commit_overlapped(
    files: &Files,
    buffer: &WriteBuffer,
    (writes, plan, sums): (&[Write], &Plan, &[Option<u64>]),
    policy: BlobPolicy,
    meta: &mut BlobMeta,
) -> (Result<(), redb::Error>, Option<Staged>) {
    // Not waiting: only a batch due now (an empty one when none is).
    let next = buffer.next_batch(true).filter(|batch| {
        !(batch.writes.is_empty() && batch.flushes.is_empty() && batch.compactions.is_empty())
    });
    let Some(next) = next else {
        return (commit_planned(files, writes, plan, sums, meta), None);
    };
    let next_plan = self::plan(&next.writes, policy, plan.end);
    if next_plan.end == next_plan.start {
        // Nothing to append, nothing to overlap.
        let result = commit_planned(files, writes, plan, sums, meta);
        let next = Staged {
            appended: Ok(vec![None; next.writes.len()]),
            batch: next,
            plan: next_plan,
        };
        return (result, Some(next));
    }
    let blob_file = files.blob_file();
    let (result, appended) = thread::scope(|scope| {
        let appender = thread::Builder::new()
            .name("blockstore-appender".into())
            .spawn_scoped(scope, || append(&blob_file, &next.writes, &next_plan));
        let result = commit_planned(files, writes, plan, sums, meta);
        let appended = match appender {
            Ok(appender) => appender
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("blob file appender panicked"))),
            // No thread: append here, after the commit.
            Err(_) => append(&blob_file, &next.writes, &next_plan),
        };
        (result, appended)
    });
    let next = Staged {
        batch: next,
        plan: next_plan,
        appended,
    };
    (result, Some(next))
}

/// Stores `writes` in one transaction, their large blocks appended to the blob file first.
/// The writer thread's path, for the tests of other modules.
#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "an error ends the writer and is shared in an `Arc` once"
)]
pub(super) fn commit(
    files: &Files,
    writes: &[Write],
    policy: BlobPolicy,
    meta: &mut BlobMeta,
) -> Result<(), redb::Error> {
    let plan = plan(writes, policy, meta.end);
    let sums = append(&files.blob_file(), writes, &plan)?;
    commit_planned(files, writes, &plan, &sums, meta)
}

/// Commits `writes` in one transaction, their large blocks already appended to the blob file
/// as `plan` says, with checksums `sums`: syncs the blob file first if the batch appended to
/// it.
#[expect(
    clippy::result_large_err,
    reason = "an error ends the writer and is shared in an `Arc` once"
)]
fn commit_planned(
    files: &Files,
    writes: &[Write],
    plan: &Plan,
    sums: &[Option<u64>],
    meta: &mut BlobMeta,
) -> Result<(), redb::Error> {
    debug_assert_eq!(plan.start, meta.end, "a batch appends at the committed end");
    let end = plan.end;
    if end != plan.start {
        // Durable before any committed entry points at them.
        files.blob_file().sync()?;
    }
    // Bytes of the blob file whose entries this batch drops or replaces.
    let mut dead = meta.dead;

    let mut transaction = files.db.begin_write()?;
    transaction.set_durability(Durability::Immediate);
    {
        let mut blocks = transaction.open_table(BLOCKS)?;
        let mut blobs = transaction.open_table(BLOBS)?;
        let mut sizes = transaction.open_table(SIZES)?;
        // An entry of `blob_sums` goes with one of `blobs` (absent for those of format 3).
        let mut blob_sums = transaction.open_table(BLOB_SUMS)?;
        for ((write, offset), sum) in writes.iter().zip(&plan.offsets).zip(sums) {
            let key = tables::key(write.key());
            let key = key.as_slice();
            // A key is in `blocks` or in `blobs`: a put removes it from the other table,
            // unless `sizes` shows it was not stored at all (one B-tree walk saved per new key).
            match (write, offset) {
                (Write::Put { block, .. }, Some(offset)) => {
                    let len = block.data().len() as u64;
                    let old = blobs.insert(key, (*offset, len))?;
                    if let Some(old) = &old {
                        dead += old.value().1;
                    }
                    match sum {
                        Some(sum) => {
                            blob_sums.insert(key, sum)?;
                        }
                        // Not appended with a checksum (never, in the writer): checked
                        // against the CID instead.
                        None if old.is_some() => {
                            blob_sums.remove(key)?;
                        }
                        None => {}
                    }
                    if sizes.insert(key, len)?.is_some() {
                        blocks.remove(key)?;
                    }
                }
                (Write::Put { block, .. }, None) => {
                    blocks.insert(key, block.data().as_ref())?;
                    if sizes.insert(key, block.data().len() as u64)?.is_some()
                        && let Some(old) = blobs.remove(key)?
                    {
                        dead += old.value().1;
                        blob_sums.remove(key)?;
                    }
                }
                (Write::Delete { .. }, _) => {
                    blocks.remove(key)?;
                    if let Some(old) = blobs.remove(key)? {
                        dead += old.value().1;
                        blob_sums.remove(key)?;
                    }
                    sizes.remove(key)?;
                }
            }
        }
        if end != meta.end || dead != meta.dead {
            let mut table = transaction.open_table(META)?;
            table.insert(BLOB_END_KEY, end)?;
            table.insert(BLOB_DEAD_KEY, dead)?;
        }
    }
    transaction.commit()?;
    meta.end = end;
    meta.dead = dead;
    files.set_meta(*meta);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::executor::block_on;

    use super::{
        super::{
            blobs,
            write_buffer::{BatchPolicy, Buffered},
        },
        *,
    };

    /// A batch's large blocks go to the blob file when they are at least 2 of them.
    const TWO_LARGE: BlobPolicy = BlobPolicy {
        threshold_bytes: 100,
        min_batch_bytes: 2000,
    };

    fn block(i: u8, len: usize) -> crate::Block {
        crate::testing::v0_block(u64::from(i), len)
    }

    fn open(path: &Path) -> (Files, BlobMeta) {
        let db = redb::Database::create(path).unwrap();
        let meta = tables::prepare(&db).unwrap();
        let blobs = BlobFile::open(&blobs::path_for(path, meta.generation), meta.end).unwrap();
        (Files::new(db, blobs, meta), meta)
    }

    /// A buffer whose every write is due at once.
    fn eager() -> WriteBuffer {
        WriteBuffer::new(BatchPolicy {
            budget_bytes: 1 << 20,
            max_batch_bytes: usize::MAX,
            interval: Duration::ZERO,
        })
    }

    /// Takes the buffer's next batch and appends its large blocks from `end` on.
    fn stage_next(files: &Files, buffer: &WriteBuffer, end: u64) -> Staged {
        stage(files, buffer.next_batch(false).unwrap(), TWO_LARGE, end)
    }

    /// Commits a staged batch, taking the next one early if it is due.
    fn commit_staged(
        files: &Files,
        buffer: &WriteBuffer,
        staged: &Staged,
        meta: &mut BlobMeta,
    ) -> (Result<(), redb::Error>, Option<Staged>) {
        let sums = staged.appended.as_ref().unwrap();
        let writes = (
            staged.batch.writes.as_slice(),
            &staged.plan,
            sums.as_slice(),
        );
        commit_overlapped(files, buffer, writes, TWO_LARGE, meta)
    }

    /// While a batch that went to the blob file commits, the next batch due is taken and its
    /// large blocks appended past the first's end; it stays readable in the buffer until the
    /// writer commits it, and then reads back from the blob file, contiguous with the first.
    #[test]
    fn the_next_batch_is_appended_while_one_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (files, mut meta) = open(&dir.path().join("blocks.redb"));
        let buffer = eager();
        let first = [block(0, 1000), block(1, 1500)];
        let next = [block(2, 1200), block(3, 10), block(4, 1300)];
        block_on(buffer.put_many(first.to_vec())).unwrap();
        let staged = stage_next(&files, &buffer, meta.end);
        assert!(staged.appended.is_ok());
        assert_eq!((staged.plan.start, staged.plan.end), (0, 2500));
        block_on(buffer.put_many(next.to_vec())).unwrap();
        let _flushed = buffer.flush().unwrap();

        let (result, lookahead) = commit_staged(&files, &buffer, &staged, &mut meta);
        result.unwrap();
        buffer.committed(&staged.batch.writes);
        assert_eq!(meta.end, 2500);
        let lookahead = lookahead.expect("the next batch was due");
        assert!(lookahead.appended.is_ok());
        assert_eq!(lookahead.batch.writes.len(), 3);
        assert_eq!(lookahead.batch.flushes.len(), 1);
        assert_eq!(
            lookahead.plan.offsets,
            vec![Some(2500), None, Some(3700)],
            "large blocks placed after the first batch's, the small one in the B-tree"
        );
        // Appended, not committed: readers find the blocks in the buffer.
        assert!(matches!(
            buffer.lookup(next[0].cid().hash()),
            Ok(Buffered::Put(_))
        ));
        assert_eq!(tables::get(&files, next[0].cid()).unwrap(), None);

        let sums = lookahead.appended.as_ref().unwrap();
        commit_planned(
            &files,
            &lookahead.batch.writes,
            &lookahead.plan,
            sums,
            &mut meta,
        )
        .unwrap();
        buffer.committed(&lookahead.batch.writes);
        assert_eq!((meta.end, meta.dead), (5000, 0));
        for block in first.iter().chain(&next) {
            assert_eq!(
                tables::get(&files, block.cid()).unwrap().as_ref(),
                Some(block)
            );
        }
        assert!(matches!(
            buffer.lookup(next[0].cid().hash()),
            Ok(Buffered::Nothing)
        ));
    }

    /// With nothing due behind it, a batch commits alone: no batch is taken early.
    #[test]
    fn nothing_is_taken_early_when_nothing_is_due() {
        let dir = tempfile::tempdir().unwrap();
        let (files, mut meta) = open(&dir.path().join("blocks.redb"));
        let buffer = WriteBuffer::new(BatchPolicy {
            budget_bytes: 1 << 20,
            max_batch_bytes: usize::MAX,
            interval: Duration::from_secs(3600),
        });
        block_on(buffer.put_many(vec![block(0, 1000), block(1, 1500)])).unwrap();
        let _flushed = buffer.flush().unwrap();
        let staged = stage_next(&files, &buffer, meta.end);
        // Queued, but not due: no flush behind it, the interval far away.
        block_on(buffer.put_many(vec![block(2, 1200), block(3, 1300)])).unwrap();
        let (result, lookahead) = commit_staged(&files, &buffer, &staged, &mut meta);
        result.unwrap();
        assert!(lookahead.is_none());
        assert_eq!(meta.end, 2500);
        let _flushed = buffer.flush().unwrap();
        assert_eq!(
            buffer.next_batch(false).map(|batch| batch.writes.len()),
            Some(2)
        );
    }
}
