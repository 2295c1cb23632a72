//! The reconcile lease with real updater processes: a `kill -9`'d holder is replaced
//! within seconds, and a holder paused past its lease (`SIGSTOP`) writes nothing when it
//! resumes, although it had planned a write from what it read before the pause.

use std::time::{Duration, Instant};

use gds_store::TargetState;
use reqwest::Method;
use serde_json::json;

use crate::broker::support::{Database, Fixture, WEB_SHOP, on_both_databases};
use crate::harness::Running;
use crate::updater::{bound_fixture, groups, metrics, sim, start_updater, wait_for};

/// No scheduled full pass during a test (besides the one at start): only the fast path,
/// at its default poll (2 s), runs passes.
const NO_SCHEDULE: (&str, &str) = ("UPDATE_TARGETS_SCHEDULE", "0 0 0 1 1 *");

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to `process`.
fn signal(process: &Running, signal: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(process.pid().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} failed");
}

/// Makes the next pass' first Cloud Controller app read wait `delay_ms`, starts an updater
/// and returns it once that pass has sent the read: it holds the reconcile lease.
async fn holder_in_a_slow_pass(f: &Fixture, delay_ms: u64, extra: &[(&str, &str)]) -> Running {
    sim(
        f,
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "delay_ms": delay_ms, "count": 1}),
    )
    .await;
    sim(f, Method::DELETE, "/sim/requests", json!({})).await;
    let holder = start_updater(f, extra);
    wait_for(
        "the first updater's pass to ask for its apps",
        Duration::from_secs(20),
        async || {
            let counts = sim(f, Method::GET, "/sim/requests", serde_json::Value::Null).await;
            counts["by_endpoint"]["GET /v3/apps"].as_u64().unwrap_or(0) >= 1
        },
    )
    .await;
    holder
}

async fn moved_to_inactive(f: &Fixture) -> bool {
    groups(f, TargetState::Active, WEB_SHOP).await.is_none()
        && groups(f, TargetState::Inactive, WEB_SHOP).await.is_some()
}

on_both_databases!(a_killed_lease_holder_is_replaced_by_a_standby_within_seconds);

/// `kill -9` of the updater holding the lease mid-pass: the standby (default lease,
/// default poll) follows a stop made right after the kill. The bound is a correctness
/// bound with room for a loaded machine (lease 10 s + one 2 s poll + the pass); the
/// measured time is printed (docs/BENCHMARKS.md).
async fn a_killed_lease_holder_is_replaced_by_a_standby_within_seconds(db: Database) {
    let f = bound_fixture(db, &[WEB_SHOP]).await;
    let holder = holder_in_a_slow_pass(&f, 60_000, &[NO_SCHEDULE]).await;
    let standby = start_updater(&f, &[NO_SCHEDULE]);
    let http = reqwest::Client::new();
    // The standby tried the lease at start and found it held.
    wait_for(
        "the standby to find the lease held",
        Duration::from_secs(20),
        async || {
            metrics(&http, &standby)
                .await
                .contains("gds_updater_passes_total{outcome=\"busy\",scope=\"any\"}")
        },
    )
    .await;

    signal(&holder, "KILL");
    let killed = Instant::now();
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/stop"),
        json!({}),
    )
    .await;
    wait_for(
        "the standby to take over and move the stopped app",
        Duration::from_secs(30),
        async || moved_to_inactive(&f).await,
    )
    .await;
    let took = killed.elapsed();
    eprintln!("takeover ({db:?}): kill -9 of the holder to the standby's pass applied: {took:?}");
    let text = metrics(&http, &standby).await;
    assert!(
        text.contains("gds_updater_actions_total{kind=\"deactivate\",outcome=\"applied\"} 1"),
        "the standby did not apply the move:\n{text}"
    );
    drop(holder);
}

/// `SIGSTOP` of the holder while it waits for the Cloud Controller: it has read the app
/// started and scaled to 3, so it plans to write `active/`. Meanwhile the app is stopped,
/// the lease expires and the other updater moves the file to `inactive/`. On `SIGCONT`
/// the old holder gets its (stale) answer and must write nothing: a write would put the
/// stopped app back in `active/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_that_lost_its_lease_writes_nothing_when_it_resumes() {
    let f = bound_fixture(Database::Sqlite, &[WEB_SHOP]).await;
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/scale"),
        json!({"instances": 3}),
    )
    .await;
    // The lease is set as the default explicitly, so that this test shows the fencing
    // (not the lease's length) on a build with another default. The stale answer must
    // not time out while the process is stopped.
    let lease = ("UPDATER_LEASE_SECONDS", "10");
    let old = holder_in_a_slow_pass(
        &f,
        2_000,
        &[NO_SCHEDULE, lease, ("CF_REQUEST_TIMEOUT_SECONDS", "300")],
    )
    .await;
    signal(&old, "STOP");
    // The simulator answers the paused request 2 s after it came (with the app started);
    // then the app stops.
    tokio::time::sleep(Duration::from_secs(4)).await;
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/stop"),
        json!({}),
    )
    .await;
    let new = start_updater(&f, &[NO_SCHEDULE, lease]);
    wait_for(
        "the new holder to take over and move the stopped app",
        Duration::from_secs(40),
        async || moved_to_inactive(&f).await,
    )
    .await;
    assert_eq!(
        groups(&f, TargetState::Inactive, WEB_SHOP)
            .await
            .map(|g| g.len()),
        Some(3)
    );

    signal(&old, "CONT");
    let http = reqwest::Client::new();
    // The old holder's pass has ended once it recorded its duration.
    wait_for(
        "the old holder's pass to end",
        Duration::from_secs(30),
        async || {
            metrics(&http, &old)
                .await
                .contains("gds_updater_pass_duration_seconds_count")
        },
    )
    .await;
    let text = metrics(&http, &old).await;
    assert!(
        moved_to_inactive(&f).await,
        "the paused holder wrote after losing its lease: active/ is back:\n{text}"
    );
    for expected in [
        "gds_updater_pass_failures_total{kind=\"lease_lost\"} 1",
        "gds_updater_actions_total{kind=\"write\",outcome=\"abandoned\"} 1",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
    assert!(
        !text.contains("outcome=\"applied\""),
        "the paused holder applied something:\n{text}"
    );
    assert!(
        text.contains("outcome=\"failed\""),
        "the abandoned pass was not counted as failed:\n{text}"
    );
    drop(new);
}

/// Two `POST /update-targets` at once on one broker: the passes of one process take the
/// lease as different holders, so the second finds it held instead of running alongside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_update_targets_at_once_on_one_broker_run_one_pass() {
    let f = bound_fixture(Database::Sqlite, &[WEB_SHOP]).await;
    // The first pass waits 3 s for the Cloud Controller, holding the lease.
    sim(
        &f,
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "delay_ms": 3000, "count": 1}),
    )
    .await;
    sim(&f, Method::DELETE, "/sim/requests", json!({})).await;
    let post = || async {
        let response = f
            .http
            .post(format!("{}/update-targets", f.broker.base_url))
            .basic_auth(
                crate::broker::support::USERNAME,
                Some(crate::broker::support::PASSWORD),
            )
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = response.json().await.unwrap();
        body["description"].as_str().unwrap_or_default().to_owned()
    };
    let first = post();
    let second = async {
        wait_for(
            "the first pass to ask for its apps",
            Duration::from_secs(20),
            async || {
                let counts = sim(&f, Method::GET, "/sim/requests", serde_json::Value::Null).await;
                counts["by_endpoint"]["GET /v3/apps"].as_u64().unwrap_or(0) >= 1
            },
        )
        .await;
        post().await
    };
    let (first, second) = tokio::join!(first, second);
    assert!(first.starts_with("full pass succeeded"), "{first}");
    assert_eq!(second, "another updater is reconciling now");
}
