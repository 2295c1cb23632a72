//! The pacing arithmetic on paused tokio time.

use super::*;

const EPOCH: u64 = 1_800_000_000;

fn limited_at_2000_an_hour() -> Budget {
    let budget = Budget::new(DEFAULT_BACKGROUND_SHARE);
    budget.observe_info(Some(PlatformLimits {
        enabled: true,
        general_limit: Some(2000),
        window: Some(Duration::from_secs(3600)),
    }));
    budget
}

fn secs_until(at: Instant) -> f64 {
    at.saturating_duration_since(Instant::now()).as_secs_f64()
}

#[tokio::test(start_paused = true)]
async fn without_a_limit_nothing_waits() {
    let budget = Budget::new(DEFAULT_BACKGROUND_SHARE);
    for _ in 0..100 {
        budget.debit(Purpose::FastPath);
        budget.debit(Purpose::FullPass);
    }
    assert_eq!(budget.ready_at(Purpose::FastPath), Instant::now());
    assert_eq!(budget.ready_at(Purpose::FullPass), Instant::now());
    assert_eq!(budget.snapshot().limit, None);
}

#[tokio::test(start_paused = true)]
async fn at_2000_an_hour_the_fast_path_polls_every_9_seconds_and_a_full_pass_of_8_every_48() {
    let budget = limited_at_2000_an_hour();
    budget.debit(Purpose::FastPath);
    assert!((secs_until(budget.ready_at(Purpose::FastPath)) - 9.0).abs() < 1e-6);
    for _ in 0..8 {
        budget.debit(Purpose::FullPass);
    }
    assert!((secs_until(budget.ready_at(Purpose::FullPass)) - 48.0).abs() < 1e-6);
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(budget.ready_at(Purpose::FastPath), Instant::now());
    assert!(budget.ready_at(Purpose::FullPass) > Instant::now());
}

/// The updater's idle hour at 10,000 bound apps with the limiter on at 2,000/h: a poll
/// (one request) whenever the fast path may (and at least 2 s apart), a full pass (eight
/// requests) whenever full passes may (and at least a minute apart).
#[tokio::test(start_paused = true)]
async fn an_idle_hour_at_2000_an_hour_stays_under_1000_requests() {
    let budget = limited_at_2000_an_hour();
    let start = Instant::now();
    let hour = start + Duration::from_secs(3600);
    let (mut polls, mut passes) = (0u64, 0u64);
    let mut next_poll = start;
    let mut next_pass = start;
    loop {
        let poll_at = next_poll.max(budget.ready_at(Purpose::FastPath));
        let pass_at = next_pass.max(budget.ready_at(Purpose::FullPass));
        let at = poll_at.min(pass_at);
        if at >= hour {
            break;
        }
        tokio::time::sleep_until(at).await;
        if poll_at <= pass_at {
            budget.debit(Purpose::FastPath);
            polls += 1;
            next_poll = at + Duration::from_secs(2);
        } else {
            for _ in 0..8 {
                budget.debit(Purpose::FullPass);
            }
            passes += 1;
            next_pass = at + Duration::from_secs(60);
        }
    }
    assert_eq!(polls, 400, "a poll every 9 s");
    assert_eq!(passes, 60, "the schedule's minute is the slower");
    assert_eq!(polls + 8 * passes, 880);
}

#[tokio::test(start_paused = true)]
async fn background_slows_as_remaining_falls_and_stops_at_the_binds_reserve() {
    let budget = limited_at_2000_an_hour();
    let half_hour = EPOCH + 1800;
    // Plenty left: 1,000 to spend on half an hour's share of 500.
    budget.observe(200, Some(2000), Some(1000), Some(half_hour), EPOCH);
    budget.debit(Purpose::FastPath);
    assert!((secs_until(budget.ready_at(Purpose::FastPath)) - 9.0).abs() < 1e-6);
    // Someone else used the identity: 600 left, 400 of them the binds' reserve, so
    // background may spend 200 where it would spend 500: 40 % of its rate.
    budget.observe(200, Some(2000), Some(600), Some(half_hour), EPOCH);
    assert!((secs_until(budget.ready_at(Purpose::FastPath)) - 9.0 / 0.4).abs() < 1e-3);
    // At the reserve: background waits for the reset, binds do not.
    budget.observe(200, Some(2000), Some(400), Some(half_hour), EPOCH);
    assert!((secs_until(budget.ready_at(Purpose::FastPath)) - 1800.0).abs() < 1e-6);
    assert!((secs_until(budget.ready_at(Purpose::FullPass)) - 1800.0).abs() < 1e-6);
    assert_eq!(budget.ready_at(Purpose::Bind), Instant::now());
    // After the reset, the full rate again.
    tokio::time::advance(Duration::from_secs(1800)).await;
    assert_eq!(budget.ready_at(Purpose::FastPath), Instant::now());
    assert_eq!(budget.remaining(), None);
}

#[tokio::test(start_paused = true)]
async fn a_bind_never_waits_even_with_nothing_remaining() {
    let budget = limited_at_2000_an_hour();
    budget.observe(200, Some(2000), Some(0), Some(EPOCH + 60), EPOCH);
    for _ in 0..10 {
        budget.debit(Purpose::Bind);
    }
    assert_eq!(budget.ready_at(Purpose::Bind), Instant::now());
    assert!(budget.ready_at(Purpose::FastPath) > Instant::now());
}

#[tokio::test(start_paused = true)]
async fn an_exempt_identity_is_not_paced_though_the_limiter_is_on() {
    let budget = limited_at_2000_an_hour();
    assert!(
        budget.snapshot().limit.is_some(),
        "before any answer: /v3/info"
    );
    // Admin tokens get answers without X-RateLimit-* headers.
    budget.observe(200, None, None, None, EPOCH);
    budget.debit(Purpose::FastPath);
    assert_eq!(budget.ready_at(Purpose::FastPath), Instant::now());
    assert_eq!(budget.snapshot().limit, None);
    // A router's 502 or an nginx 429 without headers says nothing either way.
    budget.observe(200, Some(2000), Some(2000), Some(EPOCH + 60), EPOCH);
    budget.observe(502, None, None, None, EPOCH);
    budget.observe(429, None, None, None, EPOCH);
    assert!(budget.snapshot().limit.is_some());
}

#[tokio::test(start_paused = true)]
async fn an_enabled_limiter_without_a_stated_limit_is_cfs_2000_an_hour() {
    let budget = Budget::new(DEFAULT_BACKGROUND_SHARE);
    budget.observe_info(Some(PlatformLimits {
        enabled: true,
        general_limit: None,
        window: None,
    }));
    assert_eq!(
        budget.snapshot().limit,
        Some(Limit {
            requests: DEFAULT_LIMIT,
            window: DEFAULT_WINDOW
        })
    );
    // Headers without /v3/info: their limit, CF's window.
    let budget = Budget::new(DEFAULT_BACKGROUND_SHARE);
    budget.observe(200, Some(60), Some(50), Some(EPOCH + 20), EPOCH);
    assert_eq!(
        budget.snapshot().limit,
        Some(Limit {
            requests: 60,
            window: DEFAULT_WINDOW
        })
    );
}

#[tokio::test(start_paused = true)]
async fn a_disabled_limiter_or_no_info_paces_nothing_and_info_is_read_again_later() {
    let budget = Budget::new(DEFAULT_BACKGROUND_SHARE);
    assert!(budget.info_due());
    budget.observe_info(Some(PlatformLimits {
        enabled: false,
        general_limit: None,
        window: None,
    }));
    assert!(!budget.info_due());
    assert_eq!(budget.snapshot().limit, None);
    tokio::time::advance(INFO_REFRESH).await;
    assert!(budget.info_due());
}

#[tokio::test(start_paused = true)]
async fn a_larger_share_paces_less() {
    let budget = Budget::new(1.0);
    budget.observe_info(Some(PlatformLimits {
        enabled: true,
        general_limit: Some(2000),
        window: Some(Duration::from_secs(3600)),
    }));
    budget.debit(Purpose::FastPath);
    assert!((secs_until(budget.ready_at(Purpose::FastPath)) - 4.5).abs() < 1e-6);
}

#[tokio::test(start_paused = true)]
async fn a_scope_sets_the_purpose_of_the_requests_inside() {
    assert_eq!(Purpose::current(), Purpose::Other);
    let inside = Purpose::FastPath.scope(async { Purpose::current() }).await;
    assert_eq!(inside, Purpose::FastPath);
}
