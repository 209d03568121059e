//! Unit tests of the client engine, through its API: what peers are sent, which events come
//! out, and what the engine keeps.

use std::time::{Duration, Instant};

use cid::Cid;
use ipfs_blockstore::multicodec::IDENTITY;
use multihash::Multihash;

use super::{Action, Config, Engine, Event, QueryError, SessionId, testing::*};
use crate::{
    message::{BlockPresenceType, WantType},
    protocol::Version,
};

/// Peers coming and going, failed sends, misbehaviour, provider searches.
mod engine {
    use super::*;

    #[test]
    fn a_disconnected_target_is_replaced_and_a_reconnection_resends_the_wants() {
        let (mut e, now, _, _) = asked(&[1, 2], &[1, 2]);
        // Peer 1 is the target of the first want, peer 2 (less loaded) of the second.
        assert_eq!(e.peer_wants(&peer(1)).len(), 1);
        e.handle_peer_disconnected(&peer(1), now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        assert!(e.peer_wants(&peer(1)).is_empty());
        assert_eq!(e.peers().count(), 1);
        e.handle_peer_connected(peer(1), Version::V1_2_0, now);
        let actions = drain(&mut e);
        // Both wants have a target (peer 2); the broadcast one is sent as a want-have again.
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Have)), [peer(1)]);
        assert_eq!(entries(&actions).len(), 1);
        assert!(
            e.peer_score(&peer(1)).is_some(),
            "remembered across the reconnection"
        );
    }

    #[test]
    fn a_peer_found_older_than_1_2_0_has_its_want_haves_withdrawn() {
        let (mut e, _, _, actions) = asked(&[1, 2], &[1]);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Have)), [peer(2)]);
        e.handle_peer_version(peer(2), Version::V1_1_0);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), None), [peer(2)]);
        assert!(e.peer_wants(&peer(2)).is_empty());
    }

    #[test]
    fn a_failed_send_moves_the_want_on_without_penalty() {
        let (mut e, now, _, actions) = asked(&[1, 2], &[1]);
        let Some(Action::Send { peer: p, message }) = actions.first() else {
            panic!("{actions:?}");
        };
        assert_eq!(*p, peer(1));
        e.handle_send_failed(peer(1), message, now);
        let actions = drain(&mut e);
        // Peer 2 was sent a want-have; it is now asked for the block.
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        assert_eq!(e.peer_score(&peer(1)), Some(0));
        assert_eq!(e.stats().timeouts, 0);
    }

    #[test]
    fn misbehaviour_leaves_a_peer_out() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2], now);
        e.handle_peer_misbehaved(peer(1), now);
        drain(&mut e);
        assert!(e.is_penalised(&peer(1), now));
        e.get(vec![cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert!(entries(&actions).iter().all(|(p, _)| *p == peer(2)));
    }

    #[test]
    fn a_penalised_peer_is_still_asked_when_no_other_peer_can_be() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1], now);
        e.handle_peer_misbehaved(peer(1), now);
        drain(&mut e);
        assert!(e.is_penalised(&peer(1), now));
        e.get(vec![cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
        // With another peer connected, the penalised one is left out again.
        e.handle_peer_connected(peer(2), Version::V1_2_0, now);
        e.get(vec![cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(2)]);
    }

    #[test]
    fn provider_searches_have_a_budget_per_interval() {
        let now = Instant::now();
        let config = Config::default().with_max_provider_searches(4);
        let interval = config.provider_search_interval();
        let mut e = engine(config, &[], now);
        e.get((0..10).map(cid).collect(), None, now).expect("ok");
        let searches = |actions: &[Action]| {
            actions
                .iter()
                .filter(|a| matches!(a, Action::FindProviders { .. }))
                .count()
        };
        assert_eq!(searches(&drain(&mut e)), 4);
        e.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(searches(&drain(&mut e)), 0, "budget spent");
        e.handle_timeout(now + interval + Duration::from_secs(1));
        assert_eq!(searches(&drain(&mut e)), 4);
        e.handle_timeout(now + 3 * interval);
        assert_eq!(searches(&drain(&mut e)), 4);
    }

    #[test]
    fn presences_and_blocks_from_strangers() {
        let (mut e, now, query, _) = asked(&[1], &[1]);
        // A presence from a peer never asked changes nothing.
        tell(&mut e, peer(9), cid(1), BlockPresenceType::Have, now);
        assert!(drain(&mut e).is_empty());
        // A wanted block from anyone is taken: it is verified.
        e.handle_message(peer(9), &with_block(&block(1)), now);
        let actions = drain(&mut e);
        assert!(events(&actions).contains(&Event::QueryFinished { query }));
        assert_eq!(sent(&actions, &cid(1), None), [peer(1)]);
    }
}

/// Queries and sessions.
mod queries {
    use super::*;

    #[test]
    fn a_local_first_query_wants_only_what_the_store_lacks() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1], now);
        let query = e
            .get_local_first(vec![cid(1), cid(2), cid(3)], None, now)
            .expect("ok");
        let actions = drain(&mut e);
        assert!(
            entries(&actions).is_empty(),
            "nothing asked before the lookup"
        );
        let mut to_look_up = e.query_remaining(query);
        to_look_up.sort();
        let mut all = vec![cid(1), cid(2), cid(3)];
        all.sort();
        assert_eq!(to_look_up, all);
        // The store holds block 2, and a block the query did not ask for.
        e.handle_local_blocks(query, vec![block(2), block(9)], now);
        let actions = drain(&mut e);
        let received: Vec<Cid> = events(&actions)
            .iter()
            .filter_map(|event| match event {
                Event::BlockReceived { block, .. } => Some(*block.cid()),
                _ => None,
            })
            .collect();
        assert_eq!(received, [cid(2)]);
        let mut wanted: Vec<Cid> = entries(&actions)
            .into_iter()
            .filter(|(_, entry)| !entry.cancel)
            .map(|(_, entry)| entry.cid)
            .collect();
        wanted.sort();
        let mut missing = vec![cid(1), cid(3)];
        missing.sort();
        assert_eq!(wanted, missing, "only what the store lacks is asked for");
        assert_eq!(e.query_remaining(query).len(), 2);
        // A second answer changes nothing.
        e.handle_local_blocks(query, vec![block(1)], now);
        assert!(events(&drain(&mut e)).is_empty());
    }

    #[test]
    fn a_local_first_query_found_whole_finishes_without_peers() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1], now);
        let query = e.get_local_first(vec![cid(1)], None, now).expect("ok");
        e.handle_local_blocks(query, vec![block(1)], now);
        let actions = drain(&mut e);
        assert!(entries(&actions).is_empty());
        assert_eq!(
            events(&actions).last(),
            Some(&Event::QueryFinished { query })
        );
        assert_eq!(e.queries().count(), 0);
    }

    #[test]
    fn held_cids_count_as_wants_until_their_query_goes() {
        let now = Instant::now();
        let config = Config::default().with_max_wants(2);
        let mut e = engine(config, &[1], now);
        let query = e
            .get_local_first(vec![cid(1), cid(2)], None, now)
            .expect("ok");
        assert!(matches!(
            e.get(vec![cid(3)], None, now),
            Err(QueryError::TooManyWants { .. })
        ));
        assert!(e.cancel(query, now));
        e.get(vec![cid(3)], None, now).expect("room again");
        // The cancelled query's lookup comes back late: ignored.
        e.handle_local_blocks(query, vec![block(1)], now);
        assert!(events(&drain(&mut e)).is_empty());
    }

    #[test]
    fn refused_queries_change_nothing() {
        let now = Instant::now();
        let config = Config::default()
            .with_max_cids_per_query(3)
            .with_max_wants(4)
            .with_max_queries(2);
        let mut e = engine(config, &[1], now);
        let too_many = (0..4).map(cid).collect();
        assert_eq!(
            e.get(too_many, None, now),
            Err(QueryError::TooManyCids {
                requested: 4,
                max: 3
            })
        );
        // Duplicates count once.
        e.get(vec![cid(0), cid(0), cid(1), cid(2)], None, now)
            .expect("3 distinct");
        assert_eq!(
            e.get(vec![cid(3), cid(4)], None, now),
            Err(QueryError::TooManyWants { max: 4 })
        );
        e.get(vec![cid(0), cid(3)], None, now)
            .expect("one new want");
        assert_eq!(
            e.get(vec![cid(0)], None, now),
            Err(QueryError::TooManyQueries { max: 2 })
        );
        drain(&mut e);
        assert_eq!(e.stats().wants, 4);
        assert_eq!(e.stats().queries, 2);
    }

    #[test]
    fn identity_cids_are_their_own_blocks() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[], now);
        let inline = Cid::new_v1(0x55, Multihash::wrap(IDENTITY, b"hi").expect("short"));
        let query = e.get(vec![inline, cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        let got = events(&actions);
        assert!(
            matches!(&got[0], Event::BlockReceived { block, .. } if block.data() == &b"hi"[..])
        );
        assert_eq!(e.query_remaining(query), [cid(1)]);
        assert_eq!(e.query_progress(query).map(|p| p.blocks_received), Some(1));
    }

    #[test]
    fn the_least_recently_used_idle_session_is_forgotten() {
        let now = Instant::now();
        let mut e = engine(Config::default().with_max_sessions(2), &[], now);
        let busy = e.new_session().expect("room");
        let idle = e.new_session().expect("room");
        e.get(vec![cid(1)], Some(busy), now).expect("ok");
        let third = e.new_session().expect("an idle one gives way");
        let mut open: Vec<SessionId> = e.sessions().collect();
        open.sort();
        assert_eq!(open, [busy, third]);
        assert_eq!(
            e.get(vec![cid(2)], Some(idle), now),
            Err(QueryError::UnknownSession(idle))
        );
        // Both remembered sessions busy: refused (found by the client_engine fuzz target).
        e.get(vec![cid(3)], Some(third), now).expect("ok");
        assert_eq!(e.new_session(), Err(QueryError::TooManySessions { max: 2 }));
        assert_eq!(e.sessions().count(), 2);
    }

    #[test]
    fn cancelling_withdraws_only_wants_no_other_query_has() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1], now);
        let a = e.get(vec![cid(1), cid(2)], None, now).expect("ok");
        let _b = e.get(vec![cid(2)], None, now).expect("ok");
        drain(&mut e);
        assert!(e.cancel(a, now));
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), None), [peer(1)]);
        assert!(sent(&actions, &cid(2), None).is_empty());
        assert!(events(&actions).is_empty(), "a cancel emits nothing");
        assert_eq!(e.wants().collect::<Vec<_>>(), [&cid(2)]);
    }
}

/// Targets, discovery and what answers change.
mod strategy {
    use super::*;

    #[test]
    fn one_want_block_and_want_haves_for_discovery() {
        let (_, _, _, actions) = asked(&[1, 2, 3], &[1, 2]);
        // The first want discovers: one want-block, want-haves to the others.
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
        assert_eq!(
            sent(&actions, &cid(1), Some(WantType::Have)),
            [peer(2), peer(3)]
        );
        // The second only asks its target (the least loaded peer).
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(2)]);
        assert!(sent(&actions, &cid(2), Some(WantType::Have)).is_empty());
    }

    #[test]
    fn a_proven_session_peer_is_asked_alone_and_refusals_go_one_by_one() {
        let now = Instant::now();
        let mut e = engine(Config::default(), &[1, 2, 3], now);
        let session = e.new_session().expect("room");
        e.get(vec![cid(1)], Some(session), now).expect("ok");
        drain(&mut e);
        e.handle_message(peer(1), &with_block(&block(1)), now);
        drain(&mut e);
        assert_eq!(e.session_peers(session), [(peer(1), 1)]);
        e.get(vec![cid(2)], Some(session), now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(entries(&actions).len(), 1);
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(1)]);
        tell(&mut e, peer(1), cid(2), BlockPresenceType::DontHave, now);
        let actions = drain(&mut e);
        assert_eq!(entries(&actions).len(), 1, "no broadcast: {actions:?}");
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(2)]);
    }

    #[test]
    fn a_want_given_room_by_a_block_is_not_sent_once_its_own_block_came_in_the_same_message() {
        // Found by the client_engine fuzz target: the peer's want slots are full, the first
        // block of a message frees one, the starved want takes it (queued in the outbox),
        // then the second block of the same message is that want's block.
        let now = Instant::now();
        let mut e = engine(Config::default().with_max_wants_per_peer(1), &[1], now);
        e.get(vec![cid(1), cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
        assert!(
            sent(&actions, &cid(2), None).is_empty(),
            "no room for the second"
        );
        let mut message = with_block(&block(1));
        message.blocks.push(block(2));
        e.handle_message(peer(1), &message, now);
        let actions = drain(&mut e);
        assert!(
            entries(&actions).is_empty(),
            "nothing left to ask: {actions:?}"
        );
        assert_eq!(e.stats().blocks_received, 2);
    }

    #[test]
    fn peers_before_1_2_0_get_want_blocks_only() {
        let now = Instant::now();
        let mut e = Engine::new(Config::default());
        e.handle_peer_connected(peer(1), Version::V1_2_0, now);
        e.handle_peer_connected(peer(2), Version::V1_1_0, now);
        e.handle_peer_connected(peer(3), Version::V1_0_0, now);
        drain(&mut e);
        e.get(vec![cid(1)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
        assert!(sent(&actions, &cid(1), Some(WantType::Have)).is_empty());
        // 1.2.0 peer refuses: an old peer is asked for the block, only one.
        tell(&mut e, peer(1), cid(1), BlockPresenceType::DontHave, now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        // It never answers: after the initial timeout the other old peer is asked.
        let deadline = now + Config::default().initial_dont_have_timeout();
        e.handle_timeout(deadline);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(3)]);
        assert!(
            entries(&actions)
                .iter()
                .all(|(_, e)| e.want_type == WantType::Block)
        );
    }

    #[test]
    fn a_full_peer_is_asked_again_when_room_frees_up() {
        let now = Instant::now();
        let config = Config::default().with_max_wants_per_peer(2);
        let mut e = engine(config, &[1], now);
        e.get((1..=4).map(cid).collect(), None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(entries(&actions).len(), 2);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::FindProviders { .. })),
            "a full peer is not a missing block"
        );
        e.handle_message(peer(1), &with_block(&block(1)), now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(3), Some(WantType::Block)), [peer(1)]);
        assert_eq!(e.peer_wants(&peer(1)).len(), 2);
    }

    #[test]
    fn providers_count_as_have_and_unknown_ones_are_dialled_once() {
        let (mut e, now, _, _) = asked(&[1, 2], &[1]);
        e.add_providers(&cid(1), [peer(2), peer(7), peer(7)], now);
        assert_eq!(drain(&mut e), [Action::Dial { peer: peer(7) }]);
        e.add_providers(&cid(1), [peer(7)], now + ms(10));
        assert!(drain(&mut e).is_empty(), "already a provider");
        // The target refuses: the connected provider is preferred to nobody else.
        tell(&mut e, peer(1), cid(1), BlockPresenceType::DontHave, now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        tell(&mut e, peer(2), cid(1), BlockPresenceType::DontHave, now);
        drain(&mut e);
        // The dialled provider connects and is asked for the block at once.
        e.handle_peer_connected(peer(7), Version::V1_2_0, now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(7)]);
    }
}

/// Presences, silence, resends and penalties.
mod answers {
    use super::*;

    #[test]
    fn have_beats_unknown_and_dont_have_moves_on() {
        let (mut e, now, _, _) = asked(&[1, 2, 3], &[1]);
        // Peer 3 has it, peer 2 does not answer yet; the target (1) refuses.
        tell(&mut e, peer(3), cid(1), BlockPresenceType::Have, now);
        assert!(
            entries(&drain(&mut e)).is_empty(),
            "one want-block at a time"
        );
        tell(&mut e, peer(1), cid(1), BlockPresenceType::DontHave, now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(3)]);
        // Peer 3 refuses too (after saying HAVE): the unknown peer 2 is next.
        tell(&mut e, peer(3), cid(1), BlockPresenceType::DontHave, now);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        assert!(e.peer_score(&peer(3)).expect("known") < 0, "broken promise");
        // Peer 2 refuses: nobody has it, providers are searched for; the want stays.
        tell(&mut e, peer(2), cid(1), BlockPresenceType::DontHave, now);
        let actions = drain(&mut e);
        assert!(actions.contains(&Action::FindProviders { cid: cid(1) }));
        assert_eq!(e.stats().wants, 1);
    }

    #[test]
    fn silence_is_a_dont_have_after_the_timeout_and_the_want_is_resent_after_30_s() {
        let (mut e, now, _, _) = asked(&[1], &[1]);
        let timeout = now + Duration::from_secs(2);
        // The provider search deadline (1 s) comes first: nobody said HAVE.
        assert_eq!(e.poll_timeout(), Some(now + Duration::from_secs(1)));
        e.handle_timeout(now + Duration::from_secs(1));
        assert_eq!(drain(&mut e), [Action::FindProviders { cid: cid(1) }]);
        assert_eq!(e.poll_timeout(), Some(timeout));
        e.handle_timeout(timeout);
        drain(&mut e);
        assert_eq!(e.stats().timeouts, 1);
        let resend = now + Duration::from_secs(30);
        e.handle_timeout(resend - ms(1));
        assert!(entries(&drain(&mut e)).is_empty());
        e.handle_timeout(resend);
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(1)]);
    }

    #[test]
    fn a_block_cancels_the_want_everywhere_else_and_late_copies_are_duplicates() {
        let (mut e, now, query, _) = asked(&[1, 2, 3], &[1]);
        e.handle_message(peer(2), &with_block(&block(1)), now + ms(5));
        let actions = drain(&mut e);
        let mut cancelled = sent(&actions, &cid(1), None);
        cancelled.sort();
        assert_eq!(cancelled, [peer(1), peer(3)]);
        assert_eq!(
            events(&actions),
            [
                Event::BlockReceived {
                    query,
                    block: block(1)
                },
                Event::Progress {
                    query,
                    progress: crate::client::Progress {
                        blocks_received: 1,
                        blocks_total: 1,
                        bytes_received: block(1).data().len() as u64,
                        peers: 1,
                    }
                },
                Event::QueryFinished { query },
            ]
        );
        assert_eq!(e.peer_latency(&peer(2)), Some(ms(5)));
        e.handle_message(peer(1), &with_block(&block(1)), now + ms(6));
        assert!(drain(&mut e).is_empty(), "a duplicate is not reported");
        let stats = e.stats();
        assert_eq!((stats.duplicate_blocks, stats.unwanted_blocks), (1, 0));
        assert_eq!(
            e.peer_score(&peer(1)),
            Some(0),
            "duplicates are not penalised"
        );
    }

    #[test]
    fn a_late_answer_to_a_first_want_times_the_round_trip_once() {
        // Peer 1 is the target, peers 2 and 3 were sent want-haves. The block comes from
        // peer 1 first; peer 2's HAVE and peer 3's copy of the (small) block come after the
        // want is gone, and still time their round trips.
        let (mut e, now, _, _) = asked(&[1, 2, 3], &[1]);
        e.handle_message(peer(1), &with_block(&block(1)), now + ms(40));
        drain(&mut e);
        tell(
            &mut e,
            peer(2),
            cid(1),
            BlockPresenceType::Have,
            now + ms(50),
        );
        e.handle_message(peer(3), &with_block(&block(1)), now + ms(60));
        drain(&mut e);
        let rtt = |e: &Engine, i| e.link(&peer(i)).and_then(|l| l.min_rtt());
        assert_eq!(rtt(&e, 1), Some(ms(40)));
        assert_eq!(rtt(&e, 2), Some(ms(50)));
        assert_eq!(rtt(&e, 3), Some(ms(60)));
        // A second answer to the same want is no sample: only the first one times it.
        tell(
            &mut e,
            peer(2),
            cid(1),
            BlockPresenceType::Have,
            now + ms(5),
        );
        assert_eq!(rtt(&e, 2), Some(ms(50)));
        // Nor is an answer to a want that was never sent.
        tell(
            &mut e,
            peer(2),
            cid(7),
            BlockPresenceType::Have,
            now + ms(1),
        );
        assert_eq!(rtt(&e, 2), Some(ms(50)));
    }

    #[test]
    fn a_round_trip_ends_when_the_answer_began_to_arrive() {
        // Peer 1's block came at 110 ms on a stream it opened at 55 ms (it negotiated the
        // protocol first); peer 2's HAVE came at 60 ms on a stream opened before the want
        // was sent (an older stream: its opening times nothing); peer 3's late copy of the
        // block, at 90 ms on a stream opened at 45 ms.
        let (mut e, now, _, _) = asked(&[1, 2, 3], &[1]);
        let rtt = |e: &Engine, i| e.link(&peer(i)).and_then(|l| l.min_rtt());
        let block = with_block(&block(1));
        e.handle_message_began(peer(1), &block, now + ms(55), now + ms(110));
        let have = with_presence(cid(1), BlockPresenceType::Have);
        e.handle_message_began(peer(2), &have, now - ms(10), now + ms(60));
        e.handle_message_began(peer(3), &block, now + ms(45), now + ms(90));
        drain(&mut e);
        assert_eq!(rtt(&e, 1), Some(ms(55)));
        assert_eq!(rtt(&e, 2), Some(ms(60)));
        assert_eq!(rtt(&e, 3), Some(ms(45)));
    }

    #[test]
    fn a_peer_still_delivering_keeps_its_wants_but_repeated_haves_do_not() {
        let (mut e, now, _, _) = asked(&[1, 2], &[1, 2, 3]);
        let at_1: Vec<Cid> = e.peer_wants(&peer(1)).iter().map(|w| w.cid).collect();
        assert!(at_1.len() >= 2, "{at_1:?}");
        // Peer 1 answers its first want after 50 ms, then nothing: its other wants time out a
        // silence timeout (100 ms + 3 x its 50 ms round trip) after that answer, not after
        // they were sent.
        let first = at_1[0];
        let i = (1..=3).find(|i| cid(*i) == first).expect("one of ours");
        e.handle_message(peer(1), &with_block(&block(i)), now + ms(50));
        drain(&mut e);
        let timeout = e.config().min_dont_have_timeout() + ms(50 * 3);
        e.handle_timeout(now + ms(50) + timeout - ms(1));
        drain(&mut e);
        assert_eq!(e.stats().timeouts, 0, "still within its silence timeout");
        e.handle_timeout(now + Duration::from_secs(3));
        drain(&mut e);
        assert!(e.stats().timeouts > 0);
        // A peer that repeats HAVE for a want-have is not at work on our wants: only its
        // first answer counts (else it could hold its want-blocks forever).
        let mut e = engine(Config::default(), &[1, 2], now);
        e.get(vec![cid(1), cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Have)), [peer(2)]);
        assert_eq!(sent(&actions, &cid(2), Some(WantType::Block)), [peer(2)]);
        for k in 1..100 {
            tell(
                &mut e,
                peer(2),
                cid(1),
                BlockPresenceType::Have,
                now + ms(10 * k),
            );
            drain(&mut e);
        }
        let link = e.link(&peer(2)).expect("remembered");
        assert_eq!(link.due(now, ms(100)), now + ms(10) + ms(100));
    }

    #[test]
    fn unwanted_blocks_are_dropped_and_penalised_until_the_peer_is_left_out() {
        let (mut e, now, _, _) = asked(&[1, 2], &[1]);
        e.handle_message(peer(1), &with_block(&block(99)), now);
        assert!(events(&drain(&mut e)).is_empty());
        assert_eq!(e.stats().unwanted_blocks, 1);
        assert!(!e.is_penalised(&peer(1), now));
        e.handle_message(peer(1), &with_block(&block(98)), now);
        // Penalised: the want it was the target of moves to peer 2 at once.
        let actions = drain(&mut e);
        assert!(e.is_penalised(&peer(1), now));
        assert_eq!(sent(&actions, &cid(1), Some(WantType::Block)), [peer(2)]);
        e.get(vec![cid(2)], None, now).expect("ok");
        let actions = drain(&mut e);
        assert!(sent(&actions, &cid(2), Some(WantType::Block)).contains(&peer(2)));
        assert!(!entries(&actions).iter().any(|(p, _)| *p == peer(1)));
        let later = now + Config::default().penalty_duration();
        assert!(!e.is_penalised(&peer(1), later));
    }
}
