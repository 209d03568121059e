//! Peers that never read cannot pin the server's envelopes: three of them want every large
//! block and stop reading, while an honest peer fetches.

use std::time::Duration;

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_that_never_read_do_not_stall_an_honest_fetch() {
    let target = target().await;
    honest_fetch(&target).await;
    let normal = honest_fetch(&target).await;
    reset_peak_rss();
    let before = rss();
    let mut lazy = Vec::new();
    for _ in 0..3 {
        lazy.push(lazy_peer(&target).await);
    }
    // Let the server fill their streams.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attacked = honest_fetch(&target).await;
    let after = rss();
    eprintln!(
        "3 peers never read: honest fetch {normal:?} alone, {attacked:?} under attack; {}",
        memory_report(before)
    );
    assert_twice_normal("the honest fetch", attacked, normal);
    // What waits for each lazy peer is bounded by its outstanding bytes (1 MiB, one task
    // more) plus transport buffers.
    assert!(after.saturating_sub(before) < 64 * MIB);
    drop(lazy);
}
