//! What happens when a peer asks again for a topic the queue already knows.

use std::iter::FusedIterator;

use smallvec::SmallVec;

use crate::Task;

/// Decides how a new task combines with tasks for the same topic of the same peer.
///
/// On [`push_tasks`](crate::PeerTaskQueue::push_tasks), for a task with topic `X`:
/// 1. if the peer has active (popped, not yet done) tasks for `X` and
///    [`has_new_info`](Self::has_new_info) is false, the new task is absorbed;
/// 2. else if a pending task for `X` exists, [`merge`](Self::merge) folds the new task into it
///    and the pending priority rises to the new one if that is higher (it never falls);
/// 3. else the new task becomes pending, beside any active ones for `X`.
///
/// In Bitswap a pending want-have followed by a want-block becomes one want-block sized to the
/// block, and a want-have for a block already being sent is absorbed.
pub trait TaskMerger<T, D> {
    /// What the queue remembers about each active task, for [`has_new_info`](Self::has_new_info).
    type ActiveInfo;

    /// Extracts the information kept while `task` is active.
    fn active_info(&self, task: &Task<T, D>) -> Self::ActiveInfo;

    /// Whether `new` should still be queued although tasks for its topic are active.
    fn has_new_info(&self, new: &Task<T, D>, active: ActiveTasks<'_, Self::ActiveInfo>) -> bool;

    /// Folds `new` into the pending task with the same topic, whose work and data are given.
    ///
    /// The queue updates the pending priority itself and keeps its work sums in step with
    /// whatever this writes to `work`.
    fn merge(&self, new: Task<T, D>, work: &mut u64, data: &mut D);
}

/// Deduplicates: a task whose topic is pending or active adds nothing but a possible priority
/// rise. The behaviour of go-peertaskqueue's default merger.
#[derive(Debug, Clone, Copy, Default)]
pub struct Dedup;

impl<T, D> TaskMerger<T, D> for Dedup {
    type ActiveInfo = ();

    fn active_info(&self, _task: &Task<T, D>) {}

    fn has_new_info(&self, _new: &Task<T, D>, _active: ActiveTasks<'_, ()>) -> bool {
        false
    }

    fn merge(&self, _new: Task<T, D>, _work: &mut u64, _data: &mut D) {}
}

/// The active tasks of one peer for one topic, newest first, as seen by
/// [`TaskMerger::has_new_info`].
#[derive(Debug, Clone)]
pub struct ActiveTasks<'a, A> {
    inner: smallvec::IntoIter<[&'a A; 4]>,
}

impl<'a, A> ActiveTasks<'a, A> {
    pub(crate) fn new(infos: SmallVec<[&'a A; 4]>) -> Self {
        Self {
            inner: infos.into_iter(),
        }
    }
}

impl<'a, A> Iterator for ActiveTasks<'a, A> {
    type Item = &'a A;

    fn next(&mut self) -> Option<&'a A> {
        self.inner.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<A> ExactSizeIterator for ActiveTasks<'_, A> {}
impl<A> FusedIterator for ActiveTasks<'_, A> {}
