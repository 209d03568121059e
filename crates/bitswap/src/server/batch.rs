//! What envelopes are made of: [`Envelope`] and its id, the batches of popped tasks they
//! are packed from ([`TaskBatch`]), and what the engine keeps of each envelope handed out
//! ([`InFlight`]). The engine packs and reports them in `envelope.rs`.

use std::fmt;

use cid::Cid;
use ipfs_blockstore::Block;
use libp2p::PeerId;
use peer_task_queue::{PoppedTask, TaskId};

use super::merger::TaskData;
use crate::message::Message;

/// Identifies an [`Envelope`] until it is reported sent or failed. Unique within one
/// [`Engine`](super::Engine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvelopeId(pub(super) u64);

impl fmt::Display for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "envelope-{}", self.0)
    }
}

/// A message for one peer, from [`Engine::poll_envelope`](super::Engine::poll_envelope). It encodes to one frame of at
/// most 4 MiB for any version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "every envelope must be sent and reported with handle_envelope_sent or _failed"]
pub struct Envelope {
    /// Report it with [`Engine::handle_envelope_sent`](super::Engine::handle_envelope_sent)
    /// or [`Engine::handle_envelope_failed`](super::Engine::handle_envelope_failed).
    pub id: EnvelopeId,
    /// The recipient.
    pub peer: PeerId,
    /// Blocks and presences, with `pending_bytes` set to the work still queued for the peer.
    pub message: Message,
}

/// A popped task and, for a block, the block once read.
#[derive(Debug)]
pub(super) struct Slot {
    pub(super) task: PoppedTask<Cid, TaskData>,
    pub(super) block: Option<Block>,
}

/// Tasks popped together for one peer, answered by one or more envelopes.
#[derive(Debug)]
pub(super) struct TaskBatch {
    pub(super) peer: PeerId,
    pub(super) session: u64,
    pub(super) slots: Vec<Slot>,
    /// Block reads not yet answered; the batch is assembled when none is left.
    pub(super) gets_left: usize,
    /// First slot not yet put in an envelope.
    pub(super) next: usize,
    /// Envelopes handed out and neither reported nor stalled.
    pub(super) envelopes_out: usize,
    /// Work the peer still had pending when the batch was popped, in bytes.
    pub(super) pending_work: u64,
}

/// An envelope handed out.
#[derive(Debug)]
pub(super) struct InFlight {
    pub(super) batch: u64,
    /// It counts in its batch's `envelopes_out` (so against
    /// [`Config::max_envelopes_in_flight`](super::Config::max_envelopes_in_flight)): handed
    /// out while its peer's window was at the floor. Envelopes of a grown window are paced by
    /// the window (and the global cap on windows) instead.
    pub(super) counted: bool,
    /// Reported stalled: it no longer counts in its batch's `envelopes_out`.
    pub(super) stalled: bool,
    /// The work of its tasks, in bytes.
    pub(super) work: u64,
    pub(super) peer: PeerId,
    pub(super) session: u64,
    pub(super) tasks: Vec<TaskId>,
    pub(super) answers: Vec<Reply>,
}

/// One answer of an envelope to a want: the block, HAVE or DONT_HAVE.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reply {
    Block { cid: Cid, bytes: u64 },
    Have(Cid),
    DontHave(Cid),
}
