//! The exporter: a DAG walk that rebuilds a file, directory or symlink from the store.
//!
//! Every block comes from [`Blockstore::get`], which returns only blocks whose bytes hash to
//! their CID; the walk also checks the UnixFS sizes (each node's `filesize` against its data
//! and `blocksizes`, each child against its parent's `blocksizes` entry), so a file written out
//! has exactly the bytes and length its root claims. Output goes to a temporary entry in the
//! target's directory, renamed onto the target only once complete.

use std::{
    collections::HashSet,
    fs,
    io::{self, BufWriter, Write},
    path::{Component, Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use cid::Cid;
use ipfs_blockstore::{
    Block, Blockstore,
    multicodec::{DAG_PB, RAW},
};

use super::{
    hamt::{ShardError, ShardLinks, read_shard},
    metadata::{DEFAULT_DIRECTORY_MODE, DEFAULT_FILE_MODE, Metadata},
    pb::{DagPbNode, DataType, DecodeError, Link, UnixfsData},
};
use crate::temp;

/// The deepest DAG walked (kubo's files of many terabytes are 5 levels deep).
pub const MAX_DEPTH: usize = 64;

/// What a root turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A file (or a raw block).
    File,
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink,
}

/// The result of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    /// What the root is.
    pub kind: EntryKind,
    /// File bytes written.
    pub bytes: u64,
    /// Blocks read.
    pub blocks: u64,
}

/// Why an export failed. Nothing is left at the target: the temporary output is removed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// A block of the DAG is not in the store.
    #[error("block {0} is not in the store")]
    Missing(Cid),
    /// The store failed.
    #[error("block store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A block does not decode.
    #[error("block {cid}: {source}")]
    Decode {
        /// The block.
        cid: Cid,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// A node contradicts the UnixFS rules or its parent.
    #[error("block {cid}: {reason}")]
    Invalid {
        /// The node.
        cid: Cid,
        /// What is wrong.
        reason: String,
    },
    /// A node this exporter cannot write (a codec other than dag-pb and raw, a symlink off
    /// Unix).
    #[error("block {cid}: {what} is not supported")]
    Unsupported {
        /// The node.
        cid: Cid,
        /// What it is.
        what: &'static str,
    },
    /// A shard of a HAMT-sharded directory is malformed.
    #[error("block {cid}: {source}")]
    Shard {
        /// The shard.
        cid: Cid,
        /// Why (boxed: the other errors stay small).
        #[source]
        source: Box<ShardError>,
    },
    /// The DAG is deeper than [`MAX_DEPTH`].
    #[error("DAG deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A [`FileAssembler`](super::FileAssembler) gave up: the DAG repeats its blocks at more
    /// places than it holds. The file is to be exported from the store instead.
    #[error("the DAG repeats its blocks at too many places to write them as they come")]
    TooManyPlaces,
    /// The target exists already.
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file written.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// A decoded node.
#[derive(Debug)]
pub(super) enum Node {
    /// File bytes with children after them (a raw block has no children).
    File {
        data: Bytes,
        links: Vec<Link>,
        blocksizes: Vec<u64>,
    },
    Directory(Vec<Link>),
    /// A shard of a HAMT-sharded directory: some of its entries, and shards holding more.
    Shard(ShardLinks),
    Symlink(Bytes),
}

/// Reads and decodes one node.
async fn load<S: Blockstore>(store: &S, cid: &Cid) -> Result<Node, ExportError> {
    let block = store
        .get(cid)
        .await
        .map_err(|error| ExportError::Store(Box::new(error)))?
        .ok_or(ExportError::Missing(*cid))?;
    decode_node(block)
}

/// Reads and decodes one node, with its UnixFS 1.5 metadata.
async fn load_with_metadata<S: Blockstore>(
    store: &S,
    cid: &Cid,
) -> Result<(Node, Metadata), ExportError> {
    let block = store
        .get(cid)
        .await
        .map_err(|error| ExportError::Store(Box::new(error)))?
        .ok_or(ExportError::Missing(*cid))?;
    let metadata = block_metadata(&block)?;
    Ok((decode_node(block)?, metadata))
}

/// The UnixFS 1.5 metadata of a block: none for a raw block.
pub(super) fn block_metadata(block: &Block) -> Result<Metadata, ExportError> {
    let cid = block.cid();
    if cid.codec() != DAG_PB {
        return Ok(Metadata::default());
    }
    let decode = |source| ExportError::Decode { cid: *cid, source };
    let node = DagPbNode::decode_bytes(block.data()).map_err(decode)?;
    let data = node.data.ok_or(DecodeError::NoData).map_err(decode)?;
    Metadata::decode(&data).map_err(|error| decode(DecodeError::Metadata(Box::new(error))))
}

/// Decodes one node, checking its UnixFS sizes.
pub(super) fn decode_node(block: Block) -> Result<Node, ExportError> {
    let cid = &block.cid().to_owned();
    let decode = |source| ExportError::Decode { cid: *cid, source };
    match cid.codec() {
        RAW => Ok(Node::File {
            data: block.into_parts().1,
            links: Vec::new(),
            blocksizes: Vec::new(),
        }),
        DAG_PB => {
            let node = DagPbNode::decode_bytes(block.data()).map_err(decode)?;
            let data = node.data.ok_or(DecodeError::NoData).map_err(decode)?;
            let unixfs = UnixfsData::decode_bytes(&data).map_err(decode)?;
            match unixfs.kind().map_err(decode)? {
                DataType::File | DataType::Raw => {
                    let own = unixfs.data.unwrap_or_default();
                    if unixfs.blocksizes.len() != node.links.len() {
                        return Err(invalid(cid, "blocksizes and links differ in number"));
                    }
                    let total = file_size(cid, &own, &unixfs.blocksizes)?;
                    if unixfs.filesize.is_some_and(|filesize| filesize != total) {
                        return Err(invalid(cid, "filesize is not data plus blocksizes"));
                    }
                    Ok(Node::File {
                        data: own,
                        links: node.links,
                        blocksizes: unixfs.blocksizes,
                    })
                }
                DataType::Directory => Ok(Node::Directory(node.links)),
                DataType::Symlink => Ok(Node::Symlink(unixfs.data.unwrap_or_default())),
                DataType::HamtShard => {
                    read_shard(node.links, &unixfs)
                        .map(Node::Shard)
                        .map_err(|source| ExportError::Shard {
                            cid: *cid,
                            source: Box::new(source),
                        })
                }
                DataType::Metadata => Err(ExportError::Unsupported {
                    cid: *cid,
                    what: "a UnixFS metadata node",
                }),
            }
        }
        _ => Err(ExportError::Unsupported {
            cid: *cid,
            what: "a codec other than dag-pb and raw",
        }),
    }
}

/// The bytes a file node holds, its own and its children's; an error past 2^64 bytes.
pub(super) fn file_size(cid: &Cid, data: &[u8], blocksizes: &[u64]) -> Result<u64, ExportError> {
    blocksizes
        .iter()
        .try_fold(data.len() as u64, |sum, size| sum.checked_add(*size))
        .ok_or_else(|| invalid(cid, "data plus blocksizes is over 2^64 bytes"))
}

pub(super) fn invalid(cid: &Cid, reason: &str) -> ExportError {
    ExportError::Invalid {
        cid: *cid,
        reason: reason.to_owned(),
    }
}

/// Writes the bytes of the file rooted at `root` to `out`, checking every size on the way.
/// Returns the bytes written and the blocks read.
pub async fn write_file<S: Blockstore>(
    store: &S,
    root: &Cid,
    out: &mut impl Write,
    path: &Path,
) -> Result<(u64, u64), ExportError> {
    // The root's metadata is checked though not restored here, so that a root `get` and
    // `export` refuse (malformed UnixFS 1.5 fields) is refused here too.
    let (first, _) = load_with_metadata(store, root).await?;
    write_file_from(store, root, first, out, path).await
}

/// [`write_file`] from a root already loaded.
async fn write_file_from<S: Blockstore>(
    store: &S,
    root: &Cid,
    first: Node,
    out: &mut impl Write,
    path: &Path,
) -> Result<(u64, u64), ExportError> {
    let io = |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    };
    // Nodes still to write, last first: (CID, the size its parent claims, depth).
    let mut stack: Vec<(Cid, Option<u64>, usize)> = Vec::new();
    // Children their parent says are empty: they write nothing, so each is checked once
    // however many links lead to it (a crafted DAG repeats one at N² places).
    let mut empty: HashSet<Cid> = HashSet::new();
    // The last leaf and the last inner node read: a chunk or a subtree repeated (a file of
    // zeros; a crafted DAG's N × N) is read and decoded once per run of places, not once per
    // place.
    let mut recent: [Option<(Cid, Arc<FilePart>)>; 2] = [None, None];
    let mut next = Some((part(*root, first)?, *root, None, 0));
    let (mut bytes, mut blocks) = (0u64, 0u64);
    loop {
        let (node, cid, expected, depth) = match next.take() {
            Some(loaded) => loaded,
            None => match stack.pop() {
                Some((cid, expected, depth)) => {
                    let cached = recent.iter().flatten().find(|(c, _)| *c == cid);
                    let node = match cached {
                        Some((_, node)) => Arc::clone(node),
                        None => {
                            let node = part(cid, load(store, &cid).await?)?;
                            recent[usize::from(!node.links.is_empty())] =
                                Some((cid, Arc::clone(&node)));
                            node
                        }
                    };
                    (node, cid, expected, depth)
                }
                None => break,
            },
        };
        blocks += 1;
        let size = file_size(&cid, &node.data, &node.blocksizes)?;
        if expected.is_some_and(|expected| expected != size) {
            return Err(invalid(&cid, "size differs from its parent's blocksizes"));
        }
        if !node.links.is_empty() && depth >= MAX_DEPTH {
            return Err(ExportError::TooDeep);
        }
        out.write_all(&node.data).map_err(io)?;
        bytes = bytes.saturating_add(node.data.len() as u64);
        for (link, &size) in node.links.iter().zip(&node.blocksizes).rev() {
            if size == 0 && !empty.insert(link.cid) {
                continue;
            }
            stack.push((link.cid, Some(size), depth + 1));
        }
    }
    Ok((bytes, blocks))
}

/// A node of a file: its own bytes, then its children's.
#[derive(Debug)]
struct FilePart {
    data: Bytes,
    links: Vec<Link>,
    blocksizes: Vec<u64>,
}

/// `node` as a part of a file, or why it is not one.
fn part(cid: Cid, node: Node) -> Result<Arc<FilePart>, ExportError> {
    match node {
        Node::File {
            data,
            links,
            blocksizes,
        } => Ok(Arc::new(FilePart {
            data,
            links,
            blocksizes,
        })),
        _ => Err(invalid(&cid, "not part of a file")),
    }
}

/// Rebuilds the DAG at `root` as `target`: a file, a directory tree or a symlink. `target`
/// must not exist; it appears only once complete.
pub async fn export<S: Blockstore>(
    store: &S,
    root: &Cid,
    target: &Path,
) -> Result<Exported, ExportError> {
    if fs::symlink_metadata(target).is_ok() {
        return Err(ExportError::Exists(target.to_path_buf()));
    }
    let parent = temp::dir_of(target);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    let (node, metadata) = load_with_metadata(store, root).await?;
    match node {
        node @ Node::File { .. } => {
            let mut file = temp::file_beside(target).map_err(io(parent))?;
            let mut out = BufWriter::new(file.as_file_mut());
            let (bytes, blocks) = write_file_from(store, root, node, &mut out, target).await?;
            out.flush().map_err(io(target))?;
            drop(out);
            file.as_file().sync_all().map_err(io(target))?;
            metadata
                .apply(file.path(), DEFAULT_FILE_MODE)
                .map_err(io(target))?;
            file.persist_noclobber(target)
                .map_err(|error| io(target)(error.error))?;
            Ok(Exported {
                kind: EntryKind::File,
                bytes,
                blocks,
            })
        }
        Node::Symlink(target_bytes) => {
            write_symlink(root, &target_bytes, target)?;
            Ok(Exported {
                kind: EntryKind::Symlink,
                bytes: 0,
                blocks: 1,
            })
        }
        node @ (Node::Directory(_) | Node::Shard(_)) => {
            let dir = temp::dir_beside(target).map_err(io(parent))?;
            let (bytes, blocks) = write_dir(store, root, node, dir.path()).await?;
            if fs::symlink_metadata(target).is_ok() {
                return Err(ExportError::Exists(target.to_path_buf()));
            }
            // Once the target is known to be free: a read-only mode would keep the temporary
            // directory from being removed.
            metadata
                .apply(dir.path(), DEFAULT_DIRECTORY_MODE)
                .map_err(io(target))?;
            let kept = dir.keep();
            if let Err(source) = fs::rename(&kept, target) {
                let _ = fs::remove_dir_all(&kept);
                return Err(io(target)(source));
            }
            Ok(Exported {
                kind: EntryKind::Directory,
                bytes,
                blocks: blocks + 1,
            })
        }
    }
}

/// What the directory walk queued a CID as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// An entry, to be written at its path.
    Entry,
    /// A child shard of a sharded directory: more entries of the directory at its path.
    Shard,
}

/// Writes the entries of a directory node (already created at `path`) and everything below.
///
/// Entries with UnixFS 1.5 metadata get their mode and mtime; a directory's once everything
/// below it is written (writing an entry changes its directory's mtime, and a mode may forbid
/// writing). Symlinks keep the time of their writing: their permission bits mean nothing on
/// Linux, and the standard library cannot set a symlink's own time.
async fn write_dir<S: Blockstore>(
    store: &S,
    cid: &Cid,
    node: Node,
    path: &Path,
) -> Result<(u64, u64), ExportError> {
    let (mut bytes, mut blocks) = (0u64, 0u64);
    // Directories with metadata, parents before children: applied in reverse.
    let mut dirs: Vec<(PathBuf, Metadata)> = Vec::new();
    // Entries and shards still to read: (CID, path, depth, what).
    let mut stack: Vec<(Cid, PathBuf, usize, Queued)> = Vec::new();
    push_dir(&mut stack, cid, node, path, 1)?;
    while let Some((cid, path, depth, queued)) = stack.pop() {
        // A shard counts as a level: a chain of shards is bounded like nested directories.
        if depth > MAX_DEPTH {
            return Err(ExportError::TooDeep);
        }
        let io = |source| ExportError::Io {
            path: path.clone(),
            source,
        };
        let (node, metadata) = load_with_metadata(store, &cid).await?;
        if queued == Queued::Shard {
            if !matches!(node, Node::Shard(_)) {
                return Err(invalid(&cid, "a child shard that is not a HAMT shard"));
            }
            blocks += 1;
            push_dir(&mut stack, &cid, node, &path, depth + 1)?;
            continue;
        }
        match node {
            node @ Node::File { .. } => {
                let file = fs::File::create_new(&path).map_err(io)?;
                let mut out = BufWriter::new(file);
                let (b, n) = write_file_from(store, &cid, node, &mut out, &path).await?;
                let file = out.into_inner().map_err(|error| io(error.into_error()))?;
                file.sync_all().map_err(io)?;
                if !metadata.is_empty() {
                    metadata.apply(&path, DEFAULT_FILE_MODE).map_err(io)?;
                }
                bytes = bytes.saturating_add(b);
                blocks += n;
            }
            node @ (Node::Directory(_) | Node::Shard(_)) => {
                fs::create_dir(&path).map_err(io)?;
                blocks += 1;
                push_dir(&mut stack, &cid, node, &path, depth + 1)?;
                if !metadata.is_empty() {
                    dirs.push((path, metadata));
                }
            }
            Node::Symlink(target) => {
                write_symlink(&cid, &target, &path)?;
                blocks += 1;
            }
        }
    }
    for (path, metadata) in dirs.into_iter().rev() {
        metadata
            .apply(&path, DEFAULT_DIRECTORY_MODE)
            .map_err(|source| ExportError::Io { path, source })?;
    }
    Ok((bytes, blocks))
}

/// Queues what a directory node holds: its entries, and a shard's child shards.
fn push_dir(
    stack: &mut Vec<(Cid, PathBuf, usize, Queued)>,
    cid: &Cid,
    node: Node,
    path: &Path,
    depth: usize,
) -> Result<(), ExportError> {
    match node {
        Node::Directory(links) => push_entries(stack, cid, links, path, depth),
        Node::Shard(shard) => {
            for child in shard.shards.into_iter().rev() {
                stack.push((child, path.to_path_buf(), depth, Queued::Shard));
            }
            push_entries(stack, cid, shard.entries, path, depth)
        }
        Node::File { .. } | Node::Symlink(_) => Err(invalid(cid, "not a directory")),
    }
}

/// Queues a directory's entries, refusing names that would leave the directory.
fn push_entries(
    stack: &mut Vec<(Cid, PathBuf, usize, Queued)>,
    cid: &Cid,
    links: Vec<Link>,
    path: &Path,
    depth: usize,
) -> Result<(), ExportError> {
    for link in links.into_iter().rev() {
        let mut components = Path::new(&link.name).components();
        let plain = matches!(components.next(), Some(Component::Normal(_)))
            && components.next().is_none()
            && !link.name.contains(['/', '\\', '\0']);
        if !plain {
            return Err(ExportError::Invalid {
                cid: *cid,
                reason: format!("unsafe entry name {:?}", link.name),
            });
        }
        stack.push((link.cid, path.join(&link.name), depth, Queued::Entry));
    }
    Ok(())
}

#[cfg(unix)]
fn write_symlink(cid: &Cid, target: &[u8], path: &Path) -> Result<(), ExportError> {
    use std::{ffi::OsStr, os::unix::ffi::OsStrExt};

    if target.is_empty() || target.contains(&0) {
        return Err(invalid(cid, "empty symlink target or one with a NUL byte"));
    }
    std::os::unix::fs::symlink(OsStr::from_bytes(target), path).map_err(|source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(not(unix))]
fn write_symlink(cid: &Cid, _target: &[u8], _path: &Path) -> Result<(), ExportError> {
    Err(ExportError::Unsupported {
        cid: *cid,
        what: "a symlink on this platform",
    })
}

#[cfg(unix)]
pub(super) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
pub(super) fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
    Ok(())
}
