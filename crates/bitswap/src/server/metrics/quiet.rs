//! The [`Meter`] of a build without the `metrics` feature: it writes nothing.

use super::{Stats, Tally};

/// Writes nothing: this build has no metrics.
#[derive(Debug, Default)]
pub(in crate::server) struct Meter(());

impl Meter {
    pub(in crate::server) fn count(&self, _tally: Tally) {}

    pub(in crate::server) fn received(&self, _blocks: u64, _bytes: u64) {}

    pub(in crate::server) fn sent(&self, _blocks: u64, _bytes: u64, _haves: u64, _dont_haves: u64) {
    }

    pub(in crate::server) fn failed(&self) {}

    pub(in crate::server) fn refresh(&self, _stats: impl FnOnce() -> Stats) {}
}
