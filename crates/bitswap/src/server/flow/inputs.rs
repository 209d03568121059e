//! The flow's inputs that change what peers want: received wantlists (`Engine::handle_message`)
//! and new blocks (`Engine::handle_new_blocks`). Received entries become wants (or are refused,
//! denied, ignored); probe results and new blocks become tasks in the queue.

use std::ops::Range;

use cid::Cid;
use ipfs_blockstore::{MAX_BLOCK_SIZE, multicodec::IDENTITY};
use libp2p::PeerId;
use peer_task_queue::Task;

use super::Flow;
use crate::{
    message::{Entry, Message, WantType},
    protocol::Version,
    server::{
        Config,
        ledger::{Request, Want, WantState},
        merger::{TaskData, presence_work},
        metrics::Tally,
    },
};

/// A removed want and its pending task, if it had one.
type Removed = (Want, Option<Task<Cid, TaskData>>);

/// Whether a found block is sent (rather than a HAVE): for a want-block, and for a want-have
/// of a block of known size at most the replace size.
fn sends_block(config: &Config, want_type: WantType, size: Option<u64>) -> bool {
    let replace = config.want_have_replace_size() as u64;
    want_type == WantType::Block || (replace > 0 && size.is_some_and(|s| s <= replace))
}

impl Flow<'_> {
    pub(in crate::server) fn handle_message_part(
        &mut self,
        peer: PeerId,
        message: &Message,
        entries: Range<usize>,
    ) {
        let Some(state) = self.peers.get_mut(&peer) else {
            tracing::debug!(%peer, "message from a peer not connected to the engine, ignored");
            return;
        };
        let len = message.wantlist.entries.len();
        let end = entries.end.min(len);
        let start = entries.start.min(end);
        if start > 0 {
            let (version, mut taken) = (state.version, state.taken);
            for entry in &message.wantlist.entries[start..end] {
                self.handle_entry(peer, version, entry, &mut taken);
            }
            self.end_part(peer, taken, end == len);
            return;
        }
        let received_bytes: usize = message.blocks.iter().map(|b| b.data().len()).sum();
        let accounting = &mut state.accounting;
        accounting.messages_received += 1;
        accounting.blocks_received += message.blocks.len() as u64;
        accounting.bytes_received += received_bytes as u64;
        let version = state.version;
        self.metrics
            .received(message.blocks.len() as u64, received_bytes as u64);
        if message.wantlist.full {
            self.clear_wantlist(&peer);
            let room = (message.wantlist.entries.len())
                .min(self.config.max_wants_per_peer())
                .min(self.config.max_entries_per_message());
            if let Some(state) = self.peers.get_mut(&peer) {
                state.ledger.reserve(room);
            }
        }
        let mut taken = 0;
        for entry in &message.wantlist.entries[..end] {
            self.handle_entry(peer, version, entry, &mut taken);
        }
        self.end_part(peer, taken, end == len);
    }

    /// After a part of a message: keeps the count of entries taken from it and, after its
    /// last part, gives back ledger room it reserved and did not use.
    fn end_part(&mut self, peer: PeerId, taken: usize, last: bool) {
        if let Some(state) = self.peers.get_mut(&peer) {
            state.taken = taken;
            if last {
                state.ledger.trim();
            }
        }
        self.settle();
    }

    fn handle_entry(&mut self, peer: PeerId, version: Version, entry: &Entry, taken: &mut usize) {
        let cid = entry.cid;
        let max_cid = self.config.max_cid_size();
        let unservable = !version.supports_payload() && cid.version() != cid::Version::V0;
        if cid.hash().code() == IDENTITY
            || (max_cid != 0 && cid.encoded_len() > max_cid)
            || (unservable && !entry.cancel)
        {
            self.metrics.count(Tally::WantIgnored);
            return;
        }
        if entry.cancel {
            self.metrics.count(Tally::CancelReceived);
            self.remove_want(&peer, &cid);
            self.remove_answer_only(&peer, &cid);
            return;
        }
        self.metrics.count(Tally::WantReceived);
        let (want_type, send_dont_have) = if version.supports_have() {
            (entry.want_type, entry.send_dont_have)
        } else {
            (WantType::Block, false)
        };
        if *taken >= self.config.max_entries_per_message() {
            self.metrics.count(Tally::WantRefused);
            if send_dont_have
                && !self
                    .peers
                    .get(&peer)
                    .expect("connected")
                    .ledger
                    .contains(&cid)
            {
                self.push_answer_only(&peer, cid, entry.priority, want_type);
            }
            return;
        }
        *taken += 1;
        if let Some(filter) = self.config.request_filter()
            && !filter(&peer, &cid)
        {
            self.metrics.count(Tally::WantDenied);
            self.remove_want(&peer, &cid);
            if send_dont_have {
                self.push_answer_only(&peer, cid, entry.priority, want_type);
            }
            return;
        }
        let request = Request {
            priority: entry.priority,
            want_type,
            send_dont_have,
        };
        self.add_want(peer, cid, request);
    }

    /// Adds or updates a want and queues its probe, making room in a full ledger.
    fn add_want(&mut self, peer: PeerId, cid: Cid, request: Request) {
        self.remove_answer_only(&peer, &cid);
        let state = self.peers.get(&peer).expect("connected");
        let existing = state.ledger.find(&cid);
        if existing.is_none() && state.ledger.len() >= self.config.max_wants_per_peer() {
            let victim_slot = state.ledger.victim().expect("a full ledger");
            let victim = state.ledger.want_at(victim_slot);
            let victim_cid = state.ledger.cid_at(victim_slot);
            if victim.state != WantState::Missing && victim.priority >= request.priority {
                self.metrics.count(Tally::WantRefused);
                if request.send_dont_have {
                    self.push_answer_only(&peer, cid, request.priority, request.want_type);
                }
                return;
            }
            self.metrics.count(Tally::WantEvicted);
            let (_, task) = self.remove_want(&peer, &victim_cid).expect("victim");
            if victim.send_dont_have && (victim.state != WantState::Missing || task.is_some()) {
                self.push_answer_only(&peer, victim_cid, victim.priority, victim.want_type);
            }
        }
        let slot = self
            .peers
            .insert_want(&peer, existing, &cid, request)
            .expect("connected");
        // Every want received is probed, also one already being probed: its answer must
        // reflect the newest request (an older result is stale by its sequence number).
        let state = self.peers.get_mut(&peer).expect("connected");
        if state.request_probe(slot) {
            self.lookups.join_round(peer);
        }
    }

    /// Removes a want, its index entry and its pending task.
    pub(super) fn remove_want(&mut self, peer: &PeerId, cid: &Cid) -> Option<Removed> {
        let want = self.peers.remove_want(peer, cid)?;
        let task = self.queue.remove(peer, cid).task;
        Some((want, task))
    }

    /// Drops every want of the peer (and their pending tasks) and its pending answer-only
    /// DONT_HAVEs: a full wantlist follows.
    fn clear_wantlist(&mut self, peer: &PeerId) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let cids: Vec<Cid> = state.ledger.iter().map(|(c, _)| c).collect();
        let answer_only: Vec<Cid> = state.answer_only.drain().collect();
        state.answer_only_popped.clear();
        for cid in cids {
            self.remove_want(peer, &cid);
        }
        for cid in answer_only {
            let _ = self.queue.remove(peer, &cid);
        }
    }

    fn remove_answer_only(&mut self, peer: &PeerId, cid: &Cid) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if state.answer_only.is_empty() && state.answer_only_popped.is_empty() {
            return;
        }
        state.answer_only_popped.remove(cid);
        if state.answer_only.remove(cid) {
            let _ = self.queue.remove(peer, cid);
        }
    }

    /// Queues a DONT_HAVE for a want the ledger does not keep (refused, evicted, denied), if
    /// the peer can get one and has fewer than `max_wants_per_peer` waiting.
    fn push_answer_only(&mut self, peer: &PeerId, cid: Cid, priority: i32, want_type: WantType) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        if !self.config.send_dont_haves()
            || !state.version.supports_have()
            || state.answer_only.contains(&cid)
            || state.answer_only.len() >= self.config.max_wants_per_peer()
        {
            return;
        }
        debug_assert!(!state.ledger.contains(&cid));
        let data = TaskData {
            want_block: want_type == WantType::Block,
            have_block: false,
            block_size: 0,
            send_dont_have: true,
            answer_only: true,
        };
        let task = Task::new(cid, priority, presence_work(&cid), data);
        let outcome = self.queue.push_tasks(peer, [task]);
        debug_assert!(outcome.dropped.is_empty(), "the queue holds 2x the ledger");
        if outcome.queued > 0 {
            state.answer_only.insert(cid);
        }
    }

    /// Queues the answer to the want in ledger slot `slot` (live) whose block was found
    /// (`Some(size)`, `size` unknown after a presence probe) or is missing (`None`).
    pub(super) fn answer_want(&mut self, peer: &PeerId, slot: u32, found: Option<Option<u64>>) {
        let Some(state) = self.peers.get_mut(peer) else {
            return;
        };
        let want = state.ledger.want_at(slot);
        let data = match found {
            Some(size) => {
                state.set_state_at(slot, WantState::Found);
                TaskData {
                    want_block: sends_block(self.config, want.want_type, size),
                    have_block: true,
                    block_size: size.unwrap_or(0),
                    send_dont_have: want.send_dont_have,
                    answer_only: false,
                }
            }
            None => {
                state.set_state_at(slot, WantState::Missing);
                if !(want.send_dont_have
                    && self.config.send_dont_haves()
                    && state.version.supports_have())
                {
                    return;
                }
                TaskData {
                    want_block: want.want_type == WantType::Block,
                    have_block: false,
                    block_size: 0,
                    send_dont_have: true,
                    answer_only: false,
                }
            }
        };
        let cid = state.ledger.cid_at(slot);
        self.push_want_task(peer, cid, want.priority, data);
    }

    fn push_want_task(&mut self, peer: &PeerId, cid: Cid, priority: i32, data: TaskData) {
        let work = if data.want_block && data.have_block {
            data.block_size
        } else {
            presence_work(&cid)
        };
        let outcome = self
            .queue
            .push_tasks(peer, [Task::new(cid, priority, work, data)]);
        // Pending tasks are at most one per ledger want plus one per answer-only DONT_HAVE,
        // each at most `max_wants_per_peer`, and the queue holds twice that: nothing drops.
        debug_assert!(outcome.dropped.is_empty(), "the queue holds 2x the ledger");
        for dropped in outcome.dropped {
            tracing::warn!(%peer, cid = %dropped.task.topic, "server task dropped by the queue");
            if let Some(state) = self.peers.get_mut(peer) {
                state.set_state(&dropped.task.topic, WantState::Missing);
            }
        }
    }

    pub(in crate::server) fn handle_new_blocks<I>(&mut self, blocks: I)
    where
        I: IntoIterator<Item = (Cid, usize)>,
    {
        for (cid, size) in blocks {
            if size > MAX_BLOCK_SIZE {
                continue;
            }
            for (peer, slot) in self.peers.wanters(&cid) {
                let Some(state) = self.peers.get_mut(&peer) else {
                    continue;
                };
                let Some(want) = state.ledger.live_want_at(slot) else {
                    continue;
                };
                let wanted = state.ledger.cid_at(slot);
                state.set_state_at(slot, WantState::Found);
                let data = TaskData {
                    want_block: sends_block(self.config, want.want_type, Some(size as u64)),
                    have_block: true,
                    block_size: size as u64,
                    send_dont_have: false,
                    answer_only: false,
                };
                self.push_want_task(&peer, wanted, want.priority, data);
            }
        }
        self.settle();
    }
}
