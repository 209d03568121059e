//! [`Link`]: what the client measured of the path to one peer (its round trip, the rate at
//! which it delivers blocks, the size of its blocks, when it last answered) and what follows
//! from it: how many want-blocks keep the peer busy, when it is expected to deliver a new
//! want, and when its silence means a want went unanswered.
//!
//! The round trip is the smallest time seen, while the peer is connected, from a want to the
//! moment its answer began to arrive (a stream the peer opened to answer may have waited a
//! round trip for its protocol negotiation before the answer came on it). A smoothed average
//! would include the time wants wait at the peer behind earlier ones, which grows with the
//! number of wants in flight; sizing the window from it would grow the window, then the
//! queue, then the estimate again. The smallest sample only falls.
//!
//! The rate is bytes over time while the peer had want-blocks in flight, both summed with an
//! exponential decay of [`RATE_HALF_LIFE`], so that it follows a link that changes but not one
//! block's jitter. The first block of a busy period gives no sample (its wait includes the
//! round trip, not only its transfer), and the rate is trusted only once
//! [`MIN_RATE_BYTES`] were measured.

use std::time::{Duration, Instant};

use crate::message::WantType;

/// Half-life of the rate estimate's memory.
const RATE_HALF_LIFE: Duration = Duration::from_millis(500);
/// Time of delivery that must have been measured before the rate is trusted.
const MIN_RATE_TIME: Duration = Duration::from_millis(1);
/// Bytes that must have been measured before the rate is trusted: a DAG's root and inner
/// nodes (a few KiB, often in one message) time the round trip and the scheduler, not the
/// link.
const MIN_RATE_BYTES: f64 = 64.0 * 1024.0;
/// Block size assumed before a peer delivered any: kubo's default chunk.
const DEFAULT_BLOCK_SIZE: u64 = 256 * 1024;
/// Want-blocks in flight at a peer whatever its measurements: two keep it busy while one
/// travels back.
const MIN_WINDOW_BLOCKS: usize = 2;
/// Multiple of the bandwidth-delay product kept in flight: one for the pipe, one for what
/// waits at the peer so that it never runs dry between our wants.
const WINDOW_GAIN: f64 = 2.0;
/// [`WINDOW_GAIN`] while the rate still grows (BBR's start-up): a window of twice the
/// bandwidth-delay product lets the rate measured grow only as fast as the estimate behind
/// it follows, which takes seconds on a far link; one of four times lets it double about
/// every round trip.
const STARTUP_GAIN: f64 = 4.0;
/// The rate has stopped growing (start-up ends) when it has not grown by this factor in
/// [`STARTUP_ROUNDS`] checks, each at least [`BLOCK_ROUND_TRIPS`] round trips apart.
const STARTUP_GROWTH: f64 = 1.25;
/// See [`STARTUP_GROWTH`].
const STARTUP_ROUNDS: u32 = 3;
/// Round trips a large block may take to arrive when nothing waits before it, in the
/// bandwidth-delay product: one for the want and the block, and one more when the block is
/// larger than the flow-control window of the stream it comes on (yamux grants 256 KiB per
/// stream at first, and kubo's chunks are 256 KiB plus framing), whose last bytes wait for
/// the window update. The smallest round trip is measured on small answers and misses it.
const BLOCK_ROUND_TRIPS: f64 = 2.0;
/// What a peer delivers in this time may wait at it: a peer whose answers take several
/// round trips (stream windows, its own send limits) is only discovered to be fast by being
/// asked for more than its bandwidth-delay product; the ranking by expected wait, not the
/// window, keeps slow peers from holding too much.
const QUEUE_HORIZON: Duration = Duration::from_millis(500);
/// Round trip assumed in the window when the measured one is shorter: on loopback the
/// smallest round trip is a fraction of a millisecond, while the time a block takes through
/// a busy host's scheduler, the peer's store and its send queue varies by milliseconds; a
/// window that small starves the peer between our wants.
const MIN_WINDOW_RTT: Duration = Duration::from_millis(25);

/// Measurements of the path to one peer; see the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct Link {
    /// Smallest time from a want to the start of its answer seen.
    min_rtt: Option<Duration>,
    /// Decayed bytes delivered while busy.
    bytes: f64,
    /// Decayed seconds spent delivering them.
    seconds: f64,
    /// Average size of the blocks delivered, if any was: a larger block moves it halfway up,
    /// a smaller one an eighth of the way down.
    block_size: Option<u64>,
    /// When the current busy period (want-blocks in flight) began, if the peer is busy.
    busy_since: Option<Instant>,
    /// When it last delivered a block we asked it for.
    last_block: Option<Instant>,
    /// Blocks it delivered, counted with a decay of half-life [`QUEUE_HORIZON`], and when
    /// that count was last decayed.
    recent_blocks: (f64, Option<Instant>),
    /// When it last answered anything we asked it (block or presence).
    last_answer: Option<Instant>,
    /// Start-up is over: the rate stopped growing ([`STARTUP_GROWTH`]).
    full: bool,
    /// The rate start-up last grew to, when it was checked, and the checks since it grew.
    startup: (f64, Option<Instant>, u32),
}

impl Link {
    /// The peer answered a want at `now` (its first answer: a presence or the block).
    pub(super) fn heard(&mut self, now: Instant) {
        self.last_answer = Some(self.last_answer.map_or(now, |at| at.max(now)));
    }

    /// A want sent at `sent_at` was answered by a message that began to arrive at `began` and
    /// arrived at `now`: a round trip to `began`, unless that is before the want was sent
    /// (the answer came on a stream opened earlier), then to `now`. Only for the first want
    /// for its CID sent to the peer: an answer to an upgraded or re-sent want may be to the
    /// earlier one, and arrive microseconds after the later was sent.
    pub(super) fn answered(&mut self, sent_at: Instant, began: Instant, now: Instant) {
        let end = if began >= sent_at { began } else { now };
        self.round_trip(end.saturating_duration_since(sent_at));
    }

    /// A want-to-answer time that certainly spans one round trip.
    fn round_trip(&mut self, sample: Duration) {
        self.min_rtt = Some(self.min_rtt.map_or(sample, |m| m.min(sample)));
    }

    /// A block of `bytes` we asked for arrived at `now`.
    pub(super) fn delivered(&mut self, bytes: u64, now: Instant) {
        self.block_size = Some(match self.block_size {
            None => bytes,
            // Up fast, down slowly: a DAG's first blocks are small and its leaves large, and
            // taking leaves for small blocks would queue too many at the peer.
            Some(mean) if bytes > mean => (mean + bytes) / 2,
            Some(mean) => (mean * 7 + bytes) / 8,
        });
        if let (Some(busy), Some(last)) = (self.busy_since, self.last_block)
            && last >= busy
        {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            let keep = decay(elapsed, RATE_HALF_LIFE);
            self.bytes = self.bytes * keep + bytes as f64;
            self.seconds = self.seconds * keep + elapsed;
        }
        let (count, at) = self.recent_blocks;
        let since = at.map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        self.recent_blocks = (count * decay(since, QUEUE_HORIZON) + 1.0, Some(now));
        self.last_block = Some(now);
        self.last_answer = Some(self.last_answer.map_or(now, |at| at.max(now)));
        self.check_startup(now);
    }

    /// Ends start-up once the rate has not grown by [`STARTUP_GROWTH`] in [`STARTUP_ROUNDS`]
    /// checks.
    fn check_startup(&mut self, now: Instant) {
        let (Some(rate), Some(rtt), false) = (self.rate(), self.min_rtt, self.full) else {
            return;
        };
        let (best, checked, rounds) = &mut self.startup;
        let round = rtt.max(MIN_WINDOW_RTT).mul_f64(BLOCK_ROUND_TRIPS);
        if checked.is_some_and(|at| now.saturating_duration_since(at) < round) {
            return;
        }
        *checked = Some(now);
        if rate >= *best * STARTUP_GROWTH {
            *best = rate;
            *rounds = 0;
        } else {
            *rounds += 1;
            self.full = *rounds >= STARTUP_ROUNDS;
        }
    }

    /// The peer's want-blocks in flight went from none to some at `since` (`Some`), or back
    /// to none (`None`).
    pub(super) fn set_busy(&mut self, since: Option<Instant>) {
        self.busy_since = since;
    }

    /// Forgets the round trip (a new connection may take another path); the rate and block
    /// size stay as first guesses.
    pub(super) fn reconnected(&mut self) {
        self.min_rtt = None;
        self.busy_since = None;
        self.last_block = None;
        self.recent_blocks = (0.0, None);
        self.last_answer = None;
        self.full = false;
        self.startup = (0.0, None, 0);
    }

    /// Smallest want-to-answer time seen on this connection.
    pub(super) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// Delivery rate in bytes per second, once measured.
    pub(super) fn rate(&self) -> Option<f64> {
        (self.seconds >= MIN_RATE_TIME.as_secs_f64() && self.bytes >= MIN_RATE_BYTES)
            .then(|| self.bytes / self.seconds)
    }

    /// Average block size delivered, or [`DEFAULT_BLOCK_SIZE`].
    pub(super) fn block_size(&self) -> u64 {
        self.block_size.unwrap_or(DEFAULT_BLOCK_SIZE).max(1)
    }

    /// Time to transfer one average block at the measured rate (zero if not measured).
    fn block_time(&self) -> Duration {
        self.rate()
            .map_or(Duration::ZERO, |rate| self.transfer_time(rate))
    }

    /// Time to transfer one average block at `rate` bytes per second (at most an hour).
    fn transfer_time(&self, rate: f64) -> Duration {
        Duration::from_secs_f64((self.block_size() as f64 / rate).min(3600.0))
    }

    /// How many want-blocks keep the peer busy: [`WINDOW_GAIN`] ([`STARTUP_GAIN`] while the
    /// rate grows) times its bandwidth-delay product (rate × [`BLOCK_ROUND_TRIPS`] round
    /// trips, each at least [`MIN_WINDOW_RTT`]) or what it delivers in [`QUEUE_HORIZON`],
    /// whichever is more, once both are measured; `initial_bytes` worth before (in average
    /// blocks, or [`DEFAULT_BLOCK_SIZE`] ones if smaller); at least [`MIN_WINDOW_BLOCKS`], at
    /// most `max`.
    ///
    /// In the `tail` of a fetch, [`WINDOW_GAIN`] times the bandwidth-delay product alone, with
    /// no horizon: the blocks a peer holds when the last wants go out decide when it finishes,
    /// and an error in its rate estimate moves its end by a share of them, so a queue of a few
    /// round trips keeps the peers' ends close. No peer's speed is left to discover then.
    pub(super) fn window(&self, initial_bytes: u64, max: usize, tail: bool) -> usize {
        let blocks = match (self.rate(), self.min_rtt) {
            (Some(rate), Some(rtt)) => {
                let rtt = rtt.max(MIN_WINDOW_RTT).as_secs_f64();
                let bdp = rate * rtt * BLOCK_ROUND_TRIPS;
                let gain = if self.full { WINDOW_GAIN } else { STARTUP_GAIN };
                let bytes = if tail {
                    WINDOW_GAIN * bdp
                } else {
                    (gain * bdp).max(rate * QUEUE_HORIZON.as_secs_f64())
                };
                (bytes / self.block_size() as f64).ceil()
            }
            // Small blocks seen do not widen it: the first blocks of a slow peer would.
            _ => {
                let size = self.block_size().max(DEFAULT_BLOCK_SIZE);
                (initial_bytes as f64 / size as f64).ceil()
            }
        };
        let blocks = if blocks >= max as f64 {
            max
        } else {
            blocks as usize
        };
        blocks.max(MIN_WINDOW_BLOCKS).min(max.max(1))
    }

    /// When a new want-block sent now would arrive, given `in_flight` want-blocks before it
    /// and a window of `window` blocks: the round trip plus the transfer of everything queued,
    /// with `unknown` standing in for an unmeasured round trip. Before the rate is measured
    /// the peer is assumed to deliver its window per round trip; after, at its rate but at
    /// most twice what its recent blocks carried.
    pub(super) fn expected_wait(
        &self,
        in_flight: usize,
        window: usize,
        unknown: Duration,
    ) -> Duration {
        let rtt = self.min_rtt.unwrap_or(unknown);
        let per_block = match self.rate() {
            Some(rate) => {
                // A burst of blocks that shared the link (sent on several streams at once,
                // they end together) reads as a rate many times the link's: ranked by it, the
                // peer would be sent more than it can deliver while the others run dry. So
                // the rate ranked is at most twice what the blocks that came in about the last
                // `QUEUE_HORIZON / ln 2` carried.
                let window_secs = QUEUE_HORIZON.as_secs_f64() / std::f64::consts::LN_2;
                let came = self.recent_blocks.0 * self.block_size() as f64 / window_secs;
                self.transfer_time(rate.min(2.0 * came).max(1.0))
            }
            None => rtt / u32::try_from(window.max(1)).unwrap_or(u32::MAX),
        };
        let queued = u32::try_from(in_flight).unwrap_or(u32::MAX);
        rtt.saturating_add(per_block.saturating_mul(queued))
    }

    /// How long the peer may stay silent before a want of `want_type` sent to it counts as
    /// unanswered: `floor + multiplier × round trip`, plus the transfer time of the
    /// `in_flight` want-blocks it holds (at least four average blocks), capped at `ceiling`.
    /// A large block on a slow link takes a block's time to arrive whole, a peer serving
    /// others besides us sends ours in turns, and a peer that writes our blocks on several
    /// streams at once sends their frames in turns, so that they arrive whole together,
    /// after all their bytes.
    ///
    /// `initial` before any round trip is measured, and before the peer's delivery rate is
    /// for a want-block or while the peer has want-blocks of ours in flight (its other
    /// answers wait behind them): a round trip measured on small answers (presences, a small
    /// block) does not foresee how long a large block takes on a slow link, nor that the
    /// first blocks of a far peer arrive together after several round trips (they share its
    /// link, and each waits for its stream's flow-control window). Once the rate is measured,
    /// the transfer time of blocks is part of the timeout, and each answer re-arms the wants
    /// ([`due`](Self::due)).
    pub(super) fn silence_timeout(
        &self,
        want_type: WantType,
        in_flight: usize,
        floor: Duration,
        multiplier: u32,
        initial: Duration,
        ceiling: Duration,
    ) -> Duration {
        let blocks = u32::try_from(in_flight.max(4)).unwrap_or(u32::MAX);
        match self.min_rtt {
            Some(_)
                if self.rate().is_none()
                    && (want_type == WantType::Block || self.busy_since.is_some()) =>
            {
                initial
            }
            None => initial,
            Some(rtt) => floor
                .saturating_add(rtt.saturating_mul(multiplier))
                .saturating_add(self.block_time().saturating_mul(blocks))
                .min(ceiling.max(floor)),
        }
    }

    /// When a want sent at `sent` whose peer may stay silent for `timeout` is due: `timeout`
    /// after it was sent or after the peer last answered anything, whichever is later. A
    /// peer that keeps delivering keeps its wants alive however long its queue.
    pub(super) fn due(&self, sent: Instant, timeout: Duration) -> Instant {
        let from = self.last_answer.map_or(sent, |at| at.max(sent));
        from + timeout
    }
}

/// What is left of a sum decayed with `half_life` after `elapsed` seconds.
fn decay(elapsed: f64, half_life: Duration) -> f64 {
    0.5f64.powf(elapsed / half_life.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A link where blocks of `size` arrive every `gap` while busy.
    fn steady(size: u64, gap: Duration, blocks: u32, t0: Instant) -> (Link, Instant) {
        let mut link = Link::default();
        link.set_busy(Some(t0));
        let mut now = t0 + ms(50);
        link.round_trip(ms(50));
        link.heard(now);
        link.delivered(size, now);
        for _ in 1..blocks {
            now += gap;
            link.delivered(size, now);
        }
        (link, now)
    }

    #[test]
    fn the_rate_is_bytes_over_busy_time_and_skips_the_first_block() {
        let t0 = Instant::now();
        // 256 KiB every 6.5536 ms: 40 MB/s.
        let (link, _) = steady(256 * 1024, Duration::from_micros(6554), 20, t0);
        let rate = link.rate().expect("measured");
        assert!((rate - 40e6).abs() < 0.1e6, "{rate}");
        assert_eq!(link.min_rtt(), Some(ms(50)));
        assert_eq!(link.block_size(), 256 * 1024);
    }

    #[test]
    fn a_few_small_blocks_measure_no_rate_and_large_ones_lift_the_size_at_once() {
        let t0 = Instant::now();
        // A DAG's root and inner nodes: a few KiB, a millisecond apart.
        let (mut link, now) = steady(4000, ms(1), 4, t0);
        assert_eq!(link.rate(), None, "12 KB say nothing of the rate");
        assert_eq!(link.block_size(), 4000);
        // Its leaves: the first one makes the size a leaf's, near enough.
        link.delivered(256 * 1024, now + ms(10));
        assert!(link.block_size() > 128 * 1024, "{}", link.block_size());
        let rate = link.rate().expect("measured");
        assert!(rate > 20e6, "{rate}");
        // One small block among leaves moves the size by an eighth.
        let before = link.block_size();
        link.delivered(1000, now + ms(11));
        assert_eq!(link.block_size(), (before * 7 + 1000) / 8);
    }

    #[test]
    fn a_burst_after_a_long_first_wait_does_not_rank_the_peer_as_fast_as_it_reads() {
        let t0 = Instant::now();
        let mut link = Link::default();
        link.set_busy(Some(t0));
        link.round_trip(ms(50));
        // 32 blocks sent on as many streams share a 20 MB/s link and end together: the
        // first after 400 ms, the other 31 within 50 ms.
        let mut now = t0 + ms(400);
        link.delivered(256 * 1024, now);
        for _ in 0..31 {
            now += Duration::from_micros(1600);
            link.delivered(256 * 1024, now);
        }
        let rate = link.rate().expect("measured");
        assert!(rate > 100e6, "the burst reads as {rate}");
        // Ranked at most twice what came in about the last 0.72 s (32 blocks, 11.6 MB/s):
        // 40 blocks queued take 450 ms and more, not the 65 ms the burst's rate says.
        let wait = link.expected_wait(40, 64, ms(100));
        assert!(wait > ms(450), "{wait:?}");
    }

    #[test]
    fn idle_time_between_busy_periods_is_not_counted() {
        let t0 = Instant::now();
        let (mut link, now) = steady(1_000_000, ms(100), 5, t0);
        link.set_busy(None);
        // A second later new wants go out; their first block is not a sample.
        let later = now + ms(1000);
        link.set_busy(Some(later));
        link.delivered(1_000_000, later + ms(60));
        let rate = link.rate().expect("measured");
        assert!((rate - 10e6).abs() < 1e3, "{rate}");
    }

    #[test]
    fn the_window_covers_half_a_second_or_twice_the_bdp_once_measured() {
        let t0 = Instant::now();
        let (link, _) = steady(256 * 1024, Duration::from_micros(6554), 20, t0);
        // 40 MB/s x 500 ms = 20 MB, more than 40 MB/s x 100 ms x 2: 77 blocks of 256 KiB.
        assert_eq!(link.window(1 << 20, 1024, false), 77);
        assert_eq!(
            link.window(16 << 20, 1024, false),
            77,
            "measured: the initial size is moot"
        );
        // In the tail, twice 40 MB/s x 50 ms x 2 = 8 MB alone: 31 blocks.
        assert_eq!(link.window(1 << 20, 1024, true), 31);
        // 10 MB/s with a 1 s round trip: four times the BDP of two round trips (20 MB) while
        // the rate may still grow, twice once it has not grown for three checks 2 s apart.
        let mut far = Link::default();
        far.set_busy(Some(t0));
        far.round_trip(ms(1000));
        for k in 0..10 {
            far.delivered(1_000_000, t0 + ms(1000 + 100 * k));
        }
        assert!((80..=81).contains(&far.window(1 << 20, 1024, false)));
        for k in 10..80 {
            far.delivered(1_000_000, t0 + ms(1000 + 100 * k));
        }
        // 40, but for the float sums' rounding.
        assert!((40..=41).contains(&far.window(1 << 20, 1024, false)));
        far.reconnected();
        far.round_trip(ms(1000));
        let window = far.window(1 << 20, 1024, false);
        assert!(
            (80..=81).contains(&window),
            "a new connection starts up again: {window}"
        );
        assert_eq!(link.window(1 << 20, 10, false), 10);
        // Unmeasured: the initial size, in default blocks.
        assert_eq!(Link::default().window(1 << 20, 1024, false), 4);
        assert_eq!(Link::default().window(1 << 20, 1024, true), 4);
        assert_eq!(Link::default().window(0, 1024, false), MIN_WINDOW_BLOCKS);
        assert_eq!(Link::default().window(0, 1, false), 1);
    }

    #[test]
    fn a_peer_that_keeps_answering_keeps_its_wants_alive() {
        let t0 = Instant::now();
        let mut link = Link::default();
        assert_eq!(link.due(t0, ms(100)), t0 + ms(100));
        link.round_trip(ms(80));
        link.heard(t0 + ms(80));
        assert_eq!(link.due(t0, ms(100)), t0 + ms(180));
        // A want sent after the last answer counts from its own sending.
        assert_eq!(link.due(t0 + ms(200), ms(100)), t0 + ms(300));
        assert_eq!(
            link.silence_timeout(WantType::Have, 0, ms(100), 3, ms(2000), ms(7000)),
            ms(340)
        );
        assert_eq!(
            Link::default().silence_timeout(WantType::Have, 0, ms(100), 3, ms(2000), ms(7000)),
            ms(2000)
        );
        // A want-block waits for the peer's first blocks before the round trip judges it.
        assert_eq!(
            link.silence_timeout(WantType::Block, 0, ms(100), 3, ms(2000), ms(7000)),
            ms(2000)
        );
    }

    #[test]
    fn slow_links_wait_longer_for_big_blocks() {
        let t0 = Instant::now();
        // 1 MB every 200 ms: 5 MB/s, 200 ms per block.
        let (link, _) = steady(1_000_000, ms(200), 10, t0);
        assert_eq!(
            link.silence_timeout(WantType::Have, 0, ms(100), 3, ms(2000), ms(7000)),
            ms(100 + 150 + 800)
        );
        assert_eq!(
            link.silence_timeout(WantType::Block, 0, ms(100), 3, ms(2000), ms(7000)),
            ms(100 + 150 + 800)
        );
        // Holding 10 want-blocks of ours, written on streams that share its link, the peer
        // may deliver the first whole block only after all their bytes.
        assert_eq!(
            link.silence_timeout(WantType::Block, 10, ms(100), 3, ms(2000), ms(7000)),
            ms(100 + 150 + 2000)
        );
        assert_eq!(
            link.silence_timeout(WantType::Block, 40, ms(100), 3, ms(2000), ms(7000)),
            ms(7000),
            "at most the ceiling"
        );
        assert_eq!(link.expected_wait(2, 4, ms(100)), ms(50 + 400));
        assert_eq!(Link::default().expected_wait(2, 4, ms(100)), ms(150));
    }
}
