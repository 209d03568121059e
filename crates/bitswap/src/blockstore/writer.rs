//! The writer thread of the redb store: commits buffered writes in batches.
//!
//! A batch is one write transaction, committed with [`Durability::Immediate`]: once it
//! returns, the batch is on disk (redb's commit `fsync`s), and the flushes queued in the batch
//! are answered. The buffer decides when a batch is due ([`WriteBuffer::next_batch`]): at a
//! flush, when a batch is full, when a caller waits for room, or after the commit interval, so
//! writes without a flush reach the disk too, in a few large transactions. A crash loses the
//! batches not committed whole; redb never leaves half of a transaction in the file.
//!
//! When the store is dropped, the writer commits what is queued and stops.

use redb::{Database, Durability};

use super::{
    pending::{Batch, Failure, Write, WriteBuffer},
    tables::{self, BLOCKS, SIZES},
};

/// Runs until the buffer is closed and drained, or a commit fails.
pub(super) fn run(db: &Database, buffer: &WriteBuffer) {
    while let Some(Batch { writes, flushes }) = buffer.next_batch() {
        let result = if writes.is_empty() {
            // Everything before these flushes was committed, durably, by earlier batches.
            Ok(())
        } else {
            commit(db, &writes)
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
fn commit(db: &Database, writes: &[Write]) -> Result<(), redb::Error> {
    let mut transaction = db.begin_write()?;
    transaction.set_durability(Durability::Immediate);
    {
        let mut blocks = transaction.open_table(BLOCKS)?;
        let mut sizes = transaction.open_table(SIZES)?;
        for write in writes {
            let key = tables::key(write.key());
            match write {
                Write::Put { block, .. } => {
                    blocks.insert(key.as_slice(), block.data().as_ref())?;
                    sizes.insert(key.as_slice(), block.data().len() as u64)?;
                }
                Write::Delete { .. } => {
                    blocks.remove(key.as_slice())?;
                    sizes.remove(key.as_slice())?;
                }
            }
        }
    }
    transaction.commit()?;
    Ok(())
}
