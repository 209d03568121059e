//! The Bitswap client's decision engine: which peers are asked for which blocks, and when.
//!
//! [`Engine`] is a sans-IO state machine, like the server's: the embedder feeds it peers,
//! received messages, provider records and the time (`handle_*`), starts and cancels queries
//! ([`Engine::get`], [`Engine::cancel`], sessions), and drains what it asks for
//! ([`Engine::poll_action`]): wantlist messages to send, peers to dial, provider searches and
//! events for the user. It owns no clock, socket, task or store, so it is tested
//! deterministically against in-memory servers with a virtual clock.
//!
//! The engine is made of parts, each owning its state and what keeps it consistent (h2's
//! `Streams` is the model): the engine composes them, and the strategy borrows the ones it
//! moves between for each input.
//!
//! - `engine.rs`: [`Engine`]: the parts, the inputs, the outputs, the accessors.
//! - `strategy.rs`: the strategy: targets, want-have broadcast, cancels, provider searches,
//!   and what answers change (presences, silence, resends, penalties).
//! - `want.rs`: the wanted CIDs, the wants waiting for room, the discovery counts, the CIDs
//!   wanted recently.
//! - `peer.rs`: the peers: each one's wants, outbox, latency and score; the dials.
//! - `query.rs`: queries and sessions.
//! - `held.rs`: the CIDs of local-first queries waiting for the embedder's store.
//! - `link.rs`: one peer's round trip, delivery rate and last answer: its window and timeouts.
//! - `timer.rs`: the deadlines.
//! - `action.rs`: [`Action`], [`Event`] and [`Stats`], and the queue of actions.
//! - `id.rs`: ids and errors, named by every other file.
//! - `config.rs`: [`Config`], limits, timeouts and strategy knobs.
//! - `invariants.rs`: consistency checks across the parts, for tests and fuzzing.
//! - `testing.rs`, `tests.rs` and `no_peer_tests.rs` (tests only): helpers, and the
//!   engine's unit tests.

mod action;
mod config;
mod engine;
mod held;
mod id;
#[cfg(any(test, fuzzing, feature = "testing"))]
mod invariants;
mod link;
#[cfg(test)]
mod no_peer_tests;
mod peer;
mod query;
mod strategy;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod timer;
mod want;

pub use action::{Action, Event, Stats};
pub use config::Config;
pub use engine::Engine;
pub use id::{ConnectionError, Progress, QueryError, QueryId, SessionId};
pub(crate) use peer::WANT_BLOCK_MESSAGES;
