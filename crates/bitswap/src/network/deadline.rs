//! [`Deadlines`]: one timer for a stream's successive waits, each bounded by a deadline.
//!
//! Timing out each message with a timer of its own costs two wake-ups of the timer thread
//! per message (one to arm the timer, one to drop it), which is about as many as the stream
//! has messages when it carries 256 KiB blocks. The timeouts are seconds long while a message
//! takes well under a millisecond, so one timer serves many waits: it fires at the deadline it
//! was armed for, and is re-armed then (or when a wait needs an earlier deadline).

use std::{
    future::Future,
    pin::pin,
    time::{Duration, Instant},
};

use futures::future::{Either, select};
use futures_timer::Delay;

/// Bounds successive waits by deadlines with one timer (see the module docs).
#[derive(Default)]
pub(super) struct Deadlines {
    /// The timer and the instant it fires at.
    timer: Option<(Delay, Instant)>,
}

impl Deadlines {
    /// `future`'s output, or `None` if it does not finish within `duration` from now.
    pub(super) async fn run<F: Future>(
        &mut self,
        duration: Duration,
        future: F,
    ) -> Option<F::Output> {
        let deadline = Instant::now() + duration;
        let mut future = pin!(future);
        loop {
            let timer = match &mut self.timer {
                Some((timer, at)) if *at <= deadline => timer,
                Some((timer, at)) => {
                    // This wait must end before the timer fires: fire earlier.
                    timer.reset(deadline.saturating_duration_since(Instant::now()));
                    *at = deadline;
                    timer
                }
                None => {
                    let delay = Delay::new(deadline.saturating_duration_since(Instant::now()));
                    &mut self.timer.insert((delay, deadline)).0
                }
            };
            match select(future.as_mut(), timer).await {
                Either::Left((output, _)) => return Some(output),
                Either::Right(((), _)) => {
                    let now = Instant::now();
                    if now >= deadline {
                        // Fired: the next wait arms it again.
                        self.timer = None;
                        return None;
                    }
                    // It fired for an earlier deadline: wait on to this one.
                    if let Some((timer, at)) = &mut self.timer {
                        timer.reset(deadline - now);
                        *at = deadline;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{executor::block_on, future::pending};

    use super::*;

    #[test]
    fn a_wait_that_ends_in_time_gives_its_output_and_keeps_the_timer() {
        let mut deadlines = Deadlines::default();
        let out = block_on(deadlines.run(Duration::from_secs(10), async { 7 }));
        assert_eq!(out, Some(7));
        assert!(deadlines.timer.is_some());
        // A later deadline reuses the timer armed for the earlier one.
        let at = deadlines.timer.as_ref().map(|(_, at)| *at);
        assert_eq!(
            block_on(deadlines.run(Duration::from_secs(20), async { 8 })),
            Some(8)
        );
        assert_eq!(deadlines.timer.as_ref().map(|(_, at)| *at), at);
    }

    #[test]
    fn a_wait_past_its_deadline_times_out_even_behind_a_later_timer() {
        let mut deadlines = Deadlines::default();
        assert_eq!(
            block_on(deadlines.run(Duration::from_secs(60), async { 1 })),
            Some(1)
        );
        let start = Instant::now();
        let out = block_on(deadlines.run(Duration::from_millis(50), pending::<()>()));
        assert_eq!(out, None);
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
        assert!(waited < Duration::from_secs(30), "{waited:?}");
    }

    #[test]
    fn a_timer_armed_for_an_earlier_deadline_is_waited_past() {
        let mut deadlines = Deadlines::default();
        assert_eq!(
            block_on(deadlines.run(Duration::from_millis(20), async { 1 })),
            Some(1)
        );
        // The timer fires after 20 ms; this wait goes on to its own deadline.
        let start = Instant::now();
        let out = block_on(deadlines.run(Duration::from_millis(120), async {
            Delay::new(Duration::from_millis(80)).await;
            2
        }));
        assert_eq!(out, Some(2));
        assert!(start.elapsed() >= Duration::from_millis(80));
        let start = Instant::now();
        assert_eq!(
            block_on(deadlines.run(Duration::from_millis(60), pending::<()>())),
            None
        );
        assert!(start.elapsed() >= Duration::from_millis(60));
    }
}
