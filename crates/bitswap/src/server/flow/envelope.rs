//! The flow's envelopes: tasks popped for one peer (a batch), their blocks read, packed into
//! messages of at most 4 MiB, handed out by `Engine::poll_envelope` and reported back.

use std::time::Instant;

use cid::Cid;
use libp2p::PeerId;
use peer_task_queue::PoppedTask;

use super::Flow;
use crate::{
    message::{BlockPresence, BlockPresenceType, Message, WantType},
    protocol::MAX_MESSAGE_SIZE,
    server::{
        batch::{Envelope, EnvelopeId, InFlight, Reply, Slot, TaskBatch},
        merger::TaskData,
        peer::PeerState,
    },
};

/// Upper bound of what a message adds besides its items (the pending-bytes field), in bytes.
const MESSAGE_OVERHEAD: usize = 16;
/// Upper bound of what a block adds besides its data (field tags, lengths, CID prefix).
const BLOCK_OVERHEAD: usize = 64;
/// Upper bound of what a presence adds besides its CID.
const PRESENCE_OVERHEAD: usize = 16;

/// Envelopes of one peer lost in a row (none sent between them) whose answers are queued
/// again; later losses are plain failures until one of its envelopes is sent. One reset
/// stream loses every envelope queued on it (up to the peer's outstanding bytes, one task
/// each when blocks are large), so this spans several streams. Each retry already costs the
/// peer a stream and a round trip, as asking again would: the bound only guards against a
/// failure that repeats without one.
const MAX_LOST_IN_A_ROW: u32 = 64;

/// How an envelope ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Failed,
    Lost,
}

impl Flow<'_> {
    pub(in crate::server) fn poll_envelope(&mut self) -> Option<Envelope> {
        while let Some(batch) = self.batches.first_ready() {
            let envelope = self.assemble(batch);
            self.batches.pop_ready_if_packed(batch);
            if let Some(envelope) = envelope {
                // A batch whose envelopes are all handed out and none counted (its peer's
                // window paces them) is done with.
                self.batches.finish_if_done(batch);
                // What this envelope answers may leave the batch's other slots with nothing
                // to send (a later slot for a want this one just answered): keep the
                // invariant that ready batches have something to send.
                self.prune_ready();
                self.refresh_gauges();
                return Some(envelope);
            }
            // Unreachable: `settle` prunes ready batches with nothing to send.
            debug_assert!(false, "a ready batch had nothing to send");
            self.batches.finish_if_done(batch);
        }
        None
    }

    /// Run at the end of every input: drops the ready batches left with nothing to send
    /// (their want was cancelled, their block is gone, ...) so that `poll_envelope` always
    /// finds something in a ready batch. Freed slots are filled by the next `poll_lookup`.
    pub(super) fn settle(&mut self) {
        self.prune_ready();
        self.peers.shrink_index();
        self.refresh_gauges();
    }

    /// Pops the next peer's tasks into a new batch if fewer than `max_envelopes_in_flight`
    /// batches are in flight. Returns false if nothing was popped.
    pub(super) fn pop_batch(&mut self) -> bool {
        if self.batches.len() >= self.config.max_envelopes_in_flight() {
            return false;
        }
        let Some(popped) = self
            .queue
            .pop_tasks(self.config.target_message_size() as u64)
        else {
            return false;
        };
        let peer = popped.peer;
        self.start_batch(peer, popped.tasks, popped.pending_work);
        self.update_pause(&peer);
        self.prune_ready();
        true
    }

    /// Drops the ready batches whose remaining slots have nothing to send (their tasks are
    /// done).
    fn prune_ready(&mut self) {
        let mut i = 0;
        while let Some(id) = self.batches.ready_at(i) {
            let batch = self.batches.get(&id).expect("ready batch");
            let live = self
                .peers
                .get(&batch.peer)
                .filter(|s| s.session == batch.session);
            let has_answer = live.is_some_and(|state| {
                batch.slots[batch.next..]
                    .iter()
                    .any(|slot| self.slot_answer(state, slot).is_some())
            });
            if has_answer {
                i += 1;
                continue;
            }
            self.batches.unready_at(i);
            let batch = self.batches.get_mut(&id).expect("ready batch");
            let mut state = self.peers.get_mut(&batch.peer);
            for slot in &batch.slots[batch.next..] {
                let _ = self.queue.task_done(&batch.peer, slot.task.id());
                if let Some(state) = state.as_mut()
                    && slot.task.task.data.answer_only
                {
                    state.answer_only_popped.remove(&slot.task.task.topic);
                }
            }
            batch.next = batch.slots.len();
            let peer = batch.peer;
            self.batches.remove_if_idle(id);
            self.update_pause(&peer);
        }
    }

    fn start_batch(&mut self, peer: PeerId, tasks: Vec<PoppedTask<Cid, TaskData>>, pending: u64) {
        let Some(state) = self.peers.get_mut(&peer) else {
            let _ = self.queue.tasks_done(&peer, &tasks);
            return;
        };
        let id = self.batches.new_id();
        let mut gets_left = 0;
        for (i, task) in tasks.iter().enumerate() {
            let data = task.task.data;
            if data.answer_only && state.answer_only.remove(&task.task.topic) {
                state.answer_only_popped.insert(task.task.topic);
            }
            if task.task.data.want_block && task.task.data.have_block {
                self.lookups.push_get(id, i);
                gets_left += 1;
            }
        }
        let slots = tasks
            .into_iter()
            .map(|task| Slot { task, block: None })
            .collect();
        let batch = TaskBatch::new(peer, state.session, slots, gets_left, pending);
        self.batches.insert(id, batch);
    }

    /// What a slot sends now: nothing if its want is gone (cancelled, replaced by a full
    /// wantlist without it) or the answer is one the peer cannot get or did not ask for.
    fn slot_answer(&self, state: &PeerState, slot: &Slot) -> Option<Reply> {
        let cid = slot.task.task.topic;
        let data = slot.task.task.data;
        // A want asked again since the task was queued answers as asked last.
        let send_dont_have = if data.answer_only {
            state.answer_only_popped.contains(&cid)
        } else {
            state.ledger.get(&cid)?.send_dont_have
        };
        let can_dont_have = self.config.send_dont_haves() && state.version.supports_have();
        let dont_have = (send_dont_have && can_dont_have).then_some(Reply::DontHave(cid));
        if data.want_block && data.have_block {
            match &slot.block {
                Some(block) => Some(Reply::Block {
                    cid,
                    bytes: block.data().len() as u64,
                }),
                None => dont_have,
            }
        } else if data.have_block {
            state.version.supports_have().then_some(Reply::Have(cid))
        } else {
            dont_have
        }
    }

    /// Packs the next slots of a ready batch into one envelope of at most 4 MiB. Slots with
    /// nothing to send are reported done at once. `None` if no slot had anything to send.
    fn assemble(&mut self, batch_id: u64) -> Option<Envelope> {
        let mut batch = self.batches.take(batch_id)?;
        let envelope = self.pack(batch_id, &mut batch);
        self.batches.put_back(batch_id, batch);
        envelope
    }

    fn pack(&mut self, batch_id: u64, batch: &mut TaskBatch) -> Option<Envelope> {
        let Some(state) = self
            .peers
            .get(&batch.peer)
            .filter(|s| s.session == batch.session)
        else {
            batch.next = batch.slots.len();
            return None;
        };
        let mut message = Message::default();
        let mut size = MESSAGE_OVERHEAD;
        let mut answers = Vec::new();
        let mut tasks = Vec::new();
        let mut work = 0u64;
        let mut idle = Vec::new();
        // Answer-only DONT_HAVEs leave the popped set once handed out (or skipped).
        let mut unlisted = Vec::new();
        while let Some(slot) = batch.slots.get(batch.next) {
            if slot.task.task.data.answer_only {
                unlisted.push(slot.task.task.topic);
            }
            let Some(answer) = self.slot_answer(state, slot) else {
                idle.push(slot.task.id());
                batch.next += 1;
                continue;
            };
            let cid = slot.task.task.topic;
            let item = match answer {
                Reply::Block { bytes, .. } => bytes as usize + BLOCK_OVERHEAD,
                Reply::Have(_) | Reply::DontHave(_) => cid.encoded_len() + PRESENCE_OVERHEAD,
            };
            if !answers.is_empty() && size + item > MAX_MESSAGE_SIZE {
                if slot.task.task.data.answer_only {
                    unlisted.pop();
                }
                break;
            }
            size += item;
            let slot = &mut batch.slots[batch.next];
            match answer {
                Reply::Block { .. } => message.blocks.extend(slot.block.take()),
                Reply::Have(_) => message.presences.push(BlockPresence {
                    cid,
                    presence: BlockPresenceType::Have,
                }),
                Reply::DontHave(_) => message.presences.push(BlockPresence {
                    cid,
                    presence: BlockPresenceType::DontHave,
                }),
            }
            answers.push(answer);
            tasks.push(slot.task.id());
            work = work.saturating_add(slot.task.task.work);
            batch.next += 1;
        }
        for id in idle {
            let _ = self.queue.task_done(&batch.peer, id);
        }
        if let Some(state) = self.peers.get_mut(&batch.peer) {
            for cid in unlisted {
                state.answer_only_popped.remove(&cid);
            }
        }
        if answers.is_empty() {
            self.update_pause(&batch.peer);
            return None;
        }
        let later: u64 = batch.slots[batch.next..]
            .iter()
            .map(|s| s.task.task.work)
            .sum();
        let pending = batch.pending_work.saturating_add(later);
        message.pending_bytes = pending.min(i32::MAX as u64) as i32;
        let counted = !self.windows.is_grown(&batch.peer);
        if counted {
            batch.count_envelope();
        }
        if let Some(state) = self.peers.get_mut(&batch.peer) {
            state.envelopes_out += 1;
        }
        self.update_pause(&batch.peer);
        let id = self.batches.hand_out(InFlight {
            batch: batch_id,
            counted,
            stalled: false,
            work,
            peer: batch.peer,
            session: batch.session,
            tasks,
            answers,
        });
        Some(Envelope {
            id,
            peer: batch.peer,
            message,
        })
    }

    pub(in crate::server) fn handle_envelope_sent(&mut self, id: EnvelopeId) {
        self.resolve(id, Outcome::Sent, None);
    }

    pub(in crate::server) fn handle_envelope_sent_at(&mut self, id: EnvelopeId, now: Instant) {
        self.windows.expire(now);
        self.resolve(id, Outcome::Sent, Some(now));
    }

    pub(in crate::server) fn handle_envelope_stalled(&mut self, id: EnvelopeId) {
        let Some((peer, session)) = self.batches.stall(id) else {
            return;
        };
        if self.peers.get(&peer).is_some_and(|s| s.session == session) {
            self.windows.stalled(&peer);
        }
        self.settle();
    }

    pub(in crate::server) fn handle_envelope_failed(&mut self, id: EnvelopeId) {
        self.resolve(id, Outcome::Failed, None);
    }

    pub(in crate::server) fn handle_envelope_lost(&mut self, id: EnvelopeId) {
        self.resolve(id, Outcome::Lost, None);
    }

    fn resolve(&mut self, id: EnvelopeId, outcome: Outcome, now: Option<Instant>) {
        let sent = outcome == Outcome::Sent;
        let Some(envelope) = self.batches.take_envelope(id) else {
            return;
        };
        let (mut blocks, mut bytes, mut haves, mut dont_haves) = (0, 0, 0, 0);
        for answer in &envelope.answers {
            match answer {
                Reply::Block { bytes: b, .. } => {
                    blocks += 1;
                    bytes += b;
                }
                Reply::Have(_) => haves += 1,
                Reply::DontHave(_) => dont_haves += 1,
            }
        }
        if sent {
            self.metrics.sent(blocks, bytes, haves, dont_haves);
        } else {
            self.metrics.failed();
        }
        let peer = envelope.peer;
        if let Some(state) = self
            .peers
            .get_mut(&peer)
            .filter(|s| s.session == envelope.session)
        {
            let accounting = &mut state.accounting;
            if sent {
                accounting.messages_sent += 1;
                accounting.blocks_sent += blocks;
                accounting.bytes_sent += bytes;
                accounting.haves_sent += haves;
                accounting.dont_haves_sent += dont_haves;
            } else {
                accounting.messages_failed += 1;
            }
            for task in &envelope.tasks {
                let _ = self.queue.task_done(&peer, *task);
            }
            state.envelopes_out -= 1;
            match outcome {
                Outcome::Sent => state.lost_in_a_row = 0,
                Outcome::Lost if state.lost_in_a_row < MAX_LOST_IN_A_ROW => {
                    state.lost_in_a_row += 1;
                    for answer in &envelope.answers {
                        let (Reply::Block { cid, .. } | Reply::Have(cid) | Reply::DontHave(cid)) =
                            *answer;
                        if let Some(slot) = state.ledger.find(&cid)
                            && state.request_probe(slot)
                        {
                            self.lookups.join_round(peer);
                        }
                    }
                }
                Outcome::Lost | Outcome::Failed => {}
            }
            if sent {
                for answer in &envelope.answers {
                    match *answer {
                        Reply::Block { cid, .. } => {
                            self.remove_want(&peer, &cid);
                        }
                        Reply::Have(cid) => {
                            let is_have = self
                                .peers
                                .get(&peer)
                                .expect("connected")
                                .ledger
                                .get(&cid)
                                .is_some_and(|w| w.want_type == WantType::Have);
                            if is_have {
                                self.remove_want(&peer, &cid);
                            }
                        }
                        Reply::DontHave(_) => {}
                    }
                }
            }
            match (outcome, now) {
                (Outcome::Sent, Some(now)) => {
                    self.windows.delivered(&peer, envelope.work, now);
                    let idle = self.peers.get(&peer).expect("connected").envelopes_out == 0
                        && self
                            .queue
                            .peer_stats(&peer)
                            .is_none_or(|s| s.pending_tasks == 0);
                    if idle {
                        self.windows.idle(&peer, now);
                    }
                }
                (Outcome::Sent, None) => {}
                (Outcome::Failed | Outcome::Lost, _) => {
                    self.windows.stalled(&peer);
                }
            }
            self.update_pause(&peer);
        }
        self.batches.release(&envelope);
        self.settle();
    }
}
