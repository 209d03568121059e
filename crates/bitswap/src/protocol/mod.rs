//! The wire format, for tools and tests that speak Bitswap on a raw stream: protocol ids and
//! versions, and frames of an unsigned-varint length then a protobuf
//! [`Message`] of at most [`MAX_MESSAGE_SIZE`] bytes. [`encode`] and
//! [`write_frames`] send a message, [`read_message`] reads one (through [`decode_message`],
//! which bounds memory whatever the message's shape). An embedder of
//! [`Behaviour`](crate::Behaviour) needs none of it: the behaviour frames its own streams.

mod encode;
#[cfg(test)]
mod tests;

use std::{fmt, io};

use bytes::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;

pub use self::encode::encode;
pub(crate) use self::encode::encode_segments;
pub use crate::decode::{
    Dropped, MAX_BLOCKS_PER_MESSAGE, MAX_CID_SIZE, MAX_PRESENCES_PER_MESSAGE, decode_message,
};
use crate::{
    decode::DEFAULT_MAX_WANTS,
    message::{Message, MessageError},
};

/// Largest protobuf message sent or accepted, in bytes: 4 MiB, the spec's limit.
pub const MAX_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Longest unsigned varint for a `u64`, in bytes.
const MAX_VARINT_LEN: usize = 10;

/// What [`read_message`] allocates before the message's bytes arrive, at most: one 256 KiB
/// block and its framing fit.
const FIRST_READ_BUFFER: usize = 512 * 1024;

/// A Bitswap protocol version, as negotiated per stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// `/ipfs/bitswap/1.2.0`: want-have, DONT_HAVE, block presences, pending bytes.
    V1_2_0,
    /// `/ipfs/bitswap/1.1.0`: blocks with a CID prefix, so CIDv1 blocks.
    V1_1_0,
    /// `/ipfs/bitswap/1.0.0`: CIDv0 blocks as bare data.
    V1_0_0,
    /// `/ipfs/bitswap`: the same wire as 1.0.0.
    Legacy,
}

impl Version {
    /// Every version, most preferred first.
    pub const ALL: [Self; 4] = [Self::V1_2_0, Self::V1_1_0, Self::V1_0_0, Self::Legacy];

    /// The protocol id.
    pub fn protocol(self) -> StreamProtocol {
        StreamProtocol::new(match self {
            Self::V1_2_0 => "/ipfs/bitswap/1.2.0",
            Self::V1_1_0 => "/ipfs/bitswap/1.1.0",
            Self::V1_0_0 => "/ipfs/bitswap/1.0.0",
            Self::Legacy => "/ipfs/bitswap",
        })
    }

    /// The version of a protocol id, if it is a Bitswap one.
    pub fn from_protocol(protocol: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|version| version.protocol().as_ref() == protocol)
    }

    /// Whether the version knows want-have, DONT_HAVE, presences and pending bytes.
    pub fn supports_have(self) -> bool {
        self == Self::V1_2_0
    }

    /// Whether blocks travel with a CID prefix (so CIDv1 blocks can be sent).
    pub fn supports_payload(self) -> bool {
        matches!(self, Self::V1_2_0 | Self::V1_1_0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.protocol().as_ref())
    }
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The declared length exceeds [`MAX_MESSAGE_SIZE`]; nothing was allocated for it.
    #[error("message of {declared} bytes exceeds the 4 MiB limit")]
    MessageTooLarge {
        /// Length the peer declared, in bytes.
        declared: u64,
    },
    /// The length prefix is not a valid varint.
    #[error("malformed length prefix")]
    BadLength,
    /// The bytes are not a protobuf of the Bitswap schema.
    #[error("malformed protobuf: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The protobuf decodes but its content is invalid.
    #[error("invalid message: {0}")]
    Invalid(#[from] MessageError),
}

impl ProtocolError {
    /// Whether the peer broke the protocol, rather than the stream failing or ending early.
    pub fn is_violation(&self) -> bool {
        !matches!(self, Self::Io(_))
    }
}

/// Reads one message. Returns `Ok(None)` if the stream ends cleanly before a message starts.
///
/// A declared length over [`MAX_MESSAGE_SIZE`] is refused before anything is allocated. The
/// buffer starts at the declared length up to 512 KiB and grows only as bytes arrive, to the
/// exact length (blocks keep slices of it, so no spare capacity is kept alive). The body is
/// decoded as [`decode_message`] does, with the default cap of 1024 wants.
pub async fn read_message<R>(io: &mut R) -> Result<Option<Message>, ProtocolError>
where
    R: AsyncRead + Unpin,
{
    let Some(len) = read_message_length(io).await? else {
        return Ok(None);
    };
    Ok(Some(read_message_body(io, len, DEFAULT_MAX_WANTS).await?.0))
}

/// Reads the length prefix of the next message: `None` on a clean end of stream before it,
/// an error if it is malformed or over [`MAX_MESSAGE_SIZE`].
pub(crate) async fn read_message_length<R>(io: &mut R) -> Result<Option<usize>, ProtocolError>
where
    R: AsyncRead + Unpin,
{
    match read_length(io).await? {
        None => Ok(None),
        Some(len) if len > MAX_MESSAGE_SIZE as u64 => {
            Err(ProtocolError::MessageTooLarge { declared: len })
        }
        Some(len) => Ok(Some(len as usize)),
    }
}

/// Reads the `len` bytes of a message body (after [`read_message_length`]) and decodes them
/// as [`decode_message`] does.
pub(crate) async fn read_message_body<R>(
    io: &mut R,
    len: usize,
    max_wants: usize,
) -> Result<(Message, Dropped), ProtocolError>
where
    R: AsyncRead + Unpin,
{
    let body = read_body(io, len).await?;
    decode_message(&body, max_wants)
}

/// Reads `len` bytes (at most [`MAX_MESSAGE_SIZE`], checked by [`read_message_length`]).
async fn read_body<R: AsyncRead + Unpin>(io: &mut R, len: usize) -> Result<Bytes, ProtocolError> {
    let mut buf = vec![0u8; len.min(FIRST_READ_BUFFER)];
    let mut filled = 0;
    while filled < len {
        if filled == buf.len() {
            buf.resize(len.min(filled * 2), 0);
        }
        match io.read(&mut buf[filled..]).await? {
            0 => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            n => filled += n,
        }
    }
    Ok(Bytes::from(buf))
}

/// Reads the varint length prefix; `None` on a clean end of stream before its first byte.
async fn read_length<R: AsyncRead + Unpin>(io: &mut R) -> Result<Option<u64>, ProtocolError> {
    let mut buf = [0u8; MAX_VARINT_LEN];
    for i in 0..MAX_VARINT_LEN {
        if io.read(&mut buf[i..=i]).await? == 0 {
            if i == 0 {
                return Ok(None);
            }
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        if buf[i] & 0x80 == 0 {
            let (len, _) =
                unsigned_varint::decode::u64(&buf[..=i]).map_err(|_| ProtocolError::BadLength)?;
            return Ok(Some(len));
        }
    }
    Err(ProtocolError::BadLength)
}

/// Writes frames made by [`encode`] and flushes; does not close the stream.
pub async fn write_frames<W>(io: &mut W, frames: &[Bytes]) -> Result<(), ProtocolError>
where
    W: AsyncWrite + Unpin,
{
    for frame in frames {
        io.write_all(frame).await?;
    }
    io.flush().await?;
    Ok(())
}
