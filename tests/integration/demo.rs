//! `make demo` works: `scripts/demo.sh --check` starts the whole stack on free ports (the
//! CF simulator and its gorouter, broker and updater on SQLite, the store, sd-sync, a real
//! Prometheus), walks the tenant story against the broker as the Cloud Controller calls
//! it, verifies every effect and exits non-zero on the first that does not show. Once with
//! the S3 chain (the test run's S3-compatible server, sd-sync, file_sd and http_sd,
//! scrapes through sd-sync's gateway to the gorouter over HTTPS, an app bound with a
//! secret token) and once on the embedded local directory store (no sd-sync: scrapes
//! through nginx with the shipped forward proxy).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{bin_path, spawn_group, stop_group, wait_until_group_ends};
use crate::store_s3::s3_endpoint;

/// The story takes 35-55 s; the script itself gives each effect 30 s.
const DEADLINE: Duration = Duration::from_secs(240);

/// Runs `scripts/demo.sh --check` with `env` on the binaries this test run built; returns
/// its success and its output (stdout and stderr, interleaved).
fn run_demo(env: &[(&str, &str)]) -> (bool, String) {
    let bin_dir: PathBuf = bin_path("broker").parent().unwrap().to_owned();
    for name in ["cf-sim", "updater", "sd-sync"] {
        bin_path(name);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo.sh");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.out");
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap()
    };
    // Where the sd-sync Prometheus test looks for prometheus, the demo looks too.
    let mut path = std::env::var("PATH").unwrap_or_default();
    if let Some(dir) = std::env::var_os("GDS_TEST_PROMETHEUS_DIR") {
        path = format!("{}:{path}", Path::new(&dir).display());
    }
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg("--check")
        .env("PATH", path)
        .env("DEMO_BUILD", "0")
        .env("DEMO_BIN_DIR", &bin_dir)
        .env("DEMO_PORTS", "free")
        .env("DEMO_PROMETHEUS", "1")
        .env("DEMO_INSTALL", "0")
        .env("TMPDIR", dir.path())
        .env_remove("DEMO_STATE_DIR")
        .env_remove("DEMO_S3_ENDPOINT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(open())
        .stderr(open());
    // The script and everything it starts share one process group of their own.
    let mut child = spawn_group(&mut command, "scripts/demo.sh");
    let group = child.id();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            // TERM lets the script's trap stop what it started.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let stop = Instant::now();
            while child.try_wait().unwrap().is_none() && stop.elapsed() < Duration::from_secs(15) {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // demo.sh stops what it started (its EXIT trap); whatever outlives it is killed here,
    // and fails the test.
    let left = wait_until_group_ends(group, Duration::from_secs(5));
    stop_group(&mut child);
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let output = match status {
        Some(_) => output,
        None => format!("{output}\n(demo.sh still running after {DEADLINE:?}: stopped)"),
    };
    assert!(
        left.is_empty(),
        "scripts/demo.sh left processes running: {left:?}\n{output}"
    );
    (status.is_some_and(|s| s.success()), output)
}

fn assert_shows(output: &str, lines: &[&str]) {
    for line in lines {
        assert!(
            output.contains(line),
            "the demo's output lacks {line:?}:\n{output}"
        );
    }
}

/// What every run shows, whatever the store.
const STORY: &[&str] = &[
    "$ cf create-service gds-prometheus prometheus my-prom",
    "$ cf bind-service paas-metric-exporter my-prom",
    "no \"space\" label in d8765d40-26d5-4a27-a7b8-7aea7b709027.json",
    "$ cf bind-service web-shop my-prom",
    "$ cf scale web-shop -i 3",
    "$ cf stop web-shop",
    "inactive/0e9c9b69...json, 3 targets",
    "$ cf start web-shop",
    "$ cf bind-service api my-prom -c '{\"path\": \"/internal/metrics\"}'",
    "__metrics_path__ is /internal/metrics",
    "$ cf unbind-service web-shop my-prom",
    "< 201 {}",
    "< 200 {}",
    "Prometheus file_sd: 2 targets of web-shop listed",
    "Prometheus file_sd: 3 targets of web-shop listed",
    "Prometheus file_sd: no web-shop targets",
    "Prometheus file_sd: 3 targets of api listed",
    "http://api.apps.example.com:80/internal/metrics",
    "demo check: OK",
];

#[test]
fn the_demo_walks_the_tenant_story_through_s3_sd_sync_and_prometheus() {
    let endpoint = s3_endpoint();
    let (ok, output) = run_demo(&[("DEMO_STORE", "s3"), ("DEMO_S3_ENDPOINT", &endpoint)]);
    assert!(ok, "scripts/demo.sh --check failed:\n{output}");
    assert_shows(&output, STORY);
    assert_shows(
        &output,
        &[
            "S3-compatible store",
            "bucket: active/0e9c9b69...json, 3 targets",
            "sd-sync: demo-targets/0e9c9b69...json, 2 targets",
            "sd-sync: no demo-targets/0e9c9b69...json",
            "sd-sync /targets (http_sd): 3 targets of api",
            "Prometheus http_sd: 3 targets of api, all up",
            "Prometheus http_sd: no web-shop targets",
            "sd-sync scrape gateway",
            "Prometheus file_sd: all up (scraped through the gateway)",
            "$ cf bind-service orders-venerable my-prom -c '{\"auth\": \"token\"}'",
            "\"token\":\"<token>\"",
            "Prometheus file_sd: 2 targets of orders listed",
            "Prometheus http_sd: 2 targets of orders, all up",
            "the token is in no file of Prometheus' directory",
            "Story done: 10 steps",
        ],
    );
}

#[test]
fn the_demo_walks_the_tenant_story_on_the_local_directory_store() {
    let (ok, output) = run_demo(&[("DEMO_STORE", "local")]);
    assert!(ok, "scripts/demo.sh --check failed:\n{output}");
    assert_shows(&output, STORY);
    assert_shows(
        &output,
        &[
            "local directory store",
            "store: active/0e9c9b69...json, 3 targets",
            "store: no active/0e9c9b69...json",
            "nginx forward proxy",
            "Prometheus file_sd: all up (scraped through nginx)",
            "Story done: 9 steps",
        ],
    );
}
