//! The S3 store against a real S3 server: SeaweedFS on 127.0.0.1, started and ended here.

#[path = "support/seaweedfs.rs"]
mod seaweedfs;

use std::{sync::Arc, time::Duration};

use ipfs_blockstore::{Block, Blockstore, S3Blockstore, S3BlockstoreError, S3Config, testing};
use object_store::aws::AmazonS3Builder;
use seaweedfs::SeaweedFs;

fn block(n: u32, len: usize) -> Block {
    testing::raw_block(u64::from(n), len)
}

/// A store on `server`'s bucket under `prefix`. The client is configured here rather than
/// from the environment (as `S3Blockstore::from_url` does), which tests in one process
/// cannot set safely; the node's tests go through the environment.
fn open(server: &SeaweedFs, prefix: &str, config: &S3Config) -> S3Blockstore {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(server.bucket())
        .with_retry(object_store::RetryConfig {
            max_retries: 1,
            retry_timeout: Duration::from_secs(2),
            ..Default::default()
        });
    for (key, value) in server.env() {
        builder = builder.with_config(key.to_ascii_lowercase().parse().unwrap(), value);
    }
    S3Blockstore::new(Arc::new(builder.build().unwrap()), prefix, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_round_trip_and_listings_fill_the_filter() {
    let Some(server) = SeaweedFs::start("blocks") else {
        return;
    };
    let config = S3Config::default().with_miss_confirms_per_second(0);
    let store = open(&server, "one", &config);
    let blocks: Vec<Block> = (0..40).map(|n| block(n, 256 * 1024)).collect();
    store.put_many(blocks.clone()).await.unwrap();
    store.put_many(blocks.clone()).await.unwrap();
    assert_eq!(
        store.stats().puts,
        40,
        "stored blocks are not written again"
    );
    store.flush().await.unwrap();

    // Another store on the bucket: reads them, verified.
    let other = open(&server, "one", &config.clone().with_cache_bytes(0));
    for b in &blocks {
        assert_eq!(other.get(b.cid()).await.unwrap().as_ref(), Some(b));
    }
    assert_eq!(other.refresh_filter().await.unwrap(), 40);
    let before = other.stats();
    for n in 1000..1100 {
        assert!(!other.has(block(n, 8).cid()).await.unwrap());
    }
    assert_eq!(other.stats().heads, before.heads, "misses cost no request");
    for b in &blocks {
        assert_eq!(other.get_size(b.cid()).await.unwrap(), Some(b.data().len()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_is_a_typed_error_and_then_serves_again() {
    let Some(mut server) = SeaweedFs::start("blocks") else {
        return;
    };
    let config = S3Config::default().with_cache_bytes(0);
    let store = open(&server, "", &config);
    let b = block(1, 1024);
    store.put(b.clone()).await.unwrap();
    server.stop();
    let error = store.get(b.cid()).await.unwrap_err();
    assert!(
        matches!(error, S3BlockstoreError::Unreachable(_)),
        "{error:?}"
    );
    assert!(store.has(b.cid()).await.is_err());
    server.resume();
    // A restarted SeaweedFS answers S3 requests before its volume server has registered
    // again, with 500 InternalError for a short while: the block must come back within 30 s.
    let mut got = store.get(b.cid()).await;
    for _ in 0..60 {
        if got.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        got = store.get(b.cid()).await;
    }
    assert_eq!(got.unwrap(), Some(b));
}
