//! What the client knows about its peers ([`Peers`]): for each, the wants it was sent and
//! what it answered, the entries waiting to go out, its measured latency and its score.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use cid::Cid;
use libp2p::PeerId;

use super::{action::Actions, id::ConnectionError, link::Link, timer::TimerKey};
use crate::{
    map::Map,
    message::{Entry, Message, WantType},
    protocol::Version,
};

/// Disconnected peers whose score and latency are remembered.
const REMEMBERED_PEERS: usize = 1024;
/// Peers with a dial under way remembered (for `Config::dial_interval`).
const MAX_DIALS: usize = 1024;
/// First wants per peer remembered after they stopped being wanted unanswered (see
/// `Peer::unanswered`).
const MAX_UNANSWERED: usize = 16;

/// Highest score; each block delivered first adds one.
const MAX_SCORE: i32 = 100;
/// Lowest score; a peer is penalised when it reaches [`PENALTY_THRESHOLD`].
const MIN_SCORE: i32 = -100;
/// At or below this score a peer is left out for `Config::penalty_duration`.
pub(super) const PENALTY_THRESHOLD: i32 = -20;
/// Score lost for a block nobody wanted.
pub(super) const UNWANTED_BLOCK_PENALTY: i32 = 10;
/// Score lost for DONT_HAVE after HAVE, or a HAVE never followed by the block.
pub(super) const BROKEN_PROMISE_PENALTY: i32 = 5;
/// Score lost for an unanswered want (simulated DONT_HAVE).
pub(super) const SILENCE_PENALTY: i32 = 1;
/// Score lost when the embedder reports a misbehaviour (an undecodable message).
pub(super) const MISBEHAVIOUR_PENALTY: i32 = 25;

/// Messages the want-blocks of one update are spread over. boxo's server (kubo) wakes one of
/// its task workers for each message that brings it work, and a worker sends one block at a
/// time (at most 1 MiB per peer in flight): told of 32 want-blocks in one message it starts
/// with one block and adds a worker each time a block is written, which on a far link takes a
/// round trip each. Four messages start four, the 1 MiB of 256 KiB blocks. At most the
/// behaviour's wantlist updates in flight per peer, or the later ones merge again.
pub(crate) const WANT_BLOCK_MESSAGES: usize = 4;
/// Upper bound of the encoded size of a wantlist entry besides its CID: tag and length of the
/// entry, tag and length of the CID, priority (negative `int32`s take 10 bytes), cancel, want
/// type, send-DONT_HAVE.
const ENTRY_OVERHEAD: usize = 1 + 3 + 1 + 3 + 11 + 2 + 2 + 2;
/// Upper bound of the encoded size of a message besides its entries (wantlist field tag and
/// length).
const MESSAGE_OVERHEAD: usize = 1 + 5;

/// Whether `entry` asks for a block (not a presence, not a cancel).
fn is_want_block(entry: &Entry) -> bool {
    !entry.cancel && entry.want_type == WantType::Block
}

/// What a peer said about a want.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// Nothing yet, and its timeout has not passed.
    Pending,
    /// HAVE (or, for a provider, presumed).
    Have,
    /// DONT_HAVE.
    DontHave,
    /// Nothing in time: treated as DONT_HAVE (a real answer may still come).
    TimedOut,
    /// Nothing in time, and the want-block moved to another peer: cancelled here, never sent
    /// again to this peer.
    Withdrawn,
}

/// A want sent to a peer and not yet cancelled.
#[derive(Debug, Clone, Copy)]
pub(super) struct Asked {
    /// Want-have or want-block, as last sent.
    pub(super) want_type: WantType,
    /// When it was last sent.
    pub(super) sent_at: Instant,
    /// What the peer answered.
    pub(super) answer: Answer,
    /// The answer deadline or the resend deadline, if any.
    pub(super) timer: Option<TimerKey>,
    /// The first want for its CID sent to the peer (not an upgrade or a resend), so that the
    /// time to its answer is a round trip.
    pub(super) first: bool,
}

impl Asked {
    /// Whether the peer is expected to send the block (a want-block not refused).
    pub(super) fn loads(&self) -> bool {
        self.want_type == WantType::Block && matches!(self.answer, Answer::Pending | Answer::Have)
    }
}

/// A peer, connected or remembered after it left.
#[derive(Debug)]
pub(super) struct Peer {
    /// Its Bitswap version while connected, `None` once disconnected.
    pub(super) version: Option<Version>,
    /// The wants it was sent (only while connected).
    asked: Map<Cid, Asked>,
    /// Want-blocks it was sent that it has not refused: how loaded it is.
    blocks_in_flight: usize,
    /// Entries to send at the next flush, in order; later ones for a CID win.
    pub(super) outbox: Vec<Entry>,
    /// Average want-to-answer time, if measured.
    pub(super) latency: Option<Duration>,
    /// Round trip, delivery rate and last answer, for windows and timeouts.
    pub(super) link: Link,
    /// First wants for their CID removed before the peer answered (the block came from
    /// another peer), and when they were sent, oldest first: a presence that answers one late
    /// still times a round trip. A want-have broadcast to several peers is often the only
    /// small answer a peer gives (its later answers are large blocks, whose time includes
    /// their transfer), and its HAVE (or the small block itself) comes just after the
    /// target's block.
    unanswered: VecDeque<(Cid, Instant)>,
    /// Goes up with useful blocks, down with unwanted blocks, broken promises and silence.
    pub(super) score: i32,
    /// Not asked for anything new before this.
    pub(super) penalised_until: Option<Instant>,
    /// Blocks it delivered first.
    pub(super) useful: u64,
    /// Last time it connected or disconnected.
    pub(super) last_seen: Instant,
}

impl Peer {
    pub(super) fn new(version: Version, now: Instant) -> Self {
        Self {
            version: Some(version),
            asked: Map::default(),
            blocks_in_flight: 0,
            outbox: Vec::new(),
            latency: None,
            link: Link::default(),
            unanswered: VecDeque::new(),
            score: 0,
            penalised_until: None,
            useful: 0,
            last_seen: now,
        }
    }

    /// Whether it speaks 1.2.0 (want-have, presences).
    pub(super) fn supports_have(&self) -> bool {
        self.version.is_some_and(Version::supports_have)
    }

    /// Whether it is left out for now.
    pub(super) fn is_penalised(&self, now: Instant) -> bool {
        self.penalised_until.is_some_and(|until| until > now)
    }

    pub(super) fn asked(&self, cid: &Cid) -> Option<&Asked> {
        self.asked.get(cid)
    }

    pub(super) fn asked_len(&self) -> usize {
        self.asked.len()
    }

    pub(super) fn asked_iter(&self) -> impl Iterator<Item = (&Cid, &Asked)> {
        self.asked.iter()
    }

    pub(super) fn blocks_in_flight(&self) -> usize {
        self.blocks_in_flight
    }

    /// Records a want sent (replacing an earlier one for the CID); returns the old timer.
    pub(super) fn insert_asked(&mut self, cid: Cid, asked: Asked) -> Option<TimerKey> {
        let old = self.asked.insert(cid, asked);
        self.recount(old.as_ref(), Some(&asked));
        old.and_then(|a| a.timer)
    }

    /// Changes a want's answer and timer; returns the old timer (`None` if not asked).
    pub(super) fn update_asked(
        &mut self,
        cid: &Cid,
        update: impl FnOnce(&mut Asked),
    ) -> Option<Option<TimerKey>> {
        let asked = self.asked.get_mut(cid)?;
        let before = *asked;
        update(asked);
        let after = *asked;
        self.recount(Some(&before), Some(&after));
        Some(before.timer)
    }

    /// Forgets a want; returns it. A first want not answered yet is remembered (at most
    /// [`MAX_UNANSWERED`]) for [`late_answer`](Self::late_answer).
    pub(super) fn remove_asked(&mut self, cid: &Cid) -> Option<Asked> {
        let old = self.asked.remove(cid)?;
        self.recount(Some(&old), None);
        if old.first && old.answer == Answer::Pending {
            if self.unanswered.len() == MAX_UNANSWERED {
                self.unanswered.pop_front();
            }
            self.unanswered.push_back((*cid, old.sent_at));
        }
        Some(old)
    }

    /// Forgets every want (disconnection); returns them.
    pub(super) fn drain_asked(&mut self) -> Vec<(Cid, Asked)> {
        self.blocks_in_flight = 0;
        self.link.set_busy(None);
        self.unanswered.clear();
        self.asked.drain().collect()
    }

    /// An answer (a presence or the block) for `cid`, which the peer no longer holds a want
    /// for, began to arrive at `began` and arrived at `now`: if it answers a first want
    /// removed unanswered, the wait is a round trip.
    pub(super) fn late_answer(&mut self, cid: &Cid, began: Instant, now: Instant) {
        if let Some(i) = self.unanswered.iter().position(|(c, _)| c == cid)
            && let Some((_, sent_at)) = self.unanswered.remove(i)
        {
            self.link.answered(sent_at, began, now);
        }
    }

    /// Keeps `blocks_in_flight` and the link's busy period in step with a want's change.
    fn recount(&mut self, before: Option<&Asked>, after: Option<&Asked>) {
        if before.is_some_and(Asked::loads) {
            self.blocks_in_flight -= 1;
            if self.blocks_in_flight == 0 {
                self.link.set_busy(None);
            }
        }
        if let Some(after) = after.filter(|a| a.loads()) {
            self.blocks_in_flight += 1;
            if self.blocks_in_flight == 1 {
                self.link.set_busy(Some(after.sent_at));
            }
        }
    }

    /// Folds one want-to-answer time into the latency average (weight 1/2, as boxo's).
    pub(super) fn sample_latency(&mut self, sample: Duration) {
        self.latency = Some(match self.latency {
            None => sample,
            Some(average) => (average + sample) / 2,
        });
    }

    /// Lowers the score; at the threshold the peer is left out until `now + duration`, and
    /// its score is brought back halfway so that it can earn its way back.
    pub(super) fn penalise(&mut self, points: i32, now: Instant, duration: Duration) {
        self.score = (self.score - points).max(MIN_SCORE);
        if self.score <= PENALTY_THRESHOLD {
            self.penalised_until = Some(now + duration);
            self.score = PENALTY_THRESHOLD / 2;
        }
    }

    /// Raises the score after a useful block.
    fn reward(&mut self) {
        self.useful += 1;
        self.score = (self.score + 1).min(MAX_SCORE);
    }

    /// It delivered the wanted block `cid` of `size` bytes at `now`, which began to arrive at
    /// `began`: the wait measures its latency (and its round trip, for the first want of an
    /// unanswered CID), the block its rate, and its score rises.
    pub(super) fn delivered(&mut self, cid: &Cid, size: u64, began: Instant, now: Instant) {
        if let Some(asked) = self.asked(cid).copied() {
            let sample = now.saturating_duration_since(asked.sent_at);
            if matches!(asked.answer, Answer::Pending | Answer::Have) {
                self.sample_latency(sample);
            }
            if asked.first && asked.answer == Answer::Pending {
                self.link.answered(asked.sent_at, began, now);
            }
            self.link.heard(now);
            self.link.delivered(size, now);
        }
        self.reward();
    }

    /// Turns the outbox into messages of at most `max_size` estimated bytes: cancels first,
    /// then want-blocks, then want-haves, each by decreasing priority, the want-blocks spread
    /// over up to [`WANT_BLOCK_MESSAGES`] messages. One entry per CID (the last queued wins).
    pub(super) fn take_messages(&mut self, max_size: usize) -> Vec<Message> {
        if self.outbox.is_empty() {
            return Vec::new();
        }
        let mut last: HashMap<Cid, usize> = HashMap::with_capacity(self.outbox.len());
        for (i, entry) in self.outbox.iter().enumerate() {
            last.insert(entry.cid, i);
        }
        let mut entries: Vec<Entry> = std::mem::take(&mut self.outbox)
            .into_iter()
            .enumerate()
            .filter(|(i, entry)| last.get(&entry.cid) == Some(i))
            .map(|(_, entry)| entry)
            .collect();
        let rank = |e: &Entry| match (e.cancel, e.want_type) {
            (true, _) => 0,
            (false, WantType::Block) => 1,
            (false, WantType::Have) => 2,
        };
        entries.sort_by(|a, b| rank(a).cmp(&rank(b)).then(b.priority.cmp(&a.priority)));
        let blocks = entries.iter().filter(|e| is_want_block(e)).count();
        let per_message = blocks.div_ceil(WANT_BLOCK_MESSAGES).max(1);
        let mut messages = Vec::new();
        let mut current = Vec::new();
        let (mut size, mut current_blocks) = (MESSAGE_OVERHEAD, 0);
        for entry in entries {
            let entry_size = entry.cid.encoded_len() + ENTRY_OVERHEAD;
            let is_block = is_want_block(&entry);
            let full = size + entry_size > max_size || (is_block && current_blocks == per_message);
            if full && !current.is_empty() {
                messages.push(Message::wantlist_update(std::mem::take(&mut current)));
                (size, current_blocks) = (MESSAGE_OVERHEAD, 0);
            }
            size += entry_size;
            current_blocks += usize::from(is_block);
            current.push(entry);
        }
        if !current.is_empty() {
            messages.push(Message::wantlist_update(current));
        }
        messages
    }
}

/// Connected peers, up to [`REMEMBERED_PEERS`] disconnected ones (their score and latency
/// kept for when they come back), and the dials asked for (at most [`MAX_DIALS`]). A
/// disconnected peer holds no wants and nothing to send.
#[derive(Debug, Default)]
pub(super) struct Peers {
    peers: HashMap<PeerId, Peer>,
    /// When each peer was last asked to be dialled.
    dials: HashMap<PeerId, Instant>,
    /// The last connection that closed with an error, and when.
    last_error: Option<(Instant, ConnectionError)>,
}

impl Peers {
    pub(super) fn get(&self, id: &PeerId) -> Option<&Peer> {
        self.peers.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &PeerId) -> Option<&mut Peer> {
        self.peers.get_mut(id)
    }

    /// Every peer remembered, connected or not.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&PeerId, &Peer)> {
        self.peers.iter()
    }

    /// Whether no peer is connected.
    pub(super) fn none_connected(&self) -> bool {
        self.connected().next().is_none()
    }

    /// A connection closed with `error` at `now`.
    pub(super) fn connection_failed(&mut self, error: ConnectionError, now: Instant) {
        self.last_error = Some((now, error));
    }

    /// The last connection error seen at or after `since`.
    pub(super) fn last_error_since(&self, since: Instant) -> Option<&ConnectionError> {
        self.last_error
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, error)| error)
    }

    /// The connected peers.
    pub(super) fn connected(&self) -> impl Iterator<Item = (&PeerId, &Peer)> {
        self.peers.iter().filter(|(_, p)| p.version.is_some())
    }

    /// `id` connected with `version`: a new peer, or a remembered one back (its link
    /// measurements restart). False, and nothing changes, if it was connected already.
    pub(super) fn connect(&mut self, id: PeerId, version: Version, now: Instant) -> bool {
        if let Some(peer) = self.peers.get_mut(&id) {
            if peer.version.is_some() {
                return false;
            }
            peer.version = Some(version);
            peer.last_seen = now;
            peer.link.reconnected();
        } else {
            self.peers.insert(id, Peer::new(version, now));
        }
        self.dials.remove(&id);
        true
    }

    /// `id` disconnected: it is remembered without its wants and outbox; returns the wants
    /// it held, or `None` if it was not connected.
    pub(super) fn disconnect(&mut self, id: &PeerId, now: Instant) -> Option<Vec<(Cid, Asked)>> {
        let peer = self.peers.get_mut(id)?;
        peer.version?;
        peer.version = None;
        peer.last_seen = now;
        peer.outbox.clear();
        Some(peer.drain_asked())
    }

    /// Drops the disconnected peers seen longest ago beyond [`REMEMBERED_PEERS`].
    pub(super) fn forget_old(&mut self) {
        let gone = self.peers.values().filter(|p| p.version.is_none()).count();
        if gone <= REMEMBERED_PEERS {
            return;
        }
        let mut old: Vec<(Instant, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.version.is_none())
            .map(|(id, p)| (p.last_seen, *id))
            .collect();
        old.sort();
        for (_, id) in old.into_iter().take(gone - REMEMBERED_PEERS) {
            self.peers.remove(&id);
        }
    }

    /// Whether `id` may be asked to be dialled at `now` (not within `interval` of the last
    /// time, and room among the dials remembered); if so, the dial is remembered. `None`:
    /// no room, and none for later peers either.
    pub(super) fn dial(&mut self, id: PeerId, now: Instant, interval: Duration) -> Option<bool> {
        if self.dials.get(&id).is_some_and(|at| now < *at + interval) {
            return Some(false);
        }
        if self.dials.len() >= MAX_DIALS {
            self.dials.retain(|_, at| now < *at + interval);
            if self.dials.len() >= MAX_DIALS {
                return None;
            }
        }
        self.dials.insert(id, now);
        Some(true)
    }

    /// Turns every peer's queued entries into [`Action::Send`](super::Action::Send)s,
    /// peers in id order.
    pub(super) fn flush(&mut self, max_size: usize, actions: &mut Actions) {
        let mut ready: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.outbox.is_empty())
            .map(|(id, _)| *id)
            .collect();
        ready.sort();
        for id in ready {
            let Some(peer) = self.peers.get_mut(&id) else {
                continue;
            };
            for message in peer.take_messages(max_size) {
                actions.send(id, message);
            }
        }
    }

    /// Checks each peer's own consistency and the bounds.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn check(&self, config: &super::Config) -> Result<(), String> {
        let mut gone = 0;
        for (id, peer) in &self.peers {
            if peer.version.is_none() {
                gone += 1;
                if peer.asked_len() > 0 {
                    return Err(format!("{id}: disconnected but holds wants"));
                }
            }
            if !peer.outbox.is_empty() {
                return Err(format!("{id}: outbox not flushed"));
            }
            if peer.asked_len() > config.max_wants_per_peer() {
                return Err(format!("{id}: {} wants", peer.asked_len()));
            }
            let loading = peer.asked_iter().filter(|(_, a)| a.loads()).count();
            if loading != peer.blocks_in_flight() {
                return Err(format!("{id}: blocks in flight miscounted"));
            }
        }
        if gone > REMEMBERED_PEERS || self.dials.len() > MAX_DIALS {
            return Err("too many remembered peers or dials".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use multihash_codetable::{Code, MultihashDigest};

    use super::*;
    use crate::protocol::encode;

    fn cid(i: u32) -> Cid {
        Cid::new_v1(0x55, Code::Sha2_256.digest(&i.to_be_bytes()))
    }

    #[test]
    fn outbox_keeps_the_last_entry_per_cid_cancels_first() {
        let mut peer = Peer::new(Version::V1_2_0, Instant::now());
        peer.outbox.push(Entry::want_have(cid(1), 5));
        peer.outbox.push(Entry::want_block(cid(2), 4));
        peer.outbox.push(Entry::want_block(cid(1), 5));
        peer.outbox.push(Entry::cancel(cid(3)));
        let messages = peer.take_messages(1 << 20);
        let entries: Vec<Entry> = messages
            .into_iter()
            .flat_map(|m| m.wantlist.entries)
            .collect();
        assert_eq!(
            entries,
            [
                Entry::cancel(cid(3)),
                Entry::want_block(cid(1), 5),
                Entry::want_block(cid(2), 4)
            ]
        );
        assert!(peer.outbox.is_empty());
    }

    #[test]
    fn the_want_blocks_of_one_update_go_in_four_messages() {
        let mut peer = Peer::new(Version::V1_2_0, Instant::now());
        peer.outbox.push(Entry::cancel(cid(100)));
        for i in 0..30 {
            peer.outbox.push(Entry::want_block(cid(i), 1000 - i as i32));
        }
        peer.outbox.push(Entry::want_have(cid(200), 1));
        let messages = peer.take_messages(1 << 20);
        let blocks: Vec<usize> = messages
            .iter()
            .map(|m| {
                let entries = &m.wantlist.entries;
                entries.iter().filter(|e| is_want_block(e)).count()
            })
            .collect();
        assert_eq!(blocks, [8, 8, 8, 6]);
        assert!(messages[0].wantlist.entries[0].cancel);
        let last = messages[3].wantlist.entries.last().expect("entries");
        assert_eq!(last.want_type, WantType::Have);
        // Highest priority first, across the messages.
        let order: Vec<Cid> = messages
            .iter()
            .flat_map(|m| m.wantlist.entries.iter())
            .filter(|e| is_want_block(e))
            .map(|e| e.cid)
            .collect();
        assert_eq!(order, (0..30).map(cid).collect::<Vec<_>>());
        // One want-block alone, and want-haves alone, stay one message.
        peer.outbox.push(Entry::want_block(cid(1), 1));
        peer.outbox.push(Entry::want_have(cid(2), 1));
        assert_eq!(peer.take_messages(1 << 20).len(), 1);
    }

    #[test]
    fn messages_are_split_under_the_limit_whatever_the_priority() {
        let mut peer = Peer::new(Version::V1_2_0, Instant::now());
        for i in 0..2000 {
            let priority = if i % 2 == 0 { -1 - i as i32 } else { i32::MAX };
            peer.outbox.push(Entry::want_have(cid(i), priority));
        }
        let limit = 4096;
        let messages = peer.take_messages(limit);
        assert!(messages.len() > 1);
        let mut total = 0;
        for message in &messages {
            let frames = encode(message, Version::V1_2_0);
            assert_eq!(frames.len(), 1);
            assert!(frames[0].len() <= limit, "{} > {limit}", frames[0].len());
            total += message.wantlist.entries.len();
        }
        assert_eq!(total, 2000);
    }

    #[test]
    fn in_flight_blocks_follow_answers() {
        let now = Instant::now();
        let mut peer = Peer::new(Version::V1_2_0, now);
        let asked = |want_type| Asked {
            want_type,
            sent_at: now,
            answer: Answer::Pending,
            timer: None,
            first: true,
        };
        peer.insert_asked(cid(1), asked(WantType::Block));
        peer.insert_asked(cid(2), asked(WantType::Have));
        assert_eq!(peer.blocks_in_flight(), 1);
        peer.update_asked(&cid(1), |a| a.answer = Answer::DontHave);
        assert_eq!(peer.blocks_in_flight(), 0);
        peer.update_asked(&cid(2), |a| a.want_type = WantType::Block);
        assert_eq!(peer.blocks_in_flight(), 1);
        peer.remove_asked(&cid(2));
        assert_eq!(peer.blocks_in_flight(), 0);
        assert_eq!(peer.asked_len(), 1);
    }

    #[test]
    fn penalties_leave_a_peer_out_then_half_forgive() {
        let now = Instant::now();
        let mut peer = Peer::new(Version::V1_2_0, now);
        peer.penalise(UNWANTED_BLOCK_PENALTY, now, Duration::from_secs(60));
        assert!(!peer.is_penalised(now));
        peer.penalise(UNWANTED_BLOCK_PENALTY, now, Duration::from_secs(60));
        assert!(peer.is_penalised(now + Duration::from_secs(59)));
        assert!(!peer.is_penalised(now + Duration::from_secs(60)));
        assert_eq!(peer.score, PENALTY_THRESHOLD / 2);
    }
}
