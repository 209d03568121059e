//! The Bitswap server's decision engine: what every peer gets, and when.
//!
//! [`Engine`] is a sans-IO state machine: the embedder feeds it peers, received messages,
//! lookup results and send reports (`handle_*`), and drains what it asks for: blockstore
//! lookups ([`Lookup`]) and messages to send ([`Envelope`]) (`poll_*`). It owns no clock,
//! socket, task or store, so it is tested deterministically without any of them.
//!
//! - `config.rs`: [`Config`], limits and policies with boxo's defaults.
//! - `engine.rs`: the engine's parts, its inputs and outputs, accessors and invariants.
//! - `flow.rs`: what an input changes across the parts, and the peers' inputs; in `flow/`,
//!   `inputs.rs` (received wantlists and new blocks, turned into wants and tasks), `store.rs`
//!   (blockstore lookups handed out, round-robin between peers, and their answers) and
//!   `envelope.rs` (batches of popped tasks packed into messages of at most 4 MiB, and their
//!   reports).
//! - `peer.rs`: the connected peers, and the index of who wants which multihash.
//! - `ledger.rs`: one peer's wants, about 90 bytes each, and the order in which they give way
//!   when it is full.
//! - `merger.rs`: the queue's tasks and how requests for one block combine (boxo's merger).
//! - `lookup.rs`: [`Lookup`] and its answer, and the lookups waiting and in flight.
//! - `batch.rs`: [`Envelope`], the batches of popped tasks envelopes are packed from, and
//!   those in flight.
//! - `window.rs`: each peer's window of outstanding bytes, grown towards what its link
//!   carries in a round trip, within a per-peer and a global cap.
//! - `metrics.rs`: per-peer accounting, the engine's counters and prometheus-client metrics.

mod batch;
mod config;
mod engine;
mod flow;
mod ledger;
mod lookup;
mod merger;
mod metrics;
mod peer;
mod window;

pub use batch::{Envelope, EnvelopeId};
pub use config::{Config, RequestFilter};
pub use engine::Engine;
pub use lookup::{Lookup, LookupId, LookupKind, LookupResult};
#[cfg(feature = "metrics")]
pub use metrics::Metrics;
pub use metrics::{PeerAccounting, Stats};
