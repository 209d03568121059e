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
//! Each transaction that drops or replaces a blob entry adds its length to the dead bytes of
//! the blob file (`meta` key `blob_dead`), in the same transaction, so the count is exact
//! after any crash. When dead bytes pass the [`CompactionPolicy`], or a compaction is asked
//! for, the writer compacts the blob file (see [`compact`](super::compact)): a step at a time,
//! committing the batches that are due between steps.
//!
//! When the store is dropped, the writer commits what is queued and stops; a compaction under
//! way is abandoned (its file removed), the blob file it would have replaced kept.

use std::{mem, path::Path};

use futures::channel::oneshot;
use redb::Durability;

use super::{
    compact::{CompactFailure, Compaction, CompactionPolicy, Progress, SwitchError},
    pending::{Batch, CompactResult, Failure, Write, WriteBuffer},
    tables::{self, BLOB_DEAD_KEY, BLOB_END_KEY, BLOBS, BLOCKS, BlobMeta, Files, META, SIZES},
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
    loop {
        if active.is_none() {
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
        let Some(Batch {
            writes,
            flushes,
            compactions,
        }) = buffer.next_batch(active.is_some())
        else {
            break;
        };
        let result = if writes.is_empty() {
            // Everything before these flushes was committed, durably, by earlier batches.
            Ok(())
        } else {
            commit(files, &writes, config.blobs, &mut meta)
        };
        match result {
            Ok(()) => {
                if !writes.is_empty() {
                    tracing::trace!(
                        writes = writes.len(),
                        flushes = flushes.len(),
                        "block store batch committed"
                    );
                }
                buffer.committed(&writes);
                for flush in flushes {
                    let _ = flush.send(Ok(()));
                }
            }
            Err(error) => {
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
    let is_large = |write: &Write| match write {
        Write::Put { block, .. } => block.data().len() > policy.threshold_bytes,
        Write::Delete { .. } => false,
    };
    let large_bytes: usize = writes
        .iter()
        .filter(|write| is_large(write))
        .map(|write| match write {
            Write::Put { block, .. } => block.data().len(),
            Write::Delete { .. } => 0,
        })
        .sum();
    // Where each put of the batch lands in the blob file, if it goes there.
    let mut offsets = vec![None; writes.len()];
    let mut end = meta.end;
    if large_bytes > 0 && large_bytes >= policy.min_batch_bytes {
        let blob_file = files.blob_file();
        for (write, offset) in writes.iter().zip(&mut offsets) {
            if let Write::Put { block, .. } = write
                && is_large(write)
            {
                blob_file.write_at(block.data(), end)?;
                *offset = Some(end);
                end += block.data().len() as u64;
            }
        }
        // Durable before any committed entry points at them.
        blob_file.sync()?;
    }
    // Bytes of the blob file whose entries this batch drops or replaces.
    let mut dead = meta.dead;

    let mut transaction = files.db.begin_write()?;
    transaction.set_durability(Durability::Immediate);
    {
        let mut blocks = transaction.open_table(BLOCKS)?;
        let mut blobs = transaction.open_table(BLOBS)?;
        let mut sizes = transaction.open_table(SIZES)?;
        for (write, offset) in writes.iter().zip(&offsets) {
            let key = tables::key(write.key());
            let key = key.as_slice();
            // A key is in `blocks` or in `blobs`: a put removes it from the other table,
            // unless `sizes` shows it was not stored at all (one B-tree walk saved per new key).
            match (write, offset) {
                (Write::Put { block, .. }, Some(offset)) => {
                    let len = block.data().len() as u64;
                    if let Some(old) = blobs.insert(key, (*offset, len))? {
                        dead += old.value().1;
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
                    }
                }
                (Write::Delete { .. }, _) => {
                    blocks.remove(key)?;
                    if let Some(old) = blobs.remove(key)? {
                        dead += old.value().1;
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
