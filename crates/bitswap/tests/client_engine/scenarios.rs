//! Scenarios: batches over one and three servers, silent, slow, lossy and lying peers, wrong
//! bytes, reconnections, cancels, 1.1.0 peers, providers, limits, sessions and timeouts.

use super::*;

#[test]
fn fetches_a_batch_from_one_server() {
    let data = blocks(50, 8000);
    let mut net = Net::new(ClientConfig::default());
    let [s] = net.connected([(Kind::Honest, &data)]);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(5), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    let stats = net.client.stats();
    assert_eq!(stats.blocks_received, 50);
    assert_eq!(stats.duplicate_blocks, 0);
    assert_eq!(stats.wants, 0);
    assert!(net.client.query_progress(query).is_none());
    let last_progress = net.events.iter().rev().find_map(|e| match e {
        ClientEvent::Progress { progress, .. } => Some(*progress),
        _ => None,
    });
    let progress = last_progress.expect("progress events");
    assert_eq!((progress.blocks_received, progress.blocks_total), (50, 50));
    assert_eq!(progress.bytes_received, 50 * 8000);
    assert_eq!(progress.peers, 1);
    // Everything was asked as want-block from the only server; nothing left there.
    assert!(
        net.servers[s]
            .engine
            .peer_wantlist(&net.client_id)
            .is_empty()
    );
    assert!(net.client.peer_wants(&net.servers[s].id).is_empty());
}

/// boxo's 3-node benchmarks: 100 blocks of 8000 B on three servers (all of them, or
/// overlapping thirds), fetched one at a time, in batches of 10, or all at once, in one
/// session. Duplicate bytes must stay under 5%.
fn three_servers(overlap: bool, batch: usize, size: usize) -> (f64, Duration, u64) {
    let data = blocks(100, size);
    let mut net = Net::new(ClientConfig::default());
    for k in 0..3u32 {
        let held: Vec<Block> = data
            .iter()
            .enumerate()
            .filter(|(i, _)| !overlap || (*i as u32).is_multiple_of(3) || (*i as u32) % 2 == k % 2)
            .map(|(_, b)| b.clone())
            .collect();
        let s = net.server(Kind::Honest, Version::V1_2_0, &held);
        net.servers[s].latency = Duration::from_millis(10 + 5 * k as u64);
        net.connect(s);
    }
    let session = net.client.new_session().expect("room");
    for chunk in data.chunks(batch) {
        let query = net.get(cids(chunk), Some(session));
        assert!(
            net.run_until(Duration::from_secs(60), |n| n.finished(query)),
            "batch fetched"
        );
        assert_exactly(&net, query, &cids(chunk));
    }
    // Let late answers arrive so that duplicates are all counted.
    net.run_until(Duration::from_secs(1), |n| n.in_flight.is_empty());
    let stats = net.client.stats();
    assert_eq!(stats.blocks_received, 100);
    assert_eq!(stats.unwanted_blocks, 0);
    for s in &net.servers {
        assert!(s.engine.peer_wantlist(&net.client_id).is_empty());
    }
    (net.duplicate_percent(), net.elapsed(), stats.messages_sent)
}

/// [`three_servers`] in batches of 1, 10 and 100 blocks: duplicate bytes stay under 5%.
fn three_peers_duplicates_stay_under_5_percent(overlap: bool, block_len: usize) {
    for batch in [1, 10, 100] {
        let (dups, elapsed, messages) = three_servers(overlap, batch, block_len);
        let case = format!("{block_len} B, overlap {overlap}, batch {batch}");
        println!("{case}: {dups:.2}% duplicate bytes, {elapsed:?}, {messages} messages");
        assert!(dups < 5.0, "{case}: {dups}% duplicate bytes");
    }
}

#[test]
fn three_peers_all_have_everything_duplicates_stay_under_5_percent() {
    three_peers_duplicates_stay_under_5_percent(false, 8000);
}

#[test]
fn three_peers_overlapping_data_duplicates_stay_under_5_percent() {
    three_peers_duplicates_stay_under_5_percent(true, 8000);
}

#[test]
fn three_peers_small_blocks_duplicates_stay_under_5_percent() {
    // Servers answer a want-have for a block of at most 1 KiB with the block itself.
    for overlap in [false, true] {
        three_peers_duplicates_stay_under_5_percent(overlap, 500);
    }
}

#[test]
fn a_batch_spreads_over_the_peers_that_have_it() {
    let data = blocks(96, 8000);
    let mut net = Net::new(ClientConfig::default());
    for _ in 0..3 {
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].rate = Some(10_000_000);
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    let asked = |net: &Net, s: usize| {
        net.client
            .peer_wants(&net.servers[s].id)
            .iter()
            .filter(|e| e.want_type == WantType::Block)
            .count()
    };
    // Before anything is measured, each peer gets the same window.
    let first = asked(&net, 0);
    assert!(first > 0);
    assert!((0..3).all(|s| asked(&net, s) == first));
    assert!(net.run_until(Duration::from_secs(5), |n| n.finished(query)));
    assert_eq!(net.client.stats().duplicate_blocks, 0);
    // Alike peers end up serving alike shares.
    for s in &net.servers {
        assert!(
            (24..=40).contains(&s.arrivals.len()),
            "{}",
            s.arrivals.len()
        );
    }
}

#[test]
fn a_silent_peer_gets_a_simulated_dont_have_and_others_serve() {
    let data = blocks(20, 8000);
    let mut net = Net::new(ClientConfig::default());
    let silent = net.server(Kind::Silent, Version::V1_2_0, &data);
    let good = net.server(Kind::Honest, Version::V1_2_0, &data);
    // The silent server sorts first, so it is asked for the blocks first.
    assert!(net.servers[silent].id < net.servers[good].id);
    net.connect(silent);
    net.connect(good);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    let stats = net.client.stats();
    assert!(stats.timeouts > 0);
    // The first timeout is the initial 2 s; nothing waits for the 30 s resend.
    assert!(
        net.elapsed() < Duration::from_secs(3),
        "{:?}",
        net.elapsed()
    );
    assert!(
        net.client
            .peer_score(&net.servers[silent].id)
            .expect("known")
            < 0
    );
}

#[test]
fn the_timeout_adapts_to_measured_latency_with_a_floor() {
    let data = blocks(17, 8000);
    let mut net = Net::new(ClientConfig::default());
    let good = net.server(Kind::Honest, Version::V1_2_0, &data[..16]);
    net.servers[good].latency = Duration::from_micros(50);
    net.servers[good].rate = Some(40_000_000);
    net.connect(good);
    // Enough blocks, one after the other, for the peer's delivery rate to be measured:
    // before, a want-block gets the initial timeout.
    let first = net.get(cids(&data[..16]), None);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(first)));
    let latency = net
        .client
        .peer_latency(&net.servers[good].id)
        .expect("measured");
    // The average wait includes the queue of 16 blocks at 0.2 ms each.
    assert!(latency < Duration::from_millis(5), "{latency:?}");
    // Loopback latency, but the second want (which the server lacks... and stays silent on,
    // since it is made silent) times out after the floor, not after 3 x 100 us.
    net.servers[good].kind = Kind::Silent;
    let start = net.now;
    let second = net.get(vec![*data[16].cid()], None);
    net.run_until(Duration::from_secs(1), |n| n.client.stats().timeouts > 0);
    let waited = net.now - start;
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_millis(110), "{waited:?}");
    assert!(!net.finished(second));
}

#[test]
fn a_slow_peer_does_not_cause_duplicates() {
    let data = blocks(30, 8000);
    let mut net = Net::new(ClientConfig::default());
    let slow = net.server(Kind::Honest, Version::V1_2_0, &data);
    let fast = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.servers[slow].latency = Duration::from_millis(400);
    net.servers[fast].latency = Duration::from_millis(5);
    net.connect(slow);
    net.connect(fast);
    let session = net.client.new_session().expect("room");
    for chunk in data.chunks(3) {
        let query = net.get(cids(chunk), Some(session));
        assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
    }
    net.run_until(Duration::from_secs(2), |n| n.in_flight.is_empty());
    assert!(net.duplicate_percent() < 5.0, "{}", net.duplicate_percent());
    // The fast peer ends up serving most blocks in the session.
    let peers = net.client.session_peers(session);
    assert_eq!(peers[0].0, net.servers[fast].id, "{peers:?}");
}

#[test]
fn a_lossy_network_recovers_by_resending() {
    let data = blocks(40, 8000);
    let mut net = Net::new(ClientConfig::default()).seed(7);
    for _ in 0..2 {
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].loss = 0.4;
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(300), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    let resends = net.servers[0]
        .received
        .iter()
        .chain(&net.servers[1].received)
        .flat_map(|m| &m.wantlist.entries)
        .filter(|e| !e.cancel)
        .count();
    assert!(
        resends > 40,
        "lost wants were sent again ({resends} wants sent)"
    );
}

#[test]
fn a_liar_saying_have_then_dont_have_is_penalised() {
    let data = blocks(10, 8000);
    let mut net = Net::new(ClientConfig::default());
    // The honest server sorts first (asked for the blocks first) but has nothing yet.
    let [honest, liar] = net.connected([(Kind::Honest, &[]), (Kind::Liar, &[])]);
    let query = net.get(cids(&data), None);
    net.run_until(Duration::from_secs(1), |_| false);
    // DONT_HAVE from the honest one, HAVE from the liar: the liar was asked for the blocks
    // and refused them.
    let liar_id = net.servers[liar].id;
    let asked_liar = net.servers[liar]
        .received
        .iter()
        .flat_map(|m| &m.wantlist.entries)
        .filter(|e| e.want_type == WantType::Block && !e.cancel)
        .count();
    assert!(asked_liar > 0);
    assert!(net.client.peer_score(&liar_id).expect("known") < 0);
    assert!(!net.finished(query));
    assert!(
        !net.searches.is_empty(),
        "nobody has it: providers searched"
    );
    // The honest server gets the blocks: it still holds the wants and sends them.
    for blk in &data {
        net.servers[honest]
            .store
            .insert(*blk.cid().hash(), blk.clone());
    }
    net.servers[honest]
        .engine
        .handle_new_blocks(data.iter().map(|b| (*b.cid(), b.data().len())));
    net.run_server(honest);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    assert_eq!(net.client.stats().duplicate_blocks, 0);
}

#[test]
fn wrong_bytes_are_dropped_and_the_sender_left_out() {
    let data = blocks(6, 8000);
    let mut net = Net::new(ClientConfig::default());
    let cheat = net.server(Kind::WrongBytes, Version::V1_2_0, &[]);
    let honest = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.servers[cheat].latency = Duration::from_millis(1);
    net.connect(cheat);
    net.connect(honest);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    let stats = net.client.stats();
    assert!(stats.unwanted_blocks > 0);
    // None of the cheat's blocks was reported to a query.
    assert_eq!(net.received(query).len(), 6);
    let cheat_id = net.servers[cheat].id;
    assert!(net.client.is_penalised(&cheat_id, net.now));
    // A penalised peer is asked for nothing new.
    let more = blocks(8, 8000)[6..].to_vec();
    let before = net.servers[cheat].received.len();
    let query = net.get(cids(&more), None);
    assert!(net.client.peer_wants(&cheat_id).is_empty());
    assert_eq!(net.servers[cheat].received.len(), before);
    assert!(!net.finished(query));
}

#[test]
fn a_reconnected_peer_is_sent_the_wantlist_again() {
    let data = blocks(40, 8000);
    let mut net = Net::new(ClientConfig::default());
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.servers[s].latency = Duration::from_millis(50);
    net.connect(s);
    let query = net.get(cids(&data), None);
    // The connection drops while the wants are on the wire: the server never sees them.
    net.disconnect(s);
    assert!(net.client.peer_wants(&net.servers[s].id).is_empty());
    net.run_until(Duration::from_millis(200), |_| false);
    assert!(!net.finished(query));
    net.connect(s);
    // As many as its first window (8 MiB of 256 KiB blocks before it delivered any).
    assert_eq!(net.client.peer_wants(&net.servers[s].id).len(), 32);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
}

#[test]
fn cancels_reach_servers_and_no_block_follows() {
    let data = blocks(4, 8000);
    let mut net = Net::new(ClientConfig::default());
    // Neither server has the blocks yet: they answer DONT_HAVE and keep the wants.
    let [a, b] = net.connected([(Kind::Honest, &[]), (Kind::Honest, &[])]);
    let query = net.get(cids(&data), None);
    net.run_until(Duration::from_millis(500), |n| n.in_flight.is_empty());
    for s in [a, b] {
        assert_eq!(net.servers[s].engine.peer_wantlist(&net.client_id).len(), 4);
    }
    assert!(net.client.cancel(query, net.now));
    assert!(!net.client.cancel(query, net.now));
    net.drain();
    net.run_until(Duration::from_millis(500), |n| n.in_flight.is_empty());
    for s in [a, b] {
        assert!(
            net.servers[s]
                .engine
                .peer_wantlist(&net.client_id)
                .is_empty()
        );
    }
    // The servers get the blocks later: nothing is sent for cancelled wants.
    let events = net.events.len();
    for s in [a, b] {
        for blk in &data {
            net.servers[s].store.insert(*blk.cid().hash(), blk.clone());
        }
        net.servers[s]
            .engine
            .handle_new_blocks(data.iter().map(|b| (*b.cid(), b.data().len())));
        net.run_server(s);
    }
    net.run_until(Duration::from_secs(1), |n| n.in_flight.is_empty());
    assert_eq!(net.events.len(), events, "no event after a cancel");
    assert_eq!(net.client.stats().blocks_received, 0);
    assert_eq!(net.client.stats().wants, 0);
}

#[test]
fn blocks_found_later_by_a_server_still_arrive() {
    let data = blocks(3, 8000);
    let mut net = Net::new(ClientConfig::default());
    let [s] = net.connected([(Kind::Honest, &[])]);
    let query = net.get(cids(&data), None);
    net.run_until(Duration::from_secs(2), |_| false);
    assert!(!net.finished(query));
    for blk in &data {
        net.servers[s].store.insert(*blk.cid().hash(), blk.clone());
    }
    net.servers[s]
        .engine
        .handle_new_blocks(data.iter().map(|b| (*b.cid(), b.data().len())));
    net.run_server(s);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
}

#[test]
fn a_1_1_0_peer_is_sent_want_blocks_only_one_at_a_time() {
    let data = blocks(20, 8000);
    let mut net = Net::new(ClientConfig::default());
    let old_a = net.server(Kind::Honest, Version::V1_1_0, &data);
    let old_b = net.server(Kind::Honest, Version::V1_1_0, &data);
    let new = net.server(Kind::Honest, Version::V1_2_0, &[]);
    for s in [old_a, old_b, new] {
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    net.run_until(Duration::from_secs(1), |n| n.in_flight.is_empty());
    // Before encoding too: the client never asked an old peer for a presence.
    assert_eq!(net.client.stats().duplicate_blocks, 0);
    for s in [old_a, old_b] {
        assert!(
            net.servers[s]
                .raw
                .iter()
                .flat_map(|m| &m.wantlist.entries)
                .all(|e| e.cancel || e.want_type == WantType::Block)
        );
    }
}

#[test]
fn a_want_nobody_has_asks_for_providers_and_dials_them() {
    let data = blocks(1, 8000);
    let cid = *data[0].cid();
    let config = ClientConfig::default().with_provider_search_interval(Duration::from_secs(10));
    let mut net = Net::new(config);
    let empty = net.server(Kind::Honest, Version::V1_2_0, &[]);
    let provider = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.connect(empty);
    let query = net.get(vec![cid], None);
    // DONT_HAVE from the only peer: search at once.
    net.run_until(Duration::from_millis(100), |n| !n.searches.is_empty());
    assert_eq!(net.searches.len(), 1);
    assert!(net.searches[0].0 < Duration::from_millis(100));
    // Not again before the interval, again after it; the want stays.
    net.run_until(Duration::from_secs(25), |_| false);
    assert_eq!(net.searches.len(), 3, "{:?}", net.searches);
    assert!(net.searches[1].0 >= Duration::from_secs(10));
    assert!(!net.finished(query));
    // The embedder found a provider that is not connected: it is dialled and asked.
    let provider_id = net.servers[provider].id;
    net.client.add_providers(&cid, [provider_id], net.now);
    net.drain();
    assert_eq!(net.dials, vec![provider_id]);
    assert!(net.servers[provider].connected);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
    // The provider was asked for the block straight away, as if it had said HAVE.
    let first = &net.servers[provider].received[0].wantlist.entries[0];
    assert_eq!((first.cid, first.want_type), (cid, WantType::Block));
}

#[test]
fn without_peers_the_want_waits_and_goes_out_on_connection() {
    let data = blocks(2, 8000);
    // A minute without peers: beyond the default no-peer timeout, which would fail it.
    let mut net = Net::new(ClientConfig::default().with_no_peer_timeout(None));
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    let query = net.get(cids(&data), None);
    assert_eq!(net.searches.len(), 2, "one search per CID at once");
    net.run_until(Duration::from_secs(60), |_| false);
    assert!(!net.finished(query));
    net.connect(s);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(query)));
}

/// A CID whose hash function this build cannot compute could never be verified: the query is
/// refused at once, whole, instead of being wanted forever.
#[test]
fn a_cid_whose_hash_cannot_be_verified_is_refused_at_once() {
    let data = blocks(2, 100);
    let mut net = Net::new(ClientConfig::default());
    // md5 (0xd5): in the multihash table, in no hash family of multihash-codetable.
    let md5 = Cid::new_v1(0x55, Multihash::wrap(0xd5, &[7; 16]).expect("short"));
    let mut asked = cids(&data);
    asked.push(md5);
    assert_eq!(
        net.client.get(asked, None, net.now),
        Err(QueryError::UnsupportedHash {
            cid: md5,
            code: 0xd5
        })
    );
    assert!(net.client.wants().next().is_none(), "nothing is wanted");
    // Hash functions of this build are asked for as usual.
    let query = net.get(cids(&data), None);
    net.connected([(Kind::Honest, &data)]);
    assert!(net.run_until(Duration::from_secs(10), |n| n.finished(query)));
}

#[test]
fn limits_refuse_queries_and_cap_wants_per_peer() {
    let config = ClientConfig::default()
        .with_max_cids_per_query(50)
        .with_max_wants(60)
        .with_max_queries(3)
        .with_max_wants_per_peer(8);
    let data = blocks(70, 8000);
    let mut net = Net::new(config);
    assert_eq!(
        net.client.get(cids(&data[..51]), None, net.now),
        Err(QueryError::TooManyCids {
            requested: 51,
            max: 50
        })
    );
    let first = net.get(cids(&data[..40]), None);
    assert_eq!(
        net.client.get(cids(&data[30..70]), None, net.now),
        Err(QueryError::TooManyWants { max: 60 })
    );
    let [s] = net.connected([(Kind::Honest, &data)]);
    let id = net.servers[s].id;
    let mut most = 0;
    let done = net.run_until(Duration::from_secs(10), |n| {
        most = most.max(n.client.peer_wants(&id).len());
        n.finished(first)
    });
    assert!(done);
    assert!(most <= 8, "{most} wants at one peer");
    for m in &net.servers[s].received {
        assert!(m.wantlist.entries.iter().filter(|e| !e.cancel).count() <= 8);
    }
    let a = net.get(cids(&data[40..41]), None);
    let _b = net.get(cids(&data[40..41]), None);
    let _c = net.get(cids(&data[41..42]), None);
    assert_eq!(
        net.client.get(cids(&data[42..43]), None, net.now),
        Err(QueryError::TooManyQueries { max: 3 })
    );
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(a)));
}

#[test]
fn wantlist_updates_are_split_under_the_message_size() {
    // A window as large as the wants allowed per peer: all 200 go out at once.
    let config = ClientConfig::default()
        .with_max_message_size(1024)
        .with_initial_window_bytes(u64::MAX);
    let data = blocks(200, 2000);
    let mut net = Net::new(config);
    let [s] = net.connected([(Kind::Honest, &data)]);
    let query = net.get(cids(&data), None);
    let raw = net.servers[s].raw.clone();
    assert!(
        raw.len() > 1,
        "one update split into {} messages",
        raw.len()
    );
    for message in &raw {
        let frames = encode(message, Version::V1_2_0);
        assert!(
            frames.iter().all(|f| f.len() <= 1024),
            "{:?}",
            frames.iter().map(|f| f.len()).collect::<Vec<_>>()
        );
    }
    assert_eq!(
        raw.iter().map(|m| m.wantlist.entries.len()).sum::<usize>(),
        200
    );
    assert!(net.run_until(Duration::from_secs(5), |n| n.finished(query)));
}

#[test]
fn one_block_wanted_by_two_queries_is_reported_to_each_once() {
    let data = blocks(3, 8000);
    let mut net = Net::new(ClientConfig::default());
    let [s] = net.connected([(Kind::Honest, &data)]);
    let q1 = net.get(cids(&data[..2]), None);
    let q2 = net.get(cids(&data[1..]), None);
    assert!(net.run_until(Duration::from_secs(1), |n| n.finished(q1) && n.finished(q2)));
    assert_exactly(&net, q1, &cids(&data[..2]));
    assert_exactly(&net, q2, &cids(&data[1..]));
    // The shared block was asked once.
    let asked = net.servers[s]
        .received
        .iter()
        .flat_map(|m| &m.wantlist.entries)
        .filter(|e| e.cid == *data[1].cid() && !e.cancel)
        .count();
    assert_eq!(asked, 1);
}

#[test]
fn identity_and_empty_queries_finish_at_once() {
    let mut net = Net::new(ClientConfig::default());
    let digest = b"inline";
    let cid = Cid::new_v1(0x55, Multihash::wrap(0, digest).expect("short"));
    let query = net.get(vec![cid, cid], None);
    assert!(net.finished(query));
    assert_eq!(net.received(query), vec![cid]);
    let empty = net.get(vec![], None);
    assert!(net.finished(empty));
    assert_eq!(net.client.stats().wants, 0);
}

#[test]
fn a_query_timeout_fails_the_query_and_cancels_its_wants() {
    let config = ClientConfig::default().with_query_timeout(Some(Duration::from_secs(5)));
    let mut net = Net::new(config);
    let [s] = net.connected([(Kind::Honest, &[])]);
    let query = net.get(cids(&blocks(2, 8000)), None);
    net.run_until(Duration::from_secs(6), |n| {
        n.events
            .iter()
            .any(|e| matches!(e, ClientEvent::QueryFailed { .. }))
    });
    assert!(net.events.contains(&ClientEvent::QueryFailed {
        query,
        error: QueryError::TimedOut
    }));
    assert_eq!(net.client.stats().wants, 0);
    net.run_until(Duration::from_millis(100), |n| n.in_flight.is_empty());
    assert!(
        net.servers[s]
            .engine
            .peer_wantlist(&net.client_id)
            .is_empty()
    );
}

#[test]
fn closing_a_session_cancels_its_queries() {
    let data = blocks(2, 8000);
    let mut net = Net::new(ClientConfig::default());
    let session = net.client.new_session().expect("room");
    let q = net.get(cids(&data), Some(session));
    net.client.close_session(session, net.now);
    net.drain();
    assert!(net.client.query_progress(q).is_none());
    assert_eq!(net.client.stats().wants, 0);
    assert_eq!(
        net.client.get(cids(&data), Some(session), net.now),
        Err(QueryError::UnknownSession(session))
    );
}
