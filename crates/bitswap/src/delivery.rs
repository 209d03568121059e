//! The order in which the client's events are reported: each after the store write of the
//! blocks it reports.
//!
//! A block reported as received must be in the store: the embedder may read it from there at
//! once, and the node serves it to its own peers. So the blocks the client accepts are written
//! in batches, and its events wait, in the order the client emitted them, until every batch
//! written with them or before them is done (written or failed: a failure is reported on its
//! own, ahead of the events that waited for it).

use std::collections::{HashSet, VecDeque};

/// A write of received blocks that events wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct StoreBatch(u64);

/// Events of type `E` waiting for the batches written with or before them.
///
/// Start a batch with [`start_batch`](Self::start_batch) for the blocks of the events about
/// to be queued, [`queue`](Self::queue) the events behind it, report its end with
/// [`handle_written`](Self::handle_written), and take the events due with
/// [`poll_event`](Self::poll_event) after each input.
///
/// It holds the events not yet taken and the batches not yet done: no more than the client
/// emitted, which peers cannot grow past the blocks it wants.
#[derive(Debug)]
pub(crate) struct Delivery<E> {
    next_batch: u64,
    /// Batches started and not done.
    writing: HashSet<StoreBatch>,
    /// Events in order, each with the batch it waits for (if any).
    events: VecDeque<(Option<StoreBatch>, E)>,
}

impl<E> Default for Delivery<E> {
    fn default() -> Self {
        Self {
            next_batch: 0,
            writing: HashSet::new(),
            events: VecDeque::new(),
        }
    }
}

impl<E> Delivery<E> {
    /// A batch being written, for the events queued next to wait for.
    pub(crate) fn start_batch(&mut self) -> StoreBatch {
        let batch = StoreBatch(self.next_batch);
        self.next_batch += 1;
        self.writing.insert(batch);
        batch
    }

    /// Queues `events` behind every event queued before, and behind `batch` if given.
    pub(crate) fn queue(&mut self, batch: Option<StoreBatch>, events: impl IntoIterator<Item = E>) {
        self.events
            .extend(events.into_iter().map(|event| (batch, event)));
    }

    /// The write of `batch` ended, written or failed.
    pub(crate) fn handle_written(&mut self, batch: StoreBatch) {
        self.writing.remove(&batch);
    }

    /// The next event whose batch, and every earlier event's, is done.
    #[must_use]
    pub(crate) fn poll_event(&mut self) -> Option<E> {
        let (batch, _) = self.events.front()?;
        if batch.is_some_and(|b| self.writing.contains(&b)) {
            return None;
        }
        self.events.pop_front().map(|(_, event)| event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(delivery: &mut Delivery<u32>) -> Vec<u32> {
        std::iter::from_fn(|| delivery.poll_event()).collect()
    }

    #[test]
    fn events_without_blocks_are_due_at_once() {
        let mut delivery = Delivery::default();
        delivery.queue(None, [1, 2]);
        assert_eq!(drain(&mut delivery), [1, 2]);
    }

    #[test]
    fn events_wait_in_order_for_their_batch_and_the_earlier_ones() {
        let mut delivery = Delivery::default();
        let first = delivery.start_batch();
        delivery.queue(Some(first), [1, 2]);
        let second = delivery.start_batch();
        delivery.queue(Some(second), [3]);
        delivery.queue(None, [4]);
        assert_eq!(drain(&mut delivery), [] as [u32; 0]);
        // The second batch done first: its event still waits behind the first's.
        delivery.handle_written(second);
        assert_eq!(drain(&mut delivery), [] as [u32; 0]);
        delivery.handle_written(first);
        assert_eq!(drain(&mut delivery), [1, 2, 3, 4]);
        assert!(delivery.writing.is_empty() && delivery.events.is_empty());
    }

    #[test]
    fn nothing_is_kept_once_every_batch_is_done_and_its_events_taken() {
        let mut delivery = Delivery::default();
        for round in 0..1000 {
            let batch = delivery.start_batch();
            delivery.queue(Some(batch), [round, round + 1]);
            assert_eq!(delivery.poll_event(), None);
            delivery.handle_written(batch);
            // Done twice (cannot happen, but harmless).
            delivery.handle_written(batch);
            assert_eq!(drain(&mut delivery), [round, round + 1]);
        }
        // A batch with no event waiting for it leaves nothing behind either.
        let batch = delivery.start_batch();
        delivery.handle_written(batch);
        assert!(delivery.writing.is_empty() && delivery.events.is_empty());
    }
}
