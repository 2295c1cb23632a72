//! The reconcile lease as a pass holds it: taken in the database, renewed in the
//! background, and confirmed before every write the pass makes.
//!
//! **Why passes never overlap.** A pass writes only while it can *confirm* its lease
//! ([`Tenure::confirm`]): the lease is known to last at least `ttl` from the moment the
//! last successful take or renewal was *sent* (the database stamps the expiry on its own
//! clock when the statement runs, which is after it was sent: `gds_db::Db::renew_lease`),
//! and a pass writes only while less than `ttl - margin` has passed since then, measured
//! locally. Another updater can take the lease only once the database's clock says it
//! expired, so as long as the two clocks run at the same *rate* (offsets do not matter:
//! no two hosts' wall clocks are ever compared), the holder stops writing at least
//! `margin` before anyone else may start. The margin covers the write in flight when the
//! check passed (a store request takes milliseconds; S3 offers no fencing token, so a
//! write delayed by more than the margin after its check is the one case left) and clock
//! rate error.
//!
//! Elapsed time is the larger of the monotonic clock's and the wall clock's: the
//! monotonic clock keeps running while a process is stopped (`SIGSTOP`, a long GC-like
//! pause) but not while its host is suspended, the wall clock may be stepped back; each
//! only ever makes the other one's count *larger*, which is the safe side.
//!
//! A lapse is final: once a confirmation fails or a renewal is refused, the pass stops
//! writing for good, even if the database would still renew (someone may have held the
//! lease in between).

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use gds_db::{Db, DbError};
use tokio::time::Instant;

/// The name of the lease a pass holds.
pub const RECONCILE_LEASE: &str = "reconcile";

/// How long a lease lasts, how often it is renewed, and how much before its end the
/// holder stops writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// The lease's lifetime without renewal (`UPDATER_LEASE_SECONDS`): a crashed
    /// holder's lease is free again after this.
    pub ttl: Duration,
    /// How often the holder renews it: a third of `ttl`, so two renewals in a row may
    /// fail (a database hiccup) before the pass has to stop.
    pub renew_every: Duration,
    /// The holder stops writing this long before the lease could expire: a fifth of
    /// `ttl` (2 s of the default 10 s).
    pub margin: Duration,
}

impl LeaseTiming {
    pub fn for_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            renew_every: ttl / 3,
            margin: ttl / 5,
        }
    }

    /// How long after a take or renewal was sent the holder may still write.
    fn writable_for(&self) -> Duration {
        self.ttl.saturating_sub(self.margin)
    }
}

/// Why a pass can no longer write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LeaseLost {
    /// The database refused a renewal: another updater holds the lease, or it expired.
    #[error("the reconcile lease was taken over or expired")]
    TakenOver,
    /// No renewal succeeded for `ttl - margin` (the database did not answer, or this
    /// process was paused).
    #[error("the reconcile lease was not renewed in time")]
    NotRenewed,
}

impl LeaseLost {
    /// The `reason` logged with an abandoned pass.
    pub fn reason(&self) -> &'static str {
        match self {
            LeaseLost::TakenOver => "taken_over",
            LeaseLost::NotRenewed => "not_renewed",
        }
    }
}

/// A moment on both clocks (see the module's documentation).
#[derive(Clone, Copy, Debug)]
pub struct Stamp {
    monotonic: Instant,
    wall: SystemTime,
}

impl Stamp {
    pub fn now() -> Self {
        Self {
            monotonic: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Time from `self` to `later`: the larger of the two clocks' counts.
    fn until(&self, later: &Stamp) -> Duration {
        let monotonic = later.monotonic.saturating_duration_since(self.monotonic);
        let wall = later.wall.duration_since(self.wall).unwrap_or_default();
        monotonic.max(wall)
    }
}

/// What this process knows of its hold on the lease. Cheap to clone (shared state):
/// the renewal task updates it, the pass confirms it.
#[derive(Clone, Debug)]
pub struct Tenure {
    timing: LeaseTiming,
    state: Arc<Mutex<TenureState>>,
}

#[derive(Debug)]
struct TenureState {
    /// When the last successful take or renewal was sent.
    renewed: Stamp,
    lost: Option<LeaseLost>,
}

impl Tenure {
    /// A lease taken by a statement sent at `sent`.
    pub fn new(sent: Stamp, timing: LeaseTiming) -> Self {
        Self {
            timing,
            state: Arc::new(Mutex::new(TenureState {
                renewed: sent,
                lost: None,
            })),
        }
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TenureState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok(time left)` while the lease is certainly held for longer than the margin; an
    /// error once it may not be (and from then on).
    pub fn confirm(&self) -> Result<Duration, LeaseLost> {
        let mut state = self.state();
        if let Some(lost) = state.lost {
            return Err(lost);
        }
        let elapsed = state.renewed.until(&Stamp::now());
        match self.timing.writable_for().checked_sub(elapsed) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => {
                state.lost = Some(LeaseLost::NotRenewed);
                Err(LeaseLost::NotRenewed)
            }
        }
    }

    /// A renewal sent at `sent` succeeded: the lease lasts `ttl` from then. Ignored once
    /// the lease is lost, and a renewal sent after the previous one's writable time was
    /// over loses it (whatever the database said, this process had stopped knowing).
    pub fn renewed(&self, sent: Stamp) {
        let mut state = self.state();
        if state.lost.is_some() {
            return;
        }
        if state.renewed.until(&sent) >= self.timing.writable_for() {
            state.lost = Some(LeaseLost::NotRenewed);
        } else {
            state.renewed = sent;
        }
    }

    /// The database refused a renewal, or the lease is given up.
    pub fn lose(&self, why: LeaseLost) {
        self.state().lost.get_or_insert(why);
    }

    pub fn is_lost(&self) -> bool {
        self.state().lost.is_some()
    }
}

/// Renews the lease every `renew_every` through `renew` until it is lost (`renew`
/// answers `false`, or no renewal succeeded in time). Database errors are logged and
/// the next renewal tried: [`Tenure::confirm`] fails once they went on too long.
pub async fn keep_renewed<F, Fut>(tenure: Tenure, mut renew: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, DbError>>,
{
    loop {
        tokio::time::sleep(tenure.timing.renew_every).await;
        if tenure.is_lost() {
            return;
        }
        let sent = Stamp::now();
        match renew().await {
            Ok(true) => tenure.renewed(sent),
            Ok(false) => {
                tenure.lose(LeaseLost::TakenOver);
                tracing::warn!(
                    "the reconcile lease was taken over or expired while a pass ran: \
                     the pass writes nothing more"
                );
                return;
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew the reconcile lease"),
        }
    }
}

/// A held reconcile lease, renewed in the background. Call [`Lease::release`];
/// dropping it only stops the renewal (the lease then expires).
pub struct Lease {
    db: Db,
    holder: String,
    tenure: Tenure,
    renew: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("holder", &self.holder)
            .field("tenure", &self.tenure)
            .finish_non_exhaustive()
    }
}

impl Lease {
    /// Takes the reconcile lease for `holder`; `None` when someone else holds it.
    pub async fn acquire(
        db: &Db,
        holder: String,
        timing: LeaseTiming,
    ) -> Result<Option<Lease>, DbError> {
        let sent = Stamp::now();
        if !db
            .try_acquire_lease(RECONCILE_LEASE, &holder, timing.ttl)
            .await?
        {
            return Ok(None);
        }
        let tenure = Tenure::new(sent, timing);
        let renew = {
            let (db, holder) = (db.clone(), holder.clone());
            tokio::spawn(keep_renewed(tenure.clone(), move || {
                let (db, holder) = (db.clone(), holder.clone());
                async move { db.renew_lease(RECONCILE_LEASE, &holder, timing.ttl).await }
            }))
        };
        Ok(Some(Lease {
            db: db.clone(),
            holder,
            tenure,
            renew,
        }))
    }

    /// What the pass confirms before each write.
    pub fn tenure(&self) -> &Tenure {
        &self.tenure
    }

    pub async fn release(self) {
        self.renew.abort();
        if let Err(e) = self.db.release_lease(RECONCILE_LEASE, &self.holder).await {
            tracing::warn!(error = %e, "cannot release the reconcile lease (it will expire)");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    const TTL: Duration = Duration::from_secs(10);

    fn timing() -> LeaseTiming {
        LeaseTiming::for_ttl(TTL)
    }

    /// About `expected` left: the wall clock runs on in paused tests (and counts when it
    /// is ahead of the paused monotonic one), so allow the test's own running time.
    #[track_caller]
    fn assert_left(tenure: &Tenure, expected: Duration) {
        let left = tenure.confirm().expect("the lease is confirmed");
        assert!(
            left <= expected && expected - left < Duration::from_millis(50),
            "{left:?} left, expected {expected:?}"
        );
    }

    #[test]
    fn the_default_lease_is_renewed_every_third_and_stops_writes_two_seconds_early() {
        let t = timing();
        assert_eq!(
            t.renew_every,
            Duration::from_millis(3333) + Duration::from_nanos(333_333)
        );
        assert_eq!(t.margin, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_is_confirmed_until_its_lifetime_less_the_margin() {
        let tenure = Tenure::new(Stamp::now(), timing());
        assert_left(&tenure, Duration::from_secs(8));
        tokio::time::advance(Duration::from_millis(7_900)).await;
        assert_left(&tenure, Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(tenure.confirm(), Err(LeaseLost::NotRenewed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_counts_from_when_it_was_sent_not_when_it_was_answered() {
        let tenure = Tenure::new(Stamp::now(), timing());
        tokio::time::advance(Duration::from_secs(3)).await;
        let sent = Stamp::now();
        // The database takes 4 s to answer.
        tokio::time::advance(Duration::from_secs(4)).await;
        tenure.renewed(sent);
        assert_left(&tenure, Duration::from_secs(4));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(tenure.confirm(), Err(LeaseLost::NotRenewed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lapse_is_final_even_if_a_late_renewal_succeeds() {
        let tenure = Tenure::new(Stamp::now(), timing());
        tokio::time::advance(Duration::from_secs(9)).await;
        // Sent after the writable time was over: no proof the lease was held throughout.
        tenure.renewed(Stamp::now());
        assert_eq!(tenure.confirm(), Err(LeaseLost::NotRenewed));

        let tenure = Tenure::new(Stamp::now(), timing());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(tenure.confirm().is_err());
        tenure.renewed(Stamp::now());
        assert_eq!(tenure.confirm(), Err(LeaseLost::NotRenewed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_renewal_stops_writes_at_once() {
        let tenure = Tenure::new(Stamp::now(), timing());
        let task = tokio::spawn(keep_renewed(tenure.clone(), || async { Ok(false) }));
        tokio::time::advance(timing().renew_every).await;
        task.await.unwrap();
        assert_eq!(tenure.confirm(), Err(LeaseLost::TakenOver));
    }

    #[tokio::test(start_paused = true)]
    async fn regular_renewals_keep_the_lease_for_as_long_as_they_succeed() {
        let tenure = Tenure::new(Stamp::now(), timing());
        let calls = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn(keep_renewed(tenure.clone(), {
            let calls = calls.clone();
            move || {
                let calls = calls.clone();
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Ok(true)
                }
            }
        }));
        for _ in 0..61 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert!(tenure.confirm().is_ok());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 18, "a renewal every 3.33 s");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn failing_renewals_stop_writes_once_the_last_success_is_too_old() {
        let tenure = Tenure::new(Stamp::now(), timing());
        let task = tokio::spawn(keep_renewed(tenure.clone(), || async {
            Err(DbError::Corrupt("the database is down".into()))
        }));
        tokio::time::sleep(Duration::from_millis(7_900)).await;
        assert!(
            tenure.confirm().is_ok(),
            "two failed renewals are tolerated"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(tenure.confirm(), Err(LeaseLost::NotRenewed));
        // The renewal task notices and ends.
        tokio::time::sleep(timing().renew_every).await;
        assert!(task.is_finished());
    }
}
