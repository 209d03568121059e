//! Output written whole or not at all: a hidden temporary file or directory is made beside the
//! destination, written and synced, then renamed over it, so that a crash or an error never
//! leaves a partial file under the destination's name (the temporary one is removed when
//! dropped).
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let target = dir.path().join("out.bin");
//! let file = ipfs_formats::temp::file_beside(&target)?;
//! std::fs::write(file.path(), b"whole")?;
//! file.persist_noclobber(&target)?;
//! assert_eq!(std::fs::read(&target)?, b"whole");
//! # Ok(())
//! # }
//! ```

use std::{io, path::Path};

use tempfile::{Builder, NamedTempFile, TempDir};

/// How the temporary files' names start: hidden, and named after the tool that left them if
/// a crash did.
const PREFIX: &str = ".bitswap-node-";

/// The directory `path` goes in: its parent, or `.` for a bare file name.
pub fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A new hidden temporary file in the directory of `path`, to be persisted as `path`.
///
/// # Errors
///
/// The file cannot be created there.
pub fn file_beside(path: &Path) -> io::Result<NamedTempFile> {
    Builder::new().prefix(PREFIX).tempfile_in(dir_of(path))
}

/// A new hidden temporary directory in the directory of `path`, to be renamed to `path`.
///
/// # Errors
///
/// The directory cannot be created there.
pub fn dir_beside(path: &Path) -> io::Result<TempDir> {
    Builder::new().prefix(PREFIX).tempdir_in(dir_of(path))
}
