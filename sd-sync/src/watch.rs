//! Whether a poll lists the prefix: only when the writers' record says something changed.
//!
//! Listing a prefix costs one `ListObjectsV2` per 1,000 objects; polling every couple of
//! seconds, 10,000 targets cost ~20,000 LISTs an hour per node. The writers (broker,
//! updater) publish their record (`record/active.json`, [`gds_store::record`]) after every
//! change, *after* the change is in the bucket. So each poll first reads the record with
//! one conditional GET (`If-None-Match: <ETag of the version seen before the last
//! listing>`): `304` means no writer published since that listing, and the poll lists
//! nothing. A new version (or one that appeared) means a change the last listing may not
//! have seen: the poll lists. Because the record is read *before* the listing, a listing
//! prompted by a new version always sees the change that version announces.
//!
//! Writes that bypass the record (an old writer, a hand `aws s3 cp`) are caught by the
//! safety listing, every `--safety-listing-interval` (10 minutes by default). When in
//! doubt, list: without a record (older writers: every poll lists, as before the record
//! existed), when the record cannot be read (never a reason to delete: the listing and
//! the safety valve decide that, as always), when the prefix locates no record, and while
//! the last sync left work to retry (a failed listing, objects that failed to install,
//! deletions held back or pending).
//!
//! Other per-sync listings (scrape credentials, say) can follow the same [`Decision`]: the
//! broker publishes the record after those changes too. [`crate::mirror::SyncReport`]
//! carries it.

use std::fmt;
use std::time::Duration;

use gds_store::ETag;
use tokio::time::Instant;

use crate::source::{RecordPoll, SourceError};

/// Why a poll lists the prefix; `as_str` is the `reason` label of `sd_sync_listings_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListReason {
    /// No listing has completed since start.
    First,
    /// The writers published a new record version since the last listing (or one
    /// appeared).
    RecordChanged,
    /// There is no record (older writers, or it vanished): every poll lists.
    NoRecord,
    /// The record could not be read.
    RecordUnreadable,
    /// The mapping's prefix does not end in `active/`, so it has no record.
    NoRecordKey,
    /// The last sync left something to retry (failed listing or objects, held or
    /// pending deletions).
    Retry,
    /// The safety listing is due (or safety listings are every poll).
    Safety,
}

impl ListReason {
    pub const ALL: [ListReason; 7] = [
        ListReason::First,
        ListReason::RecordChanged,
        ListReason::NoRecord,
        ListReason::RecordUnreadable,
        ListReason::NoRecordKey,
        ListReason::Retry,
        ListReason::Safety,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListReason::First => "first",
            ListReason::RecordChanged => "record_changed",
            ListReason::NoRecord => "no_record",
            ListReason::RecordUnreadable => "record_unreadable",
            ListReason::NoRecordKey => "no_record_key",
            ListReason::Retry => "retry",
            ListReason::Safety => "safety",
        }
    }
}

impl fmt::Display for ListReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one poll does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing changed since the last complete listing: list nothing; the directory is
    /// current as of this poll.
    Unchanged,
    /// List the prefix; once the listing is complete, tell the watch with
    /// [`Watch::listed`] and `seen`.
    List { reason: ListReason, seen: Seen },
}

/// What the record was when a listing started; remembered once the listing completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Nothing known (no record key, or the read failed and nothing was known before).
    Nothing,
    /// There was no record.
    Absent,
    /// This version.
    Version(ETag),
}

/// One mapping's change detection.
#[derive(Debug)]
pub struct Watch {
    /// `None`: every poll lists.
    safety_interval: Option<Duration>,
    /// The record as it was before the last complete listing.
    seen: Seen,
    /// When the last complete listing started.
    listed_at: Option<Instant>,
}

impl Watch {
    /// `safety_interval`: the longest time without a listing (`Duration::ZERO`: list on
    /// every poll, the behaviour before the record existed).
    pub fn new(safety_interval: Duration) -> Watch {
        Watch {
            safety_interval: (!safety_interval.is_zero()).then_some(safety_interval),
            seen: Seen::Nothing,
            listed_at: None,
        }
    }

    /// The record version to ask about in the poll's conditional read.
    pub fn known(&self) -> Option<&ETag> {
        match &self.seen {
            Seen::Version(etag) => Some(etag),
            _ => None,
        }
    }

    /// Decides a poll that started at `now`, from what the conditional read said (`None`
    /// when the mapping has no record key, so nothing was read) and whether the last
    /// sync left work to retry.
    pub fn decide(
        &self,
        now: Instant,
        poll: Option<&Result<RecordPoll, SourceError>>,
        retry: bool,
    ) -> Decision {
        let list = |reason, seen| Decision::List { reason, seen };
        let poll = match poll {
            None => return list(ListReason::NoRecordKey, Seen::Nothing),
            // Whatever changed or not, the version known before is no newer than what
            // the listing will see.
            Some(Err(_)) => return list(ListReason::RecordUnreadable, self.seen.clone()),
            Some(Ok(poll)) => poll,
        };
        let seen = match poll {
            RecordPoll::Absent => return list(ListReason::NoRecord, Seen::Absent),
            RecordPoll::Unchanged => self.seen.clone(),
            RecordPoll::Changed { etag, .. } => Seen::Version(etag.clone()),
        };
        if self.listed_at.is_none() {
            return list(ListReason::First, seen);
        }
        if seen != self.seen {
            return list(ListReason::RecordChanged, seen);
        }
        if retry {
            return list(ListReason::Retry, seen);
        }
        let due = match (self.safety_interval, self.listed_at) {
            (Some(interval), Some(at)) => now.saturating_duration_since(at) >= interval,
            _ => true,
        };
        if due {
            return list(ListReason::Safety, seen);
        }
        Decision::Unchanged
    }

    /// A listing that started at `started` with the record `seen` has completed.
    pub fn listed(&mut self, started: Instant, seen: Seen) {
        self.seen = seen;
        self.listed_at = Some(started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gds_store::Bytes;

    fn changed(etag: &str) -> Option<Result<RecordPoll, SourceError>> {
        Some(Ok(RecordPoll::Changed {
            etag: ETag::from_store(etag),
            body: Bytes::from_static(b"{}"),
        }))
    }

    fn unchanged() -> Option<Result<RecordPoll, SourceError>> {
        Some(Ok(RecordPoll::Unchanged))
    }

    fn reason(decision: &Decision) -> Option<ListReason> {
        match decision {
            Decision::Unchanged => None,
            Decision::List { reason, .. } => Some(*reason),
        }
    }

    /// Lists as `decision` says, completing at once.
    fn apply(watch: &mut Watch, now: Instant, decision: Decision) {
        if let Decision::List { seen, .. } = decision {
            watch.listed(now, seen);
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn an_unchanged_record_skips_the_listing_until_the_safety_listing_is_due() {
        let mut watch = Watch::new(10 * MINUTE);
        let start = Instant::now();
        assert_eq!(watch.known(), None);
        let first = watch.decide(start, changed("a").as_ref(), false);
        assert_eq!(reason(&first), Some(ListReason::First));
        apply(&mut watch, start, first);
        assert_eq!(watch.known(), Some(&ETag::from_store("a")));
        for seconds in [2, 60, 599] {
            let now = start + Duration::from_secs(seconds);
            assert_eq!(
                watch.decide(now, unchanged().as_ref(), false),
                Decision::Unchanged
            );
        }
        let now = start + 10 * MINUTE;
        let safety = watch.decide(now, unchanged().as_ref(), false);
        assert_eq!(reason(&safety), Some(ListReason::Safety));
        apply(&mut watch, now, safety);
        let later = now + Duration::from_secs(2);
        assert_eq!(
            watch.decide(later, unchanged().as_ref(), false),
            Decision::Unchanged
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_version_or_a_vanished_record_lists() {
        let mut watch = Watch::new(10 * MINUTE);
        let now = Instant::now();
        let first = watch.decide(now, changed("a").as_ref(), false);
        apply(&mut watch, now, first);
        let next = watch.decide(now, changed("b").as_ref(), false);
        assert_eq!(reason(&next), Some(ListReason::RecordChanged));
        apply(&mut watch, now, next);
        assert_eq!(watch.known(), Some(&ETag::from_store("b")));
        // The same version answered 200 (a store ignoring If-None-Match) is unchanged.
        assert_eq!(
            watch.decide(now, changed("b").as_ref(), false),
            Decision::Unchanged
        );
        // Vanished: every poll lists while there is none.
        for _ in 0..3 {
            let absent = watch.decide(now, Some(&Ok(RecordPoll::Absent)), false);
            assert_eq!(reason(&absent), Some(ListReason::NoRecord));
            apply(&mut watch, now, absent);
        }
        // Appeared again.
        let back = watch.decide(now, changed("b").as_ref(), false);
        assert_eq!(reason(&back), Some(ListReason::RecordChanged));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_record_lists_and_keeps_the_version_known_before() {
        let mut watch = Watch::new(10 * MINUTE);
        let now = Instant::now();
        let first = watch.decide(now, changed("a").as_ref(), false);
        apply(&mut watch, now, first);
        let failed = Some(Err(SourceError("down".into())));
        let decision = watch.decide(now, failed.as_ref(), false);
        assert_eq!(reason(&decision), Some(ListReason::RecordUnreadable));
        apply(&mut watch, now, decision);
        assert_eq!(watch.known(), Some(&ETag::from_store("a")));
        assert_eq!(
            watch.decide(now, unchanged().as_ref(), false),
            Decision::Unchanged
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_listing_is_not_remembered_and_work_to_retry_lists() {
        let mut watch = Watch::new(10 * MINUTE);
        let now = Instant::now();
        // The first listing failed: `listed` was not called.
        let first = watch.decide(now, changed("a").as_ref(), false);
        assert_eq!(reason(&first), Some(ListReason::First));
        let again = watch.decide(now, changed("a").as_ref(), false);
        assert_eq!(reason(&again), Some(ListReason::First));
        apply(&mut watch, now, again);
        let retry = watch.decide(now, unchanged().as_ref(), true);
        assert_eq!(reason(&retry), Some(ListReason::Retry));
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_record_key_or_a_safety_interval_every_poll_lists() {
        let mut watch = Watch::new(Duration::ZERO);
        let now = Instant::now();
        let first = watch.decide(now, changed("a").as_ref(), false);
        apply(&mut watch, now, first);
        let decision = watch.decide(now, unchanged().as_ref(), false);
        assert_eq!(reason(&decision), Some(ListReason::Safety));
        let decision = Watch::new(10 * MINUTE).decide(now, None, false);
        assert_eq!(reason(&decision), Some(ListReason::NoRecordKey));
    }
}
