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
//! When the store is dropped, the writer commits what is queued and stops.

use redb::Durability;

use super::{
    pending::{Batch, Failure, Write, WriteBuffer},
    tables::{self, BLOB_END_KEY, BLOBS, BLOCKS, Files, META, SIZES},
};

/// Which blocks the writer puts in the blob file rather than the B-tree.
#[derive(Debug, Clone, Copy)]
pub(super) struct BlobPolicy {
    /// Blocks longer than this many bytes are large.
    pub(super) threshold_bytes: usize,
    /// A batch's large blocks go to the blob file when they add up to at least this many bytes.
    pub(super) min_batch_bytes: usize,
}

/// Runs until the buffer is closed and drained, or a commit fails. `blob_end` is the committed
/// length of the blob file.
pub(super) fn run(files: &Files, buffer: &WriteBuffer, policy: BlobPolicy, mut blob_end: u64) {
    while let Some(Batch { writes, flushes }) = buffer.next_batch() {
        let result = if writes.is_empty() {
            // Everything before these flushes was committed, durably, by earlier batches.
            Ok(())
        } else {
            commit(files, &writes, policy, &mut blob_end)
        };
        match result {
            Ok(()) => {
                tracing::trace!(
                    writes = writes.len(),
                    flushes = flushes.len(),
                    "block store batch committed"
                );
                buffer.committed(&writes);
                for flush in flushes {
                    let _ = flush.send(Ok(()));
                }
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    "block store write failed; the store refuses operations until reopened"
                );
                let failure = Failure::Write(error.into());
                buffer.fail(&failure);
                for flush in flushes {
                    let _ = flush.send(Err(failure.clone()));
                }
                return;
            }
        }
    }
}

#[expect(
    clippy::result_large_err,
    reason = "an error ends the writer and is shared in an `Arc` once"
)]
fn commit(
    files: &Files,
    writes: &[Write],
    policy: BlobPolicy,
    blob_end: &mut u64,
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
    let mut end = *blob_end;
    if large_bytes > 0 && large_bytes >= policy.min_batch_bytes {
        for (write, offset) in writes.iter().zip(&mut offsets) {
            if let Write::Put { block, .. } = write
                && is_large(write)
            {
                files.blobs.write_at(block.data(), end)?;
                *offset = Some(end);
                end += block.data().len() as u64;
            }
        }
        // Durable before any committed entry points at them.
        files.blobs.sync()?;
    }

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
                    blobs.insert(key, (*offset, len))?;
                    if sizes.insert(key, len)?.is_some() {
                        blocks.remove(key)?;
                    }
                }
                (Write::Put { block, .. }, None) => {
                    blocks.insert(key, block.data().as_ref())?;
                    if sizes.insert(key, block.data().len() as u64)?.is_some() {
                        blobs.remove(key)?;
                    }
                }
                (Write::Delete { .. }, _) => {
                    blocks.remove(key)?;
                    blobs.remove(key)?;
                    sizes.remove(key)?;
                }
            }
        }
        if end != *blob_end {
            transaction.open_table(META)?.insert(BLOB_END_KEY, end)?;
        }
    }
    transaction.commit()?;
    *blob_end = end;
    Ok(())
}
