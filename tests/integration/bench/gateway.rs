//! `make bench`: the scrape gateway (sd-sync `--scrape-listen`) beside the shipped nginx
//! forward proxy (`manifests/nginx/forward-proxy.conf`), on the same machine, in front of
//! the same upstream, with the same load. Figures printed, no timed assertion.
//!
//! - **Upstream**: a TLS server in this process (actix-web + rustls, two workers, the test
//!   CA of [`TestPki`]) answering every path with one fixed Prometheus text exposition,
//!   gzip'd to about 50 KB (`Content-Encoding: gzip`) when the request accepts gzip. Not
//!   cf-sim's router: that one answers a few hundred bytes of text, never gzip, and records
//!   every request under a lock. It counts connections and checks that each scrape carries
//!   `X-CF-APP-INSTANCE: G:I` and `Authorization: Bearer G`.
//! - **Gateway**: the real sd-sync (release) with 10,000 target files of two instances
//!   each (20,000 targets, 10,000 route hosts) from the in-memory S3 stub, pinned to the
//!   upstream (`--scrape-router`), verifying it (`--scrape-ca-file`), default pool
//!   settings.
//! - **nginx**: Debian's, the shipped server block with the upstream set to the same
//!   server, `worker_processes auto` (Debian's default), and verification of the upstream
//!   with the same CA (`proxy_ssl_verify on; proxy_ssl_trusted_certificate`, in `http {}`:
//!   the shipped file verifies nothing).
//! - **Load**: Prometheus-like scrapes (absolute-form `GET http://HOST/metrics?cf_app_guid=..`,
//!   `Accept-Encoding: gzip`, Prometheus' `Accept` and timeout header) at a fixed offered
//!   rate (open loop, default 2,000/s), each target in turn in a fixed shuffled order, so
//!   that every target is scraped once per round (20,000 targets at 2,000/s: a 10 s scrape
//!   interval). One round of warm-up (pools filled, as in a running Prometheus), then the
//!   measured run. Connections to the proxy are shared by all targets and kept alive, as
//!   Prometheus' Go client does for `http` targets behind an `http` proxy (its pool key is
//!   the proxy alone), growing when all are busy. A latency is from the moment the request
//!   is handed to a connection to the last byte of the body; the dispatch lag (how late a
//!   request left against its schedule) is printed to show whether the generator kept up.
//!   The direct run scrapes the upstream itself over TLS with the headers a proxy adds:
//!   the baseline that "added latency" is measured against. Then a closed loop (default
//!   32 requests in flight) for the maximum throughput.
//! - **CPU**: user + system time of the proxy's processes (sd-sync; nginx's master and
//!   workers) over the measured run, per 1,000 scrapes; sd-sync's includes its idle polls
//!   of the 10,000 objects (printed alone beforehand). **RSS**: VmRSS after the run and
//!   VmHWM (peak); nginx's summed over its processes.
//!
//! The binaries must be built first (`make bench` does; `cargo build --release --workspace
//! --bins`). `GDS_BENCH_GATEWAY_RATE` (default 2000), `GDS_BENCH_GATEWAY_SECONDS` (measured, default
//! 20), `GDS_BENCH_GATEWAY_TARGETS` (how many of the 20,000 targets the load goes round,
//! default all), `GDS_BENCH_GATEWAY_CONCURRENCY` (closed loop, default 32),
//! `GDS_BENCH_GATEWAY_FILES` (target files of two instances installed, default 10,000).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use bytes::Bytes;
use http::{HeaderValue, Request, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::gateway::query;
use crate::harness::group_members;
use crate::proxy::{NginxSettings, start_nginx_with};
use crate::sd_sync::s3_stub::{Latency, S3Stub};
use crate::sd_sync::{SdSync, TargetDirs, eventually, guid, sd_sync_command, target_file};
use crate::tls::TestPki;

/// Target files in the bucket; two instances each.
/// Target files installed (`GDS_BENCH_GATEWAY_FILES`, default 10,000: 20,000 targets).
fn files() -> usize {
    setting("GDS_BENCH_GATEWAY_FILES", 10_000.0) as usize
}
const INSTANCES: usize = 2;
/// The compressed exposition's size.
const BODY_BYTES: usize = 50 * 1024;

fn setting(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A Prometheus text exposition whose gzip'd form is about `BODY_BYTES`: histograms of a
/// web app with pseudo-random counts (real pages compress about as well).
fn exposition() -> (Bytes, Bytes) {
    let page = |series: usize| {
        let mut text = String::new();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        text.push_str("# HELP http_request_duration_seconds Time spent serving requests.\n");
        text.push_str("# TYPE http_request_duration_seconds histogram\n");
        let buckets = [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf",
        ];
        let mut n = 0;
        while n < series {
            let route = next() % 500;
            let status = [200, 201, 204, 301, 400, 404, 500][(next() % 7) as usize];
            let mut count = 0;
            for le in buckets {
                count += next() % 1000;
                text.push_str(&format!(
                    "http_request_duration_seconds_bucket{{method=\"GET\",route=\"/api/v1/items/{route}\",status=\"{status}\",le=\"{le}\"}} {count}\n"
                ));
            }
            text.push_str(&format!(
                "http_request_duration_seconds_sum{{method=\"GET\",route=\"/api/v1/items/{route}\",status=\"{status}\"}} {}.{:03}\n",
                next() % 100_000,
                next() % 1000
            ));
            text.push_str(&format!(
                "http_request_duration_seconds_count{{method=\"GET\",route=\"/api/v1/items/{route}\",status=\"{status}\"}} {count}\n"
            ));
            n += buckets.len() + 2;
        }
        text
    };
    // Size the page from a sample's compression ratio.
    let sample = page(2_000);
    let ratio = sample.len() as f64 / gzip(sample.as_bytes()).len() as f64;
    let text = page((2_000.0 * BODY_BYTES as f64 * ratio / sample.len() as f64) as usize);
    let gz = gzip(text.as_bytes());
    (Bytes::from(text), Bytes::from(gz))
}

/// `gzip -6`, Debian's.
fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .args(["-c", "-6"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip runs");
    let mut stdin = child.stdin.take().unwrap();
    let data = data.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success());
    output.stdout
}

/// What the upstream serves and counts.
struct Served {
    text: Bytes,
    gzip: Bytes,
    connections: AtomicU64,
    requests: AtomicU64,
    /// Requests without the platform's headers, or with a bearer not of their app.
    bad: AtomicU64,
}

async fn scrape_page(req: HttpRequest, served: web::Data<Served>) -> HttpResponse {
    served.requests.fetch_add(1, Ordering::Relaxed);
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let instance = header("x-cf-app-instance").unwrap_or("");
    let guid = instance.split(':').next().unwrap_or("");
    if guid.len() != 36 || header("authorization") != Some(&format!("Bearer {guid}")) {
        served.bad.fetch_add(1, Ordering::Relaxed);
    }
    let gzip = header("accept-encoding").is_some_and(|v| v.contains("gzip"));
    let mut response = HttpResponse::Ok();
    response.insert_header(("content-type", "text/plain; version=0.0.4; charset=utf-8"));
    if gzip {
        response
            .insert_header(("content-encoding", "gzip"))
            .body(served.gzip.clone())
    } else {
        response.body(served.text.clone())
    }
}

/// The TLS upstream on a free loopback port; keep-alive 120 s (gorouter keeps idle
/// client connections 900 s), so that pooled connections survive a round.
fn start_upstream(
    pki: &TestPki,
    served: web::Data<Served>,
) -> (SocketAddr, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let counted = served.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(served.clone())
            .default_service(web::to(scrape_page))
    })
    .workers(2)
    .backlog(4096)
    .keep_alive(Duration::from_secs(120))
    .on_connect(move |_, _| {
        counted.connections.fetch_add(1, Ordering::Relaxed);
    })
    .listen_rustls_0_23(listener, pki.server_config())
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, handle)
}

/// One scrapeable target.
#[derive(Clone)]
struct Target {
    host: String,
    guid: String,
    index: usize,
}

fn targets() -> Vec<Target> {
    (0..files())
        .flat_map(|n| {
            (0..INSTANCES).map(move |index| Target {
                host: format!("app-{n}.apps.example.com"),
                guid: guid(n),
                index,
            })
        })
        .collect()
}

/// Where the load generator's connections go.
enum Dial {
    /// A forward proxy: plain HTTP, absolute-form requests.
    Proxy(SocketAddr),
    /// The upstream itself, over TLS.
    Direct {
        addr: SocketAddr,
        connector: tokio_rustls::TlsConnector,
    },
}

/// Keep-alive connections shared by every target, most recently used first; a new one
/// when none is idle (Go's `http.Transport` with Prometheus' settings: no limit).
struct Pool {
    dial: Dial,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
    opened: AtomicU64,
}

/// One scrape's outcome.
struct Sample {
    /// From the request's scheduled start to its hand-over to a connection.
    lag: Duration,
    /// From the hand-over to the body's last byte.
    latency: Duration,
    done: Instant,
    /// `None`: 200 with the gzip'd page; else what went wrong.
    error: Option<String>,
}

impl Pool {
    fn new(dial: Dial) -> Arc<Pool> {
        Arc::new(Pool {
            dial,
            idle: Mutex::new(Vec::new()),
            opened: AtomicU64::new(0),
        })
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let addr = match &self.dial {
            Dial::Proxy(addr) | Dial::Direct { addr, .. } => *addr,
        };
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let sender = match &self.dial {
            Dial::Proxy(_) => {
                let (sender, connection) = http1::handshake(TokioIo::new(tcp))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                sender
            }
            Dial::Direct { connector, .. } => {
                let name = ServerName::try_from("direct.apps.example.com").unwrap();
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                let (sender, connection) = http1::handshake(TokioIo::new(tls))
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                sender
            }
        };
        Ok(sender)
    }

    /// A ready connection: an idle one, else a new one.
    async fn checkout(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        loop {
            let idle = self.idle.lock().unwrap().pop();
            let Some(mut sender) = idle else {
                return self.connect().await;
            };
            // Closed by the server meanwhile (nginx ends a connection after 1,000 requests).
            if sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
    }

    /// A scrape of `target` as Prometheus sends it; the body read whole.
    async fn scrape(&self, target: &Target, expected: usize) -> Result<(), String> {
        let mut sender = self.checkout().await?;
        let (uri, instance_headers) = match self.dial {
            Dial::Proxy(_) => (
                format!(
                    "http://{}/metrics?{}",
                    target.host,
                    query(&target.guid, target.index as u32)
                ),
                false,
            ),
            Dial::Direct { .. } => ("/metrics".to_owned(), true),
        };
        let mut request = Request::get(uri.parse::<Uri>().unwrap())
            .header(header::HOST, &target.host)
            .header(
                header::ACCEPT,
                "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1",
            )
            .header(header::ACCEPT_ENCODING, "gzip")
            .header(header::USER_AGENT, "Prometheus/3.5.0")
            .header("x-prometheus-scrape-timeout-seconds", "10");
        if instance_headers {
            request = request
                .header(
                    "x-cf-app-instance",
                    format!("{}:{}", target.guid, target.index),
                )
                .header(header::AUTHORIZATION, format!("Bearer {}", target.guid));
        }
        let response = sender
            .send_request(request.body(Empty::new()).unwrap())
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = response.status();
        let gzip = response.headers().get(header::CONTENT_ENCODING)
            == Some(&HeaderValue::from_static("gzip"));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        self.idle.lock().unwrap().push(sender);
        if status != 200 || !gzip || body.len() != expected {
            return Err(format!(
                "{status}, gzip {gzip}, {} bytes: {}",
                body.len(),
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
        Ok(())
    }
}

/// Scrapes offered at `rate` per second for `seconds`, going round `targets` from
/// `start` (so that a measured run continues where the warm-up stopped).
async fn open_loop(
    pool: &Arc<Pool>,
    targets: &Arc<Vec<Target>>,
    start: usize,
    rate: f64,
    seconds: f64,
    expected: usize,
) -> (Vec<Sample>, Duration) {
    let count = (rate * seconds) as usize;
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for i in 0..count {
        let due = began + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (pool, targets) = (pool.clone(), targets.clone());
        tasks.push(tokio::spawn(async move {
            let handed = Instant::now();
            let target = &targets[(start + i) % targets.len()];
            let outcome = pool.scrape(target, expected).await;
            let done = Instant::now();
            Sample {
                lag: handed - due,
                latency: done - handed,
                done,
                error: outcome.err(),
            }
        }));
    }
    let mut samples = Vec::with_capacity(count);
    for task in tasks {
        samples.push(task.await.unwrap());
    }
    let last = samples.iter().map(|s| s.done).max().unwrap_or(began);
    (samples, last - began)
}

/// `concurrency` scrapes in flight for `seconds`: the maximum throughput.
async fn closed_loop(
    pool: &Arc<Pool>,
    targets: &Arc<Vec<Target>>,
    concurrency: usize,
    seconds: f64,
    expected: usize,
) -> (Vec<Sample>, Duration) {
    let began = Instant::now();
    let until = began + Duration::from_secs_f64(seconds);
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (pool, targets, next) = (pool.clone(), targets.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < until {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let handed = Instant::now();
                let outcome = pool.scrape(&targets[i % targets.len()], expected).await;
                let done = Instant::now();
                samples.push(Sample {
                    lag: Duration::ZERO,
                    latency: done - handed,
                    done,
                    error: outcome.err(),
                });
            }
            samples
        }));
    }
    let mut samples = Vec::new();
    for worker in workers {
        samples.extend(worker.await.unwrap());
    }
    (samples, began.elapsed())
}

/// The processes a proxy runs as: sd-sync alone, or nginx's process group.
enum Processes {
    One(u32),
    Group(u32),
}

impl Processes {
    fn pids(&self) -> Vec<u32> {
        match self {
            Processes::One(pid) => vec![*pid],
            Processes::Group(pgid) => group_members(*pgid),
        }
    }

    /// User plus system CPU seconds so far, over every process.
    fn cpu_seconds(&self) -> f64 {
        self.pids().iter().map(|pid| cpu_seconds(*pid)).sum()
    }

    /// `field` of /proc/PID/status (`VmRSS`, `VmHWM`), summed, in MiB.
    fn memory_mib(&self, field: &str) -> f64 {
        self.pids()
            .iter()
            .map(|pid| status_kib(*pid, field))
            .sum::<u64>() as f64
            / 1024.0
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command name in parentheses: fields 3.. ; utime and stime are 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0 // USER_HZ
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                l.strip_prefix(field)?
                    .strip_prefix(':')?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0)
}

fn this_process_cpu() -> f64 {
    cpu_seconds(std::process::id())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * p / 100.0).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A run's figures.
struct Figures {
    name: &'static str,
    scrapes: usize,
    errors: Vec<String>,
    rate: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    lag_p99: Duration,
    cpu_per_1000: Option<f64>,
    rss_mib: Option<(f64, f64)>,
    generator_cpu_per_1000: f64,
    /// Opened during an open-loop run: by the load generator, and to the upstream.
    connections: Option<(u64, u64)>,
}

impl Figures {
    fn of(name: &'static str, samples: &[Sample], elapsed: Duration) -> Figures {
        let errors: Vec<String> = samples.iter().filter_map(|s| s.error.clone()).collect();
        let mut latencies: Vec<Duration> = samples
            .iter()
            .filter(|s| s.error.is_none())
            .map(|s| s.latency)
            .collect();
        latencies.sort();
        let mut lags: Vec<Duration> = samples.iter().map(|s| s.lag).collect();
        lags.sort();
        Figures {
            name,
            scrapes: samples.len(),
            rate: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            p999: percentile(&latencies, 99.9),
            lag_p99: percentile(&lags, 99.0),
            errors,
            cpu_per_1000: None,
            rss_mib: None,
            generator_cpu_per_1000: 0.0,
            connections: None,
        }
    }
}

/// The benchmark's world: the upstream, the load generator's settings, the targets.
struct World {
    served: web::Data<Served>,
    targets: Arc<Vec<Target>>,
    rate: f64,
    seconds: f64,
    concurrency: usize,
    expected: usize,
}

impl World {
    /// A warm-up round over every target (unmeasured), then `seconds` at `rate`
    /// (measured: latencies, and CPU of `processes` and of this process).
    async fn open(
        &self,
        name: &'static str,
        pool: &Arc<Pool>,
        processes: Option<&Processes>,
    ) -> Figures {
        let round = self.targets.len() as f64 / self.rate;
        let warm_up = if processes.is_some() { round } else { 2.0 };
        let (samples, _) =
            open_loop(pool, &self.targets, 0, self.rate, warm_up, self.expected).await;
        let warm_errors = samples.iter().filter(|s| s.error.is_some()).count();
        if warm_errors > 0 {
            println!("  ({name}: {warm_errors} errors during the warm-up)");
        }
        let start = samples.len();
        let opened = pool.opened.load(Ordering::Relaxed);
        let upstream = self.served.connections.load(Ordering::Relaxed);
        let cpu = processes.map(Processes::cpu_seconds);
        let generator = this_process_cpu();
        let load = load_average();
        let (samples, elapsed) = open_loop(
            pool,
            &self.targets,
            start,
            self.rate,
            self.seconds,
            self.expected,
        )
        .await;
        let mut figures = Figures::of(name, &samples, elapsed);
        let per_1000 = 1000.0 / samples.len() as f64;
        if let (Some(processes), Some(cpu)) = (processes, cpu) {
            figures.cpu_per_1000 = Some((processes.cpu_seconds() - cpu) * per_1000);
            figures.rss_mib = Some((processes.memory_mib("VmRSS"), processes.memory_mib("VmHWM")));
        }
        figures.generator_cpu_per_1000 = (this_process_cpu() - generator) * per_1000;
        figures.connections = Some((
            pool.opened.load(Ordering::Relaxed) - opened,
            self.served.connections.load(Ordering::Relaxed) - upstream,
        ));
        println!(
            "  {name}: open loop done ({} scrapes in {:.1} s, load average {load} before)",
            samples.len(),
            elapsed.as_secs_f64()
        );
        figures
    }

    /// The closed loop, with CPU per 1,000 scrapes.
    async fn closed(
        &self,
        name: &'static str,
        pool: &Arc<Pool>,
        processes: Option<&Processes>,
    ) -> Figures {
        let cpu = processes.map(Processes::cpu_seconds);
        let generator = this_process_cpu();
        let (samples, elapsed) = closed_loop(
            pool,
            &self.targets,
            self.concurrency,
            self.seconds.min(10.0),
            self.expected,
        )
        .await;
        let mut figures = Figures::of(name, &samples, elapsed);
        let per_1000 = 1000.0 / samples.len().max(1) as f64;
        if let (Some(processes), Some(cpu)) = (processes, cpu) {
            figures.cpu_per_1000 = Some((processes.cpu_seconds() - cpu) * per_1000);
        }
        figures.generator_cpu_per_1000 = (this_process_cpu() - generator) * per_1000;
        figures
    }
}

/// sd-sync with the gateway, its bucket the S3 stub (no latency), pinned to `upstream`.
async fn start_gateway(
    stub: &S3Stub,
    dirs: &TargetDirs,
    upstream: SocketAddr,
    pki: &TestPki,
) -> (SdSync, SocketAddr) {
    let args: Vec<String> = [
        "--mapping",
        &format!(
            "s3://gateway-bench/active/={}",
            dirs.dir("targets").display()
        ),
        "--s3-endpoint",
        &stub.url,
        "--listen",
        "127.0.0.1:0",
        "--scrape-listen",
        "127.0.0.1:0",
        "--scrape-router",
        &upstream.to_string(),
        "--scrape-ca-file",
        &pki.ca_file.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    let (child, base_url) =
        crate::harness::spawn_ready(sd_sync_command(&args, &[]), "sd-sync (gateway)");
    let pid = child.id();
    let sd_sync = SdSync {
        child,
        base_url,
        pid,
        authorization: None,
    };
    let targets = (files() * INSTANCES) as u64;
    eventually(
        &format!("the gateway has {targets} targets"),
        Duration::from_secs(300),
        async || sd_sync.health().await.1["gateway"]["targets"] == targets,
    )
    .await;
    let (_, health) = sd_sync.health().await;
    let addr = health["gateway"]["address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    (sd_sync, addr)
}

fn print_table(rows: &[&Figures], direct: &Figures) {
    println!(
        "| run | scrapes | achieved /s | p50 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | \
         proxy CPU s / 1,000 | proxy RSS MiB (peak) | generator CPU s / 1,000 | dispatch lag p99 ms | \
         connections to proxy / upstream | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for f in rows {
        let added = |a: Duration, b: Duration| ms(a) - ms(b);
        let (added_p50, added_p99) = if std::ptr::eq(*f, direct) {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.2}", added(f.p50, direct.p50)),
                format!("{:.2}", added(f.p99, direct.p99)),
            )
        };
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {added_p50} | {added_p99} | {} | {} | {:.3} | {:.2} | {} | {} |",
            f.name,
            f.scrapes,
            f.rate,
            ms(f.p50),
            ms(f.p99),
            ms(f.p999),
            f.cpu_per_1000.map_or("-".to_owned(), |c| format!("{c:.3}")),
            f.rss_mib
                .map_or("-".to_owned(), |(rss, hwm)| format!("{rss:.1} ({hwm:.1})")),
            f.generator_cpu_per_1000,
            ms(f.lag_p99),
            f.connections
                .map_or("-".to_owned(), |(to_proxy, upstream)| format!(
                    "{to_proxy} / {upstream}"
                )),
            f.errors.len(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench"]
async fn bench_gateway_vs_nginx() {
    let rate = setting("GDS_BENCH_GATEWAY_RATE", 2000.0);
    let seconds = setting("GDS_BENCH_GATEWAY_SECONDS", 20.0);
    let spread = setting("GDS_BENCH_GATEWAY_TARGETS", (files() * INSTANCES) as f64) as usize;
    let concurrency = setting("GDS_BENCH_GATEWAY_CONCURRENCY", 32.0) as usize;

    let (text, gz) = exposition();
    println!(
        "\n## scrape gateway vs nginx (release build: {}): {} target files x {INSTANCES} \
         instances installed; load over {spread} targets at {rate}/s for {seconds} s; page \
         {} KiB of text, {} KiB gzip'd",
        !cfg!(debug_assertions),
        files(),
        text.len() / 1024,
        gz.len() / 1024
    );
    let expected = gz.len();
    let served = web::Data::new(Served {
        text,
        gzip: gz,
        connections: AtomicU64::new(0),
        requests: AtomicU64::new(0),
        bad: AtomicU64::new(0),
    });
    let pki = TestPki::platform();
    let (upstream, upstream_handle) = start_upstream(&pki, served.clone());

    // The gateway first: its sync of 10,000 objects takes a while.
    let objects: BTreeMap<String, String> = (0..files())
        .map(|n| {
            (
                format!("active/{}.json", guid(n)),
                target_file(&guid(n), &format!("app-{n}"), INSTANCES),
            )
        })
        .collect();
    let stub = S3Stub::start(
        "gateway-bench",
        objects,
        Latency {
            list_page: Duration::ZERO,
            get: Duration::ZERO,
        },
    )
    .await;
    let dirs = TargetDirs::new();
    let installing = Instant::now();
    let (sd_sync, gateway_addr) = start_gateway(&stub, &dirs, upstream, &pki).await;
    let sd_sync_processes = Processes::One(sd_sync.pid);
    println!(
        "  sd-sync: {} targets installed in {:.1} s; RSS {:.1} MiB (peak {:.1})",
        files() * INSTANCES,
        installing.elapsed().as_secs_f64(),
        sd_sync_processes.memory_mib("VmRSS"),
        sd_sync_processes.memory_mib("VmHWM"),
    );
    let idle_cpu = sd_sync_processes.cpu_seconds();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle_cpu = (sd_sync_processes.cpu_seconds() - idle_cpu) / 10.0;
    println!(
        "  sd-sync idle (polling the 10,000 objects every 2 s, no scrapes): {:.3} CPU s per s",
        idle_cpu
    );

    let ca = std::fs::read(&pki.ca_file).unwrap();
    let nginx = start_nginx_with(
        &format!("https://{upstream}"),
        &NginxSettings {
            worker_processes: "auto",
            worker_connections: 16_384,
            http: &format!(
                "proxy_ssl_verify on; proxy_ssl_trusted_certificate {};",
                pki.ca_file.display()
            ),
        },
    );
    let nginx_processes = Processes::Group(nginx.pid());

    let mut all: Vec<Target> = targets();
    // A fixed shuffle (a stride prime to the count), then the first `spread`.
    let stride = 7_919;
    let count = all.len();
    all = (0..count)
        .map(|k| all[(k * stride) % count].clone())
        .collect();
    all.truncate(spread.clamp(1, count));
    let world = World {
        served: served.clone(),
        targets: Arc::new(all),
        rate,
        seconds,
        concurrency,
        expected,
    };

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let direct_pool = Pool::new(Dial::Direct {
        addr: upstream,
        connector: tokio_rustls::TlsConnector::from(Arc::new(tls)),
    });
    let nginx_addr: SocketAddr = nginx.url.trim_start_matches("http://").parse().unwrap();

    let direct = world.open("direct", &direct_pool, None).await;
    let by_nginx = world
        .open(
            "nginx",
            &Pool::new(Dial::Proxy(nginx_addr)),
            Some(&nginx_processes),
        )
        .await;
    let gateway_pool = Pool::new(Dial::Proxy(gateway_addr));
    let by_gateway = world
        .open("gateway", &gateway_pool, Some(&sd_sync_processes))
        .await;
    let upstream_connects = sd_sync
        .metric("sd_sync_gateway_upstream_connections_total")
        .await;

    println!(
        "\nopen loop: {rate}/s offered for {seconds} s after a warm-up round (load average {}):\n",
        load_average()
    );
    print_table(&[&direct, &by_nginx, &by_gateway], &direct);

    let closed_direct = world.closed("direct", &direct_pool, None).await;
    let closed_nginx = world
        .closed(
            "nginx",
            &Pool::new(Dial::Proxy(nginx_addr)),
            Some(&nginx_processes),
        )
        .await;
    let closed_gateway = world
        .closed("gateway", &gateway_pool, Some(&sd_sync_processes))
        .await;
    println!(
        "\nclosed loop: {concurrency} scrapes in flight for {} s (load average {}):\n",
        seconds.min(10.0),
        load_average()
    );
    print_table(
        &[&closed_direct, &closed_nginx, &closed_gateway],
        &closed_direct,
    );
    println!(
        "\nsd-sync after everything: RSS {:.1} MiB, peak {:.1} MiB; upstream connections \
         opened by the gateway: {upstream_connects}; upstream requests {}, without the \
         platform's headers {}",
        sd_sync_processes.memory_mib("VmRSS"),
        sd_sync_processes.memory_mib("VmHWM"),
        served.requests.load(Ordering::Relaxed),
        served.bad.load(Ordering::Relaxed),
    );
    upstream_handle.stop(false).await;

    // Failed scrapes are a figure (the table's last column), not a failure of the
    // benchmark; the first of each run show why.
    for figures in [
        &direct,
        &by_nginx,
        &by_gateway,
        &closed_direct,
        &closed_nginx,
        &closed_gateway,
    ] {
        if let Some(first) = figures.errors.first() {
            println!(
                "{}: {} failed scrapes, the first: {}",
                figures.name,
                figures.errors.len(),
                first.lines().next().unwrap_or("")
            );
        }
    }
    assert!(
        by_gateway.errors.len() < by_gateway.scrapes,
        "no scrape got through"
    );
    assert_eq!(served.bad.load(Ordering::Relaxed), 0);
}
