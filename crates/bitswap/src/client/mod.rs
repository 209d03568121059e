//! The Bitswap client's decision engine: which peers are asked for which blocks, and when.
//!
//! [`Engine`] is a sans-IO state machine, like the server's: the embedder feeds it peers,
//! received messages, provider records and the time (`handle_*`), starts and cancels queries
//! ([`Engine::get`], [`Engine::cancel`], sessions), and drains what it asks for
//! ([`Engine::poll_action`]): wantlist messages to send, peers to dial, provider searches and
//! events for the user. It owns no clock, socket, task or store, so it is tested
//! deterministically against in-memory servers with a virtual clock.
//!
//! - `config.rs`: [`Config`], limits, timeouts and strategy knobs.
//! - `engine.rs`: the engine's state, peer and message inputs, timers, outputs, accessors.
//! - `invariants.rs`: consistency and bound checks, for tests and fuzzing.
//! - `query.rs`: queries and sessions, [`Engine::get`] and [`Engine::cancel`].
//! - `want.rs`: the strategy: targets, want-have broadcast, cancels, provider searches.
//! - `answer.rs`: what answers change: presences, blocks, silence, resends, penalties.
//! - `peer.rs`: one peer's wants, outbox, latency and score.
//! - `link.rs`: one peer's round trip, delivery rate and last answer: its window and timeouts.
//! - `timer.rs`: the deadlines.
//! - `action.rs`: [`Action`], [`Event`] and [`Stats`].
//! - `testing.rs` (tests only): helpers for the unit tests.

mod action;
mod answer;
mod config;
mod engine;
mod invariants;
mod link;
mod peer;
mod query;
#[cfg(test)]
mod testing;
mod timer;
mod want;

pub use action::{Action, Event, Stats};
pub use config::Config;
pub use engine::Engine;
pub use query::{Progress, QueryError, QueryId, SessionId};
