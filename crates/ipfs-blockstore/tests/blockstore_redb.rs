//! The redb block store across reopenings: durability at flush, corrupt and truncated files,
//! and a crash test that SIGKILLs a writing child process.

mod support;

use std::{
    fs::{self, OpenOptions},
    io::{Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cid::Cid;
use futures::executor::block_on;
use ipfs_blockstore::testing::bytes;
use ipfs_blockstore::{
    Block, Blockstore, RedbBlockstore, RedbBlockstoreError, RedbConfig, RedbCorruption,
    RedbOpenError, multicodec::RAW,
};

use support::temp_file;

/// Block `i` of the crash child's sequence: 1 KiB to 64 KiB of deterministic bytes.
fn numbered_block(i: u64) -> Block {
    let len = 1024 + (i as usize * 7919) % (63 * 1024);
    Block::from_v0_data(bytes(i, len)).unwrap()
}

/// Large block `i`: 128 KiB to 640 KiB of deterministic bytes, above the default blob
/// threshold.
fn numbered_large_block(i: u64) -> Block {
    let len = 128 * 1024 + (i as usize * 104_729) % (512 * 1024);
    Block::from_v0_data(bytes(i ^ 0x5eed, len)).unwrap()
}

/// Block `i` of the crash child's sequence, small (in the B-tree) or large (in the blob file).
fn child_block(i: u64, large: bool) -> Block {
    if large {
        numbered_large_block(i)
    } else {
        numbered_block(i)
    }
}

/// The blob file of the store whose database file is `path`.
fn blob_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".blobs");
    name.into()
}

/// A config that sends every large block to the blob file, whatever its batch.
fn blobs_always() -> RedbConfig {
    RedbConfig::default().with_blob_min_batch(0)
}

/// The CIDv1 (raw codec) of the same multihash as `cid`.
fn v1(cid: &Cid) -> Cid {
    Cid::new_v1(RAW, *cid.hash())
}

/// Every block of `blocks` reads back intact from `store`.
fn assert_holds<'a>(store: &RedbBlockstore, blocks: impl IntoIterator<Item = &'a Block>) {
    for block in blocks {
        assert_eq!(
            block_on(store.get(block.cid())).unwrap().as_ref(),
            Some(block)
        );
    }
}

/// Large blocks `0..count`, put in a new store at `path` (in its blob file) and closed.
fn stored_large_blocks(path: &Path, count: u64) -> Vec<Block> {
    let blocks: Vec<_> = (0..count).map(numbered_large_block).collect();
    let store = RedbBlockstore::open(path, blobs_always()).unwrap();
    block_on(store.put_many(blocks.clone())).unwrap();
    block_on(store.close()).unwrap();
    blocks
}

/// Writes one row straight into a table of the redb file at `path`, as another program (or
/// another format of the store) would; `create` makes a new file.
fn write_row<'k, 'v, K: redb::Key + 'static, V: redb::Value + 'static>(
    path: &Path,
    create: bool,
    table: &str,
    key: K::SelfType<'k>,
    value: V::SelfType<'v>,
) {
    let db = if create {
        redb::Database::create(path).unwrap()
    } else {
        redb::Database::open(path).unwrap()
    };
    let write = db.begin_write().unwrap();
    write
        .open_table(redb::TableDefinition::<K, V>::new(table))
        .unwrap()
        .insert(key, value)
        .unwrap();
    write.commit().unwrap();
}

/// Sets the store's format to `format` in `write`, then commits it.
fn commit_with_format(write: redb::WriteTransaction, format: u64) {
    write
        .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .unwrap()
        .insert("format", format)
        .unwrap();
    write.commit().unwrap();
}

fn open(path: &Path) -> RedbBlockstore {
    RedbBlockstore::open(path, RedbConfig::default()).unwrap()
}

#[test]
fn flushed_blocks_survive_reopening_under_either_cid() {
    let (_dir, path) = temp_file("blocks.redb");
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
    let (_dir, path) = temp_file("blocks.redb");
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
    assert_holds(&store, &blocks);
    block_on(store.close()).unwrap();
    // Closed: the file is free again.
    drop(open(&path));
}

/// Only a store left open is repaired: not one just created, nor one closed or dropped.
#[test]
fn only_a_store_not_closed_cleanly_is_repaired() {
    let (dir, path) = temp_file("blocks.redb");
    let store = open(&path);
    assert!(!store.was_repaired(), "a new store");
    block_on(store.put_many((0..4).map(numbered_block).collect())).unwrap();
    block_on(store.close()).unwrap();
    let store = open(&path);
    assert!(!store.was_repaired(), "closed");
    drop(store);
    let store = open(&path);
    assert!(!store.was_repaired(), "dropped");
    // A copy of a store still open is a store whose process died.
    block_on(store.put(numbered_block(4))).unwrap();
    block_on(store.flush()).unwrap();
    let copy = dir.path().join("copy.redb");
    fs::copy(&path, &copy).unwrap();
    fs::copy(blob_path(&path), blob_path(&copy)).unwrap();
    let copied = open(&copy);
    assert!(copied.was_repaired(), "left open");
    assert_holds(&copied, &(0..5).map(numbered_block).collect::<Vec<_>>());
}

/// Bytes changed on disk under a block's key are reported as corrupt, never returned, and a
/// put of the block repairs them.
#[test]
fn a_corrupt_block_is_an_error_until_put_again() {
    let (_dir, path) = temp_file("blocks.redb");
    let blocks = populated(&path);
    let victim = &blocks[5];
    // The store's own layout: table `blocks`, multihash bytes to block bytes.
    write_row::<&[u8], &[u8]>(
        &path,
        false,
        "blocks",
        victim.cid().hash().to_bytes().as_slice(),
        b"not the block".as_slice(),
    );
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
    let (_dir, path) = temp_file("blocks.redb");
    let _store = open(&path);
    let error = RedbBlockstore::open(&path, RedbConfig::default()).unwrap_err();
    assert!(
        matches!(error, RedbOpenError::AlreadyOpen { .. }),
        "{error:?}"
    );
}

#[test]
fn another_redb_database_is_not_a_block_store() {
    let (_dir, path) = temp_file("other.redb");
    write_row::<u64, u64>(&path, true, "numbers", 1, 2);
    let error = RedbBlockstore::open(&path, RedbConfig::default()).unwrap_err();
    assert!(
        matches!(
            error,
            RedbOpenError::UnsupportedFormat {
                found: None,
                expected: 4
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
    let (_dir, path) = temp_file("blocks.redb");
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
    let (_dir, path) = temp_file("blocks.redb");
    populated(&path);
    let mut file = OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all(&bytes(7, 4096)).unwrap();
    drop(file);
    assert_corrupt_at_open(&path);
}

/// A copy of the store at `clean` (its database file and, with it, its blob file, which
/// holds the large blocks) for trial `trial`, in `dir`.
fn copy_for_trial(dir: &Path, clean: &Path, trial: u64) -> PathBuf {
    let path = dir.join(format!("trial-{trial}.redb"));
    fs::copy(clean, &path).unwrap();
    fs::copy(blob_path(clean), blob_path(&path)).unwrap();
    path
}

/// The pseudo-random offset below `below` where trial `trial` writes garbage.
fn trial_offset(trial: u64, below: u64) -> u64 {
    bytes(trial, 8)
        .iter()
        .fold(0_u64, |acc, b| acc << 8 | u64::from(*b))
        % below
}

/// Garbage anywhere in the blob file: reads fail with typed errors or return intact blocks,
/// and the blocks the garbage missed stay readable. Never a panic, never wrong bytes.
#[test]
fn garbage_in_the_blob_file_gives_errors_or_intact_blocks() {
    let (dir, clean) = temp_file("clean.redb");
    let blocks: Vec<_> = (0..8).map(numbered_large_block).collect();
    {
        let store = open(&clean);
        assert_eq!(store.blob_path(), blob_path(&clean));
        block_on(store.put_many(blocks.clone())).unwrap();
        block_on(store.close()).unwrap();
    }
    let len = fs::metadata(blob_path(&clean)).unwrap().len();
    let mut outcomes = [0_usize; 2];
    for trial in 0..10_u64 {
        let path = copy_for_trial(dir.path(), &clean, trial);
        let at = trial_offset(trial, len - 512);
        let mut file = OpenOptions::new()
            .write(true)
            .open(blob_path(&path))
            .unwrap();
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&bytes(trial + 1000, 512)).unwrap();
        drop(file);
        let store = open(&path);
        let mut corrupt = 0;
        for block in &blocks {
            match block_on(store.get(block.cid())) {
                Ok(Some(got)) => {
                    assert_eq!(&got, block);
                    outcomes[0] += 1;
                }
                Ok(None) => panic!("a block went missing"),
                Err(error) => {
                    assert!(
                        matches!(error, RedbBlockstoreError::Corrupt { .. }),
                        "{error:?}"
                    );
                    corrupt += 1;
                }
            }
        }
        // 512 bytes of garbage reach one block, or two at a boundary.
        assert!(
            (1..=2).contains(&corrupt),
            "trial {trial}: {corrupt} corrupt"
        );
        outcomes[1] += corrupt;
    }
    println!("intact reads, corrupt reads: {outcomes:?}");
}

/// Garbage anywhere in the file: opening fails with a typed error, or reads fail with typed
/// errors or return intact blocks. Never a panic, never wrong bytes.
#[test]
fn garbage_anywhere_gives_errors_or_intact_blocks() {
    let (dir, clean) = temp_file("clean.redb");
    let blocks = populated(&clean);
    let len = fs::metadata(&clean).unwrap().len();
    let mut outcomes = [0_usize; 3];
    for trial in 0..40_u64 {
        let path = copy_for_trial(dir.path(), &clean, trial);
        let at = trial_offset(trial, len);
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
/// Set in the environment of the crash test's child (to anything): it puts large blocks, all
/// to the blob file.
const CHILD_LARGE_ENV: &str = "BITSWAP_BLOCKSTORE_CRASH_LARGE";
/// The write buffer of the crash test's child when it puts large blocks: at most 64 blocks of
/// 128 KiB or more accepted and not committed.
const CHILD_LARGE_WRITE_BUFFER_BYTES: usize = 8 << 20;
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
    let large = std::env::var_os(CHILD_LARGE_ENV).is_some();
    // Small batches: the writer also commits between flushes, so kills land in those commits
    // too, and some unflushed blocks survive.
    let config = if large {
        blobs_always()
            .with_max_batch(1024 * 1024)
            .with_write_buffer(CHILD_LARGE_WRITE_BUFFER_BYTES)
    } else {
        RedbConfig::default().with_max_batch(64 * 1024)
    };
    let store = RedbBlockstore::open(Path::new(&path), config).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = start;
    let mut stdout = std::io::stdout();
    for round in 1.. {
        if Instant::now() > deadline {
            return;
        }
        let blocks = (next..next + CHILD_BATCH)
            .map(|i| child_block(i, large))
            .collect();
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

/// What the child printed before it died: the highest `flushed` and `put` counts.
#[derive(Debug, Default)]
struct ChildProgress {
    flushed: Option<u64>,
    put: Option<u64>,
}

impl support::Transcript for ChildProgress {
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
fn run_and_kill_child(
    path: &Path,
    start: u64,
    flushes: usize,
    extra: Duration,
    large: bool,
) -> ChildProgress {
    let mut envs = vec![(CHILD_START_ENV, start.to_string())];
    if large {
        envs.push((CHILD_LARGE_ENV, "1".to_owned()));
    }
    support::run_and_kill("crash_child", &envs, (CHILD_PATH_ENV, path), flushes, extra)
}

/// SIGKILLs a child process while it puts and flushes blocks, three times on the same file:
/// every block flushed before a kill is present and intact afterwards, and every other block
/// the child may have put is intact or absent, never corrupt.
#[test]
fn blocks_flushed_before_a_sigkill_survive_it() {
    sigkill_rounds(false);
}

/// The same with large blocks, all in the blob file: a kill lands between appending a batch,
/// syncing the blob file and committing its index, and the next open cuts what the kill left
/// uncommitted.
#[test]
fn large_blocks_flushed_before_a_sigkill_survive_it() {
    sigkill_rounds(true);
}

fn sigkill_rounds(large: bool) {
    let (_dir, path) = temp_file("blocks.redb");
    // (first block, last block flushed) of every round so far.
    let mut flushed_ranges = Vec::new();
    for (round, extra_ms) in [0_u64, 7, 23].into_iter().enumerate() {
        let start = round as u64 * 1_000_000;
        let progress = run_and_kill_child(&path, start, 3, Duration::from_millis(extra_ms), large);
        let flushed = progress.flushed.unwrap();
        let put = progress.put.unwrap();
        flushed_ranges.push(start..flushed);

        let store = RedbBlockstore::open(&path, RedbConfig::default())
            .unwrap_or_else(|error| panic!("reopening after the kill: {error:?}"));
        assert!(store.was_repaired(), "a killed store is repaired");
        for i in flushed_ranges.iter().flat_map(Clone::clone) {
            let block = child_block(i, large);
            let got = block_on(store.get(block.cid())).unwrap();
            assert_eq!(got.as_ref(), Some(&block), "flushed block {i} lost");
        }
        // The child may have accepted puts it did not print yet: up to a write buffer more
        // (64 MiB of blocks of 1 KiB or more; 8 MiB of blocks of 128 KiB or more), and a
        // `put_many` in progress.
        let mut unflushed_present = 0;
        let beyond = if large { 9 } else { 64 } * CHILD_BATCH;
        for i in flushed..put + beyond {
            let block = child_block(i, large);
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
        if large {
            // The blocks were in the blob file, not in the B-tree.
            assert!(fs::metadata(blob_path(&path)).unwrap().len() > 0);
        }
        println!(
            "round {round}: flushed {}, printed put {}, unflushed blocks present {unflushed_present}",
            flushed - start,
            put - start
        );
        block_on(store.close()).unwrap();
    }
}

/// Large blocks in the blob file: read back after a restart under either CID, deleted, put
/// again; a small batch puts a large block back into the B-tree and the blob entry goes.
#[test]
fn large_blocks_survive_reopening_and_move_between_files() {
    let (_dir, path) = temp_file("blocks.redb");
    let blocks: Vec<_> = (0..12).map(numbered_large_block).collect();
    let total: u64 = blocks.iter().map(|b| b.data().len() as u64).sum();
    {
        let store = open(&path);
        block_on(store.put_many(blocks.clone())).unwrap();
        block_on(store.delete(blocks[2].cid())).unwrap();
        block_on(store.close()).unwrap();
    }
    // One batch of more than 1 MiB of large blocks: all of them appended, once.
    assert_eq!(fs::metadata(blob_path(&path)).unwrap().len(), total);
    let store = open(&path);
    for (i, block) in blocks.iter().enumerate() {
        let got = block_on(store.get(&v1(block.cid()))).unwrap();
        if i == 2 {
            assert_eq!(got, None);
            assert_eq!(block_on(store.get_size(block.cid())).unwrap(), None);
            continue;
        }
        let got = got.unwrap();
        assert_eq!(got.data(), block.data());
        assert_eq!(
            block_on(store.get_size(block.cid())).unwrap(),
            Some(block.data().len())
        );
    }
    // Alone in its batch (less than 1 MiB), a put goes to the B-tree: the blob file does not
    // grow, and the copy in the B-tree is the one read.
    block_on(store.put(blocks[2].clone())).unwrap();
    block_on(store.put(blocks[3].clone())).unwrap();
    block_on(store.flush()).unwrap();
    assert_eq!(fs::metadata(blob_path(&path)).unwrap().len(), total);
    drop(store);
    let store = open(&path);
    assert_holds(&store, &blocks);
}

/// A blob file shorter than committed (truncated, or gone) is refused at open with a typed
/// error; bytes past the committed end (a batch a crash cut) are dropped.
#[test]
fn a_truncated_blob_file_is_refused_and_a_long_one_cut() {
    let (_dir, path) = temp_file("blocks.redb");
    let blocks = stored_large_blocks(&path, 6);
    let blobs = blob_path(&path);
    let committed = fs::metadata(&blobs).unwrap().len();

    // Longer: cut back, every block intact, and later appends land after the committed end.
    let mut file = OpenOptions::new().append(true).open(&blobs).unwrap();
    file.write_all(&bytes(99, 300_000)).unwrap();
    drop(file);
    {
        let store = RedbBlockstore::open(&path, blobs_always()).unwrap();
        assert_eq!(fs::metadata(&blobs).unwrap().len(), committed);
        let more: Vec<_> = (100..104).map(numbered_large_block).collect();
        block_on(store.put_many(more.clone())).unwrap();
        block_on(store.flush()).unwrap();
        assert_holds(&store, blocks.iter().chain(&more));
    }
    // Shorter than committed: the index would point past the end of the file. Refused, not a
    // panic, at any length.
    let committed_now = fs::metadata(&blobs).unwrap().len();
    assert!(committed_now > committed);
    for keep in [committed_now - 1, committed / 2, 0] {
        let file = OpenOptions::new().write(true).open(&blobs).unwrap();
        file.set_len(keep).unwrap();
        drop(file);
        match RedbBlockstore::open(&path, RedbConfig::default()) {
            Err(
                ref error @ RedbOpenError::BlobsTruncated {
                    committed_bytes,
                    file_bytes,
                    ..
                },
            ) => {
                assert_eq!((committed_bytes, file_bytes), (committed_now, keep));
                assert!(error.to_string().contains("is truncated"), "{error}");
            }
            other => panic!("expected a truncated blob file error, got {other:?}"),
        }
    }
    fs::remove_file(&blobs).unwrap();
    assert!(matches!(
        RedbBlockstore::open(&path, RedbConfig::default()),
        Err(RedbOpenError::BlobsTruncated { file_bytes: 0, .. })
    ));
}

/// Bytes changed in the blob file are reported as corrupt (the checksum written with them,
/// checked at every read), never returned; a put of the block repairs it, the other blocks
/// stay readable.
#[test]
fn a_corrupt_blob_is_an_error_until_put_again() {
    let (_dir, path) = temp_file("blocks.redb");
    let blocks = stored_large_blocks(&path, 4);
    // Blocks are appended in order: block 1 starts where block 0 ends.
    let at = blocks[0].data().len() as u64 + 100;
    let mut file = OpenOptions::new()
        .write(true)
        .open(blob_path(&path))
        .unwrap();
    file.seek(SeekFrom::Start(at)).unwrap();
    file.write_all(b"not the block").unwrap();
    drop(file);
    let store = RedbBlockstore::open(&path, blobs_always()).unwrap();
    let error = block_on(store.get(blocks[1].cid())).unwrap_err();
    let len = blocks[1].data().len() as u64;
    assert!(
        matches!(
            &error,
            RedbBlockstoreError::Corrupt { cid, source }
                if **cid == *blocks[1].cid()
                    && matches!(
                        **source,
                        RedbCorruption::Checksum { offset, len: l }
                            if offset == blocks[0].data().len() as u64 && l == len
                    )
        ),
        "{error:?}"
    );
    // Under another CID of the same multihash too.
    assert!(matches!(
        block_on(store.get(&v1(blocks[1].cid()))),
        Err(RedbBlockstoreError::Corrupt { .. })
    ));
    for i in [0, 2, 3] {
        assert_eq!(
            block_on(store.get(blocks[i].cid())).unwrap().as_ref(),
            Some(&blocks[i])
        );
    }
    block_on(store.put(blocks[1].clone())).unwrap();
    block_on(store.flush()).unwrap();
    assert_eq!(
        block_on(store.get(blocks[1].cid())).unwrap().as_ref(),
        Some(&blocks[1])
    );
}

/// A store of format 1 (before the blob file: tables `blocks`, `block_sizes`, `meta`) opens,
/// is upgraded, keeps its blocks and takes large blocks into a blob file.
#[test]
fn a_format_1_store_is_upgraded() {
    let (_dir, path) = temp_file("blocks.redb");
    let old = numbered_block(7);
    {
        let db = redb::Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        let key = old.cid().hash().to_bytes();
        write
            .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("blocks"))
            .unwrap()
            .insert(key.as_slice(), old.data().as_ref())
            .unwrap();
        write
            .open_table(redb::TableDefinition::<&[u8], u64>::new("block_sizes"))
            .unwrap()
            .insert(key.as_slice(), old.data().len() as u64)
            .unwrap();
        commit_with_format(write, 1);
    }
    let large: Vec<_> = (0..5).map(numbered_large_block).collect();
    {
        let store = open(&path);
        assert_eq!(block_on(store.get(old.cid())).unwrap().as_ref(), Some(&old));
        block_on(store.put_many(large.clone())).unwrap();
        block_on(store.close()).unwrap();
    }
    assert!(fs::metadata(blob_path(&path)).unwrap().len() > 0);
    let store = open(&path);
    assert_holds(&store, large.iter().chain([&old]));
}

/// A store of format 3 (blob file records without checksums) opens and is upgraded: its large
/// blocks read back checked against their CIDs (a corrupt one reported as such), and a block
/// put again gets a checksum.
#[test]
fn a_format_3_store_is_upgraded_and_its_blobs_checked_by_hash() {
    let (_dir, path) = temp_file("blocks.redb");
    let blocks = stored_large_blocks(&path, 3);
    {
        // Back to format 3: no table `blob_sums`.
        let db = redb::Database::open(&path).unwrap();
        let write = db.begin_write().unwrap();
        assert!(
            write
                .delete_table(redb::TableDefinition::<&[u8], u64>::new("blob_sums"))
                .unwrap()
        );
        commit_with_format(write, 3);
    }
    let mut file = OpenOptions::new()
        .write(true)
        .open(blob_path(&path))
        .unwrap();
    file.seek(SeekFrom::Start(blocks[0].data().len() as u64 + 7))
        .unwrap();
    file.write_all(b"not the block").unwrap();
    drop(file);

    let store = RedbBlockstore::open(&path, blobs_always()).unwrap();
    for i in [0, 2] {
        assert_eq!(
            block_on(store.get(blocks[i].cid())).unwrap().as_ref(),
            Some(&blocks[i])
        );
    }
    let error = block_on(store.get(blocks[1].cid())).unwrap_err();
    assert!(
        matches!(
            &error,
            RedbBlockstoreError::Corrupt { source, .. }
                if matches!(**source, RedbCorruption::Hash(_))
        ),
        "{error:?}"
    );
    block_on(store.put(blocks[1].clone())).unwrap();
    block_on(store.close()).unwrap();

    // Format 4 now: the block put again has a checksum.
    let db = redb::Database::open(&path).unwrap();
    let read = db.begin_read().unwrap();
    let format = read
        .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
        .unwrap()
        .get("format")
        .unwrap()
        .map(|format| format.value());
    assert_eq!(format, Some(4));
    let sums = read
        .open_table(redb::TableDefinition::<&[u8], u64>::new("blob_sums"))
        .unwrap();
    let has_sum = |block: &Block| {
        sums.get(block.cid().hash().to_bytes().as_slice())
            .unwrap()
            .is_some()
    };
    assert!(has_sum(&blocks[1]));
    assert!(!has_sum(&blocks[0]) && !has_sum(&blocks[2]));
    drop(sums);
    drop(read);
    drop(db);
    let store = RedbBlockstore::open(&path, blobs_always()).unwrap();
    assert_holds(&store, &blocks);
}

/// A store of a later format than this code's is refused at open, with both formats named.
#[test]
fn a_store_of_a_later_format_is_refused() {
    let (_dir, path) = temp_file("blocks.redb");
    block_on(open(&path).close()).unwrap();
    write_row::<&str, u64>(&path, false, "meta", "format", 5);
    let error = RedbBlockstore::open(&path, RedbConfig::default()).unwrap_err();
    assert!(
        matches!(
            error,
            RedbOpenError::UnsupportedFormat {
                found: Some(5),
                expected: 4
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "not a block store of format 4 (found format 5)"
    );
}
