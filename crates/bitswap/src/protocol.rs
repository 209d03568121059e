//! Protocol ids, versions and the wire format: an unsigned-varint length, then a protobuf
//! [`Message`](crate::Message) of at most [`MAX_MESSAGE_SIZE`] bytes.

use std::{fmt, io};

use bytes::Bytes;
use bytes::{BufMut, BytesMut};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use prost::{
    Message as _,
    encoding::{WireType, encode_key, encode_varint, encoded_len_varint, int32},
};

use crate::{
    decode::{DEFAULT_MAX_WANTS, Dropped, decode_message},
    message::{BlockPresenceType, Message, MessageError, WantType},
    proto,
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

/// Encodes `message` for a peer speaking `version`, split into frames (length prefix
/// included) of at most [`MAX_MESSAGE_SIZE`] protobuf bytes each. An empty message gives no
/// frame.
///
/// What older versions cannot carry is adapted or left out: before 1.2.0 a want-have becomes a
/// want-block and presences and pending bytes are not sent; before 1.1.0 blocks travel as bare
/// data, so only CIDv0 blocks can be sent (others are left out and logged).
pub fn encode(message: &Message, version: Version) -> Vec<Bytes> {
    segments(message, version)
        .into_iter()
        .map(|frame| match <[Bytes; 1]>::try_from(frame) {
            Ok([one]) => one,
            Err(parts) => Bytes::from(parts.concat()),
        })
        .collect()
}

/// Block data of at least this many bytes is not copied into the frame being encoded: the
/// frame refers to it as a segment of its own.
const ZERO_COPY_MIN: usize = 16 * 1024;

/// Like [`encode`], but each frame is a list of segments to write one after the other: large
/// block data is shared, not copied (a 256 KiB block would otherwise cost a fresh allocation
/// and a copy per send).
pub(crate) fn encode_segments(message: &Message, version: Version) -> Vec<Bytes> {
    segments(message, version).into_iter().flatten().collect()
}

fn segments(message: &Message, version: Version) -> Vec<Vec<Bytes>> {
    let pending_bytes = if version.supports_have() {
        message.pending_bytes
    } else {
        0
    };
    let mut frames = Splitter::new(message.wantlist.full, pending_bytes);
    for entry in &message.wantlist.entries {
        let have = entry.want_type == WantType::Have && version.supports_have();
        frames.add(Item::Entry(proto::Entry {
            block: Bytes::from(entry.cid.to_bytes()),
            priority: entry.priority,
            cancel: entry.cancel,
            want_type: if have {
                proto::WantType::Have
            } else {
                proto::WantType::Block
            } as i32,
            send_dont_have: entry.send_dont_have && version.supports_have(),
        }));
    }
    for block in &message.blocks {
        if version.supports_payload() {
            frames.add(Item::Payload(proto::Block {
                prefix: Bytes::from(block.prefix()),
                data: block.data().clone(),
            }));
        } else if block.cid().version() == cid::Version::V0 {
            frames.add(Item::Data(block.data().clone()));
        } else {
            tracing::debug!(cid = %block.cid(), %version, "CIDv1 block not sendable, left out");
        }
    }
    if version.supports_have() {
        for presence in &message.presences {
            frames.add(Item::Presence(proto::BlockPresence {
                cid: Bytes::from(presence.cid.to_bytes()),
                r#type: match presence.presence {
                    BlockPresenceType::Have => proto::BlockPresenceType::Have,
                    BlockPresenceType::DontHave => proto::BlockPresenceType::DontHave,
                } as i32,
            }));
        }
    }
    frames.finish()
}

/// One repeated element of a message.
enum Item {
    Entry(proto::Entry),
    Data(Bytes),
    Payload(proto::Block),
    Presence(proto::BlockPresence),
}

impl Item {
    /// Bytes the item adds inside its parent (tag, length, body); all tags are one byte.
    fn size(&self) -> usize {
        let body = match self {
            Self::Entry(entry) => entry.encoded_len(),
            Self::Data(data) => data.len(),
            Self::Payload(block) => block.encoded_len(),
            Self::Presence(presence) => presence.encoded_len(),
        };
        1 + encoded_len_varint(body as u64) + body
    }
}

/// Packs items into messages of at most [`MAX_MESSAGE_SIZE`] bytes, keeping exact sizes.
struct Splitter {
    /// The wantlist replaces the old one: said in the first message only.
    full: bool,
    pending_bytes: i32,
    current: proto::Message,
    /// Bytes of the wantlist's entries in `current`.
    entries_size: usize,
    /// Bytes of everything else in `current` but the wantlist and pending bytes.
    rest_size: usize,
    frames: Vec<Vec<Bytes>>,
}

impl Splitter {
    fn new(full: bool, pending_bytes: i32) -> Self {
        Self {
            full,
            pending_bytes,
            current: proto::Message::default(),
            entries_size: 0,
            rest_size: 0,
            frames: Vec::new(),
        }
    }

    /// Encoded size of the current message if its entries took `entries` bytes.
    fn size_with(&self, entries: usize, rest: usize) -> usize {
        let full = if self.full { 2 } else { 0 };
        let wantlist = entries + full;
        let wantlist_field = if entries > 0 || self.full {
            1 + encoded_len_varint(wantlist as u64) + wantlist
        } else {
            0
        };
        let pending = if self.pending_bytes == 0 {
            0
        } else {
            int32::encoded_len(5, &self.pending_bytes)
        };
        wantlist_field + rest + pending
    }

    fn add(&mut self, item: Item) {
        let size = item.size();
        let (entries, rest) = match item {
            Item::Entry(_) => (self.entries_size + size, self.rest_size),
            _ => (self.entries_size, self.rest_size + size),
        };
        if self.size_with(entries, rest) > MAX_MESSAGE_SIZE && !self.is_empty() {
            self.flush();
            return self.add(item);
        }
        self.entries_size = entries;
        self.rest_size = rest;
        match item {
            Item::Entry(entry) => {
                self.current
                    .wantlist
                    .get_or_insert_with(Default::default)
                    .entries
                    .push(entry);
            }
            Item::Data(data) => self.current.blocks.push(data),
            Item::Payload(block) => self.current.payload.push(block),
            Item::Presence(presence) => self.current.block_presences.push(presence),
        }
    }

    fn is_empty(&self) -> bool {
        self.entries_size == 0 && self.rest_size == 0
    }

    fn flush(&mut self) {
        let mut message = std::mem::take(&mut self.current);
        if self.full {
            message.wantlist.get_or_insert_with(Default::default).full = true;
        }
        message.pending_bytes = self.pending_bytes;
        debug_assert_eq!(
            message.encoded_len(),
            self.size_with(self.entries_size, self.rest_size)
        );
        debug_assert!(message.encoded_len() <= MAX_MESSAGE_SIZE);
        let frame = frame_segments(&message);
        debug_assert_eq!(
            frame.concat(),
            message.encode_length_delimited_to_vec(),
            "segments differ from prost's encoding"
        );
        self.frames.push(frame);
        self.full = false;
        self.entries_size = 0;
        self.rest_size = 0;
    }

    fn finish(mut self) -> Vec<Vec<Bytes>> {
        if !self.is_empty() || self.full {
            self.flush();
        }
        self.frames
    }
}

/// Encodes `message` with its length prefix, as prost would, into segments: block data of at
/// least [`ZERO_COPY_MIN`] bytes is a segment of its own (shared, not copied). Fields go in
/// tag order and empty proto3 scalars are left out, exactly as prost does.
fn frame_segments(message: &proto::Message) -> Vec<Bytes> {
    let mut segments = Vec::new();
    let mut buf = BytesMut::with_capacity(1024);
    encode_varint(message.encoded_len() as u64, &mut buf);
    if let Some(wantlist) = &message.wantlist {
        prost::encoding::message::encode(1, wantlist, &mut buf);
    }
    for block in &message.blocks {
        encode_key(2, WireType::LengthDelimited, &mut buf);
        encode_varint(block.len() as u64, &mut buf);
        put_data(block, &mut buf, &mut segments);
    }
    for block in &message.payload {
        encode_key(3, WireType::LengthDelimited, &mut buf);
        encode_varint(block.encoded_len() as u64, &mut buf);
        if !block.prefix.is_empty() {
            prost::encoding::bytes::encode(1, &block.prefix, &mut buf);
        }
        if !block.data.is_empty() {
            encode_key(2, WireType::LengthDelimited, &mut buf);
            encode_varint(block.data.len() as u64, &mut buf);
            put_data(&block.data, &mut buf, &mut segments);
        }
    }
    for presence in &message.block_presences {
        prost::encoding::message::encode(4, presence, &mut buf);
    }
    if message.pending_bytes != 0 {
        int32::encode(5, &message.pending_bytes, &mut buf);
    }
    if !buf.is_empty() {
        segments.push(buf.freeze());
    }
    segments
}

/// Appends block data: copied into `buf` if small, else as its own shared segment after what
/// `buf` holds so far.
fn put_data(data: &Bytes, buf: &mut BytesMut, segments: &mut Vec<Bytes>) {
    if data.len() >= ZERO_COPY_MIN {
        segments.push(buf.split().freeze());
        segments.push(data.clone());
    } else {
        buf.put_slice(data);
    }
}

#[cfg(test)]
mod tests {
    use futures::{executor::block_on, io::Cursor};
    use multihash_codetable::{Code, MultihashDigest};
    use proptest::prelude::*;

    use super::*;
    use crate::{Block, BlockPresence, Entry, MAX_BLOCK_SIZE, message::Wantlist};

    fn raw_block(data: &[u8]) -> Block {
        let cid = cid::Cid::new_v1(0x55, Code::Sha2_256.digest(data));
        Block::new(cid, Bytes::copy_from_slice(data)).expect("valid")
    }

    fn v0_block(data: &[u8]) -> Block {
        Block::from_v0_data(Bytes::copy_from_slice(data)).expect("valid")
    }

    #[test]
    fn large_blocks_are_segments_of_their_own_and_bytes_match_prost() {
        let small = raw_block(&[1; 100]);
        let large = raw_block(&[2; 300 * 1024]);
        let v0 = v0_block(&[3; 20 * 1024]);
        let message = Message {
            blocks: vec![small, large.clone(), v0],
            pending_bytes: 7,
            ..Message::default()
        };
        for version in Version::ALL {
            let segments = encode_segments(&message, version);
            let frames = encode(&message, version);
            assert_eq!(segments.concat(), frames.concat(), "{version}");
            assert_eq!(read_all(&frames).expect("decodes").len(), frames.len());
            // The large block's bytes are shared, not copied.
            if version.supports_payload() {
                assert!(
                    segments
                        .iter()
                        .any(|s| s.as_ptr() == large.data().as_ptr()
                            && s.len() == large.data().len()),
                    "{version}: large block copied"
                );
            }
        }
    }

    /// Reads every message from the concatenated frames, keeping every want.
    fn read_all(frames: &[Bytes]) -> Result<Vec<Message>, ProtocolError> {
        let bytes: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let mut io = Cursor::new(bytes);
        block_on(async {
            let mut out = Vec::new();
            while let Some(len) = read_message_length(&mut io).await? {
                out.push(read_message_body(&mut io, len, usize::MAX).await?.0);
            }
            Ok(out)
        })
    }

    fn read_one(bytes: Vec<u8>) -> Result<Option<Message>, ProtocolError> {
        block_on(read_message(&mut Cursor::new(bytes)))
    }

    fn sample() -> Message {
        let have = raw_block(b"have");
        Message {
            wantlist: Wantlist {
                entries: vec![
                    Entry::want_have(*raw_block(b"a").cid(), 7),
                    Entry::want_block(*v0_block(b"b").cid(), 3),
                    Entry::cancel(*raw_block(b"c").cid()),
                ],
                full: true,
            },
            blocks: vec![raw_block(b"raw"), v0_block(b"dag-pb")],
            presences: vec![
                BlockPresence {
                    cid: *have.cid(),
                    presence: BlockPresenceType::Have,
                },
                BlockPresence {
                    cid: *raw_block(b"none").cid(),
                    presence: BlockPresenceType::DontHave,
                },
            ],
            pending_bytes: 12345,
        }
    }

    #[test]
    fn version_ids_round_trip() {
        for version in Version::ALL {
            assert_eq!(
                Version::from_protocol(version.protocol().as_ref()),
                Some(version)
            );
        }
        assert_eq!(Version::from_protocol("/ipfs/bitswap/1.3.0"), None);
        assert_eq!(Version::V1_2_0.to_string(), "/ipfs/bitswap/1.2.0");
    }

    #[test]
    fn v1_2_keeps_everything() {
        let message = sample();
        let frames = encode(&message, Version::V1_2_0);
        assert_eq!(frames.len(), 1);
        assert_eq!(read_all(&frames).expect("decodes"), [message]);
    }

    #[test]
    fn v1_1_asks_blocks_instead_of_haves_and_sends_no_presences() {
        let message = sample();
        let got = read_all(&encode(&message, Version::V1_1_0)).expect("decodes");
        let got = &got[0];
        assert!(
            got.wantlist
                .entries
                .iter()
                .all(|e| e.want_type == WantType::Block && !e.send_dont_have)
        );
        assert_eq!(got.wantlist.entries.len(), 3);
        assert_eq!(
            got.blocks, message.blocks,
            "CIDv1 blocks travel with a prefix"
        );
        assert!(got.presences.is_empty());
        assert_eq!(got.pending_bytes, 0);
    }

    #[test]
    fn v1_0_sends_cidv0_blocks_as_data_only() {
        let message = sample();
        for version in [Version::V1_0_0, Version::Legacy] {
            let got = read_all(&encode(&message, version)).expect("decodes");
            assert_eq!(got[0].blocks, [v0_block(b"dag-pb")]);
            assert!(got[0].presences.is_empty());
        }
    }

    #[test]
    fn empty_messages_make_no_frame_but_an_empty_full_wantlist_does() {
        assert!(encode(&Message::default(), Version::V1_2_0).is_empty());
        let mut clear = Message::default();
        clear.wantlist.full = true;
        let got = read_all(&encode(&clear, Version::V1_2_0)).expect("decodes");
        assert_eq!(got, [clear]);
    }

    #[test]
    fn large_messages_are_split_under_the_limit() {
        let blocks: Vec<Block> = (0u8..5)
            .map(|i| raw_block(&vec![i; MAX_BLOCK_SIZE]))
            .collect();
        let entries: Vec<Entry> = (0u32..100_000)
            .map(|i| Entry::want_block(*raw_block(&i.to_le_bytes()).cid(), i as i32))
            .collect();
        let message = Message {
            wantlist: Wantlist {
                entries: entries.clone(),
                full: true,
            },
            blocks: blocks.clone(),
            presences: Vec::new(),
            pending_bytes: -1,
        };
        let frames = encode(&message, Version::V1_2_0);
        assert!(frames.len() >= 6, "{} frames", frames.len());
        for frame in &frames {
            assert!(frame.len() <= MAX_MESSAGE_SIZE + MAX_VARINT_LEN);
        }
        let got = read_all(&frames).expect("decodes");
        assert!(got[0].wantlist.full);
        assert!(got[1..].iter().all(|m| !m.wantlist.full));
        assert!(got.iter().all(|m| m.pending_bytes == -1));
        let all_entries: Vec<Entry> = got
            .iter()
            .flat_map(|m| m.wantlist.entries.clone())
            .collect();
        let all_blocks: Vec<Block> = got.iter().flat_map(|m| m.blocks.clone()).collect();
        assert_eq!(all_entries, entries);
        assert_eq!(all_blocks, blocks);
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let mut bytes = Vec::new();
        let mut buf = unsigned_varint::encode::u64_buffer();
        bytes.extend_from_slice(unsigned_varint::encode::u64(64 << 20, &mut buf));
        match read_one(bytes) {
            Err(ProtocolError::MessageTooLarge { declared }) => assert_eq!(declared, 64 << 20),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn clean_and_unclean_ends() {
        assert!(read_one(Vec::new()).expect("clean end").is_none());
        // A length of 10 followed by 3 bytes.
        assert!(matches!(
            read_one(vec![10, 1, 2, 3]),
            Err(ProtocolError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof
        ));
        // A varint cut short.
        assert!(matches!(read_one(vec![0x80]), Err(ProtocolError::Io(_))));
        // A varint that never ends.
        assert!(matches!(
            read_one(vec![0xff; 11]),
            Err(ProtocolError::BadLength)
        ));
        // A zero-length message is an empty message.
        assert_eq!(read_one(vec![0]).expect("empty"), Some(Message::default()));
    }

    #[test]
    fn invalid_protobuf_and_invalid_blocks_are_typed() {
        assert!(matches!(
            read_one(vec![3, 0xff, 0xff, 0xff]),
            Err(ProtocolError::Decode(_))
        ));
        let bad_prefix = proto::Message {
            payload: vec![proto::Block {
                // CID version 2 does not exist.
                prefix: Bytes::from_static(&[2, 0x55, 0x12, 32]),
                data: Bytes::from_static(b"x"),
            }],
            ..Default::default()
        };
        assert!(matches!(
            read_one(bad_prefix.encode_length_delimited_to_vec()),
            Err(ProtocolError::Invalid(MessageError::Block { index: 0, .. }))
        ));
    }

    #[test]
    fn entries_and_blocks_that_make_no_sense_alone_are_left_out() {
        let good = *raw_block(b"good").cid();
        let message = proto::Message {
            wantlist: Some(proto::Wantlist {
                entries: vec![
                    proto::Entry {
                        block: Bytes::from_static(b"not a cid"),
                        ..Default::default()
                    },
                    proto::Entry {
                        block: Bytes::from(good.to_bytes()),
                        want_type: 7,
                        ..Default::default()
                    },
                ],
                full: false,
            }),
            payload: vec![proto::Block {
                // CIDv1, raw, multihash code 0x99 (not a hash this crate knows), 32 bytes.
                prefix: Bytes::from_static(&[1, 0x55, 0x99, 0x01, 32]),
                data: Bytes::from_static(b"x"),
            }],
            ..Default::default()
        };
        let bytes = Bytes::from(message.encode_to_vec());
        let (message, dropped) = decode_message(&bytes, 1024).expect("decodes");
        assert_eq!(message.wantlist.entries.len(), 1);
        assert_eq!(message.wantlist.entries[0].cid, good);
        assert_eq!(message.wantlist.entries[0].want_type, WantType::Have);
        assert!(message.blocks.is_empty());
        assert_eq!((dropped.entries, dropped.unsupported_blocks), (1, 1));
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            any::<[u8; 8]>(),
            any::<i32>(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(seed, priority, have, dont_have, cancel)| Entry {
                cid: *raw_block(&seed).cid(),
                priority,
                want_type: if have {
                    WantType::Have
                } else {
                    WantType::Block
                },
                send_dont_have: dont_have,
                cancel,
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            prop::collection::vec(entry(), 0..20),
            any::<bool>(),
            prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..5),
            prop::collection::vec((any::<[u8; 4]>(), any::<bool>()), 0..5),
            any::<i32>(),
        )
            .prop_map(
                |(entries, full, blocks, presences, pending_bytes)| Message {
                    wantlist: Wantlist { entries, full },
                    blocks: blocks
                        .iter()
                        .map(|d| {
                            if d.len() % 2 == 0 {
                                raw_block(d)
                            } else {
                                v0_block(d)
                            }
                        })
                        .collect(),
                    presences: presences
                        .iter()
                        .map(|(seed, have)| BlockPresence {
                            cid: *raw_block(seed).cid(),
                            presence: if *have {
                                BlockPresenceType::Have
                            } else {
                                BlockPresenceType::DontHave
                            },
                        })
                        .collect(),
                    pending_bytes,
                },
            )
    }

    /// What a peer of `version` receives of `message`: a block repeated in one message is
    /// kept once.
    fn downgraded(message: &Message, version: Version) -> Message {
        let mut expected = message.clone();
        let mut seen = std::collections::HashSet::new();
        expected.blocks.retain(|block| seen.insert(*block.cid()));
        if !version.supports_have() {
            for entry in &mut expected.wantlist.entries {
                entry.want_type = WantType::Block;
                entry.send_dont_have = false;
            }
            expected.presences.clear();
            expected.pending_bytes = 0;
        }
        if !version.supports_payload() {
            expected
                .blocks
                .retain(|block| block.cid().version() == cid::Version::V0);
        }
        expected
    }

    proptest! {
        #[test]
        fn v1_2_round_trips(message in message()) {
            let frames = encode(&message, Version::V1_2_0);
            let got = read_all(&frames).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if message.is_empty() {
                // Nothing to say (pending bytes alone are not worth a message).
                prop_assert!(got.is_empty());
            } else {
                prop_assert_eq!(got, vec![downgraded(&message, Version::V1_2_0)]);
            }
        }

        #[test]
        fn every_version_round_trips_what_it_can_carry(message in message()) {
            for version in Version::ALL {
                let got = read_all(&encode(&message, version))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let expected = downgraded(&message, version);
                if expected.is_empty() {
                    prop_assert!(got.is_empty());
                } else {
                    prop_assert_eq!(got, vec![expected]);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_one(bytes);
        }
    }
}
