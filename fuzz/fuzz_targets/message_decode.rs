//! Fuzzes the Bitswap wire format: framing (varint length, 4 MiB cap), protobuf decoding and the
//! conversion to domain types (CIDs parsed, blocks rebuilt from their bytes), with its caps.
//!
//! Arbitrary bytes are read as a stream of messages, and the same bytes (but the first) are
//! decoded as one message body with a small cap of wants chosen by the first byte, so that
//! every cap is reached by inputs of a few hundred bytes. Nothing may panic, and:
//! - every message that decodes survives a round trip: encoded for 1.2.0 it decodes back to
//!   itself, and encoded for every older version it still decodes;
//! - a decoded message keeps at most the cap of wants, then only wants that ask for DONT_HAVE
//!   up to as many again, at most four times the cap of cancels, and at most
//!   `MAX_BLOCKS_PER_MESSAGE` blocks and `MAX_PRESENCES_PER_MESSAGE` presences;
//! - its blocks have distinct CIDs (a repeated block is kept once) and their data lies in
//!   the body (shared, not copied);
//! - the memory of its elements is at most 64 times the body's size, plus 64 KiB (256 blocks
//!   of one byte each, three bytes on the wire, are the densest shape).

#![no_main]

use std::collections::HashSet;

use bitswap::{
    BlockPresence, Entry, Message, Version,
    protocol::{
        MAX_BLOCKS_PER_MESSAGE, MAX_PRESENCES_PER_MESSAGE, decode_message, encode, read_message,
    },
};
use bytes::Bytes;
use futures::{executor::block_on, io::Cursor};
use libfuzzer_sys::fuzz_target;

/// Messages read per input at most (each needs at least one byte, so this only bounds time).
const MAX_MESSAGES: usize = 64;

/// The cap of wants [`read_message`] applies.
const DEFAULT_MAX_WANTS: usize = 1024;

/// Reads messages until the end, an error or the cap.
fn read_all(bytes: &[u8]) -> (Vec<Message>, bool) {
    let mut io = Cursor::new(bytes);
    block_on(async {
        let mut messages = Vec::new();
        for _ in 0..MAX_MESSAGES {
            match read_message(&mut io).await {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => return (messages, true),
                Err(_) => return (messages, false),
            }
        }
        (messages, true)
    })
}

fn check_round_trip(message: &Message) {
    if message.is_empty() {
        assert!(encode(message, Version::V1_2_0).is_empty());
        return;
    }
    for version in Version::ALL {
        let bytes: Vec<u8> = encode(message, version).concat();
        let (again, clean) = read_all(&bytes);
        assert!(clean, "{version}: our own encoding does not decode");
        if version == Version::V1_2_0 {
            assert_eq!(
                again,
                [message.clone()],
                "1.2.0 round trip changed the message"
            );
        }
    }
}

/// Checks the caps of a message decoded with `max_wants`.
fn check_caps(message: &Message, max_wants: usize) {
    let mut wants = 0;
    let mut cancels = 0;
    for entry in &message.wantlist.entries {
        if entry.cancel {
            cancels += 1;
        } else {
            wants += 1;
            assert!(
                wants <= max_wants || entry.send_dont_have,
                "a want past the cap that asks for no DONT_HAVE was kept"
            );
        }
    }
    assert!(
        wants <= 2 * max_wants,
        "{wants} wants kept, cap {max_wants}"
    );
    assert!(
        cancels <= 4 * max_wants,
        "{cancels} cancels kept, cap {max_wants}"
    );
    assert!(message.blocks.len() <= MAX_BLOCKS_PER_MESSAGE);
    assert!(message.presences.len() <= MAX_PRESENCES_PER_MESSAGE);
    let cids: HashSet<_> = message.blocks.iter().map(|b| *b.cid()).collect();
    assert_eq!(cids.len(), message.blocks.len(), "a block kept twice");
}

/// Bytes the message's elements take on the heap (block data excluded: it is the body's).
fn heap(message: &Message) -> usize {
    message.wantlist.entries.capacity() * size_of::<Entry>()
        + message.blocks.capacity() * size_of::<bitswap::Block>()
        + message.presences.capacity() * size_of::<BlockPresence>()
}

fuzz_target!(|data: &[u8]| {
    let (messages, _) = read_all(data);
    for message in &messages {
        check_caps(message, DEFAULT_MAX_WANTS);
        check_round_trip(message);
    }
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let max_wants = 1 + usize::from(first % 64);
    let body = Bytes::copy_from_slice(rest);
    if let Ok((message, _dropped)) = decode_message(&body, max_wants) {
        check_caps(&message, max_wants);
        let range = body.as_ptr_range();
        for block in &message.blocks {
            let data = block.data();
            assert!(
                data.is_empty() || range.contains(&data.as_ptr()),
                "block data copied out of the body"
            );
        }
        assert!(
            heap(&message) <= 64 * body.len() + 64 * 1024,
            "{} bytes of elements from a body of {}",
            heap(&message),
            body.len()
        );
    }
});
