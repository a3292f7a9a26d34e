//! When to send each ping.
//!
//! Pings are evenly spaced from a fixed start (ping `n` is due at
//! `start + n / rate`) and never wait for earlier responses: a slow target
//! must not slow the load down, or the load would hide the slowness (an
//! open-loop load, unlike a client that sends its next request on reply).
//! After a stall (a paused process, an overloaded machine) the pings that are
//! too late are skipped and counted instead of being sent all at once.

use std::time::{Duration, Instant};

/// What the sender should do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Send a ping now; it was due at `scheduled`.
    Send { scheduled: Instant },
    /// This many pings are too late to send.
    Skip { count: u64 },
    /// Nothing is due before this instant.
    WaitUntil(Instant),
}

/// An evenly spaced, open-loop sequence of send times.
#[derive(Clone, Debug)]
pub struct PingSchedule {
    start: Instant,
    rate_per_second: f64,
    interval: Duration,
    late_tolerance: Duration,
    next: u64,
}

impl PingSchedule {
    /// A ping that is more than this late (or one interval, if longer) is skipped.
    pub const MIN_LATE_TOLERANCE: Duration = Duration::from_millis(10);

    /// `rate_per_second` must be positive and finite (the configuration checks it).
    pub fn new(start: Instant, rate_per_second: f64) -> Self {
        let interval = Duration::from_secs_f64(1.0 / rate_per_second);
        Self {
            start,
            rate_per_second,
            interval,
            late_tolerance: interval.max(Self::MIN_LATE_TOLERANCE),
            next: 0,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn due(&self, index: u64) -> Instant {
        // Computed from the start and the exact rate, rather than by adding a
        // rounded interval again and again, so that no rounding error
        // accumulates into a rate drift.
        self.start + Duration::from_secs_f64(index as f64 / self.rate_per_second)
    }

    /// The next thing to do at `now`.
    pub fn poll(&mut self, now: Instant) -> Slot {
        let scheduled = self.due(self.next);
        if scheduled > now {
            return Slot::WaitUntil(scheduled);
        }
        let lateness = now - scheduled;
        if lateness <= self.late_tolerance {
            self.next += 1;
            return Slot::Send { scheduled };
        }
        // Skip to the first ping that is not too late.
        let oldest_acceptable = now - self.late_tolerance;
        let first_kept =
            (oldest_acceptable - self.start).as_secs_f64() / self.interval.as_secs_f64();
        let mut kept = first_kept.ceil() as u64;
        while self.due(kept) < oldest_acceptable {
            kept += 1;
        }
        let count = kept.saturating_sub(self.next).max(1);
        self.next += count;
        Slot::Skip { count }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn evenly_spaced_with_no_burst() {
        let start = Instant::now();
        let mut schedule = PingSchedule::new(start, 10.0);
        assert_eq!(schedule.poll(start), Slot::Send { scheduled: start });
        assert_eq!(schedule.poll(start), Slot::WaitUntil(start + ms(100)));
        // Waking a little late sends the one ping that is due, then waits again.
        let now = start + ms(103);
        assert_eq!(
            schedule.poll(now),
            Slot::Send {
                scheduled: start + ms(100)
            }
        );
        assert_eq!(schedule.poll(now), Slot::WaitUntil(start + ms(200)));
    }

    #[test]
    fn a_stall_skips_late_pings_instead_of_a_catch_up_storm() {
        let start = Instant::now();
        let mut schedule = PingSchedule::new(start, 100.0);
        assert!(matches!(schedule.poll(start), Slot::Send { .. }));
        // Stalled for a second: pings 1..=99 are long overdue.
        let now = start + ms(1000);
        let Slot::Skip { count } = schedule.poll(now) else {
            panic!("expected a skip after a stall");
        };
        // Everything due more than the 10 ms tolerance ago is skipped...
        assert_eq!(count, 98);
        // ...and only the pings within the tolerance are still sent.
        let mut sent = 0;
        while let Slot::Send { scheduled } = schedule.poll(now) {
            assert!(now - scheduled <= ms(10));
            sent += 1;
        }
        assert_eq!(sent, 2);
        assert_eq!(schedule.poll(now), Slot::WaitUntil(start + ms(1010)));
    }

    #[test]
    fn no_drift_over_many_intervals() {
        let start = Instant::now();
        let mut schedule = PingSchedule::new(start, 3.0);
        let mut now = start;
        let mut sent = 0u64;
        let mut last_scheduled = start;
        while sent < 15_000 {
            match schedule.poll(now) {
                Slot::Send { scheduled } => {
                    sent += 1;
                    last_scheduled = scheduled;
                }
                Slot::WaitUntil(at) => now = at,
                Slot::Skip { .. } => panic!("never late"),
            }
        }
        // Ping 14,999 (the 15,000th) is due 4,999.67 s after the start, to the microsecond.
        let expected = Duration::from_secs_f64(14_999.0 / 3.0);
        let actual = last_scheduled - start;
        let error = actual.abs_diff(expected);
        assert!(error < Duration::from_micros(1), "drifted by {error:?}");
    }

    #[test]
    fn high_rates_send_every_due_ping_after_a_coarse_timer_tick() {
        // 5,000/s is a ping every 200 µs, finer than tokio's 1 ms timer: each
        // wake-up sends the handful that fell due, none is lost.
        let start = Instant::now();
        let mut schedule = PingSchedule::new(start, 5000.0);
        let mut sent = 0;
        for tick in 1..=1000u64 {
            let now = start + ms(tick);
            while let Slot::Send { .. } = schedule.poll(now) {
                sent += 1;
            }
        }
        assert_eq!(sent, 5001);
    }
}
