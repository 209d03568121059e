//! Links with bandwidth: servers behind rates and delays are kept busy without timeouts or
//! duplicates, want-blocks spread by rate, and one server never gets a want-block twice.

use super::*;

/// The CIDs of the want-blocks the client has sent `server`, in order.
fn want_blocks(net: &Net, server: usize) -> impl Iterator<Item = Cid> + '_ {
    net.servers[server]
        .raw
        .iter()
        .flat_map(|m| &m.wantlist.entries)
        .filter(|e| !e.cancel && e.want_type == WantType::Block)
        .map(|e| e.cid)
}

/// Want-blocks the client sent `server` more than once for the same CID (a cancel in between
/// does not make a second want-block legitimate; a DONT_HAVE does).
fn want_blocks_sent_twice(net: &Net, server: usize) -> Vec<Cid> {
    let mut asked = std::collections::HashSet::new();
    want_blocks(net, server)
        .filter(|cid| !asked.insert(*cid))
        .collect()
}

/// The longest time during which the client held a want-block at `server` and no block came
/// from it, and whether the server was still sending then: here, the longest gap between two
/// blocks from the server.
fn longest_gap(net: &Net, server: usize) -> Duration {
    net.servers[server]
        .arrivals
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// A client connected to two servers with `data`, each behind a 20 MB/s link with 25 ms each
/// way.
fn two_servers_at_20_mb_s(data: &[Block]) -> Net {
    let mut net = Net::new(ClientConfig::default());
    for _ in 0..2 {
        let s = net.server(Kind::Honest, Version::V1_2_0, data);
        net.servers[s].rate = Some(20_000_000);
        net.servers[s].latency = Duration::from_millis(25);
        net.connect(s);
    }
    net
}

/// Two servers with every block, each behind a 20 MB/s link with 25 ms each way: the client
/// keeps both links busy without a want timing out while its server delivers, and without
/// duplicates.
#[test]
fn two_servers_at_20_mb_s_fill_their_links_without_timeouts_or_duplicates() {
    let data = blocks(512, 256 * 1024);
    let mut net = two_servers_at_20_mb_s(&data);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(60), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&data));
    net.run_until(Duration::from_secs(2), |n| n.in_flight.is_empty());
    let stats = net.client.stats();
    let seconds = net.elapsed().as_secs_f64();
    let fraction = (512.0 * 256.0 * 1024.0) / seconds / 40e6;
    println!(
        "2 x 20 MB/s, 25 ms: {seconds:.2} s, {fraction:.2} of the links, {:.2}% duplicates, \
         {} timeouts, {} messages, longest gaps {:?} / {:?}",
        net.duplicate_percent(),
        stats.timeouts,
        stats.messages_sent,
        longest_gap(&net, 0),
        longest_gap(&net, 1),
    );
    assert_eq!(
        stats.timeouts, 0,
        "no want timed out while its server delivered"
    );
    assert!(
        net.duplicate_percent() < 5.0,
        "{}%",
        net.duplicate_percent()
    );
    assert!(fraction > 0.85, "{fraction:.2} of the links used");
    for s in 0..2 {
        assert!(want_blocks_sent_twice(&net, s).is_empty());
    }
}

/// A server behind a 20 MB/s link with 25 ms each way whose large blocks reach the client
/// whole only every 400 ms, in bursts (it writes them on several streams at once, which share
/// its link), after a small block measured its round trip: no want times out while it
/// delivers, though 400 ms is longer than its round trip and four blocks' transfer allow.
#[test]
fn a_server_whose_blocks_arrive_in_bursts_is_not_timed_out() {
    let small = vec![block(1000, 8000)];
    let large = blocks(256, 256 * 1024);
    let all: Vec<Block> = small.iter().chain(&large).cloned().collect();
    let mut net = Net::new(ClientConfig::default());
    let s = net.server(Kind::Honest, Version::V1_2_0, &all);
    net.servers[s].rate = Some(20_000_000);
    net.servers[s].latency = Duration::from_millis(25);
    net.servers[s].bursts = Some(Duration::from_millis(400));
    net.connect(s);
    let session = net.client.new_session().expect("room");
    let first = net.get(cids(&small), Some(session));
    assert!(net.run_until(Duration::from_secs(5), |n| n.finished(first)));
    let query = net.get(cids(&large), Some(session));
    assert!(net.run_until(Duration::from_secs(60), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&large));
    let stats = net.client.stats();
    assert_eq!(
        stats.timeouts, 0,
        "no want timed out while its server delivered"
    );
    assert!(want_blocks_sent_twice(&net, s).is_empty());
}

/// Two servers behind 20 MB/s links with 25 ms each way. The last want-blocks go out when
/// each server holds a few round trips' worth (twice the bandwidth-delay product of two
/// round trips: 16 blocks), not the half second of blocks (39) that a window keeps while
/// many wants wait: what a server holds then decides when it finishes, and the client's
/// estimate of its rate errs by a share of it.
#[test]
fn the_last_want_blocks_go_out_when_little_waits_at_each_server() {
    let data = blocks(512, 256 * 1024);
    let mut net = two_servers_at_20_mb_s(&data);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(60), |n| n.finished(query)));
    for s in 0..2 {
        let server = &net.servers[s];
        let sent: Vec<(Instant, usize)> = server
            .raw
            .iter()
            .zip(&server.raw_at)
            .map(|(m, at)| {
                let blocks = m
                    .wantlist
                    .entries
                    .iter()
                    .filter(|e| !e.cancel && e.want_type == WantType::Block);
                (*at, blocks.count())
            })
            .filter(|(_, blocks)| *blocks > 0)
            .collect();
        let last = sent.last().expect("want-blocks sent").0;
        let asked: usize = sent.iter().map(|(_, blocks)| blocks).sum();
        let arrived = server.arrivals.iter().filter(|at| **at <= last).count();
        let waiting = asked - arrived;
        println!("server {s}: {waiting} want-blocks waiting when the last went out");
        assert!(waiting <= 24, "server {s}: {waiting} want-blocks waiting");
    }
}

/// Links of different rates: blocks go to each server in proportion to its rate.
#[test]
fn want_blocks_spread_in_proportion_to_the_rates() {
    let data = blocks(384, 256 * 1024);
    let mut net = Net::new(ClientConfig::default());
    for rate in [40_000_000, 10_000_000, 5_000_000] {
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].rate = Some(rate);
        net.servers[s].latency = Duration::from_millis(25);
        net.connect(s);
    }
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(60), |n| n.finished(query)));
    net.run_until(Duration::from_secs(2), |n| n.in_flight.is_empty());
    let shares: Vec<usize> = net.servers.iter().map(|s| s.arrivals.len()).collect();
    let seconds = net.elapsed().as_secs_f64();
    let fraction = (384.0 * 256.0 * 1024.0) / seconds / 55e6;
    println!(
        "40/10/5 MB/s: {seconds:.2} s, {fraction:.2} of the links, blocks per server {shares:?}, \
         {:.2}% duplicates, {} timeouts",
        net.duplicate_percent(),
        net.client.stats().timeouts
    );
    assert!(
        net.duplicate_percent() < 5.0,
        "{}%",
        net.duplicate_percent()
    );
    // 40:10:5 of 384 blocks is about 279:70:35.
    assert!(
        shares[0] > 240 && shares[1] > 45 && shares[2] > 20,
        "{shares:?}"
    );
    assert!(fraction > 0.75, "{fraction:.2} of the links used");
}

/// Two servers behind 2 MB/s links with 25 ms each way. A first small block measures the
/// round trip to both (one delivers it, the other answers HAVE), then 1 MiB blocks follow,
/// each taking ten times that round trip to arrive. No want-block times out at the server
/// that has not delivered a block yet: its first blocks are slow, not missing.
#[test]
fn first_blocks_slower_than_the_round_trip_of_presences_are_not_timed_out() {
    let small = blocks(1, 8000);
    let large = blocks(40, 1024 * 1024);
    let all: Vec<Block> = small.iter().chain(&large).cloned().collect();
    let config = ClientConfig::default().with_initial_window_bytes(4 << 20);
    let mut net = Net::new(config);
    for _ in 0..2 {
        let s = net.server(Kind::Honest, Version::V1_2_0, &all);
        net.servers[s].rate = Some(2_000_000);
        net.servers[s].latency = Duration::from_millis(25);
        net.connect(s);
    }
    let session = net.client.new_session().expect("room");
    let first = net.get(cids(&small), Some(session));
    assert!(net.run_until(Duration::from_secs(5), |n| n.finished(first)));
    for s in 0..2 {
        let id = net.servers[s].id;
        assert!(
            net.client.peer_latency(&id).is_some(),
            "round trip to {s} measured"
        );
    }
    let query = net.get(cids(&large), Some(session));
    assert!(net.run_until(Duration::from_secs(120), |n| n.finished(query)));
    assert_exactly(&net, query, &cids(&large));
    net.run_until(Duration::from_secs(2), |n| n.in_flight.is_empty());
    let stats = net.client.stats();
    let shares: Vec<usize> = net.servers.iter().map(|s| s.arrivals.len()).collect();
    println!(
        "2 x 2 MB/s, 1 MiB blocks: {:.2} s, blocks per server {shares:?}, {} timeouts, \
         {:.2}% duplicates",
        net.elapsed().as_secs_f64(),
        stats.timeouts,
        net.duplicate_percent()
    );
    assert!(
        shares.iter().all(|&n| n > 5),
        "both servers serve: {shares:?}"
    );
    assert_eq!(stats.timeouts, 0);
    assert!(
        net.duplicate_percent() < 5.0,
        "{}%",
        net.duplicate_percent()
    );
}

/// One server whose large replies each wait a round trip for stream credit (kubo against a
/// 256 KiB initial yamux window) behind a 20 MB/s link with 100 ms each way.
#[test]
fn a_server_slowed_by_stream_windows_is_kept_busy_without_timeouts() {
    let data = blocks(256, 256 * 1024);
    let mut net = Net::new(ClientConfig::default());
    let s = net.server(Kind::Honest, Version::V1_2_0, &data);
    net.servers[s].rate = Some(20_000_000);
    net.servers[s].latency = Duration::from_millis(100);
    net.servers[s].window = Some(256 * 1024);
    net.connect(s);
    let query = net.get(cids(&data), None);
    assert!(net.run_until(Duration::from_secs(600), |n| n.finished(query)));
    let stats = net.client.stats();
    let seconds = net.elapsed().as_secs_f64();
    println!(
        "window-bound server 20 MB/s 100 ms: {seconds:.2} s, {:.2} MB/s, {} timeouts",
        256.0 * 256.0 * 1024.0 / seconds / 1e6,
        stats.timeouts
    );
    assert_eq!(stats.timeouts, 0);
}

/// Want-blocks for `wanted` the client has sent `server` so far.
fn want_blocks_sent(net: &Net, server: usize, wanted: &[Cid]) -> usize {
    want_blocks(net, server)
        .filter(|cid| wanted.contains(cid))
        .count()
}

/// A DAG as `get` walks it from three servers at 20 MB/s, 25 ms each way: a small root and
/// a small inner node come from the one server ready at first, then 96 leaves of 256 KiB.
/// The leaves' first round goes to all three servers at once, before any answer: servers
/// whose round trip is not measured yet are not ranked behind the one that sent the small
/// blocks while it has no room (they would idle a round trip, as they did: 32, 0 and 0
/// want-blocks at first), and that server is not taken to send leaves at the pace of a few
/// KiB.
#[test]
fn small_first_blocks_do_not_send_every_leaf_to_the_server_that_had_them() {
    let root = blocks(1, 100);
    let inner = vec![block(100, 12_000)];
    let leaves = blocks(96, 256 * 1024);
    let all: Vec<Block> = root.iter().chain(&inner).chain(&leaves).cloned().collect();
    let mut net = Net::new(ClientConfig::default());
    for _ in 0..3 {
        let s = net.server(Kind::Honest, Version::V1_2_0, &all);
        net.servers[s].rate = Some(20_000_000);
        net.servers[s].latency = Duration::from_millis(25);
    }
    // The others' connections (or their protocol versions) are ready only after the small
    // blocks came: nothing measured them yet.
    net.connect(0);
    let session = net.client.new_session().expect("room");
    for level in [&root, &inner] {
        let query = net.get(cids(level), Some(session));
        assert!(net.run_until(Duration::from_secs(5), |n| n.finished(query)));
        // The walk decodes a node before it asks for its links.
        net.now += Duration::from_millis(1);
    }
    net.connect(1);
    net.connect(2);
    let wanted = cids(&leaves);
    let query = net.get(wanted.clone(), Some(session));
    let first_round: Vec<usize> = (0..3).map(|s| want_blocks_sent(&net, s, &wanted)).collect();
    assert!(net.run_until(Duration::from_secs(60), |n| n.finished(query)));
    assert_exactly(&net, query, &wanted);
    let shares: Vec<usize> = net.servers.iter().map(|s| s.arrivals.len()).collect();
    println!(
        "3 x 20 MB/s, small blocks first: {:.2} s, leaves asked of each before \
         anything came {first_round:?}, blocks per server {shares:?}, {:.2}% duplicates",
        net.elapsed().as_secs_f64(),
        net.duplicate_percent()
    );
    assert!(first_round.iter().all(|&n| n >= 8), "{first_round:?}");
    assert!(shares.iter().all(|&n| n >= 24), "{shares:?}");
    assert!(
        net.duplicate_percent() < 3.0,
        "{}%",
        net.duplicate_percent()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// With one server, whatever its link, no want-block goes to it twice for one CID: it
    /// never said DONT_HAVE and the connection is never lost here.
    #[test]
    fn one_server_is_never_sent_a_want_block_twice(
        // 100 kB/s to 100 MB/s, as many slow links as fast ones.
        rate in prop::option::of((5.0f64..8.0).prop_map(|e| 10f64.powf(e) as u64)),
        latency in 0u64..400,
        count in 1u32..64,
        size in 1usize..(512 << 10),
    ) {
        let data = blocks(count, size);
        let mut net = Net::new(ClientConfig::default());
        let s = net.server(Kind::Honest, Version::V1_2_0, &data);
        net.servers[s].rate = rate;
        net.servers[s].latency = Duration::from_millis(latency);
        net.connect(s);
        let query = net.get(cids(&data), None);
        prop_assert!(net.run_until(Duration::from_secs(3600), |n| n.finished(query)));
        assert_exactly(&net, query, &cids(&data));
        prop_assert_eq!(want_blocks_sent_twice(&net, s), Vec::<Cid>::new());
        prop_assert_eq!(net.client.stats().duplicate_blocks, 0);
    }
}
