//! The updater binary, end to end: bindings made through the real broker, lifecycle
//! changes made in the CF simulator, `updater --once` (or the running service) bringing
//! the S3 bucket in line, and simulator faults that must delete nothing.

use std::time::{Duration, Instant};

use gds_store::{Bytes, TargetState, TargetStore};
use gds_targets::AppGuid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::broker::support::{API_APP, Database, Fixture, Options, WEB_SHOP, on_both_databases};
use crate::harness::{Running, bin_path};

pub(crate) mod support;

pub(crate) use support::{Exit, UpdaterEnv, run_updater, start_updater};

const INSTANCE: &str = "updater-si";

/// An app nobody is bound to (the simulator does not know it either).
const STRAY: &str = "5d1e0c3a-7b2f-4c11-9a0e-00000000beef";

/// `updater --once`, which must succeed.
async fn once(f: &Fixture) -> Exit {
    once_with(f, &[]).await
}

/// `updater --once` with `extra` settings, which must succeed.
async fn once_with(f: &Fixture, extra: &[(&str, &str)]) -> Exit {
    let exit = run_updater(f, &["--once"], extra).await;
    assert_eq!(
        exit.code,
        Some(0),
        "updater --once failed:\nstdout: {}\nstderr: {}",
        exit.stdout,
        exit.stderr
    );
    exit
}

pub(crate) async fn bound_fixture(db: Database, apps: &[&str]) -> Fixture {
    let f = Fixture::start(db).await;
    let (status, _) = f.provision(INSTANCE).await;
    assert_eq!(status, StatusCode::CREATED);
    for (i, app) in apps.iter().enumerate() {
        let (status, body) = f
            .bind(INSTANCE, &format!("binding-{i}"), app, Value::Null)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    f
}

pub(crate) async fn sim(f: &Fixture, method: Method, path: &str, body: Value) -> Value {
    f.sim_control(method, path, body).await
}

/// The app's file in `state`, parsed.
pub(crate) async fn groups(f: &Fixture, state: TargetState, app: &str) -> Option<Vec<Value>> {
    f.file(state, app).await.map(|body| {
        serde_json::from_slice::<Vec<Value>>(&body).expect("a target file is a JSON array")
    })
}

async fn active(f: &Fixture, app: &str) -> Vec<Value> {
    groups(f, TargetState::Active, app)
        .await
        .unwrap_or_else(|| panic!("no active/{app}.json"))
}

fn guid(s: &str) -> AppGuid {
    AppGuid::parse(s).expect("a valid guid")
}

on_both_databases!(every_lifecycle_change_reaches_the_bucket);

/// Stop, start, scale, rename, route change, rolling deploy, delete, an unbound leftover
/// file and a missing file, each followed by one `--once` pass.
async fn every_lifecycle_change_reaches_the_bucket(db: Database) {
    let f = bound_fixture(db, &[WEB_SHOP, API_APP]).await;
    let first = once(&f).await;
    assert!(
        first.stdout.contains("full pass succeeded"),
        "{}",
        first.stdout
    );
    assert_eq!(active(&f, WEB_SHOP).await.len(), 2);

    // Stop: the file moves to inactive/.
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/stop"),
        json!({}),
    )
    .await;
    once(&f).await;
    assert_eq!(groups(&f, TargetState::Active, WEB_SHOP).await, None);
    assert!(groups(&f, TargetState::Inactive, WEB_SHOP).await.is_some());

    // Start: back in active/.
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/start"),
        json!({}),
    )
    .await;
    once(&f).await;
    assert_eq!(groups(&f, TargetState::Inactive, WEB_SHOP).await, None);
    assert_eq!(active(&f, WEB_SHOP).await.len(), 2);

    // Scale: rewritten with the new instance count.
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/scale"),
        json!({"instances": 4}),
    )
    .await;
    once(&f).await;
    let file = active(&f, WEB_SHOP).await;
    assert_eq!(file.len(), 4);
    assert_eq!(file[3]["labels"]["instance"], format!("{WEB_SHOP}:3"));

    // Rename: the job label follows.
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/rename"),
        json!({"name": "web-shop-2"}),
    )
    .await;
    once(&f).await;
    assert_eq!(active(&f, WEB_SHOP).await[0]["labels"]["job"], "web-shop-2");

    // Route change: a route on a metrics path wins.
    sim(
        &f,
        Method::POST,
        "/sim/routes",
        json!({"host": "shop-metrics", "path": "/metrics", "app_guid": WEB_SHOP}),
    )
    .await;
    once(&f).await;
    let file = active(&f, WEB_SHOP).await;
    let target = file[0]["targets"][0].as_str().expect("a target");
    assert!(target.starts_with("shop-metrics."), "{target}");
    assert_eq!(file[0]["labels"]["__metrics_path__"], "/metrics");

    // Rolling deploy: two web processes, one consistent file (the larger count).
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{API_APP}/rolling-deploy"),
        json!({"instances": 5}),
    )
    .await;
    once(&f).await;
    let file = active(&f, API_APP).await;
    assert_eq!(file.len(), 5);
    let indexes: Vec<&str> = file
        .iter()
        .map(|g| {
            g["labels"]["__param_cf_app_instance_index"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(indexes, ["0", "1", "2", "3", "4"]);
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{API_APP}/rolling-deploy/finish"),
        json!({}),
    )
    .await;
    once(&f).await;
    assert_eq!(active(&f, API_APP).await.len(), 5);

    // A file nobody is bound to (left by the original broker): removed.
    f.store
        .write_app(TargetState::Active, &guid(STRAY), Bytes::from_static(b"[]"))
        .await
        .unwrap();
    // A bound app's file lost from the bucket: written again.
    f.store
        .remove_app(TargetState::Active, &guid(WEB_SHOP))
        .await
        .unwrap();
    once(&f).await;
    assert_eq!(groups(&f, TargetState::Active, STRAY).await, None);
    assert_eq!(active(&f, WEB_SHOP).await.len(), 4);

    // Deleted in the Cloud Controller (its unbind never reached us): both files go and
    // the binding is marked orphaned.
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{API_APP}/stop"),
        json!({}),
    )
    .await;
    once(&f).await;
    assert!(groups(&f, TargetState::Inactive, API_APP).await.is_some());
    f.store
        .write_app(
            TargetState::Active,
            &guid(API_APP),
            Bytes::from_static(b"[]"),
        )
        .await
        .unwrap();
    sim(
        &f,
        Method::DELETE,
        &format!("/sim/apps/{API_APP}"),
        json!({}),
    )
    .await;
    let exit = once(&f).await;
    assert!(exit.stdout.contains("1 orphaned"), "{}", exit.stdout);
    assert_eq!(groups(&f, TargetState::Active, API_APP).await, None);
    assert_eq!(groups(&f, TargetState::Inactive, API_APP).await, None);
    let orphaned = f.db().await.orphaned_bindings().await.unwrap();
    assert_eq!(orphaned.len(), 1, "{orphaned:?}");
    assert_eq!(orphaned[0].app_guid, guid(API_APP));

    // Nothing left to do: a second pass changes nothing.
    let exit = once(&f).await;
    assert!(
        exit.stdout.contains(": 0 action(s) applied"),
        "{}",
        exit.stdout
    );
    let keys = f.bucket_keys().await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        keys[0].ends_with(&format!("active/{WEB_SHOP}.json")),
        "{keys:?}"
    );
}

/// A world where a complete pass would delete: a stray file and a deleted app's file.
async fn world_with_deletions_pending() -> Fixture {
    let f = bound_fixture(Database::Sqlite, &[WEB_SHOP, API_APP]).await;
    f.store
        .write_app(TargetState::Active, &guid(STRAY), Bytes::from_static(b"[]"))
        .await
        .unwrap();
    sim(
        &f,
        Method::DELETE,
        &format!("/sim/apps/{API_APP}"),
        json!({}),
    )
    .await;
    f
}

async fn assert_nothing_deleted(f: &Fixture) {
    assert!(f.file(TargetState::Active, STRAY).await.is_some());
    assert!(f.file(TargetState::Active, API_APP).await.is_some());
    assert!(f.file(TargetState::Active, WEB_SHOP).await.is_some());
    assert!(f.db().await.orphaned_bindings().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_controller_faults_during_a_pass_delete_nothing_and_fail_the_run() {
    let f = world_with_deletions_pending().await;
    for (name, fault, extra) in [
        (
            "500s",
            json!({"path_prefix": "/v3/processes", "status": 500, "count": 0}),
            vec![],
        ),
        (
            "429s",
            json!({"path_prefix": "/v3/routes", "status": 429, "count": 0, "retry_after": 3600}),
            vec![],
        ),
        (
            "timeouts",
            json!({"path_prefix": "/v3/apps", "delay_ms": 3000, "count": 0}),
            vec![("CF_REQUEST_TIMEOUT_SECONDS", "1")],
        ),
    ] {
        sim(&f, Method::POST, "/sim/faults", fault).await;
        let exit = run_updater(&f, &["--once"], &extra).await;
        sim(&f, Method::DELETE, "/sim/faults", json!({})).await;
        assert_eq!(exit.code, Some(1), "{name}: {}{}", exit.stdout, exit.stderr);
        let last = exit.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("updater: full pass failed") && last.contains("Cloud Controller"),
            "{name}: {last}"
        );
        assert_nothing_deleted(&f).await;
    }
    // Once the Cloud Controller answers, the same pass deletes what it should.
    once(&f).await;
    assert_eq!(f.file(TargetState::Active, STRAY).await, None);
    assert_eq!(f.file(TargetState::Active, API_APP).await, None);
}

/// The writers' record: published by binds, corrected by a full pass when it does not
/// match `active/`, published again after a pass that changes `active/`, and left alone by
/// a pass that changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_publish_the_writers_record_when_active_changes_or_disagrees() {
    let f = bound_fixture(Database::Sqlite, &[WEB_SHOP, API_APP]).await;
    let bound = f.record().await.expect("the binds published no record");
    assert_eq!((bound.writer.as_str(), bound.active_count), ("broker", 2));

    // A record that says less than active/ holds (a writer that could not publish).
    let (_, etag) = f.store.read_record().await.unwrap().unwrap();
    let wrong = gds_store::WritersRecord {
        active_count: 1,
        ..bound.clone()
    };
    f.store
        .replace_record(Bytes::from(wrong.to_bytes()), Some(&etag))
        .await
        .unwrap()
        .expect("the record changed under the test");
    once(&f).await;
    let corrected = f.record().await.unwrap();
    assert_eq!(
        (corrected.writer.as_str(), corrected.active_count),
        ("updater", 2),
        "a full pass did not correct the record"
    );
    assert_eq!(corrected.generation, bound.generation + 1);

    once(&f).await;
    assert_eq!(
        f.record().await.unwrap(),
        corrected,
        "a pass that changed nothing published again"
    );

    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/stop"),
        json!({}),
    )
    .await;
    once(&f).await;
    let stopped = f.record().await.unwrap();
    assert_eq!(stopped.active_count, 1, "{stopped:?}");
    assert_eq!(stopped.generation, corrected.generation + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_prints_the_plan_and_changes_nothing() {
    let f = world_with_deletions_pending().await;
    let exit = run_updater(&f, &["--dry-run"], &[]).await;
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    assert!(
        exit.stdout.starts_with("plan: 2 action(s)"),
        "{}",
        exit.stdout
    );
    assert!(
        exit.stdout
            .contains(&format!("remove     active/{API_APP}.json  (app deleted)")),
        "{}",
        exit.stdout
    );
    assert!(
        exit.stdout
            .contains(&format!("remove     active/{STRAY}.json  (not bound)")),
        "{}",
        exit.stdout
    );
    assert!(
        exit.stdout.contains(&format!("orphaned   {API_APP}")),
        "{}",
        exit.stdout
    );
    assert_nothing_deleted(&f).await;
}

/// The race of the issue: a pass reads the bindings, the broker unbinds while the pass
/// waits for a slow Cloud Controller, and the pass must not write the file back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unbind_during_a_pass_stays_unbound() {
    let f = bound_fixture(Database::Sqlite, &[WEB_SHOP]).await;
    // Make the pass want to rewrite the file.
    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/scale"),
        json!({"instances": 3}),
    )
    .await;
    sim(
        &f,
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "delay_ms": 3000, "count": 1}),
    )
    .await;
    sim(&f, Method::DELETE, "/sim/requests", json!({})).await;
    let pass = {
        let env = UpdaterEnv::of(&f).set("RUST_LOG", "info");
        tokio::spawn(async move { env.run(&["--once"]).await })
    };
    // The pass has read the bindings once it asks the Cloud Controller about the app.
    wait_for(
        "the pass to ask for its apps",
        Duration::from_secs(20),
        async || {
            let counts = sim(&f, Method::GET, "/sim/requests", Value::Null).await;
            counts["by_endpoint"]["GET /v3/apps"].as_u64().unwrap_or(0) >= 1
        },
    )
    .await;
    let (status, body) = f.unbind(INSTANCE, "binding-0").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(f.bucket_keys().await.is_empty());
    let Exit {
        code,
        stdout,
        stderr,
    } = pass.await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("1 superseded by the broker"),
        "{stdout}\n{stderr}"
    );
    assert!(
        f.bucket_keys().await.is_empty(),
        "{:?}",
        f.bucket_keys().await
    );
}

pub(crate) async fn wait_for(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_updater_follows_a_scale_within_seconds_through_audit_events() {
    let f = bound_fixture(Database::Sqlite, &[WEB_SHOP]).await;
    // No scheduled pass during the test (besides the one at start): only the fast path.
    let updater = start_updater(
        &f,
        &[
            ("UPDATE_TARGETS_SCHEDULE", "0 0 0 1 1 *"),
            ("AUDIT_EVENTS_POLL_SECONDS", "1"),
        ],
    );
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{}/health", updater.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // The pass at start has run once the success time is set.
    wait_for("the first full pass", Duration::from_secs(20), async || {
        metrics(&http, &updater)
            .await
            .contains("gds_updater_passes_total{outcome=\"ok\",scope=\"full\"} 1")
    })
    .await;

    sim(
        &f,
        Method::POST,
        &format!("/sim/apps/{WEB_SHOP}/scale"),
        json!({"instances": 5}),
    )
    .await;
    let took = wait_for(
        "the scale in the bucket",
        Duration::from_secs(15),
        async || {
            groups(&f, TargetState::Active, WEB_SHOP)
                .await
                .is_some_and(|g| g.len() == 5)
        },
    )
    .await;
    eprintln!("fast path: scale reached the bucket in {took:?}");

    // The write is observed just after the store answered, the pass's duration when it
    // ends (after it has published the writers' record): wait for both, then the write is
    // the only action since the bind (the broker wrote the file, so the pass at start had
    // nothing to do).
    let audit_event = r#"gds_updater_change_latency_seconds_count{source="audit_event"}"#;
    let apps_pass = r#"gds_updater_passes_total{outcome="ok",scope="apps"}"#;
    wait_for(
        "the change latency and the pass observed",
        Duration::from_secs(5),
        async || {
            let text = metrics(&http, &updater).await;
            sample(&text, audit_event).is_some_and(|n| n >= 1.0)
                && sample(&text, apps_pass).is_some_and(|n| n >= 1.0)
        },
    )
    .await;
    let text = metrics(&http, &updater).await;
    assert_eq!(sample(&text, audit_event), Some(1.0), "{text}");
    assert!(
        text.contains(
            r#"gds_updater_change_latency_seconds_bucket{source="audit_event",le="0.1"}"#
        ),
        "{text}"
    );
    for expected in [
        "gds_updater_last_success_timestamp_seconds",
        "gds_updater_pass_duration_seconds_bucket{scope=\"apps\"",
        "gds_updater_actions_total{kind=\"write\",outcome=\"applied\"}",
        "gds_updater_cf_requests_total{endpoint=\"GET /v3/audit_events\",status=\"200\"}",
        "gds_updater_held_back_deletions 0",
        "gds_updater_orphaned_bindings 0",
        "gds_updater_targets{state=\"active\"} 1",
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

/// The value of the sample `series` (name and labels, as rendered) in a `/metrics` text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

pub(crate) async fn metrics(http: &reqwest::Client, updater: &Running) -> String {
    http.get(format!("{}/metrics", updater.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_setting_stops_the_updater_with_one_line() {
    let f = Fixture::start(Database::Sqlite).await;
    let exit = run_updater(&f, &["--once"], &[("PAAS_DOMAIN", "")]).await;
    assert_eq!(exit.code, Some(2));
    assert_eq!(exit.stderr.trim().lines().count(), 1, "{}", exit.stderr);
    assert!(exit.stderr.contains("PAAS_DOMAIN"), "{}", exit.stderr);
}

/// The command lines of updater and broker come from clap: `--help` lists the flags and
/// every setting read; a wrong flag is one line naming it, exit 2, before any setting is read.
#[test]
fn help_lists_flags_and_settings_and_a_wrong_flag_is_one_line() {
    for (bin, flag) in [("updater", "--import-bindings"), ("broker", "--version")] {
        let run = |arg: &str| {
            std::process::Command::new(bin_path(bin))
                .arg(arg)
                .env_clear()
                .output()
                .expect("the binary runs")
        };
        let help = run("--help");
        let text = String::from_utf8_lossy(&help.stdout);
        assert_eq!(help.status.code(), Some(0), "{bin} --help: {text}");
        assert!(
            text.contains(flag) && text.contains("DATABASE_URL"),
            "{text}"
        );
        let wrong = run("--frobnicate");
        let stderr = String::from_utf8_lossy(&wrong.stderr);
        assert_eq!(wrong.status.code(), Some(2), "{bin}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{bin}: {stderr}");
        assert!(stderr.contains("--frobnicate"), "{bin}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brokers_update_targets_runs_the_same_pass() {
    let f = world_with_deletions_pending().await;
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
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    let summary = body["description"].as_str().unwrap_or_default();
    assert!(summary.starts_with("full pass succeeded"), "{body}");
    assert_eq!(f.file(TargetState::Active, STRAY).await, None);
    assert_eq!(f.file(TargetState::Active, API_APP).await, None);
    assert!(f.file(TargetState::Active, WEB_SHOP).await.is_some());
    assert_eq!(f.db().await.orphaned_bindings().await.unwrap().len(), 1);
}

/// Cloud Controller list pages are offsets: an app deleted from page 1 while page 2 is
/// being asked for shifts page 2's first app out of sight. That app must not be taken
/// for deleted (its file removed, its binding orphaned): the updater looks it up by GUID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_deleted_between_two_pages_costs_no_other_app_its_target() {
    // 400 apps in pages of 200, 301 of them bound: listing everything (3 requests) is
    // cheaper than asking by GUID (4 chunks of 100), so the updater lists.
    const PAGE: usize = 200;
    let f = Fixture::start_with(
        Database::Sqlite,
        Options {
            sim_args: vec![
                "--seed-apps".into(),
                "400".into(),
                "--seed-spaces".into(),
                "20".into(),
            ],
            env: Vec::new(),
        },
    )
    .await;
    let apps = crate::harness::sim_app_guids(&f.sim.base_url).await;
    assert_eq!(apps.len(), 400);
    assert_eq!(f.provision(INSTANCE).await.0, StatusCode::CREATED);
    let (status, body) = f.bind(INSTANCE, "binding-0", &apps[0], Value::Null).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let db = f.db().await;
    let parameters = db.binding("binding-0").await.unwrap().unwrap().parameters;
    for (i, app) in apps.iter().enumerate().take(301).skip(1) {
        let mut tx = db.lock_app(&guid(app)).await.unwrap();
        tx.insert_binding(&gds_db::NewBinding {
            binding_id: format!("binding-{i}"),
            instance_id: INSTANCE.into(),
            parameters: parameters.clone(),
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
    let page_size = [("CF_PAGE_SIZE", "200")];
    once_with(&f, &page_size).await;
    let (deleted, shifted) = (&apps[0], &apps[PAGE]);
    assert!(groups(&f, TargetState::Active, shifted).await.is_some());

    // The count, page 1 and page 2 of the apps each take a second; the app goes while
    // page 2 waits (the simulator counts a request before it delays it).
    sim(
        &f,
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "delay_ms": 1000, "count": 3}),
    )
    .await;
    sim(&f, Method::DELETE, "/sim/requests", json!({})).await;
    let pass = {
        let env = UpdaterEnv::of(&f).with(&page_size).set("RUST_LOG", "info");
        tokio::spawn(async move { env.run(&["--once"]).await })
    };
    wait_for(
        "the pass to ask for page 2 of the apps",
        Duration::from_secs(20),
        async || {
            let counts = sim(&f, Method::GET, "/sim/requests", Value::Null).await;
            counts["by_endpoint"]["GET /v3/apps"].as_u64().unwrap_or(0) >= 3
        },
    )
    .await;
    sim(
        &f,
        Method::DELETE,
        &format!("/sim/apps/{deleted}"),
        Value::Null,
    )
    .await;
    let Exit {
        code,
        stdout,
        stderr,
    } = pass.await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("apps missing from the listing were found by GUID"),
        "the listing did not shift as arranged:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(": 0 action(s) applied"), "{stdout}");
    assert!(groups(&f, TargetState::Active, shifted).await.is_some());
    assert!(db.orphaned_bindings().await.unwrap().is_empty());

    // The next pass sees the deletion itself.
    once_with(&f, &page_size).await;
    assert_eq!(f.file(TargetState::Active, deleted).await, None);
    assert_eq!(f.file(TargetState::Inactive, deleted).await, None);
    let orphaned = db.orphaned_bindings().await.unwrap();
    assert_eq!(orphaned.len(), 1, "{orphaned:?}");
    assert!(groups(&f, TargetState::Active, shifted).await.is_some());
    db.close().await;
}

/// The `gds_updater_*` samples a skipped or made listing moves, read from one scrape
/// that no pass changed while it was taken (two equal scrapes in a row).
async fn listing_counts(http: &reqwest::Client, updater: &Running) -> (f64, f64, f64) {
    let read = |text: &str| {
        let get = |series: &str| sample(text, series).unwrap_or(0.0);
        (
            get(r#"gds_updater_full_listings_total{outcome="listed"}"#),
            get(r#"gds_updater_full_listings_total{outcome="reused"}"#),
            get(r#"gds_updater_s3_requests_total{operation="list"}"#),
        )
    };
    let mut last = read(&metrics(http, updater).await);
    loop {
        let now = read(&metrics(http, updater).await);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Full passes every second: while the writers' record is unchanged they reuse the last
/// listing (no LIST at all), a bind's publication makes the next one list, and the safety
/// cadence lists anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_passes_list_the_bucket_only_when_the_record_changed_or_the_safety_listing_is_due() {
    let f = bound_fixture(Database::Sqlite, &[WEB_SHOP]).await;
    let http = reqwest::Client::new();
    let every_second = [
        ("UPDATE_TARGETS_SCHEDULE", "* * * * * *"),
        ("AUDIT_EVENTS_POLL_SECONDS", "0"),
    ];
    let updater = start_updater(
        &f,
        &[
            every_second[0],
            every_second[1],
            ("UPDATER_SAFETY_LISTING_SECONDS", "3600"),
        ],
    );
    wait_for("a reused listing", Duration::from_secs(30), async || {
        listing_counts(&http, &updater).await.1 >= 1.0
    })
    .await;
    let (listed, reused, lists) = listing_counts(&http, &updater).await;
    wait_for("three more passes", Duration::from_secs(30), async || {
        listing_counts(&http, &updater).await.1 >= reused + 3.0
    })
    .await;
    let (listed_idle, _, lists_idle) = listing_counts(&http, &updater).await;
    assert_eq!(listed_idle, listed, "no full listing while nothing changed");
    assert_eq!(lists_idle, lists, "no LIST request while nothing changed");
    // Every listing is one page of active/, one of inactive/ and one of credentials/.
    assert_eq!(lists, 3.0 * listed);

    // A bind writes a file and publishes: the next full pass lists.
    let (status, body) = f.bind(INSTANCE, "binding-late", API_APP, Value::Null).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    wait_for(
        "a listing after the bind",
        Duration::from_secs(30),
        async || listing_counts(&http, &updater).await.0 > listed,
    )
    .await;
    drop(updater);

    // A short safety cadence lists although nothing changes.
    let updater = start_updater(
        &f,
        &[
            every_second[0],
            every_second[1],
            ("UPDATER_SAFETY_LISTING_SECONDS", "2"),
        ],
    );
    wait_for(
        "safety listings between reused ones",
        Duration::from_secs(40),
        async || {
            let (listed, reused, _) = listing_counts(&http, &updater).await;
            listed >= 3.0 && reused >= 2.0
        },
    )
    .await;
}
