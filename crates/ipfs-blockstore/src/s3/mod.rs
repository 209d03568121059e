//! [`S3Blockstore`]: blocks as objects of an S3-compatible bucket, behind a local cache of hot
//! blocks and a membership filter.

mod error;
mod filter;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use cid::Cid;
use futures::{StreamExt as _, TryStreamExt as _};
use multihash::Multihash;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt as _, PutMode, PutPayload,
    RetryConfig,
    aws::{AmazonS3Builder, AmazonS3ConfigKey},
    path::Path,
};
use tokio::sync::Semaphore;

pub use error::{S3BlockstoreError, S3OpenError};
use filter::{Filter, Fingerprints, Listed, Verdict, fingerprint, fingerprint_bytes};

use crate::{Block, BlockError, Blockstore, MAX_BLOCK_SIZE, config_setters};

/// Settings of an [`S3Blockstore`], built with [`S3Config::default`] and the `with_*` setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct S3Config {
    cache_bytes: u64,
    max_gets: usize,
    max_puts: usize,
    filter_refresh: Duration,
    miss_confirms_per_second: u32,
    max_filter_entries: usize,
    retries: usize,
    max_backoff: Duration,
    retry_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            cache_bytes: 256 << 20,
            max_gets: 128,
            max_puts: 32,
            filter_refresh: Duration::from_secs(60),
            miss_confirms_per_second: 20,
            max_filter_entries: 8 << 20,
            retries: 4,
            max_backoff: Duration::from_secs(2),
            retry_timeout: Duration::from_secs(15),
        }
    }
}

impl S3Config {
    config_setters! {
        /// Sets the bytes of hot blocks kept in memory (data plus
        /// [`S3Blockstore::CACHE_OVERHEAD_BYTES`] each); 0 keeps none. Blocks read or written go
        /// in; the least recently and frequently used leave first. Default: 256 MiB.
        with_cache_bytes(bytes: u64) -> cache_bytes;

        /// Sets how many reads (GET and HEAD) may be in flight at once (at least 1). Default: 128,
        /// as many as the Bitswap server asks at once by default, so that a store 20 ms away
        /// answers about 6,400 lookups a second.
        with_max_gets(gets: usize) -> max_gets = gets.max(1);

        /// Sets how many writes may be in flight at once (at least 1), for all puts together.
        /// Default: 32.
        with_max_puts(puts: usize) -> max_puts = puts.max(1);

        /// Sets how often the membership filter is rebuilt by listing the bucket: the staleness
        /// window for blocks other stores put (see [`S3Blockstore`]). Default: 60 seconds.
        with_filter_refresh(every: Duration) -> filter_refresh;

        /// Sets how many filter misses a second are confirmed by a request (HEAD); the rest are
        /// answered "absent" at once. 0 confirms none. Default: 20.
        with_miss_confirms_per_second(confirms: u32) -> miss_confirms_per_second;

        /// Sets the most blocks the membership filter holds (about 16 bytes each); past it, misses
        /// are no longer trusted and every lookup asks the bucket. Default: 8 Mi blocks (2 TiB of
        /// 256 KiB blocks, about 128 MiB of memory).
        with_max_filter_entries(entries: usize) -> max_filter_entries;
    }

    /// Sets the retries of a failed request (connection errors, HTTP 5xx and 429), with
    /// exponential backoff from 100 ms up to `max_backoff`, all within `timeout`. Applies to
    /// stores opened with [`S3Blockstore::from_url`]. Default: 4 retries, 2 s, 15 s.
    pub fn with_retries(
        mut self,
        retries: usize,
        max_backoff: Duration,
        timeout: Duration,
    ) -> Self {
        self.retries = retries;
        self.max_backoff = max_backoff;
        self.retry_timeout = timeout;
        self
    }
}

/// Requests an [`S3Blockstore`] made, by kind, since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Stats {
    /// Object reads (GET).
    pub gets: u64,
    /// Existence and size checks (HEAD).
    pub heads: u64,
    /// Object writes (PUT), each conditional on the object being absent except repairs.
    pub puts: u64,
    /// PUTs the service refused because the block's object was there already: nothing was
    /// written.
    pub already_stored: u64,
    /// Object deletes.
    pub deletes: u64,
    /// Pages of listings (each a request of up to 1,000 keys).
    pub list_pages: u64,
    /// Lookups answered from the cache or the filter, without a request.
    pub answered_locally: u64,
}

#[derive(Debug, Default)]
struct Counters {
    gets: AtomicU64,
    heads: AtomicU64,
    puts: AtomicU64,
    already_stored: AtomicU64,
    deletes: AtomicU64,
    list_pages: AtomicU64,
    answered_locally: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Blocks stored as objects of an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO,
/// SeaweedFS, Garage, Ceph, ...), one object per block, shared by any number of stores and
/// nodes.
///
/// # Layout
///
/// A block is the object `PREFIX/KEY`, where `KEY` is its multihash in lower-case base32
/// without padding, as flatfs and go-ds-s3 name their files (there in upper case): every CID
/// of the same multihash finds the same object. The object holds the block's bytes and
/// nothing else.
///
/// # Writes
///
/// [`put_many`](Blockstore::put_many) writes its blocks concurrently (at most
/// [`S3Config::with_max_puts`] requests in flight for the store) and returns once S3 has
/// acknowledged every one: S3 acknowledges a PUT once it is durable, so
/// [`flush`](Blockstore::flush) has nothing left to wait for. Each write is one conditional
/// PUT (`If-None-Match: *`): the service refuses it if the block's object is there already,
/// so a stored block is not written again, in one round trip rather than a HEAD and a PUT
/// (the price: the block's bytes are sent before the refusal). A block whose copy a read
/// found corrupt is written unconditionally by the next put. Two stores writing the same
/// block at once write the same bytes, and one of them is refused. An interrupted write
/// leaves no object: a PUT is whole or absent. The service must support conditional writes
/// (AWS S3, R2, MinIO and SeaweedFS do).
///
/// # Reads
///
/// Every block read is verified against its CID; a corrupt copy is
/// [`S3BlockstoreError::Corrupt`], never a block. At most [`S3Config::with_max_gets`] reads
/// are in flight. Failed requests are retried with backoff; the error after the last retry
/// says whether the service was unreachable, denied access or throttled.
///
/// # The local tier
///
/// - A cache of hot blocks, bounded in bytes ([`S3Config::with_cache_bytes`]; moka's
///   TinyLFU): reads and writes fill it, and lookups of cached blocks make no request.
/// - A membership filter of the bucket's blocks, rebuilt by listing the bucket every
///   [`S3Config::with_filter_refresh`] (in the background, started by a lookup) and kept up
///   with this store's own writes. [`has`](Blockstore::has) and
///   [`get_size`](Blockstore::get_size) of a block the filter does not hold make no request
///   (beyond [`S3Config::with_miss_confirms_per_second`] confirmations), so a Bitswap server
///   answers wants for blocks nobody stored for free. A hit is always confirmed, so the
///   filter never makes an absent block look stored; a miss is trusted only after a
///   complete listing (a listing that fails or is cut short changes nothing). [`get`](
///   Blockstore::get) does not consult the filter.
///
/// **Staleness:** a block another store put after this store's last listing began can look
/// absent to `has` and `get_size` until the next listing completes, at most the refresh
/// interval plus the listing's own time, unless a confirmation finds it sooner.
///
/// # Runtime
///
/// The requests run on tokio (through `object_store`'s HTTP client): the futures of this store
/// must be polled within a tokio runtime.
///
/// # Example
///
/// On `object_store`'s in-memory backend; [`S3Blockstore::from_url`] opens a bucket.
///
/// ```
/// use std::sync::Arc;
///
/// use bytes::Bytes;
/// use ipfs_blockstore::{Block, Blockstore, S3Blockstore, S3Config};
/// use object_store::memory::InMemory;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = S3Config::default().with_cache_bytes(64 << 20);
/// let store = S3Blockstore::new(Arc::new(InMemory::new()), "blocks", &config);
/// let block = Block::from_v0_data(Bytes::from_static(b"hello"))?;
/// tokio::runtime::Runtime::new()?.block_on(async {
///     store.put(block.clone()).await?;
///     assert_eq!(store.get(block.cid()).await?, Some(block.clone()));
///     // A complete listing makes the filter trusted: absent blocks now cost no request.
///     store.refresh_filter().await?;
///     let absent = Block::from_v0_data(Bytes::from_static(b"absent"))?;
///     assert!(!store.has(absent.cid()).await?);
///     Ok::<_, Box<dyn std::error::Error>>(())
/// })?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct S3Blockstore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    objects: Arc<dyn ObjectStore>,
    prefix: Path,
    cache: moka::sync::Cache<Multihash<64>, Bytes>,
    filter: Filter,
    gets: Semaphore,
    puts: Semaphore,
    max_puts: usize,
    /// Blocks whose copy a read found corrupt: the next put writes them again. Bounded by
    /// [`MAX_CORRUPT_KEPT`].
    corrupt: Mutex<HashSet<Multihash<64>>>,
    counters: Counters,
}

/// Most corrupt blocks remembered for repair: beyond that, a corrupt copy of the same size is
/// only rewritten after it is deleted.
const MAX_CORRUPT_KEPT: usize = 1024;

impl S3Blockstore {
    /// Bytes each cached block costs besides its data.
    pub const CACHE_OVERHEAD_BYTES: u32 = 160;

    /// A store on `objects` (an S3 client, or any `object_store` backend such as
    /// `object_store::memory::InMemory` for tests), with its blocks under `prefix` (`""` for
    /// the root of the bucket).
    pub fn new(objects: Arc<dyn ObjectStore>, prefix: &str, config: &S3Config) -> Self {
        let cache = moka::sync::Cache::builder()
            .max_capacity(config.cache_bytes)
            .weigher(|_, data: &Bytes| {
                u32::try_from(data.len())
                    .unwrap_or(u32::MAX)
                    .saturating_add(Self::CACHE_OVERHEAD_BYTES)
            })
            .build();
        Self {
            inner: Arc::new(Inner {
                objects,
                prefix: Path::from(prefix),
                cache,
                filter: Filter::new(
                    config.max_filter_entries,
                    config.filter_refresh,
                    config.miss_confirms_per_second,
                ),
                gets: Semaphore::new(config.max_gets),
                puts: Semaphore::new(config.max_puts),
                max_puts: config.max_puts,
                corrupt: Mutex::default(),
                counters: Counters::default(),
            }),
        }
    }

    /// A store on the bucket of `url` (`s3://BUCKET` or `s3://BUCKET/PREFIX`), with the
    /// endpoint, region and credentials of the standard environment variables:
    /// `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
    /// (`AWS_SESSION_TOKEN`), and `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint. Requests
    /// use the path style (`ENDPOINT/BUCKET/KEY`), which every S3-compatible service accepts.
    pub fn from_url(url: &str, config: &S3Config) -> Result<Self, S3OpenError> {
        let (bucket, prefix) = parse_url(url).ok_or_else(|| S3OpenError::BadUrl {
            url: url.to_owned(),
        })?;
        let client = |key| AmazonS3ConfigKey::Client(key);
        let objects = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: config.max_backoff,
                    base: 2.0,
                },
                max_retries: config.retries,
                retry_timeout: config.retry_timeout,
            })
            // Set key by key: the environment may have set other client options.
            .with_config(client(ClientConfigKey::ConnectTimeout), "5s")
            .with_config(client(ClientConfigKey::Timeout), "30s")
            .build()
            .map_err(|error| S3OpenError::Config(Box::new(error)))?;
        Ok(Self::new(Arc::new(objects), prefix, config))
    }

    /// Requests made so far, by kind.
    pub fn stats(&self) -> S3Stats {
        let c = &self.inner.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        S3Stats {
            gets: load(&c.gets),
            heads: load(&c.heads),
            puts: load(&c.puts),
            already_stored: load(&c.already_stored),
            deletes: load(&c.deletes),
            list_pages: load(&c.list_pages),
            answered_locally: load(&c.answered_locally),
        }
    }

    /// Lists the bucket now and rebuilds the membership filter from it (unless a listing is
    /// running already), returning how many blocks it found. A failed or incomplete listing
    /// leaves the filter as it was and returns the error.
    pub async fn refresh_filter(&self) -> Result<usize, S3BlockstoreError> {
        if !self.inner.filter.begin_listing(true) {
            return Ok(self.inner.filter.len());
        }
        self.inner.list().await
    }

    /// Whether the membership filter comes from a complete listing, so that its misses are
    /// answered without a request.
    pub fn filter_trusted(&self) -> bool {
        self.inner.filter.is_trusted()
    }

    /// Starts a listing in the background if one is due (and a tokio runtime is there).
    fn refresh_if_due(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.inner.filter.begin_listing(false) {
            let inner = Arc::clone(&self.inner);
            runtime.spawn(async move {
                if let Err(error) = inner.list().await {
                    tracing::warn!(%error, "listing the S3 bucket failed; the filter is unchanged");
                }
            });
        }
    }

    /// The size of the block of `hash` if the cache holds it (`Some(Some(size))`) or the filter
    /// knows it absent (`Some(None)`); `None` if only the bucket can tell.
    fn size_here(&self, hash: &Multihash<64>) -> Option<Option<usize>> {
        let inner = &self.inner;
        if let Some(data) = inner.cache.get(hash) {
            bump(&inner.counters.answered_locally);
            return Some(Some(data.len()));
        }
        self.refresh_if_due();
        if inner.filter.check(fingerprint(hash)) == Verdict::Absent {
            bump(&inner.counters.answered_locally);
            return Some(None);
        }
        None
    }

    /// The size of the block of `hash`, `None` if absent: from the cache, the filter or a HEAD.
    async fn size_of(&self, hash: &Multihash<64>) -> Result<Option<usize>, S3BlockstoreError> {
        if let Some(size) = self.size_here(hash) {
            return Ok(size);
        }
        let inner = &self.inner;
        let print = fingerprint(hash);
        let _permit = inner.gets.acquire().await.expect("never closed");
        bump(&inner.counters.heads);
        match inner.objects.head(&inner.path(hash)).await {
            Ok(meta) => {
                inner.filter.insert(print);
                Ok(Some(usize::try_from(meta.size).unwrap_or(usize::MAX)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(S3BlockstoreError::classify(error)),
        }
    }

    async fn get_block(&self, cid: &Cid) -> Result<Option<Block>, S3BlockstoreError> {
        let inner = &self.inner;
        let hash = cid.hash();
        if let Some(data) = inner.cache.get(hash) {
            bump(&inner.counters.answered_locally);
            return Ok(Some(Block::from_verified(*cid, data)));
        }
        let data = {
            let _permit = inner.gets.acquire().await.expect("never closed");
            bump(&inner.counters.gets);
            let result = match inner.objects.get(&inner.path(hash)).await {
                Ok(result) => result,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(S3BlockstoreError::classify(error)),
            };
            // Checked before the body is read, so that a huge object costs no memory.
            if result.meta.size > MAX_BLOCK_SIZE as u64 {
                let size = usize::try_from(result.meta.size).unwrap_or(usize::MAX);
                return Err(inner.found_corrupt(cid, BlockError::TooLarge { size }));
            }
            result.bytes().await.map_err(S3BlockstoreError::classify)?
        };
        let block = Block::new(*cid, data).map_err(|error| inner.found_corrupt(cid, error))?;
        inner.filter.insert(fingerprint(hash));
        inner.cache.insert(*hash, block.data().clone());
        Ok(Some(block))
    }

    async fn put_one(&self, block: Block) -> Result<(), S3BlockstoreError> {
        let inner = &self.inner;
        let hash = *block.cid().hash();
        let path = inner.path(&hash);
        let _permit = inner.puts.acquire().await.expect("never closed");
        let repair = inner
            .corrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&hash);
        let mode = if repair {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        bump(&inner.counters.puts);
        let payload = PutPayload::from_bytes(block.data().clone());
        match inner.objects.put_opts(&path, payload, mode.into()).await {
            Ok(_) => {}
            // Only `PutMode::Create` is refused: the object is there.
            Err(object_store::Error::AlreadyExists { .. }) => {
                bump(&inner.counters.already_stored);
            }
            Err(error) => return Err(S3BlockstoreError::classify(error)),
        }
        inner.filter.insert(fingerprint(&hash));
        inner.cache.insert(hash, block.into_parts().1);
        Ok(())
    }
}

impl Inner {
    fn path(&self, hash: &Multihash<64>) -> Path {
        self.prefix.clone().join(object_key(hash))
    }

    fn found_corrupt(&self, cid: &Cid, source: BlockError) -> S3BlockstoreError {
        let mut corrupt = self.corrupt.lock().unwrap_or_else(PoisonError::into_inner);
        if corrupt.len() < MAX_CORRUPT_KEPT {
            corrupt.insert(*cid.hash());
        }
        S3BlockstoreError::Corrupt {
            cid: Box::new(*cid),
            source,
        }
    }

    /// Lists every object under the prefix into a new filter; the caller began the listing.
    async fn list(&self) -> Result<usize, S3BlockstoreError> {
        match self.list_all().await {
            Ok(Some(set)) => {
                let found = set.len();
                self.filter.end_listing(Listed::Complete(set));
                Ok(found)
            }
            Ok(None) => {
                self.filter.end_listing(Listed::TooMany);
                Ok(self.filter.max_entries())
            }
            Err(error) => {
                self.filter.end_listing(Listed::Failed);
                Err(error)
            }
        }
    }

    /// The fingerprints of every block under the prefix, `None` if there are more than the
    /// filter holds.
    async fn list_all(&self) -> Result<Option<Fingerprints>, S3BlockstoreError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        let depth = self.prefix.parts().count() + 1;
        let mut objects = self.objects.list(prefix);
        let mut set = Fingerprints::default();
        let mut seen = 0u64;
        while let Some(meta) = objects
            .try_next()
            .await
            .map_err(S3BlockstoreError::classify)?
        {
            // S3 answers a listing in pages of 1,000 keys.
            if seen.is_multiple_of(1000) {
                bump(&self.counters.list_pages);
            }
            seen += 1;
            // Only the blocks themselves: not objects deeper under the prefix.
            if meta.location.parts().count() != depth {
                continue;
            }
            let Some(bytes) = meta.location.filename().and_then(decode_key) else {
                continue;
            };
            if set.len() >= self.filter.max_entries() {
                return Ok(None);
            }
            set.insert(fingerprint_bytes(&bytes));
        }
        Ok(Some(set))
    }
}

impl Blockstore for S3Blockstore {
    type Error = S3BlockstoreError;

    async fn get(&self, cid: &Cid) -> Result<Option<Block>, Self::Error> {
        self.get_block(cid).await
    }

    async fn has(&self, cid: &Cid) -> Result<bool, Self::Error> {
        Ok(self.size_of(cid.hash()).await?.is_some())
    }

    /// A size the cache or the filter cannot answer is read with the block (a GET, not a
    /// HEAD), which then waits in the cache: the Bitswap server asks a block's size before it
    /// reads the block (for a want-block, or a want-have of a block small enough to send), so
    /// one round trip to the bucket serves both. A want-have of a larger block costs its bytes
    /// from the bucket instead of a HEAD's.
    async fn get_size(&self, cid: &Cid) -> Result<Option<usize>, Self::Error> {
        if let Some(size) = self.size_here(cid.hash()) {
            return Ok(size);
        }
        Ok(self.get_block(cid).await?.map(|block| block.data().len()))
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), Self::Error> {
        futures::stream::iter(blocks)
            .map(|block| self.put_one(block))
            .buffer_unordered(self.inner.max_puts)
            .try_collect()
            .await
    }

    async fn delete(&self, cid: &Cid) -> Result<(), Self::Error> {
        let inner = &self.inner;
        let hash = cid.hash();
        inner.cache.invalidate(hash);
        inner.filter.remove(fingerprint(hash));
        bump(&inner.counters.deletes);
        match inner.objects.delete(&inner.path(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(S3BlockstoreError::classify(error)),
        }
    }

    async fn flush(&self) -> Result<(), Self::Error> {
        // Every put returned only once S3 acknowledged it, and S3 acknowledges durable writes.
        Ok(())
    }
}

/// The bucket and prefix of `s3://BUCKET[/PREFIX]`.
fn parse_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    let valid = |c: char| c.is_ascii_alphanumeric() || "-._".contains(c);
    (!bucket.is_empty() && bucket.chars().all(valid)).then_some((bucket, prefix))
}

/// A multihash as an object key: lower-case base32 without padding.
fn object_key(hash: &Multihash<64>) -> String {
    let mut key = data_encoding::BASE32_NOPAD.encode(&hash.to_bytes());
    key.make_ascii_lowercase();
    key
}

/// The multihash bytes of an object key, if it is one.
fn decode_key(key: &str) -> Option<Vec<u8>> {
    if key.len() > 160
        || !key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return None;
    }
    let bytes = data_encoding::BASE32_NOPAD
        .decode(key.to_ascii_uppercase().as_bytes())
        .ok()?;
    Multihash::<64>::from_bytes(&bytes).ok()?;
    Some(bytes)
}

#[cfg(test)]
mod tests;
