//! UnixFS 1.5 metadata: a node's permission bits (`mode`, field 7) and modification time
//! (`mtime`, field 8), as `add --preserve-mode --preserve-mtime` stores them and an export
//! restores them.
//!
//! The two fields come after every field of [`UnixfsData`](super::UnixfsData) in tag order, so
//! they are encoded apart and appended to its encoding (protobuf writes fields in tag order,
//! which is what kubo and Helia hash), and decoded apart from the same bytes (protobuf skips the
//! fields a message does not know). A node without metadata is byte for byte what it was
//! before metadata existed, so its CID does not change.
//!
//! What is written follows Helia's `ipfs-unixfs`, whose CIDs the importer matches: a mode equal
//! to the spec's default for the node's kind (`0o644` for a file, `0o755` for a directory) is
//! left out, and so is a fractional part of zero nanoseconds (the spec forbids writing it).

use std::{
    fs, io,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use prost::Message as _;

use super::export::set_mode;

/// The permission bits the spec defines: `ugo-rwx`, setuid, setgid and sticky.
pub const MODE_BITS: u32 = 0o7777;
/// The mode of a file without one: the spec's default.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// The mode of a directory without one: the spec's default.
pub const DEFAULT_DIRECTORY_MODE: u32 = 0o755;
/// The largest valid fractional part of an `mtime`.
const MAX_NANOS: u32 = 999_999_999;

/// A modification time: seconds from the Unix epoch (negative before it) and nanoseconds
/// after them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mtime {
    /// Whole seconds from 1970-01-01T00:00:00Z.
    pub seconds: i64,
    /// Nanoseconds after `seconds`, below 10^9.
    pub nanos: u32,
}

impl Mtime {
    /// The time of `time`, or `None` past the range of 2^63 seconds either side of the epoch.
    pub fn from_system_time(time: SystemTime) -> Option<Self> {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => Some(Self {
                seconds: i64::try_from(after.as_secs()).ok()?,
                nanos: after.subsec_nanos(),
            }),
            Err(before) => {
                // A time before the epoch: whole seconds rounded down, nanoseconds after them.
                let before = before.duration();
                let mut seconds = -i64::try_from(before.as_secs()).ok()?;
                let mut nanos = before.subsec_nanos();
                if nanos > 0 {
                    seconds = seconds.checked_sub(1)?;
                    nanos = 1_000_000_000 - nanos;
                }
                Some(Self { seconds, nanos })
            }
        }
    }

    /// The time as a [`SystemTime`], or `None` if this platform's clock cannot hold it.
    pub fn to_system_time(self) -> Option<SystemTime> {
        let whole = Duration::from_secs(self.seconds.unsigned_abs());
        let at = if self.seconds >= 0 {
            UNIX_EPOCH.checked_add(whole)?
        } else {
            UNIX_EPOCH.checked_sub(whole)?
        };
        at.checked_add(Duration::from_nanos(u64::from(self.nanos)))
    }
}

/// The metadata of a UnixFS node: both fields are optional, and absent by default (the CIDs of
/// kubo's `ipfs add` without `--preserve-*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// The permission bits (see [`MODE_BITS`]); bits above them read from a node are kept.
    pub mode: Option<u32>,
    /// The modification time.
    pub mtime: Option<Mtime>,
}

/// Why a node's metadata is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// The fields do not decode.
    #[error("malformed UnixFS metadata: {0}")]
    Decode(#[source] prost::DecodeError),
    /// An `mtime` without its seconds, which the spec requires.
    #[error("UnixFS mtime without seconds")]
    NoSeconds,
    /// An `mtime` whose fractional part is 10^9 nanoseconds or more.
    #[error("UnixFS mtime with {0} nanoseconds (at most {MAX_NANOS})")]
    Nanos(u32),
}

/// Fields 7 and 8 of the UnixFS `Data` message, as prost reads and writes them.
#[derive(Clone, PartialEq, prost::Message)]
struct MetadataFields {
    #[prost(uint32, optional, tag = "7")]
    mode: Option<u32>,
    #[prost(message, optional, tag = "8")]
    mtime: Option<UnixTime>,
}

/// The UnixFS `UnixTime` message.
#[derive(Clone, PartialEq, prost::Message)]
struct UnixTime {
    #[prost(int64, optional, tag = "1")]
    seconds: Option<i64>,
    #[prost(fixed32, optional, tag = "2")]
    fractional_nanoseconds: Option<u32>,
}

impl Metadata {
    /// Whether neither field is set: the node is written as it was before UnixFS 1.5.
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.mtime.is_none()
    }

    /// The metadata of the file system entry `metadata` describes, with the fields asked for.
    pub fn from_fs(metadata: &fs::Metadata, mode: bool, mtime: bool) -> Self {
        Self {
            mode: mode.then(|| fs_mode(metadata)).flatten(),
            mtime: if mtime {
                metadata.modified().ok().and_then(Mtime::from_system_time)
            } else {
                None
            },
        }
    }

    /// Appends the fields to the encoded UnixFS `Data` of a node (fields 1 to 6), leaving out a
    /// mode equal to `default_mode` (the default of the node's kind) and a fractional part of
    /// zero. Appends nothing for empty metadata.
    pub fn append_to(&self, data: &mut Vec<u8>, default_mode: u32) {
        let fields = MetadataFields {
            mode: self.mode.filter(|mode| *mode != default_mode),
            mtime: self.mtime.map(|mtime| UnixTime {
                seconds: Some(mtime.seconds),
                fractional_nanoseconds: (mtime.nanos != 0).then_some(mtime.nanos),
            }),
        };
        data.extend_from_slice(&fields.encode_to_vec());
    }

    /// The metadata in the encoded UnixFS `Data` of a node (other fields are skipped).
    ///
    /// A fractional part of 0, which the spec forbids writing, is read as whole seconds:
    /// `ipfs-unixfs` writes one when it is given one, and refusing the DAG for it would help no
    /// one. One of 10^9 or more cannot be a time, and is an error.
    pub fn decode(data: &[u8]) -> Result<Self, MetadataError> {
        let fields = MetadataFields::decode(data).map_err(MetadataError::Decode)?;
        let mtime = match fields.mtime {
            None => None,
            Some(time) => {
                let seconds = time.seconds.ok_or(MetadataError::NoSeconds)?;
                let nanos = time.fractional_nanoseconds.unwrap_or(0);
                if nanos > MAX_NANOS {
                    return Err(MetadataError::Nanos(nanos));
                }
                Some(Mtime { seconds, nanos })
            }
        };
        Ok(Self {
            mode: fields.mode,
            mtime,
        })
    }

    /// Sets the mode (its [`MODE_BITS`], or `default_mode` without one) and the mtime (if any)
    /// of the file or directory at `path`. The time goes first: a mode without write or read
    /// permission for the owner must not keep it from being set.
    pub fn apply(&self, path: &Path, default_mode: u32) -> io::Result<()> {
        if let Some(time) = self.mtime.and_then(Mtime::to_system_time) {
            let file = fs::File::open(path)?;
            file.set_times(fs::FileTimes::new().set_modified(time))?;
        }
        set_mode(
            path,
            self.mode.map_or(default_mode, |mode| mode & MODE_BITS),
        )
    }
}

#[cfg(unix)]
#[expect(
    clippy::unnecessary_wraps,
    reason = "the signature of the version off Unix, which has no mode to read"
)]
fn fs_mode(metadata: &fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(metadata.permissions().mode() & MODE_BITS)
}

#[cfg(not(unix))]
fn fs_mode(_metadata: &fs::Metadata) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metadata: &Metadata, default_mode: u32) -> Vec<u8> {
        let mut data = Vec::new();
        metadata.append_to(&mut data, default_mode);
        data
    }

    #[test]
    fn empty_metadata_appends_nothing() {
        assert!(encoded(&Metadata::default(), DEFAULT_FILE_MODE).is_empty());
    }

    #[test]
    fn fields_are_protobuf_fields_7_and_8() {
        let metadata = Metadata {
            mode: Some(0o755),
            mtime: Some(Mtime {
                seconds: 1_700_000_000,
                nanos: 5,
            }),
        };
        let bytes = encoded(&metadata, DEFAULT_FILE_MODE);
        // Field 7, varint 0o755 = 493; field 8, a message of field 1 (varint) and field 2
        // (fixed32, little-endian).
        let mut expected = vec![0x38, 0xed, 0x03, 0x42, 0x0b, 0x08];
        expected.extend([0x80, 0xe2, 0xcf, 0xaa, 0x06]);
        expected.extend([0x15, 5, 0, 0, 0]);
        assert_eq!(bytes, expected);
        assert_eq!(Metadata::decode(&bytes).unwrap(), metadata);
    }

    #[test]
    fn defaults_and_zero_nanoseconds_are_left_out() {
        let metadata = Metadata {
            mode: Some(0o644),
            mtime: Some(Mtime {
                seconds: -1,
                nanos: 0,
            }),
        };
        let bytes = encoded(&metadata, DEFAULT_FILE_MODE);
        // No field 7; an mtime of seconds only (-1 is ten bytes of varint).
        assert_eq!(bytes[..2], [0x42, 0x0b]);
        assert_eq!(bytes.len(), 13);
        let decoded = Metadata::decode(&bytes).unwrap();
        assert_eq!((decoded.mode, decoded.mtime), (None, metadata.mtime));
        // A directory's default is another.
        assert_eq!(encoded(&metadata, DEFAULT_DIRECTORY_MODE)[0], 0x38);
    }

    #[test]
    fn other_fields_are_skipped() {
        let mut bytes = super::super::UnixfsData::directory().encode_to_vec();
        Metadata {
            mode: Some(0o700),
            mtime: None,
        }
        .append_to(&mut bytes, DEFAULT_DIRECTORY_MODE);
        assert_eq!(Metadata::decode(&bytes).unwrap().mode, Some(0o700));
        assert!(Metadata::decode(&[0x08, 0x02]).unwrap().is_empty());
    }

    #[test]
    fn malformed_fields_are_typed_errors() {
        // Nanoseconds of 10^9.
        let bad_nanos = [0x42, 0x07, 0x08, 0x01, 0x15, 0x00, 0xca, 0x9a, 0x3b];
        assert!(matches!(
            Metadata::decode(&bad_nanos),
            Err(MetadataError::Nanos(1_000_000_000))
        ));
        // An mtime without seconds.
        assert!(matches!(
            Metadata::decode(&[0x42, 0x00]),
            Err(MetadataError::NoSeconds)
        ));
        // An mtime longer than the data; a mode of the wrong wire type; a varint that never
        // ends.
        for bytes in [&[0x42, 0x05, 0x08][..], &[0x3a, 0x01, 0x00], &[0x38, 0xff]] {
            assert!(
                matches!(Metadata::decode(bytes), Err(MetadataError::Decode(_))),
                "{bytes:?}"
            );
        }
        // Mode bits the spec does not define are kept, and masked off when applied.
        let mode = Metadata::decode(&[0x38, 0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap();
        assert_eq!(mode.mode, Some(u32::MAX));
    }

    /// Every truncation of a node's data with metadata, and every value of every byte of it,
    /// decodes to metadata or to an error, without panicking.
    #[test]
    fn damaged_fields_never_panic() {
        let mut data =
            super::super::UnixfsData::file(bytes::Bytes::from_static(b"x"), vec![]).encode_to_vec();
        Metadata {
            mode: Some(0o4755),
            mtime: Some(Mtime {
                seconds: -5,
                nanos: 9,
            }),
        }
        .append_to(&mut data, DEFAULT_FILE_MODE);
        for end in 0..data.len() {
            let _ = Metadata::decode(&data[..end]);
        }
        let mut damaged = data.clone();
        for at in 0..data.len() {
            for value in 0..=u8::MAX {
                damaged[at] = value;
                if let Ok(metadata) = Metadata::decode(&damaged) {
                    assert!(metadata.mtime.is_none_or(|mtime| mtime.nanos <= MAX_NANOS));
                }
            }
            damaged[at] = data[at];
        }
    }

    #[test]
    fn times_before_and_after_the_epoch_round_trip() {
        for (seconds, nanos) in [
            (0, 0),
            (1_700_000_000, 123),
            (-1, 999_999_999),
            (-86_400, 0),
        ] {
            let mtime = Mtime { seconds, nanos };
            let time = mtime.to_system_time().unwrap();
            assert_eq!(Mtime::from_system_time(time), Some(mtime));
        }
    }
}
