use super::*;

#[test]
fn new_streams_offer_the_peer_s_version_alone_once_known() {
    let config = Config::default();
    let budget = Budget::new(&config).for_connection();
    let mut handler = Handler::new(Arc::new(config), budget, None);
    let offer = |handler: &Handler| {
        let (upgrade, guessed) = handler.outbound_upgrade();
        (upgrade.versions().to_vec(), guessed)
    };
    // Not known: our best alone, as a guess; every version once the peer refused it.
    assert_eq!(offer(&handler), (vec![Version::V1_2_0], true));
    handler.refuse_guess();
    assert_eq!(offer(&handler), (Version::ALL.to_vec(), false));
    handler.advertised.insert(Version::V1_1_0);
    handler.report_version();
    assert_eq!(offer(&handler), (vec![Version::V1_1_0], false));
    handler.learn_version(Version::V1_2_0);
    assert_eq!(offer(&handler), (vec![Version::V1_2_0], false));
    // With one version configured, offering it alone is no guess.
    let one = Config::default().with_versions([Version::V1_1_0]);
    let budget = Budget::new(&one).for_connection();
    let handler = Handler::new(Arc::new(one), budget, None);
    assert_eq!(offer(&handler), (vec![Version::V1_1_0], false));
}

#[test]
fn a_guess_waits_twice_the_set_up_within_bounds() {
    let ms = Duration::from_millis;
    assert_eq!(versions::guess_limit(Some(ms(1))), ms(50));
    assert_eq!(versions::guess_limit(Some(ms(150))), ms(300));
    assert_eq!(versions::guess_limit(Some(ms(5000))), ms(2000));
    assert_eq!(versions::guess_limit(None), ms(1000));
}

#[test]
fn handler_reports_best_version_once() {
    let config = Config::default().with_versions([Version::V1_1_0, Version::V1_0_0]);
    let budget = Budget::new(&config).for_connection();
    let mut handler = Handler::new(Arc::new(config), budget, None);
    handler.learn_version(Version::V1_0_0);
    handler.learn_version(Version::V1_0_0);
    // 1.2.0 is advertised but not ours; 1.1.0 is both.
    handler.advertised.insert(Version::V1_2_0);
    handler.advertised.insert(Version::V1_1_0);
    handler.report_version();
    let versions: Vec<_> = handler
        .events
        .iter()
        .filter_map(|event| match event {
            HandlerEvent::Version(version) => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(versions, [Version::V1_0_0, Version::V1_1_0]);
}

#[test]
fn only_connections_slow_to_set_up_spread_unordered_messages() {
    let config = Arc::new(Config::default().with_min_setup_to_spread(Duration::from_millis(5)));
    let handler = |setup: Option<u64>| {
        let budget = Budget::new(&config).for_connection();
        Handler::new(
            Arc::clone(&config),
            budget,
            setup.map(Duration::from_millis),
        )
    };
    assert!(!handler(Some(1)).spread, "a near peer: one stream");
    assert!(handler(Some(5)).spread);
    assert!(handler(Some(60)).spread, "a far peer: streams of their own");
    assert!(handler(None).spread, "a set-up not seen");

    let mut near = handler(Some(1));
    let id = MessageId::for_test(1);
    near.on_behaviour_event(HandlerIn::Send {
        id,
        message: Message::default(),
        unordered: true,
    });
    assert!(near.unordered.is_empty());
    assert_eq!(near.queue.front().map(|(id, _)| *id), Some(id));

    let always = Arc::new(Config::default().with_min_setup_to_spread(Duration::ZERO));
    let budget = Budget::new(&always).for_connection();
    assert!(Handler::new(always, budget, Some(Duration::ZERO)).spread);
}
