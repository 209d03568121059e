//! Compaction of the redb store's blob file: space reclaimed, blocks intact, writes during a
//! compaction kept, the automatic trigger, leftovers removed at open, failures leaving the
//! store working, and a crash test that SIGKILLs a child process while it compacts.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::Write,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use futures::{executor::block_on, future::join};
use ipfs_blockstore::testing::bytes;
use ipfs_blockstore::{Block, Blockstore, RedbBlockstore, RedbBlockstoreError, RedbConfig};

use support::temp_file;

/// Large block `i`: 32 KiB to 160 KiB of deterministic bytes, above the default blob
/// threshold.
fn large_block(i: u64) -> Block {
    let len = 32 * 1024 + (i as usize * 104_729) % (128 * 1024);
    Block::from_v0_data(bytes(i ^ 0xc0ac, len)).unwrap()
}

/// Every large block to the blob file whatever its batch, automatic compaction off, and
/// compaction steps of `chunk` bytes.
fn config(chunk: usize) -> RedbConfig {
    RedbConfig::default()
        .with_blob_min_batch(0)
        .with_compaction_ratio(f64::INFINITY)
        .with_compaction_chunk(chunk)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn total(blocks: &[&Block]) -> u64 {
    blocks.iter().map(|block| block.data().len() as u64).sum()
}

/// The blob files next to the database file `path`.
fn blob_files(path: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.blobs", path.file_name().unwrap().to_str().unwrap());
    let mut files: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|file| {
            file.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .collect();
    files.sort();
    files
}

fn assert_blocks(store: &RedbBlockstore, present: &[&Block], absent: &[&Block]) {
    for block in present {
        assert_eq!(
            block_on(store.get(block.cid())).unwrap().as_ref(),
            Some(*block)
        );
    }
    for block in absent {
        assert_eq!(block_on(store.get(block.cid())).unwrap(), None);
        assert!(!block_on(store.has(block.cid())).unwrap());
    }
}

/// A store at `path` holding six large blocks in its blob file, the first deleted (its bytes
/// dead), flushed; and the six blocks.
fn six_blobs_one_deleted(path: &Path) -> (RedbBlockstore, Vec<Block>) {
    let blocks: Vec<_> = (0..6).map(large_block).collect();
    let store = RedbBlockstore::open(path, config(1 << 20)).unwrap();
    block_on(store.put_many(blocks.clone())).unwrap();
    block_on(store.delete(blocks[0].cid())).unwrap();
    block_on(store.flush()).unwrap();
    (store, blocks)
}

/// Deleted and overwritten blocks leave dead bytes, counted across reopening; a compaction
/// reclaims all of them, keeps every live block intact, and survives reopening.
#[test]
fn compaction_reclaims_deleted_and_overwritten_blocks() {
    let (_dir, path) = temp_file("blocks.redb");
    let blocks: Vec<_> = (0..24).map(large_block).collect();
    let (deleted, live): (Vec<_>, Vec<_>) =
        blocks.iter().enumerate().partition(|(i, _)| i % 3 == 0);
    let deleted: Vec<_> = deleted.into_iter().map(|(_, block)| block).collect();
    let live: Vec<_> = live.into_iter().map(|(_, block)| block).collect();
    let overwritten = [live[0], live[5]];
    {
        let store = RedbBlockstore::open(&path, config(64 * 1024)).unwrap();
        block_on(store.put_many(blocks.clone())).unwrap();
        block_on(store.flush()).unwrap();
        assert_eq!(store.dead_blob_bytes(), 0);
        for block in &deleted {
            block_on(store.delete(block.cid())).unwrap();
        }
        block_on(store.put_many(overwritten.iter().map(|b| (*b).clone()).collect())).unwrap();
        block_on(store.close()).unwrap();
    }
    let all: Vec<_> = blocks.iter().collect();
    let grown = total(&all) + total(&overwritten);
    let dead = total(&deleted) + total(&overwritten);
    assert_eq!(file_len(&path.with_extension("redb.blobs")), grown);

    let store = RedbBlockstore::open(&path, config(64 * 1024)).unwrap();
    assert_eq!(store.blob_file_bytes(), grown);
    assert_eq!(store.dead_blob_bytes(), dead);
    block_on(store.compact()).unwrap();
    assert_eq!(store.dead_blob_bytes(), 0);
    assert_eq!(store.blob_file_bytes(), total(&live));
    let blob_path = store.blob_path();
    assert_eq!(blob_path, path.with_extension("redb.blobs.1"));
    assert_eq!(file_len(&blob_path), total(&live));
    assert_eq!(blob_files(&path), std::slice::from_ref(&blob_path));
    assert_blocks(&store, &live, &deleted);
    // Nothing dead: a compaction changes nothing.
    block_on(store.compact()).unwrap();
    assert_eq!(store.blob_path(), blob_path);
    drop(store);

    let store = RedbBlockstore::open(&path, config(64 * 1024)).unwrap();
    assert_eq!(store.blob_path(), blob_path);
    assert_eq!(store.dead_blob_bytes(), 0);
    assert_blocks(&store, &live, &deleted);
    // Put back: appended to the compacted file.
    block_on(store.put_many(deleted.iter().map(|b| (*b).clone()).collect())).unwrap();
    block_on(store.flush()).unwrap();
    assert_eq!(file_len(&blob_path), total(&all));
    assert_blocks(&store, &all, &[]);
}

/// Puts, deletes and flushes while a compaction runs in small steps all land: the store
/// matches a model afterwards and after reopening, and a second compaction leaves exactly the
/// live bytes.
#[test]
fn writes_during_a_compaction_are_kept() {
    let (_dir, path) = temp_file("blocks.redb");
    let store = RedbBlockstore::open(&path, config(32 * 1024)).unwrap();
    let mut model = BTreeMap::new();
    let first: Vec<_> = (0..64).map(large_block).collect();
    block_on(store.put_many(first.clone())).unwrap();
    for block in first.iter().step_by(2) {
        block_on(store.delete(block.cid())).unwrap();
    }
    block_on(store.flush()).unwrap();
    for (i, block) in first.iter().enumerate() {
        if i % 2 == 1 {
            model.insert(i as u64, block.clone());
        }
    }
    let writes = async {
        for i in 64..96_u64 {
            let block = large_block(i);
            store.put(block.clone()).await.unwrap();
            model.insert(i, block);
            // Deletes and overwrites of blocks the compaction copies, or copied already.
            let old = (i - 64) * 2 + 1;
            if i % 3 == 0 {
                store.delete(large_block(old).cid()).await.unwrap();
                model.remove(&old);
            } else if i % 3 == 1 {
                store.put(large_block(old)).await.unwrap();
            }
            if i % 4 == 0 {
                store.flush().await.unwrap();
            }
        }
    };
    let (compacted, ()) = block_on(join(store.compact(), writes));
    compacted.unwrap();
    block_on(store.flush()).unwrap();
    let check = |store: &RedbBlockstore| {
        for i in 0..96 {
            let got = block_on(store.get(large_block(i).cid())).unwrap();
            assert_eq!(got.as_ref(), model.get(&i), "block {i}");
        }
    };
    check(&store);
    assert!(store.dead_blob_bytes() <= store.blob_file_bytes());
    drop(store);
    let store = RedbBlockstore::open(&path, config(32 * 1024)).unwrap();
    check(&store);
    block_on(store.compact()).unwrap();
    let live: Vec<_> = model.values().collect();
    assert_eq!(store.blob_file_bytes(), total(&live));
    assert_eq!(file_len(&store.blob_path()), total(&live));
    assert_eq!(blob_files(&path), [store.blob_path()]);
    check(&store);
}

/// With dead bytes past the policy, the writer compacts on its own.
#[test]
fn dead_bytes_past_the_policy_start_a_compaction() {
    let (_dir, path) = temp_file("blocks.redb");
    let blocks: Vec<_> = (0..16).map(large_block).collect();
    // Automatic compaction on: past 40% dead and 256 KiB of dead bytes.
    let policy = config(64 * 1024)
        .with_compaction_ratio(0.4)
        .with_compaction_min_dead(256 * 1024);
    let store = RedbBlockstore::open(&path, policy).unwrap();
    block_on(store.put_many(blocks.clone())).unwrap();
    // A third dead: under the ratio.
    for block in &blocks[..5] {
        block_on(store.delete(block.cid())).unwrap();
    }
    block_on(store.flush()).unwrap();
    let dead = total(&blocks[..5].iter().collect::<Vec<_>>());
    assert_eq!(store.dead_blob_bytes(), dead);
    assert_eq!(store.blob_path(), path.with_extension("redb.blobs"));
    // Past it: the writer compacts after this commit, on its own.
    for block in &blocks[5..10] {
        block_on(store.delete(block.cid())).unwrap();
    }
    block_on(store.flush()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.dead_blob_bytes() > 0 {
        assert!(Instant::now() < deadline, "no compaction started");
        thread::sleep(Duration::from_millis(10));
    }
    let live: Vec<_> = blocks[10..].iter().collect();
    assert_eq!(store.blob_file_bytes(), total(&live));
    assert_eq!(store.blob_path(), path.with_extension("redb.blobs.1"));
    let deleted: Vec<_> = blocks[..10].iter().collect();
    assert_blocks(&store, &live, &deleted);
}

/// Blob files of the generations next to the current one (what a crash in a compaction
/// leaves) are removed at open; other files are left alone.
#[test]
fn leftover_blob_files_are_removed_at_open() {
    let (_dir, path) = temp_file("blocks.redb");
    let (store, blocks) = six_blobs_one_deleted(&path);
    block_on(store.close()).unwrap();
    // A compaction cut before its switch: the next generation's file, half written.
    let next = path.with_extension("redb.blobs.1");
    let unrelated = path.with_extension("redb.blobs.x");
    fs::write(&next, bytes(1, 100_000)).unwrap();
    fs::write(&unrelated, b"not ours").unwrap();
    {
        let store = RedbBlockstore::open(&path, config(1 << 20)).unwrap();
        assert!(!next.exists());
        assert_blocks(
            &store,
            &blocks[1..].iter().collect::<Vec<_>>(),
            &[&blocks[0]],
        );
        block_on(store.compact()).unwrap();
        assert_eq!(store.blob_path(), next);
        block_on(store.close()).unwrap();
    }
    // A compaction cut after its switch: the previous generation's file still there.
    let previous = path.with_extension("redb.blobs");
    fs::write(&previous, bytes(2, 100_000)).unwrap();
    let store = RedbBlockstore::open(&path, config(1 << 20)).unwrap();
    assert!(!previous.exists());
    assert!(unrelated.exists());
    assert_eq!(blob_files(&path), [next, unrelated]);
    assert_blocks(
        &store,
        &blocks[1..].iter().collect::<Vec<_>>(),
        &[&blocks[0]],
    );
}

/// A compaction that cannot create its file fails with a typed error and leaves the store
/// working; once the obstacle is gone, it succeeds.
#[test]
fn a_failed_compaction_leaves_the_store_working() {
    let (_dir, path) = temp_file("blocks.redb");
    let (store, blocks) = six_blobs_one_deleted(&path);
    // A directory where the new blob file would go.
    let next = path.with_extension("redb.blobs.1");
    fs::create_dir(&next).unwrap();
    let error = block_on(store.compact()).unwrap_err();
    match &error {
        RedbBlockstoreError::CompactionIo { path, .. } => assert_eq!(path, &next),
        other => panic!("expected a compaction I/O error, got {other:?}"),
    }
    assert!(error.to_string().contains("cannot compact"), "{error}");
    let dead = total(&[&blocks[0]]);
    assert_eq!(store.dead_blob_bytes(), dead);
    block_on(store.put(large_block(100))).unwrap();
    block_on(store.flush()).unwrap();
    let live: Vec<_> = blocks[1..].iter().collect();
    assert_blocks(&store, &live, &[&blocks[0]]);
    fs::remove_dir(&next).unwrap();
    block_on(store.compact()).unwrap();
    assert_eq!(store.dead_blob_bytes(), 0);
    assert_blocks(&store, &live, &[&blocks[0]]);
}

/// A store of format 2 (no generation, no dead count) is upgraded: its dead bytes are counted
/// from the index, and a compaction reclaims them.
#[test]
fn a_format_2_store_is_upgraded_with_its_dead_bytes_counted() {
    let (_dir, path) = temp_file("blocks.redb");
    let blocks: Vec<_> = (0..3).map(large_block).collect();
    // Blocks 0 and 2 indexed, block 1's bytes between them dead.
    let mut file = Vec::new();
    let mut entries = Vec::new();
    for block in &blocks {
        entries.push((file.len() as u64, block));
        file.extend_from_slice(block.data());
    }
    fs::write(path.with_extension("redb.blobs"), &file).unwrap();
    {
        let db = redb::Database::create(&path).unwrap();
        let write = db.begin_write().unwrap();
        {
            let mut blobs = write
                .open_table(redb::TableDefinition::<&[u8], (u64, u64)>::new("blobs"))
                .unwrap();
            let mut sizes = write
                .open_table(redb::TableDefinition::<&[u8], u64>::new("block_sizes"))
                .unwrap();
            write
                .open_table(redb::TableDefinition::<&[u8], &[u8]>::new("blocks"))
                .unwrap();
            for (offset, block) in [entries[0], entries[2]] {
                let key = block.cid().hash().to_bytes();
                let len = block.data().len() as u64;
                blobs.insert(key.as_slice(), (offset, len)).unwrap();
                sizes.insert(key.as_slice(), len).unwrap();
            }
            let mut meta = write
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .unwrap();
            meta.insert("format", 2).unwrap();
            meta.insert("blob_end", file.len() as u64).unwrap();
        }
        write.commit().unwrap();
    }
    let store = RedbBlockstore::open(&path, config(1 << 20)).unwrap();
    assert_eq!(store.blob_file_bytes(), file.len() as u64);
    assert_eq!(store.dead_blob_bytes(), blocks[1].data().len() as u64);
    assert_blocks(&store, &[&blocks[0], &blocks[2]], &[&blocks[1]]);
    block_on(store.compact()).unwrap();
    assert_eq!(store.blob_file_bytes(), total(&[&blocks[0], &blocks[2]]));
    assert_blocks(&store, &[&blocks[0], &blocks[2]], &[&blocks[1]]);
}

// The crash test.

/// Set in the environment of the crash test's child: the store file it writes to.
const CHILD_PATH_ENV: &str = "BITSWAP_COMPACT_CRASH_CHILD";
/// Set in the environment of the crash test's child: the number of its first block.
const CHILD_START_ENV: &str = "BITSWAP_COMPACT_CRASH_START";
/// Blocks the child puts per round.
const ROUND_BLOCKS: u64 = 8;
/// Bytes a compaction of the child copies per step: small, so that kills land between steps
/// as well as in them.
const CHILD_CHUNK_BYTES: usize = 64 * 1024;

/// Block `j` of round `round` of the child that started at `start`.
fn round_block(start: u64, round: u64, j: u64) -> Block {
    large_block(start + round * ROUND_BLOCKS + j)
}

/// Not a test on its own: the body of the crash test's child process, which re-runs this
/// binary with only this test and [`CHILD_PATH_ENV`] set. Round `r` runs a compaction and,
/// during it, puts the round's blocks, puts again the first block of round `r - 1`, deletes
/// the odd blocks of round `r - 1`, and flushes: it prints `compacting r` before, `flushed r`
/// after the flush, and `compacted r` once both are done. It loops until it is killed (or
/// after 60 s, so that it never outlives a lost parent for long).
#[test]
fn compact_crash_child() {
    let Some(path) = std::env::var_os(CHILD_PATH_ENV) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START_ENV).unwrap().parse().unwrap();
    let store = RedbBlockstore::open(
        Path::new(&path),
        config(CHILD_CHUNK_BYTES).with_max_batch(512 * 1024),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let print = |line: String| {
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{line}").unwrap();
        stdout.flush().unwrap();
    };
    for round in 0.. {
        if Instant::now() > deadline {
            return;
        }
        print(format!("compacting {round}"));
        let writes = async {
            let blocks = (0..ROUND_BLOCKS)
                .map(|j| round_block(start, round, j))
                .collect();
            store.put_many(blocks).await.unwrap();
            if round > 0 {
                store.put(round_block(start, round - 1, 0)).await.unwrap();
                for j in (1..ROUND_BLOCKS).step_by(2) {
                    let block = round_block(start, round - 1, j);
                    store.delete(block.cid()).await.unwrap();
                }
            }
            store.flush().await.unwrap();
            print(format!("flushed {round}"));
        };
        let (compacted, ()) = block_on(join(store.compact(), writes));
        compacted.unwrap();
        print(format!("compacted {round}"));
    }
}

/// What the child printed before it died.
#[derive(Debug, Default)]
struct ChildProgress {
    /// The last round whose flush returned.
    flushed: Option<u64>,
    /// Whether the last line was `compacting`: the kill landed in a compaction.
    compacting: bool,
}

impl support::Transcript for ChildProgress {
    fn see(&mut self, line: &str) {
        let number = |rest: &str| rest.trim().parse::<u64>().unwrap();
        if let Some(rest) = line.strip_prefix("flushed ") {
            self.flushed = self.flushed.max(Some(number(rest)));
        } else if line.starts_with("compacting ") {
            self.compacting = true;
        } else if line.starts_with("compacted ") {
            self.compacting = false;
        }
    }
}

/// Runs the child on `path` from block `start`, lets it flush `flushes` rounds, waits
/// `extra`, and SIGKILLs it. Returns what it printed.
fn run_and_kill_child(path: &Path, start: u64, flushes: usize, extra: Duration) -> ChildProgress {
    let envs = [(CHILD_START_ENV, start.to_string())];
    support::run_and_kill(
        "compact_crash_child",
        &envs,
        (CHILD_PATH_ENV, path),
        flushes,
        extra,
    )
}

/// SIGKILLs a child process while it compacts (and puts, overwrites and deletes during the
/// compaction), eight times on the same file, at different points. After each kill the store
/// opens, the blob files a compaction left are gone, every block whose put was flushed before
/// is present and intact (those of earlier children too, which each compaction moved again),
/// every block whose delete was flushed is absent, and the others are intact or absent.
/// Finally a compaction leaves exactly the live bytes.
#[test]
fn blocks_survive_a_sigkill_during_compaction() {
    let (_dir, path) = temp_file("blocks.redb");
    // Known after each check: the blocks present and absent.
    let mut present: BTreeSet<u64> = BTreeSet::new();
    let mut absent: BTreeSet<u64> = BTreeSet::new();
    let mut in_compaction = 0;
    // (rounds flushed, then milliseconds) before each kill.
    let kills = [
        (1, 0),
        (2, 5),
        (1, 13),
        (3, 2),
        (2, 29),
        (1, 47),
        (1, 71),
        (2, 97),
    ];
    for (child, (flushes, extra_ms)) in kills.into_iter().enumerate() {
        let start = child as u64 * 1_000_000;
        let progress = run_and_kill_child(&path, start, flushes, Duration::from_millis(extra_ms));
        in_compaction += usize::from(progress.compacting);
        let last = progress.flushed.unwrap();

        let store = RedbBlockstore::open(&path, config(CHILD_CHUNK_BYTES))
            .unwrap_or_else(|error| panic!("reopening after kill {child}: {error:?}"));
        assert_eq!(blob_files(&path), [store.blob_path()], "kill {child}");
        assert!(store.dead_blob_bytes() <= store.blob_file_bytes());
        for &i in &present {
            let block = large_block(i);
            let got = block_on(store.get(block.cid())).unwrap();
            assert_eq!(got.as_ref(), Some(&block), "block {i} lost at kill {child}");
        }
        for &i in &absent {
            let got = block_on(store.get(large_block(i).cid())).unwrap();
            assert_eq!(got, None, "block {i} back at kill {child}");
        }
        // This child's blocks: rounds up to `last` flushed, two more maybe begun.
        let mut maybe = 0;
        for round in 0..=last + 2 {
            for j in 0..ROUND_BLOCKS {
                let i = start + round * ROUND_BLOCKS + j;
                let block = large_block(i);
                let got = match block_on(store.get(block.cid())) {
                    Ok(got) => got,
                    Err(error) => panic!("block {i} unreadable at kill {child}: {error:?}"),
                };
                if let Some(got) = &got {
                    assert_eq!(got, &block, "block {i}");
                }
                // Round `last + 1` deletes the odd blocks of round `last`: maybe done.
                let deleted_flushed = j % 2 == 1 && round < last;
                let put_flushed = round < last || (round == last && j % 2 == 0);
                if deleted_flushed {
                    assert_eq!(got, None, "flushed delete of {i} undone at kill {child}");
                } else if put_flushed {
                    assert!(got.is_some(), "flushed block {i} lost at kill {child}");
                } else {
                    maybe += 1;
                }
                if got.is_some() {
                    present.insert(i);
                } else {
                    absent.insert(i);
                }
            }
        }
        println!(
            "kill {child}: {} rounds flushed, in a compaction: {}, {maybe} blocks unflushed, \
             blob file {} bytes ({} dead), generation file {}",
            last + 1,
            progress.compacting,
            store.blob_file_bytes(),
            store.dead_blob_bytes(),
            store.blob_path().display()
        );
        drop(store);
    }
    // The child is in a compaction nearly all the time: a kill that never lands in one
    // means this test does not test what it says.
    assert!(in_compaction > 0, "no kill landed in a compaction");

    let store = RedbBlockstore::open(&path, config(1 << 20)).unwrap();
    block_on(store.compact()).unwrap();
    let live: Vec<_> = present.iter().map(|&i| large_block(i)).collect();
    assert_eq!(
        store.blob_file_bytes(),
        total(&live.iter().collect::<Vec<_>>())
    );
    assert_eq!(store.dead_blob_bytes(), 0);
    for block in &live {
        assert_eq!(
            block_on(store.get(block.cid())).unwrap().as_ref(),
            Some(block)
        );
    }
}
