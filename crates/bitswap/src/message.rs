//! Bitswap messages as the rest of the crate sees them: real CIDs, verified blocks, typed
//! enums. Conversions from the wire check everything; blocks are rebuilt from their bytes.

use cid::Cid;
use ipfs_blockstore::{Block, BlockError};

/// What a wantlist entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WantType {
    /// The block itself.
    Block,
    /// Only whether the peer has it (Bitswap 1.2.0; older peers are asked for the block).
    Have,
}

/// One line of a wantlist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// The block wanted.
    pub cid: Cid,
    /// Higher first, within one peer's wantlist.
    pub priority: i32,
    /// Block or presence.
    pub want_type: WantType,
    /// Whether the peer should answer DONT_HAVE when it lacks the block (1.2.0).
    pub send_dont_have: bool,
    /// Withdraws an earlier want for `cid`; the other fields are then ignored.
    pub cancel: bool,
}

impl Entry {
    /// A want for the block, asking for DONT_HAVE if the peer lacks it.
    pub fn want_block(cid: Cid, priority: i32) -> Self {
        Self {
            cid,
            priority,
            want_type: WantType::Block,
            send_dont_have: true,
            cancel: false,
        }
    }

    /// A want for the block's presence, asking for DONT_HAVE if the peer lacks it.
    pub fn want_have(cid: Cid, priority: i32) -> Self {
        Self {
            want_type: WantType::Have,
            ..Self::want_block(cid, priority)
        }
    }

    /// Withdraws a want.
    pub fn cancel(cid: Cid) -> Self {
        Self {
            cid,
            priority: 0,
            want_type: WantType::Block,
            send_dont_have: false,
            cancel: true,
        }
    }
}

/// Wants sent by a peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wantlist {
    /// Wants and cancels, in the order sent.
    pub entries: Vec<Entry>,
    /// The entries replace the whole previous wantlist instead of adding to it.
    pub full: bool,
}

/// Whether a peer has a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockPresenceType {
    /// It has it.
    Have,
    /// It does not.
    DontHave,
}

/// A HAVE or DONT_HAVE answer (Bitswap 1.2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockPresence {
    /// The block concerned.
    pub cid: Cid,
    /// Have or don't have.
    pub presence: BlockPresenceType,
}

/// One Bitswap message: wants, blocks and presences, any of them possibly empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Wants and cancels.
    pub wantlist: Wantlist,
    /// Blocks sent.
    pub blocks: Vec<Block>,
    /// HAVE / DONT_HAVE answers.
    pub presences: Vec<BlockPresence>,
    /// Bytes the sender still has queued for the receiver (1.2.0); 0 if unknown.
    pub pending_bytes: i32,
}

impl Message {
    /// A message carrying `entries` as a wantlist update (not a full wantlist), and nothing
    /// else: how a client asks for blocks, or cancels them.
    ///
    /// ```
    /// # use bitswap::{Block, Entry, Message};
    /// # let block = Block::from_v0_data(bytes::Bytes::from_static(b"hello"))?;
    /// let message = Message::wantlist_update(vec![Entry::want_block(*block.cid(), 1)]);
    /// assert!(!message.wantlist.full);
    /// # Ok::<_, bitswap::BlockError>(())
    /// ```
    pub fn wantlist_update(entries: Vec<Entry>) -> Self {
        Self {
            wantlist: Wantlist {
                entries,
                full: false,
            },
            ..Self::default()
        }
    }

    /// Whether the message carries nothing (no entry, block or presence; not a full wantlist).
    pub fn is_empty(&self) -> bool {
        self.wantlist.entries.is_empty()
            && !self.wantlist.full
            && self.blocks.is_empty()
            && self.presences.is_empty()
    }
}

/// Why a decoded protobuf is not a valid Bitswap message. Entries and presences that make no
/// sense are left out instead (see [`Dropped`](crate::protocol::Dropped)); only what no honest peer
/// sends fails the message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// A block is invalid: a malformed prefix, or over 2 MiB. (A block hashed with a function
    /// this crate does not know is left out, not an error.)
    #[error("block {index}: {source}")]
    Block {
        /// Position among the message's blocks (legacy `blocks` and `payload`) in wire order.
        index: usize,
        /// What is wrong with it.
        #[source]
        source: BlockError,
    },
}
