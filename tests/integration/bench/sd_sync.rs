//! `make bench`: sd-sync's figures, printed (no timed assertions).
//!
//! - propagation delay from a bucket write to the installed file, default 2 s interval,
//!   with 1,000 objects on moto and 10,000 on the stub below;
//! - a full first sync of 10,000 objects into an empty directory, against moto (which is
//!   then the bottleneck) and against an in-memory S3 stub with S3-like latencies, into a
//!   directory on the disk (the system temporary directory) and on tmpfs (`/dev/shm`);
//! - store requests per idle poll of those 10,000 objects;
//! - peak RSS of the sd-sync process;
//! - `record`: S3 requests per hour of an idle node at 10,000 objects, without the
//!   writers' record (every poll lists) and with it (one conditional GET per poll), what
//!   they cost at S3's list prices, and the propagation delay of writes that the writer
//!   publishes (object, then record), on the stub.
//!
//! One test, so that the phases never compete for the two cores (or for moto).
//! `GDS_BENCH_SD_SYNC=stub,propagation,stub-propagation,moto` (the default: all) picks
//! phases; `GDS_BENCH_SD_SYNC_RUNS=N` (default 1) repeats each first sync against the
//! stub; `GDS_BENCH_SD_SYNC_WRITES=N` (default 100) sets the writes per propagation run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sd_sync::s3_stub::{Latency, S3Stub};
use crate::sd_sync::*;
use crate::store_s3::s3_endpoint;

const OBJECTS: usize = 10_000;
const STUB_LATENCY: Latency = Latency {
    list_page: Duration::from_millis(100),
    get: Duration::from_millis(20),
};

/// Puts `count` target files (two instances each) under `prefix`, 32 at a time.
async fn fill(bucket: &Bucket, prefix: &str, count: usize) -> Duration {
    let started = Instant::now();
    let client = Arc::new(bucket.client().clone());
    let name = bucket.name().to_owned();
    let permits = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (client, name, prefix) = (client.clone(), name.clone(), prefix.to_owned());
        tasks.spawn(async move {
            let app = guid(n);
            client
                .put_object()
                .bucket(&name)
                .key(format!("{prefix}{app}.json"))
                .body(app_file(n).into_bytes().into())
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {n}: {e:?}"));
            drop(permit);
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    started.elapsed()
}

/// Whether the phase is selected by `GDS_BENCH_SD_SYNC` (all are by default).
fn phase(name: &str) -> bool {
    std::env::var("GDS_BENCH_SD_SYNC")
        .map(|phases| phases.split(',').any(|p| p.trim() == name))
        .unwrap_or(true)
}

fn app_file(n: usize) -> String {
    target_file(&guid(n), &format!("app-{n}"), 2)
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// User and system CPU seconds of a process so far.
fn cpu_split(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: fields 3.. ; utime and stime are 14 and 15.
    let fields: Vec<f64> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse::<f64>().unwrap() / 100.0) // USER_HZ
        .collect();
    (fields[0], fields[1])
}

/// The machine's 1-minute load average, to print beside timings.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// A uniform pseudo-random duration below `max`: writes must not be in step with polls.
fn jitter(state: &mut u64, max: Duration) -> Duration {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let fraction = (*state >> 11) as f64 / (1u64 << 53) as f64;
    max.mul_f64(fraction)
}

/// Starts sd-sync (default settings) on `bucket`/active/ into `dir` and waits for the
/// first full sync of `count` objects; returns it and the time from spawn.
async fn first_sync(endpoint: &str, bucket: &str, dir: &Path, count: usize) -> (SdSync, Duration) {
    let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
    let mapping = format!("s3://{bucket}/active/={}", dir.display());
    let spawned = Instant::now();
    let sd_sync = start_sd_sync(&[
        "--mapping".into(),
        mapping,
        "--s3-endpoint".into(),
        endpoint.into(),
    ]);
    let files = format!("sd_sync_files{{mapping=\"{name}\"}}");
    let mut last = Instant::now();
    loop {
        if sd_sync.metric(&files).await == count as f64 {
            break;
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(900),
            "the first sync never ended"
        );
        if last.elapsed() > Duration::from_secs(15) {
            println!(
                "  ... {} files after {:.0?}",
                sd_sync.metric(&files).await,
                spawned.elapsed()
            );
            last = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = spawned.elapsed();
    assert_eq!(json_files(dir).len(), count);
    (sd_sync, elapsed)
}

/// Requests and mean duration per idle poll, over `polls` polls.
async fn idle_polls(sd_sync: &SdSync, name: &str, polls: f64) -> (f64, f64, f64) {
    let sample = |operation: &str| {
        format!("sd_sync_s3_requests_total{{mapping=\"{name}\",operation=\"{operation}\"}}")
    };
    let (list, get) = (sample("list"), sample("get"));
    let count = format!("sd_sync_sync_duration_seconds_count{{mapping=\"{name}\"}}");
    let sum = format!("sd_sync_sync_duration_seconds_sum{{mapping=\"{name}\"}}");
    // Start at a poll boundary after the first sync.
    let next = sd_sync.metric(&count).await + 1.0;
    eventually("the next poll", Duration::from_secs(60), async || {
        sd_sync.metric(&count).await >= next
    })
    .await;
    let before = (
        sd_sync.metric(&count).await,
        sd_sync.metric(&list).await,
        sd_sync.metric(&get).await,
        sd_sync.metric(&sum).await,
    );
    eventually("idle polls", Duration::from_secs(120), async || {
        sd_sync.metric(&count).await >= before.0 + polls
    })
    .await;
    let after = (
        sd_sync.metric(&count).await,
        sd_sync.metric(&list).await,
        sd_sync.metric(&get).await,
        sd_sync.metric(&sum).await,
    );
    let n = after.0 - before.0;
    (
        (after.1 - before.1) / n,
        (after.2 - before.2) / n,
        (after.3 - before.3) * 1000.0 / n,
    )
}

/// Serves `/targets` three times, then reads the peak RSS in MiB.
async fn peak_rss_after_serving(sd_sync: &SdSync, groups: usize) -> f64 {
    for _ in 0..3 {
        let served = sd_sync.targets("/targets").await;
        assert_eq!(served.as_array().unwrap().len(), groups);
    }
    sd_sync.peak_rss_kib() as f64 / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench"]
async fn bench_sd_sync() {
    // Built by `make bench` with the workspace (building `-p sd-sync` alone here would
    // rebuild its dependencies with another feature set).
    crate::harness::bin_path("sd-sync");
    let endpoint = s3_endpoint();
    let dirs = TargetDirs::new();
    println!(
        "\n## sd-sync (release build: {}), {OBJECTS} objects of 2 target groups each",
        !cfg!(debug_assertions)
    );

    if phase("stub") {
        bench_stub(&dirs).await;
    }
    if phase("propagation") {
        bench_propagation(&endpoint, &dirs).await;
    }
    if phase("stub-propagation") {
        bench_stub_propagation(&dirs).await;
    }
    if phase("moto") {
        bench_moto(&endpoint, &dirs).await;
    }
    if phase("record") {
        bench_record(&dirs).await;
    }
}

/// S3 list prices (us-east-1, S3 Standard): per 1,000 requests.
const GET_PRICE: f64 = 0.0004;
const LIST_PRICE: f64 = 0.005;
const HOURS_PER_MONTH: f64 = 730.0;

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

/// LIST and GET requests the stub served per hour over `window` of an idle sd-sync.
async fn requests_per_hour(stub: &S3Stub, window: Duration) -> (f64, f64) {
    use std::sync::atomic::Ordering;
    let lists = stub.list_requests.load(Ordering::SeqCst);
    let gets = stub.get_requests.load(Ordering::SeqCst);
    tokio::time::sleep(window).await;
    let scale = 3600.0 / window.as_secs_f64();
    (
        (stub.list_requests.load(Ordering::SeqCst) - lists) as f64 * scale,
        (stub.get_requests.load(Ordering::SeqCst) - gets) as f64 * scale,
    )
}

fn print_cost(what: &str, lists: f64, gets: f64) {
    let monthly = (lists * LIST_PRICE + gets * GET_PRICE) / 1000.0 * HOURS_PER_MONTH;
    println!(
        "  {what}: {lists:.0} LIST + {gets:.0} GET per hour = ${monthly:.2} a month at list \
         prices (GET $0.0004, LIST $0.005 per 1,000)"
    );
}

/// Idle requests per hour at 10,000 objects without and with the writers' record, and
/// the propagation delay of published writes, on the stub (S3-like latency).
async fn bench_record(dirs: &TargetDirs) {
    use std::sync::atomic::Ordering;
    let window = Duration::from_secs(
        std::env::var("GDS_BENCH_SD_SYNC_IDLE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let objects = (0..OBJECTS)
        .map(|n| (format!("active/{}.json", guid(n)), app_file(n)))
        .collect();
    let stub = S3Stub::start("stub-bucket", objects, STUB_LATENCY).await;
    let dir = dirs.dir("record");
    println!(
        "idle S3 requests of one node, {OBJECTS} objects, S3 stub ({} per list page, {} per \
         GET), measured over {window:?} and scaled to an hour:",
        ms(STUB_LATENCY.list_page),
        ms(STUB_LATENCY.get),
    );
    let (sd_sync, _) = first_sync(&stub.url, "stub-bucket", &dir, OBJECTS).await;
    let (lists, gets) = requests_per_hour(&stub, window).await;
    print_cost(
        "before (no writers' record: a listing every poll)",
        lists,
        gets,
    );

    // The writers publish: from the next poll on, one conditional GET per poll.
    stub.put(gds_store::RECORD_KEY, &record_body(1, OBJECTS as u64));
    let settled = sd_sync
        .metric("sd_sync_unchanged_polls_total{mapping=\"record\"}")
        .await
        + 2.0;
    eventually(
        "polls that list nothing",
        Duration::from_secs(60),
        async || {
            sd_sync
                .metric("sd_sync_unchanged_polls_total{mapping=\"record\"}")
                .await
                >= settled
        },
    )
    .await;
    let not_modified = stub.not_modified.load(Ordering::SeqCst);
    let (lists, gets) = requests_per_hour(&stub, window).await;
    let answered_304 = (stub.not_modified.load(Ordering::SeqCst) - not_modified) as f64 * 3600.0
        / window.as_secs_f64();
    print_cost(
        &format!("after, between safety listings ({answered_304:.0} of the GETs answered 304)"),
        lists,
        gets,
    );
    // One safety listing every 10 minutes: 10 pages, 6 times an hour.
    let pages = OBJECTS.div_ceil(1000) as f64;
    print_cost(
        "after, with the default safety listing (every 10 min: + 6 x 10 LIST)",
        lists + 6.0 * pages,
        gets,
    );

    // Propagation of writes that the writer publishes, as the broker and updater do.
    let generation = std::sync::atomic::AtomicU64::new(1);
    let stub = &stub;
    let delays = propagation_delays(&sd_sync, &dir, OBJECTS, async |key, content| {
        stub.put(&key, &content);
        let next = generation.fetch_add(1, Ordering::SeqCst) + 1;
        stub.put(gds_store::RECORD_KEY, &record_body(next, OBJECTS as u64));
    })
    .await;
    report_propagation(
        &format!(
            "published writes (object, then record), S3 stub, {} writes into {OBJECTS} objects",
            delays.len()
        ),
        &delays,
        &sd_sync,
        "record",
    )
    .await;
}

/// First full syncs against the stub (S3-like latency), into a directory on the disk and
/// one on tmpfs; then idle polls and RSS of the last disk run.
async fn bench_stub(dirs: &TargetDirs) {
    let objects = (0..OBJECTS)
        .map(|n| (format!("active/{}.json", guid(n)), app_file(n)))
        .collect();
    let stub = S3Stub::start("stub-bucket", objects, STUB_LATENCY).await;
    let runs: usize = std::env::var("GDS_BENCH_SD_SYNC_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let shm = Path::new("/dev/shm");
    let tmpfs = shm.is_dir().then(|| tempfile::tempdir_in(shm).unwrap());
    let mut kept = None;
    println!(
        "first full sync, S3 stub ({} per list page, {} per GET), from process start to the \
         last file installed:",
        ms(STUB_LATENCY.list_page),
        ms(STUB_LATENCY.get),
    );
    for run in 0..runs {
        let mut places = Vec::new();
        if let Some(tmpfs) = &tmpfs {
            places.push(("tmpfs", tmpfs.path().join(format!("stub{run}"))));
        }
        places.push(("disk", dirs.dir(&format!("stub{run}"))));
        for (place, dir) in places {
            // One sd-sync at a time: an earlier one would poll during this first sync.
            drop(kept.take());
            let load = load_average();
            let (sd_sync, elapsed) = first_sync(&stub.url, "stub-bucket", &dir, OBJECTS).await;
            let (user, system) = cpu_split(sd_sync.pid);
            println!(
                "  {place:5}: {}; sd-sync CPU {user:.1} s user + {system:.1} s system \
                 (load average {load})",
                ms(elapsed)
            );
            if place == "disk" {
                kept = Some((sd_sync, dir));
            }
        }
    }
    let (sd_sync, dir) = kept.expect("one run at least");
    let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
    let (lists, gets, poll_ms) = idle_polls(&sd_sync, &name, 5.0).await;
    println!(
        "idle poll, S3 stub: {lists:.1} list + {gets:.1} get requests, {poll_ms:.0} ms per poll"
    );
    let rss = peak_rss_after_serving(&sd_sync, 2 * OBJECTS).await;
    println!("peak RSS, S3 stub run, after serving /targets 3 times: {rss:.1} MiB");
}

/// Propagation delay against moto, default poll interval.
async fn bench_propagation(endpoint: &str, dirs: &TargetDirs) {
    const BACKGROUND: usize = 1000;
    let bucket = Bucket::new().await;
    let filled = fill(&bucket, "active/", BACKGROUND).await;
    println!("(moto: filled {BACKGROUND} objects in {filled:.1?})");
    let dir = dirs.dir("propagation");
    let (sd_sync, _) = first_sync(endpoint, bucket.name(), &dir, BACKGROUND).await;
    let bucket = &bucket;
    let delays = propagation_delays(&sd_sync, &dir, BACKGROUND, async |key, content| {
        bucket.put(&key, &content).await
    })
    .await;
    report_propagation(
        &format!("moto, {} writes into {BACKGROUND} objects", delays.len()),
        &delays,
        &sd_sync,
        "propagation",
    )
    .await;
}

/// Propagation delay against the stub (S3-like latency: 100 ms a listing page), with
/// 10,000 objects: ten listing pages.
async fn bench_stub_propagation(dirs: &TargetDirs) {
    let objects = (0..OBJECTS)
        .map(|n| (format!("active/{}.json", guid(n)), app_file(n)))
        .collect();
    let stub = S3Stub::start("stub-bucket", objects, STUB_LATENCY).await;
    let dir = dirs.dir("stub-propagation");
    let (sd_sync, _) = first_sync(&stub.url, "stub-bucket", &dir, OBJECTS).await;
    let stub = &stub;
    let delays = propagation_delays(&sd_sync, &dir, OBJECTS, async |key, content| {
        stub.put(&key, &content)
    })
    .await;
    report_propagation(
        &format!(
            "S3 stub ({} per list page, {} per GET), {} writes into {OBJECTS} objects",
            ms(STUB_LATENCY.list_page),
            ms(STUB_LATENCY.get),
            delays.len()
        ),
        &delays,
        &sd_sync,
        "stub-propagation",
    )
    .await;
}

/// Writes (with `put(key, content)`) one of the `background` objects at a time at a
/// uniformly random point of the poll cycle (a random part of the poll period after the
/// previous write arrived), as writes independent of sd-sync would land, and measures how
/// long each takes to reach `dir`, sorted. `GDS_BENCH_SD_SYNC_WRITES` (default 100)
/// writes.
async fn propagation_delays(
    sd_sync: &SdSync,
    dir: &Path,
    background: usize,
    put: impl AsyncFn(String, String),
) -> Vec<Duration> {
    let name = dir.file_name().unwrap().to_str().unwrap();
    let period = format!("sd_sync_poll_period_seconds{{mapping=\"{name}\"}}");
    let writes: usize = std::env::var("GDS_BENCH_SD_SYNC_WRITES")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(100);
    let mut delays = Vec::with_capacity(writes);
    let mut seed = 0x5eed_u64;
    for n in 0..writes {
        let period = Duration::from_secs_f64(sd_sync.metric(&period).await);
        tokio::time::sleep(jitter(&mut seed, period)).await;
        let app = guid(n % background);
        let content = target_file(&app, &format!("changed-{n}"), 2);
        let path = dir.join(format!("{app}.json"));
        put(format!("active/{app}.json"), content.clone()).await;
        let written = Instant::now();
        loop {
            if std::fs::read_to_string(&path).is_ok_and(|c| c == content) {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(30),
                "write {n} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        delays.push(written.elapsed());
    }
    delays.sort();
    delays
}

/// Prints the delays' percentiles, the poll period sd-sync settled on and the cost of an
/// idle poll.
async fn report_propagation(what: &str, delays: &[Duration], sd_sync: &SdSync, name: &str) {
    let period = Duration::from_secs_f64(
        sd_sync
            .metric(&format!(
                "sd_sync_poll_period_seconds{{mapping=\"{name}\"}}"
            ))
            .await,
    );
    let (lists, _, poll_ms) = idle_polls(sd_sync, name, 3.0).await;
    let (p50, p99) = (percentile(delays, 50), percentile(delays, 99));
    println!(
        "propagation delay, {what}, interval 2s: p50 {} p99 {} max {} (an idle poll: {lists:.1} \
         list requests, {poll_ms:.0} ms)",
        ms(p50),
        ms(p99),
        ms(*delays.last().unwrap()),
    );
    // A write lands at a uniform point of the poll cycle: it waits U(0, period) for the
    // next listing, then the same cost c (the listing's answer, one GET, the install)
    // whichever point that was. So p50 = period/2 + c and p99 = 0.99 period + c; sd-sync
    // shortens its period below the 2 s interval by the recent syncs' cost (see
    // sd-sync/src/schedule.rs) so that p99 stays under the interval.
    let cost = p50.saturating_sub(period / 2);
    println!(
        "  poll period {} (interval 2 s less the recent syncs' cost); uniform-arrival model: \
         c = p50 - period/2 = {}, p99 = 0.99 x period + c = {}",
        ms(period),
        ms(cost),
        ms(period.mul_f64(0.99) + cost),
    );
}

/// First full sync, idle polls and RSS against moto (which is then the bottleneck).
async fn bench_moto(endpoint: &str, dirs: &TargetDirs) {
    let bucket = Bucket::new().await;
    let filled = fill(&bucket, "active/", OBJECTS).await;
    println!("(moto: filled {OBJECTS} objects in {filled:.1?})");
    let dir = dirs.dir("moto");
    let (sd_sync, elapsed) = first_sync(endpoint, bucket.name(), &dir, OBJECTS).await;
    println!(
        "first full sync, moto: {}; sd-sync used {:.1} s of CPU",
        ms(elapsed),
        sd_sync.cpu_seconds()
    );
    let (lists, gets, poll_ms) = idle_polls(&sd_sync, "moto", 3.0).await;
    println!("idle poll, moto: {lists:.1} list + {gets:.1} get requests, {poll_ms:.0} ms per poll");
    let rss = peak_rss_after_serving(&sd_sync, 2 * OBJECTS).await;
    println!("peak RSS, moto run, after serving /targets 3 times: {rss:.1} MiB");
}
