//! The [`Blockstore`] trait: the contract every store of blocks keeps.

use std::{future::Future, sync::Arc};

use cid::Cid;

use crate::Block;

/// An asynchronous store of [`Block`]s keyed by multihash.
///
/// # Rules
///
/// - **Keyed by multihash.** Every CID with the same multihash names the same stored bytes:
///   [`get`](Self::get), [`has`](Self::has), [`get_size`](Self::get_size) and
///   [`delete`](Self::delete) accept any of them, and `get` returns the block under the CID
///   asked for.
/// - **Verified both ways.** [`put_many`](Self::put_many) takes [`Block`]s, whose bytes were
///   checked against their CID; [`get`](Self::get) returns a `Block` too, so a store that reads
///   bytes back from a disk checks them again and reports a corrupt copy as an error, never as
///   a block.
/// - **Ordered.** Puts and deletes take effect in the order their futures complete, and every
///   operation sees all writes completed before it was called (read-your-writes), even when a
///   store buffers them.
/// - **Durable at [`flush`](Self::flush).** A store may buffer writes; `flush` returns once
///   every put and delete completed before it was called survives a crash. Without a flush, a
///   write may be lost in a crash, but a block read back is never corrupt.
/// - **Idempotent.** Putting a stored block again and deleting an absent one succeed.
///
/// # Futures and runtimes
///
/// Every method returns a `Send` future, so a tokio (or any other) multi-threaded task can
/// await it. The futures need no particular runtime: the stores of this crate do their blocking
/// work on their own threads and wake the caller through `futures` channels.
///
/// Dropping a future cancels the operation where it stands: a dropped `put_many` may have
/// stored some of its blocks (a prefix of them for the stores of this crate).
///
/// # Object safety
///
/// The trait is not object safe (`dyn Blockstore` does not compile): its methods return
/// `impl Future`, which avoids boxing a future per call. Code that needs one type for several
/// stores can be generic over `B: Blockstore` or wrap the stores in an enum. `Arc<B>` is a
/// `Blockstore` too, to share one store between the node and the application.
pub trait Blockstore: Send + Sync {
    /// Why an operation failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The block whose multihash is the one of `cid`, as a block with that `cid`, or `None` if
    /// it is not stored.
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Option<Block>, Self::Error>> + Send;

    /// Whether a block with the multihash of `cid` is stored.
    fn has(&self, cid: &Cid) -> impl Future<Output = Result<bool, Self::Error>> + Send;

    /// The size in bytes of the block with the multihash of `cid`, or `None` if it is not
    /// stored.
    fn get_size(
        &self,
        cid: &Cid,
    ) -> impl Future<Output = Result<Option<usize>, Self::Error>> + Send;

    /// Stores `blocks`, in order. A block whose multihash is already stored is stored again
    /// (with the same bytes), which repairs a copy found corrupt.
    ///
    /// Durable only after a later [`flush`](Self::flush) returns.
    fn put_many(&self, blocks: Vec<Block>) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Stores one block: [`put_many`](Self::put_many) with one block.
    fn put(&self, block: Block) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.put_many(vec![block])
    }

    /// Removes the block with the multihash of `cid` (for every CID of that multihash).
    /// Removing an absent block succeeds.
    ///
    /// Durable only after a later [`flush`](Self::flush) returns.
    fn delete(&self, cid: &Cid) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Returns once every put and delete that completed before this call is durable.
    ///
    /// An error means some of them may be lost; the store says what it accepts afterwards.
    fn flush(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

impl<B: Blockstore> Blockstore for Arc<B> {
    type Error = B::Error;

    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Option<Block>, Self::Error>> + Send {
        (**self).get(cid)
    }

    fn has(&self, cid: &Cid) -> impl Future<Output = Result<bool, Self::Error>> + Send {
        (**self).has(cid)
    }

    fn get_size(
        &self,
        cid: &Cid,
    ) -> impl Future<Output = Result<Option<usize>, Self::Error>> + Send {
        (**self).get_size(cid)
    }

    fn put_many(&self, blocks: Vec<Block>) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).put_many(blocks)
    }

    fn put(&self, block: Block) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).put(block)
    }

    fn delete(&self, cid: &Cid) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).delete(cid)
    }

    fn flush(&self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).flush()
    }
}
