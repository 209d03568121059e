use futures::{executor::block_on, io::Cursor};
use multihash_codetable::{Code, MultihashDigest};
use proptest::prelude::*;
use prost::Message as _;

use super::*;
use crate::{
    Block, BlockPresence, BlockPresenceType, Entry, MAX_BLOCK_SIZE, WantType, message::Wantlist,
    proto,
};

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
                    .any(|s| s.as_ptr() == large.data().as_ptr() && s.len() == large.data().len()),
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
