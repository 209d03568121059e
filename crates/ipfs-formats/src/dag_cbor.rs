//! The links of a dag-cbor block: every CID (CBOR tag 42) anywhere in its structure, so that a
//! DAG walk (`car export`, `get`'s fetch) goes through dag-cbor nodes as through dag-pb ones.
//!
//! Spec: <https://ipld.io/specs/codecs/dag-cbor/spec/>. A CID is tag 42 over a byte string
//! holding a 0x00 (the multibase prefix of binary CIDs) and the CID's bytes. The reader only
//! walks the items: no value is built but the CIDs, so the memory taken is the links and a
//! stack as deep as the nesting, which is bounded by [`MAX_NESTING`]. Indefinite lengths, which
//! dag-cbor forbids, are refused; so is anything after the first item.

use cid::Cid;

/// CBOR major types.
pub(crate) const UINT: u8 = 0;
pub(crate) const BYTES: u8 = 2;
pub(crate) const TEXT: u8 = 3;
pub(crate) const ARRAY: u8 = 4;
pub(crate) const MAP: u8 = 5;
pub(crate) const TAG: u8 = 6;
/// The dag-cbor tag of a CID.
pub(crate) const CID_TAG: u64 = 42;

/// The deepest nesting of arrays, maps and tags read. Real IPLD data nests a few levels; a
/// block of 2 MiB of one-byte arrays would otherwise nest two million deep.
pub const MAX_NESTING: usize = 512;

/// Why the links of a dag-cbor block are unknown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DagCborError {
    /// An item runs past the end of the block.
    #[error("malformed dag-cbor: truncated")]
    Truncated,
    /// An indefinite length or a reserved additional-information value.
    #[error("malformed dag-cbor: indefinite or reserved length ({0})")]
    Length(u8),
    /// Arrays, maps and tags nested deeper than [`MAX_NESTING`].
    #[error("dag-cbor nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// Tag 42 over something other than a 0x00-prefixed byte string.
    #[error("malformed dag-cbor: tag 42 not over a 0x00-prefixed byte string")]
    CidTag,
    /// A tag-42 byte string that is not a CID.
    #[error("malformed dag-cbor: invalid CID: {0}")]
    Cid(#[source] cid::Error),
    /// Bytes after the block's one item.
    #[error("malformed dag-cbor: bytes after the first item")]
    Trailing,
}

/// Takes `n` bytes off the front of `rest`.
pub(crate) fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], DagCborError> {
    if rest.len() < n {
        return Err(DagCborError::Truncated);
    }
    let (taken, after) = rest.split_at(n);
    *rest = after;
    Ok(taken)
}

/// Takes a CBOR head off the front of `rest`: the major type and its argument (a length, a
/// count, a tag or a value). Indefinite lengths and reserved values are refused.
pub(crate) fn take_head(rest: &mut &[u8]) -> Result<(u8, u64), DagCborError> {
    let first = take(rest, 1)?[0];
    let (major, info) = (first >> 5, first & 0x1f);
    let width = match info {
        0..24 => return Ok((major, u64::from(info))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        _ => return Err(DagCborError::Length(info)),
    };
    let value = take(rest, width)?
        .iter()
        .fold(0u64, |value, byte| value << 8 | u64::from(*byte));
    Ok((major, value))
}

/// Takes a byte or text string of `len` bytes (the head already read) off `rest`.
fn take_string<'a>(rest: &mut &'a [u8], len: u64) -> Result<&'a [u8], DagCborError> {
    take(
        rest,
        usize::try_from(len).map_err(|_| DagCborError::Truncated)?,
    )
}

/// The CIDs of a dag-cbor block, in the order they appear (a CID linked twice is listed
/// twice).
pub fn links(block: &[u8]) -> Result<Vec<Cid>, DagCborError> {
    let mut rest = block;
    let mut links = Vec::new();
    // Items still to read in each open array or map (a map's entries count twice), innermost
    // last; a tag opens a level of one item.
    let mut open: Vec<u64> = vec![1];
    while let Some(left) = open.last_mut() {
        if *left == 0 {
            open.pop();
            continue;
        }
        *left -= 1;
        let (major, value) = take_head(&mut rest)?;
        let items = match major {
            BYTES | TEXT => {
                take_string(&mut rest, value)?;
                0
            }
            ARRAY => value,
            // More entries than bytes left fail as truncated when they run out.
            MAP => value.saturating_mul(2),
            TAG if value == CID_TAG => {
                let (BYTES, len) = take_head(&mut rest)? else {
                    return Err(DagCborError::CidTag);
                };
                let [0, cid @ ..] = take_string(&mut rest, len)? else {
                    return Err(DagCborError::CidTag);
                };
                links.push(Cid::try_from(cid).map_err(DagCborError::Cid)?);
                0
            }
            TAG => 1,
            // Integers (major types 0 and 1), simple values and floats (7): the head is the
            // whole item.
            _ => 0,
        };
        if items > 0 {
            if open.len() > MAX_NESTING {
                return Err(DagCborError::TooDeep);
            }
            open.push(items);
        }
    }
    if !rest.is_empty() {
        return Err(DagCborError::Trailing);
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        crate::unixfs::v1_block(0x55, bytes::Bytes::from(vec![n]))
            .unwrap()
            .cid()
            .to_owned()
    }

    /// Tag 42 over the CID's bytes after a 0.
    fn link(out: &mut Vec<u8>, cid: &Cid) {
        let bytes = cid.to_bytes();
        out.extend([0xd8, 0x2a, 0x58, u8::try_from(bytes.len() + 1).unwrap(), 0]);
        out.extend(bytes);
    }

    #[test]
    fn finds_cids_anywhere() {
        let (a, b, c) = (cid(1), cid(2), cid(3));
        // {"a": CID-a, "list": [1, -2, 1.5, "x", h'00', [CID-b, {"deep": CID-c}]], "t": 1(0)}
        let mut block = vec![0xa3, 0x61, b'a'];
        link(&mut block, &a);
        block.extend([0x64]);
        block.extend(b"list");
        block.extend([
            0x86, 0x01, 0x21, 0xf9, 0x3e, 0x00, 0x61, b'x', 0x41, 0x00, 0x82,
        ]);
        link(&mut block, &b);
        block.extend([0xa1, 0x64]);
        block.extend(b"deep");
        link(&mut block, &c);
        block.extend([0x61, b't', 0xc1, 0x00]);
        assert_eq!(links(&block).unwrap(), [a, b, c]);
        // No links: {"hello": "world"}.
        assert!(links(b"\xa1\x65hello\x65world").unwrap().is_empty());
    }

    #[test]
    fn malformed_blocks_are_typed_errors() {
        let cases: [(&[u8], fn(&DagCborError) -> bool); 7] = [
            (b"", |e| matches!(e, DagCborError::Truncated)),
            // An array claiming 2^64 - 1 items.
            (b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff\x01", |e| {
                matches!(e, DagCborError::Truncated)
            }),
            // Indefinite-length array.
            (b"\x9f\xff", |e| matches!(e, DagCborError::Length(31))),
            // Tag 42 over a text string; over bytes without the 0x00.
            (b"\xd8\x2a\x61a", |e| matches!(e, DagCborError::CidTag)),
            (b"\xd8\x2a\x41\x01", |e| matches!(e, DagCborError::CidTag)),
            (b"\xd8\x2a\x42\x00\x01", |e| {
                matches!(e, DagCborError::Cid(_))
            }),
            (b"\x01\x02", |e| matches!(e, DagCborError::Trailing)),
        ];
        for (block, expected) in cases {
            let error = links(block).unwrap_err();
            assert!(expected(&error), "{block:?}: {error}");
        }
    }

    /// A dag-cbor root linking to a raw block and to another dag-cbor node (which links to a
    /// second raw block, and to the first again): its CAR holds all four blocks, each once.
    #[test]
    fn car_export_walks_dag_cbor_links() {
        use std::path::Path;

        use futures::executor::block_on;
        use ipfs_blockstore::{Blockstore, MemoryBlockstore};

        use crate::{car, dag::DAG_CBOR, unixfs::v1_block};

        let raw = |data: &'static [u8]| v1_block(0x55, bytes::Bytes::from_static(data)).unwrap();
        let (first, second) = (raw(b"first raw leaf"), raw(b"second raw leaf"));
        // [CID-second, {"again": CID-first}]
        let mut inner = vec![0x82];
        link(&mut inner, second.cid());
        inner.extend([0xa1, 0x65]);
        inner.extend(b"again");
        link(&mut inner, first.cid());
        let inner = v1_block(DAG_CBOR, inner.into()).unwrap();
        // {"leaf": CID-first, "next": CID-inner}
        let mut root = vec![0xa2, 0x64];
        root.extend(b"leaf");
        link(&mut root, first.cid());
        root.push(0x64);
        root.extend(b"next");
        link(&mut root, inner.cid());
        let root = v1_block(DAG_CBOR, root.into()).unwrap();
        let blocks = [&root, &first, &inner, &second];
        let store = MemoryBlockstore::new();
        block_on(async {
            store
                .put_many(blocks.iter().map(|b| (*b).clone()).collect())
                .await
                .unwrap();
            let mut file = Vec::new();
            let path = Path::new("<memory>");
            let stats = car::export(&store, &[*root.cid()], &mut file, path)
                .await
                .unwrap();
            assert_eq!(stats.blocks, 4);
            let other = MemoryBlockstore::new();
            let imported = car::import(&other, &file[..], path).await.unwrap();
            assert_eq!((imported.roots, imported.blocks), (vec![*root.cid()], 4));
            for block in blocks {
                assert_eq!(other.get(block.cid()).await.unwrap().as_ref(), Some(block));
            }
        });
    }

    /// Every truncation of a valid block, and every value of every byte of it, decodes to
    /// links or to an error, without panicking.
    #[test]
    fn damaged_blocks_never_panic() {
        let mut block = vec![0xa2, 0x61, b'a', 0x82];
        link(&mut block, &cid(1));
        block.extend([
            0xfb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0x61, b'b', 0xc1, 0x1a, 0, 1, 0, 0,
        ]);
        assert_eq!(links(&block).unwrap(), [cid(1)]);
        for end in 0..block.len() {
            let _ = links(&block[..end]);
        }
        let mut damaged = block.clone();
        for at in 0..block.len() {
            for value in 0..=u8::MAX {
                damaged[at] = value;
                let _ = links(&damaged);
            }
            damaged[at] = block[at];
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let mut deep = vec![0x81; MAX_NESTING + 1];
        deep.push(0x00);
        assert!(matches!(links(&deep), Err(DagCborError::TooDeep)));
        // Two million nested tags are refused as fast.
        let tags = vec![0xc1; 2 << 20];
        assert!(matches!(links(&tags), Err(DagCborError::TooDeep)));
        let mut fits = vec![0x81; MAX_NESTING - 1];
        fits.push(0x00);
        assert!(links(&fits).unwrap().is_empty());
    }
}
