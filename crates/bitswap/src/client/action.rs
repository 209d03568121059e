//! What the client engine asks of its embedder ([`Action`]) and reports to the user
//! ([`Event`]), its counters ([`Stats`]), and [`Actions`], where they wait to be drained.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use cid::Cid;
use ipfs_blockstore::Block;
use libp2p::PeerId;

use super::id::{Progress, QueryError, QueryId};
use crate::message::Message;

/// Something the embedder must do, from [`Engine::poll_action`](super::Engine::poll_action).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "actions must be carried out"]
pub enum Action {
    /// Send `message` to `peer` (a connected peer), encoded for the peer's version. It holds
    /// wantlist entries only (want-have, want-block, cancel; never a full wantlist) and its
    /// estimated encoded size is at most
    /// [`Config::max_message_size`](super::Config::max_message_size) (2 MiB by default). If it
    /// cannot be sent, report it with
    /// [`Engine::handle_send_failed`](super::Engine::handle_send_failed).
    Send {
        /// The recipient.
        peer: PeerId,
        /// The wantlist update.
        message: Message,
    },
    /// Connect to `peer`, a provider of a wanted block that is not connected. Report the
    /// connection with [`Engine::handle_peer_connected`](super::Engine::handle_peer_connected);
    /// a failed dial needs no report. Emitted at most once per
    /// [`Config::dial_interval`](super::Config::dial_interval) per peer.
    Dial {
        /// The peer to connect to (its addresses are the embedder's business, e.g. kad's).
        peer: PeerId,
    },
    /// Look for providers of `cid` (e.g. a kad `get_providers`) and report them with
    /// [`Engine::add_providers`](super::Engine::add_providers). Emitted when no peer has said
    /// HAVE within [`Config::provider_search_delay`](super::Config::provider_search_delay) of
    /// the want's start, or when every peer asked refused, then again at most once per
    /// [`Config::provider_search_interval`](super::Config::provider_search_interval) per CID
    /// while that stays so; at most
    /// [`Config::max_provider_searches`](super::Config::max_provider_searches) per interval
    /// over all CIDs.
    FindProviders {
        /// The wanted block.
        cid: Cid,
    },
    /// Something for the user.
    Event(Event),
}

/// What happened to a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A block of the query arrived. Emitted exactly once per CID of the query, before the
    /// query's [`Event::Progress`] and [`Event::QueryFinished`]. The block's bytes match its
    /// CID (blocks are checked when decoded); storing it is the embedder's business.
    BlockReceived {
        /// The query that wanted it (a block wanted by several queries is reported to each).
        query: QueryId,
        /// The block.
        block: Block,
    },
    /// The query advanced: emitted after each of its blocks.
    Progress {
        /// The query.
        query: QueryId,
        /// Where it stands.
        progress: Progress,
    },
    /// Every block of the query arrived; the query is gone.
    QueryFinished {
        /// The query.
        query: QueryId,
    },
    /// The query gave up; it is gone and its blocks are no longer wanted (unless another
    /// query wants them). A cancelled query emits nothing.
    QueryFailed {
        /// The query.
        query: QueryId,
        /// Why.
        error: QueryError,
    },
}

/// Counters over the whole client [`Engine`](super::Engine), read with
/// [`Engine::stats`](super::Engine::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Wanted blocks received (first copies).
    pub blocks_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Copies of blocks received after the first, or for a want just cancelled.
    pub duplicate_blocks: u64,
    /// Their bytes.
    pub duplicate_bytes: u64,
    /// Blocks that nobody wanted or asked for (dropped; their senders penalised).
    pub unwanted_blocks: u64,
    /// Their bytes.
    pub unwanted_bytes: u64,
    /// [`Action::Send`]s emitted.
    pub messages_sent: u64,
    /// Wantlist entries in them (wants and cancels).
    pub entries_sent: u64,
    /// Of which cancels.
    pub cancels_sent: u64,
    /// Simulated DONT_HAVEs (wants unanswered in time).
    pub timeouts: u64,
    /// [`Action::FindProviders`] emitted.
    pub provider_searches: u64,
    /// Distinct CIDs wanted now.
    pub wants: usize,
    /// Live queries.
    pub queries: usize,
    /// Connected peers.
    pub peers: usize,
}

/// The actions waiting for the embedder, in the order they were made, and the engine's
/// counters. Owns the budget of provider searches: at most `Config::max_provider_searches`
/// [`Action::FindProviders`] per `Config::provider_search_interval`, and every
/// [`Action::Send`] counted in [`Stats`].
#[derive(Debug, Default)]
pub(super) struct Actions {
    queue: VecDeque<Action>,
    stats: Stats,
    /// When the provider searches of the last interval were emitted, oldest first.
    searches: VecDeque<Instant>,
}

impl Actions {
    /// The next action, oldest first.
    pub(super) fn pop(&mut self) -> Option<Action> {
        self.queue.pop_front()
    }

    /// Asks for `peer` to be dialled.
    pub(super) fn dial(&mut self, peer: PeerId) {
        self.queue.push_back(Action::Dial { peer });
    }

    /// Reports `event` to the user.
    pub(super) fn event(&mut self, event: Event) {
        self.queue.push_back(Action::Event(event));
    }

    /// Sends `message` to `peer`, counted.
    pub(super) fn send(&mut self, peer: PeerId, message: Message) {
        let entries = &message.wantlist.entries;
        self.stats.messages_sent += 1;
        self.stats.entries_sent += entries.len() as u64;
        self.stats.cancels_sent += entries.iter().filter(|e| e.cancel).count() as u64;
        self.queue.push_back(Action::Send { peer, message });
    }

    /// Emits a provider search for `cid` unless `max` were emitted within `interval` before
    /// `now`; returns whether it did.
    pub(super) fn find_providers(
        &mut self,
        cid: Cid,
        now: Instant,
        interval: Duration,
        max: usize,
    ) -> bool {
        while self
            .searches
            .front()
            .is_some_and(|at| now >= *at + interval)
        {
            self.searches.pop_front();
        }
        if self.searches.len() >= max {
            return false;
        }
        self.searches.push_back(now);
        self.stats.provider_searches += 1;
        self.queue.push_back(Action::FindProviders { cid });
        true
    }

    /// The counters, for the engine to update what it observed.
    pub(super) fn count(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// The counters.
    pub(super) fn stats(&self) -> Stats {
        self.stats
    }

    /// Provider searches remembered for the budget.
    #[cfg(any(test, fuzzing, feature = "testing"))]
    pub(super) fn searches_remembered(&self) -> usize {
        self.searches.len()
    }
}
