//! Property test: random networks (subsets, delays, drops), queries and cancels.

use super::*;

/// A random network: servers with random subsets (every block is somewhere), random
/// latencies and loss, random queries and cancels, a lossy phase then a clean one.
#[derive(Debug, Clone)]
struct Scenario {
    seed: u64,
    servers: Vec<(Vec<bool>, u64, u8, bool)>,
    queries: Vec<(Vec<usize>, bool)>,
    /// Server (modulo their number) and time (ms) at which its connection drops for 100 ms.
    flaps: Vec<(usize, u64)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let blocks = 12usize;
    let server = (
        prop::collection::vec(any::<bool>(), blocks),
        1u64..300,
        0u8..60,
        any::<bool>(),
    );
    (
        any::<u64>(),
        prop::collection::vec(server, 1..4),
        prop::collection::vec(
            (
                prop::collection::vec(0..blocks, 1..6),
                prop::bool::weighted(0.2),
            ),
            1..6,
        ),
        prop::collection::vec((0usize..4, 0u64..5000), 0..3),
    )
        .prop_map(|(seed, servers, queries, flaps)| Scenario {
            seed,
            servers,
            queries,
            flaps,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_query_gets_exactly_its_blocks_or_is_cancelled(s in scenario()) {
        let data = blocks(12, 3000);
        let mut net = Net::new(ClientConfig::default()).seed(s.seed);
        for (k, (held, latency, loss, old)) in s.servers.iter().enumerate() {
            let mut held: Vec<Block> = data
                .iter()
                .zip(held)
                .filter(|(_, h)| **h)
                .map(|(b, _)| b.clone())
                .collect();
            if k == 0 {
                held = data.clone();
            }
            let version = if *old { Version::V1_1_0 } else { Version::V1_2_0 };
            let i = net.server(Kind::Honest, version, &held);
            net.servers[i].latency = Duration::from_millis(*latency);
            net.servers[i].loss = f64::from(*loss) / 100.0;
            net.connect(i);
        }
        let mut live = Vec::new();
        let mut cancelled = Vec::new();
        for (picks, cancel) in &s.queries {
            let cids: Vec<Cid> = picks.iter().map(|i| *data[*i].cid()).collect();
            let query = net.get(cids.clone(), None);
            net.run_until(Duration::from_millis(50), |_| false);
            if *cancel {
                net.client.cancel(query, net.now);
                net.drain();
                cancelled.push((query, net.events.len()));
            } else {
                live.push((query, cids));
            }
        }
        // Lossy phase with connections dropping, then the network heals.
        let mut flaps = s.flaps.clone();
        flaps.sort_by_key(|(_, at)| *at);
        let start = net.now;
        for (server, at) in flaps {
            let i = server % net.servers.len();
            let wait = (start + Duration::from_millis(at)).saturating_duration_since(net.now);
            net.run_until(wait, |_| false);
            if net.servers[i].connected {
                net.disconnect(i);
                net.run_until(Duration::from_millis(100), |_| false);
                net.connect(i);
            }
        }
        net.run_until(Duration::from_secs(20), |n| live.iter().all(|(q, _)| n.finished(*q)));
        for server in &mut net.servers {
            server.loss = 0.0;
        }
        let done = net.run_until(Duration::from_secs(120), |n| {
            live.iter().all(|(q, _)| n.finished(*q))
        });
        prop_assert!(done, "every live query finishes once the network heals");
        for (query, cids) in &live {
            assert_exactly(&net, *query, cids);
        }
        for (query, events_then) in &cancelled {
            let after = net.events[*events_then..].iter().any(|e| match e {
                ClientEvent::BlockReceived { query: q, .. }
                | ClientEvent::Progress { query: q, .. }
                | ClientEvent::QueryFinished { query: q }
                | ClientEvent::QueryFailed { query: q, .. } => q == query,
            });
            prop_assert!(!after, "nothing reported after a cancel");
        }
        let stats = net.client.stats();
        prop_assert_eq!(stats.wants, 0);
        prop_assert_eq!(stats.queries, 0);
        prop_assert_eq!(stats.unwanted_blocks, 0);
        prop_assert_eq!(net.client.poll_timeout(), None, "no deadline without state");
    }
}
