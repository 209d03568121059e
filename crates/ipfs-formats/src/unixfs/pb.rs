//! The two protobuf layers of a UnixFS node: the dag-pb envelope ([`DagPbNode`]) and the UnixFS
//! `Data` message inside it ([`UnixfsData`]).
//!
//! Specs: <https://ipld.io/specs/codecs/dag-pb/spec/> and
//! <https://github.com/ipfs/specs/blob/main/UNIXFS.md>.
//!
//! Decoding the envelope is a loop over its fields, each link decoded by prost as it is met;
//! the UnixFS message goes through prost whole. Encoding the envelope is written out by hand: dag-pb's canonical
//! form puts every `Links` entry (field 2) before `Data` (field 1), while prost writes fields in
//! tag order, and the CIDs must match kubo's byte for byte.

use bytes::Bytes;
use cid::Cid;
use prost::Message as _;

/// dag-pb's `PBLink` as prost decodes it.
#[derive(Clone, PartialEq, prost::Message)]
struct PbLink {
    /// The child's CID, in binary.
    #[prost(bytes = "vec", optional, tag = "1")]
    hash: Option<Vec<u8>>,
    /// The link's name: empty in files, the entry name in directories.
    #[prost(string, optional, tag = "2")]
    name: Option<String>,
    /// The cumulative size of the child's DAG.
    #[prost(uint64, optional, tag = "3")]
    tsize: Option<u64>,
}

/// The kind of a UnixFS node (`Data.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum DataType {
    /// Bytes only (the old leaf format).
    Raw = 0,
    /// A directory: its links are the entries.
    Directory = 1,
    /// A file, or a part of one.
    File = 2,
    /// Metadata (unused by kubo's importer).
    Metadata = 3,
    /// A symbolic link: `Data` is the target.
    Symlink = 4,
    /// A directory sharded as a HAMT.
    HamtShard = 5,
}

/// The UnixFS `Data` message carried in a dag-pb node's `Data`.
///
/// `mode` and `mtime` (fields 7 and 8, UnixFS 1.5) are not kept here: decoding skips them, and
/// [`Metadata`](super::Metadata) reads and writes them from and to the same bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UnixfsData {
    /// The node's kind, a [`DataType`].
    #[prost(enumeration = "DataType", required, tag = "1")]
    pub r#type: i32,
    /// File bytes held by the node itself (or a symlink's target).
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub data: Option<Bytes>,
    /// The number of file bytes under the node, its own included.
    #[prost(uint64, optional, tag = "3")]
    pub filesize: Option<u64>,
    /// The number of file bytes under each link, in link order.
    #[prost(uint64, repeated, packed = "false", tag = "4")]
    pub blocksizes: Vec<u64>,
    /// The hash function of a HAMT shard.
    #[prost(uint64, optional, tag = "5")]
    pub hash_type: Option<u64>,
    /// The fanout of a HAMT shard.
    #[prost(uint64, optional, tag = "6")]
    pub fanout: Option<u64>,
}

impl UnixfsData {
    /// A file node, as kubo's importer writes one: `data` only when not empty, `filesize`
    /// always.
    pub fn file(data: Bytes, blocksizes: Vec<u64>) -> Self {
        // Sizes of files read from this machine: saturating rather than wrapping is enough.
        let filesize = blocksizes
            .iter()
            .fold(data.len() as u64, |sum, size| sum.saturating_add(*size));
        Self {
            r#type: DataType::File as i32,
            data: (!data.is_empty()).then_some(data),
            filesize: Some(filesize),
            blocksizes,
            hash_type: None,
            fanout: None,
        }
    }

    /// A basic (unsharded) directory node.
    pub fn directory() -> Self {
        Self {
            r#type: DataType::Directory as i32,
            data: None,
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
        }
    }

    /// A symbolic link to `target`.
    pub fn symlink(target: Bytes) -> Self {
        Self {
            r#type: DataType::Symlink as i32,
            data: Some(target),
            filesize: None,
            blocksizes: Vec::new(),
            hash_type: None,
            fanout: None,
        }
    }

    /// The node's kind, or an error for an unknown one.
    pub fn kind(&self) -> Result<DataType, DecodeError> {
        DataType::try_from(self.r#type).map_err(|_| DecodeError::UnknownType(self.r#type))
    }

    /// Decodes the UnixFS message of a dag-pb node.
    pub fn decode_from(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode(bytes).map_err(DecodeError::Unixfs)
    }

    /// [`decode_from`](Self::decode_from) without copying: `data` shares `bytes`.
    pub fn decode_bytes(bytes: &Bytes) -> Result<Self, DecodeError> {
        Self::decode(bytes.clone()).map_err(DecodeError::Unixfs)
    }
}

/// A link of a dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The child.
    pub cid: Cid,
    /// The entry name (empty inside files).
    pub name: String,
    /// The cumulative size of the child's DAG: its block and every block below it.
    pub tsize: u64,
}

/// A dag-pb node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DagPbNode {
    /// The links, in order.
    pub links: Vec<Link>,
    /// The payload, if any.
    pub data: Option<Bytes>,
}

impl DagPbNode {
    /// The canonical encoding: every link (hash, name, tsize, all present) and then the data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.data.as_ref().map_or(0, |d| d.len() + 8) + self.links.len() * 48,
        );
        for link in &self.links {
            let link = PbLink {
                hash: Some(link.cid.to_bytes()),
                name: Some(link.name.clone()),
                tsize: Some(link.tsize),
            };
            put_field(&mut out, 2, &link.encode_to_vec());
        }
        if let Some(data) = &self.data {
            put_field(&mut out, 1, data);
        }
        out
    }

    /// Decodes a dag-pb block.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_bytes(&Bytes::copy_from_slice(bytes))
    }

    /// [`decode`](Self::decode) without copying: `data` shares `bytes`.
    ///
    /// Each link is decoded and checked as it is met, so the memory taken is the links kept
    /// (a valid link is at least 8 bytes on the wire), never a list of empty ones first: a
    /// 2 MiB block of empty link fields would otherwise decode to 64 MiB before the first
    /// missing hash is seen. Fields other than `Data` and `Links` are skipped, as prost does.
    pub fn decode_bytes(bytes: &Bytes) -> Result<Self, DecodeError> {
        let mut node = Self::default();
        let mut rest: &[u8] = bytes;
        while !rest.is_empty() {
            let key = take_varint(&mut rest)?;
            let (field, wire_type) = (key >> 3, key & 7);
            match wire_type {
                // Varint.
                0 => {
                    take_varint(&mut rest)?;
                }
                // 64-bit.
                1 => {
                    take(&mut rest, 8)?;
                }
                // Length-delimited.
                2 => {
                    let len = take_varint(&mut rest)?;
                    let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
                    let offset = bytes.len() - rest.len();
                    let value = take(&mut rest, len)?;
                    match field {
                        1 => node.data = Some(bytes.slice(offset..offset + len)),
                        2 => node.links.push(Link::from_pb(
                            PbLink::decode(value).map_err(DecodeError::DagPb)?,
                        )?),
                        _ => {}
                    }
                }
                // 32-bit.
                5 => {
                    take(&mut rest, 4)?;
                }
                other => return Err(DecodeError::WireType(other)),
            }
        }
        Ok(node)
    }
}

impl Link {
    fn from_pb(link: PbLink) -> Result<Self, DecodeError> {
        let hash = link.hash.ok_or(DecodeError::LinkWithoutHash)?;
        let cid = Cid::try_from(hash.as_slice()).map_err(DecodeError::Cid)?;
        Ok(Self {
            cid,
            name: link.name.unwrap_or_default(),
            tsize: link.tsize.unwrap_or(0),
        })
    }
}

/// Reads a protobuf varint (at most 10 bytes) off the front of `rest`.
fn take_varint(rest: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for (i, &byte) in rest.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *rest = &rest[i + 1..];
            return Ok(value);
        }
    }
    Err(DecodeError::Truncated)
}

/// Takes `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], DecodeError> {
    if rest.len() < n {
        return Err(DecodeError::Truncated);
    }
    let (value, after) = rest.split_at(n);
    *rest = after;
    Ok(value)
}

/// Writes a length-delimited protobuf field.
fn put_field(out: &mut Vec<u8>, tag: u64, value: &[u8]) {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.extend_from_slice(unsigned_varint::encode::u64(tag << 3 | 2, &mut buf));
    out.extend_from_slice(unsigned_varint::encode::u64(value.len() as u64, &mut buf));
    out.extend_from_slice(value);
}

/// Why a block is not a valid dag-pb or UnixFS node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The dag-pb envelope does not decode.
    #[error("malformed dag-pb node: {0}")]
    DagPb(#[source] prost::DecodeError),
    /// The UnixFS message does not decode.
    #[error("malformed UnixFS data: {0}")]
    Unixfs(#[source] prost::DecodeError),
    /// A link has no hash.
    #[error("dag-pb link without a hash")]
    LinkWithoutHash,
    /// A link's hash is not a CID.
    #[error("dag-pb link with an invalid CID: {0}")]
    Cid(#[source] cid::Error),
    /// The UnixFS type is not one the spec defines.
    #[error("unknown UnixFS type {0}")]
    UnknownType(i32),
    /// A dag-pb node without UnixFS data.
    #[error("dag-pb node without UnixFS data")]
    NoData,
    /// A dag-pb field or varint runs past the end of the block.
    #[error("malformed dag-pb node: truncated field")]
    Truncated,
    /// A dag-pb field of a wire type protobuf does not define (or a deprecated group).
    #[error("malformed dag-pb node: wire type {0}")]
    WireType(u64),
    /// The UnixFS 1.5 mode or mtime is malformed (boxed: every error of an export carries a
    /// `DecodeError`, and this one is rare).
    #[error(transparent)]
    Metadata(Box<super::MetadataError>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_node_is_kubos() {
        let data = UnixfsData::file(Bytes::new(), Vec::new()).encode_to_vec();
        assert_eq!(data, [0x08, 0x02, 0x18, 0x00]);
        let node = DagPbNode {
            links: Vec::new(),
            data: Some(data.into()),
        };
        assert_eq!(node.encode(), [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00]);
    }

    #[test]
    fn links_come_before_data_and_round_trip() {
        let cid: Cid = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
            .parse()
            .unwrap();
        let node = DagPbNode {
            links: vec![Link {
                cid,
                name: String::new(),
                tsize: 6,
            }],
            data: Some(
                UnixfsData::file(Bytes::new(), vec![0])
                    .encode_to_vec()
                    .into(),
            ),
        };
        let bytes = node.encode();
        // Field 2 (links) first, with an empty name written out.
        assert_eq!(bytes[0], 0x12);
        assert_eq!(&bytes[2..4], [0x0a, 0x22]);
        assert_eq!(&bytes[38..42], [0x12, 0x00, 0x18, 0x06]);
        assert_eq!(bytes[42], 0x0a);
        assert_eq!(DagPbNode::decode(&bytes).unwrap(), node);
    }

    #[test]
    fn blocksizes_are_not_packed() {
        let data = UnixfsData::file(Bytes::new(), vec![1, 2]).encode_to_vec();
        assert_eq!(data, [0x08, 0x02, 0x18, 0x03, 0x20, 0x01, 0x20, 0x02]);
    }

    #[test]
    fn malformed_envelopes_are_typed_errors() {
        // A link without a hash: refused at the first one.
        let empty_links = Bytes::from([0x12, 0x00].repeat(1 << 20));
        assert!(matches!(
            DagPbNode::decode_bytes(&empty_links),
            Err(DecodeError::LinkWithoutHash)
        ));
        // Data longer than the block, a varint that never ends, a group.
        for bytes in [&[0x0a, 0x05, 1][..], &[0x0a, 0xff, 0xff], &[0x0b]] {
            let error = DagPbNode::decode(bytes).unwrap_err();
            assert!(
                matches!(error, DecodeError::Truncated | DecodeError::WireType(_)),
                "{bytes:?}: {error}"
            );
        }
        // A length of 2^64 - 1.
        let mut huge = vec![0x0a];
        huge.extend([0xff; 9]);
        huge.push(0x01);
        assert!(matches!(
            DagPbNode::decode(&huge),
            Err(DecodeError::Truncated)
        ));
        // Unknown fields are skipped, as prost does.
        let node = DagPbNode::decode(&[0x18, 0x05, 0x0a, 0x01, 0x07]).unwrap();
        assert_eq!(node.data.as_deref(), Some(&[0x07][..]));
    }

    #[test]
    fn directory_data() {
        assert_eq!(UnixfsData::directory().encode_to_vec(), [0x08, 0x01]);
    }
}
