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

    /// Opens the block store ([`BLOCKS_FILE`]) with `config`. redb locks the file: a second
    /// process opening the same store gets an error.
    pub fn open_store(&self, config: RedbConfig) -> Result<RedbBlockstore, DataDirError> {
        Ok(RedbBlockstore::open(self.path.join(BLOCKS_FILE), config)?)
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
