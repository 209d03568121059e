//! The proxy of one link: a listener on 127.0.0.1, a task per connection, and the handle.

use std::{
    io,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot},
    task::{JoinHandle, JoinSet},
    time::sleep,
};

use crate::{Direction, Link, bucket::Bucket, pipe::pump};

/// Starts proxies; see [`Proxy::start`].
#[derive(Debug)]
pub struct Proxy;

impl Proxy {
    /// Starts a proxy for one link to `target`: binds a listener on `127.0.0.1` (port chosen by
    /// the system, see [`ProxyHandle::local_addr`]) and forwards every connection made to it to
    /// `target`, shaped as `link` says.
    ///
    /// Must be called within a Tokio runtime with the time and I/O drivers enabled; the proxy's
    /// tasks run on it until the handle is dropped or [shut down](ProxyHandle::shutdown).
    ///
    /// # Errors
    ///
    /// The error of binding the listener.
    pub async fn start(target: SocketAddr, link: Link) -> io::Result<ProxyHandle> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(link));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(listen(listener, target, Arc::clone(&shared), stopped));
        Ok(ProxyHandle {
            local_addr,
            target,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

/// A running proxy of one link.
///
/// Dropping the handle stops the listener and closes every connection of the link;
/// [`shutdown`](Self::shutdown) does the same and waits until every task has ended.
#[derive(Debug)]
pub struct ProxyHandle {
    local_addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl ProxyHandle {
    /// The address clients dial: `127.0.0.1` and the proxy's port.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the proxy forwards to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// The link's current shape.
    pub fn link(&self) -> Link {
        self.shared.link()
    }

    /// Changes the link's shape at run time, for every connection, current and new.
    ///
    /// A new rate applies from the next chunk read (a chunk already waiting for the old rate
    /// keeps its wait; debt owed to the old rate is forgiven). A new delay applies to chunks read
    /// from now on; chunks still keep their order, so a shorter delay takes effect once the
    /// chunks queued under the longer one are out. A new queue bound applies to the next chunk
    /// read.
    pub fn set_link(&self, link: Link) {
        *self
            .shared
            .link
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = link;
        for bucket in &self.shared.buckets {
            bucket
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .forgive();
        }
    }

    /// Cuts the link: closes every current connection at once (both the client's and the
    /// target's side), and closes each new connection as soon as it is accepted, until
    /// [`restore`](Self::restore).
    ///
    /// No byte is forwarded on a current connection once `cut` has returned; the sockets are
    /// closed by the proxy's tasks a moment later.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        self.shared.changed.notify_one();
    }

    /// Restores a cut link: new connections are forwarded again. Connections closed by the cut
    /// stay closed.
    pub fn restore(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// The link's counters now.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Stops the listener, closes every connection and waits until all of the proxy's tasks
    /// have ended; returns the final counters.
    pub async fn shutdown(mut self) -> Stats {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            // The listener only ends by being told to (or by a panic, which is the caller's
            // to see in its tests).
            if let Err(e) = task.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        self.shared.stats()
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        // Aborting the listener drops its set of connection tasks, which aborts them all.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The counters of one link, summed over its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// From the client to the target.
    pub up: DirectionStats,
    /// From the target to the client.
    pub down: DirectionStats,
    /// Connections open now (accepted and not yet closed).
    pub open_connections: u64,
    /// Connections accepted and forwarded since the start.
    pub accepted: u64,
    /// Connections closed on arrival because the link was cut.
    pub refused: u64,
}

impl Stats {
    /// The counters of `direction`.
    pub fn direction(&self, direction: Direction) -> DirectionStats {
        match direction {
            Direction::Up => self.up,
            Direction::Down => self.down,
        }
    }
}

/// The counters of one direction of a link, summed over its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DirectionStats {
    /// Bytes written to the receiving side, in total.
    pub forwarded: u64,
    /// Bytes read from the sending side and not yet written, now, over all connections.
    pub queued: u64,
    /// The most bytes one connection has held queued, since the start; at most
    /// [`Link::queue_limit`] of the link at the time.
    pub peak_queued: u64,
}

#[derive(Debug, Default)]
struct DirectionCounters {
    forwarded: AtomicU64,
    queued: AtomicU64,
    peak_queued: AtomicU64,
}

/// What a link's listener, connections and handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    link: Mutex<Link>,
    buckets: [Mutex<Bucket>; 2],
    cut: AtomicBool,
    /// Incremented by each cut: a connection started under an older epoch is closed.
    epoch: AtomicU64,
    /// Signalled by each cut, for the listener.
    changed: Notify,
    counters: [DirectionCounters; 2],
    open: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
}

impl Shared {
    fn new(link: Link) -> Self {
        let now = Instant::now();
        Self {
            link: Mutex::new(link),
            buckets: [Mutex::new(Bucket::new(now)), Mutex::new(Bucket::new(now))],
            cut: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            changed: Notify::new(),
            counters: Default::default(),
            open: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    pub(crate) fn link(&self) -> Link {
        *self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Fails if the link was cut since the connection of `epoch` started.
    pub(crate) fn check_cut(&self, epoch: u64) -> io::Result<()> {
        if self.epoch() == epoch {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::ConnectionAborted, "link cut"))
        }
    }

    /// Waits until `bytes` may go out in `direction` at the link's rate.
    pub(crate) async fn wait_for_rate(&self, direction: Direction, bytes: usize) {
        let link = self.link();
        let (Some(rate), Some(burst)) = (link.rate(direction), link.burst(direction)) else {
            return;
        };
        let wait = self.buckets[direction.index()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(bytes, rate, burst, Instant::now());
        if !wait.is_zero() {
            sleep(wait).await;
        }
    }

    /// Counts `bytes` queued in `direction` by a connection that now holds `connection_queued`.
    pub(crate) fn queued(&self, direction: Direction, bytes: usize, connection_queued: usize) {
        let counters = &self.counters[direction.index()];
        counters.queued.fetch_add(bytes as u64, Ordering::Relaxed);
        counters
            .peak_queued
            .fetch_max(connection_queued as u64, Ordering::Relaxed);
    }

    /// Counts `bytes` written in `direction`.
    pub(crate) fn forwarded(&self, direction: Direction, bytes: usize) {
        let counters = &self.counters[direction.index()];
        counters.queued.fetch_sub(bytes as u64, Ordering::Relaxed);
        counters
            .forwarded
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Uncounts `bytes` queued in `direction` and dropped (the connection closed).
    pub(crate) fn dropped(&self, direction: Direction, bytes: usize) {
        self.counters[direction.index()]
            .queued
            .fetch_sub(bytes as u64, Ordering::Relaxed);
    }

    fn stats(&self) -> Stats {
        let direction = |d: Direction| {
            let c = &self.counters[d.index()];
            DirectionStats {
                forwarded: c.forwarded.load(Ordering::Relaxed),
                queued: c.queued.load(Ordering::Relaxed),
                peak_queued: c.peak_queued.load(Ordering::Relaxed),
            }
        };
        Stats {
            up: direction(Direction::Up),
            down: direction(Direction::Down),
            open_connections: self.open.load(Ordering::SeqCst),
            accepted: self.accepted.load(Ordering::SeqCst),
            refused: self.refused.load(Ordering::SeqCst),
        }
    }
}

/// Accepts connections until told to stop (or the handle is gone), then closes them all.
async fn listen(
    listener: TcpListener,
    target: SocketAddr,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    let mut epoch = shared.epoch();
    loop {
        tokio::select! {
            biased;
            // A message or a dropped handle: either way, stop.
            _ = &mut stop => break,
            () = shared.changed.notified() => {
                let now = shared.epoch();
                if now != epoch {
                    epoch = now;
                    connections.abort_all();
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    if shared.cut.load(Ordering::SeqCst) {
                        shared.refused.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                        continue;
                    }
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    // Counted here, not in the task, so that `open_connections` never misses a
                    // connection that was accepted and not yet polled.
                    shared.open.fetch_add(1, Ordering::SeqCst);
                    let guard = OpenGuard(Arc::clone(&shared));
                    connections.spawn(connection(stream, target, guard, shared.epoch()));
                }
                // Out of file descriptors, or a connection reset before it was accepted: wait
                // a little rather than spin.
                Err(_) => sleep(Duration::from_millis(10)).await,
            },
        }
    }
    connections.shutdown().await;
}

/// Counts one open connection while alive.
struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forwards one connection both ways until both directions have ended, one fails or the link
/// is cut; then closes both sockets.
async fn connection(mut client: TcpStream, target: SocketAddr, guard: OpenGuard, epoch: u64) {
    let shared = &*guard.0;
    let Ok(mut server) = TcpStream::connect(target).await else {
        return;
    };
    if shared.check_cut(epoch).is_err() {
        return;
    }
    // Small messages (a want, a HAVE) must not wait for Nagle: the link's delay is the delay.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let _ = tokio::try_join!(
        pump(shared, epoch, Direction::Up, client_read, server_write),
        pump(shared, epoch, Direction::Down, server_read, client_write),
    );
}
