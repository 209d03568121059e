//! Criterion bench of the S3 store's cache of hot blocks on its hit path: is moka (the
//! well-kept crate the store uses) as fast as a cache of our own?
//!
//! - `cache_hit/moka/*`: `moka::sync::Cache`, built as `S3Blockstore` builds it (bounded in
//!   bytes by a weigher; TinyLFU admission, LRU eviction);
//! - `cache_hit/clock/*`: [`Clock`], a hand-written byte-bounded CLOCK cache: a map from
//!   multihash to slot behind a read-write lock, a reference bit per slot set by reads under
//!   the read lock, and eviction by a sweeping hand under the write lock.
//!
//! Each holds 64 MiB of blocks of 1 KiB or 256 KiB (65,536 or 256 blocks; the bound is twice
//! that, so nothing is evicted), and every get finds its block: keys come from a fixed
//! pseudo-random order over all of them. `1t` gets from one thread, `2t` from two at once;
//! throughput is in gets (both threads' gets together), so a cache that scales shows twice
//! the gets a second at `2t` on a machine with two free cores.

use std::{
    collections::HashMap,
    hint::black_box,
    sync::{
        RwLock,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest as _};

/// The key of a cached block, as in the S3 store.
type Key = Multihash<64>;

/// Bytes each cached block costs besides its data, as in the S3 store.
const OVERHEAD_BYTES: u64 = 160;
/// Bytes of blocks each cache holds.
const HELD_BYTES: usize = 64 << 20;
/// Length of the order in which keys are read (cycled).
const ORDER: usize = 1 << 16;

/// The hit path of a cache of blocks.
trait BlockCache: Sync {
    fn get(&self, key: &Key) -> Option<Bytes>;
    fn insert(&self, key: Key, data: Bytes);
    /// Finishes work an insert may leave pending (moka applies admission and weights lazily).
    fn settle(&self) {}
}

fn weight(data: &Bytes) -> u64 {
    data.len() as u64 + OVERHEAD_BYTES
}

struct Moka(moka::sync::Cache<Key, Bytes>);

impl Moka {
    fn new(bytes: u64) -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|_, data: &Bytes| u32::try_from(weight(data)).unwrap_or(u32::MAX))
                .build(),
        )
    }
}

impl BlockCache for Moka {
    fn get(&self, key: &Key) -> Option<Bytes> {
        self.0.get(key)
    }

    fn insert(&self, key: Key, data: Bytes) {
        self.0.insert(key, data);
    }

    fn settle(&self) {
        self.0.run_pending_tasks();
    }
}

/// A byte-bounded CLOCK cache: the candidate "our own" cache.
struct Clock {
    capacity: u64,
    inner: RwLock<ClockInner>,
}

#[derive(Default)]
struct ClockInner {
    index: HashMap<Key, usize>,
    slots: Vec<Slot>,
    hand: usize,
    bytes: u64,
}

struct Slot {
    key: Key,
    data: Bytes,
    /// Set by reads (under the read lock), cleared by the sweeping hand.
    referenced: AtomicBool,
}

impl Clock {
    fn new(capacity: u64) -> Self {
        Self {
            capacity,
            inner: RwLock::default(),
        }
    }
}

impl ClockInner {
    /// Evicts the first slot from the hand on whose reference bit is clear, clearing the bits
    /// it passes.
    fn evict_one(&mut self) {
        loop {
            self.hand %= self.slots.len();
            let slot = &self.slots[self.hand];
            if slot.referenced.swap(false, Ordering::Relaxed) {
                self.hand += 1;
                continue;
            }
            let victim = self.slots.swap_remove(self.hand);
            self.index.remove(&victim.key);
            self.bytes -= weight(&victim.data);
            if let Some(moved) = self.slots.get(self.hand) {
                self.index.insert(moved.key, self.hand);
            }
            return;
        }
    }
}

impl BlockCache for Clock {
    fn get(&self, key: &Key) -> Option<Bytes> {
        let inner = self.inner.read().expect("not poisoned");
        let slot = &inner.slots[*inner.index.get(key)?];
        slot.referenced.store(true, Ordering::Relaxed);
        Some(slot.data.clone())
    }

    fn insert(&self, key: Key, data: Bytes) {
        let cost = weight(&data);
        if cost > self.capacity {
            return;
        }
        let mut inner = self.inner.write().expect("not poisoned");
        if let Some(&at) = inner.index.get(&key) {
            let old = weight(&inner.slots[at].data);
            inner.bytes = inner.bytes - old + cost;
            inner.slots[at].data = data;
            return;
        }
        while inner.bytes + cost > self.capacity {
            inner.evict_one();
        }
        let at = inner.slots.len();
        inner.slots.push(Slot {
            key,
            data,
            referenced: AtomicBool::new(false),
        });
        inner.index.insert(key, at);
        inner.bytes += cost;
    }
}

/// `count` keys and one shared block of `size` bytes (the bytes do not matter to a cache).
fn fill(cache: &dyn BlockCache, count: usize, size: usize) -> Vec<Key> {
    let data = Bytes::from(vec![7u8; size]);
    let keys: Vec<Key> = (0..count as u64)
        .map(|i| Code::Sha2_256.digest(&i.to_le_bytes()))
        .collect();
    for key in &keys {
        cache.insert(*key, data.clone());
    }
    cache.settle();
    for key in &keys {
        assert!(cache.get(key).is_some(), "every block is cached");
    }
    keys
}

/// A pseudo-random order of `ORDER` indices below `count` (splitmix64).
fn order(count: usize) -> Vec<usize> {
    let mut state = 18u64;
    (0..ORDER)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) % count as u64) as usize
        })
        .collect()
}

/// `iters` gets from each of `threads` threads at once; the time until all are done.
fn gets(
    cache: &dyn BlockCache,
    keys: &[Key],
    order: &[usize],
    threads: usize,
    iters: u64,
) -> Duration {
    let start = Instant::now();
    thread::scope(|scope| {
        for t in 0..threads {
            scope.spawn(move || {
                // Each thread starts elsewhere in the order.
                let mut at = t * ORDER / threads;
                for _ in 0..iters {
                    black_box(cache.get(&keys[order[at]]));
                    at = (at + 1) % ORDER;
                }
            });
        }
    });
    start.elapsed()
}

fn hit_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_hit");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    for (name, size) in [("1KiB", 1024usize), ("256KiB", 256 * 1024)] {
        let count = HELD_BYTES / size;
        let capacity = 2 * count as u64 * (size as u64 + OVERHEAD_BYTES);
        let order = order(count);
        let caches: [(&str, Box<dyn BlockCache>); 2] = [
            ("moka", Box::new(Moka::new(capacity))),
            ("clock", Box::new(Clock::new(capacity))),
        ];
        for (cache_name, cache) in caches {
            let keys = fill(cache.as_ref(), count, size);
            for threads in [1, 2] {
                group.throughput(Throughput::Elements(threads as u64));
                let id = BenchmarkId::new(cache_name, format!("{name}/{threads}t"));
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| gets(cache.as_ref(), &keys, &order, threads, iters));
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, hit_path);
criterion_main!(benches);
