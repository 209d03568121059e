//! The rules of `Blockstore`, checked on both stores of the crate, and model-based property
//! tests of each against a `HashMap` of multihash to bytes.

use std::{collections::HashMap, path::Path, sync::Arc};

use bytes::Bytes;
use cid::Cid;
use futures::executor::block_on;
use ipfs_blockstore::{
    Block, Blockstore, MemoryBlockstore, MemoryBlockstoreError, RedbBlockstore, RedbConfig,
    multicodec::RAW, testing,
};
use multihash::Multihash;
use proptest::prelude::*;

/// Block `i` of `len` bytes (CIDv0).
fn block(i: u32, len: usize) -> Block {
    testing::v0_block(u64::from(i), len)
}

/// The CIDv1 (raw codec) of the same multihash as `cid`.
fn v1(cid: &Cid) -> Cid {
    Cid::new_v1(RAW, *cid.hash())
}

fn redb_store(path: &Path) -> RedbBlockstore {
    RedbBlockstore::open(path, RedbConfig::default()).unwrap()
}

/// Every rule that holds for any store, checked on `store`.
async fn check_rules<B: Blockstore>(store: &B) {
    let a = block(1, 1000);
    let b = block(2, 0);
    let missing = block(3, 10);

    assert_eq!(store.get(a.cid()).await.unwrap(), None);
    assert!(!store.has(a.cid()).await.unwrap());
    assert_eq!(store.get_size(a.cid()).await.unwrap(), None);

    // Puts, read back under either CID.
    store.put_many(vec![a.clone(), b.clone()]).await.unwrap();
    assert_eq!(store.get(a.cid()).await.unwrap().as_ref(), Some(&a));
    let a_v1 = store.get(&v1(a.cid())).await.unwrap().unwrap();
    assert_eq!(a_v1.cid(), &v1(a.cid()));
    assert_eq!(a_v1.data(), a.data());
    assert!(store.has(&v1(b.cid())).await.unwrap());
    assert_eq!(store.get_size(&v1(a.cid())).await.unwrap(), Some(1000));
    assert_eq!(store.get_size(b.cid()).await.unwrap(), Some(0));
    assert_eq!(store.get(missing.cid()).await.unwrap(), None);

    // Idempotent: put again, delete twice.
    store.put(a_v1.clone()).await.unwrap();
    assert_eq!(store.get(a.cid()).await.unwrap().as_ref(), Some(&a));
    store.delete(&v1(a.cid())).await.unwrap();
    store.delete(a.cid()).await.unwrap();
    store.delete(missing.cid()).await.unwrap();
    assert_eq!(store.get(a.cid()).await.unwrap(), None);
    assert!(!store.has(a.cid()).await.unwrap());
    assert_eq!(store.get_size(&v1(a.cid())).await.unwrap(), None);

    // Deletes are ordered with puts.
    store.put(a.clone()).await.unwrap();
    store.delete(a.cid()).await.unwrap();
    store.put(a.clone()).await.unwrap();
    assert!(store.has(a.cid()).await.unwrap());
    store.delete(a.cid()).await.unwrap();
    assert!(!store.has(a.cid()).await.unwrap());

    store.flush().await.unwrap();
    assert_eq!(store.get(b.cid()).await.unwrap().as_ref(), Some(&b));
    assert_eq!(store.get(a.cid()).await.unwrap(), None);
}

#[test]
fn memory_store_follows_the_rules() {
    block_on(check_rules(&MemoryBlockstore::new()));
}

#[test]
fn redb_store_follows_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    block_on(check_rules(&redb_store(&dir.path().join("blocks.redb"))));
}

#[test]
fn an_arc_of_a_store_is_a_store() {
    block_on(check_rules(&Arc::new(MemoryBlockstore::new())));
}

/// The futures are `Send`, so a multi-threaded runtime can spawn them; the stores need no
/// runtime of their own (every other test drives them with `block_on`).
#[test]
fn futures_run_on_a_multi_threaded_tokio_runtime() {
    fn assert_send<T: Send>(value: T) -> T {
        value
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(redb_store(&dir.path().join("blocks.redb")));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(assert_send(async move {
                    let block = block(i, 4096);
                    store.put(block.clone()).await.unwrap();
                    store.flush().await.unwrap();
                    store.get(block.cid()).await.unwrap()
                }))
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), Some(block(i as u32, 4096)));
        }
    });
    let memory = MemoryBlockstore::new();
    drop(assert_send(memory.get(block(0, 1).cid())));
}

#[test]
fn memory_budget_refuses_puts_that_do_not_fit() {
    let cost = |len: usize| len + MemoryBlockstore::OVERHEAD_PER_BLOCK_BYTES;
    let store = MemoryBlockstore::with_budget(cost(1000) + cost(500));
    block_on(async {
        store.put(block(1, 1000)).await.unwrap();
        // Already stored blocks and duplicates in the batch cost nothing more.
        store
            .put_many(vec![block(1, 1000), block(2, 500), block(2, 500)])
            .await
            .unwrap();
        assert_eq!(store.used_bytes(), cost(1000) + cost(500));
        assert_eq!(store.len(), 2);

        // A batch that does not fit stores none of its blocks.
        let error = store
            .put_many(vec![block(1, 1000), block(3, 0)])
            .await
            .unwrap_err();
        assert_eq!(
            error,
            MemoryBlockstoreError::OverBudget {
                needed: cost(0),
                available: 0,
                budget: cost(1000) + cost(500),
            }
        );
        assert!(!store.has(block(3, 0).cid()).await.unwrap());

        // Deleting frees its cost.
        store.delete(&v1(block(2, 500).cid())).await.unwrap();
        assert_eq!(store.used_bytes(), cost(1000));
        store.put(block(3, 500)).await.unwrap();
        assert_eq!(store.used_bytes(), store.budget_bytes().unwrap());
    });
}

#[test]
fn redb_puts_wait_for_a_full_write_buffer_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let buffer_bytes = 16 * 1024;
    let store = RedbBlockstore::open(
        dir.path().join("blocks.redb"),
        RedbConfig::default()
            .with_write_buffer(buffer_bytes)
            .with_max_batch(4096),
    )
    .unwrap();
    let blocks: Vec<_> = (0..300).map(|i| block(i, 3000)).collect();
    block_on(async {
        for block in &blocks {
            store.put(block.clone()).await.unwrap();
            // Bounded: the buffer never holds more than its budget.
            assert!(store.buffered_bytes() <= buffer_bytes);
        }
        store.flush().await.unwrap();
        assert_eq!(store.buffered_bytes(), 0);
        for block in &blocks {
            assert_eq!(store.get(block.cid()).await.unwrap().as_ref(), Some(block));
        }
    });
}

// Model-based property tests.

/// The pool of blocks the operations pick from: a few sizes, from empty to 20 KB.
fn pool() -> Vec<Block> {
    (0..10_u32)
        .map(|i| block(i, [0, 1, 100, 1000, 4000, 20_000][i as usize % 6]))
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<usize>),
    Delete(usize, bool),
    Get(usize, bool),
    Has(usize, bool),
    GetSize(usize, bool),
    Flush,
    /// Drops the store and opens it again (redb only; a no-op for the memory store).
    Reopen,
    /// Compacts the blob file (redb only; a no-op for the memory store).
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    let index = 0..10_usize;
    prop_oneof![
        4 => prop::collection::vec(index.clone(), 0..4).prop_map(Op::Put),
        2 => (index.clone(), any::<bool>()).prop_map(|(i, v1)| Op::Delete(i, v1)),
        3 => (index.clone(), any::<bool>()).prop_map(|(i, v1)| Op::Get(i, v1)),
        2 => (index.clone(), any::<bool>()).prop_map(|(i, v1)| Op::Has(i, v1)),
        2 => (index, any::<bool>()).prop_map(|(i, v1)| Op::GetSize(i, v1)),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Compact),
    ]
}

/// The reference: multihash to bytes, with the memory store's budget rule when `budget` is set.
#[derive(Debug, Default)]
struct Model {
    blocks: HashMap<Multihash<64>, Bytes>,
    budget: Option<usize>,
}

impl Model {
    fn used(&self) -> usize {
        self.blocks
            .values()
            .map(|data| data.len() + MemoryBlockstore::OVERHEAD_PER_BLOCK_BYTES)
            .sum()
    }

    /// Applies a put; `false` if the budget refuses it (and then nothing changes).
    fn put(&mut self, blocks: &[Block]) -> bool {
        let mut next = self.blocks.clone();
        for block in blocks {
            next.insert(*block.cid().hash(), block.data().clone());
        }
        let next = Self {
            blocks: next,
            budget: self.budget,
        };
        if self.budget.is_some_and(|budget| next.used() > budget) {
            return false;
        }
        *self = next;
        true
    }
}

/// Runs `op` on `store` and `model` and checks they agree. `Reopen` is the caller's.
async fn step<B: Blockstore>(store: &B, model: &mut Model, pool: &[Block], op: &Op) {
    let cid = |i: usize, as_v1: bool| {
        let cid = *pool[i].cid();
        if as_v1 { v1(&cid) } else { cid }
    };
    match op {
        Op::Put(indices) => {
            let blocks: Vec<_> = indices.iter().map(|&i| pool[i].clone()).collect();
            let fits = model.put(&blocks);
            assert_eq!(store.put_many(blocks).await.is_ok(), fits);
        }
        Op::Delete(i, as_v1) => {
            store.delete(&cid(*i, *as_v1)).await.unwrap();
            model.blocks.remove(pool[*i].cid().hash());
        }
        Op::Get(i, as_v1) => {
            let cid = cid(*i, *as_v1);
            let got = store.get(&cid).await.unwrap();
            let expected = model.blocks.get(cid.hash()).cloned();
            assert_eq!(
                got.as_ref().map(Block::cid),
                expected.as_ref().map(|_| &cid)
            );
            assert_eq!(got.map(|block| block.into_parts().1), expected);
        }
        Op::Has(i, as_v1) => {
            let cid = cid(*i, *as_v1);
            assert_eq!(
                store.has(&cid).await.unwrap(),
                model.blocks.contains_key(cid.hash())
            );
        }
        Op::GetSize(i, as_v1) => {
            let cid = cid(*i, *as_v1);
            assert_eq!(
                store.get_size(&cid).await.unwrap(),
                model.blocks.get(cid.hash()).map(Bytes::len)
            );
        }
        Op::Flush => store.flush().await.unwrap(),
        Op::Reopen | Op::Compact => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn memory_store_matches_the_model(
        ops in prop::collection::vec(op(), 1..60),
        budget in prop::option::of(0..60_000_usize),
    ) {
        let pool = pool();
        let store = budget.map_or_else(MemoryBlockstore::new, MemoryBlockstore::with_budget);
        let mut model = Model { budget, ..Model::default() };
        block_on(async {
            for op in &ops {
                step(&store, &mut model, &pool, op).await;
                assert_eq!(store.used_bytes(), model.used());
                assert_eq!(store.len(), model.blocks.len());
            }
        });
    }
}

proptest! {
    // Each case creates a file and syncs it at every flush and reopening: about 0.4 s in a
    // debug build.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn redb_store_matches_the_model(
        ops in prop::collection::vec(op(), 1..60),
        write_buffer in prop_oneof![Just(1_usize), Just(8_000), Just(1 << 20)],
        max_batch in prop_oneof![Just(1_usize), Just(10_000), Just(1 << 20)],
        // Blocks over 500 bytes in the blob file, or only those over 16 KiB (the default) in
        // batches of 1 MiB of them (none here).
        blobs in any::<bool>(),
        // The writer compacts on its own as soon as a third of the blob file is dead.
        auto_compaction in any::<bool>(),
    ) {
        let pool = pool();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks.redb");
        let mut config = RedbConfig::default()
            .with_write_buffer(write_buffer)
            .with_max_batch(max_batch)
            .with_read_threads(1)
            .with_compaction_chunk(3000);
        if blobs {
            config = config.with_blob_threshold(500).with_blob_min_batch(0);
        }
        config = if auto_compaction {
            config.with_compaction_ratio(0.3).with_compaction_min_dead(1)
        } else {
            config.with_compaction_ratio(f64::INFINITY)
        };
        let mut store = RedbBlockstore::open(&path, config.clone()).unwrap();
        let mut model = Model::default();
        block_on(async {
            for op in &ops {
                if let Op::Reopen = op {
                    // Dropping commits and syncs every accepted write.
                    drop(store);
                    store = RedbBlockstore::open(&path, config.clone()).unwrap();
                }
                if let Op::Compact = op {
                    // Nothing written during it: nothing dead after it.
                    store.compact().await.unwrap();
                    assert_eq!(store.dead_blob_bytes(), 0);
                }
                assert!(store.dead_blob_bytes() <= store.blob_file_bytes());
                step(&store, &mut model, &pool, op).await;
            }
            // Everything the model holds is in the store, under both CIDs.
            for block in &pool {
                let expected = model.blocks.contains_key(block.cid().hash());
                assert_eq!(store.has(&v1(block.cid())).await.unwrap(), expected);
            }
        });
    }
}
