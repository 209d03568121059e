//! The write buffer of the redb store: puts and deletes accepted but not yet committed, in
//! order for the writer thread, and the latest of them per multihash for readers.
//!
//! Callers (async) admit writes under a byte budget and wait while it is full; the writer
//! (a thread) takes them in batches and reports them committed, which frees the budget.
//!
//! The writer takes a batch only when one is due ([`WriteBuffer::next_batch`]): a flush is
//! queued, a full batch is queued, a caller waits for room, the oldest queued write has waited
//! the commit interval, or the store is closing. Until then writes accumulate, so a
//! transaction (whose fixed cost is about 100 µs in redb, plus an `fsync`) carries many, and
//! the writer is woken only when a batch becomes due (or the queue stops being empty, to time
//! the interval), not once per write.
//!
//! A compaction request ([`WriteBuffer::compact`]) is queued like a flush, after the writes
//! admitted before it. While a compaction runs, the writer does not wait for a batch: it asks
//! for one ([`WriteBuffer::next_batch`] with `busy`), commits it if one is due, and otherwise
//! copies the compaction's next chunk.

use std::{
    collections::{HashMap, VecDeque},
    future::poll_fn,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    task::Poll,
    time::{Duration, Instant},
};

use futures::{channel::oneshot, lock::Mutex as AsyncMutex, task::AtomicWaker};
use multihash::Multihash;

use super::compact::CompactFailure;
use crate::Block;

/// A stored block's key: its CID's multihash.
pub(super) type Key = Multihash<64>;

/// Why the buffer accepts nothing more. Shared by every caller told.
#[derive(Debug, Clone)]
pub(super) enum Failure {
    /// A commit failed with this error.
    Write(Arc<redb::Error>),
    /// The writer thread panicked.
    WriterStopped,
}

/// What a flush waiter is told.
pub(super) type FlushResult = Result<(), Failure>;

/// What a compaction waiter is told.
pub(super) type CompactResult = Result<(), CompactFailure>;

/// Bytes charged per buffered put or delete besides block data: the queue entry, the overlay
/// entry and the key.
pub(super) const OVERHEAD_PER_WRITE_BYTES: usize = 256;

/// A put or a delete, numbered in admission order.
#[derive(Debug)]
pub(super) enum Write {
    Put { seq: u64, block: Block },
    Delete { seq: u64, key: Key },
}

impl Write {
    pub(super) fn key(&self) -> &Key {
        match self {
            Self::Put { block, .. } => block.cid().hash(),
            Self::Delete { key, .. } => key,
        }
    }

    fn seq(&self) -> u64 {
        match self {
            Self::Put { seq, .. } | Self::Delete { seq, .. } => *seq,
        }
    }

    fn cost(&self) -> usize {
        match self {
            Self::Put { block, .. } => put_cost(block),
            Self::Delete { .. } => OVERHEAD_PER_WRITE_BYTES,
        }
    }
}

fn put_cost(block: &Block) -> usize {
    block.data().len() + OVERHEAD_PER_WRITE_BYTES
}

#[derive(Debug)]
enum Op {
    Write(Write),
    Flush(oneshot::Sender<FlushResult>),
    Compact(oneshot::Sender<CompactResult>),
}

/// Writes for the writer to commit in one transaction, with the flushes and compaction
/// requests queued among them.
#[derive(Debug, Default)]
pub(super) struct WriteBatch {
    pub(super) writes: Vec<Write>,
    pub(super) flushes: Vec<oneshot::Sender<FlushResult>>,
    pub(super) compactions: Vec<oneshot::Sender<CompactResult>>,
}

/// What the buffer knows of a key.
#[derive(Debug)]
pub(super) enum Buffered {
    /// The latest buffered write puts this block (same multihash, maybe another CID).
    Put(Block),
    /// The latest buffered write deletes the key.
    Deleted,
    /// No write of the key is buffered: the committed state is current.
    Nothing,
}

#[derive(Debug, Default)]
struct State {
    /// Ops admitted and not yet taken by the writer, in order, with their admission time.
    queue: VecDeque<(Instant, Op)>,
    /// Cost of the writes in `queue`.
    queued_bytes: usize,
    /// Flushes and compaction requests in `queue`.
    queued_flushes: usize,
    /// A caller waits for room: the writer should commit what is queued.
    room_wanted: bool,
    /// The latest write admitted per key and not yet committed: `(seq, Some(block))` for a
    /// put, `(seq, None)` for a delete.
    latest: HashMap<Key, (u64, Option<Block>)>,
    /// Cost of the writes admitted and not yet committed (queued or being written).
    buffered_bytes: usize,
    next_seq: u64,
    /// Set when the store is dropped: the writer commits what is queued and stops.
    closed: bool,
    /// Set when a commit failed: everything not committed was dropped, nothing more is
    /// accepted.
    failed: Option<Failure>,
}

impl State {
    fn fits(&self, cost: usize, budget_bytes: usize) -> bool {
        // A write larger than the whole budget goes through alone.
        self.buffered_bytes == 0 || self.buffered_bytes + cost <= budget_bytes
    }

    fn check(&self) -> Result<(), Failure> {
        self.failed
            .as_ref()
            .map_or(Ok(()), |failure| Err(failure.clone()))
    }

    /// Queues a write; `true` if the writer must be woken (see the module doc).
    fn push(&mut self, policy: &BatchPolicy, write: impl FnOnce(u64) -> Write) -> bool {
        let was_empty = self.queue.is_empty();
        let seq = self.next_seq;
        self.next_seq += 1;
        let write = write(seq);
        let latest = match &write {
            Write::Put { block, .. } => Some(block.clone()),
            Write::Delete { .. } => None,
        };
        self.latest.insert(*write.key(), (seq, latest));
        self.buffered_bytes += write.cost();
        let was_short = self.queued_bytes < policy.max_batch_bytes;
        self.queued_bytes += write.cost();
        self.queue.push_back((Instant::now(), Op::Write(write)));
        was_empty || (was_short && self.queued_bytes >= policy.max_batch_bytes)
    }

    /// Whether the writer should take a batch now, or else how long it may wait for one
    /// (`None`: until woken).
    fn due(&self, policy: &BatchPolicy) -> Result<(), Option<Duration>> {
        let Some((oldest, _)) = self.queue.front() else {
            return Err(None);
        };
        if self.closed
            || self.queued_flushes > 0
            || self.queued_bytes >= policy.max_batch_bytes
            || self.room_wanted
        {
            return Ok(());
        }
        match policy.interval.checked_sub(oldest.elapsed()) {
            Some(left) if !left.is_zero() => Err(Some(left)),
            _ => Ok(()),
        }
    }
}

/// When the writer takes a batch, and how much.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchPolicy {
    /// Cost of the writes admitted and not committed, at most (a single larger write is
    /// admitted alone).
    pub(super) budget_bytes: usize,
    /// Cost of the writes of one batch, at most (plus one write); a full batch is due.
    pub(super) max_batch_bytes: usize,
    /// Longest a write waits in the queue without another reason for a batch.
    pub(super) interval: Duration,
}

/// The buffer shared by the store handle (callers) and the writer thread.
#[derive(Debug)]
pub(super) struct WriteBuffer {
    state: Mutex<State>,
    /// Wakes the writer when an op is queued or the buffer is closed.
    work: Condvar,
    /// Wakes the caller waiting for budget. One waiter at most: callers take turns through
    /// `admission`, so only the one holding it waits here.
    room: AtomicWaker,
    /// Serializes admissions: puts and deletes enter the queue in the order they get it, and a
    /// large `put_many` waiting for room is not overtaken block by block.
    admission: AsyncMutex<()>,
    policy: BatchPolicy,
}

impl WriteBuffer {
    /// An empty buffer.
    pub(super) fn new(policy: BatchPolicy) -> Self {
        Self {
            state: Mutex::default(),
            work: Condvar::new(),
            room: AtomicWaker::new(),
            admission: AsyncMutex::new(()),
            policy: BatchPolicy {
                max_batch_bytes: policy.max_batch_bytes.max(1),
                ..policy
            },
        }
    }

    /// Admits `blocks` in order, waiting for room in the budget as needed.
    pub(super) async fn put_many(&self, blocks: Vec<Block>) -> Result<(), Failure> {
        let _turn = self.admission.lock().await;
        let mut blocks = blocks.into_iter().peekable();
        while let Some(next) = blocks.peek() {
            self.room_for(put_cost(next)).await?;
            let wake = {
                let mut state = self.lock();
                state.check()?;
                let mut wake = false;
                while let Some(block) =
                    blocks.next_if(|block| state.fits(put_cost(block), self.policy.budget_bytes))
                {
                    wake |= state.push(&self.policy, |seq| Write::Put { seq, block });
                }
                wake
            };
            if wake {
                self.work.notify_one();
            }
        }
        Ok(())
    }

    /// Admits a delete of `key`, waiting for room in the budget as needed.
    pub(super) async fn delete(&self, key: Key) -> Result<(), Failure> {
        let _turn = self.admission.lock().await;
        self.room_for(OVERHEAD_PER_WRITE_BYTES).await?;
        let wake = {
            let mut state = self.lock();
            state.check()?;
            state.push(&self.policy, |seq| Write::Delete { seq, key })
        };
        if wake {
            self.work.notify_one();
        }
        Ok(())
    }

    /// Queues a flush after every write admitted so far; the receiver is told once they are
    /// durable.
    pub(super) fn flush(&self) -> Result<oneshot::Receiver<FlushResult>, Failure> {
        let (sender, receiver) = oneshot::channel();
        self.push_due(Op::Flush(sender))?;
        Ok(receiver)
    }

    /// Queues a compaction request after every write admitted so far; the receiver is told
    /// once a compaction that began after they were committed has switched the index (or
    /// failed).
    pub(super) fn compact(&self) -> Result<oneshot::Receiver<CompactResult>, Failure> {
        let (sender, receiver) = oneshot::channel();
        self.push_due(Op::Compact(sender))?;
        Ok(receiver)
    }

    /// Queues an op that makes a batch due at once.
    fn push_due(&self, op: Op) -> Result<(), Failure> {
        {
            let mut state = self.lock();
            state.check()?;
            state.queued_flushes += 1;
            state.queue.push_back((Instant::now(), op));
        }
        self.work.notify_one();
        Ok(())
    }

    /// The latest buffered write of `key`.
    pub(super) fn lookup(&self, key: &Key) -> Result<Buffered, Failure> {
        let state = self.lock();
        state.check()?;
        Ok(match state.latest.get(key) {
            Some((_, Some(block))) => Buffered::Put(block.clone()),
            Some((_, None)) => Buffered::Deleted,
            None => Buffered::Nothing,
        })
    }

    /// Bytes of writes admitted and not yet committed.
    pub(super) fn buffered_bytes(&self) -> usize {
        self.lock().buffered_bytes
    }

    /// Makes the writer commit what is queued and stop.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.work.notify_one();
    }

    /// Writer side: waits until a batch is due (see the module doc) and takes ops in order
    /// until about [`BatchPolicy::max_batch_bytes`] of writes (at least one op). When `busy`, does
    /// not wait: an empty batch when none is due. `None` once the buffer is closed and empty,
    /// or has failed.
    pub(super) fn next_batch(&self, busy: bool) -> Option<WriteBatch> {
        let mut state = self.lock();
        loop {
            if state.failed.is_some() || (state.closed && state.queue.is_empty()) {
                return None;
            }
            state = match state.due(&self.policy) {
                Ok(()) => break,
                Err(_) if busy => return Some(WriteBatch::default()),
                Err(Some(timeout)) => {
                    self.work
                        .wait_timeout(state, timeout)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                Err(None) => self
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
        state.room_wanted = false;
        let mut batch = WriteBatch::default();
        let mut bytes = 0;
        while bytes < self.policy.max_batch_bytes {
            match state.queue.pop_front() {
                Some((_, Op::Write(write))) => {
                    bytes += write.cost();
                    batch.writes.push(write);
                }
                Some((_, Op::Flush(sender))) => batch.flushes.push(sender),
                Some((_, Op::Compact(sender))) => batch.compactions.push(sender),
                None => break,
            }
        }
        state.queued_bytes -= bytes;
        state.queued_flushes -= batch.flushes.len() + batch.compactions.len();
        Some(batch)
    }

    /// Writer side: `writes` are committed; readers find them in the database now.
    pub(super) fn committed(&self, writes: &[Write]) {
        {
            let mut state = self.lock();
            for write in writes {
                let key = write.key();
                if state
                    .latest
                    .get(key)
                    .is_some_and(|(seq, _)| *seq == write.seq())
                {
                    state.latest.remove(key);
                }
                state.buffered_bytes -= write.cost();
            }
        }
        self.room.wake();
    }

    /// Writer side: a commit failed. Drops every write not committed, tells the queued
    /// flushes, and refuses everything from now on.
    pub(super) fn fail(&self, failure: &Failure) {
        let queue = {
            let mut state = self.lock();
            state.failed = Some(failure.clone());
            state.latest.clear();
            state.buffered_bytes = 0;
            state.queued_bytes = 0;
            state.queued_flushes = 0;
            std::mem::take(&mut state.queue)
        };
        for (_, op) in queue {
            match op {
                Op::Flush(sender) => {
                    let _ = sender.send(Err(failure.clone()));
                }
                Op::Compact(sender) => {
                    let _ = sender.send(Err(CompactFailure::Store(failure.clone())));
                }
                Op::Write(_) => {}
            }
        }
        self.room.wake();
    }

    /// Resolves once a write of `cost` bytes fits in the budget.
    async fn room_for(&self, cost: usize) -> Result<(), Failure> {
        poll_fn(|cx| {
            // Registered before looking, so a wake between the look and the return is kept.
            self.room.register(cx.waker());
            let mut state = self.lock();
            state.check()?;
            if state.fits(cost, self.policy.budget_bytes) {
                return Poll::Ready(Ok(()));
            }
            if !state.room_wanted {
                // Commit what is queued rather than wait for a batch that cannot fill.
                state.room_wanted = true;
                drop(state);
                self.work.notify_one();
            }
            Poll::Pending
        })
        .await
    }

    // The state is only changed by code that cannot panic half-way, so a poisoned lock still
    // holds consistent state.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::{pin::pin, sync::mpsc, task::Context, thread};

    use bytes::Bytes;
    use futures::{FutureExt, executor::block_on, task::noop_waker_ref};

    use super::*;

    const NOT_YET: Duration = Duration::from_millis(50);
    const HOUR: Duration = Duration::from_secs(3600);

    fn block(i: u32, len: usize) -> Block {
        let mut data = vec![0; len];
        data[..4].copy_from_slice(&i.to_be_bytes());
        Block::from_v0_data(Bytes::from(data)).unwrap()
    }

    fn buffer(budget_bytes: usize, max_batch_bytes: usize, interval: Duration) -> WriteBuffer {
        WriteBuffer::new(BatchPolicy {
            budget_bytes,
            max_batch_bytes,
            interval,
        })
    }

    /// A buffer whose every write is due at once.
    fn eager(budget_bytes: usize) -> WriteBuffer {
        buffer(budget_bytes, usize::MAX, Duration::ZERO)
    }

    fn committed_all(buffer: &WriteBuffer) -> WriteBatch {
        let batch = buffer.next_batch(false).unwrap();
        buffer.committed(&batch.writes);
        batch
    }

    /// Runs `next_batch` on a thread, as the writer does; the receiver gets its batch.
    fn writer(buffer: &Arc<WriteBuffer>) -> mpsc::Receiver<Option<WriteBatch>> {
        let (sender, receiver) = mpsc::sync_channel(1);
        let buffer = buffer.clone();
        thread::spawn(move || sender.send(buffer.next_batch(false)));
        receiver
    }

    #[test]
    fn reads_see_the_latest_buffered_write() {
        let buffer = eager(1 << 20);
        let a = block(1, 100);
        let key = *a.cid().hash();
        assert!(matches!(buffer.lookup(&key), Ok(Buffered::Nothing)));
        block_on(buffer.put_many(vec![a.clone()])).unwrap();
        assert!(matches!(buffer.lookup(&key), Ok(Buffered::Put(b)) if b == a));
        block_on(buffer.delete(key)).unwrap();
        assert!(matches!(buffer.lookup(&key), Ok(Buffered::Deleted)));
        committed_all(&buffer);
        assert!(matches!(buffer.lookup(&key), Ok(Buffered::Nothing)));
        assert_eq!(buffer.buffered_bytes(), 0);
    }

    #[test]
    fn a_commit_keeps_later_writes_of_the_same_key() {
        let buffer = eager(1 << 20);
        let a = block(1, 100);
        let key = *a.cid().hash();
        block_on(buffer.put_many(vec![a.clone()])).unwrap();
        let first = buffer.next_batch(false).unwrap();
        block_on(buffer.delete(key)).unwrap();
        buffer.committed(&first.writes);
        assert!(matches!(buffer.lookup(&key), Ok(Buffered::Deleted)));
        committed_all(&buffer);
        assert!(matches!(buffer.lookup(&key), Ok(Buffered::Nothing)));
    }

    #[test]
    fn batches_keep_order_and_split_at_max_bytes() {
        let buffer = buffer(1 << 20, 1500, Duration::ZERO);
        let blocks: Vec<_> = (0..4).map(|i| block(i, 1000)).collect();
        block_on(buffer.put_many(blocks[..2].to_vec())).unwrap();
        let _flushed = buffer.flush().unwrap();
        block_on(buffer.put_many(blocks[2..].to_vec())).unwrap();
        // Stops once 1500 bytes are reached: two writes of 1256 bytes.
        let first = buffer.next_batch(false).unwrap();
        assert_eq!(first.writes.len(), 2);
        assert!(first.flushes.is_empty());
        let rest = buffer.next_batch(false).unwrap();
        assert_eq!(rest.flushes.len(), 1);
        assert_eq!(rest.writes.len(), 2);
        let keys: Vec<_> = first
            .writes
            .iter()
            .chain(&rest.writes)
            .map(Write::key)
            .collect();
        let expected: Vec<_> = blocks.iter().map(|b| b.cid().hash()).collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn a_full_budget_makes_puts_wait_until_a_commit() {
        let cost = 1000 + OVERHEAD_PER_WRITE_BYTES;
        let buffer = eager(2 * cost);
        block_on(buffer.put_many(vec![block(0, 1000), block(1, 1000)])).unwrap();
        let mut put = pin!(buffer.put_many(vec![block(2, 1000)]));
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(put.as_mut().poll(&mut cx).is_pending());
        assert_eq!(buffer.buffered_bytes(), 2 * cost);
        committed_all(&buffer);
        assert!(matches!(put.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(buffer.buffered_bytes(), cost);
    }

    #[test]
    fn a_write_larger_than_the_budget_goes_alone() {
        let buffer = eager(10);
        block_on(buffer.put_many(vec![block(0, 1000)])).unwrap();
        let mut put = pin!(buffer.put_many(vec![block(1, 1000)]));
        assert!(put.as_mut().now_or_never().is_none());
        committed_all(&buffer);
        assert!(matches!(put.now_or_never(), Some(Ok(()))));
    }

    #[test]
    fn writes_wait_for_a_flush_to_be_taken() {
        let buffer = Arc::new(buffer(1 << 20, usize::MAX, HOUR));
        let batch = writer(&buffer);
        block_on(buffer.put_many(vec![block(0, 10), block(1, 10)])).unwrap();
        assert!(batch.recv_timeout(NOT_YET).is_err());
        let _flushed = buffer.flush().unwrap();
        let batch = batch.recv().unwrap().unwrap();
        assert_eq!((batch.writes.len(), batch.flushes.len()), (2, 1));
    }

    #[test]
    fn a_full_batch_is_taken_at_once() {
        let buffer = Arc::new(buffer(1 << 20, 2 * (10 + OVERHEAD_PER_WRITE_BYTES), HOUR));
        let batch = writer(&buffer);
        block_on(buffer.put_many(vec![block(0, 10)])).unwrap();
        assert!(batch.recv_timeout(NOT_YET).is_err());
        block_on(buffer.put_many(vec![block(1, 10)])).unwrap();
        assert_eq!(batch.recv().unwrap().unwrap().writes.len(), 2);
    }

    #[test]
    fn a_write_is_taken_after_the_commit_interval() {
        let interval = Duration::from_millis(30);
        let buffer = Arc::new(buffer(1 << 20, usize::MAX, interval));
        let start = Instant::now();
        let batch = writer(&buffer);
        block_on(buffer.put_many(vec![block(0, 10)])).unwrap();
        assert_eq!(batch.recv().unwrap().unwrap().writes.len(), 1);
        assert!(start.elapsed() >= interval);
    }

    #[test]
    fn a_put_waiting_for_room_gets_the_queue_taken() {
        let cost = 1000 + OVERHEAD_PER_WRITE_BYTES;
        let buffer = Arc::new(buffer(2 * cost, usize::MAX, HOUR));
        let batch = writer(&buffer);
        block_on(buffer.put_many(vec![block(0, 1000), block(1, 1000)])).unwrap();
        assert!(batch.recv_timeout(NOT_YET).is_err());
        let mut put = pin!(buffer.put_many(vec![block(2, 1000)]));
        assert!(put.as_mut().now_or_never().is_none());
        let batch = batch.recv().unwrap().unwrap();
        assert_eq!(batch.writes.len(), 2);
        buffer.committed(&batch.writes);
        assert!(matches!(put.now_or_never(), Some(Ok(()))));
    }

    #[test]
    fn a_failure_refuses_everything_and_tells_queued_flushes() {
        let buffer = eager(1 << 20);
        block_on(buffer.put_many(vec![block(0, 10)])).unwrap();
        let flushed = buffer.flush().unwrap();
        let failure = Failure::Write(Arc::new(redb::Error::PreviousIo));
        buffer.fail(&failure);
        assert!(block_on(flushed).unwrap().is_err());
        assert!(block_on(buffer.put_many(vec![block(1, 10)])).is_err());
        assert!(block_on(buffer.delete(*block(1, 10).cid().hash())).is_err());
        assert!(buffer.flush().is_err());
        assert!(buffer.lookup(block(0, 10).cid().hash()).is_err());
        assert!(buffer.next_batch(false).is_none());
    }

    #[test]
    fn a_busy_writer_is_not_kept_waiting_and_a_compaction_request_is_due() {
        let buffer = buffer(1 << 20, usize::MAX, HOUR);
        block_on(buffer.put_many(vec![block(0, 10)])).unwrap();
        let batch = buffer.next_batch(true).unwrap();
        assert!(batch.writes.is_empty() && batch.compactions.is_empty());
        let _compacted = buffer.compact().unwrap();
        let batch = buffer.next_batch(true).unwrap();
        assert_eq!((batch.writes.len(), batch.compactions.len()), (1, 1));
        // A failure tells the queued requests.
        let compacted = buffer.compact().unwrap();
        buffer.fail(&Failure::WriterStopped);
        assert!(matches!(
            block_on(compacted).unwrap(),
            Err(CompactFailure::Store(Failure::WriterStopped))
        ));
    }

    #[test]
    fn closing_takes_what_is_queued_then_ends() {
        let buffer = buffer(1 << 20, usize::MAX, HOUR);
        block_on(buffer.put_many(vec![block(0, 10)])).unwrap();
        buffer.close();
        assert_eq!(buffer.next_batch(false).unwrap().writes.len(), 1);
        assert!(buffer.next_batch(false).is_none());
    }
}
