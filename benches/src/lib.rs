//! Benchmarks of the workspace; see the binaries and benches.
//!
//! [`workloads`] implements the peer-task-queue workloads QW1..QW5 of
//! `shared/queue-workloads.md`, shared by the `queue-workloads` runner
//! (`cargo run --release -p benches --bin queue-workloads`) and the criterion bench `queue`
//! (`cargo bench -p benches --bench queue`).
//!
//! [`net`] holds the pieces of the network benches run by `net-bench`
//! (`cargo run --release -p benches --bin net-bench`); [`swarm`] is its `swarm` scenario:
//! seeds (ours, kubo) behind shaped links ([`link_shaper`]) and clients (ours, kubo's,
//! Helia's) fetching from them; [`s3`] is its `s3` scenario: Bitswap
//! serving from the S3 store (SeaweedFS on loopback) against the redb store; [`wants`] is its
//! `wants` scenario: the server's memory under 1000 peers' full wantlists.

pub mod net;
pub mod s3;
pub mod swarm;
pub mod wants;
pub mod workloads;

pub use workloads::{
    AllocProbe, BenchPolicy, BenchQueue, Drained, SplitMix64, UpgradeMerger, WorkloadResult,
};
