//! Bind latency and throughput of the real broker against the CF simulator with 5 ms of
//! added latency on every Cloud Controller request. A benchmark, not a timed test:
//! ignored unless asked for (`make bench`), it prints figures and asserts only that every
//! request succeeded. Record results in docs/BENCHMARKS.md.
//!
//! Each run: an open-loop phase offering binds at a fixed rate (latency
//! measured from each request's scheduled start, so a slow broker cannot hide queueing),
//! then the same for unbinds, then a closed-loop phase measuring the most binds per second
//! at a fixed concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::broker::support::*;

/// Offered load of the open-loop phases (the target: p99 <= 50 ms at 200/s).
const RATE_PER_SECOND: u64 = 200;
/// Offered load against the S3 test server: moto, a Python server, answers about 200
/// requests per second in all, so it, not the broker, would be measured at 200 binds/s.
const S3_RATE_PER_SECOND: u64 = 100;
/// Length of each open-loop phase.
const PHASE: Duration = Duration::from_secs(10);
/// Requests in flight in the closed-loop phase.
const CONCURRENCY: usize = 32;
/// Binds in the closed-loop phase.
const CLOSED_LOOP_BINDS: usize = 2000;
/// Binds before measuring (UAA token, connection pools, prepared statements).
const WARM_UP: usize = 200;
/// Warm-up binds in flight at once.
const WARM_UP_CONCURRENCY: usize = 10;
/// Latency added to every Cloud Controller request.
const CC_DELAY_MS: u64 = 5;
/// Apps in the simulator. The simulator answers `?app_guids=` filters by scanning every
/// process and route under one lock (about 1.5 ms each with 4000 apps, which caps it near
/// 200 binds/s on this machine); a real Cloud Controller uses indexes. So the benchmark
/// keeps the world small and binds each app several times (distinct binding ids), which
/// also exercises the lock and the "already bound" path.
const SEEDED_APPS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with make bench"]
async fn bench_broker_binds_postgres_s3() {
    bench(Database::Postgres, Store::S3, S3_RATE_PER_SECOND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with make bench"]
async fn bench_broker_binds_postgres_local_directory() {
    bench(Database::Postgres, Store::Directory, RATE_PER_SECOND).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with make bench"]
async fn bench_broker_binds_sqlite_local_directory() {
    bench(Database::Sqlite, Store::Directory, RATE_PER_SECOND).await;
}

#[derive(Clone, Copy, Debug)]
enum Store {
    /// The S3-compatible test server (moto, a Python server: slower than S3 itself).
    S3,
    /// `ENVIRONMENT=local`: files in a directory (on tmpfs), written atomically.
    Directory,
}

/// Every app GUID the simulator holds.
async fn app_guids(f: &Fixture) -> Vec<String> {
    crate::harness::sim_app_guids(&f.sim.base_url).await
}

struct Figures {
    latencies: Vec<Duration>,
    elapsed: Duration,
    failures: usize,
}

impl Figures {
    fn report(mut self, what: &str) -> usize {
        self.latencies.sort();
        let n = self.latencies.len();
        let at = |q: f64| {
            let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            self.latencies[i].as_secs_f64() * 1000.0
        };
        println!(
            "  {what}: {n} requests in {:.2} s = {:.1}/s; latency p50 {:.1} ms, p90 {:.1} ms, \
             p99 {:.1} ms, max {:.1} ms; failures {}",
            self.elapsed.as_secs_f64(),
            n as f64 / self.elapsed.as_secs_f64(),
            at(0.50),
            at(0.90),
            at(0.99),
            at(1.0),
            self.failures
        );
        self.failures
    }
}

/// Sends `requests` at `rate` per second, each at its scheduled time, and measures each
/// from that time.
async fn open_loop<F, Fut>(count: usize, rate: u64, request: F) -> Figures
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let scheduled = start + interval * i as u32;
        let fut = request(i);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(scheduled).await;
            let ok = fut.await;
            (scheduled.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    let mut failures = 0;
    for task in tasks {
        let (latency, ok) = task.await.expect("a request task");
        latencies.push(latency);
        failures += usize::from(!ok);
    }
    Figures {
        latencies,
        elapsed: start.elapsed(),
        failures,
    }
}

async fn bench(db: Database, store: Store, rate: u64) {
    let offered = (rate * PHASE.as_secs()) as usize;
    // On tmpfs where there is one: this VM's disk takes about 5 ms per fsync, and the
    // directory store fsyncs every file, which would measure the disk, not the broker
    // (production writes to S3).
    let targets = match std::path::Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm"),
        false => tempfile::tempdir(),
    }
    .unwrap();
    let mut env = vec![
        // Three look-ups per bind in parallel, 5 ms each: the default of 4 requests in
        // flight would cap binds at about 250/s whatever the broker does.
        ("CF_MAX_CONCURRENCY".to_owned(), "64".to_owned()),
        ("DATABASE_MAX_CONNECTIONS".to_owned(), "20".to_owned()),
    ];
    if let Store::Directory = store {
        env.push(("ENVIRONMENT".into(), "local".into()));
        env.push(("TARGETS_PATH".into(), targets.path().display().to_string()));
    }
    let f = Arc::new(
        Fixture::start_with(
            db,
            Options {
                sim_args: vec![
                    "--seed-apps".into(),
                    SEEDED_APPS.to_string(),
                    "--seed-spaces".into(),
                    "20".into(),
                ],
                env,
            },
        )
        .await,
    );
    let apps = Arc::new(app_guids(&f).await);
    assert_eq!(apps.len(), SEEDED_APPS);
    assert_eq!(f.provision("si-bench").await.0, StatusCode::CREATED);
    f.sim_control(
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3", "delay_ms": CC_DELAY_MS, "count": 0}),
    )
    .await;

    println!(
        "\nbroker bench: {db:?}, store {store:?} ({}), Cloud Controller +{CC_DELAY_MS} ms per \
         request, {} seeded apps",
        match store {
            Store::S3 => "moto".to_owned(),
            Store::Directory => targets.path().display().to_string(),
        },
        apps.len()
    );
    // Requests as the platform sends them; a transport error counts as a failure.
    let bind = {
        let (f, apps) = (f.clone(), apps.clone());
        move |i: usize| {
            let request = f
                .osb(Method::PUT, &binding_path("si-bench", &format!("b-{i}")))
                .json(&bind_body(&apps[i % apps.len()], Value::Null));
            async move {
                request
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::CREATED)
            }
        }
    };
    let unbind = {
        let f = f.clone();
        move |i: usize| {
            let request = f.osb(
                Method::DELETE,
                &format!(
                    "{}?accepts_incomplete=true&plan_id={PLAN_ID}&service_id={SERVICE_ID}",
                    binding_path("si-bench", &format!("b-{i}"))
                ),
            );
            async move {
                request
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == StatusCode::OK)
            }
        }
    };
    // Warm up as a service in steady state is: a few binds at a time, so that the
    // connection pools (database, Cloud Controller) hold what the load below needs.
    for chunk in (0..WARM_UP).collect::<Vec<_>>().chunks(WARM_UP_CONCURRENCY) {
        let warm: Vec<_> = chunk.iter().map(|&i| tokio::spawn(bind(i))).collect();
        for (k, task) in warm.into_iter().enumerate() {
            assert!(task.await.unwrap(), "warm-up bind {}", chunk[k]);
        }
    }

    let mut failures = 0;
    failures += open_loop(offered, rate, |i| bind(WARM_UP + i))
        .await
        .report(&format!("bind, open loop at {rate}/s offered"));
    failures += open_loop(offered, rate, |i| unbind(WARM_UP + i))
        .await
        .report(&format!("unbind, open loop at {rate}/s offered"));

    // Closed loop: CONCURRENCY clients, each sending its next bind when the last returns.
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CONCURRENCY {
        let next = next.clone();
        let bind = bind.clone();
        clients.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if k >= CLOSED_LOOP_BINDS {
                    break mine;
                }
                let t = Instant::now();
                let ok = bind(WARM_UP + offered + k).await;
                mine.push((t.elapsed(), ok));
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut closed_failures = 0;
    for client in clients {
        for (latency, ok) in client.await.expect("a client") {
            latencies.push(latency);
            closed_failures += usize::from(!ok);
        }
    }
    failures += Figures {
        latencies,
        elapsed: started.elapsed(),
        failures: closed_failures,
    }
    .report(&format!("bind, closed loop, {CONCURRENCY} in flight"));
    assert_eq!(failures, 0, "every request succeeded");
}
