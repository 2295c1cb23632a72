//! The deletion safety valve: a sync that would remove a large share of a node's target
//! files, or empty its directory, is held back until the writers' record corroborates it
//! (or, without a record, until the same listing has been seen on several consecutive
//! polls), or the operator allows mass deletions.
//!
//! A judgement has two steps, so that the record costs a request only when it matters:
//! [`Valve::screen`] says whether a sync's deletions would be held back at all; only then
//! does the mirror read the writers' record (`[<prefix>]record/active.json`, see
//! [`gds_store::record`]) and [`Valve::judge`] decides with it:
//!
//! | record | verdict |
//! |---|---|
//! | present, agrees with the listing (it holds at least `active_count` objects) | delete now |
//! | present, disagrees | hold, for as long as it disagrees |
//! | present, not a record this version understands | hold, for as long as it stays so |
//! | unreadable (the store failed) | hold this poll; not a confirmation |
//! | absent, and never seen by this process for this mapping | the old rule: hold until `confirmations` consecutive polls show the same listing |
//! | absent, but seen before | hold: a vanished record is as suspicious as vanished objects |
//! | the prefix does not end in `active/` (no record can be located) | the old rule |
//!
//! Deletions are counted over a window ([`WINDOW`]) rather than per poll, so a bucket
//! emptied slowly (`aws s3 rm --recursive` deletes 1,000 keys per request) is caught as
//! surely as one emptied at once.
//!
//! Why: the old `aws s3 sync --delete` cron line happily emptied a node's directory when
//! the bucket looked empty (a wrong prefix, a bucket emptied by mistake, a lifecycle rule,
//! a store answering a truncated listing), and Prometheus then dropped every target at
//! once. Time passing proves nothing about such a listing; the writers' record does. A
//! real mass removal (an org deleted, the last app of a small foundation unbound) goes
//! through on the poll that sees it, because the writers published a record that agrees.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use gds_store::WritersRecord;
use serde::Serialize;
use tokio::time::Instant;

use crate::plan::ListedObject;

/// When deletions count as mass deletions and what it takes to let them through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValveConfig {
    /// Hold back a sync that deletes more than this percentage of the installed files...
    pub max_share_percent: u32,
    /// ...and more than this many files.
    pub max_count: usize,
    /// Without a writers' record: how many consecutive polls must show the same listing
    /// before held-back deletions proceed (the first sighting counts as one).
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

/// The first step's answer: whether a sync's deletions would be held back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Screen {
    /// Not a mass deletion (or nothing to delete, or allowed): delete. The deletions are
    /// recorded in the window; the caller is expected to perform them.
    Proceed,
    /// A mass deletion or an empty listing: read the writers' record and call
    /// [`Valve::judge`].
    Suspicious,
}

/// What reading the mapping's writers' record found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordRead {
    /// The mapping's prefix does not end in `active/`: no record can be located.
    NotLocated,
    /// No record object.
    Absent,
    /// The store failed to answer.
    Unreadable(String),
    /// An object that is not a record this version understands.
    Invalid(String),
    Present(WritersRecord),
}

/// What to do with a sync's deletions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Delete.
    Proceed,
    /// Delete: the writers' record agrees with the listing.
    Corroborated { generation: u64, recorded: u64 },
    /// Delete nothing this time.
    Hold(Hold),
}

/// Why deletions are held back (serialised in `/health`, with `reason` as the tag).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Hold {
    /// No record: `seen` of the `needed` consecutive sightings of the listing so far.
    Unconfirmed { seen: u32, needed: u32 },
    /// The record says `active/` holds more than the listing shows.
    RecordDisagrees {
        listed: usize,
        recorded: u64,
        generation: u64,
    },
    /// The record could not be read this poll.
    RecordUnreadable { error: String },
    /// The record object is not a record this version understands.
    RecordInvalid { error: String },
    /// A record was seen earlier and is gone now.
    RecordVanished,
}

impl Hold {
    /// The metric label: `unconfirmed`, `record_disagrees`, `record_unreadable`,
    /// `record_invalid`, `record_vanished`.
    pub fn reason(&self) -> &'static str {
        match self {
            Hold::Unconfirmed { .. } => "unconfirmed",
            Hold::RecordDisagrees { .. } => "record_disagrees",
            Hold::RecordUnreadable { .. } => "record_unreadable",
            Hold::RecordInvalid { .. } => "record_invalid",
            Hold::RecordVanished => "record_vanished",
        }
    }

    /// Every reason, for metrics created at zero.
    pub const REASONS: [&'static str; 5] = [
        "unconfirmed",
        "record_disagrees",
        "record_unreadable",
        "record_invalid",
        "record_vanished",
    ];

    /// Whether only the writers (or the operator) can end this hold: every hold but the
    /// countdown of a mapping without a record.
    pub fn needs_attention(&self) -> bool {
        !matches!(self, Hold::Unconfirmed { .. })
    }
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Unconfirmed { seen, needed } => write!(
                f,
                "no writers' record: waiting until {needed} consecutive polls show the same \
                 listing ({seen} so far)"
            ),
            Hold::RecordDisagrees {
                listed,
                recorded,
                generation,
            } => write!(
                f,
                "the writers' record (generation {generation}) says active/ holds {recorded} \
                 objects, the listing shows {listed}"
            ),
            Hold::RecordUnreadable { error } => {
                write!(f, "the writers' record cannot be read: {error}")
            }
            Hold::RecordInvalid { error } => write!(f, "{error}"),
            Hold::RecordVanished => write!(
                f,
                "the writers' record was there earlier and is gone: as suspicious as the \
                 vanished objects"
            ),
        }
    }
}

/// How long performed deletions keep counting towards the thresholds.
pub const WINDOW: Duration = Duration::from_secs(300);

/// The valve of one mapping: remembers the deletions of the last [`WINDOW`], the listing
/// it is counting sightings of, and whether a writers' record has been seen.
#[derive(Debug)]
pub struct Valve {
    config: ValveConfig,
    pending: Option<Pending>,
    /// Deletions let through within the window: when, and how many.
    recent: VecDeque<(Instant, usize)>,
    /// Whether this process has seen a record object for this mapping.
    seen_record: bool,
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
            seen_record: false,
        }
    }

    /// Screens, at `now`, a sync that would delete `deletions` of `installed` files, given
    /// the complete `listing` it was planned from.
    ///
    /// Mass deletion: more than `max_count` files and more than `max_share_percent` of
    /// the files, counting the deletions of the last [`WINDOW`] too (against the files
    /// there were before them). An empty listing that would delete anything is always
    /// suspicious: it is what an emptied bucket or a wrong prefix looks like.
    pub fn screen(
        &mut self,
        now: Instant,
        deletions: usize,
        installed: usize,
        listing: &[ListedObject],
    ) -> Screen {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= WINDOW)
        {
            self.recent.pop_front();
        }
        if deletions == 0 || self.config.allow_mass_deletion {
            self.pending = None;
            return Screen::Proceed;
        }
        let recent: usize = self.recent.iter().map(|(_, n)| n).sum();
        let total = recent + deletions;
        let share_exceeded = total.saturating_mul(100)
            > (self.config.max_share_percent as usize).saturating_mul(installed + recent);
        let mass = listing.is_empty() || (total > self.config.max_count && share_exceeded);
        if !mass {
            self.pending = None;
            self.recent.push_back((now, deletions));
            return Screen::Proceed;
        }
        Screen::Suspicious
    }

    /// Judges a [`Screen::Suspicious`] sync planned from `listing`, with what reading the
    /// writers' record found (see the module's table). A verdict that deletes starts the
    /// window afresh: the listing is the new normal.
    pub fn judge(&mut self, listing: &[ListedObject], record: &RecordRead) -> Verdict {
        let verdict = match record {
            RecordRead::Present(record) => {
                self.seen_record = true;
                self.pending = None;
                if record.agrees_with(listing.len()) {
                    Verdict::Corroborated {
                        generation: record.generation,
                        recorded: record.active_count,
                    }
                } else {
                    Verdict::Hold(Hold::RecordDisagrees {
                        listed: listing.len(),
                        recorded: record.active_count,
                        generation: record.generation,
                    })
                }
            }
            RecordRead::Invalid(error) => {
                self.seen_record = true;
                self.pending = None;
                Verdict::Hold(Hold::RecordInvalid {
                    error: error.clone(),
                })
            }
            RecordRead::Unreadable(error) => {
                // Like a failed listing: the sightings are no longer consecutive.
                self.pending = None;
                Verdict::Hold(Hold::RecordUnreadable {
                    error: error.clone(),
                })
            }
            RecordRead::Absent if self.seen_record => {
                self.pending = None;
                Verdict::Hold(Hold::RecordVanished)
            }
            RecordRead::Absent | RecordRead::NotLocated => self.count_sighting(listing),
        };
        if !matches!(verdict, Verdict::Hold(_)) {
            self.recent.clear();
        }
        verdict
    }

    /// The rule for mappings without a record: the same listing on `confirmations`
    /// consecutive polls.
    fn count_sighting(&mut self, listing: &[ListedObject]) -> Verdict {
        let fingerprint = fingerprint(listing);
        let seen = match &self.pending {
            Some(pending) if pending.fingerprint == fingerprint => pending.seen + 1,
            _ => 1,
        };
        if seen >= self.config.confirmations {
            self.pending = None;
            return Verdict::Proceed;
        }
        self.pending = Some(Pending { fingerprint, seen });
        Verdict::Hold(Hold::Unconfirmed {
            seen,
            needed: self.config.confirmations,
        })
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
    use gds_store::record::RECORD_FORMAT;

    fn listing(names: &[&str]) -> Vec<ListedObject> {
        names
            .iter()
            .map(|name| ListedObject {
                name: name.to_string(),
                etag: ETag::of(name.as_bytes()),
                size: 1,
                last_modified: None,
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

    fn record(generation: u64, active_count: u64) -> RecordRead {
        RecordRead::Present(WritersRecord {
            format: RECORD_FORMAT,
            generation,
            active_count,
            writer: "updater".into(),
            written_at: "2026-12-07T12:00:00Z".into(),
        })
    }

    fn unconfirmed(seen: u32, needed: u32) -> Verdict {
        Verdict::Hold(Hold::Unconfirmed { seen, needed })
    }

    impl Valve {
        /// Both steps, as the mirror takes them; `record` is read only when screened
        /// suspicious.
        fn decide(
            &mut self,
            now: Instant,
            deletions: usize,
            installed: usize,
            listing: &[ListedObject],
            record: &RecordRead,
        ) -> Verdict {
            match self.screen(now, deletions, installed, listing) {
                Screen::Proceed => Verdict::Proceed,
                Screen::Suspicious => self.judge(listing, record),
            }
        }

        /// Without a record, as before records existed.
        fn old(
            &mut self,
            now: Instant,
            deletions: usize,
            installed: usize,
            listing: &[ListedObject],
        ) -> Verdict {
            self.decide(now, deletions, installed, listing, &RecordRead::Absent)
        }
    }

    #[test]
    fn small_or_minor_deletions_proceed_at_once() {
        let remaining = listing(&["a.json"]);
        // 10 of 11: more than half, but not more than 10.
        assert_eq!(valve(3).old(now(), 10, 11, &remaining), Verdict::Proceed);
        // 11 of 100: more than 10, but not more than half.
        assert_eq!(valve(3).old(now(), 11, 100, &remaining), Verdict::Proceed);
        // 50 of 100 is not more than half.
        assert_eq!(valve(3).old(now(), 50, 100, &remaining), Verdict::Proceed);
    }

    #[test]
    fn without_a_record_a_mass_deletion_is_held_until_the_same_listing_is_seen_on_enough_polls() {
        for record in [RecordRead::Absent, RecordRead::NotLocated] {
            let mut valve = valve(3);
            let remaining = listing(&["a.json"]);
            let mut decide = || valve.decide(now(), 11, 12, &remaining, &record);
            assert_eq!(decide(), unconfirmed(1, 3));
            assert_eq!(decide(), unconfirmed(2, 3));
            assert_eq!(decide(), Verdict::Proceed);
            // Done: a new mass deletion starts counting again.
            assert_eq!(decide(), unconfirmed(1, 3));
        }
    }

    #[test]
    fn a_different_listing_or_a_failed_poll_restarts_the_count() {
        let mut valve = valve(3);
        let one = listing(&["a.json"]);
        let other = listing(&["b.json"]);
        assert_eq!(valve.old(now(), 11, 12, &one), unconfirmed(1, 3));
        assert_eq!(valve.old(now(), 11, 12, &one), unconfirmed(2, 3));
        assert_eq!(valve.old(now(), 11, 12, &other), unconfirmed(1, 3));
        valve.interrupted();
        assert_eq!(valve.old(now(), 11, 12, &other), unconfirmed(1, 3));
    }

    #[test]
    fn changed_contents_of_the_remaining_objects_do_not_restart_the_count() {
        let mut valve = valve(2);
        let mut remaining = listing(&["a.json"]);
        assert_eq!(valve.old(now(), 11, 12, &remaining), unconfirmed(1, 2));
        remaining[0].etag = ETag::of(b"changed");
        assert_eq!(valve.old(now(), 11, 12, &remaining), Verdict::Proceed);
    }

    #[test]
    fn an_empty_listing_is_always_suspicious() {
        let mut valve = valve(2);
        assert_eq!(valve.old(now(), 1, 1, &[]), unconfirmed(1, 2));
        assert_eq!(valve.old(now(), 1, 1, &[]), Verdict::Proceed);
        assert_eq!(
            valve.old(now(), 0, 0, &[]),
            Verdict::Proceed,
            "nothing to delete"
        );
    }

    #[test]
    fn the_operator_may_allow_mass_deletions_whatever_the_record_says() {
        let mut valve = Valve::new(ValveConfig {
            allow_mass_deletion: true,
            ..ValveConfig::default()
        });
        assert_eq!(valve.screen(now(), 100, 100, &[]), Screen::Proceed);
        assert_eq!(
            valve.decide(now(), 100, 100, &[], &record(3, 100)),
            Verdict::Proceed
        );
    }

    #[test]
    fn deletions_within_the_window_add_up_and_older_ones_do_not() {
        let mut valve = valve(2);
        let start = Instant::now();
        let remaining = listing(&["a.json"]);
        // A slow wipe of 40 files, 5 at a time: each step alone is small.
        for step in 0..2 {
            let installed = 40 - 5 * step;
            assert_eq!(valve.old(start, 5, installed, &remaining), Verdict::Proceed);
        }
        // 15 of 40 so far: not more than half.
        assert_eq!(valve.old(start, 5, 30, &remaining), Verdict::Proceed);
        // 25 of 40: held.
        assert_eq!(valve.old(start, 10, 25, &remaining), unconfirmed(1, 2));
        // Once the window has passed, the same step is small again.
        let later = start + WINDOW;
        let mut valve_later = Valve::new(ValveConfig::default());
        for _ in 0..3 {
            assert_eq!(valve_later.old(start, 5, 40, &remaining), Verdict::Proceed);
        }
        assert_eq!(valve_later.old(later, 10, 25, &remaining), Verdict::Proceed);
    }

    #[test]
    fn one_confirmation_means_no_hold_without_a_record() {
        assert_eq!(valve(1).old(now(), 100, 100, &[]), Verdict::Proceed);
    }

    #[test]
    fn a_record_that_agrees_lets_a_mass_deletion_through_on_the_first_poll() {
        let mut valve = valve(10);
        // The last app of a small foundation unbound: the record says 0.
        assert_eq!(
            valve.decide(now(), 1, 1, &[], &record(8, 0)),
            Verdict::Corroborated {
                generation: 8,
                recorded: 0
            }
        );
        // Eleven of twelve gone, and the record says one remains.
        let remaining = listing(&["a.json"]);
        assert_eq!(
            valve.decide(now(), 11, 12, &remaining, &record(9, 1)),
            Verdict::Corroborated {
                generation: 9,
                recorded: 1
            }
        );
    }

    // Time is an argument: the hold is shown to outlast any countdown by moving "now"
    // far ahead, poll after poll, without sleeping.
    #[test]
    fn a_record_that_disagrees_holds_for_as_long_as_it_disagrees() {
        let mut valve = valve(2);
        let start = Instant::now();
        let held = Verdict::Hold(Hold::RecordDisagrees {
            listed: 0,
            recorded: 12,
            generation: 5,
        });
        for poll in 0..1000u64 {
            let at = start + Duration::from_secs(2 * poll);
            assert_eq!(
                valve.decide(at, 12, 12, &[], &record(5, 12)),
                held,
                "poll {poll}"
            );
        }
        // The writers publish that the bucket is empty: the deletion goes through.
        assert!(matches!(
            valve.decide(start, 12, 12, &[], &record(6, 0)),
            Verdict::Corroborated { generation: 6, .. }
        ));
    }

    #[test]
    fn an_unreadable_record_holds_this_poll_and_is_not_a_confirmation() {
        let mut valve = valve(2);
        let unreadable = RecordRead::Unreadable("S3 GetObject: HTTP 500".into());
        assert_eq!(valve.old(now(), 1, 1, &[]), unconfirmed(1, 2));
        assert_eq!(
            valve.decide(now(), 1, 1, &[], &unreadable),
            Verdict::Hold(Hold::RecordUnreadable {
                error: "S3 GetObject: HTTP 500".into()
            })
        );
        // The countdown starts again: the unreadable poll did not count.
        assert_eq!(valve.old(now(), 1, 1, &[]), unconfirmed(1, 2));
    }

    #[test]
    fn an_invalid_record_holds_for_as_long_as_it_stays_invalid() {
        let mut valve = valve(2);
        let invalid = RecordRead::Invalid("the writers' record has format 2".into());
        for _ in 0..20 {
            assert!(matches!(
                valve.decide(now(), 1, 1, &[], &invalid),
                Verdict::Hold(Hold::RecordInvalid { .. })
            ));
        }
    }

    #[test]
    fn a_record_that_vanishes_after_being_seen_holds_instead_of_counting_down() {
        let mut valve = valve(2);
        let remaining = listing(&["a.json"]);
        assert!(matches!(
            valve.decide(now(), 11, 12, &remaining, &record(3, 1)),
            Verdict::Corroborated { .. }
        ));
        for _ in 0..20 {
            assert_eq!(
                valve.old(now(), 1, 1, &[]),
                Verdict::Hold(Hold::RecordVanished)
            );
        }
        // An invalid record is a record seen too.
        let mut valve = super::Valve::new(ValveConfig::default());
        let invalid = RecordRead::Invalid("x".into());
        assert!(matches!(
            valve.decide(now(), 1, 1, &[], &invalid),
            Verdict::Hold(Hold::RecordInvalid { .. })
        ));
        assert_eq!(
            valve.old(now(), 1, 1, &[]),
            Verdict::Hold(Hold::RecordVanished)
        );
    }

    #[test]
    fn only_the_countdown_leaves_the_hold_to_time() {
        assert!(!Hold::Unconfirmed { seen: 1, needed: 2 }.needs_attention());
        assert!(Hold::RecordVanished.needs_attention());
        let hold = Hold::RecordDisagrees {
            listed: 0,
            recorded: 3,
            generation: 4,
        };
        assert!(hold.needs_attention());
        assert!(Hold::REASONS.contains(&hold.reason()));
        let json = serde_json::to_value(&hold).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"reason": "record_disagrees", "listed": 0, "recorded": 3, "generation": 4})
        );
    }
}
