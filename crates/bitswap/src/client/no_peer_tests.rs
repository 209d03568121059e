//! Unit tests of the no-peer deadline: a query left without peers and providers fails, with
//! the last connection error it saw, instead of waiting forever.

use std::{
    io,
    time::{Duration, Instant},
};

use super::{Config, ConnectionError, Engine, Event, QueryError, QueryId, testing::*};
use crate::protocol::Version;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// What query `query` failed with in `e`'s actions after the deadlines up to `at`, if it did.
fn failure_at(e: &mut Engine, query: QueryId, at: Instant) -> Option<QueryError> {
    e.handle_timeout(at);
    events(&drain(e)).into_iter().find_map(|event| match event {
        Event::QueryFailed { query: q, error } if q == query => Some(error),
        _ => None,
    })
}

/// The failure of a query without peers for `waited` seconds, with no connection error.
fn no_peers(waited: u64) -> QueryError {
    QueryError::NoPeers {
        waited: secs(waited),
        last_error: None,
    }
}

fn frame_too_large(peer: u8) -> ConnectionError {
    let error = io::Error::other("decode error: frame body is too large (2097140)");
    ConnectionError::new(super::testing::peer(peer), &error)
}

#[test]
fn a_query_whose_last_peer_left_fails_with_the_connection_error() {
    let t0 = Instant::now();
    let mut e = engine(Config::default(), &[1], t0);
    let query = e.get(vec![cid(1)], None, t0).expect("ok");
    drain(&mut e);
    let gone = t0 + secs(5);
    e.handle_connection_error(frame_too_large(1), gone);
    e.handle_peer_disconnected(&peer(1), gone);
    drain(&mut e);
    assert_eq!(failure_at(&mut e, query, gone + secs(29)), None);
    let error = failure_at(&mut e, query, gone + secs(30)).expect("failed");
    assert_eq!(
        error,
        QueryError::NoPeers {
            waited: secs(30),
            last_error: Some(frame_too_large(1)),
        }
    );
    assert!(
        error.to_string().contains("frame body is too large"),
        "{error}"
    );
    assert_eq!(e.wants().count(), 0, "its wants are released");
    assert_eq!(e.queries().count(), 0);
}

#[test]
fn a_peer_connecting_ends_the_wait_and_a_later_loss_starts_it_again() {
    let (mut e, t0, query, _) = asked(&[], &[1]);
    e.handle_peer_connected(peer(1), Version::V1_2_0, t0 + secs(20));
    drain(&mut e);
    assert_eq!(failure_at(&mut e, query, t0 + secs(60)), None);
    // Closed cleanly: no connection error to report.
    e.handle_peer_disconnected(&peer(1), t0 + secs(60));
    drain(&mut e);
    assert_eq!(failure_at(&mut e, query, t0 + secs(89)), None);
    assert_eq!(failure_at(&mut e, query, t0 + secs(90)), Some(no_peers(30)));
}

#[test]
fn a_new_provider_gives_the_query_time_to_dial_it() {
    let (mut e, t0, query, _) = asked(&[], &[1]);
    e.add_providers(&cid(1), [peer(9)], t0 + secs(25));
    drain(&mut e);
    assert_eq!(failure_at(&mut e, query, t0 + secs(54)), None);
    // The same provider again is nothing new.
    e.add_providers(&cid(1), [peer(9)], t0 + secs(54));
    drain(&mut e);
    assert_eq!(failure_at(&mut e, query, t0 + secs(55)), Some(no_peers(55)));
}

#[test]
fn errors_from_before_the_query_are_not_its() {
    let t0 = Instant::now();
    let mut e = engine(Config::default(), &[1], t0);
    e.handle_connection_error(frame_too_large(1), t0);
    e.handle_peer_disconnected(&peer(1), t0);
    drain(&mut e);
    let start = t0 + secs(1);
    let query = e.get(vec![cid(1)], None, start).expect("ok");
    drain(&mut e);
    assert_eq!(
        failure_at(&mut e, query, start + secs(30)),
        Some(no_peers(30))
    );
}

#[test]
fn the_wait_is_configurable_and_can_be_turned_off() {
    let t0 = Instant::now();
    let config = Config::default().with_no_peer_timeout(Some(secs(5)));
    let mut e = engine(config, &[], t0);
    let query = e.get(vec![cid(1)], None, t0).expect("ok");
    drain(&mut e);
    assert!(matches!(
        failure_at(&mut e, query, t0 + secs(5)),
        Some(QueryError::NoPeers { .. })
    ));

    let mut e = engine(Config::default().with_no_peer_timeout(None), &[], t0);
    let query = e.get(vec![cid(1)], None, t0).expect("ok");
    drain(&mut e);
    for minute in 1..=60 {
        assert_eq!(failure_at(&mut e, query, t0 + secs(60 * minute)), None);
    }
    assert_eq!(e.queries().collect::<Vec<_>>(), [query]);
}

#[test]
fn the_error_text_keeps_its_sources_and_is_bounded() {
    #[derive(Debug, thiserror::Error)]
    #[error("muxer failed")]
    struct Muxer(#[source] io::Error);
    let inner = io::Error::other("frame body is too large (2097140)");
    let error = io::Error::other(Muxer(inner));
    let error = ConnectionError::new(peer(1), &error);
    assert_eq!(
        error.message(),
        "muxer failed: frame body is too large (2097140)"
    );
    assert_eq!(error.kind(), io::ErrorKind::Other);
    let long = io::Error::other("é".repeat(1000));
    assert!(ConnectionError::new(peer(1), &long).message().len() <= 512);
}
