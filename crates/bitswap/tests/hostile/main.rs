//! Hostile peers against a whole node ([`bitswap::Behaviour`]) over loopback TCP (Noise,
//! Yamux), while an honest peer fetches from it.
//!
//! Each scenario measures the honest fetch alone, then again while the attacker works, and
//! checks that the node stays up and answers, that the honest fetch takes at most twice its
//! normal time (plus a fixed allowance for scheduling noise on a shared two-core machine),
//! that the process's resident memory grows by less than the bound the node's caps imply,
//! and what the node did with the attacker (its state bounded, its garbage never stored).
//!
//! Floods of wants (100,000 entries, or 200 full wantlists of 1024) are held to the 2x bound
//! in release builds, where the node takes each peer's wants in at a limited rate
//! ([`Config::with_max_wants_per_second`], 50,000 per second by default). Debug builds spend
//! about 20x more per want, so there the rate alone costs most of a core: they check that the
//! fetch completes, the caps hold and memory stays bounded, and print the slowdown. `.ci/test`
//! runs this file in release too.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod attacks;
mod budget;
mod decode;
mod envelopes;
mod honest;
