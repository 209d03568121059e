//! A loopback TCP proxy per link, with a rate, a one-way delay and a cut switch: Bitswap
//! transfers in tests and benches can then be measured on links with bandwidth and latency.
//!
//! A client dials the proxy at `127.0.0.1:PROXY_PORT`; the proxy dials the real target (a seed)
//! and forwards both ways, shaped as the [`Link`] says.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! use link_shaper::{Link, Proxy};
//! use tokio::{
//!     io::{AsyncReadExt, AsyncWriteExt},
//!     net::{TcpListener, TcpStream},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // A plain echo server.
//! let server = TcpListener::bind("127.0.0.1:0").await?;
//! let target = server.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((mut stream, _)) = server.accept().await {
//!         tokio::spawn(async move {
//!             let (mut r, mut w) = stream.split();
//!             let _ = tokio::io::copy(&mut r, &mut w).await;
//!         });
//!     }
//! });
//!
//! // Behind a link of 10 MB/s and 20 ms each way.
//! let link = Link::default()
//!     .with_rate(Some(10_000_000))
//!     .with_delay(Duration::from_millis(20));
//! let proxy = Proxy::start(target, link).await?;
//!
//! let mut stream = TcpStream::connect(proxy.local_addr()).await?;
//! let start = Instant::now();
//! stream.write_all(b"ping").await?;
//! let mut reply = [0; 4];
//! stream.read_exact(&mut reply).await?;
//! assert_eq!(&reply, b"ping");
//! assert!(start.elapsed() >= Duration::from_millis(40));
//! assert_eq!(proxy.stats().up.forwarded, 4);
//!
//! // Stops the listener and closes every connection.
//! let stats = proxy.shutdown().await;
//! assert_eq!(stats.open_connections, 0);
//! # Ok(())
//! # }
//! ```
//!
//! # Model
//!
//! - One link is one proxy listener. Libp2p may open several TCP connections through it; they
//!   share the link.
//! - [`Direction::Up`] goes from the client to the target, [`Direction::Down`] back. Each has
//!   its own rate and delay.
//! - The rate of a direction is a token bucket shared by all the link's connections, with a
//!   burst of [`Link::burst`]. A chunk read from the sender waits for its tokens, then for the
//!   delay, and is written to the receiver no earlier than its read time plus the delay. Chunks
//!   of one connection and direction are written in the order they were read.
//! - Each connection and direction holds at most [`Link::queue_limit`] bytes read and not yet
//!   written; beyond it, the proxy stops reading and the sender's TCP window fills.
//! - [`ProxyHandle::cut`] closes every connection of the link at once and closes new ones on
//!   arrival until [`ProxyHandle::restore`]; [`ProxyHandle::set_link`] reshapes it at run time;
//!   [`ProxyHandle::stats`] counts bytes forwarded and queued each way.
//! - The proxy binds `127.0.0.1` only. Connection set-up is not delayed; the first bytes each
//!   way are.
//!
//! # Throughput
//!
//! The proxy must not be the bottleneck of the links it shapes (benches use 5 to 40 MB/s).
//! Measured on the development machine (2 cores, busy with fuzzing, load about 2.5), 256 MiB
//! through an unlimited link on one connection, three runs each way:
//!
//! | build   | direct          | through the proxy |
//! | ------- | --------------- | ----------------- |
//! | release | 1.7 to 2.9 GB/s | 0.95 to 1.4 GB/s  |
//! | debug   | 1.8 to 2.2 GB/s | 0.9 to 1.1 GB/s   |
//!
//! (`cargo test -p link-shaper --release --test shaping -- --ignored --nocapture --exact
//! unshaped_throughput`.) Shaped, one connection moving 2 s of data (its time includes one
//! round trip): 5 MB/s and 25 ms each way carried 4.9 MB/s, 40 MB/s and 25 ms carried 39.0, and
//! 20 MB/s and 100 ms carried 18.2 (`--exact shaped_throughput`).

mod bucket;
mod link;
mod pipe;
mod proxy;

pub use link::{Direction, Link};
pub use proxy::{DirectionStats, Proxy, ProxyHandle, Stats};
