//! The errors of [`RedbBlockstore`](super::RedbBlockstore): at open, and per operation.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
};

use cid::Cid;
use redb::{DatabaseError, StorageError};

use super::{compact::CompactFailure, write_buffer::Failure};
use crate::BlockError;

/// Why a [`RedbBlockstore`](super::RedbBlockstore) could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedbOpenError {
    /// The file could not be read or created.
    #[error("cannot open block store file {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error of the file system.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid redb database: empty, truncated or overwritten.
    #[error("block store file {} is corrupt", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What redb found.
        #[source]
        source: Box<redb::Error>,
    },
    /// Another store (in this process or another) has the file open.
    #[error("block store file {} is already open", path.display())]
    AlreadyOpen {
        /// The file.
        path: PathBuf,
    },
    /// The blob file (large blocks, next to the database file) is shorter than the database
    /// says it was when last committed: truncated, or replaced.
    #[error(
        "block store blob file {} is truncated: {file_bytes} bytes, {committed_bytes} committed",
        path.display()
    )]
    BlobsTruncated {
        /// The blob file.
        path: PathBuf,
        /// The length the database committed, in bytes.
        committed_bytes: u64,
        /// The length of the file found, in bytes.
        file_bytes: u64,
    },
    /// The file is a redb database but not a block store of this version.
    #[error(
        "not a block store of format {expected} (found format {})",
        found.map_or("none".to_owned(), |found| found.to_string())
    )]
    UnsupportedFormat {
        /// The format marker found, if any.
        found: Option<u64>,
        /// The format this code reads.
        expected: u64,
    },
    /// Another error of redb while opening or checking the file.
    #[error("cannot open block store database")]
    Database(#[source] Box<redb::Error>),
    /// The store's threads could not be started.
    #[error("cannot start block store threads")]
    Spawn(#[source] io::Error),
}

impl RedbOpenError {
    pub(super) fn from_database(path: &Path, error: DatabaseError) -> Self {
        let path = path.to_path_buf();
        match error {
            DatabaseError::DatabaseAlreadyOpen => Self::AlreadyOpen { path },
            // redb reports a bad magic number as `InvalidData`, a short file as `UnexpectedEof`.
            DatabaseError::Storage(StorageError::Io(source))
                if !matches!(
                    source.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
                ) =>
            {
                Self::Io { path, source }
            }
            DatabaseError::Storage(StorageError::Io(_) | StorageError::Corrupted(_)) => {
                Self::Corrupt {
                    path,
                    source: Box::new(error.into()),
                }
            }
            error => Self::Database(Box::new(error.into())),
        }
    }

    /// Classifies a redb error met while checking an opened file.
    pub(super) fn at(self, path: &Path) -> Self {
        match self {
            Self::Database(source) if matches!(*source, redb::Error::Corrupted(_)) => {
                Self::Corrupt {
                    path: path.to_path_buf(),
                    source,
                }
            }
            other => other,
        }
    }
}

impl From<redb::Error> for RedbOpenError {
    fn from(error: redb::Error) -> Self {
        Self::Database(Box::new(error))
    }
}

/// How a [`RedbBlockstore`](super::RedbBlockstore) found a stored block corrupt
/// ([`RedbBlockstoreError::Corrupt`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedbCorruption {
    /// The bytes do not hash to the CID (a block in the database file, or in the blob file
    /// without a checksum: written by format 3).
    #[error(transparent)]
    Hash(#[from] BlockError),
    /// The bytes read from the blob file do not match the checksum written with them.
    #[error("{len} bytes at offset {offset} of the blob file do not match their checksum")]
    Checksum {
        /// Where the block starts in the blob file, in bytes.
        offset: u64,
        /// The block's length, in bytes.
        len: u64,
    },
}

/// Why an operation of a [`RedbBlockstore`](super::RedbBlockstore) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedbBlockstoreError {
    /// Reading the file failed.
    #[error("block store database error")]
    Database(#[source] Box<redb::Error>),
    /// The stored bytes failed their check (the checksum of their blob file record, or the
    /// CID's hash): the copy on disk is corrupt.
    #[error("stored block {cid} is corrupt")]
    Corrupt {
        /// The CID asked for.
        cid: Box<Cid>,
        /// How the bytes failed the check.
        #[source]
        source: Box<RedbCorruption>,
    },
    /// Reading a large block from the blob file failed: an I/O error, or an entry pointing
    /// past the end of the file or longer than a block may be (a corrupt index).
    #[error("cannot read stored block {cid} ({len} bytes at offset {offset} of the blob file)")]
    BlobRead {
        /// The CID asked for.
        cid: Box<Cid>,
        /// Where the entry says the block starts in the blob file, in bytes.
        offset: u64,
        /// The length the entry gives, in bytes.
        len: u64,
        /// The error of the read.
        #[source]
        source: io::Error,
    },
    /// An earlier commit failed: the writes not committed then were dropped, and the store
    /// refuses every operation until it is reopened.
    #[error("an earlier block store write failed; reopen the store")]
    WriteFailed(#[source] Arc<redb::Error>),
    /// redb panicked while serving the operation: it met a page it did not expect (the file
    /// is likely corrupt), or a bug. After a read, the store goes on with the next operation;
    /// after a write, it refuses every operation until it is reopened.
    #[error("the block store panicked")]
    Panicked,
    /// A compaction of the blob file failed on an I/O error: reading the blob file, or
    /// creating, writing or syncing the new one (a full disk). Nothing was switched: the store
    /// goes on with the blob file it had, and the new file is removed.
    #[error("cannot compact the block store's blob file ({})", path.display())]
    CompactionIo {
        /// The file the error is about.
        path: PathBuf,
        /// The error of the file system.
        #[source]
        source: Arc<io::Error>,
    },
    /// A compaction of the blob file failed on a database error before its switch, or found
    /// an index entry it cannot account for (a corrupt index). Nothing was switched: the store
    /// goes on with the blob file it had.
    #[error("cannot compact the block store's blob file: database error")]
    CompactionDatabase(#[source] Arc<redb::Error>),
}

impl RedbBlockstoreError {
    pub(super) fn corrupt(cid: Cid, source: impl Into<RedbCorruption>) -> Self {
        Self::Corrupt {
            cid: Box::new(cid),
            source: Box::new(source.into()),
        }
    }
}

impl From<redb::Error> for RedbBlockstoreError {
    fn from(error: redb::Error) -> Self {
        Self::Database(Box::new(error))
    }
}

impl From<CompactFailure> for RedbBlockstoreError {
    fn from(failure: CompactFailure) -> Self {
        match failure {
            CompactFailure::Store(failure) => failure.into(),
            CompactFailure::Io { path, source } => Self::CompactionIo { path, source },
            CompactFailure::Database(error) => Self::CompactionDatabase(error),
        }
    }
}

impl From<Failure> for RedbBlockstoreError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Write(error) => Self::WriteFailed(error),
            Failure::WriterStopped => Self::Panicked,
        }
    }
}
