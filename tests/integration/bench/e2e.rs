//! Time to discovery, end to end (docs/BENCHMARKS.md, "End to end: time to discovery"):
//! the whole stack of [`Stack`] with every service at its default intervals, and many
//! binds and stops, each timed until Prometheus shows it.
//!
//!     cargo build --release --workspace --bins
//!     scripts/s3-test-server.sh scripts/pg-test-server.sh \
//!       cargo test --release -p gds-tests --test integration --locked -- \
//!       --ignored --nocapture --test-threads 1 bench_e2e
//!
//! `GDS_BENCH_E2E_ITERATIONS` (default 20) sets the number of bind/stop rounds.

use std::time::{Duration, Instant};

use gds_store::TargetState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::e2e::*;

/// One round's timings, each from the moment the test acted.
#[derive(Default)]
struct Round {
    /// The broker's answer to the bind (the file is in the bucket by then).
    bind_answered: Duration,
    /// sd-sync has written the file on the node.
    bind_on_node: Duration,
    /// Prometheus lists every instance.
    bind_listed: Duration,
    /// ...and has scraped every instance successfully.
    bind_scraped: Duration,
    /// The updater has moved the file out of `active/`.
    stop_out_of_active: Duration,
    /// sd-sync has removed it from the node.
    stop_off_node: Duration,
    /// Prometheus lists none of the app's targets.
    stop_gone: Duration,
}

/// A small pseudo-random generator (xorshift), seeded from the clock: the benchmark acts
/// at random phases of the services' poll loops and Prometheus' 5 s batching, as real
/// tenants do. Acting right after the previous step showed would always land just after
/// a Prometheus update, its worst phase.
struct Jitter(u64);

impl Jitter {
    fn new() -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Jitter(nanos | 1)
    }

    /// A duration in `0..max`.
    fn next(&mut self, max: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        max.mul_f64((self.0 % 1_000_000) as f64 / 1_000_000.0)
    }
}

/// Creates a started app with `instances` in the demo space and a route `<name>.apps...`.
async fn create_app(stack: &Stack, name: &str, instances: u32) -> String {
    let app = stack
        .sim(
            Method::POST,
            "/sim/apps",
            json!({"name": name, "space_guid": DEMO_SPACE, "instances": instances}),
        )
        .await;
    let guid = app["guid"].as_str().expect("the new app's guid").to_owned();
    stack
        .sim(
            Method::POST,
            "/sim/routes",
            json!({"host": name, "app_guid": guid}),
        )
        .await;
    guid
}

/// The file_sd pool's targets of `app`: how many, and how many are up.
fn app_targets(targets: &[Value], app: &str) -> (usize, usize) {
    let mine: Vec<&Value> = targets
        .iter()
        .filter(|t| t["scrapePool"] == FILE_POOL)
        .filter(|t| t["discoveredLabels"]["__param_cf_app_guid"] == app)
        .collect();
    let up = mine.iter().filter(|t| t["health"] == "up").count();
    (mine.len(), up)
}

fn file_pool_len(targets: &[Value]) -> usize {
    targets
        .iter()
        .filter(|t| t["scrapePool"] == FILE_POOL)
        .count()
}

#[track_caller]
fn before_timeout(started: Instant, what: &str, stack: &Stack) {
    assert!(
        started.elapsed() < STEP_TIMEOUT,
        "{what} took more than {STEP_TIMEOUT:?}\nPrometheus log:\n{}",
        stack.prometheus.log_tail()
    );
}

/// Bind, then wait until Prometheus has listed and scraped every instance.
async fn bind_round(stack: &Stack, round: &mut Round, app: &str, binding: &str, instances: usize) {
    let file = stack.targets_dir.join(format!("{app}.json"));
    let t = Instant::now();
    expect_status(
        stack.fixture.bind("bench", binding, app, Value::Null).await,
        StatusCode::CREATED,
        "bind",
    );
    round.bind_answered = t.elapsed();
    let (mut on_node, mut listed) = (None, None);
    loop {
        if on_node.is_none() && file.exists() {
            on_node = Some(t.elapsed());
        }
        let targets = stack.prometheus.active_targets().await;
        let now = t.elapsed();
        let (listed_now, up) = app_targets(&targets, app);
        if listed.is_none() && listed_now == instances {
            listed = Some(now);
        }
        if let (Some(on_node), Some(listed)) = (on_node, listed)
            && up == instances
        {
            round.bind_on_node = on_node;
            round.bind_listed = listed;
            round.bind_scraped = now;
            return;
        }
        before_timeout(t, "bind -> listed and scraped", stack);
        tokio::time::sleep(POLL).await;
    }
}

/// Stop the app in the platform, then wait until Prometheus has dropped its targets.
async fn stop_round(stack: &Stack, round: &mut Round, app: &str) {
    let file = stack.targets_dir.join(format!("{app}.json"));
    let t = Instant::now();
    stack
        .sim(Method::POST, &format!("/sim/apps/{app}/stop"), json!({}))
        .await;
    let (mut out_of_active, mut off_node) = (None, None);
    loop {
        if out_of_active.is_none() && stack.fixture.file(TargetState::Active, app).await.is_none() {
            out_of_active = Some(t.elapsed());
        }
        if off_node.is_none() && !file.exists() {
            off_node = Some(t.elapsed());
        }
        let targets = stack.prometheus.active_targets().await;
        let now = t.elapsed();
        if let (Some(out_of_active), Some(off_node)) = (out_of_active, off_node)
            && app_targets(&targets, app).0 == 0
        {
            round.stop_out_of_active = out_of_active;
            round.stop_off_node = off_node;
            round.stop_gone = now;
            return;
        }
        before_timeout(t, "stop -> gone", stack);
        tokio::time::sleep(POLL).await;
    }
}

/// Nearest-rank percentile of sorted `values`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: make bench"]
async fn bench_e2e_time_to_discovery() {
    let iterations: usize = std::env::var("GDS_BENCH_E2E_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let stack = Stack::start().await;

    // Other tenants' targets on the node, scraped every 30 s (binding parameter). Enough
    // of them that the stops below never look like a mass deletion to sd-sync's safety
    // valve (more than 10 files and 50 % within 5 minutes).
    let background = 30.max(iterations + 10);
    expect_status(
        stack.fixture.provision("background").await,
        StatusCode::CREATED,
        "provision",
    );
    for i in 0..background {
        let app = create_app(&stack, &format!("background-{i:03}"), 1).await;
        expect_status(
            stack
                .fixture
                .bind(
                    "background",
                    &format!("background-{i:03}"),
                    &app,
                    json!({"scrape_interval": "30s"}),
                )
                .await,
            StatusCode::CREATED,
            "bind a background app",
        );
    }
    stack
        .wait("the background apps are listed", async |s| {
            file_pool_len(&s.prometheus.active_targets().await) == background
        })
        .await;

    expect_status(
        stack.fixture.provision("bench").await,
        StatusCode::CREATED,
        "provision",
    );
    let instances = 2;
    let mut apps = Vec::new();
    for i in 0..iterations {
        apps.push(create_app(&stack, &format!("bench-{i:03}"), instances as u32).await);
    }

    let before = LatencyHistograms::read(&stack).await;
    let mut jitter = Jitter::new();
    let mut rounds = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let mut round = Round::default();
        tokio::time::sleep(jitter.next(Duration::from_secs(5))).await;
        let binding = format!("bench-{i:03}");
        bind_round(&stack, &mut round, app, &binding, instances).await;
        tokio::time::sleep(jitter.next(Duration::from_secs(5))).await;
        stop_round(&stack, &mut round, app).await;
        expect_status(
            stack.fixture.unbind("bench", &binding).await,
            StatusCode::OK,
            "unbind",
        );
        eprintln!(
            "bench_e2e: round {:>2}: bind -> node {:.1} s, listed {:.1} s, up {:.1} s; \
             stop -> out of active/ {:.1} s, off node {:.1} s, gone {:.1} s",
            i + 1,
            round.bind_on_node.as_secs_f64(),
            round.bind_listed.as_secs_f64(),
            round.bind_scraped.as_secs_f64(),
            round.stop_out_of_active.as_secs_f64(),
            round.stop_off_node.as_secs_f64(),
            round.stop_gone.as_secs_f64(),
        );
        rounds.push(round);
    }

    let after = LatencyHistograms::read(&stack).await;
    type Pick = fn(&Round) -> Duration;
    let rows: [(&str, Pick); 7] = [
        ("bind -> broker answered (file in the bucket)", |r| {
            r.bind_answered
        }),
        ("bind -> file on the node (sd-sync)", |r| r.bind_on_node),
        ("bind -> listed in Prometheus", |r| r.bind_listed),
        ("bind -> first successful scrape", |r| r.bind_scraped),
        ("stop -> out of active/ (updater)", |r| r.stop_out_of_active),
        ("stop -> off the node (sd-sync)", |r| r.stop_off_node),
        ("stop -> gone from Prometheus", |r| r.stop_gone),
    ];
    println!(
        "\nbench_e2e_time_to_discovery: {iterations} rounds, {instances} instances per app, \
         {background} other apps bound, default service settings"
    );
    println!("| step | p50 | p99 | max |");
    println!("|---|---|---|---|");
    for (name, pick) in rows {
        let mut values: Vec<Duration> = rounds.iter().map(pick).collect();
        values.sort();
        println!(
            "| {name} | {:.2} s | {:.2} s | {:.2} s |",
            percentile(&values, 0.5).as_secs_f64(),
            percentile(&values, 0.99).as_secs_f64(),
            values.last().unwrap().as_secs_f64(),
        );
    }
    compare_with_histograms(&rounds, &before, &after);
}

/// The services' own latency histograms, as their `/metrics` showed them at one moment.
struct LatencyHistograms {
    /// `observe_broker_target_latency_seconds{operation="bind"}`.
    broker_bind: Histogram,
    /// `gds_updater_change_latency_seconds`, every source.
    updater_change: Histogram,
    /// `sd_sync_propagation_seconds{change="install"}`, every mapping.
    sd_sync_install: Histogram,
}

impl LatencyHistograms {
    async fn read(stack: &Stack) -> LatencyHistograms {
        let get = async |url: String| {
            let response = reqwest::get(&url).await.expect("a /metrics response");
            assert!(
                response.status().is_success(),
                "GET {url}: {}",
                response.status()
            );
            response.text().await.expect("a /metrics body")
        };
        let broker = get(format!("{}/metrics", stack.fixture.broker.base_url)).await;
        let updater = get(format!(
            "{}/metrics",
            stack.updater.as_ref().expect("the updater runs").base_url
        ))
        .await;
        let sd_sync = stack.sd_sync.get("/metrics").await.text().await.unwrap();
        LatencyHistograms {
            broker_bind: Histogram::parse(
                &broker,
                "observe_broker_target_latency_seconds",
                "operation=\"bind\"",
            ),
            updater_change: Histogram::parse(&updater, "gds_updater_change_latency_seconds", ""),
            sd_sync_install: Histogram::parse(
                &sd_sync,
                "sd_sync_propagation_seconds",
                "change=\"install\"",
            ),
        }
    }
}

/// A histogram's cumulative bucket counts `(le, count)` in ascending `le`, summed over the
/// series that match.
#[derive(Debug, Clone, PartialEq)]
struct Histogram(Vec<(f64, f64)>);

impl Histogram {
    /// The `<name>_bucket` series of a text exposition whose labels contain `matcher`.
    fn parse(text: &str, name: &str, matcher: &str) -> Histogram {
        let prefix = format!("{name}_bucket{{");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for line in text.lines().filter(|l| l.starts_with(&prefix)) {
            let Some((labels, value)) = line[prefix.len()..].split_once("} ") else {
                continue;
            };
            if !labels.contains(matcher) {
                continue;
            }
            let le = labels
                .split(',')
                .find_map(|l| l.strip_prefix("le=\""))
                .map(|v| v.trim_end_matches('"'))
                .expect("a bucket has an le label");
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("a numeric le")
            };
            let count: f64 = value.trim().parse().expect("a numeric bucket count");
            match buckets.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += count,
                None => buckets.push((le, count)),
            }
        }
        assert!(
            !buckets.is_empty(),
            "no {name} buckets matching {matcher:?}"
        );
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram(buckets)
    }

    /// The observations made between `earlier` and `self`.
    fn since(&self, earlier: &Histogram) -> Histogram {
        Histogram(
            self.0
                .iter()
                .map(|&(le, count)| {
                    let before = earlier
                        .0
                        .iter()
                        .find(|(b, _)| *b == le)
                        .map_or(0.0, |b| b.1);
                    (le, count - before)
                })
                .collect(),
        )
    }

    fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |b| b.1)
    }

    /// The `q`-quantile as PromQL's `histogram_quantile` computes it: linear
    /// interpolation within the bucket holding rank `q * count` (from 0 for the first
    /// bucket; the highest finite bound when the rank falls in `+Inf`).
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, count) in &self.0 {
            if count >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                return Some(lower + (le - lower) * (rank - below) / (count - below));
            }
            (lower, below) = (le, count);
        }
        Some(lower)
    }
}

/// One poll period of sd-sync and of the updater's fast path at their defaults: how
/// closely a histogram's percentile must agree with the benchmark's own measurement.
const POLL_PERIOD: Duration = Duration::from_secs(2);

/// Prints each histogram's p50/p99 over the rounds next to the benchmark's measurement of
/// the same events, and whether they agree within [`POLL_PERIOD`].
fn compare_with_histograms(
    rounds: &[Round],
    before: &LatencyHistograms,
    after: &LatencyHistograms,
) {
    type Pick = fn(&Round) -> Duration;
    let rows: [(&str, &str, Histogram, Pick); 3] = [
        (
            "bind received -> file written (broker)",
            "observe_broker_target_latency_seconds{operation=\"bind\"}",
            after.broker_bind.since(&before.broker_bind),
            |r| r.bind_answered,
        ),
        (
            "CC change -> file moved (updater)",
            "gds_updater_change_latency_seconds",
            after.updater_change.since(&before.updater_change),
            |r| r.stop_out_of_active,
        ),
        (
            "bucket -> node (sd-sync)",
            "sd_sync_propagation_seconds{change=\"install\"}",
            after.sd_sync_install.since(&before.sd_sync_install),
            |r| r.bind_on_node.saturating_sub(r.bind_answered),
        ),
    ];
    println!(
        "\nThe services' latency histograms over the same rounds (PromQL's \
         histogram_quantile on their /metrics) next to the benchmark's own measurement:"
    );
    println!(
        "| event | histogram | observations | p50 hist / bench | p99 hist / bench | agree within {} s |",
        POLL_PERIOD.as_secs()
    );
    println!("|---|---|---|---|---|---|");
    for (event, metric, histogram, pick) in rows {
        let mut values: Vec<Duration> = rounds.iter().map(pick).collect();
        values.sort();
        let (bench50, bench99) = (percentile(&values, 0.5), percentile(&values, 0.99));
        let (Some(hist50), Some(hist99)) = (histogram.quantile(0.5), histogram.quantile(0.99))
        else {
            println!("| {event} | `{metric}` | 0 | - | - | no observations |");
            continue;
        };
        let agree = [(hist50, bench50), (hist99, bench99)]
            .iter()
            .all(|(h, b)| (h - b.as_secs_f64()).abs() <= POLL_PERIOD.as_secs_f64());
        println!(
            "| {event} | `{metric}` | {} | {hist50:.2} s / {:.2} s | {hist99:.2} s / {:.2} s | {} |",
            histogram.count(),
            bench50.as_secs_f64(),
            bench99.as_secs_f64(),
            if agree { "yes" } else { "NO" },
        );
    }
}

#[cfg(test)]
mod histogram_tests {
    use super::*;

    const TEXT: &str = "\
# TYPE x_seconds histogram
x_seconds_bucket{mapping=\"a\",change=\"install\",le=\"1\"} 1
x_seconds_bucket{mapping=\"a\",change=\"install\",le=\"2\"} 3
x_seconds_bucket{mapping=\"a\",change=\"install\",le=\"+Inf\"} 4
x_seconds_bucket{mapping=\"b\",change=\"install\",le=\"1\"} 1
x_seconds_bucket{mapping=\"b\",change=\"install\",le=\"2\"} 1
x_seconds_bucket{mapping=\"b\",change=\"install\",le=\"+Inf\"} 1
x_seconds_bucket{mapping=\"a\",change=\"delete\",le=\"1\"} 7
x_seconds_bucket{mapping=\"a\",change=\"delete\",le=\"2\"} 7
x_seconds_bucket{mapping=\"a\",change=\"delete\",le=\"+Inf\"} 7
";

    #[test]
    fn matching_series_are_summed_by_bucket() {
        let h = Histogram::parse(TEXT, "x_seconds", "change=\"install\"");
        assert_eq!(
            h,
            Histogram(vec![(1.0, 2.0), (2.0, 4.0), (f64::INFINITY, 5.0)])
        );
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket_as_promql_does() {
        let h = Histogram(vec![(1.0, 2.0), (2.0, 4.0), (f64::INFINITY, 5.0)]);
        // rank 2.5 of 5: a quarter of the way through (1, 2].
        assert_eq!(h.quantile(0.5), Some(1.25));
        // rank 1 of 5: half way through (0, 1].
        assert_eq!(h.quantile(0.2), Some(0.5));
        // rank 4.95: in +Inf, which answers the highest finite bound.
        assert_eq!(h.quantile(0.99), Some(2.0));
        assert_eq!(Histogram(vec![(1.0, 0.0)]).quantile(0.5), None);
    }

    #[test]
    fn observations_since_a_snapshot_are_the_difference() {
        let before = Histogram(vec![(1.0, 1.0), (f64::INFINITY, 1.0)]);
        let after = Histogram(vec![(1.0, 1.0), (f64::INFINITY, 4.0)]);
        assert_eq!(
            after.since(&before),
            Histogram(vec![(1.0, 0.0), (f64::INFINITY, 3.0)])
        );
    }
}
