//! What envelopes are made of: [`Envelope`] and its id, the batches of popped tasks they
//! are packed from ([`TaskBatch`]), what the engine keeps of each envelope handed out
//! ([`InFlight`]), and [`Batches`], those in flight. The engine packs and reports them in
//! `envelope.rs`.

use std::{collections::VecDeque, fmt};

use cid::Cid;
use ipfs_blockstore::Block;
use libp2p::PeerId;
use peer_task_queue::{PoppedTask, TaskId};

use super::merger::TaskData;
use crate::{map::Map, message::Message};

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
    gets_left: usize,
    /// First slot not yet put in an envelope.
    pub(super) next: usize,
    /// Envelopes handed out, counted, and neither reported nor stalled: only [`Batches`]
    /// takes them off, so the batch lives until they are all accounted for.
    envelopes_out: usize,
    /// Work the peer still had pending when the batch was popped, in bytes.
    pub(super) pending_work: u64,
}

impl TaskBatch {
    /// Tasks popped for `peer` in `session`, `gets` of them with a block to read, while
    /// `pending_work` bytes stayed queued.
    pub(super) fn new(
        peer: PeerId,
        session: u64,
        slots: Vec<Slot>,
        gets: usize,
        pending_work: u64,
    ) -> Self {
        Self {
            peer,
            session,
            slots,
            gets_left: gets,
            next: 0,
            envelopes_out: 0,
            pending_work,
        }
    }

    /// An envelope packed from this batch counts against
    /// [`Config::max_envelopes_in_flight`](super::Config::max_envelopes_in_flight) until
    /// reported or stalled.
    pub(super) fn count_envelope(&mut self) {
        self.envelopes_out += 1;
    }
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

/// The batches in flight and the envelopes handed out from them. Batch and envelope ids are
/// never reused; `ready` lists, oldest first, batches whose block reads are all answered; a
/// batch is forgotten once every slot is packed and none of its counted envelopes is out.
#[derive(Debug, Default)]
pub(super) struct Batches {
    batches: Map<u64, TaskBatch>,
    next_batch: u64,
    /// Batches whose blocks are all fetched, waiting for `poll_envelope`, oldest first.
    ready: VecDeque<u64>,
    envelopes: Map<u64, InFlight>,
    next_envelope: u64,
}

impl Batches {
    /// Batches in flight.
    pub(super) fn len(&self) -> usize {
        self.batches.len()
    }

    /// Envelopes handed out and not yet reported.
    pub(super) fn envelopes_out(&self) -> usize {
        self.envelopes.len()
    }

    /// An id for a new batch.
    pub(super) fn new_id(&mut self) -> u64 {
        let id = self.next_batch;
        self.next_batch += 1;
        id
    }

    /// Adds a batch popped under `id` (from [`new_id`](Self::new_id)); it is ready at once if
    /// it reads no block.
    pub(super) fn insert(&mut self, id: u64, batch: TaskBatch) {
        let ready = batch.gets_left == 0;
        self.batches.insert(id, batch);
        if ready {
            self.ready.push_back(id);
        }
    }

    pub(super) fn get(&self, id: &u64) -> Option<&TaskBatch> {
        self.batches.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &u64) -> Option<&mut TaskBatch> {
        self.batches.get_mut(id)
    }

    /// Takes a batch out to pack it; [`put_back`](Self::put_back) returns it.
    pub(super) fn take(&mut self, id: u64) -> Option<TaskBatch> {
        self.batches.remove(&id)
    }

    pub(super) fn put_back(&mut self, id: u64, batch: TaskBatch) {
        self.batches.insert(id, batch);
    }

    /// The block read for slot `slot` of batch `id` was answered (`None`: missing); the
    /// batch is ready when it was the last.
    pub(super) fn fill(&mut self, id: u64, slot: usize, block: Option<Block>) {
        let Some(batch) = self.batches.get_mut(&id) else {
            return;
        };
        batch.slots[slot].block = block;
        batch.gets_left -= 1;
        if batch.gets_left == 0 {
            self.ready.push_back(id);
        }
    }

    /// The oldest ready batch.
    pub(super) fn first_ready(&self) -> Option<u64> {
        self.ready.front().copied()
    }

    /// Takes the oldest ready batch off the ready list once it has no slot left to pack.
    pub(super) fn pop_ready_if_packed(&mut self, id: u64) {
        if self
            .batches
            .get(&id)
            .is_none_or(|b| b.next >= b.slots.len())
        {
            self.ready.pop_front();
        }
    }

    /// The `i`th ready batch, oldest first.
    pub(super) fn ready_at(&self, i: usize) -> Option<u64> {
        self.ready.get(i).copied()
    }

    /// Takes the `i`th ready batch off the ready list.
    pub(super) fn unready_at(&mut self, i: usize) {
        self.ready.remove(i);
    }

    /// Forgets the batch if every slot is packed and none of its counted envelopes is out.
    pub(super) fn finish_if_done(&mut self, id: u64) {
        if self
            .batches
            .get(&id)
            .is_some_and(|b| b.next >= b.slots.len() && b.envelopes_out == 0 && b.gets_left == 0)
        {
            self.batches.remove(&id);
        }
    }

    /// Forgets a batch whose every slot is done, unless it has envelopes out.
    pub(super) fn remove_if_idle(&mut self, id: u64) {
        if self.batches.get(&id).is_some_and(|b| b.envelopes_out == 0) {
            self.batches.remove(&id);
        }
    }

    /// Drops the unsent part of the peer's batches (its tasks are gone from the queue).
    /// Batches with envelopes out stay until those are reported.
    pub(super) fn drop_peer(&mut self, peer: &PeerId) {
        self.batches.retain(|_, batch| {
            if batch.peer != *peer {
                return true;
            }
            batch.next = batch.slots.len();
            batch.envelopes_out > 0
        });
        let batches = &self.batches;
        self.ready
            .retain(|id| batches.get(id).is_some_and(|b| b.next < b.slots.len()));
    }

    /// Records an envelope handed out; returns its id.
    pub(super) fn hand_out(&mut self, envelope: InFlight) -> EnvelopeId {
        let id = self.next_envelope;
        self.next_envelope += 1;
        self.envelopes.insert(id, envelope);
        EnvelopeId(id)
    }

    /// The envelope waits behind a full stream: it stops counting in its batch's
    /// `envelopes_out`, and the batch is forgotten if that was all it waited for. Returns its
    /// peer and session, or `None` if it is unknown or already stalled.
    pub(super) fn stall(&mut self, id: EnvelopeId) -> Option<(PeerId, u64)> {
        let envelope = self.envelopes.get_mut(&id.0)?;
        if std::mem::replace(&mut envelope.stalled, true) {
            return None;
        }
        let (batch, counted, peer) = (envelope.batch, envelope.counted, envelope.peer);
        let session = envelope.session;
        if counted && let Some(b) = self.batches.get_mut(&batch) {
            b.envelopes_out -= 1;
        }
        self.finish_if_done(batch);
        Some((peer, session))
    }

    /// The envelope was reported: it leaves the envelopes in flight.
    pub(super) fn take_envelope(&mut self, id: EnvelopeId) -> Option<InFlight> {
        self.envelopes.remove(&id.0)
    }

    /// After [`take_envelope`](Self::take_envelope): the envelope no longer counts in its
    /// batch, which is forgotten if that was all it waited for.
    pub(super) fn release(&mut self, envelope: &InFlight) {
        if envelope.counted
            && !envelope.stalled
            && let Some(batch) = self.batches.get_mut(&envelope.batch)
        {
            batch.envelopes_out -= 1;
        }
        self.finish_if_done(envelope.batch);
    }
}
