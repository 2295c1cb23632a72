//! The request budget: how many Cloud Controller requests background work may make, from
//! what the platform says about its rate limiter (reference/cf-platform.md section 3).
//!
//! The Cloud Controller's rate limiter is off by default. When on, each user or client has
//! `general_limit` requests (2,000 unless stated) per `reset_interval_in_minutes` (60),
//! counted across every process that uses the identity (the broker and the updater
//! together); admin tokens are exempt. What we learn of it:
//! - `GET /v3/info` `rate_limits` (read before the first background request, and again
//!   every [`INFO_REFRESH`]): on or off, the limit, the window.
//! - `X-RateLimit-Limit`, `-Remaining`, `-Reset` on every limited response. Remaining is
//!   the platform's estimate for the identity as a whole, in 10 % steps. An answer without
//!   them means no limit applies to us (the limiter is off, or our identity is exempt).
//!
//! The policy:
//! - A bind's look-up ([`Purpose::Bind`]) never waits on the budget.
//! - Background work, the fast path and full passes, is paced to a share of the limit
//!   (`CF_BACKGROUND_SHARE`, default [`DEFAULT_BACKGROUND_SHARE`]): the fast path gets
//!   [`FAST_PATH_PART`] of that share, full passes the rest. Each purpose owes the requests
//!   it made and pays them back at its rate; a round (a poll, a pass) starts only once
//!   its purpose owes nothing ([`Budget::ready_at`]), and is never held up once started.
//!   Over any period T a purpose makes at most `rate × T` plus one round's requests.
//! - As Remaining falls, background slows first: its rates are scaled by what Remaining
//!   above [`BIND_RESERVE`] of the limit leaves until the reset, against what background
//!   would spend by then; at or below the reserve, background waits for the reset.
//! - When no limit applies, nothing is paced: today's cadence.
//!
//! At 2,000 requests an hour and the default share, background has 1,000 an hour: the
//! fast path 400 (a poll every 9 s), full passes 600 (a pass of up to 10 requests every
//! minute), and binds keep at least half the limit.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// CF's `general_limit` when the limiter is on but the limit is not stated.
pub const DEFAULT_LIMIT: u64 = 2000;
/// CF's `reset_interval_in_minutes` when not stated.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
/// `CF_BACKGROUND_SHARE` unless set: half the limit for background work, the other half
/// for binds (three requests each) and anything else using the same identity.
pub const DEFAULT_BACKGROUND_SHARE: f64 = 0.5;
/// The fast path's part of the background share; full passes get the rest.
pub const FAST_PATH_PART: f64 = 0.4;
/// The part of the limit background work leaves to binds: it stops when Remaining
/// reads this much or less (Remaining moves in 10 % steps and reads low).
pub const BIND_RESERVE: f64 = 0.2;
/// How often `GET /v3/info` is read again (six requests an hour).
pub const INFO_REFRESH: Duration = Duration::from_secs(600);

/// Why a request is made: what it is counted as, and whether it is paced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Purpose {
    /// The broker's look-up of one app on bind: never waits on the budget.
    Bind,
    /// A full reconcile pass (and the broker's `POST /update-targets`).
    FullPass,
    /// The audit-event poll and the scoped pass over the apps it names.
    FastPath,
    /// `GET /v3/info`, the platform's rate limits.
    Info,
    /// Anything else (tools, `--import-bindings`): paced with full passes.
    Other,
}

tokio::task_local! {
    static PURPOSE: Purpose;
}

impl Purpose {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Bind => "bind",
            Self::FullPass => "full_pass",
            Self::FastPath => "fast_path",
            Self::Info => "info",
            Self::Other => "other",
        }
    }

    /// Runs `work` with its Cloud Controller requests made for this purpose.
    pub async fn scope<F: Future>(self, work: F) -> F::Output {
        PURPOSE.scope(self, work).await
    }

    /// The purpose of the task at hand ([`Purpose::Other`] outside any scope).
    pub fn current() -> Purpose {
        PURPOSE.try_with(|p| *p).unwrap_or(Purpose::Other)
    }

    /// Paced by the budget.
    pub fn is_background(self) -> bool {
        matches!(self, Self::FullPass | Self::FastPath | Self::Other)
    }

    /// Which debt it runs up (fast path, or full passes and the rest).
    fn slot(self) -> usize {
        usize::from(self != Self::FastPath)
    }

    fn part(self) -> f64 {
        if self == Self::FastPath {
            FAST_PATH_PART
        } else {
            1.0 - FAST_PATH_PART
        }
    }
}

/// `GET /v3/info` `rate_limits`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PlatformLimits {
    pub enabled: bool,
    pub general_limit: Option<u64>,
    pub window: Option<Duration>,
}

/// The limit that applies to our identity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    /// Requests per window.
    pub requests: u64,
    pub window: Duration,
}

/// What the budget knows, for metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetSnapshot {
    /// `None`: no limit applies (or none is known yet).
    pub limit: Option<Limit>,
    /// The last `X-RateLimit-Remaining`, while its window lasts.
    pub remaining: Option<u64>,
    /// Requests per second each background purpose may make now (`None`: unpaced).
    pub fast_path_rate: Option<f64>,
    pub full_pass_rate: Option<f64>,
}

/// What the last answer from the Cloud Controller said about the limiter.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Seen {
    Nothing,
    /// No `X-RateLimit-*`: the limiter is off or our identity is exempt.
    Unlimited,
    Limited {
        limit: u64,
        remaining: u64,
        reset_at: Option<Instant>,
    },
}

#[derive(Debug)]
struct State {
    info: Option<PlatformLimits>,
    info_read_at: Option<Instant>,
    seen: Seen,
    /// Requests owed by the fast path (0) and by full passes (1).
    debt: [f64; 2],
    settled_at: Instant,
}

/// The budget of one process, shared by every caller of its client.
#[derive(Debug)]
pub struct Budget {
    share: f64,
    state: Mutex<State>,
}

impl Budget {
    /// `share`: the part of the platform's limit background work may use, in (0, 1].
    pub fn new(share: f64) -> Self {
        Self {
            share: share.clamp(0.01, 1.0),
            state: Mutex::new(State {
                info: None,
                info_read_at: None,
                seen: Seen::Nothing,
                debt: [0.0; 2],
                settled_at: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `GET /v3/info` is due (never read, or read [`INFO_REFRESH`] ago).
    pub fn info_due(&self) -> bool {
        self.lock()
            .info_read_at
            .is_none_or(|at| at.elapsed() >= INFO_REFRESH)
    }

    /// `GET /v3/info` was read (`Some`) or could not be (`None`: tried again later).
    pub fn observe_info(&self, limits: Option<PlatformLimits>) {
        let now = Instant::now();
        let mut st = self.lock();
        self.settle(&mut st, now);
        let before = self.limit_of(&st);
        st.info_read_at = Some(now);
        if limits.is_some() {
            st.info = limits;
        }
        self.log_change(before, &st);
    }

    /// An answer's status and rate-limit headers (`X-RateLimit-Limit`, `-Remaining`,
    /// `-Reset` in epoch seconds; `now_epoch` is the wall clock's).
    pub fn observe(
        &self,
        status: u16,
        limit: Option<u64>,
        remaining: Option<u64>,
        reset_epoch: Option<u64>,
        now_epoch: u64,
    ) {
        let now = Instant::now();
        let mut st = self.lock();
        self.settle(&mut st, now);
        let before = self.limit_of(&st);
        if limit.is_some() || remaining.is_some() {
            let limit = limit
                .or(match st.seen {
                    Seen::Limited { limit, .. } => Some(limit),
                    _ => None,
                })
                .or(st.info.and_then(|i| i.general_limit))
                .unwrap_or(DEFAULT_LIMIT);
            st.seen = Seen::Limited {
                limit,
                remaining: remaining.unwrap_or(limit),
                reset_at: reset_epoch
                    .map(|r| now + Duration::from_secs(r.saturating_sub(now_epoch).max(1))),
            };
        } else if (200..500).contains(&status) && status != 401 && status != 429 {
            // Answered by the Cloud Controller itself without rate-limit headers (not a
            // router's or nginx's error, nor a rejected token, which the limiter never saw).
            st.seen = Seen::Unlimited;
        }
        self.log_change(before, &st);
    }

    /// A request of `purpose` is being sent: background purposes owe one more.
    pub fn debit(&self, purpose: Purpose) {
        if !purpose.is_background() {
            return;
        }
        let now = Instant::now();
        let mut st = self.lock();
        self.settle(&mut st, now);
        if self.limit_of(&st).is_some() {
            st.debt[purpose.slot()] += 1.0;
        }
    }

    /// The last `X-RateLimit-Remaining`, while its window lasts.
    pub fn remaining(&self) -> Option<u64> {
        remaining_of(&self.lock(), Instant::now())
    }

    /// When the next round of `purpose` may start: now for binds, when no limit applies,
    /// or when the purpose owes nothing; otherwise once its debt is paid back, or at the
    /// reset when Remaining is down to the binds' reserve.
    pub fn ready_at(&self, purpose: Purpose) -> Instant {
        let now = Instant::now();
        if !purpose.is_background() {
            return now;
        }
        let mut st = self.lock();
        self.settle(&mut st, now);
        let Some(limit) = self.limit_of(&st) else {
            return now;
        };
        let debt = st.debt[purpose.slot()];
        let factor = self.factor(&st, limit, now);
        if factor <= 0.0
            && let Seen::Limited {
                reset_at: Some(reset),
                ..
            } = st.seen
        {
            return reset.max(now);
        }
        if debt <= 0.0 {
            return now;
        }
        let rate = self.nominal_rate(limit, purpose) * factor.max(f64::EPSILON);
        now + Duration::from_secs_f64((debt / rate).min(limit.window.as_secs_f64()))
    }

    /// Waits until [`Budget::ready_at`] `purpose` (again after each wait: what the
    /// platform said meanwhile counts).
    pub async fn wait_for(&self, purpose: Purpose) {
        loop {
            let at = self.ready_at(purpose);
            if at <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }

    pub fn snapshot(&self) -> BudgetSnapshot {
        let now = Instant::now();
        let st = self.lock();
        let limit = self.limit_of(&st);
        let rate = |purpose| limit.map(|l| self.rate(&st, l, purpose, now));
        BudgetSnapshot {
            limit,
            remaining: remaining_of(&st, now),
            fast_path_rate: rate(Purpose::FastPath),
            full_pass_rate: rate(Purpose::FullPass),
        }
    }

    /// The limit that applies: the headers' when the last answer had them; none when it
    /// had none; before any answer, what `/v3/info` says.
    fn limit_of(&self, st: &State) -> Option<Limit> {
        let window = st
            .info
            .and_then(|i| i.window)
            .filter(|w| !w.is_zero())
            .unwrap_or(DEFAULT_WINDOW);
        match st.seen {
            Seen::Unlimited => None,
            Seen::Limited { limit, .. } => Some(Limit {
                requests: limit.max(1),
                window,
            }),
            Seen::Nothing => st.info.filter(|i| i.enabled).map(|i| Limit {
                requests: i.general_limit.unwrap_or(DEFAULT_LIMIT).max(1),
                window,
            }),
        }
    }

    /// Requests per second `purpose` may make when Remaining is not a concern.
    fn nominal_rate(&self, limit: Limit, purpose: Purpose) -> f64 {
        self.share * purpose.part() * limit.requests as f64 / limit.window.as_secs_f64()
    }

    fn rate(&self, st: &State, limit: Limit, purpose: Purpose, now: Instant) -> f64 {
        self.nominal_rate(limit, purpose) * self.factor(st, limit, now)
    }

    /// 1 while Remaining leaves enough above the binds' reserve for background's share
    /// until the reset; less as it falls; 0 at or below the reserve.
    fn factor(&self, st: &State, limit: Limit, now: Instant) -> f64 {
        let Seen::Limited {
            remaining,
            reset_at: Some(reset),
            ..
        } = st.seen
        else {
            return 1.0;
        };
        if reset <= now {
            return 1.0;
        }
        let limit_f = limit.requests as f64;
        let spare = remaining as f64 - BIND_RESERVE * limit_f;
        if spare <= 0.0 {
            return 0.0;
        }
        let until_reset = (reset - now).as_secs_f64();
        let need = self.share * limit_f * until_reset / limit.window.as_secs_f64();
        (spare / need.max(f64::EPSILON)).min(1.0)
    }

    /// Pays back what each purpose owes for the time since the last settlement.
    fn settle(&self, st: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(st.settled_at).as_secs_f64();
        st.settled_at = now;
        let Some(limit) = self.limit_of(st) else {
            st.debt = [0.0; 2];
            return;
        };
        for purpose in [Purpose::FastPath, Purpose::FullPass] {
            let paid = elapsed * self.rate(st, limit, purpose, now);
            let debt = &mut st.debt[purpose.slot()];
            *debt = (*debt - paid).max(0.0);
        }
    }

    fn log_change(&self, before: Option<Limit>, st: &State) {
        let after = self.limit_of(st);
        if before == after {
            return;
        }
        match after {
            Some(limit) => {
                let every = |purpose| 1.0 / self.nominal_rate(limit, purpose);
                tracing::info!(
                    limit = limit.requests,
                    window_seconds = limit.window.as_secs(),
                    background_share = self.share,
                    fast_path_poll_seconds = every(Purpose::FastPath),
                    full_pass_seconds_per_request = every(Purpose::FullPass),
                    "the Cloud Controller limits our requests: background work is paced"
                );
            }
            None => tracing::info!(
                "no Cloud Controller rate limit applies to us: background work is not paced"
            ),
        }
    }
}

fn remaining_of(st: &State, now: Instant) -> Option<u64> {
    match st.seen {
        Seen::Limited {
            remaining,
            reset_at,
            ..
        } if reset_at.is_none_or(|r| r > now) => Some(remaining),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
