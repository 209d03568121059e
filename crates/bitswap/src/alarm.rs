//! [`Alarm`]: a timer that wakes the behaviour once at an instant, and is unset otherwise.

use std::{
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::FutureExt;
use futures_bounded::Delay;

/// A one-shot timer and the instant it rings at, or nothing when unset.
#[derive(Default)]
pub(crate) struct Alarm(Option<(Instant, Delay)>);

impl Alarm {
    /// Whether the alarm is set.
    pub(crate) fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Sets the alarm to ring by `deadline`, or unsets it when there is none. An alarm set for
    /// an earlier instant is kept: when it rings, the owner handles what is due (maybe
    /// nothing) and sets it again. Deadlines that move later with every block received would
    /// otherwise make a timer (two wake-ups of the timer thread) per block.
    pub(crate) fn set_by(&mut self, deadline: Option<Instant>, now: Instant) {
        match deadline {
            Some(deadline) if self.0.as_ref().is_none_or(|(at, _)| *at > deadline) => {
                let delay = Delay::futures_timer(deadline.saturating_duration_since(now));
                self.0 = Some((deadline, delay));
            }
            Some(_) => {}
            None => self.0 = None,
        }
    }

    /// Sets the alarm to ring `wait` after `now` and polls it once. `Ready` if it rang at once
    /// (it is then unset, and the owner must wake itself).
    pub(crate) fn set_in(
        &mut self,
        wait: Duration,
        now: Instant,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        self.0 = Some((now + wait, Delay::futures_timer(wait)));
        self.poll_ring(cx)
    }

    /// `Ready` once when the alarm rings, which unsets it.
    pub(crate) fn poll_ring(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some((_, delay)) = &mut self.0
            && delay.poll_unpin(cx).is_ready()
        {
            self.0 = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(alarm: &Alarm) -> Option<Instant> {
        alarm.0.as_ref().map(|(at, _)| *at)
    }

    #[test]
    fn an_alarm_keeps_its_earlier_instant_and_unsets_without_a_deadline() {
        let now = Instant::now();
        let (soon, later) = (now + Duration::from_secs(1), now + Duration::from_secs(2));
        let mut alarm = Alarm::default();
        alarm.set_by(Some(later), now);
        assert_eq!(at(&alarm), Some(later));
        alarm.set_by(Some(soon), now);
        assert_eq!(at(&alarm), Some(soon));
        alarm.set_by(Some(later), now);
        assert_eq!(at(&alarm), Some(soon));
        alarm.set_by(None, now);
        assert!(!alarm.is_set());
    }

    #[test]
    fn an_alarm_rings_once_and_unsets() {
        let mut alarm = Alarm::default();
        let set = futures::future::poll_fn(|cx| {
            Poll::Ready(alarm.set_in(Duration::from_millis(1), Instant::now(), cx))
        });
        if futures::executor::block_on(set).is_pending() {
            futures::executor::block_on(futures::future::poll_fn(|cx| alarm.poll_ring(cx)));
        }
        assert!(!alarm.is_set());
        let waker = futures::task::noop_waker();
        assert!(
            alarm
                .poll_ring(&mut Context::from_waker(&waker))
                .is_pending()
        );
    }
}
