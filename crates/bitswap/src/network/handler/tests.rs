use super::*;

#[test]
fn new_streams_offer_the_peer_s_version_alone_once_known() {
    let config = Config::default();
    let budget = Budget::new(&config).for_connection();
    let mut handler = Handler::new(Arc::new(config), budget);
    assert_eq!(handler.outbound_upgrade().versions(), Version::ALL);
    handler.advertised.insert(Version::V1_1_0);
    handler.report_version();
    assert_eq!(handler.outbound_upgrade().versions(), [Version::V1_1_0]);
    handler.learn_version(Version::V1_2_0);
    assert_eq!(handler.outbound_upgrade().versions(), [Version::V1_2_0]);
}

#[test]
fn handler_reports_best_version_once() {
    let config = Config::default().with_versions([Version::V1_1_0, Version::V1_0_0]);
    let budget = Budget::new(&config).for_connection();
    let mut handler = Handler::new(Arc::new(config), budget);
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
