//! Verified blocks: a CID and bytes that hash to it, checked on construction.

use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest};

use crate::multicodec::{DAG_PB, IDENTITY, RAW, SHA2_256};

/// Largest block sent or accepted, in bytes: 2 MiB, the size the Bitswap spec makes every
/// implementation support.
pub const MAX_BLOCK_SIZE: usize = 2 * 1024 * 1024;

/// Largest digest a [`Cid`] of this crate holds, in bytes.
const MAX_DIGEST: usize = 64;

/// A block whose CID was computed from its bytes: holding one means the bytes are right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// Checks that `data` hashes to `cid` and is at most [`MAX_BLOCK_SIZE`] bytes.
    pub fn new(cid: Cid, data: Bytes) -> Result<Self, BlockError> {
        let hash = cid.hash();
        let computed = digest(hash.code(), usize::from(hash.size()), &data)?;
        if computed != *hash {
            return Err(BlockError::HashMismatch { cid });
        }
        Ok(Self { cid, data })
    }

    /// A block of bytes already known to hash to `cid`'s multihash: bytes a store verified
    /// against it when they were put, and read back intact (a checksum written with them
    /// matches). Not for bytes from anywhere else.
    pub(crate) fn from_verified(cid: Cid, data: Bytes) -> Self {
        Self { cid, data }
    }

    /// Builds a block from a wire prefix (CID version, codec, multihash code and length) and
    /// its data, computing the CID.
    pub fn from_prefix(prefix: &[u8], data: Bytes) -> Result<Self, BlockError> {
        let prefix = Prefix::decode(prefix)?;
        let hash = digest(prefix.hash_code, prefix.hash_len, &data)?;
        let cid = if prefix.version == 0 {
            Cid::new_v0(hash).map_err(BlockError::Cid)?
        } else {
            Cid::new_v1(prefix.codec, hash)
        };
        Ok(Self { cid, data })
    }

    /// Builds a CIDv0 block (sha2-256, dag-pb) from its data: the 1.0.0 `blocks` field, and
    /// the `Qm...` CIDs of kubo's UnixFS files before CIDv1. The bytes are not checked to be a
    /// dag-pb node, as with [`dag_pb`](Self::dag_pb).
    ///
    /// ```
    /// # use ipfs_blockstore::Block;
    /// let block = Block::from_v0_data(bytes::Bytes::from_static(b"hello"))?;
    /// assert_eq!(block.cid().version(), cid::Version::V0);
    /// assert!(block.cid().to_string().starts_with("Qm"));
    /// # Ok::<_, ipfs_blockstore::BlockError>(())
    /// ```
    pub fn from_v0_data(data: Bytes) -> Result<Self, BlockError> {
        let hash = digest(SHA2_256, 32, &data)?;
        let cid = Cid::new_v0(hash).map_err(BlockError::Cid)?;
        Ok(Self { cid, data })
    }

    /// Builds a CIDv1 raw block hashed with sha2-256: bytes that are their own content, with
    /// no links (a file's leaves in kubo's `--raw-leaves` layout, or any opaque bytes). The
    /// `bafkrei...` CIDs.
    ///
    /// ```
    /// # use ipfs_blockstore::{Block, multicodec};
    /// let block = Block::raw("hello")?;
    /// assert_eq!(block.cid().codec(), multicodec::RAW);
    /// assert_eq!(block.cid().hash().code(), multicodec::SHA2_256);
    /// assert!(block.cid().to_string().starts_with("bafkrei"));
    /// # Ok::<_, ipfs_blockstore::BlockError>(())
    /// ```
    pub fn raw(data: impl Into<Bytes>) -> Result<Self, BlockError> {
        Self::with_codec(RAW, SHA2_256, data)
    }

    /// Builds a CIDv1 dag-pb block hashed with sha2-256: a UnixFS node (a directory, or a
    /// file's root with links to its chunks). The bytes are not checked to be a valid dag-pb
    /// node: the CID only says how to read them, and a block is valid whatever its codec.
    ///
    /// ```
    /// # use ipfs_blockstore::{Block, multicodec};
    /// // An empty dag-pb node: no links and no data.
    /// let block = Block::dag_pb(&b""[..])?;
    /// assert_eq!(block.cid().codec(), multicodec::DAG_PB);
    /// assert!(block.cid().to_string().starts_with("bafybei"));
    /// // The same bytes as CIDv0 share the multihash, and so the stored block.
    /// let v0 = Block::from_v0_data(block.data().clone())?;
    /// assert_eq!(v0.cid().hash(), block.cid().hash());
    /// # Ok::<_, ipfs_blockstore::BlockError>(())
    /// ```
    pub fn dag_pb(data: impl Into<Bytes>) -> Result<Self, BlockError> {
        Self::with_codec(DAG_PB, SHA2_256, data)
    }

    /// Builds a CIDv1 block of `codec` hashed with the multihash `hash` (its full digest):
    /// for codecs and hashes other than those of [`raw`](Self::raw) and
    /// [`dag_pb`](Self::dag_pb). Both are multicodec codes ([`multicodec`](crate::multicodec)
    /// names the common ones).
    ///
    /// # Errors
    ///
    /// [`BlockError::UnsupportedHash`] for a hash this build does not compute (see
    /// [`can_verify`]), [`BlockError::TooLarge`] beyond [`MAX_BLOCK_SIZE`], and
    /// [`BlockError::IdentityTooLong`] for an identity "hash" of more than 64 bytes.
    ///
    /// ```
    /// # use ipfs_blockstore::{Block, BlockError, multicodec};
    /// const DAG_CBOR: u64 = 0x71;
    /// const BLAKE3: u64 = 0x1e;
    /// let block = Block::with_codec(DAG_CBOR, BLAKE3, vec![0xa0])?; // the empty CBOR map
    /// assert_eq!((block.cid().codec(), block.cid().hash().code()), (DAG_CBOR, BLAKE3));
    /// assert!(matches!(
    ///     Block::with_codec(multicodec::RAW, 0x9999, "x"),
    ///     Err(BlockError::UnsupportedHash(0x9999))
    /// ));
    /// # Ok::<_, BlockError>(())
    /// ```
    pub fn with_codec(codec: u64, hash: u64, data: impl Into<Bytes>) -> Result<Self, BlockError> {
        let data = data.into();
        let len = if hash == IDENTITY {
            data.len()
        } else {
            let code = Code::try_from(hash).map_err(|_| BlockError::UnsupportedHash(hash))?;
            // Every digest of a code has the same length: the empty input's tells it cheaply.
            usize::from(code.digest(&[]).size())
        };
        let hash = digest(hash, len, &data)?;
        Ok(Self {
            cid: Cid::new_v1(codec, hash),
            data,
        })
    }

    /// The block's CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Splits the block into CID and bytes.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }

    /// The prefix of the block's CID: its version, codec, multihash code and digest length,
    /// each an unsigned varint, as Bitswap 1.1.0 sends it beside the bytes. Read back by
    /// [`from_prefix`](Self::from_prefix).
    pub fn prefix(&self) -> Vec<u8> {
        Prefix {
            version: u64::from(self.cid.version()),
            codec: self.cid.codec(),
            hash_code: self.cid.hash().code(),
            hash_len: usize::from(self.cid.hash().size()),
        }
        .encode()
    }
}

/// Whether this build can hash with the multihash `code`, and so verify a block under it:
/// identity, sha2-256/512 and blake3 always, the families of the enabled features (`sha3`,
/// `blake2b`, ...) besides.
pub fn can_verify(code: u64) -> bool {
    code == IDENTITY || Code::try_from(code).is_ok()
}

/// Computes the multihash of `data` with `code`, truncated to `len` bytes.
fn digest(code: u64, len: usize, data: &[u8]) -> Result<Multihash<MAX_DIGEST>, BlockError> {
    if data.len() > MAX_BLOCK_SIZE {
        return Err(BlockError::TooLarge { size: data.len() });
    }
    if code == IDENTITY {
        if len != data.len() {
            return Err(BlockError::BadPrefix(
                "identity length differs from the data",
            ));
        }
        return Multihash::wrap(IDENTITY, data).map_err(|_| BlockError::IdentityTooLong);
    }
    let full = Code::try_from(code)
        .map_err(|_| BlockError::UnsupportedHash(code))?
        .digest(data);
    if len > usize::from(full.size()) {
        return Err(BlockError::BadPrefix("hash length exceeds the digest"));
    }
    Multihash::wrap(code, &full.digest()[..len]).map_err(|_| BlockError::BadPrefix("hash"))
}

/// The CID of a block without its digest, as the wire sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    version: u64,
    codec: u64,
    hash_code: u64,
    hash_len: usize,
}

impl Prefix {
    fn decode(mut bytes: &[u8]) -> Result<Self, BlockError> {
        let mut next = || -> Result<u64, BlockError> {
            let (value, rest) =
                unsigned_varint::decode::u64(bytes).map_err(|_| BlockError::BadPrefix("varint"))?;
            bytes = rest;
            Ok(value)
        };
        let prefix = Self {
            version: next()?,
            codec: next()?,
            hash_code: next()?,
            hash_len: usize::try_from(next()?).map_err(|_| BlockError::BadPrefix("length"))?,
        };
        match prefix.version {
            0 if prefix.codec != DAG_PB
                || prefix.hash_code != SHA2_256
                || prefix.hash_len != 32 =>
            {
                Err(BlockError::BadPrefix("CIDv0 is dag-pb and sha2-256 only"))
            }
            0 | 1 => Ok(prefix),
            _ => Err(BlockError::BadPrefix("unknown CID version")),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        let mut buf = unsigned_varint::encode::u64_buffer();
        for value in [
            self.version,
            self.codec,
            self.hash_code,
            self.hash_len as u64,
        ] {
            out.extend_from_slice(unsigned_varint::encode::u64(value, &mut buf));
        }
        out
    }
}

/// Why block bytes were refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The block is larger than [`MAX_BLOCK_SIZE`].
    #[error("block of {size} bytes exceeds the 2 MiB limit")]
    TooLarge {
        /// Its size in bytes.
        size: usize,
    },
    /// The bytes do not hash to the CID.
    #[error("block bytes do not match {cid}")]
    HashMismatch {
        /// The CID claimed.
        cid: Cid,
    },
    /// No hasher for this multihash code.
    #[error("unsupported multihash code {0:#x}")]
    UnsupportedHash(u64),
    /// An identity CID longer than a CID may hold.
    #[error("identity block longer than 64 bytes")]
    IdentityTooLong,
    /// The CID prefix is malformed.
    #[error("malformed CID prefix: {0}")]
    BadPrefix(&'static str),
    /// The CID could not be built.
    #[error("invalid CID: {0}")]
    Cid(#[source] cid::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid_of(code: Code, codec: u64, data: &[u8]) -> Cid {
        Cid::new_v1(codec, code.digest(data))
    }

    #[test]
    fn blocks_are_checked_against_their_cid() {
        let data = Bytes::from_static(b"block");
        let cid = cid_of(Code::Sha2_256, RAW, &data);
        assert_eq!(Block::new(cid, data.clone()).expect("valid").cid(), &cid);
        assert!(matches!(
            Block::new(cid, Bytes::from_static(b"other")),
            Err(BlockError::HashMismatch { .. })
        ));
        let blake = cid_of(Code::Blake3_256, 0x71, &data);
        assert!(Block::new(blake, data).is_ok());
    }

    #[test]
    fn constructors_make_the_cids_they_name() {
        let data = Bytes::from_static(b"constructed");
        let raw = Block::raw(data.clone()).expect("raw");
        assert_eq!(raw.cid(), &cid_of(Code::Sha2_256, RAW, &data));
        let dag_pb = Block::dag_pb(data.clone()).expect("dag-pb");
        assert_eq!(dag_pb.cid(), &cid_of(Code::Sha2_256, DAG_PB, &data));
        let blake = Block::with_codec(0x71, 0x1e, data.clone()).expect("blake3");
        assert_eq!(blake.cid(), &cid_of(Code::Blake3_256, 0x71, &data));
        let identity = Block::with_codec(RAW, IDENTITY, data.clone()).expect("identity");
        assert_eq!(identity.cid().hash().digest(), &data[..]);
        // Each is what `Block::new` accepts for its CID.
        for block in [raw, dag_pb, blake, identity] {
            assert_eq!(
                Block::new(*block.cid(), data.clone()).expect("valid"),
                block
            );
        }
        let big = Bytes::from(vec![0u8; MAX_BLOCK_SIZE + 1]);
        assert!(matches!(Block::raw(big), Err(BlockError::TooLarge { .. })));
        assert!(matches!(
            Block::with_codec(RAW, IDENTITY, vec![0u8; 65]),
            Err(BlockError::IdentityTooLong)
        ));
    }

    #[test]
    fn blocks_over_2_mib_are_refused() {
        let big = Bytes::from(vec![0u8; MAX_BLOCK_SIZE + 1]);
        let cid = cid_of(Code::Sha2_256, RAW, &big);
        assert!(matches!(
            Block::new(cid, big.clone()),
            Err(BlockError::TooLarge { size }) if size == MAX_BLOCK_SIZE + 1
        ));
        assert!(matches!(
            Block::from_v0_data(big),
            Err(BlockError::TooLarge { .. })
        ));
        let exact = Bytes::from(vec![0u8; MAX_BLOCK_SIZE]);
        assert!(Block::from_v0_data(exact).is_ok());
    }

    #[test]
    fn prefixes_round_trip_and_rebuild_the_cid() {
        for block in [
            Block::from_v0_data(Bytes::from_static(b"v0")).expect("valid"),
            Block::new(
                cid_of(Code::Sha2_256, RAW, b"v1"),
                Bytes::from_static(b"v1"),
            )
            .expect("valid"),
            Block::new(
                cid_of(Code::Blake3_256, 0x71, b"b3"),
                Bytes::from_static(b"b3"),
            )
            .expect("valid"),
        ] {
            let rebuilt = Block::from_prefix(&block.prefix(), block.data().clone()).expect("ok");
            assert_eq!(rebuilt, block);
        }
    }

    #[test]
    fn identity_and_truncated_hashes() {
        let data = Bytes::from_static(b"tiny");
        let identity = Cid::new_v1(RAW, Multihash::wrap(IDENTITY, &data).expect("short"));
        assert!(Block::new(identity, data.clone()).is_ok());
        // sha2-256 truncated to 20 bytes.
        let full = Code::Sha2_256.digest(&data);
        let short = Cid::new_v1(
            RAW,
            Multihash::wrap(SHA2_256, &full.digest()[..20]).expect("ok"),
        );
        let block = Block::new(short, data.clone()).expect("truncated hashes verify");
        assert_eq!(
            Block::from_prefix(&block.prefix(), data).expect("ok"),
            block
        );
    }

    #[test]
    fn malformed_prefixes_are_typed_errors() {
        let data = Bytes::from_static(b"x");
        for prefix in [
            &[][..],
            &[1, 0x55, 0x12][..],
            &[2, 0x55, 0x12, 32][..],
            &[0, 0x55, 0x12, 32][..],
            &[1, 0x55, 0x12, 33][..],
            &[1, 0x55, 0x00, 5][..],
            &[
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ][..],
        ] {
            let err = Block::from_prefix(prefix, data.clone()).expect_err("malformed");
            assert!(matches!(err, BlockError::BadPrefix(_)), "{prefix:?}: {err}");
        }
    }

    #[cfg(feature = "sha3")]
    #[test]
    fn sha3_blocks_verify_with_the_feature() {
        let data = Bytes::from_static(b"sha3 block");
        let cid = Cid::new_v1(RAW, Code::Sha3_256.digest(&data));
        let block = Block::new(cid, data.clone()).expect("sha3-256 verifies");
        let rebuilt = Block::from_prefix(&block.prefix(), data).expect("from its prefix");
        assert_eq!(rebuilt.cid(), &cid);
        assert!(Block::new(cid, Bytes::from_static(b"other")).is_err());
    }
}
