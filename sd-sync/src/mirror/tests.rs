use super::*;
use crate::filesd::is_managed_name;
use crate::metrics::Metrics;
use crate::source::memory::MemorySource;
use prometheus::Histogram;
use std::sync::atomic::Ordering;

fn group(app: &str) -> String {
    format!(r#"[{{"targets": ["{app}.example.com"], "labels": {{"job": "{app}"}}}}]"#)
}

struct World {
    source: Arc<MemorySource>,
    dir: tempfile::TempDir,
    mirror: Mirror<Arc<MemorySource>>,
    metrics: Metrics,
}

fn world_with(valve: ValveConfig, setup: impl FnOnce(&Path)) -> World {
    world_with_safety(valve, Duration::from_secs(600), setup)
}

/// A world whose safety listing comes every `safety` (`ZERO`: every poll lists).
fn world_with_safety(
    valve: ValveConfig,
    safety_listing_interval: Duration,
    setup: impl FnOnce(&Path),
) -> World {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let source = Arc::new(MemorySource::default());
    let metrics = Metrics::new();
    let config = MirrorConfig {
        name: "targets".into(),
        source: "memory".into(),
        dir: dir.path().to_owned(),
        valve,
        fetch_concurrency: 4,
        safety_listing_interval,
    };
    let mirror = Mirror::open(config, source.clone(), metrics.mapping("targets")).unwrap();
    World {
        source,
        dir,
        mirror,
        metrics,
    }
}

fn world() -> World {
    world_with(ValveConfig::default(), |_| {})
}

impl World {
    fn files(&self) -> BTreeMap<String, String> {
        fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                let name = e.file_name().into_string().unwrap();
                let content = fs::read_to_string(e.path()).unwrap_or_else(|_| "<link>".into());
                (name, content)
            })
            .collect()
    }

    async fn sync(&mut self) -> SyncReport {
        self.mirror.sync_once().await.expect("the sync lists")
    }
}

#[tokio::test]
async fn new_changed_and_deleted_objects_reach_the_directory() {
    let mut w = world();
    w.source.put("a.json", &group("a"));
    w.source.put("b.json", &group("b"));
    let report = w.sync().await;
    assert_eq!((report.installed, report.deleted), (2, 0));
    assert_eq!(w.files()["a.json"], group("a"));

    w.source.put("a.json", &group("c")); // same size
    w.source.remove("b.json");
    let report = w.sync().await;
    assert_eq!((report.installed, report.deleted), (1, 1));
    assert_eq!(w.files(), BTreeMap::from([("a.json".into(), group("c"))]));
}

#[tokio::test]
async fn an_unchanged_listing_fetches_nothing() {
    let mut w = world();
    w.source.put("a.json", &group("a"));
    w.sync().await;
    let gets = w.source.gets.load(std::sync::atomic::Ordering::SeqCst);
    let report = w.sync().await;
    assert_eq!(
        report,
        SyncReport {
            listing: Some(ListReason::NoRecord),
            listed: 1,
            ..SyncReport::default()
        }
    );
    assert_eq!(
        w.source.gets.load(std::sync::atomic::Ordering::SeqCst),
        gets
    );
}

#[tokio::test]
async fn a_warm_directory_is_not_fetched_again() {
    let mut w = world_with(ValveConfig::default(), |dir| {
        fs::write(dir.join("a.json"), group("a")).unwrap();
    });
    w.source.put("a.json", &group("a"));
    let report = w.sync().await;
    assert_eq!(report.fetched, 0);
    assert_eq!(w.source.gets.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(
        w.mirror.shared().targets_json(),
        br#"[{"targets":["a.example.com"],"labels":{"job":"a"}}]"#
    );
}

#[tokio::test]
async fn an_invalid_object_is_not_installed_the_old_file_stays_and_it_is_not_refetched() {
    let mut w = world();
    w.source.put("a.json", &group("a"));
    w.sync().await;
    w.source.put("a.json", "[{\"targets\": [\"a\"]");
    let report = w.sync().await;
    assert_eq!((report.invalid, report.installed), (1, 0));
    assert_eq!(w.files()["a.json"], group("a"));
    let gets = w.source.gets.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(w.sync().await.invalid, 0, "counted once per version");
    assert_eq!(
        w.source.gets.load(std::sync::atomic::Ordering::SeqCst),
        gets
    );
    w.source.put("a.json", &group("fixed"));
    assert_eq!(w.sync().await.installed, 1);
    assert_eq!(w.files()["a.json"], group("fixed"));
    let invalid = w.metrics.mapping("targets").invalid.get();
    assert_eq!(invalid, 1);
}

#[tokio::test]
async fn a_failed_listing_changes_nothing() {
    let mut w = world();
    w.source.put("a.json", &group("a"));
    w.sync().await;
    w.source.clear();
    w.source.fail(true);
    assert!(w.mirror.sync_once().await.is_err());
    assert_eq!(w.files().len(), 1);
    assert_eq!(w.mirror.shared().status().consecutive_failures, 1);
    assert_eq!(w.metrics.mapping("targets").listing_errors.get(), 1);
}

#[tokio::test]
async fn a_partial_listing_installs_what_it_showed_and_deletes_nothing() {
    let mut w = world_with(ValveConfig::default(), |dir| {
        fs::write(dir.join("stale.json"), group("stale")).unwrap();
    });
    for name in ["a", "b", "c", "d"] {
        w.source.put(&format!("{name}.json"), &group(name));
    }
    w.source
        .truncating
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(w.mirror.sync_once().await.is_err());
    let files: Vec<String> = w.files().into_keys().collect();
    assert_eq!(files, ["a.json", "b.json", "stale.json"]);
    assert_eq!(
        w.mirror
            .shared()
            .freshness(Instant::now(), Duration::from_secs(60)),
        Freshness::NeverListed,
        "a partial listing is not a listing"
    );
    w.source
        .truncating
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let report = w.sync().await;
    assert_eq!((report.installed, report.deleted), (2, 1));
}

#[tokio::test]
async fn an_emptied_bucket_is_held_back_until_confirmed() {
    let mut w = world_with(
        ValveConfig {
            confirmations: 3,
            ..ValveConfig::default()
        },
        |_| {},
    );
    for i in 0..3 {
        w.source.put(&format!("{i}.json"), &group("x"));
    }
    w.sync().await;
    w.source.clear();
    for _ in 0..2 {
        let report = w.sync().await;
        assert_eq!((report.held_back, report.deleted), (3, 0));
        assert_eq!(w.files().len(), 3);
    }
    assert_eq!(w.metrics.mapping("targets").held_back.get(), 3);
    let report = w.sync().await;
    assert_eq!((report.held_back, report.deleted), (0, 3));
    assert!(w.files().is_empty());
    assert_eq!(w.metrics.mapping("targets").held_back.get(), 0);
    assert_eq!(w.mirror.shared().targets_json(), b"[]");
}

fn record(generation: u64, active_count: u64) -> Vec<u8> {
    WritersRecord {
        format: gds_store::record::RECORD_FORMAT,
        generation,
        active_count,
        writer: "broker".into(),
        written_at: "2026-12-07T12:00:00Z".into(),
    }
    .to_bytes()
}

fn holds(w: &World, reason: &str) -> u64 {
    w.metrics.mapping("targets").valve_holds[reason].get()
}

#[tokio::test]
async fn an_emptied_bucket_whose_record_still_claims_its_objects_is_held_indefinitely() {
    // The bucket is emptied behind the writers' back: only listings see it, so every poll
    // lists here.
    let mut w = world_with_safety(
        ValveConfig {
            confirmations: 3,
            ..ValveConfig::default()
        },
        Duration::ZERO,
        |_| {},
    );
    for i in 0..3 {
        w.source.put(&format!("{i}.json"), &group("x"));
    }
    w.source.set_record(Some(&record(4, 3)));
    w.sync().await;
    let served = w.mirror.shared().targets_json();
    w.source.clear();
    for _ in 0..30 {
        let report = w.sync().await;
        assert_eq!((report.held_back, report.deleted), (3, 0));
    }
    assert_eq!(w.files().len(), 3);
    assert_eq!(w.mirror.shared().targets_json(), served);
    let status = w.mirror.shared().status();
    assert_eq!(
        status.hold,
        Some(Hold::RecordDisagrees {
            listed: 0,
            recorded: 3,
            generation: 4
        })
    );
    assert_eq!(holds(&w, "record_disagrees"), 30);
    assert_eq!(holds(&w, "unconfirmed"), 0);

    // The writers publish that active/ is empty: applied on the next poll.
    w.source.set_record(Some(&record(5, 0)));
    let report = w.sync().await;
    assert_eq!((report.held_back, report.deleted), (0, 3));
    assert_eq!(w.mirror.shared().targets_json(), b"[]");
    assert_eq!(w.mirror.shared().status().hold, None);
}

#[tokio::test]
async fn the_record_is_read_only_when_the_valve_would_hold() {
    let mut w = world();
    w.source.set_record(Some(&record(1, 1)));
    w.source.put("a.json", &group("a"));
    w.source.put("b.json", &group("b"));
    w.sync().await;
    w.source.remove("b.json");
    w.source.set_record(Some(&record(2, 1)));
    assert_eq!(w.sync().await.deleted, 1, "a small deletion");
    assert_eq!(
        w.source
            .record_gets
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // The last app goes and the record says 0: no countdown.
    w.source.set_record(Some(&record(3, 0)));
    w.source.clear();
    assert_eq!(w.sync().await.deleted, 1);
    assert_eq!(
        w.source
            .record_gets
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert!(w.files().is_empty());
}

#[tokio::test]
async fn an_unreadable_invalid_or_vanished_record_holds() {
    let mut w = world_with(
        ValveConfig {
            confirmations: 2,
            ..ValveConfig::default()
        },
        |_| {},
    );
    w.source.put("a.json", &group("a"));
    w.sync().await;
    w.source.clear();
    w.source.set_record(Some(&record(1, 1)));
    w.source
        .record_failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(w.sync().await.held_back, 1);
    }
    assert_eq!(holds(&w, "record_unreadable"), 3);
    w.source
        .record_failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    w.source.set_record(Some(b"{\"format\": 2}"));
    for _ in 0..3 {
        assert_eq!(w.sync().await.held_back, 1);
    }
    assert_eq!(holds(&w, "record_invalid"), 3);
    assert!(matches!(
        w.mirror.shared().status().hold,
        Some(Hold::RecordInvalid { .. })
    ));
    // Seen once, a record that disappears does not start the countdown.
    w.source.set_record(None);
    for _ in 0..3 {
        assert_eq!(w.sync().await.held_back, 1);
    }
    assert_eq!(holds(&w, "record_vanished"), 3);
    assert_eq!(w.files().len(), 1);
}

#[tokio::test]
async fn an_object_name_of_255_bytes_is_installed() {
    let mut w = world();
    for name in [
        format!("{}.json", "a".repeat(240)),
        format!("{}.json", "b".repeat(250)),
    ] {
        w.source.put(&name, &group("x"));
    }
    let report = w.sync().await;
    assert_eq!((report.installed, report.errors), (2, 0), "{report:?}");
    assert_eq!(w.files().len(), 2);
    assert_eq!(w.mirror.shared().status().last_error, None);
}

#[tokio::test]
async fn an_object_that_keeps_failing_to_install_shows_in_the_status_and_metrics() {
    let mut w = world_with(ValveConfig::default(), |dir| {
        fs::create_dir(dir.join("b.json")).unwrap();
    });
    w.source.put("a.json", &group("a"));
    w.source.put("b.json", &group("b"));
    for _ in 0..2 {
        assert_eq!(w.sync().await.errors, 1);
    }
    let status = w.mirror.shared().status();
    assert_eq!(status.failing_objects, 1);
    let error = status.last_error.expect("the failure is the last error");
    assert!(
        error.contains("b.json") && error.contains("not a regular file"),
        "{error}"
    );
    assert_eq!(w.metrics.mapping("targets").failing_objects.get(), 1);

    fs::remove_dir(w.dir.path().join("b.json")).unwrap();
    assert_eq!(w.sync().await.errors, 0);
    let status = w.mirror.shared().status();
    assert_eq!((status.failing_objects, status.last_error), (0, None));
    assert_eq!(w.metrics.mapping("targets").failing_objects.get(), 0);
}

#[tokio::test]
async fn only_managed_regular_files_are_touched() {
    let outside = tempfile::tempdir().unwrap();
    let outside_file = outside.path().join("precious.json");
    fs::write(&outside_file, group("precious")).unwrap();
    let mut w = world_with(
        ValveConfig {
            allow_mass_deletion: true,
            ..ValveConfig::default()
        },
        |dir| {
            fs::write(dir.join("README"), "hello").unwrap();
            fs::write(dir.join(".hidden.json"), "x").unwrap();
            fs::write(dir.join("stale.json"), group("stale")).unwrap();
            std::os::unix::fs::symlink(&outside_file, dir.join("link.json")).unwrap();
            fs::create_dir(dir.join("sub.json")).unwrap();
        },
    );
    // The bucket has an object named like the symlink: it is not installed through it.
    w.source.put("link.json", &group("new"));
    let report = w.sync().await;
    assert_eq!(report.deleted, 1, "stale.json");
    assert_eq!(report.errors, 1, "link.json is left alone");
    assert_eq!(
        fs::read_to_string(&outside_file).unwrap(),
        group("precious")
    );
    let files = w.files();
    assert!(files.contains_key("README") && files.contains_key(".hidden.json"));
    assert!(
        fs::symlink_metadata(w.dir.path().join("link.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(w.dir.path().join("sub.json").is_dir());
    assert!(!files.contains_key("stale.json"));
}

#[tokio::test]
async fn no_staged_file_is_left_behind() {
    let mut w = world();
    for i in 0..20 {
        w.source.put(&format!("{i}.json"), &group("x"));
    }
    w.sync().await;
    assert!(
        w.files()
            .keys()
            .all(|name| name.ends_with(".json") && !name.starts_with('.'))
    );
}

#[tokio::test]
async fn staged_files_left_by_a_killed_run_are_removed_at_start() {
    let w = world_with(ValveConfig::default(), |dir| {
        fs::write(dir.join(".a.json.4242-7.tmp"), "[{\"targ").unwrap();
        fs::write(dir.join(".staged-4242-8.tmp"), "[{\"targ").unwrap();
        fs::write(dir.join(".notes.tmp"), "mine").unwrap();
        fs::create_dir(dir.join(".b.json.1-2.tmp")).unwrap();
    });
    let files: Vec<String> = w.files().into_keys().collect();
    assert_eq!(files, [".b.json.1-2.tmp", ".notes.tmp"]);
}

#[tokio::test]
async fn a_first_sync_of_many_objects_installs_them_all_in_batches() {
    let mut w = world();
    for i in 0..300 {
        w.source
            .put(&format!("{i:03}.json"), &group(&i.to_string()));
    }
    let report = w.sync().await;
    assert_eq!(
        (report.fetched, report.installed, report.errors),
        (300, 300, 0)
    );
    let files = w.files();
    assert_eq!(files.len(), 300);
    assert!(files.keys().all(|name| is_managed_name(name)));
    assert_eq!(files["042.json"], group("42"));
    assert_eq!(w.mirror.shared().files(), 300);
    assert_eq!(w.metrics.mapping("targets").files.get(), 300);
}

// The clock is an argument, so the test moves "now" instead of sleeping.
#[tokio::test]
async fn a_mirror_is_stale_when_its_last_listing_is_older_than_the_limit() {
    let mut w = world();
    let shared = w.mirror.shared();
    let limit = Duration::from_secs(60);
    assert_eq!(
        shared.freshness(Instant::now(), limit),
        Freshness::NeverListed
    );
    w.sync().await;
    let listed = Instant::now();
    assert_eq!(shared.freshness(listed, limit), Freshness::Fresh);
    w.source.fail(true);
    assert!(w.mirror.sync_once().await.is_err());
    assert_eq!(
        shared.freshness(listed + Duration::from_secs(59), limit),
        Freshness::Fresh,
        "a failed listing does not make the last good one older"
    );
    assert!(matches!(
        shared.freshness(listed + Duration::from_secs(61), limit),
        Freshness::Stale { .. }
    ));
}

fn propagation(w: &World) -> (Histogram, Histogram) {
    let m = w.metrics.mapping("targets");
    (m.propagation_install, m.propagation_delete)
}

#[tokio::test]
async fn installs_after_the_first_sync_are_observed_from_the_objects_last_modified() {
    let mut w = world();
    let (install, _) = propagation(&w);
    w.source.put("old.json", &group("old"));
    w.source
        .set_modified("old.json", SystemTime::now() - Duration::from_secs(86_400));
    w.sync().await;
    assert_eq!(
        install.get_sample_count(),
        0,
        "the first sync is not observed"
    );

    w.source.put("new.json", &group("new"));
    w.source
        .set_modified("new.json", SystemTime::now() - Duration::from_secs(100));
    w.sync().await;
    assert_eq!(install.get_sample_count(), 1);
    let observed = install.get_sample_sum();
    assert!((100.0..160.0).contains(&observed), "observed {observed}");

    // A store clock ahead of ours: negative, counted as 0.
    w.source.put("old.json", &group("changed"));
    w.source
        .set_modified("old.json", SystemTime::now() + Duration::from_secs(3600));
    w.sync().await;
    assert_eq!(install.get_sample_count(), 2);
    assert_eq!(install.get_sample_sum(), observed);

    w.sync().await;
    assert_eq!(
        install.get_sample_count(),
        2,
        "unchanged objects are not observed"
    );
}

#[tokio::test]
async fn a_first_sync_whose_listing_failed_half_way_is_not_observed_either() {
    let mut w = world();
    let (install, _) = propagation(&w);
    for i in 0..4 {
        w.source.put(&format!("{i}.json"), &group("x"));
    }
    w.source.truncating.store(true, Ordering::SeqCst);
    assert!(w.mirror.sync_once().await.is_err());
    w.source.truncating.store(false, Ordering::SeqCst);
    w.sync().await;
    assert_eq!(w.files().len(), 4);
    assert_eq!(install.get_sample_count(), 0);
}

// Paused time: the held deletion's wait is exactly what the test advances.
#[tokio::test(start_paused = true)]
async fn a_deletion_is_observed_from_the_first_listing_without_its_object_including_the_hold() {
    let mut w = world_with(
        ValveConfig {
            confirmations: 3,
            ..ValveConfig::default()
        },
        |_| {},
    );
    let (_, delete) = propagation(&w);
    for i in 0..3 {
        w.source.put(&format!("{i}.json"), &group("x"));
    }
    w.sync().await;
    w.source.clear();
    for _ in 0..2 {
        assert_eq!(w.sync().await.held_back, 3);
        tokio::time::advance(Duration::from_secs(7)).await;
    }
    assert_eq!(delete.get_sample_count(), 0, "nothing is removed yet");
    assert_eq!(w.sync().await.deleted, 3);
    assert_eq!(delete.get_sample_count(), 3);
    assert!((delete.get_sample_sum() - 3.0 * 14.0).abs() < 1e-6);
}

#[tokio::test(start_paused = true)]
async fn an_object_listed_again_starts_its_deletion_time_afresh() {
    let mut w = world_with(
        ValveConfig {
            confirmations: 2,
            ..ValveConfig::default()
        },
        |_| {},
    );
    let (_, delete) = propagation(&w);
    w.source.put("a.json", &group("a"));
    w.sync().await;
    w.source.clear();
    assert_eq!(w.sync().await.held_back, 1);
    tokio::time::advance(Duration::from_secs(60)).await;
    w.source.put("a.json", &group("a"));
    w.sync().await;
    w.source.clear();
    assert_eq!(w.sync().await.held_back, 1);
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(w.sync().await.deleted, 1);
    assert_eq!(delete.get_sample_count(), 1);
    assert!((delete.get_sample_sum() - 5.0).abs() < 1e-6);
}

fn listings(w: &World, reason: &str) -> u64 {
    w.metrics.mapping("targets").listings[reason].get()
}

#[tokio::test]
async fn an_unchanged_record_lists_nothing_and_a_new_version_lists_and_installs() {
    let mut w = world();
    w.source.put("a.json", &group("a"));
    w.source.set_record(Some(&record(1, 1)));
    assert_eq!(w.sync().await.listing, Some(ListReason::First));
    let lists = w.source.lists.load(Ordering::SeqCst);
    let confirmed = w.mirror.shared().status().last_listing.unwrap();
    // A write not yet announced by the writers (they publish after writing).
    w.source.put("b.json", &group("b"));
    for _ in 0..5 {
        let report = w.sync().await;
        assert_eq!(
            report,
            SyncReport {
                listed: 1,
                ..SyncReport::default()
            }
        );
    }
    assert_eq!(w.source.lists.load(Ordering::SeqCst), lists, "no listing");
    assert_eq!(
        w.source.record_polls.load(Ordering::SeqCst),
        6,
        "one per poll"
    );
    assert_eq!(w.source.record_gets.load(Ordering::SeqCst), 0);
    assert!(
        w.mirror.shared().status().last_listing.unwrap() > confirmed,
        "an unchanged record keeps the directory fresh"
    );
    assert_eq!(w.metrics.mapping("targets").unchanged_polls.get(), 5);
    // The writers publish: the next poll lists and installs.
    w.source.set_record(Some(&record(2, 2)));
    let report = w.sync().await;
    assert_eq!(report.listing, Some(ListReason::RecordChanged));
    assert_eq!((report.listed, report.installed), (2, 1));
    assert!(w.files().contains_key("b.json"));
    assert_eq!(w.sync().await.listing, None);
    assert_eq!(
        (listings(&w, "first"), listings(&w, "record_changed")),
        (1, 1)
    );
}

#[tokio::test]
async fn a_failed_listing_or_record_read_lists_again_on_the_next_poll() {
    let mut w = world();
    w.source.put("a.json", &group("a"));
    w.source.set_record(Some(&record(1, 1)));
    w.sync().await;
    // The record cannot be read: the poll lists (and the listing fails too).
    w.source.record_failing.store(true, Ordering::SeqCst);
    w.source.fail(true);
    assert!(w.mirror.sync_once().await.is_err());
    assert_eq!(w.files().len(), 1, "nothing deleted");
    // Both back, the record unchanged: the failed listing is retried.
    w.source.record_failing.store(false, Ordering::SeqCst);
    w.source.fail(false);
    assert_eq!(w.sync().await.listing, Some(ListReason::Retry));
    assert_eq!(w.sync().await.listing, None);
    // A new version whose listing fails is listed again on the next poll.
    w.source.put("b.json", &group("b"));
    w.source.set_record(Some(&record(2, 2)));
    w.source.fail(true);
    assert!(w.mirror.sync_once().await.is_err());
    w.source.fail(false);
    let report = w.sync().await;
    assert_eq!(report.listing, Some(ListReason::RecordChanged));
    assert_eq!(report.installed, 1);
    assert_eq!(
        (listings(&w, "record_unreadable"), listings(&w, "retry")),
        (1, 1)
    );
}

#[tokio::test]
async fn the_safety_listing_catches_a_write_that_bypassed_the_record() {
    let safety = Duration::from_millis(200);
    let mut w = world_with_safety(ValveConfig::default(), safety, |_| {});
    w.source.set_record(Some(&record(1, 0)));
    w.sync().await;
    // A hand `aws s3 cp`: no publication.
    w.source.put("bypass.json", &group("bypass"));
    assert_eq!(w.sync().await.listing, None);
    tokio::time::sleep(safety).await;
    let report = w.sync().await;
    assert_eq!(report.listing, Some(ListReason::Safety));
    assert_eq!(report.installed, 1);
    assert!(w.files().contains_key("bypass.json"));
}

#[tokio::test]
async fn without_a_record_every_poll_lists_as_before() {
    let mut w = world();
    w.source.put("a.json", &group("a"));
    for _ in 0..3 {
        assert_eq!(w.sync().await.listing, Some(ListReason::NoRecord));
    }
    assert_eq!(w.source.lists.load(Ordering::SeqCst), 3);
    // Safety listings every poll (0s): the record is read but never trusted.
    let mut w = world_with_safety(ValveConfig::default(), Duration::ZERO, |_| {});
    w.source.set_record(Some(&record(1, 0)));
    w.sync().await;
    assert_eq!(w.sync().await.listing, Some(ListReason::Safety));
}
