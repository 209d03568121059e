//! The proxy on loopback: bytes intact and in order, the rate, the delay, the shared bucket, the
//! cut, the bounded queue. Every test has a time bound and ends every task it started.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use link_shaper::{Direction, Link, Proxy, ProxyHandle};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpSocket, TcpStream},
    sync::mpsc,
    task::{JoinHandle, JoinSet},
    time::{sleep, timeout},
};

/// Every test ends within this, whatever happens.
const TEST_BOUND: Duration = Duration::from_secs(20);

async fn bounded<F: Future<Output = ()>>(test: F) {
    timeout(TEST_BOUND, test).await.expect("test timed out");
}

/// A target server. Each connection starts with a command byte:
/// - `E`: echo everything until the end of stream;
/// - `D` and a big-endian `u64` n: send n pattern bytes, then close;
/// - `S`: read until the end of stream, then reply with the count as a big-endian `u64`;
/// - `Z` and a big-endian `u64` n: send n zeros, then close;
/// - `H`: hold the connection without ever reading.
///
/// Each connection reports on `closed` when its reading side sees the end (0 or an error).
struct Server {
    addr: SocketAddr,
    closed: mpsc::Receiver<()>,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Server {
    async fn start() -> Self {
        Self::start_with(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    /// A server whose sockets have a small receive buffer, so that a peer's writes stall soon.
    fn start_small_buffers() -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        Self::start_with(socket.listen(16).unwrap())
    }

    fn start_with(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let (report, closed) = mpsc::channel(64);
        let connections = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            // Aborting the accept loop drops this set, which aborts every connection task.
            let mut tasks = JoinSet::new();
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tasks.spawn(serve(stream, report.clone()));
            }
        });
        Self {
            addr,
            closed,
            connections,
            task,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: TcpStream, closed: mpsc::Sender<()>) {
    let _ = stream.set_nodelay(true);
    let mut command = [0; 1];
    if stream.read_exact(&mut command).await.is_err() {
        let _ = closed.send(()).await;
        return;
    }
    let (mut r, mut w) = stream.split();
    match command[0] {
        b'E' => {
            let mut buf = vec![0; 64 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = closed.send(()).await;
        }
        b'D' => {
            let n = r.read_u64().await.unwrap();
            w.write_all(&pattern(n, n as usize)).await.unwrap();
        }
        b'S' => {
            let mut sink = tokio::io::sink();
            let n = tokio::io::copy(&mut r, &mut sink).await.unwrap();
            w.write_u64(n).await.unwrap();
        }
        b'Z' => {
            let mut n = r.read_u64().await.unwrap();
            let buf = vec![0; 64 * 1024];
            while n > 0 {
                let len = buf.len().min(n as usize);
                w.write_all(&buf[..len]).await.unwrap();
                n -= len as u64;
            }
        }
        b'H' => std::future::pending().await,
        other => panic!("unknown command {other}"),
    }
}

/// Deterministic bytes that differ from one `seed` to another (xorshift).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Asks the server through `proxy` for `n` bytes and returns how long they took to arrive.
async fn download(proxy: SocketAddr, n: u64) -> Duration {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let start = Instant::now();
    stream.write_u8(b'D').await.unwrap();
    stream.write_u64(n).await.unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(got, pattern(n, n as usize));
    elapsed
}

/// Sends `n` bytes to the server through `proxy` and returns how long until it counted them.
async fn upload(proxy: SocketAddr, n: usize) -> Duration {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let start = Instant::now();
    stream.write_u8(b'S').await.unwrap();
    stream.write_all(&vec![7; n]).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(stream.read_u64().await.unwrap(), n as u64);
    start.elapsed()
}

/// Whether the stream's reading side is at its end (0 or an error) within `bound`.
async fn sees_closed(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0; 64];
    loop {
        match timeout(bound, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            // Bytes sent before the close may still arrive.
            Ok(Ok(_)) => {}
        }
    }
}

/// Starts a [`Server`] and a proxy to it over `link`.
async fn proxied(link: Link) -> (Server, ProxyHandle) {
    let server = Server::start().await;
    let proxy = Proxy::start(server.addr, link).await.unwrap();
    (server, proxy)
}

/// Shuts the proxy down and checks that it left nothing behind.
async fn finish(proxy: ProxyHandle) -> link_shaper::Stats {
    let stats = proxy.shutdown().await;
    assert_eq!(stats.open_connections, 0);
    assert_eq!(stats.up.queued, 0);
    assert_eq!(stats.down.queued, 0);
    stats
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_arrive_intact_and_in_order_both_ways() {
    bounded(async {
        let (_server, proxy) = proxied(
            Link::default()
                .with_up_rate(Some(20_000_000))
                .with_down_rate(Some(30_000_000))
                .with_up_delay(Duration::from_millis(5))
                .with_down_delay(Duration::from_millis(10)),
        )
        .await;
        const CONNECTIONS: u64 = 4;
        const LEN: usize = 1 << 20;
        let mut clients = JoinSet::new();
        for seed in 0..CONNECTIONS {
            let addr = proxy.local_addr();
            clients.spawn(async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                let (mut r, mut w) = stream.into_split();
                let data = pattern(seed, LEN);
                let sent = data.clone();
                let writer = tokio::spawn(async move {
                    w.write_u8(b'E').await.unwrap();
                    // Writes of uneven sizes, so chunks do not line up with writes.
                    let mut rest = &sent[..];
                    let mut size = 1;
                    while !rest.is_empty() {
                        let n = size.min(rest.len());
                        w.write_all(&rest[..n]).await.unwrap();
                        rest = &rest[n..];
                        size = size * 3 % 100_003 + 1;
                    }
                    w.shutdown().await.unwrap();
                });
                let mut echoed = Vec::with_capacity(LEN);
                r.read_to_end(&mut echoed).await.unwrap();
                writer.await.unwrap();
                assert!(echoed == data, "connection {seed}: bytes differ");
            });
        }
        while let Some(done) = clients.join_next().await {
            done.unwrap();
        }
        let stats = finish(proxy).await;
        let total = CONNECTIONS * (LEN as u64 + 1);
        assert_eq!(stats.up.forwarded, total);
        assert_eq!(stats.down.forwarded, total - CONNECTIONS);
        assert_eq!(stats.accepted, CONNECTIONS);
    })
    .await;
}

#[tokio::test]
async fn two_megabytes_at_one_megabyte_per_second_take_two_seconds() {
    bounded(async {
        let (_server, proxy) = proxied(Link::default().with_rate(Some(1_000_000))).await;
        // Both directions at once: each has its own bucket.
        let (down, up) = tokio::join!(
            download(proxy.local_addr(), 2_000_000),
            upload(proxy.local_addr(), 2_000_000),
        );
        println!("2 MB at 1 MB/s: down {down:?}, up {up:?}");
        for (what, took) in [("down", down), ("up", up)] {
            assert!(
                took > Duration::from_millis(1600) && took < Duration::from_secs(3),
                "{what}: 2 MB took {took:?}"
            );
        }
        finish(proxy).await;
    })
    .await;
}

#[tokio::test]
async fn a_round_trip_takes_both_delays() {
    bounded(async {
        let (_server, proxy) = proxied(Link::default().with_delay(Duration::from_millis(50))).await;
        let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(b"E").await.unwrap();
        for _ in 0..3 {
            let start = Instant::now();
            stream.write_all(b"hello").await.unwrap();
            let mut reply = [0; 5];
            stream.read_exact(&mut reply).await.unwrap();
            let rtt = start.elapsed();
            println!("round trip at 50 ms each way: {rtt:?}");
            assert_eq!(&reply, b"hello");
            assert!(
                rtt >= Duration::from_millis(100) && rtt < Duration::from_millis(400),
                "round trip took {rtt:?}"
            );
        }
        drop(stream);
        finish(proxy).await;
    })
    .await;
}

#[tokio::test]
async fn a_changed_link_applies_to_open_connections() {
    bounded(async {
        let (_server, proxy) = proxied(Link::default()).await;
        let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
        stream.set_nodelay(true).unwrap();
        stream.write_all(b"E").await.unwrap();
        let mut reply = [0; 5];
        let start = Instant::now();
        stream.write_all(b"hello").await.unwrap();
        stream.read_exact(&mut reply).await.unwrap();
        assert!(start.elapsed() < Duration::from_millis(100));

        let link = Link::default()
            .with_up_delay(Duration::from_millis(30))
            .with_down_delay(Duration::from_millis(70));
        proxy.set_link(link);
        assert_eq!(proxy.link(), link);
        let start = Instant::now();
        stream.write_all(b"hello").await.unwrap();
        stream.read_exact(&mut reply).await.unwrap();
        let rtt = start.elapsed();
        assert!(rtt >= Duration::from_millis(100), "round trip took {rtt:?}");
        drop(stream);
        finish(proxy).await;
    })
    .await;
}

#[tokio::test]
async fn connections_of_a_link_share_its_rate() {
    bounded(async {
        let (_server, proxy) = proxied(Link::default().with_down_rate(Some(1_000_000))).await;
        let start = Instant::now();
        let (a, b) = tokio::join!(
            download(proxy.local_addr(), 1_000_000),
            download(proxy.local_addr(), 1_000_000),
        );
        let total = start.elapsed();
        println!("2 x 1 MB at 1 MB/s: {total:?} ({a:?} and {b:?})");
        assert!(
            total > Duration::from_millis(1600) && total < Duration::from_secs(3),
            "two 1 MB downloads took {total:?} together ({a:?} and {b:?})"
        );
        // Interleaved, not one after the other: both finish near the end.
        assert!(a.min(b) > Duration::from_millis(1200), "{a:?} and {b:?}");
        let stats = finish(proxy).await;
        assert_eq!(stats.down.forwarded, 2_000_000);
        assert_eq!(stats.accepted, 2);
    })
    .await;
}

#[tokio::test]
async fn a_cut_closes_both_sides_and_refuses_until_restored() {
    bounded(async {
        let (mut server, proxy) =
            proxied(Link::default().with_delay(Duration::from_millis(5))).await;
        let bound = Duration::from_secs(1);

        let mut streams = Vec::new();
        for _ in 0..2 {
            let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
            stream.write_all(b"Eabc").await.unwrap();
            let mut reply = [0; 3];
            stream.read_exact(&mut reply).await.unwrap();
            assert_eq!(&reply, b"abc");
            streams.push(stream);
        }
        // A transfer in progress on the first connection.
        streams[0].write_all(&[1; 100_000]).await.unwrap();

        proxy.cut();
        assert!(proxy.is_cut());
        for stream in &mut streams {
            assert!(sees_closed(stream, bound).await, "client side still open");
        }
        for _ in 0..2 {
            timeout(bound, server.closed.recv())
                .await
                .expect("target side still open")
                .unwrap();
        }
        assert_eq!(proxy.stats().open_connections, 0);

        // New connections are closed on arrival and never reach the target.
        let mut refused = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let _ = refused.write_all(b"Eabc").await;
        assert!(sees_closed(&mut refused, bound).await);
        assert_eq!(server.connections.load(Ordering::SeqCst), 2);
        assert_eq!(proxy.stats().refused, 1);

        proxy.restore();
        assert!(!proxy.is_cut());
        let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
        stream.write_all(b"Exyz").await.unwrap();
        let mut reply = [0; 3];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"xyz");
        drop(stream);
        let stats = finish(proxy).await;
        assert_eq!(stats.accepted, 3);
    })
    .await;
}

#[tokio::test]
async fn a_receiver_that_does_not_read_cannot_grow_the_queue_past_its_bound() {
    bounded(async {
        let server = Server::start_small_buffers();
        // Unlimited and delayed: the proxy reads as fast as the sender writes.
        let link = Link::default().with_delay(Duration::from_millis(20));
        let limit = link.queue_limit(Direction::Up) as u64;
        let proxy = Proxy::start(server.addr, link).await.unwrap();

        let written = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&written);
        let addr = proxy.local_addr();
        let sender = tokio::spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(b"H").await.unwrap();
            let chunk = vec![0; 64 * 1024];
            // Until the test aborts it.
            while stream.write_all(&chunk).await.is_ok() {
                count.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        });

        // The sender stalls once the queue and the sockets' buffers are full.
        let mut last = 0;
        let stalled = async {
            loop {
                sleep(Duration::from_millis(300)).await;
                let now = written.load(Ordering::SeqCst);
                if now == last && now > limit {
                    break;
                }
                last = now;
            }
        };
        timeout(Duration::from_secs(10), stalled)
            .await
            .expect("the sender never stalled");

        let stats = proxy.stats();
        assert!(
            stats.up.queued <= limit,
            "{} queued > {limit}",
            stats.up.queued
        );
        assert!(
            stats.up.peak_queued <= limit,
            "peak {}",
            stats.up.peak_queued
        );
        // Full, not merely bounded: the bound is what stopped the reader.
        assert!(
            stats.up.peak_queued > limit - 64 * 1024,
            "peak {}",
            stats.up.peak_queued
        );
        // What the sender got rid of is the queue plus the sockets' buffers, not more.
        let written = written.load(Ordering::SeqCst);
        println!("limit {limit}, written {written}, {stats:?}");
        assert!(written < limit + (64 << 20), "{written} bytes written");

        sender.abort();
        let _ = sender.await;
        finish(proxy).await;
    })
    .await;
}

#[tokio::test]
async fn dropping_the_handle_closes_every_connection() {
    bounded(async {
        let (mut server, proxy) = proxied(Link::default()).await;
        let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
        stream.write_all(b"Eabc").await.unwrap();
        let mut reply = [0; 3];
        stream.read_exact(&mut reply).await.unwrap();
        let addr = proxy.local_addr();
        drop(proxy);
        let bound = Duration::from_secs(1);
        assert!(sees_closed(&mut stream, bound).await);
        timeout(bound, server.closed.recv()).await.unwrap().unwrap();
        // The listener is gone too.
        let refused = async {
            match TcpStream::connect(addr).await {
                Err(_) => true,
                Ok(mut stream) => sees_closed(&mut stream, bound).await,
            }
        };
        assert!(refused.await);
    })
    .await;
}

/// Sends `n` bytes to `addr` and reads `n` back (`Z`), without keeping them; returns the
/// rates up and down in MB/s.
async fn measure(addr: SocketAddr, n: u64) -> (f64, f64) {
    let buf = vec![0; 64 * 1024];
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    stream.write_u8(b'S').await.unwrap();
    let mut left = n;
    while left > 0 {
        let len = buf.len().min(left as usize);
        stream.write_all(&buf[..len]).await.unwrap();
        left -= len as u64;
    }
    stream.shutdown().await.unwrap();
    assert_eq!(stream.read_u64().await.unwrap(), n);
    let up = n as f64 / start.elapsed().as_secs_f64() / 1e6;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    stream.write_u8(b'Z').await.unwrap();
    stream.write_u64(n).await.unwrap();
    let mut sink = tokio::io::sink();
    assert_eq!(tokio::io::copy(&mut stream, &mut sink).await.unwrap(), n);
    let down = n as f64 / start.elapsed().as_secs_f64() / 1e6;
    (up, down)
}

/// What the proxy forwards unshaped on this machine, next to a direct connection; run by hand:
/// `cargo test -p link-shaper --release --test shaping -- --ignored --nocapture --exact
/// unshaped_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn unshaped_throughput() {
    let (server, proxy) = proxied(Link::default()).await;
    const LEN: u64 = 256 << 20;
    for _ in 0..3 {
        let (up, down) = measure(server.addr, LEN).await;
        println!("256 MiB direct:        up {up:6.0} MB/s, down {down:6.0} MB/s");
        let (up, down) = measure(proxy.local_addr(), LEN).await;
        println!("256 MiB through proxy: up {up:6.0} MB/s, down {down:6.0} MB/s");
    }
    finish(proxy).await;
}

/// What one connection gets through links like the bench's; run by hand:
/// `cargo test -p link-shaper --release --test shaping -- --ignored --nocapture --exact
/// shaped_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn shaped_throughput() {
    let server = Server::start().await;
    for (rate, delay) in [(5, 25), (40, 25), (20, 100)] {
        let link = Link::default()
            .with_rate(Some(rate * 1_000_000))
            .with_delay(Duration::from_millis(delay));
        let proxy = Proxy::start(server.addr, link).await.unwrap();
        let (up, down) = measure(proxy.local_addr(), rate * 2_000_000).await;
        println!("{rate} MB/s, {delay} ms each way: up {up:.1} MB/s, down {down:.1} MB/s");
        finish(proxy).await;
    }
}
