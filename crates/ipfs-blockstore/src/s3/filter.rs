//! The membership filter of the S3 store: which blocks the bucket held at its last complete
//! listing, plus what this store wrote since, so that a lookup of a block nobody stored is
//! answered without a request.
//!
//! It holds 64-bit fingerprints of multihashes, not the multihashes: a hit only says "maybe
//! stored" and is confirmed by a request, so a fingerprint shared by two blocks can never
//! answer HAVE for one that is absent. A miss is trusted, and that is where staleness comes
//! in: a block another store put after the last listing began looks absent until the next
//! complete listing, unless a confirming request (rate-limited) finds it first.

use std::{
    collections::HashSet,
    hash::{BuildHasherDefault, Hasher},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use multihash::Multihash;

/// The fingerprint of a multihash in the filter.
pub(super) fn fingerprint(hash: &Multihash<64>) -> u64 {
    let mut bytes = [0u8; 80];
    let len = hash
        .write(&mut bytes[..])
        .expect("a multihash of at most 64 digest bytes fits in 80 bytes");
    xxhash_rust::xxh3::xxh3_64(&bytes[..len])
}

/// The fingerprint of a multihash's bytes, as decoded from an object key.
pub(super) fn fingerprint_bytes(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// Hashes a fingerprint to itself: it is a hash already.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A set of fingerprints.
pub(super) type Fingerprints = HashSet<u64, BuildHasherDefault<Identity>>;

/// What the filter says of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Not stored as far as the filter knows, and no confirmation is allowed now.
    Absent,
    /// Maybe stored, or a miss this lookup may confirm: ask the bucket.
    Ask,
}

/// How a listing ended.
#[derive(Debug)]
pub(super) enum Listed {
    /// It saw every block under the prefix.
    Complete(Fingerprints),
    /// It failed or was cut short: the filter stays as it was, since a truncated listing must
    /// not make blocks look absent.
    Failed,
    /// It found more blocks than the filter holds: misses are no longer trusted.
    TooMany,
}

#[derive(Debug)]
pub(super) struct Filter {
    state: Mutex<State>,
    max_entries: usize,
    refresh: Duration,
    confirms_per_second: f64,
}

#[derive(Debug)]
struct State {
    set: Fingerprints,
    /// Whether `set` comes from a complete listing (with this store's writes since).
    trusted: bool,
    /// A listing is running: what this store wrote since it began, to add to its result.
    /// `None` inside once more than `max_entries` were written (the listing is then dropped).
    listing: Option<Option<Vec<u64>>>,
    /// When the last listing began.
    last_listing: Option<Instant>,
    /// Confirmations of misses allowed now (a token bucket of one second's worth).
    tokens: f64,
    refilled: Instant,
}

impl Filter {
    pub(super) fn new(max_entries: usize, refresh: Duration, confirms_per_second: u32) -> Self {
        let confirms_per_second = f64::from(confirms_per_second);
        Self {
            state: Mutex::new(State {
                set: Fingerprints::default(),
                trusted: false,
                listing: None,
                last_listing: None,
                tokens: confirms_per_second,
                refilled: Instant::now(),
            }),
            max_entries,
            refresh,
            confirms_per_second,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the filter comes from a complete listing.
    pub(super) fn is_trusted(&self) -> bool {
        self.lock().trusted
    }

    /// How many fingerprints it holds.
    pub(super) fn len(&self) -> usize {
        self.lock().set.len()
    }

    /// What the filter says of the block with fingerprint `print`.
    pub(super) fn check(&self, print: u64) -> Verdict {
        let mut state = self.lock();
        if !state.trusted || state.set.contains(&print) {
            return Verdict::Ask;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(state.refilled).as_secs_f64();
        state.refilled = now;
        state.tokens = (state.tokens + elapsed * self.confirms_per_second)
            .min(self.confirms_per_second.max(1.0));
        if state.tokens >= 1.0 {
            state.tokens -= 1.0;
            Verdict::Ask
        } else {
            Verdict::Absent
        }
    }

    /// Records a block found or written.
    pub(super) fn insert(&self, print: u64) {
        let mut state = self.lock();
        if let Some(Some(written)) = &mut state.listing {
            if written.len() < self.max_entries {
                written.push(print);
            } else {
                state.listing = Some(None);
            }
        }
        if state.set.len() < self.max_entries {
            state.set.insert(print);
        } else if !state.set.contains(&print) {
            // A miss could now be wrong for good: stop trusting misses until a listing fits.
            state.trusted = false;
        }
    }

    /// Records a block deleted. (Another block with the same fingerprint then looks absent
    /// until the next listing: deletes are rare, and a miss is what staleness allows.)
    pub(super) fn remove(&self, print: u64) {
        self.lock().set.remove(&print);
    }

    /// Starts a listing if none runs and the last began at least the refresh interval ago (or
    /// never); true if the caller is now to run it.
    pub(super) fn begin_listing(&self, force: bool) -> bool {
        let mut state = self.lock();
        let due = force
            || state
                .last_listing
                .is_none_or(|last| last.elapsed() >= self.refresh);
        if state.listing.is_some() || !due {
            return false;
        }
        state.listing = Some(Some(Vec::new()));
        state.last_listing = Some(Instant::now());
        true
    }

    /// Ends a listing.
    pub(super) fn end_listing(&self, listed: Listed) {
        let mut state = self.lock();
        let written = state.listing.take();
        let mut set = match listed {
            Listed::Complete(set) => set,
            Listed::Failed => return,
            Listed::TooMany => {
                state.trusted = false;
                return;
            }
        };
        // Writes during the listing overflowed their log: this listing cannot be completed.
        let Some(Some(written)) = written else {
            state.trusted = false;
            return;
        };
        set.extend(written);
        if set.len() > self.max_entries {
            state.trusted = false;
            return;
        }
        state.set = set;
        state.trusted = true;
    }

    /// The most fingerprints the filter holds.
    pub(super) fn max_entries(&self) -> usize {
        self.max_entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter() -> Filter {
        Filter::new(4, Duration::from_secs(60), 0)
    }

    #[test]
    fn untrusted_until_a_complete_listing() {
        let filter = filter();
        assert_eq!(filter.check(1), Verdict::Ask);
        assert!(filter.begin_listing(false));
        assert!(!filter.begin_listing(true), "one listing at a time");
        filter.end_listing(Listed::Failed);
        assert_eq!(
            filter.check(1),
            Verdict::Ask,
            "a failed listing is not trusted"
        );
        assert!(filter.begin_listing(true));
        filter.insert(7);
        filter.end_listing(Listed::Complete(Fingerprints::from_iter([1, 2])));
        assert!(filter.is_trusted());
        assert_eq!(filter.check(1), Verdict::Ask);
        assert_eq!(filter.check(7), Verdict::Ask, "written during the listing");
        assert_eq!(filter.check(3), Verdict::Absent);
    }

    #[test]
    fn overflow_stops_trusting_misses() {
        let filter = filter();
        assert!(filter.begin_listing(false));
        filter.end_listing(Listed::Complete(Fingerprints::from_iter([1, 2, 3, 4])));
        assert_eq!(filter.check(9), Verdict::Absent);
        filter.insert(5);
        assert_eq!(filter.check(9), Verdict::Ask);
        assert!(filter.begin_listing(true));
        filter.end_listing(Listed::Complete(Fingerprints::from_iter([1, 2, 3, 4, 5])));
        assert!(!filter.is_trusted(), "a listing over the bound is not used");
    }

    #[test]
    fn misses_are_confirmed_at_the_rate_given() {
        let filter = Filter::new(4, Duration::from_secs(60), 2);
        assert!(filter.begin_listing(false));
        filter.end_listing(Listed::Complete(Fingerprints::default()));
        let asked = (0..10).filter(|_| filter.check(1) == Verdict::Ask).count();
        assert_eq!(asked, 2);
    }
}
