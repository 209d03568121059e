//! Benchmarks of the workspace; see the binaries and benches.
