//! A small tree whose files and directories have set modes and mtimes, for the UnixFS 1.5
//! metadata tests: what `add --preserve-mode --preserve-mtime` stores, and what `export` and
//! `get` must restore.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::write_pseudo_random;

/// The entries of [`make`], parents first: the path under the root (the root is `""`), `None`
/// for a directory or `Some(length)` for a file, the mode, and the mtime's seconds and
/// nanoseconds. Each mode but the default `0o644` and each time differs from what a new entry
/// gets.
pub const TREE: &[(&str, Option<u32>, u32, u64, u32)] = &[
    ("", None, 0o750, 1_500_000_000, 0),
    ("empty", None, 0o700, 1_500_000_100, 7),
    ("run.sh", Some(20), 0o755, 1_600_000_000, 123_456_789),
    ("setuid", Some(3), 0o4755, 1_600_000_001, 1),
    ("sub", None, 0o555, 1_400_000_000, 999_999_999),
    (
        "sub/big",
        Some(2_500_000),
        0o640,
        1_650_000_000,
        500_000_000,
    ),
    ("sub/default", Some(1), 0o644, 1_650_000_001, 0),
    ("sub/private", Some(0), 0o600, 1_234_567_890, 42),
];

/// Builds [`TREE`] at `root` (which must not exist). Modes and times are set deepest first,
/// so that writing an entry does not move its directory's time and a read-only directory is
/// filled before it becomes read-only. The guard returned makes the tree removable again.
#[must_use = "the guard makes the tree removable when dropped"]
pub fn make(root: &Path) -> Writable {
    for (i, (path, length, ..)) in TREE.iter().enumerate() {
        let at = root.join(path);
        match length {
            None => fs::create_dir(&at).unwrap(),
            Some(length) => write_pseudo_random(&at, *length as usize, 0x3e7a + i as u64),
        }
    }
    for (path, _, mode, seconds, nanos) in TREE.iter().rev() {
        let at = root.join(path);
        let time = UNIX_EPOCH + Duration::new(*seconds, *nanos);
        fs::File::open(&at)
            .unwrap()
            .set_times(fs::FileTimes::new().set_modified(time))
            .unwrap();
        fs::set_permissions(&at, fs::Permissions::from_mode(*mode)).unwrap();
    }
    Writable(root.to_path_buf())
}

/// Every entry under `root` (itself as `""`), sorted: its path, mode bits and mtime.
pub fn listing(root: &Path) -> Vec<(String, u32, SystemTime)> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let at = root.join(&relative);
        let metadata = fs::symlink_metadata(&at).unwrap();
        if metadata.is_dir() {
            for entry in fs::read_dir(&at).unwrap() {
                stack.push(relative.join(entry.unwrap().file_name()));
            }
        }
        out.push((
            relative.to_str().unwrap().to_owned(),
            metadata.permissions().mode() & 0o7777,
            metadata.modified().unwrap(),
        ));
    }
    out.sort();
    out
}

/// Makes every directory under its path writable again when dropped (a test that failed
/// included), so that the test's temporary directory can be removed.
pub struct Writable(pub PathBuf);

impl Drop for Writable {
    fn drop(&mut self) {
        let mut stack = vec![self.0.clone()];
        while let Some(dir) = stack.pop() {
            if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o755));
            if let Ok(entries) = fs::read_dir(&dir) {
                stack.extend(entries.flatten().map(|entry| entry.path()));
            }
        }
    }
}
