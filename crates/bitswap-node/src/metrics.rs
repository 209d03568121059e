//! `--metrics ADDR`: the prometheus registry in the text format over a minimal HTTP/1.1
//! responder.
//!
//! One connection at a time, each bounded in time and request size: a scraper needs no more,
//! and nothing a client sends can make the node hold more than one small buffer.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use prometheus_client::{encoding::text::encode, registry::Registry};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

/// Longest request head read.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// How long one connection (request and answer) may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of prometheus-client's text encoding (OpenMetrics).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `address` and serves `registry` at `/metrics` (and `/`) on a task of the current
/// runtime until the task is aborted. Returns the bound address (the port of `:0` filled in)
/// and the task.
pub(crate) async fn serve(
    address: SocketAddr,
    registry: Arc<Registry>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("metrics: listen on {address}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of file descriptors, say: try again later rather than spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // An error or a timeout only ends that connection.
            let _ = tokio::time::timeout(CONNECTION_TIMEOUT, respond(stream, &registry)).await;
        }
    });
    Ok((bound, task))
}

/// Reads one request head and answers it.
async fn respond(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        if request.len() >= MAX_REQUEST_BYTES {
            return write(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buffer[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next());
    match (method, path) {
        (b"GET", Some(b"/metrics" | b"/")) => {
            let mut body = String::new();
            if encode(&mut body, registry).is_err() {
                return write(&mut stream, "500 Internal Server Error", "text/plain", "").await;
            }
            write(&mut stream, "200 OK", CONTENT_TYPE, &body).await
        }
        (b"GET", _) => write(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
        _ => write(&mut stream, "405 Method Not Allowed", "text/plain", "").await,
    }
}

/// Writes a whole response and closes the connection.
async fn write(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    /// Sends `request` and reads the whole answer.
    async fn ask(address: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn serves_the_registry_and_nothing_else() {
        let mut registry = Registry::default();
        let counter = Counter::<u64>::default();
        registry.register("test_things", "Things", counter.clone());
        counter.inc_by(7);
        let (address, task) = serve("127.0.0.1:0".parse().unwrap(), Arc::new(registry))
            .await
            .unwrap();
        let answer = ask(address, "GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("\r\n\r\n# HELP test_things Things."),
            "{answer}"
        );
        assert!(answer.contains("test_things_total 7\n"), "{answer}");
        assert!(answer.ends_with("# EOF\n"), "{answer}");
        let answer = ask(address, "GET /other HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
        let answer = ask(address, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        let answer = ask(address, &"x".repeat(MAX_REQUEST_BYTES)).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        task.abort();
    }
}
