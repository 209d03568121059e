use multihash_codetable::{Code, MultihashDigest};
use prost::Message as _;

use super::*;
use crate::{proto, protocol::MAX_MESSAGE_SIZE};

fn cid(seed: u32) -> Cid {
    Cid::new_v1(0x55, Code::Sha2_256.digest(&seed.to_le_bytes()))
}

fn entry(cid: Cid, cancel: bool, send_dont_have: bool) -> proto::Entry {
    proto::Entry {
        block: Bytes::from(cid.to_bytes()),
        priority: 1,
        cancel,
        want_type: proto::WantType::Have as i32,
        send_dont_have,
    }
}

fn wantlist(entries: Vec<proto::Entry>) -> Bytes {
    encoded(proto::Message {
        wantlist: Some(proto::Wantlist {
            entries,
            full: false,
        }),
        ..Default::default()
    })
}

/// `message` encoded as a body.
fn encoded(message: proto::Message) -> Bytes {
    message.encode_to_vec().into()
}

/// Encodes `message` and decodes it with a cap of 1024 wants.
fn decode_proto(message: proto::Message) -> (Message, Dropped) {
    decode(&encoded(message), 1024)
}

fn decode(body: &Bytes, max_wants: usize) -> (Message, Dropped) {
    decode_message(body, max_wants).expect("decodes")
}

#[test]
fn cancels_are_not_counted_as_wants() {
    let mut entries: Vec<_> = (0..200).map(|i| entry(cid(i), true, false)).collect();
    entries.extend((1000..2000).map(|i| entry(cid(i), false, false)));
    let (message, dropped) = decode(&wantlist(entries), 1024);
    assert_eq!(message.wantlist.entries.len(), 1200);
    assert!(dropped.is_empty(), "{dropped:?}");
}

#[test]
fn wants_past_the_cap_are_kept_only_for_a_dont_have_and_only_so_many() {
    // 10 wants, then 20 asking for DONT_HAVE, 5 not asking, 20 more asking: with a cap of 10,
    // the first 10 and the next 10 that ask are kept.
    let mut entries: Vec<_> = (0..10).map(|i| entry(cid(i), false, false)).collect();
    entries.extend((10..30).map(|i| entry(cid(i), false, true)));
    entries.extend((30..35).map(|i| entry(cid(i), false, false)));
    entries.extend((35..55).map(|i| entry(cid(i), false, true)));
    let (message, dropped) = decode(&wantlist(entries), 10);
    let kept: Vec<Cid> = message.wantlist.entries.iter().map(|e| e.cid).collect();
    let expected: Vec<Cid> = (0..20).map(cid).collect();
    assert_eq!(kept, expected);
    assert_eq!(dropped.wants, 35);
}

#[test]
fn cancels_have_a_cap_of_their_own() {
    let entries: Vec<_> = (0..50).map(|i| entry(cid(i), true, false)).collect();
    let (message, dropped) = decode(&wantlist(entries), 10);
    assert_eq!(message.wantlist.entries.len(), 10 * CANCELS_PER_WANT);
    assert_eq!(dropped.cancels, 50 - 10 * CANCELS_PER_WANT);
}

#[test]
fn bad_cids_and_unknown_types_are_left_out_not_fatal() {
    let mut long = cid(1).to_bytes();
    long.resize(MAX_CID_SIZE + 1, 0);
    let mut unknown_type = entry(cid(2), false, false);
    unknown_type.want_type = 9;
    let entries = vec![
        proto::Entry {
            block: Bytes::from_static(b"no cid"),
            ..Default::default()
        },
        proto::Entry {
            block: Bytes::from(long),
            ..Default::default()
        },
        proto::Entry::default(),
        unknown_type,
    ];
    let mut body = proto::Message {
        wantlist: Some(proto::Wantlist {
            entries,
            full: true,
        }),
        block_presences: vec![
            proto::BlockPresence {
                cid: Bytes::from_static(b"no cid"),
                r#type: 0,
            },
            proto::BlockPresence {
                cid: Bytes::from(cid(3).to_bytes()),
                r#type: 5,
            },
            proto::BlockPresence {
                cid: Bytes::from(cid(4).to_bytes()),
                r#type: 1,
            },
        ],
        ..Default::default()
    }
    .encode_to_vec();
    // An unknown field is skipped, as prost does.
    body.extend_from_slice(&[0x58, 0x01]);
    let (message, dropped) = decode(&body.into(), 1024);
    assert!(message.wantlist.full);
    assert_eq!(message.wantlist.entries.len(), 1);
    assert_eq!(message.wantlist.entries[0].want_type, WantType::Have);
    assert_eq!(
        message.presences,
        [BlockPresence {
            cid: cid(4),
            presence: BlockPresenceType::DontHave
        }]
    );
    assert_eq!((dropped.entries, dropped.presences), (3, 2));
}

#[test]
fn repeated_blocks_are_kept_and_hashed_once() {
    let data = Bytes::from_static(b"the same bytes");
    let v0 = Block::from_v0_data(data.clone()).expect("v0");
    let raw = Block::new(
        Cid::new_v1(0x55, Code::Sha2_256.digest(&data)),
        data.clone(),
    )
    .expect("raw");
    let other = Bytes::from_static(b"the same bytez");
    let body = encoded(proto::Message {
        blocks: vec![data.clone(), data.clone(), other.clone()],
        payload: vec![
            // The CIDv0 prefix names the legacy block's CID: a copy too.
            proto::Block {
                prefix: Bytes::from(v0.prefix()),
                data: data.clone(),
            },
            proto::Block {
                prefix: Bytes::from(raw.prefix()),
                data: data.clone(),
            },
            proto::Block {
                prefix: Bytes::from(raw.prefix()),
                data: data.clone(),
            },
        ],
        ..Default::default()
    });
    let (message, dropped) = decode(&body, 1024);
    let other = Block::from_v0_data(other).expect("v0");
    assert_eq!(message.blocks, [v0, other, raw]);
    assert_eq!(dropped.duplicate_blocks, 3);
    // The data is the body's, not a copy.
    let range = body.as_ptr_range();
    for block in &message.blocks {
        assert!(range.contains(&block.data().as_ptr()));
    }
}

#[test]
fn unsupported_hashes_drop_the_block_and_malformed_prefixes_the_message() {
    let unsupported = proto::Block {
        // CIDv1, raw, multihash code 0x99 (no hasher here), 32 bytes.
        prefix: Bytes::from_static(&[1, 0x55, 0x99, 0x01, 32]),
        data: Bytes::from_static(b"x"),
    };
    let good = Bytes::from_static(b"good");
    let (message, dropped) = decode_proto(proto::Message {
        blocks: vec![good.clone()],
        payload: vec![unsupported.clone()],
        ..Default::default()
    });
    assert_eq!(message.blocks.len(), 1);
    assert_eq!(dropped.unsupported_blocks, 1);
    let malformed = encoded(proto::Message {
        blocks: vec![good],
        payload: vec![proto::Block {
            prefix: Bytes::from_static(&[1, 0x55]),
            data: Bytes::from_static(b"x"),
        }],
        ..Default::default()
    });
    assert!(matches!(
        decode_message(&malformed, 1024),
        Err(ProtocolError::Invalid(MessageError::Block { index: 1, .. }))
    ));
}

/// The feature `sha3` reaches the hashers of `ipfs-blockstore`: a sha3-256 block is kept.
#[cfg(feature = "sha3")]
#[test]
fn sha3_blocks_are_kept_with_the_feature() {
    let data = Bytes::from_static(b"sha3 block");
    let cid = Cid::new_v1(0x55, Code::Sha3_256.digest(&data));
    let block = Block::new(cid, data).expect("sha3-256 verifies");
    let (message, dropped) = decode_proto(proto::Message {
        payload: vec![proto::Block {
            prefix: Bytes::from(block.prefix()),
            data: block.data().clone(),
        }],
        ..Default::default()
    });
    assert_eq!(message.blocks, vec![block]);
    assert_eq!(dropped.unsupported_blocks, 0);
}

/// A body of `element` repeated to just under the 4 MiB limit.
fn repeated(element: &[u8]) -> Bytes {
    element.repeat(MAX_MESSAGE_SIZE / element.len()).into()
}

#[test]
fn amplification_shapes_stay_within_the_caps() {
    // Two million empty legacy blocks: one kept, hashed once.
    let (message, dropped) = decode(&repeated(&[0x12, 0x00]), 1024);
    assert_eq!(message.blocks.len(), 1);
    assert_eq!(dropped.duplicate_blocks, MAX_BLOCKS_PER_MESSAGE - 1);
    assert_eq!(
        dropped.blocks,
        MAX_MESSAGE_SIZE / 2 - MAX_BLOCKS_PER_MESSAGE
    );
    // Two million empty wantlist entries, in one wantlist or one each: none kept, no room
    // kept for them.
    let entries = repeated(&[0x0a, 0x00]);
    let mut body = vec![0x0a];
    prost::encoding::encode_varint(entries.len() as u64 - 6, &mut body);
    body.extend_from_slice(&entries[..entries.len() - 6]);
    let (message, dropped) = decode(&body.into(), 1024);
    assert!(message.wantlist.entries.is_empty());
    assert_eq!(message.wantlist.entries.capacity(), 0);
    assert_eq!(dropped.entries, 1024);
    assert!(dropped.wants > 2_000_000 - 1024 * 2);
    let (message, _) = decode(&repeated(&[0x0a, 0x02, 0x0a, 0x00]), 1024);
    assert!(message.wantlist.entries.is_empty());
    // Empty presences and empty payload blocks.
    let (message, dropped) = decode(&repeated(&[0x22, 0x00]), 1024);
    assert!(message.presences.is_empty());
    assert_eq!(dropped.presences, MAX_MESSAGE_SIZE / 2);
    assert!(matches!(
        decode_message(&repeated(&[0x1a, 0x00]), 1024),
        Err(ProtocolError::Invalid(MessageError::Block { index: 0, .. }))
    ));
}

#[test]
fn structure_errors_are_prost_errors() {
    for body in [
        &[0x0a, 0x05, 0x00][..],       // length past the end
        &[0x28, 0xff][..],             // varint cut short
        &[0x08, 0x01][..],             // field 1 (wantlist) as a varint
        &[0x0a, 0x02, 0x0a, 0x05][..], // entry longer than its wantlist
        &[0x00][..],                   // tag 0
        &[0x0c][..],                   // end of a group never started
    ] {
        let error = decode_message(&Bytes::copy_from_slice(body), 1024).expect_err("malformed");
        assert!(
            matches!(error, ProtocolError::Decode(_)),
            "{body:?}: {error}"
        );
        assert!(
            proto::Message::decode(body).is_err(),
            "{body:?}: prost agrees"
        );
    }
}

#[test]
fn element_sizes_behind_the_documented_bounds() {
    // The caps' documented costs assume these sizes (64-byte digests inline).
    assert!(size_of::<Entry>() <= 112, "{}", size_of::<Entry>());
    assert!(size_of::<Block>() <= 128, "{}", size_of::<Block>());
    assert!(
        size_of::<BlockPresence>() <= 104,
        "{}",
        size_of::<BlockPresence>()
    );
}

#[test]
fn copies_are_caught_even_after_a_block_with_the_same_ends() {
    // Same length, first and last 8 bytes; different middles.
    let a = Bytes::from_static(b"01234567-a-76543210");
    let b = Bytes::from_static(b"01234567-b-76543210");
    let (message, dropped) = decode_proto(proto::Message {
        blocks: vec![b.clone(), a.clone(), a.clone(), b.clone(), a],
        ..Default::default()
    });
    assert_eq!(message.blocks.len(), 2);
    assert_eq!(dropped.duplicate_blocks, 3);
}
