//! Property tests: random wantlist sequences from several peers against a reference model.

use std::cmp::Reverse;

use proptest::{prelude::*, sample::Index};

use super::*;

const PEERS: usize = 3;
const CAP: usize = 4;
const PER_MESSAGE: usize = 3;
const REPLACE: usize = 8;
/// Block sizes by CID index; at most `REPLACE` is sent for a want-have.
const SIZES: [usize; 8] = [6, 20, 7, 50, 8, 30, 5, 100];

fn denied(peer: usize, cid: usize) -> bool {
    (peer == 0 && cid == 7) || (peer == 2 && cid == 3)
}

#[derive(Debug, Clone)]
enum E {
    Cancel(usize),
    Want {
        cid: usize,
        have: bool,
        sdh: bool,
        prio: i32,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Connect(usize, bool),
    Disconnect(usize),
    Msg {
        peer: usize,
        full: bool,
        entries: Vec<E>,
    },
    Arrive(usize),
}

fn entry() -> impl Strategy<Value = E> {
    prop_oneof![
        1 => (0..SIZES.len()).prop_map(E::Cancel),
        4 => (0..SIZES.len(), any::<bool>(), any::<bool>(), -3i32..4).prop_map(
            |(cid, have, sdh, prio)| E::Want { cid, have, sdh, prio }
        ),
    ]
}

fn msg() -> impl Strategy<Value = Op> {
    (
        0..PEERS,
        prop::bool::weighted(0.2),
        prop::collection::vec(entry(), 0..7),
    )
        .prop_map(|(peer, full, entries)| Op::Msg {
            peer,
            full,
            entries,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..PEERS, any::<bool>()).prop_map(|(p, v)| Op::Connect(p, v)),
        1 => (0..PEERS).prop_map(Op::Disconnect),
        8 => msg(),
        2 => (0..SIZES.len()).prop_map(Op::Arrive),
    ]
}

fn to_entry(blocks: &[Block], e: &E) -> Entry {
    match *e {
        E::Cancel(c) => Entry::cancel(*blocks[c].cid()),
        E::Want {
            cid,
            have,
            sdh,
            prio,
        } => Entry {
            cid: *blocks[cid].cid(),
            priority: prio,
            want_type: if have {
                WantType::Have
            } else {
                WantType::Block
            },
            send_dont_have: sdh,
            cancel: false,
        },
    }
}

struct Setup {
    blocks: Vec<Block>,
    peers: Vec<PeerId>,
}

impl Setup {
    fn new() -> Self {
        Self {
            blocks: (0..SIZES.len())
                .map(|i| block(i as u32, SIZES[i]))
                .collect(),
            peers: (0..PEERS).map(|_| PeerId::random()).collect(),
        }
    }

    fn config(&self) -> ServerConfig {
        let peers = self.peers.clone();
        let cids: Vec<Cid> = self.blocks.iter().map(|b| *b.cid()).collect();
        ServerConfig::default()
            .with_max_wants_per_peer(CAP)
            .with_max_entries_per_message(PER_MESSAGE)
            .with_want_have_replace_size(REPLACE)
            .with_target_message_size(40)
            .with_max_outstanding_bytes_per_peer(60)
            .with_max_envelopes_in_flight(2)
            .with_max_lookups_in_flight(3)
            .with_request_filter(move |p, c| {
                let p = peers.iter().position(|x| x == p).expect("known peer");
                let c = cids.iter().position(|x| x == c).expect("known cid");
                !denied(p, c)
            })
    }

    fn peer(&self, peer: &PeerId) -> usize {
        self.peers.iter().position(|p| p == peer).expect("known")
    }

    fn cid(&self, cid: &Cid) -> usize {
        self.blocks
            .iter()
            .position(|b| b.cid() == cid)
            .expect("known")
    }
}

#[derive(Debug, Clone)]
struct MWant {
    cid: usize,
    prio: i32,
    have: bool,
    sdh: bool,
    seq: u64,
    missing: bool,
    fresh: bool,
}

#[derive(Debug)]
struct MPeer {
    v12: bool,
    ledger: Vec<MWant>,
}

/// The rules, written naively: a wantlist per peer in a `Vec`, scanned.
struct Model {
    peers: Vec<Option<MPeer>>,
    present: Vec<bool>,
    seq: u64,
}

impl Model {
    /// Applies a message; returns the answers the peer must get for it (at most one per
    /// CID) once everything has run.
    fn message(&mut self, p: usize, full: bool, entries: &[E]) -> HashMap<usize, Ans> {
        let mut expected = HashMap::new();
        let Some(peer) = self.peers[p].as_mut() else {
            return expected;
        };
        if full {
            peer.ledger.clear();
        }
        for w in &mut peer.ledger {
            w.fresh = false;
        }
        let v12 = peer.v12;
        let mut answer_only: Vec<usize> = Vec::new();
        let add = |answer_only: &mut Vec<usize>, c: usize| {
            if v12 && !answer_only.contains(&c) && answer_only.len() < CAP {
                answer_only.push(c);
            }
        };
        let mut taken = 0;
        for e in entries {
            match *e {
                E::Cancel(c) => {
                    peer.ledger.retain(|w| w.cid != c);
                    answer_only.retain(|&x| x != c);
                }
                E::Want {
                    cid: c,
                    have,
                    sdh,
                    prio,
                } => {
                    let (have, sdh) = if v12 { (have, sdh) } else { (false, false) };
                    let in_ledger = peer.ledger.iter().any(|w| w.cid == c);
                    if taken >= PER_MESSAGE {
                        if !in_ledger && sdh {
                            add(&mut answer_only, c);
                        }
                        continue;
                    }
                    taken += 1;
                    if denied(p, c) {
                        peer.ledger.retain(|w| w.cid != c);
                        if sdh {
                            add(&mut answer_only, c);
                        }
                        continue;
                    }
                    answer_only.retain(|&x| x != c);
                    self.seq += 1;
                    let want = MWant {
                        cid: c,
                        prio,
                        have,
                        sdh,
                        seq: self.seq,
                        missing: false,
                        fresh: true,
                    };
                    if let Some(w) = peer.ledger.iter_mut().find(|w| w.cid == c) {
                        *w = want;
                    } else if peer.ledger.len() < CAP {
                        peer.ledger.push(want);
                    } else {
                        let (i, victim) = peer
                            .ledger
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, w)| (!w.missing, w.prio, Reverse(w.seq)))
                            .map(|(i, w)| (i, w.clone()))
                            .expect("full");
                        if victim.missing || victim.prio < prio {
                            peer.ledger.remove(i);
                            if victim.sdh && !victim.missing {
                                add(&mut answer_only, victim.cid);
                            }
                            peer.ledger.push(want);
                        } else if sdh {
                            add(&mut answer_only, c);
                        }
                    }
                }
            }
        }
        for c in answer_only {
            expected.insert(c, Ans::DontHave);
        }
        let present = &self.present;
        peer.ledger.retain_mut(|w| {
            if !w.fresh {
                return true;
            }
            if present[w.cid] {
                let block = !w.have || SIZES[w.cid] <= REPLACE;
                expected.insert(w.cid, if block { Ans::Block } else { Ans::Have });
                return false;
            }
            w.missing = true;
            if w.sdh {
                expected.insert(w.cid, Ans::DontHave);
            }
            true
        });
        expected
    }

    /// A block arrives; returns the answers per peer.
    fn arrive(&mut self, c: usize) -> HashMap<(usize, usize), Ans> {
        self.present[c] = true;
        let mut expected = HashMap::new();
        for (p, peer) in self.peers.iter_mut().enumerate() {
            let Some(peer) = peer else { continue };
            peer.ledger.retain(|w| {
                if w.cid != c {
                    return true;
                }
                let block = !w.have || SIZES[c] <= REPLACE;
                expected.insert((p, c), if block { Ans::Block } else { Ans::Have });
                false
            });
        }
        expected
    }
}

fn check_envelope(envelope: &Envelope, version: Version) -> Result<(), TestCaseError> {
    prop_assert!(!envelope.message.is_empty());
    let frames = encode(&envelope.message, version);
    prop_assert_eq!(frames.len(), 1);
    Ok(())
}

fn run_model(initial: Vec<bool>, versions: Vec<bool>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let setup = Setup::new();
    let mut d = Driver::new(setup.config());
    let mut model = Model {
        peers: versions
            .iter()
            .map(|&v12| {
                Some(MPeer {
                    v12,
                    ledger: Vec::new(),
                })
            })
            .collect(),
        present: initial.clone(),
        seq: 0,
    };
    let version = |v12: bool| {
        if v12 {
            Version::V1_2_0
        } else {
            Version::V1_1_0
        }
    };
    for (i, &v12) in versions.iter().enumerate() {
        d.engine.handle_peer_connected(setup.peers[i], version(v12));
    }
    for (i, &present) in initial.iter().enumerate() {
        if present {
            d.put(&[&setup.blocks[i]]);
        }
    }
    for op in &ops {
        let expected: HashMap<(usize, usize), Ans> = match op {
            Op::Connect(p, v12) => {
                if model.peers[*p].is_none() {
                    model.peers[*p] = Some(MPeer {
                        v12: *v12,
                        ledger: Vec::new(),
                    });
                    d.engine
                        .handle_peer_connected(setup.peers[*p], version(*v12));
                }
                HashMap::new()
            }
            Op::Disconnect(p) => {
                model.peers[*p] = None;
                d.engine.handle_peer_disconnected(&setup.peers[*p]);
                HashMap::new()
            }
            Op::Msg {
                peer,
                full: is_full,
                entries,
            } => {
                let wire: Vec<Entry> = entries.iter().map(|e| to_entry(&setup.blocks, e)).collect();
                let m = if *is_full {
                    full(wire)
                } else {
                    Message::wantlist_update(wire)
                };
                d.engine.handle_message(setup.peers[*peer], &m);
                model
                    .message(*peer, *is_full, entries)
                    .into_iter()
                    .map(|(c, a)| ((*peer, c), a))
                    .collect()
            }
            Op::Arrive(c) => {
                let b = setup.blocks[*c].clone();
                d.arrive(&[&b]);
                model.arrive(*c)
            }
        };
        let sent = d.run();
        let mut got = HashMap::new();
        for envelope in &sent {
            let p = setup.peer(&envelope.peer);
            let v12 = model.peers[p].as_ref().expect("connected").v12;
            check_envelope(envelope, version(v12))?;
            for (cid, ans) in answers(envelope) {
                let previous = got.insert((p, setup.cid(&cid)), ans);
                prop_assert!(previous.is_none(), "answered twice: {:?} {:?}", op, sent);
            }
        }
        prop_assert_eq!(&got, &expected, "after {:?}", op);
        for (p, peer) in model.peers.iter().enumerate() {
            let mut engine_wants: Vec<(usize, i32, bool, bool)> = d
                .engine
                .peer_wantlist(&setup.peers[p])
                .iter()
                .map(|e| {
                    (
                        setup.cid(&e.cid),
                        e.priority,
                        e.want_type == WantType::Have,
                        e.send_dont_have,
                    )
                })
                .collect();
            let mut model_wants: Vec<(usize, i32, bool, bool)> = peer
                .iter()
                .flat_map(|peer| &peer.ledger)
                .map(|w| (w.cid, w.prio, w.have, w.sdh))
                .collect();
            engine_wants.sort();
            model_wants.sort();
            prop_assert!(engine_wants.len() <= CAP);
            prop_assert_eq!(engine_wants, model_wants, "ledger of {} after {:?}", p, op);
        }
        assert_drained(&d.engine)?;
    }
    Ok(())
}

/// Nothing pending, active or in flight: the engine has drained.
fn assert_drained(engine: &ServerEngine) -> Result<(), TestCaseError> {
    let stats = engine.stats();
    prop_assert_eq!(
        (
            stats.pending_tasks,
            stats.active_tasks,
            stats.envelopes_in_flight,
            stats.lookups_in_flight
        ),
        (0, 0, 0, 0)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Run to quiescence after every step: every want is answered exactly once as the
    /// rules say (block, HAVE, DONT_HAVE, or nothing), nothing else is sent, and the
    /// ledgers (caps, overflow order, full replacement, cancels) equal the model's.
    #[test]
    fn every_want_is_answered_once_per_the_rules(
        initial in prop::collection::vec(any::<bool>(), SIZES.len()),
        versions in prop::collection::vec(prop::bool::weighted(0.75), PEERS),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run_model(initial, versions, ops)?;
    }
}

/// Steps of an interleaved run: the embedder answers lookups in any order, reports
/// envelopes late, and blocks come and go meanwhile.
#[derive(Debug, Clone)]
enum Step {
    Op(Op),
    Remove(usize),
    PollLookup,
    Answer(Index, bool),
    PollEnvelope,
    Resolve(Index, bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => op().prop_map(Step::Op),
        1 => (0..SIZES.len()).prop_map(Step::Remove),
        3 => Just(Step::PollLookup),
        3 => (any::<Index>(), prop::bool::weighted(0.1)).prop_map(|(i, f)| Step::Answer(i, f)),
        3 => Just(Step::PollEnvelope),
        3 => (any::<Index>(), prop::bool::weighted(0.8)).prop_map(|(i, s)| Step::Resolve(i, s)),
    ]
}

/// What may still be sent to a peer about a CID.
#[derive(Debug, Default, Clone, Copy)]
struct May {
    /// Wanted (and allowed) since the last cancel, replacement, disconnect or block sent.
    live: bool,
    /// Asked DONT_HAVE since the last cancel, replacement or disconnect.
    dont_have: bool,
    /// A block for it is in an envelope not yet reported.
    block_in_flight: bool,
}

struct Weak {
    connected: Vec<Option<bool>>,
    may: HashMap<(usize, usize), May>,
}

impl Weak {
    fn message(&mut self, p: usize, full: bool, entries: &[E]) {
        let Some(v12) = self.connected[p] else {
            return;
        };
        if full {
            for ((q, _), may) in self.may.iter_mut() {
                if *q == p {
                    may.live = false;
                    may.dont_have = false;
                }
            }
        }
        for e in entries {
            match *e {
                E::Cancel(c) => {
                    let may = self.may.entry((p, c)).or_default();
                    may.live = false;
                    may.dont_have = false;
                }
                E::Want { cid, sdh, .. } => {
                    let may = self.may.entry((p, cid)).or_default();
                    may.dont_have |= sdh && v12;
                    // The filter is fixed: a denied CID is never kept.
                    may.live = !denied(p, cid);
                }
            }
        }
    }

    fn check(&mut self, setup: &Setup, envelope: &Envelope) -> Result<(), TestCaseError> {
        let p = setup.peer(&envelope.peer);
        let v12 = self.connected[p];
        prop_assert!(v12.is_some(), "envelope for a peer gone");
        let v12 = v12.unwrap_or_default();
        let version = if v12 {
            Version::V1_2_0
        } else {
            Version::V1_1_0
        };
        check_envelope(envelope, version)?;
        for (cid, ans) in answers(envelope) {
            let c = setup.cid(&cid);
            let may = self.may.entry((p, c)).or_default();
            match ans {
                Ans::Block => {
                    prop_assert!(may.live, "block {} to {} not wanted", c, p);
                    prop_assert!(!may.block_in_flight, "block {} to {} twice", c, p);
                    may.block_in_flight = true;
                }
                Ans::Have => prop_assert!(may.live && v12, "HAVE {} to {}", c, p),
                Ans::DontHave => prop_assert!(may.dont_have && v12, "DONT_HAVE {} to {}", c, p),
            }
        }
        Ok(())
    }

    fn resolved(&mut self, setup: &Setup, envelope: &Envelope, sent: bool, current: bool) {
        let p = setup.peer(&envelope.peer);
        for block in &envelope.message.blocks {
            let may = self.may.entry((p, setup.cid(block.cid()))).or_default();
            may.block_in_flight = false;
            if sent && current {
                may.live = false;
            }
        }
    }
}

fn run_interleaved(initial: Vec<bool>, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let setup = Setup::new();
    let mut d = Driver::new(setup.config());
    let mut weak = Weak {
        connected: vec![None; PEERS],
        may: HashMap::new(),
    };
    for (i, &present) in initial.iter().enumerate() {
        if present {
            d.put(&[&setup.blocks[i]]);
        }
    }
    let mut lookups = Vec::new();
    // Envelopes out, with the connection epoch of their peer.
    let mut out: Vec<(Envelope, u64)> = Vec::new();
    let mut epochs = [0u64; PEERS];
    for p in 0..PEERS {
        weak.connected[p] = Some(true);
        d.engine
            .handle_peer_connected(setup.peers[p], Version::V1_2_0);
    }
    for step in steps {
        match step {
            Step::Op(Op::Connect(p, v12)) => {
                if weak.connected[p].is_none() {
                    weak.connected[p] = Some(v12);
                    let version = if v12 {
                        Version::V1_2_0
                    } else {
                        Version::V1_1_0
                    };
                    d.engine.handle_peer_connected(setup.peers[p], version);
                }
            }
            Step::Op(Op::Disconnect(p)) => {
                weak.connected[p] = None;
                epochs[p] += 1;
                for ((q, _), may) in weak.may.iter_mut() {
                    if *q == p {
                        may.live = false;
                        may.dont_have = false;
                    }
                }
                d.engine.handle_peer_disconnected(&setup.peers[p]);
            }
            Step::Op(Op::Msg {
                peer,
                full: is_full,
                entries,
            }) => {
                let wire: Vec<Entry> = entries.iter().map(|e| to_entry(&setup.blocks, e)).collect();
                let m = if is_full {
                    full(wire)
                } else {
                    Message::wantlist_update(wire)
                };
                weak.message(peer, is_full, &entries);
                d.engine.handle_message(setup.peers[peer], &m);
            }
            Step::Op(Op::Arrive(c)) => {
                let b = setup.blocks[c].clone();
                d.arrive(&[&b]);
            }
            Step::Remove(c) => {
                d.store.remove(setup.blocks[c].cid().hash());
            }
            Step::PollLookup => {
                if let Some(lookup) = d.engine.poll_lookup() {
                    lookups.push(lookup);
                }
            }
            Step::Answer(i, fail) => {
                if !lookups.is_empty() {
                    let lookup = lookups.swap_remove(i.index(lookups.len()));
                    let result = if fail {
                        LookupResult::Failed
                    } else {
                        d.answer(&lookup.cid, lookup.kind)
                    };
                    d.engine.handle_lookup(lookup.id, result);
                }
            }
            Step::PollEnvelope => {
                if let Some(envelope) = d.engine.poll_envelope() {
                    weak.check(&setup, &envelope)?;
                    let p = setup.peer(&envelope.peer);
                    out.push((envelope, epochs[p]));
                }
            }
            Step::Resolve(i, sent) => {
                if !out.is_empty() {
                    let (envelope, epoch) = out.swap_remove(i.index(out.len()));
                    let current = epochs[setup.peer(&envelope.peer)] == epoch;
                    weak.resolved(&setup, &envelope, sent, current);
                    if sent {
                        d.engine.handle_envelope_sent(envelope.id);
                    } else {
                        d.engine.handle_envelope_failed(envelope.id);
                    }
                }
            }
        }
        d.engine.check_invariants().map_err(TestCaseError::fail)?;
        prop_assert!(lookups.len() <= 3 && out.len() <= 2 * SIZES.len());
    }
    // Finish: answer and report everything, then run to quiescence.
    for lookup in lookups.drain(..) {
        let result = d.answer(&lookup.cid, lookup.kind);
        d.engine.handle_lookup(lookup.id, result);
    }
    for (envelope, epoch) in out.drain(..) {
        let current = epochs[setup.peer(&envelope.peer)] == epoch;
        weak.resolved(&setup, &envelope, true, current);
        d.engine.handle_envelope_sent(envelope.id);
    }
    loop {
        let mut progress = d.lookups() > 0;
        while let Some(envelope) = d.engine.poll_envelope() {
            weak.check(&setup, &envelope)?;
            weak.resolved(&setup, &envelope, true, true);
            d.engine.handle_envelope_sent(envelope.id);
            progress = true;
        }
        if !progress {
            break;
        }
    }
    d.engine.check_invariants().map_err(TestCaseError::fail)?;
    assert_drained(&d.engine)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Lookups answered in any order (some failing), envelopes reported late (some
    /// failing), blocks added and removed meanwhile: the engine's invariants and bounds
    /// hold after every step, nothing is sent for a want cancelled, replaced or dropped by
    /// a disconnect (unless its envelope was already out), no block is sent twice for one
    /// want, and everything drains at the end.
    #[test]
    fn interleaved_runs_keep_the_invariants(
        initial in prop::collection::vec(any::<bool>(), SIZES.len()),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        run_interleaved(initial, steps)?;
    }
}
