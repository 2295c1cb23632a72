//! What reaches a Prometheus node's directory and `/targets`, and what never does.

use std::time::Duration;

use serde_json::Value;

use super::*;

const WAIT: Duration = Duration::from_secs(20);

fn files_sample(name: &str) -> String {
    format!("sd_sync_files{{mapping=\"{name}\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_changed_and_deleted_objects_reach_the_directory() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let sd_sync = start_sd_sync(&args(&[(&bucket, "active/", &dir)], &s3_endpoint()));

    let (a, b) = (guid(1), guid(2));
    bucket
        .put(&format!("active/{a}.json"), &target_file(&a, "app-aaaa", 2))
        .await;
    bucket
        .put(&format!("active/{b}.json"), &target_file(&b, "app-bbbb", 1))
        .await;
    // Never mirrored: not *.json, not directly under the prefix, another prefix.
    bucket.put("active/README.txt", "hello").await;
    bucket.put(&format!("active/nested/{a}.json"), "[]").await;
    bucket.put(&format!("inactive/{a}.json"), "[]").await;

    let expected = BTreeMap::from([
        (format!("{a}.json"), target_file(&a, "app-aaaa", 2)),
        (format!("{b}.json"), target_file(&b, "app-bbbb", 1)),
    ]);
    eventually("both new objects are installed", WAIT, async || {
        dir_files(&dir) == expected
    })
    .await;

    // Same size, different content: the old cron's `aws s3 sync` could miss this one.
    let changed = target_file(&a, "app-cccc", 2);
    assert_eq!(changed.len(), expected[&format!("{a}.json")].len());
    bucket.put(&format!("active/{a}.json"), &changed).await;
    eventually("the same-size change is installed", WAIT, async || {
        dir_files(&dir).get(&format!("{a}.json")) == Some(&changed)
    })
    .await;

    bucket.delete(&format!("active/{b}.json")).await;
    eventually("the deleted object's file is removed", WAIT, async || {
        dir_files(&dir) == BTreeMap::from([(format!("{a}.json"), changed.clone())])
    })
    .await;

    // Polls start early by the recent syncs' cost (at most a quarter of the 200 ms
    // interval), so that a write is installed within the interval.
    let period = sd_sync
        .metric("sd_sync_poll_period_seconds{mapping=\"targets\"}")
        .await;
    assert!((0.15..0.2).contains(&period), "poll period {period} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_object_is_not_installed_and_the_old_file_stays() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let sd_sync = start_sd_sync(&args(&[(&bucket, "active/", &dir)], &s3_endpoint()));

    let a = guid(1);
    let good = target_file(&a, "app-aaaa", 1);
    bucket.put(&format!("active/{a}.json"), &good).await;
    eventually("the good file is installed", WAIT, async || {
        json_files(&dir).len() == 1
    })
    .await;

    // A truncated upload, an unknown field, an invalid label name: none is installed.
    bucket
        .put(&format!("active/{a}.json"), &good[..good.len() / 2])
        .await;
    bucket
        .put(
            &format!("active/{}.json", guid(2)),
            r#"[{"targets": ["x"], "labels": {}, "extra": true}]"#,
        )
        .await;
    bucket
        .put(
            &format!("active/{}.json", guid(3)),
            r#"[{"targets": ["x"], "labels": {"bad-name": "x"}}]"#,
        )
        .await;
    eventually("three invalid objects are counted", WAIT, async || {
        sd_sync
            .metric("sd_sync_invalid_objects_total{mapping=\"targets\"}")
            .await
            == 3.0
    })
    .await;
    assert_eq!(
        dir_files(&dir),
        BTreeMap::from([(format!("{a}.json"), good.clone())]),
        "the old file stays and nothing invalid (nor any temporary file) is in the directory"
    );
    assert_eq!(sd_sync.targets("/targets").await, dir_groups(&dir));

    // A fixed upload is installed again.
    let fixed = target_file(&a, "app-bbbb", 1);
    bucket.put(&format!("active/{a}.json"), &fixed).await;
    eventually("the fixed object is installed", WAIT, async || {
        dir_files(&dir).get(&format!("{a}.json")) == Some(&fixed)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_endpoint_going_away_deletes_nothing_and_targets_turn_503_once_stale() {
    let bucket = Bucket::new().await;
    let proxy = FlakyProxy::start(true).await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let mut args = args(&[(&bucket, "active/", &dir)], &proxy.url);
    args.extend(["--stale-after".into(), "3s".into()]);
    let sd_sync = start_sd_sync(&args);

    for n in 0..3 {
        bucket
            .put(
                &format!("active/{}.json", guid(n)),
                &target_file(&guid(n), "app", 1),
            )
            .await;
    }
    eventually("the files are installed", WAIT, async || {
        sd_sync.metric(&files_sample("targets")).await == 3.0
    })
    .await;
    let before = dir_files(&dir);
    assert_eq!(before.len(), 3, "no staged file is left: {before:?}");
    let served = sd_sync.targets("/targets").await;

    proxy.set_up(false);
    let errors = "sd_sync_listing_errors_total{mapping=\"targets\"}";
    eventually("listings fail", WAIT, async || {
        sd_sync.metric(errors).await >= 2.0
    })
    .await;
    assert_eq!(dir_files(&dir), before, "a failing store deletes nothing");
    eventually(
        "/targets answers 503 once the last listing is stale",
        WAIT,
        async || sd_sync.get("/targets").await.status() == 503,
    )
    .await;
    assert_eq!(sd_sync.get("/targets/targets").await.status(), 503);
    assert_eq!(sd_sync.get("/health").await.status(), 503);
    assert_eq!(dir_files(&dir), before, "still nothing deleted");

    proxy.set_up(true);
    eventually("/targets answers again", WAIT, async || {
        sd_sync.get("/targets").await.status() == 200
    })
    .await;
    assert_eq!(sd_sync.targets("/targets").await, served);
    assert_eq!(dir_files(&dir), before);
    assert_eq!(sd_sync.get("/health").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_directory_survives_an_unreachable_bucket_and_is_reconciled_on_the_first_listing() {
    let bucket = Bucket::new().await;
    let proxy = FlakyProxy::start(false).await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    std::fs::create_dir_all(&dir).unwrap();
    let (kept, changed, gone, new) = (guid(1), guid(2), guid(3), guid(4));
    for (app, job) in [(&kept, "kept"), (&changed, "old"), (&gone, "gone")] {
        std::fs::write(dir.join(format!("{app}.json")), target_file(app, job, 1)).unwrap();
    }
    std::fs::write(dir.join("notes.txt"), "the operator's").unwrap();
    let warm = dir_files(&dir);
    for (app, job) in [(&kept, "kept"), (&changed, "new"), (&new, "new")] {
        bucket
            .put(&format!("active/{app}.json"), &target_file(app, job, 1))
            .await;
    }

    let sd_sync = start_sd_sync(&args(&[(&bucket, "active/", &dir)], &proxy.url));
    assert_eq!(sd_sync.get("/targets").await.status(), 503, "never listed");
    assert_eq!(sd_sync.get("/health").await.status(), 503);
    let errors = "sd_sync_listing_errors_total{mapping=\"targets\"}";
    eventually("listings fail", WAIT, async || {
        sd_sync.metric(errors).await >= 2.0
    })
    .await;
    assert_eq!(
        dir_files(&dir),
        warm,
        "nothing destructive while unreachable"
    );
    assert_eq!(sd_sync.get("/targets").await.status(), 503);

    proxy.set_up(true);
    let expected = BTreeMap::from([
        (format!("{kept}.json"), target_file(&kept, "kept", 1)),
        (format!("{changed}.json"), target_file(&changed, "new", 1)),
        (format!("{new}.json"), target_file(&new, "new", 1)),
        ("notes.txt".to_string(), "the operator's".to_string()),
    ]);
    eventually(
        "the first listing reconciles the directory",
        WAIT,
        async || dir_files(&dir) == expected,
    )
    .await;
    assert_eq!(
        sd_sync
            .metric("sd_sync_s3_requests_total{mapping=\"targets\",operation=\"get\"}")
            .await,
        2.0,
        "the file already in place is not fetched"
    );
    assert_eq!(sd_sync.targets("/targets").await, dir_groups(&dir));
}

/// Puts `count` target files under `active/` and waits until `sd_sync` has them all.
async fn fill_and_sync(bucket: &Bucket, count: usize, syncs: &[(&SdSync, &str)]) {
    for n in 0..count {
        let app = guid(n);
        bucket
            .put(&format!("active/{app}.json"), &target_file(&app, "app", 1))
            .await;
    }
    for (sd_sync, mapping) in syncs {
        eventually("the files are installed", WAIT, async || {
            sd_sync.metric(&files_sample(mapping)).await == count as f64
        })
        .await;
    }
}

/// Deletes the objects `range` while the proxy is down, so that sd-sync sees them go all
/// at once (and not a few per poll, which the valve judges differently).
async fn delete_behind_the_proxy(
    bucket: &Bucket,
    proxy: &FlakyProxy,
    range: std::ops::Range<usize>,
) {
    proxy.set_up(false);
    for n in range {
        bucket.delete(&format!("active/{}.json", guid(n))).await;
    }
    proxy.set_up(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_bucket_is_held_back_by_the_valve() {
    let bucket = Bucket::new().await;
    let proxy = FlakyProxy::start(true).await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let mut args = args(&[(&bucket, "active/", &dir)], &proxy.url);
    args.extend(["--deletion-confirmations".into(), "1000".into()]);
    let sd_sync = start_sd_sync(&args);
    fill_and_sync(&bucket, 12, &[(&sd_sync, "targets")]).await;
    let before = dir_files(&dir);
    assert_eq!(before.len(), 12);
    let served = sd_sync.targets("/targets").await;

    delete_behind_the_proxy(&bucket, &proxy, 0..12).await;
    let held = "sd_sync_held_back_deletions{mapping=\"targets\"}";
    eventually("the valve holds the deletions back", WAIT, async || {
        sd_sync.metric(held).await == 12.0
    })
    .await;
    let polls = "sd_sync_polls_total{mapping=\"targets\"}";
    let polled = sd_sync.metric(polls).await;
    eventually("a few more polls", WAIT, async || {
        sd_sync.metric(polls).await >= polled + 5.0
    })
    .await;
    assert_eq!(dir_files(&dir), before, "no file is deleted");
    assert_eq!(sd_sync.metric(held).await, 12.0);
    assert_eq!(
        sd_sync
            .metric("sd_sync_deletions_total{mapping=\"targets\"}")
            .await,
        0.0
    );
    assert_eq!(
        sd_sync.targets("/targets").await,
        served,
        "/targets keeps serving them"
    );
    let health: Value = sd_sync.get("/health").await.json().await.unwrap();
    assert_eq!(health["mappings"][0]["held_back_deletions"], 12, "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_back_deletions_proceed_once_the_listing_is_confirmed_or_allowed() {
    let bucket = Bucket::new().await;
    let proxy = FlakyProxy::start(true).await;
    let dirs = TargetDirs::new();
    let (confirmed, allowed) = (dirs.dir("confirmed"), dirs.dir("allowed"));
    let mut confirming_args = args(&[(&bucket, "active/", &confirmed)], &proxy.url);
    // 25 polls of 200 ms: long enough to see the hold, short enough to wait for.
    confirming_args.extend(["--deletion-confirmations".into(), "25".into()]);
    let confirming = start_sd_sync(&confirming_args);
    let mut allowing_args = args(&[(&bucket, "active/", &allowed)], &proxy.url);
    allowing_args.push("--allow-mass-deletion".into());
    let allowing = start_sd_sync(&allowing_args);
    fill_and_sync(
        &bucket,
        12,
        &[(&confirming, "confirmed"), (&allowing, "allowed")],
    )
    .await;

    // Eleven of twelve go: more than half and more than ten.
    delete_behind_the_proxy(&bucket, &proxy, 1..12).await;
    eventually("the valve holds the deletions back", WAIT, async || {
        confirming
            .metric("sd_sync_held_back_deletions{mapping=\"confirmed\"}")
            .await
            == 11.0
    })
    .await;
    eventually(
        "the allowed mass deletion has gone through",
        WAIT,
        async || json_files(&allowed).len() == 1,
    )
    .await;
    assert_eq!(
        allowing
            .metric("sd_sync_held_back_deletions{mapping=\"allowed\"}")
            .await,
        0.0
    );
    eventually("the confirmed deletion goes through", WAIT, async || {
        json_files(&confirmed).len() == 1
    })
    .await;
    assert_eq!(
        confirming
            .metric("sd_sync_held_back_deletions{mapping=\"confirmed\"}")
            .await,
        0.0
    );
    assert_eq!(dir_files(&confirmed), dir_files(&allowed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_serves_the_same_groups_as_the_directories_and_503_before_the_first_listing() {
    let bucket = Bucket::new().await;
    let proxy = FlakyProxy::start(false).await;
    let dirs = TargetDirs::new();
    let (west1, west2) = (dirs.dir("eu-west-1-targets"), dirs.dir("eu-west-2-targets"));
    let sd_sync = start_sd_sync(&args(
        &[
            (&bucket, "eu-west-1/active/", &west1),
            (&bucket, "eu-west-2/active", &west2),
        ],
        &proxy.url,
    ));
    for path in [
        "/targets",
        "/targets/eu-west-1-targets",
        "/targets/eu-west-2-targets",
    ] {
        let response = sd_sync.get(path).await;
        assert_eq!(response.status(), 503, "{path} before the first listing");
        let body = response.text().await.unwrap();
        assert!(body.contains("no complete listing"), "{body}");
    }
    let response = sd_sync.get("/targets/nope").await;
    assert_eq!(response.status(), 404);

    for n in 0..4_usize {
        let region = if n.is_multiple_of(2) {
            "eu-west-1"
        } else {
            "eu-west-2"
        };
        bucket
            .put(
                &format!("{region}/active/{}.json", guid(n)),
                &target_file(&guid(n), &format!("app-{n}"), n + 1),
            )
            .await;
    }
    bucket
        .put(&format!("eu-west-1/active/{}.json", guid(9)), "[]")
        .await;
    proxy.set_up(true);
    eventually("both directories are mirrored", WAIT, async || {
        json_files(&west1).len() == 3 && json_files(&west2).len() == 2
    })
    .await;
    eventually("both mappings report their files", WAIT, async || {
        sd_sync.metric(&files_sample("eu-west-1-targets")).await == 3.0
            && sd_sync.metric(&files_sample("eu-west-2-targets")).await == 2.0
    })
    .await;

    let one = sd_sync.targets("/targets/eu-west-1-targets").await;
    let two = sd_sync.targets("/targets/eu-west-2-targets").await;
    assert_eq!(one, dir_groups(&west1));
    assert_eq!(two, dir_groups(&west2));
    assert_eq!(
        one.as_array().unwrap().len(),
        1 + 3,
        "instances of apps 0 and 2"
    );
    let mut both = one.as_array().unwrap().clone();
    both.extend(two.as_array().unwrap().iter().cloned());
    assert_eq!(sd_sync.targets("/targets").await, Value::Array(both));
}

#[test]
fn bad_flags_and_settings_fail_with_one_line_on_stderr() {
    let mapping = || {
        vec![
            "--mapping".to_string(),
            "s3://bucket/active=/tmp/x".to_string(),
        ]
    };
    type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--frobnicate".into()], vec![], "unknown argument"),
        (vec![], vec![], "at least one mapping"),
        (
            mapping(),
            vec![("AWS_REGION", "eu-west-1"), ("SD_SYNC_INTERVAL", "soon")],
            "SD_SYNC_INTERVAL",
        ),
        (
            mapping(),
            vec![("S3_ENDPOINT", "localhost:9000")],
            "S3_ENDPOINT",
        ),
        (mapping(), vec![], "AWS_REGION"),
        (vec!["--mapping".into(), "/tmp/x".into()], vec![], "s3://"),
        (
            mapping(),
            vec![("AWS_REGION", "eu-west-1"), ("SD_SYNC_LISTEN", "0.0.0.0:0")],
            "SD_SYNC_AUTH_TOKEN",
        ),
    ];
    for (args, env, expected) in cases {
        let (status, stderr) = run_sd_sync(&args, &env);
        assert!(!status.success(), "{args:?} {env:?} must fail");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
        assert!(
            stderr.starts_with("sd-sync: ") && stderr.contains(expected),
            "{args:?} {env:?}: {stderr:?}"
        );
    }
    let (status, help) = run_sd_sync(&["--help".into()], &[]);
    assert!(status.success() && help.is_empty());
}

#[tokio::test]
async fn once_syncs_every_mapping_and_exits_non_zero_when_a_listing_fails() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    bucket
        .put(
            &format!("active/{}.json", guid(1)),
            &target_file(&guid(1), "app", 1),
        )
        .await;
    let mut once = args(&[(&bucket, "active/", &dir)], &s3_endpoint());
    once.push("--once".into());
    let (status, stderr) = tokio::task::spawn_blocking(move || run_sd_sync(&once, &[]))
        .await
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(dir_files(&dir).len(), 1);

    // Port 1 on loopback: nothing listens there.
    let mut unreachable = args(&[(&bucket, "active/", &dir)], "http://127.0.0.1:1");
    unreachable.push("--once".into());
    let (status, stderr) = tokio::task::spawn_blocking(move || run_sd_sync(&unreachable, &[]))
        .await
        .unwrap();
    assert!(!status.success());
    assert!(stderr.contains("ListObjectsV2"), "{stderr}");
    assert_eq!(dir_files(&dir).len(), 1, "nothing deleted");
}

/// Over 1,000 objects the listing is split into ranges at the previous listing's every
/// 1,000th key and read concurrently; changes anywhere (in each range, the boundary keys
/// themselves removed, a range grown past a page) still reach the directory exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_bucket_is_listed_in_ranges_and_mirrored_exactly() {
    use super::s3_stub::{Latency, S3Stub};
    use std::sync::atomic::Ordering;

    let key = |app: &str| format!("active/{app}.json");
    let mut objects: BTreeMap<String, String> = (0..2500)
        .map(|n| (key(&guid(n)), target_file(&guid(n), "app", 1)))
        .collect();
    let latency = Latency {
        list_page: Duration::from_millis(5),
        get: Duration::ZERO,
    };
    let stub = S3Stub::start("ranges", objects.clone(), latency).await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("ranges");
    let sd_sync = start_sd_sync(&[
        "--mapping".into(),
        format!("s3://ranges/active/={}", dir.display()),
        "--s3-endpoint".into(),
        stub.url.clone(),
        "--interval".into(),
        "200ms".into(),
    ]);
    let expected = |objects: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        objects
            .iter()
            .map(|(k, v)| (k.strip_prefix("active/").unwrap().to_owned(), v.clone()))
            .collect()
    };
    eventually("the first sync", WAIT, async || {
        dir_files(&dir) == expected(&objects)
    })
    .await;
    eventually("a listing in ranges", WAIT, async || {
        stub.ranged_requests.load(Ordering::SeqCst) >= 2
    })
    .await;

    let mut change = |app: String, content: Option<String>| {
        match &content {
            Some(content) => stub.put(&key(&app), content),
            None => stub.remove(&key(&app)),
        }
        match content {
            Some(content) => objects.insert(key(&app), content),
            None => objects.remove(&key(&app)),
        };
    };
    // One change in each range, the first two ranges' last keys (the boundaries) gone,
    // and 1,200 new keys inside the second range.
    for n in [5, 1500, 2400] {
        change(guid(n), Some(target_file(&guid(n), "changed", 2)));
    }
    change(guid(999), None);
    change(guid(1999), None);
    for i in 0..1200 {
        let app = format!("{}{i:04}", guid(1500));
        change(app.clone(), Some(target_file(&app, "new", 1)));
    }
    eventually("every change is mirrored", WAIT, async || {
        dir_files(&dir) == expected(&objects)
    })
    .await;
    assert_eq!(sd_sync.targets("/targets").await, dir_groups(&dir));
}

fn valve_holds(mapping: &str, reason: &str) -> String {
    format!("sd_sync_valve_holds_total{{mapping=\"{mapping}\",reason=\"{reason}\"}}")
}

/// The issue's case: the bucket is emptied by mistake while the writers' record still
/// says what `active/` should hold. Time must not release the deletion: after a minute of
/// polls (far more than any countdown) every file and every target is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_bucket_whose_record_still_claims_its_objects_keeps_every_target_for_a_minute() {
    let bucket = Bucket::new().await;
    let proxy = FlakyProxy::start(true).await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let mut args = args(&[(&bucket, "active/", &dir)], &proxy.url);
    // Without the record, 3 polls (0.6 s) would release it. The bucket is emptied behind
    // the writers' back, which only a listing sees: every poll lists.
    args.extend(["--deletion-confirmations".into(), "3".into()]);
    args.extend(["--safety-listing-interval".into(), "0s".into()]);
    let sd_sync = start_sd_sync(&args);
    fill_and_sync(&bucket, 12, &[(&sd_sync, "targets")]).await;
    bucket.put_record(7, 12).await;
    let before = dir_files(&dir);
    let served = sd_sync.targets("/targets").await;

    delete_behind_the_proxy(&bucket, &proxy, 0..12).await;
    let held = valve_holds("targets", "record_disagrees");
    eventually("the valve holds on the record", WAIT, async || {
        sd_sync.metric(held.as_str()).await >= 1.0
    })
    .await;
    let (status, health) = sd_sync.health().await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "held", "{health}");
    let mapping = &health["mappings"][0];
    assert_eq!(mapping["status"], "held", "{health}");
    assert_eq!(mapping["held_back_deletions"], 12, "{health}");
    assert_eq!(mapping["listed"], 0, "{health}");
    assert_eq!(
        mapping["hold"],
        serde_json::json!({"reason": "record_disagrees", "listed": 0, "recorded": 12, "generation": 7}),
        "{health}"
    );

    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(61) {
        assert_eq!(dir_files(&dir), before, "no file is deleted");
        assert_eq!(
            sd_sync.targets("/targets").await,
            served,
            "/targets keeps them"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let polls = sd_sync.metric(held.as_str()).await;
    assert!(polls >= 100.0, "held on {polls} polls");
    assert_eq!(
        sd_sync.metric(&valve_holds("targets", "unconfirmed")).await,
        0.0
    );
    assert_eq!(
        sd_sync
            .metric("sd_sync_deletions_total{mapping=\"targets\"}")
            .await,
        0.0
    );
    assert_eq!(sd_sync.health().await.1["mappings"][0]["status"], "held");
}

/// A small foundation's last app is unbound: the writers remove its file and publish a
/// record of 0. The removal is applied on the first poll that sees both, never held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_objects_removal_corroborated_by_the_record_is_applied_on_the_next_poll() {
    let bucket = Bucket::new().await;
    let proxy = FlakyProxy::start(true).await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let mut args = args(&[(&bucket, "active/", &dir)], &proxy.url);
    args.extend(["--deletion-confirmations".into(), "1000".into()]);
    let sd_sync = start_sd_sync(&args);
    fill_and_sync(&bucket, 1, &[(&sd_sync, "targets")]).await;
    bucket.put_record(1, 1).await;

    // Both changes become visible to sd-sync at once.
    proxy.set_up(false);
    let errors = "sd_sync_listing_errors_total{mapping=\"targets\"}";
    let failed = sd_sync.metric(errors).await;
    eventually("a listing fails", WAIT, async || {
        sd_sync.metric(errors).await > failed
    })
    .await;
    bucket.delete(&format!("active/{}.json", guid(0))).await;
    bucket.put_record(2, 0).await;
    let polls = "sd_sync_polls_total{mapping=\"targets\"}";
    let polled = sd_sync.metric(polls).await;
    proxy.set_up(true);
    eventually("the file is removed", WAIT, async || {
        json_files(&dir).is_empty()
    })
    .await;
    // The poll running while the proxy came back may have failed; the next one applies.
    let applied_by = sd_sync.metric(polls).await;
    assert!(applied_by <= polled + 3.0, "polls {polled} -> {applied_by}");
    for reason in [
        "unconfirmed",
        "record_disagrees",
        "record_unreadable",
        "record_invalid",
        "record_vanished",
    ] {
        assert_eq!(
            sd_sync.metric(&valve_holds("targets", reason)).await,
            0.0,
            "{reason}"
        );
    }
    assert_eq!(
        sd_sync
            .metric("sd_sync_s3_requests_total{mapping=\"targets\",operation=\"get_record\"}")
            .await,
        1.0,
        "the record is read only when the valve would hold"
    );
    assert_eq!(sd_sync.targets("/targets").await, serde_json::json!([]));
    let (status, health) = sd_sync.health().await;
    assert_eq!((status, &health["status"]), (200, &Value::from("ok")));
}

/// Object names as long as a file name may be: staged files no longer add to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_245_and_255_characters_are_installed() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let sd_sync = start_sd_sync(&args(&[(&bucket, "active/", &dir)], &s3_endpoint()));
    let names = [
        format!("{}.json", "a".repeat(240)),
        format!("{}.json", "b".repeat(250)),
    ];
    assert_eq!((names[0].len(), names[1].len()), (245, 255));
    for name in &names {
        bucket
            .put(&format!("active/{name}"), &target_file(&guid(1), "long", 1))
            .await;
    }
    eventually("both are installed", WAIT, async || {
        json_files(&dir).len() == 2
    })
    .await;
    assert_eq!(dir_files(&dir).len(), 2, "no staged file is left");
    let (status, health) = sd_sync.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["mappings"][0]["last_error"], Value::Null);
}

/// A file that can never be installed (here: a directory has its name) is not only in
/// the log: `/health` turns 503 `degraded` with the error, and a gauge says how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_keeps_failing_to_install_shows_in_health_and_metrics() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let (good, blocked) = (guid(1), guid(2));
    std::fs::create_dir_all(dir.join(format!("{blocked}.json"))).unwrap();
    let sd_sync = start_sd_sync(&args(&[(&bucket, "active/", &dir)], &s3_endpoint()));
    for app in [&good, &blocked] {
        bucket
            .put(&format!("active/{app}.json"), &target_file(app, "app", 1))
            .await;
    }
    let failing = "sd_sync_failing_objects{mapping=\"targets\"}";
    eventually("the failure is counted", WAIT, async || {
        sd_sync.metric(failing).await == 1.0
    })
    .await;
    let (status, health) = sd_sync.health().await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "degraded", "{health}");
    let mapping = &health["mappings"][0];
    assert_eq!(mapping["failing_objects"], 1, "{health}");
    let error = mapping["last_error"].as_str().unwrap_or_default();
    assert!(error.contains(&format!("{blocked}.json")), "{health}");
    assert!(
        dir.join(format!("{good}.json")).is_file(),
        "the other object is installed"
    );

    std::fs::remove_dir(dir.join(format!("{blocked}.json"))).unwrap();
    eventually("it recovers", WAIT, async || {
        sd_sync.get("/health").await.status() == 200
    })
    .await;
    assert_eq!(sd_sync.metric(failing).await, 0.0);
    assert_eq!(json_files(&dir).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_credentials_configured_every_endpoint_but_health_answers_401_without_them() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let token_file = dirs.root().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let sd_sync = start_sd_sync_with(
        &args(&[(&bucket, "active/", &dir)], &s3_endpoint()),
        &[
            ("SD_SYNC_AUTH_TOKEN_FILE", token_file.to_str().unwrap()),
            ("SD_SYNC_AUTH_USERNAME", "prometheus"),
            ("SD_SYNC_AUTH_PASSWORD", "pass:word"),
        ],
        Some("Bearer s3cret-token".into()),
    );
    eventually("listed", WAIT, async || {
        sd_sync.get("/health").await.status() == 200
    })
    .await;
    let client = reqwest::Client::new();
    for path in ["/targets", "/targets/targets", "/metrics"] {
        let url = format!("{}{path}", sd_sync.base_url);
        let refused = client.get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path}");
        let challenge = refused.headers()[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.contains("Basic") && challenge.contains("Bearer"),
            "{challenge}"
        );
        for wrong in ["Bearer s3cret-toke", "Bearer s3cret-token2"] {
            let response = client
                .get(&url)
                .header(reqwest::header::AUTHORIZATION, wrong)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 401, "{path} {wrong}");
        }
        let wrong_password = client
            .get(&url)
            .basic_auth("prometheus", Some("pass"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong_password.status(), 401, "{path}");
        let basic = client
            .get(&url)
            .basic_auth("prometheus", Some("pass:word"))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 200, "{path}");
        assert_eq!(
            sd_sync.get(path).await.status(),
            200,
            "{path} with the token"
        );
    }
    let open = client
        .get(format!("{}/health", sd_sync.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), 200, "/health needs no credentials");
}

fn propagation_count(mapping: &str, change: &str) -> String {
    format!("sd_sync_propagation_seconds_count{{change=\"{change}\",mapping=\"{mapping}\"}}")
}

/// Each install and each removal after the first sync is observed once in
/// `sd_sync_propagation_seconds`; the first sync's installs (objects that may be old) are not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_is_observed_once_per_install_and_removal_after_the_first_sync() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    // Stays in the bucket, so that removing the other object is no mass deletion.
    let (keeper, app) = (guid(1), guid(2));
    bucket
        .put(
            &format!("active/{keeper}.json"),
            &target_file(&keeper, "app-keep", 1),
        )
        .await;
    let sd_sync = start_sd_sync(&args(&[(&bucket, "active/", &dir)], &s3_endpoint()));
    let (install, delete) = (
        propagation_count("targets", "install"),
        propagation_count("targets", "delete"),
    );
    eventually("the first sync installs the object", WAIT, async || {
        sd_sync.metric(&files_sample("targets")).await == 1.0
    })
    .await;
    assert_eq!(
        sd_sync.metric(&install).await,
        0.0,
        "the first sync is not observed"
    );

    bucket
        .put(
            &format!("active/{app}.json"),
            &target_file(&app, "app-aaaa", 1),
        )
        .await;
    eventually(
        "the new object is installed and observed",
        WAIT,
        async || json_files(&dir).len() == 2 && sd_sync.metric(&install).await == 1.0,
    )
    .await;

    bucket.delete(&format!("active/{app}.json")).await;
    eventually("the removal is observed", WAIT, async || {
        json_files(&dir).len() == 1 && sd_sync.metric(&delete).await == 1.0
    })
    .await;
    // A few more polls change nothing.
    let polls = sd_sync
        .metric("sd_sync_polls_total{mapping=\"targets\"}")
        .await;
    eventually("three more polls", WAIT, async || {
        sd_sync
            .metric("sd_sync_polls_total{mapping=\"targets\"}")
            .await
            >= polls + 3.0
    })
    .await;
    assert_eq!(sd_sync.metric(&install).await, 1.0);
    assert_eq!(sd_sync.metric(&delete).await, 1.0);
}
