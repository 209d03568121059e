//! What the crate's tests, the workspace's benches and other embedders' tests share (the
//! `testing` cargo feature): a swarm polled by a task of its own.

use std::fmt;

use futures::StreamExt;
use libp2p::{Swarm, swarm::NetworkBehaviour};
use tokio::{sync::oneshot, task::JoinHandle};

/// A swarm polled by its own tokio task until [stopped](Self::stop), which hands it back.
///
/// Dropping it leaves the task running until the runtime shuts down.
pub struct Driver<B: NetworkBehaviour> {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Swarm<B>>,
}

impl<B: NetworkBehaviour> fmt::Debug for Driver<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Driver").finish_non_exhaustive()
    }
}

impl<B> Driver<B>
where
    B: NetworkBehaviour + Send + 'static,
    B::ToSwarm: Send,
{
    /// Spawns the task polling `swarm` (its events are dropped). Must be called within a tokio
    /// runtime.
    pub fn start(mut swarm: Swarm<B>) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return swarm,
                    _ = swarm.select_next_some() => {}
                }
            }
        });
        Self { stop, task }
    }

    /// Stops polling and returns the swarm.
    ///
    /// # Panics
    ///
    /// If the task panicked.
    pub async fn stop(self) -> Swarm<B> {
        let _ = self.stop.send(());
        self.task.await.expect("driver task")
    }
}
