//! The server's queue, its tasks, and how repeated requests for one block combine: a port of
//! boxo's `server/internal/decision/taskmerger.go`.

use cid::Cid;
use libp2p::PeerId;
use peer_task_queue::{ActiveTasks, PeerTaskQueue, Task, TaskMerger};

/// The server's task queue.
pub(super) type Queue = PeerTaskQueue<PeerId, Cid, TaskData, Merger>;

/// What a queued task answers, the `D` of the server's
/// [`PeerTaskQueue`](peer_task_queue::PeerTaskQueue).
///
/// Its answer follows from the flags: `have_block && want_block` sends the block,
/// `have_block && !want_block` a HAVE, `!have_block` a DONT_HAVE (if `send_dont_have`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TaskData {
    /// The block is to be sent (a want-block, or a want-have for a small block).
    pub(super) want_block: bool,
    /// The block was found in the store.
    pub(super) have_block: bool,
    /// Its size in bytes, if found.
    pub(super) block_size: u64,
    /// A DONT_HAVE is wanted if the block is missing.
    pub(super) send_dont_have: bool,
    /// Answers a want that the ledger does not keep (refused, evicted or filtered): sent even
    /// though the peer has no such want any more.
    pub(super) answer_only: bool,
}

/// Work of a HAVE or DONT_HAVE for `cid`: about its encoded size in a message, in bytes.
pub(super) fn presence_work(cid: &Cid) -> u64 {
    cid.encoded_len() as u64 + 4
}

/// Combines tasks for one block and one peer as boxo does.
///
/// - A pending want-have and a new want-block make one want-block, sized to the block.
/// - A pending DONT_HAVE and a new task that found the block take the block's answer.
/// - With a HAVE (or DONT_HAVE) being sent, a want-block (or a task that found the block)
///   is queued as a second task; with the block being sent, anything new is absorbed.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Merger;

/// What the queue keeps about an active task: (`want_block`, `have_block`).
pub(super) type ActiveInfo = (bool, bool);

impl TaskMerger<Cid, TaskData> for Merger {
    type ActiveInfo = ActiveInfo;

    fn active_info(&self, task: &Task<Cid, TaskData>) -> ActiveInfo {
        (task.data.want_block, task.data.have_block)
    }

    fn has_new_info(&self, new: &Task<Cid, TaskData>, active: ActiveTasks<'_, ActiveInfo>) -> bool {
        let (mut want_block, mut have_block) = (false, false);
        for &(w, h) in active {
            want_block |= w;
            have_block |= h;
        }
        (!want_block && new.data.want_block) || (!have_block && new.data.have_block)
    }

    fn merge(&self, new: Task<Cid, TaskData>, work: &mut u64, data: &mut TaskData) {
        let incoming = new.data;
        if !data.have_block && incoming.have_block {
            data.have_block = true;
            data.block_size = incoming.block_size;
            *work = new.work;
        }
        if !data.want_block && incoming.want_block {
            data.want_block = true;
            if !data.have_block || incoming.have_block {
                data.have_block = incoming.have_block;
                data.block_size = incoming.block_size;
                *work = new.work;
            }
        }
        if data.want_block && data.have_block {
            *work = data.block_size;
        }
        data.send_dont_have |= incoming.send_dont_have;
        data.answer_only &= incoming.answer_only;
    }
}

#[cfg(test)]
mod tests {
    use multihash_codetable::{Code, MultihashDigest};
    use peer_task_queue::{Config, PeerTaskQueue};

    use super::*;

    fn cid() -> Cid {
        Cid::new_v1(0x55, Code::Sha2_256.digest(b"x"))
    }

    fn task(want_block: bool, have_block: bool, size: u64) -> Task<Cid, TaskData> {
        let c = cid();
        let work = if want_block && have_block {
            size
        } else {
            presence_work(&c)
        };
        Task::new(
            c,
            1,
            work,
            TaskData {
                want_block,
                have_block,
                block_size: size,
                send_dont_have: true,
                answer_only: false,
            },
        )
    }

    type Queue = PeerTaskQueue<u8, Cid, TaskData, Merger>;

    /// `first` then `then` pushed for one peer pop as one task: a block of `work` bytes.
    fn assert_merged_into_block(first: Task<Cid, TaskData>, then: Task<Cid, TaskData>, work: u64) {
        let mut queue = Queue::new(Config::default());
        let _ = queue.push_tasks(&1, [first]);
        let _ = queue.push_tasks(&1, [then]);
        let popped = queue.pop_tasks(u64::MAX).expect("task");
        assert_eq!(popped.tasks.len(), 1);
        let t = &popped.tasks[0].task;
        assert!(t.data.want_block && t.data.have_block);
        assert_eq!(t.work, work);
    }

    #[test]
    fn pending_have_and_want_block_make_one_block_task() {
        assert_merged_into_block(task(false, true, 500), task(true, true, 500), 500);
    }

    #[test]
    fn pending_dont_have_takes_the_block_found_later() {
        assert_merged_into_block(task(false, false, 0), task(true, true, 700), 700);
    }

    #[test]
    fn have_being_sent_and_want_block_queue_a_second_task() {
        let mut queue = Queue::new(Config::default());
        let _ = queue.push_tasks(&1, [task(false, true, 500)]);
        let have = queue.pop_tasks(u64::MAX).expect("have");
        let outcome = queue.push_tasks(&1, [task(true, true, 500)]);
        assert_eq!(outcome.queued, 1);
        let block = queue.pop_tasks(u64::MAX).expect("block");
        assert!(block.tasks[0].task.data.want_block);
        let _ = queue.tasks_done(&1, &have.tasks);
    }

    #[test]
    fn block_being_sent_absorbs_a_want_have() {
        let mut queue = Queue::new(Config::default());
        let _ = queue.push_tasks(&1, [task(true, true, 500)]);
        let _block = queue.pop_tasks(u64::MAX).expect("block");
        let outcome = queue.push_tasks(&1, [task(false, true, 500)]);
        assert_eq!((outcome.queued, outcome.merged), (0, 1));
        assert!(queue.pop_tasks(u64::MAX).is_none());
    }
}
