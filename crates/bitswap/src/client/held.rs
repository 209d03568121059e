//! [`Held`]: the CIDs of local-first queries not yet wanted from peers, by query, until the
//! embedder says which of them its store holds. Owns one invariant: `cids` is the number of
//! CIDs held over all queries, which count against the limit of wants.

use std::collections::HashMap;

use cid::Cid;

use super::id::QueryId;

/// CIDs held back by query.
#[derive(Debug, Default)]
pub(super) struct Held {
    by_query: HashMap<QueryId, Vec<Cid>>,
    cids: usize,
}

impl Held {
    /// Holds `cids` of `query` back (a query is held once).
    pub(super) fn hold(&mut self, query: QueryId, cids: Vec<Cid>) {
        self.cids += cids.len();
        if let Some(old) = self.by_query.insert(query, cids) {
            self.cids -= old.len();
        }
    }

    /// Takes the CIDs `query` held, if it held any.
    pub(super) fn release(&mut self, query: QueryId) -> Option<Vec<Cid>> {
        let cids = self.by_query.remove(&query)?;
        self.cids -= cids.len();
        Some(cids)
    }

    /// Whether `query` waits for its store lookup.
    pub(super) fn contains(&self, query: QueryId) -> bool {
        self.by_query.contains_key(&query)
    }

    /// The CIDs `query` holds (none if it holds none).
    pub(super) fn of(&self, query: QueryId) -> impl Iterator<Item = &Cid> {
        self.by_query.get(&query).into_iter().flatten()
    }

    /// The CIDs held over all queries.
    pub(super) fn cids(&self) -> usize {
        self.cids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::testing::block;

    #[test]
    fn the_count_follows_holds_and_releases() {
        let mut held = Held::default();
        let (a, b) = (QueryId::new(1), QueryId::new(2));
        held.hold(a, vec![*block(1).cid(), *block(2).cid()]);
        held.hold(b, vec![*block(3).cid()]);
        assert_eq!(held.cids(), 3);
        assert!(held.contains(a));
        assert_eq!(held.of(b).count(), 1);
        assert_eq!(held.release(a).map(|c| c.len()), Some(2));
        assert_eq!(held.release(a), None);
        assert_eq!(held.cids(), 1);
        assert!(!held.contains(a));
    }
}
