//! Delivery: envelopes lost or failed, answers gathered while a peer has envelopes out, and
//! windows that grow for far peers.

use super::*;

/// An envelope cut on its way to a peer still connected is answered again (the peer will not
/// ask again); one that failed otherwise is not.
#[test]
fn a_lost_envelope_is_answered_again_and_a_failed_one_is_not() {
    let (a, b) = (block(1, 10), block(2, 10));
    let (mut d, peer) = Driver::with_stored(ServerConfig::default(), &[&a]);
    let entries = vec![want_block(&a, 1, true), want_have(&b, 1, true)];
    d.want(peer, entries);
    let first = d.hold();
    assert_eq!(
        all_answers(&first),
        [
            (peer, *a.cid(), Ans::Block),
            (peer, *b.cid(), Ans::DontHave)
        ]
    );
    for envelope in &first {
        d.engine.handle_envelope_lost(envelope.id);
    }
    let again = d.hold();
    assert_eq!(all_answers(&again), all_answers(&first));
    for envelope in &again {
        d.engine.handle_envelope_failed(envelope.id);
    }
    assert!(d.run().is_empty(), "a failure is not retried");
    assert_eq!(d.engine.peer_wantlist(&peer).len(), 2, "the wants stay");
}

/// A peer with `max_envelopes_per_peer` envelopes out gets no more until one is reported;
/// its answers gather meanwhile and leave together.
#[test]
fn answers_gather_while_a_peer_has_its_envelopes_out() {
    let (mut d, peer) = Driver::with_peer(ServerConfig::default().with_max_envelopes_per_peer(2));
    let blocks: Vec<Block> = (0..6).map(|i| block(i, 10)).collect();
    let mut held = Vec::new();
    for b in &blocks[..2] {
        d.want(peer, vec![want_have(b, 1, true)]);
        held.extend(d.hold());
    }
    assert_eq!(held.len(), 2);
    for b in &blocks[2..] {
        d.want(peer, vec![want_have(b, 1, true)]);
        assert!(d.hold().is_empty(), "the peer is at its limit");
    }
    d.engine.handle_envelope_sent(held[0].id);
    let gathered = d.hold();
    assert_eq!(
        gathered.len(),
        1,
        "one envelope for the answers that gathered"
    );
    assert_eq!(gathered[0].message.presences.len(), 4);
}

/// A far peer (its envelopes take 200 ms to be written, a round trip behind its flow-control
/// windows) that wants 64 blocks of 256 KiB: delivered envelopes reported with their time grow
/// its window past the 1 MiB floor, so that more than 1 MiB is handed out at once; a peer whose
/// envelopes stall and are not delivered for a second goes back to the floor.
#[test]
fn a_far_peer_s_window_grows_and_returns_to_the_floor_when_it_stops_reading() {
    use std::time::{Duration, Instant};

    const FLOOR: u64 = 1 << 20;
    let (mut d, peer) = Driver::with_peer(ServerConfig::default());
    let blocks: Vec<Block> = (0..64).map(|i| block(7000 + i, 256 * 1024)).collect();
    d.put(&blocks.iter().collect::<Vec<_>>());
    let wants = blocks.iter().map(|b| want_block(b, 1, false)).collect();
    d.want(peer, wants);
    assert_eq!(d.engine.stats().window_bytes, FLOOR);

    let rtt = Duration::from_millis(200);
    let mut now = Instant::now();
    let mut most_out = 0u64;
    let mut delivered = 0;
    while delivered < blocks.len() {
        // Everything the engine hands out now goes out together and is written a round trip
        // later.
        d.lookups();
        let mut out = Vec::new();
        while let Some(envelope) = d.engine.poll_envelope() {
            out.push(envelope);
            d.lookups();
        }
        let bytes: u64 = out
            .iter()
            .flat_map(|e| &e.message.blocks)
            .map(|b| b.data().len() as u64)
            .sum();
        most_out = most_out.max(bytes);
        assert!(!out.is_empty(), "the engine stopped handing out envelopes");
        now += rtt;
        for envelope in &out {
            d.engine.handle_envelope_sent_at(envelope.id, now);
            delivered += envelope.message.blocks.len();
        }
        d.engine.check_invariants().expect("invariants");
    }
    assert!(
        most_out > 2 * FLOOR,
        "at most {most_out} bytes were handed out at once"
    );
    let grown = d.engine.stats().window_bytes;
    assert!(grown > 2 * FLOOR && grown <= 16 << 20, "window {grown}");

    // Now it asks again and stops reading: its envelopes stall, nothing is delivered.
    let more: Vec<Block> = (0..16).map(|i| block(8000 + i, 256 * 1024)).collect();
    d.put(&more.iter().collect::<Vec<_>>());
    let wants = more.iter().map(|b| want_block(b, 1, false)).collect();
    d.want(peer, wants);
    let held = d.hold();
    assert!(!held.is_empty());
    for envelope in &held {
        d.engine.handle_envelope_stalled(envelope.id);
    }
    // Another peer's delivery a second later lets the engine see the time.
    let other = d.connect(Version::V1_2_0);
    let small = block(9000, 1000);
    d.put(&[&small]);
    d.want(other, vec![want_block(&small, 1, false)]);
    d.lookups();
    let envelope = d.engine.poll_envelope().expect("the other peer's block");
    d.engine
        .handle_envelope_sent_at(envelope.id, now + Duration::from_millis(1100));
    assert_eq!(d.engine.stats().window_bytes, 2 * FLOOR);
    for envelope in held {
        d.engine.handle_envelope_failed(envelope.id);
    }
    d.engine.check_invariants().expect("invariants");
}
