//! The S3 store on `object_store`'s in-memory backend, and on a wrapper of it whose listings
//! fail part way.

use std::sync::atomic::AtomicBool;

use futures::stream::BoxStream;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    PutMultipartOptions, PutOptions, PutResult, RenameOptions, memory::InMemory,
};

use super::*;
use crate::multicodec::RAW;

fn block(n: u32) -> Block {
    let data = Bytes::from(format!("block {n}").into_bytes());
    let hash = multihash_codetable::Code::Sha2_256.digest(&data);
    Block::new(Cid::new_v1(RAW, hash), data).unwrap()
}

use multihash_codetable::MultihashDigest as _;

fn store(objects: Arc<dyn ObjectStore>, config: &S3Config) -> S3Blockstore {
    S3Blockstore::new(objects, "blocks", config)
}

#[tokio::test]
async fn blocks_round_trip_under_base32_keys() {
    let objects = Arc::new(InMemory::new());
    let store = store(objects.clone(), &S3Config::default().with_cache_bytes(0));
    let b = block(1);
    store.put(b.clone()).await.unwrap();
    store.flush().await.unwrap();
    let key = object_key(b.cid().hash());
    assert!(key.starts_with("ciq"), "{key}");
    let object = objects
        .get(&Path::from(format!("blocks/{key}")))
        .await
        .unwrap();
    assert_eq!(object.bytes().await.unwrap(), *b.data());
    assert_eq!(store.get(b.cid()).await.unwrap(), Some(b.clone()));
    assert!(store.has(b.cid()).await.unwrap());
    assert_eq!(store.get_size(b.cid()).await.unwrap(), Some(b.data().len()));
    // Another CID of the same multihash finds it.
    let v0 = Cid::new_v0(*b.cid().hash()).unwrap();
    assert_eq!(store.get(&v0).await.unwrap().unwrap().cid(), &v0);
    assert_eq!(store.get(block(2).cid()).await.unwrap(), None);
    store.delete(b.cid()).await.unwrap();
    store.delete(b.cid()).await.unwrap();
    assert_eq!(store.get(b.cid()).await.unwrap(), None);
    assert_eq!(decode_key(&key).unwrap(), b.cid().hash().to_bytes());
    assert_eq!(decode_key("CIQ"), None);
}

#[tokio::test]
async fn a_stored_block_is_not_written_again() {
    let objects = Arc::new(InMemory::new());
    let store = store(objects, &S3Config::default());
    store.put_many(vec![block(1), block(2)]).await.unwrap();
    store
        .put_many(vec![block(1), block(2), block(3)])
        .await
        .unwrap();
    let stats = store.stats();
    assert_eq!((stats.puts, stats.already_stored), (5, 2));
    assert_eq!(stats.heads, 0, "one request a block");
}

/// Writes `bytes` to `objects` at `path` behind the store's back.
async fn put_object(objects: &InMemory, path: &Path, bytes: Vec<u8>) {
    objects.put(path, PutPayload::from(bytes)).await.unwrap();
}

#[tokio::test]
async fn corrupt_objects_are_errors_and_repaired_by_a_put() {
    let objects = Arc::new(InMemory::new());
    let store = store(objects.clone(), &S3Config::default().with_cache_bytes(0));
    let b = block(1);
    let path = Path::from(format!("blocks/{}", object_key(b.cid().hash())));
    // Same length, other bytes: only the hash tells.
    let mut bad = b.data().to_vec();
    bad[0] ^= 1;
    put_object(&objects, &path, bad.clone()).await;
    // A put finds an object there and writes nothing: it does not read what is there.
    store.put(b.clone()).await.unwrap();
    let held = objects.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(held, bad);
    let error = store.get(b.cid()).await.unwrap_err();
    assert!(error.is_corrupt(), "{error:?}");
    // Once a read found the copy corrupt, the next put replaces it.
    store.put(b.clone()).await.unwrap();
    assert_eq!(store.get(b.cid()).await.unwrap(), Some(b.clone()));
    // Larger than a block may be: refused before its body is read.
    put_object(&objects, &path, vec![0; MAX_BLOCK_SIZE + 1]).await;
    assert!(matches!(
        store.get(b.cid()).await,
        Err(S3BlockstoreError::Corrupt {
            source: BlockError::TooLarge { .. },
            ..
        })
    ));
}

#[tokio::test]
async fn absent_blocks_cost_no_request_once_the_filter_is_built() {
    let objects = Arc::new(InMemory::new());
    let config = S3Config::default().with_miss_confirms_per_second(0);
    let store = store(objects, &config);
    store.put(block(1)).await.unwrap();
    assert_eq!(store.refresh_filter().await.unwrap(), 1);
    assert!(store.filter_trusted());
    let before = store.stats();
    for n in 2..1002 {
        assert!(!store.has(block(n).cid()).await.unwrap());
        assert_eq!(store.get_size(block(n).cid()).await.unwrap(), None);
    }
    let after = store.stats();
    assert_eq!((after.heads, after.gets), (before.heads, before.gets));
    // A block put after the listing, by this store, is known.
    store.put(block(5000)).await.unwrap();
    assert!(store.has(block(5000).cid()).await.unwrap());
}

#[tokio::test]
async fn another_stores_block_is_seen_after_the_next_listing() {
    let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let config = S3Config::default()
        .with_miss_confirms_per_second(0)
        .with_cache_bytes(0);
    let ours = store(Arc::clone(&objects), &config);
    let theirs = store(objects, &config);
    ours.refresh_filter().await.unwrap();
    theirs.put(block(1)).await.unwrap();
    // Within the staleness window: absent to has, found by get.
    assert!(!ours.has(block(1).cid()).await.unwrap());
    assert!(ours.get(block(1).cid()).await.unwrap().is_some());
    ours.refresh_filter().await.unwrap();
    theirs.put(block(2)).await.unwrap();
    ours.refresh_filter().await.unwrap();
    assert!(ours.has(block(2).cid()).await.unwrap());
}

#[tokio::test]
async fn misses_are_confirmed_when_allowed() {
    let objects: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let ours = store(Arc::clone(&objects), &S3Config::default());
    let theirs = store(objects, &S3Config::default());
    ours.refresh_filter().await.unwrap();
    theirs.put(block(1)).await.unwrap();
    assert!(ours.has(block(1).cid()).await.unwrap());
}

/// An in-memory store whose listings fail after the first object while `truncate` is set.
#[derive(Debug)]
struct Truncating {
    inner: InMemory,
    truncate: AtomicBool,
}

impl std::fmt::Display for Truncating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Truncating")
    }
}

#[async_trait::async_trait]
impl ObjectStore for Truncating {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let listing = self.inner.list(prefix);
        if !self.truncate.load(Ordering::Relaxed) {
            return listing;
        }
        listing
            .take(1)
            .chain(futures::stream::once(async {
                Err(object_store::Error::Generic {
                    store: "Truncating",
                    source: "connection reset mid-listing".into(),
                })
            }))
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_truncated_listing_never_makes_present_blocks_absent() {
    let objects = Arc::new(Truncating {
        inner: InMemory::new(),
        truncate: AtomicBool::new(true),
    });
    let config = S3Config::default()
        .with_miss_confirms_per_second(0)
        .with_cache_bytes(0);
    let writer = store(objects.clone(), &config);
    let blocks: Vec<Block> = (0..10).map(block).collect();
    writer.put_many(blocks.clone()).await.unwrap();
    let reader = store(objects.clone(), &config);
    assert!(reader.refresh_filter().await.is_err());
    assert!(!reader.filter_trusted());
    for b in &blocks {
        assert!(reader.has(b.cid()).await.unwrap(), "{}", b.cid());
    }
    // A complete listing after a good one, then a truncated one: the good one stays.
    objects.truncate.store(false, Ordering::Relaxed);
    assert_eq!(reader.refresh_filter().await.unwrap(), 10);
    objects.truncate.store(true, Ordering::Relaxed);
    assert!(reader.refresh_filter().await.is_err());
    for b in &blocks {
        assert!(reader.has(b.cid()).await.unwrap(), "{}", b.cid());
    }
}

#[test]
fn urls_parse() {
    assert_eq!(parse_url("s3://bucket"), Some(("bucket", "")));
    assert_eq!(parse_url("s3://bucket/a/b/"), Some(("bucket", "a/b")));
    assert_eq!(parse_url("s3://"), None);
    assert_eq!(parse_url("s3:///x"), None);
    assert_eq!(parse_url("http://bucket"), None);
    assert!(matches!(
        S3Blockstore::from_url("redb", &S3Config::default()),
        Err(S3OpenError::BadUrl { .. })
    ));
}
