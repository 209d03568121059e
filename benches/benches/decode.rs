//! Criterion benches of reading one honest message off the wire with
//! [`bitswap::read_message`] (length prefix, body read, decode, CIDs parsed, blocks hashed):
//! 15 blocks of 256 KiB (3.75 MiB, the largest such message under the 4 MiB limit), and a
//! wantlist of 1024 want-haves. Throughput is in wire bytes.
//!
//! Kept to the public API of the first release so that the same file measures older code:
//! `cargo bench -p benches --bench decode -- --save-baseline old` on it, then
//! `-- --baseline old` on the new one.

use std::time::Duration;

use benches::net::bytes;
use bitswap::{
    Block, Entry, Message, Version, Wantlist,
    protocol::{encode, read_message},
};
use cid::Cid;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::{executor::block_on, io::Cursor};
use multihash_codetable::{Code, MultihashDigest};

/// The one frame (length prefix included) of `message` for 1.2.0.
fn frame(message: &Message) -> Vec<u8> {
    let frames = encode(message, Version::V1_2_0);
    assert_eq!(frames.len(), 1, "one frame");
    frames.concat()
}

fn blocks() -> Vec<u8> {
    let blocks = (0..15)
        .map(|i| {
            let data = bytes(256 * 1024, i);
            Block::new(Cid::new_v1(0x55, Code::Sha2_256.digest(&data)), data).expect("block")
        })
        .collect();
    frame(&Message {
        blocks,
        ..Message::default()
    })
}

fn wants() -> Vec<u8> {
    let entries = (0..1024u64)
        .map(|i| {
            let cid = Cid::new_v1(0x55, Code::Sha2_256.digest(&i.to_le_bytes()));
            Entry::want_have(cid, i as i32)
        })
        .collect();
    frame(&Message {
        wantlist: Wantlist {
            entries,
            full: false,
        },
        ..Message::default()
    })
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, frame) in [("15 blocks of 256 KiB", blocks()), ("1024 wants", wants())] {
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                block_on(read_message(&mut Cursor::new(&frame[..])))
                    .expect("decodes")
                    .expect("a message")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
