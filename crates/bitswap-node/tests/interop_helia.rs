//! Interop with Helia (`helia@7.1.15`, `@helia/bitswap@4.0.19`, driven by
//! `tests/interop/helia/helia_peer.mjs` on Node 20), on 127.0.0.1 only, every transfer verified
//! by hash. Helia speaks only Bitswap 1.2.0.
//!
//! - Helia fetches from our `serve`, and our `get` fetches from Helia: raw blocks of 1 KiB,
//!   256 KiB and 2 MiB, and a 64 MiB UnixFS file (Helia's layout: CIDv1, raw leaves, 1 MiB
//!   chunks).
//!
//! The driver's `node_modules` comes from `npm ci` in `tests/interop/helia` (`.ci/test` runs it);
//! without it every test fails unless `BITSWAP_INTEROP_SKIP=1` says to skip them knowingly.

mod common;
#[path = "interop/support.rs"]
mod support;

use std::{collections::HashSet, time::Duration};

use bitswap::{BlockPresenceType, Entry, Message};
use common::write_pseudo_random;
use support::*;

/// Raw blocks: Helia fetches each from our `serve` (blocks put into its store first).
#[test]
fn helia_fetches_raw_blocks_from_us() {
    let Some(node) = helia_node("helia_fetches_raw_blocks_from_us") else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let files = raw_block_files(&temp.path().join("blocks"));
    let ours = temp.path().join("node");
    let cids: Vec<String> = files.iter().map(|file| block_put(&ours, file)).collect();
    let serve = start_serve(&ours, &[], &[]);
    let mut helia = start_helia(&node, None, &[]);
    driver_connect(&mut helia, &serve.address());
    for (file, cid) in files.iter().zip(&cids) {
        let out = temp.path().join(format!("helia-{cid}"));
        let seconds = driver_download(&mut helia, cid, &out, 60);
        assert_same_hash(file, &out);
        eprintln!("Helia fetched {} from us in {seconds:.2} s", file.display());
    }
}

/// Raw blocks: our `get` fetches each from Helia (blocks put into its store at start).
#[test]
fn we_fetch_raw_blocks_from_helia() {
    let Some(node) = helia_node("we_fetch_raw_blocks_from_helia") else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("blocks");
    let files = raw_block_files(&dir);
    let helia = start_helia(&node, Some(&dir), &[]);
    let ours = temp.path().join("node");
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let cid = helia.info["raw"][name].as_str().expect("a raw CID");
        let out = temp.path().join(format!("ours-{name}"));
        let got = get(&ours, &[], cid, &helia.address(), &out);
        assert_eq!(got["fetched_blocks"], 1, "{got}");
        assert_same_hash(file, &out);
    }
}

/// A 64 MiB UnixFS file: Helia fetches it from our `serve`, which added it (kubo's layout).
#[test]
fn helia_fetches_64_mib_file_from_us() {
    let Some(node) = helia_node("helia_fetches_64_mib_file_from_us") else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("file");
    write_pseudo_random(&file, 64 << 20, 164);
    let serve = start_serve(&temp.path().join("node"), &[], &[&file]);
    let root = serve.info["roots"][0]["cid"].as_str().unwrap().to_owned();
    let mut helia = start_helia(&node, None, &[]);
    driver_connect(&mut helia, &serve.address());
    let out = temp.path().join("out");
    let seconds = driver_download(&mut helia, &root, &out, 120);
    assert_same_hash(&file, &out);
    eprintln!("Helia fetched 64 MiB from us in {seconds:.2} s");
}

/// A 64 MiB UnixFS file: our `get` fetches it from Helia, which added it (1 MiB raw leaves).
///
/// Helia writes its 1 MiB leaves three to a 4 MiB message, several messages on one stream. This
/// failed (Helia's connection reset after the root) until `bitswap::yamux_config`
/// capped our yamux stream windows at 1 MiB: js-yamux (`@libp2p/yamux` 8.0.3) sends data frames
/// as large as the stream's send window, and rust yamux 0.14.1, whose window auto-tuning had
/// grown past 1 MiB, refuses frame bodies over 1 MiB (`Decode(FrameTooLarge(2097140))`).
#[test]

fn we_fetch_64_mib_file_from_helia() {
    let Some(node) = helia_node("we_fetch_64_mib_file_from_helia") else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let file = temp.path().join("file");
    write_pseudo_random(&file, 64 << 20, 165);
    let helia = start_helia(&node, None, &[&file]);
    let root = helia.info["added"][file.to_str().unwrap()]
        .as_str()
        .expect("a root CID")
        .to_owned();
    let out = temp.path().join("out");
    let got = get(
        &temp.path().join("node"),
        &[],
        &root,
        &helia.address(),
        &out,
    );
    // 64 leaves of 1 MiB and their root.
    assert_eq!(got["fetched_blocks"], 65, "{got}");
    assert_same_hash(&file, &out);
    eprintln!("we fetched 64 MiB from Helia: {got}");
}

/// want-have and want-block with sendDontHave for blocks Helia lacks get DONT_HAVE; a want-have
/// for a block under 1 KiB brings the block itself (Helia sends blocks smaller than 1024 bytes
/// instead of HAVE), and one for a 256 KiB block brings HAVE.
#[test]
fn helia_answers_want_have() {
    let Some(node) = helia_node("helia_answers_want_have") else {
        return;
    };
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("blocks");
    std::fs::create_dir(&dir).unwrap();
    write_pseudo_random(&dir.join("small"), 1000, 41);
    write_pseudo_random(&dir.join("medium"), 256 << 10, 42);
    let helia = start_helia(&node, Some(&dir), &[]);
    let small = std::fs::read(dir.join("small")).unwrap();
    let small_cid = raw_cid(&small);
    assert_eq!(helia.info["raw"]["small"], small_cid.to_string());
    let medium_cid = raw_cid(&std::fs::read(dir.join("medium")).unwrap());
    let missing = raw_cid(b"Helia does not have this");
    let missing_too = raw_cid(b"nor this");
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut peer = test_peer();
            let remote = connect(&mut peer, &helia).await;
            let mut want = Message::default();
            want.wantlist.entries = vec![
                Entry::want_have(missing, 1),
                Entry::want_block(missing_too, 1),
                Entry::want_have(small_cid, 1),
                Entry::want_have(medium_cid, 1),
            ];
            peer.behaviour_mut().send(remote, want).unwrap();
            let (mut dont_have, mut have, mut blocks) =
                (HashSet::new(), HashSet::new(), Vec::new());
            while dont_have.len() < 2 || have.is_empty() || blocks.is_empty() {
                let message = next_message(&mut peer, remote).await;
                for presence in message.presences {
                    match presence.presence {
                        BlockPresenceType::DontHave => dont_have.insert(presence.cid),
                        BlockPresenceType::Have => have.insert(presence.cid),
                    };
                }
                blocks.extend(message.blocks);
                eprintln!(
                    "DONT_HAVE {dont_have:?}, HAVE {have:?}, {} block(s)",
                    blocks.len()
                );
            }
            assert_eq!(dont_have, HashSet::from([missing, missing_too]));
            assert_eq!(have, HashSet::from([medium_cid]));
            assert_eq!(blocks.len(), 1);
            assert_eq!(*blocks[0].cid(), small_cid);
            assert_eq!(blocks[0].data().as_ref(), small.as_slice());
        })
        .await
        .expect("Helia answered within 60 s");
    });
}
