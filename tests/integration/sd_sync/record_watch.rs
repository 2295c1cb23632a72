//! What an idle node costs: one conditional GET of the writers' record per poll, a listing
//! only when the record changed or the safety listing is due (counted at the S3 side, by
//! the stub, and cross-checked with sd-sync's own counters); and the same protocol against
//! moto with the writers' real publication code.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::s3_stub::{Latency, S3Stub};
use super::*;

const WAIT: Duration = Duration::from_secs(20);

fn key(app: &str) -> String {
    format!("active/{app}.json")
}

fn record_body(generation: u64, active_count: u64) -> String {
    let record = gds_store::WritersRecord {
        format: gds_store::record::RECORD_FORMAT,
        generation,
        active_count,
        writer: "broker".into(),
        written_at: "2026-12-07T12:00:00Z".into(),
    };
    String::from_utf8(record.to_bytes()).unwrap()
}

fn sample(name: &str, labels: &str) -> String {
    format!("{name}{{mapping=\"targets\"{labels}}}")
}

/// The stub with `apps` target files and a record counting them, and sd-sync on it.
async fn stub_and_sd_sync(
    apps: usize,
    interval: &str,
    safety: &str,
) -> (S3Stub, SdSync, TargetDirs) {
    let mut objects: BTreeMap<String, String> = (0..apps)
        .map(|n| (key(&guid(n)), target_file(&guid(n), "app", 1)))
        .collect();
    objects.insert(gds_store::RECORD_KEY.into(), record_body(1, apps as u64));
    let latency = Latency {
        list_page: Duration::ZERO,
        get: Duration::ZERO,
    };
    let stub = S3Stub::start("watch", objects, latency).await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let sd_sync = start_sd_sync(&[
        "--mapping".into(),
        format!("s3://watch/active/={}", dir.display()),
        "--s3-endpoint".into(),
        stub.url.clone(),
        "--interval".into(),
        interval.into(),
        "--safety-listing-interval".into(),
        safety.into(),
    ]);
    eventually("the first sync", WAIT, async || {
        json_files(&dir).len() == apps
    })
    .await;
    (stub, sd_sync, dirs)
}

/// The stub's counts and sd-sync's together, read between two polls: retried until no
/// poll was in flight and none started while they were read.
async fn counts(stub: &S3Stub, sd_sync: &SdSync) -> [u64; 7] {
    let polls = sample("sd_sync_polls_total", "");
    loop {
        let before = sd_sync.metric(&polls).await;
        let stub_counts = [
            stub.list_requests.load(Ordering::SeqCst),
            stub.get_requests.load(Ordering::SeqCst),
            stub.conditional_gets.load(Ordering::SeqCst),
            stub.not_modified.load(Ordering::SeqCst),
        ];
        let polled_record = sd_sync
            .metric(&sample(
                "sd_sync_s3_requests_total",
                ",operation=\"poll_record\"",
            ))
            .await;
        let unchanged = sd_sync
            .metric(&sample("sd_sync_unchanged_polls_total", ""))
            .await;
        // No poll in flight: every started poll has ended (its duration observed).
        let ended = sd_sync
            .metric(&sample("sd_sync_sync_duration_seconds_count", ""))
            .await;
        if sd_sync.metric(&polls).await == before && ended == before {
            return [
                unchanged as u64,
                before as u64,
                polled_record as u64,
                stub_counts[0],
                stub_counts[1],
                stub_counts[2],
                stub_counts[3],
            ];
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_makes_one_conditional_get_per_poll_and_no_listing() {
    // Polls far enough apart for the counts to be read between two of them.
    let (stub, sd_sync, _dirs) = stub_and_sd_sync(30, "500ms", "1h").await;
    // Past the first sync (and any poll that was under way).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let [
        unchanged0,
        polls0,
        polled0,
        lists0,
        gets0,
        conditional0,
        not_modified0,
    ] = counts(&stub, &sd_sync).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let [
        unchanged1,
        polls1,
        polled1,
        lists1,
        gets1,
        conditional1,
        not_modified1,
    ] = counts(&stub, &sd_sync).await;
    let polls = polls1 - polls0;
    assert!(polls >= 5, "{polls} polls in 5 s at a 500 ms interval");
    assert_eq!(lists1 - lists0, 0, "no LIST while the record is unchanged");
    assert_eq!(gets1 - gets0, polls, "one GET per poll, at the S3 side");
    assert_eq!(conditional1 - conditional0, polls, "each one conditional");
    assert_eq!(
        not_modified1 - not_modified0,
        polls,
        "each one answered 304"
    );
    assert_eq!(polled1 - polled0, polls, "sd-sync counts the same");
    assert_eq!(unchanged1 - unchanged0, polls, "no poll listed");
    let (status, health) = sd_sync.health().await;
    assert_eq!(
        status, 200,
        "an unchanged record keeps the mapping fresh: {health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_record_version_makes_the_next_poll_list_and_install_the_change() {
    let (stub, sd_sync, dirs) = stub_and_sd_sync(30, "100ms", "1h").await;
    let dir = dirs.dir("targets");
    // A writer writes its object first, then publishes.
    let app = guid(5000);
    stub.put(&key(&app), &target_file(&app, "new", 2));
    stub.remove(&key(&guid(7)));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !json_files(&dir).contains_key(&format!("{app}.json")),
        "not before the writers publish (the safety listing is an hour away)"
    );
    let lists = stub.list_requests.load(Ordering::SeqCst);
    stub.put(gds_store::RECORD_KEY, &record_body(2, 30));
    eventually("the change is installed", WAIT, async || {
        let files = json_files(&dir);
        files.contains_key(&format!("{app}.json"))
            && !files.contains_key(&format!("{}.json", guid(7)))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One listing of active/ (one page) and, with it, one of the scrape credentials
    // documents beside it (credentials/, empty here).
    assert_eq!(stub.list_requests.load(Ordering::SeqCst) - lists, 2);
    assert_eq!(
        sd_sync
            .metric(&sample(
                "sd_sync_listings_total",
                ",reason=\"record_changed\""
            ))
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_bypassed_the_record_is_installed_by_the_safety_listing() {
    let (stub, sd_sync, dirs) = stub_and_sd_sync(3, "100ms", "2s").await;
    let dir = dirs.dir("targets");
    let safety = sample("sd_sync_listings_total", ",reason=\"safety\"");
    let before = sd_sync.metric(&safety).await;
    // A hand `aws s3 cp`: no publication.
    let app = guid(99);
    stub.put(&key(&app), &target_file(&app, "by-hand", 1));
    eventually("the bypassing write is installed", WAIT, async || {
        json_files(&dir).contains_key(&format!("{app}.json"))
    })
    .await;
    assert!(
        sd_sync.metric(&safety).await > before,
        "by a safety listing"
    );
    assert_eq!(
        sd_sync
            .metric(&sample(
                "sd_sync_listings_total",
                ",reason=\"record_changed\""
            ))
            .await,
        0.0
    );
}

/// moto, the writers' real publication code ([`gds_store::record::publish`]) and the real
/// SDK's `304` handling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_moto_writes_published_by_the_writers_are_installed_without_idle_listings() {
    let bucket = Bucket::new().await;
    let store = bucket.store();
    for n in 0..3 {
        bucket
            .put(&key(&guid(n)), &target_file(&guid(n), "app", 1))
            .await;
    }
    gds_store::record::publish(store, "broker").await.unwrap();
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let mut args = args(&[(&bucket, "active/", &dir)], &s3_endpoint());
    args.extend(["--safety-listing-interval".into(), "1h".into()]);
    let sd_sync = start_sd_sync(&args);
    eventually("the first sync", WAIT, async || json_files(&dir).len() == 3).await;
    let unchanged = sample("sd_sync_unchanged_polls_total", "");
    eventually("polls that list nothing", WAIT, async || {
        sd_sync.metric(&unchanged).await >= 3.0
    })
    .await;
    let lists = sample("sd_sync_s3_requests_total", ",operation=\"list\"");
    let listed = sd_sync.metric(&lists).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(sd_sync.metric(&lists).await, listed, "idle: no listing");

    bucket
        .put(&key(&guid(3)), &target_file(&guid(3), "app", 1))
        .await;
    gds_store::record::publish(store, "broker").await.unwrap();
    eventually("the published write is installed", WAIT, async || {
        json_files(&dir).len() == 4
    })
    .await;
    assert!(sd_sync.metric(&lists).await > listed);
    assert_eq!(
        sd_sync
            .metric(&sample(
                "sd_sync_listings_total",
                ",reason=\"record_changed\""
            ))
            .await,
        1.0
    );
}
