//! The S3 store against a real S3 server: SeaweedFS on 127.0.0.1, started and ended here.

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use ipfs_blockstore::seaweedfs::SeaweedFs;
use ipfs_blockstore::{Block, Blockstore, S3Blockstore, S3BlockstoreError, S3Config, testing};
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, path::Path};

fn block(n: u32, len: usize) -> Block {
    testing::raw_block(u64::from(n), len)
}

/// A client of `server`'s bucket that gives up on a stopped server within 2 s.
fn client(server: &SeaweedFs) -> Arc<dyn ObjectStore> {
    server.client(1, Duration::from_secs(2))
}

/// A store on `server`'s bucket under `prefix`.
fn open(server: &SeaweedFs, prefix: &str, config: &S3Config) -> S3Blockstore {
    S3Blockstore::new(client(server), prefix, config)
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
    let stats = store.stats();
    assert_eq!(
        (stats.puts, stats.already_stored),
        (80, 40),
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

/// SeaweedFS honours `If-None-Match: *`: a put finds the object there and writes nothing, even
/// over a copy of other bytes, until a read has found that copy corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_does_not_rewrite_an_object_until_a_read_finds_it_corrupt() {
    let Some(server) = SeaweedFs::start("blocks") else {
        return;
    };
    let objects = client(&server);
    let store = S3Blockstore::new(
        Arc::clone(&objects),
        "p",
        &S3Config::default().with_cache_bytes(0),
    );
    let b = block(7, 4096);
    let listed = objects.list_with_delimiter(None).await.unwrap();
    assert!(listed.objects.is_empty(), "a fresh bucket");
    store.put(b.clone()).await.unwrap();
    let path = objects
        .list(Some(&Path::from("p")))
        .next()
        .await
        .unwrap()
        .unwrap()
        .location;
    let mut bad = b.data().to_vec();
    bad[100] ^= 1;
    objects
        .put(&path, PutPayload::from(bad.clone()))
        .await
        .unwrap();
    store.put(b.clone()).await.unwrap();
    assert_eq!(store.stats().already_stored, 1);
    let held = objects.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(held, bad, "the conditional put wrote nothing");
    assert!(store.get(b.cid()).await.unwrap_err().is_corrupt());
    store.put(b.clone()).await.unwrap();
    assert_eq!(store.get(b.cid()).await.unwrap(), Some(b));
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
    // Returns once the restarted server reads and writes objects again.
    server.resume();
    assert_eq!(store.get(b.cid()).await.unwrap(), Some(b));
}
