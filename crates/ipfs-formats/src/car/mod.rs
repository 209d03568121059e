//! CARv1 files: a DAG's blocks in one file, as `ipfs dag export` writes them.
//!
//! Spec: <https://ipld.io/specs/transport/car/carv1/>. A file is a varint-framed header (see
//! [`header`]) and then varint-framed sections, each a binary CID followed by the block's
//! bytes. [`export`] writes the blocks of a DAG in depth-first order, each once; [`import`]
//! checks every block against its CID before storing it.

pub mod header;

use std::{
    collections::HashSet,
    fs,
    io::{self, BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use bytes::Bytes;
use cid::Cid;
use ipfs_blockstore::{Block, BlockError, Blockstore, MAX_BLOCK_SIZE};

use crate::dag::{self, LinksError};
pub use header::HeaderError;

/// The largest header read: 1 MiB.
pub const MAX_HEADER_BYTES: u64 = 1024 * 1024;
/// The largest section read: a block of [`MAX_BLOCK_SIZE`] and its CID.
pub const MAX_SECTION_BYTES: u64 = MAX_BLOCK_SIZE as u64 + 1024;
/// Bytes of blocks gathered before one [`Blockstore::put_many`] on import.
const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What a CAR export or import moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarStats {
    /// The roots in the header.
    pub roots: Vec<Cid>,
    /// Blocks written or read.
    pub blocks: u64,
    /// Bytes of those blocks (without CIDs and framing).
    pub bytes: u64,
}

/// Why a CAR export or import failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CarError {
    /// Reading or writing the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The header is not a CARv1 header.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// A section is malformed.
    #[error("section {index}: {reason}")]
    Section {
        /// Its index, from 0.
        index: u64,
        /// What is wrong.
        reason: String,
    },
    /// A block's bytes do not match its CID (or it is too large).
    #[error("section {index}: {source}")]
    Block {
        /// The section's index, from 0.
        index: u64,
        /// Why.
        #[source]
        source: BlockError,
    },
    /// A block of the DAG is not in the store.
    #[error("block {0} is not in the store")]
    Missing(Cid),
    /// The links of a block are unknown.
    #[error(transparent)]
    Links(#[from] LinksError),
    /// The store failed.
    #[error("block store: {0}")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The output exists already.
    #[error("{} exists already", .0.display())]
    Exists(PathBuf),
}

fn store_error(error: impl std::error::Error + Send + Sync + 'static) -> CarError {
    CarError::Store(Box::new(error))
}

/// Writes a CARv1 of the DAGs under `roots` to `out`: the header, then every block reachable
/// from the roots, depth-first, each once.
pub async fn export<S: Blockstore>(
    store: &S,
    roots: &[Cid],
    out: &mut impl Write,
    path: &Path,
) -> Result<CarStats, CarError> {
    let io = |source| CarError::Io {
        path: path.to_path_buf(),
        source,
    };
    let header = header::encode(roots);
    write_varint(out, header.len() as u64).map_err(io)?;
    out.write_all(&header).map_err(io)?;
    let (mut blocks, mut bytes) = (0, 0);
    let mut seen = HashSet::new();
    let mut stack: Vec<Cid> = roots.iter().rev().copied().collect();
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let block = store
            .get(&cid)
            .await
            .map_err(store_error)?
            .ok_or(CarError::Missing(cid))?;
        let cid_bytes = cid.to_bytes();
        write_varint(out, (cid_bytes.len() + block.data().len()) as u64).map_err(io)?;
        out.write_all(&cid_bytes).map_err(io)?;
        out.write_all(block.data()).map_err(io)?;
        blocks += 1;
        bytes += block.data().len() as u64;
        stack.extend(dag::links(&block)?.into_iter().rev());
    }
    Ok(CarStats {
        roots: roots.to_vec(),
        blocks,
        bytes,
    })
}

/// [`export`] to the file `path`, which must not exist: written to a temporary file beside it
/// and renamed once complete.
pub async fn export_file<S: Blockstore>(
    store: &S,
    roots: &[Cid],
    path: &Path,
) -> Result<CarStats, CarError> {
    if fs::symlink_metadata(path).is_ok() {
        return Err(CarError::Exists(path.to_path_buf()));
    }
    let io = |source| CarError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = crate::temp::file_beside(path).map_err(io)?;
    let mut out = BufWriter::new(file.as_file_mut());
    let stats = export(store, roots, &mut out, path).await?;
    out.flush().map_err(io)?;
    drop(out);
    file.as_file().sync_all().map_err(io)?;
    file.persist_noclobber(path)
        .map_err(|error| io(error.error))?;
    Ok(stats)
}

/// Reads a CARv1 from `input`, checks every block against its CID and stores them, in
/// batches, then flushes the store. Blocks stored before an error stay stored (each was
/// verified).
pub async fn import<S: Blockstore>(
    store: &S,
    input: impl Read,
    path: &Path,
) -> Result<CarStats, CarError> {
    let io = |source| CarError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut input = BufReader::new(input);
    let header_len = read_varint(&mut input)
        .map_err(io)?
        .ok_or_else(|| HeaderError("empty file".into()))?;
    if header_len == 0 || header_len > MAX_HEADER_BYTES {
        return Err(HeaderError(format!("header length {header_len}")).into());
    }
    let mut header_bytes = vec![0; header_len as usize];
    input.read_exact(&mut header_bytes).map_err(io)?;
    let roots = header::decode(&header_bytes)?;

    let (mut blocks, mut bytes, mut batch_bytes) = (0u64, 0u64, 0usize);
    let mut batch = Vec::new();
    let section = |index, reason: &str| CarError::Section {
        index,
        reason: reason.to_owned(),
    };
    while let Some(len) = read_varint(&mut input).map_err(io)? {
        if len == 0 || len > MAX_SECTION_BYTES {
            return Err(section(blocks, "length out of range"));
        }
        let mut buf = vec![0; len as usize];
        input.read_exact(&mut buf).map_err(|error| {
            if error.kind() == io::ErrorKind::UnexpectedEof {
                section(blocks, "truncated")
            } else {
                io(error)
            }
        })?;
        let mut cursor = io::Cursor::new(&buf[..]);
        let cid = Cid::read_bytes(&mut cursor).map_err(|_| section(blocks, "invalid CID"))?;
        let cid_len = cursor.position() as usize;
        let data = Bytes::from(buf).slice(cid_len..);
        let block = Block::new(cid, data).map_err(|source| CarError::Block {
            index: blocks,
            source,
        })?;
        blocks += 1;
        bytes += block.data().len() as u64;
        batch_bytes += block.data().len();
        batch.push(block);
        if batch_bytes >= BATCH_BYTES {
            batch_bytes = 0;
            store
                .put_many(std::mem::take(&mut batch))
                .await
                .map_err(store_error)?;
        }
    }
    if !batch.is_empty() {
        store.put_many(batch).await.map_err(store_error)?;
    }
    store.flush().await.map_err(store_error)?;
    Ok(CarStats {
        roots,
        blocks,
        bytes,
    })
}

fn write_varint(out: &mut impl Write, value: u64) -> io::Result<()> {
    let mut buf = unsigned_varint::encode::u64_buffer();
    out.write_all(unsigned_varint::encode::u64(value, &mut buf))
}

/// Reads an unsigned varint, or `None` at a clean end of input.
fn read_varint(input: &mut impl Read) -> io::Result<Option<u64>> {
    let mut value = 0u64;
    for shift in (0..63).step_by(7) {
        let mut byte = [0];
        if input.read(&mut byte)? == 0 {
            if shift == 0 {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "truncated varint",
            ));
        }
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(Some(value));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "varint too long",
    ))
}
