//! Encoding: a [`Message`] into length-prefixed frames under [`MAX_MESSAGE_SIZE`], adapted to
//! the peer's [`Version`], with large block data shared rather than copied.

use bytes::{BufMut, Bytes, BytesMut};
use prost::{
    Message as _,
    encoding::{WireType, encode_key, encode_varint, encoded_len_varint, int32},
};

use super::{MAX_MESSAGE_SIZE, Version};
use crate::{
    message::{BlockPresenceType, Message, WantType},
    proto,
};

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
