//! The redb block store across reopenings: durability at flush, corrupt and truncated files,
//! and a crash test that SIGKILLs a writing child process.

use std::{
    fs::{self, OpenOptions},
    io::{BufRead, BufReader, Seek, SeekFrom, Write},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use bitswap::{Block, Blockstore, RedbBlockstore, RedbBlockstoreError, RedbConfig, RedbOpenError};
use bytes::Bytes;
use cid::Cid;
use futures::executor::block_on;

/// Deterministic bytes: a splitmix64 stream seeded by `seed`.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Block `i` of the crash child's sequence: 1 KiB to 64 KiB of deterministic bytes.
fn numbered_block(i: u64) -> Block {
    let len = 1024 + (i as usize * 7919) % (63 * 1024);
    Block::from_v0_data(Bytes::from(bytes(i, len))).unwrap()
}

/// The CIDv1 (raw codec) of the same multihash as `cid`.
fn v1(cid: &Cid) -> Cid {
    Cid::new_v1(0x55, *cid.hash())
}

fn open(path: &Path) -> RedbBlockstore {
    RedbBlockstore::open(path, RedbConfig::default()).unwrap()
}

#[test]
fn flushed_blocks_survive_reopening_under_either_cid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    let blocks: Vec<_> = (0..20).map(numbered_block).collect();
    {
        let store = open(&path);
        block_on(store.put_many(blocks.clone())).unwrap();
        block_on(store.delete(&v1(blocks[3].cid()))).unwrap();
        block_on(store.flush()).unwrap();
    }
    let store = open(&path);
    for (i, block) in blocks.iter().enumerate() {
        let got = block_on(store.get(block.cid())).unwrap();
        let got_v1 = block_on(store.get(&v1(block.cid()))).unwrap();
        if i == 3 {
            assert_eq!(got, None);
            assert_eq!(got_v1, None);
            assert!(!block_on(store.has(block.cid())).unwrap());
            continue;
        }
        assert_eq!(got.as_ref(), Some(block));
        let got_v1 = got_v1.unwrap();
        assert_eq!(got_v1.cid(), &v1(block.cid()));
        assert_eq!(got_v1.data(), block.data());
        assert_eq!(
            block_on(store.get_size(&v1(block.cid()))).unwrap(),
            Some(block.data().len())
        );
    }
}

#[test]
fn dropping_the_store_commits_what_was_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    let blocks: Vec<_> = (0..50).map(numbered_block).collect();
    {
        let store = RedbBlockstore::open(
            &path,
            RedbConfig::default()
                .with_write_buffer(64 * 1024)
                .with_max_batch(16 * 1024),
        )
        .unwrap();
        for block in &blocks {
            block_on(store.put(block.clone())).unwrap();
        }
    }
    let store = open(&path);
    for block in &blocks {
        assert_eq!(
            block_on(store.get(block.cid())).unwrap().as_ref(),
            Some(block)
        );
    }
    block_on(store.close()).unwrap();
    // Closed: the file is free again.
    drop(open(&path));
}

/// Bytes changed on disk under a block's key are reported as corrupt, never returned, and a
/// put of the block repairs them.
#[test]
fn a_corrupt_block_is_an_error_until_put_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    let blocks = populated(&path);
    let victim = &blocks[5];
    {
        // The store's own layout: table `blocks`, multihash bytes to block bytes.
        let db = redb::Database::open(&path).unwrap();
        let write = db.begin_write().unwrap();
        write
            .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("blocks"))
            .unwrap()
            .insert(
                victim.cid().hash().to_bytes().as_slice(),
                b"not the block".as_slice(),
            )
            .unwrap();
        write.commit().unwrap();
    }
    let store = open(&path);
    let error = block_on(store.get(victim.cid())).unwrap_err();
    assert!(
        matches!(&error, RedbBlockstoreError::Corrupt { cid, .. } if **cid == *victim.cid()),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("stored block {} is corrupt", victim.cid())
    );
    assert_eq!(
        block_on(store.get(blocks[6].cid())).unwrap().as_ref(),
        Some(&blocks[6])
    );
    block_on(store.put(victim.clone())).unwrap();
    block_on(store.flush()).unwrap();
    assert_eq!(
        block_on(store.get(victim.cid())).unwrap().as_ref(),
        Some(victim)
    );
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    let _store = open(&path);
    let error = RedbBlockstore::open(&path, RedbConfig::default()).unwrap_err();
    assert!(
        matches!(error, RedbOpenError::AlreadyOpen { .. }),
        "{error:?}"
    );
}

#[test]
fn another_redb_database_is_not_a_block_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        write
            .open_table(redb::TableDefinition::<u64, u64>::new("numbers"))
            .unwrap()
            .insert(1, 2)
            .unwrap();
        write.commit().unwrap();
    }
    let error = RedbBlockstore::open(&path, RedbConfig::default()).unwrap_err();
    assert!(
        matches!(
            error,
            RedbOpenError::UnsupportedFormat {
                found: None,
                expected: 1
            }
        ),
        "{error:?}"
    );
}

/// A closed store of 40 blocks of 1-64 KiB, and its blocks.
fn populated(path: &Path) -> Vec<Block> {
    let blocks: Vec<_> = (0..40).map(numbered_block).collect();
    let store = open(path);
    block_on(store.put_many(blocks.clone())).unwrap();
    block_on(store.close()).unwrap();
    blocks
}

fn assert_corrupt_at_open(path: &Path) {
    match RedbBlockstore::open(path, RedbConfig::default()) {
        Err(error @ RedbOpenError::Corrupt { .. }) => assert_eq!(
            error.to_string(),
            format!("block store file {} is corrupt", path.display())
        ),
        other => panic!("expected a corrupt-file error, got {other:?}"),
    }
}

#[test]
fn a_truncated_file_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    populated(&path);
    let len = fs::metadata(&path).unwrap().len();
    for keep in [len / 2, 8192, 4096, 100, 1, 0] {
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(keep).unwrap();
        drop(file);
        assert_corrupt_at_open(&path);
    }
}

#[test]
fn a_file_of_garbage_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    for (name, len) in [("small", 512), ("page", 4096), ("large", 1 << 20)] {
        let path = dir.path().join(name);
        fs::write(&path, bytes(len as u64, len)).unwrap();
        assert_corrupt_at_open(&path);
    }
}

#[test]
fn a_garbage_header_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    populated(&path);
    let mut file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(&bytes(7, 4096)).unwrap();
    drop(file);
    assert_corrupt_at_open(&path);
}

/// Garbage anywhere in the file: opening fails with a typed error, or reads fail with typed
/// errors or return intact blocks. Never a panic, never wrong bytes.
#[test]
fn garbage_anywhere_gives_errors_or_intact_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().join("clean.redb");
    let blocks = populated(&clean);
    let len = fs::metadata(&clean).unwrap().len();
    let mut outcomes = [0_usize; 3];
    for trial in 0..40_u64 {
        let path = dir.path().join(format!("trial-{trial}.redb"));
        fs::copy(&clean, &path).unwrap();
        let at = bytes(trial, 8)
            .iter()
            .fold(0_u64, |acc, b| acc << 8 | u64::from(*b))
            % len;
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&bytes(trial + 1000, 512)).unwrap();
        drop(file);
        let Ok(store) = RedbBlockstore::open(&path, RedbConfig::default()) else {
            outcomes[0] += 1;
            continue;
        };
        for block in &blocks {
            match block_on(store.get(block.cid())) {
                Ok(Some(got)) => {
                    assert_eq!(&got, block);
                    outcomes[1] += 1;
                }
                Ok(None) | Err(_) => outcomes[2] += 1,
            }
        }
    }
    println!("refused at open, intact reads, failed or missing reads: {outcomes:?}");
}

/// Set in the environment of the crash test's child: the store file it writes to.
const CHILD_PATH_ENV: &str = "BITSWAP_BLOCKSTORE_CRASH_CHILD";
/// Set in the environment of the crash test's child: the number of its first block.
const CHILD_START_ENV: &str = "BITSWAP_BLOCKSTORE_CRASH_START";
/// Blocks per `put_many` of the child.
const CHILD_BATCH: u64 = 8;
/// The child flushes after every this many `put_many`.
const CHILD_PUTS_PER_FLUSH: u64 = 4;

/// Not a test on its own: the body of the crash test's child process, which re-runs this
/// binary with only this test and [`CHILD_PATH_ENV`] set. It puts numbered blocks in a loop,
/// flushes every few puts, and prints `put N` and `flushed N` (blocks `start..N`) as it goes,
/// until it is killed (or after 60 s, so that it never outlives a lost parent for long).
#[test]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_PATH_ENV) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START_ENV).unwrap().parse().unwrap();
    // Small batches: the writer also commits between flushes, so kills land in those commits
    // too, and some unflushed blocks survive.
    let store = RedbBlockstore::open(
        Path::new(&path),
        RedbConfig::default().with_max_batch(64 * 1024),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = start;
    let mut stdout = std::io::stdout();
    for round in 1.. {
        if Instant::now() > deadline {
            return;
        }
        let blocks = (next..next + CHILD_BATCH).map(numbered_block).collect();
        block_on(store.put_many(blocks)).unwrap();
        next += CHILD_BATCH;
        if round % CHILD_PUTS_PER_FLUSH == 0 {
            block_on(store.flush()).unwrap();
            writeln!(stdout, "flushed {next}").unwrap();
        } else {
            writeln!(stdout, "put {next}").unwrap();
        }
        stdout.flush().unwrap();
    }
}

/// Kills and reaps the child when dropped, whatever happened to the test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the child printed before it died: the highest `flushed` and `put` counts.
#[derive(Debug, Default)]
struct ChildProgress {
    flushed: Option<u64>,
    put: Option<u64>,
}

impl ChildProgress {
    fn see(&mut self, line: &str) {
        if let Some(n) = line.strip_prefix("flushed ") {
            let n = n.trim().parse().unwrap();
            self.flushed = self.flushed.max(Some(n));
            self.put = self.put.max(Some(n));
        } else if let Some(n) = line.strip_prefix("put ") {
            self.put = self.put.max(Some(n.trim().parse().unwrap()));
        }
    }
}

/// Runs the child on `path` from block `start`, lets it flush `flushes` times, waits
/// `extra`, and SIGKILLs it, mid-write most likely. Returns what it printed.
fn run_and_kill_child(path: &Path, start: u64, flushes: usize, extra: Duration) -> ChildProgress {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_PATH_ENV, path)
        .env(CHILD_START_ENV, start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines, received) = mpsc::sync_channel(1024);
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut progress = ChildProgress::default();
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < flushes {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = received
            .recv_timeout(left)
            .unwrap_or_else(|error| panic!("child stalled or died ({error}): {progress:?}"));
        if line.starts_with("flushed ") {
            seen += 1;
        }
        progress.see(&line);
    }
    thread::sleep(extra);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(child);
    // Lines the child wrote before it died are still in the pipe.
    reader.join().unwrap();
    for line in received.try_iter() {
        progress.see(&line);
    }
    progress
}

/// SIGKILLs a child process while it puts and flushes blocks, three times on the same file:
/// every block flushed before a kill is present and intact afterwards, and every other block
/// the child may have put is intact or absent, never corrupt.
#[test]
fn blocks_flushed_before_a_sigkill_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocks.redb");
    // (first block, last block flushed) of every round so far.
    let mut flushed_ranges = Vec::new();
    for (round, extra_ms) in [0_u64, 7, 23].into_iter().enumerate() {
        let start = round as u64 * 1_000_000;
        let progress = run_and_kill_child(&path, start, 3, Duration::from_millis(extra_ms));
        let flushed = progress.flushed.unwrap();
        let put = progress.put.unwrap();
        flushed_ranges.push(start..flushed);

        let store = RedbBlockstore::open(&path, RedbConfig::default())
            .unwrap_or_else(|error| panic!("reopening after the kill: {error:?}"));
        for i in flushed_ranges.iter().flat_map(Clone::clone) {
            let block = numbered_block(i);
            let got = block_on(store.get(block.cid())).unwrap();
            assert_eq!(got.as_ref(), Some(&block), "flushed block {i} lost");
        }
        // The child may have accepted puts it did not print yet: up to a write buffer more.
        let mut unflushed_present = 0;
        for i in flushed..put + 64 * CHILD_BATCH {
            let block = numbered_block(i);
            match block_on(store.get(block.cid())) {
                Ok(Some(got)) => {
                    assert_eq!(got, block);
                    unflushed_present += 1;
                }
                Ok(None) => {}
                Err(error) => panic!("unflushed block {i} is unreadable: {error:?}"),
            }
            let size = block_on(store.get_size(block.cid())).unwrap();
            assert!(size.is_none() || size == Some(block.data().len()));
        }
        println!(
            "round {round}: flushed {}, printed put {}, unflushed blocks present {unflushed_present}",
            flushed - start,
            put - start
        );
        block_on(store.close()).unwrap();
    }
}
