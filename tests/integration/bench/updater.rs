//! The updater at the size: 10,000 bound apps in 1,000 spaces, 10 ms added to
//! every Cloud Controller request, PostgreSQL, and the S3 test server (moto). A
//! benchmark, not a timed test: ignored unless asked for (`make bench`), it prints
//! figures (lines starting `bench_updater:`) and asserts only that the passes succeeded.
//! Record results in docs/BENCHMARKS.md.
//!
//! How each figure is measured:
//! - Cloud Controller requests: the simulator's counters (`GET /sim/requests`), reset
//!   just before each `updater --once`.
//! - Store requests: the updater talks to moto through a counting proxy in this test,
//!   which parses each HTTP/1.1 request head (and skips its `Content-Length` body).
//! - Wall time: around the `updater --once` process (start-up included), and the pass's
//!   own duration from its summary line. No-change passes run `NO_CHANGE_RUNS` times
//!   against each store; the medians are printed at the end, with the load average.
//! - Where the time goes: the pass' `pass phases` debug line (when each read was in,
//!   planning, applying) and the Cloud Controller client's per-response debug lines
//!   (waiting vs parsing); the process' CPU time (`/usr/bin/time -f %U+%S`).
//! - Our time vs moto's: the no-change pass also runs against the in-process S3 stub of
//!   sd-sync's benchmark, serving a copy of the same bucket, with no latency (a store
//!   that costs nothing) and with `STUB_PAGE_MS` per listing page.
//! - The running service's scheduled no-change passes (`running_passes`), from the
//!   second on listed in parallel ranges: each pass' time, listing times, ranges and
//!   store requests, from its log and the proxy's or stub's counters.
//! - Peak memory: `/usr/bin/time -f %M` (maximum resident set size of the process).
//! - Fast path: the running updater (audit-event poll), a scale through the simulator's
//!   control API, the bucket polled every 50 ms until the file has the new count.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gds_db::{ConnectOptions, Db, Insert, NewBinding};
use gds_store::{TargetState, TargetStore};
use gds_targets::AppGuid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::broker::support::{Database, Fixture, Options};
use crate::harness::{Running, bin_path};
use crate::sd_sync::s3_stub::{Latency, S3Stub};
use crate::store_s3::s3_endpoint;
use crate::updater::UpdaterEnv;

const APPS: usize = 10_000;
const SPACES: usize = 1_000;
const CC_DELAY_MS: u64 = 10;
pub(crate) const INSTANCE: &str = "bench-si";
const SCALES: usize = 5;
/// No-change passes per store (the median is reported).
const NO_CHANGE_RUNS: usize = 3;
/// The second S3 stub's latency per listing page (sd-sync's benchmark uses the same).
const STUB_PAGE_MS: u64 = 100;
const STUB_BUCKET: &str = "updater-bench-stub";
/// Full passes of the running updater per store: the one at start, then scheduled ones.
const RUNNING_PASSES: usize = 4;
/// `UPDATE_TARGETS_RATE_SECONDS` of the running updater: well over a pass against moto
/// (5–8 s at load 3), so that no pass is running (holding the reconcile lease, which the
/// next store's updater would have to wait out) when the updater is stopped.
const RUNNING_RATE_SECONDS: &str = "15";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with make bench"]
async fn bench_updater() {
    let proxy = CountingProxy::start(&s3_endpoint()).await;
    let f = Fixture::start_with(
        Database::Postgres,
        Options {
            sim_args: vec![
                "--seed-apps".into(),
                APPS.to_string(),
                "--seed-spaces".into(),
                SPACES.to_string(),
            ],
            env: Vec::new(),
        },
    )
    .await;
    let apps = app_guids(&f).await;
    assert_eq!(apps.len(), APPS);
    assert_eq!(f.provision(INSTANCE).await.0, StatusCode::CREATED);
    bind_all(&f, &apps).await;
    f.sim_control(
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3", "delay_ms": CC_DELAY_MS, "count": 0}),
    )
    .await;
    println!(
        "\nbench_updater: {APPS} bound apps in {SPACES} spaces, Cloud Controller +{CC_DELAY_MS} ms \
         per request, PostgreSQL, S3 = moto through a counting proxy"
    );
    println!("bench_updater: load before the passes: {}", load_average());

    let moto = StoreEndpoint {
        url: proxy.endpoint.clone(),
        bucket: f.store.bucket().to_owned(),
    };
    let first = measured_pass(&f, &moto, Some(&proxy), "first pass (empty bucket)").await;
    let mut again = Vec::new();
    for run in 1..=NO_CHANGE_RUNS {
        let what = format!("no-change pass {run}/{NO_CHANGE_RUNS}, moto");
        let pass = measured_pass(&f, &moto, Some(&proxy), &what).await;
        assert!(
            pass.summary.contains(": 0 action(s) applied"),
            "{}",
            pass.summary
        );
        again.push(pass);
    }
    println!(
        "bench_updater: peak memory (max RSS, /usr/bin/time -f %M): {:.1} MB first pass, \
         {:.1} MB no-change pass",
        first.max_rss_kb as f64 / 1024.0,
        again.iter().map(|p| p.max_rss_kb).max().unwrap_or(0) as f64 / 1024.0
    );

    // The same bucket served by the in-process S3 stub (sd-sync's benchmark's): what the
    // pass costs when the store answers like S3 rather than like moto.
    let objects = bucket_contents(&f).await;
    let mut stub_passes = Vec::new();
    for (latency_ms, label) in [
        (0, "S3 stub, 0 ms/page"),
        (STUB_PAGE_MS, "S3 stub, 100 ms/page"),
    ] {
        // Kept until the end of the iteration: dropping the stub stops it.
        let (_stub, store) = start_stub(&objects, latency_ms).await;
        for run in 1..=NO_CHANGE_RUNS {
            let what = format!("no-change pass {run}/{NO_CHANGE_RUNS}, {label}");
            let pass = measured_pass(&f, &store, None, &what).await;
            assert!(
                pass.summary.contains(": 0 action(s) applied"),
                "{}",
                pass.summary
            );
            stub_passes.push((label, pass));
        }
    }
    // The running service: its scheduled passes list with the previous pass' keys as
    // range boundaries (`TargetStore::list_apps_hinted`), which `--once` cannot.
    let mut running = Vec::new();
    running.push((
        "moto",
        running_passes(&f, &moto, Requests::Proxy(&proxy), "moto").await,
    ));
    for (latency_ms, label) in [
        (0, "S3 stub, 0 ms/page"),
        (STUB_PAGE_MS, "S3 stub, 100 ms/page"),
    ] {
        let (stub, store) = start_stub(&objects, latency_ms).await;
        let passes = running_passes(&f, &store, Requests::Stub(&stub), label).await;
        running.push((label, passes));
    }

    println!("bench_updater: no-change pass, summary (median of {NO_CHANGE_RUNS}):");
    summarise("moto", &again.iter().collect::<Vec<_>>());
    for label in ["S3 stub, 0 ms/page", "S3 stub, 100 ms/page"] {
        let passes: Vec<&Pass> = stub_passes
            .iter()
            .filter(|(l, _)| *l == label)
            .map(|(_, p)| p)
            .collect();
        summarise(label, &passes);
    }
    println!(
        "bench_updater: running updater, no-change scheduled passes 2..={}, summary:",
        RUNNING_PASSES
    );
    for (label, passes) in &running {
        summarise_running(label, passes);
    }
    println!("bench_updater: load after the passes: {}", load_average());

    for poll in ["2", "1"] {
        fast_path(&f, &proxy, &apps, poll).await;
    }
}

/// `/proc/loadavg`'s first three fields: the machine is shared, so say how busy it was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// One line per store: the median pass and where its time went.
fn summarise(label: &str, passes: &[&Pass]) {
    let median = |f: &dyn Fn(&Pass) -> f64| {
        let mut v: Vec<f64> = passes.iter().map(|p| f(p)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "bench_updater:   {label:<22} process {:.2} s, pass {:.0} ms, CPU {:.2} s | \
         bindings {:.0} ms, Cloud Controller done at {:.0} ms (waiting {:.0} ms, parsing {:.0} ms, \
         summed over requests), active/ listed at {:.0} ms, inactive/ at {:.0} ms, \
         planning {:.0} ms, applying {:.0} ms",
        median(&|p| p.wall.as_secs_f64()),
        median(&|p| p.phase("pass")),
        median(&|p| p.cpu_seconds),
        median(&|p| p.phase("bindings_read_ms")),
        median(&|p| p.phase("cloud_controller_read_ms")),
        median(&|p| p.cc_wait_ms),
        median(&|p| p.cc_parse_ms),
        median(&|p| p.phase("active_listed_ms")),
        median(&|p| p.phase("inactive_listed_ms")),
        median(&|p| p.phase("planning_ms")),
        median(&|p| p.phase("applying_ms")),
    );
}

/// Every target file in the bucket, key -> content (for the S3 stub).
async fn bucket_contents(f: &Fixture) -> BTreeMap<String, String> {
    let started = Instant::now();
    let mut objects = BTreeMap::new();
    for state in TargetState::ALL {
        let listed = f.store.list_apps(state).await.unwrap();
        let mut readers = tokio::task::JoinSet::new();
        for chunk in listed.chunks(listed.len().div_ceil(16).max(1)) {
            let (store, apps) = (f.store.clone(), chunk.to_vec());
            readers.spawn(async move {
                let mut read = Vec::new();
                for t in apps {
                    let (body, _) = store
                        .read_app(state, &t.app_guid)
                        .await
                        .unwrap()
                        .expect("listed");
                    read.push((
                        format!("{}{}/{}.json", store.prefix(), state.dir_name(), t.app_guid),
                        String::from_utf8(body.to_vec()).unwrap(),
                    ));
                }
                read
            });
        }
        let read = readers.join_all().await.into_iter().flatten();
        objects.extend(read);
    }
    println!(
        "bench_updater: copied the bucket ({} files) for the S3 stub in {:.1} s",
        objects.len(),
        started.elapsed().as_secs_f64()
    );
    objects
}

/// Every app GUID the simulator holds (before any fault is set).
pub(crate) async fn app_guids(f: &Fixture) -> Vec<String> {
    crate::harness::sim_app_guids(&f.sim.base_url).await
}

/// Binds the first app through the broker (to learn the parameters it records), then the
/// others directly in the database; removes the broker's file so the first pass writes
/// every file.
pub(crate) async fn bind_all(f: &Fixture, apps: &[String]) {
    let (status, body) = f.bind(INSTANCE, "b-0", &apps[0], Value::Null).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let db = Db::connect(
        &f.database_url,
        ConnectOptions {
            max_connections: 8,
            ..ConnectOptions::default()
        },
    )
    .await
    .unwrap();
    let parameters = db
        .binding("b-0")
        .await
        .unwrap()
        .expect("the broker's binding")
        .parameters;
    let started = Instant::now();
    let workers = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (db, parameters) = (db.clone(), parameters.clone());
        let mine: Vec<(usize, String)> = apps
            .iter()
            .enumerate()
            .skip(1)
            .filter(|(i, _)| i % workers == w)
            .map(|(i, a)| (i, a.clone()))
            .collect();
        tasks.spawn(async move {
            for (i, app) in mine {
                let mut tx = db.lock_app(&AppGuid::parse(&app).unwrap()).await.unwrap();
                let inserted = tx
                    .insert_binding(&NewBinding {
                        binding_id: format!("b-{i}"),
                        instance_id: INSTANCE.into(),
                        parameters: parameters.clone(),
                    })
                    .await
                    .unwrap();
                assert!(matches!(inserted, Insert::Created(_)), "{inserted:?}");
                tx.commit().await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert_eq!(db.all_bindings().await.unwrap().len(), APPS);
    db.close().await;
    f.store
        .remove_app(TargetState::Active, &AppGuid::parse(&apps[0]).unwrap())
        .await
        .unwrap();
    assert!(f.bucket_keys().await.is_empty());
    println!(
        "bench_updater: setup: {APPS} bindings recorded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Where the updater's store is: moto (through the counting proxy) or an S3 stub.
struct StoreEndpoint {
    url: String,
    bucket: String,
}

/// The updater's fixture, with its store at `store`.
fn updater_env(f: &Fixture, store: &StoreEndpoint) -> UpdaterEnv {
    UpdaterEnv::of(f).store(&store.url, &store.bucket)
}

struct Pass {
    summary: String,
    max_rss_kb: u64,
    /// Around the process, start-up included.
    wall: Duration,
    /// User + system CPU time of the process.
    cpu_seconds: f64,
    /// The pass' `pass phases` debug line (milliseconds since the pass started), plus
    /// `pass`: the pass' own duration.
    phases: Value,
    /// Summed over the Cloud Controller responses: waiting for them, and parsing them.
    cc_wait_ms: f64,
    cc_parse_ms: f64,
}

impl Pass {
    fn phase(&self, name: &str) -> f64 {
        self.phases[name].as_f64().unwrap_or(f64::NAN)
    }
}

/// One `updater --once` under `/usr/bin/time`, with its figures printed. Store requests
/// are counted when the store is reached through `proxy`.
async fn measured_pass(
    f: &Fixture,
    store: &StoreEndpoint,
    proxy: Option<&CountingProxy>,
    what: &str,
) -> Pass {
    f.sim_control(Method::DELETE, "/sim/requests", json!({}))
        .await;
    if let Some(proxy) = proxy {
        proxy.reset();
    }
    // The phase timings and the Cloud Controller responses, at debug level.
    let env = updater_env(f, store).set(
        "RUST_LOG",
        "warn,gds_engine::reconciler=debug,gds_cf::client=debug",
    );
    let started = Instant::now();
    let output = tokio::process::Command::new("/usr/bin/time")
        .args(["-f", "bench-max-rss-kb=%M bench-cpu=%U+%S"])
        .arg(bin_path("updater"))
        .arg("--once")
        .env_clear()
        .envs(env.vars())
        .output()
        .await
        .expect("/usr/bin/time and the updater run");
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{what}: {stdout}\n{stderr}");
    let summary = stdout
        .lines()
        .find(|l| l.contains("pass succeeded"))
        .unwrap_or_else(|| panic!("{what}: no summary in {stdout}"))
        .to_owned();
    let time_line = stderr
        .lines()
        .find(|l| l.starts_with("bench-max-rss-kb="))
        .unwrap_or_else(|| panic!("{what}: no /usr/bin/time line in {stderr}"));
    let field = |name: &str| {
        time_line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .unwrap_or_else(|| panic!("{what}: no {name} in {time_line}"))
    };
    let max_rss_kb: u64 = field("bench-max-rss-kb=").parse().unwrap();
    let cpu_seconds: f64 = field("bench-cpu=")
        .split('+')
        .map(|t| t.parse::<f64>().unwrap())
        .sum();
    let logs: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let mut phases = logs
        .iter()
        .find(|l| l["message"] == "pass phases")
        .cloned()
        .unwrap_or_else(|| panic!("{what}: no phase timings in {stderr}"));
    let pass_ms: f64 = summary
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(" ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(f64::NAN);
    phases["pass"] = json!(pass_ms);
    let responses: Vec<&Value> = logs
        .iter()
        .filter(|l| l["message"] == "Cloud Controller response")
        .collect();
    let sum = |key: &str| {
        responses
            .iter()
            .filter_map(|l| l[key].as_f64())
            .sum::<f64>()
    };
    let (cc_wait_ms, cc_parse_ms) = (sum("wait_ms"), sum("parse_ms"));
    let cc = f
        .sim_control(Method::GET, "/sim/requests", Value::Null)
        .await;
    println!("bench_updater: {what}: {}", summary.trim());
    println!(
        "bench_updater: {what}: wall time {:.2} s (process, start-up included), CPU {:.2} s \
         (user+system)",
        wall.as_secs_f64(),
        cpu_seconds
    );
    let ms = |name: &str| phases[name].as_f64().unwrap_or(f64::NAN);
    println!(
        "bench_updater: {what}: since the pass started: bindings read at {:.0} ms; Cloud \
         Controller answered at {:.0} ms ({} responses: {:.0} ms waiting, {:.0} ms parsing, \
         summed); active/ listed at {:.0} ms; inactive/ at {:.0} ms; then planning {:.0} ms, \
         applying {:.0} ms",
        ms("bindings_read_ms"),
        ms("cloud_controller_read_ms"),
        responses.len(),
        cc_wait_ms,
        cc_parse_ms,
        ms("active_listed_ms"),
        ms("inactive_listed_ms"),
        ms("planning_ms"),
        ms("applying_ms"),
    );
    println!(
        "bench_updater: {what}: Cloud Controller requests {} (+{} UAA): {}",
        cc["total_cc"], cc["total_uaa"], cc["by_endpoint"]
    );
    if let Some(proxy) = proxy {
        assert!(!proxy.unparsed.load(Ordering::Relaxed), "a chunked request");
        println!(
            "bench_updater: {what}: store requests {}: {:?}",
            proxy.requests.load(Ordering::Relaxed),
            proxy.by_kind.lock().unwrap()
        );
    }
    Pass {
        summary,
        max_rss_kb,
        wall,
        cpu_seconds,
        phases,
        cc_wait_ms,
        cc_parse_ms,
    }
}

/// How store requests are counted: by the proxy in front of moto, or by the stub itself
/// (listings only: a no-change pass reads no file).
enum Requests<'a> {
    Proxy(&'a CountingProxy),
    Stub(&'a S3Stub),
}

impl Requests<'_> {
    fn take(&self) -> String {
        match self {
            Requests::Proxy(proxy) => {
                let n = proxy.requests.load(Ordering::Relaxed);
                let kinds = format!("{:?}", proxy.by_kind.lock().unwrap());
                proxy.reset();
                format!("{n} {kinds}")
            }
            Requests::Stub(stub) => format!(
                "{} (listing pages)",
                stub.list_requests.swap(0, Ordering::Relaxed)
            ),
        }
    }
}

/// One full pass of the running updater, from its log.
struct RunningPass {
    pass_ms: f64,
    active_listed_ms: f64,
    inactive_listed_ms: f64,
    ranges: String,
    store_requests: String,
}

/// The running updater (`UPDATE_TARGETS_RATE_SECONDS`, the fast path off) for
/// `RUNNING_PASSES` full passes with nothing to change, each printed with its store
/// requests (counted between the end of one pass and the end of the next: the updater
/// makes none in between).
async fn running_passes(
    f: &Fixture,
    store: &StoreEndpoint,
    requests: Requests<'_>,
    label: &str,
) -> Vec<RunningPass> {
    use tokio::io::AsyncBufReadExt;
    requests.take();
    let mut child = updater_env(f, store)
        .with(&[
            ("UPDATE_TARGETS_RATE_SECONDS", RUNNING_RATE_SECONDS),
            ("AUDIT_EVENTS_POLL_SECONDS", "0"),
            (
                "RUST_LOG",
                "warn,gds_engine::reconciler=debug,gds_cf::client=info",
            ),
        ])
        .command(&[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the updater starts");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut passes = Vec::new();
    let mut phases = Value::Null;
    let mut ranges = Vec::new();
    let started = Instant::now();
    while passes.len() < RUNNING_PASSES {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("running updater, {label}: no log line for 120 s"))
            .unwrap()
            .unwrap_or_else(|| panic!("running updater, {label}: exited"));
        let Ok(log) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let message = log["message"].as_str().unwrap_or_default();
        if message == "pass phases" && log["scope"] == "full" {
            phases = log.clone();
        } else if message == "listed" {
            ranges.push(format!(
                "{}/ {}",
                log["state"].as_str().unwrap_or("?"),
                log["ranges"]
            ));
        } else if message.starts_with("full pass ") {
            assert!(
                message.contains("full pass succeeded")
                    && message.contains(": 0 action(s) applied"),
                "running updater, {label}: {message}"
            );
            let pass_ms: f64 = message
                .split(" in ")
                .nth(1)
                .and_then(|rest| rest.split(" ms").next())
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(f64::NAN);
            ranges.sort();
            let pass = RunningPass {
                pass_ms,
                active_listed_ms: phases["active_listed_ms"].as_f64().unwrap_or(f64::NAN),
                inactive_listed_ms: phases["inactive_listed_ms"].as_f64().unwrap_or(f64::NAN),
                ranges: ranges.join(", "),
                store_requests: requests.take(),
            };
            ranges.clear();
            println!(
                "bench_updater: running updater, {label}, full pass {} (at {:.1} s): {:.0} ms; \
                 active/ listed at {:.0} ms, inactive/ at {:.0} ms; ranges {}; store \
                 requests {}",
                passes.len() + 1,
                started.elapsed().as_secs_f64(),
                pass.pass_ms,
                pass.active_listed_ms,
                pass.inactive_listed_ms,
                pass.ranges,
                pass.store_requests,
            );
            passes.push(pass);
        }
    }
    // The pass has logged its summary but may not have released the reconcile lease yet:
    // killed now, the next updater would wait for the lease to expire.
    tokio::time::sleep(Duration::from_secs(2)).await;
    child.kill().await.unwrap();
    passes
}

/// The running updater's passes from the second on (those with range boundaries).
fn summarise_running(label: &str, passes: &[RunningPass]) {
    let later = &passes[1..];
    let range = |values: Vec<f64>| {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{min:.0}–{max:.0} ms")
    };
    println!(
        "bench_updater:   {label}: pass {} (first pass {:.0} ms); active/ listed at {}; \
         store requests per pass: {}",
        range(later.iter().map(|p| p.pass_ms).collect()),
        passes[0].pass_ms,
        range(later.iter().map(|p| p.active_listed_ms).collect()),
        later
            .iter()
            .map(|p| p.store_requests.as_str())
            .collect::<Vec<_>>()
            .join("; "),
    );
}

/// The running updater's fast path with `AUDIT_EVENTS_POLL_SECONDS=poll`: SCALES scales,
/// each timed from the control request to the rewritten file in the bucket.
async fn fast_path(f: &Fixture, proxy: &CountingProxy, apps: &[String], poll: &str) {
    let moto = StoreEndpoint {
        url: proxy.endpoint.clone(),
        bucket: f.store.bucket().to_owned(),
    };
    let updater: Running = updater_env(f, &moto)
        .with(&[
            // No scheduled pass during the measurement (besides the one at start).
            ("UPDATE_TARGETS_SCHEDULE", "0 0 0 1 1 *"),
            ("AUDIT_EVENTS_POLL_SECONDS", poll),
        ])
        .start();
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let text = http
            .get(format!("{}/metrics", updater.base_url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if text.contains("gds_updater_passes_total{outcome=\"ok\",scope=\"full\"} 1") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no full pass at start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut delays = Vec::new();
    // Started apps with a file in active/, spread over the world.
    let mut candidates = apps.iter().skip(poll.len() * 17).step_by(APPS / 40);
    while delays.len() < SCALES {
        let app = candidates.next().expect("enough started apps");
        let Some(now) = f.file(TargetState::Active, app).await else {
            continue;
        };
        let instances = serde_json::from_slice::<Vec<Value>>(&now).unwrap().len() + 1;
        let scaled = Instant::now();
        f.sim_control(
            Method::POST,
            &format!("/sim/apps/{app}/scale"),
            json!({ "instances": instances }),
        )
        .await;
        loop {
            let file = f.file(TargetState::Active, app).await;
            if file.is_some_and(|b| {
                serde_json::from_slice::<Vec<Value>>(&b).is_ok_and(|g| g.len() == instances)
            }) {
                break;
            }
            assert!(
                scaled.elapsed() < Duration::from_secs(60),
                "the scale of {app} never reached the bucket"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        delays.push(scaled.elapsed());
    }
    let max = delays.iter().max().unwrap();
    println!(
        "bench_updater: fast path (AUDIT_EVENTS_POLL_SECONDS={poll}): scale -> rewritten file: \
         {} s; max {:.2} s",
        delays
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", "),
        max.as_secs_f64()
    );
}

/// A TCP proxy to the S3 server that counts HTTP/1.1 requests by method and first query
/// parameter (e.g. `GET ?list-type` for a listing page, `PUT` for a write).
struct CountingProxy {
    endpoint: String,
    requests: Arc<AtomicU64>,
    by_kind: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Set when a request had a body the proxy cannot delimit (chunked).
    unparsed: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingProxy {
    async fn start(upstream: &str) -> CountingProxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU64::new(0));
        let by_kind = Arc::new(Mutex::new(BTreeMap::new()));
        let unparsed = Arc::new(AtomicBool::new(false));
        let task = {
            let (requests, by_kind, unparsed) =
                (requests.clone(), by_kind.clone(), unparsed.clone());
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        continue;
                    };
                    let upstream = upstream.clone();
                    let (requests, by_kind, unparsed) =
                        (requests.clone(), by_kind.clone(), unparsed.clone());
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let (mut client_read, mut client_write) = client.into_split();
                        let (server_read, mut server_write) = server.into_split();
                        tokio::spawn(async move {
                            let mut server_read = server_read;
                            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                        });
                        let _ = forward_requests(
                            &mut client_read,
                            &mut server_write,
                            |kind| {
                                requests.fetch_add(1, Ordering::Relaxed);
                                *by_kind.lock().unwrap().entry(kind).or_insert(0) += 1;
                            },
                            &unparsed,
                        )
                        .await;
                        let _ = server_write.shutdown().await;
                    });
                }
            })
        };
        CountingProxy {
            endpoint,
            requests,
            by_kind,
            unparsed,
            task,
        }
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.by_kind.lock().unwrap().clear();
    }
}

/// Copies requests from `from` to `to`, calling `count` once per request head.
async fn forward_requests(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    mut count: impl FnMut(String),
    unparsed: &AtomicBool,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // A whole request head.
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = from.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default();
        let target = request_line.next().unwrap_or_default();
        let kind = match target.split_once('?') {
            Some((_, query)) => {
                let first = query.split('&').next().unwrap_or_default();
                format!("{method} ?{}", first.split('=').next().unwrap_or_default())
            }
            None => method.to_owned(),
        };
        count(kind);
        let mut length = 0usize;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim().to_ascii_lowercase();
            if name == "content-length" {
                length = value.trim().parse().unwrap_or(0);
            } else if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked")
            {
                unparsed.store(true, Ordering::Relaxed);
            }
        }
        to.write_all(&buf[..end]).await?;
        buf.drain(..end);
        // Its body.
        let mut left = length;
        while left > 0 {
            if buf.is_empty() {
                let n = from.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let take = left.min(buf.len());
            to.write_all(&buf[..take]).await?;
            buf.drain(..take);
            left -= take;
        }
    }
}

/// The S3 stub serving `objects` in [`STUB_BUCKET`], `latency_ms` per listing page and a
/// fifth of that per read, and the store endpoint pointing at it.
async fn start_stub(
    objects: &BTreeMap<String, String>,
    latency_ms: u64,
) -> (S3Stub, StoreEndpoint) {
    let latency = Latency {
        list_page: Duration::from_millis(latency_ms),
        get: Duration::from_millis(latency_ms / 5),
    };
    let stub = S3Stub::start(STUB_BUCKET, objects.clone(), latency).await;
    let store = StoreEndpoint {
        url: stub.url.clone(),
        bucket: STUB_BUCKET.to_owned(),
    };
    (stub, store)
}
