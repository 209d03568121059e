//! A small pool of reader threads, so that reads from the database (which may wait for the
//! disk) never block the caller's async task and need no particular runtime.

use std::{
    io,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex, PoisonError},
    thread::{self, JoinHandle},
};

use futures::{
    SinkExt, StreamExt,
    channel::{mpsc, oneshot},
    executor::block_on,
};

use super::tables::Files;

type Job = Box<dyn FnOnce(&Files) + Send>;

/// The reader thread running a job stopped (it panicked) before answering.
#[derive(Debug)]
pub(super) struct ReaderGone;

/// Threads that run read jobs against one store's files, in the order queued.
#[derive(Debug)]
pub(super) struct Readers {
    jobs: mpsc::Sender<Job>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    /// Starts `threads` threads (at least one) sharing a queue of `queue` jobs.
    ///
    /// Each caller clones the sender and so owns one more slot (see `mpsc::channel`): the
    /// jobs waiting are bounded by `queue` plus the read futures alive, each of which waits
    /// for its answer.
    pub(super) fn spawn(db: &Arc<Files>, threads: usize, queue: usize) -> io::Result<Self> {
        let (jobs, receiver) = mpsc::channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let mut pool = Self {
            jobs,
            threads: Vec::new(),
        };
        for i in 0..threads.max(1) {
            let db = db.clone();
            let receiver = receiver.clone();
            let thread = thread::Builder::new()
                .name(format!("blockstore-reader-{i}"))
                .spawn(move || {
                    loop {
                        // One thread waits on the queue while the others wait on the lock.
                        let next = {
                            let mut receiver =
                                receiver.lock().unwrap_or_else(PoisonError::into_inner);
                            block_on(receiver.next())
                        };
                        let Some(job) = next else { break };
                        // A panic (a bug, or a corrupt page redb did not expect) fails this
                        // read only: the job's answer channel is dropped, the thread goes on.
                        if catch_unwind(AssertUnwindSafe(|| job(&db))).is_err() {
                            tracing::error!("a block store read panicked");
                        }
                    }
                })?;
            // Pushed at once, so that `Drop` stops and joins the threads already started if a
            // later spawn fails.
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Runs `read` on a reader thread and returns its answer.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce(&Files) -> T + Send + 'static,
    ) -> Result<T, ReaderGone> {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |db| {
            let _ = answer.send(read(db));
        });
        self.jobs.clone().send(job).await.map_err(|_| ReaderGone)?;
        answered.await.map_err(|_| ReaderGone)
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        // No read future outlives the store, so closing the queue ends every thread once it
        // has run what was queued.
        self.jobs.close_channel();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
