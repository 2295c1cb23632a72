//! The whole chain, end to end (issue 6), with real parts only: PostgreSQL and moto
//! (started by `make test`), the CF simulator with its gorouter, the broker, the updater
//! and sd-sync (release or debug binaries of this workspace) with its scrape gateway, and
//! Debian's Prometheus. The simulated gorouter serves HTTPS with a certificate from a CA
//! the test makes ([`TestPki`]); the gateway trusts only that CA and is pinned to the
//! router, as the README recommends for production.
//!
//!     test (as the Cloud Controller) --OSB--> broker --> PostgreSQL, S3 (moto)
//!     cf-sim (CC API, audit events) <-- broker, updater (default fast path, 2 s)
//!     S3 --> sd-sync (default poll, 2 s) --> DIR/*.json --file_sd--> Prometheus
//!                                        \--/targets/DIR --http_sd--/   |
//!     Prometheus --proxy_url--> sd-sync's gateway --HTTPS--> cf-sim router --> "instances"
//!
//! The nginx forward proxy, the compatible alternative, has its own test
//! (`crate::proxy`).
//!
//! The services run with their default intervals; Prometheus' own settings are the
//! test's (see [`prometheus_config`]). Every step of the tenant story is timed from the
//! moment the test acts to the moment Prometheus' `/api/v1/targets` shows its effect, and
//! printed (`e2e: ...` lines on stderr, shown with `--nocapture`). The benchmark
//! (`crate::bench::e2e`, ignored unless asked for) repeats the timed steps for percentiles.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::broker::support::{Database, Fixture, Options, WEB_SHOP};
use crate::harness::{Running, spawn_ready_with_stderr};
use crate::prometheus::Prometheus;
use crate::proxy::router_url;
use crate::sd_sync::{SdSync, sd_sync_command};
use crate::store_s3::s3_endpoint;
use crate::tls::TestPki;
use crate::updater::UpdaterEnv;

/// The demo apps used besides web-shop (`cf-sim --demo`; their GUIDs are stable).
pub const EXPORTER: &str = "d8765d40-26d5-4a27-a7b8-7aea7b709027";
pub const ORDERS: &str = "a26c0d1c-765d-4667-b9d9-b7f358e47646";
/// The demo space, where the benchmark creates its apps.
pub const DEMO_SPACE: &str = "4f5f1950-febb-46aa-bb0a-8184f248e48b";
pub const APPS_DOMAIN: &str = "apps.example.com";

/// The scrape pool reading sd-sync's files (as manifests/prometheus/file_sd.yml).
pub const FILE_POOL: &str = "paas-test-targets";
/// The scrape pool reading sd-sync's HTTP endpoint (as manifests/prometheus/http_sd.yml).
/// It relabels `sd="http"` onto its targets: otherwise both pools would write the same
/// series.
pub const HTTP_POOL: &str = "paas-test-targets-http-sd";
/// The directory sd-sync mirrors into, hence also `/targets/<this>`.
const TARGETS_DIR: &str = "test-targets";

/// How long any one step may take to show in Prometheus.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the test polls Prometheus (the resolution of the timings).
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Prometheus' settings for the test: scrapes every second, so that "first successful
/// scrape" measures discovery and not the scrape interval (production: 30 s); file_sd
/// relies on inotify with the manifest's 30 s re-read as a safety net; http_sd polls
/// sd-sync every 2 s, as often as sd-sync polls the bucket (the manifest: 15 s), so that
/// waiting for both pools adds little to the test's time.
pub fn prometheus_config(proxy_url: &str, dir: &Path, sd_sync: &str) -> String {
    format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: {FILE_POOL}
    scheme: http
    proxy_url: {proxy_url}
    file_sd_configs:
      - files: ['{dir}/*.json']
        refresh_interval: 30s
  - job_name: {HTTP_POOL}
    scheme: http
    proxy_url: {proxy_url}
    http_sd_configs:
      - url: '{sd_sync}/targets/{TARGETS_DIR}'
        refresh_interval: 2s
    relabel_configs:
      - target_label: sd
        replacement: http
"#,
        dir = dir.display(),
    )
}

/// The whole system, started on free ports; everything stops when it drops.
pub struct Stack {
    /// cf-sim (demo apps, router over HTTPS), the broker on PostgreSQL, the S3 bucket.
    pub fixture: Fixture,
    /// The platform's CA and the router's certificate (their files).
    _pki: TestPki,
    /// `None` while stopped ([`Stack::stop_updater`]).
    pub updater: Option<Running>,
    updater_port: u16,
    /// sd-sync, with its scrape gateway.
    pub sd_sync: SdSync,
    /// `http://ADDR` of sd-sync's scrape gateway: Prometheus' `proxy_url`.
    pub gateway_url: String,
    pub prometheus: Prometheus,
    /// The directory Prometheus runs in: its configuration, its data and its log, and
    /// [`Stack::targets_dir`].
    pub prometheus_dir: PathBuf,
    /// Where sd-sync mirrors `active/`.
    pub targets_dir: PathBuf,
    /// sd-sync's stderr, when [`StackOptions::sd_sync_log`] asked for it.
    pub sd_sync_log: Option<PathBuf>,
    _dir: tempfile::TempDir,
    _logs: tempfile::TempDir,
}

/// How [`Stack::start_with`] differs from [`Stack::start`].
#[derive(Default)]
pub struct StackOptions<'a> {
    /// Alert rules for Prometheus, which also scrapes the services (the operator kit).
    pub rules: Option<&'a Path>,
    /// sd-sync's stderr goes to [`Stack::sd_sync_log`] instead of the test's.
    pub sd_sync_log: bool,
    /// More environment of sd-sync (`RUST_LOG`, `SCRAPE_TOKEN_KEY`, ...).
    pub sd_sync_env: Vec<(&'a str, &'a str)>,
    /// More environment of the broker.
    pub broker_env: Vec<(String, String)>,
}

/// What [`Stack::start_with_operator_kit`] adds to [`prometheus_config`]: its
/// `rule_files` (to go first) and scrape jobs (to go last) for Prometheus itself, the
/// broker, the updater and sd-sync.
fn operator_kit_config(rules: &Path, prometheus: u16, services: [&str; 3]) -> (String, String) {
    let rule_files = format!("rule_files: ['{}']\n", rules.display());
    let mut jobs = format!(
        "  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{prometheus}']}}]\n"
    );
    for (job, url) in ["gds-broker", "gds-updater", "gds-sd-sync"]
        .into_iter()
        .zip(services)
    {
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        jobs.push_str(&format!(
            "  - job_name: {job}\n    static_configs: [{{targets: ['{host}']}}]\n"
        ));
    }
    (rule_files, jobs)
}

impl Stack {
    pub async fn start() -> Stack {
        Stack::start_with(StackOptions::default()).await
    }

    /// [`Stack::start`], with a Prometheus that also scrapes the services' `/metrics`
    /// and itself and evaluates the alert rules in `rules`; the updater listens on a
    /// fixed port so that [`Stack::restart_updater`] keeps its scrape target.
    pub async fn start_with_operator_kit(rules: &Path) -> Stack {
        Stack::start_with(StackOptions {
            rules: Some(rules),
            ..StackOptions::default()
        })
        .await
    }

    /// Stops the updater (as `kill -9` would: at once, without releasing its lease).
    pub fn stop_updater(&mut self) {
        self.updater = None;
    }

    /// Starts the updater again on its port.
    pub fn restart_updater(&mut self) {
        self.updater = Some(start_updater(&self.fixture, self.updater_port));
    }

    /// The stack with `options`.
    pub async fn start_with(options: StackOptions<'_>) -> Stack {
        // The external programs first: a missing one fails at once with what to install.
        crate::prometheus::prometheus_tool("prometheus");
        let pki = TestPki::platform();
        let mut sim_args = vec![
            "--demo".to_owned(),
            "--router-listen".into(),
            "127.0.0.1:0".into(),
        ];
        sim_args.extend(pki.router_args());
        let fixture = Fixture::start_with(
            Database::Postgres,
            Options {
                sim_args,
                env: options.broker_env,
            },
        )
        .await;
        let router = router_url(&fixture.sim).await;
        let router: SocketAddr = router
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("the router serves HTTPS: {router}"))
            .parse()
            .unwrap();
        let updater_port = crate::prometheus::free_port();
        let updater = start_updater(&fixture, updater_port);

        let dir = tempfile::tempdir().expect("a temporary directory");
        let targets_dir = dir.path().join(TARGETS_DIR);
        // Prometheus watches the directory only if it exists when it starts.
        std::fs::create_dir_all(&targets_dir).unwrap();
        // sd-sync as on a node (manifests/sd-sync.service): the gateway on loopback,
        // pinned to the platform's router, trusting the platform's CA.
        let args = vec![
            "--mapping".into(),
            format!(
                "s3://{}/{}active/={}",
                fixture.store.bucket(),
                fixture.store.prefix(),
                targets_dir.display()
            ),
            "--s3-endpoint".into(),
            s3_endpoint(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--scrape-listen".into(),
            "127.0.0.1:0".into(),
            "--scrape-router".into(),
            router.to_string(),
            "--scrape-ca-file".into(),
            pki.ca_file.display().to_string(),
        ];
        // Not in Prometheus' directory: the tests look for secrets in each separately.
        let logs = tempfile::tempdir().expect("a temporary directory");
        let sd_sync_log = options.sd_sync_log.then(|| logs.path().join("sd-sync.log"));
        let env = options.sd_sync_env;
        let stderr = match &sd_sync_log {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
            None => std::process::Stdio::inherit(),
        };
        let (child, base_url) =
            spawn_ready_with_stderr(sd_sync_command(&args, &env), "sd-sync", stderr);
        let pid = child.id();
        let sd_sync = SdSync {
            child,
            base_url,
            pid,
            authorization: None,
        };
        let (_, health) = sd_sync.health().await;
        let gateway_url = format!(
            "http://{}",
            health["gateway"]["address"]
                .as_str()
                .unwrap_or_else(|| panic!("no gateway in sd-sync's /health: {health}"))
        );

        let config = dir.path().join("prometheus.yml");
        let prometheus_port = crate::prometheus::free_port();
        let mut text = prometheus_config(&gateway_url, &targets_dir, &sd_sync.base_url);
        if let Some(rules) = options.rules {
            let (rule_files, jobs) = operator_kit_config(
                rules,
                prometheus_port,
                [
                    &fixture.broker.base_url,
                    &updater.base_url,
                    &sd_sync.base_url,
                ],
            );
            text = format!("{rule_files}{text}{jobs}");
        }
        std::fs::write(&config, text).unwrap();
        let prometheus = Prometheus::start_on(
            prometheus_port,
            &config,
            &dir.path().join("prometheus-data"),
        );
        let stack = Stack {
            fixture,
            _pki: pki,
            updater: Some(updater),
            updater_port,
            sd_sync,
            gateway_url,
            prometheus,
            prometheus_dir: dir.path().to_owned(),
            targets_dir,
            sd_sync_log,
            _dir: dir,
            _logs: logs,
        };
        stack
            .wait("Prometheus, sd-sync and the updater are ready", async |s| {
                s.prometheus.is_ready().await
                    && s.sd_sync.get("/health").await.status().is_success()
                    && health_ok(s.updater.as_ref().unwrap()).await
            })
            .await;
        stack
    }

    /// Polls `check` until it holds; panics after [`STEP_TIMEOUT`] with Prometheus' log.
    pub async fn wait(&self, what: &str, mut check: impl AsyncFnMut(&Stack) -> bool) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !check(self).await {
            assert!(
                Instant::now() < deadline,
                "timed out after {STEP_TIMEOUT:?} waiting until {what}\nPrometheus log:\n{}",
                self.prometheus.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// A call to the simulator's control API that must succeed.
    pub async fn sim(&self, method: Method, path: &str, body: Value) -> Value {
        self.fixture.sim_control(method, path, body).await
    }

    /// Waits until Prometheus shows exactly `expected` in both scrape pools (and the
    /// targets of `up` apps in the file_sd pool have been scraped successfully), and
    /// returns how long after `started` each became true.
    pub async fn observe(
        &self,
        step: &str,
        started: Instant,
        expected: &[AppTargets],
        up: &[&str],
    ) -> Seen {
        let want_file = expected_state(expected, &[]);
        let want_http = expected_state(expected, &[("sd", "http")]);
        let want_up: usize = expected
            .iter()
            .filter(|a| up.contains(&a.guid.as_str()))
            .map(|a| a.instances as usize)
            .sum();
        let (mut listed, mut scraped, mut http_sd) = (None, None, None);
        if up.is_empty() {
            scraped = Some(Duration::ZERO);
        }
        loop {
            let targets = self.prometheus.active_targets().await;
            let now = started.elapsed();
            let file_ok = pool_state(&targets, FILE_POOL) == want_file;
            if listed.is_none() && file_ok {
                listed = Some(now);
            }
            if listed.is_some() && scraped.is_none() && file_ok {
                let healthy = targets
                    .iter()
                    .filter(|t| t["scrapePool"] == FILE_POOL)
                    .filter(|t| {
                        up.iter()
                            .any(|g| t["discoveredLabels"]["__param_cf_app_guid"] == *g)
                    })
                    .filter(|t| t["health"] == "up" && t["lastError"] == "")
                    .count();
                if healthy == want_up {
                    scraped = Some(now);
                }
            }
            if http_sd.is_none() && pool_state(&targets, HTTP_POOL) == want_http {
                http_sd = Some(now);
            }
            if let (Some(listed), Some(scraped), Some(http_sd)) = (listed, scraped, http_sd) {
                let seen = Seen {
                    listed,
                    scraped: (!up.is_empty()).then_some(scraped),
                    http_sd,
                };
                eprintln!("e2e: {step} -> {seen}");
                return seen;
            }
            assert!(
                started.elapsed() < STEP_TIMEOUT,
                "{step}: Prometheus did not show the expected targets within {STEP_TIMEOUT:?} \
                 (listed in file_sd: {listed:?}, scraped: {scraped:?}, http_sd: {http_sd:?})\n\
                 expected (file_sd): {want_file:#?}\nfile_sd pool: {:#?}\nhttp_sd pool: {:#?}\n\
                 files on the node: {:?}\nPrometheus log:\n{}",
                pool_state(&targets, FILE_POOL),
                pool_state(&targets, HTTP_POOL),
                self.node_files(),
                self.prometheus.log_tail()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The `*.json` files sd-sync has put on the node.
    pub fn node_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.targets_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Waits until `up{job=JOB}` of the file_sd pool has exactly `instances` series, all 1.
    pub async fn assert_up_series(&self, job: &str, instances: usize) {
        let query = format!("up{{job=\"{job}\",sd=\"\"}}");
        self.wait(
            &format!("{query} has {instances} series equal to 1"),
            async |s| {
                let result = s.prometheus.query(&query).await;
                result.len() == instances && result.iter().all(|r| r["value"][1] == "1")
            },
        )
        .await;
    }
}

/// How long after the test acted Prometheus showed the result.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// The file_sd pool holds exactly the expected targets.
    pub listed: Duration,
    /// ...and the step's app's targets have had a successful scrape (`health: up`).
    pub scraped: Option<Duration>,
    /// The http_sd pool holds them too.
    pub http_sd: Duration,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "listed {:.1} s", self.listed.as_secs_f64())?;
        if let Some(scraped) = self.scraped {
            write!(f, ", up {:.1} s", scraped.as_secs_f64())?;
        }
        write!(f, " (http_sd: {:.1} s)", self.http_sd.as_secs_f64())
    }
}

/// One bound app as Prometheus should show it.
#[derive(Clone, Debug)]
pub struct AppTargets {
    pub guid: String,
    /// The `job` label (the app name without `-venerable`).
    pub job: String,
    /// The route's host name.
    pub host: String,
    /// The scrape URL's path.
    pub path: String,
    pub instances: u32,
    /// `None` for the platform's exporters.
    pub space: Option<String>,
}

impl AppTargets {
    /// An app of the demo space scraped at `/metrics` of `<host>.apps.example.com`.
    pub fn demo(guid: &str, job: &str, host: &str, instances: u32) -> AppTargets {
        AppTargets {
            guid: guid.into(),
            job: job.into(),
            host: format!("{host}.{APPS_DOMAIN}"),
            path: "/metrics".into(),
            instances,
            space: Some("demo-space".into()),
        }
    }
}

/// One target as the test compares it: its labels after relabelling, and its scrape URL.
type TargetKey = (BTreeMap<String, String>, String);

/// Every target `expected` makes, sorted, with `extra` labels.
fn expected_state(expected: &[AppTargets], extra: &[(&str, &str)]) -> Vec<TargetKey> {
    let mut state: Vec<TargetKey> = expected
        .iter()
        .flat_map(|app| {
            (0..app.instances).map(move |i| {
                let guid = &app.guid;
                let mut labels = BTreeMap::from([
                    ("instance".to_owned(), format!("{guid}:{i}")),
                    ("job".to_owned(), app.job.clone()),
                    ("org".to_owned(), "demo-org".to_owned()),
                ]);
                if let Some(space) = &app.space {
                    labels.insert("space".into(), space.clone());
                }
                labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                // The __param_* labels, in Prometheus' (sorted) order; the colon encoded.
                let url = format!(
                    "http://{}{}?cf_app_guid={guid}&cf_app_instance={guid}%3A{i}&cf_app_instance_index={i}",
                    app.host, app.path
                );
                (labels, url)
            })
        })
        .collect();
    state.sort();
    state
}

/// The targets of `pool`, as [`expected_state`] spells them.
fn pool_state(targets: &[Value], pool: &str) -> Vec<TargetKey> {
    let mut state: Vec<TargetKey> = targets
        .iter()
        .filter(|t| t["scrapePool"] == pool)
        .map(|t| {
            let labels = t["labels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            (
                labels,
                without_default_port(t["scrapeUrl"].as_str().unwrap_or("")),
            )
        })
        .collect();
    state.sort();
    state
}

/// Prometheus 2.42 spells out `:80` in scrape URLs; later versions do not.
fn without_default_port(url: &str) -> String {
    match url.strip_prefix("http://") {
        Some(rest) => {
            let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
            format!(
                "http://{}{tail}",
                authority.strip_suffix(":80").unwrap_or(authority)
            )
        }
        None => url.to_owned(),
    }
}

/// The updater with the environment of a deployment next to this broker, every interval
/// at its default (full pass every minute, audit events every 2 s), listening on `port`.
fn start_updater(f: &Fixture, port: u16) -> Running {
    UpdaterEnv::of(f).set("PORT", &port.to_string()).start()
}

async fn health_ok(service: &Running) -> bool {
    reqwest::get(format!("{}/health", service.base_url))
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Asserts an OSB answer's status, showing the body otherwise.
#[track_caller]
pub fn expect_status((status, body): (StatusCode, Value), want: StatusCode, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
}

/// The tenant story of issue 6, as the Cloud Controller drives the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_story_reaches_a_real_prometheus_through_the_forward_proxy() {
    let stack = Stack::start().await;
    let f = &stack.fixture;
    let mut steps: Vec<(&str, Seen)> = Vec::new();

    // Another team's binding stays through the whole story, as on any real node (the
    // deletion of a node's *last* file has its own test below). An exporter: no `space`
    // label.
    let exporter = AppTargets {
        space: None,
        ..AppTargets::demo(EXPORTER, "paas-metric-exporter", "paas-metric-exporter", 1)
    };
    expect_status(
        f.provision("platform-prom").await,
        StatusCode::CREATED,
        "provision",
    );
    let t = Instant::now();
    expect_status(
        f.bind("platform-prom", "exporter-binding", EXPORTER, Value::Null)
            .await,
        StatusCode::CREATED,
        "bind the exporter",
    );
    let step = "bind an exporter";
    steps.push((
        step,
        stack
            .observe(step, t, std::slice::from_ref(&exporter), &[EXPORTER])
            .await,
    ));

    // cf create-service gds-prometheus prometheus my-prom
    expect_status(
        f.provision("my-prom").await,
        StatusCode::CREATED,
        "provision",
    );

    // cf bind-service web-shop my-prom: 2 instances, exact labels, scraped through the gateway.
    let mut web_shop = AppTargets::demo(WEB_SHOP, "web-shop", "web-shop", 2);
    let t = Instant::now();
    expect_status(
        f.bind("my-prom", "web-shop-binding", WEB_SHOP, Value::Null)
            .await,
        StatusCode::CREATED,
        "bind web-shop",
    );
    let step = "bind web-shop (2 instances)";
    steps.push((
        step,
        stack
            .observe(step, t, &[exporter.clone(), web_shop.clone()], &[WEB_SHOP])
            .await,
    ));
    stack.assert_up_series("web-shop", 2).await;
    let forwarded = crate::gateway::gateway_requests(&stack.sd_sync, None, "forwarded", "").await;
    assert!(
        forwarded >= 2.0,
        "Prometheus' scrapes went through the gateway ({}): {forwarded} forwarded",
        stack.gateway_url
    );
    let up = stack.prometheus.query("up{job=\"web-shop\",sd=\"\"}").await;
    for series in &up {
        let mut names: Vec<&str> = series["metric"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["__name__", "instance", "job", "org", "space"],
            "{series}"
        );
    }

    // Scale to 3 in the platform: the updater follows the audit event.
    web_shop.instances = 3;
    let t = Instant::now();
    stack
        .sim(
            Method::POST,
            &format!("/sim/apps/{WEB_SHOP}/scale"),
            json!({"instances": 3}),
        )
        .await;
    let step = "scale web-shop to 3";
    steps.push((
        step,
        stack
            .observe(step, t, &[exporter.clone(), web_shop.clone()], &[WEB_SHOP])
            .await,
    ));
    stack.assert_up_series("web-shop", 3).await;

    // Stop: the targets go (and `up` goes stale at once).
    let t = Instant::now();
    stack
        .sim(
            Method::POST,
            &format!("/sim/apps/{WEB_SHOP}/stop"),
            json!({}),
        )
        .await;
    let step = "stop web-shop";
    steps.push((
        step,
        stack
            .observe(step, t, std::slice::from_ref(&exporter), &[])
            .await,
    ));
    stack.assert_up_series("web-shop", 0).await;

    // Start: back, and scraped again.
    let t = Instant::now();
    stack
        .sim(
            Method::POST,
            &format!("/sim/apps/{WEB_SHOP}/start"),
            json!({}),
        )
        .await;
    let step = "start web-shop";
    steps.push((
        step,
        stack
            .observe(step, t, &[exporter.clone(), web_shop.clone()], &[WEB_SHOP])
            .await,
    ));

    // cf bind-service orders-venerable my-prom -c '{"path": "/internal/metrics"}': its
    // only route has no path, so the parameter alone puts /internal/metrics in the
    // scrape URL; the job drops "-venerable".
    let orders = AppTargets {
        path: "/internal/metrics".into(),
        ..AppTargets::demo(ORDERS, "orders", "orders", 2)
    };
    let t = Instant::now();
    expect_status(
        f.bind(
            "my-prom",
            "orders-binding",
            ORDERS,
            json!({"path": "/internal/metrics"}),
        )
        .await,
        StatusCode::CREATED,
        "bind orders-venerable",
    );
    let step = "bind orders-venerable with a path";
    steps.push((
        step,
        stack
            .observe(
                step,
                t,
                &[exporter.clone(), web_shop.clone(), orders.clone()],
                &[ORDERS],
            )
            .await,
    ));
    stack.assert_up_series("orders", 2).await;
    let seen = stack
        .sim(Method::GET, "/sim/router/requests", Value::Null)
        .await;
    assert!(
        seen["requests"].as_array().unwrap().iter().any(|r| {
            r["app_guid"] == ORDERS && r["path"] == "/internal/metrics" && r["status"] == 200
        }),
        "the app answered scrapes at /internal/metrics: {seen}"
    );

    // The app is deleted in the platform (the broker is not told): its targets go.
    let t = Instant::now();
    stack
        .sim(
            Method::DELETE,
            &format!("/sim/apps/{WEB_SHOP}"),
            Value::Null,
        )
        .await;
    let step = "delete web-shop in the platform";
    steps.push((
        step,
        stack
            .observe(step, t, &[exporter.clone(), orders.clone()], &[])
            .await,
    ));

    // Unbind the rest: gone.
    let t = Instant::now();
    expect_status(
        f.unbind("my-prom", "web-shop-binding").await,
        StatusCode::OK,
        "unbind the deleted web-shop",
    );
    expect_status(
        f.unbind("my-prom", "orders-binding").await,
        StatusCode::OK,
        "unbind orders-venerable",
    );
    let step = "unbind the rest";
    steps.push((
        step,
        stack
            .observe(step, t, std::slice::from_ref(&exporter), &[])
            .await,
    ));
    stack.assert_up_series("orders", 0).await;

    // cf delete-service my-prom
    expect_status(
        f.deprovision("my-prom").await,
        StatusCode::OK,
        "deprovision",
    );

    eprintln!("e2e: summary (from the action to Prometheus' /api/v1/targets):");
    for (step, seen) in &steps {
        eprintln!("e2e:   {step:<36} {seen}");
    }
}

/// The writers' record end to end: the broker's unbind of a node's last app publishes a
/// record saying `active/` is now empty, so sd-sync applies that deletion on its next poll
/// instead of holding it back as a suspicious mass deletion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unbind_of_a_nodes_last_app_is_applied_on_the_next_poll() {
    let stack = Stack::start().await;
    let f = &stack.fixture;
    expect_status(
        f.provision("solo-prom").await,
        StatusCode::CREATED,
        "provision",
    );
    expect_status(
        f.bind("solo-prom", "solo-binding", WEB_SHOP, Value::Null)
            .await,
        StatusCode::CREATED,
        "bind web-shop",
    );
    stack
        .wait("web-shop's file is on the node", async |s| {
            s.node_files().len() == 1
        })
        .await;
    // Every sample of `name` for this node's mapping, summed.
    let sum = async |name: &str| -> f64 {
        let text = stack.sd_sync.get("/metrics").await.text().await.unwrap();
        text.lines()
            .filter(|line| {
                line.starts_with(&format!("{name}{{"))
                    && line.contains(&format!("mapping=\"{TARGETS_DIR}\""))
            })
            .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    let polls_before = sum("sd_sync_polls_total").await;
    expect_status(
        f.unbind("solo-prom", "solo-binding").await,
        StatusCode::OK,
        "unbind web-shop",
    );
    let record = f
        .record()
        .await
        .expect("the unbind published the writers' record");
    assert_eq!(record.active_count, 0, "{record:?}");
    stack
        .wait("the node's last file is gone", async |s| {
            s.node_files().is_empty()
        })
        .await;
    let polls = sum("sd_sync_polls_total").await - polls_before;
    assert!(
        polls <= 2.0,
        "the deletion took {polls} polls (the next one, and one in flight at most)"
    );
    assert_eq!(
        sum("sd_sync_valve_holds_total").await,
        0.0,
        "the valve held the corroborated deletion back"
    );
}

/// The deployment's scrape token key in the token-mode test (the broker's and sd-sync's).
const TOKEN_KEY: &str = "e2e-scrape-token-key-0123456789abcdef";

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Answers of the simulated web-shop with `status`, through the router, so far.
async fn web_shop_answers(stack: &Stack, status: u16) -> u64 {
    let seen = stack
        .sim(Method::GET, "/sim/router/requests", Value::Null)
        .await;
    seen["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["app_guid"] == WEB_SHOP && r["status"] == status)
        .map(|r| r["count"].as_u64().unwrap())
        .sum()
}

/// The token of a bind's answer (`credentials.token`), checked against its header.
fn bind_token((status, body): (StatusCode, Value), what: &str) -> String {
    assert_eq!(status, StatusCode::CREATED, "{what}: {body}");
    let credentials = &body["credentials"];
    assert_eq!(credentials["auth"], "token", "{what}: {body}");
    let token = credentials["token"].as_str().unwrap().to_owned();
    assert_eq!(
        credentials["authorization_header"],
        format!("Bearer {token}")
    );
    token
}

/// Tells the simulated web-shop which tokens it accepts, as a restart with its bindings'
/// credentials in `VCAP_SERVICES` would.
async fn web_shop_accepts(stack: &Stack, tokens: &[&str]) {
    stack
        .sim(
            Method::POST,
            &format!("/sim/apps/{WEB_SHOP}/metrics-auth"),
            json!({"tokens": tokens}),
        )
        .await;
}

/// Issue 14's secret scrape token end to end: a binding with `"auth": "token"` is scraped
/// `up` by the real Prometheus through the gateway over HTTPS once the app accepts the
/// token of its bind answer; the token is nowhere Prometheus or a tenant can read; and a
/// second token binding rotates it without a failed scrape (README: Scrape credentials).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_binding_is_scraped_up_through_the_gateway_and_rotates_without_a_gap() {
    let stack = Stack::start_with(StackOptions {
        sd_sync_log: true,
        sd_sync_env: vec![("RUST_LOG", "debug"), ("SCRAPE_TOKEN_KEY", TOKEN_KEY)],
        broker_env: vec![("SCRAPE_TOKEN_KEY".into(), TOKEN_KEY.into())],
        ..StackOptions::default()
    })
    .await;
    let f = &stack.fixture;
    expect_status(
        f.provision("token-prom").await,
        StatusCode::CREATED,
        "provision",
    );

    // cf bind-service web-shop token-prom -c '{"auth": "token"}': until the app knows the
    // token (a restart), the gateway's scrapes carry it and the app refuses them.
    let first = bind_token(
        f.bind(
            "token-prom",
            "first-binding",
            WEB_SHOP,
            json!({"auth": "token"}),
        )
        .await,
        "bind web-shop with a token",
    );
    stack
        .wait(
            "the app refuses the gateway's token it does not know",
            async |s| web_shop_answers(s, 401).await >= 2,
        )
        .await;
    assert_eq!(
        web_shop_answers(&stack, 200).await,
        0,
        "a scrape went out with the app guid"
    );

    // cf restart web-shop: it accepts its binding's token; both instances are up.
    web_shop_accepts(&stack, &[&first]).await;
    stack.assert_up_series("web-shop", 2).await;
    let refused = web_shop_answers(&stack, 401).await;

    // The token is nowhere Prometheus, a tenant or an operator's log can read.
    let mut leaks = files_containing(&stack.prometheus_dir, &first);
    leaks.extend(files_containing(&stack.prometheus_dir, TOKEN_KEY));
    assert_eq!(
        leaks,
        Vec::<PathBuf>::new(),
        "files holding the token or key"
    );
    let api = reqwest::get(format!("{}/api/v1/targets", stack.prometheus.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(api.contains(WEB_SHOP) && !api.contains(&first), "{api}");
    for path in ["/targets", &format!("/targets/{TARGETS_DIR}"), "/metrics"] {
        let text = stack.sd_sync.get(path).await.text().await.unwrap();
        assert!(
            text.contains(WEB_SHOP) || path == "/metrics",
            "{path}: {text}"
        );
        assert!(!text.contains(&first), "sd-sync's {path} holds the token");
    }

    // Rotation: a second token binding (cf bind-service --strategy multiple); scrapes
    // keep the oldest binding's token, the app is restarted and accepts both, the old
    // binding goes, and scrapes switch to the new token: not one refused.
    let second = bind_token(
        f.bind(
            "token-prom",
            "second-binding",
            WEB_SHOP,
            json!({"auth": "token"}),
        )
        .await,
        "bind web-shop a second time",
    );
    assert_ne!(first, second);
    web_shop_accepts(&stack, &[&first, &second]).await;
    let polls = |text: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with("sd_sync_polls_total{"))
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    expect_status(
        f.unbind("token-prom", "first-binding").await,
        StatusCode::OK,
        "unbind the first binding",
    );
    // Two polls later the gateway has read the rewritten credentials document.
    let before = polls(&stack.sd_sync.get("/metrics").await.text().await.unwrap());
    stack
        .wait("sd-sync polled twice after the unbind", async |s| {
            polls(&s.sd_sync.get("/metrics").await.text().await.unwrap()) >= before + 2.0
        })
        .await;
    // The next restart drops the first binding's token: only the second one works.
    web_shop_accepts(&stack, &[&second]).await;
    let answered = web_shop_answers(&stack, 200).await;
    stack
        .wait(
            "the app answered more scrapes with the second token",
            async |s| web_shop_answers(s, 200).await >= answered + 4,
        )
        .await;
    stack.assert_up_series("web-shop", 2).await;
    assert_eq!(
        web_shop_answers(&stack, 401).await,
        refused,
        "a scrape was refused during the rotation"
    );

    // At debug level, sd-sync logged the gateway's work and neither token nor the key.
    let log = std::fs::read_to_string(stack.sd_sync_log.as_ref().unwrap()).unwrap();
    assert!(log.contains("gateway: forwarded a scrape"), "{log}");
    for secret in [&first, &second, TOKEN_KEY] {
        assert!(!log.contains(secret), "sd-sync's log holds a secret");
    }
    let mut leaks = files_containing(&stack.prometheus_dir, &second);
    leaks.extend(files_containing(&stack.prometheus_dir, &first));
    assert_eq!(leaks, Vec::<PathBuf>::new(), "files holding a token");
}
