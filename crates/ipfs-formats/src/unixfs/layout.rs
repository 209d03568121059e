//! [`Layout`]: how a file becomes blocks, and [`FileBuilder`]: kubo's balanced DAG, built while
//! the chunks stream in.

use bytes::Bytes;
use cid::Cid;
use ipfs_blockstore::{
    Block, BlockError, config_getters, config_setters,
    multicodec::{BLAKE2B_256, DAG_PB, RAW, SHA2_256, SHA3_256},
};
use prost::Message as _;

use super::{
    metadata::{DEFAULT_FILE_MODE, Metadata},
    pb::{DagPbNode, Link, UnixfsData},
};

/// kubo's default chunk size: 256 KiB.
pub const DEFAULT_CHUNK_SIZE_BYTES: usize = 256 * 1024;
/// kubo's default number of links per node of the balanced layout.
pub const DEFAULT_MAX_LINKS: usize = 174;
/// The largest chunk accepted, kubo's limit too: 1 MiB.
pub const MAX_CHUNK_SIZE_BYTES: usize = 1024 * 1024;
/// The most links per file node accepted (keeps a node well under the 2 MiB block limit).
pub const MAX_LINKS: usize = 8192;

/// The version of the CIDs an import writes (raw leaves are CIDv1 whatever it says).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CidVersion {
    /// CIDv0: `Qm...`, dag-pb and sha2-256 only.
    V0,
    /// CIDv1.
    V1,
}

/// The hash function of the CIDs an import writes: kubo's `--hash` choices that this build
/// verifies too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashFunction {
    /// sha2-256 (multihash 0x12): kubo's default, the only one of CIDv0.
    #[default]
    Sha2_256,
    /// blake2b-256 (multihash 0xb220).
    Blake2b256,
    /// sha3-256 (multihash 0x16).
    Sha3_256,
}

impl HashFunction {
    /// Every choice, in kubo's names' order of [`name`](Self::name).
    pub const ALL: [Self; 3] = [Self::Sha2_256, Self::Blake2b256, Self::Sha3_256];

    /// The multihash code.
    pub fn code(self) -> u64 {
        match self {
            Self::Sha2_256 => SHA2_256,
            Self::Blake2b256 => BLAKE2B_256,
            Self::Sha3_256 => SHA3_256,
        }
    }

    /// kubo's name for it (`--hash NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha2_256 => "sha2-256",
            Self::Blake2b256 => "blake2b-256",
            Self::Sha3_256 => "sha3-256",
        }
    }

    /// The choice kubo calls `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|hash| hash.name() == name)
    }

    /// The digest's length in bytes: 32 for each.
    pub fn digest_len(self) -> u8 {
        32
    }
}

/// How files are cut into blocks and linked: chunk size, links per node, CID version, hash
/// function and leaf format.
///
/// [`Layout::default`] is kubo's `ipfs add` (CIDv0, dag-pb leaves, 256 KiB chunks, 174 links);
/// [`Layout::v1_raw_leaves`] is `ipfs add --cid-version 1 --raw-leaves`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    cid_version: CidVersion,
    hash: HashFunction,
    raw_leaves: bool,
    chunk_size: usize,
    max_links: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            cid_version: CidVersion::V0,
            hash: HashFunction::Sha2_256,
            raw_leaves: false,
            chunk_size: DEFAULT_CHUNK_SIZE_BYTES,
            max_links: DEFAULT_MAX_LINKS,
        }
    }
}

impl Layout {
    /// kubo's `--cid-version 1 --raw-leaves`: CIDv1 dag-pb nodes over raw leaves.
    pub fn v1_raw_leaves() -> Self {
        Self::default()
            .with_cid_version(CidVersion::V1)
            .with_raw_leaves(true)
    }

    config_setters! {
        /// Sets the CID version of dag-pb nodes. Default: [`CidVersion::V0`].
        with_cid_version(version: CidVersion) -> cid_version;

        /// Sets the hash function of every CID. CIDv0 is sha2-256 only: with another one, the
        /// dag-pb nodes are CIDv1 whatever [`with_cid_version`](Self::with_cid_version) says (as
        /// kubo's `--hash` without `--cid-version`). Default: [`HashFunction::Sha2_256`].
        with_hash(hash: HashFunction) -> hash;

        /// Whether leaves are raw blocks (CIDv1, codec raw) instead of UnixFS file nodes.
        /// Default: false.
        with_raw_leaves(raw: bool) -> raw_leaves;
    }

    /// Sets the chunk size in bytes, 1 to [`MAX_CHUNK_SIZE_BYTES`]. Default: 256 KiB.
    pub fn with_chunk_size(mut self, bytes: usize) -> Result<Self, LayoutError> {
        if bytes == 0 || bytes > MAX_CHUNK_SIZE_BYTES {
            return Err(LayoutError::ChunkSize(bytes));
        }
        self.chunk_size = bytes;
        Ok(self)
    }

    /// Sets the most links of a file node, 2 to [`MAX_LINKS`]. Default: 174.
    pub fn with_max_links(mut self, links: usize) -> Result<Self, LayoutError> {
        if !(2..=MAX_LINKS).contains(&links) {
            return Err(LayoutError::MaxLinks(links));
        }
        self.max_links = links;
        Ok(self)
    }

    /// The CID version of dag-pb nodes: V1 with a hash other than sha2-256.
    pub fn cid_version(&self) -> CidVersion {
        if self.hash == HashFunction::Sha2_256 {
            self.cid_version
        } else {
            CidVersion::V1
        }
    }

    config_getters! {
        /// The hash function of every CID.
        hash: HashFunction;

        /// Whether leaves are raw blocks.
        raw_leaves: bool;

        /// The chunk size in bytes.
        chunk_size: usize;

        /// The most links of a file node.
        max_links: usize;
    }

    /// A dag-pb block of `node`, with this layout's CID version.
    pub fn dag_pb_block(&self, node: &DagPbNode) -> Result<Block, BlockError> {
        let data = Bytes::from(node.encode());
        match self.cid_version() {
            CidVersion::V0 => Block::from_v0_data(data),
            CidVersion::V1 => v1_block_with(DAG_PB, self.hash, data),
        }
    }

    /// The leaf of one chunk, and the chunk's length.
    fn leaf(&self, chunk: Bytes) -> Result<(Block, u64), BlockError> {
        let len = chunk.len() as u64;
        let block = if self.raw_leaves {
            v1_block_with(RAW, self.hash, chunk)?
        } else {
            let data = UnixfsData::file(chunk, Vec::new()).encode_to_vec();
            self.dag_pb_block(&DagPbNode {
                links: Vec::new(),
                data: Some(data.into()),
            })?
        };
        Ok((block, len))
    }
}

/// A CIDv1 sha2-256 block of `codec`.
pub fn v1_block(codec: u64, data: Bytes) -> Result<Block, BlockError> {
    v1_block_with(codec, HashFunction::Sha2_256, data)
}

/// A CIDv1 block of `codec` hashed with `hash`. Fails if this build of `ipfs-blockstore`
/// does not compute `hash` (its features `blake2b` and `sha3`).
pub fn v1_block_with(codec: u64, hash: HashFunction, data: Bytes) -> Result<Block, BlockError> {
    let mut prefix = Vec::with_capacity(8);
    let mut buf = unsigned_varint::encode::u64_buffer();
    for value in [1, codec, hash.code(), u64::from(hash.digest_len())] {
        prefix.extend_from_slice(unsigned_varint::encode::u64(value, &mut buf));
    }
    Block::from_prefix(&prefix, data)
}

/// Why a [`Layout`] setting was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// The chunk size is out of range.
    #[error("chunk size {0} is not between 1 and {MAX_CHUNK_SIZE_BYTES} bytes")]
    ChunkSize(usize),
    /// The number of links is out of range.
    #[error("max links {0} is not between 2 and {MAX_LINKS}")]
    MaxLinks(usize),
}

/// A node already built, as its parent links to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Child {
    /// Its CID.
    pub cid: Cid,
    /// The cumulative size of its DAG (dag-pb `Tsize`).
    pub tsize: u64,
    /// The file bytes under it (UnixFS `blocksizes` entry).
    pub filesize: u64,
}

/// Builds kubo's balanced file DAG one chunk at a time, handing out each block as soon as it is
/// final, so that a file of any size needs memory for one chunk and one open node per level.
///
/// The shape is that of boxo's `balanced.Layout`: the first leaf is the root until a second
/// one comes; then the root is the smallest full-left tree of `max_links`-ary nodes over the
/// leaves, in which a node at depth `d` above the leaves holds up to `max_links` subtrees of
/// depth `d - 1` (the last one possibly partial, never shortened).
///
/// With [metadata](FileBuilder::with_metadata), every file node carries it (as Helia's
/// importer writes it, whose CIDs these are then), and a file of one chunk is not its leaf but
/// a file node of the chunk's bytes and the metadata: a raw leaf has no place for metadata.
#[derive(Debug)]
pub struct FileBuilder {
    layout: Layout,
    /// `levels[d]`: the children of the open node `d + 1` levels above the leaves.
    levels: Vec<Vec<Child>>,
    leaves: u64,
    /// Written on every file node; empty for kubo's default nodes.
    metadata: Metadata,
    /// With metadata, the first leaf and its chunk, held back until a second leaf comes: a
    /// lone leaf is replaced by a node that holds the metadata.
    first: Option<(Block, Bytes)>,
}

impl FileBuilder {
    /// A builder for one file.
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            levels: vec![Vec::new()],
            leaves: 0,
            metadata: Metadata::default(),
            first: None,
        }
    }

    /// The layout the file is built with.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Writes `metadata` on the file's nodes (nothing changes for empty metadata).
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Adds the next chunk (not empty, at most the chunk size) and appends the blocks it
    /// completes to `out`: its leaf, and each node it fills.
    pub fn push(&mut self, chunk: Bytes, out: &mut Vec<Block>) -> Result<(), BlockError> {
        debug_assert!(!chunk.is_empty() && chunk.len() <= self.layout.chunk_size);
        let held = (self.leaves == 0 && !self.metadata.is_empty()).then(|| chunk.clone());
        let (leaf, filesize) = self.layout.leaf(chunk)?;
        self.leaves += 1;
        self.levels[0].push(Child {
            cid: *leaf.cid(),
            tsize: leaf.data().len() as u64,
            filesize,
        });
        if let Some((first, _)) = self.first.take() {
            out.push(first);
        }
        match held {
            Some(chunk) => self.first = Some((leaf, chunk)),
            None => out.push(leaf),
        }
        // A full node is final: it is either the root or a child of a node above it.
        let mut level = 0;
        while self.levels[level].len() == self.layout.max_links {
            let children = std::mem::take(&mut self.levels[level]);
            let node = self.node(children, out)?;
            if level + 1 == self.levels.len() {
                self.levels.push(Vec::new());
            }
            self.levels[level + 1].push(node);
            level += 1;
        }
        Ok(())
    }

    /// Closes the open nodes and returns the root, appending the blocks built to `out`. An
    /// empty file is one empty leaf.
    pub fn finish(mut self, out: &mut Vec<Block>) -> Result<Child, BlockError> {
        if self.leaves <= 1 && !self.metadata.is_empty() {
            let chunk = self
                .first
                .take()
                .map(|(_, chunk)| chunk)
                .unwrap_or_default();
            return self.lone_node(chunk, out);
        }
        if self.leaves == 0 {
            let (leaf, filesize) = self.layout.leaf(Bytes::new())?;
            let root = Child {
                cid: *leaf.cid(),
                tsize: leaf.data().len() as u64,
                filesize,
            };
            out.push(leaf);
            return Ok(root);
        }
        let depth = depth(self.leaves, self.layout.max_links as u64);
        let mut carry: Option<Child> = None;
        for level in 0..depth {
            let mut children = std::mem::take(&mut self.levels[level]);
            children.extend(carry.take());
            if !children.is_empty() {
                carry = Some(self.node(children, out)?);
            }
        }
        match carry {
            Some(root) => Ok(root),
            // The leaves filled a whole tree: its root was closed as soon as it was full.
            None => Ok(self.levels[depth][0]),
        }
    }

    /// Builds the file node over `children`.
    fn node(&self, children: Vec<Child>, out: &mut Vec<Block>) -> Result<Child, BlockError> {
        let blocksizes = children.iter().map(|c| c.filesize).collect();
        let data = UnixfsData::file(Bytes::new(), blocksizes);
        let filesize = data.filesize.unwrap_or(0);
        let below: u64 = children.iter().map(|c| c.tsize).sum();
        let mut data = data.encode_to_vec();
        self.metadata.append_to(&mut data, DEFAULT_FILE_MODE);
        let node = DagPbNode {
            links: children
                .iter()
                .map(|c| Link {
                    cid: c.cid,
                    name: String::new(),
                    tsize: c.tsize,
                })
                .collect(),
            data: Some(data.into()),
        };
        let block = self.layout.dag_pb_block(&node)?;
        let child = Child {
            cid: *block.cid(),
            tsize: block.data().len() as u64 + below,
            filesize,
        };
        out.push(block);
        Ok(child)
    }

    /// The file node of a file of one chunk (or none) with metadata: the chunk's bytes in the
    /// node itself.
    fn lone_node(&self, chunk: Bytes, out: &mut Vec<Block>) -> Result<Child, BlockError> {
        let filesize = chunk.len() as u64;
        let mut data = UnixfsData::file(chunk, Vec::new()).encode_to_vec();
        self.metadata.append_to(&mut data, DEFAULT_FILE_MODE);
        let block = self.layout.dag_pb_block(&DagPbNode {
            links: Vec::new(),
            data: Some(data.into()),
        })?;
        let child = Child {
            cid: *block.cid(),
            tsize: block.data().len() as u64,
            filesize,
        };
        out.push(block);
        Ok(child)
    }
}

/// The number of node levels above `leaves` leaves: 0 for one leaf, else the smallest `d` with
/// `max_links^d >= leaves`.
fn depth(leaves: u64, max_links: u64) -> usize {
    let mut depth = 0;
    let mut capacity = 1u64;
    while capacity < leaves {
        capacity = capacity.saturating_mul(max_links);
        depth += 1;
    }
    depth
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(layout: Layout, bytes: &[u8]) -> (Child, Vec<Block>) {
        build_with(layout, Metadata::default(), bytes)
    }

    fn build_with(layout: Layout, metadata: Metadata, bytes: &[u8]) -> (Child, Vec<Block>) {
        let mut builder = FileBuilder::new(layout).with_metadata(metadata);
        let mut out = Vec::new();
        for chunk in bytes.chunks(layout.chunk_size()) {
            builder
                .push(Bytes::copy_from_slice(chunk), &mut out)
                .unwrap();
        }
        let root = builder.finish(&mut out).unwrap();
        (root, out)
    }

    #[test]
    fn other_hashes_make_cidv1_blocks_hashed_with_them() {
        for hash in [HashFunction::Blake2b256, HashFunction::Sha3_256] {
            // CIDv0 asked for, CIDv1 given: v0 is sha2-256 only.
            let layout = Layout::default()
                .with_hash(hash)
                .with_raw_leaves(true)
                .with_chunk_size(4)
                .unwrap();
            assert_eq!(layout.cid_version(), CidVersion::V1);
            let (root, blocks) = build(layout, b"0123456789");
            assert_eq!(blocks.len(), 4);
            for block in &blocks {
                assert_eq!(block.cid().version(), cid::Version::V1);
                assert_eq!(block.cid().hash().code(), hash.code());
                assert_eq!(block.cid().hash().size(), 32);
                // The block verifies under its CID (`Block` computes the hash again).
                Block::new(*block.cid(), block.data().clone()).unwrap();
            }
            assert_eq!(root.cid.codec(), DAG_PB);
            assert_eq!(HashFunction::from_name(hash.name()), Some(hash));
        }
    }

    #[test]
    fn empty_file_has_the_well_known_cids() {
        let (root, blocks) = build(Layout::default(), b"");
        assert_eq!(
            root.cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        assert_eq!((root.tsize, root.filesize, blocks.len()), (6, 0, 1));
        let (root, _) = build(Layout::v1_raw_leaves(), b"");
        assert_eq!(
            root.cid.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
    }

    /// Checked against kubo v0.22 (`AddFile` of a file holding `a`).
    #[test]
    fn one_byte_file_is_one_leaf() {
        let (root, blocks) = build(Layout::default(), b"a");
        assert_eq!(
            root.cid.to_string(),
            "QmfDmsHTywy6L9Ne5RXsj5YumDedfBLMvCvmaxjBoe6w4d"
        );
        assert_eq!(blocks.len(), 1);
        // A raw leaf is the bytes themselves: the CIDv1 of `a` as raw.
        let (root, _) = build(Layout::v1_raw_leaves(), b"a");
        assert_eq!(
            root.cid,
            *v1_block(RAW, Bytes::from_static(b"a")).unwrap().cid()
        );
    }

    #[test]
    fn depth_is_the_smallest_that_fits() {
        assert_eq!(depth(1, 174), 0);
        assert_eq!(depth(2, 174), 1);
        assert_eq!(depth(174, 174), 1);
        assert_eq!(depth(175, 174), 2);
        assert_eq!(depth(174 * 174, 174), 2);
        assert_eq!(depth(174 * 174 + 1, 174), 3);
    }

    /// Decodes the links of a dag-pb block.
    fn links(block: &Block) -> Vec<Link> {
        DagPbNode::decode(block.data()).unwrap().links
    }

    #[test]
    fn partial_last_subtree_keeps_its_depth() {
        // Chunks of 1 byte, 3 links: 4 leaves make a root over a full node and a node with one
        // leaf (not the leaf itself), as boxo's fillNodeRec does.
        let layout = Layout::default()
            .with_chunk_size(1)
            .unwrap()
            .with_max_links(3)
            .unwrap();
        let (root, blocks) = build(layout, b"abcd");
        assert_eq!(root.filesize, 4);
        let root_block = blocks.iter().find(|b| *b.cid() == root.cid).unwrap();
        let top = links(root_block);
        assert_eq!(top.len(), 2);
        let second = blocks.iter().find(|b| *b.cid() == top[1].cid).unwrap();
        assert_eq!(links(second).len(), 1);
        // 4 leaves, 2 nodes at depth 1, the root.
        assert_eq!(blocks.len(), 7);
        let tsize: u64 = blocks.iter().map(|b| b.data().len() as u64).sum();
        assert_eq!(root.tsize, tsize);
    }

    #[test]
    fn full_tree_root_is_closed_once() {
        let layout = Layout::default()
            .with_chunk_size(1)
            .unwrap()
            .with_max_links(2)
            .unwrap();
        // 4 leaves, 2 links: exactly a full tree of depth 2.
        let (root, blocks) = build(layout, b"abcd");
        assert_eq!(blocks.len(), 7);
        assert_eq!(*blocks.last().unwrap().cid(), root.cid);
    }

    #[test]
    fn metadata_goes_on_every_file_node_and_never_on_a_leaf() {
        use super::super::metadata::Mtime;

        let metadata = Metadata {
            mode: Some(0o700),
            mtime: Some(Mtime {
                seconds: 1_600_000_000,
                nanos: 1,
            }),
        };
        let unixfs = |block: &Block| {
            let data = DagPbNode::decode(block.data()).unwrap().data.unwrap();
            (
                UnixfsData::decode_from(&data).unwrap(),
                Metadata::decode(&data).unwrap(),
            )
        };
        for raw_leaves in [true, false] {
            let layout = Layout::default()
                .with_raw_leaves(raw_leaves)
                .with_chunk_size(4)
                .unwrap()
                .with_max_links(2)
                .unwrap();
            // One chunk, or none: one file node holding the bytes and the metadata, and no
            // leaf of its own.
            for bytes in [&b"abc"[..], b""] {
                let (root, blocks) = build_with(layout, metadata, bytes);
                assert_eq!(blocks.len(), 1);
                assert_eq!((*blocks[0].cid(), root.cid.codec()), (root.cid, DAG_PB));
                assert_eq!(root.filesize, bytes.len() as u64);
                let (data, found) = unixfs(&blocks[0]);
                assert_eq!(data.data.unwrap_or_default(), bytes);
                assert_eq!(found, metadata);
            }
            // Five chunks under two links: three levels of nodes, each with the metadata; the
            // leaves are those of a file without metadata.
            let bytes = b"0123456789abcdefghij";
            let (root, blocks) = build_with(layout, metadata, bytes);
            let (plain_root, plain) = build(layout, bytes);
            assert_ne!(root.cid, plain_root.cid);
            assert_eq!((root.filesize, root.tsize), (20, total(&blocks)));
            let (leaves, nodes): (Vec<_>, Vec<_>) = blocks
                .iter()
                .partition(|block| block.cid().codec() == RAW || links(block).is_empty());
            assert_eq!((nodes.len(), leaves.len()), (6, 5));
            for node in nodes {
                assert_eq!(unixfs(node).1, metadata);
            }
            for leaf in leaves {
                assert!(plain.contains(leaf));
            }
        }
        // Empty metadata changes nothing.
        let layout = Layout::v1_raw_leaves().with_chunk_size(4).unwrap();
        for bytes in [&b""[..], b"abc", b"0123456789"] {
            assert_eq!(
                build_with(layout, Metadata::default(), bytes),
                build(layout, bytes)
            );
        }
    }

    fn total(blocks: &[Block]) -> u64 {
        blocks.iter().map(|b| b.data().len() as u64).sum()
    }

    #[test]
    fn settings_are_checked() {
        assert!(Layout::default().with_chunk_size(0).is_err());
        assert!(
            Layout::default()
                .with_chunk_size(MAX_CHUNK_SIZE_BYTES + 1)
                .is_err()
        );
        assert!(Layout::default().with_max_links(1).is_err());
        assert!(Layout::default().with_max_links(MAX_LINKS + 1).is_err());
    }
}
