//! Cloud Controller requests inside the platform's rate limit (issue 15): the real broker
//! and updater against the simulator with its rate limiter on. They use the
//! client-credentials identity (a global auditor, limited) unless a test says admin
//! (exempt, as on a real Cloud Controller). Counts are the simulator's: the limiter's
//! own 429s (`rate_limited`) and the requests per endpoint.

use std::time::Duration;

use gds_store::TargetState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::broker::support::{API_APP, BATCH_WORKER, Database, Fixture, Options, WEB_SHOP};
use crate::harness::Running;
use crate::updater::{groups, metrics, start_updater, wait_for};

const INSTANCE: &str = "budget-si";

/// The simulator's client (`cloud_controller.global_auditor`) instead of the admin user.
const AS_CLIENT: [(&str, &str); 4] = [
    ("UAA_USERNAME", ""),
    ("UAA_PASSWORD", ""),
    ("UAA_CLIENT_ID", "gds-prometheus"),
    ("UAA_CLIENT_SECRET", "gds-prometheus-secret"),
];

/// A broker next to a simulator started with `sim_args` (besides `--demo`), using the
/// client identity unless `admin`; one instance with `WEB_SHOP` and `API_APP` bound.
async fn fixture(sim_args: &[&str], admin: bool) -> Fixture {
    let mut args = vec!["--demo".to_owned()];
    args.extend(sim_args.iter().map(|a| (*a).to_owned()));
    let env = if admin { &[][..] } else { &AS_CLIENT[..] };
    let f = Fixture::start_with(
        Database::Sqlite,
        Options {
            sim_args: args,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        },
    )
    .await;
    let (status, _) = f.provision(INSTANCE).await;
    assert_eq!(status, StatusCode::CREATED);
    for (i, app) in [WEB_SHOP, API_APP].iter().enumerate() {
        let (status, body) = f
            .bind(INSTANCE, &format!("binding-{i}"), app, Value::Null)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    f
}

fn updater(f: &Fixture, admin: bool, extra: &[(&str, &str)]) -> Running {
    let mut env: Vec<(&str, &str)> = if admin {
        Vec::new()
    } else {
        AS_CLIENT.to_vec()
    };
    env.extend_from_slice(extra);
    start_updater(f, &env)
}

async fn sim_requests(f: &Fixture) -> Value {
    f.sim_control(Method::GET, "/sim/requests", json!({})).await
}

fn count(requests: &Value, endpoint: &str) -> u64 {
    requests["by_endpoint"][endpoint].as_u64().unwrap_or(0)
}

async fn first_full_pass(http: &reqwest::Client, updater: &Running) {
    wait_for("the first full pass", Duration::from_secs(30), async || {
        metrics(http, updater)
            .await
            .contains("gds_updater_passes_total{outcome=\"ok\",scope=\"full\"}")
    })
    .await;
}

/// 30 requests per 20 s per identity; the updater asked for a full pass every second and
/// a poll every second, which unpaced would be some 80 requests per window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updater_and_broker_stay_under_the_rate_limit_idle_and_following_changes_and_a_bind_in_a_burst_succeeds()
 {
    let f = fixture(&["--rate-limit", "30", "--rate-limit-window", "20"], false).await;
    let http = reqwest::Client::new();
    let updater = updater(
        &f,
        false,
        &[
            ("UPDATE_TARGETS_RATE_SECONDS", "1"),
            ("AUDIT_EVENTS_POLL_SECONDS", "1"),
        ],
    );
    first_full_pass(&http, &updater).await;

    // Idle, a window and a quarter.
    tokio::time::sleep(Duration::from_secs(25)).await;
    let idle = sim_requests(&f).await;
    assert_eq!(idle["rate_limited"], 0, "{idle}");
    let polls = count(&idle, "GET /v3/audit_events");
    assert!(
        (3..=15).contains(&polls),
        "polls paced to one per ~3.3 s: {idle}"
    );
    assert!(count(&idle, "GET /v3/apps") >= 2, "full passes ran: {idle}");
    assert!(count(&idle, "GET /v3/info") >= 1, "{idle}");
    let text = metrics(&http, &updater).await;
    for expected in [
        "gds_updater_cf_rate_limit_requests 30",
        "gds_updater_cf_rate_limit_window_seconds 20",
        "gds_updater_cf_requests_by_purpose_total{outcome=\"ok\",purpose=\"fast_path\"}",
        "gds_updater_cf_requests_by_purpose_total{outcome=\"ok\",purpose=\"full_pass\"}",
        "gds_updater_cf_requests_by_purpose_total{outcome=\"ok\",purpose=\"info\"}",
        "gds_updater_cf_background_budget_requests_per_second{purpose=\"fast_path\"}",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(!text.contains("outcome=\"rate_limited\""), "{text}");

    // A burst of changes: a scale every second for ten seconds, with a bind in the middle.
    for instances in 2..=11u32 {
        f.sim_control(
            Method::POST,
            &format!("/sim/apps/{WEB_SHOP}/scale"),
            json!({"instances": instances}),
        )
        .await;
        if instances == 6 {
            let (status, body) = f
                .bind(INSTANCE, "binding-burst", BATCH_WORKER, Value::Null)
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    wait_for(
        "the last scale in the bucket",
        Duration::from_secs(30),
        async || {
            groups(&f, TargetState::Active, WEB_SHOP)
                .await
                .is_some_and(|g| g.len() == 11)
        },
    )
    .await;
    let after = sim_requests(&f).await;
    assert_eq!(after["rate_limited"], 0, "{after}");
    let broker = http
        .get(format!("{}/metrics", f.broker.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // Three binds of three requests each (and the API root, read once for the UAA link).
    let binds = broker
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "observe_broker_cf_requests_by_purpose_total{outcome=\"ok\",purpose=\"bind\"} ",
            )
        })
        .and_then(|v| v.parse::<u64>().ok());
    assert!(binds.is_some_and(|n| n >= 9), "{broker}");
    assert!(
        broker.contains("observe_broker_cf_rate_limit_requests 30"),
        "{broker}"
    );
    assert!(!broker.contains("outcome=\"rate_limited\""), "{broker}");
}

/// How long the poll-cadence tests count: long enough that a slow poll on a loaded
/// machine cannot make a 2 s cadence look like a 9 s one (10 polls against 2 or 3).
const CADENCE_WINDOW: Duration = Duration::from_secs(20);

/// Polls counted at the simulator over [`CADENCE_WINDOW`] after the first full pass.
async fn polls_in_window(sim_args: &[&str], admin: bool) -> u64 {
    let f = fixture(sim_args, admin).await;
    let http = reqwest::Client::new();
    let updater = updater(&f, admin, &[("UPDATE_TARGETS_SCHEDULE", "0 0 0 1 1 *")]);
    first_full_pass(&http, &updater).await;
    f.sim_control(Method::DELETE, "/sim/requests", json!({}))
        .await;
    tokio::time::sleep(CADENCE_WINDOW).await;
    let requests = sim_requests(&f).await;
    assert_eq!(requests["rate_limited"], 0, "{requests}");
    count(&requests, "GET /v3/audit_events")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_limiter_off_the_fast_path_still_polls_every_two_seconds() {
    let polls = polls_in_window(&[], false).await;
    assert!((7..=11).contains(&polls), "{polls} polls in 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exempt_admin_identity_polls_every_two_seconds_though_the_limiter_is_on() {
    let polls = polls_in_window(&["--rate-limit", "2000"], true).await;
    assert!((7..=11).contains(&polls), "{polls} polls in 20 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_2000_requests_an_hour_the_fast_path_polls_every_nine_seconds() {
    let polls = polls_in_window(&["--rate-limit", "2000"], false).await;
    assert!((1..=3).contains(&polls), "{polls} polls in 20 s");
}
