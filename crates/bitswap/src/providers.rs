//! Provider records: the DHT key of a block, and the CIDs searched for under each key.
//!
//! IPFS keys provider records by a block's multihash, not by its CID: the CIDv0 and the
//! CIDv1 (raw, dag-pb, ...) of the same bytes have one record. kad's answers carry that key
//! alone, so the behaviour remembers which CIDs it searched for under it.

use std::collections::{HashMap, VecDeque};

use cid::Cid;
use libp2p::kad::RecordKey;

/// Keys remembered: the searches of the last minutes, many more than the client engine starts
/// in that time (it rate-limits them).
const MAX_KEYS: usize = 1024;

/// CIDs remembered per key: every CID of one multihash a node could want at once (CIDv0 and
/// CIDv1 of a few codecs).
const MAX_CIDS_PER_KEY: usize = 4;

/// The provider record key of `cid`, as kad stores and looks it up
/// (`kad::Behaviour::get_providers`, `kad::Behaviour::start_providing`): the bytes of its
/// multihash, as kubo and Helia key provider records.
///
/// ```
/// let block = bitswap::Block::raw("hello")?;
/// let key = bitswap::provider_key(block.cid());
/// assert_eq!(key.as_ref(), &block.cid().hash().to_bytes()[..]);
/// // The CIDv0 of the same bytes has the same record.
/// let v0 = bitswap::Block::from_v0_data(block.data().clone())?;
/// let dag_pb = bitswap::Block::dag_pb(block.data().clone())?;
/// assert_eq!(bitswap::provider_key(v0.cid()), bitswap::provider_key(dag_pb.cid()));
/// # Ok::<_, bitswap::BlockError>(())
/// ```
pub fn provider_key(cid: &Cid) -> RecordKey {
    RecordKey::new(&cid.hash().to_bytes())
}

/// The CIDs searched for under each key, for the last [`MAX_KEYS`] keys searched for.
#[derive(Debug, Default)]
pub(crate) struct Searches {
    cids: HashMap<RecordKey, Vec<Cid>>,
    /// The keys in the order they were first searched for, oldest first.
    order: VecDeque<RecordKey>,
}

impl Searches {
    /// `cid` is searched for under `key`.
    pub(crate) fn insert(&mut self, key: RecordKey, cid: Cid) {
        if let Some(cids) = self.cids.get_mut(&key) {
            if !cids.contains(&cid) && cids.len() < MAX_CIDS_PER_KEY {
                cids.push(cid);
            }
            return;
        }
        if self.order.len() >= MAX_KEYS
            && let Some(oldest) = self.order.pop_front()
        {
            self.cids.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.cids.insert(key, vec![cid]);
    }

    /// The CIDs searched for under `key` (none if it was not, or long ago).
    pub(crate) fn cids(&self, key: &RecordKey) -> &[Cid] {
        self.cids.get(key).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use ipfs_blockstore::Block;

    use super::*;

    #[test]
    fn every_cid_of_a_multihash_is_found_by_its_key() {
        let mut searches = Searches::default();
        let raw = Block::raw("a").expect("block");
        let dag_pb = Block::dag_pb("a").expect("block");
        let key = provider_key(raw.cid());
        searches.insert(key.clone(), *raw.cid());
        searches.insert(provider_key(dag_pb.cid()), *dag_pb.cid());
        searches.insert(key.clone(), *raw.cid());
        assert_eq!(searches.cids(&key), [*raw.cid(), *dag_pb.cid()]);
        let other = Block::raw("b").expect("block");
        assert!(searches.cids(&provider_key(other.cid())).is_empty());
    }

    #[test]
    fn the_oldest_keys_are_forgotten() {
        let mut searches = Searches::default();
        let blocks: Vec<Block> = (0..=MAX_KEYS)
            .map(|i| Block::raw(i.to_string()).expect("block"))
            .collect();
        for block in &blocks {
            searches.insert(provider_key(block.cid()), *block.cid());
        }
        assert_eq!(searches.cids.len(), MAX_KEYS);
        assert_eq!(searches.order.len(), MAX_KEYS);
        assert!(searches.cids(&provider_key(blocks[0].cid())).is_empty());
        let last = &blocks[MAX_KEYS];
        assert_eq!(searches.cids(&provider_key(last.cid())), [*last.cid()]);
    }
}
