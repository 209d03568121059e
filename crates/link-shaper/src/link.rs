//! What a link looks like: a rate and a one-way delay per direction.

use std::time::Duration;

/// One direction of a link, as seen from the client that dials the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client that dialled the proxy to the target (a request, a want).
    Up,
    /// From the target to the client (a response, a block).
    Down,
}

impl Direction {
    /// Both directions, `Up` first.
    pub const ALL: [Self; 2] = [Self::Up, Self::Down];

    pub(crate) fn index(self) -> usize {
        match self {
            Self::Up => 0,
            Self::Down => 1,
        }
    }
}

/// Smallest burst of a limited direction, in bytes.
const MIN_BURST: u64 = 32 * 1024;

/// The burst of a limited direction is at least this much time at its rate, in milliseconds.
const BURST_MS: u64 = 4;

/// Largest chunk read from a socket at once, in bytes.
pub(crate) const MAX_CHUNK: usize = 64 * 1024;

/// Smallest bound on the bytes queued per connection and direction.
const MIN_QUEUE_LIMIT: usize = 4 * 1024 * 1024;

/// The shape of one link: a rate and a one-way delay per direction.
///
/// The default is an unlimited rate and no delay both ways: a plain proxy.
///
/// ```
/// use std::time::Duration;
/// use link_shaper::{Direction, Link};
///
/// // 40 MB/s down, 5 MB/s up, 25 ms each way.
/// let link = Link::default()
///     .with_down_rate(Some(40_000_000))
///     .with_up_rate(Some(5_000_000))
///     .with_delay(Duration::from_millis(25));
/// assert_eq!(link.rate(Direction::Down), Some(40_000_000));
/// assert_eq!(link.delay(Direction::Up), Duration::from_millis(25));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Link {
    rate: [Option<u64>; 2],
    delay: [Duration; 2],
}

impl Link {
    /// Sets the rate of both directions, in bytes per second; `None` is unlimited (the default).
    ///
    /// A rate of 0 is taken as 1 byte per second.
    #[must_use]
    pub fn with_rate(self, bytes_per_second: Option<u64>) -> Self {
        self.with_up_rate(bytes_per_second)
            .with_down_rate(bytes_per_second)
    }

    /// Sets the rate from the client to the target, in bytes per second; `None` is unlimited
    /// (the default).
    #[must_use]
    pub fn with_up_rate(mut self, bytes_per_second: Option<u64>) -> Self {
        self.rate[Direction::Up.index()] = bytes_per_second.map(|r| r.max(1));
        self
    }

    /// Sets the rate from the target to the client, in bytes per second; `None` is unlimited
    /// (the default).
    #[must_use]
    pub fn with_down_rate(mut self, bytes_per_second: Option<u64>) -> Self {
        self.rate[Direction::Down.index()] = bytes_per_second.map(|r| r.max(1));
        self
    }

    /// Sets the one-way delay of both directions (the default is zero); a round trip takes
    /// twice this.
    #[must_use]
    pub fn with_delay(self, one_way: Duration) -> Self {
        self.with_up_delay(one_way).with_down_delay(one_way)
    }

    /// Sets the one-way delay from the client to the target (the default is zero).
    #[must_use]
    pub fn with_up_delay(mut self, one_way: Duration) -> Self {
        self.delay[Direction::Up.index()] = one_way;
        self
    }

    /// Sets the one-way delay from the target to the client (the default is zero).
    #[must_use]
    pub fn with_down_delay(mut self, one_way: Duration) -> Self {
        self.delay[Direction::Down.index()] = one_way;
        self
    }

    /// The rate of `direction` in bytes per second, `None` if unlimited.
    pub fn rate(&self, direction: Direction) -> Option<u64> {
        self.rate[direction.index()]
    }

    /// The one-way delay of `direction`.
    pub fn delay(&self, direction: Direction) -> Duration {
        self.delay[direction.index()]
    }

    /// How many bytes `direction` may send at once above its rate, in bytes; `None` if the
    /// direction is unlimited.
    ///
    /// The larger of 32 KiB and 4 ms at the rate. Tokio's timers tick in milliseconds and round
    /// a sleep up, so a sender that waits for its tokens wakes up to about 2 ms late; the bucket
    /// credits that lateness back only up to the burst, so a burst of less than 2 ms plus a
    /// chunk loses rate (with 1 ms, a link set to 40 MB/s carried 34). 4 ms covers it with
    /// room for a busy machine, and is small next to the delays a bench sets (25 ms and up).
    /// The 32 KiB floor keeps a slow link's chunks (a quarter of the burst) large enough that
    /// per-chunk costs (a timer, a wake-up, a write) stay small, and is 32 ms of a 1 MB/s link.
    pub fn burst(&self, direction: Direction) -> Option<u64> {
        self.rate(direction)
            .map(|r| (r.saturating_mul(BURST_MS) / 1000).max(MIN_BURST))
    }

    /// The most bytes one connection may hold queued in `direction`, in bytes: read from the
    /// sender and not yet written to the receiver.
    ///
    /// Twice the bandwidth-delay product, and at least 4 MiB. A queue holds the bytes in
    /// flight, the rate times the delay, so twice that leaves room for a receiver that reads in
    /// bursts. When the queue is full the proxy stops reading from the sender, whose own TCP
    /// window then fills. An unlimited direction with a delay forwards at most this bound per
    /// delay (4 MiB per 50 ms is 80 MiB/s): give delayed links a rate.
    pub fn queue_limit(&self, direction: Direction) -> usize {
        let bdp = self.rate(direction).map_or(0, |rate| {
            let bytes = u128::from(rate) * self.delay(direction).as_nanos() / 1_000_000_000;
            usize::try_from(bytes).unwrap_or(usize::MAX)
        });
        bdp.saturating_mul(2).max(MIN_QUEUE_LIMIT)
    }

    /// The largest chunk read at once in `direction`: 64 KiB, or a quarter of the burst (1 ms
    /// at the rate, or 8 KiB) if smaller.
    pub(crate) fn chunk_size(&self, direction: Direction) -> usize {
        self.burst(direction).map_or(MAX_CHUNK, |burst| {
            usize::try_from(burst / 4).map_or(MAX_CHUNK, |b| b.min(MAX_CHUNK))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_32_kib_or_4_ms() {
        let link = Link::default().with_up_rate(Some(1_000_000));
        assert_eq!(link.burst(Direction::Up), Some(32 * 1024));
        assert_eq!(link.chunk_size(Direction::Up), 8 * 1024);
        assert_eq!(link.burst(Direction::Down), None);
        let fast = Link::default().with_rate(Some(40_000_000));
        assert_eq!(fast.burst(Direction::Down), Some(160_000));
        assert_eq!(fast.chunk_size(Direction::Down), 40_000);
        let faster = Link::default().with_rate(Some(100_000_000));
        assert_eq!(faster.chunk_size(Direction::Down), MAX_CHUNK);
        assert_eq!(Link::default().chunk_size(Direction::Up), MAX_CHUNK);
    }

    #[test]
    fn queue_limit_covers_twice_the_bdp() {
        let link = Link::default()
            .with_rate(Some(40_000_000))
            .with_delay(Duration::from_millis(100));
        assert_eq!(link.queue_limit(Direction::Up), 8_000_000);
        assert_eq!(Link::default().queue_limit(Direction::Down), 4 << 20);
        let huge = Link::default()
            .with_rate(Some(u64::MAX))
            .with_delay(Duration::from_secs(1000));
        assert_eq!(huge.queue_limit(Direction::Up), usize::MAX);
    }
}
