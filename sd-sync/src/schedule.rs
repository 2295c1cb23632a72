//! When each poll starts: `--interval` is a freshness bound, not a timer period.
//!
//! A bucket write lands at a uniform point of the poll cycle. It waits for the next
//! listing, then for the cost `c` of the sync that sees it (the rest of that listing, the
//! read, the install). With a fixed period `P` the delay is `U(0, P) + c`, so its p99 is
//! `0.99 P + c`: a 2 s timer can never install 99 % of writes within 2 s, because `c` is
//! at least one listing round trip. sd-sync therefore starts each poll early by what the
//! recent syncs cost (the slowest of the last [`WINDOW`], plus a margin of 5 % of the
//! interval for a sync slower than those), so that a write is installed within about
//! `interval`; the lead is at
//! most a quarter of the interval, so a slow or failing store never makes sd-sync poll
//! more than a third more often than the interval says.
//!
//! The cost of a sync (its whole duration) bounds `c` from above: the listing starts
//! before the store reads its state, and the read and install of a changed object end
//! with the sync.

use std::collections::VecDeque;
use std::time::Duration;

/// How many recent syncs the lead covers: 10 polls, about 20 s at the default interval.
pub const WINDOW: usize = 10;

/// The period between poll starts, from the interval and the recent syncs' cost.
#[derive(Clone, Debug)]
pub struct Schedule {
    interval: Duration,
    recent: VecDeque<Duration>,
}

impl Schedule {
    pub fn new(interval: Duration) -> Schedule {
        Schedule {
            interval,
            recent: VecDeque::with_capacity(WINDOW),
        }
    }

    /// Records how long a sync took, from its start to its end.
    pub fn record(&mut self, cost: Duration) {
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(cost);
    }

    /// How much earlier than `interval` the next poll starts.
    pub fn lead(&self) -> Duration {
        let Some(slowest) = self.recent.iter().max() else {
            return Duration::ZERO;
        };
        (*slowest + self.interval / 20).min(self.interval / 4)
    }

    /// From the start of one poll to the start of the next.
    pub fn period(&self) -> Duration {
        self.interval - self.lead()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn before_any_sync_the_period_is_the_interval() {
        assert_eq!(Schedule::new(ms(2000)).period(), ms(2000));
    }

    #[test]
    fn polls_start_early_by_the_slowest_recent_sync_and_a_margin() {
        let mut schedule = Schedule::new(ms(2000));
        schedule.record(ms(250));
        schedule.record(ms(300));
        schedule.record(ms(100));
        // 300 ms + 5 % of 2000 ms.
        assert_eq!(schedule.lead(), ms(400));
        assert_eq!(schedule.period(), ms(1600));
        // The delay's p99 is then at most 0.99 * 1600 ms + 300 ms < 2 s.
        assert!(schedule.period().mul_f64(0.99) + ms(300) < ms(2000));
    }

    #[test]
    fn the_lead_is_at_most_a_quarter_of_the_interval() {
        let mut schedule = Schedule::new(ms(2000));
        schedule.record(Duration::from_secs(30));
        assert_eq!(schedule.period(), ms(1500));
    }

    #[test]
    fn a_slow_sync_is_forgotten_after_the_window() {
        let mut schedule = Schedule::new(ms(2000));
        schedule.record(ms(450));
        for _ in 0..WINDOW - 1 {
            schedule.record(ms(60));
        }
        assert_eq!(schedule.lead(), ms(500));
        schedule.record(ms(60));
        assert_eq!(schedule.lead(), ms(160));
    }
}
