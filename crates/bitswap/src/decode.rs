//! Decoding a message body into a [`Message`] with memory bounded by caps, whatever the
//! body's shape.
//!
//! A protobuf decoder makes one element per repeated field it meets, and the smallest
//! elements cost two bytes on the wire (an empty legacy block is `0x12 0x00`): decoded whole,
//! a 4 MiB body of them is two million `Bytes` and then two million blocks, each hashed,
//! hundreds of MiB in all. So the body is read here field by field: a first pass checks its
//! structure and counts its repeated fields without allocating anything, and a second one
//! keeps at most a fixed number of each kind ([`MAX_BLOCKS_PER_MESSAGE`],
//! [`MAX_PRESENCES_PER_MESSAGE`], and wants and cancels from the configured wantlist cap),
//! leaving the rest out before any CID is parsed or any block hashed. Identical blocks are kept
//! (and hashed) once. Block data stays a slice of the body, never a copy.
//!
//! Decoding is as lenient as boxo's where strictness would break real peers: an entry or a
//! presence that makes no sense alone (a CID that does not parse or is too long, an unknown
//! presence type) is left out and counted in [`Dropped`], not the whole message; an unknown
//! want type is a want-have; a block hashed with a function this crate cannot verify is left
//! out and counted apart, since that is no fault of the peer. What no honest peer sends (a body
//! that is not protobuf, a malformed block prefix, a block over 2 MiB) fails the message.

use bytes::Bytes;
use cid::Cid;
use ipfs_blockstore::{Block, BlockError};
use prost::{
    DecodeError,
    encoding::{DecodeContext, WireType, check_wire_type, decode_key, decode_varint, skip_field},
};

use crate::{
    map::{Map, Set},
    message::{BlockPresence, BlockPresenceType, Entry, Message, MessageError, WantType},
    protocol::ProtocolError,
};

/// Blocks kept from one message, counting repeated copies: 4096. More are left out (and the
/// client asks for them again). boxo and this crate's server fill a message with about 16 KiB
/// of blocks, so only a peer sending blocks of under 1 KiB on average in a 4 MiB message
/// reaches it; 4096 blocks cost at most 0.5 MiB beyond their data, which stays in the body.
pub const MAX_BLOCKS_PER_MESSAGE: usize = 4096;

/// Block presences kept from one message: 4096. More are left out. A HAVE or DONT_HAVE answers
/// one want and a server holds at most 1024 wants of a peer (boxo's and this crate's default);
/// 4096 presences cost at most 0.4 MiB.
pub const MAX_PRESENCES_PER_MESSAGE: usize = 4096;

/// Longest CID accepted in a wantlist entry or a presence, in bytes: 168, boxo's
/// `MaxCidSize` (`MaxVarintLen64 * 4 + 128`). A CID of this crate holds at most a 64-byte
/// digest, so no longer CID could be parsed anyway; longer ones are left out unparsed.
pub const MAX_CID_SIZE: usize = 168;

/// Wants kept from one message by default (and by [`read_message`](crate::protocol::read_message)):
/// 1024, boxo's `MaxQueuedWantlistEntriesPerPeer`.
pub(crate) const DEFAULT_MAX_WANTS: usize = 1024;

/// Cancels kept from one message, per want of the cap: 4. A cancel only matters for a want the
/// server holds (at most the cap, as many answers pending, and the wants of the same message),
/// so four times the cap covers every cancel an honest peer can mean.
const CANCELS_PER_WANT: usize = 4;

/// What decoding left out of one message, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// Wants past the cap and past the DONT_HAVE answers kept beyond it.
    pub wants: usize,
    /// Cancels past their cap (four times the wants' cap).
    pub cancels: usize,
    /// Wantlist entries whose CID does not parse or is longer than [`MAX_CID_SIZE`].
    pub entries: usize,
    /// Presences whose CID does not parse or whose type is unknown, and those past
    /// [`MAX_PRESENCES_PER_MESSAGE`].
    pub presences: usize,
    /// Blocks past [`MAX_BLOCKS_PER_MESSAGE`].
    pub blocks: usize,
    /// Copies of a block already in the message.
    pub duplicate_blocks: usize,
    /// Blocks hashed with a function this crate cannot verify (not the peer's fault).
    pub unsupported_blocks: usize,
}

impl Dropped {
    /// Whether nothing was left out.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How many of each repeated field a body holds, found without allocating.
#[derive(Debug, Default)]
struct Counts {
    entries: usize,
    blocks: usize,
    presences: usize,
}

/// Decodes one message body (without its length prefix) of at most [`MAX_MESSAGE_SIZE`](crate::protocol::MAX_MESSAGE_SIZE)
/// bytes, keeping at most `max_wants` wants, up to as many more that ask for DONT_HAVE, and
/// four times as many cancels; returns the message and what was left out.
///
/// The memory a message takes is bounded whatever its shape: besides those wantlist caps, at
/// most [`MAX_BLOCKS_PER_MESSAGE`](crate::protocol::MAX_BLOCKS_PER_MESSAGE) blocks (a repeated block is
/// kept and hashed once) and [`MAX_PRESENCES_PER_MESSAGE`](crate::protocol::MAX_PRESENCES_PER_MESSAGE)
/// presences are kept, and what is left out is neither parsed nor
/// hashed. Block data is shared with `body`, not copied. Blocks are verified by recomputing
/// their CIDs. Entries and presences with a CID that does not parse (or is over
/// [`MAX_CID_SIZE`](crate::protocol::MAX_CID_SIZE)) or an unknown presence type, and blocks of an unsupported hash function,
/// are left out and counted; an unknown want type is a want-have.
pub fn decode_message(body: &Bytes, max_wants: usize) -> Result<(Message, Dropped), ProtocolError> {
    let counts = scan(body)?;
    let mut decoder = Decoder {
        body,
        max_wants,
        message: Message::default(),
        dropped: Dropped::default(),
        wants: 0,
        over_cap: 0,
        cancels: 0,
        block_fields: 0,
        presence_fields: 0,
        seen: Map::default(),
        cids: Set::default(),
    };
    let message = &mut decoder.message;
    message
        .wantlist
        .entries
        .reserve(counts.entries.min(max_wants));
    message
        .blocks
        .reserve(counts.blocks.min(MAX_BLOCKS_PER_MESSAGE));
    message
        .presences
        .reserve(counts.presences.min(MAX_PRESENCES_PER_MESSAGE));
    let mut fields = Fields(body);
    while let Some((tag, value)) = fields.next(message_field)? {
        match (tag, value) {
            (WANTLIST, Value::Bytes(wantlist)) => decoder.wantlist(wantlist)?,
            (BLOCKS, Value::Bytes(data)) => decoder.block(None, data)?,
            (PAYLOAD, Value::Bytes(payload)) => decoder.payload(payload)?,
            (PRESENCES, Value::Bytes(presence)) => decoder.presence(presence)?,
            (PENDING_BYTES, Value::Varint(value)) => decoder.message.pending_bytes = value as i32,
            _ => unreachable!("message_field gives the wire type of each known tag"),
        }
    }
    let Decoder {
        mut message,
        dropped,
        ..
    } = decoder;
    // Room reserved for elements that were then left out is given back.
    shrink(&mut message.wantlist.entries);
    shrink(&mut message.blocks);
    shrink(&mut message.presences);
    Ok((message, dropped))
}

fn shrink<T>(elements: &mut Vec<T>) {
    if elements.len() < elements.capacity() / 2 {
        elements.shrink_to_fit();
    }
}

/// Checks the structure of a body (keys, lengths, wire types of the known fields) and counts
/// its repeated fields, without allocating.
fn scan(body: &[u8]) -> Result<Counts, DecodeError> {
    let mut counts = Counts::default();
    let mut fields = Fields(body);
    while let Some((tag, value)) = fields.next(message_field)? {
        match (tag, value) {
            (WANTLIST, Value::Bytes(wantlist)) => {
                let mut fields = Fields(wantlist);
                while let Some((tag, _)) = fields.next(wantlist_field)? {
                    counts.entries += usize::from(tag == ENTRIES);
                }
            }
            (BLOCKS | PAYLOAD, _) => counts.blocks += 1,
            (PRESENCES, _) => counts.presences += 1,
            _ => {}
        }
    }
    Ok(counts)
}

/// The second pass: keeps what fits in the caps.
struct Decoder<'a> {
    body: &'a Bytes,
    max_wants: usize,
    message: Message,
    dropped: Dropped,
    /// Wants kept within `max_wants`.
    wants: usize,
    /// Wants kept past `max_wants` for their DONT_HAVE; at most `max_wants`.
    over_cap: usize,
    cancels: usize,
    /// Block fields met (kept, repeated or left out), in wire order.
    block_fields: usize,
    presence_fields: usize,
    /// The first block kept of each prefix (`None` for a legacy block), length and bytes at
    /// both ends: a block that matches it is compared in full, and if equal, is a copy left
    /// out before it is hashed. Only the first is compared, so that blocks made to share
    /// their ends cost one comparison each, not one per block before them.
    seen: Map<(Option<&'a [u8]>, usize, &'a [u8], &'a [u8]), usize>,
    /// The CIDs of the blocks kept: a copy that differs from the first of its kind in `seen`
    /// is caught here, after its hash.
    cids: Set<Cid>,
}

impl<'a> Decoder<'a> {
    fn wantlist(&mut self, wantlist: &'a [u8]) -> Result<(), DecodeError> {
        let mut fields = Fields(wantlist);
        while let Some((tag, value)) = fields.next(wantlist_field)? {
            match (tag, value) {
                (ENTRIES, Value::Bytes(entry)) => self.entry(entry)?,
                (FULL, Value::Varint(full)) => self.message.wantlist.full = full != 0,
                _ => unreachable!("wantlist_field gives the wire type of each known tag"),
            }
        }
        Ok(())
    }

    fn entry(&mut self, entry: &[u8]) -> Result<(), DecodeError> {
        let (mut cid, mut priority, mut cancel, mut want_type, mut send_dont_have) =
            (&[][..], 0, false, 0, false);
        let mut fields = Fields(entry);
        while let Some((tag, value)) = fields.next(entry_field)? {
            match (tag, value) {
                (1, Value::Bytes(bytes)) => cid = bytes,
                (2, Value::Varint(value)) => priority = value as i32,
                (3, Value::Varint(value)) => cancel = value != 0,
                (4, Value::Varint(value)) => want_type = value as i32,
                (5, Value::Varint(value)) => send_dont_have = value != 0,
                _ => unreachable!("entry_field gives the wire type of each known tag"),
            }
        }
        // Room first, so that what is left out is not parsed. An entry whose CID then fails
        // to parse takes its room too: the CIDs parsed per message stay bounded.
        if cancel {
            if self.cancels >= self.max_wants.saturating_mul(CANCELS_PER_WANT) {
                self.dropped.cancels += 1;
                return Ok(());
            }
            self.cancels += 1;
        } else if self.wants < self.max_wants {
            self.wants += 1;
        } else if send_dont_have && self.over_cap < self.max_wants {
            self.over_cap += 1;
        } else {
            self.dropped.wants += 1;
            return Ok(());
        }
        let Some(cid) = parse_cid(cid) else {
            self.dropped.entries += 1;
            return Ok(());
        };
        self.message.wantlist.entries.push(Entry {
            cid,
            priority,
            // 0 is a want-block; 1 and values this crate does not know ask for presence only,
            // the cheaper answer.
            want_type: if want_type == 0 {
                WantType::Block
            } else {
                WantType::Have
            },
            send_dont_have,
            cancel,
        });
        Ok(())
    }

    fn payload(&mut self, payload: &'a [u8]) -> Result<(), ProtocolError> {
        if self.block_fields >= MAX_BLOCKS_PER_MESSAGE {
            self.block_fields += 1;
            self.dropped.blocks += 1;
            return Ok(());
        }
        let (mut prefix, mut data) = (&[][..], &[][..]);
        let mut fields = Fields(payload);
        while let Some((tag, value)) = fields.next(payload_field)? {
            match (tag, value) {
                (1, Value::Bytes(bytes)) => prefix = bytes,
                (2, Value::Bytes(bytes)) => data = bytes,
                _ => unreachable!("payload_field gives the wire type of each known tag"),
            }
        }
        self.block(Some(prefix), data)
    }

    /// A block: legacy (`prefix` `None`, CIDv0 data) or with its CID prefix.
    fn block(&mut self, prefix: Option<&'a [u8]>, data: &'a [u8]) -> Result<(), ProtocolError> {
        let index = self.block_fields;
        self.block_fields += 1;
        if index >= MAX_BLOCKS_PER_MESSAGE {
            self.dropped.blocks += 1;
            return Ok(());
        }
        let ends = data.len().min(8);
        // A CIDv0 prefix names the same CID as a legacy block.
        let kind = prefix.filter(|prefix| *prefix != CIDV0_PREFIX);
        let key = (kind, data.len(), &data[..ends], &data[data.len() - ends..]);
        if let Some(&first) = self.seen.get(&key)
            && self.message.blocks[first].data()[..] == *data
        {
            self.dropped.duplicate_blocks += 1;
            return Ok(());
        }
        let data = self.body.slice_ref(data);
        let block = match prefix {
            None => Block::from_v0_data(data),
            Some(prefix) => Block::from_prefix(prefix, data),
        };
        match block {
            // A copy the bytes did not catch: its bytes matched another block's ends only.
            Ok(block) if !self.cids.insert(*block.cid()) => {
                self.dropped.duplicate_blocks += 1;
                Ok(())
            }
            Ok(block) => {
                self.seen.entry(key).or_insert(self.message.blocks.len());
                self.message.blocks.push(block);
                Ok(())
            }
            Err(BlockError::UnsupportedHash(_)) => {
                self.dropped.unsupported_blocks += 1;
                Ok(())
            }
            Err(source) => Err(MessageError::Block { index, source }.into()),
        }
    }

    fn presence(&mut self, presence: &[u8]) -> Result<(), DecodeError> {
        self.presence_fields += 1;
        if self.presence_fields > MAX_PRESENCES_PER_MESSAGE {
            self.dropped.presences += 1;
            return Ok(());
        }
        let (mut cid, mut kind) = (&[][..], 0);
        let mut fields = Fields(presence);
        while let Some((tag, value)) = fields.next(presence_field)? {
            match (tag, value) {
                (1, Value::Bytes(bytes)) => cid = bytes,
                (2, Value::Varint(value)) => kind = value as i32,
                _ => unreachable!("presence_field gives the wire type of each known tag"),
            }
        }
        let presence = match kind {
            0 => BlockPresenceType::Have,
            1 => BlockPresenceType::DontHave,
            _ => {
                self.dropped.presences += 1;
                return Ok(());
            }
        };
        match parse_cid(cid) {
            Some(cid) => self.message.presences.push(BlockPresence { cid, presence }),
            None => self.dropped.presences += 1,
        }
        Ok(())
    }
}

/// A CID of at most [`MAX_CID_SIZE`] bytes, if it parses.
fn parse_cid(bytes: &[u8]) -> Option<Cid> {
    if bytes.len() > MAX_CID_SIZE {
        return None;
    }
    Cid::try_from(bytes).ok()
}

/// The prefix of every CIDv0: version 0, dag-pb, sha2-256 of 32 bytes.
const CIDV0_PREFIX: &[u8] = &[0x00, 0x70, 0x12, 0x20];

// Tags of `Message`.
const WANTLIST: u32 = 1;
const BLOCKS: u32 = 2;
const PAYLOAD: u32 = 3;
const PRESENCES: u32 = 4;
const PENDING_BYTES: u32 = 5;
// Tags of `Wantlist`.
const ENTRIES: u32 = 1;
const FULL: u32 = 2;

/// The wire type of each known field of `Message`.
fn message_field(tag: u32) -> Option<WireType> {
    match tag {
        WANTLIST | BLOCKS | PAYLOAD | PRESENCES => Some(WireType::LengthDelimited),
        PENDING_BYTES => Some(WireType::Varint),
        _ => None,
    }
}

/// The wire type of each known field of `Wantlist`.
fn wantlist_field(tag: u32) -> Option<WireType> {
    match tag {
        ENTRIES => Some(WireType::LengthDelimited),
        FULL => Some(WireType::Varint),
        _ => None,
    }
}

/// `Entry`: block (the CID), then priority, cancel, want type and send-dont-have.
fn entry_field(tag: u32) -> Option<WireType> {
    match tag {
        1 => Some(WireType::LengthDelimited),
        2..=5 => Some(WireType::Varint),
        _ => None,
    }
}

/// `Block`: prefix and data.
fn payload_field(tag: u32) -> Option<WireType> {
    matches!(tag, 1 | 2).then_some(WireType::LengthDelimited)
}

/// `BlockPresence`: CID and type.
fn presence_field(tag: u32) -> Option<WireType> {
    match tag {
        1 => Some(WireType::LengthDelimited),
        2 => Some(WireType::Varint),
        _ => None,
    }
}

/// The value of a known field.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

/// The fields of one protobuf message, in wire order, read with prost's own primitives so
/// that what decodes (and every error) is what prost's derived decoder gives: unknown fields
/// are skipped, a known field of the wrong wire type is an error, the last of several values
/// of a scalar field wins (the callers assign in order).
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    /// The next field whose tag `known` gives a wire type for; others are skipped.
    #[inline]
    fn next(
        &mut self,
        known: impl Fn(u32) -> Option<WireType>,
    ) -> Result<Option<(u32, Value<'a>)>, DecodeError> {
        while !self.0.is_empty() {
            let (tag, wire_type) = decode_key(&mut self.0)?;
            let Some(expected) = known(tag) else {
                skip_field(wire_type, tag, &mut self.0, DecodeContext::default())?;
                continue;
            };
            check_wire_type(expected, wire_type)?;
            let value = match wire_type {
                WireType::LengthDelimited => {
                    let mut rest = self.0;
                    let len = decode_varint(&mut rest)?;
                    if len > rest.len() as u64 {
                        // Past the end: prost's skip gives prost's error for it.
                        skip_field(wire_type, tag, &mut self.0, DecodeContext::default())?;
                        continue;
                    }
                    let (value, rest) = rest.split_at(len as usize);
                    self.0 = rest;
                    Value::Bytes(value)
                }
                _ => Value::Varint(decode_varint(&mut self.0)?),
            };
            return Ok(Some((tag, value)));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests;
