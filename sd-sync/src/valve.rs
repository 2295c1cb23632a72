//! The deletion safety valve: a sync that would remove a large share of a node's target
//! files is held back until the same listing has been seen on several consecutive polls,
//! or the operator allows mass deletions.
//!
//! Deletions are counted over a window ([`WINDOW`]) rather than per poll, so a bucket
//! emptied slowly (`aws s3 rm --recursive` deletes 1,000 keys per request) is caught as
//! surely as one emptied at once.
//!
//! Why: the old `aws s3 sync --delete` cron line happily emptied a node's directory when
//! the bucket looked empty (a wrong prefix, a bucket emptied by mistake, a store answering
//! a truncated listing), and Prometheus then dropped every target at once. A real mass
//! removal (an org deleted) still goes through, only a few polls later.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use tokio::time::Instant;

use crate::plan::ListedObject;

/// When deletions count as mass deletions and what it takes to let them through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValveConfig {
    /// Hold back a sync that deletes more than this percentage of the installed files...
    pub max_share_percent: u32,
    /// ...and more than this many files.
    pub max_count: usize,
    /// How many consecutive polls must show the same listing before held-back deletions
    /// proceed (the first sighting counts as one).
    pub confirmations: u32,
    /// Never hold back (`--allow-mass-deletion`).
    pub allow_mass_deletion: bool,
}

impl Default for ValveConfig {
    fn default() -> Self {
        ValveConfig {
            max_share_percent: 50,
            max_count: 10,
            confirmations: 10,
            allow_mass_deletion: false,
        }
    }
}

/// What to do with a sync's deletions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delete.
    Proceed,
    /// Delete nothing this time; `seen` of the `needed` consecutive sightings so far.
    Hold { seen: u32, needed: u32 },
}

/// How long performed deletions keep counting towards the thresholds.
pub const WINDOW: Duration = Duration::from_secs(300);

/// The valve of one mapping: remembers the deletions of the last [`WINDOW`], the listing
/// it is holding back and how many consecutive polls have shown it.
#[derive(Debug)]
pub struct Valve {
    config: ValveConfig,
    pending: Option<Pending>,
    /// Deletions let through within the window: when, and how many.
    recent: VecDeque<(Instant, usize)>,
}

#[derive(Debug)]
struct Pending {
    fingerprint: u64,
    seen: u32,
}

impl Valve {
    pub fn new(config: ValveConfig) -> Valve {
        Valve {
            config,
            pending: None,
            recent: VecDeque::new(),
        }
    }

    /// Judges, at `now`, a sync that would delete `deletions` of `installed` files, given
    /// the complete `listing` it was planned from. A `Proceed` with deletions records
    /// them: the caller is expected to perform them.
    ///
    /// Mass deletion: more than `max_count` files and more than `max_share_percent` of
    /// the files, counting the deletions of the last [`WINDOW`] too (against the files
    /// there were before them). An empty listing that would delete anything is always
    /// suspicious: it is what an emptied bucket or a wrong prefix looks like.
    pub fn judge(
        &mut self,
        now: Instant,
        deletions: usize,
        installed: usize,
        listing: &[ListedObject],
    ) -> Verdict {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= WINDOW)
        {
            self.recent.pop_front();
        }
        if deletions == 0 || self.config.allow_mass_deletion {
            self.pending = None;
            return Verdict::Proceed;
        }
        let recent: usize = self.recent.iter().map(|(_, n)| n).sum();
        let total = recent + deletions;
        let share_exceeded = total.saturating_mul(100)
            > (self.config.max_share_percent as usize).saturating_mul(installed + recent);
        let mass = listing.is_empty() || (total > self.config.max_count && share_exceeded);
        if !mass {
            self.pending = None;
            self.recent.push_back((now, deletions));
            return Verdict::Proceed;
        }
        let fingerprint = fingerprint(listing);
        let seen = match &self.pending {
            Some(pending) if pending.fingerprint == fingerprint => pending.seen + 1,
            _ => 1,
        };
        if seen >= self.config.confirmations {
            // Confirmed: this is the new normal, and the window starts afresh.
            self.pending = None;
            self.recent.clear();
            return Verdict::Proceed;
        }
        self.pending = Some(Pending { fingerprint, seen });
        Verdict::Hold {
            seen,
            needed: self.config.confirmations,
        }
    }

    /// A poll failed: the sightings are no longer consecutive.
    pub fn interrupted(&mut self) {
        self.pending = None;
    }
}

/// The identity of a listing: the names it holds. Content changes of the objects that
/// stay do not make it a different listing.
fn fingerprint(listing: &[ListedObject]) -> u64 {
    let mut hasher = DefaultHasher::new();
    listing.len().hash(&mut hasher);
    for object in listing {
        object.name.hash(&mut hasher);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gds_store::ETag;

    fn listing(names: &[&str]) -> Vec<ListedObject> {
        names
            .iter()
            .map(|name| ListedObject {
                name: name.to_string(),
                etag: ETag::of(name.as_bytes()),
                size: 1,
            })
            .collect()
    }

    fn now() -> Instant {
        Instant::now()
    }

    fn valve(confirmations: u32) -> Valve {
        Valve::new(ValveConfig {
            confirmations,
            ..ValveConfig::default()
        })
    }

    #[test]
    fn small_or_minor_deletions_proceed_at_once() {
        let remaining = listing(&["a.json"]);
        // 10 of 11: more than half, but not more than 10.
        assert_eq!(valve(3).judge(now(), 10, 11, &remaining), Verdict::Proceed);
        // 11 of 100: more than 10, but not more than half.
        assert_eq!(valve(3).judge(now(), 11, 100, &remaining), Verdict::Proceed);
        // 50 of 100 is not more than half.
        assert_eq!(valve(3).judge(now(), 50, 100, &remaining), Verdict::Proceed);
    }

    #[test]
    fn a_mass_deletion_is_held_until_the_same_listing_is_seen_on_enough_polls() {
        let mut valve = valve(3);
        let remaining = listing(&["a.json"]);
        assert_eq!(
            valve.judge(now(), 11, 12, &remaining),
            Verdict::Hold { seen: 1, needed: 3 }
        );
        assert_eq!(
            valve.judge(now(), 11, 12, &remaining),
            Verdict::Hold { seen: 2, needed: 3 }
        );
        assert_eq!(valve.judge(now(), 11, 12, &remaining), Verdict::Proceed);
        // Done: a new mass deletion starts counting again.
        assert_eq!(
            valve.judge(now(), 11, 12, &remaining),
            Verdict::Hold { seen: 1, needed: 3 }
        );
    }

    #[test]
    fn a_different_listing_or_a_failed_poll_restarts_the_count() {
        let mut valve = valve(3);
        let one = listing(&["a.json"]);
        let other = listing(&["b.json"]);
        assert!(matches!(
            valve.judge(now(), 11, 12, &one),
            Verdict::Hold { seen: 1, .. }
        ));
        assert!(matches!(
            valve.judge(now(), 11, 12, &one),
            Verdict::Hold { seen: 2, .. }
        ));
        assert!(matches!(
            valve.judge(now(), 11, 12, &other),
            Verdict::Hold { seen: 1, .. }
        ));
        valve.interrupted();
        assert!(matches!(
            valve.judge(now(), 11, 12, &other),
            Verdict::Hold { seen: 1, .. }
        ));
    }

    #[test]
    fn changed_contents_of_the_remaining_objects_do_not_restart_the_count() {
        let mut valve = valve(2);
        let mut remaining = listing(&["a.json"]);
        assert!(matches!(
            valve.judge(now(), 11, 12, &remaining),
            Verdict::Hold { .. }
        ));
        remaining[0].etag = ETag::of(b"changed");
        assert_eq!(valve.judge(now(), 11, 12, &remaining), Verdict::Proceed);
    }

    #[test]
    fn an_empty_listing_is_always_suspicious() {
        let mut valve = valve(2);
        assert_eq!(
            valve.judge(now(), 1, 1, &[]),
            Verdict::Hold { seen: 1, needed: 2 }
        );
        assert_eq!(valve.judge(now(), 1, 1, &[]), Verdict::Proceed);
        assert_eq!(
            valve.judge(now(), 0, 0, &[]),
            Verdict::Proceed,
            "nothing to delete"
        );
    }

    #[test]
    fn the_operator_may_allow_mass_deletions() {
        let mut valve = Valve::new(ValveConfig {
            allow_mass_deletion: true,
            ..ValveConfig::default()
        });
        assert_eq!(valve.judge(now(), 100, 100, &[]), Verdict::Proceed);
    }

    #[test]
    fn deletions_within_the_window_add_up_and_older_ones_do_not() {
        let mut valve = valve(2);
        let start = Instant::now();
        let remaining = listing(&["a.json"]);
        // A slow wipe of 40 files, 5 at a time: each step alone is small.
        for step in 0..2 {
            let installed = 40 - 5 * step;
            assert_eq!(
                valve.judge(start, 5, installed, &remaining),
                Verdict::Proceed
            );
        }
        // 15 of 40 so far: not more than half.
        assert_eq!(valve.judge(start, 5, 30, &remaining), Verdict::Proceed);
        // 25 of 40: held.
        assert!(matches!(
            valve.judge(start, 10, 25, &remaining),
            Verdict::Hold { seen: 1, .. }
        ));
        // Once the window has passed, the same step is small again.
        let later = start + WINDOW;
        let mut valve_later = Valve::new(ValveConfig::default());
        for _ in 0..3 {
            assert_eq!(
                valve_later.judge(start, 5, 40, &remaining),
                Verdict::Proceed
            );
        }
        assert_eq!(
            valve_later.judge(later, 10, 25, &remaining),
            Verdict::Proceed
        );
    }

    #[test]
    fn one_confirmation_means_no_hold() {
        assert_eq!(valve(1).judge(now(), 100, 100, &[]), Verdict::Proceed);
    }
}
