//! What each want gets: blocks, presences, DONT_HAVEs, cancels and replaced wantlists.

use super::*;

#[test]
fn want_block_for_a_stored_block_gets_the_block_and_is_forgotten() {
    let b = block(1, 3000);
    let (mut d, peer) = Driver::wanting_stored(&b);
    assert_eq!(wantlist_cids(&d.engine, &peer), [*b.cid()]);
    let sent = d.run();
    assert_eq!(all_answers(&sent), [(peer, *b.cid(), Ans::Block)]);
    assert_eq!(sent[0].message.blocks[0], b);
    assert!(d.engine.peer_wantlist(&peer).is_empty());
    // Size first, then the block read when the envelope is built.
    assert_eq!(
        d.lookups,
        [(*b.cid(), LookupKind::Size), (*b.cid(), LookupKind::Get)]
    );
    let accounting = d.engine.peer_accounting(&peer).expect("connected");
    assert_eq!(accounting.blocks_sent, 1);
    assert_eq!(accounting.bytes_sent, 3000);
    assert_eq!(accounting.messages_sent, 1);
    assert_eq!(accounting.messages_received, 1);
}

#[test]
fn want_have_gets_small_blocks_and_a_have_for_large_ones() {
    let (small, exact, large) = (block(1, 100), block(2, 1024), block(3, 1025));
    let (mut d, peer) = Driver::with_stored(ServerConfig::default(), &[&small, &exact, &large]);
    // Each want-have (block, priority) and what it gets.
    let wants = [
        (&small, 3, Ans::Block),
        (&exact, 2, Ans::Block),
        (&large, 1, Ans::Have),
    ];
    let entries = wants
        .iter()
        .map(|(b, p, _)| want_have(b, *p, true))
        .collect();
    d.want(peer, entries);
    let expected = wants.iter().map(|(b, _, ans)| (peer, *b.cid(), *ans));
    assert_eq!(answer_set(&d.run()), expected.collect());
    assert!(
        d.engine.peer_wantlist(&peer).is_empty(),
        "HAVE forgets a want-have"
    );
}

#[test]
fn replace_size_zero_probes_presence_and_answers_have() {
    let b = block(1, 10);
    let (mut d, peer) = Driver::with_stored(
        ServerConfig::default().with_want_have_replace_size(0),
        &[&b],
    );
    d.want(peer, vec![want_have(&b, 1, true)]);
    assert_eq!(all_answers(&d.run()), [(peer, *b.cid(), Ans::Have)]);
    assert_eq!(d.lookups, [(*b.cid(), LookupKind::Has)]);
}

#[test]
fn missing_blocks_get_dont_have_only_when_asked_and_the_want_stays() {
    let (mut d, peer) = Driver::with_peer(ServerConfig::default());
    let (asked, silent, have_asked) = (block(1, 10), block(2, 10), block(3, 10));
    let entries = vec![
        want_block(&asked, 1, true),
        want_block(&silent, 1, false),
        want_have(&have_asked, 1, true),
    ];
    d.want(peer, entries);
    assert_eq!(
        answer_set(&d.run()),
        HashSet::from([
            (peer, *asked.cid(), Ans::DontHave),
            (peer, *have_asked.cid(), Ans::DontHave),
        ])
    );
    assert_eq!(
        d.engine.peer_wantlist(&peer).len(),
        3,
        "DONT_HAVE keeps wants"
    );
    assert_eq!(
        d.engine
            .peer_accounting(&peer)
            .expect("peer")
            .dont_haves_sent,
        2
    );
}

#[test]
fn send_dont_haves_off_never_sends_them() {
    let (mut d, peer) = Driver::with_peer(ServerConfig::default().with_send_dont_haves(false));
    let b = block(1, 10);
    d.want(peer, vec![want_block(&b, 1, true)]);
    assert!(d.run().is_empty());
}

#[test]
fn blocks_stored_later_reach_the_peers_that_want_them_in_queue_order() {
    let mut d = Driver::new(ServerConfig::default());
    let (a, b) = (d.connect(Version::V1_2_0), d.connect(Version::V1_2_0));
    let (low, high, large) = (block(1, 10), block(2, 10), block(3, 5000));
    d.want(
        a,
        vec![want_block(&low, 1, false), want_block(&high, 9, false)],
    );
    d.want(
        b,
        vec![want_have(&large, 1, true), want_block(&low, 1, true)],
    );
    let first = d.run();
    assert_eq!(
        all_answers(&first)
            .iter()
            .filter(|(_, _, ans)| *ans == Ans::DontHave)
            .count(),
        2
    );
    d.arrive(&[&low, &high, &large]);
    let sent = d.run();
    let to_a: Vec<_> = sent
        .iter()
        .filter(|e| e.peer == a)
        .flat_map(answers)
        .collect();
    assert_eq!(
        to_a,
        [(*high.cid(), Ans::Block), (*low.cid(), Ans::Block)],
        "higher priority first"
    );
    let to_b: HashSet<_> = sent
        .iter()
        .filter(|e| e.peer == b)
        .flat_map(answers)
        .collect();
    let expected: HashSet<_> = [(*large.cid(), Ans::Have), (*low.cid(), Ans::Block)]
        .into_iter()
        .collect();
    assert_eq!(to_b, expected);
    assert!(d.engine.peer_wantlist(&a).is_empty());
    assert!(d.engine.peer_wantlist(&b).is_empty());
}

#[test]
fn blocks_stored_under_another_cid_of_the_same_multihash_are_found() {
    let (mut d, peer) = Driver::with_peer(ServerConfig::default());
    let v0 = Block::from_v0_data(Bytes::from_static(b"dag-pb bytes")).expect("block");
    let v1 = Block::new(Cid::new_v1(0x70, *v0.cid().hash()), v0.data().clone()).expect("same");
    d.want(peer, vec![want_block(&v1, 1, false)]);
    assert!(d.run().is_empty());
    d.arrive(&[&v0]);
    eprintln!("stats after arrive {:?}", d.engine.stats());
    let sent = d.run();
    eprintln!("lookups {:?}", d.lookups);
    assert_eq!(all_answers(&sent), [(peer, *v1.cid(), Ans::Block)]);
    assert_eq!(
        sent[0].message.blocks[0].cid(),
        v1.cid(),
        "under the CID asked"
    );
}

#[test]
fn peers_before_1_2_get_blocks_for_want_haves_and_no_presences() {
    for version in [Version::V1_1_0, Version::V1_0_0] {
        let mut d = Driver::new(ServerConfig::default());
        let peer = d.connect(version);
        // CIDv0 blocks, so that 1.0.0 can carry them.
        let large = Block::from_v0_data(Bytes::from(vec![7u8; 5000])).expect("block");
        let missing = Block::from_v0_data(Bytes::from_static(b"missing")).expect("block");
        d.put(&[&large]);
        let entries = vec![want_have(&large, 1, true), want_have(&missing, 1, true)];
        d.want(peer, entries);
        let sent = d.run();
        assert_eq!(
            all_answers(&sent),
            [(peer, *large.cid(), Ans::Block)],
            "{version}"
        );
        let kept = d.engine.peer_wantlist(&peer);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].want_type, WantType::Block);
        assert!(!kept[0].send_dont_have);
    }
}

#[test]
fn full_wantlist_replaces_and_removes_queued_tasks() {
    let mut d = Driver::new(ServerConfig::default().with_max_envelopes_in_flight(1));
    let held = d.block_the_slot();
    let peer = d.connect(Version::V1_2_0);
    let (a, b, c) = (block(1, 10), block(2, 10), block(3, 10));
    d.put(&[&a, &b, &c]);
    d.want(peer, vec![want_block(&a, 1, true), want_block(&b, 1, true)]);
    assert!(d.probes().is_none());
    assert_eq!(d.engine.stats().pending_tasks, 2, "answers queued");
    d.engine
        .handle_message(peer, &full(vec![want_block(&c, 1, true)]));
    assert_eq!(wantlist_cids(&d.engine, &peer), [*c.cid()]);
    assert_eq!(d.engine.stats().pending_tasks, 0, "old answers removed");
    d.release_the_slot(held);
    let answers: Vec<_> = all_answers(&d.run())
        .into_iter()
        .filter(|answer| answer.0 == peer)
        .collect();
    assert_eq!(answers, [(peer, *c.cid(), Ans::Block)]);
}

#[test]
fn cancel_removes_the_want_and_its_queued_answer() {
    let mut d = Driver::new(ServerConfig::default().with_max_envelopes_in_flight(1));
    let held = d.block_the_slot();
    let peer = d.connect(Version::V1_2_0);
    let (a, b) = (block(1, 10), block(2, 10));
    d.put(&[&a]);
    let entries = vec![want_block(&a, 1, true), want_block(&b, 1, true)];
    d.want(peer, entries);
    assert!(d.probes().is_none());
    assert_eq!(d.engine.stats().pending_tasks, 2);
    d.want(peer, vec![Entry::cancel(*a.cid()), Entry::cancel(*b.cid())]);
    assert_eq!(d.engine.stats().pending_tasks, 0);
    assert!(d.engine.peer_wantlist(&peer).is_empty());
    d.release_the_slot(held);
    assert!(d.run().iter().all(|envelope| envelope.peer != peer));
}

#[test]
fn cancel_while_the_block_is_read_sends_nothing() {
    let a = block(1, 10);
    let (mut d, peer) = Driver::wanting_stored(&a);
    let get = d.probes().expect("a block read");
    assert!(
        d.engine.poll_envelope().is_none(),
        "waits for the block read"
    );
    d.want(peer, vec![Entry::cancel(*a.cid())]);
    d.engine
        .handle_lookup(get.id, LookupResult::Block(Some(a.clone())));
    assert!(d.run().is_empty());
    let stats = d.engine.stats();
    assert_eq!((stats.active_tasks, stats.envelopes_in_flight), (0, 0));
}

#[test]
fn a_want_asked_again_without_dont_have_gets_none_from_an_earlier_task() {
    let (mut d, peer) = Driver::with_peer(ServerConfig::default());
    let a = block(1, 10);
    d.want(peer, vec![want_block(&a, 1, true)]);
    assert!(d.probes().is_none(), "DONT_HAVE popped, not handed out");
    assert_eq!(d.engine.stats().active_tasks, 1);
    d.engine
        .handle_message(peer, &full(vec![want_block(&a, 1, false)]));
    assert!(d.run().is_empty());
}

#[test]
fn cancel_drops_a_refused_wants_dont_have_before_it_is_handed_out() {
    let (mut d, peer) =
        Driver::with_peer(ServerConfig::default().with_request_filter(|_, _| false));
    let a = block(1, 10);
    d.want(peer, vec![want_block(&a, 1, true)]);
    assert!(d.engine.poll_lookup().is_none(), "pops the DONT_HAVE");
    assert_eq!(d.engine.stats().active_tasks, 1);
    d.want(peer, vec![Entry::cancel(*a.cid())]);
    assert!(d.run().is_empty());
    assert_eq!(d.engine.stats().active_tasks, 0);
}

#[test]
fn a_block_gone_before_it_is_read_is_answered_dont_have_and_stays_wanted() {
    let a = block(1, 10);
    let (mut d, peer) = Driver::wanting_stored(&a);
    let get = d.probes().expect("a block read");
    d.store.clear();
    d.engine.handle_lookup(get.id, LookupResult::Block(None));
    assert_eq!(all_answers(&d.run()), [(peer, *a.cid(), Ans::DontHave)]);
    assert_eq!(wantlist_cids(&d.engine, &peer), [*a.cid()]);
}
