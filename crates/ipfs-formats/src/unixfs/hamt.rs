//! HAMT-sharded directories (UnixFS `HAMTShard`), in the layout kubo and Helia write.
//!
//! Spec: <https://github.com/ipfs/specs/blob/main/UNIXFS.md> (HAMTDirectory).
//!
//! A sharded directory is a trie of dag-pb nodes. Each node has `fanout` slots; an entry goes
//! in the slot picked by the next `log2(fanout)` bits of the murmur3-x64-64 hash of its name,
//! taken from the most significant end. Two entries meeting in one slot move into a child
//! shard one level down, which reads the next bits. A node's links follow its slots in order:
//! an entry's link is named by the slot as two uppercase hex digits followed by the entry's
//! name, a child shard's link by the two digits alone. The node's UnixFS `Data` is the slot
//! bitfield as a big-endian integer without its leading zero bytes, with `hashType` 0x22
//! (murmur3) and the fanout.
//!
//! - [`murmur3_x64_64`] is the hash.
//! - [`ShardBuilder`](self::ShardBuilder) lays a directory's entries out as kubo does (fanout
//!   256), for the importer.
//! - [`read_shard`](self::read_shard) splits one shard node's links into entries and child
//!   shards, for the exporter.

use std::collections::BTreeMap;

use cid::Cid;
use ipfs_blockstore::{Block, BlockError};
use prost::Message as _;

use super::{
    layout::{Child, Layout},
    pb::{DagPbNode, DataType, Link, UnixfsData},
};

/// The fanout kubo and Helia write: 256 slots per node, one byte of the hash per level.
pub const HAMT_FANOUT: u64 = 256;
/// The multicodec of murmur3-x64-64, the only hash of UnixFS HAMTs (`hashType`).
pub const HAMT_HASH_MURMUR3: u64 = 0x22;
/// The widest fanout read: boxo refuses more, and a shard's links are at most its fanout.
const MAX_FANOUT: u64 = 1024;
/// Bytes of the hash: one level per byte at fanout 256.
const HASH_BYTES: usize = 8;

/// Why a HAMT shard cannot be read or built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// `hashType` is not murmur3-x64-64.
    #[error("HAMT shard with hash type {0:?} (only murmur3-x64-64, 0x22, is defined)")]
    HashType(Option<u64>),
    /// The fanout is missing, not a power of two, below 8 or above 1024.
    #[error("HAMT shard with fanout {0:?} (a power of two from 8 to 1024)")]
    Fanout(Option<u64>),
    /// The bitfield is longer than the fanout, or its set bits are not the links' slots.
    #[error("HAMT shard whose bitfield does not match its links")]
    Bitfield,
    /// A link's name does not start with a slot number in hex, or the slots are not in
    /// increasing order.
    #[error("HAMT shard link with a bad name {0:?}")]
    LinkName(String),
    /// Two names share all 64 bits of their hash: there is no level left to part them.
    #[error("entries {0:?} and {1:?} have the same 64-bit hash")]
    Collision(String, String),
}

/// murmur3-x64-64 of `bytes`: the first 64-bit half (`h1`) of MurmurHash3_x64_128 with seed 0,
/// as boxo and `@multiformats/murmur3` take it. Its big-endian bytes are the bits a HAMT
/// consumes, most significant first.
pub fn murmur3_x64_64(bytes: &[u8]) -> u64 {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mix_k1 = |k1: u64| k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    let mix_k2 = |k2: u64| k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        let (k1, k2) = block.split_at(8);
        h1 ^= mix_k1(u64::from_le_bytes(k1.try_into().expect("8 bytes")));
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(u64::from_le_bytes(k2.try_into().expect("8 bytes")));
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let le = |bytes: &[u8]| {
        bytes
            .iter()
            .rev()
            .fold(0u64, |value, &byte| value << 8 | u64::from(byte))
    };
    if tail.len() > 8 {
        h2 ^= mix_k2(le(&tail[8..]));
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(le(&tail[..tail.len().min(8)]));
    }
    let len = bytes.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1.wrapping_add(h2)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The bitfield of a node whose `slots` are set, as UnixFS stores it: a big-endian integer
/// (slot 0 is the lowest bit of the last byte) without leading zero bytes.
fn bitfield(slots: impl IntoIterator<Item = u8>) -> Vec<u8> {
    let mut bits = [0u8; HAMT_FANOUT as usize / 8];
    for slot in slots {
        bits[bits.len() - 1 - usize::from(slot / 8)] |= 1 << (slot % 8);
    }
    let first = bits.iter().position(|&b| b != 0).unwrap_or(bits.len());
    bits[first..].to_vec()
}

/// Whether `slot` is set in a stored bitfield (shorter than the fanout when it starts with
/// zeros).
fn bit(bitfield: &[u8], slot: u64) -> bool {
    let byte = usize::try_from(slot / 8).unwrap_or(usize::MAX);
    byte < bitfield.len() && bitfield[bitfield.len() - 1 - byte] & (1 << (slot % 8)) != 0
}

/// One slot of a node being built.
#[derive(Debug)]
enum Slot {
    /// One entry, with the hash of its name.
    Entry { link: Link, hash: [u8; HASH_BYTES] },
    /// Entries that met in this slot, one level down.
    Shard(Table),
}

/// A node being built: its slots by number.
#[derive(Debug, Default)]
struct Table {
    slots: BTreeMap<u8, Slot>,
}

impl Table {
    /// Puts `link` in the slot its hash picks at `depth`, moving it and any entry already there
    /// into a child shard when they differ.
    fn insert(
        &mut self,
        link: Link,
        hash: [u8; HASH_BYTES],
        depth: usize,
    ) -> Result<(), ShardError> {
        let slot = hash[depth];
        match self.slots.remove(&slot) {
            None => {
                self.slots.insert(slot, Slot::Entry { link, hash });
            }
            Some(Slot::Entry { link: old, .. }) if old.name == link.name => {
                self.slots.insert(slot, Slot::Entry { link, hash });
            }
            Some(Slot::Entry {
                link: old,
                hash: old_hash,
            }) => {
                if depth + 1 == HASH_BYTES {
                    return Err(ShardError::Collision(old.name, link.name));
                }
                let mut child = Self::default();
                child.insert(old, old_hash, depth + 1)?;
                child.insert(link, hash, depth + 1)?;
                self.slots.insert(slot, Slot::Shard(child));
            }
            Some(Slot::Shard(mut child)) => {
                let result = child.insert(link, hash, depth + 1);
                self.slots.insert(slot, Slot::Shard(child));
                result?;
            }
        }
        Ok(())
    }

    /// Writes this node and its child shards (children first) to `blocks`; the node's link.
    fn build(self, layout: &Layout, blocks: &mut Vec<Block>) -> Result<Child, BlockError> {
        let bits = bitfield(self.slots.keys().copied());
        let mut links = Vec::with_capacity(self.slots.len());
        for (slot, entry) in self.slots {
            links.push(match entry {
                Slot::Entry { link, .. } => Link {
                    name: format!("{slot:02X}{}", link.name),
                    ..link
                },
                Slot::Shard(table) => {
                    let child = table.build(layout, blocks)?;
                    Link {
                        cid: child.cid,
                        name: format!("{slot:02X}"),
                        tsize: child.tsize,
                    }
                }
            });
        }
        let data = UnixfsData {
            r#type: DataType::HamtShard as i32,
            data: Some(bits.into()),
            hash_type: Some(HAMT_HASH_MURMUR3),
            fanout: Some(HAMT_FANOUT),
            ..UnixfsData::directory()
        };
        let below = links
            .iter()
            .fold(0u64, |sum, link| sum.saturating_add(link.tsize));
        let block = layout.dag_pb_block(&DagPbNode {
            links,
            data: Some(data.encode_to_vec().into()),
        })?;
        let child = Child {
            cid: *block.cid(),
            tsize: (block.data().len() as u64).saturating_add(below),
            filesize: 0,
        };
        blocks.push(block);
        Ok(child)
    }
}

/// Lays out the entries of one directory as a HAMT of fanout 256, as boxo's `hamt.Shard` does
/// for kubo: the trie is the same whatever order the entries come in.
#[derive(Debug, Default)]
pub(super) struct ShardBuilder {
    root: Table,
}

impl ShardBuilder {
    /// Adds an entry: `link.name` is its name in the directory. A second entry of the same
    /// name replaces the first.
    pub(super) fn insert(&mut self, link: Link) -> Result<(), ShardError> {
        let hash = murmur3_x64_64(link.name.as_bytes()).to_be_bytes();
        self.root.insert(link, hash, 0)
    }

    /// Writes every shard node to `blocks`, the root last, and returns the root's link.
    pub(super) fn build(
        self,
        layout: &Layout,
        blocks: &mut Vec<Block>,
    ) -> Result<Child, BlockError> {
        self.root.build(layout, blocks)
    }
}

/// The links of one shard node, split by what they point to.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ShardLinks {
    /// The directory entries in this node, named by their entry names (the slot prefix
    /// removed).
    pub(super) entries: Vec<Link>,
    /// The child shards, whose entries belong to the same directory.
    pub(super) shards: Vec<Cid>,
}

/// Splits the links of a shard node (its UnixFS data `unixfs`) into entries and child shards,
/// checking the hash type, the fanout and that the links' slots are exactly the bitfield's, in
/// order. The entries' hashes are not checked: an entry in the wrong slot cannot be found by
/// name, but it is still an entry of the directory when the whole tree is written out.
pub(super) fn read_shard(links: Vec<Link>, unixfs: &UnixfsData) -> Result<ShardLinks, ShardError> {
    if unixfs.hash_type != Some(HAMT_HASH_MURMUR3) {
        return Err(ShardError::HashType(unixfs.hash_type));
    }
    let fanout = unixfs
        .fanout
        .filter(|f| f.is_power_of_two() && (8..=MAX_FANOUT).contains(f))
        .ok_or(ShardError::Fanout(unixfs.fanout))?;
    let bits = unixfs.data.as_deref().unwrap_or_default();
    if bits.len() as u64 > fanout / 8 {
        return Err(ShardError::Bitfield);
    }
    // As many hex digits as the highest slot takes: 2 at fanout 256, 3 at 1024.
    let digits = format!("{:X}", fanout - 1).len();
    let set: u32 = bits.iter().map(|b| b.count_ones()).sum();
    if set as usize != links.len() {
        return Err(ShardError::Bitfield);
    }
    let mut out = ShardLinks::default();
    let mut previous = None;
    for link in links {
        let slot = link
            .name
            .get(..digits)
            .filter(|prefix| prefix.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|prefix| u64::from_str_radix(prefix, 16).ok())
            .filter(|&slot| slot < fanout && previous.is_none_or(|p| p < slot));
        let Some(slot) = slot else {
            return Err(ShardError::LinkName(link.name));
        };
        if !bit(bits, slot) {
            return Err(ShardError::Bitfield);
        }
        previous = Some(slot);
        if link.name.len() == digits {
            out.shards.push(link.cid);
        } else {
            out.entries.push(Link {
                name: link.name[digits..].to_owned(),
                ..link
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digests of `@multiformats/murmur3`'s `murmur364` (Helia's HAMT hash), big-endian.
    #[test]
    fn murmur3_matches_helias_vectors() {
        let vectors: [(&str, u64); 6] = [
            ("", 0),
            ("a", 0x8555_5565_f659_7889),
            ("hello", 0xcbd8_a7b3_41bd_9b02),
            ("file-00001", 0xd504_dc74_3e69_f0de),
            // 17 bytes: one block and a tail reaching into the second half.
            ("abcdefghijklmnopq", 0x7564_747f_88bd_a657),
            (
                "The quick brown fox jumps over the lazy dog",
                0xe34b_bc7b_bc07_1b6c,
            ),
        ];
        for (input, digest) in vectors {
            assert_eq!(murmur3_x64_64(input.as_bytes()), digest, "{input:?}");
        }
    }

    #[test]
    fn bitfield_is_big_endian_without_leading_zeros() {
        assert_eq!(bitfield([]), Vec::<u8>::new());
        assert_eq!(bitfield([0]), [0x01]);
        assert_eq!(bitfield([7, 0]), [0x81]);
        assert_eq!(bitfield([8]), [0x01, 0x00]);
        let top = bitfield([255, 1]);
        assert_eq!(top.len(), 32);
        assert_eq!((top[0], top[31]), (0x80, 0x02));
        for slot in [0u64, 1, 8, 100, 255] {
            let bits = bitfield([slot as u8]);
            assert!(bit(&bits, slot));
            assert!(!bit(&bits, (slot + 1) % 256));
        }
        assert!(!bit(&[0x01], 8), "past a short bitfield");
    }

    fn link(name: &str, n: u8) -> Link {
        Link {
            cid: Block::from_v0_data(vec![n].into())
                .unwrap()
                .cid()
                .to_owned(),
            name: name.to_owned(),
            tsize: u64::from(n),
        }
    }

    /// Two names whose hashes share their first byte but not their second.
    fn colliding() -> (String, String) {
        let mut first_by_byte: BTreeMap<u8, String> = BTreeMap::new();
        for i in 0.. {
            let name = format!("n{i}");
            let hash = murmur3_x64_64(name.as_bytes()).to_be_bytes();
            if let Some(other) = first_by_byte.get(&hash[0]) {
                let other_hash = murmur3_x64_64(other.as_bytes()).to_be_bytes();
                if other_hash[1] != hash[1] {
                    return (other.clone(), name);
                }
            }
            first_by_byte.insert(hash[0], name);
        }
        unreachable!()
    }

    fn decode(block: &Block) -> (Vec<Link>, UnixfsData) {
        let node = DagPbNode::decode_bytes(block.data()).unwrap();
        let data = UnixfsData::decode_bytes(&node.data.unwrap()).unwrap();
        (node.links, data)
    }

    #[test]
    fn entries_meeting_in_a_slot_move_one_level_down() {
        let (a, b) = colliding();
        let hash = |name: &str| murmur3_x64_64(name.as_bytes()).to_be_bytes();
        let mut builder = ShardBuilder::default();
        builder.insert(link(&a, 1)).unwrap();
        builder.insert(link("alone", 2)).unwrap();
        builder.insert(link(&b, 3)).unwrap();
        let mut blocks = Vec::new();
        let root = builder.build(&Layout::default(), &mut blocks).unwrap();
        assert_eq!(blocks.len(), 2, "the child shard, then the root");
        assert_eq!(*blocks[1].cid(), root.cid);
        let (links, data) = decode(&blocks[1]);
        assert_eq!(data.kind().unwrap(), DataType::HamtShard);
        assert_eq!((data.hash_type, data.fanout), (Some(0x22), Some(256)));
        assert_eq!(
            data.data.as_deref(),
            Some(&bitfield([hash(&a)[0], hash("alone")[0]])[..])
        );
        let names: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
        let shard_name = format!("{:02X}", hash(&a)[0]);
        let alone_name = format!("{:02X}alone", hash("alone")[0]);
        let mut expected = [shard_name.as_str(), alone_name.as_str()];
        expected.sort();
        assert_eq!(names, expected);
        let shard = links.iter().find(|l| l.name == shard_name).unwrap();
        assert_eq!(shard.cid, *blocks[0].cid());
        assert_eq!(shard.tsize, blocks[0].data().len() as u64 + 1 + 3);
        assert_eq!(root.tsize, blocks[1].data().len() as u64 + shard.tsize + 2);

        let (child_links, child_data) = decode(&blocks[0]);
        let read = read_shard(child_links, &child_data).unwrap();
        assert!(read.shards.is_empty());
        let mut entries: Vec<String> = read.entries.iter().map(|l| l.name.clone()).collect();
        entries.sort();
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        assert_eq!(entries, both);
        let read = read_shard(links, &data).unwrap();
        assert_eq!(read.shards, [*blocks[0].cid()]);
        assert_eq!(read.entries, [link("alone", 2)]);
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let names: Vec<String> = (0..600).map(|i| format!("entry-{i}")).collect();
        let build = |order: Vec<&String>| {
            let mut builder = ShardBuilder::default();
            for name in order {
                builder.insert(link(name, name.len() as u8)).unwrap();
            }
            let mut blocks = Vec::new();
            let root = builder.build(&Layout::default(), &mut blocks).unwrap();
            (root.cid, blocks.len())
        };
        let (forward, blocks) = build(names.iter().collect());
        let (backward, _) = build(names.iter().rev().collect());
        assert_eq!(forward, backward);
        // 600 entries in 256 slots: some slots hold child shards.
        assert!(blocks > 1);
    }

    #[test]
    fn bad_shards_are_typed_errors() {
        let good = UnixfsData {
            r#type: DataType::HamtShard as i32,
            data: Some(bitfield([1, 2]).into()),
            hash_type: Some(0x22),
            fanout: Some(256),
            ..UnixfsData::directory()
        };
        let links = || vec![link("01a", 1), link("02", 2)];
        let read = read_shard(links(), &good).unwrap();
        assert_eq!(read.entries[0].name, "a");
        assert_eq!(read.shards.len(), 1);

        let with = |change: &dyn Fn(&mut UnixfsData)| {
            let mut data = good.clone();
            change(&mut data);
            read_shard(links(), &data).unwrap_err()
        };
        assert!(matches!(
            with(&|d| d.hash_type = Some(0x12)),
            ShardError::HashType(_)
        ));
        assert!(matches!(with(&|d| d.fanout = None), ShardError::Fanout(_)));
        assert!(matches!(
            with(&|d| d.fanout = Some(100)),
            ShardError::Fanout(_)
        ));
        assert!(matches!(
            with(&|d| d.fanout = Some(4096)),
            ShardError::Fanout(_)
        ));
        assert!(matches!(
            with(&|d| d.data = Some(bitfield([1]).into())),
            ShardError::Bitfield
        ));
        assert!(matches!(
            with(&|d| d.data = Some(bitfield([1, 3]).into())),
            ShardError::Bitfield
        ));
        assert!(matches!(
            with(&|d| d.data = Some(vec![1; 33].into())),
            ShardError::Bitfield
        ));
        let bad_names = [
            vec![link("02a", 1), link("01", 2)],
            vec![link("0", 1), link("02", 2)],
            vec![link("zz", 1), link("02", 2)],
            vec![link("+1a", 1), link("02", 2)],
            vec![link("é1", 1), link("02", 2)],
        ];
        for links in bad_names {
            let error = read_shard(links, &good).unwrap_err();
            assert!(matches!(error, ShardError::LinkName(_)), "{error}");
        }
    }

    #[test]
    fn same_hash_is_an_error_not_a_loop() {
        let mut table = Table::default();
        let hash = [7; HASH_BYTES];
        table.insert(link("a", 1), hash, 0).unwrap();
        let error = table.insert(link("b", 2), hash, 0).unwrap_err();
        assert!(matches!(error, ShardError::Collision(..)), "{error}");
    }
}
