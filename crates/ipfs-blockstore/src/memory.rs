//! [`MemoryBlockstore`]: blocks in a map, bounded by an optional byte budget.

use std::{
    collections::{HashMap, HashSet},
    sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;

use crate::Block;
use crate::Blockstore;

/// Blocks in memory, keyed by multihash, with an optional budget in bytes.
///
/// Every operation completes at once (the futures are ready on their first poll); nothing is
/// buffered, and [`flush`](Blockstore::flush) has nothing to do. Nothing survives a restart.
///
/// # Budget
///
/// Each stored block costs its data length plus
/// [`OVERHEAD_PER_BLOCK_BYTES`](Self::OVERHEAD_PER_BLOCK_BYTES) (its key and map slot), so the
/// budget bounds the memory used even for many tiny blocks. A [`put_many`](Blockstore::put_many)
/// whose new blocks do not fit fails with [`MemoryBlockstoreError::OverBudget`] and stores none
/// of them; blocks already stored cost nothing more.
///
/// Blocks under [`COPY_BELOW_BYTES`](Self::COPY_BELOW_BYTES) are copied into buffers of their
/// own as they are stored: a block received from a peer is a slice of the message it came in,
/// and keeping the slice would keep the whole message (up to 4 MiB) alive for as long as the
/// block is stored.
///
/// The store refuses rather than evicts: a Bitswap server answers HAVE and sends blocks from
/// its store, so a block that disappears because another one arrived would break promises made
/// to peers (and lose blocks the application pinned). Eviction is a cache policy, which belongs
/// to a layer above that knows what may be dropped.
#[derive(Debug, Default)]
pub struct MemoryBlockstore {
    inner: RwLock<Inner>,
    budget_bytes: Option<usize>,
}

#[derive(Debug, Default)]
struct Inner {
    blocks: HashMap<Multihash<64>, Block>,
    used_bytes: usize,
}

impl MemoryBlockstore {
    /// Bytes each stored block costs besides its data: about its key and hash-map slot.
    pub const OVERHEAD_PER_BLOCK_BYTES: usize = 128;

    /// Blocks smaller than this are copied out of the buffer they share, 128 KiB. A message
    /// holds at most 4 MiB, so a larger block kept as a slice keeps at most 32 times its size
    /// alive, and those are mostly the 256 KiB chunks of files, which come with their message
    /// full of blocks that are all stored. Copying a smaller one costs a fraction of hashing it,
    /// which was done when it arrived.
    pub const COPY_BELOW_BYTES: usize = 128 * 1024;

    /// An empty store without a budget.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that holds at most `budget_bytes` bytes (data plus
    /// [`OVERHEAD_PER_BLOCK_BYTES`](Self::OVERHEAD_PER_BLOCK_BYTES) per block).
    pub fn with_budget(budget_bytes: usize) -> Self {
        Self {
            inner: RwLock::default(),
            budget_bytes: Some(budget_bytes),
        }
    }

    /// The budget in bytes, if any.
    pub fn budget_bytes(&self) -> Option<usize> {
        self.budget_bytes
    }

    /// Bytes charged against the budget: data plus overhead of every stored block.
    pub fn used_bytes(&self) -> usize {
        self.read().used_bytes
    }

    /// How many blocks are stored.
    pub fn len(&self) -> usize {
        self.read().blocks.len()
    }

    /// Whether no block is stored.
    pub fn is_empty(&self) -> bool {
        self.read().blocks.is_empty()
    }

    fn cost(block: &Block) -> usize {
        block.data().len() + Self::OVERHEAD_PER_BLOCK_BYTES
    }

    fn get_now(&self, cid: &Cid) -> Option<Block> {
        let stored = self.read().blocks.get(cid.hash()).cloned()?;
        if stored.cid() == cid {
            return Some(stored);
        }
        // Another CID of the same multihash: the bytes hash to it, so this cannot fail.
        Block::new(*cid, stored.into_parts().1).ok()
    }

    fn put_now(&self, blocks: Vec<Block>) -> Result<(), MemoryBlockstoreError> {
        let mut inner = self.write();
        if let Some(budget) = self.budget_bytes {
            let mut new = HashSet::new();
            let needed: usize = blocks
                .iter()
                .filter(|block| {
                    let key = block.cid().hash();
                    !inner.blocks.contains_key(key) && new.insert(*key)
                })
                .map(Self::cost)
                .sum();
            let available = budget.saturating_sub(inner.used_bytes);
            if needed > available {
                return Err(MemoryBlockstoreError::OverBudget {
                    needed,
                    available,
                    budget,
                });
            }
        }
        for block in blocks {
            let key = *block.cid().hash();
            if inner.blocks.contains_key(&key) {
                continue;
            }
            let cost = Self::cost(&block);
            let block = if block.data().len() < Self::COPY_BELOW_BYTES {
                let (cid, data) = block.into_parts();
                Block::from_verified(cid, Bytes::copy_from_slice(&data))
            } else {
                block
            };
            inner.blocks.insert(key, block);
            inner.used_bytes += cost;
        }
        Ok(())
    }

    fn delete_now(&self, cid: &Cid) {
        let mut inner = self.write();
        if let Some(block) = inner.blocks.remove(cid.hash()) {
            inner.used_bytes -= Self::cost(&block);
        }
    }

    // The lock only guards map operations that cannot panic half-way, so a poisoned lock
    // still holds a consistent map.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Blockstore for MemoryBlockstore {
    type Error = MemoryBlockstoreError;

    async fn get(&self, cid: &Cid) -> Result<Option<Block>, Self::Error> {
        Ok(self.get_now(cid))
    }

    async fn has(&self, cid: &Cid) -> Result<bool, Self::Error> {
        Ok(self.read().blocks.contains_key(cid.hash()))
    }

    async fn get_size(&self, cid: &Cid) -> Result<Option<usize>, Self::Error> {
        Ok(self
            .read()
            .blocks
            .get(cid.hash())
            .map(|block| block.data().len()))
    }

    async fn put_many(&self, blocks: Vec<Block>) -> Result<(), Self::Error> {
        self.put_now(blocks)
    }

    async fn delete(&self, cid: &Cid) -> Result<(), Self::Error> {
        self.delete_now(cid);
        Ok(())
    }

    async fn flush(&self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why a [`MemoryBlockstore`] refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemoryBlockstoreError {
    /// The new blocks of a put do not fit in the budget; none of them was stored.
    #[error("blocks need {needed} bytes but {available} of the {budget}-byte budget are free")]
    OverBudget {
        /// Bytes the new blocks cost (data plus overhead).
        needed: usize,
        /// Bytes left in the budget.
        available: usize,
        /// The budget.
        budget: usize,
    },
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

    use super::*;

    #[test]
    fn small_blocks_are_copied_out_of_the_buffer_they_share() {
        let message = Bytes::from(vec![7u8; 4 << 20]);
        let small = Block::from_v0_data(message.slice(100..1_100)).expect("block");
        let large = Block::from_v0_data(message.slice(1 << 20..2 << 20)).expect("block");
        let store = MemoryBlockstore::new();
        block_on(store.put_many(vec![small.clone(), large.clone()])).expect("put");
        let within = |block: &Block| {
            let range = message.as_ptr_range();
            range.contains(&block.data().as_ptr())
        };
        let stored_small = store.get_now(small.cid()).expect("stored");
        let stored_large = store.get_now(large.cid()).expect("stored");
        assert_eq!(stored_small, small);
        assert!(
            !within(&stored_small),
            "the small block has a buffer of its own"
        );
        assert!(within(&stored_large), "the large block is not copied");
    }
}
