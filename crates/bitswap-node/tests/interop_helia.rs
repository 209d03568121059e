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
#[macro_use]
#[path = "interop/support.rs"]
mod support;

use common::write_pseudo_random;
use support::*;

// 64 leaves of 1 MiB (Helia's layout) and their root.
//
// Helia writes its 1 MiB leaves three to a 4 MiB message, several messages on one stream. Our
// fetch of them failed (Helia's connection reset after the root) until our yamux stream windows
// were capped at 1 MiB: js-yamux (`@libp2p/yamux` 8.0.3) sends data frames as large as the
// stream's send window, and rust yamux 0.14.1, whose window auto-tuning had grown past 1 MiB,
// refuses frame bodies over 1 MiB (`Decode(FrameTooLarge(2097140))`). The node's transport
// (`bitswap::capped_yamux_config`) relies on the cap in the workspace's yamux
// (`vendor/yamux`): without it, `we_fetch_64_mib_file` fails here.
exchange_tests!("Helia", helia, (164, 165), 65);

/// want-have and want-block with sendDontHave for blocks Helia lacks get DONT_HAVE; a want-have
/// for a block under 1 KiB brings the block itself (Helia sends blocks smaller than 1024 bytes
/// instead of HAVE), and one for a 256 KiB block brings HAVE.
#[test]
fn helia_answers_want_have() {
    let Some((node, temp)) = helia_test("helia_answers_want_have") else {
        return;
    };
    let dir = temp.path().join("blocks");
    std::fs::create_dir(&dir).unwrap();
    write_pseudo_random(&dir.join("small"), 1000, 41);
    write_pseudo_random(&dir.join("medium"), 256 << 10, 42);
    let helia = start_helia(&node, Some(&dir), &[]);
    let small = std::fs::read(dir.join("small")).unwrap();
    assert_eq!(helia.info["raw"]["small"], raw_cid(&small).to_string());
    let medium = raw_cid(&std::fs::read(dir.join("medium")).unwrap());
    let missing = [raw_cid(b"Helia does not have this"), raw_cid(b"nor this")];
    assert_answers_want_have("Helia", &helia, missing, &small, medium);
}
