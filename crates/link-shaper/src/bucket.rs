//! The rate of one direction of a link: a token bucket shared by the link's connections.

use std::time::{Duration, Instant};

/// A token bucket that may go into debt.
///
/// A chunk of `n` bytes always takes its `n` tokens at once, even below zero, and its sender
/// waits until the balance would be back at zero. Several connections taking from one bucket
/// therefore queue behind each other's debt: together they get the rate, and a chunk is never
/// split. Oversleeping a wait is not lost, since the refill counts real elapsed time (up to the
/// burst).
#[derive(Debug)]
pub(crate) struct Bucket {
    /// Tokens (bytes); negative while in debt.
    tokens: f64,
    /// When `tokens` was counted.
    at: Instant,
}

impl Bucket {
    /// A full bucket, at `now`.
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            tokens: f64::MAX,
            at: now,
        }
    }

    /// Takes `bytes` tokens at `now` from a bucket refilled at `rate` bytes per second up to
    /// `burst`, and returns how long the taker must wait before sending them.
    pub(crate) fn take(&mut self, bytes: usize, rate: u64, burst: u64, now: Instant) -> Duration {
        let rate = rate.max(1) as f64;
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * rate).min(burst as f64);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    /// Forgives any debt: after a change of rate, waits are counted at the new rate.
    pub(crate) fn forgive(&mut self) {
        self.tokens = self.tokens.max(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        // A full bucket lets the burst through at once.
        assert_eq!(bucket.take(1000, 1000, 1000, t0), Duration::ZERO);
        // The next 500 bytes wait half a second at 1000 B/s.
        let wait = bucket.take(500, 1000, 1000, t0);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        // A second taker queues behind the first's debt.
        let wait = bucket.take(500, 1000, 1000, t0);
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-9, "{wait:?}");
        // Two seconds later the debt is paid and 1000 bytes went back in, not more than the burst.
        let later = t0 + Duration::from_secs(3);
        assert_eq!(bucket.take(1000, 1000, 1000, later), Duration::ZERO);
        assert!(bucket.take(1, 1000, 1000, later) > Duration::ZERO);
    }

    #[test]
    fn forgiven_debt_is_not_waited() {
        let t0 = Instant::now();
        let mut bucket = Bucket::new(t0);
        let _ = bucket.take(1000, 1, 1, t0);
        bucket.forgive();
        assert_eq!(bucket.take(0, 1000, 1000, t0), Duration::ZERO);
    }
}
