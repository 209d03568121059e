//! The node's data directory: its persistent identity key and its persistent block store.
//!
//! ```text
//! DIR/identity.key   the libp2p ed25519 keypair, protobuf-encoded, mode 0600
//! DIR/blocks.redb    the bitswap::RedbBlockstore
//! ```
//!
//! The default directory is `$XDG_DATA_HOME/bitswap-node`, or
//! `$HOME/.local/share/bitswap-node` when `XDG_DATA_HOME` is unset or empty.

use std::{
    env, fs,
    io::{self, Write},
    path::{Path, PathBuf},
};

use bitswap::{RedbBlockstore, RedbConfig, RedbOpenError};
use libp2p::identity::{DecodingError, Keypair};

/// The identity key's file name.
pub const IDENTITY_FILE: &str = "identity.key";
/// The block store's file name.
pub const BLOCKS_FILE: &str = "blocks.redb";

/// Why the data directory could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// Neither `XDG_DATA_HOME` nor `HOME` is set.
    #[error("no data directory: set --data-dir, XDG_DATA_HOME or HOME")]
    NoHome,
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The identity file does not hold a keypair.
    #[error("{}: not a libp2p keypair: {source}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: DecodingError,
    },
    /// The identity file can be read by other users.
    #[error("{}: readable by other users (mode {mode:o}); run chmod 600 on it", path.display())]
    KeyPermissions {
        /// The file.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The block store could not be opened.
    #[error(transparent)]
    Store(#[from] RedbOpenError),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    path: PathBuf,
}

impl DataDir {
    /// The default location: `$XDG_DATA_HOME/bitswap-node` or
    /// `$HOME/.local/share/bitswap-node`.
    pub fn default_path() -> Result<PathBuf, DataDirError> {
        let non_empty = |name| env::var_os(name).filter(|value| !value.is_empty());
        if let Some(data) = non_empty("XDG_DATA_HOME") {
            return Ok(PathBuf::from(data).join("bitswap-node"));
        }
        let home = non_empty("HOME").ok_or(DataDirError::NoHome)?;
        Ok(PathBuf::from(home).join(".local/share/bitswap-node"))
    }

    /// Opens the directory at `path`, creating it (mode 0700) and its identity key if missing.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, DataDirError> {
        let path = path.into();
        create_private_dir(&path).map_err(io_error(&path))?;
        let dir = Self { path };
        dir.identity()?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The node's identity: read from [`IDENTITY_FILE`], or generated (ed25519) and written
    /// there with mode 0600 if the file does not exist. Two processes creating it at once end
    /// with the same key: the file appears complete or not at all, and never replaces another.
    pub fn identity(&self) -> Result<Keypair, DataDirError> {
        let path = self.path.join(IDENTITY_FILE);
        match fs::read(&path) {
            Ok(bytes) => return decode_key(&path, &bytes),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error(&path)(error)),
        }
        let keypair = Keypair::generate_ed25519();
        let encoded = keypair
            .to_protobuf_encoding()
            .expect("ed25519 keys always encode");
        // A temporary file is created with mode 0600.
        let mut file = tempfile::Builder::new()
            .prefix(".identity-")
            .tempfile_in(&self.path)
            .map_err(io_error(&self.path))?;
        file.write_all(&encoded).map_err(io_error(&path))?;
        file.as_file().sync_all().map_err(io_error(&path))?;
        match file.persist_noclobber(&path) {
            Ok(_) => Ok(keypair),
            // Another process wrote it first: use theirs.
            Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {
                let bytes = fs::read(&path).map_err(io_error(&path))?;
                decode_key(&path, &bytes)
            }
            Err(error) => Err(io_error(&path)(error.error)),
        }
    }

    /// Opens the block store ([`BLOCKS_FILE`]) with `config`, creating it on first use. redb
    /// locks the file: a second process opening the same store gets an error.
    pub fn open_store(&self, config: RedbConfig) -> Result<RedbBlockstore, DataDirError> {
        let path = self.path.join(BLOCKS_FILE);
        match fs::symlink_metadata(&path) {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => self.create_store(&path)?,
            Err(error) => return Err(io_error(&path)(error)),
        }
        Ok(RedbBlockstore::open(path, config)?)
    }

    /// Creates an empty store at `path` that appears whole or not at all: it is made in a
    /// temporary directory, then linked into place (the blob file first, then the database),
    /// never over an existing file. Created in place, a store cut short by a full disk would
    /// be a file redb cannot read, which every later open reports as corrupt.
    ///
    /// Two processes creating the store at once both succeed and use the same files: a new
    /// blob file is empty, so either one goes with either database.
    fn create_store(&self, path: &Path) -> Result<(), DataDirError> {
        let temp = tempfile::Builder::new()
            .prefix(".blocks-")
            .tempdir_in(&self.path)
            .map_err(io_error(&self.path))?;
        let temp_path = temp.path().join(BLOCKS_FILE);
        let store = RedbBlockstore::open(&temp_path, RedbConfig::default())?;
        let temp_blobs = store.blob_path();
        // Nothing to write: dropping releases the files at once.
        drop(store);
        // The blob file is the database's path with `.blobs` appended.
        let mut blobs = path.as_os_str().to_owned();
        blobs.push(".blobs");
        link_new(&temp_blobs, Path::new(&blobs))?;
        link_new(&temp_path, path)?;
        temp.close().map_err(io_error(&self.path))
    }
}

/// Puts `from` at `to` unless `to` exists (then leaves both as they are): a hard link, which
/// cannot replace a file, or a rename where the file system has no hard links.
fn link_new(from: &Path, to: &Path) -> Result<(), DataDirError> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => match fs::symlink_metadata(to) {
            Ok(_) => Ok(()),
            Err(_) => fs::rename(from, to).map_err(io_error(to)),
        },
    }
}

fn decode_key(path: &Path, bytes: &[u8]) -> Result<Keypair, DataDirError> {
    check_private(path)?;
    Keypair::from_protobuf_encoding(bytes).map_err(|source| DataDirError::BadKey {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<(), DataDirError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(io_error(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(DataDirError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<(), DataDirError> {
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

#[cfg(not(unix))]
fn create_private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_private() {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(temp.path().join("node")).unwrap();
        let first = dir.identity().unwrap().public().to_peer_id();
        let again = DataDir::open(dir.path()).unwrap();
        assert_eq!(again.identity().unwrap().public().to_peer_id(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join(IDENTITY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(
                dir.path().join(IDENTITY_FILE),
                fs::Permissions::from_mode(0o644),
            )
            .unwrap();
            assert!(matches!(
                dir.identity(),
                Err(DataDirError::KeyPermissions { .. })
            ));
        }
    }

    #[test]
    fn store_is_created_whole() {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(temp.path()).unwrap();
        drop(dir.open_store(RedbConfig::default()).unwrap());
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["blocks.redb", "blocks.redb.blobs", "identity.key"]);
        // And opens again.
        drop(dir.open_store(RedbConfig::default()).unwrap());
    }

    #[test]
    fn garbage_key_is_an_error() {
        let temp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(temp.path()).unwrap();
        fs::write(dir.path().join(IDENTITY_FILE), b"garbage").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(
                dir.path().join(IDENTITY_FILE),
                fs::Permissions::from_mode(0o600),
            )
            .unwrap();
        }
        assert!(matches!(dir.identity(), Err(DataDirError::BadKey { .. })));
    }
}
