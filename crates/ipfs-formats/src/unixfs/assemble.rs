//! A file written as its blocks arrive, in any order: what `get` does while it fetches, so
//! that the file is not read back from the store (and every block hashed again) afterwards.
//!
//! Each node of a UnixFS file says how many bytes each child holds (`blocksizes`), so a
//! child's place in the file is known as soon as its parent is: the parent's own place, plus
//! its own data, plus the sizes of the children before it. [`FileAssembler`] keeps the places
//! of the blocks still to come, writes each block's data at its place(s) when it is handed
//! in, and checks the same sizes as [`export`](super::export). The output is a temporary file
//! beside the target, renamed onto it by [`finish`](FileAssembler::finish) once every place
//! is filled; dropped before that, it is removed.
//!
//! Every [`SYNC_EVERY_BYTES`] written, a thread syncs the file in the background, so that the
//! sync before the rename only has the last bytes left to write out.
//!
//! A DAG may link to one block from many places (a file of zeros repeats one chunk), and a
//! crafted one multiplies them: a root that links N times to X, where X links N times to Y,
//! puts Y at N² places from three small blocks. The places held are therefore bounded by the
//! bytes of the blocks handed in ([`MIN_PLACES`] plus one per [`BYTES_PER_PLACE`]); past that
//! the assembler gives up ([`is_given_up`](FileAssembler::is_given_up)) and the file is
//! exported from the store once the walk has every block, which takes memory in the depth of
//! the DAG only. A child the parent says is empty writes nothing at any place: it is placed
//! once, so that it is still checked, whatever the number of links to it.

use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
    thread::JoinHandle,
};

use cid::Cid;
use ipfs_blockstore::Block;

use super::{
    export::{
        EntryKind, ExportError, Exported, MAX_DEPTH, Node, block_metadata, decode_node, file_size,
        invalid,
    },
    metadata::{DEFAULT_FILE_MODE, Metadata},
};

/// Bytes written between two background syncs of the file.
const SYNC_EVERY_BYTES: u64 = 64 << 20;

/// Places held whatever the blocks handed in: about 16 MiB at [`BYTES_PER_PLACE`] (a file of
/// zeros of 64 GiB in 256 KiB chunks still fits).
pub const MIN_PLACES: usize = 1 << 18;

/// Bytes of blocks handed in that pay for one more place held: a place costs about this much
/// (32 bytes in a list that may have doubled), so places never take more memory than the
/// blocks that made them, plus [`MIN_PLACES`].
pub const BYTES_PER_PLACE: u64 = 64;

/// Where a block's data goes.
#[derive(Debug, Clone, Copy)]
struct Place {
    /// Offset in the file, in bytes.
    offset: u64,
    /// The size the parent gives it (data and children), in bytes; `None` for the root.
    expected: Option<u64>,
    /// Depth in the DAG (the root is 0).
    depth: usize,
}

/// A UnixFS file being written from its blocks, which may arrive in any order.
#[derive(Debug)]
pub struct FileAssembler {
    file: tempfile::NamedTempFile,
    target: PathBuf,
    /// Blocks still to come, and where each goes (a block may hold several places of the
    /// file: the same chunk repeated).
    pending: HashMap<Cid, Vec<Place>>,
    /// Places in `pending`.
    places: usize,
    /// Bytes of the distinct blocks handed in: what pays for the places held.
    handed_in: u64,
    /// Children placed with a size of 0: placed once whatever the links to them.
    empty: HashSet<Cid>,
    /// Set once the places outgrew what was handed in: nothing more is written.
    given_up: bool,
    /// Blocks written, to tell when one is needed again at another place.
    written: HashSet<Cid>,
    /// Blocks written before and needed again: [`take_again`](Self::take_again).
    again: Vec<Cid>,
    /// File bytes written.
    bytes: u64,
    /// Blocks written (a block at several places counts at each).
    blocks: u64,
    /// Bytes written since the last background sync started.
    unsynced: u64,
    /// The background sync running, if any.
    syncing: Option<JoinHandle<io::Result<()>>>,
    /// Whether [`sync`](Self::sync) made the file durable.
    synced: bool,
    /// The root's UnixFS 1.5 mode and mtime, set on the file before it is renamed.
    metadata: Metadata,
}

impl FileAssembler {
    /// Starts writing the file whose root is `root` to a temporary file beside `target`, with
    /// the root's own data. `None` if the root is not a file (a directory or a symlink: see
    /// [`export`](super::export)), or does not decode (the export reports why).
    pub fn start(root: &Block, target: &Path) -> Result<Option<Self>, ExportError> {
        if !matches!(decode_node(root.clone()), Ok(Node::File { .. })) {
            return Ok(None);
        }
        let metadata = block_metadata(root)?;
        if fs::symlink_metadata(target).is_ok() {
            return Err(ExportError::Exists(target.to_path_buf()));
        }
        let file = crate::temp::file_beside(target).map_err(|source| ExportError::Io {
            path: crate::temp::dir_of(target).to_path_buf(),
            source,
        })?;
        let mut assembler = Self {
            file,
            target: target.to_path_buf(),
            pending: HashMap::from([(
                *root.cid(),
                vec![Place {
                    offset: 0,
                    expected: None,
                    depth: 0,
                }],
            )]),
            places: 1,
            handed_in: 0,
            empty: HashSet::new(),
            given_up: false,
            written: HashSet::new(),
            again: Vec::new(),
            bytes: 0,
            blocks: 0,
            unsynced: 0,
            syncing: None,
            synced: false,
            metadata,
        };
        assembler.add(root)?;
        Ok(Some(assembler))
    }

    /// Writes `block` at every place waiting for it and notes where its children go. A block
    /// no place waits for is ignored, as is every block once the assembler
    /// [gave up](Self::is_given_up).
    pub fn add(&mut self, block: &Block) -> Result<(), ExportError> {
        let Some(places) = self.pending.remove(block.cid()) else {
            return Ok(());
        };
        self.places -= places.len();
        let cid = *block.cid();
        if !self.written.contains(&cid) {
            self.handed_in = self.handed_in.saturating_add(block.data().len() as u64);
        }
        let Node::File {
            data,
            links,
            blocksizes,
        } = decode_node(block.clone())?
        else {
            return Err(invalid(&cid, "not part of a file"));
        };
        let size = file_size(&cid, &data, &blocksizes)?;
        for place in places {
            if place.expected.is_some_and(|expected| expected != size) {
                return Err(invalid(&cid, "size differs from its parent's blocksizes"));
            }
            if !links.is_empty() && place.depth >= MAX_DEPTH {
                return Err(ExportError::TooDeep);
            }
            write_at(self.file.as_file(), &data, place.offset).map_err(|source| {
                ExportError::Io {
                    path: self.target.clone(),
                    source,
                }
            })?;
            self.bytes = self.bytes.saturating_add(data.len() as u64);
            self.blocks += 1;
            self.unsynced = self.unsynced.saturating_add(data.len() as u64);
            // Within the root's size when every size matched its parent's; checked all the
            // same, so that no reasoning about the order of checks is needed.
            let overflow = || invalid(&cid, "offset past 2^64 bytes");
            let mut offset = (place.offset.checked_add(data.len() as u64)).ok_or_else(overflow)?;
            for (link, &child_size) in links.iter().zip(&blocksizes) {
                let child = Place {
                    offset,
                    expected: Some(child_size),
                    depth: place.depth + 1,
                };
                offset = offset.checked_add(child_size).ok_or_else(overflow)?;
                if child_size == 0 && !self.empty.insert(link.cid) {
                    continue;
                }
                if self.places >= self.max_places() {
                    self.give_up();
                    return Ok(());
                }
                self.places += 1;
                let places = self.pending.entry(link.cid).or_default();
                // Written already, and not waited for again yet: it must be handed in again.
                if places.is_empty() && self.written.contains(&link.cid) {
                    self.again.push(link.cid);
                }
                places.push(child);
            }
        }
        self.written.insert(cid);
        if self.unsynced >= SYNC_EVERY_BYTES {
            self.sync_in_background()?;
        }
        Ok(())
    }

    /// The most places held: [`MIN_PLACES`], and one per [`BYTES_PER_PLACE`] handed in.
    fn max_places(&self) -> usize {
        let paid = usize::try_from(self.handed_in / BYTES_PER_PLACE).unwrap_or(usize::MAX);
        MIN_PLACES.saturating_add(paid)
    }

    /// Drops every place: the file will be exported from the store instead.
    fn give_up(&mut self) {
        self.given_up = true;
        self.pending = HashMap::new();
        self.places = 0;
        self.empty = HashSet::new();
        self.written = HashSet::new();
        self.again = Vec::new();
    }

    /// Whether the DAG put its blocks at more places than the assembler holds
    /// ([`MIN_PLACES`], plus one per [`BYTES_PER_PLACE`] of the blocks handed in; a crafted DAG
    /// repeats a block at N² places from a few small blocks): it writes nothing more, and the
    /// file must be exported from the store once every block is there
    /// ([`export`](super::export) takes memory in the DAG's depth only).
    pub fn is_given_up(&self) -> bool {
        self.given_up
    }

    /// Places of the file still waiting for their block: what the assembler holds.
    pub fn pending_places(&self) -> usize {
        self.places
    }

    /// Starts a background sync of the file unless one is running; reports a failed one.
    fn sync_in_background(&mut self) -> Result<(), ExportError> {
        if let Some(running) = self.syncing.take() {
            if !running.is_finished() {
                self.syncing = Some(running);
                return Ok(());
            }
            self.join_sync(running)?;
        }
        let io = |source| ExportError::Io {
            path: self.target.clone(),
            source,
        };
        let file = self.file.as_file().try_clone().map_err(io)?;
        let thread = std::thread::Builder::new()
            .name("file-sync".into())
            .spawn(move || file.sync_data())
            .map_err(io)?;
        self.syncing = Some(thread);
        self.unsynced = 0;
        Ok(())
    }

    fn join_sync(&self, thread: JoinHandle<io::Result<()>>) -> Result<(), ExportError> {
        thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the sync thread panicked")))
            .map_err(|source| ExportError::Io {
                path: self.target.clone(),
                source,
            })
    }

    /// Blocks handed in before that other places of the file need too: read them from the
    /// store and [`add`](Self::add) them again.
    pub fn take_again(&mut self) -> Vec<Cid> {
        std::mem::take(&mut self.again)
    }

    /// Whether every place of the file is written (never once [given up](Self::is_given_up)).
    pub fn is_complete(&self) -> bool {
        self.pending.is_empty() && !self.given_up
    }

    /// Makes the complete file durable (blocking): [`finish`](Self::finish) then only renames
    /// it. Fails if a block is still missing, or if the assembler [gave up](Self::is_given_up).
    pub fn sync(&mut self) -> Result<(), ExportError> {
        if self.given_up {
            return Err(ExportError::TooManyPlaces);
        }
        if let Some(cid) = self.pending.keys().next() {
            return Err(ExportError::Missing(*cid));
        }
        if let Some(running) = self.syncing.take() {
            self.join_sync(running)?;
        }
        self.file
            .as_file()
            .sync_all()
            .map_err(|source| ExportError::Io {
                path: self.target.clone(),
                source,
            })?;
        self.synced = true;
        Ok(())
    }

    /// Makes the file durable (unless [`sync`](Self::sync) did) and renames it onto the
    /// target, which must still not exist. Fails, removing the temporary file, if a block is
    /// still missing.
    pub fn finish(mut self) -> Result<Exported, ExportError> {
        if !self.synced {
            self.sync()?;
        }
        let io = |source| ExportError::Io {
            path: self.target.clone(),
            source,
        };
        self.metadata
            .apply(self.file.path(), DEFAULT_FILE_MODE)
            .map_err(io)?;
        self.file
            .persist_noclobber(&self.target)
            .map_err(|error| io(error.error))?;
        Ok(Exported {
            kind: EntryKind::File,
            bytes: self.bytes,
            blocks: self.blocks,
        })
    }
}

#[cfg(unix)]
fn write_at(file: &fs::File, data: &[u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(data, offset)
}

#[cfg(not(unix))]
fn write_at(mut file: &fs::File, data: &[u8], offset: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(data)
}
