//! The blob file of the redb store: large blocks, appended outside the B-tree.
//!
//! redb stores a value in a page of a power-of-two size, so a 256 KiB block (plus its key and
//! the page header) takes a 512 KiB page, and inserting it rewrites B-tree leaves (reading
//! back those its write cache already evicted): about 2x the block's bytes written and more
//! read, at ~150 MB/s on the machine of the bench. The blob file holds the bytes of large
//! blocks (see [`RedbConfig::with_blob_threshold`](super::RedbConfig::with_blob_threshold))
//! once, appended in the order written; redb keeps only `(offset, length)` per block (table
//! `blobs`) and the committed end of the file (`meta` key `blob_end`).
//!
//! # Crash safety
//!
//! The writer appends a batch's large blocks past the committed end, `fdatasync`s the file,
//! and only then commits the redb transaction that references them and moves the committed
//! end. So a committed entry always points at durable bytes; bytes past the committed end
//! belong to no committed entry (a batch cut by a crash) and are cut off at the next open.
//! A file shorter than the committed end (truncated, or lost) is refused at open. The old file
//! is never written below its committed end, by the writer or by a compaction. The bytes
//! of a block are checked at every read, against the checksum written with them (table
//! `blob_sums`, see [`tables`](super::tables)) or, for a record of format 3, against its CID,
//! so a damaged range is reported as corrupt, never returned.
//!
//! # Generations and compaction
//!
//! Deleting or overwriting a large block leaves its bytes behind: they are *dead*, counted
//! in `meta` key `blob_dead` by the transaction that drops their entry. Compaction (see
//! [`compact`](super::compact)) copies the live blocks into a new file of the next
//! *generation* and switches the index to it in one transaction; the file of generation 0 is
//! `<db>.blobs`, that of generation `n` is `<db>.blobs.n`, and `meta` key `blob_gen` names
//! the current one. Opening the store removes the files of the generations just before and
//! after it: what a crash left of a compaction, before or after its switch.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use super::redb_error::RedbOpenError;
use crate::MAX_BLOCK_SIZE;

/// The blob file of generation `generation` next to the redb file `db_path`: the same name
/// with `.blobs` appended, and `.<generation>` after that from generation 1 on.
pub(super) fn path_for(db_path: &Path, generation: u64) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push(".blobs");
    if generation > 0 {
        name.push(format!(".{generation}"));
    }
    PathBuf::from(name)
}

/// Removes the blob files of the generations next to `generation` (the one before, the one
/// after), which the index does not name: a crash during a compaction leaves one of them.
/// A file that cannot be removed is logged and left: it wastes space, nothing more.
pub(super) fn remove_leftovers(db_path: &Path, generation: u64) {
    let before = generation.checked_sub(1);
    let after = generation.checked_add(1);
    for leftover in before.into_iter().chain(after) {
        let path = path_for(db_path, leftover);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(
                path = %path.display(),
                "removed a blob file a compaction left behind"
            ),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(
                path = %path.display(),
                %error,
                "cannot remove a blob file a compaction left behind"
            ),
        }
    }
}

/// Makes the entries of the directory holding `path` durable (a new name in it, before
/// anything points at the file).
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    File::open(parent).and_then(|dir| dir.sync_all())
}

/// The blob file, shared by the writer (appends) and the readers (positioned reads).
#[derive(Debug)]
pub(super) struct BlobFile {
    file: File,
    path: PathBuf,
}

impl BlobFile {
    /// Opens (or creates) the blob file at `path`, whose committed end is `committed_end`
    /// bytes: cuts off what lies past it, refuses a file shorter than it.
    pub(super) fn open(path: &Path, committed_end: u64) -> Result<Self, RedbOpenError> {
        let io_error = |source| RedbOpenError::Io {
            path: path.to_path_buf(),
            source,
        };
        let existed = path.try_exists().map_err(io_error)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_error)?;
        let len = file.metadata().map_err(io_error)?.len();
        if len < committed_end {
            return Err(RedbOpenError::BlobsTruncated {
                path: path.to_path_buf(),
                committed_bytes: committed_end,
                file_bytes: len,
            });
        }
        if len > committed_end {
            // A batch the crash cut: no committed entry points there.
            tracing::debug!(
                path = %path.display(),
                cut = len - committed_end,
                "cutting uncommitted bytes off the blob file"
            );
            file.set_len(committed_end).map_err(io_error)?;
        }
        if !existed {
            // The new name must survive a power loss before any index entry points into the
            // file: sync the directory that holds it.
            sync_parent(path).map_err(io_error)?;
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Creates the file at `path` empty, replacing what is there (a file a crashed compaction
    /// left), with its name durable: the target of a compaction.
    pub(super) fn create(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        sync_parent(path)?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Where the file is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Fills `buf` with the bytes at `offset`: a range of the file, whatever it holds.
    pub(super) fn read_raw(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Writes `data` at `offset` (the writer's end of the file).
    pub(super) fn write_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    /// Makes every write so far durable (`fdatasync`).
    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Reads the `len` bytes at `offset`, as an index entry gives them. An entry that cannot
    /// be one (longer than a block may be, past the end of the file) is an error, not a
    /// panic or a huge allocation.
    pub(super) fn read(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= MAX_BLOCK_SIZE && offset.checked_add(*len as u64).is_some())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("blob entry of {len} bytes at offset {offset} is not a block"),
                )
            })?;
        let mut data = vec![0; len];
        self.file.read_exact_at(&mut data, offset)?;
        Ok(data)
    }
}
