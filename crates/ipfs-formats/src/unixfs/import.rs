//! The importer: files, directories and symlinks into a [`Blockstore`], as kubo's `ipfs add`
//! builds them.

use std::{
    fs,
    future::Future,
    io::{self, Read},
    path::{Path, PathBuf},
    pin::Pin,
};

use bytes::Bytes;
use cid::Cid;
use ipfs_blockstore::{Block, BlockError, Blockstore};
use prost::Message as _;

use super::{
    chunker::Chunker,
    hamt::{ShardBuilder, ShardError},
    layout::{Child, FileBuilder, Layout},
    metadata::{DEFAULT_DIRECTORY_MODE, Metadata},
    pb::{DagPbNode, Link, UnixfsData},
};

/// Bytes of blocks gathered before one [`Blockstore::put_many`].
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// kubo's `HAMTShardingSize`: a directory whose estimated size (the bytes of its entry names
/// plus their binary CIDs) reaches it is written as a HAMT (kubo v0.22 shards at `>=`, where
/// Helia shards only past it).
pub const HAMT_SHARDING_SIZE_BYTES: usize = 256 * 1024;

/// What an import does besides the [`Layout`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// The layout of files (and the CID version of directories).
    pub layout: Layout,
    /// Whether directory entries whose name starts with `.` are added (kubo's `--hidden`).
    /// Default: false, as `ipfs add -r`.
    pub hidden: bool,
    /// Whether files and directories keep their permission bits (UnixFS 1.5 `mode`; kubo's
    /// `--preserve-mode`). Default: false, which gives kubo's default CIDs. Symlinks keep
    /// neither field: their permission bits mean nothing on Linux, and the exporter cannot set
    /// a symlink's own time.
    pub preserve_mode: bool,
    /// Whether files and directories keep their modification time (UnixFS 1.5 `mtime`;
    /// kubo's `--preserve-mtime`). Default: false.
    pub preserve_mtime: bool,
}

impl ImportOptions {
    /// The metadata to store for an entry of `metadata`: what the options ask to preserve.
    fn metadata(&self, metadata: &fs::Metadata) -> Metadata {
        Metadata::from_fs(metadata, self.preserve_mode, self.preserve_mtime)
    }
}

/// The result of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    /// The root's CID.
    pub root: Cid,
    /// File bytes read (of every file under a directory).
    pub bytes: u64,
    /// Blocks written (a block built twice, such as a repeated chunk, counts twice).
    pub blocks: u64,
}

/// Why an import failed. Blocks written before the failure stay in the store (they are valid
/// blocks, referenced by no root the caller was given).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading the input failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The store refused a write or a flush.
    #[error("block store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A block could not be built.
    #[error("block: {0}")]
    Block(#[from] BlockError),
    /// A name or symlink target that is not UTF-8 (UnixFS names are strings).
    #[error("{}: name or symlink target is not UTF-8", .0.display())]
    NotUtf8(PathBuf),
    /// A directory could not be laid out as a HAMT.
    #[error("{}: {source}", path.display())]
    Shard {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: ShardError,
    },
    /// Neither a file, a directory nor a symlink.
    #[error("{}: not a file, directory or symlink", .0.display())]
    Unsupported(PathBuf),
}

/// Imports the file, directory or symlink at `path` (a symlink given as `path` is followed, as
/// kubo's `AddFile` does; symlinks inside a directory are stored as UnixFS symlinks). Writes
/// with [`Blockstore::put_many`] in batches and flushes the store before returning.
pub async fn import_path<S: Blockstore>(
    store: &S,
    path: &Path,
    options: &ImportOptions,
) -> Result<Imported, ImportError> {
    let mut sink = Sink::new(store);
    let metadata = fs::metadata(path).map_err(|source| io_error(path, source))?;
    let root = if metadata.is_dir() {
        import_dir(&mut sink, path.to_path_buf(), options).await?
    } else if metadata.is_file() {
        let file = fs::File::open(path).map_err(|source| io_error(path, source))?;
        let builder = FileBuilder::new(options.layout).with_metadata(options.metadata(&metadata));
        import_file(&mut sink, file, path, builder).await?
    } else {
        return Err(ImportError::Unsupported(path.to_path_buf()));
    };
    sink.finish(root.cid).await
}

/// Imports the bytes of `reader` as one file. Flushes the store before returning.
pub async fn import_reader<S: Blockstore>(
    store: &S,
    reader: impl Read,
    layout: &Layout,
) -> Result<Imported, ImportError> {
    let mut sink = Sink::new(store);
    let builder = FileBuilder::new(*layout);
    let root = import_file(&mut sink, reader, Path::new("<input>"), builder).await?;
    sink.finish(root.cid).await
}

/// Streams one file into the sink, through `builder`.
async fn import_file<S: Blockstore>(
    sink: &mut Sink<'_, S>,
    reader: impl Read,
    path: &Path,
    mut builder: FileBuilder,
) -> Result<Child, ImportError> {
    let mut chunker = Chunker::new(reader, builder.layout().chunk_size());
    let mut blocks = Vec::new();
    while let Some(chunk) = chunker
        .next_chunk()
        .map_err(|source| io_error(path, source))?
    {
        sink.bytes += chunk.len() as u64;
        builder.push(chunk, &mut blocks)?;
        sink.push(&mut blocks).await?;
    }
    let root = builder.finish(&mut blocks)?;
    sink.push(&mut blocks).await?;
    Ok(root)
}

/// Imports a directory: every entry (recursively), then the directory node.
fn import_dir<'a, S: Blockstore>(
    sink: &'a mut Sink<'_, S>,
    path: PathBuf,
    options: &'a ImportOptions,
) -> Pin<Box<dyn Future<Output = Result<Child, ImportError>> + Send + 'a>> {
    Box::pin(async move {
        let own = fs::metadata(&path).map_err(|source| io_error(&path, source))?;
        let mut entries = Vec::new();
        for entry in fs::read_dir(&path).map_err(|source| io_error(&path, source))? {
            let entry = entry.map_err(|source| io_error(&path, source))?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| ImportError::NotUtf8(entry.path()))?;
            if !options.hidden && name.starts_with('.') {
                continue;
            }
            entries.push(name);
        }
        // dag-pb orders links by the bytes of their names.
        entries.sort_unstable();
        let mut links = Vec::with_capacity(entries.len());
        let mut estimate = 0;
        for name in entries {
            let child_path = path.join(&name);
            let metadata = fs::symlink_metadata(&child_path)
                .map_err(|source| io_error(&child_path, source))?;
            let file_type = metadata.file_type();
            let child = if file_type.is_dir() {
                import_dir(sink, child_path, options).await?
            } else if file_type.is_file() {
                let file =
                    fs::File::open(&child_path).map_err(|source| io_error(&child_path, source))?;
                let builder =
                    FileBuilder::new(options.layout).with_metadata(options.metadata(&metadata));
                import_file(sink, file, &child_path, builder).await?
            } else if file_type.is_symlink() {
                import_symlink(sink, &child_path, &options.layout).await?
            } else {
                return Err(ImportError::Unsupported(child_path));
            };
            estimate += name.len() + child.cid.encoded_len();
            links.push(Link {
                cid: child.cid,
                name,
                tsize: child.tsize,
            });
        }
        if estimate >= HAMT_SHARDING_SIZE_BYTES {
            return import_shard(sink, path, links, &options.layout).await;
        }
        let below: u64 = links.iter().map(|link| link.tsize).sum();
        let mut data = UnixfsData::directory().encode_to_vec();
        options
            .metadata(&own)
            .append_to(&mut data, DEFAULT_DIRECTORY_MODE);
        let node = DagPbNode {
            links,
            data: Some(data.into()),
        };
        let block = options.layout.dag_pb_block(&node)?;
        let child = Child {
            cid: *block.cid(),
            tsize: block.data().len() as u64 + below,
            filesize: 0,
        };
        sink.push(&mut vec![block]).await?;
        Ok(child)
    })
}

/// Writes a directory's entries as a HAMT; the root shard's link.
async fn import_shard<S: Blockstore>(
    sink: &mut Sink<'_, S>,
    path: PathBuf,
    links: Vec<Link>,
    layout: &Layout,
) -> Result<Child, ImportError> {
    let mut shard = ShardBuilder::default();
    for link in links {
        if let Err(source) = shard.insert(link) {
            return Err(ImportError::Shard { path, source });
        }
    }
    let mut blocks = Vec::new();
    let root = shard.build(layout, &mut blocks)?;
    sink.push(&mut blocks).await?;
    Ok(root)
}

/// Imports a symlink as a UnixFS symlink node.
async fn import_symlink<S: Blockstore>(
    sink: &mut Sink<'_, S>,
    path: &Path,
    layout: &Layout,
) -> Result<Child, ImportError> {
    let target = fs::read_link(path).map_err(|source| io_error(path, source))?;
    let target = target
        .into_os_string()
        .into_string()
        .map_err(|_| ImportError::NotUtf8(path.to_path_buf()))?;
    let node = DagPbNode {
        links: Vec::new(),
        data: Some(
            UnixfsData::symlink(Bytes::from(target))
                .encode_to_vec()
                .into(),
        ),
    };
    let block = layout.dag_pb_block(&node)?;
    let child = Child {
        cid: *block.cid(),
        tsize: block.data().len() as u64,
        filesize: 0,
    };
    sink.push(&mut vec![block]).await?;
    Ok(child)
}

fn io_error(path: &Path, source: io::Error) -> ImportError {
    ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Gathers blocks into batches for the store and counts them.
struct Sink<'s, S> {
    store: &'s S,
    batch: Vec<Block>,
    batch_bytes: usize,
    blocks: u64,
    bytes: u64,
}

impl<'s, S: Blockstore> Sink<'s, S> {
    fn new(store: &'s S) -> Self {
        Self {
            store,
            batch: Vec::new(),
            batch_bytes: 0,
            blocks: 0,
            bytes: 0,
        }
    }

    /// Takes the blocks out of `blocks`, writing a batch once it is large enough.
    async fn push(&mut self, blocks: &mut Vec<Block>) -> Result<(), ImportError> {
        self.blocks += blocks.len() as u64;
        self.batch_bytes += blocks.iter().map(|b| b.data().len()).sum::<usize>();
        self.batch.append(blocks);
        if self.batch_bytes >= BATCH_BYTES {
            self.write().await?;
        }
        Ok(())
    }

    async fn write(&mut self) -> Result<(), ImportError> {
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        if batch.is_empty() {
            return Ok(());
        }
        self.store
            .put_many(batch)
            .await
            .map_err(|error| ImportError::Store(Box::new(error)))
    }

    /// Writes what is left and flushes the store.
    async fn finish(mut self, root: Cid) -> Result<Imported, ImportError> {
        self.write().await?;
        self.store
            .flush()
            .await
            .map_err(|error| ImportError::Store(Box::new(error)))?;
        Ok(Imported {
            root,
            bytes: self.bytes,
            blocks: self.blocks,
        })
    }
}
