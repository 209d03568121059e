//! The engines' maps and sets: foldhash, seeded at random per map. Their keys (CIDs,
//! multihashes, peer ids) come from peers; a per-map random seed keeps them from choosing
//! collisions, and foldhash hashes them several times faster than std's SipHash, which
//! matters when a peer floods wants (profiled: SipHash was 13% of a 100,000-want flood).

use std::collections::{HashMap, HashSet};

/// A hash map with the engines' hasher.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set with the engines' hasher.
pub(crate) type Set<K> = HashSet<K, foldhash::fast::RandomState>;
