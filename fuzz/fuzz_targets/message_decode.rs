//! Fuzzes the Bitswap wire format: framing (varint length, 4 MiB cap), protobuf decoding and the
//! conversion to domain types (CIDs parsed, blocks rebuilt from their bytes).
//!
//! Arbitrary bytes are read as a stream of messages. Nothing may panic, and every message that
//! decodes must survive a round trip: encoded for 1.2.0 it decodes back to itself, and encoded
//! for every older version it still decodes.

#![no_main]

use bitswap::{Message, Version, encode, read_message};
use futures::{executor::block_on, io::Cursor};
use libfuzzer_sys::fuzz_target;

/// Messages read per input at most (each needs at least one byte, so this only bounds time).
const MAX_MESSAGES: usize = 64;

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

fuzz_target!(|data: &[u8]| {
    let (messages, _) = read_all(data);
    for message in &messages {
        check_round_trip(message);
    }
});
